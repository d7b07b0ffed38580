"""Reading the user's files safely: the one place that opens them and walks their folders.

Every file Image Triage reads on the user's behalf (images, CSV manifests, pool files, class
lists, checkpoints) goes through :func:`require_regular` first, so:

* only **regular files** are opened: a FIFO would block forever, ``/dev/zero`` never ends, a
  device may act on being opened. The check is a ``stat`` (which opens nothing); the file is then
  opened non-blocking and ``fstat``-ed, and refused if it was swapped for something else;
* a **size cap** is checked before reading (a 1 GB sparse file is refused, not read into memory);
* hashes are **streamed** in 1 MiB chunks.

:func:`walk_files` walks a tree once: every directory is visited at most once (by device and
inode, so symlink loops end), symlinks that lead outside the root are not followed unless the
caller asks, special files and names that are not valid UTF-8 are reported as bad entries (with
the raw name shown escaped) instead of stopping the walk.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from scoring.errors import UnsafePathError

MAX_IMAGE_BYTES = 512 * 1024 * 1024  # larger than any real image Pillow would decode
MAX_TEXT_BYTES = 256 * 1024 * 1024  # manifests, pool files, class lists
CHUNK = 1 << 20

_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a folder",
}


def kind_of(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def _a(noun: str) -> str:
    return f"an {noun}" if noun[:1] in "aeiou" else f"a {noun}"


def require_regular(path: str | Path, *, max_bytes: int | None = None, what: str = "file") -> os.stat_result:
    """``stat`` ``path`` (following symlinks, opening nothing); UnsafePathError unless it is a
    regular file of at most ``max_bytes``. OSError (missing, permission) passes through."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePathError(f"{path}: {kind_of(st.st_mode)}, not a regular {what}; Image Triage only reads regular files")
    if max_bytes is not None and st.st_size > max_bytes:
        raise UnsafePathError(
            f"{path}: {st.st_size / 2**20:,.0f} MiB is larger than the {max_bytes / 2**20:,.0f} MiB cap for {_a(what)}; "
            "remove it from the dataset or check it is what you meant"
        )
    return st


