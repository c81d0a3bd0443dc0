"""The ``extremefast`` command line (``python -m extremefast`` runs the same)."""
from __future__ import annotations

import sys


def entry() -> None:
    """The console script: run the command line, or say in one line what it needs."""
    try:
        from .main import main
    except ModuleNotFoundError as exc:
        sys.stderr.write(f"extremefast: the command line needs {exc.name}: pip install 'extremefast[cli]'\n")
        sys.exit(1)
    sys.exit(main())
