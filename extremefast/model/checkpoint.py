"""Checkpoints: the training state (``state.pt``) and the trained model (``model.pt``).

A checkpoint holds data only: tensors, and the configuration and bookkeeping as plain
Python values (dict, list, tuple, str, int, float, bool, None). It is read with
``torch.load(weights_only=True)``, PyTorch's restricted unpickler, which builds only those
types and refuses any other object before it is made, so a file that a colleague sent, or
that someone tampered with, cannot run code when it is loaded: a pickle that calls
``os.system`` is refused in one line and its command never runs. The writer checks the
payload against the same rule, so what this version writes this version reads.

Both files carry the format number, the version that wrote them and the configuration that
builds the network, so that :func:`load_checkpoint` refuses, in one line, what this version
cannot read. Format 1 (extremefast before data-only checkpoints) was read with the
unrestricted unpickler; it is refused with the command that converts it
(:func:`convert_checkpoint`, ``extremefast convert-checkpoint OLD.pt NEW.pt``), which reads it
under the same restricted unpickler and rewrites it unchanged in the current format.
Writes are atomic (:mod:`extremefast.atomic`), so a killed run never leaves half a file.
"""
from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np
import torch

from .._version import CHECKPOINT_FORMAT, __version__
from ..atomic import atomic_write
from ..errors import DataError
from .config import TrainConfig

# the formats convert_checkpoint rewrites in the current one
_CONVERTIBLE = (1,)
_PLAIN = (str, int, float, bool, type(None))


def save_checkpoint(path, config: TrainConfig, model_state: dict, **extra) -> Path:
    """Write ``model_state`` with ``config`` (and ``extra`` entries) to ``path`` atomically.

    Parameters
    ----------
    path : path
    config : TrainConfig
    model_state : dict
        The network's ``state_dict``.
    **extra
        Further entries (optimiser state, rows, ...): tensors and plain Python values
        (NumPy scalars and arrays are stored as Python numbers and lists).

    Returns
    -------
    Path

    Raises
    ------
    TypeError
        Where the payload holds anything but tensors and plain values (a bug of the caller:
        such a file could not be read back with the restricted unpickler).
    """
    payload = {"format": CHECKPOINT_FORMAT, "version": __version__, "config": config.to_dict(),
               "model": model_state, **extra}
    return _write(path, payload)


def save_model(path, config: TrainConfig, model_state: dict, best_round: int) -> Path:
    """``model.pt``: the kept round's weights and what prediction needs besides the network.

    Parameters
    ----------
    path : path
    config : TrainConfig
    model_state : dict
    best_round : int
        The round whose weights these are.

    Returns
    -------
    Path
    """
    return save_checkpoint(path, config, model_state, best_round=best_round, window=config.window,
                           crop_size=config.crop_size, pad_mm=config.pad_mm, pad_fraction=config.pad_fraction,
                           point_sigma=config.point_sigma)


def load_checkpoint(path) -> dict:
    """A checkpoint written by this version's format, or a one-line error saying why not.

    Nothing in the file can run code: it is read with PyTorch's restricted unpickler.

    Parameters
    ----------
    path : path
        ``model.pt`` or ``state.pt``.

    Returns
    -------
    dict
        ``format``, ``version``, ``config``, ``model`` and what the writer added.
    """
    path = Path(path)
    ckpt = _read(path)
    if ckpt["format"] in _CONVERTIBLE:
        raise DataError(f"{path}: checkpoint format {ckpt['format']} (extremefast {ckpt.get('version', '?')}) is read "
                        f"only to convert it: run `extremefast convert-checkpoint {path} NEW.pt` and use NEW.pt")
    if ckpt["format"] != CHECKPOINT_FORMAT:
        raise DataError(f"{path}: checkpoint format {ckpt['format']} (extremefast {ckpt.get('version', '?')}) is "
                        f"incompatible with this version's format {CHECKPOINT_FORMAT} (extremefast {__version__})")
    return ckpt


def convert_checkpoint(source, target) -> Path:
    """Rewrite a format-1 checkpoint (``model.pt`` or ``state.pt``) in the current format.

    The old file is read with the same restricted unpickler as any checkpoint, so converting
    a file runs no code from it either; the weights, configuration and bookkeeping are copied
    unchanged, so predictions from the new file equal the old one's bit for bit.

    Parameters
    ----------
    source : path
        The old checkpoint.
    target : path
        Where to write the converted one (may be ``source`` itself: the write is atomic).

    Returns
    -------
    Path
        ``target``.
    """
    source = Path(source)
    ckpt = _read(source)
    if ckpt["format"] == CHECKPOINT_FORMAT:
        raise DataError(f"{source}: already in the current checkpoint format {CHECKPOINT_FORMAT}; nothing to convert")
    if ckpt["format"] not in _CONVERTIBLE:
        raise DataError(f"{source}: checkpoint format {ckpt['format']} cannot be converted by this version "
                        f"(it converts format {', '.join(map(str, _CONVERTIBLE))})")
    payload = dict(ckpt, format=CHECKPOINT_FORMAT, converted_from={"format": ckpt["format"],
                                                                    "version": ckpt.get("version", "?")},
                   version=__version__)
    return _write(target, payload)


def _numpy_scalars() -> list:
    """What a pickled NumPy scalar asks for: the function that builds a scalar from its dtype and
    bytes, and the dtype classes. None of them runs code; format 1 could hold such scalars in its
    rows, so that its files reach the message that converts them."""
    core = getattr(np, "_core", None) or np.core
    return [core.multiarray.scalar, np.dtype, *(type(np.dtype(t)) for t in "?bhilqBHILQefdgFDG")]


def _read(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found")
    try:
        with warnings.catch_warnings():  # torch's note on pickle protocols older or newer than its own
            warnings.simplefilter("ignore", UserWarning)
            with torch.serialization.safe_globals(_numpy_scalars()):
                ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # the restricted unpickler met something it does not build: code, or objects other than data
        message = str(exc)
        what = (f"the file asks to run {message.split('GLOBAL', 1)[1].split()[0]}" if "GLOBAL" in message
                else "the file holds pickle instructions that build objects other than data")
        raise DataError(f"{path}: refused: {what}; an extremefast checkpoint holds only tensors and plain data "
                        "(nothing in the file was run)") from None
    except Exception as exc:  # truncated zip, not a torch file, ...
        raise DataError(f"{path}: not a readable extremefast checkpoint ({type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or "format" not in ckpt or "config" not in ckpt:
        raise DataError(f"{path}: not an extremefast checkpoint")
    return ckpt


def _write(path, payload: dict) -> Path:
    payload = _plain(payload, "checkpoint")
    with atomic_write(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def _plain(value, where: str):
    """``value`` as tensors and plain Python values (NumPy scalars and arrays become Python
    numbers and lists), or a TypeError naming the first thing that is neither."""
    if isinstance(value, (torch.Tensor, *_PLAIN)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, _PLAIN):
                raise TypeError(f"{where}: key {key!r} of type {type(key).__name__} is not plain data")
        return {key: _plain(item, f"{where}[{key!r}]") for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(item, f"{where}[{i}]") for i, item in enumerate(value))
    raise TypeError(f"{where} is a {type(value).__name__}; a checkpoint holds only tensors and plain data")
