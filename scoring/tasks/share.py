"""Share a scored project among annotators: one review package per person.

A package is a project file of its own (``DIR/<name>.triage.db``) holding the project's
description, its pool and runs, and, for its slice of the queue only, the images' rows with
their scores, stored features and probabilities, issues and duplicate groups: the app and the
command line open it like any project, and it carries no one else's decisions. The unreviewed
queue is dealt in queue order (the label view, or the difficulty view), so every slice has the
same mix of likely and unlikely errors; a fraction ``overlap`` of it goes to two annotators,
blind (a package never holds another annotator's decision), for the agreement figures.
With ``with_images`` the slice's image files are copied beside the package
(``DIR/<name>.images/``) for a laptop that is offline; otherwise the package reads them from
the dataset's path (a shared drive).

Nothing is written into the project but its id (``meta.uid``, made once); a package file or
images folder that exists is never replaced; each package is built under a hidden name and
linked into place whole.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from scoring.errors import ImageTriageError
from scoring.io.datasets import is_uri
from scoring.io.safeio import copy_regular
from scoring.io.safewrite import move_into_place, new_build_folder, remove_ours
from scoring.store import Project, ProjectError, QueueFilter
from scoring.store.project import link_new
from scoring.store.team import PACKAGE_META, PackageInfo
from scoring.tasks.export import guard_for
from scoring.vocabulary import DIFFICULTY_SORT, LABEL_SORT

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
PACKAGE_SUFFIX = ".triage.db"
# Tables a package never copies: the counts follow its own images (triggers), the logs start empty.
_NOT_COPIED = {"sqlite_sequence", "counts", "edits", "team_log", "team_decisions", "merges"}


class ShareError(ImageTriageError):
    """A share that cannot be made; nothing was written."""


@dataclass(frozen=True)
class Shared:
    annotator: str
    path: Path
    images: int
    overlap: int
    images_folder: Path | None


def deal(ids: Sequence[int], annotators: Sequence[str], overlap: float) -> dict[str, list[int]]:
    """Each annotator's slice, in queue order. Every image whose place crosses a multiple of
    ``1 / overlap`` goes to a pair of annotators, the pairs taken in turn so each pair shares
    some; every other image goes to whoever has the fewest so far (ties in turn), so the slices
    stay even all the way down the queue."""
    n = len(annotators)
    out: dict[str, list[int]] = {a: [] for a in annotators}
    load = [0] * n
    pairs = list(itertools.combinations(range(n), 2))
    shared = 0
    for i, image_id in enumerate(ids):
        if pairs and int((i + 1) * overlap) > int(i * overlap):
            chosen: Sequence[int] = pairs[shared % len(pairs)]
            shared += 1
        else:
            chosen = [min(range(n), key=lambda j: (load[j], (j - i) % n))]
        for j in chosen:
            out[annotators[j]].append(int(image_id))
            load[j] += 1
    return out


def check_names(annotators: Sequence[str]) -> list[str]:
    names = [a.strip() for a in annotators if a.strip()]
    if not names:
        raise ShareError("name at least one annotator (--annotators ana,ben)")
    bad = [a for a in names if not NAME.fullmatch(a)]
    if bad:
        raise ShareError(f"{bad[0]!r} cannot name a package: use letters, digits, '.', '_' or '-' (up to 64)")
    if len({a.lower() for a in names}) != len(names):
        raise ShareError(f"an annotator is named twice in {', '.join(names)}")
    return names


def share_project(db: str | Path, to: str | Path, annotators: Sequence[str], *, overlap: float = 0.1,
                  limit: int | None = None, view: str = "label", with_images: bool = False,
                  progress: Callable[[str], None] | None = None) -> list[Shared]:
    """Write one package per annotator into ``to`` (see the module's docstring)."""
    names = check_names(annotators)
    if not 0.0 <= overlap <= 1.0:
        raise ShareError(f"--overlap is a fraction of the queue, 0 to 1; got {overlap}")
    if view not in ("label", "hard"):
        raise ShareError(f"--view is label or hard; got {view!r}")
    out_dir = Path(to).expanduser().absolute()
    dests = [out_dir / f"{a}{PACKAGE_SUFFIX}" for a in names]
    folders = [out_dir / f"{a}.images" for a in names] if with_images else [None] * len(names)
    taken = [p for p in [*dests, *folders] if p is not None and (p.exists() or p.is_symlink())]
    if taken:
        raise ShareError(f"{taken[0]} exists; Image Triage never replaces it: share into another folder (--to)")
    with Project.open(db) as project:
        if project.team.package() is not None:
            raise ShareError(f"{project.path} is a review package; share from the project it came from")
        guard = guard_for(project)  # packages and their images never go into the dataset
        for p in [*dests, *(f for f in folders if f is not None)]:
            try:
                guard.check_file(p, what="review package")
            except ImageTriageError as exc:
                raise ShareError(f"{exc} (--to)") from exc
        sort = LABEL_SORT if view == "label" and project.images.labelled() else DIFFICULTY_SORT
        queue = project.queue.ranked_ids(QueueFilter(status="unreviewed"), sort)
        if limit is not None:
            queue = queue[: max(0, int(limit))]
        if len(queue) == 0:
            raise ShareError(f"{project.path} has no unreviewed image to share")
        if with_images and any(is_uri(p) for p in project.images.image_paths()):
            raise ShareError(f"{project.path} reads images from object storage: they cannot be copied into a package; "
                             "share without --with-images (annotators read them from the bucket)")
        slices = deal([int(i) for i in queue], names, overlap if len(names) > 1 else 0.0)
        counts: dict[int, int] = {}
        for ids in slices.values():
            for i in ids:
                counts[i] = counts.get(i, 0) + 1
        uid = project.team.uid()
        active = project.runs.active_run()
        run = None if active is None else active["id"]
        out_dir.mkdir(parents=True, exist_ok=True)
        made: list[Shared] = []
        for name, dest, folder in zip(names, dests, folders, strict=True):
            ids = slices[name]
            info = PackageInfo(annotator=name, package=uuid.uuid4().hex, project=uid,
                               run=None if run is None else int(run), project_path=str(project.path.absolute()),
                               created=time.time(), images=len(ids), overlap=sum(counts[i] > 1 for i in ids))
            if progress:
                progress(f"{name}: {len(ids)} images ({info.overlap} shared with another annotator)")
            if folder is not None:
                _copy_images(project, ids, folder)
            write_package(project, dest, ids, info, folder)
            made.append(Shared(name, dest, len(ids), info.overlap, folder))
        return made


def write_package(project: Project, dest: Path, ids: Sequence[int], info: PackageInfo, images: Path | None) -> None:
    """One package file at ``dest`` (which must not exist), built under a hidden name and linked
    into place complete: a kill leaves no package or a whole one."""
    tmp = dest.parent / f".{dest.name}.creating-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        pkg = Project(tmp, _create=True)
        try:
            with pkg._tx() as c:
                _copy_rows(project, c, ids)
                meta = {PACKAGE_META: info.to_json()}
                if images is not None:
                    meta.update(dataset_root=str(images.resolve()), source=str(images.resolve()))
                    if project.layout == "huggingface":
                        meta["layout"] = "imagefolder"  # the copies are plain files now
                pkg._set_meta(**meta)
        finally:
            pkg.close()
        link_new(tmp, dest)
    except ImageTriageError:
        raise
    except OSError as exc:
        raise ShareError(f"{dest}: cannot write the package ({exc.strerror or exc}); nothing of it was left") from exc
    finally:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{tmp}{suffix}").unlink(missing_ok=True)


def _copy_rows(project: Project, c: object, ids: Sequence[int]) -> None:
    """The project's rows a package holds: every table's, those of an image only for the slice."""
    import sqlite3

    assert isinstance(c, sqlite3.Connection)
    wanted = json.dumps([int(i) for i in ids])
    tables = [r[0] for r in project._q("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name != 'images', name")]
    for table in tables:
        if table in _NOT_COPIED or table.startswith("sqlite_"):
            continue
        have = [r[1] for r in c.execute(f"PRAGMA table_info([{table}])")]
        cols = [r[1] for r in project._q(f"PRAGMA table_info([{table}])") if r[1] in have]
        if not cols:
            continue
        key = "id" if table == "images" else ("image_id" if "image_id" in cols else None)
        where = f"WHERE {key} IN (SELECT value FROM json_each(?))" if key else ""
        if table == "meta":
            where = "WHERE key != 'uid'"
        names = ", ".join(f"[{x}]" for x in cols)
        rows = project.conn.execute(f"SELECT {names} FROM [{table}] {where}", (wanted,) if key else ())
        marks = ", ".join("?" * len(cols))
        while chunk := rows.fetchmany(500):
            c.executemany(f"INSERT INTO [{table}] ({names}) VALUES ({marks})", chunk)
    c.execute("DELETE FROM duplicates WHERE group_id IN "
              "(SELECT group_id FROM duplicates GROUP BY group_id HAVING count(*) < 2)")


def _copy_images(project: Project, ids: Sequence[int], folder: Path) -> None:
    """The slice's image files, copied under ``folder`` at their paths in the dataset (built
    hidden, moved into place whole); a file that cannot be read is named."""
    tmp = new_build_folder(folder, "package images")
    try:
        for image_id in ids:
            row = project.images.image(int(image_id))
            src = project.images.abspath(row)
            dst = tmp / row.path
            if not dst.resolve().is_relative_to(tmp.resolve()):
                raise ShareError(f"{row.path}: not a path inside the dataset; it was not copied")
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                copy_regular(src, dst)
            except OSError as exc:
                raise ProjectError(f"{src}: cannot copy into the package ({exc.strerror or exc})") from exc
        move_into_place(tmp, folder)
    except BaseException:
        if tmp.exists():
            remove_ours(tmp)
        raise
