"""The ``image-triage`` command line: headless scoring, the queue, edits and export.

Every edit here is the same call into :class:`scoring.store.Project` that the GUI makes, so
the command line and the app can never disagree. With no command, or ``open``/``demo``, the
desktop app starts through the ``open_app`` callback that ``gui.launch`` (the ``image-triage``
command) passes in: the core never imports Qt or the GUI, not even lazily.
"""

from __future__ import annotations

import argparse
import logging
import sqlite3
import sys
from collections.abc import Callable, Sequence

from scoring.cli.commands import (
    AppOpener,
    cmd_demo,
    cmd_edits,
    cmd_errors,
    cmd_export,
    cmd_open,
    cmd_queue,
    cmd_score,
    cmd_stats,
    cmd_unlock,
    edit_command,
    open_gui,
    set_app_opener,
)
from scoring.cli.evidence import add_evidence_commands
from scoring.cli.pool import cmd_pool_auto, cmd_pool_check
from scoring.cli.team import add_team_commands
from scoring.device import RUNTIMES
from scoring.engine.registry import engine_flags, engines
from scoring.errors import ImageTriageError
from scoring.io.formats import export_formats, layouts
from scoring.tasks.export import LINKS
from scoring.vocabulary import ISSUES, REASONS, STATUSES, scores, sort_keys

log = logging.getLogger("image_triage")


# ----------------------------------------------------------------------------- parser


