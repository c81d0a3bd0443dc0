"""Annotate a scan from six clicks with a trained model, in the original image space."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.points import check_points
from ..errors import InputError
from ..model import (
    TrainConfig,
    build_model,
    load_checkpoint,
    network_box,
    network_input,
    predict_probability,
    probability_on_image,
    resolve_torch_device,
)
from ..pseudo.pseudo_label import normalise_intensity, pseudo_label_from_points
from ..pseudo.refine import average_with_walker, refine_probability
from ..pseudo.roi import check_spacing


@dataclass
class Predictor:
    """A trained model and what its predictions need (from a ``model.pt`` checkpoint)."""

    model: torch.nn.Module
    config: TrainConfig
    device: torch.device

    @classmethod
    def from_checkpoint(cls, path, device: str = "cpu") -> "Predictor":
        """Load ``path`` (``model.pt`` or ``state.pt`` of a training run); a checkpoint from an
        incompatible version, a truncated or a foreign file is refused with one line."""
        ckpt = load_checkpoint(path)
        config = TrainConfig.from_dict(ckpt["config"])
        model = build_model(config)
        try:
            model.load_state_dict(ckpt["model"])
        except (KeyError, RuntimeError, TypeError) as exc:
            raise InputError(f"{path}: the weights do not fit the network its configuration describes "
                             f"({type(exc).__name__})") from None
        dev = resolve_torch_device(device)
        return cls(model.to(dev).eval(), config, dev)

    def predict(self, image, points, *, affine=None, spacing=None, refine: bool = False,
                with_walker: bool = False) -> np.ndarray:
        """Probability of the organ on the grid of ``image`` (float32, same shape).

        ``image``: 3D array of raw intensities (HU for CT), normalised as in training.
        ``points``: the six clicks, voxel indices (6, 3). ``spacing`` (mm per axis), or
        ``affine`` from which it is taken. ``refine`` regularises the prediction with the
        random walker on its uncertainty band, as the training rounds do. ``with_walker``
        averages the prediction with the random walker's pseudo label from the same clicks
        (the training's round 0: :func:`~extremefast.pseudo.refine.average_with_walker`).

        With ``affine`` the scan is processed with its axes in the order closest to LPS, as in
        training, so that any voxel order of the same scan gives the same mask in world space.
        """
        if affine is not None and spacing is None:
            return self._predict_oriented(np.asarray(image), points, affine, refine, with_walker)
        image = np.asarray(image)
        if image.ndim != 3:
            raise InputError(f"image must be 3D, got shape {image.shape}")
        if not np.issubdtype(image.dtype, np.number) or np.issubdtype(image.dtype, np.complexfloating):
            raise InputError(f"image must hold real numbers, got dtype {image.dtype}")
        if not np.all(np.isfinite(image)):
            raise InputError("image holds NaN or Inf voxels")
        spacing = _spacing(affine, spacing)
        pts = check_points(points, image.shape)
        cfg = self.config
        norm = normalise_intensity(image, cfg.window)
        box = network_box(pts, spacing, image.shape, cfg)
        volume = torch.from_numpy(norm[None]).to(self.device)
        x, _, _ = network_input(volume, box, pts, cfg)
        with torch.no_grad():
            p = predict_probability(self.model, x, cfg).cpu().numpy()
        prob = probability_on_image(p, box, pts, cfg)
        if refine:
            prob = refine_probability(prob, norm, pts, spacing, **cfg.refine_settings)
        if with_walker:
            walker = pseudo_label_from_points(image, spacing, pts, cfg.pseudo_label_settings).in_image_space()
            prob = average_with_walker(prob, walker)
        return np.clip(prob, 0.0, 1.0).astype(np.float32)


    def _predict_oriented(self, image, points, affine, refine: bool, with_walker: bool) -> np.ndarray:
        from ..imageio import in_file_grid, orient
        from ..nifti import Volume

        _spacing(affine, None)  # a one-line error for a malformed affine
        if image.ndim != 3:
            raise InputError(f"image must be 3D, got shape {image.shape}")
        volume = orient(Volume(image, np.asarray(affine, dtype=np.float64)))
        pts = check_points(points, image.shape)
        # voxel indices of the given grid -> those of the reoriented one, through world space
        world = np.c_[pts, np.ones(len(pts))] @ np.asarray(affine, dtype=np.float64).T
        oriented = np.rint((world @ np.linalg.inv(volume.affine).T)[:, :3]).astype(np.int64)
        prob = self.predict(volume.array, oriented, spacing=volume.spacing, refine=refine, with_walker=with_walker)
        return in_file_grid(volume, prob)[0]


def _spacing(affine, spacing) -> np.ndarray:
    from ..nifti import voxel_spacing

    if spacing is None and affine is None:
        raise InputError("give the image's affine or its spacing")
    if spacing is None:
        affine = np.asarray(affine, dtype=np.float64)
        if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
            raise InputError(f"affine must be a finite 4x4 matrix, got shape {affine.shape}")
        spacing = voxel_spacing(affine)
    return check_spacing(spacing)


def annotate(image, points, checkpoint, *, affine=None, spacing=None, refine: bool = False,
             with_walker: bool = False, probabilities: bool = False, device: str = "cpu"):
    """One call from six clicks to a segmentation of ``image`` (arrays in memory).

    Returns a uint8 mask (``probabilities=False``) or float32 probabilities, of the
    image's shape. ``checkpoint`` is a path or a :class:`Predictor` (to reuse one model
    for many images).

    Parameters
    ----------
    image : ndarray
        3D scan, raw intensities (HU for CT).
    points : array_like
        The six clicks as (6, 3) voxel indices of ``image``.
    checkpoint : str, Path or Predictor
        ``model.pt`` of a training run, or a loaded :class:`Predictor`.
    affine, spacing : optional
        The scan's voxel-to-world affine (RAS) or its voxel size in mm; one of them is needed.
    refine : bool
        Regularise with the random walker on the uncertainty band.
    with_walker : bool
        Average with the random walker's pseudo label from the same clicks.
    probabilities : bool
        Return float32 probabilities instead of a 0/1 mask.
    device : {"cpu", "cuda", "auto"}

    Returns
    -------
    ndarray
        uint8 mask or float32 probabilities, the shape of ``image``.
    """
    predictor = checkpoint if isinstance(checkpoint, Predictor) else Predictor.from_checkpoint(checkpoint, device)
    prob = predictor.predict(image, points, affine=affine, spacing=spacing, refine=refine, with_walker=with_walker)
    return prob if probabilities else (prob >= 0.5).astype(np.uint8)


def predict_file(predictor: Predictor, image_path, points_path, out_path, *, refine: bool = False,
                 with_walker: bool = False, probabilities: bool = False, organ: str = "organ", return_details: bool = False):
    """Scan + points file -> mask (or probabilities) on the scan's grid, in the format
    ``out_path`` names (NIfTI, NRRD, ``.seg.nrrd`` for 3D Slicer, MetaImage).

    The scan may be any format of :mod:`extremefast.imageio` (a DICOM series as a folder).
    It is processed in the axis order closest to LPS (:meth:`Predictor.predict`), so every
    format of the same scan gives the same mask in world space; the output is written in the
    scan's own voxel order.
    With ``return_details`` returns (path, record, contact-sheet tile) instead of the path.

    Parameters
    ----------
    predictor : Predictor
    image_path : path
        The scan (a file, or a folder holding one DICOM series).
    points_path : path
        Its points file (voxel/RAS/LPS JSON or Slicer ``.mrk.json``).
    out_path : path
        The output; its suffix picks the format.
    refine, with_walker, probabilities : bool
        As :func:`annotate`.
    organ : str
        The segment's name in ``.seg.nrrd`` outputs.
    return_details : bool

    Returns
    -------
    Path, or (Path, dict, ndarray) with ``return_details``
    """
    import time

    from ..data.points import read_points
    from ..imageio import load_image, save_image

    t0 = time.perf_counter()
    volume = load_image(image_path, check_finite=True)
    pts = read_points(points_path, volume.affine, volume.shape)
    prob = predictor.predict(volume.array, pts, affine=volume.affine, refine=refine, with_walker=with_walker)
    out = prob if probabilities else (prob >= 0.5).astype(np.uint8)
    path = save_image(out_path, out, volume.affine, segment_name=organ)
    if not return_details:
        return path
    from ..viz import contact_tile

    voxels = int((prob >= 0.5).sum())
    record = {"image": str(image_path), "points": str(points_path), "output": str(path), "voxels": voxels,
              "volume_ml": voxels * float(np.prod(volume.spacing)) / 1000.0, "seconds": time.perf_counter() - t0}
    norm = normalise_intensity(volume.array, predictor.config.window)
    tile = contact_tile(norm, prob, pts, f"{Path(path).name}: {record['volume_ml']:.0f} ml")
    return path, record, tile
