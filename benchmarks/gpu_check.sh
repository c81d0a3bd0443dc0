#!/usr/bin/env bash
# The one script to run first on a GPU machine: every GPU test, then every GPU benchmark
# (each checks its answer before it times), then one short table with the card's name.
# Usage (repository root): bash benchmarks/gpu_check.sh [OUTDIR]
# Wheels of packages the machine lacks (pyamg, monai, nibabel) may be placed in .whl/.
set -uo pipefail
cd "$(dirname "$0")/.."
OUTDIR=${1:-${OUT:-/tmp/extremefast-gpu-check}}
mkdir -p "$OUTDIR"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-$(python3 -c "import torch; m, n = torch.cuda.get_device_capability(); print(f'{m}.{n}')")}
export MAX_JOBS=${MAX_JOBS:-8}
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUTDIR/gpu.txt"
python3 - <<'PY' | tee "$OUTDIR/versions.txt"
import torch, triton
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), triton {triton.__version__}, GPU {torch.cuda.get_device_name(0)}")
try:
    import cupy; print(f"cupy {cupy.__version__}")
except ImportError:
    print("cupy missing")
PY
status=0
echo "== GPU tests"
timeout 300 python3 -m pytest -q -m gpu tests -p no:cacheprovider -W ignore::UserWarning 2>&1 | tail -40 | tee "$OUTDIR/tests.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
echo "== benchmarks"
cd benchmarks
timeout 240 python3 bench_point_loss.py --device cuda --repeat 5 --json "$OUTDIR/point_loss.json" || status=1
timeout 240 python3 bench_network.py --device cuda --repeat 5 --json "$OUTDIR/network.json" || status=1
timeout 240 python3 bench_random_walker.py --device cuda --repeat 1 --json "$OUTDIR/random_walker.json" || status=1
timeout 240 python3 bench_refresh.py --device cuda --cases 32 --phantoms 2 --cpu-cases 2 --repeat 1 \
  --json "$OUTDIR/refresh.json" || status=1
cd ..
echo "== summary"
python3 - "$OUTDIR" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
print("GPU:", (out / "gpu.txt").read_text().strip())
for name in ("point_loss", "network", "random_walker", "refresh"):
    f = out / f"{name}.json"
    if not f.exists():
        print(f"{name}: no result"); continue
    d = json.loads(f.read_text())
    print(f"-- {d['title']}")
    for r in d["rows"]:
        print("   " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
PY
exit $status
