"""Issue 18, one test per attack on the surfaces added since issue 9: re-rank, the automatic
pool, URIs, --db, downloads, Ctrl+C, the change check, exports of exports.

Each reproduces the attack as the issue describes it and asserts the one-line refusal (or the
right result) and that nothing else changed.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scoring.cli.main import main
from scoring.pool.models.registry import get_model
from scoring.store import Project, project_for
from tests.scoring.snapshot import snapshot
from tests.scoring.test_safety import _evil_checkpoint, _with_alarm, cli
from tests.scoring.tinypool import make_imagefolder

ROOT = Path(__file__).parents[2]
CLASSES = ("blue", "green", "red")


def _resnet_members(folder: Path) -> tuple[str, str]:
    """``M`` and ``B`` of the issue, on a random-weight CIFAR ResNet-20 over the test's classes."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save({"state_dict": get_model("cifar_resnet20", num_classes=3).state_dict()}, folder / "r20.pth")
    (folder / "classes.txt").write_text("".join(f"{c}\n" for c in CLASSES))
    common = f"path={folder / 'r20.pth'},arch=cifar_resnet20,classes_file={folder / 'classes.txt'},size=32"
    return f"checkpoint:{common}", f"backbone:{common},fractions=1.0,folds=2"


def _one_line_error(rc: int, err: str, *needles: str) -> None:
    assert rc == 2 and "Traceback" not in err, err
    line = [ln for ln in err.splitlines() if ln.startswith("image-triage:")]
    assert len(line) == 1, err
    for n in needles:
        assert n in line[0], line[0]


# ----------------------------------------------------------------------------- 1: trust


def test_1_a_project_file_cannot_trust_a_pickle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_imagefolder(tmp_path / "data", per_class=4, corrupt=False)
    m, b = _resnet_members(tmp_path / "model")
    db = tmp_path / "p.triage.db"
    assert cli(["score", data, "--db", db, "--member", b, "--member", m, "--workers", "0", "-q"], capsys)[0] == 0
    flag = tmp_path / "PWNED"
    evil = tmp_path / "evil.pth"
    _evil_checkpoint(evil, flag)
    with sqlite3.connect(db) as conn:  # a hostile project: its stored pool trusts a pickle
        for run_id, config in conn.execute("SELECT id, config FROM runs").fetchall():
            cfg = json.loads(config)
            for spec in cfg["pool"]:
                if spec["kind"] == "checkpoint":
                    spec.update(path=str(evil), trust=True, arch="tiny_mlp", preprocess={"size": 16})
            conn.execute("UPDATE runs SET config=? WHERE id=?", (json.dumps(cfg), run_id))
    rc, _, err = cli(["rerank", "--db", db], capsys)
    _one_line_error(rc, err, "evil.pth", "--trust-checkpoint")
    rc, _, err = cli(["score", data, "--db", db, "--workers", "0", "-q"], capsys)  # the stored pool again
    _one_line_error(rc, err, "evil.pth", "--trust-checkpoint")
    assert not flag.exists()
    with Project.open(db) as p:  # and the project itself no longer stores trust
        assert all("trust" not in s for r in p.runs.history() for s in r["config"].pool)


