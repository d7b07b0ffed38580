"""Shared fixtures. Qt runs offscreen in every test; nothing downloads anything."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Never reach for the network from a test: torchvision/hub would otherwise try to download.
os.environ.setdefault("TORCH_HOME", str(Path(__file__).parent / ".torch-home-unused"))
os.environ["IMAGE_TRIAGE_OFFLINE"] = "1"  # and never download weights: missing ones are an error
# The user's cache and data folders (ONNX exports, unpacked datasets, the timing history) are the
# session's own: a test never writes into the developer's ~/.cache or ~/.local/share.
_USER_DIRS = tempfile.mkdtemp(prefix="image-triage-tests-")
atexit.register(shutil.rmtree, _USER_DIRS, True)  # the session's ONNX exports (up to 71 MB) went with every run
os.environ["XDG_CACHE_HOME"] = os.path.join(_USER_DIRS, "cache")
os.environ["XDG_DATA_HOME"] = os.path.join(_USER_DIRS, "data")

import pytest  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"


def shared_path(*parts: str) -> Path:
    """Path under ../shared, skipping the test when it is absent (it is not on users' machines)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (developers' shared data; absent here)")
    return path
