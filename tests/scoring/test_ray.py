"""The Ray engine gives the local engine's scores, and resumes like it."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from scoring.engine.inference import score_project
from scoring.io.formats import open_dataset
from scoring.pool.models.registry import get_model
from scoring.progress import drain
from scoring.store import Project
from tests.scoring.tinypool import make_imagefolder

ray = pytest.importorskip("ray", reason="the Ray extra is not installed: pip install 'image-triage[ray]'")


@pytest.fixture(scope="module")
def local_ray():  # type: ignore[no-untyped-def]
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    yield
    ray.shutdown()


def _specs(tmp: Path) -> list[dict]:
    torch.manual_seed(0)
    torch.save(get_model("tiny_mlp", num_classes=3, size=16).state_dict(), tmp / "m.pth")
    return [
        {"name": "ck", "kind": "checkpoint", "path": str(tmp / "m.pth"), "arch": "tiny_mlp",
         "classes": ["blue", "green", "red"], "preprocess": {"size": 16}},
        {"name": "s", "kind": "scratch", "arch": "tiny_mlp", "epochs": 3, "folds": 2, "seeds": [0],
         "preprocess": {"size": 8}},
    ]


def _scores(db: Path) -> dict[str, tuple]:
    with Project.open(db) as p:
        return {r.path: (r.scores["c_perplexity"], r.scores["x_perplexity"], r.scores["mutual_info"], r.consensus) for r in p.queue.page(limit=1000)}


@pytest.mark.slow
def test_ray_engine_matches_the_local_engine_including_after_an_interruption(local_ray, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = make_imagefolder(tmp_path / "data", per_class=8)
    specs = _specs(tmp_path)
    local, distributed = tmp_path / "local.triage.db", tmp_path / "ray.triage.db"
    for db in (local, distributed):
        Project.create(db, open_dataset(data)).close()
    drain(score_project(local, specs, batch_size=4, workers=0))

    cancel = threading.Event()
    for prog in score_project(distributed, specs, batch_size=4, workers=2, engine="ray", cancel=cancel):
        if prog.stage == "infer" and prog.done >= 4:
            cancel.set()  # interrupted part-way
    with Project.open(distributed) as p:
        assert p.runs.history()[-1]["status"] == "cancelled"
    summary = drain(score_project(distributed, specs, batch_size=4, workers=2, engine="ray"))
    assert summary.status == "done" and summary.scored == 24

    want, got = _scores(local), _scores(distributed)
    assert got.keys() == want.keys() and len(got) == 24
    for path in want:
        np.testing.assert_allclose(np.array(got[path][:3], float), np.array(want[path][:3], float), atol=2e-3, err_msg=path)
        assert got[path][3] == want[path][3]
    with Project.open(distributed) as p:
        assert {r.path for r in p.images.errors()} == {"red/broken.png", "green/empty.jpg"}


def test_images_given_as_uris_score_like_paths_on_both_engines(local_ray, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Object-storage URIs in a manifest (file:// here: the same pyarrow file systems as s3://)."""
    from scoring.tasks.export import run_export

    data = make_imagefolder(tmp_path / "data", per_class=4, corrupt=False)
    specs = _specs(tmp_path)[:1]
    ds = open_dataset(data)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "uris.csv").write_text(
        "path,label\n" + "".join(f"file://{ds.abspath(r.path)},{r.label}\n" for r in ds.records)
    )
    uri_ds = open_dataset(tmp_path / "m" / "uris.csv")
    assert uri_ds.records[0].path.startswith("file:///") and uri_ds.abspath(uri_ds.records[0].path) == uri_ds.records[0].path
    plain, local_uri, ray_uri = (tmp_path / f"{n}.triage.db" for n in ("plain", "local-uri", "ray-uri"))
    Project.create(plain, ds).close()
    Project.create(local_uri, uri_ds).close()
    Project.create(ray_uri, uri_ds).close()
    drain(score_project(plain, specs, batch_size=4, workers=0))
    drain(score_project(local_uri, specs, batch_size=4, workers=0))
    drain(score_project(ray_uri, specs, batch_size=4, workers=1, engine="ray"))
    by_name = lambda d: {Path(k.split("://")[-1]).relative_to(data).as_posix() if "://" in k else k: v for k, v in d.items()}  # noqa: E731
    want = by_name(_scores(plain))
    assert by_name(_scores(local_uri)) == want and by_name(_scores(ray_uri)) == want and len(want) == 12
    report = run_export(ray_uri, tmp_path / "out", link="hardlink")
    assert report["exported"] == 12 and report["link_fallbacks_to_copy"] == 12
    assert len(list((tmp_path / "out" / "images").rglob("*.png"))) == 12
