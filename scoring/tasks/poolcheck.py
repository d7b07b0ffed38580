"""``image-triage pool check``: load every member of a pool file and measure it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from scoring.device import pick_device


def check_pool(
    pool_file: str | Path,
    dataset: str | Path | None = None,
    *,
    device: str = "auto",
    n_images: int = 64,
) -> dict[str, Any]:
    """Build each member, report its classes, preprocessing and forward images/s on ``device``.

    With a dataset, members are matched to its classes (mismatches raise PoolError naming both
    lists) and timed on its first images; without one, on random inputs of the member's size.
    """
    from scoring.io.decoding import ImageDecodeError, load_image
    from scoring.io.formats import open_dataset
    from scoring.pool.spec import build_pool, load_pool_file

    specs = load_pool_file(pool_file)
    dev = pick_device(device)
    images: list[Any] = []
    if dataset is not None:
        ds = open_dataset(dataset)
        classes = ds.classes
        for r in ds.records:
            if len(images) == n_images:
                break
            try:
                images.append(load_image(ds.abspath(r.path)))
            except ImageDecodeError:
                continue  # unreadable files are scoring's business (recorded there), not the check's
    else:
        classes = sorted({c for s in specs for c in s.get("classes", [])})
    pool = build_pool(specs, classes)
    report: dict[str, Any] = {"device": str(dev), "pool_fingerprint": pool.fingerprint, "members": []}
    timed: dict[str, float] = {}
    for enc in pool.encoders():
        pp = enc.preprocess
        if images:
            x = torch.stack([pp(im) for im in images])
        else:
            x = torch.randn(n_images, 1 if pp.grayscale else 3, pp.size, pp.size)
        module = enc.module.to(dev).eval()
        with torch.inference_mode():
            module(x[:2].to(dev))  # warm-up
            t0 = time.perf_counter()
            module(x.to(dev))
            timed[enc.key] = len(x) / max(time.perf_counter() - t0, 1e-9)
    for m in pool.members:
        d = m.describe()
        d["device"] = str(dev)
        d["forward_images_per_s"] = round(timed[m.encoder.key], 1)
        d["fitted_on_dataset"] = m.fitted
        report["members"].append(d)
    return report
