"""Reading back what Image Triage exported: an export's class folders carry escaped names
(``%2Ehidden`` for ``.hidden``, ``%2F`` for ``/``), and its ``classes.json`` holds each class's
exact name beside its folder. A folder that Image Triage made (its marker file) is read with
the exact names, so every export reads back as what was exported."""

from __future__ import annotations

import json
from pathlib import Path

from scoring.errors import ImageTriageError
from scoring.io.safeio import read_text
from scoring.io.safewrite import created_by_us

CLASSES_JSON = "classes.json"


def exported_class_names(root: Path) -> dict[str, str]:
    """{folder: exact class name} of an export Image Triage made at ``root`` (or whose ``images``
    folder ``root`` is); {} for any other folder, or when its classes.json is missing or not a
    list of {"name", "folder"}."""
    if not created_by_us(root) and root.name == "images" and created_by_us(root.parent):
        root = root.parent
    if not created_by_us(root) or not (root / CLASSES_JSON).is_file():
        return {}
    try:
        doc = json.loads(read_text(root / CLASSES_JSON, what="export's classes.json", max_bytes=16 << 20))
    except (OSError, ValueError, ImageTriageError):
        return {}
    if not isinstance(doc, list):
        return {}
    return {e["folder"]: e["name"] for e in doc
            if isinstance(e, dict) and isinstance(e.get("folder"), str) and isinstance(e.get("name"), str)}
