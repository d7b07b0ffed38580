"""The command line's commands: each reads its arguments, calls the core, prints the outcome.

Every edit here is the same call into :class:`scoring.store.Project` that the GUI makes, so the
command line and the app can never disagree. The parser and ``main`` are in :mod:`scoring.cli.main`.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scoring.cli.common import (
    CliError,
    fmt_seconds,
    for_terminal,
    json_default,
    open_project,
    progress_bar,
    resolve_image,
    resolve_label,
)
from scoring.engine.registry import engine_flags
from scoring.vocabulary import (
    DIFFICULTY_SORT,
    LABEL_SORT,
    default_sort,
    is_score,
    issue_summary,
    score,
)

if TYPE_CHECKING:
    from scoring.engine.inference import RunSummary
    from scoring.pool.member_spec import MemberSpec

log = logging.getLogger("image_triage")


# ----------------------------------------------------------------------------- commands


def cmd_score(args: argparse.Namespace) -> int:
    started = time.monotonic()  # a --budget is for the whole command: survey, scoring, duplicates
    from scoring.tasks.budget import UNCLOCKED, search_within

    started -= UNCLOCKED
    from scoring.engine.inference import score_project
    from scoring.engine.registry import make_engine
    from scoring.pool.spec import (
        check_files,
        cifar_resnet_pool_specs,
        default_scratch_specs,
        load_pool_file,
        parse_member_arg,
    )
    from scoring.store import Project, project_for
    from scoring.trust import grant

    engine_options = _engine_options(args)
    make_engine(args.engine, args.device, args.runtime, engine_options)  # a bad option: one line, nothing created
    specs: list[Mapping[str, Any]] = []  # read before the project exists: a bad member creates nothing
    for pool_file in args.pool or []:
        specs.extend(load_pool_file(pool_file))
    for m in args.member or []:
        specs.append(parse_member_arg(m))
    if args.cifar_resnets:
        specs.extend(cifar_resnet_pool_specs(args.cifar_resnets))
    check_files(specs)
    budget = None
    if args.budget is not None:  # checked before the project exists, as the members are
        from scoring.tasks.budget import parse_budget

        budget = parse_budget(args.budget)
        if specs or args.scratch:
            raise CliError("--budget chooses the automatic pool: leave out --pool, --member, --cifar-resnets and --scratch")
    db = project_for(args.dataset, args.db, args.layout, follow_symlinks=args.follow_symlinks)
    project = Project.open(db)
    if args.scratch:
        specs.extend(default_scratch_specs(n_images=len(project.images.scorable_ids())))
    if not specs and budget is None:
        specs = list(project.runs.last_pool_spec() or [])
        if specs:
            print("pool: the pool of the last run (give --pool or --member to change it)", file=sys.stderr)
    estimate = None
    if not specs:
        auto, estimate = _auto_specs(project.dataset(), args.device, args.thorough, args.runtime, budget,
                                     time.monotonic() - started)
        specs = list(auto)
    if args.trust_checkpoint:  # the user's word, now: the only trust there is (scoring.trust)
        specs = [grant(s) for s in specs]
    project.close()
    print(f"project: {db}", file=sys.stderr)
    cancel = threading.Event()
    gen = score_project(
        db, specs, device=args.device, batch_size=args.batch_size, workers=args.workers, cancel=cancel,
        engine=args.engine, engine_options=engine_options, runtime=args.runtime,
    )
    try:
        summary = progress_bar(gen, quiet=args.quiet)
        if summary.status == "done" and not args.no_duplicates:  # found after every run, as the app does
            groups = progress_bar(search_within(db, None if budget is None else budget - (time.monotonic() - started)),
                                  quiet=args.quiet)
            if groups is None:
                print(f"duplicates: not searched, the {args.budget} budget is spent "
                      f"(`image-triage duplicates --db {db} --search` finds them)", file=sys.stderr)
            else:
                summary.duplicates = {"groups": len(groups), "label_conflicts": sum(g.conflict for g in groups)}
        if estimate is not None and summary.status == "done":  # the next estimate here learns from this one
            from scoring.tasks.estimate_time import record_run

            record_run(db, summary, *estimate)
    except KeyboardInterrupt:
        cancel.set()
        gen.close()
        print("\ncancelled: what is stored is kept; run the same command to resume", file=sys.stderr)
        return 130
    print(json.dumps(summary.as_dict(), indent=2) if args.json else _summary_line(summary, db))
    if args.profile and summary.profile:
        prof = summary.profile
        total = sum(prof.values()) or 1.0
        print("where the time went: " + ", ".join(
            f"{k} {v:.1f}s ({v / total:.0%})" for k, v in sorted(prof.items(), key=lambda kv: -kv[1])
        ), file=sys.stderr)
        if prof.get("decode", 0) > max(prof.get("forward", 0), 0.1 * total):
            print("decoding is the bottleneck: try --workers N (decode processes)", file=sys.stderr)
    return 0


def _auto_specs(dataset: Any, device: str, thorough: bool, runtime: str, budget: float | None = None,
                spent: float = 0.0) -> tuple[list[MemberSpec], tuple[float, list[float]]]:
    """The automatic pool, said aloud: what it chose, why, and how long it should take (a range,
    measured here, corrected by the earlier runs' estimates against their actual times)."""
    from scoring.device import pick_device
    from scoring.tasks.autopool import auto_pool

    if budget is None:
        choice = auto_pool(dataset, pick_device(device), thorough, runtime=runtime)
    else:
        from scoring.tasks.budget import budget_pool

        choice = budget_pool(dataset, budget, pick_device(device), thorough, runtime, spent=spent)
    lo, hi = choice.range
    print(f"pool: chosen {'for the time budget' if budget is not None else 'automatically'} ({len(choice.specs)} specs; {fmt_seconds(lo)} to {fmt_seconds(hi)} here, "
          f"measured{choice.calibration})", file=sys.stderr)
    for reason in choice.reasons:
        print(f"  - {reason}", file=sys.stderr)
    return choice.specs, (sum(choice.parts.values()), list(choice.range))


def _summary_line(summary: RunSummary, db: Path) -> str:
    unlabelled = (
        "the dataset has no labels: X-perplexity, self-confidence and margin are absent (shown as -)\n"
        if summary.labelled is False else ""
    )
    return unlabelled + (
        f"{summary.status}: scored {summary.scored} images with "
        f"{len(summary.members)} members on {summary.device} in "
        f"{summary.seconds:.1f}s, encoders on {summary.runtime or 'torch'} "
        f"({summary.errors} unreadable; "
        f"`image-triage errors --db {db}` lists them)\n"
        + (f"duplicates: {d['groups']} groups, {d['label_conflicts']} with conflicting labels "
           f"(`image-triage duplicates --db {db}` lists them)\n" if (d := summary.duplicates) else "")
        + (f"{issue_summary(i)} (`image-triage queue --db {db} --issue NAME` lists them)\n"
           if (i := summary.issues) is not None else "")
        + f"next: image-triage queue --db {db}"
    )


def _engine_options(args: argparse.Namespace) -> dict[str, Any]:
    """--engine-option KEY=VALUE (read as pool file values are), and each engine option's own flag
    (scoring.engine.registry.engine_flags: --address and --gpus-per-worker for Ray)."""
    from scoring.pool.spec import scalar

    out: dict[str, Any] = {}
    for text in args.engine_option:
        key, eq, value = text.partition("=")
        if not eq or not key.strip():
            raise CliError(f"--engine-option {text!r}: expected KEY=VALUE")
        out[key.strip()] = scalar(value.strip())
    for option in engine_flags():  # --address, --gpus-per-worker: the same as --engine-option
        value = getattr(args, f"engine_{option}", None)
        if value is not None:
            out[option] = scalar(str(value).strip())
    return out


def cmd_queue(args: argparse.Namespace) -> int:
    from scoring.store import QueueFilter

    with open_project(args.db) as project:
        filt = QueueFilter(
            given_label=resolve_label(project, args.class_) if args.class_ else None,
            status=args.status,
            reason=args.reason,
            disagrees=args.disagrees,
            search=args.search,
            duplicate=args.duplicates,
            conflict=args.conflicts,
            issue=args.issue,
            disputed=getattr(args, "disputed", False),  # `demo --headless` prints the queue with its own arguments
        )
        sort = args.sort or default_sort(project.images.labelled())
        if not args.sort and not args.json:
            view = "label view: likely label errors first" if sort == LABEL_SORT else "difficulty view"
            print(f"sorted by {sort} ({view}; --sort to change)", file=sys.stderr)
        rows = project.queue.page(filt, sort=sort, limit=args.limit)
        classes = project.classes
        name = (lambda i: classes[i] if i is not None and 0 <= i < len(classes) else "-")  # noqa: E731
        if args.json:
            out = []
            for r in rows:
                d = {k: getattr(r, k) for k in r.__dataclass_fields__ if k != "scores"} | r.scores
                d["given"] = name(r.given_label)
                d["current"] = name(r.current_label)
                d["consensus_label"] = name(r.consensus)
                out.append(d)
            print(json.dumps(out, indent=1, default=json_default))
            return 0
        # The sort's score, then each view's first (the label view's and the difficulty view's).
        shown = [score(k) for k in dict.fromkeys((sort, LABEL_SORT, DIFFICULTY_SORT)) if is_score(k)]
        widths = [max(7, len(s.key)) for s in shown]
        print(f"{'id':>7} " + " ".join(f"{s.key:>{w}}" for s, w in zip(shown, widths, strict=True))
              + f" {'given':>12} {'pool':>12} {'reason':>11} {'status':>10}  path")
        for r in rows:
            print(
                f"{r.id:>7} " + " ".join(f"{s.show(r.scores[s.key]).replace('–', '-'):>{w}}"
                                        for s, w in zip(shown, widths, strict=True))
                + f" {name(r.current_label):>12} {name(r.consensus):>12} {r.reason or '-':>11} {r.status:>10}  {for_terminal(r.path)}"
            )
        total = project.queue.queue_count(filt)
        print(f"({len(rows)} of {total} shown, sorted by {sort})", file=sys.stderr)
    return 0


def edit_command(action: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        with open_project(args.db) as project:
            if action in ("undo", "redo"):
                edit = getattr(project.edits, action)()
                if edit is None:
                    print(f"nothing to {action}")
                    return 1
            else:
                image_id = resolve_image(project, args.image)
                if action == "relabel":
                    edit = project.edits.relabel(image_id, resolve_label(project, args.label))
                else:
                    edit = getattr(project.edits, action)(image_id)
            row = project.images.image(edit.image_id)
            label = project.classes[row.current_label] if row.current_label is not None else "-"
            print(f"{edit.action}: {for_terminal(row.path)} -> label {for_terminal(label)}, status {row.status}")
        return 0

    return run


def cmd_errors(args: argparse.Namespace) -> int:
    with open_project(args.db) as project:
        rows = project.images.errors()
        for r in rows:
            print(f"{for_terminal(r.path)}\t{for_terminal(r.error)}")
        print(f"({len(rows)} unreadable images skipped)", file=sys.stderr)
    return 0


def cmd_edits(args: argparse.Namespace) -> int:
    import datetime as dt

    with open_project(args.db) as project:
        for e in project.edits.entries():
            when = dt.datetime.fromtimestamp(e.time).isoformat(timespec="seconds")
            how = f"\t{e.annotator or '-'}" + (f" ({e.via})" if e.via else "")
            print(f"{e.id}\t{when}\t{e.action}\t{e.image_id}\t{e.old_label}->{e.new_label}\t{e.old_status}->{e.new_status}"
                  f"{how}")
    return 0


def cmd_unlock(args: argparse.Namespace) -> int:
    from scoring.store.runs import writer_alive

    with open_project(args.db) as project:
        held = project.runs.writer()
        if held is None:
            print(f"{args.db}: no scoring run or re-rank holds it; nothing to clear")
            return 0
        if held.get("host") == socket.gethostname() and writer_alive(held):
            print(f"image-triage: {args.db} is held by process {held.get('pid')} on this machine, which is running; "
                  "stop it (Ctrl+C) instead", file=sys.stderr)
            return 2
        project.runs.unlock()
        print(f"{args.db}: cleared the mark of a {held.get('what', 'run')} (process {held.get('pid')} on "
              f"{held.get('host')}); score or re-rank again to continue where it stopped")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from scoring.tasks.estimate import errors_left

    with open_project(args.db) as project:
        out: dict[str, Any] = dict(project.queue.stats())
        out["issues"] = project.issues.issue_counts()
        est = errors_left(project)
        if est is not None:
            out["errors_left"] = {k: round(v, 1) if isinstance(v, float) else v for k, v in asdict(est).items()}
        print(json.dumps(out, indent=2))
        if est is None and project.images.labelled() and project.runs.active_members():
            print("no errors-left estimate: a class has fewer than 5 scored images, too few to say", file=sys.stderr)
        print(issue_summary(out["issues"]), file=sys.stderr)
        if project.team.has_team():
            from scoring.tasks.merge import agreement

            for line in agreement(project).lines():
                print(line, file=sys.stderr)
        if est is not None:
            print(f"{est.detail()} The next 100 in the queue hold about {est.next_100:.1f}"
                  + ("; you could stop here" if est.suggests_stop() else ""), file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import uuid

    from scoring.io.safewrite import marker_token
    from scoring.tasks.export import export_dataset

    open_project(args.db).close()
    cancel, token = threading.Event(), uuid.uuid4().hex
    gen = export_dataset(
        args.db, args.dest, fmt=args.format, link=args.link, force=args.force,
        audit=not args.no_audit, cancel=cancel, drop_duplicates=args.drop_duplicates, token=token,
    )
    try:
        report = progress_bar(gen)
    except KeyboardInterrupt:
        cancel.set()
        gen.close()
        if marker_token(Path(args.dest).expanduser().absolute()) == token:  # interrupted after it was in place
            print(f"\ninterrupted after the export was complete: {args.dest} holds it (a leftover of the "
                  "export it replaced is removed by the next run)", file=sys.stderr)
        else:
            print("\ncancelled: nothing was written", file=sys.stderr)
        return 130
    print(json.dumps(report, indent=2, default=json_default))
    return 0


AppOpener = Callable[..., int]
_open_app: AppOpener | None = None  # given by gui.launch, the `image-triage` command; the core never imports gui


def set_app_opener(open_app: AppOpener | None) -> None:
    global _open_app
    _open_app = open_app


def open_gui(entry: str, *a: Any, **kw: Any) -> int:
    if _open_app is None:
        raise CliError("this entry point is headless; the desktop app opens with the `image-triage` command")
    return _open_app(entry, *a, **kw)


def cmd_open(args: argparse.Namespace) -> int:
    return open_gui("open_path", args.path)


def cmd_demo(args: argparse.Namespace) -> int:
    if not args.headless:
        return open_gui("run_demo", args.dest)
    from scoring.engine.inference import score_project
    from scoring.pool.spec import demo_specs
    from scoring.tasks.demo import demo_project
    from scoring.tasks.duplicates import find_duplicates

    db = demo_project(args.dest)
    summary = progress_bar(score_project(db, demo_specs(n_images=1797), workers=0))
    groups = progress_bar(find_duplicates(db))  # as the app does after scoring
    summary.duplicates = {"groups": len(groups), "label_conflicts": sum(g.conflict for g in groups)}
    print(_summary_line(summary, db))
    print(f"the answer key (the labels flipped on purpose): {db.parent / 'demo_truth.csv'}")
    args.db, args.sort, args.limit, args.json = str(db), None, 20, False
    args.class_ = args.status = args.reason = args.search = None
    args.disagrees = args.duplicates = args.conflicts = False
    args.issue = None
    return cmd_queue(args)


