"""The evidence commands of the command line: duplicate groups (and keeping one of a group),
an image's nearest neighbours within a class, and re-ranking the queue from the decisions made."""

from __future__ import annotations

import argparse
import json
import sys

from scoring.cli.common import (
    CliError,
    for_terminal,
    open_project,
    progress_bar,
    resolve_image,
    resolve_label,
)
from scoring.vocabulary import LABEL_SORT, label_sorts


def cmd_duplicates(args: argparse.Namespace) -> int:
    from scoring.tasks.duplicates import DEFAULT_THRESHOLD, find_duplicates, stored_groups

    with open_project(args.db) as project:
        searched = project.dupes.duplicates_searched()
        groups = stored_groups(project)
    if args.search or args.threshold is not None or not searched:  # a search: after scoring, or asked
        groups = progress_bar(find_duplicates(args.db, threshold=args.threshold or DEFAULT_THRESHOLD),
                               quiet=args.json)
    with open_project(args.db) as project:
        classes = project.classes
        paths: dict[int, str] = {}
        for g in groups:
            paths.update(zip(g.image_ids, project.images.paths_of(g.image_ids), strict=True))
    name = (lambda i: classes[i] if i is not None and 0 <= i < len(classes) else "-")  # noqa: E731
    if args.json:
        print(json.dumps([{"group": g.group_id, "exact": g.exact, "label_conflict": g.conflict,
                           "images": [{"id": i, "path": paths[i], "label": name(lab)} for i, lab in zip(g.image_ids, g.labels, strict=True)]}
                          for g in groups], indent=1))
        return 0
    for g in groups:
        mark = " LABEL CONFLICT" if g.conflict else ""
        print(f"group {g.group_id} ({'exact' if g.exact else 'near'}, {len(g.image_ids)} images){mark}")
        for i, lab in zip(g.image_ids, g.labels, strict=True):
            print(f"  {i:>7} {name(lab):>12}  {for_terminal(paths[i])}")
    n_conf = sum(g.conflict for g in groups)
    print(f"({len(groups)} groups, {sum(len(g.image_ids) for g in groups)} images, {n_conf} label conflicts; "
          f"image-triage queue --db {args.db} --conflicts shows them)", file=sys.stderr)
    return 0


def cmd_keep_group(args: argparse.Namespace) -> int:
    with open_project(args.db) as project:
        image_id = resolve_image(project, args.image)
        remove, why = project.edits.keep_group_plan(image_id)
        if why and not args.yes:  # a change of many images asks first: here, by --yes
            raise CliError(f"keep-group {args.image}: {why}; run again with --yes if that is what you want")
        project.edits.keep_group(image_id)
        group = project.dupes.group_of(image_id)
        for i, path in zip(group, project.images.paths_of(group), strict=True):
            print(f"{'kept' if i == image_id else 'removed' if i in remove else 'left as decided'}: {for_terminal(path)}")
        print("(one decision: `image-triage undo` brings the group back)", file=sys.stderr)
    return 0


def cmd_neighbours(args: argparse.Namespace) -> int:
    from scoring.evidence.neighbours import NeighbourIndex

    with open_project(args.db) as project:
        image_id = resolve_image(project, args.image)
        index = NeighbourIndex.build(project)
        if index is None:
            raise CliError(f"{args.db}: no stored features to compare by; score the dataset first")
        row = project.queue.queue_row(image_id)
        if row.error is not None:
            raise CliError(f"{row.path} could not be read when scored ({row.error}), so it has no neighbours")
        if index.row_of.get(int(image_id)) is None:
            raise CliError(f"{row.path} has no stored features yet; score the dataset first")
        labels = [resolve_label(project, args.label)] if args.label else [
            lab for lab in dict.fromkeys([row.current_label, row.consensus]) if lab is not None]
        if not labels:
            raise CliError(f"{row.path} has no label and the pool no consensus for it; give --label CLASS")
        out = []
        for lab in labels:
            near = index.near(project, image_id, lab, k=args.k)
            paths = project.images.paths_of([n.id for n in near])
            out.append({"label": project.classes[lab], "neighbours": [
                {"id": n.id, "path": p, "similarity": round(n.similarity, 4)} for n, p in zip(near, paths, strict=True)]})
    if args.json:
        print(json.dumps({"image": row.path, "embedding": index.embedding, "by_label": out}, indent=1))
        return 0
    print(f"{for_terminal(row.path)}: most like it, by {index.embedding}")
    for block in out:
        print(f"  among {block['label']}:")
        for n in block["neighbours"]:
            print(f"    {n['similarity']:6.3f}  {n['id']:>7}  {for_terminal(n['path'])}")
    return 0


def cmd_rerank(args: argparse.Namespace) -> int:
    from scoring.tasks.rerank import rerank

    open_project(args.db).close()
    out = progress_bar(rerank(args.db, args.sort, prune=not args.no_prune, networks=args.networks,
                               trust=args.trust_checkpoint), quiet=args.json)
    if args.json:
        print(json.dumps(out.__dict__, indent=1))
    else:
        print(out.line())
    return 0 if out.refitted else 1


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _similarity(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"a cosine similarity between 0 and 1 is needed, got {value}")
    return value


def add_evidence_commands(add, db_arg) -> None:  # type: ignore[no-untyped-def]
    """The parsers of this module's commands (called by scoring.cli.main)."""
    sp = add("duplicates", "find exact and near-duplicate images, grouped; label conflicts marked", cmd_duplicates)
    db_arg(sp)
    sp.add_argument("--search", action="store_true",
                    help="search again (scoring searches after every run; without this the stored groups are listed at once)")
    sp.add_argument("--threshold", type=_similarity, default=None,
                    help="cosine similarity of 16x16 thumbnails from which two images are near-duplicates "
                         "(default 0.97; pairs that pass are verified at 32x32)")
    sp.add_argument("--json", action="store_true")

    sp = add("keep-group", "keep one image of a duplicate group and remove the others (one undoable decision)", cmd_keep_group)
    db_arg(sp)
    sp.add_argument("--yes", action="store_true",
                    help="go ahead when it removes more than one image or keeps a label the pool disagrees with")
    sp.add_argument("image", help="image id or path relative to the dataset root")

    sp = add("neighbours", "an image's nearest neighbours among its label and the pool's label (or --label)", cmd_neighbours)
    db_arg(sp)
    sp.add_argument("image", help="image id or path relative to the dataset root")
    sp.add_argument("--label", help="only this class")
    sp.add_argument("-k", type=_at_least_one, default=6, help="how many per class (default 6)")
    sp.add_argument("--json", action="store_true")

    sp = add("rerank", "refit the pool's cross-fitted heads on the decisions so far and re-rank the unreviewed images",
             cmd_rerank)
    db_arg(sp)
    sp.add_argument("--sort", default=LABEL_SORT, choices=label_sorts(),
                    help=f"the label-aware queue whose movement is reported (default {LABEL_SORT})")
    sp.add_argument("--no-prune", action="store_true",
                    help="train on the unreviewed suspects too (by default they are left out of the refit)")
    sp.add_argument("--networks", action="store_true",
                    help="refit the trained networks too (scratch, finetune members: minutes, not seconds)")
    sp.add_argument("--trust-checkpoint", action="store_true",
                    help="allow the pool's checkpoints that run code when unpickled (trust stored in a project is ignored)")
    sp.add_argument("--json", action="store_true")
