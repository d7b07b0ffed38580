"""FiftyOne's image-classification exchange format, both ways (no FiftyOne needed).

Import: a ``FiftyOneImageClassificationDataset`` folder (``fo.types``): ``labels.json`` holding
``{"classes": [...], "labels": {"<id>": <class index | class name | {"label": name, ...}>}}``
and the images in ``data/<id>.<ext>``; images with no label (``null``) are unlabelled.

Export (``image-triage export --format fiftyone``): the same layout (``labels.json`` with the
final labels, the exported images under ``data/``) plus ``samples.json`` in the layout of a
``FiftyOneDataset`` export, one sample per image with ``ground_truth`` (the final label), the
pool's ``prediction`` (consensus and confidence) and every score as a sample field, for sorting
and filtering in the FiftyOne App.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from scoring.errors import ImageTriageError
from scoring.io.safeio import read_text, walk_files


class FiftyOneError(ImageTriageError, ValueError):
    """A FiftyOne export that cannot be read; the message names the file."""


def read_labels(folder: Path, follow_symlinks: bool = False) -> tuple[list[str], list[tuple[str, str | None]]]:
    """(classes, [(path relative to folder, label or None)]) of a FiftyOne classification export."""
    path = folder / "labels.json"
    try:
        doc = json.loads(read_text(path, what="FiftyOne labels.json"))
    except json.JSONDecodeError as exc:
        raise FiftyOneError(f"{path}: not a FiftyOne labels.json ({exc})") from exc
    except RecursionError as exc:
        raise FiftyOneError(f"{path}: nested too deeply to be a FiftyOne labels.json; not read") from exc
    if (not isinstance(doc, dict) or not isinstance(doc.get("labels"), dict)
            or not isinstance(doc.get("classes") or [], list)):
        raise FiftyOneError(f"{path}: expected {{\"classes\": [...], \"labels\": {{id: label}}}}")
    classes = [str(c) for c in doc.get("classes") or []]
    walk = walk_files(folder / "data", folder, lambda _name: True, follow_symlinks=follow_symlinks)  # links out, special files: not taken
    files: dict[str, Path] = {}
    for rel in walk.files:
        stem = Path(rel).stem
        if stem in files:
            raise FiftyOneError(f"{folder / 'data'}: {files[stem].name} and {Path(rel).name} are both sample {stem!r}; "
                                "keep one of them")
        files[stem] = folder / rel
    out: list[tuple[str, str | None]] = []
    for key, value in doc["labels"].items():
        f = files.get(str(key))
        if f is None:
            raise FiftyOneError(f"{path}: sample {key!r} has no image in {folder / 'data'}")
        if isinstance(value, dict):
            value = value.get("label")
        if isinstance(value, int) and not isinstance(value, bool):
            if not 0 <= value < len(classes):
                raise FiftyOneError(f"{path}: sample {key!r} has class index {value}, but {len(classes)} classes")
            value = classes[value]
        out.append((f.relative_to(folder).as_posix(), None if value is None else str(value)))
    return classes, out


def write(dest: Path, classes: list[str], samples: list[dict[str, Any]]) -> None:
    """``labels.json`` and ``samples.json`` for exported ``samples``: each ``{"filepath": path
    relative to dest, "id": stem, "label": final label or None, "prediction": (label, prob) or
    None, "scores": {name: value}}``."""
    labels = {s["id"]: (classes.index(s["label"]) if s["label"] in classes else None) for s in samples}
    (dest / "labels.json").write_text(json.dumps({"classes": classes, "labels": labels}, indent=1))
    out = []
    for s in samples:
        row: dict[str, Any] = {"filepath": s["filepath"], "tags": []}
        if s["label"] is not None:
            row["ground_truth"] = {"_cls": "Classification", "label": s["label"]}
        if s["prediction"] is not None:
            row["prediction"] = {"_cls": "Classification", "label": s["prediction"][0], "confidence": s["prediction"][1]}
        row.update({k: v for k, v in s["scores"].items() if k not in row})
        out.append(row)
    (dest / "samples.json").write_text(json.dumps({"samples": out}, indent=1))
