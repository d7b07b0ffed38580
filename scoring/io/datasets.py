"""Reading datasets: torchvision's ImageFolder layout, CSV manifests, flat folders, and the readers
of the formats other tools write (scoring.io.formats holds the table that picks one).

The dataset is read-only to us: nothing here (or anywhere in Image Triage) writes inside it.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from scoring.errors import ImageTriageError, UnsafePathError
from scoring.io.safeio import (
    MAX_IMAGE_BYTES,
    confine,
    is_inside,
    printable,
    read_head,
    read_regular,
    read_text,
    walk_files,
)
from scoring.io.uris import OBJECT_STORES, is_uri, local_path_of, read_object

log = logging.getLogger(__name__)

def read_bytes(location: str | Path, *, max_bytes: int = MAX_IMAGE_BYTES, what: str = "image") -> bytes:
    """The bytes of a local file or of a URI, through one reader whatever the form: a local path
    and a ``file://`` URI go through :func:`scoring.io.safeio.read_regular` (regular files only,
    size-capped, never blocking); ``s3://`` and ``gs://`` through :func:`scoring.io.uris.read_object`
    (timeouts, the same cap, an unreachable bucket tried once per run); any other scheme is
    refused in one line."""
    if not is_uri(location):
        return read_regular(location, max_bytes=max_bytes, what=what)
    local = local_path_of(str(location))
    if local is not None:
        return read_regular(local, max_bytes=max_bytes, what=what)
    return read_object(str(location), max_bytes)


def image_header(location: str | Path) -> tuple[tuple[int, int], str]:
    """(width, height) and Pillow mode of an image from its first bytes only (no decode), read
    through :func:`read_bytes`' safe path; local files read 256 KiB at most."""
    local = location if not is_uri(location) else local_path_of(str(location))
    data = read_head(local, 256 * 1024, what="image", max_bytes=MAX_IMAGE_BYTES) if local is not None \
        else read_bytes(location)
    with Image.open(io.BytesIO(data)) as im:
        return im.size, im.mode


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")
MANIFESTS = ("csv", "labelstudio")  # layouts read from a file that lists the images (its folder holds none of ours)


class DatasetError(ImageTriageError, ValueError):
    """A dataset that cannot be read; the message names the path and what to do."""


@dataclass(frozen=True)
class ImageRecord:
    path: str  # posix, relative to Dataset.root (a name that is not UTF-8 shown escaped)
    label: str | None
    error: str | None = None  # why it cannot be read (special file, bad name): recorded, not scored
    votes: tuple[tuple[str, str], ...] = ()  # (annotator, label) of each person's label, where the source has them


@dataclass
class Dataset:
    root: Path
    layout: str
    source: Path
    classes: list[str]
    records: list[ImageRecord] = field(default_factory=list)

    @property
    def labelled(self) -> bool:
        return any(r.label is not None for r in self.records)

    def abspath(self, rel: str) -> Path | str:
        """Where an image is: a path under the root, or the URI itself for object storage."""
        return rel if is_uri(rel) else self.root / rel

    def label_index(self, label: str | None) -> int | None:
        if label is None:
            return None
        return self.classes.index(label)


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _walk(folder: Path, root: Path, label: str | None, follow: bool, visited: set[tuple[int, int]]) -> list[ImageRecord]:
    """Image records below ``folder`` in torchvision's order, bad entries recorded with their reason."""
    walk = walk_files(folder, root, _is_image, follow_symlinks=follow, visited=visited)
    if walk.outside:
        log.warning(
            "%s: %d symbolic links lead outside the dataset and were not followed (e.g. %s); "
            "pass --follow-symlinks to include them", root, len(walk.outside), walk.outside[0],
        )
    for path, why in walk.bad:
        log.warning("%s: %s", path, why)
    return [ImageRecord(f, label) for f in walk.files] + [ImageRecord(p, label, why) for p, why in walk.bad]


def find_classes(root: Path, follow: bool = False) -> list[str]:
    """As torchvision.datasets.folder.find_classes: sorted sub-folder names (hidden ones, names
    that are not UTF-8, and links leading out of the root unless followed, skipped)."""
    real_root = os.path.realpath(root)
    out = []
    for e in os.scandir(root):
        if e.name.startswith(".") or printable(e.name) != e.name or not e.is_dir():
            continue
        target = os.path.realpath(e.path)
        if e.is_symlink() and not follow and not is_inside(target, real_root):
            log.warning("%s: class folder %s links outside the dataset; pass --follow-symlinks to include it", root, e.name)
            continue
        out.append(e.name)
    return sorted(out)


