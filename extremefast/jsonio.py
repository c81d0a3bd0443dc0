"""Atomic JSON files (through :mod:`extremefast.atomic`); NaN and infinities are written as null,
so that every file is standard JSON (a summary over no mask has a null mean)."""
from __future__ import annotations

import json
from pathlib import Path

from .atomic import write_text
from .errors import DataError


def write_json(path, obj) -> Path:
    return write_text(path, json.dumps(_finite(obj), indent=1, default=_default, allow_nan=False))


def read_json(path):
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: broken JSON ({exc})") from None


def _finite(o):
    import math

    import numpy as np

    if isinstance(o, (np.generic, np.ndarray)):
        o = o.tolist()
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def _default(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
