"""One batch of work, the same for the local and the Ray engine: decode each image once and
apply every distinct preprocessing, run encoders, and store a batch's outputs in one
transaction. Neither engine has its own copy; neither imports the other."""

from __future__ import annotations

import logging
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset as TorchDataset

from scoring.evidence.image_issues import StatsPreprocess, small_image
from scoring.io.decoding import ImageDecodeError, decode_for
from scoring.pool.base import Encoder, Pool, Preprocess
from scoring.pool.members import Pixels
from scoring.progress import Progress, RateMeter, check_cancel
from scoring.store import Project

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ThumbPreprocess(Preprocess):
    """Every image's 16x16 colour thumbnail, made in the same decode pass and stored as a feature:
    scoring.tasks.duplicates finds exact and near-duplicates with it. It is made from the
    statistics' small pixels (at most STATS_SIDE on the longer side), not from the full decode:
    the same values for images up to that size, one small resize instead of a large one for
    photos; each image's pixels stay uint8 until its batch is normalised in one numpy step
    (issue 35)."""

    @property
    def key(self) -> str:  # its uint8 output is not a plain Preprocess's, even one of the same numbers
        return "thumb16:pixels"

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return self.from_small(small_image(img))

    def from_small(self, small: Image.Image) -> torch.Tensor:
        """(size, size, 3) uint8: the shorter side resized to ``size`` and centre-cropped."""
        return torch.from_numpy(np.array(self.fit(small)))

    def collate(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        """(B, 3, size, size) float32 in [0, 1], as Preprocess.__call__ gives with mean 0, std 1."""
        px = torch.stack(list(tensors)).numpy()
        return torch.from_numpy(np.ascontiguousarray((px.astype(np.float32) / 255.0).transpose(0, 3, 1, 2)))


THUMB = ThumbPreprocess(size=16, resize=16, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
THUMB_KEY = "thumb16:v1"


def thumbnail_encoder() -> Encoder:
    """The engine's extra encoder: each image's thumbnail, flattened (768 values in [0, 1])."""
    return Encoder(THUMB_KEY, Pixels(), THUMB, "features", "16x16 colour thumbnail (duplicates)")


@dataclass(frozen=True)
class Item:
    image_id: int
    tensors: dict[str, torch.Tensor] | None
    error: str | None
    width: int
    height: int
    sha1: str | None


class DecodeOnce(TorchDataset):  # type: ignore[type-arg]
    """Decodes one image once and applies every distinct preprocessing of the pool to it."""

    def __init__(self, paths: Sequence[Path | str], ids: Sequence[int], preprocesses: Sequence[Preprocess]):
        self.paths = list(paths)
        self.ids = list(ids)
        self.preprocesses = list(preprocesses)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Item:
        return decode_item(self.ids[i], self.paths[i], self.preprocesses)


def decode_item(image_id: int, path: str | Path, preprocesses: Sequence[Preprocess]) -> Item:
    """Decode one image once and apply each distinct preprocessing (local and Ray engines)."""
    short = max((pp.decode_needs[0] for pp in preprocesses), default=0)
    long = max((pp.decode_needs[1] for pp in preprocesses), default=0)
    try:  # one read: decoded (at the scale needed) and hashed
        img, sha1, (width, height) = decode_for(path, short or None, long or None)
    except ImageDecodeError as exc:
        return Item(image_id, None, str(exc), 0, 0, None)
    except OSError as exc:  # vanished or unreadable between listing and decoding
        return Item(image_id, None, f"{path}: {exc.strerror or exc}", 0, 0, None)
    tensors: dict[str, torch.Tensor] = {}
    small = None  # the statistics' picture: made once for every preprocessing that reads it
    for pp in preprocesses:
        if isinstance(pp, (ThumbPreprocess, StatsPreprocess)):
            if small is None:
                small = small_image(img)
            tensors[pp.key] = pp.from_small(small)
        else:
            tensors[pp.key] = pp(img)
    return Item(image_id, tensors, None, width, height, sha1)


def decode_missing(project: Project, key: str, pp: Preprocess, ids: np.ndarray, stage: str,
                   cancel: Any = None) -> Generator[Progress, None, None]:
    """Store feature ``key`` (preprocessing ``pp``'s output, flattened) for the ``ids`` that lack
    it, in one decode pass: for a project scored before ``key`` existed, or by the Ray engine.
    ``cancel``: a threading.Event checked per 512 images."""
    missing = project.cache.missing_features(key, ids)
    if not len(missing):
        return
    meter = RateMeter(stage, len(missing))
    paths = project.images.abspaths(project.images.paths_of(missing))
    for s in range(0, len(missing), 512):
        if cancel is not None:
            check_cancel(cancel)
        items = [decode_item(int(i), p, [pp]) for i, p in zip(missing[s : s + 512], paths[s : s + 512], strict=True)]
        ok = [it for it in items if it.tensors is not None]
        if ok:
            project.cache.put_features(key, [it.image_id for it in ok],
                                 pp.collate([it.tensors[pp.key] for it in ok]).reshape(len(ok), -1).numpy())  # type: ignore[index]
        yield meter.record(s + len(items))


@dataclass
class Batch:
    """A decoded batch as the DataLoader hands it on: each preprocessing's rows already collated
    (stacked, the thumbnails normalised, the statistics taken), so from a decode worker one
    tensor per preprocessing crosses to the scoring process, not three per image, and the
    statistics cross as nine numbers per image, not as its pixels (issue 35)."""

    ids: np.ndarray  # the images decoded, in the order of ``inputs``' rows
    inputs: dict[str, torch.Tensor]  # preprocessing key -> (len(ids), ...) encoder input
    errors: list[tuple[int, str]]  # (image id, why) of those that did not decode
    widths: list[int]
    heights: list[int]
    sha1s: list[str | None]

    @property
    def count(self) -> int:
        return len(self.ids) + len(self.errors)


def collate(items: list[Item], preprocesses: Sequence[Preprocess]) -> Batch:
    """``items`` (decode_item's, with ``preprocesses``) as one :class:`Batch`."""
    ok = [it for it in items if it.tensors is not None]
    inputs = {pp.key: pp.collate([it.tensors[pp.key] for it in ok]) for pp in preprocesses} if ok else {}  # type: ignore[index]
    return Batch(np.array([it.image_id for it in ok], dtype=np.int64), inputs,
                 [(it.image_id, it.error or "") for it in items if it.tensors is None],
                 [it.width for it in ok], [it.height for it in ok], [it.sha1 for it in ok])



def run_encoders(
    encoders: Sequence[Any], stacked: dict[str, torch.Tensor], dev: torch.device, autocast: bool
) -> dict[str, np.ndarray]:
    """Every encoder once on its preprocessed batch; outputs as float32 numpy (B, D). On CUDA the
    copy is non-blocking (from pinned memory) and images are channels-last, as convolutions prefer."""
    cuda = dev.type == "cuda"
    on_dev = {k: v.to(dev, non_blocking=True) for k, v in stacked.items()}
    if cuda:
        on_dev = {k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v for k, v in on_dev.items()}
    out: dict[str, np.ndarray] = {}
    with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.float16, enabled=autocast):
        for enc in encoders:
            y = enc.module(on_dev[enc.preprocess.key])
            out[enc.key] = y.float().cpu().numpy()
    return out


def store_batch(
    project: Project,
    pool: Pool,
    errors: Sequence[tuple[int, str]],
    outputs: Sequence[tuple[Any, np.ndarray, np.ndarray]],
    ids: Sequence[int],
    widths: Sequence[int],
    heights: Sequence[int],
    sha1s: Sequence[str | None],
) -> None:
    """One batch's results in one transaction: decode errors, each encoder's outputs (features,
    or its members' probabilities) as ``(encoder, ids, outputs)``, then image sizes and hashes."""
    with project.transaction():
        for image_id, error in errors:
            log.warning("skipping unreadable image: %s", error)
            project.images.record_error(int(image_id), error)
        for enc, enc_ids, out in outputs:
            if enc.output == "features":
                project.cache.put_features(enc.key, enc_ids, out)
            else:
                for m in pool.members_of(enc.key):
                    project.cache.put_probs(m.fingerprint, enc_ids, m.probs_from_outputs(out))
        if len(ids):
            project.images.set_image_info(list(ids), list(widths), list(heights), list(sha1s))
