"""Issue 9, one test per attack: hostile datasets, destinations, pool files and projects.

Each test reproduces what lost files, ran code or printed a traceback before the fix, and
asserts the one-line refusal and that nothing else changed.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scoring.cli.main import main
from scoring.io.formats import open_dataset
from scoring.io.safewrite import MARKER
from scoring.pool.models.registry import get_model
from scoring.store import IncompleteProjectError, NotAProjectError, Project, project_for
from scoring.tasks.export import run_export
from tests.scoring.conftest import tiny_member
from tests.scoring.snapshot import snapshot
from tests.scoring.tinypool import make_imagefolder


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the command line in-process; a failure must be exactly one line, no traceback."""
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    if rc == 1:  # nothing to undo/redo: said on one line, not an error
        assert out.startswith("nothing to") and out.count("\n") == 1, out
    elif rc != 0:
        lines = [ln for ln in err.splitlines() if ln.startswith("image-triage:")]
        assert rc == 2 and len(lines) == 1, err
    return rc, out, err


def _images(folder: Path, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i}.png")


@pytest.fixture
def csv_outside(tmp_path: Path) -> Path:
    """A manifest in proj/ whose paths point at ../images/<class>/... (as in the report)."""
    for c in ("blue", "green", "red"):
        _images(tmp_path / "images" / c, 3, seed=len(c))
    rows = [f"../images/{c}/{i}.png,{c}" for c in ("blue", "green", "red") for i in range(3)]
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "m.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    return tmp_path / "proj" / "m.csv"


def _score(dataset: Path, db: Path, member: list[str], capsys: pytest.CaptureFixture[str], *extra: str) -> None:
    rc, _, err = cli(["score", dataset, "--db", db, *member, "--workers", "0", "-q", *extra], capsys)
    assert rc == 0, err


# ----------------------------------------------------------------------------- 1, 2: export


@pytest.mark.parametrize("link", ["hardlink", "symlink", "copy"])
def test_export_force_never_replaces_a_folder_holding_the_originals(
    tmp_path: Path, csv_outside: Path, member_args: list[str], capsys: pytest.CaptureFixture[str], link: str
) -> None:
    db = tmp_path / "p.triage.db"
    _score(csv_outside, db, member_args, capsys)
    before = snapshot(tmp_path)
    for dest in (tmp_path / "images", tmp_path / "images" / "blue", tmp_path, tmp_path / "images" / "blue" / "x"):
        rc, _, err = cli(["export", "--db", db, dest, "--force", "--link", link], capsys)
        assert rc == 2 and str(dest) in err
    assert snapshot(tmp_path) == before