def read_imagefolder(root: Path, follow_symlinks: bool = False) -> Dataset:
    from scoring.io.exported import exported_class_names

    folders, names = find_classes(root, follow_symlinks), exported_class_names(root)  # our export: exact names
    classes, records, visited = [names.get(f, f) for f in folders], [], {(os.stat(root).st_dev, os.stat(root).st_ino)}
    for folder, cls in zip(folders, classes, strict=True):  # (a link back to the root is not a class folder)
        records.extend(_walk(root / folder, root, cls, follow_symlinks, visited))
    loose = [e.name for e in os.scandir(root) if e.is_file() and _is_image(e.name)]
    if loose:
        log.warning("%s: %d images directly in the root are ignored in ImageFolder layout", root, len(loose))
    if not any(r.error is None for r in records):
        raise DatasetError(f"no images found in the class folders of {root}")
    # torchvision raises on an empty class folder; we keep the class (it may gain relabels).
    return Dataset(root=root, layout="imagefolder", source=root, classes=classes, records=records)


def read_flat(root: Path, follow_symlinks: bool = False) -> Dataset:
    records = _walk(root, root, None, follow_symlinks, set())
    if not any(r.error is None for r in records):
        raise DatasetError(_nothing_found(root))
    return Dataset(root=root, layout="flat", source=root, classes=[], records=records)


def posix_path(raw: str) -> str:
    """``Path(raw).as_posix()``, without building a Path where ``raw`` is already in that form (no
    empty or "." component, no trailing slash): a manifest of a million rows costs seconds of
    pathlib (issue 35: 2,000 rows, 0.02 s of a 1.4 s run)."""
    if raw and "//" not in raw and "/./" not in raw and not raw.startswith("./") and not raw.endswith(("/", "/.")) \
            and raw != ".":
        return raw
    return Path(raw).as_posix()


def read_csv_manifest(path: Path) -> Dataset:
    """A CSV with columns ``path,label``; paths relative to the CSV's folder (or absolute)."""
    root = path.parent
    try:
        reader = csv.DictReader(io.StringIO(read_text(path, what="CSV manifest"), newline=""))
        fields = [f.strip().lower() for f in (reader.fieldnames or [])]
        if "path" not in fields:
            raise DatasetError(
                f"{path}: a manifest needs a header with columns path,label; found {reader.fieldnames}"
            )
        key = {f.strip().lower(): f for f in reader.fieldnames or []}
        rows = [(r[key["path"]] or "", (r.get(key["label"]) or "") if "label" in key else "") for r in reader]
    except (csv.Error, UnsafePathError) as exc:
        raise DatasetError(f"{path}: not a readable CSV manifest ({exc})") from exc
    if not rows:
        raise DatasetError(f"{path}: the manifest lists no images")
    records: list[ImageRecord] = []
    seen: set[str] = set()
    dupes: list[str] = []
    for raw, label in rows:
        raw = (raw or "").strip()
        if not raw:
            continue
        if "\x00" in raw:
            raise DatasetError(f"{path}: a path contains a NUL character ({raw!r}); fix the manifest")
        rel = raw if is_uri(raw) else posix_path(raw)  # URIs kept verbatim (Path would fold "//")
        if rel in seen:
            dupes.append(rel)
        seen.add(rel)
        label = (label or "").strip() or None
        records.append(ImageRecord(rel, label))
    if dupes:
        raise DatasetError(f"{path}: paths listed more than once: {dupes[:5]}{' ...' if len(dupes) > 5 else ''}")
    classes = sorted({r.label for r in records if r.label is not None})
    return Dataset(root=root, layout="csv", source=path, classes=classes, records=records)


def read_labelstudio(path: Path) -> Dataset:
    """A Label Studio JSON export of an image-classification project (scoring.io.labelstudio)."""
    from scoring.io import labelstudio as LS

    try:
        tasks = LS.read_tasks(path)
    except (UnsafePathError, LS.LabelStudioError) as exc:
        raise DatasetError(str(exc)) from exc
    records: list[ImageRecord] = []
    seen: set[str] = set()
    for n, task in enumerate(tasks):
        name = f"task {task.get('id', n + 1)}"
        rel, why = LS.task_path(task)
        label, votes = LS.votes_of(task)
        if rel is None and LS.image_ref(task) is None:
            raise DatasetError(f"{path}: {name} has {why}")
        if rel is None:
            records.append(ImageRecord(f"{name}:{str(LS.image_ref(task))[:60]}", label, f"{path} {name}: {why}",
                                       tuple(votes)))
            continue
        if rel in seen:
            raise DatasetError(f"{path}: {name} lists {rel} again; each image once")
        seen.add(rel)
        records.append(ImageRecord(rel, label, None, tuple(votes)))
    if not records:
        raise DatasetError(f"{path}: the export holds no tasks")
    classes = sorted({r.label for r in records if r.label is not None} | {lab for r in records for _, lab in r.votes})
    return Dataset(root=path.parent, layout="labelstudio", source=path, classes=classes, records=records)


