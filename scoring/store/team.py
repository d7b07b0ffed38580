"""The team room of the store: a project shared out as review packages and merged back.

A *package* is a project file of its own holding one annotator's slice of the queue (made by
``scoring.tasks.share``); its ``meta`` row ``package`` says whose it is and which project and
scoring run it came from. Merging (``scoring.tasks.merge``) brings a package's log into the
project: every step into ``team_log``, the annotator's final decision per image into
``team_decisions``, and then each touched image is *resolved*:

* an image decided here (a key pressed in the project, an adjudication) keeps that decision:
  a merge never overrides a decision already made;
* otherwise, when every annotator who decided it agrees, their decision is applied (an edit
  ``via='merge'`` naming the first of them, at the time they made it);
* when they disagree it is *disputed*: no decision is applied (one applied by an earlier merge
  is taken back), and the adjudicator's key settles it (logged ``via='adjudication'``).

A package's merge is one transaction with its ledger row (``merges``), so merging twice changes
nothing, a package merged again brings only its new edits, and a kill leaves whole packages.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from scoring.store.connection import ProjectBase
from scoring.store.edits import EditLog
from scoring.store.rows import DECISION_SQL, DISPUTED_SQL, ProjectError

PACKAGE_META = "package"


@dataclass(frozen=True)
class PackageInfo:
    """What a package says about itself (its ``meta`` row ``package``)."""

    annotator: str
    package: str  # this package's id
    project: str  # the id of the project it was shared from
    run: int | None  # the scoring run whose scores it carries
    project_path: str
    created: float
    images: int
    overlap: int  # of its images, how many another annotator also has (blind)

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: str) -> PackageInfo:
        try:
            d = json.loads(text)
            return cls(str(d["annotator"]), str(d["package"]), str(d["project"]),
                       None if d.get("run") is None else int(d["run"]), str(d.get("project_path", "")),
                       float(d.get("created", 0.0)), int(d.get("images", 0)), int(d.get("overlap", 0)))
        except (ValueError, KeyError, TypeError) as exc:
            raise ProjectError(f"{where}: its package description is damaged ({exc}); ask for the package again") from exc


@dataclass(frozen=True)
class Decision:
    """One annotator's final decision on one image, as merged."""

    image_id: int
    annotator: str
    label: int | None
    status: str  # kept, relabelled or removed
    time: float

    @property
    def category(self) -> int:
        """The decision as one value: the label, or -1 for a removal."""
        return -1 if self.status == "removed" else int(self.label if self.label is not None else -2)


@dataclass(frozen=True)
class MergeCounts:
    steps: int  # new log entries brought in
    decisions: int  # images whose annotator's final decision changed
    applied: int  # images whose decision in the project changed (applied, or taken back)
    disputed: int  # images of this package now disputed


