"""Plugins: a package installed beside Image Triage adds scores, member kinds, engines, export
and dataset formats (read, written or both) through Python entry points, with no edit of this repository (issue 32).

A plugin package declares, in its own ``pyproject.toml``::

    [project.entry-points."image_triage.scores"]
    top_two_gap = "my_plugin:GAP"            # a vocabulary.Score
    [project.entry-points."image_triage.member_kinds"]
    linear = "my_plugin:LINEAR"              # a pool.kinds.MemberKind
    [project.entry-points."image_triage.engines"]
    threads = "my_plugin:THREADS"            # an engine.registry.EngineKind
    [project.entry-points."image_triage.formats"]
    lines = "my_plugin:LINES"                # an io.formats.Format (detect, read, write: any of them)

An entry point may also name a function: it is called with no arguments and returns one entry
or a list of them. :func:`load` registers every entry found; the command line calls it before it
builds its parser, and so before the app and any project opens. A plugin that fails to import
or to register is one warning line naming it, and everything else works. Nothing is imported
for a group no installed package uses (the command line stays free of torch), and
``IMAGE_TRIAGE_NO_PLUGINS=1`` loads none: a plugin is code, run because the user installed it.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from importlib import metadata
from typing import Any

log = logging.getLogger(__name__)

# group -> (what it adds, the module holding its registry, the register function's name)
GROUPS: dict[str, tuple[str, str, str]] = {
    "image_triage.scores": ("score", "scoring.vocabulary", "register"),
    "image_triage.member_kinds": ("member kind", "scoring.pool.kinds", "register_kind"),
    "image_triage.engines": ("engine", "scoring.engine.registry", "register_engine"),
    "image_triage.formats": ("dataset format", "scoring.io.formats", "register_format"),
}

_loaded: dict[str, list[str]] | None = None


def load(force: bool = False) -> dict[str, list[str]]:
    """Register every installed plugin's entries, once per process; per group, the entry points
    registered (``group -> [name, ...]``). ``force``: look again (tests)."""
    global _loaded
    if _loaded is not None and not force:
        return _loaded
    _loaded = {group: [] for group in GROUPS}
    if os.environ.get("IMAGE_TRIAGE_NO_PLUGINS"):
        return _loaded
    for group, (what, module, register_name) in GROUPS.items():
        try:
            found = entry_points(group)
        except Exception as exc:  # noqa: BLE001 - a broken installed distribution's metadata
            log.warning("plugins: the %s entry points could not be read (%s)", what, exc)
            continue
        if not found:
            continue  # nothing imported for a group no plugin uses
        register: Callable[[Any], Any] = getattr(importlib.import_module(module), register_name)
        for ep in found:
            try:
                entries = ep.load()
                if callable(entries) and not _is_entry(entries):
                    entries = entries()
                for entry in entries if isinstance(entries, list | tuple) else [entries]:
                    register(entry)
            except Exception as exc:  # noqa: BLE001 - one warning line; the rest works
                log.warning("plugin %s (%s = %s) not loaded: %s: %s", ep.name, group, ep.value,
                            type(exc).__name__, exc)
                continue
            _loaded[group].append(ep.name)
    return _loaded


def entry_points(group: str) -> list[metadata.EntryPoint]:
    """The installed distributions' entry points of ``group`` (tests answer for them)."""
    return list(metadata.entry_points(group=group))


def _is_entry(obj: Any) -> bool:
    """An entry itself (a dataclass instance such as a Score), not a function returning entries."""
    return hasattr(obj, "__dataclass_fields__") and not isinstance(obj, type)
