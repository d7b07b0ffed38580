"""The runs room of the store: pool members, scoring runs (and which were killed), the active pool."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class RunConfig:
    """What a scoring run was asked to do, and what it noted as it went: stored as JSON in the
    runs table and read back as hostile input (a damaged or hand-edited project): a key of the
    wrong type is dropped with a warning naming the project and run, and the run is still listed.
    No member in it is ever trusted (trust is the user's word now: scoring.trust)."""

    pool: tuple[Mapping[str, Any], ...] = ()  # the member specs, as tables
    pool_fingerprint: str = ""
    member_fingerprints: tuple[str, ...] = ()
    batch_size: int | None = None
    workers: int | None = None
    engine: str = ""
    runtime: str = ""  # what was asked: auto, torch, onnx, openvino
    runtimes: Mapping[str, str] = field(default_factory=dict)  # encoder -> where it ran
    profile: Mapping[str, float] = field(default_factory=dict)  # seconds per stage
    estimate_s: tuple[float, float] | None = None  # the time said before the run: from ... to ... seconds
    measured_s: float | None = None  # the measured part of that estimate
    actual_s: float | None = None

    def to_json(self) -> str:
        out = {k: v for k, v in dataclasses.asdict(self).items() if v not in (None, "", (), {})}
        return json.dumps(out | {"pool": [without_trust(dict(m)) for m in self.pool]}, default=str)

    @classmethod
    def from_json(cls, text: str | None, where: str) -> RunConfig:
        try:
            raw = json.loads(text or "{}")
        except ValueError:
            log.warning("%s has an unreadable config; it is ignored", where)
            return cls()
        if not isinstance(raw, dict):
            log.warning("%s has a config that is not a table; it is ignored", where)
            return cls()
        kept: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name in raw:
                value = _typed(f.name, raw[f.name])
                if value is None:
                    log.warning("%s: its config's %r is not what a run writes; it is ignored", where, f.name)
                else:
                    kept[f.name] = value
        return cls(**kept)

    def noted(self, **info: Any) -> RunConfig:
        """A copy with what the run noted added (runtimes, profile, estimate_s, measured_s, actual_s)."""
        typed = {k: _typed(k, v) for k, v in info.items()}
        wrong = sorted(k for k, v in typed.items() if v is None and info[k] is not None)
        if wrong:
            raise TypeError(f"a run's config: {wrong} are not of the type a run writes")
        return dataclasses.replace(self, **typed)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _typed(key: str, v: Any) -> Any:
    """A stored config value in its field's type, or None when it is not of it."""
    if key == "pool":
        return tuple(without_trust(m) for m in v) if isinstance(v, list | tuple) and all(isinstance(m, dict) for m in v) else None
    if key == "member_fingerprints":
        return tuple(v) if isinstance(v, list | tuple) and all(isinstance(x, str) for x in v) else None
    if key in ("batch_size", "workers"):
        return v if isinstance(v, int) and not isinstance(v, bool) else None
    if key == "estimate_s":
        return (float(v[0]), float(v[1])) if isinstance(v, list | tuple) and len(v) == 2 and all(map(_is_num, v)) else None
    if key in ("measured_s", "actual_s"):
        return float(v) if _is_num(v) else None
    if key == "runtimes":
        return dict(v) if isinstance(v, dict) and all(isinstance(x, str) for x in v.values()) else None
    if key == "profile":
        return dict(v) if isinstance(v, dict) and all(_is_num(x) for x in v.values()) else None
    return v if isinstance(v, str) else None


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

    def start_run(self, pool: PoolLike, config: RunConfig, device: str) -> int:
        with self.store._tx() as c:
            self._mark_dead_runs(c)
            cur = c.execute(
                "INSERT INTO runs(pool_fingerprint, config, device, started, status, pid, host) VALUES (?,?,?,?,?,?,?)",
                (pool.fingerprint, config.to_json(), device, time.time(), "running", os.getpid(), socket.gethostname()),
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
        """Add ``info`` to run ``run_id``'s record (:meth:`RunConfig.noted`: the runtime each
        encoder used, the time estimate and the stage times), for ``history()`` and the next estimate."""
        with self.store._tx() as c:
            row = c.execute("SELECT config FROM runs WHERE id=?", (run_id,)).fetchone()
            config = RunConfig.from_json(row[0] if row else None, f"{self.store.path} run {run_id}").noted(**info)
            c.execute("UPDATE runs SET config=? WHERE id=?", (config.to_json(), run_id))

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
            d["config"] = RunConfig.from_json(d["config"], f"{self.store.path} run {d['id']}")  # listed even if damaged
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
            if r["config"].pool:
                return [dict(m) for m in r["config"].pool]
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
        wanted = run["config"].member_fingerprints
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

