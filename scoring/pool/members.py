"""The three kinds of pool member: ``checkpoint``, ``backbone`` (cross-fitted heads on a
pre-trained feature extractor) and ``scratch`` (small networks trained with cross-fitting).

Every member predicts over the *dataset's* classes. Fitted members (backbone, scratch) are
K-fold cross-fitted: each labelled image is predicted by a model that never saw it, so the
scores stay honest (out-of-sample); unlabelled images get the mean of the K fold models.
"""

from __future__ import annotations

import io
import logging
import math
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from scoring.io.safeio import read_regular, sha1_regular
from scoring.pool.base import (
    Encoder,
    Member,
    PoolError,
    Preprocess,
    pool_file_errors,
    stable_hash,
)
from scoring.pool.crossfit import (
    WEIGHT_DECAYS,
    choose_weight_decay,
    cross_fit,
    fit_logreg,
    fold_workers,
    subsample,
)
from scoring.pool.member_spec import MemberSpec, per_seed
from scoring.pool.models.registry import get_model, is_torchvision
from scoring.pool.timing import FitFacts, head_seconds
from scoring.pool.weights import Weights, packaged, torchvision_weights
from scoring.trust import is_trusted

log = logging.getLogger(__name__)

STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict", "net", "weights")


def file_digest(path: Path) -> str:
    return sha1_regular(path, max_bytes=1 << 40)  # weights files may be many GB


def _softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def match_classes(model_classes: list[str], dataset_classes: list[str], who: str) -> np.ndarray:
    """Column of each dataset class in the model's output; PoolError naming both lists if any lacks."""
    pos = {c: i for i, c in enumerate(model_classes)}
    missing = [c for c in dataset_classes if c not in pos]
    if missing:
        raise PoolError(
            f"{who} does not know the dataset's classes {missing}. Model classes: {model_classes}; "
            f"dataset classes: {dataset_classes}. Give the member the right `classes`, or use a "
            "backbone member to fit a head on this dataset's labels."
        )
    return np.array([pos[c] for c in dataset_classes], dtype=np.int64)


# ----------------------------------------------------------------------------- loading


_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTOCOLS = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


MAX_CHECKPOINT_BYTES = 8 * 1024**3  # larger than any classifier checkpoint a pool would hold


def _checkpoint_format(path: Path, data: bytes) -> str:
    """``torchscript``, ``zip`` (torch.save since 1.6) or ``legacy`` (older torch.save); PoolError
    naming the file for anything else (a text file, an image, a truncated download)."""
    head = data[:8]
    if head.startswith(_ZIP_MAGIC):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise PoolError(f"{path} is a damaged or truncated checkpoint ({exc}); download or save it again") from exc
        return "torchscript" if any(n.endswith("constants.pkl") or "/code/" in n for n in names) else "zip"
    if head[:2] in _PICKLE_PROTOCOLS:
        return "legacy"
    raise PoolError(
        f"{path} is not a PyTorch checkpoint (it starts with {head[:8]!r}); give a file saved with torch.save "
        "or torch.jit.save"
    )


_NEEDS_TRUST = ("only if you trust its source, run again with --trust-checkpoint (a `trust` key in a pool file "
                "or a project is not enough: trust is given when the code would run)")


def load_checkpoint_module(path: Path, arch: str | None, num_classes: int, trust: bool = False) -> nn.Module:
    """A TorchScript file, or a state dict (plain / nested / ``module.``-prefixed) into ``arch``.

    Nothing in the file runs unless ``trust is True`` (see :mod:`scoring.trust`): a state dict
    loads with ``weights_only=True``; a TorchScript file (code) or a pickled model is refused
    untrusted. The file is read once, through the safe reader (regular files only, size-capped).
    """
    trusted = trust is True
    with pool_file_errors(path, "checkpoint"):
        data = read_regular(path, max_bytes=MAX_CHECKPOINT_BYTES, what="checkpoint")
    fmt = _checkpoint_format(path, data)
    if fmt == "torchscript":
        if not trusted:
            raise PoolError(f"{path} is TorchScript, which is code that runs when the model does; "
                            f"save it as a state dict, or, {_NEEDS_TRUST}")
        try:
            return torch.jit.load(io.BytesIO(data), map_location="cpu")
        except Exception as exc:  # noqa: BLE001 - any failure is a bad file for the user
            raise PoolError(f"{path} looks like TorchScript but does not load: {_first_line(exc)}") from exc
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=not trusted)
    except Exception as exc:  # noqa: BLE001
        msg = str(exc)
        if not trusted and ("Unsupported global" in msg or "GLOBAL" in msg or "Unsupported operand" in msg):
            raise PoolError(
                f"{path} needs to run code to unpickle (it stores Python objects, not just tensors), which "
                f"could be unsafe. Re-save it as a state dict, or, {_NEEDS_TRUST}."
            ) from exc
        raise PoolError(
            f"{path} is a damaged or truncated checkpoint torch.load cannot read ({_first_line(exc)}); "
            "download or save it again"
        ) from exc
    if isinstance(obj, nn.Module):  # a whole pickled model (trusted load)
        return obj
    if not isinstance(obj, dict):
        raise PoolError(f"{path} holds a {type(obj).__name__}, not a state dict or a model")
    sd: Any = obj
    for key in STATE_DICT_KEYS:
        if isinstance(sd.get(key), dict):
            sd = sd[key]
            break
    if not any(isinstance(v, torch.Tensor) for v in sd.values()):
        raise PoolError(f"{path} has no tensors under {list(obj)[:6]}; expected a state dict")
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    if not arch:
        raise PoolError(f"{path} is a state dict: give the member an `arch` (e.g. cifar_resnet20, resnet18)")
    model = get_model(arch, num_classes=num_classes)
    try:
        result = model.load_state_dict(sd, strict=False)
    except RuntimeError as exc:  # shapes differ: another depth/width, or another number of classes
        detail = next((ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln), str(exc).splitlines()[-1])
        raise PoolError(f"{path} does not fit architecture {arch!r} with {num_classes} classes: {detail[:200]}") from exc
    problems = []
    if result.missing_keys:
        problems.append(f"missing keys {result.missing_keys[:4]}")
    if result.unexpected_keys:
        problems.append(f"unexpected keys {result.unexpected_keys[:4]}")
    if problems:
        raise PoolError(f"{path} does not fit architecture {arch!r}: {'; '.join(problems)}. Check `arch`.")
    return model


