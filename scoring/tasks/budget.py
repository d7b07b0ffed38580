"""A time budget for the automatic pool (issue 34): "I have ten minutes".

The pools a budget can choose are :func:`scoring.tasks.autopool.budget_tiers`, cheapest first.
Every member of every tier is timed here once (scoring.tasks.estimate_time: the same
measurement the automatic pool's estimate makes, so one probe per network), each tier's time is
the sum of its own parts, corrected by this machine's earlier runs, and the budget takes the
richest tier whose range ends inside it. When even the cheapest does not fit, the cheapest is
used and the reason says so: a run that is too long is still a result, no run is none.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Generator, Sequence
from typing import Any

import torch

from scoring.errors import ImageTriageError
from scoring.io.datasets import Dataset
from scoring.pool.member_spec import MemberSpec
from scoring.progress import Cancelled, Progress
from scoring.tasks.autopool import Choice, Facts, Tier, budget_tiers, choose, survey
from scoring.vocabulary import clock as _fmt

UNCLOCKED = 3.0  # seconds of a command its clock cannot see: the interpreter's start (0.7 s here) and exit
# (a 3m budget on 10,000 MNIST digits ended 1.5 s late with the duplicate search inside the budget)
_UNITS = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(h|min|m|s)")


def parse_budget(text: str) -> float:
    """Seconds from "90s", "3m", "10 min", "1h", "1h30m"; a bare number or anything else is
    refused with the forms that work (a bare 10 could be seconds or minutes)."""
    t = str(text).strip().lower()
    parts = _PART.findall(t)
    if not parts or _PART.sub("", t).strip():
        raise ImageTriageError(f"time budget {text!r}: give a time with its unit, for example 90s, 3m, 10m, 1h or 1h30m")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ImageTriageError(f"time budget {text!r}: give a time above zero, for example 3m")
    return seconds


def fmt_budget(seconds: float) -> str:
    s = int(round(seconds))
    h, m, sec = s // 3600, s % 3600 // 60, s % 60
    return " ".join(f"{v}{u}" for v, u in ((h, "h"), (m, "m"), (sec, "s")) if v) or "0s"


def tier_parts(parts: dict[str, float], specs: Sequence[MemberSpec], classes: Sequence[str]) -> dict[str, float]:
    """The stages of ``parts`` (measured for a larger pool) that a pool of ``specs`` runs:
    decoding and the runtime's set-up, its own encoders' forwards and its own members' fits."""
    from scoring.pool.spec import build_pool

    pool = build_pool([dict(s) for s in specs], list(classes) or ["a", "b"])
    keep = {"decode", "runtime"} | {f"forward {e.description or e.key}" for e in pool.encoders()}
    keep |= {f"fit {m.name}" for m in pool.members}
    return {k: v for k, v in parts.items() if k in keep}


def budget_pool(dataset: Dataset, budget: float, device: torch.device, thorough: bool = False, runtime: str = "auto",
                history: list[dict[str, Any]] | None = None, spent: float = 0.0) -> Choice:
    """:func:`scoring.tasks.autopool.auto_pool` for the time a user has: the dataset surveyed,
    then :func:`choose_for_budget`; ``spent``: seconds of the budget already gone (the command's
    start), the survey's own time added."""
    t0 = time.perf_counter()
    facts = survey(dataset, device, thorough)
    return choose_for_budget(facts, budget, device, runtime, history, spent + time.perf_counter() - t0)


def choose_for_budget(facts: Facts, budget: float, device: torch.device, runtime: str = "auto",
                      history: list[dict[str, Any]] | None = None, spent: float = 0.0) -> Choice:
    """The richest tier whose estimated range ends within ``budget`` seconds less those ``spent``
    already and those the timing here takes (the cheapest when none does), with the reasons: the
    default pool's rules where it is the default, and a line on the budget naming the next richer
    pool and its time (a 3m budget's command on 10,000 MNIST digits took 183 s, 130 s of it scoring,
    before the time around the scoring was counted)."""
    from scoring.tasks.estimate_time import calibrate, estimate

    t0 = time.perf_counter()
    tiers = budget_tiers(facts)
    union: dict[str, MemberSpec] = {}  # by name: a richer tier's spec of a name (two CNN seeds) holds the poorer's (one)
    for t in tiers:
        union.update((s.name, s) for s in t.specs)
    measured = estimate(list(union.values()), facts, device, runtime)
    timed: list[tuple[Tier, dict[str, float], float, tuple[float, float], str]] = []
    for t in tiers:
        parts = tier_parts(measured, t.specs, facts.classes)
        mid, rng, note = calibrate(sum(parts.values()), history, facts.n_images)
        timed.append((t, parts, mid, rng, note))
    left = budget - spent - (time.perf_counter() - t0)
    fits = [i for i, (_, _, _, rng, _) in enumerate(timed) if rng[1] <= left]
    at = fits[-1] if fits else 0
    tier, parts, mid, rng, note = timed[at]
    default = choose(facts)
    choice = Choice(list(tier.specs), list(default.reasons) if list(tier.specs) == default.specs else [],
                    mid, rng, note, parts)
    said = f"{_fmt(rng[0])} to {_fmt(rng[1])}"
    line = f"time budget {fmt_budget(budget)}: {tier.words} ({said} here)"
    if not fits:
        line += "; no pool fits in the budget, so the quickest is used (give a larger --budget, or fewer images)"
    elif at + 1 < len(timed):
        richer = timed[at + 1]
        line += f"; {richer[0].words} would take {_fmt(richer[3][0])} to {_fmt(richer[3][1])}"
    else:
        line += "; the richest pool there is fits"
    choice.reasons.insert(0, line)
    return choice


def search_within(db: Any, seconds: float | None) -> Generator[Progress, None, list[Any] | None]:
    """The duplicate search after a scoring run, stopped when ``seconds`` (what is left of a
    budget; None: no budget) run out: None then, and nothing stored (a search stores its groups
    at its end)."""
    from scoring.tasks.duplicates import find_duplicates

    if seconds is not None and seconds <= 1.0:
        return None
    stop = threading.Event()
    timer = None if seconds is None else threading.Timer(seconds, stop.set)
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        return list((yield from find_duplicates(db, cancel=stop)))
    except Cancelled:
        return None
    finally:
        if timer is not None:
            timer.cancel()
