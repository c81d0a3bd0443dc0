"""Deterministic CT-like abdominal phantoms, written in the MSD layout.

Each case is an axial stack with anisotropic spacing (0.8 x 0.8 x 2.5 mm by default):
a body outline with subcutaneous fat, an abdominal wall of muscle, visceral fat with
bowel-like texture, a vertebra with paraspinal muscles, the aorta, and six labelled
organs (spleen, both kidneys, gallbladder, liver, stomach) as smoothly deformed
ellipsoids with plausible Hounsfield units. Intensity texture, partial-volume blur and
noise are added. The spleen touches the abdominal wall and the left kidney, which have
nearly its intensity, so a random walker from extreme points does not segment it
perfectly, as in real CT. Shape, size and position vary per case; ``seed`` picks the
cases and the same seed always gives the same files.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from .._version import CACHE_SCHEMA
from ..atomic import atomic_folder
from ..errors import DataError, InputError

ORGANS = {1: "spleen", 2: "kidney_right", 3: "kidney_left", 4: "gallbladder", 5: "liver", 6: "stomach"}
DEFAULT_SHAPE = (224, 192, 56)
DEFAULT_SPACING = (0.8, 0.8, 2.5)
SYNTHETIC_DIR_ENV = "EXTREMEFAST_SYNTHETIC_DIR"


def make_phantom(seed: int, shape=DEFAULT_SHAPE, spacing=DEFAULT_SPACING):
    """One phantom: ``(image_hu float32, labels int16, affine)``, deterministic in ``seed``.

    Parameters
    ----------
    seed : int
    shape : tuple of int
    spacing : tuple of float
        Voxel size in mm.

    Returns
    -------
    image : ndarray
        float32 Hounsfield units.
    labels : ndarray
        int16 organ labels.
    affine : ndarray
        4x4 voxel-to-world (RAS).
    """
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in shape)
    spacing = np.asarray(spacing, dtype=np.float64)
    # World coordinates of voxel centres in mm, centred on the volume.
    axes = [(np.arange(n) - (n - 1) / 2.0) * s for n, s in zip(shape, spacing)]
    grid = np.meshgrid(*[a.astype(np.float32) for a in axes], indexing="ij", sparse=True)
    extent = np.array([n * s for n, s in zip(shape, spacing)])
    image = np.full(shape, -1000.0, dtype=np.float32)  # air
    labels = np.zeros(shape, dtype=np.int16)
    # each part draws from rng in turn, in this order (the same seed gives the same phantom)
    cavity, cavity_radii = _body(rng, image, grid, extent, spacing)
    blocked = _spine(rng, image, grid, cavity_radii)
    _organs(rng, image, labels, grid, cavity & ~blocked, np.array([*cavity_radii, 0.5 * extent[2]]))
    image = _texture(rng, image, spacing)

    affine = np.diag([spacing[0], spacing[1], spacing[2], 1.0])
    affine[:3, 3] = [axes[0][0], axes[1][0], axes[2][0]]
    return image, labels, affine


def _body(rng, image, grid, extent, spacing):
    """Paint the body (fat, abdominal wall, visceral fat with bowel loops); returns the
    abdominal cavity's mask and its two radii (mm)."""
    x, y, _ = grid

    def jitter(scale):
        return rng.uniform(1 - scale, 1 + scale)

    shape = image.shape
    # Body: elliptic cylinder whose cross-section drifts a little along z.
    ax, ay = 0.43 * extent[0] * jitter(0.05), 0.40 * extent[1] * jitter(0.05)
    wob = _smooth_field(rng, shape, spacing, wavelength=90.0, amplitude=0.03)
    body_r = (x / ax) ** 2 + (y / ay) ** 2 + wob
    body = body_r < 1
    image[body] = -100.0  # subcutaneous fat
    fat_mm = rng.uniform(10, 18)
    inner = ((x / (ax - fat_mm)) ** 2 + (y / (ay - fat_mm)) ** 2 + wob) < 1
    image[inner] = 50.0  # abdominal wall muscle
    wall_mm = rng.uniform(7, 11)
    cavity = ((x / (ax - fat_mm - wall_mm)) ** 2 + (y / (ay - fat_mm - wall_mm)) ** 2 + wob) < 1
    # Visceral fat with bowel loops: fat background and blobs of soft tissue / fluid.
    bowel = _smooth_field(rng, shape, spacing, wavelength=25.0, amplitude=1.0)
    image[cavity] = np.where(bowel[cavity] > 0.25, 25.0, -90.0)
    return cavity, (ax - fat_mm - wall_mm, ay - fat_mm - wall_mm)