def _first_line(exc: BaseException) -> str:
    lines = [ln for ln in str(exc).splitlines() if ln.strip()]
    return lines[0][:200] if lines else type(exc).__name__


def _safe_load_into(model: nn.Module, sd: dict[str, torch.Tensor], path: Path, arch: str) -> None:
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise PoolError(f"{path} does not fit architecture {arch!r}: {str(exc).splitlines()[1:3]}") from exc


# ----------------------------------------------------------------------------- checkpoint


class CheckpointMember(Member):
    """A trained classifier; its logits are matched to the dataset's classes by name."""

    kind = "checkpoint"

    def __init__(self, spec: MemberSpec, dataset_classes: list[str]):
        assert spec.classes is not None and spec.path is not None  # the kind's builder checked them
        self.spec = dict(spec)
        self.name = spec.name
        self.classes = list(spec.classes)
        path = Path(spec.path)
        pp = Preprocess.from_dict(spec.preprocess)
        try:
            module = load_checkpoint_module(path, spec.arch, len(self.classes), is_trusted(spec))
        except RuntimeError as exc:  # size mismatch from load_state_dict
            raise PoolError(
                f"{path} does not fit architecture {spec.arch!r} with {len(self.classes)} classes: "
                f"{str(exc).splitlines()[-1].strip()}"
            ) from exc
        self._columns = match_classes(self.classes, dataset_classes, f"member {self.name!r} ({path.name})")
        key = stable_hash("checkpoint", file_digest(path), spec.arch, len(self.classes), pp.key)
        self.encoder = Encoder(key, module.eval(), pp, "logits", f"{spec.arch or 'torchscript'} {path.name}")

    def probs_from_outputs(self, outputs: np.ndarray) -> np.ndarray:
        if outputs.shape[1] != len(self.classes):
            raise PoolError(
                f"member {self.name!r} outputs {outputs.shape[1]} scores but has {len(self.classes)} class names; "
                "fix its `classes`"
            )
        p = _softmax(outputs)[:, self._columns]
        return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


# ----------------------------------------------------------------------------- backbone


