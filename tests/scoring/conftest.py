"""Fixtures shared by the scoring tests: a tiny checkpoint member for the command line, a review
session on 12 images with fake but valid scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from scoring.io.formats import open_dataset
from scoring.pool.models.registry import get_model
from scoring.store import Project
from scoring.tasks.review import ReviewSession
from scoring.vocabulary import compute_scores
from tests.scoring.tinypool import make_imagefolder


def tiny_member(folder: Path, classes: tuple[str, ...] = ("blue", "green", "red")) -> list[str]:
    """``--member`` arguments for a seeded tiny MLP checkpoint over ``classes`` (16 px)."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save({"state_dict": get_model("tiny_mlp", num_classes=len(classes), size=16).state_dict()}, folder / "m.pth")
    (folder / "classes.txt").write_text("".join(f"{c}\n" for c in classes))
    return ["--member", f"checkpoint:path={folder}/m.pth,arch=tiny_mlp,classes_file={folder}/classes.txt,size=16"]


@pytest.fixture
def member_args(tmp_path: Path) -> list[str]:
    return tiny_member(tmp_path / "model")


@pytest.fixture
def session(tmp_path: Path):  # type: ignore[no-untyped-def]
    data = make_imagefolder(tmp_path / "data", per_class=4, corrupt=False)
    p = Project.create(tmp_path / "p.triage.db", open_dataset(data))
    ids = p.images.scorable_ids()
    probs = np.random.default_rng(0).dirichlet(np.ones(3) * 0.7, size=(3, len(ids)))
    p.queue.put_scores("pool", ids, compute_scores(probs, p.images.given_labels(ids)))
    yield ReviewSession(p)
    p.close()
