"""The scoring engine: decode once, every member per batch, resume, cancel, kill."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from scoring.engine.inference import score_project
from scoring.io.formats import open_dataset
from scoring.pool.base import PoolError
from scoring.progress import drain
from scoring.store import Project
from tests.scoring.tinypool import make_imagefolder, tiny_pool

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    data = make_imagefolder(tmp_path / "data")
    db = tmp_path / "p.triage.db"
    Project.create(db, open_dataset(data)).close()
    return db


def _scores(db: Path) -> dict[str, tuple]:
    with Project.open(db) as p:
        rows = p.queue.page(limit=10_000)
        return {r.path: (r.scores["c_perplexity"], r.scores["x_perplexity"], r.scores["mutual_info"], r.consensus) for r in rows}


def test_scores_every_readable_image_and_records_the_unreadable(project: Path) -> None:
    summary = drain(score_project(project, pool=tiny_pool(["blue", "green", "red"]), batch_size=4, workers=0))
    assert summary.status == "done"
    assert summary.scored == 18
    with Project.open(project) as p:
        errors = {r.path: r.error for r in p.images.errors()}
        assert set(errors) == {"red/broken.png", "green/empty.jpg"}
        assert "empty.jpg" in errors["green/empty.jpg"]
        rows = p.queue.page(limit=100)
        assert len(rows) == 18
        assert all(r.scores["c_perplexity"] is not None and 1.0 <= r.scores["c_perplexity"] <= 3.0 for r in rows)
        values = [r.scores["c_perplexity"] for r in rows]
        assert values == sorted(values, reverse=True)
        # the fitted (cross-fitted centroid) member separates the colours: the consensus is right
        # for most images, so the label-aware scores are meaningful
        correct = sum(r.consensus == r.given_label for r in rows)
        assert correct >= 12


def test_decodes_once_and_feeds_every_member(project: Path) -> None:
    pool = tiny_pool(["blue", "green", "red"], fitted=False)
    # torch runs the members here: they count the images their forward sees, which a module on
    # ONNX Runtime (the default on a CPU) would not (tests/scoring/test_runtime.py covers that)
    drain(score_project(project, pool=pool, batch_size=5, workers=0, runtime="torch"))
    assert [m.seen for m in pool.members] == [18, 18, 18]


def test_a_second_run_rescores_nothing_stored(project: Path) -> None:
    drain(score_project(project, pool=tiny_pool(["blue", "green", "red"]), batch_size=4, workers=0))
    again = tiny_pool(["blue", "green", "red"])
    before = _scores(project)
    drain(score_project(project, pool=again, batch_size=4, workers=0, runtime="torch"))
    assert [m.seen for m in again.members if m.kind == "checkpoint"] == [0, 0, 0]
    assert _scores(project) == before


def test_cancel_stops_within_one_batch_and_the_next_run_resumes(project: Path) -> None:
    """The engine runs each encoder over a decoded chunk in turn; a cancel after the first
    encoder finished stops the second within one batch, keeps the first's work, and the next
    run computes exactly what is missing: every member sees each image once over both runs."""
    cancel = threading.Event()
    pool = tiny_pool(["blue", "green", "red"])
    gen = score_project(project, pool=pool, batch_size=4, workers=0, cancel=cancel, runtime="torch")
    for prog in gen:
        if prog.stage == "infer" and pool.members[0].seen == 18:
            cancel.set()
    with Project.open(project) as p:
        assert p.runs.history()[-1]["status"] == "cancelled"
        assert p.runs.interrupted_run() is None
    first = [m.seen for m in pool.members[:3]]
    assert first[0] == 18 and first[1] <= 4 and first[2] == 0  # stopped within one batch
    resumed = tiny_pool(["blue", "green", "red"])
    assert drain(score_project(project, pool=resumed, batch_size=4, workers=0, runtime="torch")).status == "done"
    assert [a + m.seen for a, m in zip(first, resumed.members[:3], strict=True)] == [18, 18, 18]


def test_decode_workers_give_the_same_scores(tmp_path: Path, project: Path) -> None:
    drain(score_project(project, pool=tiny_pool(["blue", "green", "red"]), batch_size=4, workers=0))
    other = tmp_path / "other.triage.db"
    with Project.open(project) as p:
        Project.create(other, p.dataset()).close()
    drain(score_project(other, pool=tiny_pool(["blue", "green", "red"]), batch_size=3, workers=2))
    assert _scores(other) == _scores(project)


def test_pool_for_other_classes_is_refused(project: Path) -> None:
    with pytest.raises(PoolError, match="classes"):
        drain(score_project(project, pool=tiny_pool(["cat", "dog", "red"]), workers=0))


@pytest.mark.slow
def test_kill_during_scoring_then_resume_gives_the_uninterrupted_scores(tmp_path: Path) -> None:
    """Kill -9 a scoring process at random batches, many times, editing between kills; resuming
    converges to the uninterrupted run's scores and no edit is lost. FAULT_KILLS sets how many."""
    kills_wanted = int(os.environ.get("FAULT_KILLS", "10"))
    data = make_imagefolder(tmp_path / "data", per_class=3 * kills_wanted + 4, corrupt=True)
    project, reference = tmp_path / "p.triage.db", tmp_path / "ref.triage.db"
    Project.create(project, open_dataset(data)).close()
    Project.create(reference, open_dataset(data)).close()
    drain(score_project(reference, pool=tiny_pool(["blue", "green", "red"]), batch_size=2, workers=0))
    expected = _scores(reference)

    rng = random.Random(7)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    kills, edits = 0, {}
    while kills < kills_wanted:
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.scoring.killrun", str(project), "0.02"],
            stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env,
        )
        target, seen, finished = rng.randint(1, 3), 0, False
        assert child.stdout is not None
        for line in child.stdout:
            if line.startswith("infer"):
                seen += 1
                if seen > target:
                    child.send_signal(signal.SIGKILL)
                    kills += 1
                    break
            finished = finished or line.startswith("finished")
        child.wait(timeout=60)
        with Project.open(project) as p:  # an annotator works between the crashes
            image_id = rng.choice(p.images.scorable_ids().tolist())
            label = rng.randrange(3)
            p.edits.relabel(image_id, label)
            edits[image_id] = label
        if finished or seen <= target:
            break  # nothing was left to infer
    assert kills == kills_wanted
    print(f"survived {kills} kills")
    with Project.open(project) as p:
        assert p.runs.interrupted_run() is not None or p.runs.history()[-1]["status"] == "done"
    drain(score_project(project, pool=tiny_pool(["blue", "green", "red"]), batch_size=2, workers=0))
    got = _scores(project)
    assert got.keys() == expected.keys()
    for path, vals in expected.items():
        np.testing.assert_allclose(
            np.array(got[path][:3], dtype=float), np.array(vals[:3], dtype=float), atol=2e-3, err_msg=path
        )
        assert got[path][3] == vals[3]
    with Project.open(project) as p:
        assert {i: p.images.image(i).current_label for i in edits} == edits