def read_fiftyone(folder: Path, follow_symlinks: bool = False) -> Dataset:
    """A FiftyOne image-classification export: labels.json and data/ (scoring.io.fiftyone)."""
    from scoring.io import fiftyone as FO

    try:
        classes, rows = FO.read_labels(folder, follow_symlinks)
    except (UnsafePathError, FO.FiftyOneError) as exc:
        raise DatasetError(str(exc)) from exc
    records = [ImageRecord(rel, label) for rel, label in rows]
    if not records:
        raise DatasetError(f"{folder / 'labels.json'}: no samples")
    classes = sorted(set(classes) | {r.label for r in records if r.label is not None})
    return Dataset(root=folder, layout="fiftyone", source=folder, classes=classes, records=records)


def read_huggingface(path: Path, follow_symlinks: bool = False) -> Dataset:
    """A Hugging Face dataset saved to disk or as Parquet (scoring.io.huggingface): its images are
    read from the folder they were unpacked into (the user's cache); a row that names a file is
    read through the one rule (inside the dataset's folder) and unpacked there too."""
    from scoring.io import huggingface as HF

    try:
        root, classes, rows = HF.read(path, read_bytes, follow_symlinks)
    except (UnsafePathError, HF.HuggingFaceError) as exc:
        raise DatasetError(str(exc)) from exc
    except ImportError as exc:
        raise DatasetError(f"{path}: reading Hugging Face datasets needs the datasets library: "
                           "pip install 'image-triage[hf]' (or pip install datasets)") from exc
    records = [ImageRecord(r["path"], r.get("label"), r.get("error")) for r in rows]
    if not records:
        raise DatasetError(f"{path}: the dataset has no rows")
    classes = list(classes) + sorted({r.label for r in records if r.label is not None} - set(classes))
    return Dataset(root=root, layout="huggingface", source=path, classes=classes, records=records)


def read_cvat(path: Path) -> Dataset:
    """A CVAT for images 1.1 XML export with tags (scoring.io.cvat); ``path`` is the
    annotations.xml or the folder holding it (and images/)."""
    from scoring.io import cvat as CV

    xml = path / CV.ANNOTATIONS if path.is_dir() else path
    try:
        classes, rows = CV.read(xml)
    except (UnsafePathError, CV.CvatError) as exc:
        raise DatasetError(str(exc)) from exc
    root = CV.images_root(xml)
    records = [ImageRecord(name, label, None, tuple(votes)) for name, label, votes in rows]
    if not records:
        raise DatasetError(f"{xml}: no images")
    classes = list(classes) + sorted({r.label for r in records if r.label is not None} - set(classes))
    return Dataset(root=root, layout="cvat", source=xml, classes=classes, records=records)


def confine_records(ds: Dataset, follow_symlinks: bool = False) -> Dataset:
    """The one rule (:func:`scoring.io.safeio.confine`) over every name a listing format gives: one
    that leaves the root is recorded as unreadable, never read; ``./a.png`` after ``a.png`` too."""
    seen: set[str] = set()
    out: list[ImageRecord] = []
    for r in ds.records:
        if r.error is not None or (is_uri(r.path) and r.path.split("://", 1)[0].lower() in OBJECT_STORES):
            out.append(r)  # object storage: no local path to confine (file:// is one, and is refused below)
            continue
        try:
            rel = confine(ds.root, r.path, follow_symlinks=follow_symlinks)
        except UnsafePathError as exc:
            log.warning("%s: %s", ds.source, exc)
            out.append(ImageRecord(printable(r.path), r.label, f"{ds.source}: {exc}", r.votes))
            continue
        if rel in seen:
            out.append(ImageRecord(printable(r.path), r.label, f"{ds.source}: lists {rel} again; each image once", r.votes))
            continue
        seen.add(rel)
        out.append(ImageRecord(rel, r.label, None, r.votes))
    ds.records = out
    if not any(r.error is None for r in out):
        raise DatasetError(f"{ds.source}: none of its {len(out)} images can be read ({out[0].error if out else 'none listed'})")
    return ds


def _nothing_found(path: Path) -> str:
    return f"no images found in {path}: expected ImageFolder root/<class>/<image>, a CSV manifest path,label, or images"
