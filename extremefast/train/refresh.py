"""Pseudo labels between rounds: round 0's random walks from the clicks, and each round's
refresh (the model's prediction regularised by the random walker on its uncertainty band)."""
from __future__ import annotations

import time

import numpy as np

from ..data.cache import ArrayCache
from ..errors import DataError
from ..model import TrainConfig
from ..pseudo.pseudo_label import pseudo_label_from_points
from ..pseudo.refine import refine_probabilities
from ..xp import cuda_available
from .cases import CaseData
from .trainer import Trainer


def initial_pseudo_labels(cases: list[CaseData], config: TrainConfig, cache: ArrayCache, rt):
    """Round 0: random-walker pseudo labels of every case from its clicks (sharded over ranks;
    cached, so a resumed run reads them back)."""
    settings = config.pseudo_label_settings
    for case in cases:
        cached = cache.get(f"r0_{case.name}")
        if cached is not None:
            case.pseudo = cached[0]["pseudo"]
    todo = [c for c in cases if c.pseudo is None]
    mine = todo[rt.rank::rt.world_size]
    for case in mine:
        if case.raw is None:
            raise DataError(f"{case.name}: the scan's own intensities, which round 0 crops, are no longer held")
        pl = pseudo_label_from_points(case.raw, case.spacing, case.points, settings)
        case.pseudo = pl.in_image_space()
        if rt.is_main or rt.world_size > 1:
            cache.put(f"r0_{case.name}", {"pseudo": case.pseudo})
    gather_pseudo(todo, cache, rt)
    for case in cases:
        case.raw = None  # round 0 is done: only the windowed image is used from here on


def gather_pseudo(todo: list[CaseData], cache: ArrayCache, rt, rnd: int = 0):
    """With several ranks: wait for the pseudo labels of round ``rnd`` the other ranks wrote."""
    if rt.world_size == 1:
        return
    import torch.distributed as dist

    dist.barrier()
    for case in todo:  # every rank wrote its share to the cache; read the others' back
        if case.pseudo is None:
            got = None
            for _ in range(600):
                got = cache.get(f"r{rnd}_{case.name}")
                if got is not None:
                    break
                time.sleep(0.1)
            if got is None:
                raise DataError(f"{cache.folder}: pseudo label of {case.name} from another rank is missing")
            case.pseudo = got[0]["pseudo"]


def refreshed_labels(trainer: Trainer, cases: list[CaseData], config: TrainConfig, rt) -> tuple[dict[str, np.ndarray], int]:
    """Next round's pseudo labels: each prediction, random-walker regularised on the
    uncertainty band (P >= .5 and P < .5 eroded by a ball of ``rw_radius``).

    The random walker runs on a crop of ``rw_crop_size`` (finer than the network's crop
    on small CPU configurations), so the band follows the image's edges at that scale.
    On a GPU with CuPy the crops, seeds and paste-back run on the device and the cases'
    random walks are solved together; on the CPU one after another.

    Returns the labels by case name and how many cases kept their current label (an empty
    prediction).
    """
    out, items, names = {}, [], []
    kept_previous = 0
    for case in cases:
        prob = trainer.predict_image(case)
        if not (prob >= 0.5).any():
            # an empty prediction (an under-trained network whose soft Dice optimum stays
            # below 0.5) would erase the organ from every later round: keep the current label
            kept_previous += 1
            out[case.name] = case.pseudo
            continue
        if not config.switches["rw_regularise"]:
            out[case.name] = prob
            continue
        # (no warm start: starting the random walk from the current pseudo label measured
        # slower, 0.83 s against 0.68 s per refresh of the main job's 8 cases on the CPU)
        items.append((prob, case.image, case.points, case.spacing))
        names.append(case.name)
    device = "cuda" if (rt.device.type == "cuda" and cuda_available()) else "cpu"
    refined = refine_probabilities(items, device=device, **config.refine_settings)
    out.update(zip(names, refined))
    return out, kept_previous
