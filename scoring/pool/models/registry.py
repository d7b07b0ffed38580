"""A model registry after torchvision's ``models/_api.py``: our small architectures by name,
plus every torchvision classification model (built without weights)."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from torch import nn

from scoring.pool.base import PoolError
from scoring.pool.models.cifar_resnet import cifar_resnet
from scoring.pool.models.efficientnet_lite import EfficientNetLite0
from scoring.pool.models.small import SmallCNN, TinyMLP

_BUILTIN: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _BUILTIN:
            raise ValueError(f"model {name!r} is registered twice")
        _BUILTIN[name] = fn
        return fn

    return wrap


for _depth in (20, 32, 44, 56):
    register_model(f"cifar_resnet{_depth}")(lambda num_classes=10, _d=_depth, **_: cifar_resnet(_d, num_classes))
register_model("small_cnn")(lambda num_classes=10, in_channels=3, width=16, **_: SmallCNN(num_classes, in_channels, width))
register_model("efficientnet_lite0")(lambda num_classes=1000, **_: EfficientNetLite0(num_classes))
register_model("tiny_mlp")(lambda num_classes=10, in_channels=3, size=16, **_: TinyMLP(num_classes, in_channels, size))


def _torchvision_names() -> list[str]:
    import torchvision.models as tvm

    return sorted(tvm.list_models(module=tvm))


def list_models() -> list[str]:
    return sorted(_BUILTIN) + _torchvision_names()


def get_model(name: str, num_classes: int = 10, **kwargs: Any) -> nn.Module:
    """Build an architecture by name with random weights. Unknown names list close matches."""
    if name in _BUILTIN:
        return _BUILTIN[name](num_classes=num_classes, **kwargs)
    tv = _torchvision_names()
    if name in tv:
        import torchvision.models as tvm

        return tvm.get_model(name, weights=None, num_classes=num_classes)
    close = difflib.get_close_matches(name, list(_BUILTIN) + tv, n=4)
    hint = f"; did you mean {', '.join(close)}?" if close else "; `image-triage pool check` lists what loads"
    raise PoolError(f"unknown architecture {name!r}{hint}")


def is_torchvision(name: str) -> bool:
    return name not in _BUILTIN and name in _torchvision_names()
