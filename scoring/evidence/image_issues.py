"""The dataset's issues beyond labels: blurry, dark, overexposed, low-information, odd-sized,
grey-in-a-colour-set and outlier images.

Each image's statistics are computed in the decode pass scoring already makes (no second read):
:data:`STATS` is a preprocessing like the members' and the thumbnails', so its output is stored
as a feature (``stats:v1``), resumes after a kill and costs one small array per image. The
statistics are taken at the image's own resolution, down-scaled to at most ``STATS_SIDE`` on its
longer side and never up-scaled, so neither a small image nor a large one looks blurry for its
size alone (cleanvision #120: its blur check flags uniform and high-resolution images).

The issues are then decided relative to the dataset (robust z-scores: distance from the median
in units of 1.4826 x the median absolute deviation, with a floor), so a set of handwritten digits
on black is not "dark" and a set of photos on white is not "overexposed":

==================  =========================================================================
blurry              sharpness (mean |Laplacian| / mean |gradient|, contrast-free) 3.5 below
dark                the 90th percentile of brightness 3 below, and under 0.35
overexposed         the subject clipped (40 % of the middle quarter of the picture has a channel at
                    white, 2 above the dataset) and no shadow left (the darkest 0.5 % of pixels
                    keep 10 % in every channel): a photo on a white background keeps its
                    subject and its blacks, so it is not overexposed
low_information     brightness standard deviation under 0.01 (near-constant, near-empty)
grey                no colour (mean |channel - grey| under 0.004) where 90 % of images have it
odd_size            aspect ratio 1.5 times off the dataset's median, or area 4 times off
outlier             unlike the rest in every statistic at once (robust distance d over the six
                    shape statistics >= 5) and, with the neighbour embedding, d - 1.5 z >= 6.5
                    where z is the robust z-score of the cosine to the nearest class centre (far
                    from every class raises it); no other issue explains it
==================  =========================================================================

A flag's severity is its z-score (1 for the absolute ones). Measured by
benchmarks/bench_issues.py (precision, recall and the false-flag rate on untouched data: see
the README).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from scoring.pool.base import Encoder, Preprocess

STATS_KEY = "stats:v2"  # v2: centre_clipped and black added (the overexposure check)
STATS_SIDE = 128  # longest side the statistics are taken at (never up-scaled)
FIELDS = ("mean", "contrast", "sharpness", "colour", "q10", "q90", "clipped", "centre_clipped", "black")
SHAPE_FIELDS = 6  # the fields the outlier distance reads (the clipping ones are 0 for most images: no spread)
CLIPPED = 0.98  # a channel this bright is clipped white
CENTRE_CLIPPED = 0.4
BLACK_LIFTED = 0.1
LOW_CONTRAST = 0.01
GREY_COLOUR = 0.004
COLOUR_SET = 0.9  # the share of colourful images that makes a colour dataset


LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
GROUP_PIXELS = 2**18  # images taken together by batch_stats: about 3 MB of float32 pixels


def _unit(px: np.ndarray) -> np.ndarray:
    """uint8 pixels as the statistics' float32 values in [0, 1]."""
    return px.astype(np.float32) / np.float32(255.0)


# The smallest uint8 value whose float is at least CLIPPED: a test on the uint8 pixels gives the
# float test's answer without converting them.
CLIPPED_U8 = int(np.argmax(_unit(np.arange(256, dtype=np.uint8)) >= CLIPPED))


def _ranked_u8(x: np.ndarray, kth: list[int]) -> dict[int, np.ndarray]:
    """Each row's k-th smallest uint8 value for each k in ``kth`` (what np.partition puts at k),
    by counting: one histogram of 256 bins per row, 4x faster than partitioning."""
    n = x.shape[0]
    counts = np.bincount((x + (np.arange(n, dtype=np.int64) * 256)[:, None]).ravel(), minlength=256 * n)
    below = counts.reshape(n, 256).cumsum(axis=1)
    return {k: np.argmax(below > k, axis=1).astype(np.uint8) for k in kth}


def _percentiles(x: np.ndarray, qs: tuple[float, ...], *, from_u8: bool = False) -> np.ndarray:
    """``np.percentile(x, 100 * q, axis=1)`` (linear) for each q, rows of a (N, M) array, from one
    sort of the rows: (N, len(qs)); faster than np.percentile (issue 35). ``from_u8``: x
    holds uint8 pixels and the answer is of their :func:`_unit` values (the same numbers: the
    conversion keeps the order; uint8 partitions faster)."""
    pos = [q * (x.shape[1] - 1) for q in qs]
    kth = sorted({int(np.floor(p)) for p in pos} | {int(np.ceil(p)) for p in pos})
    if from_u8:
        ranked = _ranked_u8(x, kth)
    else:  # a whole sort, not np.partition at these kth: numpy's vectorised sort took an eighth of the time
        part = np.sort(x, axis=1)  # (128 rows of 1,024: 0.19 against 1.59 ms; 16 of 16,384: 0.61 against 3.2)
        ranked = {k: part[:, k] for k in kth}
    out = np.empty((x.shape[0], len(qs)), dtype=np.float64)
    for k, p in enumerate(pos):
        lo, hi = int(np.floor(p)), int(np.ceil(p))
        a, b, t = ranked[lo], ranked[hi], p - lo
        if from_u8:
            a, b = _unit(a), _unit(b)
        a, b = a.astype(np.float64), b.astype(np.float64)
        out[:, k] = a + (b - a) * t if t < 0.5 else b - (b - a) * (1 - t)  # numpy's own lerp
    return out


