"""Review as a team (issue 31): a scored project shared among annotators as packages, their
decisions merged back, disputes, adjudication and the agreement figures."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from scoring.io.formats import open_dataset
from scoring.store import Project, QueueFilter
from scoring.tasks.merge import MergeError, agreement, cohen_kappa, fleiss_kappa, merge_packages
from scoring.tasks.share import ShareError, deal, share_project
from scoring.vocabulary import compute_scores
from tests.scoring.tinypool import make_imagefolder


def scored(tmp_path: Path, per_class: int, seed: int = 0, name: str = "p") -> Path:
    data = make_imagefolder(tmp_path / f"data-{name}", per_class=per_class, corrupt=False)
    db = tmp_path / f"{name}.triage.db"
    with Project.create(db, open_dataset(data)) as p:
        ids = p.images.scorable_ids()
        probs = np.random.default_rng(seed).dirichlet(np.ones(3) * 0.7, size=(3, len(ids)))
        scores = compute_scores(probs, p.images.given_labels(ids))
        p.queue.put_scores("pool", ids, scores)
        p.queue.put_label_evidence(ids, np.random.default_rng(seed + 1).random(len(ids)),
                                   (1.0 - scores["margin"]) / 2.0, 0.0)
    return db


def state(db: Path) -> dict[int, tuple[int | None, str]]:
    with Project.open(db) as p:
        return {int(i): (lab, st) for i, lab, st in p._q("SELECT id, current_label, status FROM images")}


def test_deal_is_in_turn_with_a_blind_overlap() -> None:
    got = deal(list(range(100)), ["ana", "ben", "chloe"], 0.2)
    assert sorted({i for ids in got.values() for i in ids}) == list(range(100))  # every image dealt
    shared = [i for i in range(100) if sum(i in ids for ids in got.values()) == 2]
    assert len(shared) == 20 and all(sum(i in ids for ids in got.values()) <= 2 for i in range(100))
    pairs = {tuple(sorted(a for a, ids in got.items() if i in ids)) for i in shared}
    assert pairs == {("ana", "ben"), ("ana", "chloe"), ("ben", "chloe")}  # every pair shares images
    sizes = [len(v) for v in got.values()]
    assert max(sizes) - min(sizes) <= 2
    for ids in got.values():  # queue order kept: each slice mixes the top and the bottom of the queue
        assert ids == sorted(ids) and ids[0] < 3 and ids[-1] > 95


def test_kappas_match_hand_computed_values() -> None:
    # 10 items: a and b agree on 7; a says [0]*5+[1]*5, b says [0,0,0,0,1, 1,1,1,0,0]
    a = [0] * 5 + [1] * 5
    b = [0, 0, 0, 0, 1, 1, 1, 1, 0, 0]
    # po = 0.7; pa(0) = 0.5, pb(0) = 0.6; pe = 0.5*0.6 + 0.5*0.4 = 0.5; kappa = 0.2 / 0.5 = 0.4
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    # Fleiss with 2 raters on the same items: P_i = 1 if alike else 0 -> P = 0.7; p(0) = 11/20, p(1) = 9/20
    pe = (11 / 20) ** 2 + (9 / 20) ** 2
    assert fleiss_kappa([[x, y] for x, y in zip(a, b, strict=True)]) == pytest.approx((0.7 - pe) / (1 - pe))
    assert math.isnan(cohen_kappa([1, 1], [1, 1]))


def test_share_merge_disputes_adjudication_and_agreement(tmp_path: Path) -> None:
    db = scored(tmp_path, per_class=100)  # 300 images, 3 classes
    made = share_project(db, tmp_path / "out", ["ana", "ben", "chloe"], overlap=0.2)
    assert [m.path.name for m in made] == ["ana.triage.db", "ben.triage.db", "chloe.triage.db"]
    assert sum(m.images for m in made) == 360 and sum(m.overlap for m in made) == 120
    packages = {m.annotator: m.path for m in made}
    slices: dict[str, list[int]] = {}
    for name, path in packages.items():
        with Project.open(path) as pkg:
            info = pkg.team.package()
            assert info is not None and info.annotator == name and pkg.edits.annotator == name
            slices[name] = [int(i) for i in pkg.images.scorable_ids()]
            assert pkg.queue.queue_count() == len(slices[name])  # the package holds its slice only
    overlap = sorted(set(slices["ana"]) & set(slices["ben"]))
    assert overlap
    # each annotator decides: keep by default; on the ana/ben overlap, ben relabels half of them;
    # every annotator undoes one decision, which must not land
    decided: dict[str, dict[int, tuple[int | None, str]]] = {}
    for name, path in packages.items():
        with Project.open(path) as pkg:
            mine = slices[name][:30]
            for i in mine:
                if name == "ben" and i in overlap[::2]:
                    row = pkg.images.image(i)
                    pkg.edits.relabel(i, ((row.given_label or 0) + 1) % 3)
                else:
                    pkg.edits.keep(i)
            pkg.edits.undo()  # the last decision is taken back
            decided[name] = {i: s for i, s in state(path).items() if s[1] != "unreviewed"}
            assert mine[-1] not in decided[name]
    before = state(db)
    import hashlib

    def digest(path: Path) -> list[str]:
        return [hashlib.sha1(Path(f"{path}{s}").read_bytes()).hexdigest() if Path(f"{path}{s}").exists() else ""
                for s in ("", "-wal")]

    untouched = {name: digest(path) for name, path in packages.items()}
    reports = merge_packages(db, list(packages.values()))
    assert {name: digest(path) for name, path in packages.items()} == untouched  # a merge never writes a package
    assert [r.annotator for r in reports] == ["ana", "ben", "chloe"]
    after = state(db)
    with Project.open(db) as p:
        disputed = set(p.team.disputed_ids())
        both = {i for i in decided["ana"] if i in decided["ben"]}
        differ = {i for i in both if decided["ana"][i] != decided["ben"][i]}
        assert disputed == differ and differ  # the disagreements are exactly the disputed images
        assert {r.id for r in p.queue.page(QueueFilter(disputed=True), limit=500)} == differ
        for mine in decided.values():  # every decision lands with its annotator
            for i, s in mine.items():
                if i in differ:
                    assert after[i] == before[i]  # neither decision applied
                    continue
                assert after[i] == s
                who = p._q("SELECT annotator, via FROM edits WHERE image_id=? ORDER BY id DESC LIMIT 1", (i,))[0]
                assert who[1] == "merge" and who[0] in {n for n, d in decided.items() if i in d}
        untouched = set(after) - {i for d in decided.values() for i in d}
        assert all(after[i] == before[i] for i in untouched)
        steps = p._q("SELECT count(*) FROM team_log")[0][0]
        assert steps == sum(len(d) + 2 for d in decided.values())  # every step kept, the undone one and its undo too
        figures = agreement(p)
        pair = next(x for x in figures.pairs if (x.a, x.b) == ("ana", "ben"))
        xs = [(-1 if decided["ana"][i][1] == "removed" else decided["ana"][i][0]) for i in sorted(both)]
        ys = [(-1 if decided["ben"][i][1] == "removed" else decided["ben"][i][0]) for i in sorted(both)]
        assert pair.images == len(both) and pair.kappa == pytest.approx(cohen_kappa(xs, ys))
        assert pair.agreement == pytest.approx(1 - len(differ) / len(both))
        # the adjudicator's key settles a dispute, logged as adjudication, undoable
        settle = min(differ)
        e = p.edits.relabel(settle, decided["ben"][settle][0])
        assert e.via == "adjudication" and settle not in p.team.disputed_ids()
        assert agreement(p).with_final["ben"][1] > agreement(p).with_final["ana"][1]
        p.edits.undo()
        assert settle in p.team.disputed_ids()
        p.edits.redo()
    settled = state(db)
    # merging the same packages again changes nothing
    again = merge_packages(db, list(packages.values()))
    assert all(r.counts.steps == 0 for r in again) and state(db) == settled
    # more work in one package: only its new edits come; a decision changed after the merge follows
    with Project.open(packages["chloe"]) as pkg:
        new = [i for i in slices["chloe"][30:] if i not in slices["ana"] and i not in slices["ben"]][:5]
        for i in new:
            pkg.edits.remove(i)
    more = merge_packages(db, [packages["chloe"]])
    assert more[0].counts.steps == 5 and more[0].counts.decisions == 5
    final = state(db)
    assert all(final[i][1] == "removed" for i in new)
    assert {i: s for i, s in final.items() if i not in new} == {i: s for i, s in settled.items() if i not in new}


def test_a_package_of_another_project_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    db = scored(tmp_path, per_class=5, name="p")
    other = scored(tmp_path, per_class=5, seed=1, name="q")
    (stranger,) = share_project(other, tmp_path / "q-out", ["dan"])
    with Project.open(stranger.path) as pkg:
        pkg.edits.keep(int(pkg.images.scorable_ids()[0]))
    before = state(db)
    with pytest.raises(MergeError, match=r"dan\.triage\.db is a package of another project"):
        merge_packages(db, [stranger.path])
    with pytest.raises(MergeError, match="is a project, not a review package"):
        merge_packages(db, [other])
    assert state(db) == before
    with Project.open(db) as p:
        assert p._q("SELECT count(*) FROM team_log")[0][0] == 0


def test_share_never_replaces_and_checks_names(tmp_path: Path) -> None:
    db = scored(tmp_path, per_class=4)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "ben.triage.db").write_text("mine")
    with pytest.raises(ShareError, match="ben.triage.db exists"):
        share_project(db, tmp_path / "out", ["ana", "ben"])
    assert not (tmp_path / "out" / "ana.triage.db").exists()
    assert (tmp_path / "out" / "ben.triage.db").read_text() == "mine"
    with pytest.raises(ShareError, match="cannot name a package"):
        share_project(db, tmp_path / "out2", ["../x"])
    with pytest.raises(ShareError, match="named twice"):
        share_project(db, tmp_path / "out2", ["ana", "ANA"])


def test_with_images_the_package_reads_its_own_copies(tmp_path: Path) -> None:
    db = scored(tmp_path, per_class=4)
    (pkg_made,) = share_project(db, tmp_path / "out", ["ana"], with_images=True)
    assert pkg_made.images_folder is not None
    shutil.rmtree(tmp_path / "data-p")  # the laptop is offline: the dataset is not there
    with Project.open(pkg_made.path) as pkg:
        for i in pkg.images.scorable_ids():
            path = pkg.images.abspath(pkg.images.image(int(i)))
            assert Path(path).is_file() and Path(path).is_relative_to(pkg_made.images_folder.resolve())


def _decide_in_packages(packages: dict[str, Path], seed: int) -> None:
    """Each annotator keeps, relabels or removes every image of their slice (seeded), undoing some."""
    rng = np.random.default_rng(seed)
    for path in packages.values():
        with Project.open(path) as pkg:
            for i in pkg.images.scorable_ids():
                roll = rng.random()
                if roll < 0.6:
                    pkg.edits.keep(int(i))
                elif roll < 0.85:
                    pkg.edits.relabel(int(i), int(rng.integers(3)))
                else:
                    pkg.edits.remove(int(i))
                if rng.random() < 0.1:
                    pkg.edits.undo()


def test_a_merge_killed_at_any_moment_then_run_again_lands_as_one_uninterrupted(tmp_path: Path) -> None:
    """SIGKILL at 50 random moments of a merge of three packages, each followed by a merge run
    to the end: the project's decisions, log and ledger equal those of one uninterrupted merge."""
    import os
    import signal
    import subprocess
    import sys
    import time

    db = scored(tmp_path, per_class=40)
    made = share_project(db, tmp_path / "out", ["ana", "ben", "chloe"], overlap=0.3)
    packages = {m.annotator: m.path for m in made}
    _decide_in_packages(packages, seed=3)
    reference = tmp_path / "reference.triage.db"
    shutil.copyfile(db, reference)
    t0 = time.perf_counter()
    merge_packages(reference, list(packages.values()))
    took = time.perf_counter() - t0

    def facts(path: Path) -> tuple[object, ...]:
        with Project.open(path) as p:
            return (state(path), p._q("SELECT package, edit_id, image_id, action, new_label, new_status FROM team_log "
                                      "ORDER BY package, edit_id"),
                    p._q("SELECT image_id, annotator, label, status FROM team_decisions ORDER BY image_id, annotator"),
                    p._q("SELECT package, last_edit FROM merges ORDER BY package"),
                    p._q("SELECT image_id, action, new_label, new_status, annotator, via FROM edits ORDER BY id"))

    want = facts(reference)
    rng = np.random.default_rng(7)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    child = ("import sys; from scoring.tasks.merge import merge_packages; print('go', flush=True); "
             "merge_packages(sys.argv[1], sys.argv[2:]); print('done', flush=True)")
    whole: list[int] = []  # how many packages a kill left merged
    for _ in range(50):
        work = tmp_path / "work.triage.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{work}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(db, work)
        proc = subprocess.Popen([sys.executable, "-c", child, str(work), *map(str, packages.values())],
                                stdout=subprocess.PIPE, text=True, env=env)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "go"
        time.sleep(float(rng.uniform(0.0, 3.0 * took)))
        proc.send_signal(signal.SIGKILL)
        out = proc.communicate(timeout=60)[0]
        if "done" not in out:
            with Project.open(work) as p:
                whole.append(int(p._q("SELECT count(*) FROM merges")[0][0]))
        merge_packages(work, list(packages.values()))  # run again to the end
        assert facts(work) == want
    print(f"kills before the merge finished: {len(whole)} of 50; packages they left merged: {sorted(whole)}")
    assert len(whole) >= 10 and len(set(whole)) >= 2  # kills landed before, between and inside packages


