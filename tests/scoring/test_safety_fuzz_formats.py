"""Fuzz, issue 28: the format readers (Label Studio, CVAT, FiftyOne, Hugging Face) as surfaces.

Each example writes one export of another tool holding a few real images and random hostile
entries: names that are absolute, climb out with ``..``, are ``file://`` URIs, lead through a link
out of the dataset, are FIFOs or ``/dev/zero``, garbage bytes, control characters, twins after
normalisation; and malformed fields (Label Studio's annotations of the wrong shape). Then it scores
and exports through the command line, and asserts:

* no file under the folder beside the dataset (the "outside") was opened (Python's ``open``
  audit event: builtins' open, io.open and os.open);
* nothing outside the export destination and the project file changed;
* every error the command line printed is one line.

``FUZZ_EXAMPLES`` sets the number of examples (CI: a third of the default of the other fuzz).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from tests.scoring.conftest import tiny_member
from tests.scoring.snapshot import snapshot
from tests.scoring.test_safety import cli

EXAMPLES = max(5, int(os.environ.get("FUZZ_EXAMPLES", "40")) // 3)
CLASSES = ("blue", "green", "red")
FORMATS = ("labelstudio", "cvat", "fiftyone", "huggingface")
NAMES = ("absolute", "updir", "file_uri", "link_out", "dir_link_out", "fifo", "devzero", "garbage", "control",
         "dot_twin", "malformed")

_OPENED: list[str] | None = None


def _hook(event_name: str, args: tuple) -> None:
    if _OPENED is not None and event_name == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        _OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_hook)


def _png(path: Path, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(path)
    return path.read_bytes()


def _entries(folder: Path, outside: Path, hostile: list[str]) -> list[tuple[str, str | None]]:
    """(name as the format lists it, label) for 6 real images and each hostile entry (made on disk)."""
    out = [(f"{n}.png", CLASSES[n % 3]) for n in range(6)]
    for n in range(6):
        _png(folder / f"{n}.png", n)
    for k, kind in enumerate(hostile):
        name = f"h{k}.png"
        if kind == "absolute":
            name = str(outside / "o.png")
        elif kind == "updir":
            name = "../outside/o.png"
        elif kind == "file_uri":
            name = f"file://{outside / 'o.png'}"
        elif kind == "link_out":
            (folder / name).symlink_to(outside / "o.png")
        elif kind == "dir_link_out":
            (folder / f"sub{k}").symlink_to(outside)
            name = f"sub{k}/o.png"
        elif kind == "fifo":
            os.mkfifo(folder / name)
        elif kind == "devzero":
            (folder / name).symlink_to("/dev/zero")
        elif kind == "garbage":
            (folder / name).write_bytes(b"\x89PNG\r\n\x1a\ngarbage")
        elif kind == "control":
            name = f"c\x1b[2J{k}.png"
            _png(folder / name, 50 + k)
        elif kind == "dot_twin":
            name = "./0.png"
        out.append((name, CLASSES[k % 3] if kind != "malformed" else None))
    return out


def _write(fmt: str, root: Path, outside: Path, hostile: list[str]) -> Path:
    if fmt == "labelstudio":
        entries = _entries(root, outside, hostile)
        tasks = []
        for n, (name, label) in enumerate(entries):
            ann = [{"completed_by": 1, "result": [{"type": "choices", "value": {"choices": [label]}}]}] if label else 5
            tasks.append({"id": n, "data": {"image": name}, "annotations": ann})
        (root / "tasks.json").write_text(json.dumps(tasks))
        return root / "tasks.json"
    if fmt == "cvat":
        entries = _entries(root / "images", outside, hostile)
        images = "".join(
            f'<image id="{n}" name="{json.dumps(name)[1:-1].replace(chr(34), "")}"><tag label="{label or "red"}"/></image>'
            for n, (name, label) in enumerate(entries) if "\x1b" not in name)
        labels = "".join(f"<label><name>{c}</name></label>" for c in CLASSES)
        (root / "annotations.xml").write_text(f"<annotations><meta><task><labels>{labels}</labels></task></meta>"
                                              f"{images}</annotations>")
        return root
    if fmt == "fiftyone":
        entries = _entries(root / "data", outside, hostile)
        labels = {Path(name).stem: label for name, label in entries if "/" not in name and "://" not in name}
        (root / "labels.json").write_text(json.dumps({"classes": list(CLASSES), "labels": labels}))
        return root
    datasets = pytest.importorskip("datasets")
    import pyarrow as pa
    import pyarrow.parquet as pq

    entries = _entries(root, outside, hostile)
    feats = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=list(CLASSES))})
    cells = [{"bytes": None, "path": name} for name, _ in entries]
    labs = [CLASSES.index(lab) if lab else -1 for _, lab in entries]
    pq.write_table(pa.Table.from_pydict({"image": cells, "label": labs}, schema=feats.arrow_schema), root / "d.parquet")
    return root / "d.parquet"


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(fmt=st.sampled_from(FORMATS), hostile=st.lists(st.sampled_from(NAMES), max_size=5),
       link=st.sampled_from(["hardlink", "copy", "symlink"]))
def test_format_readers_never_read_outside_the_dataset(capsys: pytest.CaptureFixture[str], fmt: str,
                                                      hostile: list[str], link: str) -> None:
    global _OPENED
    top = Path(tempfile.mkdtemp(prefix="fuzz-formats-")).resolve()
    cache = os.environ.get("XDG_CACHE_HOME")  # the session's own (conftest): put back, never dropped
    try:
        os.environ["XDG_CACHE_HOME"] = str(top / "cache")  # the Hugging Face unpack: ours, beside the rest
        outside = top / "outside"
        secret = _png(outside / "o.png", 99)
        dataset = _write(fmt, top / "data", outside, hostile)
        member = tiny_member(top / "model")
        db = top / "p.triage.db"
        before = snapshot(top, skip=(".triage.db", "cache"))
        _OPENED = []
        rc, _, err = cli(["score", dataset, "--db", db, *member, "--workers", "0", "-q", "--no-duplicates",
                          "--runtime", "torch"], capsys)  # the readers under test; ONNX's export is tested elsewhere
        event(f"{fmt}: score {'ran' if rc == 0 else 'refused'}")
        if rc == 0:
            rc, _, err = cli(["export", "--db", db, top / "out", "--link", link], capsys)
            event(f"{fmt}: export {'written' if rc == 0 else 'refused'}")
        opened = [p for p in _OPENED if os.path.realpath(p).startswith(str(outside) + os.sep)]
        _OPENED = None
        assert not opened, (fmt, hostile, opened)
        after = snapshot(top, skip=(".triage.db", "cache"))
        changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
        assert all(k == "out" or k.startswith("out/") for k in changed), (fmt, hostile, changed)
        if (top / "out").exists() and link == "copy":
            assert not any(p.is_file() and p.read_bytes() == secret for p in (top / "out").rglob("*"))
    finally:
        _OPENED = None
        if cache is None:
            os.environ.pop("XDG_CACHE_HOME", None)
        else:
            os.environ["XDG_CACHE_HOME"] = cache
        shutil.rmtree(top, ignore_errors=True)
