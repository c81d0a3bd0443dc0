"""Random-walker refinement of a network's probability on its uncertainty band (step 4).

One case (:func:`refine_probability`) or a round's worth (:func:`refine_probabilities`):
on a GPU the crops, seeds and paste-back run on the device (CuPy) and the random walks of
all cases are one stacked solve (:func:`extremefast.random_walker_batch`); on the CPU each
case is solved in turn. Both run the same code.
"""
from __future__ import annotations

import numpy as np

from ..random_walk import random_walker_batch
from ..xp import array_module, resolve_device
from .roi import crop_resample, paste_back, roi_box
from .seeds import BACKGROUND, FOREGROUND, UNKNOWN, uncertainty_seeds


def refine_probability(prob, image, points, spacing, *, pad_mm: float, crop_size: int, radius: float,
                       beta: float, ridge_above: float | None = None, device: str = "auto") -> np.ndarray:
    """``prob`` (original grid) regularised by the random walker: P >= 0.5 and P < 0.5,
    each eroded by a ball of ``radius`` crop voxels, are the seeds (with the confident ridge
    of thin parts, ``ridge_above``: :func:`~extremefast.pseudo.seeds.uncertainty_seeds`);
    the band between is solved on a ``crop_size``^3 crop of the normalised ``image`` around
    the clicks.

    Returns ``prob`` unchanged where the band leaves no foreground, background or
    unknown voxel to work with.
    """
    return refine_probabilities([(prob, image, points, spacing)], pad_mm=pad_mm, crop_size=crop_size,
                                radius=radius, beta=beta, ridge_above=ridge_above, device=device)[0]


def refine_probabilities(items, *, pad_mm: float, crop_size: int, radius: float, beta: float,
                         ridge_above: float | None = None, device: str = "auto") -> list[np.ndarray]:
    """:func:`refine_probability` for many cases: ``items`` is a sequence of
    ``(prob, image, points, spacing)``; returns the refined probabilities (numpy, original
    grids) in order. On a GPU everything but the seed preprocessing of the random walker
    runs on the device, and the random walks are solved together; on the CPU the same
    steps run case by case."""
    am = array_module(resolve_device(device))
    xp = am.xp
    out, boxes, crops, seeds_list, todo = [], [], [], [], []
    for i, (prob, image, points, spacing) in enumerate(items):
        out.append(prob)
        box = roi_box(points, spacing, image.shape, pad_mm, (crop_size,) * 3)
        seeds = uncertainty_seeds(crop_resample(xp.asarray(prob, dtype=np.float32), box, order=1), radius,
                                   ridge_above=ridge_above)
        if not _has_band(seeds):
            continue
        todo.append(i)
        boxes.append(box)
        crops.append(am.to_numpy(crop_resample(xp.asarray(image), box, order=1)))
        seeds_list.append(am.to_numpy(seeds))
    if todo:
        # as in rw_probability: clipped below for the label map; the walker's warnings pass through
        solved = random_walker_batch(crops, seeds_list, beta=beta, device=am.device)
        for i, box, full in zip(todo, boxes, solved):
            fg = xp.asarray(np.clip(full[FOREGROUND - 1], 0.0, 1.0).astype(np.float32))  # label k: row k - 1
            out[i] = am.to_numpy(paste_back(fg, box, order=1))
    return out


def _has_band(seeds) -> bool:
    """Foreground, background and unknown voxels are all present."""
    return all(bool((seeds == code).any()) for code in (UNKNOWN, BACKGROUND, FOREGROUND))


def average_with_walker(prob, walker_prob):
    """The network's probability averaged, with equal weights, with the random walker's
    pseudo label from the same clicks (both on the image's grid): what ``with_walker``
    predictions give.

    The two fail on different voxels: on the validation cases of three ct_sarcoma splits
    the network of variant f alone gave 0.767 Dice on average, the walker 0.794 and the
    average 0.822; of 17 CPU-trained models on ct_sarcoma, the mandible and the right parotid
    the average beat the network for 16. A network far above the walker loses by it (the
    mandible's models trained with the averaged refresh: 0.003-0.010), so predictions use it
    only when asked (``docs/history.md``, "The walker beside the network").
    """
    return 0.5 * (np.asarray(prob, dtype=np.float32) + np.asarray(walker_prob, dtype=np.float32))
