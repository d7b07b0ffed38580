"""The registry of inference engines: each engine is a name, a line of help, a factory and its
own options; ``score_project``, the command line's ``--engine`` / ``--engine-option`` and the
run record read it here. Light on purpose: the engines themselves (torch, Ray) are imported
only when one is made, so ``image-triage --help`` loads neither.

Adding an engine is one module with a class that follows scoring.engine.engines.Engine, plus one
:func:`register_engine` (see docs/ARCHITECTURE.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from scoring.errors import ImageTriageError
from scoring.registry import Registry

if TYPE_CHECKING:
    from scoring.engine.engines import Engine


class EngineError(ImageTriageError, ValueError):
    """An unknown engine, or an option an engine does not take or cannot use: one line."""


@dataclass(frozen=True)
class EngineKind:
    """A registered engine: ``make(device=, runtime=, **options)`` builds one for a run."""

    name: str
    help: str  # the command line's --engine help
    make: Callable[..., Engine]
    options: dict[str, str] = field(default_factory=dict)  # its own options (--engine-option KEY=VALUE): help


_ENGINES: Registry[EngineKind] = Registry("engine", EngineError, ("local", "ray"))


def register_engine(kind: EngineKind) -> EngineKind:
    return _ENGINES.add(kind.name, kind)


def unregister_engine(name: str) -> None:
    _ENGINES.remove(name)


def engines() -> dict[str, EngineKind]:
    return {e.name: e for e in _ENGINES.values()}


def make_engine(name: str, device: str, runtime: str, options: dict[str, Any] | None = None) -> Engine:
    """The engine ``name`` for one run; a one-line error for an unknown engine or option."""
    kind = _ENGINES.get(name)
    bad = sorted(set(options or {}) - set(kind.options))
    if bad:
        raise EngineError(f"engine {name!r} takes no option {bad[0]!r}; its options: {', '.join(kind.options) or 'none'}")
    return kind.make(device=device, runtime=runtime, **(options or {}))


def engine_flags() -> dict[str, tuple[list[str], str]]:
    """Every registered engine's options as the command line's flags: option -> (the engines that
    take it, its help). The flags are read from the entries (Ray's --address and
    --gpus-per-worker among them), never written beside them."""
    out: dict[str, tuple[list[str], str]] = {}
    for kind in engines().values():
        for option, text in kind.options.items():
            names, first = out.get(option, ([], text))
            out[option] = ([*names, kind.name], first)
    return out


def _local(device: str, runtime: str) -> Engine:
    from scoring.engine.engines import LocalEngine

    return LocalEngine(runtime=runtime)


def _ray(device: str, runtime: str, address: str | None = None, gpus_per_worker: float = 0.0) -> Engine:
    from scoring.engine.engines import RayEngine

    if (isinstance(gpus_per_worker, bool) or not isinstance(gpus_per_worker, int | float)
            or not 0 <= gpus_per_worker < 1e6):  # nan, inf and 1e400 (inf) fail the range too
        raise EngineError(f"engine 'ray': gpus_per_worker must be a finite number of 0 or more, got {gpus_per_worker!r}")
    if address is not None and not isinstance(address, str):
        raise EngineError(f"engine 'ray': address must be text such as ray://head:10001, got {address!r}")
    return RayEngine(address=address, gpus_per_worker=float(gpus_per_worker), device=device, runtime=runtime)


register_engine(EngineKind("local", "this machine", _local))
register_engine(EngineKind(
    "ray", "a Ray cluster (Ray Data map_batches; pip install 'image-triage[ray]')", _ray,
    {"address": "the cluster to join, e.g. ray://head:10001 or auto", "gpus_per_worker": "GPUs per pool actor"}))
