"""Export a cleaned dataset: relabels applied, removed images left out, originals untouched.

Everything is written into a hidden temporary folder beside the destination and renamed into
place only once complete and verified, so a failure part-way (disk full, permission denied, a
file that vanished) leaves no half export and the old destination, if any, intact. Where an
export may go, and what ``force`` may replace, is decided by :mod:`scoring.io.safewrite`: never a
folder holding the project's images or project file, never inside the dataset, and only ever
replacing an earlier export.

Output, inside ``dest``:

* ``images/<class>/<file>`` - the files (hard links by default, falling back to copies where
  the file system refuses; or copies; or symlinks). Unlabelled images go to ``images/_unlabelled``.
  The files are always materialised, so the export is self-contained whatever the format.
* the manifest: ``manifest.csv`` (``path,label``, paths relative to ``dest``), or
  ``manifest.json``; for the ImageFolder format the folder tree is the manifest and
  ``manifest.csv`` is written too.
* ``difficulty.csv`` - path, given label, final label, status, C-perplexity, X-perplexity,
  mutual information, consensus label and probability, triage reason - one row per exported
  image, in the order of ``mean_probs.npy`` (N, K float32, the pool's mean probabilities).
* ``edits.csv`` (the edits log), ``classes.txt`` (escaped) and ``classes.json`` (exact), ``removed.csv`` (audit), ``export_report.json``.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import json
import logging
import os
import re
import stat
import threading
import unicodedata
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np

from scoring.errors import ImageTriageError, UnsafePathError
from scoring.io.datasets import MANIFESTS, read_bytes
from scoring.io.formats import ExportRow, export_formats
from scoring.io.safeio import copy_regular, kind_of
from scoring.io.safewrite import (
    Guard,
    clean_leftovers,
    move_into_place,
    new_build_folder,
    remove_ours,
)
from scoring.progress import Cancelled, Progress, RateMeter, drain
from scoring.store import Project
from scoring.vocabulary import DECIDED, scores

log = logging.getLogger(__name__)

LINKS = ("hardlink", "copy", "symlink")
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}
_BAD_CHARS = re.compile(r'[/\\:*?"<>|\x00-\x1f%]')


class ExportError(ImageTriageError):
    """An export that could not be completed; nothing was left half-written."""


def safe_folder_name(name: str) -> str:
    """A class name as a folder name valid on Linux, macOS and Windows, reversibly: every change
    is a percent-escape (``%`` itself is escaped), so two names never give one folder; a name
    over 200 bytes is cut and ends in a hash of the whole name. :func:`class_folders` also
    separates names that differ only in case (one folder on macOS and Windows)."""
    out = _BAD_CHARS.sub(lambda m: f"%{ord(m.group()):02X}", name)
    if out in ("", ".", ".."):
        out = out.replace(".", "%2E") or "%00empty"
    if out.startswith("."):  # .hidden, ..x: a hidden folder, which readers (ours too) skip
        out = "%2E" + out[1:]
    if out.rstrip(" .") != out:
        stripped = out.rstrip(" .")
        out = stripped + "".join(f"%{ord(c):02X}" for c in out[len(stripped):])
    if out.split(".")[0].upper() in _WINDOWS_RESERVED:
        out = f"%{ord(out[0]):02X}{out[1:]}"  # CON -> %43ON: an escape, so _CON stays _CON
    if len(out.encode()) > 200:
        digest = hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        while len(out.encode()) > 186:
            out = out[:-1]
        out = f"{out}%~{digest}"
    return out


def class_folders(classes: list[str]) -> dict[str, str]:
    """Each class's folder: :func:`safe_folder_name`, unique even where case is folded or where
    Unicode normalises two spellings to one (macOS folds NFC and NFD names into one folder)."""
    folders = {c: safe_folder_name(c) for c in classes}
    seen: dict[str, int] = {}

    def key(f: str) -> str:
        return unicodedata.normalize("NFC", f).casefold()

    for f in folders.values():
        seen[key(f)] = seen.get(key(f), 0) + 1
    for c, f in folders.items():
        if seen[key(f)] > 1:  # Cat and cat, é and e+◌́: one folder on macOS and Windows
            folders[c] = f"{f}%~{hashlib.sha1(c.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"
    return folders


def classes_txt_line(name: str) -> str:
    """A class name on one line of classes.txt: a tab, newline or backslash escaped (as in
    Python's string escapes); the exact names are in classes.json."""
    return name.encode("unicode_escape").decode("ascii") if any(ch in name for ch in "\t\n\r\\") or not name.isprintable() else name


def _place(src: Path | str, dst: Path, link: str) -> bool:
    """Put one file; returns True when a link fell back to a copy."""
    if isinstance(src, str):  # a URI on object storage: only a copy can bring it here
        dst.write_bytes(read_bytes(src))
        return link != "copy"
    mode = os.stat(src).st_mode  # follows links; opens nothing
    if not stat.S_ISREG(mode):
        raise UnsafePathError(f"{src} became {kind_of(mode)} since scoring; not exported")
    if link == "symlink":
        os.symlink(src, dst)
        return False
    if link == "hardlink":
        try:
            os.link(src, dst)
            return False
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
                raise
    copy_regular(src, dst)
    return link == "hardlink"


def guard_for(project: Project) -> Guard:
    """What an export must never touch: every image the project lists, its project file, the dataset."""
    images = (project.images.abspath(p) for p in project.images.image_paths())
    roots = [] if project.layout in MANIFESTS else [project.dataset_root]  # a manifest's folder holds no images
    manifest = [project.source] if project.layout in MANIFESTS else []  # nor may its folder be replaced
    return Guard.build((p for p in images if isinstance(p, Path)), project.path, roots, manifest)


def export_dataset(
    project_path: str | Path,
    dest: str | Path,
    *,
    fmt: str = "imagefolder",
    link: str = "hardlink",
    force: bool = False,
    audit: bool = True,
    cancel: threading.Event | None = None,
    drop_duplicates: bool = False,
    token: str | None = None,
) -> Generator[Progress, None, dict[str, Any]]:
    """Export the project's cleaned dataset into ``dest``; yields Progress, returns a report.
    ``token`` is written into the export's marker, so a caller interrupted late can tell whether
    its export reached ``dest`` (``safewrite.marker_token(dest) == token``)."""
    if fmt not in export_formats():
        raise ExportError(f"unknown export format {fmt!r}; use one of {', '.join(export_formats())}")
    if link not in LINKS:
        raise ExportError(f"unknown link mode {link!r}; use one of {', '.join(LINKS)}")
    cancel = cancel or threading.Event()
    asked = Path(dest).expanduser().absolute()
    with Project.open(project_path) as project:
        guard = guard_for(project)
        dest = guard.check_folder(asked, force=force)
        clean_leftovers(dest)
        tmp: Path | None = None
        try:
            tmp = new_build_folder(dest, "export", token)
            report = yield from _write(project, tmp, fmt, link, audit, cancel, drop_duplicates)
            _verify(tmp, report)
            report["dest"] = str(dest)
            (tmp / "export_report.json").write_text(json.dumps(report, indent=2))  # moved in with the rest
            guard.check_folder(dest, force=force)  # again: nothing may have moved in meanwhile
            move_into_place(tmp, dest)
        except BaseException as exc:
            if tmp is not None:
                with contextlib.suppress(OSError, ImageTriageError):
                    remove_ours(tmp)
            if isinstance(exc, Cancelled | GeneratorExit | ImageTriageError):
                raise
            if isinstance(exc, OSError):
                what = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
                raise ExportError(
                    f"export failed ({what}) at {exc.filename or 'an output file'}; nothing was written to {dest}"
                ) from exc
            raise
    return report


def _rows(project: Project) -> list[Any]:
    rows: list[Any] = []
    after: tuple[Any, int] | None = None
    while True:
        page = project.queue.page(sort="id", limit=50_000, after=after)
        if not page:
            return rows
        rows.extend(page)
        after = (page[-1].id, page[-1].id)


def _export_rows(project: Project, keep: list[Any], out_paths: list[str]) -> list[ExportRow]:
    """What a format's writer sees of each exported image (scoring.io.formats)."""
    classes = project.classes
    widths, heights = project.images.sizes(np.array([r.id for r in keep], dtype=np.int64))

    def name(i: int | None) -> str | None:
        return classes[i] if i is not None else None

    return [ExportRow(p, r.path, name(r.current_label), name(r.given_label), name(r.consensus), r.consensus_prob,
                      r.status, r.status in DECIDED, int(w), int(h), dict(r.scores))
            for p, r, w, h in zip(out_paths, keep, widths, heights, strict=True)]


def _write(
    project: Project, tmp: Path, fmt: str, link: str, audit: bool, cancel: threading.Event, drop_duplicates: bool = False
) -> Generator[Progress, None, dict[str, Any]]:
    classes = project.classes
    dataset = project.dataset() if project.layout == "huggingface" else None  # re-unpacks a removed cache
    if not project.dataset_root.exists():
        raise ExportError(
            f"the dataset {project.dataset_root} is not there (moved, renamed or unmounted?); put it back, or score "
            "it where it now is, then export"
        )
    try:  # flag files changed or vanished since scoring, so they are left out, not exported stale
        project.images.sync(dataset or project.dataset(), verify=True)
    except (ValueError, OSError) as exc:
        log.warning("could not re-read the dataset before export (%s); using the stored list", exc)
    folders = class_folders(classes)
    renamed = {c: f for c, f in folders.items() if f != c}
    rows = _rows(project)
    keep = [r for r in rows if r.status != "removed" and r.flag is None]
    dropped: list[str] = []
    if drop_duplicates:  # one image per duplicate group: the annotator's choice wins
        if not project.dupes.duplicates_searched():
            raise ExportError(
                f"--drop-duplicates: no duplicate search has run on {project.path}; run "
                f"`image-triage duplicates --db {project.path}` first (or export without it)"
            )
        group = {i: g for g, members in project.dupes.duplicate_groups().items() for i in members}
        winner: dict[int, Any] = {}
        for r in keep:  # a reviewed image (kept, relabelled) wins its group; else the first by id
            g = group.get(r.id)
            if g is not None and (g not in winner or (winner[g].status == "unreviewed" and r.status != "unreviewed")):
                winner[g] = r
        dropped = [r.path for r in keep if r.id in group and winner[group[r.id]] is not r]
        keep = [r for r in keep if r.id not in group or winner[group[r.id]] is r]
    removed = [r for r in rows if r.status == "removed"]
    skipped = [{"path": r.path, "why": f"file {r.flag} since scoring"} for r in rows if r.flag is not None and r.status != "removed"]
    skipped += [{"path": r.path, "why": f"unreadable: {r.error}"} for r in project.images.errors()]
    for s in skipped:
        log.warning("left out of the export: %s (%s)", s["path"], s["why"])
    (tmp / "images").mkdir(parents=True)
    form = export_formats()[fmt]
    under, by_class = form.images_under, form.by_class
    meter = RateMeter("export", len(keep))
    used: set[str] = set()
    out_paths: list[str] = []
    fallbacks = 0
    for n, r in enumerate(keep):
        if n % 256 == 0:
            if cancel.is_set():
                raise Cancelled()
            yield meter.record(n)
        folder = folders[classes[r.current_label]] if r.current_label is not None else "_unlabelled"
        name = Path(r.path).name
        rel = f"{under}/{folder}/{name}" if by_class else f"{under}/{n:06d}-{Path(name).stem[:80]}{Path(name).suffix}"
        if rel.lower() in used:  # same file name in one class: keep both, deterministically
            stem, suffix = Path(name).stem, Path(name).suffix
            i = 1
            while f"{under}/{folder}/{stem}-{i}{suffix}".lower() in used:
                i += 1
            rel = f"{under}/{folder}/{stem}-{i}{suffix}"
        used.add(rel.lower())
        target = tmp / rel
        target.parent.mkdir(exist_ok=True)
        src = project.images.abspath(r.path)
        if isinstance(src, Path) and not src.exists():
            raise OSError(errno.ENOENT, "a source file vanished during the export", str(src))
        fallbacks += _place(src, target, link)
        out_paths.append(rel)
    yield meter.record(len(keep), "writing tables")
    labels = [classes[r.current_label] if r.current_label is not None else "" for r in keep]
    with (tmp / "manifest.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label"])
        w.writerows(zip(out_paths, labels, strict=True))
    assert form.write is not None
    form.write(tmp, classes, _export_rows(project, keep, out_paths), project.source if project.layout == fmt else None)
    def label_of(i: int | None) -> str:
        return classes[i] if i is not None else ""

    issues = project.issues.issues_by_image()
    with (tmp / "difficulty.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "source_path", "given_label", "final_label", "status", *(s.key for s in scores()),
                    "consensus_label", "reason", "issues"])
        for p, r in zip(out_paths, keep, strict=True):
            w.writerow([p, r.path, label_of(r.given_label), label_of(r.current_label), r.status,
                        *(_num(r.scores[s.key]) for s in scores()), label_of(r.consensus), r.reason or "",
                        ";".join(issues.get(r.id, []))])
    has_probs = _write_mean_probs(project, [r.id for r in keep], tmp / "mean_probs.npy")
    with (tmp / "edits.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "image", "action", "old_label", "new_label", "old_status", "new_status", "time", "target"])
        paths = {r.id: r.path for r in rows}
        for e in project.edits.entries():
            w.writerow([e.id, paths.get(e.image_id, e.image_id), e.action, label_of(e.old_label), label_of(e.new_label),
                        e.old_status, e.new_status, e.time, e.target or ""])
    (tmp / "classes.txt").write_text("".join(
        f"{classes_txt_line(c)}\t{folders[c]}\n" if c in renamed else f"{classes_txt_line(c)}\n" for c in classes))
    (tmp / "classes.json").write_text(json.dumps([{"name": c, "folder": folders[c]} for c in classes], indent=1))
    if audit:
        with (tmp / "removed.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["source_path", "given_label", "current_label"])
            w.writerows([r.path, label_of(r.given_label), label_of(r.current_label)] for r in removed)
    return {
        "format": fmt,
        "link": link,
        "exported": len(keep),
        "removed": len(removed),
        "relabelled": sum(r.current_label != r.given_label for r in keep),
        "skipped": skipped,
        "renamed_classes": renamed,
        "link_fallbacks_to_copy": fallbacks,
        "duplicates_dropped": dropped,
        "mean_probs": has_probs,
        "files": out_paths,
    }


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:.6g}"


def _write_mean_probs(project: Project, ids: list[int], path: Path) -> bool:
    members = project.runs.active_members()
    if not members or not ids:
        return False
    try:
        probs = project.cache.get_probs([m["fingerprint"] for m in members], ids)
    except Exception as exc:  # noqa: BLE001 - some images not scored: say so, don't fail the export
        log.warning("mean_probs.npy not written: %s", exc)
        return False
    np.save(path, probs.mean(axis=0).astype(np.float32))
    return True


def _verify(tmp: Path, report: dict[str, Any]) -> None:
    """Complete and consistent: the manifest lists exactly the files present."""
    folder = tmp / export_formats()[report["format"]].images_under
    present = {p.relative_to(tmp).as_posix() for p in folder.rglob("*") if p.is_file() or p.is_symlink()}
    with (tmp / "manifest.csv").open(newline="") as fh:
        listed = {row["path"] for row in csv.DictReader(fh)}
    if present != listed or len(present) != report["exported"]:
        raise ExportError(
            f"export verification failed: {len(present)} files written, {len(listed)} in the manifest, "
            f"{report['exported']} expected; nothing was written"
        )
    report.pop("files", None)


def run_export(project_path: str | Path, dest: str | Path, **kw: Any) -> dict[str, Any]:
    """Drain :func:`export_dataset` and return its report."""
    return drain(export_dataset(project_path, dest, **kw))