class _Features(nn.Module):
    """A classifier cut at its penultimate layer: (B, C, H, W) -> (B, D)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        if not hasattr(model, "forward_features"):
            _cut_head(model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self.model, "forward_features"):
            y = self.model.forward_features(x)  # type: ignore[operator]
        else:
            y = self.model(x)
        return y.flatten(1)


def _cut_head(model: nn.Module) -> None:
    for attr in ("fc", "linear", "head"):
        if isinstance(getattr(model, attr, None), nn.Linear):
            setattr(model, attr, nn.Identity())
            return
    cls = getattr(model, "classifier", None)
    if isinstance(cls, nn.Linear):
        model.classifier = nn.Identity()  # type: ignore[assignment]
        return
    if isinstance(cls, nn.Sequential) and isinstance(cls[-1], nn.Linear | nn.Conv2d):
        cls[-1] = nn.Identity()
        return
    heads = getattr(model, "heads", None)
    if isinstance(heads, nn.Sequential) and hasattr(heads, "head"):
        heads.head = nn.Identity()
        return
    raise PoolError(f"cannot find the classification layer of {type(model).__name__} to cut at the penultimate layer")


def load_backbone(spec: MemberSpec) -> tuple[nn.Module, Preprocess, str, str]:
    """Feature module, preprocessing, encoder key and description for a backbone spec."""
    arch = spec.arch
    if not arch:
        raise PoolError(f"backbone member {spec.name!r} needs an `arch`")
    if spec.path:
        path = Path(spec.path)
        n = len(spec.classes) if spec.classes else spec.num_classes or 10
        model = load_checkpoint_module(path, arch, n, is_trusted(spec))
        pp = Preprocess.from_dict(spec.preprocess)
        key = stable_hash("backbone", file_digest(path), arch, pp.key)
        return _Features(model).eval(), pp, key, f"{arch} {path.name} (penultimate)"
    model, w = pretrained_model(arch, spec.weights)
    pp = Preprocess.from_dict({**w.preprocess, **(spec.preprocess or {})})
    key = stable_hash("backbone", file_digest(w.path), arch, pp.key)
    return _Features(model).eval(), pp, key, f"{arch} {w.source} (penultimate)"


def pretrained_model(arch: str, weights: str | None = None) -> tuple[nn.Module, Weights]:
    """An ImageNet-trained ``arch``: packaged weights first, else torchvision's (see scoring.pool.weights)."""
    w = None if weights else packaged(arch)
    if w is None:
        if not is_torchvision(arch):
            raise PoolError(f"{arch!r} has no pre-trained weights here: give `path` to a checkpoint of it")
        w = torchvision_weights(arch, weights)
    model = get_model(arch, num_classes=w.num_classes)
    _safe_load_into(model, w.state_dict(), w.path, arch)
    return model, w


class FittedMember(Member):
    """A member fitted on the dataset's own labels over a shared encoder's stored outputs."""

    def __init__(self, spec: MemberSpec, encoder: Encoder, dataset_classes: list[str]):
        self.spec = dict(spec)
        self.name = spec.name
        self.classes = list(dataset_classes)
        self.encoder = encoder
        self.seed = spec.seed or 0
        self.folds = spec.folds or 5


class HeadMember(FittedMember):
    """A logistic-regression head on a shared backbone, cross-fitted on a fraction of each fold."""

    kind = "backbone"

    def __init__(self, spec: MemberSpec, encoder: Encoder, dataset_classes: list[str]):
        super().__init__(spec, encoder, dataset_classes)
        self.fraction = float(spec.fraction if spec.fraction is not None else 1.0)
        self.weight_decay = None if spec.weight_decay is None else float(spec.weight_decay)  # None: chosen on the data (crossfit.choose_weight_decay)

    def fit_predict(self, features, labels, progress=None, cancel=None, fold_cache=None):  # type: ignore[no-untyped-def]
        k = len(self.classes)
        chosen: list[float] = []

        def choose(train: np.ndarray) -> None:  # once, on the first fold's training part
            if self.weight_decay is None:
                sub = subsample(train, labels, self.fraction, self.seed)
                chosen.append(choose_weight_decay(features[sub], labels[sub], k, self.seed))
                log.info("%s: L2 penalty %g chosen on held-out images", self.name, chosen[0])

        def fit(train: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
            sub = subsample(train, labels, self.fraction, self.seed)
            wd = self.weight_decay if self.weight_decay is not None else chosen[0]
            predict = fit_logreg(features[sub], labels[sub], k, self.seed, wd)
            return lambda idx: predict(features[idx])

        return cross_fit(labels, k, self.folds, fit, progress, cancel, self.name, fold_cache,
                         workers=fold_workers(self.folds), first=choose)


def backbone_members(spec: MemberSpec, dataset_classes: list[str]) -> list[Member]:
    """One backbone spec -> one member per (fraction, seed), all sharing one encoder."""
    module, pp, key, desc = load_backbone(spec)
    encoder = Encoder(key, module, pp, "features", desc)
    return [HeadMember(sub.replace(fraction=float(frac)), encoder, dataset_classes)
            for frac in spec.fractions or [0.25, 0.5, 0.75, 1.0]
            for sub in per_seed(spec, drop=("fractions", "seeds"), tag=f"-f{round(float(frac) * 100)}")]


# ----------------------------------------------------------------------------- pixels


class Pixels(nn.Module):
    """The identity encoder of fitted networks (scratch, finetune): preprocessed pixels, flattened."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


def head_fit_seconds(m: HeadMember, facts: FitFacts) -> float:
    """The kind's fit time here: a logistic head on its share of each fold's rows, timed at its
    encoder's feature width as folds fitted at once take it, once per round of them, and, where
    the L2 penalty is chosen on the data, once per penalty tried on four fifths of the first
    fold's rows."""
    dim, k = facts.feature_dim(m.encoder), facts.n_classes
    rows, workers = max(2, int(m.fraction * facts.n_train)), fold_workers(m.folds)
    one = facts.probe(("logistic head", dim, k, rows, workers), lambda: head_seconds(rows, dim, k, workers))
    return (math.ceil(m.folds / workers) + (0.8 * len(WEIGHT_DECAYS) if m.weight_decay is None else 0.0)) * one