def _open_checked(path: str | Path, st: os.stat_result) -> int:
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    fd = os.open(path, flags)
    fst = os.fstat(fd)
    if not stat.S_ISREG(fst.st_mode) or (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
        os.close(fd)
        raise UnsafePathError(f"{path}: the file changed into {kind_of(fst.st_mode)} while being opened; not read")
    return fd


def read_regular(path: str | Path, *, max_bytes: int = MAX_IMAGE_BYTES, what: str = "file") -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` (see the module docstring)."""
    st = require_regular(path, max_bytes=max_bytes, what=what)
    fd = _open_checked(path, st)
    try:
        chunks: list[bytes] = []
        total = 0
        while chunk := os.read(fd, CHUNK):
            total += len(chunk)
            if total > max_bytes:  # grew since the stat
                raise UnsafePathError(f"{path}: grew past the {max_bytes / 2**20:,.0f} MiB cap while being read")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_text(path: str | Path, *, what: str = "text file", max_bytes: int = MAX_TEXT_BYTES) -> str:
    """A regular UTF-8 text file (a BOM is dropped); UnsafePathError naming the file otherwise."""
    data = read_regular(path, max_bytes=max_bytes, what=what)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnsafePathError(
            f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); save the {what} as UTF-8"
        ) from exc


def read_head(path: str | Path, n: int, *, what: str = "file", max_bytes: int | None = None) -> bytes:
    """The first ``n`` bytes of a regular file (a header: an image's size, a database's id)."""
    st = require_regular(path, max_bytes=max_bytes, what=what)
    fd = _open_checked(path, st)
    try:
        out = b""
        while len(out) < n and (chunk := os.read(fd, n - len(out))):
            out += chunk
        return out
    finally:
        os.close(fd)


def open_regular(path: str | Path, *, what: str = "file") -> BinaryIO:
    """A regular file opened for reading as every read is (regular only, never blocking, checked
    to be the file that was stat-ed), for a reader that streams it (pyarrow's Parquet and Arrow
    readers); no size cap: the caller reads it in parts. Close it (a ``with`` block)."""
    st = require_regular(path, what=what)
    return os.fdopen(_open_checked(path, st), "rb")


def copy_regular(path: str | Path, dst: str | Path, *, max_bytes: int = MAX_IMAGE_BYTES) -> None:
    """Copy a regular file into a new file ``dst`` (which must not exist: ``x`` mode), streamed;
    the source is opened as every read is (regular only, never blocking, size-capped), and its
    times are kept as ``shutil.copy2`` would."""
    st = require_regular(path, max_bytes=max_bytes)
    fd = _open_checked(path, st)
    try:
        with open(dst, "xb") as out:  # noqa: PTH123 - a new file in a folder the caller made
            total = 0
            while chunk := os.read(fd, CHUNK):
                total += len(chunk)
                if total > max_bytes:
                    raise UnsafePathError(f"{path}: grew past the {max_bytes / 2**20:,.0f} MiB cap while being read")
                out.write(chunk)
    finally:
        os.close(fd)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))


def sha1_regular(path: str | Path, *, max_bytes: int = MAX_IMAGE_BYTES) -> str:
    """Hex SHA-1 of a regular file, streamed in 1 MiB chunks."""
    st = require_regular(path, max_bytes=max_bytes)
    fd = _open_checked(path, st)
    h = hashlib.sha1()
    try:
        while chunk := os.read(fd, CHUNK):
            h.update(chunk)
    finally:
        os.close(fd)
    return h.hexdigest()


# ----------------------------------------------------------------------------- walking


def printable(name: str) -> str:
    """A file name as text SQLite and a terminal accept: bytes that are not UTF-8 shown escaped."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return os.fsencode(name).decode("utf-8", "backslashreplace")


def is_valid_name(name: str) -> bool:
    return printable(name) == name


@dataclass
class Walk:
    """What one walk found: ``files`` relative to the root (posix, torchvision's order), ``bad``
    entries (relative path shown escaped, why) and symlinks left unfollowed."""

    files: list[str] = field(default_factory=list)
    bad: list[tuple[str, str]] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)


def is_inside(path: str, root: str) -> bool:
    """True when the resolved ``path`` is ``root`` or below it (both resolved, absolute)."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def confine(root: str | Path, name: object, *, follow_symlinks: bool = False, what: str = "image") -> str:
    """The one rule for a name that a dataset lists (a Label Studio task, a CVAT image, a FiftyOne
    sample, a Hugging Face row, a folder walked): ``name`` as a normalised posix path relative to
    ``root`` (``./a.png`` and ``a.png`` are one name), or UnsafePathError naming it when it is not
    a plain relative name (empty, absolute, a drive, ``..`` climbing out, a NUL or backslash, a
    URI) or, unless ``follow_symlinks``, when a symbolic link on its way leads outside ``root``.
    Nothing is opened: the path is resolved with ``realpath``."""
    if not isinstance(name, str) or not name or "\x00" in name or "\\" in name or "://" in name:
        raise UnsafePathError(f"{name!r}: not a plain relative {what} name inside {root}; not read")
    rel = posixpath.normpath(name)
    if rel.startswith("/") or rel == ".." or rel.startswith("../") or (len(rel) > 1 and rel[1] == ":"):
        raise UnsafePathError(f"{name}: leads outside the dataset folder {root}; names must be relative to it, not read")
    if rel == ".":
        raise UnsafePathError(f"{name!r}: names the dataset folder {root} itself, not {_a(what)}; not read")
    if not follow_symlinks:
        real_root = os.path.realpath(root)
        if not is_inside(os.path.realpath(os.path.join(real_root, rel)), real_root):
            raise UnsafePathError(
                f"{os.path.join(str(root), rel)}: a symbolic link leads outside the dataset folder {root}; "
                "not read (pass --follow-symlinks to include it)"
            )
    return rel


def walk_files(
    folder: Path,
    root: Path,
    accept: Callable[[str], bool],
    *,
    follow_symlinks: bool = False,
    visited: set[tuple[int, int]] | None = None,
) -> Walk:
    """Files below ``folder`` whose names ``accept`` takes, relative to ``root``.

    Order is torchvision's (``sorted(os.walk(...))``: folders by path, names sorted). Hidden
    entries (leading dot) are skipped. Each directory is entered once per ``visited`` set (pass
    one set for several folders of one dataset). Symlinks whose target lies outside the resolved
    root are skipped (listed in ``outside``) unless ``follow_symlinks``.
    """
    walk = Walk()
    visited = set() if visited is None else visited
    real_root = os.path.realpath(root)
    if not follow_symlinks and not is_inside(os.path.realpath(folder), real_root):  # the folder itself links out
        walk.outside.append(printable(_rel(folder, root)))
        return walk
    per_dir: list[tuple[str, list[str]]] = []
    stack = [folder]
    while stack:
        d = stack.pop()
        try:
            st = os.stat(d)
        except OSError as exc:
            walk.bad.append((printable(_rel(d, root)), f"cannot open the folder ({exc.strerror or exc})"))
            continue
        if (st.st_dev, st.st_ino) in visited:
            continue
        visited.add((st.st_dev, st.st_ino))
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as exc:
            walk.bad.append((printable(_rel(d, root)), f"cannot list the folder ({exc.strerror or exc})"))
            continue
        names: list[str] = []
        subdirs: list[Path] = []
        for e in entries:
            if e.name.startswith("."):
                continue
            rel = _rel(Path(e.path), root)
            if e.is_symlink() and not follow_symlinks and not is_inside(os.path.realpath(e.path), real_root):
                walk.outside.append(printable(rel))
                continue
            try:
                is_dir = e.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                if is_valid_name(e.name):
                    subdirs.append(Path(e.path))
                else:
                    walk.bad.append((printable(rel), "folder name is not valid UTF-8: rename it; its files were skipped"))
                continue
            if not accept(e.name):
                continue
            if not is_valid_name(e.name):
                walk.bad.append((printable(rel), "file name is not valid UTF-8: rename it to score this image"))
                continue
            if e.is_file():  # from the directory listing (or one stat behind a link): a regular file
                names.append(rel)
                continue
            try:
                mode = e.stat().st_mode
            except OSError as exc:
                walk.bad.append((rel, f"cannot read ({exc.strerror or exc}; a broken symbolic link?)"))
                continue
            if not stat.S_ISREG(mode):
                walk.bad.append((rel, f"{kind_of(mode)}, not a regular file: not read"))
                continue
            names.append(rel)
        per_dir.append((str(d), names))
        stack.extend(reversed(subdirs))
    for _d, names in sorted(per_dir):
        walk.files.extend(names)
    return walk


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()
