"""Datasets: the layouts users bring, every image mode, and every bad file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from scoring.io.datasets import DatasetError, posix_path
from scoring.io.decoding import ImageDecodeError, file_sha1, load_image
from scoring.io.formats import open_dataset


def _img(path: Path, mode: str = "RGB", size: tuple[int, int] = (10, 6), fmt: str | None = None, **kw: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = {"RGB": (200, 10, 10), "L": 128, "RGBA": (0, 0, 255, 0), "CMYK": (0, 255, 255, 0)}.get(mode, 1)
    Image.new(mode, size, colour).save(path, format=fmt, **kw)
    return path


def _tree_state(root: Path) -> dict[str, tuple[float, int]]:
    return {str(p): (p.stat().st_mtime, p.stat().st_size) for p in root.rglob("*")}


def test_imagefolder_order_matches_torchvision(tmp_path: Path) -> None:
    from torchvision.datasets import ImageFolder

    for rel in ["dog/b.png", "dog/a.jpg", "cat/z.png", "cat/sub/y.png", "cat/sub/x.bmp", "ant/1.webp", "bee/c.tif"]:
        _img(tmp_path / rel)
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    ds = open_dataset(tmp_path)
    tv = ImageFolder(str(tmp_path))
    assert ds.layout == "imagefolder"
    assert ds.classes == tv.classes
    assert [(str(ds.abspath(r.path)), ds.classes.index(r.label)) for r in ds.records] == tv.samples


def test_csv_manifest_relative_paths_and_unlabelled_rows(tmp_path: Path) -> None:
    _img(tmp_path / "imgs" / "a.png")
    _img(tmp_path / "imgs" / "b.png")
    _img(tmp_path / "imgs" / "c.png")
    (tmp_path / "m.csv").write_text("path,label,extra\nimgs/a.png,cat,1\nimgs/b.png,dog,2\nimgs/c.png,,3\n")
    ds = open_dataset(tmp_path / "m.csv")
    assert ds.layout == "csv" and ds.root == tmp_path.resolve()
    assert ds.classes == ["cat", "dog"]
    assert [(r.path, r.label) for r in ds.records] == [("imgs/a.png", "cat"), ("imgs/b.png", "dog"), ("imgs/c.png", None)]
    assert ds.abspath("imgs/a.png").exists()


@given(st.lists(st.sampled_from(["a", ".", "..", "", "b.jpg", "x y", "/"]), min_size=1, max_size=6))
def test_a_manifests_paths_are_normalised_as_pathlib_does(parts: list[str]) -> None:
    """posix_path skips pathlib where the path is already normal (issue 35) and gives its answer."""
    for raw in ("/".join(parts), "".join(parts)):
        if raw:
            assert posix_path(raw) == Path(raw).as_posix(), raw


@pytest.mark.parametrize(
    ("text", "match"),
    [("file,label\na.png,cat\n", "path,label"), ("path,label\n", "no images"), ("path,label\na.png,x\na.png,y\n", "more than once")],
)
def test_bad_manifests(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "m.csv").write_text(text)
    with pytest.raises(DatasetError, match=match):
        open_dataset(tmp_path / "m.csv")


def test_flat_folder_is_unlabelled(tmp_path: Path) -> None:
    _img(tmp_path / "x.png")
    _img(tmp_path / "y.jpg")
    ds = open_dataset(tmp_path)
    assert ds.layout == "flat" and ds.classes == [] and not ds.labelled
    assert [r.path for r in ds.records] == ["x.png", "y.jpg"]


def test_missing_and_empty_dataset(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset(tmp_path / "nope")
    with pytest.raises(DatasetError, match="no images found"):
        open_dataset(tmp_path)
    with pytest.raises(DatasetError, match="unknown layout"):
        open_dataset(tmp_path, layout="coco")


@pytest.mark.parametrize(
    ("name", "mode", "kw"),
    [
        ("a.jpg", "RGB", {}), ("a.png", "RGB", {}), ("a.webp", "RGB", {}), ("a.bmp", "RGB", {}),
        ("a.tiff", "RGB", {}), ("g.png", "L", {}), ("c.jpg", "CMYK", {}), ("t.png", "RGBA", {}),
    ],
)
def test_every_format_and_mode_decodes_to_rgb(tmp_path: Path, name: str, mode: str, kw: dict) -> None:
    img = load_image(_img(tmp_path / name, mode, **kw))
    assert img.mode == "RGB" and img.size == (10, 6)


def test_alpha_is_composited_on_white(tmp_path: Path) -> None:
    img = load_image(_img(tmp_path / "t.png", "RGBA"))  # fully transparent blue
    assert img.getpixel((0, 0)) == (255, 255, 255)


def test_palette_with_transparency(tmp_path: Path) -> None:
    p = Image.new("P", (4, 4), 0)
    p.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    p.info["transparency"] = 0
    p.save(tmp_path / "p.png", transparency=0)
    assert load_image(tmp_path / "p.png").getpixel((0, 0)) == (255, 255, 255)


def test_16_bit_grey_scales_to_8_bit(tmp_path: Path) -> None:
    arr = np.array([[0, 65535], [32768, 257]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "d.png")
    assert Image.open(tmp_path / "d.png").mode.startswith("I")
    img = load_image(tmp_path / "d.png")
    assert [img.getpixel(xy)[0] for xy in [(0, 0), (1, 0), (0, 1), (1, 1)]] == [0, 255, 128, 1]


def test_gif_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (5, 5), c) for c in [(255, 0, 0), (0, 0, 255)]]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    r, g, b = load_image(tmp_path / "a.gif").getpixel((2, 2))
    assert r > 200 and b < 50


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    Image.new("RGB", (20, 10), (1, 2, 3)).save(tmp_path / "o.jpg", exif=exif)
    assert load_image(tmp_path / "o.jpg").size == (10, 20)


def _truncated(p: Path) -> None:
    _img(p, size=(64, 64))
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_bytes(b"this is not an image at all"), "not an image"),
        (_truncated, "truncated|corrupt|broken"),
        (lambda p: None, "cannot read"),
    ],
    ids=["zero-byte", "garbage", "truncated", "missing"],
)
def test_bad_files_raise_a_clear_error_naming_the_file(tmp_path: Path, make: object, match: str) -> None:
    p = tmp_path / "bad.jpg"
    make(p)  # type: ignore[operator]
    with pytest.raises(ImageDecodeError, match=match) as err:
        load_image(p)
    assert "bad.jpg" in str(err.value)


def test_decompression_bomb_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = _img(tmp_path / "big.png", size=(200, 200))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageDecodeError, match="decompression-bomb") as err:
        load_image(p)
    assert "big.png" in str(err.value)


def test_reading_never_writes_inside_the_dataset(tmp_path: Path) -> None:
    _img(tmp_path / "cat" / "a.png")
    _img(tmp_path / "dog" / "b.jpg")
    before = _tree_state(tmp_path)
    ds = open_dataset(tmp_path)
    for r in ds.records:
        load_image(ds.abspath(r.path))
        file_sha1(ds.abspath(r.path))
    assert _tree_state(tmp_path) == before
    assert not any(n.startswith(".") for n in os.listdir(tmp_path))


def test_large_jpegs_decode_at_the_scale_needed_and_report_their_full_size(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    from scoring.io.decoding import decode_for, load_image
    from scoring.pool.base import Preprocess

    rng = np.random.default_rng(0)
    field = Image.fromarray(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)).resize((1600, 1200), Image.Resampling.BICUBIC)
    field.save(tmp_path / "big.jpg", quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: displayed 1200 x 1600
    field.save(tmp_path / "rot.jpg", quality=90, exif=exif)
    img, sha1, size = decode_for(tmp_path / "big.jpg", 32)
    assert size == (1600, 1200) and 32 <= min(img.size) < 300 and len(sha1) == 40
    pp = Preprocess(size=32, mean=(0.5,) * 3, std=(0.5,) * 3)
    full = pp(load_image(tmp_path / "big.jpg"))
    assert float((pp(img) - full).abs().mean()) < 0.05  # the same input, for a fraction of the decode
    rot, _, rot_size = decode_for(tmp_path / "rot.jpg", 32)
    assert rot_size == (1200, 1600) and rot.height > rot.width
