"""Checkpoints: the training state (``state.pt``) and the trained model (``model.pt``).

Both carry the format number, the version that wrote them and the configuration that builds
the network, so that :func:`load_checkpoint` refuses, in one line, what this version cannot
read. Writes are atomic (a temporary file renamed), so a killed run never leaves half a file.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .._version import CHECKPOINT_FORMAT, __version__
from ..errors import DataError
from .config import TrainConfig


def save_checkpoint(path, config: TrainConfig, model_state: dict, **extra) -> Path:
    """Write ``model_state`` with ``config`` (and ``extra`` entries) to ``path`` atomically.

    Parameters
    ----------
    path : path
    config : TrainConfig
    model_state : dict
        The network's ``state_dict``.
    **extra
        Further entries (optimiser state, rows, ...).

    Returns
    -------
    Path
    """
    path = Path(path)
    payload = {"format": CHECKPOINT_FORMAT, "version": __version__, "config": config.to_dict(),
               "model": model_state, **extra}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DataError(f"{path}: could not write checkpoint ({exc.strerror or exc})") from None
    return path


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
    if not path.exists():
        raise DataError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # truncated zip, foreign pickle, ...
        raise DataError(f"{path}: not a readable extremefast checkpoint ({type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or "format" not in ckpt or "config" not in ckpt:
        raise DataError(f"{path}: not an extremefast checkpoint")
    if ckpt["format"] != CHECKPOINT_FORMAT:
        raise DataError(f"{path}: checkpoint format {ckpt['format']} (extremefast {ckpt.get('version', '?')}) is "
                        f"incompatible with this version's format {CHECKPOINT_FORMAT} (extremefast {__version__})")
    return ckpt
