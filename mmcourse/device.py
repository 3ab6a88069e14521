"""Pick the device to compute on: ``get_device()``."""
from __future__ import annotations

import os

import torch

ENV_VAR = "MMCOURSE_DEVICE"


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def get_device(device: str | torch.device | None = None) -> torch.device:
    """Return the device to use.

    The choice, first match wins:
      1. ``device`` when given (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``, a torch.device);
      2. the environment variable ``MMCOURSE_DEVICE`` when set (same values);
      3. ``"auto"`` or nothing: CUDA if available, then Apple's MPS, then the CPU.

    Asking for a device that is not available raises a ``RuntimeError`` that says which devices
    are, rather than failing later inside a kernel.
    """
    source = "argument"
    if device is None:
        device = os.environ.get(ENV_VAR) or "auto"
        source = f"environment variable {ENV_VAR}" if os.environ.get(ENV_VAR) else "default"
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise TypeError(f"device must be a string or torch.device, got {type(device).__name__}")
    name = device.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        chosen = torch.device(name)
    except RuntimeError as err:
        raise ValueError(
            f"unknown device {device!r} (from the {source}); expected 'auto', 'cpu', 'cuda', "
            f"'cuda:N' or 'mps'"
        ) from err
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r} was asked for (from the {source}) but CUDA is "
                               f"not available here; available: {', '.join(available_devices())}")
        if chosen.index is not None and chosen.index >= torch.cuda.device_count():
            raise RuntimeError(f"device {device!r} was asked for but only "
                               f"{torch.cuda.device_count()} CUDA device(s) exist")
    elif chosen.type == "mps" and not _mps_available():
        raise RuntimeError(f"device {device!r} was asked for (from the {source}) but MPS is not "
                           f"available here; available: {', '.join(available_devices())}")
    elif chosen.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {device!r}; expected 'auto', 'cpu', 'cuda' or 'mps'")
    return chosen


def available_devices() -> list[str]:
    """Names of the devices PyTorch can use on this machine, CPU last."""
    names = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    if _mps_available():
        names.append("mps")
    return names + ["cpu"]
