"""The dataset formats: one table, each entry knowing how to detect, read and write its format.

``open_dataset`` and ``--layout`` read the entries that can ``read``; the exporter, ``export
--format`` and the app's Export dialog read the entries that can ``write``; the README's list of
formats is checked against the same table (tests/test_docs.py). Adding a format, built in or from
a plugin, is one :func:`register_format` call with one :class:`Format`.

Every export writes the same self-contained files (the images, ``manifest.csv``,
``difficulty.csv``, the edits and the report: scoring.tasks.export); a format's ``write`` adds its
own files for the tool that reads it next, from plain :class:`ExportRow` values (no project).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scoring.io.datasets import (
    Dataset,
    DatasetError,
    confine_records,
    find_classes,
    read_csv_manifest,
    read_cvat,
    read_fiftyone,
    read_flat,
    read_huggingface,
    read_imagefolder,
    read_labelstudio,
)
from scoring.registry import Registry


@dataclass(frozen=True)
class ExportRow:
    """One exported image as a format's writer sees it: names and numbers, no project."""

    path: str  # the exported copy, relative to the export folder
    source_path: str  # where it came from, relative to the dataset
    label: str | None  # the final label
    given_label: str | None
    consensus: str | None  # the pool's label
    consensus_prob: float | None
    status: str
    decided: bool  # an annotator kept or relabelled it
    width: int
    height: int
    scores: dict[str, Any] = field(default_factory=dict)


# (export folder, classes, rows, the file or folder the project was read from when it came in this
# same format, else None)
Writer = Callable[[Path, list[str], list[ExportRow], Path | None], None]
Read = Callable[[Path, bool], Dataset]  # (path, follow_symlinks) -> its Dataset
Detect = Callable[[Path, bool], bool]  # (path, follow_symlinks) -> is it one


@dataclass(frozen=True)
class Format:
    """A dataset format: any of ``detect`` (an unnamed path is one; None: only when named), ``read``
    (``--layout NAME``) and ``write`` (``export --format NAME``). A plugin's format is detected
    before the built-in ones, and the one rule over names (``confine_records``) is applied to
    whatever its ``read`` lists."""

    name: str
    help: str  # what it is, for --layout and --format
    read: Read | None = None
    detect: Detect | None = None
    write: Writer | None = None  # its own files beside the common ones (see :func:`common_only`)
    writes: str = ""  # what an export in it holds, in words (the Export dialog, --format's help)
    images_under: str = "images"  # the export folder the images go in
    by_class: bool = True  # <folder>/<class>/<file> (the label is the folder); else <folder>/<n>-<file>


def common_only(folder: Path, classes: list[str], rows: list[ExportRow], source: Path | None) -> None:
    """The writer of a format whose files are the common ones (ImageFolder, CSV)."""


def write_json(folder: Path, classes: list[str], rows: list[ExportRow], source: Path | None) -> None:
    (folder / "manifest.json").write_text(json.dumps([{"path": r.path, "label": r.label} for r in rows], indent=1))


def write_labelstudio(folder: Path, classes: list[str], rows: list[ExportRow], source: Path | None) -> None:
    """``tasks.json`` for Label Studio (scoring.io.labelstudio): the original tasks where the
    project came from a Label Studio export, each pointing at its exported copy."""
    from scoring.io import labelstudio as LS

    originals: dict[str, dict[str, Any]] = {}
    for task in LS.read_tasks(source) if source is not None else []:
        rel, _ = LS.task_path(task)
        if rel is not None:
            originals[rel] = task
    tasks = [LS.export_task(originals.get(r.source_path), "/data/local-files/?d=" + urllib.parse.quote(r.path),
                            r.label, r.decided, r.consensus, r.consensus_prob,
                            r.scores | {"source": r.source_path, "status": r.status}) for r in rows]
    (folder / "tasks.json").write_text(json.dumps(tasks, indent=1))


def write_fiftyone(folder: Path, classes: list[str], rows: list[ExportRow], source: Path | None) -> None:
    from scoring.io import fiftyone as FO

    FO.write(folder, classes, [{
        "filepath": r.path, "id": Path(r.path).stem, "label": r.label,
        "prediction": (r.consensus, r.consensus_prob) if r.consensus is not None else None,
        "scores": r.scores | {"source_path": r.source_path, "status": r.status},
    } for r in rows])


def write_cvat(folder: Path, classes: list[str], rows: list[ExportRow], source: Path | None) -> None:
    from scoring.io import cvat as CV

    CV.write(folder / CV.ANNOTATIONS, classes, [
        {"name": r.path.removeprefix("images/"), "label": r.label, "width": r.width, "height": r.height} for r in rows])


def write_huggingface(folder: Path, classes: list[str], rows: list[ExportRow], source: Path | None) -> None:
    from scoring.io import huggingface as HF

    HF.write(folder, classes, [{
        "file": folder / r.path, "path": r.path, "label": r.label, "given_label": r.given_label,
        "consensus": r.consensus, "status": r.status, "source_path": r.source_path, "scores": r.scores,
    } for r in rows])


def _files_only(what: str, read: Callable[[Path], Dataset]) -> Read:
    def read_file(p: Path, follow: bool) -> Dataset:
        if not p.is_file():
            raise DatasetError(f"{p} is a folder; {what}")
        return read(p)
    return read_file


def _is_huggingface(p: Path) -> bool:
    from scoring.io.huggingface import is_huggingface
    return is_huggingface(p)