def test_an_unlabelled_folder_is_scored_over_the_pools_classes(tmp_path: Path) -> None:
    from PIL import Image

    (tmp_path / "flat").mkdir()
    for i, rgb in enumerate([(250, 0, 0), (0, 250, 0), (0, 0, 250)]):
        Image.new("RGB", (12, 12), rgb).save(tmp_path / "flat" / f"{i}.png")
    db = tmp_path / "flat.triage.db"
    Project.create(db, open_dataset(tmp_path / "flat")).close()
    summary = drain(score_project(db, pool=tiny_pool(["blue", "green", "red"], fitted=False), workers=0))
    assert summary.status == "done" and summary.labelled is False
    with Project.open(db) as p:
        assert p.classes == ["blue", "green", "red"]
        rows = p.queue.page(limit=10)
        assert len(rows) == 3 and all(r.scores["c_perplexity"] is not None and r.scores["x_perplexity"] is None for r in rows)
        assert all(r.scores["self_confidence"] is None and r.scores["margin"] is None and r.consensus is not None for r in rows)
    with pytest.raises(PoolError, match="labelled"):
        other = tmp_path / "flat2.triage.db"
        Project.create(other, open_dataset(tmp_path / "flat")).close()
        drain(score_project(other, pool=tiny_pool(["blue", "green", "red"], fitted=True), workers=0))


