"""Entry points of training: one process, or several through torch.distributed."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..data.dataset import open_dataset, train_val_split
from ..errors import BackendUnavailable, InputError
from ..nifti import ensure_output_folder
from ..xp import cuda_available
from .cases import load_cases
from .config import TrainConfig
from .scheme import Runtime, Scheme


def train(data: str, label: int | None, organ: str | None, out, config: TrainConfig, *, data_root=None,
          device: str = "auto", resume: bool = False, log=print, progress=None, rank: int = 0,
          world_size: int = 1, synthetic_cases: int = 10) -> dict:
    """Run the scheme of ``config.variant`` on ``data`` and write the outputs in ``out``."""
    out = ensure_output_folder(out)
    ds = open_dataset(data, data_root=data_root, synthetic_cases=synthetic_cases, synthetic_seed=config.seed)
    if label is None and organ is None and data == "synthetic":
        organ = "spleen"
    value = ds.resolve_label(label, organ)
    train_cases, val_cases = train_val_split(ds, config.n_val, seed=config.seed)
    if config.max_cases is not None:
        train_cases = train_cases[: config.max_cases]
    if ds.modality.upper() != "CT" and config.window is not None:
        # HU windows mean nothing for MR: percentiles normalise, and the checkpoint says so
        config = config.with_(window=None)
    window = config.window
    train_data = load_cases(ds, train_cases, value, window)
    val_data = load_cases(ds, val_cases, value, window)
    dev = resolve_torch_device(device, rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        if cuda_available():  # the random walker (CuPy) works on this rank's GPU too
            import cupy

            cupy.cuda.Device(dev.index).use()
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(config.seed)
    rt = Runtime(dev, rank, world_size, log=log if rank == 0 else (lambda *_: None), progress=progress)
    scheme = Scheme(config, train_data, val_data, out, rt, resume=resume)
    if world_size > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        scheme.model = DDP(scheme.model, device_ids=[dev.index] if dev.type == "cuda" else None)
        scheme.optimizer = torch.optim.Adam(scheme.model.parameters(), lr=config.learning_rate)
    if config.compile and dev.type == "cuda":
        scheme._forward = torch.compile(scheme.model)
    return scheme.run()


def resolve_torch_device(device: str, rank: int = 0) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise BackendUnavailable("--device cuda: no CUDA GPU is visible to PyTorch")
        return torch.device("cuda", rank % torch.cuda.device_count())
    if device != "cpu":
        raise InputError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    return torch.device("cpu")


def _worker(rank: int, world_size: int, port: int, kwargs: dict):
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    backend = "nccl" if kwargs.get("device", "auto") != "cpu" and torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend, rank=rank, world_size=world_size)
    try:
        if backend == "gloo":
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
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
                 synthetic_seed=kwargs["config"].seed)
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
