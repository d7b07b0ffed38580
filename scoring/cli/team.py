"""The team commands of the command line: ``share`` a scored project as one review package per
annotator, ``merge`` the packages back (``stats`` prints the agreement)."""

from __future__ import annotations

import argparse
import sys

from scoring.cli.common import CliError, open_project


def _fraction(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (a fraction of the queue, 0 to 1)") from None
    if not 0.0 <= x <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction of the queue (0 to 1)")
    return x


def cmd_share(args: argparse.Namespace) -> int:
    from scoring.tasks.share import share_project

    open_project(args.db).close()
    made = share_project(args.db, args.to, args.annotators.split(","), overlap=args.overlap, limit=args.limit,
                         view=args.view, with_images=args.with_images,
                         progress=lambda line: print(line, file=sys.stderr))
    for m in made:
        where = f"; its images in {m.images_folder}" if m.images_folder else ""
        print(f"{m.path}  {m.annotator}: {m.images} images, {m.overlap} also in another package (blind){where}")
    print(f"each annotator opens their file: image-triage open {made[0].path}", file=sys.stderr)
    print(f"then merge them back: image-triage merge --db {args.db} {' '.join(str(m.path) for m in made)}",
          file=sys.stderr)
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from scoring.tasks.merge import agreement, merge_packages

    if not args.packages:
        raise CliError("name the package files to merge (image-triage merge --db PROJECT ana.triage.db ...)")
    with open_project(args.db) as project:
        for report in merge_packages(project, args.packages):
            print(report.line())
        disputed = len(project.team.disputed_ids())
        for line in agreement(project).lines():
            print(line)
        if disputed:
            print(f"{disputed} images are disputed: open the project and choose the filter 'Disputed' to decide them "
                  f"(or image-triage queue --db {args.db} --disputed)", file=sys.stderr)
    return 0


def add_team_commands(add, db_arg) -> None:  # type: ignore[no-untyped-def]
    """The parsers of this module's commands (called by scoring.cli.main)."""
    sp = add("share", "write one review package per annotator: their slice of the queue, blind overlap", cmd_share)
    db_arg(sp)
    sp.add_argument("--to", required=True, help="the folder to write the packages into (<name>.triage.db each)")
    sp.add_argument("--annotators", required=True, help="comma-separated names, e.g. ana,ben,chloe")
    sp.add_argument("--overlap", type=_fraction, default=0.1,
                    help="the fraction of the queue that two annotators review, blind, for the agreement (default 0.1)")
    sp.add_argument("--limit", type=int, default=None, help="share only the first N unreviewed images of the queue")
    sp.add_argument("--view", choices=["label", "hard"], default="label",
                    help="deal in the order of the label view (likely label errors first) or the difficulty view")
    sp.add_argument("--with-images", action="store_true",
                    help="copy each slice's images beside its package (for a laptop that is offline)")

    sp = add("merge", "bring annotators' packages back into the project: decisions, disputes, agreement", cmd_merge)
    db_arg(sp)
    sp.add_argument("packages", nargs="*", help="package files (.triage.db) made by `image-triage share`")
