#!/usr/bin/env bash
# Set up extremefast on a fresh machine (the README's two set-up commands call this).
#   ./setup.sh        what running needs: PyTorch (the CPU build where none is installed), the
#                     package with its command line and server, and the browser page, built from
#                     the npm packages pinned in web/package-lock.json
#   ./setup.sh test   and what the tests need: the test extras, MONAI Label's client (the protocol
#                     3D Slicer speaks; only its client module is used, so without its dependencies)
#                     and a real browser (Debian's chromium) for the page's test
set -euo pipefail
cd "$(dirname "$0")"
# the CPU wheel first, so that pip never resolves a multi-GB CUDA build of torch by itself
python -c "import torch" 2>/dev/null || python -m pip install torch==2.13.0
if [ "${1:-}" = "test" ]; then
  python -m pip install -e ".[test]"
  python -m pip install --no-deps monailabel==0.8.5
  if ! command -v chromium >/dev/null 2>&1; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update && $sudo apt-get install -y chromium
  fi
else
  python -m pip install -e ".[serve]"
fi
# the browser page of `extremefast serve` (NiiVue), bundled into extremefast/serve/static/
npm ci --prefix web --no-audit --no-fund && npm run build --prefix web
