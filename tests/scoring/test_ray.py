"""The Ray engine gives the local engine's scores, and resumes like it."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from scoring.datasets import open_dataset
from scoring.inference import run, score_project
from scoring.models.registry import get_model
from scoring.store import Project
from tests.scoring.tinypool import make_imagefolder

ray = pytest.importorskip("ray", reason="the Ray extra is not installed: pip install 'image-triage[ray]'")


@pytest.fixture(scope="module")
def local_ray():  # type: ignore[no-untyped-def]
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    yield
    ray.shutdown()


def _specs(tmp: Path) -> list[dict]:
    torch.manual_seed(0)
    torch.save(get_model("tiny_mlp", num_classes=3, size=16).state_dict(), tmp / "m.pth")
    return [
        {"name": "ck", "kind": "checkpoint", "path": str(tmp / "m.pth"), "arch": "tiny_mlp",
         "classes": ["blue", "green", "red"], "preprocess": {"size": 16}},
        {"name": "s", "kind": "scratch", "arch": "tiny_mlp", "epochs": 3, "folds": 2, "seeds": [0],
         "preprocess": {"size": 8}},
    ]


def _scores(db: Path) -> dict[str, tuple]:
    with Project.open(db) as p:
        return {r.path: (r.c_perplexity, r.x_perplexity, r.mutual_info, r.consensus) for r in p.queue(limit=1000)}


def test_ray_engine_matches_the_local_engine_including_after_an_interruption(local_ray, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = make_imagefolder(tmp_path / "data", per_class=8)
    specs = _specs(tmp_path)
    local, distributed = tmp_path / "local.triage.db", tmp_path / "ray.triage.db"
    for db in (local, distributed):
        Project.create(db, open_dataset(data)).close()
    run(score_project(local, specs, batch_size=4, workers=0))

    cancel = threading.Event()
    for prog in score_project(distributed, specs, batch_size=4, workers=2, engine="ray", cancel=cancel):
        if prog.stage == "infer" and prog.done >= 4:
            cancel.set()  # interrupted part-way
    with Project.open(distributed) as p:
        assert p.runs()[-1]["status"] == "cancelled"
    summary = run(score_project(distributed, specs, batch_size=4, workers=2, engine="ray"))
    assert summary["status"] == "done" and summary["scored"] == 24

    want, got = _scores(local), _scores(distributed)
    assert got.keys() == want.keys() and len(got) == 24
    for path in want:
        np.testing.assert_allclose(np.array(got[path][:3], float), np.array(want[path][:3], float), atol=2e-3, err_msg=path)
        assert got[path][3] == want[path][3]
    with Project.open(distributed) as p:
        assert {r.path for r in p.errors()} == {"red/broken.png", "green/empty.jpg"}
