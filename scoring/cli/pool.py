"""The pool commands of the command line: the automatic pool as a pool file to edit, and a
check that a pool file loads and fits a dataset."""

from __future__ import annotations

import argparse
import json

from scoring.cli.common import fmt_seconds, json_default


def cmd_pool_auto(args: argparse.Namespace) -> int:
    from scoring.device import pick_device
    from scoring.io.formats import open_dataset
    from scoring.pool.spec import dump_pool_toml
    from scoring.tasks.autopool import auto_pool
    from scoring.tasks.budget import budget_pool, parse_budget

    budget = None if args.budget is None else parse_budget(args.budget)
    dataset = open_dataset(args.dataset, layout=args.layout, follow_symlinks=args.follow_symlinks)
    choice = (auto_pool(dataset, pick_device(args.device), args.thorough) if budget is None
              else budget_pool(dataset, budget, pick_device(args.device), args.thorough))
    cmd = (f"image-triage score {args.dataset}{' --thorough' if args.thorough else ''}"
           f"{f' --budget {args.budget}' if args.budget else ''}")
    lo, hi = choice.range
    notes = [f"the pool `{cmd}` would choose, {fmt_seconds(lo)} to {fmt_seconds(hi)} here:"]
    print(dump_pool_toml(choice.specs, notes + [f"- {r}" for r in choice.reasons]), end="")
    return 0


def cmd_pool_check(args: argparse.Namespace) -> int:
    from scoring.tasks.poolcheck import check_pool

    report = check_pool(args.poolfile, args.dataset, device=args.device)
    print(json.dumps(report, indent=2, default=json_default))
    return 0
