"""A plugin package as someone else would write it (tests/scoring/test_plugins.py installs it
through an entry points fixture): a score, a member kind with its own fit time and refit rule,
an engine with one option, and a dataset format that it detects, reads and writes (one entry). Image Triage's own code names none of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from scoring.engine.engines import LocalEngine
from scoring.engine.registry import EngineKind
from scoring.io.datasets import Dataset, ImageRecord
from scoring.io.formats import ExportRow, Format
from scoring.io.safeio import read_text
from scoring.pool.kinds import MemberKind
from scoring.pool.schema import SCRATCH_KEYS
from scoring.pool.scratch import scratch_members
from scoring.vocabulary import PoolPass, Score

ENGINES_MADE: list[str] = []  # the option each plugin engine was made with


def _gap(p: PoolPass) -> np.ndarray:
    top2 = np.sort(p.mean, axis=1)[:, -2:]
    return 1.0 - (top2[:, 1] - top2[:, 0])


GAP = Score("plugin_gap", "Top-two gap (a plugin's)", True, "difficulty", ".4f", compute=_gap)


def _build(spec: dict[str, Any], classes: list[str]) -> list[Any]:
    members = scratch_members(spec, classes)
    for m in members:
        m.kind = "plugin_mlp"
    return members


KIND = MemberKind("plugin_mlp", "a tiny network that refits like a head (a plugin's kind)", SCRATCH_KEYS, _build,
                  refit="features", fit_seconds=lambda m, facts: 7.0)


def _engine(device: str, runtime: str, tag: str = "") -> LocalEngine:
    ENGINES_MADE.append(str(tag))
    return LocalEngine(runtime=runtime)


def engines() -> list[EngineKind]:
    """An entry point may name a function returning its entries."""
    return [EngineKind("plugin_engine", "this machine, with a tag (a plugin's engine)", _engine, {"tag": "a label"})]


def _write_lines(folder: Path, classes: list[str], rows: list[ExportRow], source: Path | None) -> None:
    (folder / "labels.txt").write_text("".join(f"{r.path} {r.label}\n" for r in rows))


def _read_lines(root: Path, follow_symlinks: bool) -> Dataset:
    rows = [line.rsplit(" ", 1) for line in read_text(root / "labels.txt", what="labels").splitlines() if line.strip()]
    records = [ImageRecord(rel, label) for rel, label in rows]
    return Dataset(root=root, layout="plugin_lines", source=root, classes=sorted({r.label for r in records}),
                   records=records)


LINES = Format("plugin_lines", "pics/ and labels.txt (a plugin's format)", _read_lines,
               lambda p, f: (p / "labels.txt").is_file() and (p / "pics").is_dir(), _write_lines,
               "pics/<n>-<file> and labels.txt", images_under="pics", by_class=False)