def _spine(rng, image, grid, cavity_radii):
    """Paint the spine, the paraspinal muscles and the aorta, posterior (positive y); returns
    the mask organs may not enter (vertebra and aorta)."""
    x, y, z = grid
    spine_c = np.array([0.0, cavity_radii[1] - 12.0, 0.0]) + rng.normal(0, 2, 3) * [1, 1, 0]
    muscle_l = _ellipsoid(x, y, z, spine_c + [28, 4, 0], [20, 14, 1e4], rng, wobble=0.05)
    muscle_r = _ellipsoid(x, y, z, spine_c + [-28, 4, 0], [20, 14, 1e4], rng, wobble=0.05)
    image[muscle_l | muscle_r] = 55.0
    vertebra = _ellipsoid(x, y, z, spine_c - [0, 6, 0], [14, 12, 1e4], rng, wobble=0.0)
    image[vertebra] = 250.0
    cortex = vertebra & ~ndi.binary_erosion(vertebra, iterations=2)
    image[cortex] = 700.0
    aorta = _ellipsoid(x, y, z, spine_c + [-8 + rng.normal(0, 2), -32, 0], [11, 11, 1e4], rng, wobble=0.0)
    image[aorta] = 170.0
    return vertebra | aorta


# Organs: label, centre (fraction of the cavity's radii and half-height), radii mm, HU. Painted in
# this order, so later organs cut into earlier ones where they overlap (they touch).
_ORGAN_SPECS = [
    (5, [-0.45, -0.05, 0.10], [44, 42, 52], 62.0),   # liver, patient's right
    (4, [-0.30, -0.55, -0.05], [10, 13, 18], 8.0),   # gallbladder, under the liver
    (2, [-0.55, 0.50, -0.30], [15, 17, 30], 40.0),   # right kidney, posterior
    (6, [0.20, -0.45, 0.25], [26, 20, 26], 20.0),   # stomach, anterior left
    (3, [0.50, 0.55, -0.30], [15, 17, 30], 46.0),   # left kidney, posterior
    (1, [0.66, 0.30, 0.12], [19, 32, 36], 50.0),   # spleen, posterior left, against wall
]


def _organs(rng, image, labels, grid, room, cav):
    """Paint the organs of :data:`_ORGAN_SPECS` within ``room`` (the cavity less the spine)."""
    x, y, z = grid
    for label, centre_frac, radii, hu in _ORGAN_SPECS:
        centre = np.array(centre_frac) * cav + rng.normal(0, 4.0, 3)
        radii = np.array(radii, dtype=np.float64) * rng.uniform(0.85, 1.15, 3)
        organ = _ellipsoid(x, y, z, centre, radii, rng, wobble=0.18, rotate=True) & room
        image[organ] = hu
        labels[organ] = label


def _texture(rng, image, spacing):
    """Texture (smooth, organ-scale), partial-volume blur and noise, clipped to CT's range."""
    image = image + _smooth_field(rng, image.shape, spacing, wavelength=12.0, amplitude=9.0) * (image > -500)
    image = ndi.gaussian_filter(image, sigma=(0.8, 0.8, 0.35))
    image += rng.normal(0.0, 14.0, image.shape).astype(np.float32)
    return np.clip(image, -1024, 3000).astype(np.float32)