_BUILTIN = (  # the export order; an unnamed path is tried by each `detect` in this order, then ImageFolder, flat
    Format("imagefolder", "root/<class>/<image> (torchvision's ImageFolder)", read_imagefolder, None,
           common_only, "images/<class>/<file> and manifest.csv"),
    Format("csv", "a CSV manifest path,label", _files_only("a CSV manifest is a .csv file", read_csv_manifest),
           lambda p, f: p.is_file() and p.suffix.lower() == ".csv",
           common_only, "images/<n>-<file>, one flat folder, and manifest.csv (path,label): the labels are in the "
           "manifest only", by_class=False),
    Format("json", "a JSON list of path and label (written only)", None, None, write_json,
           "the images and manifest.json"),
    Format("huggingface", "a Hugging Face dataset saved to disk",
           lambda p, f: confine_records(read_huggingface(p, f)), lambda p, f: _is_huggingface(p),
           write_huggingface, "data/train-00000-of-00001.parquet: images, ClassLabel label, the scores as columns"),
    Format("cvat", "a CVAT for images XML export", lambda p, f: confine_records(read_cvat(p), f),
           lambda p, f: p.suffix.lower() == ".xml" if p.is_file() else (p / "annotations.xml").is_file(),
           write_cvat, "annotations.xml (CVAT for images 1.1, one tag per image) beside images/"),
    Format("labelstudio", "a Label Studio JSON export",
           lambda p, f: confine_records(_files_only("a Label Studio export is a .json file", read_labelstudio)(p, f), f),
           lambda p, f: p.is_file() and p.suffix.lower() == ".json",
           write_labelstudio, "tasks.json: your decisions as annotations, the pool as predictions, the scores in data"),
    Format("fiftyone", "a FiftyOne image classification export", lambda p, f: confine_records(read_fiftyone(p, f), f),
           lambda p, f: (p / "labels.json").is_file() and (p / "data").is_dir(),
           write_fiftyone, "data/ + labels.json + samples.json with the scores as sample fields",
           images_under="data", by_class=False),
    Format("flat", "a folder of images, no labels", read_flat),
)
FORMATS: Registry[Format] = Registry("dataset format", DatasetError, tuple(f.name for f in _BUILTIN))
for _f in _BUILTIN:
    FORMATS.add(_f.name, _f)


def register_format(fmt: Format) -> Format:
    """Add a dataset format: whatever it can do (detect, read, write) is offered from then on by
    ``open_dataset``, ``--layout``, the exporter, ``export --format`` and the Export dialog."""
    if fmt.read is None and fmt.write is None:
        raise ValueError(f"dataset format {fmt.name!r}: give it a read, a write or both")
    if not fmt.images_under.isidentifier():
        raise ValueError(f"dataset format {fmt.name!r}: images_under must be a plain folder name")
    return FORMATS.add(fmt.name, fmt)


def unregister_format(name: str) -> None:
    FORMATS.remove(name)


def layouts() -> dict[str, str]:
    """The formats ``--layout`` takes (those that read), each with its help, in the table's order."""
    return {f.name: f.help for f in FORMATS.values() if f.read is not None}


def export_formats() -> dict[str, Format]:
    """The formats an export can be written in, in the table's order (ImageFolder first)."""
    return {f.name: f for f in FORMATS.values() if f.write is not None}


def open_dataset(path: str | Path, layout: str | None = None, *, follow_symlinks: bool = False) -> Dataset:
    """Read a dataset, detecting its format unless ``layout`` names one of :func:`layouts`.

    Symbolic links that lead outside the dataset's root are not followed unless
    ``follow_symlinks``; every folder is read once (links that loop are harmless).
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise DatasetError(f"{p} does not exist: give a dataset folder or a CSV manifest")
    p = p.resolve()
    if not (p.is_dir() or p.is_file()):
        raise DatasetError(f"{p} is a special file, not a dataset folder or a CSV manifest")
    if layout is not None and layout not in layouts():
        raise DatasetError(f"unknown layout {layout!r}; use one of {', '.join(layouts())}")
    try:
        return _by_layout(p, layout, follow_symlinks)
    except DatasetError as exc:  # a stray state.json or labels.json may have picked the layout: say how to choose
        if layout is None and p.is_dir() and find_classes(p, follow_symlinks) and "--layout" not in str(exc):
            raise DatasetError(f"{exc} (the layout was guessed from the files at the top of {p}; if its "
                               "sub-folders are classes, pass --layout imagefolder)") from exc
        raise


def _by_layout(p: Path, layout: str | None, follow_symlinks: bool) -> Dataset:
    plugins = [f for f in FORMATS.values() if f not in _BUILTIN and f.read is not None]  # built-ins confine themselves
    named = [FORMATS.get(layout)] if layout is not None else None
    for fmt in named or [f for f in [*plugins, *_BUILTIN] if f.read is not None and f.detect is not None
                         and f.detect(p, follow_symlinks)][:1]:
        assert fmt.read is not None
        ds = fmt.read(p, follow_symlinks)
        return confine_records(ds, follow_symlinks) if fmt in plugins else ds
    if p.is_file():
        raise DatasetError(f"{p} is a file but not a .csv manifest or a Label Studio .json export")
    if find_classes(p, follow_symlinks):
        try:
            return read_imagefolder(p, follow_symlinks)
        except DatasetError:
            pass  # class folders without images: a flat folder of images, perhaps
    return read_flat(p, follow_symlinks)
