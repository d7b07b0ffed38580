"""A fingerprint of every entry under a folder: kind, inode, content hash, link target.

Two equal snapshots mean nothing under the folder was created, deleted, replaced, modified or
re-linked. Special files are fingerprinted without being opened. Project files (which a
reader's WAL bookkeeping touches) are left out.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path


def snapshot(root: Path, skip: tuple[str, ...] = (".triage.db",)) -> dict[str, tuple[object, ...]]:
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, os.fsencode(root)).decode("utf-8", "backslashreplace")
            if any(s in rel for s in skip):
                continue
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(full))
            elif stat.S_ISREG(st.st_mode):
                with open(full, "rb") as fh:
                    digest = hashlib.sha1(fh.read()).hexdigest() if st.st_size < (64 << 20) else f"size {st.st_size}"
                out[rel] = ("file", st.st_ino, digest)
            else:
                out[rel] = (stat.S_IFMT(st.st_mode), st.st_ino)
    return out
