"""Pool specs: pool files (TOML or JSON), command-line members, and building a Pool.

A pool file holds ``[[member]]`` tables::

    [[member]]
    name = "resnet20"
    kind = "checkpoint"
    path = "models/resnet20.th"          # relative to the pool file
    arch = "cifar_resnet20"
    classes = ["airplane", "automobile"]  # or classes_file = "classes.txt"
    preprocess = { size = 32, mean = [0.485, 0.456, 0.406], std = [0.229, 0.224, 0.225] }

On the command line, ``--member KIND:key=value,key=value`` gives one member, e.g.
``checkpoint:path=r20.th,arch=cifar_resnet20,classes_file=classes.txt,size=32``; the keys
``size``, ``resize`` and ``grayscale`` go into ``preprocess``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import tomllib

from scoring.io.safeio import read_text
from scoring.pool.base import IMAGENET_MEAN, IMAGENET_STD, Member, Pool, PoolError, pool_file_errors
from scoring.pool.kinds import get_kind, validate_member
from scoring.pool.member_spec import MemberSpec
from scoring.trust import grant, without_trust

log = logging.getLogger(__name__)


def _read_text(path: Path, what: str) -> str:
    """A text file a pool refers to; PoolError naming it when missing, special or not UTF-8."""
    with pool_file_errors(path, what):
        return read_text(path, what=what)

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

_PATH_KEYS = ("path", "classes_file", "weights", "train_list")


def _validate(spec: Any, where: str) -> MemberSpec:
    return validate_member(spec, where)


def _resolve(spec: MemberSpec, base: Path) -> MemberSpec:
    """Its files' paths made absolute against ``base``, and its classes read from ``classes_file``."""
    changes: dict[str, Any] = {}
    for key in _PATH_KEYS:
        if spec.get(key):
            p = Path(str(spec[key])).expanduser()
            changes[key] = str(p if p.is_absolute() else (base / p).resolve())
    if spec.classes_file and spec.classes is None:
        text = _read_text(Path(changes.get("classes_file", spec.classes_file)), f"member {spec.name!r}: classes_file")
        changes["classes"] = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return spec.replace(**changes) if changes else spec


def load_pool_file(path: str | Path) -> list[MemberSpec]:
    """Member specs from a TOML or JSON pool file; relative paths resolved against its folder."""
    p = Path(path).expanduser()
    text = _read_text(p, "pool file")
    try:
        data = json.loads(text) if p.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PoolError(f"{p}: not valid {'JSON' if p.suffix.lower() == '.json' else 'TOML'}: {exc}") from exc
    except RecursionError as exc:
        raise PoolError(f"{p}: nested too deeply to be a pool file; not read") from exc
    members = data.get("member") if isinstance(data, dict) else data
    if isinstance(data, dict) and members is None:
        members = data.get("members")
    if not isinstance(members, list) or not members:
        raise PoolError(f"{p}: expected [[member]] tables (TOML) or a list / {{\"member\": [...]}} (JSON)")
    specs = [
        _resolve(_validate(m, f"{p} member {i + 1}{_named(m)}"), p.parent.resolve()) for i, m in enumerate(members)
    ]
    for s in specs:
        if s.trust is True:
            log.warning("%s: member %r says `trust = true`; a file cannot give trust, only you can, now: "
                        "pass --trust-checkpoint if you trust its checkpoint", p, s.name)
    return [without_trust(s) for s in specs]


def _named(m: Any) -> str:
    return f" ({m['name']!r})" if isinstance(m, dict) and isinstance(m.get("name"), str) else ""


def scalar(v: str) -> Any:
    """A command-line value as what it reads as: true/false, a whole number, a number, else the text."""
    low = v.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


FILE_KEYS = ("path", "weights", "classes_file")  # the keys of a member spec that name a file


def check_files(specs: Sequence[Mapping[str, Any]]) -> None:
    """PoolError naming the member and the file when a file a spec names is not there: checked
    before anything is created, so a mistyped --member leaves no project file behind."""
    for s in specs:
        for key in FILE_KEYS:
            if isinstance(s.get(key), str) and not Path(s[key]).expanduser().exists():
                raise PoolError(f"member {s.get('name', s.get('kind'))!r}: its {key} {s[key]} does not exist")


def parse_member_arg(text: str, base: Path | None = None) -> MemberSpec:
    """``KIND:key=value,...`` -> a member spec (see the module docstring)."""
    kind, _, rest = text.partition(":")
    spec: dict[str, Any] = {"kind": kind.strip()}
    pp: dict[str, Any] = {}
    for part in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = part.partition("=")
        if not eq:
            raise PoolError(f"--member {text!r}: expected key=value, got {part!r}")
        key = key.strip()
        if key in ("size", "resize", "grayscale"):
            pp[key] = scalar(value)
        elif key in ("fractions", "seeds"):
            spec[key] = [scalar(v) for v in value.split("/")]
        else:
            spec[key] = scalar(value)
    if pp:
        spec["preprocess"] = pp
    out = _resolve(_validate(spec, f"--member {text!r}"), base or Path.cwd())
    return grant(out) if out.trust is True else without_trust(out)  # typed now: the user's word