def test_export_resolves_a_symlinked_class_folder(tmp_path: Path, member_args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    make_imagefolder(tmp_path / "data", per_class=3, corrupt=False)
    (tmp_path / "elsewhere").mkdir()
    os.rename(tmp_path / "data" / "red", tmp_path / "elsewhere" / "red")
    (tmp_path / "data" / "red").symlink_to(tmp_path / "elsewhere" / "red")
    db = tmp_path / "p.triage.db"
    _score(tmp_path / "data", db, member_args, capsys, "--follow-symlinks")
    before = snapshot(tmp_path)
    for dest in (tmp_path / "elsewhere", tmp_path / "elsewhere" / "red" / "out"):
        rc, _, err = cli(["export", "--db", db, dest, "--force"], capsys)
        assert rc == 2 and ("holds images" in err or "inside the dataset" in err)
    assert snapshot(tmp_path) == before


def test_export_force_never_deletes_the_project_file(tmp_path: Path, member_args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    make_imagefolder(tmp_path / "data", per_class=3, corrupt=False)
    (tmp_path / "work").mkdir()
    db = tmp_path / "work" / "p.triage.db"
    _score(tmp_path / "data", db, member_args, capsys)
    rc, _, err = cli(["export", "--db", db, tmp_path / "work", "--force"], capsys)
    assert rc == 2 and "project file" in err
    with Project.open(db) as p:
        assert len(p.images.scorable_ids()) == 9


def test_force_replaces_only_an_earlier_export(tmp_path: Path, member_args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    make_imagefolder(tmp_path / "data", per_class=3, corrupt=False)
    db = tmp_path / "p.triage.db"
    _score(tmp_path / "data", db, member_args, capsys)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("years of work")
    rc, _, err = cli(["export", "--db", db, tmp_path / "mine", "--force"], capsys)
    assert rc == 2 and "not made by Image Triage" in err and "--force" in err
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "years of work"
    assert cli(["export", "--db", db, tmp_path / "out"], capsys)[0] == 0
    assert (tmp_path / "out" / MARKER).is_file()
    assert cli(["export", "--db", db, tmp_path / "out", "--force"], capsys)[0] == 0


def test_a_killed_exports_leftovers_are_removed_by_the_next(tmp_path: Path, member_args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    make_imagefolder(tmp_path / "data", per_class=3, corrupt=False)
    db = tmp_path / "p.triage.db"
    _score(tmp_path / "data", db, member_args, capsys)
    ours = tmp_path / ".out.partial-0123abcd"
    ours.mkdir()
    (ours / MARKER).write_text('{"created_by": "image-triage"}')
    (ours / "half.png").write_bytes(b"x")
    empty = tmp_path / ".out.old-89abcdef"
    empty.mkdir()
    theirs = tmp_path / ".out.partial-fedcba98"  # same pattern, not ours, not empty: left alone
    theirs.mkdir()
    (theirs / "keep.txt").write_text("x")
    assert cli(["export", "--db", db, tmp_path / "out"], capsys)[0] == 0
    assert not ours.exists() and not empty.exists() and (theirs / "keep.txt").exists()


def test_export_error_messages_are_one_line(tmp_path: Path, member_args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    long = "x" * 251
    _images(data / "a", 1)
    _images(data / "b", 1)
    os.rename(data / "a" / "0.png", data / "a" / f"{long}.png")
    os.rename(data / "b" / "0.png", data / "b" / f"{long}.png")
    db = tmp_path / "p.triage.db"
    _score(data, db, tiny_member(tmp_path / "m2", ("a", "b")), capsys)
    assert cli(["relabel", "--db", db, f"b/{long}.png", "a"], capsys)[0] == 0  # two long names meet in a/
    rc, _, err = cli(["export", "--db", db, tmp_path / "out"], capsys)
    assert rc == 2 and "nothing was written" in err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    rc, _, err = cli(["export", "--db", db, tmp_path / "full"], capsys)
    assert rc == 2 and "--force" in err


# ----------------------------------------------------------------------------- 3: pool files


def _evil_checkpoint(path: Path, flag: Path) -> None:
    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {flag}",))

    torch.save({"state_dict": get_model("tiny_mlp", num_classes=3, size=16).state_dict(), "x": Evil()}, path)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('trust = "false"', "`trust` must be true or false"),
        ('trust = "true"', "`trust` must be true or false"),
        ("trust = 1", "`trust` must be true or false"),
        ('kind = ["checkpoint"]', "`kind` must be one of"),
        ('preprocess = "big"', "`preprocess` must be a table"),
        ("preprocess = { size = -3 }", "preprocess.size"),
        ("bogus = 1", "unknown keys ['bogus']"),
    ],
)
def test_pool_files_are_validated_and_untrusted_code_never_runs(
    tmp_path: Path, body: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    make_imagefolder(tmp_path / "data", per_class=2, corrupt=False)
    flag = tmp_path / "PWNED"
    _evil_checkpoint(tmp_path / "evil.pth", flag)
    base = {"name": '"evil"', "kind": '"checkpoint"', "path": '"evil.pth"', "arch": '"tiny_mlp"',
            "classes": '["blue", "green", "red"]', "preprocess": "{ size = 16 }"}
    key = body.split(" = ")[0]
    lines = [f"{k} = {v}" for k, v in base.items() if k != key] + [body]
    (tmp_path / "pool.toml").write_text("[[member]]\n" + "\n".join(lines) + "\n")
    rc, _, err = cli(["score", tmp_path / "data", "--pool", tmp_path / "pool.toml", "-q"], capsys)
    assert rc == 2 and message in err and "pool.toml member 1" in err
    assert not flag.exists()


def test_an_untrusted_pickle_or_torchscript_is_refused_and_runs_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_imagefolder(tmp_path / "data", per_class=2, corrupt=False)
    flag = tmp_path / "PWNED"
    _evil_checkpoint(tmp_path / "evil.pth", flag)
    m = get_model("tiny_mlp", num_classes=3, size=16)
    torch.jit.save(torch.jit.script(m.eval()), tmp_path / "ts.pt")
    for f, why in (("evil.pth", "run code to unpickle"), ("ts.pt", "TorchScript, which is code")):
        member = f"checkpoint:path={tmp_path / f},arch=tiny_mlp,size=16,classes_file={tmp_path / 'c.txt'}"
        (tmp_path / "c.txt").write_text("blue\ngreen\nred\n")
        rc, _, err = cli(["score", tmp_path / "data", "--member", member, "-q"], capsys)
        assert rc == 2 and why in err and f in err
    assert not flag.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"hello, I am a text file\n", "not a PyTorch checkpoint"),
        (None, "damaged or truncated"),  # the first half of a real checkpoint
    ],
)
def test_a_bad_checkpoint_file_is_named(tmp_path: Path, content: bytes | None, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    make_imagefolder(tmp_path / "data", per_class=2, corrupt=False)
    args = tiny_member(tmp_path / "m")
    ckpt = tmp_path / "m" / "m.pth"
    data = ckpt.read_bytes()
    ckpt.write_bytes(content if content is not None else data[: len(data) // 2])
    rc, _, err = cli(["score", tmp_path / "data", *args, "-q"], capsys)
    assert rc == 2 and message in err and "m.pth" in err


def test_a_pool_file_that_is_not_utf8_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_imagefolder(tmp_path / "data", per_class=2, corrupt=False)
    (tmp_path / "pool.toml").write_bytes(b'[[member]]\nname = "caf\xe9"\n')
    rc, _, err = cli(["score", tmp_path / "data", "--pool", tmp_path / "pool.toml"], capsys)
    assert rc == 2 and "pool.toml" in err and "not UTF-8" in err


# ----------------------------------------------------------------------------- 4, 5, 6: scanning


def _with_alarm(seconds: int, fn: object) -> object:
    """Run ``fn`` and fail (instead of hanging CI) if it takes longer than ``seconds``."""
    def on_alarm(*_: object) -> None:
        raise TimeoutError(f"hung for {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        return fn()  # type: ignore[operator]
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_special_and_huge_files_are_never_read(tmp_path: Path, member_args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    data = make_imagefolder(tmp_path / "data", per_class=3, corrupt=False)
    os.mkfifo(data / "red" / "fifo.png")
    (data / "blue" / "zero.png").symlink_to("/dev/zero")
    with open(data / "green" / "sparse.png", "wb") as fh:
        fh.truncate(1 << 30)  # 1 GiB, sparse: reading it whole would need 1 GiB of memory
    db = tmp_path / "p.triage.db"
    _with_alarm(60, lambda: _score(data, db, member_args, capsys, "--follow-symlinks"))
    rc, out, _ = cli(["errors", "--db", db], capsys)
    assert "red/fifo.png\ta FIFO" in out and "blue/zero.png\ta character device" in out
    assert "green/sparse.png" in out and "cap" in out
    with Project.open(db) as p:
        assert len(p.images.scorable_ids()) == 9


def test_symlink_loops_and_links_out_of_the_root_are_not_followed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for c in ("a", "b"):
        _images(data / c, 8)
    _images(tmp_path / "outside" / "x", 5)
    (data / "a" / "loop").symlink_to(data)
    (data / "b" / "up").symlink_to("..")
    (data / "b" / "out").symlink_to(tmp_path / "outside")
    (data / "c").symlink_to(tmp_path / "outside" / "x")
    ds = _with_alarm(30, lambda: open_dataset(data))
    assert len(ds.records) == 16 and ds.classes == ["a", "b"]  # type: ignore[union-attr]
    followed = open_dataset(data, follow_symlinks=True)
    paths = sorted(r.path for r in followed.records)
    assert len(paths) == 16 + 5 and len(set(paths)) == len(paths)  # outside once, no loop


def test_a_non_utf8_name_is_recorded_and_the_rest_is_scored(tmp_path: Path, member_args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    data = make_imagefolder(tmp_path / "data", per_class=3, corrupt=False)
    bad = os.fsencode(data / "red") + b"/caf\xe9.png"
    with open(bad, "wb") as fh:
        fh.write((data / "red" / "000.png").read_bytes())
    db = tmp_path / "p.triage.db"
    _score(data, db, member_args, capsys)
    rc, out, _ = cli(["errors", "--db", db], capsys)
    assert "red/caf\\xe9.png\tfile name is not valid UTF-8" in out
    with Project.open(db) as p:
        assert len(p.images.scorable_ids()) == 9
    assert cli(["export", "--db", db, tmp_path / "out"], capsys)[0] == 0


# ----------------------------------------------------------------------------- 7, 8, 9: projects


def test_an_empty_file_is_refused_and_a_half_created_project_is_recreated(tmp_path: Path) -> None:
    """Issue 18 item 5: an empty file (or its journal) is the user's, not a stopped creation of
    ours (ours are linked into place complete): refused, nothing deleted. A project that is
    ours by its header but has no dataset is recreated."""
    data = make_imagefolder(tmp_path / "data", per_class=2, corrupt=False)
    db = tmp_path / "p.triage.db"
    db.write_bytes(b"")
    (tmp_path / "p.triage.db-journal").write_bytes(b"mine")
    with pytest.raises(NotAProjectError, match="empty file"):
        project_for(data, db)
    assert db.read_bytes() == b"" and (tmp_path / "p.triage.db-journal").read_bytes() == b"mine"
    db.unlink()
    (tmp_path / "p.triage.db-journal").unlink()
    Project(db, _create=True).close()  # schema committed, dataset not yet: a kill between, before the fix
    with pytest.raises(IncompleteProjectError):
        Project.open(db)
    project_for(data, db)
    with Project.open(db) as p:
        assert len(p.images.scorable_ids()) == 6


KILL_CREATE = """
import sys
from scoring.store import project_for
project_for(sys.argv[1], sys.argv[2])
"""


def _kill_at(proc: subprocess.Popen[bytes], db: Path, sightings: int) -> bool:
    """Kill `proc` once its half-made project file has been seen `sightings` times (polled every
    millisecond), or when it exits. True when the kill landed while the file was still half made:
    the point is read off the file system, not a clock, so a busy machine cannot make it miss."""
    seen = 0
    while proc.poll() is None and seen < sightings:
        seen += any(db.parent.glob(f".{db.name}.creating-*"))
        time.sleep(0.001)
    proc.kill()
    proc.wait()
    return seen >= sightings and not db.exists()


def test_a_kill_during_project_creation_leaves_no_broken_project(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for c in range(4):
        _images(data / str(c), 600, seed=c)
    cmd = [sys.executable, "-c", KILL_CREATE, str(data)]
    root = Path(__file__).parents[2]
    killed_before_link = 0
    for trial, sightings in enumerate((1, 10, 50, 200, 10**9)):  # spread over the creation; the last waits it out
        db = tmp_path / f"p{trial}.triage.db"
        killed_before_link += _kill_at(subprocess.Popen([*cmd, str(db)], cwd=root), db, sightings)
        assert project_for(data, db) == db  # whatever the kill left, it opens or is recreated
        with Project.open(db) as p:
            assert len(p.images.scorable_ids()) == 2400
        assert not [f for f in tmp_path.iterdir() if ".creating-" in f.name]
    assert killed_before_link >= 1, "no kill landed during creation: the test tested nothing"


def test_scoring_another_dataset_into_a_project_is_refused(tmp_path: Path, member_args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    a = make_imagefolder(tmp_path / "a", per_class=2, corrupt=False)
    b = make_imagefolder(tmp_path / "b", per_class=2, corrupt=False)
    db = tmp_path / "p.triage.db"
    _score(a, db, member_args, capsys)
    rc, _, err = cli(["score", b, "--db", db, *member_args, "-q"], capsys)
    assert rc == 2 and str(a) in err and str(b) in err
    _score(a, db, member_args, capsys)  # its own dataset: fine


def test_disk_full_while_scoring_is_one_line_and_the_project_still_opens(
    tmp_path: Path, member_args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    for c in ("blue", "green", "red"):
        _images(data / c, 300)
    db = tmp_path / "p.triage.db"
    project_for(data, db)
    with sqlite3.connect(db) as c:  # the file's own page size (a new project's is PAGE_SIZE)
        page = int(c.execute("PRAGMA page_size").fetchone()[0])
    pages = Path(db).stat().st_size // page + 8  # a few pages more than the images' rows: the scores do not fit
    real = Project._prepare

    def full_disk(self: Project, create: bool) -> None:  # SQLite's own SQLITE_FULL, as on a full disk
        real(self, create)
        self.conn.execute(f"PRAGMA max_page_count={pages}")

    monkeypatch.setattr(Project, "_prepare", full_disk)
    rc, _, err = cli(["score", data, "--db", db, *member_args, "--workers", "0", "-q"], capsys)
    assert rc == 2 and "disk is full" in err and "cannot rollback" not in err
    monkeypatch.undo()
    _score(data, db, member_args, capsys)  # space freed: resumes and finishes
    with Project.open(db) as p:
        assert len(p.images.scorable_ids()) == 900


# ----------------------------------------------------------------------------- 10: messages


def test_bad_ids_are_one_line(tmp_path: Path, member_args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    data = make_imagefolder(tmp_path / "data", per_class=2, corrupt=False)
    db = tmp_path / "p.triage.db"
    _score(data, db, member_args, capsys)
    for ref in ("12345678901234567890123", "999999", "no/such.png"):
        rc, _, err = cli(["relabel", "--db", db, ref, "red"], capsys)
        assert rc == 2 and ref in err


def test_the_demo_never_replaces_a_folder_it_did_not_make(tmp_path: Path) -> None:
    from scoring.errors import UnsafePathError
    from scoring.tasks.demo import build_demo

    (tmp_path / "digits").mkdir()
    (tmp_path / "digits" / "mine.txt").write_text("x")
    with pytest.raises(UnsafePathError, match="not made by Image Triage"):
        build_demo(tmp_path, limit=20)
    assert (tmp_path / "digits" / "mine.txt").read_text() == "x"
    root = build_demo(tmp_path / "d2", limit=20)
    assert (root / MARKER).is_file() and len(open_dataset(root).records) == 20


def test_a_kill_while_an_old_export_is_deleted_leaves_it_marked_and_the_next_export_removes_it(
    tmp_path: Path, member_args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seen by hand: a kill -9 during the deletion of the replaced export removed its marker first
    and left an unmarked half folder nobody would remove. Deletion is now marker-last."""
    import scoring.io.safewrite as safewrite

    make_imagefolder(tmp_path / "data", per_class=3, corrupt=False)
    db = tmp_path / "p.triage.db"
    _score(tmp_path / "data", db, member_args, capsys)
    assert cli(["export", "--db", db, tmp_path / "out"], capsys)[0] == 0
    real = safewrite.shutil.rmtree

    def killed(path: object, *a: object, **k: object) -> None:  # dies after deleting one entry
        real(path, *a, **k)  # type: ignore[arg-type]
        raise KeyboardInterrupt

    monkeypatch.setattr(safewrite.shutil, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        run_export(db, tmp_path / "out", force=True)
    monkeypatch.undo()
    (half,) = [p for p in tmp_path.iterdir() if ".old-" in p.name]
    assert (half / MARKER).is_file()  # still recognisably ours
    assert cli(["export", "--db", db, tmp_path / "out", "--force"], capsys)[0] == 0
    assert not [p for p in tmp_path.iterdir() if ".old-" in p.name or ".partial-" in p.name]


def test_only_our_leftovers_of_a_killed_creation_are_removed(tmp_path: Path) -> None:
    """A creation killed before its first commit leaves an empty hidden file; one killed after
    the link leaves a second name of the project. Both go when the dataset is opened again; a
    file of that name that a live process is writing, or that holds anything not ours, stays."""
    data = make_imagefolder(tmp_path / "data", per_class=2, corrupt=False)
    db = tmp_path / "p.triage.db"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()
    empty_dead = tmp_path / f".p.triage.db.creating-{dead}-0123abcd"
    empty_alive = tmp_path / f".p.triage.db.creating-{os.getppid()}-0123abcd"
    someone_else = tmp_path / f".p.triage.db.creating-{dead}-deadbeef"
    empty_dead.write_bytes(b"")
    empty_alive.write_bytes(b"")
    someone_else.write_bytes(b"notes")
    project_for(data, db)
    assert not empty_dead.exists() and empty_alive.exists() and someone_else.read_bytes() == b"notes"
    second_name = tmp_path / f".p.triage.db.creating-{dead}-feedf00d"
    os.link(db, second_name)  # killed between the link and the unlink
    project_for(data, db)
    assert not second_name.exists() and db.exists()
    with Project.open(db) as p:
        assert len(p.images.scorable_ids()) == 6
