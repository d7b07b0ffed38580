"""The interpreter's garbage collector kept out of the window's way.

A full collection walks every container object the process holds while it holds the interpreter
lock, whichever thread it runs on: after torch, torchvision and Qt are imported that is hundreds
of thousands of objects, and one collection started by a pool thread's allocation stalled the
event loop for 280-1030 ms at the end of the demo's scoring (seen with ``py-spy dump --native``
from benchmarks/bench_stalls.py: the window's thread waiting for the lock, the holder in
``gc_collect_main``; a full collection took 281 ms here with torch, torchvision, onnxruntime and
Qt imported, 0 ms once they were frozen). :func:`settle` collects, then freezes what survives
(``gc.freeze``: modules, classes, widgets, what lives as long as the app) so later collections walk
only what was made since. The window settles while it is being built (the one long collection,
before the first key) and when a chain of jobs ends (scoring, then its duplicate search): the
first scoring's imports (onnxruntime, faiss, torchvision: 208,000 objects, 151 ms to walk) are
walked once, when nothing else competes, and never again. Settling between the jobs of a chain
put that walk beside the next job's start (271 ms; 175-193 ms at the chain's end).
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Collect, then freeze the survivors out of every later collection."""
    gc.collect()
    gc.freeze()