def test_1_a_pool_file_cannot_trust_either_only_the_flag_can(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_imagefolder(tmp_path / "data", per_class=2, corrupt=False)
    flag = tmp_path / "PWNED"
    _evil_checkpoint(tmp_path / "evil.pth", flag)
    (tmp_path / "pool.toml").write_text(
        '[[member]]\nname = "evil"\nkind = "checkpoint"\npath = "evil.pth"\narch = "tiny_mlp"\n'
        'classes = ["blue", "green", "red"]\npreprocess = { size = 16 }\ntrust = true\n')
    rc, _, err = cli(["score", data, "--pool", tmp_path / "pool.toml", "--workers", "0", "-q"], capsys)
    _one_line_error(rc, err, "evil.pth", "--trust-checkpoint")
    assert not flag.exists()
    rc, _, err = cli(["score", data, "--pool", tmp_path / "pool.toml", "--trust-checkpoint", "--workers", "0", "-q"],
                     capsys)
    assert rc == 0 and flag.exists()  # the user's word, now: the one trust there is


# ----------------------------------------------------------------------------- 2, 3: the reader


def _manifest_with(tmp_path: Path, extra: list[str]) -> Path:
    data = make_imagefolder(tmp_path / "ds", per_class=3, corrupt=False)
    rows = [f"{p.relative_to(data).as_posix()},{p.parent.name}" for p in sorted(data.rglob("*.png")) if p.is_file()]
    (data / "m.csv").write_text("path,label\n" + "\n".join(rows + extra) + "\n")
    return data / "m.csv"


def test_2_a_fifo_in_a_manifest_does_not_hang_the_automatic_pool(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from scoring.io.formats import open_dataset
    from scoring.tasks.autopool import survey

    (tmp_path / "ds" / "red").mkdir(parents=True)
    os.mkfifo(tmp_path / "ds" / "red" / "pipe.png")
    manifest = _manifest_with(tmp_path, ["red/pipe.png,red"])
    facts = _with_alarm(20, lambda: survey(open_dataset(manifest), torch.device("cpu")))
    assert facts.side == 12  # type: ignore[attr-defined]
    rc, out, err = _with_alarm(60, lambda: cli(["pool", "auto", manifest], capsys))  # type: ignore[misc]
    assert rc == 0 and "[[member]]" in out, err


def test_3_file_uris_go_through_the_safe_reader(tmp_path: Path, member_args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    os.mkfifo(tmp_path / "fifo.png")
    manifest = _manifest_with(tmp_path, [f"file://{tmp_path}/fifo.png,red", "file:///dev/zero,red",
                                         f"file://{tmp_path}/ds/blue/000.png,blue"])
    db = tmp_path / "p.triage.db"
    rc, _, err = _with_alarm(60, lambda: cli(["score", manifest, "--db", db, *member_args, "--workers", "0", "-q"],
                                             capsys))  # type: ignore[misc]
    assert rc == 0, err
    out = cli(["errors", "--db", db], capsys)[1]
    assert "fifo.png" in out and "FIFO" in out and "/dev/zero" in out and "character device" in out
    with Project.open(db) as p:
        assert len(p.images.scorable_ids()) == 10  # 9 images and the file:// copy of one


def test_3_other_uri_schemes_are_refused_in_one_line() -> None:
    from scoring.errors import UnsafePathError
    from scoring.io.datasets import read_bytes

    for uri in ("http://127.0.0.1:9/x.png", "ftp://h/x.png", "file://otherhost/x.png"):
        with pytest.raises(UnsafePathError):
            read_bytes(uri)


# ----------------------------------------------------------------------------- 4: downloads


def test_4_a_download_with_no_answer_times_out_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import scoring.pool.weights as weights

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_say_nothing() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    threading.Thread(target=accept_and_say_nothing, daemon=True).start()
    proxy = f"http://127.0.0.1:{server.getsockname()[1]}"
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, proxy)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.setattr(weights, "_offline", False)
    monkeypatch.setattr(weights, "DOWNLOAD_TIMEOUT_S", 1.0)
    hub = tmp_path / "hub"
    torch.hub.set_dir(str(hub))
    (tmp_path / "pool.toml").write_text('[[member]]\nname = "r18"\nkind = "backbone"\narch = "resnet18"\n')
    try:
        rc, _, err = _with_alarm(30, lambda: cli(["pool", "check", tmp_path / "pool.toml"], capsys))  # type: ignore[misc]
    finally:
        stop.set()
        for s in held:
            s.close()
        server.close()
    _one_line_error(rc, err, "could not download", "resnet18", "--offline")  # the alarm above is the hang guard
    assert not [p for p in hub.rglob("*") if p.is_file()]  # no .partial, no half file


# ----------------------------------------------------------------------------- 5: --db


def test_5_db_never_deletes_or_replaces_a_file_it_did_not_create(
    tmp_path: Path, member_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_imagefolder(tmp_path / "ds", per_class=2, corrupt=False)
    (data / "blue" / "empty.jpg").write_bytes(b"")
    (tmp_path / "dev.db").symlink_to("/dev/null")  # a character device, through a link of ours
    view = tmp_path / "view.db"
    with sqlite3.connect(view) as conn:
        conn.execute("CREATE VIEW v AS SELECT 1 AS x")
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (t TEXT)")
        conn.execute("INSERT INTO notes VALUES ('mine')")
    (tmp_path / "new.db-journal").write_bytes(b"journal of mine")
    (tmp_path / "new2.db-wal").write_bytes(b"wal of mine")
    before = snapshot(tmp_path)
    for target, needle in ((data / "blue" / "empty.jpg", "empty"), (tmp_path / "dev.db", "character device"),
                           (view, "another program"), (other, "another program"),
                           (tmp_path / "new.db", "new.db-journal"), (tmp_path / "new2.db", "new2.db-wal")):
        rc, _, err = cli(["score", data, "--db", target, *member_args, "--workers", "0", "-q"], capsys)
        _one_line_error(rc, err, needle)
    assert snapshot(tmp_path) == before
    assert os.readlink(tmp_path / "dev.db") == "/dev/null"


# ----------------------------------------------------------------------------- 6: exports of exports


def test_6_force_never_replaces_the_dataset_being_exported(
    tmp_path: Path, member_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_imagefolder(tmp_path / "data", per_class=3, corrupt=False)
    db = tmp_path / "p.triage.db"
    assert cli(["score", data, "--db", db, *member_args, "--workers", "0", "-q"], capsys)[0] == 0
    exp = tmp_path / "exp"
    assert cli(["export", "--db", db, exp, "--link", "symlink"], capsys)[0] == 0
    for n, source in enumerate((exp / "manifest.csv", exp / "images")):
        db2 = tmp_path / f"p{n}.triage.db"
        extra = ["--follow-symlinks"] if source.name == "images" else []
        assert cli(["score", source, "--db", db2, *member_args, "--workers", "0", "-q", *extra], capsys)[0] == 0
        assert cli(["remove", "--db", db2, "1"], capsys)[0] == 0
        before = snapshot(exp)
        rc, _, err = cli(["export", "--db", db2, exp, "--force"], capsys)
        _one_line_error(rc, err, str(exp))
        assert snapshot(exp) == before


# ----------------------------------------------------------------------------- 7: Ctrl+C

# As a terminal runs it: Ctrl+C raises KeyboardInterrupt. A shell without job control (a CI
# script, `make test &`) starts its background children with SIGINT ignored, and Python keeps
# an ignored SIGINT ignored: under such a parent the child would never see the signal (the
# "hang" of two loaded runs, which were started from a background script).
SLOW_FIT = """
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
from scoring.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_7_ctrl_c_stops_fitting_within_seconds(tmp_path: Path) -> None:
    data = make_imagefolder(tmp_path / "data", per_class=20, corrupt=False)
    member = "scratch:arch=tiny_mlp,size=8,epochs=10000,folds=2,batch_size=4"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_FIT, "score", str(data), "--db", str(tmp_path / "p.db"),
                             "--member", member, "--workers", "0"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    seen: list[str] = []
    fitting = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        buf = ""
        while ch := proc.stderr.read(1):
            buf += ch
            if "fit" in buf[-200:]:
                fitting.set()
        seen.append(buf)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert fitting.wait(90), "the run never reached fitting"
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    try:
        rc = proc.wait(timeout=300)  # a hang guard, not a speed check (a loaded clean-clone run took over 15 s)
    finally:
        proc.kill()
    reader.join(5)
    assert rc == 130, (rc, seen)
    with Project.open(tmp_path / "p.db") as p:
        assert p.runs.history()[-1]["status"] == "cancelled"


# ----------------------------------------------------------------------------- 8, 9: the change check


def _scored(tmp_path: Path, member_args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    data = make_imagefolder(tmp_path / "data", per_class=3, corrupt=False)
    db = tmp_path / "p.triage.db"
    assert cli(["score", data, "--db", db, *member_args, "--workers", "0", "-q"], capsys)[0] == 0
    return data, db


def test_8_an_edit_that_restores_size_and_mtime_is_still_caught(
    tmp_path: Path, member_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    data, db = _scored(tmp_path, member_args, capsys)
    img = data / "red" / "001.png"
    st = img.stat()
    buf = io.BytesIO()
    Image.open(data / "blue" / "001.png").save(buf, "PNG")
    img.write_bytes((buf.getvalue() + b"\0" * st.st_size)[: st.st_size])  # other bytes, the same size
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (img.stat().st_size, img.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    assert cli(["export", "--db", db, tmp_path / "out"], capsys)[0] == 0
    report = json.loads((tmp_path / "out" / "export_report.json").read_text())
    assert any(s["path"] == "red/001.png" and "changed" in s["why"] for s in report["skipped"])


def test_9_an_image_changed_then_restored_is_exported_again(
    tmp_path: Path, member_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    data, db = _scored(tmp_path, member_args, capsys)
    img = data / "red" / "001.png"
    original = img.read_bytes()
    Image.open(data / "blue" / "001.png").save(img)
    assert cli(["export", "--db", db, tmp_path / "out1"], capsys)[0] == 0
    report = json.loads((tmp_path / "out1" / "export_report.json").read_text())
    assert [s["path"] for s in report["skipped"]] == ["red/001.png"]
    img.write_bytes(original)
    assert cli(["score", data, "--db", db, *member_args, "--workers", "0", "-q"], capsys)[0] == 0
    assert cli(["export", "--db", db, tmp_path / "out2"], capsys)[0] == 0
    report = json.loads((tmp_path / "out2" / "export_report.json").read_text())
    assert report["skipped"] == [] and report["exported"] == 9


# ----------------------------------------------------------------------------- 10: one writer


def test_10_a_rerank_never_interleaves_with_another_scoring_writer(
    tmp_path: Path, member_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    data, db = _scored(tmp_path, member_args, capsys)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with Project.open(db) as p, p._tx():  # another live process holds the scoring writer
            p._set_meta(scoring_writer=json.dumps({"pid": holder.pid, "host": socket.gethostname(),
                                                   "what": "scoring run", "token": "x"}))
        with Project.open(db) as p:
            scores = p._q("SELECT id, c_perplexity FROM images ORDER BY id")
        for args in (["rerank", "--db", db], ["score", data, "--db", db, *member_args, "--workers", "0", "-q"]):
            rc, _, err = cli(args, capsys)
            _one_line_error(rc, err, "being scored by another scoring run", str(holder.pid))
        with Project.open(db) as p:
            assert p._q("SELECT id, c_perplexity FROM images ORDER BY id") == scores
    finally:
        holder.kill()
        holder.wait()
    assert cli(["score", data, "--db", db, *member_args, "--workers", "0", "-q"], capsys)[0] == 0  # a dead holder


# ----------------------------------------------------------------------------- 11, 12, 13: export and duplicates


def test_11_class_folders_are_distinct_on_every_file_system(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    names = ["CON", "_CON", "x" * 249 + "a", "x" * 249 + "b", "Cat", "cat", "two\nlines"]
    data = tmp_path / "ds"
    data.mkdir()
    rows = []
    for n, name in enumerate(names):
        Image.fromarray(np.full((8, 8, 3), n * 30, np.uint8)).save(data / f"{n}.png")
        rows.append(f'{n}.png,"{name}"')
    (data / "m.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    db = project_for(data / "m.csv", tmp_path / "p.triage.db")
    assert cli(["export", "--db", db, tmp_path / "out"], capsys)[0] == 0
    folders = [p.name for p in (tmp_path / "out" / "images").iterdir()]
    assert len(folders) == len(names) and len({f.casefold() for f in folders}) == len(names)
    listed = json.loads((tmp_path / "out" / "classes.json").read_text())
    assert sorted(c["name"] for c in listed) == sorted(names)
    assert len((tmp_path / "out" / "classes.txt").read_text().splitlines()) == len(names)  # the newline escaped


def _dupes(tmp_path: Path) -> Path:
    data = make_imagefolder(tmp_path / "data", per_class=3, corrupt=False)
    (data / "red" / "copy.png").write_bytes((data / "blue" / "001.png").read_bytes())
    yy, xx = np.mgrid[0:32, 0:32]
    smooth = np.stack([xx * 8, yy * 8, (xx + yy) * 4], -1).astype(np.uint8)
    Image.fromarray(smooth).save(data / "green" / "smooth.png")
    Image.fromarray(smooth).save(data / "red" / "reenc.jpg", quality=60)
    return data


def test_12_drop_duplicates_keeps_the_annotators_choice(
    tmp_path: Path, member_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    data = _dupes(tmp_path)
    db = tmp_path / "p.triage.db"
    assert cli(["score", data, "--db", db, *member_args, "--workers", "0", "-q", "--no-duplicates"], capsys)[0] == 0
    rc, _, err = cli(["export", "--db", db, tmp_path / "out0", "--drop-duplicates"], capsys)
    _one_line_error(rc, err, "no duplicate search")
    assert cli(["duplicates", "--db", db], capsys)[0] == 0
    assert cli(["keep", "--db", db, "red/copy.png"], capsys)[0] == 0  # the annotator keeps the later copy
    assert cli(["export", "--db", db, tmp_path / "out", "--drop-duplicates"], capsys)[0] == 0
    report = json.loads((tmp_path / "out" / "export_report.json").read_text())
    assert "blue/001.png" in report["duplicates_dropped"] and "red/copy.png" not in report["duplicates_dropped"]
    assert (tmp_path / "out" / "images" / "red" / "copy.png").exists()


def test_13_an_unscored_project_marks_no_reencode_as_exact(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _dupes(tmp_path)
    db = project_for(data, tmp_path / "p.triage.db")
    rc, out, _ = cli(["duplicates", "--db", db, "--json"], capsys)
    assert rc == 0
    groups = json.loads(out)
    reenc = [g for g in groups if any("reenc.jpg" in i["path"] for i in g["images"])]
    assert reenc and not reenc[0]["exact"]


# ----------------------------------------------------------------------------- minor items


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("seeds = [1000000000000000000000000000000]", "seeds"),
        ("preprocess = { size = 16, std = [1e-300] }", "preprocess.std"),
        ("preprocess = { size = 16, mean = [1e308] }", "preprocess.mean"),
        ("preprocess = { size = 4096 }", "preprocess.size"),
        ('arch = "../../../etc/passwd"', "small_cnn or tiny_mlp"),
        ('arch = "resnet152"', "small_cnn or tiny_mlp"),
    ],
)
def test_minor_pool_file_numbers_and_names_are_ranged(
    tmp_path: Path, line: str, needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    body = {"name": '"s"', "kind": '"scratch"', "arch": '"tiny_mlp"', "preprocess": "{ size = 16 }"}
    key = line.split(" = ")[0]
    lines = [f"{k} = {v}" for k, v in body.items() if k != key] + [line]
    (tmp_path / "pool.toml").write_text("[[member]]\n" + "\n".join(lines) + "\n")
    rc, _, err = cli(["pool", "check", tmp_path / "pool.toml"], capsys)
    _one_line_error(rc, err, needle, "pool.toml member 1")


def test_minor_num_classes_is_ranged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "pool.toml").write_text('[[member]]\nkind = "backbone"\narch = "resnet18"\nnum_classes = 1000000000000\n')
    rc, _, err = cli(["pool", "check", tmp_path / "pool.toml"], capsys)
    _one_line_error(rc, err, "num_classes")


@pytest.mark.parametrize("device", ["cuda", "tpu", "meta", "cuda:7"])
def test_minor_a_missing_device_is_one_line(tmp_path: Path, member_args: list[str], device: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    data = make_imagefolder(tmp_path / "data", per_class=2, corrupt=False)
    rc, _, err = cli(["score", data, *member_args, "--device", device, "--workers", "0", "-q"], capsys)
    _one_line_error(rc, err, device)


@pytest.mark.parametrize(
    "args", [["score", "DATA", "--batch-size", "0"], ["queue", "--db", "DB", "--limit", "1e20"],
             ["queue", "--db", "DB", "--limit", "-5"], ["score", "DATA", "--workers", "-1"]]
)
def test_minor_numbers_on_the_command_line_are_ranged(tmp_path: Path, args: list[str],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    args = [str(tmp_path / "data") if a == "DATA" else str(tmp_path / "p.db") if a == "DB" else a for a in args]
    with pytest.raises(SystemExit) as exc:
        main(args)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "Traceback" not in err and "error:" in err


def test_minor_damaged_projects_labels_and_searches_are_one_line(
    tmp_path: Path, member_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    data, db = _scored(tmp_path, member_args, capsys)
    # neighbours of an unreadable image
    (data / "red" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    assert cli(["score", data, "--db", db, *member_args, "--workers", "0", "-q"], capsys)[0] == 0
    rc, _, err = cli(["neighbours", "--db", db, "red/bad.png"], capsys)
    _one_line_error(rc, err, "red/bad.png")
    # rerank with every image removed
    with Project.open(db) as p:
        ids = [int(i) for i in p.images.scorable_ids()]
    for i in ids:
        cli(["remove", "--db", db, str(i)], capsys)
    from scoring.store import ProjectValueError
    from scoring.tasks.rerank import rerank
    from tests.scoring.tinypool import head_pool

    with pytest.raises(ProjectValueError, match="every image is removed"):
        list(rerank(db, pool=head_pool(list(CLASSES))))
    # export of a moved dataset
    data.rename(tmp_path / "moved")
    rc, _, err = cli(["export", "--db", db, tmp_path / "out"], capsys)
    _one_line_error(rc, err, "is not there")
    # a project with random bytes over one page
    blob = bytearray(db.read_bytes())
    blob[4096:8192] = np.random.default_rng(0).integers(0, 255, 4096, dtype=np.uint8).tobytes()
    db.write_bytes(bytes(blob))
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    rc, _, err = cli(["export", "--db", db, tmp_path / "out2"], capsys)
    assert rc == 2 and "Traceback" not in err and len([ln for ln in err.splitlines() if ln.startswith("image-triage:")]) == 1


def test_minor_a_threshold_changes_the_groups(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _dupes(tmp_path)
    db = project_for(data, tmp_path / "p.triage.db")
    sizes = []
    for t in ("0.97", "0.5"):
        rc, out, _ = cli(["duplicates", "--db", db, "--json", "--threshold", t], capsys)
        sizes.append(sum(len(g["images"]) for g in json.loads(out)))
    assert sizes[1] > sizes[0]


def test_minor_the_automatic_pool_refuses_a_dataset_too_small_to_fit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ds" / "cat").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "ds" / "cat" / "0.png")
    rc, _, err = cli(["pool", "auto", tmp_path / "ds"], capsys)
    _one_line_error(rc, err, "smallest class has 1")


def test_by_hand_a_run_config_that_is_not_json_is_ignored_in_one_line(
    tmp_path: Path, member_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by hand beyond the issue: a damaged run config printed a JSONDecodeError traceback."""
    data, db = _scored(tmp_path, member_args, capsys)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE runs SET config='{not json'")
    rc, _, err = cli(["score", data, "--db", db, "--workers", "0", "-q"], capsys)  # no stored pool: the automatic
    assert "Traceback" not in err
    assert cli(["score", data, "--db", db, *member_args, "--workers", "0", "-q"], capsys)[0] == 0
