"""Issue 20: the dataset's issues beyond labels, found in the scoring run's decode pass."""

from __future__ import annotations

import csv
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageFilter

from scoring.cli.main import main
from scoring.engine.inference import score_project
from scoring.engine.score_pass import write_dataset_issues
from scoring.evidence import image_issues as II
from scoring.progress import drain
from scoring.store import Project, QueueFilter, project_for
from scoring.tasks.export import run_export
from scoring.vocabulary import ISSUES
from tests.scoring.tinypool import tiny_pool

CLASSES = ["blue", "green", "red"]


def _texture(rng: np.random.Generator, tint: tuple[int, int, int]) -> Image.Image:
    """A smooth colour texture, like a small photo: 8x8 noise up-sampled to 32x32."""
    base = rng.integers(0, 255, (8, 8, 3)).astype(np.float32) * 0.6 + np.array(tint) * 0.4
    return Image.fromarray(base.clip(0, 255).astype(np.uint8)).resize((32, 32), Image.Resampling.BICUBIC)


@pytest.fixture
def planted(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    tints = {"blue": (20, 40, 220), "green": (30, 200, 40), "red": (220, 30, 30)}
    for c, tint in tints.items():
        (root / c).mkdir(parents=True)
        for i in range(20):
            _texture(rng, tint).save(root / c / f"{i:03d}.png")
    src = _texture(rng, tints["red"])
    plants = {
        "red/p_blur.png": ("blurry", src.filter(ImageFilter.GaussianBlur(2.5))),
        "red/p_dark.png": ("dark", ImageEnhance.Brightness(src).enhance(0.25)),
        "red/p_flat.png": ("low_information", Image.new("RGB", (32, 32), (120, 60, 60))),
        "red/p_wide.png": ("odd_size", src.resize((128, 32))),
        "red/p_grey.png": ("grey", src.convert("L").convert("RGB")),
        "red/p_white.png": ("overexposed", Image.eval(src, lambda v: min(255, v * 4 + 120))),
    }
    for rel, (_, im) in plants.items():
        im.save(root / rel)
    return root, {rel: issue for rel, (issue, _) in plants.items()}


def test_the_statistics_never_upscale_and_detect_names_every_issue() -> None:
    small = Image.new("RGB", (20, 10), (10, 20, 30))
    big = Image.new("RGB", (1000, 500), (10, 20, 30))
    assert II.image_stats(small).shape == (len(II.FIELDS),)
    assert np.allclose(II.image_stats(small)[:2], II.image_stats(big)[:2], atol=1e-3)  # same picture, same numbers
    rng = np.random.default_rng(0)
    stats = np.column_stack([rng.normal(0.45, 0.05, 200), rng.normal(0.2, 0.03, 200), rng.normal(1.0, 0.05, 200),
                             rng.normal(0.05, 0.01, 200), rng.normal(0.2, 0.03, 200), rng.normal(0.7, 0.03, 200),
                             np.zeros(200), np.zeros(200), rng.uniform(0.0, 0.05, 200)])
    found = II.detect(stats, np.full(200, 32), np.full(200, 32))
    assert set(found) == set(ISSUES)
    assert sum(int((v > 0).sum()) for v in found.values()) <= 2  # typical images: (almost) nothing flagged


def test_scoring_finds_each_planted_issue_and_the_queue_cli_and_export_show_them(
        planted: tuple[Path, dict[str, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, truth = planted
    db = project_for(root, tmp_path / "p.triage.db")
    summary = drain(score_project(db, pool=tiny_pool(CLASSES), workers=0))
    assert summary.issues
    with Project.open(db) as p:
        for rel, issue in truth.items():
            names = [n for n, _ in p.issues.issues_of(p.images.find_image(rel))]  # type: ignore[arg-type]
            assert issue in names, (rel, names)
        clean = [i for i in p.images.scorable_ids() if not p.images.image(int(i)).path.startswith("red/p_")]
        assert sum(bool(p.issues.issues_of(int(i))) for i in clean) <= 1  # the untouched textures: at most one flag
        dark = p.queue.page(QueueFilter(issue="dark"), sort="path", limit=10)
        assert "red/p_dark.png" in [r.path for r in dark]
        flagged_images = len(p.issues.issues_by_image())
    assert main(["queue", "--db", str(db), "--issue", "blurry", "--json"]) == 0
    assert "red/p_blur.png" in capsys.readouterr().out
    assert main(["stats", "--db", str(db)]) == 0
    assert "dataset issues:" in capsys.readouterr().err
    dest = tmp_path / "out"
    run_export(db, dest)
    with (dest / "difficulty.csv").open() as fh:
        rows = {r["source_path"]: r["issues"] for r in csv.DictReader(fh)}
    assert "dark" in rows["red/p_dark.png"].split(";")
    assert sum(bool(v) for v in rows.values()) == flagged_images  # nothing removed: every flagged image exported


def test_a_project_scored_before_the_statistics_gets_them_on_the_next_run(
        planted: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    """Features missing for the statistics (an older project, the Ray engine) are decoded once."""
    root, truth = planted
    db = project_for(root, tmp_path / "p.triage.db")
    drain(score_project(db, pool=tiny_pool(CLASSES), workers=0))
    with Project.open(db) as p:
        p.conn.execute("DELETE FROM features WHERE encoder_key = ?", (II.STATS_KEY,))
        p.issues.put_issues([])
    with Project.open(db) as p:
        counts = drain(write_dataset_issues(p, p.images.scorable_ids(), threading.Event()))
        assert counts.get("low_information") == 1 and not len(p.cache.missing_features(II.STATS_KEY, p.images.scorable_ids()))


def test_the_statistics_never_make_the_engine_decode_a_photo_larger(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 35: the statistics want the longer side at STATS_SIDE, not the shorter: with a
    32 px pool a 1200x900 JPEG decodes at 1/8 (150x113), as it does for the pool alone, and the
    statistics are still taken at 128 px on the longer side."""
    from scoring.engine.batches import THUMB, decode_item
    from scoring.evidence.image_issues import STATS, STATS_SIDE
    from scoring.io import decoding
    from scoring.pool.base import Preprocess

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (9, 12, 3), dtype=np.uint8)).resize((1200, 900)).save(tmp_path / "p.jpg")
    sizes: list[tuple[int, int]] = []
    real = decoding._to_rgb
    monkeypatch.setattr(decoding, "_to_rgb", lambda img: (sizes.append(img.size), real(img))[1])
    pool = [Preprocess(size=32)]
    decode_item(0, tmp_path / "p.jpg", pool)
    item = decode_item(0, tmp_path / "p.jpg", [*pool, THUMB, STATS])
    assert sizes == [(150, 113), (150, 113)]
    assert max(sizes[1]) >= STATS_SIDE and item.tensors is not None
    assert item.tensors[STATS.key].shape == (96, 128, 3)  # the pixels, at 128 on the longer side
    assert STATS.collate([item.tensors[STATS.key]]).shape == (1, 9)  # the statistics, a batch at a time


def test_the_partition_percentiles_are_numpys() -> None:
    rng = np.random.default_rng(1)
    for n in (1, 2, 3, 10, 1024, 16384):
        x = rng.random(n, dtype=np.float32)
        want = np.percentile(x, [0.5, 10, 90])
        assert np.allclose(II._percentiles(x[None], (0.005, 0.10, 0.90))[0], want, rtol=0, atol=1e-7), n
    rows = rng.random((5, 777), dtype=np.float32)  # row by row, as a batch of one size is taken
    assert np.allclose(II._percentiles(rows, (0.005, 0.9)), np.percentile(rows, [0.5, 90], axis=1).T, rtol=0, atol=1e-7)


def test_a_batchs_statistics_are_each_images_own() -> None:
    """Images of one size are taken together (issue 35): the numbers equal each image's alone,
    whatever the mix of sizes and modes in the batch."""
    rng = np.random.default_rng(2)
    shapes = [(32, 32), (32, 32), (1, 1), (2, 5), (3, 3), (32, 32), (300, 200), (28, 28)]
    imgs = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in shapes]
    imgs += [Image.new("RGB", (32, 32), (255, 255, 255)), Image.new("L", (20, 30), 0)]
    batch = II.batch_stats([II.stats_pixels(im) for im in imgs])
    for n, im in enumerate(imgs):
        assert np.array_equal(batch[n], II.image_stats(im)), n
    assert np.isfinite(batch).all()


def test_the_uint8_shortcuts_give_the_float_statistics() -> None:
    """Issue 35: the clipped middle and the darkest 0.5 % are read off the uint8 pixels (a
    threshold at CLIPPED_U8, a count instead of a partition); they equal the float formulas,
    around the threshold too, and a run of images past GROUP_PIXELS is cut without a change."""
    rng = np.random.default_rng(3)
    near = rng.integers(247, 253, (40, 32, 32, 3), dtype=np.uint8)  # around the clipping threshold
    wide = rng.integers(0, 256, (300, 32, 32, 3), dtype=np.uint8)  # 300 x 1024 pixels > GROUP_PIXELS
    odd = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(1, 1), (2, 7), (5, 3), (97, 128)]]
    pixels = [*near, *wide, *odd]
    assert II.GROUP_PIXELS < 300 * 32 * 32
    got = II.batch_stats(pixels)
    fields = list(II.FIELDS)
    for n, px in enumerate(pixels):
        a = px.astype(np.float32) / np.float32(255.0)
        h, w = px.shape[:2]
        middle = a.max(axis=2)[h // 4 : h - h // 4 or None, w // 4 : w - w // 4 or None]
        centre = (middle >= II.CLIPPED).mean() if middle.size else 0.0
        black = np.percentile(a.min(axis=2), 0.5)
        assert got[n, fields.index("centre_clipped")] == np.float32(centre), n
        assert abs(got[n, fields.index("black")] - black) <= 1e-7, n
        assert np.array_equal(got[n], II.batch_stats([px])[0]), n  # the same alone as in a cut run


def test_the_duplicate_thumbnail_is_made_from_the_statistics_picture(tmp_path: Path) -> None:
    """Issue 35: the 16x16 thumbnail is resized from the statistics' small picture, uint8 until
    its batch is normalised: the same numbers as resizing the decode for an image no larger than
    STATS_SIDE, within two grey levels of it for a photo; a pool member whose preprocessing has the
    thumbnail's numbers keeps its own float output (the keys differ)."""
    from scoring.engine.batches import THUMB, decode_item
    from scoring.evidence.image_issues import STATS
    from scoring.io.decoding import decode_for
    from scoring.pool.base import Preprocess

    rng = np.random.default_rng(4)
    plain = Preprocess(size=16, resize=16, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    for name, (w, h) in {"small.png": (32, 32), "odd.png": (45, 30), "photo.jpg": (1200, 900)}.items():
        Image.fromarray(rng.integers(0, 256, (9, 12, 3), dtype=np.uint8)).resize((w, h), Image.Resampling.BICUBIC).save(tmp_path / name)
        item = decode_item(0, tmp_path / name, [plain, THUMB, STATS])
        assert item.tensors is not None and item.tensors[THUMB.key].dtype == torch.uint8
        thumb = THUMB.collate([item.tensors[THUMB.key]])[0]
        assert torch.equal(item.tensors[plain.key], plain(decode_for(tmp_path / name, 16)[0]))
        want = plain(decode_for(tmp_path / name, 16, II.STATS_SIDE)[0])  # the decode, as the engine made it before
        if max(w, h) <= II.STATS_SIDE:
            assert torch.equal(thumb, want), name
        else:  # measured on 100 photos: at most 2 grey levels, 1 in the median image
            assert (thumb - want).abs().max() <= 2 / 255 + 1e-6, name
