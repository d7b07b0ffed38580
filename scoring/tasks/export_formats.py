"""The export formats: one registry, read by the exporter, the command line and the app.

Every format writes the same self-contained export (the images, ``manifest.csv``,
``difficulty.csv``, the edits and the report: see scoring.tasks.export); a format adds its own files
for the tool that reads it next. Adding a format is one ``register_format`` call (a built-in one is
an entry of ``_BUILTIN`` here).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scoring.registry import Registry
from scoring.store import Project

Writer = Callable[[Project, Path, list[Any], list[str]], None]  # (project, build folder, rows, exported paths)


@dataclass(frozen=True)
class ExportFormat:
    name: str
    help: str
    write: Writer | None = None  # its own files, beside the common ones (None: the common ones are the format)
    images_under: str = "images"  # the folder the images go in
    by_class: bool = True  # <folder>/<class>/<file> (the label is the folder); else <folder>/<n>-<file>


def _label(classes: list[str], i: int | None) -> str | None:
    return classes[i] if i is not None else None


def _scores(r: Any) -> dict[str, Any]:
    return dict(r.scores)


def write_json(project: Project, tmp: Path, keep: list[Any], out_paths: list[str]) -> None:
    classes = project.classes
    (tmp / "manifest.json").write_text(json.dumps(
        [{"path": p, "label": _label(classes, r.current_label)} for p, r in zip(out_paths, keep, strict=True)], indent=1))


def write_labelstudio(project: Project, tmp: Path, keep: list[Any], out_paths: list[str]) -> None:
    """``tasks.json`` for Label Studio (scoring.io.labelstudio): the original tasks where the
    project came from a Label Studio export, each pointing at its exported copy."""
    from scoring.io import labelstudio as LS

    classes = project.classes
    originals: dict[str, dict[str, Any]] = {}
    if project.layout == "labelstudio":
        for task in LS.read_tasks(project.source):
            rel, _ = LS.task_path(task)
            if rel is not None:
                originals[rel] = task
    tasks = []
    for p, r in zip(out_paths, keep, strict=True):
        scores = _scores(r) | {"source": r.path, "status": r.status}
        image = "/data/local-files/?d=" + urllib.parse.quote(p)  # the exported copy, beside tasks.json
        tasks.append(LS.export_task(originals.get(r.path), image, _label(classes, r.current_label),
                                    r.status in ("kept", "relabelled"), _label(classes, r.consensus),
                                    r.consensus_prob, scores))
    (tmp / "tasks.json").write_text(json.dumps(tasks, indent=1))


def write_fiftyone(project: Project, tmp: Path, keep: list[Any], out_paths: list[str]) -> None:
    from scoring.io import fiftyone as fiftyone_format

    classes = project.classes
    fiftyone_format.write(tmp, classes, [{
        "filepath": p, "id": Path(p).stem, "label": _label(classes, r.current_label),
        "prediction": (classes[r.consensus], r.consensus_prob) if r.consensus is not None else None,
        "scores": _scores(r) | {"source_path": r.path, "status": r.status},
    } for p, r in zip(out_paths, keep, strict=True)])


def write_cvat(project: Project, tmp: Path, keep: list[Any], out_paths: list[str]) -> None:
    import numpy as np

    from scoring.io import cvat as cvat_format

    classes = project.classes
    widths, heights = project.images.sizes(np.array([r.id for r in keep], dtype=np.int64))
    cvat_format.write(tmp / cvat_format.ANNOTATIONS, classes, [
        {"name": p.removeprefix("images/"), "label": _label(classes, r.current_label), "width": int(w), "height": int(h)}
        for p, r, w, h in zip(out_paths, keep, widths, heights, strict=True)])


def write_huggingface(project: Project, tmp: Path, keep: list[Any], out_paths: list[str]) -> None:
    from scoring.io import huggingface as hf_format

    classes = project.classes
    hf_format.write(tmp, classes, [{
        "file": tmp / p, "path": p, "label": _label(classes, r.current_label),
        "given_label": _label(classes, r.given_label), "consensus": _label(classes, r.consensus),
        "status": r.status, "source_path": r.path, "scores": _scores(r),
    } for p, r in zip(out_paths, keep, strict=True)])


def register_format(fmt: ExportFormat) -> ExportFormat:
    """Add an export format: the exporter, ``image-triage export --format`` and the app's Export
    dialog offer it from then on."""
    if not fmt.images_under.isidentifier():
        raise ValueError(f"export format {fmt.name!r}: images_under must be a plain folder name")
    return FORMATS.add(fmt.name, fmt)


def unregister_format(name: str) -> None:
    FORMATS.remove(name)


_BUILTIN = (
    ExportFormat("imagefolder", "images/<class>/<file> (torchvision's ImageFolder) and manifest.csv"),
    ExportFormat("csv", "images/<n>-<file>, one flat folder, and manifest.csv (path,label): the labels are in the "
                 "manifest only", by_class=False),
    ExportFormat("json", "the images and manifest.json", write_json),
    ExportFormat("labelstudio", "tasks.json: your decisions as annotations, the pool as predictions, the scores in data",
                 write_labelstudio),
    ExportFormat("fiftyone", "data/ + labels.json + samples.json with the scores as sample fields", write_fiftyone,
                 images_under="data", by_class=False),
    ExportFormat("cvat", "annotations.xml (CVAT for images 1.1, one tag per image) beside images/", write_cvat),
    ExportFormat("huggingface", "data/train-00000-of-00001.parquet: images, ClassLabel label, the scores as columns",
                 write_huggingface),
)
FORMATS: Registry[ExportFormat] = Registry("export format", ValueError, tuple(f.name for f in _BUILTIN))
for _f in _BUILTIN:
    FORMATS.add(_f.name, _f)
