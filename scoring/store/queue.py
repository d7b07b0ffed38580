"""The queue room of the store: scores of the active pool, the filtered, keyset-paged review queue, counts, plot data."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from scoring.store.connection import ProjectBase
from scoring.store.dupes import CONFLICT_GROUPS_SQL
from scoring.store.issues import ISSUE_IDS_SQL
from scoring.store.rows import (
    DISPUTED_SQL,
    IMAGE_COLS,
    ProjectValueError,
    QueueFilter,
    QueueRow,
    queue_cols,
)
from scoring.vocabulary import (
    DIFFICULTY_SORT,
    STATUSES,
    hardest_first,
    image_score_columns,
    is_score,
    score_columns,
    scores,
    sort_keys,
)

log = logging.getLogger(__name__)


def none_if_nan(x: Any) -> Any:
    if x is None:
        return None
    if isinstance(x, float | np.floating):
        return None if math.isnan(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


def _plain(column: np.ndarray) -> list[Any]:
    """A column of scores as Python values, NaN as None: :func:`none_if_nan` of each."""
    if column.dtype.kind == "f":
        return [None if v != v else v for v in column.tolist()]
    if column.dtype.kind in "iub":
        return column.tolist()
    return [none_if_nan(v) for v in column.tolist()]


class Queue:
    """The active pool's scores, the filtered keyset-paged review queue, counts, plot data."""

    def __init__(self, store: ProjectBase) -> None:
        self.store = store

    # --- scores and the queue ------------------------------------------------------------

    def put_scores(self, pool_fp: str, ids: Sequence[int] | np.ndarray, scores: dict[str, np.ndarray]) -> None:
        columns = image_score_columns()
        # each column to Python values in one tolist, not one numpy scalar at a time (issue 35:
        # 0.04 s of a 1.4 s run on 2,000 images); the same numbers as none_if_nan gives
        values = [_plain(np.asarray(scores[c])) for c in columns]
        c_idx, c_val = np.asarray(scores["top_c_idx"]).tolist(), np.asarray(scores["top_c_val"], dtype=np.float64).tolist()
        x_idx, x_val = np.asarray(scores["top_x_idx"]).tolist(), np.asarray(scores["top_x_val"]).tolist()
        rows = []
        for n, i in enumerate(np.asarray(ids).tolist()):
            top_c = [[a, round(b, 4)] for a, b in zip(c_idx[n], c_val[n], strict=True)]
            top_x = [[a, int(b)] for a, b in zip(x_idx[n], x_val[n], strict=True) if b > 0]
            rows.append((*(v[n] for v in values), json.dumps(top_c), json.dumps(top_x), int(i)))
        sets = ", ".join(f"{c}=?" for c in (*columns, "top_c", "top_x"))
        with self.store._tx() as c:
            c.executemany(f"UPDATE images SET {sets} WHERE id=?", rows)
            self.store._set_meta(scored_pool=pool_fp, scores_written=str(time.time_ns()))

    def scores_stamp(self) -> str:
        """Changes each time the scores are written (a scoring run or a re-rank): what a result
        computed from them is keyed by."""
        return self.store._meta("scores_written") or ""

    def put_label_evidence(self, ids: Sequence[int] | np.ndarray, agreement: np.ndarray, issue: np.ndarray,
                           weight: float, noise: dict[str, float] | None = None) -> None:
        """The dataset's label scores (scoring.evidence.label_evidence), how many members' worth the
        neighbours' votes counted for (0: they classify worse than the pool, so left out), and the
        noise model label_issue was computed under (NoiseModel.as_dict)."""
        rows = [(none_if_nan(a), none_if_nan(b), int(i)) for i, a, b in zip(ids, agreement, issue, strict=True)]
        with self.store._tx() as c:
            c.executemany("UPDATE images SET neighbour_agreement=?, label_issue=? WHERE id=?", rows)
            self.store._set_meta(neighbour_weight=str(weight), label_noise=json.dumps(noise or {}))

    def label_noise(self) -> dict[str, float]:
        """The noise model of the last label scores ({"look_alike", "rate", "temperature"}, and
        "evidence" and "corrections" where the scoring stored them), each a finite number in its range; {} before one was stored or where the file holds anything else
        (a project file is someone else's input)."""
        try:
            raw = json.loads(self.store._meta("label_noise") or "{}")
        except ValueError:
            return {}
        if not isinstance(raw, dict):
            return {}
        out: dict[str, float] = {}
        for key, hi in (("look_alike", 1.0), ("rate", 1.0), ("temperature", 100.0), ("evidence", 1e12),
                        ("corrections", 1e12)):
            v = raw.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= float(v) <= hi:
                out[key] = float(v)
            elif key in raw and key in ("evidence", "corrections"):  # newer keys, optional: present means valid
                return {}
        return out if {"look_alike", "rate", "temperature"} <= set(out) else {}

    def neighbour_weight(self) -> float | None:
        """How many members' worth the neighbours' votes counted for in label_issue (None before
        the first scoring with a neighbour embedding)."""
        got = self.store._meta("neighbour_weight")
        return None if got is None else float(got)

    def _where(self, filt: QueueFilter | None) -> tuple[list[str], list[Any]]:
        f = filt or QueueFilter()
        where: list[str] = ["error IS NULL"]
        params: list[Any] = []
        if f.given_label is not None:
            where.append("given_label=?")
            params.append(f.given_label)
        if f.consensus is not None:
            where.append("consensus=?")
            params.append(f.consensus)
        if f.reason is not None:
            where.append("reason=?")
            params.append(f.reason)
        if f.status is not None:
            if f.status not in STATUSES:
                raise ProjectValueError(f"unknown status {f.status!r}; use one of {STATUSES}")
            where.append("status=?")
            params.append(f.status)
        if f.score_min is not None or f.score_max is not None:
            if not is_score(f.score_key):
                raise ProjectValueError(f"cannot filter on {f.score_key!r}")
            if f.score_min is not None:
                where.append(f"{f.score_key}>=?")
                params.append(f.score_min)
            if f.score_max is not None:
                where.append(f"{f.score_key}<=?")
                params.append(f.score_max)
        if f.disagrees:
            where.append("consensus IS NOT NULL AND current_label IS NOT NULL AND consensus != current_label")
        if f.search:
            where.append("path LIKE ? ESCAPE '\\'")
            params.append("%" + f.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        if f.flagged is True:
            where.append("flag IS NOT NULL")
        elif f.flagged is False:
            where.append("flag IS NULL")
        if f.duplicate:
            where.append("id IN (SELECT image_id FROM duplicates)")
        if f.issue is not None:
            where.append(f"id IN ({ISSUE_IDS_SQL})")
            params.append(f.issue)
        if f.conflict:
            where.append(f"id IN (SELECT image_id FROM duplicates WHERE group_id IN ({CONFLICT_GROUPS_SQL}))")
        if f.disputed:
            where.append(f"status='unreviewed' AND id IN ({DISPUTED_SQL})")
        return where, params

    def page(
        self,
        filt: QueueFilter | None = None,
        sort: str = DIFFICULTY_SORT,
        descending: bool | None = None,
        limit: int = 200,
        after: tuple[Any, int] | None = None,
    ) -> list[QueueRow]:
        """A page of the review queue, hardest first by default; unscored images come last.

        Keyset paging: ``after`` is ``(sort value, id)`` of the previous page's last row.
        """
        if sort not in sort_keys():
            raise ProjectValueError(f"unknown sort key {sort!r}; use one of {', '.join(sort_keys())}")
        desc = hardest_first(sort) if descending is None else descending
        where, params = self._where(filt)
        cols = ", ".join(queue_cols())
        order = f"{sort} {'DESC' if desc else 'ASC'}, id ASC" if sort != "id" else "id ASC"
        rows: list[tuple[Any, ...]] = []
        if after is None or after[0] is not None:
            w, p = [*where, f"{sort} IS NOT NULL"], list(params)
            if after is not None:
                op = "<" if desc else ">"
                w.append(f"({sort} {op} ? OR ({sort} = ? AND id > ?))")
                p += [after[0], after[0], after[1]]
            rows = self.store._q(f"SELECT {cols} FROM images WHERE {' AND '.join(w)} ORDER BY {order} LIMIT ?", (*p, limit))
        if len(rows) < limit and sort not in ("id", "path"):
            w, p = [*where, f"{sort} IS NULL"], list(params)
            if after is not None and after[0] is None:
                w.append("id > ?")
                p.append(after[1])
            rows += self.store._q(f"SELECT {cols} FROM images WHERE {' AND '.join(w)} ORDER BY id LIMIT ?", (*p, limit - len(rows)))
        return [self._queue_row(r) for r in rows]

    def ranked_ids(self, filt: QueueFilter | None = None, sort: str = DIFFICULTY_SORT) -> np.ndarray:
        """Every id of the queue in its order (hardest first, unscored last): one indexed scan."""
        if sort not in sort_keys():
            raise ProjectValueError(f"unknown sort key {sort!r}; use one of {', '.join(sort_keys())}")
        where, params = self._where(filt)
        desc = "DESC" if hardest_first(sort) else "ASC"
        order = "id ASC" if sort == "id" else f"{sort} IS NULL, {sort} {desc}, id ASC"
        rows = self.store._q(f"SELECT id FROM images WHERE {' AND '.join(where)} ORDER BY {order}", params)
        return np.array([r[0] for r in rows], dtype=np.int64)

    @staticmethod
    def _queue_row(r: Sequence[Any]) -> QueueRow:
        """A row selected as :func:`queue_cols` lists them."""
        k = len(IMAGE_COLS)
        names = score_columns()
        vals = dict(zip(names, r[k:k + len(names)], strict=True))
        n = k + len(names)
        top_c = [tuple(x) for x in json.loads(r[n])] if r[n] else []
        top_x = [tuple(x) for x in json.loads(r[n + 1])] if r[n + 1] else []
        consensus, reason = vals.pop("consensus"), vals.pop("reason")
        return QueueRow(**dict(zip(IMAGE_COLS, r[:k], strict=True)), consensus=consensus, reason=reason,
                        scores=vals, top_c=top_c, top_x=top_x)

    def queue_row(self, image_id: int) -> QueueRow:
        rows = self.store._q(f"SELECT {', '.join(queue_cols())} FROM images WHERE id=?", (int(image_id),))
        if not rows:
            raise ProjectValueError(f"no image with id {image_id} in {self.store.path}")
        return self._queue_row(rows[0])

    def self_confidences(self) -> list[tuple[int, float, float, str]]:
        """(id, self-confidence, normalised margin, status) of every readable image with a score, by id."""
        return [(int(a), float(b), float("nan") if m is None else float(m), str(c)) for a, b, m, c in self.store._q(
            "SELECT id, self_confidence, margin, status FROM images WHERE error IS NULL AND self_confidence IS NOT NULL "
            "ORDER BY id")]

    def queue_count(self, filt: QueueFilter | None = None) -> int:
        where, params = self._where(filt)
        if where == ["error IS NULL"]:  # no filter: every readable image, from the counts table
            return self.stats()["total"]
        return int(self.store._q(f"SELECT count(*) FROM images WHERE {' AND '.join(where)}", params)[0][0])

    def score_values(self, key: str = DIFFICULTY_SORT) -> np.ndarray:
        if not is_score(key):
            raise ProjectValueError(f"unknown score {key!r}")
        return np.array([r[0] for r in self.store._q(f"SELECT {key} FROM images WHERE {key} IS NOT NULL AND error IS NULL")], dtype=np.float64)

    def scored_keys(self) -> set[str]:
        """The scores at least one readable image has (each column's index answers at once): a
        sort or filter on a score no image has (annotators' agreement without annotators) is
        not offered."""
        return {s.key for s in scores()
                if self.store._q(f"SELECT 1 FROM images WHERE {s.key} IS NOT NULL AND error IS NULL LIMIT 1")}

    def class_difficulty(self, key: str = DIFFICULTY_SORT) -> np.ndarray:
        if not is_score(key):
            raise ProjectValueError(f"unknown score {key!r}")
        out = np.full(len(self.store.classes), np.nan)
        for label, mean in self.store._q(f"SELECT given_label, avg({key}) FROM images WHERE given_label IS NOT NULL AND {key} IS NOT NULL GROUP BY given_label"):
            out[label] = mean
        return out

    def confusion_matrix(self) -> np.ndarray:
        k = len(self.store.classes)
        out = np.zeros((k, k), dtype=np.int64)
        for g, c, n in self.store._q("SELECT given_label, consensus, count(*) FROM images WHERE given_label IS NOT NULL AND consensus IS NOT NULL GROUP BY given_label, consensus"):
            out[g, c] = n
        return out

    def stats(self) -> dict[str, int]:
        """Counts per status (readable images), ``total``, ``reviewed``, ``errors``, ``flagged``:
        read from the trigger-kept counts table, the same cost at any size."""
        counts = {k: int(n) for k, n in self.store._q("SELECT key, n FROM counts")}
        out = {s: counts.get(s, 0) for s in STATUSES}
        out["total"] = sum(out.values())
        out["reviewed"] = out["total"] - out["unreviewed"]
        out["errors"] = counts.get("errors", 0)
        out["flagged"] = counts.get("flagged", 0)
        return out
