"""Merge review packages back into their project, and the team's agreement.

``merge_packages`` reads each package read-only (SQLite ``mode=ro``: a merge never writes into a
package), checks it is a package of this project and of one of its scoring runs, and hands its
new log entries and its final decision per touched image to the store
(``Project.team.merge_in``: one transaction per package with its ledger row). The rules for
what lands, what is disputed and what stays are the store's (``scoring.store.team``).

``agreement`` is measured over the overlap (images two or more annotators decided): the share
of images each pair decided alike and Cohen's kappa, Fleiss' kappa for all, and each
annotator's agreement with the project's final decision, each with the number of images it
rests on. A decision is one value: the label kept or given, or "removed".
"""

from __future__ import annotations

import math
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from scoring.progress import Progress, check_cancel
from scoring.store import Project, ProjectError
from scoring.store.connection import read_only_connection
from scoring.store.migrations import APPLICATION_ID, SCHEMA_VERSION
from scoring.store.team import PACKAGE_META, MergeCounts, PackageInfo
from scoring.vocabulary import STATUSES


class MergeError(ProjectError):
    """A package that cannot be merged into this project; nothing of it was."""


@dataclass(frozen=True)
class MergeReport:
    path: Path
    annotator: str
    counts: MergeCounts

    def line(self) -> str:
        c = self.counts
        if c.steps == 0:
            return f"{self.path.name} ({self.annotator}): nothing new since its last merge"
        return (f"{self.path.name} ({self.annotator}): {c.steps} new edits, {c.decisions} decisions changed, "
                f"{c.applied} applied to the project, {c.disputed} disputed")


def _read_only(path: Path) -> sqlite3.Connection:
    conn = read_only_connection(path)  # a regular file with our header: never a FIFO, never another program's
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.Error as exc:
        conn.close()
        raise MergeError(f"{path}: cannot read it as a package ({exc}); it was not merged") from exc
    if app_id != APPLICATION_ID:
        conn.close()
        raise MergeError(f"{path} is not an Image Triage package; it was not merged")
    if version > SCHEMA_VERSION:
        conn.close()
        raise MergeError(f"{path} was written by a newer Image Triage (schema {version}); upgrade to merge it")
    return conn


def read_package(path: str | Path) -> tuple[PackageInfo, sqlite3.Connection]:
    """A package's description and a read-only connection to it (close it)."""
    p = Path(path)
    conn = _read_only(p)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key=?", (PACKAGE_META,)).fetchone()
    except sqlite3.Error as exc:
        conn.close()
        raise MergeError(f"{p}: cannot read it as a package ({exc}); it was not merged") from exc
    if row is None:
        conn.close()
        raise MergeError(f"{p} is a project, not a review package (make packages with `image-triage share`); "
                         "it was not merged")
    return PackageInfo.from_json(row[0], str(p)), conn


def merge_packages(db: str | Path | Project, packages: Sequence[str | Path],
                   progress: Callable[[str], None] | None = None) -> list[MergeReport]:
    """Merge each package in turn (each whole or not at all). A package that is refused stops
    the merge before it, naming it; the packages merged before it stay merged."""
    own = not isinstance(db, Project)
    project = Project.open(db) if not isinstance(db, Project) else db
    try:
        if project.team.package() is not None:
            raise MergeError(f"{project.path} is a review package; merge packages into the project they came from")
        out = []
        for path in packages:
            report = merge_one(project, Path(path))
            if progress:
                progress(report.line())
            out.append(report)
        return out
    finally:
        if own:
            project.close()


def merge_steps(db: str | Path, packages: Sequence[str | Path],
                cancel: threading.Event | None = None) -> Generator[Progress, None, tuple[list[MergeReport], list[str]]]:
    """The app's merge: one package at a time with progress (a cancel stops between packages,
    each merged whole); returns the reports and the agreement's lines."""
    out: list[MergeReport] = []
    with Project.open(db) as project:
        if project.team.package() is not None:
            raise MergeError(f"{project.path} is a review package; merge packages into the project they came from")
        for n, path in enumerate(packages):
            if cancel is not None:
                check_cancel(cancel)
            yield Progress("merge", n, len(packages), message=f"merging {Path(path).name}")
            out.append(merge_one(project, Path(path)))
        yield Progress("merge", len(packages), len(packages))
        return out, agreement(project).lines()


def merge_one(project: Project, path: Path) -> MergeReport:
    info, conn = read_package(path)
    try:
        _check_belongs(project, info, conn, path)
        since = project.team.last_merged(info.package)
        steps = conn.execute(
            "SELECT id, image_id, action, old_label, new_label, old_status, new_status, time FROM edits "
            "WHERE id > ? ORDER BY id", (since,)).fetchall()
        if not steps:
            return MergeReport(path, info.annotator, MergeCounts(0, 0, 0, 0))
        touched = sorted({int(s[1]) for s in steps})
        finals = conn.execute(
            "SELECT i.id, i.path, i.current_label, i.status, (SELECT max(time) FROM edits AS e WHERE e.image_id = i.id) "
            "FROM images AS i WHERE i.id IN (SELECT value FROM json_each(?))", (str(touched),)).fetchall()
    except sqlite3.Error as exc:
        raise MergeError(f"{path}: cannot read it as a package ({exc}); it was not merged") from exc
    finally:
        conn.close()
    ours = dict(project._q("SELECT id, path FROM images WHERE id IN (SELECT value FROM json_each(?))", (str(touched),)))
    k = len(project.classes)
    for image_id, rel, label, status, _t in finals:  # a package is another person's file: checked, never trusted
        if ours.get(image_id) != rel:
            raise MergeError(f"{path}: its image {rel} is not image {image_id} of {project.path}; it was not merged")
        if status not in STATUSES or not (label is None or (isinstance(label, int) and 0 <= label < k)):
            raise MergeError(f"{path} is damaged: image {rel} has the label {label!r} and the status {status!r} "
                             f"(this project has {k} classes); ask for the package again; it was not merged")
    counts = project.team.merge_in(info, str(path.absolute()), steps,
                                   [(int(i), lab, st, float(t)) for i, _rel, lab, st, t in finals],
                                   int(steps[-1][0]))
    return MergeReport(path, info.annotator, counts)