def small_image(img: Image.Image) -> Image.Image:
    """The picture the statistics are taken on: RGB, at most STATS_SIDE on the longer side (never
    up-scaled; the image itself when it is that small). The engine's other extras (the duplicate
    thumbnails) are made from it too, not from the full decode (issue 35)."""
    if max(img.size) > STATS_SIDE:
        img = img.copy()
        img.thumbnail((STATS_SIDE, STATS_SIDE), Image.Resampling.BILINEAR)
    return img if img.mode == "RGB" else img.convert("RGB")


def stats_pixels(img: Image.Image) -> np.ndarray:
    """The pixels the statistics are taken on: :func:`small_image`'s, RGB uint8 (H, W, 3)."""
    return np.array(small_image(img))  # a writable copy: torch.from_numpy warns on Pillow's read-only view


def batch_stats(pixels: Sequence[np.ndarray]) -> np.ndarray:
    """(N, len(FIELDS)) float32 statistics of N images' :func:`stats_pixels` (see the module text).
    Images of one size are taken together, one numpy call per statistic for the group: on
    32x32 images 20x faster than one image at a time (small numpy calls cost their overhead;
    issue 35: the statistics ride on the scoring pass's decode), in runs of GROUP_PIXELS pixels
    whose temporaries stay in the processor's cache (each row's sums are the same either way:
    2,000 CIFAR images 0.077 -> 0.054 s, 500 photos at 128 px 0.18 -> 0.12 s)."""
    out = np.zeros((len(pixels), len(FIELDS)), dtype=np.float32)
    groups: dict[tuple[int, ...], list[int]] = {}
    for n, px in enumerate(pixels):
        groups.setdefault(px.shape, []).append(n)
    for shape, rows in groups.items():
        step = max(1, GROUP_PIXELS // max(1, shape[0] * shape[1]))
        for s in range(0, len(rows), step):
            run = rows[s : s + step]
            out[run] = _group_stats(np.stack([pixels[n] for n in run]), shape[0], shape[1])
    return out


def _group_stats(px: np.ndarray, h: int, w: int) -> np.ndarray:
    a = _unit(px)  # (N, H, W, 3)
    lum = a @ LUMA
    n = len(a)
    if h >= 3 and w >= 3:
        lap = 4 * lum[:, 1:-1, 1:-1] - lum[:, :-2, 1:-1] - lum[:, 2:, 1:-1] - lum[:, 1:-1, :-2] - lum[:, 1:-1, 2:]
        grad = np.abs(np.diff(lum, axis=2)).mean(axis=(1, 2)) + np.abs(np.diff(lum, axis=1)).mean(axis=(1, 2))
        sharp = np.abs(lap).mean(axis=(1, 2)) / (grad + 1e-4)
    else:
        sharp = np.zeros(n)
    flat = lum.reshape(n, -1)
    q = _percentiles(flat, (0.10, 0.90))
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    off = a - ((r + g + b) / np.float32(3.0))[..., None]
    colour = np.abs(off, out=off).reshape(n, -1).mean(axis=1)  # one axis, in place: a third of the time, the same sums
    # the clipping and the shadows on the uint8 pixels: the float values' answers, in a third of the time
    middle = px[:, h // 4 : h - h // 4 or None, w // 4 : w - w // 4 or None]
    brightest = np.maximum(np.maximum(middle[..., 0], middle[..., 1]), middle[..., 2])
    centre = (brightest >= CLIPPED_U8).mean(axis=(1, 2)) if brightest[0].size else np.zeros(n)
    darkest = np.minimum(np.minimum(px[..., 0], px[..., 1]), px[..., 2])
    black = _percentiles(darkest.reshape(n, -1), (0.005,), from_u8=True)[:, 0]
    return np.stack([flat.mean(axis=1), flat.std(axis=1), sharp, colour, q[:, 0], q[:, 1], (flat >= CLIPPED).mean(axis=1),
                     centre, black], axis=1)


def image_stats(img: Image.Image) -> np.ndarray:
    """(len(FIELDS),) float32 statistics of one decoded image: :func:`batch_stats` of one."""
    return batch_stats([stats_pixels(img)])[0]


@dataclass(frozen=True)
class StatsPreprocess(Preprocess):
    """The statistics as a 'preprocessing': decoded once with the members' inputs."""

    size: int = STATS_SIDE

    @property
    def key(self) -> str:
        return STATS_KEY

    @property
    def decode_needs(self) -> tuple[int, int]:
        """The longer side at STATS_SIDE, never the shorter: a 1 MP photo wanted at 32 px decodes
        at 1/8 (144x108), not at 1/4 for the statistics alone (issue 35)."""
        return (0, STATS_SIDE)

    def __call__(self, img: Image.Image) -> torch.Tensor:
        """The pixels the statistics are taken on; :meth:`collate` takes a batch's statistics."""
        return self.from_small(small_image(img))

    def from_small(self, small: Image.Image) -> torch.Tensor:
        """This preprocessing's output from :func:`small_image`'s picture, which the decode makes
        once for every preprocessing that has this method (batches.decode_item)."""
        return torch.from_numpy(np.array(small))

    def collate(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.from_numpy(batch_stats([t.numpy() for t in tensors]))


STATS = StatsPreprocess()


def stats_encoder() -> Encoder:
    """The engine's extra encoder for the statistics: the identity over STATS's output."""
    return Encoder(STATS_KEY, torch.nn.Identity(), STATS, "features", "image statistics (dataset issues)")


def _z(x: np.ndarray, floor: float) -> np.ndarray:
    """Robust z-scores: (x - median) / max(1.4826 MAD, floor)."""
    med = float(np.median(x))
    return (x - med) / max(1.4826 * float(np.median(np.abs(x - med))), floor)


def detect(stats: np.ndarray, widths: np.ndarray, heights: np.ndarray, centre_cos: np.ndarray | None = None
           ) -> dict[str, np.ndarray]:
    """(N, len(FIELDS)) statistics, (N,) sizes, (N,) cosine to the nearest class centre (or None)
    -> per issue of scoring.vocabulary.ISSUES an (N,) severity, 0 where the image does not have it."""
    s = np.asarray(stats, dtype=np.float64)
    mean, contrast, sharp, colour, q10, q90, clipped, centre_clipped, black = (s[:, i] for i in range(len(FIELDS)))
    low = contrast < LOW_CONTRAST
    out: dict[str, np.ndarray] = {}
    out["low_information"] = low.astype(np.float64)
    z = -_z(sharp[~low], 0.02) if (~low).any() else np.zeros(0)
    out["blurry"] = _put(~low, np.where(z >= 3.5, z, 0.0))
    z = -_z(q90[~low], 0.02) if (~low).any() else np.zeros(0)
    out["dark"] = _put(~low, np.where((z >= 3) & (q90[~low] < 0.35), z, 0.0))
    over = (centre_clipped >= CENTRE_CLIPPED) & (black >= BLACK_LIFTED) & (_z(centre_clipped, 0.02) >= 2)
    out["overexposed"] = np.where(over, centre_clipped / CENTRE_CLIPPED, 0.0)
    colourful = colour >= GREY_COLOUR
    out["grey"] = ((~colourful) & (colourful.mean() >= COLOUR_SET)).astype(np.float64)
    w, h = np.maximum(np.asarray(widths, dtype=np.float64), 1), np.maximum(np.asarray(heights, dtype=np.float64), 1)
    aspect = np.abs(np.log(w / h) - np.median(np.log(w / h)))
    area = np.abs(np.log(w * h) - np.median(np.log(w * h)))
    odd = (aspect > np.log(1.5)) | (area > np.log(4.0))
    out["odd_size"] = np.where(odd, np.maximum(aspect / np.log(1.5), area / np.log(4.0)), 0.0)
    shape = s[:, :SHAPE_FIELDS]
    med = np.median(shape, axis=0)
    dist = np.sqrt((((shape - med) / (1.4826 * np.median(np.abs(shape - med), axis=0) + 1e-3)) ** 2).sum(axis=1))
    far = dist >= 5.0
    if centre_cos is not None and len(centre_cos):
        far &= dist - 1.5 * _z(np.asarray(centre_cos, dtype=np.float64), 0.02) >= 6.5
    explained = np.zeros(len(s), bool)
    for name in ("blurry", "dark", "overexposed", "low_information", "odd_size"):
        explained |= out[name] > 0
    out["outlier"] = np.where(far & ~explained, dist, 0.0)
    return out


def _put(where: np.ndarray, values: np.ndarray) -> np.ndarray:
    out = np.zeros(len(where))
    out[where] = values
    return out


def centre_cosines(unit: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N, d) unit rows, (N,) labels (-1: none) -> each row's cosine to the nearest class centre
    (the normalised mean of that class's rows); with no labels, to its 10 nearest rows' mean."""
    have = labels >= 0
    if have.sum() >= 2 and len(np.unique(labels[have])) >= 1:
        classes = np.unique(labels[have])
        centres = np.stack([unit[labels == c].mean(axis=0) for c in classes])
        centres /= np.linalg.norm(centres, axis=1, keepdims=True) + 1e-8
        return (unit @ centres.T).max(axis=1)
    from scoring.evidence.label_evidence import nearest

    sims, _ = nearest(unit)
    return sims.mean(axis=1)


def as_rows(ids: np.ndarray, found: dict[str, np.ndarray]) -> list[tuple[int, str, float]]:
    """(image id, issue, severity) for every flag."""
    rows: list[tuple[int, str, float]] = []
    for name, sev in found.items():
        for j in np.flatnonzero(sev > 0):
            rows.append((int(ids[j]), name, float(sev[j])))
    return rows

