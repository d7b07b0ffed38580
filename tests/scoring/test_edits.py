"""Edits: every action, undo and redo from the append-only log, across processes and kills."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from scoring.io.formats import open_dataset
from scoring.store import Project
from tests.scoring.tinypool import make_imagefolder

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    data = make_imagefolder(tmp_path / "data", per_class=3, corrupt=False)
    Project.create(tmp_path / "p.triage.db", open_dataset(data)).close()
    return tmp_path / "p.triage.db"


def _state(p: Project, i: int) -> tuple[int | None, str]:
    row = p.images.image(i)
    return row.current_label, row.status


def test_each_action_sets_label_and_status(db: Path) -> None:
    with Project.open(db) as p:
        assert p.edits.relabel(1, 2).new_status == "relabelled"
        assert _state(p, 1) == (2, "relabelled")
        assert p.edits.relabel(1, 0).new_status == "kept"  # back to its given label
        assert p.edits.keep(2).new_status == "kept"
        p.edits.relabel(3, 1)
        p.edits.remove(3)
        assert _state(p, 3) == (1, "removed")
        assert p.edits.restore(3).new_status == "relabelled"  # the status it had before removal
        assert p.queue.stats()["relabelled"] == 1 and p.queue.stats()["kept"] == 2
        with pytest.raises(ValueError, match="out of range"):
            p.edits.relabel(1, 7)
        with pytest.raises(ValueError, match="no image with id 999"):
            p.edits.remove(999)


def test_undo_redo_walks_the_history(db: Path) -> None:
    with Project.open(db) as p:
        p.edits.relabel(1, 2)
        p.edits.remove(2)
        p.edits.keep(3)
        assert p.edits.undo().image_id == 3 and _state(p, 3) == (0, "unreviewed")
        assert p.edits.undo().image_id == 2 and _state(p, 2) == (0, "unreviewed")
        assert p.edits.redo().image_id == 2 and _state(p, 2) == (0, "removed")
        p.edits.relabel(4, 1)  # a new edit clears the redo stack
        assert p.edits.redo() is None
        assert p.edits.undo().image_id == 4
        assert p.edits.undo().image_id == 2
        assert p.edits.undo().image_id == 1 and _state(p, 1) == (0, "unreviewed")
        assert p.edits.undo() is None
        actions = [e.action for e in p.edits.entries()]
        assert actions.count("undo") == 5 and actions.count("redo") == 1  # append-only


def test_undo_works_after_a_restart_and_from_another_process(db: Path) -> None:
    with Project.open(db) as p:
        p.edits.relabel(1, 2)
        p.edits.relabel(2, 1)
    with Project.open(db) as p:
        assert p.edits.undo().image_id == 2
    code = f"from scoring.store import Project; p = Project.open({str(db)!r}); print(p.edits.undo().image_id)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "1"
    with Project.open(db) as p:
        assert _state(p, 1) == (0, "unreviewed")


def test_two_open_projects_interleave_safely(db: Path) -> None:
    a, b = Project.open(db), Project.open(db)
    try:
        a.edits.relabel(1, 2)
        b.edits.relabel(2, 2)
        assert _state(b, 1) == (2, "relabelled")
        assert a.edits.undo().image_id == 2  # a sees b's edit as the newest
        assert _state(b, 2) == (0, "unreviewed")
        assert b.edits.undo().image_id == 1
        assert a.queue.stats()["unreviewed"] == 9
    finally:
        a.close()
        b.close()


def test_an_edit_survives_kill_9(db: Path) -> None:
    code = (
        f"import time; from scoring.store import Project; p = Project.open({str(db)!r}); p.edits.relabel(5, 2); p.edits.remove(6);"
        "print('done', flush=True); time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert child.stdout is not None and child.stdout.readline().strip() == "done"
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
    with Project.open(db) as p:
        assert _state(p, 5) == (2, "relabelled")
        assert p.images.image(6).status == "removed"
        assert p.edits.undo().image_id == 6


def test_keep_only_is_one_decision_for_undo_and_redo(db: Path) -> None:
    """Keep one of a duplicate group, remove the others: one undo brings all of them back,
    one redo removes them again, in this process and in a new one."""
    with Project.open(db) as p:
        p.edits.relabel(5, 2)
        p.edits.remove(3)  # already removed: keep_only leaves it as it is
        before = {i: _state(p, i) for i in (1, 2, 3, 4)}
        edit = p.edits.keep_only(1, [1, 2, 3, 4])
        assert edit.image_id == 1 and edit.batch is not None
        assert [_state(p, i)[1] for i in (1, 2, 3, 4)] == ["kept", "removed", "removed", "removed"]
        undone = p.edits.undo()
        assert undone is not None and undone.image_id == 1  # the view goes back to the kept image
        assert {i: _state(p, i) for i in (1, 2, 3, 4)} == before
        assert _state(p, 5) == (2, "relabelled")  # the decision before is still there
    with Project.open(db) as p:  # the stacks are derived from the log: a new process agrees
        assert p.edits.redo() is not None
        assert [_state(p, i)[1] for i in (1, 2, 3, 4)] == ["kept", "removed", "removed", "removed"]
        assert p.edits.undo() is not None and p.edits.undo() is not None  # the group, then the remove of 3
        assert _state(p, 3)[1] != "removed" and _state(p, 5) == (2, "relabelled")
        assert p.edits.undo() is not None and _state(p, 5)[1] == "unreviewed"
        assert p.edits.undo() is None
