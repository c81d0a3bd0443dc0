"""An HDF5 cache of per-case arrays (crops, point channels, pseudo labels).

One file per entry. An entry is written under a temporary name, flushed, and renamed
into place; it carries the schema version and a completion flag. A reader treats a
missing, unreadable, incomplete or other-version file as absent, so a killed run never
leaves an entry that a later run trusts.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .._version import CACHE_SCHEMA
from ..atomic import atomic_write
from ..errors import DataError


class ArrayCache:
    """``put(key, arrays, attrs)`` / ``get(key)`` on a folder of HDF5 files."""

    def __init__(self, folder, schema: int = CACHE_SCHEMA):
        self.folder = Path(folder)
        self.schema = int(schema)
        if self.folder.exists() and not self.folder.is_dir():
            raise DataError(f"{self.folder}: a file is in the way of the cache folder")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(f"{self.folder}: cannot create cache folder ({exc.strerror or exc})") from None

    def path(self, key: str) -> Path:
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", key):
            raise ValueError(f"cache key {key!r} may hold only letters, digits, '_', '-' and '.'")
        return self.folder / f"{key}.h5"

    def put(self, key: str, arrays: dict[str, np.ndarray], attrs: dict | None = None) -> Path:
        import h5py

        final = self.path(key)
        try:
            with atomic_write(final) as tmp, h5py.File(tmp, "w") as f:
                f.attrs["schema"] = self.schema
                f.attrs["complete"] = False
                for name, value in (attrs or {}).items():
                    f.attrs[name] = value
                for name, array in arrays.items():
                    array = np.asarray(array)
                    opts = {"compression": "lzf"} if array.size > 4096 else {}
                    f.create_dataset(name, data=array, **opts)
                f.attrs["complete"] = True
        except OSError as exc:  # h5py's own errors on a full disk
            raise DataError(f"{final}: could not write cache entry ({exc.strerror or exc})") from None
        return final

    def get(self, key: str) -> tuple[dict[str, np.ndarray], dict] | None:
        """The entry's arrays and attributes, or None when absent or not trustworthy."""
        import h5py

        path = self.path(key)
        if not path.exists():
            return None
        try:
            with h5py.File(path, "r") as f:
                if int(f.attrs.get("schema", -1)) != self.schema or not bool(f.attrs.get("complete", False)):
                    return None
                arrays = {name: f[name][()] for name in f.keys()}
                attrs = {k: v for k, v in f.attrs.items() if k not in ("schema", "complete")}
        except (OSError, KeyError, ValueError):
            return None
        return arrays, attrs

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def clear(self) -> None:
        for p in self.folder.glob("*.h5"):
            p.unlink(missing_ok=True)
