"""Pseudo labels from six clicks (paper steps 1-2): crop, scribbles, seeds, random walker."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy import ndimage as ndi

from ..data.points import check_points
from ..defaults import CROP_SIZE, CT_WINDOW, PAD_MM
from ..errors import InputError
from ..random_walk import random_walker
from ..xp import module_of
from .geodesic import geodesic_scribble_sets, geodesic_scribbles, gradient_cost
from .roi import Box, check_spacing, crop_resample, paste_back, roi_box
from .seeds import BACKGROUND, FOREGROUND, UNKNOWN, scribble_seeds


@dataclass(frozen=True)
class PseudoLabelConfig:
    """Settings of steps 1-2. ``PRESETS`` holds the named sets.

    window: intensity window (HU) mapped to [0, 1]; None scales by the 0.5-99.5 percentiles
        (MR and other modalities without absolute units).
    r_foreground, r_background: seed radii in crop voxels (the paper's 2 and 30), or, when
        ``radii_relative`` is set, in units of the organ's smallest half-extent in crop
        voxels (so the seeds scale with the organ).
    background_outside_box: voxels outside the clicks' bounding box are background seeds
        (the clicks say the organ lies inside it).
    background_in_box: voxels inside the box farther than ``r_background`` from the scribble are
        background seeds too (the paper's rule). False, with ``background_outside_box``: inside the
        box only the intensity rules set background and the walker decides the rest; an organ
        larger than the radius (liver, spleen, large tumours) otherwise has its far parts seeded
        as background.
    scribble_intensity_k: where > 0, only scribble voxels whose intensity lies within k robust
        standard deviations (1.4826 x MAD) of the scribble's median seed the foreground, so a
        path that leaves a concave organ does not seed what it crosses (0: every voxel).
    background_intensity_k: where > 0, voxels inside the box farther than k robust standard
        deviations from that median are background seeds (an intensity model of the organ).
    beyond_window: where > 0 and the organ lies above the window (the scribble's median
        intensity saturates it: bone in a soft-tissue window), voxels farther than this
        fraction of the window from the organ's end of it are background seeds, and only
        scribble voxels within it seed the foreground: such an organ is told apart by its
        intensity alone, and a path that crosses soft tissue between two arms of it (the
        mandible's U) seeds nothing there.
    path_intensity_weight: where > 0, the geodesic paths are searched again on a cost that adds
        this many times the mean cost per robust standard deviation of intensity beyond
        ``path_intensity_free`` from the organ's intensity, which the clicks give: the median and
        robust spread of the voxels ``path_intensity_depth`` crop voxels inside each click along
        its axis (:func:`inward_samples`). A path then stays in the organ where the cheapest
        path by gradient alone leaves it (a concave or curved organ: the pancreas, a tumour
        wrapped round muscle).
    plain_path_k: with ``path_intensity_weight``, voxels of the first (gradient-only) paths
        within this many robust standard deviations of the organ's intensity also seed the
        foreground where such a run of them touches the second paths (0: only the second paths).
    seed_intensity_k: where > 0, the foreground seeds grown from the scribble (``r_foreground``)
        keep only voxels within this many robust standard deviations of the organ's intensity as
        the clicks' inward samples give it; the others are left to the walker (the scribble's own
        voxels stay seeds). A thin organ (the pancreas) is narrower than the grown seeds, which
        otherwise seed the fat and bowel beside it. Not applied where more than 15% of those
        samples lie at one end of the window (an organ holding air, as the larynx, or bone).
    """

    crop_size: tuple[int, int, int] = (CROP_SIZE,) * 3
    pad_mm: float = PAD_MM
    window: tuple[float, float] | None = CT_WINDOW
    r_foreground: float = 2.0
    r_background: float = 30.0
    radii_relative: bool = False
    background_outside_box: bool = False
    background_in_box: bool = True
    cost_smooth_sigma: float = 0.0
    rw_smooth_sigma: float = 0.0
    beta: float = 130.0
    rw_spacing: bool = False
    rw_tol: float = 1e-3
    scribble_intensity_k: float = 0.0
    background_intensity_k: float = 0.0
    beyond_window: float = 0.0
    path_intensity_weight: float = 0.0
    path_intensity_free: float = 1.5
    path_intensity_depth: float = 4.0
    plain_path_k: float = 0.0
    seed_intensity_k: float = 0.0
    preset: str = "custom"

    def with_(self, **kw) -> "PseudoLabelConfig":
        return replace(self, **kw)

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS = {
    # The paper's settings: radii 2 and 30 voxels in a 128^3 crop, scikit-image defaults.
    "paper": PseudoLabelConfig(preset="paper"),
    # Measured better on real scans and phantoms (docs/history.md): thicker foreground
    # seeds, a sharper edge weighting (beta 4000 instead of 130), background seeds
    # outside the box the clicks span, and for an organ above the window (bone) an intensity
    # rule (mandible of ct_headneck 0.543 -> 0.791 over 60 cases, no other organ changed).
    # Scribbles keep to the organ's intensity as the clicks' inward samples give it (ct_sarcoma
    # 0.643 -> 0.749 over 25 tumours, MR pancreas 0.503 -> 0.669; docs/history.md).
    # The grown foreground seeds keep to the organ's intensity too (CT pancreas 0.642 -> 0.655,
    # the lung tumour 0.755 -> 0.846, no case lower by more than 0.008; docs/history.md).
    # Inside the box no seed from the background radius: the walker decides (ct_sarcoma 0.749 ->
    # 0.791 over 25 tumours, CT liver 0.520 -> 0.752; docs/history.md).
    "default": PseudoLabelConfig(r_foreground=5.0, beta=4000.0, background_outside_box=True, background_in_box=False,
                                 beyond_window=0.9, path_intensity_weight=0.5, plain_path_k=3.0,
                                 seed_intensity_k=3.0, preset="default"),
}


def get_preset(name: str, **overrides) -> PseudoLabelConfig:
    """The pseudo-label settings of a named preset, with some fields changed.

    Parameters
    ----------
    name : {"default", "paper"}
        ``"paper"``: the published radii (2 and 30 voxels) and beta 130; ``"default"``: the
        settings measured best on the shared scans (docs/history.md).
    **overrides
        :class:`PseudoLabelConfig` fields to change.

    Returns
    -------
    PseudoLabelConfig
    """
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name].with_(**overrides) if overrides else PRESETS[name]


def window_for_modality(window, modality: str):
    """The intensity window to use for a scan of ``modality``: Hounsfield windows mean
    nothing outside CT, so other modalities get None (percentile scaling)."""
    return window if str(modality).upper() == "CT" else None


def normalise_intensity(image, window) -> np.ndarray:
    """Clip to ``window`` and scale to [0, 1]; with ``window=None`` use the 0.5/99.5 percentiles.
    (On the GPU for a CuPy image.)

    Parameters
    ----------
    image : ndarray
        Raw intensities (numpy or CuPy).
    window : (float, float) or None
        Intensity window (e.g. HU); None: the image's own 0.5 and 99.5 percentiles.

    Returns
    -------
    ndarray
        float32 image in [0, 1].
    """
    xp = module_of(image).xp
    image = xp.asarray(image, dtype=np.float32)
    if window is None:
        lo, hi = (float(v) for v in xp.percentile(image, xp.asarray([0.5, 99.5])))
    else:
        lo, hi = float(window[0]), float(window[1])
    if not hi > lo:
        return xp.zeros_like(image)
    return xp.clip((image - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


@dataclass
class PseudoLabel:
    """Everything one case's pseudo label produced, in crop space and the original box."""

    box: Box
    image: np.ndarray           # normalised crop
    points: np.ndarray          # clicks in continuous crop coordinates (6, 3)
    scribble: np.ndarray
    seeds: np.ndarray
    probability: np.ndarray     # P(foreground) in crop space

    def in_image_space(self) -> np.ndarray:
        return paste_back(self.probability, self.box, order=1)


def rw_probability(image, seeds, beta, tol=1e-3, spacing=None) -> np.ndarray:
    """P(foreground) of seeds (``BACKGROUND``, ``FOREGROUND``; ``UNKNOWN`` solved) by the random walker
    (``mode='rb'``, whose coarse correction keeps real CT at beta 4000 within ``prob_tol``
    of [0, 1]), clipped to [0, 1] for the label map only after the solve: a solve that did
    not converge, or left that range, still warns (the walker's own warnings pass through).
    """
    full = random_walker(image, seeds, beta=beta, mode="rb", tol=tol, spacing=spacing, return_full_prob=True)
    prob = full[FOREGROUND - 1]  # label k's row is k - 1
    return np.clip(prob, 0.0, 1.0).astype(np.float32)


def prepare_crop(image, spacing, points, config: PseudoLabelConfig):
    """Box, normalised crop, crop spacing and points in crop coordinates.

    Parameters
    ----------
    image : ndarray
        3D scan, raw intensities.
    spacing : sequence of float
        Voxel size in mm.
    points : array_like
        (6, 3) voxel indices of the clicks.
    config : PseudoLabelConfig

    Returns
    -------
    box : Box
    crop : ndarray
        Normalised image crop of ``config.crop_size``.
    crop_spacing : ndarray
        The crop's voxel size in mm.
    points_crop : ndarray
        The clicks in crop coordinates.
    """
    image = np.asarray(image)
    if image.ndim != 3:
        raise InputError(f"image must be 3D, got shape {image.shape}")
    points = check_points(points, image.shape)
    spacing = check_spacing(spacing)
    box = roi_box(points, spacing, image.shape, config.pad_mm, config.crop_size)
    sub = image[tuple(slice(a, b) for a, b in zip(box.start, box.stop))]
    if not np.all(np.isfinite(sub)):
        raise InputError("image holds NaN or Inf inside the region of interest")
    crop = normalise_intensity(crop_resample(image, box, order=1), config.window)
    return box, crop, box.crop_spacing(spacing), box.to_crop(points)


def pseudo_label_from_points(image, spacing, points, config: PseudoLabelConfig | None = None) -> PseudoLabel:
    """The random-walker pseudo label of one organ from its six clicks (voxel indices).

    Parameters
    ----------
    image : ndarray
        3D scan, raw intensities (HU for CT).
    spacing : sequence of float
        Voxel size in mm.
    points : array_like
        (6, 3) voxel indices of the clicks (pairs of opposite extreme points).
    config : PseudoLabelConfig, optional
        Default: the ``"default"`` preset.

    Returns
    -------
    PseudoLabel
        The crop's probability and what made it; ``in_image_space()`` pastes it back.
    """
    config = config or PRESETS["default"]
    box, crop, crop_spacing, pts = prepare_crop(image, spacing, points, config)
    return pseudo_label_crop(crop, pts, crop_spacing, config, box)


def pseudo_label_crop(crop, points_crop, crop_spacing, config: PseudoLabelConfig, box: Box | None = None) -> PseudoLabel:
    """Steps 1-2 on an already cropped, normalised image.

    Parameters
    ----------
    crop : ndarray
        Normalised 3D crop (see :func:`prepare_crop`).
    points_crop : array_like
        (6, 3) clicks in crop coordinates.
    crop_spacing : sequence of float
        The crop's voxel size in mm.
    config : PseudoLabelConfig
    box : Box, optional
        The crop's place in the image (for :meth:`PseudoLabel.in_image_space`).

    Returns
    -------
    PseudoLabel
        Probability, scribbles and seeds in the crop.
    """
    problem = random_walker_problem(crop, points_crop, crop_spacing, config)
    prob = rw_probability(problem.data, problem.seeds, beta=config.beta, tol=config.rw_tol, spacing=problem.spacing)
    return PseudoLabel(box, crop, np.asarray(points_crop), problem.scribble, problem.seeds, prob)


SATURATED = 0.98  # a scribble whose median lies above this saturates the window


def _above_window(values) -> bool:
    """Whether the organ lies above the window (the scribble's median intensity >= SATURATED).

    Only the bright side: a scribble mostly at the window's dark end is as often a path that
    left a soft-tissue organ through air (the right parotid of ct_headneck pt_92 ran half through
    the air beside the ear, and the rule took its Dice from 0.61 to 0)."""
    return float(np.median(values)) >= SATURATED


TRUNCATED_SHARE = 0.15  # an organ with more of its inward samples at one end of the window holds air or bone


def _window_truncates(samples) -> bool:
    """Whether more than ``TRUNCATED_SHARE`` of the organ's samples lie at one end of the window
    (below ``1 - SATURATED`` or above ``SATURATED``): the organ holds a tissue the window cannot
    resolve (the larynx's air, bone), so its intensity is not one peak that a median and a
    spread describe."""
    return max(float(np.mean(samples <= 1.0 - SATURATED)), float(np.mean(samples >= SATURATED))) > TRUNCATED_SHARE


def _with_clicks(scribble, points) -> np.ndarray:
    """``scribble`` (modified) with the clicks' voxels set: they seed whatever their intensity."""
    scribble[tuple(np.asarray(points).T)] = True
    return scribble


def _robust_centre(values) -> tuple[float, float]:
    """Median and robust standard deviation (1.4826 x MAD, at least 0.01) of ``values``.

    Written out rather than ``scipy.stats.median_abs_deviation(values, scale="normal")``, which
    divides by 0.6744897... (x 1.4826022): that spread, 1.5e-6 wider, moves threshold voxels and
    changed the seeds of 4 of the 145 shared cases the presets were measured on (ct_sarcoma
    STS_018; ct_headneck mandible pt_173, right parotid pt_162 and pt_183)."""
    centre = float(np.median(values))
    return centre, max(1.4826 * float(np.median(np.abs(values - centre))), 0.01)


def inward_samples(crop, points, depth: float) -> np.ndarray:
    """Intensities just inside the organ by its clicks: the 3x3x3 voxels around each click moved
    ``depth`` voxels (at most half the organ's extent) along its axis towards the opposite click.
    An extreme point lies on the organ's edge and the organ lies on that side of it, so these
    sample the organ itself even where a path between the clicks leaves it."""
    points = np.asarray(points, dtype=np.int64)
    high = np.asarray(crop.shape) - 2
    values = []
    for i, point in enumerate(points):
        axis, other = i // 2, points[i ^ 1]
        extent = abs(int(other[axis]) - int(point[axis]))
        q = point.copy()
        q[axis] += int(np.sign(other[axis] - point[axis])) * int(min(depth, extent // 2))
        q = np.clip(q, 1, high)
        values.append(crop[q[0] - 1:q[0] + 2, q[1] - 1:q[1] + 2, q[2] - 1:q[2] + 2].ravel())
    return np.concatenate(values)


def _organ_cost(crop, cost, organ, config: PseudoLabelConfig) -> tuple[np.ndarray, np.ndarray]:
    """(cost, deviation): ``cost`` plus ``path_intensity_weight`` x its mean per robust standard
    deviation beyond ``path_intensity_free`` from the organ's intensity ``organ`` (median and
    robust standard deviation of the clicks' inward samples), and each voxel's deviation from
    it in robust standard deviations."""
    centre, spread = organ
    deviation = np.abs(crop - centre) / spread
    penalty = config.path_intensity_weight * float(cost.mean()) * np.maximum(deviation - config.path_intensity_free, 0.0)
    return cost + penalty, deviation


def _join_plain_runs(scribble, plain, deviation, config: PseudoLabelConfig) -> np.ndarray:
    """The organ paths ``scribble`` joined by the runs of ``plain`` path voxels within
    ``plain_path_k`` robust standard deviations of the organ's intensity that touch them (a run
    that does not touch them lies where the first path left the organ and met tissue of the
    organ's intensity elsewhere)."""
    if config.plain_path_k > 0:
        cube = np.ones((3, 3, 3), dtype=bool)
        runs, _ = ndi.label(plain & (deviation <= config.plain_path_k), structure=cube)
        touching = np.unique(runs[ndi.binary_dilation(scribble, structure=cube)])
        scribble |= np.isin(runs, touching[touching > 0])
    return scribble


@dataclass
class RandomWalkerProblem:
    """What step 2 hands the random walker: the (smoothed) crop, seeds (``UNKNOWN``,
    ``BACKGROUND``, ``FOREGROUND``), the spacing the walker is told (None: isotropic) and
    the geodesic scribble the seeds grew from."""

    data: np.ndarray
    seeds: np.ndarray
    spacing: np.ndarray | None
    scribble: np.ndarray


def random_walker_problem(crop, points_crop, crop_spacing, config: PseudoLabelConfig) -> RandomWalkerProblem:
    """Step 1 and the seeds of step 2 on a cropped, normalised image: geodesic scribbles
    between the clicks, foreground and background seeds from them.

    Parameters
    ----------
    crop : ndarray
        Normalised 3D crop (see :func:`prepare_crop`).
    points_crop : array_like
        (6, 3) clicks in continuous crop coordinates.
    crop_spacing : sequence of float
        The crop's voxel size in mm.
    config : PseudoLabelConfig

    Returns
    -------
    RandomWalkerProblem
    """
    pts_vox = np.clip(np.rint(points_crop), 0, np.asarray(crop.shape) - 1).astype(np.int64)
    norm_spacing = np.asarray(crop_spacing) / np.min(crop_spacing)
    organ = _organ_intensity(crop, pts_vox, config)
    scribble = _scribble(crop, pts_vox, norm_spacing, organ, config)
    box_out = _outside_box(points_crop, crop.shape) if config.background_outside_box else None
    foreground, outside, near = _intensity_rules(crop, scribble, pts_vox, box_out, config)
    r_fg, r_bg = _seed_radii(pts_vox, norm_spacing, config)
    # one call: the foreground grows from the scribble the rules kept, the background counts
    # its distance from the whole scribble (which lies inside the box)
    seeds = scribble_seeds(foreground, r_fg, r_bg, spacing=norm_spacing if config.radii_relative else None,
                           outside=outside, background_from=None if foreground is scribble else scribble)
    if near is not None:
        _keep_to_the_bright_organ(seeds, near, box_out)
    if organ is not None and config.seed_intensity_k > 0 and not organ.truncated:
        unlike = np.abs(crop - organ.centre) > config.seed_intensity_k * organ.spread
        seeds[(seeds == FOREGROUND) & unlike & ~scribble] = UNKNOWN
    _border_background(seeds)
    rw_data = ndi.gaussian_filter(crop, config.rw_smooth_sigma) if config.rw_smooth_sigma > 0 else crop
    return RandomWalkerProblem(rw_data, seeds, norm_spacing if config.rw_spacing else None, scribble)


@dataclass(frozen=True)
class _Organ:
    """The organ's intensity as the clicks' inward samples give it (:func:`inward_samples`)."""

    centre: float     # median
    spread: float     # robust standard deviation
    truncated: bool   # the window cuts the samples (:func:`_window_truncates`)


def _organ_intensity(crop, pts_vox, config: PseudoLabelConfig) -> _Organ | None:
    """The organ's intensity where a rule of ``config`` needs it, else None."""
    if not (config.path_intensity_weight > 0 or config.seed_intensity_k > 0):
        return None
    samples = inward_samples(crop, pts_vox, config.path_intensity_depth)
    return _Organ(*_robust_centre(samples), _window_truncates(samples))


def _scribble(crop, pts_vox, norm_spacing, organ: _Organ | None, config: PseudoLabelConfig) -> np.ndarray:
    """Step 1: the geodesic paths between the clicks on the gradient cost, searched again on
    the organ's intensity where ``path_intensity_weight`` > 0 (:func:`_organ_cost`), both searched at
    once, joined by :func:`_join_plain_runs`."""
    cost = gradient_cost(crop, norm_spacing, config.cost_smooth_sigma)
    if config.path_intensity_weight <= 0:
        return geodesic_scribbles(cost, pts_vox, norm_spacing)
    organ_cost, deviation = _organ_cost(crop, cost, (organ.centre, organ.spread), config)
    plain, scribble = geodesic_scribble_sets([cost, organ_cost], pts_vox, norm_spacing)
    return _join_plain_runs(scribble, plain, deviation, config)


def _outside_box(points_crop, size) -> np.ndarray:
    """The voxels outside the clicks' bounding box (grown by one voxel each side)."""
    lo = np.floor(np.min(points_crop, axis=0)).astype(int) - 1
    hi = np.ceil(np.max(points_crop, axis=0)).astype(int) + 2
    outside = np.ones(size, dtype=bool)
    outside[tuple(slice(max(a, 0), b) for a, b in zip(lo, hi))] = False
    return outside


def _union(mask, more) -> np.ndarray:
    """``mask | more`` (a new array), or ``more`` where there is no mask yet."""
    return more if mask is None else (mask | more)


def _intensity_rules(crop, scribble, pts_vox, outside, config: PseudoLabelConfig):
    """The intensity rules of ``config`` on the scribble and the background.

    Returns
    -------
    foreground : ndarray
        The scribble voxels that seed the foreground (``scribble`` itself where no rule applies).
    outside : ndarray or None
        Voxels that are background seeds whatever their distance from the scribble.
    near : ndarray or None
        Where the organ lies above the window (``beyond_window``): the voxels bright enough to
        be the organ.
    """
    foreground, near = scribble, None
    if config.beyond_window > 0 and _above_window(crop[scribble]):
        near = crop >= config.beyond_window
        foreground = _with_clicks(scribble & near, pts_vox)
        outside = _union(outside, ~near)
    if config.scribble_intensity_k > 0 or config.background_intensity_k > 0:
        centre, spread = _robust_centre(crop[scribble])
        deviation = np.abs(crop - centre)
        if config.scribble_intensity_k > 0:
            foreground = _with_clicks(foreground & (deviation <= config.scribble_intensity_k * spread), pts_vox)
        if config.background_intensity_k > 0:
            outside = _union(outside, deviation > config.background_intensity_k * spread)
    return foreground, outside, near


def _seed_radii(pts_vox, norm_spacing, config: PseudoLabelConfig) -> tuple[float, float]:
    """(foreground, background) seed radii: the configured ones, scaled by the organ's smallest
    half-extent with ``radii_relative``; no background radius where the box alone sets it."""
    r_fg, r_bg = config.r_foreground, config.r_background
    if config.radii_relative:
        half_extent = 0.5 * (pts_vox.max(axis=0) - pts_vox.min(axis=0)) * norm_spacing
        scale = max(float(half_extent.min()), 2.0)
        r_fg, r_bg = max(r_fg * scale, 1.0), max(r_bg * scale, r_fg * scale + 2.0)
    if config.background_outside_box and not config.background_in_box:
        r_bg = np.inf  # no voxel is that far: background comes from outside the box and the intensity rules
    return r_fg, r_bg


def _keep_to_the_bright_organ(seeds, near, box_out) -> None:
    """For an organ above the window (``near``: bright enough to be it), in place: the grown
    foreground seeds stop at the organ's intensity, and inside the box the intensity, not the
    distance from the scribble, says what is background, so the far arms of the organ (the
    mandible's rami) stay unknown."""
    if not np.any((seeds == FOREGROUND) & near):
        return
    seeds[(seeds == FOREGROUND) & ~near] = BACKGROUND
    inside = near if box_out is None else (near & ~box_out)
    seeds[(seeds == BACKGROUND) & inside] = UNKNOWN


def _border_background(seeds) -> None:
    """In place: a crop too small for the background radius (no background seed) gets its
    border's unknown voxels as background."""
    if np.any(seeds == BACKGROUND):
        return
    border = np.ones(seeds.shape, dtype=bool)
    border[1:-1, 1:-1, 1:-1] = False
    seeds[border & (seeds == UNKNOWN)] = BACKGROUND
