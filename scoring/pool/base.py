"""The pool: what a member is, and how members share work.

A pool member turns images into a predicted distribution over the *dataset's* classes.
Members are built from small specs (see :mod:`scoring.pool.spec`) and come in three kinds:

* ``checkpoint`` - a trained classifier; its encoder outputs logits over the model's own
  classes, which :meth:`Member.probs_from_outputs` matches to the dataset's classes by name.
* ``backbone`` - a pre-trained feature extractor; its encoder outputs features, and the member
  is a light head fitted on the dataset's labels with K-fold cross-fitting
  (:meth:`Member.fit_predict`), so every prediction is out-of-sample.
* ``scratch`` - a small network trained from scratch with K-fold cross-fitting; its encoder
  is the identity over preprocessed pixels.

Several members may share one :class:`Encoder` (e.g. four heads on one backbone): the
inference pass runs each distinct encoder once per batch, and each distinct preprocessing
once per decoded image.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from abc import ABC
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from scoring.errors import ImageTriageError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PoolError(ImageTriageError, ValueError):
    """A pool or member spec that cannot be built; the message says what to change."""


@contextlib.contextmanager
def pool_file_errors(path: object, what: str) -> Iterator[None]:
    """Reading a file a pool names (pool file, class list, checkpoint): any failure becomes a
    PoolError naming ``what`` and the file."""
    try:
        yield
    except FileNotFoundError as exc:
        raise PoolError(f"{what} {path} does not exist") from exc
    except OSError as exc:
        raise PoolError(f"{what} {path} cannot be read ({exc.strerror or exc})") from exc
    except ImageTriageError as exc:
        raise PoolError(str(exc)) from exc


def stable_hash(*parts: Any) -> str:
    """Short hex digest of JSON-serialisable parts, stable across processes and runs."""
    h = hashlib.blake2b(digest_size=10)
    for part in parts:
        h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()


@dataclass(frozen=True)
class Preprocess:
    """How one member wants its input: resize the shorter side, centre-crop, normalise.

    ``size`` is the final square side; ``resize`` the shorter side before the crop (defaults
    to ``size``, i.e. no crop margin); ``grayscale`` gives one channel instead of three.
    """

    size: int = 224
    resize: int | None = None
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    grayscale: bool = False

    @cached_property
    def key(self) -> str:  # asked per image per preprocessing: hashed once (issue 35)
        return stable_hash("preprocess", self.size, self.resize, self.mean, self.std, self.grayscale)

    @property
    def decode_needs(self) -> tuple[int, int]:
        """(shorter side, longer side) the decoded image must keep for this preprocessing: the
        engine decodes JPEGs at the smallest scale that keeps every preprocessing's needs."""
        return (self.resize or self.size, 0)

    @cached_property
    def _norm(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) as float32 arrays over the channels, broadcast over (H, W, C)."""
        c = 1 if self.grayscale else 3
        mean = self.mean[:c] if len(self.mean) >= c else self.mean * c
        std = self.std[:c] if len(self.std) >= c else self.std * c
        return np.array(mean, dtype=np.float32), np.array(std, dtype=np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "resize": self.resize,
            "mean": list(self.mean),
            "std": list(self.std),
            "grayscale": self.grayscale,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Preprocess:
        d = dict(d or {})
        unknown = set(d) - {"size", "resize", "mean", "std", "grayscale"}
        if unknown:
            raise PoolError(
                f"unknown preprocess keys {sorted(unknown)}; expected size, resize, mean, std, grayscale"
            )
        gray = bool(d.get("grayscale", False))
        default_mean: tuple[float, ...] = (0.5,) if gray else IMAGENET_MEAN
        default_std: tuple[float, ...] = (0.5,) if gray else IMAGENET_STD
        return cls(
            size=int(d.get("size", 224)),
            resize=None if d.get("resize") is None else int(d["resize"]),
            mean=tuple(float(x) for x in d.get("mean", default_mean)),
            std=tuple(float(x) for x in d.get("std", default_std)),
            grayscale=gray,
        )

    def collate(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        """A batch of this preprocessing's outputs as the encoder's input (B, ...): stacked."""
        return torch.stack(list(tensors))

    def fit(self, img: Image.Image) -> Image.Image:
        """The shorter side resized to ``resize`` (bilinear), then the centre ``size`` square."""
        side = self.resize or self.size
        w, h = img.size
        if (w, h) != (side, side) or side != self.size:
            scale = side / min(w, h)
            nw, nh = max(side, round(w * scale)), max(side, round(h * scale))
            if (nw, nh) != (w, h):
                img = img.resize((nw, nh), Image.Resampling.BILINEAR)
            left, top = (nw - self.size) // 2, (nh - self.size) // 2
            if (nw, nh) != (self.size, self.size):
                img = img.crop((left, top, left + self.size, top + self.size))
        return img

    def __call__(self, img: Image.Image) -> torch.Tensor:
        """PIL RGB image -> float32 tensor (C, size, size), normalised."""
        img = self.fit(img)
        if self.grayscale:
            img = img.convert("L")
        arr = np.asarray(img, dtype=np.float32) / 255.0
        if arr.ndim == 2:
            arr = arr[:, :, None]
        mean, std = self._norm
        if arr.shape[2] != len(mean):  # a grey image under a colour preprocessing's (or the reverse) channels
            mean, std = np.resize(mean, arr.shape[2]), np.resize(std, arr.shape[2])
        return torch.from_numpy(((arr - mean) / std).transpose(2, 0, 1).copy())


@dataclass
class Encoder:
    """One forward pass shared by members: ``module`` maps (B, C, H, W) to (B, D).

    ``output`` says what D is: ``"logits"`` over a model's classes (checkpoint members),
    ``"features"`` for fitted heads (backbone and scratch members).
    ``key`` identifies the weights + architecture + preprocessing; stored features are cached
    under it.
    """

    key: str
    module: torch.nn.Module
    preprocess: Preprocess
    output: Literal["logits", "features"]
    description: str = ""


ProgressFn = Callable[[int, int, str], None]
"""``progress(done, total, message)``: reported by long member work such as fitting."""


class Member(ABC):
    """A pool member. Probabilities are always over the dataset's classes, in their order."""

    name: str
    kind: str
    classes: list[str]
    encoder: Encoder
    spec: dict[str, Any]

    @property
    def fingerprint(self) -> str:
        """Identity for caching: a member with the same fingerprint reuses stored results."""
        return stable_hash("member", self.kind, self.encoder.key, self.spec_for_fingerprint())

    def spec_for_fingerprint(self) -> dict[str, Any]:
        return {k: v for k, v in self.spec.items() if k not in {"name", "path", "trust"}}

    @property
    def fitted(self) -> bool:
        """True when probabilities come from :meth:`fit_predict` over stored features."""
        return self.encoder.output == "features"

    def probs_from_outputs(self, outputs: np.ndarray) -> np.ndarray:
        """(B, D) encoder outputs -> (B, K) probabilities over the dataset's classes."""
        raise NotImplementedError(f"{self.kind} member {self.name!r} is fitted, not run directly")

    def fit_predict(
        self,
        features: np.ndarray,
        labels: np.ndarray,
        progress: ProgressFn | None = None,
        cancel: Callable[[], bool] | None = None,
        fold_cache: Any = None,
    ) -> np.ndarray:
        """Cross-fitted probabilities (N, K) from features (N, D) and labels (N,), -1 = none.

        Labelled images get out-of-fold predictions; unlabelled ones the mean of the folds' models.
        ``fold_cache`` (:class:`scoring.pool.crossfit.FoldCache`) keeps finished folds across a kill.
        """
        raise NotImplementedError(f"{self.kind} member {self.name!r} is not fitted")

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "fingerprint": self.fingerprint,
            "classes": list(self.classes),
            "preprocess": self.encoder.preprocess.to_dict(),
            "encoder": self.encoder.description,
        }


@dataclass
class Pool:
    """An ordered set of members scoring one dataset (whose classes are ``classes``)."""

    members: list[Member]
    classes: list[str]
    spec: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.members:
            raise PoolError("the pool is empty: give at least one member (see `image-triage score --help`)")
        names = [m.name for m in self.members]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise PoolError(f"pool member names must be unique; repeated: {dupes}")

    @property
    def fingerprint(self) -> str:
        return stable_hash("pool", sorted(m.fingerprint for m in self.members), self.classes)

    def encoders(self) -> list[Encoder]:
        """Distinct encoders, in first-use order."""
        seen: dict[str, Encoder] = {}
        for m in self.members:
            seen.setdefault(m.encoder.key, m.encoder)
        return list(seen.values())

    def preprocesses(self) -> list[Preprocess]:
        seen: dict[str, Preprocess] = {}
        for e in self.encoders():
            seen.setdefault(e.preprocess.key, e.preprocess)
        return list(seen.values())

    def members_of(self, encoder_key: str) -> Sequence[Member]:
        return [m for m in self.members if m.encoder.key == encoder_key]
