"""Pick the torch device: CUDA, else MPS, else CPU, unless the user names one."""

from __future__ import annotations

import torch


def pick_device(preference: str | None = "auto") -> torch.device:
    """``"auto"``/None -> cuda if available, else mps, else cpu; otherwise the named device.

    Raises ValueError naming the device when the user asks for one this machine lacks.
    """
    pref = (preference or "auto").lower()
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if pref.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {preference!r} asked for, but CUDA is not available here; use --device cpu or auto")
    if pref == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError("device 'mps' asked for, but MPS is not available here; use --device cpu or auto")
    try:
        return torch.device(pref)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {preference!r}: use auto, cpu, cuda, cuda:N or mps") from exc
