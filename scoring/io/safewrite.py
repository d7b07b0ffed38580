"""Where Image Triage may write, replace and delete: the one place that decides.

The rule, for every folder Image Triage writes (an export, the demo):

* it never replaces, deletes or writes into a folder that holds, after resolving symbolic links,
  any image the project lists or the project file, nor any ancestor of one (:class:`Guard`);
* it never writes inside the dataset: the dataset's root and every folder holding one of its
  images, wherever symbolic links or a manifest's ``../`` paths put them;
* it replaces or deletes only folders it created itself, recognised by the marker file
  :data:`MARKER` it writes into each of them first thing; ``--force`` can therefore replace an
  earlier export, and never anything else;
* it builds in a hidden sibling folder and renames it into place when complete, and cleans up
  the hidden leftovers of earlier runs that were killed (they carry the marker too).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import socket
import stat
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from scoring.errors import UnsafePathError
from scoring.io.safeio import kind_of, read_text

log = logging.getLogger(__name__)

MARKER = ".image-triage-created"


def mark_created(folder: Path, kind: str, token: str | None = None) -> None:
    """Write the marker that says Image Triage made ``folder`` (first thing after mkdir); ``token``
    names the run that made it (see :func:`marker_token`); the process and host let another run
    tell a folder still being built from one a killed run left."""
    body = {"created_by": "image-triage", "kind": kind, "pid": os.getpid(), "host": socket.gethostname(),
            **({"run": token} if token else {})}
    (folder / MARKER).write_text(json.dumps(body) + "\n")


def process_alive(pid: int | None, host: str | None) -> bool:
    """Whether process ``pid`` on ``host`` still runs (another host's: assumed so)."""
    if pid is None:
        return False
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def _being_built(folder: Path) -> bool:
    """A build folder whose maker still runs (a concurrent export into the same destination)."""
    try:
        body = json.loads(read_text(folder / MARKER, what="marker file", max_bytes=4096))
    except (OSError, ValueError, UnsafePathError):
        return False
    return isinstance(body, dict) and body.get("pid") != os.getpid() and process_alive(body.get("pid"), body.get("host"))


def marker_token(folder: Path) -> str | None:
    """The run token in ``folder``'s marker, when the folder is ours and has one."""
    if not created_by_us(folder):
        return None
    try:
        token = json.loads(read_text(folder / MARKER, what="marker file", max_bytes=4096)).get("run")
    except (OSError, ValueError, AttributeError, UnsafePathError):
        return None
    return str(token) if token else None


def created_by_us(folder: Path) -> bool:
    """True when ``folder`` is a real folder (not a link) holding Image Triage's marker file."""
    marker = folder / MARKER
    try:
        if folder.is_symlink() or not folder.is_dir() or marker.is_symlink() or not marker.is_file():
            return False
        if marker.stat().st_size > 4096:
            return False
        return bool(json.loads(read_text(marker, what="marker file", max_bytes=4096)).get("created_by") == "image-triage")
    except (OSError, ValueError, AttributeError, UnsafePathError):
        return False


@dataclass
class Guard:
    """What a write must never touch, all as resolved absolute paths (strings).

    ``files``: the project's images and the project file. ``ancestors``: every folder holding
    one of them at any depth (replacing or deleting one would take them along). ``dataset``: the
    folders nothing may be written inside (the dataset root and each image's folder).
    """

    files: set[str] = field(default_factory=set)
    ancestors: set[str] = field(default_factory=set)
    dataset: set[str] = field(default_factory=set)

    @classmethod
    def build(cls, images: Iterable[Path], project_file: Path | None, dataset_roots: Iterable[Path] = (),
              other_files: Iterable[Path] = ()) -> Guard:
        """``other_files``: more files never to replace (a manifest), resolved like the images."""
        g = cls()
        g.files.update(os.path.realpath(f) for f in other_files)
        real_parent: dict[str, str] = {}
        for img in images:
            parent = str(img.parent)
            if parent not in real_parent:
                real_parent[parent] = os.path.realpath(parent)
            g.dataset.add(real_parent[parent])
            resolved = os.path.realpath(img) if os.path.islink(img) else os.path.join(real_parent[parent], img.name)
            g.files.add(resolved)
            g.dataset.add(os.path.dirname(resolved))
        for root in dataset_roots:
            g.dataset.add(os.path.realpath(root))
        if project_file is not None:
            real = os.path.realpath(project_file)
            g.files.update({real, real + "-wal", real + "-shm"})
        # A folder holding the listed images (as listed, or where their links lead) is as much the
        # dataset as the images' targets: an export of a symlink export must not replace it.
        for folder in {os.path.dirname(f) for f in g.files} | g.dataset:
            p = Path(folder)
            for a in (p, *p.parents):
                if str(a) in g.ancestors:
                    break
                g.ancestors.add(str(a))
        return g

    def check_folder(self, dest: Path, *, force: bool, what: str = "export") -> Path:
        """The resolved ``dest`` if a ``what`` may be written there; UnsafePathError naming it if not."""
        d = Path(os.path.realpath(dest))
        s = str(d)
        if s in self.files:
            raise UnsafePathError(f"{dest} is one of the project's images or its project file; choose a new folder for the {what}")
        if s in self.ancestors:
            raise UnsafePathError(
                f"{dest} holds images the project lists, or the project file (after resolving links); "
                f"an {what} never replaces or writes into it: choose a new folder"
            )
        for a in (d, *d.parents):
            if str(a) in self.dataset:
                raise UnsafePathError(
                    f"{dest} is inside the dataset folder {a}; the dataset is never written to: "
                    f"choose a folder outside it for the {what}"
                )
        if d.exists() or d.is_symlink():
            if not d.is_dir():
                raise UnsafePathError(f"{dest} exists and is not a folder; choose a new folder for the {what}")
            if any(d.iterdir()):
                if not force:
                    raise UnsafePathError(
                        f"{dest} is not empty; choose an empty folder, or use --force to replace an earlier {what}"
                    )
                if not created_by_us(d):
                    raise UnsafePathError(
                        f"{dest} is not empty and was not made by Image Triage (no {MARKER} file): --force only "
                        f"replaces an earlier {what}; choose a new folder"
                    )
        return d


    def check_file(self, path: Path, *, what: str) -> Path:
        """The resolved ``path`` if a new ``what`` file may be written there (not inside the dataset)."""
        real = Path(os.path.realpath(path.parent)) / path.name
        if str(real) in self.files:
            raise UnsafePathError(f"{path} is one of the dataset's images; choose another place for the {what}")
        for a in (real.parent, *real.parent.parents):
            if str(a) in self.dataset:
                raise UnsafePathError(
                    f"{path} is inside the dataset folder {a}; the dataset is read-only to Image Triage: "
                    f"put the {what} beside it"
                )
        return real


def remove_ours(folder: Path) -> None:
    """Delete a folder Image Triage made, its marker last: killed part-way, what is left still
    carries the marker, so the next run recognises and removes it (never anyone else's folder)."""
    if not created_by_us(folder):
        raise UnsafePathError(f"{folder} was not made by Image Triage; it is left as it is")
    for entry in folder.iterdir():
        if entry.name == MARKER:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    (folder / MARKER).unlink(missing_ok=True)
    folder.rmdir()


def write_new(path: Path, data: bytes, mode: int = 0o600) -> None:
    """A new file (never an existing one, never through a link) holding ``data``, private to the
    user unless ``mode`` says otherwise: what Image Triage writes into its own folders."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0),
                 mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def replace_file(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Put a file holding ``data`` at ``path``, written beside it under a hidden name and renamed
    into place: what was there (a regular file, a link) is replaced whole, never written into,
    and a kill leaves the old file or the new one. A folder or a special file (a FIFO would
    block the write) at ``path`` is refused, naming it."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None and not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
        raise UnsafePathError(f"{path}: {kind_of(st.st_mode)}, not a file to write; choose another name")
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}"
    try:
        write_new(tmp, data, mode)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def new_build_folder(dest: Path, kind: str, token: str | None = None) -> Path:
    """A hidden sibling of ``dest`` to build in, marked as ours (and ``token``'s) before anything else."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.partial-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    mark_created(tmp, kind, token)
    return tmp


def clean_leftovers(dest: Path) -> int:
    """Remove the hidden build and swap folders that killed runs left beside ``dest``."""
    pattern = re.compile(rf"^\.{re.escape(dest.name)}\.(partial|old)-[0-9a-f]{{8}}$")
    removed = 0
    try:
        siblings = list(dest.parent.iterdir())
    except OSError:
        return 0
    for s in siblings:
        if not pattern.match(s.name) or s.is_symlink() or not s.is_dir():
            continue
        if ".partial-" in s.name and created_by_us(s) and _being_built(s):
            continue  # another export into the same destination is writing it: not a leftover
        if created_by_us(s):
            with contextlib.suppress(OSError):
                remove_ours(s)
        else:
            try:
                s.rmdir()  # killed between mkdir and the marker: empty
            except OSError:
                continue
        removed += 1
        log.info("removed %s, left by an earlier run that was stopped", s)
    return removed


def move_into_place(tmp: Path, dest: Path) -> None:
    """Put the finished ``tmp`` at ``dest``: a rename when ``dest`` is absent; entry by entry
    into an empty folder (never replacing a folder we did not make); swapping out a folder we
    made, then deleting it."""
    if not dest.exists():
        os.replace(tmp, dest)
        return
    if not created_by_us(dest):
        if any(dest.iterdir()):
            raise UnsafePathError(f"{dest} is not empty and was not made by Image Triage; it was left as it was")
        marker_first = sorted(tmp.iterdir(), key=lambda p: p.name != MARKER)
        for entry in marker_first:
            os.replace(entry, dest / entry.name)
        tmp.rmdir()
        return
    old = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex[:8]}"
    os.replace(dest, old)
    try:
        os.replace(tmp, dest)
    except OSError:
        os.replace(old, dest)
        raise
    with contextlib.suppress(OSError):  # a leftover is cleaned by the next run
        remove_ours(old)
