"""The server's datastore: a folder of scans, with clicks and accepted masks in the files the CLI reads.

``DIR`` is a plain folder of scans or an MSD layout (``imagesTr/``, ``labelsTr/``, ``dataset.json``). A case's
id is its name (:func:`extremefast.data.dataset.open_msd`'s case name). Beside each scan the annotator's six
clicks are ``CASE.mrk.json`` (3D Slicer markups, LPS: what ``train --points`` and ``predict`` read); the
accepted mask is the case's label map (``labelsTr/CASE.nii.gz`` unless the collection names another). Every
file is written atomically (:mod:`extremefast.atomic`). The server's own state lives in ``DIR/.extremefast/``,
which every listing of the toolkit skips (hidden).

Scans are kept in memory, oriented as the toolkit computes on them, in a small LRU cache, so a click never
reloads its scan.
"""
from __future__ import annotations

import io
import json
import os
import random
import re
import threading
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_write, write_text
from ..data.dataset import Case, open_msd
from ..data.points import check_points, points_file_for, read_points, write_points
from ..errors import DataError, InputError
from ..imageio import file_affine, image_stem, image_suffix, in_file_grid, load_image, orient, save_image
from ..nifti import Volume
from .errors import Conflict, NotFound

STATE_DIR = ".extremefast"
STATUSES = ("new", "clicked", "accepted")
MAX_ID = 128
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")
SCAN_UPLOADS = (".nii.gz", ".nii", ".nrrd", ".mha")  # one file that holds its voxels (checked: detached_data)
LABEL_UPLOADS = (".seg.nrrd",) + SCAN_UPLOADS


def check_id(value: str, what: str = "image id") -> str:
    """``value`` as a datastore name, or a one-line refusal (paths, ``..``, hidden names)."""
    value = "" if value is None else str(value)
    if not value:
        raise InputError(f"{what} is empty")
    if "/" in value or "\\" in value or ".." in value or value.startswith(".") or not _ID.match(value):
        raise InputError(f"{what} {value[:MAX_ID]!r} is not a datastore name (letters, digits, '.', '_', '-'; "
                         "no paths)")
    if len(value) > MAX_ID:
        raise InputError(f"{what} is {len(value)} characters long; a datastore name has at most {MAX_ID}")
    return value