def test_the_default_times_its_first_batch_to_choose_decode_workers(tmp_path: Path, project: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 35: with no --workers, the first batch is decoded here and the pool's forward run on
    it; the rest are decoded by the workers choose_workers gives for those two times (forced to
    2 here, to run both halves), with the scores of a run without workers."""
    from scoring.engine import engines

    drain(score_project(project, pool=tiny_pool(["blue", "green", "red"]), batch_size=2, workers=0))
    other = tmp_path / "other.triage.db"
    with Project.open(project) as p:
        Project.create(other, p.dataset()).close()
        n = len(p.images.scorable_ids())
    assert n > engines.PROBE_AFTER * 2  # more batches than the probe needs
    timed: list[tuple[float, float]] = []
    monkeypatch.setattr(engines, "choose_workers", lambda d, f: (timed.append((d, f)), 2)[1])
    said: list[str] = []
    drain(score_project(other, pool=tiny_pool(["blue", "green", "red"]), batch_size=2), lambda r: said.append(r.message))
    assert len(timed) == 1 and timed[0][0] > 0 and timed[0][1] > 0
    assert "decode workers: 2" in said
    assert _scores(other) == _scores(project)


def test_decode_workers_pay_only_where_the_decode_outweighs_the_forward() -> None:
    from scoring.engine.engines import choose_workers

    assert choose_workers(1.45, 0.22, cores=2) == 2  # one ResNet-20 on 500 photos: 1.74 -> 1.29 s with two
    assert choose_workers(1.38, 1.73, cores=2) == 2  # four ResNets on them: 3.47 -> 2.95 s
    assert choose_workers(0.53, 0.90, cores=2) == 2  # one on CIFAR's 32 px JPEGs: 1.81 -> 1.63 s
    assert choose_workers(0.53, 6.76, cores=2) == 0  # four on them: 7.57 -> 7.72 s, the forward is the run
    assert choose_workers(1.0, 0.1, cores=16) == 4 and choose_workers(1.0, 0.1, cores=6) == 3


def test_a_stuck_decode_worker_stops_the_run_with_a_sentence(tmp_path: Path, project: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Never wait without a timeout: decode workers that give no batch within WORKER_WAIT stop
    the run with a sentence naming where it was and what to do."""
    import time

    from scoring.engine import batches, engines

    real = batches.decode_item
    monkeypatch.setattr(engines, "WORKER_WAIT", 1)
    monkeypatch.setattr(batches, "decode_item", lambda *a: (time.sleep(4), real(*a))[1])  # inherited by the forked workers
    with pytest.raises(RuntimeError, match=r"gave no batch in 1 s .*--workers 0"):
        drain(score_project(project, pool=tiny_pool(["blue", "green", "red"]), batch_size=2, workers=2))
    with Project.open(project) as p:
        last = p.runs.history()[-1]
        assert last["status"] == "failed" and "gave no batch" in last["error"]


def test_a_chunks_whole_batches_run_as_decoded_and_a_filtered_chunk_as_one_tensor() -> None:
    """The forward reads the decoded batches' own tensors where each is a whole batch (no copy of
    the chunk: issue 35), and the wanted rows of the joined chunk otherwise; the rows are the same."""
    import torch

    from scoring.engine.batches import Batch
    from scoring.engine.engines import _inputs

    sizes = [4, 4, 3]
    batches = [Batch(np.arange(n) + 10 * k, {"px": torch.arange(n * 2, dtype=torch.float32).reshape(n, 2) + 100 * k},
                     [], [1] * n, [1] * n, [None] * n) for k, n in enumerate(sizes)]
    every = np.ones(sum(sizes), bool)
    whole = _inputs(batches, "px", every, 4)
    assert [x.data_ptr() for x in whole] == [b.inputs["px"].data_ptr() for b in batches]
    joined = torch.cat([b.inputs["px"] for b in batches])
    assert len(_inputs(batches, "px", every, 3)) == 1 and torch.equal(_inputs(batches, "px", every, 3)[0], joined)
    some = every.copy()
    some[[1, 6]] = False
    [x] = _inputs(batches, "px", some, 4)
    assert torch.equal(x, joined[torch.from_numpy(some)])