def whole_number(lo: int, hi: int) -> Callable[[str], int]:
    """An argparse type: a whole number in [lo, hi], or argparse's one-line usage error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{value} is out of range: use {lo} to {hi:,}")
        return value

    return parse

EXAMPLES = {
    "score": "image-triage score ~/data/pets                # the automatic pool, chosen and explained\n"
    "  image-triage score ~/data/cifar10-test --cifar-resnets ~/models/cifar10-resnet --db cifar.triage.db\n"
    "  image-triage score ~/data/pets --pool pool.toml --device cuda --batch-size 256\n"
    "  image-triage score ~/data/digits --scratch\n"
    "  image-triage score ~/data/cifar10-test --budget 10m    # the richest automatic pool that fits 10 minutes here",
    "queue": "image-triage queue --db cifar.triage.db --limit 20 --sort mutual_info --class cat",
    "relabel": "image-triage relabel --db cifar.triage.db cat/01234.jpg dog",
    "remove": "image-triage remove --db cifar.triage.db cat/01234.jpg",
    "restore": "image-triage restore --db cifar.triage.db cat/01234.jpg",
    "keep": "image-triage keep --db cifar.triage.db cat/01234.jpg",
    "undo": "image-triage undo --db cifar.triage.db",
    "redo": "image-triage redo --db cifar.triage.db",
    "errors": "image-triage errors --db cifar.triage.db",
    "edits": "image-triage edits --db cifar.triage.db",
    "stats": "image-triage stats --db cifar.triage.db",
    "unlock": "image-triage unlock --db cifar.triage.db   # a run on a machine that went down left it held",
    "duplicates": "image-triage duplicates --db cifar.triage.db --json",
    "keep-group": "image-triage keep-group --db cifar.triage.db cat/01234.jpg",
    "neighbours": "image-triage neighbours --db cifar.triage.db cat/01234.jpg",
    "rerank": "image-triage rerank --db cifar.triage.db   # after a batch of decisions",
    "export": "image-triage export --db cifar.triage.db ~/data/cifar10-clean --format imagefolder --link hardlink",
    "pool": "image-triage pool check pool.toml ~/data/cifar10-test",
    "pool auto": "image-triage pool auto ~/data/pets > pool.toml   # then edit it and score with --pool pool.toml",
    "open": "image-triage open ~/data/cifar10-test",
    "share": "image-triage share --db cifar.triage.db --to ~/share --annotators ana,ben,chloe --overlap 0.1",
    "merge": "image-triage merge --db cifar.triage.db ~/share/ana.triage.db ~/share/ben.triage.db",
    "demo": "image-triage demo            # build, score and open the demo\n  image-triage demo --headless # score it and print the queue",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="image-triage",
        description="Find hard, ambiguous and mislabelled images with a pool of classifiers. "
        "With no command, opens the desktop app.",
        epilog="example:\n  image-triage demo\n  " + EXAMPLES["score"].split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log more")
    p.add_argument("--offline", action="store_true",
                   help="never download weights (also IMAGE_TRIAGE_OFFLINE=1); missing ones are an error naming the file")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help_: str, func: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        sp = sub.add_parser(
            name, help=help_, description=help_, epilog="example:\n  " + EXAMPLES[name],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sp.set_defaults(func=func)
        return sp

    def db_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--db", required=True, help="the project file (.triage.db)")

    sp = add("score", "score a dataset's images with a pool (resumes where a previous run stopped)", cmd_score)
    sp.add_argument("dataset", help="ImageFolder root, CSV manifest (path,label), folder of images, or a project file")
    sp.add_argument("--db", help="project file (default: beside the dataset, <name>.triage.db)")
    sp.add_argument("--layout", choices=list(layouts()), help="force the dataset layout: " + "; ".join(
        f"{name}: {text}" for name, text in layouts().items()))
    sp.add_argument("--follow-symlinks", action="store_true",
                    help="follow symbolic links that lead outside the dataset folder (never followed twice)")
    sp.add_argument("--pool", action="append", metavar="POOLFILE", help="pool file (TOML or JSON); repeatable")
    sp.add_argument("--member", action="append", metavar="SPEC",
                    help="one member, e.g. checkpoint:path=r20.th,arch=cifar_resnet20,classes_file=c.txt,size=32; repeatable")
    sp.add_argument("--cifar-resnets", metavar="DIR", help="the four CIFAR-10 ResNets resnet{20,32,44,56}.th in DIR as checkpoint members")
    sp.add_argument("--scratch", action="store_true", help="add small networks trained from scratch with K-fold cross-fitting")
    sp.add_argument("--thorough", action="store_true",
                    help="with the automatic pool (no pool options): also fine-tune a network in 5 folds (slow on a CPU)")
    sp.add_argument("--budget", metavar="TIME", help="the time you have, e.g. 3m, 10m, 1h: the automatic pool is the richest "
                    "that fits it, measured here (default: the quick automatic pool)")
    sp.add_argument("--trust-checkpoint", action="store_true", help="allow checkpoints that run code when unpickled (only for files you trust)")
    sp.add_argument("--batch-size", type=whole_number(1, 65_536), default=64, help="images per forward pass (1-65536)")
    sp.add_argument("--device", default="auto", help="auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N, mps")
    sp.add_argument("--workers", type=whole_number(0, 256), default=None, help="decoding worker processes (default: chosen by timing the first batch: none where the models take over 4 times as long as decoding, else half the cores, 2 to 4)")
    sp.add_argument("--engine", choices=list(engines()), default="local",
                    help="; ".join(f"{e.name}: {e.help}" for e in engines().values()))
    sp.add_argument("--engine-option", action="append", default=[], metavar="KEY=VALUE",
                    help="an option of the engine: " + "; ".join(
                        f"{e.name} {k}: {h}" for e in engines().values() for k, h in e.options.items()))
    sp.add_argument("--runtime", choices=list(RUNTIMES), default="auto",
                    help="where frozen encoders run: auto (ONNX Runtime on a CPU when installed and its check passes, "
                         "else torch), torch, or onnx")
    for option, (names, text) in engine_flags().items():  # each engine's own options, as flags too
        sp.add_argument(f"--{option.replace('_', '-')}", dest=f"engine_{option}", metavar="VALUE",
                        help=f"with --engine {'/'.join(names)}: {text}")
    sp.add_argument("--json", action="store_true", help="print the run summary as JSON")
    sp.add_argument("--profile", action="store_true",
                    help="print the share of time in decode, forward, store, metrics and fit (is decode or the GPU the bottleneck?)")
    sp.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    sp.add_argument("--no-duplicates", action="store_true",
                    help="do not group duplicates after scoring (`image-triage duplicates` does it later)")

    sp = add("queue", "print the review queue, hardest first", cmd_queue)
    db_arg(sp)
    sp.add_argument("--sort", default=None, choices=sort_keys(), metavar="KEY",
                    help="; ".join(f"{s.key}: {s.sort_label}" for s in scores()) + "; path; id")
    sp.add_argument("--class", dest="class_", metavar="C", help="only images whose given label is C")
    sp.add_argument("--status", choices=STATUSES)
    sp.add_argument("--reason", choices=REASONS)
    sp.add_argument("--disagrees", action="store_true", help="only images whose label differs from the pool's consensus")
    sp.add_argument("--search", help="substring of the path")
    sp.add_argument("--duplicates", action="store_true", help="only images in a duplicate group (run `duplicates` first)")
    sp.add_argument("--conflicts", action="store_true", help="only duplicates whose group carries different labels")
    sp.add_argument("--issue", choices=ISSUES, help="only images with this dataset issue (found when scoring)")
    sp.add_argument("--disputed", action="store_true", help="only images merged packages decided differently, not yet settled")
    sp.add_argument("--limit", type=whole_number(1, 10**9), default=50, help="rows to print (1 or more)")
    sp.add_argument("--json", action="store_true")

    for name, help_ in [
        ("relabel", "give an image a new label"),
        ("remove", "leave an image out of the export"),
        ("restore", "bring a removed image back"),
        ("keep", "confirm an image's label"),
    ]:
        sp = add(name, help_, edit_command(name))
        db_arg(sp)
        sp.add_argument("image", help="image id or path relative to the dataset root")
        if name == "relabel":
            sp.add_argument("label", help="class name (or its index)")
    for name, help_ in [("undo", "undo the last edit (any process, after a restart too)"), ("redo", "redo the last undone edit")]:
        sp = add(name, help_, edit_command(name))
        db_arg(sp)

    db_arg(add("errors", "list the images that could not be read, with the reason", cmd_errors))
    db_arg(add("edits", "print the edits log", cmd_edits))
    db_arg(add("stats", "counts: reviewed, relabelled, removed, errors", cmd_stats))
    db_arg(add("unlock", "clear the mark of a scoring run or re-rank that died on another machine", cmd_unlock))

    sp = add("export", "export the cleaned dataset (originals are never touched)", cmd_export)
    db_arg(sp)
    sp.add_argument("dest", help="destination folder (must be empty or absent, unless --force)")
    sp.add_argument("--format", default="imagefolder", choices=list(export_formats()),
                    help="; ".join(f"{f.name}: {f.writes or f.help}" for f in export_formats().values()))
    sp.add_argument("--link", default="hardlink", choices=list(LINKS))
    sp.add_argument("--force", action="store_true", help="replace a non-empty destination")
    sp.add_argument("--no-audit", action="store_true", help="do not list removed images")
    sp.add_argument("--drop-duplicates", action="store_true",
                    help="keep one image per duplicate group (the one you kept, else the first by id); run `duplicates` first")

    add_evidence_commands(add, db_arg)
    add_team_commands(add, db_arg)

    sp = add("pool", "pool tools: `pool auto DATASET` prints the automatic pool; `pool check POOLFILE [DATASET]` measures one", cmd_pool_check)
    pool_sub = sp.add_subparsers(dest="pool_command", metavar="auto|check", required=True)
    auto = pool_sub.add_parser("auto", help="print the pool file `score DATASET` would choose, with why and the time",
                               epilog="example:\n  " + EXAMPLES["pool auto"], formatter_class=argparse.RawDescriptionHelpFormatter)
    auto.add_argument("dataset")
    auto.add_argument("--layout", choices=list(layouts()))
    auto.add_argument("--follow-symlinks", action="store_true")
    auto.add_argument("--device", default="auto")
    auto.add_argument("--thorough", action="store_true", help="include fine-tuned members even without a GPU")
    auto.add_argument("--budget", metavar="TIME", help="the time you have, e.g. 3m, 10m, 1h: the richest pool that fits it")
    auto.set_defaults(func=cmd_pool_auto)
    chk = pool_sub.add_parser("check", help="load every member: classes, preprocessing, device, images/s",
                              epilog="example:\n  " + EXAMPLES["pool"], formatter_class=argparse.RawDescriptionHelpFormatter)
    chk.add_argument("poolfile")
    chk.add_argument("dataset", nargs="?")
    chk.add_argument("--device", default="auto")
    chk.set_defaults(func=cmd_pool_check)

    sp = add("open", "open a dataset, CSV manifest or project in the app", cmd_open)
    sp.add_argument("path")

    sp = add("demo", "build the built-in demo (handwritten digits with planted label errors), score it, open it", cmd_demo)
    sp.add_argument("--dest", help="where to build the demo (default: the user data folder)")
    sp.add_argument("--headless", action="store_true", help="no window: score and print the queue")
    return p


def main(argv: Sequence[str] | None = None, open_app: AppOpener | None = None) -> int:
    """The command line; ``open_app(entry, *args)`` starts the desktop app (see gui.launch)."""
    set_app_opener(open_app)
    from scoring import plugins

    plugins.load()  # installed plugins' scores, kinds, engines and formats, before the parser offers them
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.offline:
        from scoring.pool.weights import set_offline

        set_offline(True)
    if args.command is None:
        return open_gui("main", [])
    try:
        return int(args.func(args))
    except ImageTriageError as exc:
        # Every expected failure (DatasetError, PoolError, ProjectError, ExportError, unsafe
        # paths...) is one sentence naming the file and what to do: show it, not a traceback.
        if args.verbose:
            raise
        print(f"image-triage: {exc}", file=sys.stderr)
        return 2
    except sqlite3.Error as exc:  # a damaged project file that got past the checks at open
        if args.verbose:
            raise
        db = getattr(args, "db", None) or getattr(args, "dataset", "the project")
        print(f"image-triage: {db}: the project file is damaged or not a project ({exc}); "
              "open a .triage.db made by image-triage, or score the dataset into a new one", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl+C in a stage that has no cancel check of its own (a survey, an unpack)
        if args.verbose:
            raise
        print("image-triage: stopped (Ctrl+C); nothing half-made is kept: run the same command again to continue",
              file=sys.stderr)
        return 130
    except OSError as exc:  # the system refused (permissions, a vanished file): name the file
        if args.verbose:
            raise
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"image-triage: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
