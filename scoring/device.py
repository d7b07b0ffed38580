"""Where things run: the torch device (CUDA, else MPS, else CPU, unless the user names one) and
the runtime of the frozen encoders. The choice lists every chooser reads (the command line, the
Score dialog, the engine's check) live here, and importing this module imports no torch."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from scoring.errors import ImageTriageError

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cpu", "cuda", "mps")  # the Score dialog's list; the command line also takes cuda:N
RUNTIMES = ("auto", "torch", "onnx")  # where frozen encoders run (scoring.engine.runtime)


class DeviceError(ImageTriageError, ValueError):
    """A device this machine does not have, or one Image Triage does not run on."""


def pick_device(preference: str | None = "auto") -> torch.device:
    """``"auto"``/None -> cuda if available, else mps, else cpu; otherwise the named device.

    Raises ValueError naming the device when the user asks for one this machine lacks.
    """
    import torch

    pref = (preference or "auto").lower()
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if not re.fullmatch(r"cpu|mps|cuda(:\d{1,3})?", pref):
        raise DeviceError(f"unknown device {preference!r}: use auto, cpu, cuda, cuda:N or mps")
    if pref.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device {preference!r} asked for, but CUDA is not available here; use --device cpu or auto")
        if ":" in pref and int(pref.split(":")[1]) >= torch.cuda.device_count():
            raise DeviceError(f"device {preference!r} asked for, but this machine has {torch.cuda.device_count()} "
                              "CUDA device(s); use cuda:0 or auto")
    if pref == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DeviceError("device 'mps' asked for, but MPS is not available here; use --device cpu or auto")
    return torch.device(pref)
