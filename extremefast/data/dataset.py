"""Data sets: the Medical Segmentation Decathlon (MSD) layout, or a plain folder of scans.

An MSD folder has ``dataset.json``, ``imagesTr/`` and ``labelsTr/``; without ``dataset.json``
the scans are those of ``imagesTr/`` or, failing that, of the folder itself, and masks (when
there are any) those of ``labelsTr/`` with the scan's name. Scans and masks may be NIfTI,
NRRD, MetaImage or DICOM-series folders (:mod:`extremefast.imageio`); they are read with
their axes in the order closest to LPS, so that the same scan gives the same arrays whatever
its format.

A dataset is opened from a folder, a known name (``msd_spleen`` resolves to
``Task09_Spleen`` under ``--data-root`` or ``$EXTREMEFAST_DATA_ROOT``) or ``synthetic``
(phantoms written once into a cache folder). The organ is chosen by label value or by the
name ``dataset.json`` gives it.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import DataError, InputError
from ..imageio import image_stem, list_images, load_image
from ..nifti import Volume

DATA_ROOT_ENV = "EXTREMEFAST_DATA_ROOT"

# Known names: folder under the data root, and where a user gets the data.
KNOWN_DATASETS = {
    "msd_spleen": ("Task09_Spleen", "the Medical Segmentation Decathlon (http://medicaldecathlon.com, Task09_Spleen.tar)"),
}

# The paper's split for MSD spleen: 32 training and 9 validation cases.
PAPER_VALIDATION_CASES = {"Task09_Spleen": 9}


@dataclass
class Case:
    name: str
    image_path: Path
    label_path: Path | None


@dataclass
class Dataset:
    """An MSD-layout data set: organ names by label value and the training cases."""

    root: Path
    name: str
    labels: dict[int, str]
    cases: list[Case]
    modality: str = "CT"
    meta: dict = field(default_factory=dict)
    default_organ: str | None = None  # the organ meant where none is named (the phantoms' spleen)

    def __len__(self) -> int:
        return len(self.cases)

    def case(self, name: str) -> Case:
        for c in self.cases:
            if c.name == name:
                return c
        raise InputError(f"{self.root}: no case named {name!r}")

    def load_image(self, case: Case) -> Volume:
        return load_image(case.image_path, dtype=np.float32, check_finite=True, oriented=True)

    def load_case(self, case: Case) -> tuple[Volume, Volume]:
        """Image (float32) and label map (int16) of one case, checked to share a grid."""
        image = self.load_image(case)
        if case.label_path is None:
            raise DataError(f"{self.root}: case {case.name} has no label map")
        return image, self.load_labels(case, image)

    def load_labels(self, case: Case, image: Volume) -> Volume:
        """The label map (int16) of ``case``, checked to lie on the grid of its ``image``."""
        label = load_image(case.label_path, dtype=None, oriented=True)
        if label.array.dtype.kind == "f":
            if not np.all(np.isfinite(label.array)):
                raise DataError(f"{case.label_path}: label map holds NaN or Inf")
            label.array = np.rint(label.array)
        label.array = label.array.astype(np.int16)
        if label.shape != image.shape:
            raise DataError(
                f"{case.label_path}: label map shape {label.shape} differs from its image {image.shape}"
            )
        if not np.allclose(label.affine, image.affine, atol=1e-3 * max(image.spacing)):
            raise DataError(f"{case.label_path}: the label map lies elsewhere in space than its image "
                            f"{case.image_path.name} (different origin, spacing or direction)")
        return label

    def organ_label(self, label: int | None, organ: str | None, *, clicks_given: bool) -> int | None:
        """The organ's label value (:meth:`resolve_label`); with clicks from files and no organ
        named, the data set's only organ when it has one (its masks then give Dice), else None
        (no mask is used); ``default_organ`` where the data set has one."""
        if label is None and organ is None:
            if self.default_organ is not None:
                organ = self.default_organ
            elif clicks_given:
                organs = [k for k in self.labels if k != 0]
                return organs[0] if len(organs) == 1 else None
        return self.resolve_label(label, organ)

    def resolve_label(self, label: int | None = None, organ: str | None = None) -> int:
        """The label value of the organ: by value, or by name from ``dataset.json``."""
        if label is not None and organ is not None:
            raise InputError("give either a label value or an organ name, not both")
        if organ is not None:
            by_name = {v.lower(): k for k, v in self.labels.items()}
            key = organ.strip().lower()
            if key not in by_name:
                names = ", ".join(f"{v} ({k})" for k, v in sorted(self.labels.items()) if k != 0)
                raise InputError(f"organ {organ!r} is not in {self.root / 'dataset.json'}; known: {names}")
            return by_name[key]
        if label is None:
            raise InputError("choose the organ by its label value or its name")
        if int(label) <= 0:
            raise InputError(f"the label must be a positive label value, got {label}")
        if self.labels and int(label) not in self.labels:
            names = ", ".join(f"{k} ({v})" for k, v in sorted(self.labels.items()) if k != 0)
            raise InputError(f"label {label} is not in {self.root / 'dataset.json'}; known: {names}")
        return int(label)

    def organ_name(self, label: int) -> str:
        return self.labels.get(int(label), f"label {label}")


def open_msd(root) -> Dataset:
    """Read an MSD-layout folder; every listed file must exist.

    Parameters
    ----------
    root : path
        The folder: ``dataset.json`` with ``imagesTr/`` and ``labelsTr/``, or scans alone.

    Returns
    -------
    Dataset
    """
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: data folder not found")
    if not root.is_dir():
        raise DataError(f"{root}: expected a folder with dataset.json, imagesTr/ and labelsTr/")
    meta_path = root / "dataset.json"
    if meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"{meta_path}: broken JSON ({exc.msg} at line {exc.lineno})") from None
        except UnicodeDecodeError:
            raise DataError(f"{meta_path}: not a text file") from None
        if not isinstance(meta, dict):
            raise DataError(f"{meta_path}: expected a JSON object")
        cases = _cases_from_meta(root, meta, meta_path)
        labels = _labels_from_meta(meta, meta_path)
    else:
        meta = {}
        cases = _cases_from_folders(root)
        labels = {}
    if not cases:
        raise DataError(f"{root}: no scans found (dataset.json 'training', imagesTr/ or the folder itself: "
                        "NIfTI, NRRD, MetaImage or DICOM-series folders)")
    modality = str((meta.get("modality") or {}).get("0", "CT")) if isinstance(meta.get("modality"), dict) else "CT"
    return Dataset(root=root, name=str(meta.get("name", root.name)), labels=labels, cases=cases,
                   modality=modality, meta=meta)


def _labels_from_meta(meta: dict, meta_path: Path) -> dict[int, str]:
    raw = meta.get("labels", {})
    if not isinstance(raw, dict):
        raise DataError(f"{meta_path}: 'labels' must be an object of value -> name")
    labels = {}
    for key, value in raw.items():
        try:
            labels[int(key)] = str(value)
        except ValueError:
            # nnU-Net v2 style: name -> value
            try:
                labels[int(value)] = str(key)
            except (TypeError, ValueError):
                raise DataError(f"{meta_path}: label entry {key!r}: {value!r} is not value -> name") from None
    return labels


def _cases_from_meta(root: Path, meta: dict, meta_path: Path) -> list[Case]:
    entries = meta.get("training")
    if entries is None:
        return _cases_from_folders(root)
    if not isinstance(entries, list):
        raise DataError(f"{meta_path}: 'training' must be a list")
    cases = []
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict) or "image" not in entry:
            raise DataError(f"{meta_path}: training entry {n} has no 'image'")
        image = (root / entry["image"]).resolve()
        label = (root / entry["label"]).resolve() if entry.get("label") else None
        for p in (image, label):
            if p is not None and not p.exists():
                raise DataError(f"{meta_path}: training entry {n} points at a missing file {p}")
        cases.append(Case(_case_name(image), image, label))
    return cases


def _cases_from_folders(root: Path) -> list[Case]:
    """Scans of ``imagesTr/`` (else of ``root`` itself, ``labelsTr/`` aside), masks by name in ``labelsTr/``."""
    folder = root / "imagesTr" if (root / "imagesTr").is_dir() else root
    labels = {}
    if (root / "labelsTr").is_dir():
        labels = {_case_name(p): p for p in list_images(root / "labelsTr")}
    images = [p for p in list_images(folder) if p.name != "labelsTr"]
    return [Case(_case_name(image), image, labels.get(_case_name(image))) for image in images]


def _case_name(path: Path) -> str:
    name = image_stem(path)
    return name[:-5] if name.endswith("_0000") else name


def open_dataset(data: str, *, data_root=None, synthetic_cases: int = 12, synthetic_seed: int = 0,
                 synthetic_dir=None) -> Dataset:
    """Open ``data``: a folder, a known name such as ``msd_spleen``, or ``synthetic``.

    Parameters
    ----------
    data : str
        A folder (MSD layout, or a plain folder of scans), ``"msd_spleen"`` or ``"synthetic"``.
    data_root : path, optional
        Where known data sets live (else ``$EXTREMEFAST_DATA_ROOT``).
    synthetic_cases, synthetic_seed, synthetic_dir : for ``"synthetic"``
        How many phantoms, their seed, and where they are written once.

    Returns
    -------
    Dataset
    """
    if data == "synthetic":
        from .synthetic import ensure_synthetic_dataset

        folder = ensure_synthetic_dataset(synthetic_cases, synthetic_seed, synthetic_dir)
        return replace(open_msd(folder), default_organ="spleen")
    if data in KNOWN_DATASETS:
        folder_name, source = KNOWN_DATASETS[data]
        root = data_root or os.environ.get(DATA_ROOT_ENV)
        candidates = [Path(root) / folder_name] if root else []
        for folder in candidates:
            if folder.is_dir():
                return open_msd(folder)
        where = f"under {root}" if root else f"(no --data-root given and ${DATA_ROOT_ENV} is unset)"
        raise DataError(
            f"{data}: {folder_name} not found {where}; download it from {source}, unpack it so that "
            f"DATA_ROOT/{folder_name}/dataset.json, imagesTr/ and labelsTr/ exist, and pass --data-root DATA_ROOT"
        )
    return open_msd(data)


def train_val_split(dataset: Dataset, n_val: int | None = None, seed: int = 0,
                    cases: list[Case] | None = None, fold: int = 0) -> tuple[list[Case], list[Case]]:
    """A deterministic split of the cases (``cases``, default all) into training and validation.

    The cases are sorted by name and shuffled with ``seed``; the ``fold``-th block of ``n_val``
    of them goes to validation (fold 0: the first ``n_val``), so that folds 0, 1, ... of one
    seed validate on every case once (the last block may be shorter). By default ``n_val`` is the
    paper's 9 for MSD spleen (32/9) and 22% of the cases (at least one, at most all but one)
    otherwise.

    Parameters
    ----------
    dataset : Dataset
    n_val : int, optional
        Validation cases (default as above).
    seed : int
    cases : list of Case, optional
        The cases to split (default: all of the data set).
    fold : int
        Which block of ``n_val`` shuffled cases validates.

    Returns
    -------
    train, val : list of Case
    """
    cases = sorted(dataset.cases if cases is None else cases, key=lambda c: c.name)
    if len(cases) < 2:
        raise InputError(f"{dataset.root}: need at least 2 cases for a train/validation split, found {len(cases)}")
    if n_val is None:
        n_val = PAPER_VALIDATION_CASES.get(dataset.root.name) or round(0.22 * len(cases))
    n_val = int(min(max(n_val, 1), len(cases) - 1))
    folds = -(-len(cases) // n_val)
    if not 0 <= fold < folds:
        raise InputError(f"fold {fold} does not exist: {len(cases)} cases in blocks of {n_val} validation cases "
                         f"make folds 0-{folds - 1}")
    order = np.random.default_rng(seed).permutation(len(cases))
    block = order[fold * n_val:(fold + 1) * n_val]
    val = [cases[i] for i in sorted(block)]
    train = [cases[i] for i in sorted(set(order.tolist()) - set(block.tolist()))]
    return train, val
