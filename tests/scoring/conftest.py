"""Fixtures shared by the scoring tests: a tiny checkpoint member for the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from scoring.pool.models.registry import get_model


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