def build_members(spec: Mapping[str, Any], dataset_classes: list[str]) -> list[Member]:
    """The members of one spec (a table is checked and typed first; a MemberSpec already was)."""
    typed = _validate(spec, f"member {spec.get('name')!r}")
    return get_kind(typed.kind).build(typed, dataset_classes)


def build_pool(specs: Sequence[Mapping[str, Any]], dataset_classes: list[str], base_dir: Path | None = None) -> Pool:
    """Every member of every spec, over the dataset's classes."""
    members: list[Member] = []
    resolved = [_resolve(_validate(s, f"member {s.get('name')!r}"), base_dir or Path.cwd()) for s in specs]
    for spec in resolved:
        members.extend(build_members(spec, dataset_classes))
    return Pool(members, list(dataset_classes), spec=[dict(s) for s in resolved])


def pool_classes(specs: Sequence[Mapping[str, Any]]) -> list[str]:
    """The class names an unlabelled dataset takes from its pool: the first member that has them."""
    for spec in specs:
        resolved = _resolve(_validate(spec, f"member {spec.get('name')!r}"), Path.cwd())
        if resolved.classes:
            return list(resolved.classes)
    raise PoolError(
        "the dataset is unlabelled and no pool member names its classes: give a checkpoint member "
        "with `classes` (fitted members need labels to fit on)"
    )


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # a JSON string is a valid TOML basic string
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items() if x is not None) + " }"
    raise PoolError(f"cannot write {v!r} to a pool file")


def dump_pool_toml(specs: Sequence[Mapping[str, Any]], comments: list[str] = ()) -> str:  # type: ignore[assignment]
    """A pool file (TOML) that :func:`load_pool_file` reads back to ``specs``."""
    out = [f"# {c}" for c in comments]
    for spec in specs:
        out.append("\n[[member]]")
        out.extend(f"{k} = {_toml_value(v)}" for k, v in spec.items() if v is not None)
    return "\n".join(out).lstrip("\n") + "\n"


def trained_on(spec: Mapping[str, Any]) -> set[str] | None:
    """Paths (relative to the dataset root) a member was trained on, from its ``train_list``."""
    tl = spec.get("train_list")
    if not tl:
        return None
    text = _read_text(Path(tl), f"member {spec.get('name')!r}: train_list")
    return {ln.strip() for ln in text.splitlines() if ln.strip()}


def cifar_resnet_pool_specs(model_dir: str | Path, kind: str = "checkpoint") -> list[MemberSpec]:
    """The four CIFAR-10 ResNets (resnet{20,32,44,56}.th) as checkpoint or backbone members."""
    d = Path(model_dir).expanduser().resolve()
    specs = []
    for depth in (20, 32, 44, 56):
        f = d / f"resnet{depth}.th"
        if not f.is_file():
            continue
        spec: dict[str, Any] = {
            "name": f"resnet{depth}" if kind == "checkpoint" else f"resnet{depth}-bb",
            "kind": kind,
            "path": str(f),
            "arch": f"cifar_resnet{depth}",
            "classes": list(CIFAR10_CLASSES),
            "preprocess": {"size": 32, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
        }
        if kind == "backbone":
            spec.update(fractions=[1.0], seeds=[0])
        specs.append(spec)
    if not specs:
        raise PoolError(f"no resnet20/32/44/56.th files in {d}")
    return [_validate(s, f"{d}: {s['name']}") for s in specs]


def demo_specs(n_images: int | None = None) -> list[MemberSpec]:
    """The demo's pool: the three scratch networks and EfficientNet-Lite0 features (shipped, no
    download) at the digits' own 32 px with a cross-fitted head, so the demo's queue learns from
    the annotator: the automatic re-rank refits heads only (measured: 5.1 s after 20 decisions)."""
    return [*default_scratch_specs(n_images), _validate({
        "name": "effnet-lite0", "kind": "backbone", "arch": "efficientnet_lite0", "fractions": [1.0], "folds": 5,
        "preprocess": {"size": 32, "resize": 32}}, "the demo's pool")]


def default_scratch_specs(n_images: int | None = None, size: int = 16, grayscale: bool = True) -> list[MemberSpec]:
    """The demo's pool: three small from-scratch networks (two CNN seeds and an MLP), 5-fold."""
    pp = {"size": size, "grayscale": grayscale}
    return [_validate(s, "the scratch pool") for s in (
        {"name": "cnn", "kind": "scratch", "arch": "small_cnn", "seeds": [0, 1], "folds": 5, "preprocess": pp},
        {"name": "mlp", "kind": "scratch", "arch": "tiny_mlp", "seeds": [0], "folds": 5, "preprocess": pp},
    )]