def _ellipsoid(x, y, z, centre, radii, rng, wobble=0.1, rotate=False):
    """A smoothly deformed ellipsoid (bool array) around ``centre`` with ``radii`` (mm)."""
    dx, dy, dz = x - centre[0], y - centre[1], z - centre[2]
    if rotate:
        a = rng.uniform(-0.35, 0.35)
        c, s = np.cos(a), np.sin(a)
        dx, dy = c * dx - s * dy, s * dx + c * dy
    r = (dx / radii[0]) ** 2 + (dy / radii[1]) ** 2 + (dz / radii[2]) ** 2
    if wobble:
        # a few random low-frequency sinusoids make each organ's outline unique
        for _ in range(3):
            k = rng.normal(0, 1, 3)
            k *= 2 * np.pi / (np.linalg.norm(k) * rng.uniform(35, 70))
            r = r + wobble * np.sin(k[0] * dx + k[1] * dy + k[2] * dz + rng.uniform(0, 2 * np.pi))
    return r < 1


def _smooth_field(rng, shape, spacing, wavelength, amplitude):
    """Gaussian-filtered noise with correlation length ~``wavelength`` mm, unit std times amplitude."""
    sigma = [wavelength / (4 * s) for s in spacing]
    field = ndi.gaussian_filter(rng.normal(0, 1, shape).astype(np.float32), sigma, mode="wrap")
    std = float(field.std()) or 1.0
    return (field / std * amplitude).astype(np.float32)


def write_synthetic_dataset(out, cases: int = 12, seed: int = 0, shape=DEFAULT_SHAPE,
                            spacing=DEFAULT_SPACING, progress=None) -> Path:
    """Write ``cases`` phantoms as an MSD folder (``dataset.json``, ``imagesTr``, ``labelsTr``).

    The folder is assembled under a temporary name and renamed, so it is either complete
    or absent.

    Parameters
    ----------
    out : path
        The folder to create.
    cases, seed : int
    shape, spacing : as :func:`make_phantom`
    progress : callable, optional
        Called once per phantom written.

    Returns
    -------
    Path
        ``out``.
    """
    from ..nifti import save_nifti

    if cases < 1:
        raise InputError(f"the number of cases must be at least 1, got {cases}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out}: output folder exists and is not empty")
    if out.parent.exists() and not out.parent.is_dir():
        raise DataError(f"{out.parent}: a file is in the way of the output folder")
    with atomic_folder(out) as tmp:
        (tmp / "imagesTr").mkdir()
        (tmp / "labelsTr").mkdir()
        training = []
        # Case seeds derive from the data set seed, so seeds 0 and 1 give disjoint cases.
        case_seeds = np.random.SeedSequence(seed).spawn(cases)
        for n in range(cases):
            name = f"phantom_{seed:03d}_{n:03d}"
            image, labels, affine = make_phantom(int(case_seeds[n].generate_state(1)[0]), shape, spacing)
            save_nifti(tmp / "imagesTr" / f"{name}.nii.gz", image.astype(np.int16), affine)
            save_nifti(tmp / "labelsTr" / f"{name}.nii.gz", labels.astype(np.uint8), affine)
            training.append({"image": f"./imagesTr/{name}.nii.gz", "label": f"./labelsTr/{name}.nii.gz"})
            if progress is not None:
                progress()
        meta = {
            "name": f"synthetic_seed{seed}",
            "description": "extremefast synthetic CT-like abdominal phantoms",
            "modality": {"0": "CT"},
            "labels": {"0": "background", **{str(k): v for k, v in ORGANS.items()}},
            "numTraining": cases,
            "training": training,
            "extremefast": {"seed": seed, "shape": list(shape), "spacing": list(spacing), "schema": CACHE_SCHEMA},
        }
        (tmp / "dataset.json").write_text(json.dumps(meta, indent=1))
    return out


def default_synthetic_dir() -> Path:
    root = os.environ.get(SYNTHETIC_DIR_ENV)
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "extremefast" / "synthetic"


def ensure_synthetic_dataset(cases: int = 12, seed: int = 0, folder=None) -> Path:
    """The phantom data set for (cases, seed), written once and reused."""
    base = Path(folder) if folder else default_synthetic_dir()
    out = base / f"v{CACHE_SCHEMA}_seed{seed}_n{cases}"
    if (out / "dataset.json").exists():
        return out
    base.mkdir(parents=True, exist_ok=True)
    try:
        return write_synthetic_dataset(out, cases, seed)
    except DataError:
        if (out / "dataset.json").exists():  # another process finished it first
            return out
        raise
