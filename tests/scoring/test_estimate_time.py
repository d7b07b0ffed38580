"""Issue 22: the time estimate is measured, said as a range, and learns from this machine's runs."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch

from scoring.pool.models.registry import get_model
from scoring.tasks import estimate_time as ET
from scoring.tasks.autopool import Facts


def _facts(**kw: object) -> Facts:
    base = dict(n_images=400, labelled=True, side=32, grayscale=False, gpu=False, thorough=False,
                classes=("a", "b", "c"), min_per_class=100)
    return Facts(**{**base, **kw})  # type: ignore[arg-type]


def test_every_stage_of_the_run_is_measured_and_scales_with_the_images(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shape, not the clock (issue 27: a ratio of two timings went red on a busy machine): the
    training step is timed once for real, then held fixed while the images scale."""
    specs = [{"name": "cnn", "kind": "scratch", "arch": "small_cnn", "seeds": [0], "folds": 2, "epochs": 2,
              "preprocess": {"size": 16}}]  # its training step is timed on a batch
    small = ET.estimate(specs, _facts(n_images=400), torch.device("cpu"), "torch")
    assert set(small) == {"decode", "runtime", "fit cnn-s0"} and all(v > 0 for k, v in small.items() if k != "runtime")
    import scoring.pool.scratch

    monkeypatch.setattr(scoring.pool.scratch, "step_seconds", lambda *_a, **_k: 0.01)
    small = ET.estimate(specs, _facts(n_images=400), torch.device("cpu"), "torch")
    large = ET.estimate(specs, _facts(n_images=4000), torch.device("cpu"), "torch")
    assert 9 <= large["fit cnn-s0"] / small["fit cnn-s0"] <= 11  # ten times the images: ten times the steps
    assert large["decode"] == pytest.approx(10 * small["decode"])


def test_members_alike_share_one_probe_so_one_slow_probe_cannot_split_them(monkeypatch: pytest.MonkeyPatch,
                                                                           tmp_path: Path) -> None:
    """Issue 29: two seeds of one network were timed apart (10 s and 56 s with another process on
    the cores) and the first of four head fractions paid the warm-up of all (4.4 s against 0.9 s).
    Each thing timed is now measured once per estimate; the probe here is a counter, not a clock."""
    import scoring.pool.members
    import scoring.pool.scratch

    calls: list[str] = []
    slower = iter([0.01, 0.05, 0.09])  # were each seed timed, each would get another time
    monkeypatch.setattr(scoring.pool.scratch, "step_seconds", lambda *_a, **_k: calls.append("step") or next(slower))
    monkeypatch.setattr(scoring.pool.members, "head_seconds", lambda rows, *_a: calls.append("head") or 0.002 * rows)
    specs = [{"name": "cnn", "kind": "scratch", "arch": "small_cnn", "seeds": [0, 1], "folds": 2, "epochs": 2,
              "preprocess": {"size": 16}},
             {"name": "h", "kind": "backbone", "arch": "cifar_resnet20", "path": str(tmp_path / "r20.pt"),
              "fractions": [0.25, 1.0], "seeds": [0, 1], "folds": 2, "classes": ["a", "b", "c"], "preprocess": {"size": 32}}]
    torch.save(get_model("cifar_resnet20", num_classes=3).state_dict(), tmp_path / "r20.pt")
    parts = ET.estimate(specs, _facts(n_images=400), torch.device("cpu"), "torch")
    assert calls.count("step") == 1 and parts["fit cnn-s0"] == parts["fit cnn-s1"] > 0
    assert calls.count("head") == 2  # one per fraction; the seeds share it
    assert parts["fit h-f25-s0"] == parts["fit h-f25-s1"] and parts["fit h-f100-s0"] == parts["fit h-f100-s1"]
    assert parts["fit h-f100-s0"] == pytest.approx(4 * parts["fit h-f25-s0"], rel=0.02)  # the fake head: linear in rows


def test_the_range_learns_only_from_runs_long_enough_to_say_something(monkeypatch: pytest.MonkeyPatch) -> None:
    mid, (lo, hi), note = ET.calibrate(100.0, [])
    assert mid == 100.0 and lo < 100.0 < hi and note == ""
    host = socket.gethostname()
    tiny = [{"host": host, "estimate": 0.5, "actual": 2.0}] * 5  # test-sized runs: fixed costs, ignored
    assert ET.calibrate(100.0, tiny)[0] == 100.0
    slow = [{"host": host, "estimate": 200.0, "actual": 300.0}] * 3
    mid, (lo, hi), note = ET.calibrate(100.0, tiny + slow)
    assert mid == pytest.approx(150.0) and lo < 150.0 < hi and "3 earlier runs" in note
    wild = [{"host": host, "estimate": 100.0, "actual": 10_000.0}]
    assert ET.calibrate(100.0, wild)[0] == 100.0  # one run is an anecdote
    assert ET.calibrate(100.0, wild * 2)[0] == pytest.approx(300.0)  # clipped to 3x
    sized = [{**r, "images": 1000} for r in slow]
    assert ET.calibrate(100.0, sized, n_images=2000)[0] == pytest.approx(150.0)  # as many images, within 4x
    assert ET.calibrate(100.0, sized, n_images=200)[0] == 100.0  # a run 5x larger says little here
    assert ET.calibrate(100.0, sized, n_images=10_000)[0] == 100.0
    # runs of a minute or two that took 15-50 s more than said: a 25-minute run gets their extra
    # seconds, not their ratio (x1.29 said 27 to 51 minutes for a run that took 26)
    short = [{"host": host, "estimate": e, "actual": a} for e, a in
             ((76.6, 129.9), (91.9, 118.3), (115.4, 130.8), (75.0, 122.2), (326.9, 292.6))]
    mid, (lo, hi), note = ET.calibrate(1520.0, short)
    assert mid == pytest.approx(1520.0 + 26.4) and lo < 1537.0 < hi and "x1.02 from 5 earlier runs" in note
    assert ET.calibrate(100.0, short)[0] == pytest.approx(100.0 * 118.3 / 91.9)  # as long as this one: ratios


def test_the_history_is_kept_in_the_users_data_folder_and_survives_a_bad_line() -> None:
    ET.record(120.0, 150.0, 1000)
    ET.record(100.0, 130.0, 900)
    path = ET._history_path()
    path.write_text(path.read_text() + "not json\n")
    rows = ET.history()
    assert [r["actual"] for r in rows][-2:] == [150.0, 130.0]
    assert ET.calibrate(100.0)[0] == pytest.approx(100.0 * (150 / 120 + 130 / 100) / 2)
