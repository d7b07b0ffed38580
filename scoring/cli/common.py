"""What the command line's commands share: their one-line error, the progress bar on stderr,
opening the project given with --db, and naming an image or a class by id or by name."""

from __future__ import annotations

import sys
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import Any

from scoring.errors import ImageTriageError
from scoring.progress import Progress, drain
from scoring.store import Project
from scoring.vocabulary import clock


class CliError(ImageTriageError):
    """A user-facing error of the command line itself: printed as one line, exit code 2."""


# ----------------------------------------------------------------------------- helpers


class ProgressBar:
    """A one-line progress bar on stderr (a line per update when stderr is not a terminal)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.stage: str | None = None

    def __call__(self, p: Progress) -> None:
        if p.stage != self.stage and self.stage is not None:
            sys.stderr.write("\n")
        self.stage = p.stage
        width = 30
        filled = int(width * p.fraction)
        eta = "" if p.eta is None else f" ETA {fmt_seconds(p.eta)}"
        rate = f" {p.rate:,.0f}/s" if p.rate else ""
        line = f"{p.stage:>6} [{'#' * filled}{'.' * (width - filled)}] {p.done}/{p.total}{rate}{eta} {p.message}"
        if self.tty:
            sys.stderr.write("\r" + line[:150].ljust(150))
        elif p.done == p.total or p.message:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


def progress_bar(gen: Generator[Progress, None, Any], *, quiet: bool = False) -> Any:
    """Drain a core generator, drawing a one-line progress bar on stderr unless ``quiet``."""
    bar = None if quiet else ProgressBar()
    result = drain(gen, bar)
    if bar is not None and bar.stage is not None:
        sys.stderr.write("\n")
    return result


def for_terminal(text: object) -> str:
    """A name (a path, a class) as a terminal may print it: a control character (an escape
    sequence that would move the cursor or recolour the screen) is shown as its escape, \\x1b."""
    s = str(text)
    return s if s.isprintable() else "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                                             for c in s)


def fmt_seconds(s: float) -> str:
    return clock(s)


def open_project(db: str | None) -> Project:
    if not db:
        raise CliError("give the project file with --db FILE (image-triage score prints where it went)")
    if not Path(db).exists():
        raise CliError(f"{db}: no such project file; create it with `image-triage score DATASET --db {db}`")
    return Project.open(db)


def resolve_image(project: Project, ref: str) -> int:
    """An image by id or by its path relative to the dataset root."""
    if ref.isascii() and ref.isdigit():
        if int(ref) > 2**63 - 1:
            raise CliError(f"no image with id {ref} in {project.path}; ids are small whole numbers (`image-triage queue` shows them)")
        return int(ref)
    found = project.images.find_image(ref)
    if found is None:
        raise CliError(f"no image {ref!r} in {project.path}; give its id or its path relative to {project.dataset_root}")
    return int(found)


def resolve_label(project: Project, label: str) -> int:
    if label in project.classes:
        return int(project.classes.index(label))
    if label.isascii() and label.isdigit() and int(label) < len(project.classes):
        return int(label)
    raise CliError(f"unknown class {label!r}; classes are: {', '.join(project.classes)}")


def json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Mapping):  # a typed spec (scoring.pool.member_spec) is a mapping of its keys
        return dict(o)
    if isinstance(o, (set, tuple)):
        return list(o)
    return str(o)
