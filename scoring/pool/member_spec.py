"""A pool member's spec as a typed object: made once, at the edge, by the one gate
(:func:`scoring.pool.kinds.validate_member`), and read by the builders as typed fields.

A pool file, a ``--member`` argument, the app's pool builder, the automatic pool and a stored
run all give a table of keys; the gate checks every key of it against its kind's schema
(scoring.pool.schema: type, range, unknown keys, naming the file and member) and returns a
:class:`MemberSpec`. A spec that is already a MemberSpec is not checked again.

It is also a read-only mapping of the keys it was given (``spec["name"]``, ``dict(spec)``), which
is what is stored, hashed into the member's fingerprint and written back to a pool file, so a
spec reads and hashes the same whether it came typed or as a table; a plugin kind's own keys are
in :attr:`MemberSpec.extra` and in the mapping.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, eq=False)
class MemberSpec(Mapping[str, Any]):
    """One checked member spec. None: the key was not given (the builder's default applies)."""

    kind: str
    name: str
    preprocess: Mapping[str, Any] | None = None  # size, resize, mean, std, grayscale (schema.PREPROCESS)
    train_list: str | None = None
    # a model file (checkpoint, backbone and finetune members)
    path: str | None = None
    arch: str | None = None
    classes: list[str] | None = None
    classes_file: str | None = None
    trust: Any = None  # a file's true/false (never trust), or scoring.trust.USER_TRUST: the user's word now
    weights: str | None = None
    num_classes: int | None = None
    # fitting
    folds: int | None = None
    fractions: list[float] | None = None
    seeds: list[int] | None = None
    head: str | None = None
    weight_decay: float | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    tta: bool | None = None
    train_blocks: int | None = None
    # what the pool adds to each member it expands a spec into (one per seed / fraction)
    seed: int | None = None
    fraction: float | None = None
    start: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # a plugin kind's own keys

    @classmethod
    def from_checked(cls, checked: Mapping[str, Any]) -> MemberSpec:
        """The typed form of a table the gate has checked (only the gate calls this)."""
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in checked.items() if k in known},
                   extra={k: v for k, v in checked.items() if k not in known})

    def as_dict(self) -> dict[str, Any]:
        """The keys given, as a table (what is stored, hashed and written to a pool file)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return {k: v for k, v in out.items() if v is not None} | dict(self.extra)

    def replace(self, **changes: Any) -> MemberSpec:
        """A copy with some keys changed (None drops a key)."""
        known = {f.name for f in dataclasses.fields(self)} - {"extra"}
        own = {k: v for k, v in changes.items() if k in known}
        extra = {k: v for k, v in {**self.extra, **{k: v for k, v in changes.items() if k not in known}}.items()
                 if v is not None}
        return dataclasses.replace(self, **own, extra=extra)

    def __getitem__(self, key: str) -> Any:
        return self.as_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.as_dict())

    def __len__(self) -> int:
        return len(self.as_dict())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and self.as_dict() == dict(other)

    __hash__ = None  # type: ignore[assignment]  # a mapping of lists: not hashable


def per_seed(spec: MemberSpec, *, drop: tuple[str, ...] = ("seeds",), tag: str = "") -> list[MemberSpec]:
    """One member spec per seed of ``spec.seeds`` (default [0]), named ``<name><tag>-s<seed>``,
    without the keys in ``drop``: the one expansion every builder of seeded members uses."""
    cleared = dict.fromkeys(drop)
    return [spec.replace(**cleared, name=f"{spec.name}{tag}-s{seed}", seed=int(seed)) for seed in spec.seeds or [0]]
