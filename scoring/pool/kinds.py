"""The registry of pool member kinds, in the manner of torchvision's model registry: each kind
is its keys (checked by scoring.pool.schema), its builder, and its refit policy; the pool file,
the command line's ``--member``, re-ranking and the app's pool builder all read it here.

Adding a kind is one module with its member class and a builder, plus one :func:`register_kind`
(see docs/ARCHITECTURE.md). An unknown kind is a one-line error listing the registered ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from scoring.pool.base import Member, PoolError
from scoring.pool.finetune import finetune_fit_seconds, finetune_members
from scoring.pool.member_spec import MemberSpec
from scoring.pool.members import CheckpointMember, backbone_members, head_fit_seconds
from scoring.pool.schema import (
    BACKBONE_KEYS,
    CHECKPOINT_KEYS,
    FINETUNE_KEYS,
    SCRATCH_KEYS,
    Key,
    validate_against,
)
from scoring.pool.scratch import scratch_fit_seconds, scratch_members
from scoring.pool.timing import FitFacts
from scoring.registry import Registry

Builder = Callable[[MemberSpec, list[str]], list[Member]]  # (checked spec, dataset classes) -> members
REFITS = ("never", "features", "network")


@dataclass(frozen=True)
class MemberKind:
    name: str
    help: str  # one line: the pool builder's button, `pool check`
    keys: dict[str, Key]  # its own keys, beside name, kind, preprocess and train_list
    build: Builder
    # Re-ranking after relabels refits: "features" members always (a head on stored features,
    # seconds), "network" members only when asked (a network per fold), "never" a fixed model.
    refit: str = "never"
    required: tuple[str, ...] = ()  # keys a spec of this kind must give
    archs: tuple[str, ...] = ()  # the pool builder's architecture choices (the first is its default)
    # Seconds its fit takes here (a member it built, the run's FitFacts), measured on this machine:
    # the run's estimate asks the kind (scoring.tasks.estimate_time names no kind). None: no fit.
    fit_seconds: Callable[[Any, FitFacts], float] | None = None


_KINDS: Registry[MemberKind] = Registry("member kind", PoolError, ("checkpoint", "backbone", "finetune", "scratch"))


def register_kind(kind: MemberKind) -> MemberKind:
    if kind.refit not in REFITS:
        raise ValueError(f"member kind {kind.name!r}: refit must be one of {', '.join(REFITS)}")
    return _KINDS.add(kind.name, kind)


def unregister_kind(name: str) -> None:
    _KINDS.remove(name)


def kinds() -> dict[str, MemberKind]:
    return {k.name: k for k in _KINDS.values()}


def get_kind(name: str) -> MemberKind:
    return _KINDS.get(name)


def validate_member(spec: Any, where: str) -> MemberSpec:
    """One member spec, checked and typed (``name`` filled in); PoolError naming ``where`` if bad.
    The only gate: everything that builds a member goes through it, and a spec it has already
    typed passes through unchecked (validated once, at the edge)."""
    if isinstance(spec, MemberSpec):
        return spec
    out = validate_against(spec, where, {k.name: k.keys for k in _KINDS.values()})
    kind = _KINDS.get(out["kind"])
    missing = [key for key in kind.required if key not in out]
    if missing:
        raise PoolError(f"{where}: a {kind.name} member needs `{missing[0]}` ({kind.keys[missing[0]].help})")
    return MemberSpec.from_checked(out)


def refits(spec: Mapping[str, Any], networks: bool) -> bool:
    """Whether re-ranking refits a member of this spec (``networks``: the networks too)."""
    name = str(spec.get("kind"))
    if name not in _KINDS:
        return False
    kind = _KINDS.get(name)
    return kind.refit == "features" or (networks and kind.refit == "network")


def refits_member(member: Any, networks: bool) -> bool:
    """Whether re-ranking refits this built member, by its kind's rule (``networks``: the
    networks too); a member of an unknown kind is never refitted."""
    return refits({"kind": getattr(member, "kind", None)}, networks)


def _checkpoint(spec: MemberSpec, dataset_classes: list[str]) -> list[Member]:
    if not spec.classes:
        raise PoolError(f"member {spec.name!r}: give its class names (`classes` or `classes_file`)")
    return [CheckpointMember(spec, dataset_classes)]


_CIFAR = ("cifar_resnet20", "cifar_resnet32", "cifar_resnet44", "cifar_resnet56")
for _kind in (
    MemberKind("checkpoint", "a trained classifier of yours (file, architecture, class names)", CHECKPOINT_KEYS,
               _checkpoint, "never", ("path",),
               (*_CIFAR, "resnet18", "resnet50", "efficientnet_lite0", "small_cnn", "tiny_mlp")),
    MemberKind("backbone", "pre-trained features + logistic heads cross-fitted on your labels", BACKBONE_KEYS,
               backbone_members, "features", (), ("efficientnet_lite0", "resnet18", "resnet50", "convnext_tiny", "vit_b_16"),
               head_fit_seconds),
    MemberKind("finetune", "a pre-trained network fine-tuned whole in 5 folds (best with a GPU)", FINETUNE_KEYS,
               finetune_members, "network", (), ("efficientnet_lite0", "resnet18", "resnet50", _CIFAR[0], _CIFAR[3]),
               finetune_fit_seconds),
    MemberKind("scratch", "small networks trained from scratch, for small images", SCRATCH_KEYS,
               scratch_members, "network", (), ("small_cnn", "tiny_mlp"), scratch_fit_seconds),
):
    register_kind(_kind)
