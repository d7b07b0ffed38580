"""The schema of a pool member: every key, its type, its allowed values, which kinds take it.

A pool file is user input that decides whether code runs (``trust``), so it is checked as
strictly as a form: every value's type (``trust = "false"`` is a string, not a boolean, and is
refused), ranges, unknown keys by name, and every message names the file and the member.
:func:`scoring.pool.kinds.validate_member` is the only gate; everything that builds a member goes through it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from scoring.pool.base import PoolError
from scoring.trust import USER_TRUST


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (isinstance(v, int | float) and not isinstance(v, bool)) and math.isfinite(v)


_TYPES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "str": ("a string", lambda v: isinstance(v, str) and v != "" and "\x00" not in v),
    "bool": ("true or false (a boolean, not a string)", lambda v: isinstance(v, bool)),
    "int": ("a whole number", _is_int),
    "float": ("a number", _is_num),
    "str_list": ("a list of strings", lambda v: isinstance(v, list) and all(isinstance(x, str) and x for x in v)),
    "int_list": ("a list of whole numbers", lambda v: isinstance(v, list) and bool(v) and all(_is_int(x) for x in v)),
    "float_list": ("a list of numbers", lambda v: isinstance(v, list) and bool(v) and all(_is_num(x) for x in v)),
    "table": ("a table such as { size = 32 }", lambda v: isinstance(v, dict)),
    # a file's true/false is checked here; only the user's run-time grant makes it trust (scoring.trust)
    "trust": ("true or false (a boolean, not a string)", lambda v: isinstance(v, bool) or v is USER_TRUST),
}


@dataclass(frozen=True)
class Key:
    type: str
    help: str
    check: Callable[[Any], bool] | None = None
    rule: str = ""


_COMMON = {
    "name": Key("str", "a name for the member, shown in the app"),
    "kind": Key("str", "the member's kind (scoring.pool.kinds lists them)"),
    "preprocess": Key("table", "size, resize, mean, std, grayscale"),
    "train_list": Key("str", "a file listing the paths the model was trained on"),
}
_MODEL_FILE = {
    "path": Key("str", "the weights file, relative to the pool file"),
    "arch": Key("str", "the architecture's name (image-triage pool check lists them)"),
    "classes": Key("str_list", "the model's class names, in its output order"),
    "classes_file": Key("str", "a text file with one class name per line"),
    "trust": Key("trust", "allow a checkpoint that runs code when loaded (TorchScript, pickled objects)"),
}
_FOLDS = Key("int", "cross-fitting folds", lambda v: 2 <= v <= 100, "between 2 and 100")
_SEEDS = Key("int_list", "one member per seed", lambda v: len(v) <= 64 and all(0 <= x < 2**31 for x in v),
             "at most 64 seeds, each from 0 to 2147483647")
_NUM_CLASSES = Key("int", "outputs of the checkpoint's last layer", lambda v: 1 <= v <= 100_000, "between 1 and 100000")
SCRATCH_ARCHS = ("small_cnn", "tiny_mlp")  # networks small enough to train from scratch in folds
# The keys of each built-in kind (scoring.pool.kinds registers them with their builders).
CHECKPOINT_KEYS: dict[str, Key] = dict(_MODEL_FILE)
BACKBONE_KEYS: dict[str, Key] = {
    **_MODEL_FILE,
    "weights": Key("str", "a weights file for a torchvision architecture"),
    "num_classes": _NUM_CLASSES,
    "folds": _FOLDS,
    "fractions": Key("float_list", "training fractions, one member each", lambda v: all(0 < x <= 1 for x in v),
                     "each in (0, 1]"),
    "seeds": _SEEDS,
    "head": Key("str", "the head fitted on the features", lambda v: v in ("logistic",), "logistic"),
    "weight_decay": Key("float", "the head's L2 penalty", lambda v: v >= 0, "0 or more"),
}
SCRATCH_KEYS: dict[str, Key] = {
    "arch": Key("str", "small_cnn or tiny_mlp", lambda v: v in SCRATCH_ARCHS, " or ".join(SCRATCH_ARCHS)),
    "folds": _FOLDS,
    "epochs": Key("int", "training epochs per fold", lambda v: 1 <= v <= 10_000, "between 1 and 10000"),
    "seeds": _SEEDS,
    "batch_size": Key("int", "training batch size", lambda v: 1 <= v <= 65_536, "between 1 and 65536"),
    "lr": Key("float", "learning rate", lambda v: 0 < v < 10, "between 0 and 10"),
}
FINETUNE_KEYS: dict[str, Key] = {
    **_MODEL_FILE,
    "weights": Key("str", "a weights file for a torchvision architecture"),
    "num_classes": _NUM_CLASSES,
    "folds": _FOLDS,
    "seeds": _SEEDS,
    "epochs": Key("int", "passes over the data per fold", lambda v: 1 <= v <= 1000, "between 1 and 1000"),
    "lr": Key("float", "peak learning rate of the one-cycle schedule", lambda v: 0 < v < 10, "between 0 and 10"),
    "batch_size": Key("int", "training batch size", lambda v: 2 <= v <= 65_536, "between 2 and 65536"),
    "tta": Key("bool", "average with the flipped image at prediction"),
    "train_blocks": Key("int", "train only the last N blocks and the head; the rest runs once, frozen, as an encoder "
                        "(efficientnet_lite0)", lambda v: 1 <= v <= 64, "between 1 and 64"),
}
# Keys the pool adds to the members it expands a spec into (one per seed / fraction).
_INTERNAL = {"seed": Key("int", "seed"), "fraction": Key("float", "fraction", lambda v: 0 < v <= 1, "in (0, 1]"),
             "start": Key("str", "fingerprint of the starting weights")}

PREPROCESS: dict[str, Key] = {
    "size": Key("int", "the square input side in pixels", lambda v: 4 <= v <= 1024, "between 4 and 1024"),
    "resize": Key("int", "the shorter side before the centre crop", lambda v: 4 <= v <= 2048, "between 4 and 2048"),
    "mean": Key("float_list", "per-channel mean", lambda v: len(v) in (1, 3) and all(abs(x) <= 1e3 for x in v),
                "1 or 3 numbers between -1000 and 1000"),
    "std": Key("float_list", "per-channel std", lambda v: len(v) in (1, 3) and all(1e-4 <= x <= 1e3 for x in v),
               "1 or 3 numbers between 0.0001 and 1000"),
    "grayscale": Key("bool", "one channel instead of three"),
}

def _check(value: Any, key: str, spec: Key, where: str) -> None:
    what, ok = _TYPES[spec.type]
    if not ok(value):
        raise PoolError(f"{where}: `{key}` must be {what}, got {value!r}")
    if spec.check is not None and not spec.check(value):
        raise PoolError(f"{where}: `{key}` must be {spec.rule}, got {value!r}")


def validate_against(spec: Any, where: str, kinds: Mapping[str, Mapping[str, Key]]) -> dict[str, Any]:
    """A checked copy of one member spec (``name`` filled in), ``kinds`` giving each registered
    kind's own keys (scoring.pool.kinds); PoolError naming ``where`` if bad."""
    if not isinstance(spec, dict):
        raise PoolError(f"{where}: a member must be a table of keys (kind = ..., path = ...), got {spec!r}")
    kind = spec.get("kind")
    if not isinstance(kind, str) or kind not in kinds:
        raise PoolError(f"{where}: `kind` must be one of {', '.join(sorted(kinds))} (a string), got {kind!r}")
    own = {**_COMMON, **kinds[kind]}
    keys = {**own, **_INTERNAL}
    unknown = sorted(str(k) for k in spec if k not in keys)
    if unknown:
        raise PoolError(f"{where}: unknown keys {unknown} for a {kind} member; valid: {sorted(own)}")
    for key, value in spec.items():
        _check(value, key, keys[key], where)
    pp = spec.get("preprocess")
    if pp is not None:
        bad = sorted(str(k) for k in pp if k not in PREPROCESS)
        if bad:
            raise PoolError(f"{where}: unknown preprocess keys {bad}; valid: {sorted(PREPROCESS)}")
        for key, value in pp.items():
            if not (key == "resize" and value is None):
                _check(value, f"preprocess.{key}", PREPROCESS[key], where)
    out = dict(spec)
    if "name" not in out:
        out["name"] = PurePath(str(out.get("path") or out.get("arch") or kind)).stem
    return out
