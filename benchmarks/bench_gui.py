"""Benchmark: the app on a synthetic project of 1,000,000 images.

Prints (a) the time to open the project and show the first page of the queue with the first
image in the detail pane, and (b) the time from a relabel keypress to the next image shown,
median and worst over 50 presses, with the detail pane's evidence (duplicate group, nearest
neighbours in two classes over stored ``--features``-wide features) once its index is built
off the GUI thread (time printed). Targets: (a) < 1 s, (b) < 50 ms.

Usage: python benchmarks/bench_gui.py [--images 1000000] [--features 128]   (QT_QPA_PLATFORM=offscreen is fine)
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def build(root: Path, n: int, k: int = 10, dims: int = 128) -> Path:
    from PIL import Image

    from scoring.io.datasets import Dataset, ImageRecord
    from scoring.store import Project

    data = root / "data"
    (data / "img").mkdir(parents=True)
    classes = [f"class{i}" for i in range(k)]
    db = root / "big.triage.db"
    seed_img = data / "seed.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(seed_img)
    ds = Dataset(data, "csv", data / "m.csv", classes, [ImageRecord("seed.png", classes[0])])
    p = Project.create(db, ds)
    rng = np.random.default_rng(1)
    c = 1 + rng.random(n) * (k - 1)
    given = rng.integers(0, k, n)
    cons = np.where(rng.random(n) < 0.9, given, rng.integers(0, k, n))
    rows = (
        (f"img/{i:07d}.png", int(given[i]), int(given[i]), "unreviewed", float(c[i]), float(rng.random()),
         float(c[i] / 3), float(rng.random() * 0.5), int(cons[i]), float(rng.random()), float(rng.random()),
         float(rng.random() * 2 - 1), "[[1, 0.5], [2, 0.3]]", "[[1, 2]]")
        for i in range(n)
    )
    with p._tx() as conn:
        conn.execute("DELETE FROM images")
        conn.executemany(
            "INSERT INTO images(path, given_label, current_label, status, c_perplexity, x_perplexity, entropy_of_mean,"
            " mutual_info, consensus, consensus_prob, self_confidence, margin, top_c, top_x) VALUES"
            " (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
    # the first images of the queue exist on disk (hard links to one small PNG)
    for r in p.queue.page(limit=300):
        os.link(seed_img, data / r.path)
    if dims:  # stored features, as a backbone member leaves them, for the neighbour evidence
        ids = p.images.scorable_ids()
        for s in range(0, len(ids), 100_000):
            part = ids[s : s + 100_000]
            p.cache.put_features("bench-features", part, rng.standard_normal((len(part), dims), dtype=np.float32))
        p.cache.set_embedding("bench-features", f"synthetic {dims}-d")
    p.close()
    return db


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=1_000_000)
    ap.add_argument("--features", type=int, default=128, help="width of the stored features (0: none)")
    args = ap.parse_args()
    from PySide6.QtCore import QModelIndex, QSettings, Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    from gui.main_window import MainWindow

    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        db = build(Path(tmp), args.images, dims=args.features)
        print(f"built a synthetic project of {args.images:,} images in {time.perf_counter() - t0:.1f}s")
        win = MainWindow(QSettings(str(Path(tmp) / "s.ini"), QSettings.Format.IniFormat))
        win.show()
        app.processEvents()
        t0 = time.perf_counter()
        win.open_project(db, ask_resume=False)
        app.processEvents()
        t_open = time.perf_counter() - t0
        assert win.model is not None and win.model.rowCount() > 0
        t0 = time.perf_counter()
        while args.features and win.detail.evidence.index is None and time.perf_counter() - t0 < 600:
            app.processEvents()
            time.sleep(0.05)
        if args.features:
            print(f"neighbour index built off the GUI thread in {time.perf_counter() - t0:.1f}s "
                  f"({win.detail.evidence.index.feats.nbytes / 2**20:.0f} MB)")
        win.view.setFocus()
        times = []
        for i in range(50):
            before = win.review.current_id()
            t0 = time.perf_counter()
            QTest.keyClick(win.view, Qt.Key.Key_1 + (i % 9))
            app.processEvents()
            times.append(time.perf_counter() - t0)
            assert win.review.current_id() != before
        # scrolling: the view asks for the next page as the user reaches the end of the loaded rows
        page_times = []
        for _ in range(100):
            t0 = time.perf_counter()
            win.model.fetchMore(QModelIndex())
            app.processEvents()
            page_times.append(time.perf_counter() - t0)
        loaded, page_size = win.model.rowCount(), win.model.page_size
        win.view.scrollToBottom()
        t0 = time.perf_counter()
        app.processEvents()
        t_paint = time.perf_counter() - t0
        win.close()
        print(f"scrolling: 100 pages of {page_size} rows fetched ({loaded:,} rows loaded); "
              f"per page median {statistics.median(page_times) * 1000:.1f} ms, worst {max(page_times) * 1000:.1f} ms; "
              f"jump to the bottom and repaint {t_paint * 1000:.1f} ms")
        print(f"(a) open + first page + first image shown: {t_open * 1000:8.1f} ms   (target < 1000 ms)")
        print(f"(b) relabel keypress -> next image shown:  median {statistics.median(times) * 1000:.1f} ms,"
              f" worst {max(times) * 1000:.1f} ms   (target < 50 ms)")
        print(f"ratios: a/target = {t_open / 1.0:.2f}, b(median)/target = {statistics.median(times) / 0.05:.2f}")
        slow = sorted(range(len(times)), key=lambda i: -times[i])[:3]
        print("slowest presses (index: ms): " + ", ".join(f"{i}: {times[i] * 1000:.0f}" for i in slow))


if __name__ == "__main__":
    main()