def _check_belongs(project: Project, info: PackageInfo, conn: sqlite3.Connection, path: Path) -> None:
    if info.project != project.team.uid():
        raise MergeError(f"{path} is a package of another project ({info.project_path}), not of {project.path}; "
                         "it was not merged")
    if info.run is not None:
        theirs = conn.execute("SELECT id, pool_fingerprint, started FROM runs WHERE id=?", (info.run,)).fetchone()
        ours = project._q("SELECT id, pool_fingerprint, started FROM runs WHERE id=?", (info.run,))
        if theirs is None or not ours or tuple(ours[0]) != tuple(theirs):
            raise MergeError(f"{path} carries the scores of a scoring run {project.path} does not have; it was not merged")


# --- agreement --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairAgreement:
    a: str
    b: str
    images: int
    agreement: float
    kappa: float  # Cohen's; nan when chance agreement is total (every decision one value)


@dataclass(frozen=True)
class Agreement:
    pairs: list[PairAgreement] = field(default_factory=list)
    fleiss: float = math.nan
    fleiss_images: int = 0
    with_final: dict[str, tuple[int, float]] = field(default_factory=dict)  # annotator: (images, agreement)
    overlap: int = 0  # images two or more annotators decided
    disputed: int = 0  # of those, still open

    def lines(self) -> list[str]:
        if self.overlap == 0:
            return ["agreement: no image was decided by two annotators yet"]
        out = [f"agreement over {self.overlap} images decided by two or more annotators ({self.disputed} still disputed):"]
        out += [f"  {p.a} and {p.b}: {p.agreement:.0%} alike over {p.images} images, Cohen's kappa {_fmt(p.kappa)}"
                for p in self.pairs]
        if self.fleiss_images:
            out.append(f"  all: Fleiss' kappa {_fmt(self.fleiss)} over {self.fleiss_images} images")
        out += [f"  {a} agrees with the final decision on {share:.0%} of {n} images"
                for a, (n, share) in sorted(self.with_final.items())]
        return out


def _fmt(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.2f}"


def cohen_kappa(x: Sequence[int], y: Sequence[int]) -> float:
    n = len(x)
    if n == 0:
        return math.nan
    po = sum(a == b for a, b in zip(x, y, strict=True)) / n
    cx, cy = Counter(x), Counter(y)
    pe = sum(cx[k] * cy[k] for k in cx) / (n * n)
    return math.nan if pe >= 1.0 else (po - pe) / (1.0 - pe)


def fleiss_kappa(items: Sequence[Sequence[int]]) -> float:
    """Fleiss' kappa over items rated by the same number of raters each (any raters)."""
    if not items:
        return math.nan
    m = len(items[0])
    cats = sorted({c for it in items for c in it})
    counts = [Counter(it) for it in items]
    p_i = [(sum(v * v for v in c.values()) - m) / (m * (m - 1)) for c in counts]
    p_bar = sum(p_i) / len(items)
    p_k = [sum(c[k] for c in counts) / (len(items) * m) for k in cats]
    pe = sum(p * p for p in p_k)
    return math.nan if pe >= 1.0 else (p_bar - pe) / (1.0 - pe)


def agreement(project: Project) -> Agreement:
    decisions = project.team.decisions()
    by_image: dict[int, dict[str, int]] = {}
    for d in decisions:
        by_image.setdefault(d.image_id, {})[d.annotator] = d.category
    shared = {i: v for i, v in by_image.items() if len(v) > 1}
    if not shared:
        return Agreement()
    names = sorted({a for v in shared.values() for a in v})
    pairs = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            both = [(v[a], v[b]) for v in shared.values() if a in v and b in v]
            if both:
                xs, ys = [p[0] for p in both], [p[1] for p in both]
                pairs.append(PairAgreement(a, b, len(both), sum(p == q for p, q in both) / len(both),
                                           cohen_kappa(xs, ys)))
    sizes = Counter(len(v) for v in shared.values())
    m = max(sizes, key=lambda k: (sizes[k], -k))
    rated = [list(v.values()) for v in shared.values() if len(v) == m]
    finals = {int(i): (-1 if st == "removed" else lab) for i, lab, st in project.images.label_states(list(shared))
              if st != "unreviewed"}
    with_final: dict[str, tuple[int, float]] = {}
    for a in names:
        mine = [(v[a], finals[i]) for i, v in shared.items() if a in v and i in finals]
        if mine:
            with_final[a] = (len(mine), sum(p == q for p, q in mine) / len(mine))
    disputed = len(set(project.team.disputed_ids()) & set(shared))
    return Agreement(pairs, fleiss_kappa(rated), len(rated), with_final, len(shared), disputed)