class Team:
    """Packages, merged decisions and disputes of one project file."""

    def __init__(self, store: ProjectBase, edits: EditLog) -> None:
        self.store = store
        self.edits = edits

    # --- what this file is ----------------------------------------------------------------

    def package(self) -> PackageInfo | None:
        """This file's package description, or None for a project."""
        text = self.store._meta(PACKAGE_META)
        return None if text is None else PackageInfo.from_json(text, str(self.store.path))

    def uid(self) -> str:
        """The project's id (made on first use): a package names it, a merge checks it."""
        got = self.store._meta("uid")
        if got is None:
            with self.store._tx() as c:
                row = c.execute("SELECT value FROM meta WHERE key='uid'").fetchone()
                got = row[0] if row else uuid.uuid4().hex
                if not row:
                    self.store._set_meta(uid=got)
        return str(got)

    # --- what was merged ------------------------------------------------------------------

    def last_merged(self, package: str) -> int:
        rows = self.store._q("SELECT last_edit FROM merges WHERE package=?", (package,))
        return int(rows[0][0]) if rows else 0

    def decisions(self, image_id: int | None = None) -> list[Decision]:
        """Every merged final decision (of one image), oldest first."""
        where, params = ("WHERE image_id=?", (int(image_id),)) if image_id is not None else ("", ())
        return [Decision(int(i), a, lab, st, t) for i, a, lab, st, t in self.store._q(
            f"SELECT image_id, annotator, label, status, time FROM team_decisions {where} ORDER BY time, annotator",
            params)]

    def disputed_ids(self) -> list[int]:
        """Images with an open dispute (unreviewed here, decided differently by two annotators)."""
        return [int(r[0]) for r in self.store._q(
            f"SELECT id FROM images WHERE status='unreviewed' AND id IN ({DISPUTED_SQL}) ORDER BY id")]

    def has_team(self) -> bool:
        return bool(self.store._q("SELECT 1 FROM team_decisions LIMIT 1"))


    # --- merging --------------------------------------------------------------------------

    def merge_in(self, info: PackageInfo, path: str, steps: Sequence[Sequence[Any]],
                 finals: Iterable[tuple[int, int | None, str, float]], last_edit: int) -> MergeCounts:
        """One package's new log entries and its final state of the images they touched, in one
        transaction with the ledger. ``steps``: (edit id, image id, action, old label, new label,
        old status, new status, time); ``finals``: (image id, label, status, time of its last
        entry)."""
        with self.store._tx() as c:
            c.executemany(
                "INSERT OR IGNORE INTO team_log(package, edit_id, image_id, annotator, action, old_label, new_label, "
                "old_status, new_status, time) VALUES (?,?,?,?,?,?,?,?,?,?)",
                [(info.package, int(s[0]), int(s[1]), info.annotator, *s[2:8]) for s in steps])
            changed: list[int] = []
            for image_id, label, status, when in finals:
                before = c.execute("SELECT label, status FROM team_decisions WHERE image_id=? AND annotator=?",
                                   (int(image_id), info.annotator)).fetchone()
                if status == "unreviewed":  # undone in the package: no decision of theirs
                    if before is not None:
                        c.execute("DELETE FROM team_decisions WHERE image_id=? AND annotator=?",
                                  (int(image_id), info.annotator))
                        changed.append(int(image_id))
                    continue
                if before is not None and tuple(before) == (label, status):
                    continue
                c.execute("INSERT OR REPLACE INTO team_decisions(image_id, annotator, package, label, status, time) "
                          "VALUES (?,?,?,?,?,?)", (int(image_id), info.annotator, info.package, label, status, when))
                changed.append(int(image_id))
            applied = sum(self._resolve_in(c, i, info.annotator) for i in changed)
            c.execute("INSERT OR REPLACE INTO merges(package, annotator, path, last_edit, merged) "
                      "VALUES (?,?,?,?,strftime('%s','now'))", (info.package, info.annotator, path, int(last_edit)))
            disputed = c.execute(
                f"SELECT count(*) FROM images WHERE status='unreviewed' AND id IN ({DISPUTED_SQL}) "
                "AND id IN (SELECT image_id FROM team_decisions WHERE package=?)", (info.package,)).fetchone()[0]
        self.edits._stacks = None
        return MergeCounts(len(steps), len(changed), applied, int(disputed))

    def _resolve_in(self, c: sqlite3.Connection, image_id: int, merging: str) -> bool:
        """Put the project's decision on one image where its merged decisions say (see the module's
        rules); True when it changed. A decision taken back (a dispute, an undo in a package) is
        logged under the annotator whose package is being merged."""
        status, label, given = c.execute("SELECT status, current_label, given_label FROM images WHERE id=?",
                                          (image_id,)).fetchone()
        last = c.execute("SELECT via FROM edits WHERE image_id=? ORDER BY id DESC LIMIT 1", (image_id,)).fetchone()
        if status != "unreviewed" and (last is None or last[0] != "merge"):
            return False  # decided here: a merge never overrides it
        rows = c.execute(f"SELECT annotator, label, status, time, {DECISION_SQL} FROM team_decisions "
                         "WHERE image_id=? ORDER BY time, annotator", (image_id,)).fetchall()
        if rows and len({r[4] for r in rows}) == 1:
            who, new_label, new_status, when = rows[0][0], rows[0][1], rows[0][2], rows[0][3]
        else:  # no decision left, or a dispute: none applied
            who, new_label, new_status, when = merging, given, "unreviewed", None
        if (new_status, new_label) == (status, label):
            return False
        self.edits._apply_in(c, image_id, "merge", new_label, new_status, annotator=who, via="merge", when=when)
        return True
