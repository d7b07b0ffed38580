"""Fuzz: random small datasets with hostile entries, random export destinations around them.

Each example builds a fresh tree (images, special files, symlink loops, links out of the root,
odd and non-UTF-8 names, garbage images, a CSV manifest with hostile paths), runs score, a few
edits and export through the command line, and asserts:

* no file or folder outside the export destination was created, deleted, replaced, modified or
  re-linked (content hash, inode and link target of every entry, before and after);
* the project still opens;
* every error the command line printed is one line.

``FUZZ_EXAMPLES`` sets the number of examples (CI: the default below).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from scoring.store import Project
from tests.scoring.conftest import tiny_member
from tests.scoring.snapshot import snapshot
from tests.scoring.test_safety import _with_alarm, cli

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
CLASSES = ("blue", "green", "red")
HOSTILE = ("fifo", "devzero", "loop", "updir", "outside_link", "outside_class", "garbage", "empty",
           "truncated", "bad_name", "hidden", "dir_named_png", "odd_name")
DESTS = ("data", "class", "inside_class", "root", "outside", "outside_sub", "fresh", "user_folder",
         "earlier_export", "link_to_data", "link_to_outside", "a_file", "nested_fresh", "project_dir")

def _png(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(path)


def _build(root: Path, per_class: list[int], hostile: list[tuple[str, int]], use_csv: bool) -> Path:
    data, outside = root / "data", root / "outside"
    hostile = list(dict.fromkeys(hostile))  # the same entry twice would collide
    for c, n in zip(CLASSES, per_class, strict=True):
        (data / c).mkdir(parents=True)
        for i in range(n):
            _png(data / c / f"{i}.png", i + 7 * len(c))
    outside.mkdir()
    _png(outside / "o.png", 99)
    for kind, k in hostile:
        cls = data / CLASSES[k % 3]
        if kind == "fifo":
            os.mkfifo(cls / f"fifo{k}.png")
        elif kind == "devzero":
            (cls / f"zero{k}.png").symlink_to("/dev/zero")
        elif kind == "loop":
            (cls / f"loop{k}").symlink_to(data)
        elif kind == "updir":
            (cls / f"up{k}").symlink_to("..")
        elif kind == "outside_link":
            (cls / f"out{k}.png").symlink_to(outside / "o.png")
        elif kind == "outside_class":
            target = data / f"zz{k}"
            if not target.exists():
                target.symlink_to(outside)
        elif kind == "garbage":
            (cls / f"garbage{k}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(64)))
        elif kind == "empty":
            (cls / f"empty{k}.jpg").write_bytes(b"")
        elif kind == "truncated":
            _png(cls / f"t{k}.png", k)
            blob = (cls / f"t{k}.png").read_bytes()
            (cls / f"t{k}.png").write_bytes(blob[: len(blob) // 2])
        elif kind == "bad_name":
            with open(os.fsencode(cls) + b"/bad\xff" + str(k).encode() + b".png", "wb") as fh:
                fh.write((data / "blue" / "0.png").read_bytes() if (data / "blue" / "0.png").exists() else b"")
        elif kind == "hidden":
            _png(cls / f".hidden{k}.png", k)
        elif kind == "dir_named_png":
            (cls / f"dir{k}.png").mkdir(exist_ok=True)
        elif kind == "odd_name":
            _png(cls / f"sp ace,comma\"quote{k}.png", k)
    if not use_csv:
        return data
    rows = ["path,label"]
    for c in CLASSES:
        rows += [f"data/{c}/{p.name},{c}" for p in sorted((data / c).glob("[0-9]*.png"))]
    rows += ["outside/o.png,blue", f"{outside / 'o.png'},red", "data/missing.png,green"]
    if any(kind == "fifo" for kind, _ in hostile):
        k = next(k for kind, k in hostile if kind == "fifo")
        rows.append(f"data/{CLASSES[k % 3]}/fifo{k}.png,blue")
    # duplicates of one file under two spellings are refused by the manifest reader; keep unique
    seen, unique = set(), []
    for r in rows:
        key = r.rsplit(",", 1)[0]
        if key not in seen:
            seen.add(key)
            unique.append(r)
    (root / "m.csv").write_text("\n".join(unique) + "\n")
    return root / "m.csv"


def _dest(root: Path, kind: str, db: Path, member: list[str], capsys: pytest.CaptureFixture[str]) -> Path:
    data = root / "data"
    if kind == "data":
        return data
    if kind == "class":
        return data / "red"
    if kind == "inside_class":
        return data / "red" / "x"
    if kind == "root":
        return root
    if kind == "outside":
        return root / "outside"
    if kind == "outside_sub":
        return root / "outside" / "sub"
    if kind == "user_folder":
        (root / "mine").mkdir(exist_ok=True)
        (root / "mine" / "notes.txt").write_text("mine")
        return root / "mine"
    if kind == "earlier_export":
        cli(["export", "--db", db, root / "prev"], capsys)
        return root / "prev"
    if kind == "link_to_data":
        (root / "ln").symlink_to(data)
        return root / "ln"
    if kind == "link_to_outside":
        (root / "lo").symlink_to(root / "outside")
        return root / "lo"
    if kind == "a_file":
        (root / "afile").write_text("x")
        return root / "afile"
    if kind == "project_dir":
        return db.parent
    if kind == "nested_fresh":
        return root / "new" / "deeper" / "out"
    return root / "fresh"


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    per_class=st.lists(st.integers(0, 3), min_size=3, max_size=3).filter(lambda v: sum(v) >= 2),
    hostile=st.lists(st.tuples(st.sampled_from(HOSTILE), st.integers(0, 5)), max_size=6),
    use_csv=st.booleans(),
    dest_kind=st.sampled_from(DESTS),
    force=st.booleans(),
    link=st.sampled_from(["hardlink", "copy", "symlink"]),
    edits=st.lists(st.sampled_from(["relabel", "remove", "keep", "undo"]), max_size=4),
)
def test_hostile_trees_never_lose_a_file(
    capsys: pytest.CaptureFixture[str], per_class: list[int], hostile: list[tuple[str, int]], use_csv: bool,
    dest_kind: str, force: bool, link: str, edits: list[str],
) -> None:
    root = Path(tempfile.mkdtemp(prefix="fuzz-")).resolve()
    model = Path(tempfile.mkdtemp(prefix="fuzz-model-"))
    try:
        dataset = _build(root, per_class, hostile, use_csv)
        member = tiny_member(model)
        db = root / "p.triage.db"
        before = snapshot(root)
        rc, _, err = cli(["score", dataset, "--db", db, *member, "--workers", "0", "-q"], capsys)
        if rc != 0:  # e.g. every image hostile: refused in one line (checked by cli), nothing changed
            event("score refused")
            assert snapshot(root) == before
            return
        with Project.open(db) as p:
            ids = [int(i) for i in p.images.scorable_ids()[:4]]
        for action, image in zip(edits, ids, strict=False):
            args = ["undo", "--db", db] if action == "undo" else [action, "--db", db, str(image)]
            cli([*args, "red"] if action == "relabel" else args, capsys)
        dest = _dest(root, dest_kind, db, member, capsys)
        before = snapshot(root)
        real_dest = Path(os.path.realpath(dest))
        args = ["export", "--db", db, dest, "--link", link] + (["--force"] if force else [])
        rc, _, err = cli(args, capsys)
        event(f"export to {dest_kind}{' --force' if force else ''}: {'written' if rc == 0 else 'refused'}")
        after = snapshot(root)
        if rc == 0:
            inside = str(real_dest.relative_to(root)) if real_dest.is_relative_to(root) else None
            assert inside is not None and inside not in ("", ".")
            changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
            allowed = {inside, *[str(Path(inside).parents[i]) for i in range(len(Path(inside).parents) - 1)]}
            outside_dest = {k for k in changed if k not in allowed and not k.startswith(inside + "/")}
            assert not outside_dest, (dest_kind, outside_dest)
            assert (real_dest / "manifest.csv").is_file()
        else:
            assert after == before, (dest_kind, err)
        assert not [p for p in root.rglob(".*partial-*")], "an export left its build folder"
        with Project.open(db) as p:
            assert p.images.scorable_ids().size >= 0
    finally:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(model, ignore_errors=True)


# ----------------------------------------------------------------------------- issue 18's surfaces

DB_KINDS = ("empty", "text", "image", "other_sqlite", "view_only", "fifo", "devnull_link", "folder",
            "journal_beside", "project_of_another", "our_project", "missing")
URI_KINDS = ("file_regular", "file_fifo", "file_devzero", "file_folder", "file_missing", "file_otherhost",
             "http", "ftp", "weird")
HOSTILE_VALUES = (True, "true", 1e308, -1, 10**30, "../../etc/passwd", None, [], {"x": 1}, "resnet152")
STAGES = ("index", "infer", "fit", "score")


def _db_target(root: Path, kind: str, member: list[str], capsys: pytest.CaptureFixture[str]) -> Path:
    import sqlite3

    p = root / "target.db"
    if kind == "empty":
        p.write_bytes(b"")
    elif kind == "text":
        p.write_text("my notes\n")
    elif kind == "image":
        rng = np.random.default_rng(3)
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(p, format="PNG")
    elif kind in ("other_sqlite", "view_only"):
        with sqlite3.connect(p) as conn:
            conn.execute("CREATE TABLE t (x)" if kind == "other_sqlite" else "CREATE VIEW v AS SELECT 1")
    elif kind == "fifo":
        os.mkfifo(p)
    elif kind == "devnull_link":
        p.symlink_to("/dev/null")
    elif kind == "folder":
        p.mkdir()
    elif kind == "journal_beside":
        Path(f"{p}-journal").write_bytes(b"mine")
    elif kind == "project_of_another":
        other = root / "other"
        (other / "blue").mkdir(parents=True)
        _png(other / "blue" / "0.png", 1)
        _png(other / "blue" / "1.png", 2)
        cli(["score", other, "--db", p, *member, "--workers", "0", "-q"], capsys)
    elif kind == "our_project":
        cli(["score", root / "data", "--db", p, *member, "--workers", "0", "-q"], capsys)
    return p


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    surface=st.sampled_from(("manifest_uri", "db_kind", "stored_config", "sigint")),
    uris=st.lists(st.sampled_from(URI_KINDS), min_size=1, max_size=4),
    db_kind=st.sampled_from(DB_KINDS),
    key=st.sampled_from(("trust", "path", "arch", "seeds", "preprocess", "folds", "kind", "classes")),
    value=st.sampled_from(HOSTILE_VALUES),
    stage=st.sampled_from(STAGES),
    at=st.integers(0, 3),
)
def test_hostile_surfaces_of_issue_18_change_nothing_and_run_nothing(
    capsys: pytest.CaptureFixture[str], surface: str, uris: list[str], db_kind: str, key: str, value: object,
    stage: str, at: int,
) -> None:
    """Manifests with file:// and special-file URIs, --db at every kind of existing file, stored
    pool configs with hostile values, and Ctrl+C at a random moment of each stage: every error is
    one line (cli checks), nothing outside the project changes, no code from a file runs, and a
    run stopped part-way resumes to the scores of an unstopped one."""
    import json
    import sqlite3
    import threading

    from scoring.engine.inference import score_project
    from tests.scoring.test_safety import _evil_checkpoint

    root = Path(tempfile.mkdtemp(prefix="fuzz18-")).resolve()
    model = Path(tempfile.mkdtemp(prefix="fuzz18-model-"))
    try:
        data = _build(root, [3, 3, 3], [], False)
        member = tiny_member(model)
        event(surface)
        if surface == "manifest_uri":
            os.mkfifo(root / "fifo.png")
            (root / "afolder.png").mkdir()
            rows = ["path,label", *(f"data/{c}/{i}.png,{c}" for c in CLASSES for i in range(3))]
            spell = {"file_regular": f"file://{data}/blue/0.png", "file_fifo": f"file://{root}/fifo.png",
                     "file_devzero": "file:///dev/zero", "file_folder": f"file://{root}/afolder.png",
                     "file_missing": f"file://{root}/nope.png", "file_otherhost": "file://elsewhere/x.png",
                     "http": "http://127.0.0.1:9/x.png", "ftp": "ftp://127.0.0.1/x.png", "weird": "zz://a/b.png"}
            rows += [f"{spell[u]},red" for u in dict.fromkeys(uris)]
            (root / "m.csv").write_text("\n".join(rows) + "\n")
            before = {k: v for k, v in snapshot(root).items() if not k.startswith("m.triage")}
            rc, _, _ = _with_alarm(60, lambda: cli(["score", root / "m.csv", "--db", root / "m.triage.db", *member,
                                                "--workers", "0", "-q"], capsys))
            assert rc in (0, 2)
            after = {k: v for k, v in snapshot(root).items() if not k.startswith("m.triage")}
            assert after == before
        elif surface == "db_kind":
            target = _db_target(root, db_kind, member, capsys)
            before = snapshot(root)
            rc, _, _ = _with_alarm(60, lambda: cli(["score", data, "--db", target, *member, "--workers", "0", "-q"], capsys))
            event(f"--db {db_kind}: {'scored' if rc == 0 else 'refused'}")
            if db_kind in ("our_project", "missing"):
                assert rc == 0
            else:
                assert rc == 2 and snapshot(root) == before
        elif surface == "stored_config":
            db = root / "p.triage.db"
            assert cli(["score", data, "--db", db, *member, "--workers", "0", "-q"], capsys)[0] == 0
            flag = root / "PWNED"
            _evil_checkpoint(root / "evil.pth", flag)
            with sqlite3.connect(db) as conn:
                for run_id, config in conn.execute("SELECT id, config FROM runs").fetchall():
                    cfg = json.loads(config)
                    for spec in cfg["pool"]:
                        spec.update(path=str(root / "evil.pth"), trust=True, arch="tiny_mlp")
                        spec[key] = value
                    conn.execute("UPDATE runs SET config=? WHERE id=?", (json.dumps(cfg), run_id))
            from scoring.cli.main import main

            for args in (["rerank", "--db", db, "--networks"], ["score", data, "--db", db, "--workers", "0", "-q"]):
                rc = main([str(a) for a in args])
                err = capsys.readouterr().err
                assert rc in (0, 1, 2) and "Traceback" not in err, err
                assert len([ln for ln in err.splitlines() if ln.startswith("image-triage:")]) <= 1, err
            assert not flag.exists()
        else:  # sigint: Ctrl+C arrives while the run is in `stage`, the `at`-th time it reports
            from scoring.pool.spec import parse_member_arg

            specs = [parse_member_arg(member[1]), parse_member_arg("scratch:arch=tiny_mlp,size=8,folds=2,epochs=3")]
            db = root / "p.triage.db"
            db_ref = root / "ref.triage.db"
            from scoring.progress import drain
            from scoring.store import project_for

            drain(score_project(project_for(data, db_ref), specs, workers=0))
            gen = score_project(project_for(data, db), specs, workers=0, cancel=threading.Event())
            seen = 0
            try:
                for prog in gen:
                    if prog.stage.startswith(stage) or (stage == "score" and prog.stage == "write"):
                        seen += 1
                        if seen > at:
                            gen.throw(KeyboardInterrupt)
            except KeyboardInterrupt:
                event(f"interrupted in {stage}")
            with Project.open(db) as p:
                assert p._meta("scoring_writer") is None  # the writer is released
            assert drain(score_project(db, specs, workers=0)).status == "done"
            with Project.open(db) as p, Project.open(db_ref) as r:
                mine = p._q("SELECT path, round(c_perplexity, 4), round(margin, 4) FROM images ORDER BY path")
                ref = r._q("SELECT path, round(c_perplexity, 4), round(margin, 4) FROM images ORDER BY path")
                assert mine == ref
    finally:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(model, ignore_errors=True)

