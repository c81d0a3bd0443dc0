"""Entry points of training: one process, or several through torch.distributed."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..data.dataset import open_dataset, train_val_split
from ..data.points import pair_clicks
from ..model import TrainConfig, default_config, describe_sizes, resolve_torch_device
from ..nifti import ensure_output_folder
from ..pseudo.clicks import summarise_case_notes
from ..pseudo.pseudo_label import window_for_modality
from ..xp import cuda_available
from .cases import load_cases
from .scheme import Runtime, Scheme


def train(data: str, label: int | None, organ: str | None, out, config: TrainConfig | None = None, *,
          points=None, data_root=None, device: str = "auto", resume: bool = False, log=print, progress=None,
          rank: int = 0, world_size: int = 1, synthetic_cases: int = 10) -> dict:
    """Run the scheme of ``config.variant`` on ``data`` and write the outputs in ``out``.

    ``points``: a folder of the annotator's clicks (``CASE.mrk.json`` or ``CASE.json`` per
    scan); then no mask is needed, cases without a points file are left out (and listed),
    and masks, where there are any, serve the Dice columns only. Without it the clicks are
    the masks' extreme points. ``config`` None: :func:`default_config` for the device.
    """
    out = ensure_output_folder(out)
    dev = resolve_torch_device(device, rank)
    if config is None:
        config = default_config(cuda=dev.type == "cuda")
        log(f"settings for the {'GPU' if dev.type == 'cuda' else 'CPU'}: {describe_sizes(config)}")
    ds = open_dataset(data, data_root=data_root, synthetic_cases=synthetic_cases, synthetic_seed=config.seed)
    paired, without = pair_clicks(ds, points, log)
    value = ds.organ_label(label, organ, clicks_given=points is not None)
    clicked = points is not None
    config = config.with_(selection=config.selection or ("settle" if clicked else "masks"),
                          click_noise_mm=(0.0 if clicked else 2.0) if config.click_noise_mm is None
                          else config.click_noise_mm,
                          window=window_for_modality(config.window, ds.modality))
    train_cases, val_cases = train_val_split(ds, config.n_val, seed=config.seed,
                                             cases=None if paired is None else [c for c in ds.cases if c.name in paired],
                                             fold=config.fold)
    if config.max_cases is not None:
        train_cases = train_cases[: config.max_cases]
    skipped, notes = {}, {}
    train_data = load_cases(ds, train_cases, value, config.window, points=paired, skipped=skipped, notes=notes)
    val_data = load_cases(ds, val_cases, value, config.window, points=paired, skipped=skipped, notes=notes)
    for name, reason in skipped.items():
        log(f"{name}: left out: {reason}")
    for line in summarise_case_notes(notes, len(train_data) + len(val_data)):
        log(f"note: {line} (per case: case_notes in summary.json)")
    if dev.type == "cuda":
        _use_gpu(dev)
    torch.manual_seed(config.seed)
    rt = Runtime(dev, rank, world_size, log=log if rank == 0 else (lambda *_: None), progress=progress)
    summary = Scheme(config, train_data, val_data, out, rt, resume=resume).run()
    if rank == 0:
        extra = dict(skipped_cases=skipped, case_notes=notes)
        if points is not None:
            extra.update(points_folder=str(points), cases_without_points=list(without))
        summary = _add_to_summary(out, summary, extra)
    return summary


def _use_gpu(dev: torch.device):
    """Run this rank's network and random walker (CuPy) on the GPU ``dev``, with cuDNN's
    autotuner and TF32 matrix products."""
    torch.cuda.set_device(dev)
    if cuda_available():
        import cupy

        cupy.cuda.Device(dev.index).use()
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def _add_to_summary(out, summary: dict, extra: dict) -> dict:
    """Say in ``summary.json`` what the scheme itself does not know: where the clicks came
    from, which cases had none, which were left out and why, the notes on the others."""
    from ..jsonio import write_json

    summary = dict(summary, **extra)
    write_json(Path(out) / "summary.json", summary)
    return summary


def _worker(rank: int, world_size: int, port: int, kwargs: dict):
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    backend = "nccl" if kwargs.get("device", "auto") != "cpu" and torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend, rank=rank, world_size=world_size)
    try:
        if backend == "gloo":
            kwargs = dict(kwargs, device="cpu")
        train(rank=rank, world_size=world_size, **kwargs)
    finally:
        dist.destroy_process_group()


def train_distributed(world_size: int, **kwargs) -> dict:
    """``world_size`` processes with DistributedDataParallel (NCCL on GPUs, gloo on the CPU).

    Under torchrun (RANK/WORLD_SIZE set) this process is one rank already.
    """
    import socket

    import torch.multiprocessing as mp

    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        import torch.distributed as dist

        rank, ws = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        backend = "nccl" if torch.cuda.is_available() and kwargs.get("device", "auto") != "cpu" else "gloo"
        dist.init_process_group(backend)
        try:
            return train(rank=rank, world_size=ws, **kwargs)
        finally:
            dist.destroy_process_group()
    # open (and, for phantoms, write) the data once here rather than racing in every rank
    open_dataset(kwargs["data"], data_root=kwargs.get("data_root"), synthetic_cases=kwargs.get("synthetic_cases", 10),
                 synthetic_seed=(kwargs.get("config") or TrainConfig()).seed)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = kwargs.pop("log", print)
    kwargs.pop("progress", None)
    mp.spawn(_worker, args=(world_size, port, kwargs), nprocs=world_size, join=True)
    from ..jsonio import read_json

    summary = read_json(Path(kwargs["out"]) / "summary.json")
    for row in summary["rounds"]:
        log(f"round {row['round']:>2}: validation Dice {row['val_dice']['mean']:.3f}")
    return summary
