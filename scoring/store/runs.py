"""The runs room of the store: pool members, scoring runs (and which were killed), the active pool."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Generator, Iterator, Sequence
from typing import Any, Protocol

from scoring.io.safewrite import process_alive
from scoring.store.connection import ProjectBase
from scoring.store.rows import ProjectLockedError
from scoring.trust import without_trust

log = logging.getLogger(__name__)


class MemberLike(Protocol):
    """What the store needs of a pool member (scoring.pool.base.Member satisfies it)."""

    @property
    def fingerprint(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def classes(self) -> list[str]: ...

    @property
    def spec(self) -> dict[str, Any]: ...


class PoolLike(Protocol):
    """What the store needs of a pool (scoring.pool.base.Pool satisfies it)."""

    @property
    def members(self) -> Sequence[MemberLike]: ...

    @property
    def fingerprint(self) -> str: ...


class Runs:
    """The pool's members and the scoring runs (one writer at a time, crashes noticed)."""

    def __init__(self, store: ProjectBase) -> None:
        self.store = store

    # --- members and runs ----------------------------------------------------------------

    def save_members(self, pool: PoolLike) -> None:
        with self.store._tx() as c:
            c.executemany(
                "INSERT OR REPLACE INTO members(fingerprint, name, kind, classes, spec, created) VALUES (?,?,?,?,?,?)",
                [
                    (m.fingerprint, m.name, m.kind, json.dumps(list(m.classes)), json.dumps(without_trust(m.spec), default=str), time.time())
                    for m in pool.members
                ],
            )

    def members(self) -> list[dict[str, Any]]:
        return [
            {"fingerprint": r[0], "name": r[1], "kind": r[2], "classes": json.loads(r[3]), "spec": without_trust(json.loads(r[4]))}
            for r in self.store._q("SELECT fingerprint, name, kind, classes, spec FROM members ORDER BY created")
        ]

    def start_run(self, pool: PoolLike, config: dict[str, Any], device: str) -> int:
        with self.store._tx() as c:
            self._mark_dead_runs(c)
            cur = c.execute(
                "INSERT INTO runs(pool_fingerprint, config, device, started, status, pid, host) VALUES (?,?,?,?,?,?,?)",
                (pool.fingerprint, json.dumps(_untrusted(config), default=str), device, time.time(), "running", os.getpid(), socket.gethostname()),
            )
            return int(cur.lastrowid or 0)

    @contextlib.contextmanager
    def scoring_writer(self, what: str) -> Iterator[WriterHold]:
        """Hold the project's one scoring writer for ``what`` (a run, a re-rank): scores of two
        pools must never interleave. Another live holder makes this a one-line refusal that names
        ``image-triage unlock``; a holder that died is taken over: on this host when its process
        is gone, on another host (a cluster node, a container) when its heartbeat (written by
        :meth:`WriterHold.beat` at least every ``BEAT_S``) is older than ``STALE_S``."""
        token = f"{os.getpid()}:{uuid.uuid4().hex}"
        with self.store._tx():
            other = self.writer()
            if other is not None and writer_alive(other):
                raise ProjectLockedError(
                    f"{self.store.path} is being scored by another {other.get('what', 'run')} (process "
                    f"{other.get('pid')} on {other.get('host')}); wait for it to finish or stop it. If it is gone "
                    f"(a machine that went down), run: image-triage unlock --db {self.store.path}"
                )
            self.store._set_meta(scoring_writer=json.dumps(
                {"pid": os.getpid(), "host": socket.gethostname(), "what": what, "token": token, "beat": time.time()}))
        try:
            yield WriterHold(self, token)
        finally:
            with contextlib.suppress(Exception), self.store._tx():
                held = self.writer()
                if held and held.get("token") == token:
                    self.store.conn.execute("DELETE FROM meta WHERE key='scoring_writer'")

    def writer(self) -> dict[str, Any] | None:
        """The scoring writer's marker (pid, host, what, beat), or None when no one holds it."""
        held = self.store._meta("scoring_writer")
        if not held:
            return None
        try:
            other = json.loads(held)
        except ValueError:
            other = None
        return other if isinstance(other, dict) else {"what": "unreadable marker"}

    def unlock(self) -> dict[str, Any] | None:
        """Clear the scoring writer's marker (``image-triage unlock``), returning what it said."""
        with self.store._tx() as c:
            other = self.writer()
            c.execute("DELETE FROM meta WHERE key='scoring_writer'")
        return other

    def _mark_dead_runs(self, c: sqlite3.Connection) -> None:
        for run_id, pid, host in c.execute("SELECT id, pid, host FROM runs WHERE status='running'").fetchall():
            if not _alive(pid, host):
                c.execute("UPDATE runs SET status='interrupted' WHERE id=?", (run_id,))

    def finish_run(self, run_id: int, status: str, error: str | None = None) -> None:
        with self.store._tx() as c:
            c.execute("UPDATE runs SET status=?, ended=?, error=? WHERE id=?", (status, time.time(), error, run_id))
            if status == "done":
                fp = c.execute("SELECT pool_fingerprint FROM runs WHERE id=?", (run_id,)).fetchone()[0]
                self.store._set_meta(active_pool=fp)

    def note_run(self, run_id: int, **info: Any) -> None:
        """Add ``info`` to run ``run_id``'s record (the runtime each encoder used, the time
        estimate and the stage times), for ``runs()`` and the next estimate."""
        with self.store._tx() as c:
            row = c.execute("SELECT config FROM runs WHERE id=?", (run_id,)).fetchone()
            try:
                config = json.loads(row[0] or "{}") if row else {}
            except ValueError:
                config = {}
            config = {**(config if isinstance(config, dict) else {}), **info}
            c.execute("UPDATE runs SET config=? WHERE id=?", (json.dumps(_untrusted(config), default=str), run_id))

    def mark_interrupted(self) -> None:
        """The newest run was stopped by closing the app, not by the user's Cancel: it counts as
        interrupted, so reopening the project offers to resume it."""
        with self.store._tx() as c:
            c.execute("UPDATE runs SET status='interrupted' WHERE id=(SELECT max(id) FROM runs) "
                      "AND status IN ('cancelled', 'running')")

    def history(self) -> list[dict[str, Any]]:
        cols = ["id", "pool_fingerprint", "config", "device", "started", "ended", "status", "error", "pid", "host"]
        out = []
        for r in self.store._q(f"SELECT {', '.join(cols)} FROM runs ORDER BY id"):
            d = dict(zip(cols, r, strict=True))
            try:
                config = json.loads(d["config"] or "{}")
            except ValueError:  # a hand-edited or damaged project: the run is listed, its config is not used
                log.warning("%s: run %s has an unreadable config; it is ignored", self.store.path, d["id"])
                config = {}
            d["config"] = _untrusted(config) if isinstance(config, dict) else {}
            out.append(d)
        return out

    def interrupted_run(self) -> dict[str, Any] | None:
        """The newest run that stopped without finishing (crash, kill), if nothing ran since."""
        runs = self.history()
        if not runs:
            return None
        last = runs[-1]
        if last["status"] == "interrupted" or (last["status"] == "running" and not _alive(last["pid"], last["host"])):
            return last
        return None

    def last_pool_spec(self) -> list[dict[str, Any]] | None:
        for r in reversed(self.history()):
            spec = r["config"].get("pool")
            if spec:
                return list(spec)
        return None

    def active_pool(self) -> str | None:
        return self.store._meta("active_pool")

    def active_run(self) -> dict[str, Any] | None:
        """The newest run of the pool whose scores the queue shows (its config holds the pool's
        spec and members); None before any scoring. The one lookup of it."""
        fp = self.active_pool()
        if fp is None:
            return None
        return next((r for r in reversed(self.history()) if r["pool_fingerprint"] == fp), None)

    def active_members(self) -> list[dict[str, Any]]:
        """Members of the pool whose scores the queue shows, in pool order."""
        run = self.active_run()
        if run is None:
            return []
        wanted = run["config"].get("member_fingerprints") or []
        by_fp = {m["fingerprint"]: m for m in self.members()}
        return [by_fp[f] for f in wanted if f in by_fp]


