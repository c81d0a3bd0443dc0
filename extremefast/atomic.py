"""Writing a file safely: every writer of the toolkit (scans, masks, clicks, JSON, checkpoints,
caches, figures) goes through :func:`atomic_write`.

The data go to a temporary file beside the target (same folder, so the rename cannot cross a
file system), are flushed to disk, and only then renamed over the target with ``os.replace``,
which POSIX and Windows make atomic. A reader therefore sees the old file or the new one, never
half of one, even when the writer is killed (SIGKILL, a full disk) in the middle. The temporary
name carries the process id and a random token, so that two writers of the same file, in two
processes or two threads of one server, never share a temporary file; it keeps the target's
suffix, so that writers which choose the format by the extension (nibabel, SimpleITK,
matplotlib) write the right one. On failure the temporary file is removed and the target is
left as it was.
"""
from __future__ import annotations

import os
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import DataError

# suffixes of more than one part that writers read as one (".nii.gz" is NIfTI, gzipped)
_DOUBLE_SUFFIXES = (".nii.gz", ".seg.nrrd", ".mrk.json", ".tar.gz")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for double in _DOUBLE_SUFFIXES:
        if name.endswith(double):
            return path.name[-len(double):]
    return path.suffix


def temporary_name(path) -> Path:
    """A fresh temporary path beside ``path`` that keeps its suffix (``.STS_002.1234.9f3a.tmp.nii.gz``)."""
    path = Path(path)
    suffix = _suffix(path)
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    return path.with_name(f".{stem}.{os.getpid()}.{secrets.token_hex(4)}.tmp{suffix}")


@contextmanager
def atomic_write(path) -> Iterator[Path]:
    """Yield a temporary path to write; on leaving the block it replaces ``path`` at once.

    Parameters
    ----------
    path : path
        The file to write. Its folder is created where missing.

    Yields
    ------
    Path
        Where to write (by any writer: ``open``, ``nib.save``, ``torch.save``, ``fig.savefig``).

    Raises
    ------
    DataError
        One line naming ``path`` where the write failed on the file system (a full disk, no
        permission). Other exceptions raised in the block pass through unchanged. Either way
        the temporary file is removed and ``path`` keeps its old content.

    Examples
    --------
    >>> with atomic_write("mask.nii.gz") as tmp:   # doctest: +SKIP
    ...     nib.save(image, tmp)
    """
    path = Path(path)
    tmp = temporary_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        _remove(tmp)
        raise DataError(f"{path}: could not write ({exc.strerror or exc})") from None
    except BaseException:
        _remove(tmp)
        raise


@contextmanager
def atomic_folder(path) -> Iterator[Path]:
    """Yield a temporary folder to fill; on leaving the block it becomes ``path`` at once.

    ``path`` must be absent or an empty folder (it is replaced). On any failure the temporary
    folder is removed and ``path`` is left as it was: a killed writer leaves no half-filled
    folder under the final name.

    Parameters
    ----------
    path : path

    Yields
    ------
    Path
    """
    path = Path(path)
    tmp = temporary_name(path)
    try:
        tmp.mkdir(parents=True)
        yield tmp
        if path.exists():
            path.rmdir()
        os.replace(tmp, path)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"{path}: could not write ({exc.strerror or exc})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
    return Path(path)


def write_text(path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write`)."""
    return write_bytes(path, text.encode("utf-8"))


def _fsync(path: Path) -> None:
    # the data reach the disk before the rename makes them the file's content
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass
