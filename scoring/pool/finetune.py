"""``finetune`` members: a pre-trained network fine-tuned whole on the dataset, K-fold cross-fitted.

The network starts from a checkpoint member's file (``path``, ``arch``, ``classes``) or from
ImageNet weights (``arch``, ``weights``, as for a backbone), gets a head over the dataset's
classes (initialised from the old head's rows where the class names match), and is trained on
K-1 folds and predicts the held-out fold, so each image is predicted by a network that never
saw it. Training: SGD with Nesterov momentum, a one-cycle schedule, weight decay; augmentation
suited to the image size (flips and padded crops for small images, random resized crops for
large ones); optional flip at prediction time (``tta``); float16 autocast and channels-last on
CUDA. Pixels are decoded once by the inference pass and held in memory for every epoch.

With ``train_blocks = N`` only the network's last N blocks and its head are trained (issue 34):
the rest is a frozen encoder whose activation maps the inference pass computes once per image
(through ONNX Runtime on a CPU, stored float16 like any features), and every fold and epoch
trains on those maps, flipped at random. On 8,000 CIFAR-10 images at 160 px the last five blocks
of EfficientNet-Lite0 reach 0.827 held-out top-1 in 4 epochs (59 s each here) where the frozen
features with a logistic head give 0.788 and the whole network at 64 px 0.675
(``benchmarks/bench_finetune_scale.py``).

Spec keys: those of the member it starts from, plus ``epochs``, ``lr``, ``folds``, ``seeds``,
``tta``, ``batch_size``, ``train_blocks`` (all optional).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from scoring.pool.base import Encoder, Member, PoolError, Preprocess, stable_hash
from scoring.pool.crossfit import cross_fit
from scoring.pool.member_spec import MemberSpec, per_seed
from scoring.pool.members import (
    FittedMember,
    Pixels,
    file_digest,
    load_checkpoint_module,
    pretrained_model,
)
from scoring.pool.timing import FitFacts, step_seconds
from scoring.progress import Cancelled
from scoring.trust import is_trusted


def _last_linear(model: nn.Module) -> tuple[nn.Module, str, nn.Linear]:
    """The classification layer: (its parent module, attribute name, the layer)."""
    last: tuple[nn.Module, str, nn.Linear] | None = None
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Linear):
                last = (parent, name, child)
    if last is None:
        raise PoolError(f"cannot find the classification layer of {type(model).__name__} to fine-tune")
    return last


def with_new_head(model: nn.Module, old_classes: list[str] | None, classes: list[str]) -> nn.Module:
    """``model`` predicting ``classes``: rows of the old head kept where class names match."""
    parent, name, old = _last_linear(model)
    new = nn.Linear(old.in_features, len(classes))
    if old_classes:
        pos = {c: i for i, c in enumerate(old_classes)}
        with torch.no_grad():
            for j, c in enumerate(classes):
                if c in pos and pos[c] < old.out_features:
                    new.weight[j] = old.weight[pos[c]]
                    new.bias[j] = old.bias[pos[c]]
    setattr(parent, name, new)
    return model


def _flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Per-image horizontal flip (of pixels, or of a trunk's activation maps)."""
    flip = torch.rand(x.shape[0], generator=gen) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1).to(x.device), x.flip(3), x)


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Per-image horizontal flip, then a padded random crop (small images) or a random resized
    crop of the batch (large ones)."""
    b, _, h, w = x.shape
    x = _flip(x, gen)
    if h <= 64:
        pad = max(2, h // 8)
        xp = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen).tolist()
        dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen).tolist()
        return torch.stack([xp[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(b)])
    scale = float(torch.empty(1).uniform_(0.35, 1.0, generator=gen))
    ch, cw = max(8, round(h * scale**0.5)), max(8, round(w * scale**0.5))
    top = int(torch.randint(0, h - ch + 1, (1,), generator=gen))
    left = int(torch.randint(0, w - cw + 1, (1,), generator=gen))
    return F.interpolate(x[:, :, top : top + ch, left : left + cw], size=(h, w), mode="bilinear", align_corners=False)


class FineTuneMember(FittedMember):
    """A pre-trained network fine-tuned in K folds over the stored pixels."""

    kind = "finetune"

    def __init__(self, spec: MemberSpec, encoder: Encoder, dataset_classes: list[str], start: nn.Module,
                 map_shape: tuple[int, int, int] | None = None):
        super().__init__(spec, encoder, dataset_classes)
        self.start = start  # the pre-trained network (or its last blocks) with a head over the dataset's classes
        self.map_shape = map_shape  # (C, h, w) of the frozen trunk's output when only the last blocks train
        self.epochs = spec.epochs
        self.lr = float(spec.lr or 0.05)
        self.batch_size = spec.batch_size or 128
        self.tta = spec.tta is not False
        self.device = torch.device("cpu")

    def epochs_for(self, n_train: int) -> int:
        """4 passes over large sets (as measured on CIFAR-10), more over small ones."""
        return int(self.epochs or int(np.clip(round(20_000 / max(n_train, 1)), 4, 15)))

    def fit_predict(self, features, labels, progress=None, cancel=None, fold_cache=None):  # type: ignore[no-untyped-def]
        pp = self.encoder.preprocess
        shape = self.map_shape or (3, pp.size, pp.size)
        if features.ndim != 2 or features.shape[1] != int(np.prod(shape)):
            raise PoolError(f"member {self.name!r}: the stored inputs have {features.shape[-1]} values an image, "
                            f"not the {int(np.prod(shape))} of {'x'.join(map(str, shape))} it trains on; the project's "
                            "cache was changed outside Image Triage: score into a new project file")
        x_all = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)).view(-1, *shape)
        k = max(2, min(self.folds, int((labels >= 0).sum())))
        epochs = self.epochs_for(int((labels >= 0).sum() * (k - 1) / k))
        fold_no = {"f": 0}

        def report(epoch: int, msg: str) -> None:
            if progress is not None:
                progress(fold_no["f"] * epochs + epoch, k * epochs, f"{self.name}: fold {fold_no['f'] + 1}/{k} {msg}")

        def fit(train: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
            net = self._train(x_all, labels, train, epochs, report, cancel)
            fold_no["f"] += 1
            return lambda idx: self._predict(net, x_all, idx)

        def on_cached(_fold: int) -> None:
            fold_no["f"] += 1

        return cross_fit(labels, len(self.classes), self.folds, fit, None, cancel, self.name,
                         fold_cache=fold_cache, on_cached=on_cached)

    def _train(self, x_all: torch.Tensor, labels: np.ndarray, train: np.ndarray, epochs: int,
               report: Callable[[int, str], None], cancel: Callable[[], bool] | None) -> nn.Module:
        torch.manual_seed(self.seed * 1000 + len(train))
        gen = torch.Generator().manual_seed(self.seed + len(train))
        cuda = self.device.type == "cuda"
        net = copy.deepcopy(self.start).to(self.device)
        if cuda:
            net = net.to(memory_format=torch.channels_last)
        y = torch.from_numpy(labels[train]).long()
        steps_per_epoch = max(1, -(-len(train) // self.batch_size))
        # on the trunk's maps the pre-trained blocks learn at a fifth of the new head's rate, with
        # label smoothing (measured on CIFAR-10 at 160 px: 0.827 held out after 4 epochs)
        head = _last_linear(net)[2]
        body = [p for p in net.parameters() if all(p is not q for q in head.parameters())]
        rates = [self.lr, self.lr * (0.2 if self.map_shape else 1.0)]
        opt = torch.optim.SGD([{"params": list(head.parameters()), "lr": rates[0]}, {"params": body, "lr": rates[1]}],
                              lr=self.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
        smoothing = 0.1 if self.map_shape else 0.0
        total = epochs * steps_per_epoch
        # the one-cycle schedule needs a step up and a step down: with one epoch of four batches its
        # quarter-way warm-up was zero steps long and torch divided by zero
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=rates, total_steps=total, pct_start=min(max(0.25, 2.0 / total), (total - 1) / total),
        ) if total >= 3 else None
        scaler = torch.amp.GradScaler("cuda", enabled=cuda)
        net.train()
        for epoch in range(epochs):
            report(epoch, f"epoch {epoch + 1}/{epochs}")
            order = torch.randperm(len(train), generator=gen)
            for s in range(0, len(train), self.batch_size):
                if cancel is not None and cancel():
                    raise Cancelled()
                bi = order[s : s + self.batch_size]
                if len(bi) < 2:
                    continue  # BatchNorm cannot train on one image
                xb = x_all[torch.from_numpy(train)[bi]]
                xb = (_flip(xb, gen) if self.map_shape else _augment(xb, gen)).to(self.device, non_blocking=True)
                if cuda:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                with torch.autocast(self.device.type, dtype=torch.float16, enabled=cuda):
                    loss = F.cross_entropy(net(xb), y[bi].to(self.device), label_smoothing=smoothing)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                if sched is not None:
                    sched.step()
        net.eval()
        return net

    def _predict(self, net: nn.Module, x_all: torch.Tensor, idx: np.ndarray) -> np.ndarray:
        out = []
        cuda = self.device.type == "cuda"
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.float16, enabled=cuda):
            for s in range(0, len(idx), 256):
                xb = x_all[torch.from_numpy(idx[s : s + 256])].to(self.device)
                p = torch.softmax(net(xb).float(), 1)
                if self.tta:
                    p = (p + torch.softmax(net(xb.flip(3)).float(), 1)) / 2
                out.append(p.cpu())
        return torch.cat(out).double().numpy() if out else np.zeros((0, len(self.classes)))


def finetune_members(spec: MemberSpec, dataset_classes: list[str]) -> list[Member]:
    """One finetune spec -> one member per seed, sharing the pixel encoder at the member's size."""
    arch = spec.arch
    if not arch:
        raise PoolError(f"finetune member {spec.name!r} needs an `arch`")
    if spec.path:
        classes = list(spec.classes or [])
        n = len(classes) or spec.num_classes or len(dataset_classes)
        model = load_checkpoint_module(Path(spec.path), arch, n, is_trusted(spec))
        pp = Preprocess.from_dict(spec.preprocess)
        origin = file_digest(Path(spec.path))
    else:
        model, w = pretrained_model(arch, spec.weights)
        classes = []
        pp = Preprocess.from_dict({**w.preprocess, **(spec.preprocess or {})})
        origin = file_digest(w.path)
    if pp.grayscale:
        raise PoolError(f"finetune member {spec.name!r}: pre-trained networks take colour input; drop grayscale")
    start = with_new_head(model, classes, list(dataset_classes))
    map_shape = None
    if spec.train_blocks:
        split = getattr(type(start), "split", None)  # networks that know where their blocks are
        if split is None:
            raise PoolError(f"finetune member {spec.name!r}: `train_blocks` works with efficientnet_lite0; "
                            f"{arch} is fine-tuned whole (drop `train_blocks`)")
        try:
            trunk, start = split(start, spec.train_blocks)
        except ValueError as exc:
            raise PoolError(f"finetune member {spec.name!r}: {exc}") from None
        trunk.eval()
        map_shape = _map_shape(trunk, pp.size)
        encoder = Encoder(stable_hash("trunk", origin, arch, spec.train_blocks, pp.key), trunk, pp, "features",
                          f"{arch} without its last {spec.train_blocks} blocks, {pp.size}px")
    else:
        encoder = Encoder(stable_hash("pixels", pp.key), Pixels(), pp, "features", f"pixels {pp.size}px")
    return [FineTuneMember(sub.replace(start=stable_hash(origin, arch, spec.train_blocks)), encoder, dataset_classes,
                           start, map_shape) for sub in per_seed(spec)]