BEAT_S = 60.0  # a scoring writer rewrites its heartbeat at least this often while it yields progress
STALE_S = 15 * 60.0  # another host's writer whose heartbeat is older than this has died


def writer_alive(marker: dict[str, Any]) -> bool:
    """Whether a scoring writer's marker belongs to a live process: on this host, by its pid; on
    another, by its heartbeat (a marker without one, from an older version, cannot be alive)."""
    pid, host = marker.get("pid"), marker.get("host")
    if host == socket.gethostname():
        return process_alive(pid, host)
    beat = marker.get("beat")
    return isinstance(beat, (int, float)) and time.time() - float(beat) < STALE_S


class WriterHold:
    """The held scoring writer: ``beat()`` keeps its heartbeat fresh (cheap when called often)."""

    def __init__(self, runs: Runs, token: str) -> None:
        self.runs, self.token, self.last = runs, token, time.monotonic()

    def beat(self) -> None:
        if time.monotonic() - self.last < BEAT_S:
            return
        self.last = time.monotonic()
        with contextlib.suppress(Exception), self.runs.store._tx():
            held = self.runs.writer()
            if held and held.get("token") == self.token:
                self.runs.store._set_meta(scoring_writer=json.dumps({**held, "beat": time.time()}))

    def beating(self, gen: Generator[Any, None, Any]) -> Generator[Any, None, Any]:
        """``gen``'s items, with a heartbeat between them; returns what ``gen`` returns."""
        try:
            while True:
                try:
                    item = next(gen)
                except StopIteration as stop:
                    return stop.value
                self.beat()
                yield item
        finally:
            gen.close()


def _alive(pid: int | None, host: str | None) -> bool:
    """Whether the process that started a run is still running (on this host)."""
    return process_alive(pid, host)


def _untrusted(config: dict[str, Any]) -> dict[str, Any]:
    """A run's config with no member trusted: trust is the user's word now, never a stored one."""
    pool = config.get("pool")
    if not isinstance(pool, list):
        return config
    return {**config, "pool": [without_trust(m) if isinstance(m, dict) else m for m in pool]}


