"""Where a project file lives by default: beside the dataset, never inside it."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

PROJECT_SUFFIX = ".triage.db"


def user_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "image-triage"


def default_project_path(source: str | Path) -> Path:
    """The project file for a dataset folder or CSV manifest.

    ``/data/pets`` -> ``/data/pets.triage.db``; ``/data/pets/train.csv`` ->
    ``/data/pets-train.triage.db`` (beside the manifest's folder, not inside the dataset).
    When that folder is not writable (a read-only dataset location), the project goes to
    the user's data folder, named after the dataset and a hash of its path.
    """
    src = Path(source).expanduser().resolve()
    if src.is_file():
        name, parent = f"{src.parent.name}-{src.stem}", src.parent.parent
    else:
        name, parent = src.name or "dataset", src.parent
    candidate = parent / f"{name}{PROJECT_SUFFIX}"
    if candidate.exists() or os.access(parent, os.W_OK):
        return candidate
    digest = hashlib.sha1(str(src).encode()).hexdigest()[:8]
    fallback = user_data_dir() / "projects" / f"{name}-{digest}{PROJECT_SUFFIX}"
    log.info("%s is not writable; the project goes to %s", parent, fallback)
    return fallback


def is_project_path(path: str | Path) -> bool:
    return str(path).endswith(PROJECT_SUFFIX) or Path(path).suffix in {".db", ".sqlite"}
