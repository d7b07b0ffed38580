"""Every extension point is a registry: a member kind, an engine and an export format each
registered by a test work end to end (pool file, score, queue, run record, export), and an
unknown name is a one-line error listing the registered ones."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from scoring.engine import registry as E
from scoring.engine.engines import LocalEngine
from scoring.engine.inference import score_project
from scoring.io import formats as F
from scoring.io.formats import open_dataset
from scoring.pool import kinds as K
from scoring.pool.base import Member, PoolError
from scoring.pool.schema import Key
from scoring.pool.spec import load_pool_file
from scoring.progress import drain
from scoring.store import Project
from scoring.tasks.export import ExportError, run_export
from tests.scoring.tinypool import TinyCheckpoint, make_imagefolder

CLASSES = ["blue", "green", "red"]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    data = make_imagefolder(tmp_path / "data", per_class=4, corrupt=False)
    path = tmp_path / "p.triage.db"
    Project.create(path, open_dataset(data)).close()
    return path


def _linear(spec: dict[str, Any], classes: list[str]) -> list[Member]:
    return [TinyCheckpoint(f"{spec['name']}-{s}", classes, s) for s in spec.get("seeds", [0])]


@pytest.fixture
def linear_kind() -> Iterator[K.MemberKind]:
    kind = K.register_kind(K.MemberKind(
        "linear8", "a seeded linear classifier over 8x8 pixels (a test's kind)",
        {"seeds": Key("int_list", "one member per seed")}, _linear, refit="never"))
    yield kind
    K.unregister_kind("linear8")


def test_a_registered_member_kind_is_read_from_a_pool_file_and_scores(linear_kind: K.MemberKind, db: Path,
                                                                       tmp_path: Path) -> None:
    pool_file = tmp_path / "pool.toml"
    pool_file.write_text('[[member]]\nkind = "linear8"\nname = "lin"\nseeds = [1, 2]\n')
    specs = load_pool_file(pool_file)
    summary = drain(score_project(db, specs, batch_size=4, workers=0, runtime="torch"))
    assert summary.status == "done" and summary.scored == 12
    with Project.open(db) as p:
        assert [m["name"] for m in p.runs.active_members()] == ["lin-1", "lin-2"]
        assert all(r.scores["c_perplexity"] is not None for r in p.queue.page(limit=100))
    with pytest.raises(PoolError, match=r"unknown keys \['epochs'\] for a linear8 member; valid: .*seeds"):
        pool_file.write_text('[[member]]\nkind = "linear8"\nepochs = 3\n')
        load_pool_file(pool_file)
    with pytest.raises(PoolError, match="must be one of backbone, checkpoint, finetune, linear8, scratch"):
        K.validate_member({"kind": "nope"}, "a test")
    assert not K.refits({"kind": "linear8"}, networks=True) and K.refits({"kind": "backbone"}, networks=False)
    assert K.refits({"kind": "scratch"}, networks=True) and not K.refits({"kind": "scratch"}, networks=False)


def test_a_kind_says_its_own_fit_time_and_refit_rule(db: Path) -> None:
    """Issue 32: the run's estimate and the re-rank ask the member's kind, and name no kind. A
    registered kind of fitted networks that says it refits like a head (every re-rank) and takes
    42 s to fit: the estimate says 42 s, and a plain re-rank refits it (the old rule, "a
    HeadMember, or any fitted member when asked for networks", would not have)."""
    import torch

    from scoring.pool.schema import SCRATCH_KEYS
    from scoring.pool.scratch import scratch_members
    from scoring.tasks import estimate_time as ET
    from scoring.tasks.autopool import Facts
    from scoring.tasks.rerank import rerank

    def build(spec: dict[str, Any], classes: list[str]) -> list[Member]:
        members = scratch_members(spec, classes)
        for m in members:
            m.kind = "timedmlp"  # type: ignore[misc]
        return members

    K.register_kind(K.MemberKind("timedmlp", "a tiny network that refits like a head (a test's kind)", SCRATCH_KEYS,
                                 build, refit="features", fit_seconds=lambda m, facts: 42.0))
    try:
        spec = {"name": "t", "kind": "timedmlp", "arch": "tiny_mlp", "epochs": 1, "folds": 2, "seeds": [0],
                "preprocess": {"size": 8}}
        facts = Facts(n_images=12, labelled=True, side=8, grayscale=False, gpu=False, thorough=False,
                      classes=tuple(CLASSES), min_per_class=4)
        assert ET.estimate([spec], facts, torch.device("cpu"), "torch")["fit t-s0"] == 42.0
        assert drain(score_project(db, [spec], batch_size=4, workers=0, runtime="torch")).status == "done"
        with Project.open(db) as p:
            p.edits.relabel(int(p.images.scorable_ids()[0]), 1)
        assert drain(rerank(db)).refitted == ["t-s0"]  # refitted by the kind's rule, without networks=True
    finally:
        K.unregister_kind("timedmlp")


def test_the_pool_builder_offers_a_registered_kind(linear_kind: K.MemberKind, qtbot) -> None:  # type: ignore[no-untyped-def]
    from gui.pool_builder import MemberForm

    form = MemberForm("linear8")
    qtbot.addWidget(form)
    form.name.setText("mine")
    assert form.build() == {"kind": "linear8", "name": "mine"}  # no architecture, weights or epochs: it has none
    assert form.windowTitle() == "linear8 member"


@dataclass
class CountingEngine:
    """A test's engine: the local engine, counting the images it was asked for."""

    tag: str = ""
    runtimes: dict[str, str] = field(default_factory=dict)
    asked: list[int] = field(default_factory=list)

    def infer(self, project, pool, ids, dev, batch_size, workers, cancel, times):  # type: ignore[no-untyped-def]
        self.asked.append(len(ids))
        inner = LocalEngine(runtime="torch", runtimes=self.runtimes)
        return inner.infer(project, pool, ids, dev, batch_size, workers, cancel, times)


def test_a_registered_engine_runs_a_scoring_and_is_recorded(db: Path) -> None:
    made: list[CountingEngine] = []

    def make(device: str, runtime: str, tag: str = "") -> CountingEngine:
        made.append(CountingEngine(tag))
        return made[-1]

    E.register_engine(E.EngineKind("counting", "counts what it is asked for", make, {"tag": "a label"}))
    try:
        from tests.scoring.tinypool import tiny_pool

        summary = drain(score_project(db, pool=tiny_pool(CLASSES), batch_size=4, workers=0, engine="counting",
                                    engine_options={"tag": "t1"}))
        assert summary.status == "done" and summary.scored == 12
        assert [e.tag for e in made] == ["t1"] and made[0].asked == [12]
        with Project.open(db) as p:
            assert p.runs.history()[-1]["config"].engine == "counting"
        with pytest.raises(ValueError, match="engine 'counting' takes no option 'address'; its options: tag"):
            drain(score_project(db, pool=tiny_pool(CLASSES), engine="counting", engine_options={"address": "x"}))
    finally:
        E.unregister_engine("counting")
    with pytest.raises(ValueError, match="unknown engine 'counting'; registered: local, ray"):
        drain(score_project(db, pool=tiny_pool(CLASSES), engine="counting"))


def test_the_command_line_offers_a_registered_engine_and_its_options() -> None:
    E.register_engine(E.EngineKind("counting", "counts what it is asked for", CountingEngine, {"tag": "a label"}))
    try:
        from scoring.cli.main import build_parser

        args = build_parser().parse_args(["score", "x", "--engine", "counting", "--engine-option", "tag=t2"])
        from scoring.cli.commands import _engine_options

        assert args.engine == "counting" and _engine_options(args) == {"tag": "t2"}
        # each engine option is a flag of its own, read from the entry (issue 32: Ray's were written
        # beside it): the registered engine's --tag, and Ray's --address and --gpus-per-worker
        args = build_parser().parse_args(["score", "x", "--engine", "counting", "--tag", "t3"])
        assert _engine_options(args) == {"tag": "t3"}
        args = build_parser().parse_args(["score", "x", "--engine", "ray", "--address", "ray://head:10001",
                                          "--gpus-per-worker", "0.5"])
        assert _engine_options(args) == {"address": "ray://head:10001", "gpus_per_worker": 0.5}
        assert _engine_options(build_parser().parse_args(["score", "x"])) == {}
    finally:
        E.unregister_engine("counting")
    from scoring.cli.main import build_parser

    with pytest.raises(SystemExit):  # gone with its engine
        build_parser().parse_args(["score", "x", "--tag", "t3"])


def test_every_choice_list_is_read_from_its_one_owner() -> None:
    """Issue 32: the runtimes, devices and link modes were each written in two or three places
    (the command line, the dialogs, the check); each now has one owner the others read."""
    from scoring.cli.main import build_parser
    from scoring.device import RUNTIMES
    from scoring.tasks.export import LINKS

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    score = sub.choices["score"]  # type: ignore[index]
    export = sub.choices["export"]  # type: ignore[index]
    assert next(a for a in score._actions if a.dest == "runtime").choices == list(RUNTIMES)
    assert next(a for a in export._actions if a.dest == "link").choices == list(LINKS)


def test_a_registered_export_format_writes_its_files_and_is_verified(db: Path, tmp_path: Path) -> None:
    def write_lines(folder: Path, classes: list[str], rows: list[F.ExportRow], source: Path | None) -> None:
        (folder / "labels.txt").write_text("".join(f"{r.path} {r.label}\n" for r in rows))

    F.register_format(F.Format("lines", "labels.txt beside pics/", write=write_lines, writes="pics/<n>-<file> and "
                               "labels.txt", images_under="pics", by_class=False))
    try:
        from tests.scoring.tinypool import tiny_pool

        drain(score_project(db, pool=tiny_pool(CLASSES), batch_size=4, workers=0))
        report = run_export(db, tmp_path / "out", fmt="lines")
        lines = (tmp_path / "out" / "labels.txt").read_text().splitlines()
        assert report["exported"] == 12 and len(lines) == 12
        assert all((tmp_path / "out" / line.split()[0]).is_file() and line.startswith("pics/") for line in lines)
        assert json.loads((tmp_path / "out" / "export_report.json").read_text())["format"] == "lines"
        from gui.dialogs import ExportDialog

        dialog = ExportDialog(tmp_path / "out3")
        assert "lines" in [dialog.fmt.itemText(i) for i in range(dialog.fmt.count())]
        dialog.deleteLater()
    finally:
        F.unregister_format("lines")
    with pytest.raises(ExportError, match="unknown export format 'lines'; use one of imagefolder, csv"):
        run_export(db, tmp_path / "out2", fmt="lines")


def test_a_bad_engine_option_is_one_line_and_creates_nothing(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from scoring.cli.main import main

    data = make_imagefolder(tmp_path / "data", per_class=2, corrupt=False)
    db = tmp_path / "p.triage.db"
    for option, said in (("gpus_per_worker=abc", "gpus_per_worker must be a finite number of 0 or more, got 'abc'"),
                         ("bogus=1", "engine 'ray' takes no option 'bogus'"),
                         ("noequals", "expected KEY=VALUE")):
        assert main(["score", str(data), "--db", str(db), "--engine", "ray", "--engine-option", option]) == 2
        err = capsys.readouterr().err
        assert said in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert not db.exists()