def safe_name(value: str | None, fallback: str = "scan") -> str:
    """``value`` made a datastore name (other characters become '_'): for names that are shown, not looked up."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", str(value or "")).replace("..", "_").lstrip("._-")[:MAX_ID]
    return name or fallback


def detached_data(path) -> str | None:
    """The other file a NRRD (``data file:``) or MetaImage (``ElementDataFile``) header takes its voxels from,
    or None when the file holds them itself (NIfTI always does). Such a file is never accepted as an upload:
    its reader would open whatever path the header names."""
    name = Path(path).name.lower()
    if not name.endswith((".nrrd", ".nhdr", ".mha", ".mhd")):
        return None
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    if name.endswith((".nrrd", ".nhdr")):
        for line in head.split(b"\n\n", 1)[0].splitlines():
            key, _, value = line.partition(b":")
            if key.strip().lower() in (b"data file", b"datafile"):
                return value.strip().decode(errors="replace") or "?"
        return None
    for line in head.splitlines():
        key, _, value = line.partition(b"=")
        if key.strip() == b"ElementDataFile":
            value = value.strip().decode(errors="replace")
            return None if value.upper() == "LOCAL" else value
    return None


# The most voxels an upload may declare (512 x 512 x 2048, 2 GB as float32): a small compressed
# file can declare far more, and its voxels would fill the memory when it is read.
MAX_UPLOAD_VOXELS = 2 ** 29


def header_voxels(path) -> int | None:
    """How many voxels a scan file's header declares, read without its voxels (None: the header is
    not readable; the full read then says why)."""
    path = Path(path)
    try:
        if path.name.lower().endswith((".nii", ".nii.gz")):
            import nibabel as nib

            return int(np.prod(nib.load(str(path)).shape, dtype=np.int64))
        import SimpleITK as sitk

        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        return int(np.prod(reader.GetSize(), dtype=np.int64))
    except Exception:  # noqa: BLE001 - any unreadable header: left to the reader's own one-line error
        return None


def check_upload(path, name: str) -> None:
    """Refuse an upload whose header sends its reader to another file, or declares more voxels
    than :data:`MAX_UPLOAD_VOXELS` (one line)."""
    other = detached_data(path)
    if other is not None:
        raise InputError(f"{name}: the file's header takes the voxels from another file ({other!r}); upload a "
                         "file that holds them (.nii.gz, or .nrrd/.mha without a data file)")
    voxels = header_voxels(path)
    if voxels is not None and voxels > MAX_UPLOAD_VOXELS:
        raise InputError(f"{name}: the file declares {voxels:,} voxels, more than the {MAX_UPLOAD_VOXELS:,} a scan "
                         "may have here; crop or resample it first")


def encode_nifti(array: np.ndarray, affine: np.ndarray, dtype=np.uint8) -> bytes:
    """An array as ``.nii.gz`` bytes (as :func:`~extremefast.nifti.save_nifti` writes it; gzip level 1: the
    masks are mostly zeros, and the time is the annotator's)."""
    import gzip

    import nibabel as nib

    img = nib.Nifti1Image(np.asarray(array, dtype=dtype), np.asarray(affine, dtype=np.float64))
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    return gzip.compress(img.to_bytes(), compresslevel=1)


@dataclass
class Scan:
    """A scan in memory: oriented as the toolkit computes (closest to LPS) and its file's grid."""

    name: str
    volume: Volume            # oriented (Volume.file_transform undoes it)
    file_shape: tuple
    file_affine: np.ndarray

    @classmethod
    def load(cls, name: str, path) -> "Scan":
        volume = load_image(path, dtype=np.float32, check_finite=True, oriented=True)
        return cls.from_volume(name, volume)

    @classmethod
    def from_volume(cls, name: str, volume: Volume) -> "Scan":
        if volume.file_transform is None:
            volume = orient(volume)
        shape = tuple(int(volume.shape[int(t[0])]) for t in volume.file_transform)
        return cls(name, volume, shape, file_affine(volume))

    def to_file_grid(self, array: np.ndarray) -> np.ndarray:
        return in_file_grid(self.volume, array)[0]


class ScanCache:
    """The last ``size`` scans read, by path and modification time (a changed file is read again)."""

    def __init__(self, size: int = 8):
        self.size = max(1, int(size))
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict = {}

    def get(self, name: str, path: Path) -> Scan:
        stat = path.stat() if path.is_file() else None
        key = (str(path), stat.st_mtime_ns if stat else 0, stat.st_size if stat else 0)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            lock = self._loading.setdefault(key, threading.Lock())
        with lock:  # one reader per scan; concurrent clicks on it wait for that one read
            with self._lock:
                if key in self._items:
                    return self._items[key]
            try:
                scan = Scan.load(name, path)
            except BaseException:
                with self._lock:
                    self._loading.pop(key, None)  # the next request tries again
                raise
            with self._lock:
                self._items[key] = scan
                self._items.move_to_end(key)
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
                self._loading.pop(key, None)
            return scan


class Datastore:
    """The collection in ``root``: its cases, their status, clicks and accepted masks.

    Parameters
    ----------
    root : path
        A folder of scans (any format :mod:`extremefast.imageio` reads) or an MSD-layout folder.
    cache_size : int
        Scans kept in memory.
    """

    def __init__(self, root, *, cache_size: int = 8):
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"{root}: data folder not found")
        self.root = root.resolve()
        self.state_dir = self.root / STATE_DIR
        self.state_dir.mkdir(exist_ok=True)
        self.scans = ScanCache(cache_size)
        self._lock = threading.RLock()
        self._geometry: dict = {}
        self.removed_temporaries = remove_stale_temporaries([self.root, self.scans_dir, self.labels_dir])
        self.refresh()

    # ------------------------------------------------------------------ the collection
    def refresh(self) -> None:
        """Read the folder again (after a scan or a mask was added)."""
        with self._lock:
            try:
                ds = open_msd(self.root)
            except DataError as exc:
                if "no scans found" not in str(exc):
                    raise
                ds = None
            self.dataset = ds
            self.cases: dict[str, Case] = {c.name: c for c in (ds.cases if ds else [])}
            self.meta = ds.meta if ds else {}
            self.modality = ds.modality if ds else "CT"
            organs = {k: v for k, v in (ds.labels if ds else {}).items() if k != 0}
            if len(organs) == 1:
                value, name = next(iter(organs.items()))
            else:
                value, name = 1, organs.get(1, "organ")
            self.organ_value, self.organ_name = int(value), str(name)

    @property
    def scans_dir(self) -> Path:
        """Where the scans are, and so the clicks (``--points`` of ``train``)."""
        return self.root / "imagesTr" if (self.root / "imagesTr").is_dir() else self.root

    @property
    def labels_dir(self) -> Path:
        return self.root / "labelsTr"

    @property
    def labels(self) -> dict:
        return {self.organ_name: self.organ_value}

    def ids(self) -> list[str]:
        with self._lock:
            return sorted(self.cases)

    def case(self, image_id: str) -> Case:
        check_id(image_id)
        with self._lock:
            case = self.cases.get(image_id)
        if case is None:
            raise NotFound(f"no scan named {image_id!r} in the datastore")
        return case

    def scan(self, image_id: str) -> Scan:
        case = self.case(image_id)
        return self.scans.get(image_id, case.image_path)

    # ------------------------------------------------------------------ per case
    def clicks_file(self, image_id: str) -> Path | None:
        self.case(image_id)
        return points_file_for(self.scans_dir, image_id)

    def mask_path(self, image_id: str) -> Path:
        """Where the case's accepted mask is (or goes): the collection's label map, else ``labelsTr/ID.nii.gz``."""
        case = self.case(image_id)
        return case.label_path if case.label_path is not None else self.labels_dir / f"{image_id}.nii.gz"

    def has_mask(self, image_id: str) -> bool:
        return self.case(image_id).label_path is not None and self.case(image_id).label_path.exists()

    def status(self, image_id: str) -> str:
        if self.has_mask(image_id):
            return "accepted"
        return "clicked" if self.clicks_file(image_id) is not None else "new"

    def geometry(self, image_id: str) -> tuple[np.ndarray, tuple]:
        """(affine, shape) of the scan file; from the NIfTI header alone where it can (listings stay fast)."""
        case = self.case(image_id)
        path = case.image_path
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        found = self._geometry.get(key)
        if found is None:
            if path.is_file() and path.name.lower().endswith((".nii", ".nii.gz")):
                import nibabel as nib

                try:
                    img = nib.load(str(path))
                    found = (np.asarray(img.affine, dtype=np.float64), tuple(int(n) for n in img.shape[:3]))
                except Exception:
                    found = None
            if found is None:
                scan = self.scan(image_id)
                found = (scan.file_affine, tuple(scan.file_shape))
            self._geometry[key] = found
        return found

    def read_clicks(self, image_id: str) -> np.ndarray | None:
        """The saved clicks as (6, 3) voxel indices of the scan file, or None."""
        path = self.clicks_file(image_id)
        if path is None:
            return None
        affine, shape = self.geometry(image_id)
        return read_points(path, affine, shape)

    def save_clicks(self, image_id: str, points) -> Path:
        """Write six clicks (voxel indices of the scan file) as ``ID.mrk.json`` beside the scan."""
        scan = self.scan(image_id)
        pts = check_points(points, scan.file_shape)
        target = self.clicks_file(image_id) or self.scans_dir / f"{image_id}.mrk.json"
        if not target.name.endswith(".mrk.json"):  # a CASE.json of another form: replaced by the markups file
            old, target = target, self.scans_dir / f"{image_id}.mrk.json"
        else:
            old = None
        with atomic_write(target) as tmp:
            write_points(tmp, pts, scan.file_affine, "LPS", slicer=True)
        if old is not None:
            old.unlink(missing_ok=True)
        return target

    def delete_clicks(self, image_id: str) -> None:
        path = self.clicks_file(image_id)
        if path is not None:
            path.unlink(missing_ok=True)

    def save_mask(self, image_id: str, mask_oriented: np.ndarray) -> Path:
        """Write a mask on the case's oriented grid as its accepted mask (the scan's file grid, the organ's value)."""
        scan = self.scan(image_id)
        mask = scan.to_file_grid(np.asarray(mask_oriented) != 0).astype(np.uint8) * np.uint8(self.organ_value)
        target = self.mask_path(image_id)
        if not self.inside(target.parent):
            raise InputError(f"{image_id}'s mask {target} lies outside the datastore {self.root}; the server writes "
                             "only inside it (fix the label entry of dataset.json)")
        with self._lock:
            with atomic_write(target) as tmp:
                save_image(tmp, mask, scan.file_affine, dtype=np.uint8, segment_name=self.organ_name)
            self._register(image_id, label=target)
        return target

    def check_label(self, image_id: str, path) -> np.ndarray:
        """The label map in ``path`` as a mask on the case's oriented grid, or a one-line refusal."""
        scan = self.scan(image_id)
        check_upload(path, "the label")
        try:
            label = load_image(path, dtype=None)
        except DataError as exc:
            raise InputError(f"the label is not a readable label map ({one_reason(exc, path)})") from None
        if label.array.ndim != 3 or tuple(label.shape) != tuple(scan.file_shape):
            raise InputError(f"label shape {tuple(label.array.shape)} differs from the scan {image_id}'s "
                             f"{tuple(scan.file_shape)}")
        label = orient(label)
        spacing = float(np.max(scan.volume.spacing))
        if label.shape != scan.volume.shape or not np.allclose(label.affine, scan.volume.affine, atol=1e-3 * spacing):
            raise InputError(f"the label lies elsewhere in space than the scan {image_id} "
                             "(different origin, spacing or direction)")
        values = label.array
        if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
            raise InputError("the label holds NaN or Inf")
        return values != 0

    def delete_mask(self, image_id: str) -> None:
        case = self.case(image_id)
        if case.label_path is None or not case.label_path.exists():
            raise NotFound(f"{image_id} has no accepted mask")
        if case.label_path.parent.resolve() != self.labels_dir.resolve():
            raise InputError(f"{image_id}'s mask {case.label_path.name} came with the collection; it is not removed")
        with self._lock:
            case.label_path.unlink(missing_ok=True)
            self._register(image_id, label=None, drop_label=True)

    # ------------------------------------------------------------------ downloads
    def inside(self, path) -> bool:
        """Whether ``path``, links followed, lies in the datastore."""
        resolved = Path(path).resolve()
        return resolved == self.root or self.root in resolved.parents

    def _sendable(self, path: Path) -> bool:
        """Whether a file goes out as stored: one file of a self-contained format, inside the datastore."""
        if not path.is_file() or image_suffix(path) not in LABEL_UPLOADS or not self.inside(path):
            return False
        stat = path.stat()
        key = ("sendable", str(path), stat.st_mtime_ns, stat.st_size)
        if key not in self._geometry:
            self._geometry[key] = detached_data(path) is None
        return self._geometry[key]

    def served_name(self, image_id: str) -> str:
        """The file name ``GET /datastore/image`` sends the scan under."""
        path = self.case(image_id).image_path
        return path.name if self._sendable(path) else f"{image_id}.nii.gz"

    def image_file(self, image_id: str) -> tuple[bytes, str]:
        """The scan as one file (bytes, name): as stored, or, for a DICOM series, a detached header or a file
        outside the datastore (a link), a NIfTI made of the scan as read (the file's voxel order)."""
        path = self.case(image_id).image_path
        if self._sendable(path):
            return path.read_bytes(), path.name
        scan = self.scan(image_id)
        return encode_nifti(scan.to_file_grid(scan.volume.array), scan.file_affine, np.float32), f"{image_id}.nii.gz"

    def label_file(self, image_id: str) -> tuple[bytes, str]:
        """The accepted mask as one file (bytes, name), by the same rule as :meth:`image_file`."""
        if not self.has_mask(image_id):
            raise NotFound(f"{image_id} has no accepted mask")
        path = self.case(image_id).label_path
        if self._sendable(path):
            return path.read_bytes(), path.name
        try:
            label = load_image(path, dtype=None)
        except DataError as exc:
            raise InputError(f"{image_id}'s mask is not a readable label map ({one_reason(exc, path)})") from None
        return encode_nifti(label.array, label.affine, label.array.dtype), f"{image_id}.nii.gz"

    # ------------------------------------------------------------------ new scans
    def add_scan(self, image_id: str, fill, suffix: str) -> str:
        """Store a scan under ``image_id``: ``fill(path)`` writes the upload to a temporary ``path``, which is
        loaded as a scan before it becomes the case (a file that is not a 3D scan is refused)."""
        check_id(image_id)
        upload_suffix(f"{image_id}{suffix}")
        with self._lock:
            if image_id in self.cases:
                raise Conflict(f"the datastore has a scan named {image_id!r} already")
            target = self.scans_dir / f"{image_id}{suffix}"
            with atomic_write(target) as tmp:
                fill(tmp)
                scan = check_scan(tmp, image_id)
            self._register(image_id, image=target)
            self.refresh()
        del scan
        return image_id

    def _register(self, image_id: str, image: Path | None = None, label: Path | None = None,
                  drop_label: bool = False) -> None:
        """Keep ``dataset.json``'s training list (where the collection has one) in step with the files."""
        meta_path = self.root / "dataset.json"
        if not meta_path.exists():
            self.refresh()
            return
        meta = json.loads(meta_path.read_text())
        entries = meta.get("training")
        if not isinstance(entries, list):
            self.refresh()
            return
        rel = lambda p: "./" + p.resolve().relative_to(self.root).as_posix()  # noqa: E731
        for entry in entries:
            if Path(self.root / entry.get("image", "")).resolve() == self.case_path(image_id):
                if label is not None:
                    entry["label"] = rel(label)
                if drop_label:
                    entry.pop("label", None)
                break
        else:
            if image is not None:
                entries.append({"image": rel(image)})
        meta["numTraining"] = len(entries)
        write_text(meta_path, json.dumps(meta, indent=1))
        self.refresh()

    def case_path(self, image_id: str) -> Path | None:
        case = self.cases.get(image_id)
        return case.image_path.resolve() if case is not None else None

    # ------------------------------------------------------------------ listings
    def record(self, image_id: str) -> dict:
        case = self.case(image_id)
        clicks = self.clicks_file(image_id)
        try:
            pts = self.read_clicks(image_id).tolist() if clicks is not None else None
        except (InputError, DataError):
            pts = None  # a broken clicks file shows as no clicks (it is not overwritten until the next click)
        mask = case.label_path if case.label_path is not None and case.label_path.exists() else None
        return {"id": image_id, "name": self.served_name(image_id), "status": self.status(image_id), "clicks": pts,
                "label": mask.name if mask is not None else None}

    def listing(self) -> dict:
        cases = [self.record(i) for i in self.ids()]
        counts = {s: sum(c["status"] == s for c in cases) for s in STATUSES}
        return {"cases": cases, "counts": counts}

    def monai_json(self) -> dict:
        """``GET /datastore/?output=all`` as MONAI Label's local datastore answers it, with status and clicks."""
        objects = {}
        for rec in self.listing()["cases"]:
            case = self.cases[rec["id"]]
            stat = case.image_path.stat()
            image = {"ext": image_suffix(rec["name"]) or "", "info": {"name": rec["name"],
                                                                       "ts": int(stat.st_mtime), "size": stat.st_size}}
            labels = {}
            if rec["label"] is not None:
                lstat = case.label_path.stat()
                labels["final"] = {"ext": image_suffix(case.label_path) or "",
                                   "info": {"name": case.label_path.name, "ts": int(lstat.st_mtime)}}
            objects[rec["id"]] = {"image": image, "labels": labels, "status": rec["status"], "clicks": rec["clicks"]}
        return {"name": self.dataset.name if self.dataset else self.root.name,
                "description": "extremefast datastore", "images_dir": str(self.scans_dir),
                "labels_dir": str(self.labels_dir), "objects": objects}

    def stats(self) -> dict:
        counts = self.listing()["counts"]
        return {"total": sum(counts.values()), "completed": counts["accepted"],
                "label_tags": {"final": counts["accepted"]}, **counts}

    def train_list(self) -> list[dict]:
        return [{"image": str(self.cases[i].image_path), "label": str(self.cases[i].label_path)}
                for i in self.ids() if self.has_mask(i)]

    def next_case(self, strategy: str) -> str | None:
        """The next case without an accepted mask: the first by name, or a random one."""
        todo = [i for i in self.ids() if not self.has_mask(i)]
        if not todo:
            return None
        if strategy == "first":
            return todo[0]
        if strategy == "random":
            return random.choice(todo)
        raise NotFound(f"unknown strategy {strategy!r}; use first or random")

    def masks_zip(self) -> bytes:
        """A zip of the accepted masks (``labelsTr/``) and the clicks (``clicks/``) that lie in the datastore."""
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
            for i in self.ids():
                case = self.cases[i]
                if self.has_mask(i) and self.inside(case.label_path):
                    zf.write(case.label_path, f"labelsTr/{case.label_path.name}")
                clicks = self.clicks_file(i)
                if clicks is not None and self.inside(clicks):
                    zf.write(clicks, f"clicks/{clicks.name}")
        return buf.getvalue()


