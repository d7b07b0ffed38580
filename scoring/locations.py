"""Where a project file lives by default (beside the dataset, never inside it), and the user's
own folders for what Image Triage makes on its own (the demo, projects of read-only datasets,
images unpacked from a Hugging Face dataset), from platformdirs: XDG on Linux, ~/Library on
macOS, %LOCALAPPDATA% on Windows."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

PROJECT_SUFFIX = ".triage.db"


APP = "image-triage"


def user_data_dir() -> Path:
    """The user's data folder for Image Triage (``$XDG_DATA_HOME/image-triage`` on Linux)."""
    import platformdirs

    return Path(platformdirs.user_data_dir(APP, appauthor=False))


def user_cache_dir() -> Path:
    """The user's cache folder for Image Triage (``$XDG_CACHE_HOME/image-triage`` on Linux):
    what can be made again from the user's files."""
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP, appauthor=False))


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