def test_the_command_line_shares_merges_and_shows_who(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from scoring.cli.main import main

    db = scored(tmp_path, per_class=6)
    assert main(["share", "--db", str(db), "--to", str(tmp_path / "out"), "--annotators", "ana,ben", "--overlap", "0.5"]) == 0
    pkgs = [tmp_path / "out" / "ana.triage.db", tmp_path / "out" / "ben.triage.db"]
    with Project.open(pkgs[0]) as a, Project.open(pkgs[1]) as b:
        shared = sorted(set(a.images.scorable_ids()) & set(b.images.scorable_ids()))
    assert main(["keep", "--db", str(pkgs[0]), str(shared[0])]) == 0
    assert main(["remove", "--db", str(pkgs[1]), str(shared[0])]) == 0
    assert main(["keep", "--db", str(pkgs[1]), str(shared[1])]) == 0
    capsys.readouterr()
    assert main(["merge", "--db", str(db), *map(str, pkgs)]) == 0
    out = capsys.readouterr()
    assert "1 disputed" in out.out and "Cohen's kappa" in out.out and "--disputed" in out.err
    assert main(["queue", "--db", str(db), "--disputed", "--json"]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [shared[0]]
    assert main(["edits", "--db", str(db)]) == 0
    assert "ben (merge)" in capsys.readouterr().out


def test_a_tampered_package_and_a_share_into_the_dataset_are_refused(tmp_path: Path) -> None:
    import sqlite3

    db = scored(tmp_path, per_class=4)
    with pytest.raises(ShareError, match="inside the dataset folder"):
        share_project(db, tmp_path / "data-p" / "red", ["ana"])
    assert not (tmp_path / "data-p" / "red" / "ana.triage.db").exists()
    (made,) = share_project(db, tmp_path / "out", ["ana"])
    with Project.open(made.path) as pkg:
        first = int(pkg.images.scorable_ids()[0])
        pkg.edits.relabel(first, 1)
    c = sqlite3.connect(made.path)
    c.execute("UPDATE images SET current_label = 99 WHERE id = ?", (first,))  # a label the project does not have
    c.commit()
    c.close()
    before = state(db)
    with pytest.raises(MergeError, match="is damaged"):
        merge_packages(db, [made.path])
    assert state(db) == before
