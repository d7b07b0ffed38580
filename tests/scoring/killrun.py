"""Child process for the kill/resume tests: scores a project with the tiny pool, slowly,
printing one line per committed batch so the parent can kill it part-way."""

from __future__ import annotations

import sys

from scoring.engine.inference import score_project
from scoring.store import Project
from tests.scoring.tinypool import tiny_pool


def main(db: str, delay: float) -> None:
    with Project.open(db) as p:
        classes = p.classes
    for prog in score_project(db, pool=tiny_pool(classes, delay=delay), batch_size=2, workers=0):
        print(prog.stage, prog.done, prog.total, flush=True)
    print("finished", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