def _map_shape(trunk: nn.Module, size: int) -> tuple[int, int, int]:
    """(C, h, w) of the trunk's flattened output for a ``size`` px square: from its last block's
    channels and one forward of a blank image."""
    with torch.inference_mode():
        width = int(trunk(torch.zeros(1, 3, size, size)).shape[1])
    channels = next(m.out_channels for m in reversed(list(trunk.modules())) if isinstance(m, nn.Conv2d))
    side = round((width // channels) ** 0.5)
    if channels * side * side != width:
        raise PoolError(f"the trunk's output ({width} values) is not a square map of {channels} channels")
    return channels, side, side


PROBE_BATCH = 32  # images per timed training step: a step of 128 at 64 px takes over a second here


def finetune_fit_seconds(m: FineTuneMember, facts: FitFacts) -> float:
    """The kind's fit time here: a training step of its network (a copy: the probe trains it),
    timed on a batch at its input size, per image, over every epoch and fold. It was a forward
    pass times three: one fold of 1,600 CIFAR images at 64 px was said at 27 s and took 51 s."""
    pp = m.encoder.preprocess
    c, side = (m.map_shape[0], m.map_shape[1]) if m.map_shape else (3, pp.size)
    step = facts.probe(("train step", m.spec.get("arch"), m.spec.get("start"), pp.key, facts.n_classes),
                       lambda: step_seconds(copy.deepcopy(m.start), c, side, facts.n_classes, PROBE_BATCH,
                                            facts.device))
    return m.epochs_for(facts.n_train) * facts.n_train * m.folds * step / PROBE_BATCH
