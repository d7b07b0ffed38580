"""Trust that code may run comes from the user now, never from a file.

A checkpoint that needs code to load (a pickled object, TorchScript) runs that code. Whether to
load it is the user's decision at run time: ``--trust-checkpoint`` on the command line, or
``trust=true`` typed in a ``--member`` spec. A ``trust = true`` written in a pool file or in a
project's stored run is someone's past word, possibly not the user's: it is not trust.

So trust is not a value a file can hold. :data:`USER_TRUST` is a marker object that only code
running in this process can put in a member spec; JSON and TOML can never produce it, and a
stored spec is written without it (:func:`without_trust`). Loaders ask :func:`is_trusted`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

Spec = TypeVar("Spec", bound=Mapping[str, Any])  # a table, or a typed spec (scoring.pool.member_spec)


class USER_TRUST:  # noqa: N801 - a marker, used as a value; a class so it pickles by name (Ray)
    """The user said, in this run, that this member's checkpoint may run code."""


def is_trusted(spec: Mapping[str, Any]) -> bool:
    """True only when the user granted trust in this run (never from a file's ``trust = true``)."""
    return spec.get("trust") is USER_TRUST


def grant(spec: Spec) -> Spec:
    """A copy of ``spec`` trusted for this run (the user said so now), of the same type."""
    if dataclasses.is_dataclass(spec):
        return dataclasses.replace(spec, trust=USER_TRUST)  # type: ignore[type-var]
    return {**spec, "trust": USER_TRUST}  # type: ignore[return-value]


def without_trust(spec: Spec) -> Spec:
    """A copy of ``spec`` with no trust in it, of the same type: what is written to, or read from, a file."""
    if dataclasses.is_dataclass(spec):
        return dataclasses.replace(spec, trust=None)  # type: ignore[type-var]
    return {k: v for k, v in spec.items() if k != "trust"}  # type: ignore[return-value]