_TEMPORARY = re.compile(r"^\..+\.(\d+)\.[0-9a-f]+\.tmp(\..*)?$")


def remove_stale_temporaries(folders) -> list[Path]:
    """Remove the temporary files (:func:`extremefast.atomic.temporary_name`) a killed writer left: hidden,
    never read as scans, clicks or masks, but not worth keeping. A file of a running process stays."""
    removed = []
    for folder in dict.fromkeys(Path(f) for f in folders):
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            m = _TEMPORARY.match(p.name)
            if m is None or not p.is_file():
                continue
            try:
                os.kill(int(m.group(1)), 0)
                continue  # its writer is alive
            except ProcessLookupError:
                pass
            except OSError:
                continue
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def one_reason(exc: BaseException, path) -> str:
    """A reader's error without the (temporary) path it starts with, on one line."""
    reason = str(exc).split(": ", 1)[-1] if str(exc).startswith(str(path)) else str(exc)
    return " ".join(reason.split())


def check_scan(path, name: str = "upload") -> Scan:
    """Load an uploaded ``path`` as a 3D scan (a one-line refusal when it is not one)."""
    check_upload(path, name)
    try:
        return Scan.load(name, Path(path))
    except (DataError, InputError) as exc:
        raise InputError(f"{name}: not a readable 3D scan ({one_reason(exc, path)})") from None


def upload_suffix(filename: str | None, allowed=SCAN_UPLOADS, default: str | None = None) -> str:
    """The image suffix of an uploaded file's name, one of ``allowed`` (a one-line refusal otherwise)."""
    suffix = image_suffix(filename or "") or default
    if suffix not in allowed:
        raise InputError(f"upload a file ending in {', '.join(allowed)}, not {filename or 'a file without a name'!r}")
    return suffix


def upload_id(filename: str | None) -> str:
    return image_stem(Path(filename or "scan").name).removesuffix("_0000")

