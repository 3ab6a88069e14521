"""Pick the device to compute on (``get_device()``), whether it computes bfloat16 fast
(``fast_bfloat16(device)``), and the helpers that time work on it: ``synchronize(device)`` and a
GPU-utilisation sampler (:class:`GpuUtilization`)."""
from __future__ import annotations

import os
import shutil
import subprocess
import threading

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


def fast_bfloat16(device: str | torch.device | None = None) -> bool:
    """True when ``device`` has bfloat16 arithmetic in hardware, so bfloat16 autocast speeds
    training up; False where it would be emulated and slower than float32.

    CUDA: ``torch.cuda.is_bf16_supported()`` (Ampere and newer). CPU: oneDNN's bfloat16 kernels,
    which need AVX-512 BF16 or AMX (``torch.ops.mkldnn._is_mkldnn_bf16_supported()``); without
    them a bfloat16 convolution falls back to generic kernels, many times slower than float32.
    Other devices (MPS): False, as the course has not measured them.
    """
    device = get_device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        probe = getattr(getattr(torch.ops, "mkldnn", None), "_is_mkldnn_bf16_supported", None)
        try:
            return bool(probe()) if probe is not None else False
        except RuntimeError:
            return False
    return False


def available_devices() -> list[str]:
    """Names of the devices PyTorch can use on this machine, CPU last."""
    names = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    if _mps_available():
        names.append("mps")
    return names + ["cpu"]


def synchronize(device: torch.device) -> None:
    """Wait until the work queued on ``device`` has finished (CUDA, MPS; a no-op on the CPU), so
    that a clock read afterwards measures the work, not only its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


class GpuUtilization:
    """Sample the GPU's utilisation (%) in a background thread: ``start()``, ``stop() -> mean``.

    Uses ``torch.cuda.utilization()`` (needs pynvml) when it works, else ``nvidia-smi``; ``stop``
    returns None when neither works or the device is not CUDA.
    """

    def __init__(self, device: torch.device, interval: float = 0.1):
        self.device, self.interval = device, interval
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.source = self._pick_source() if device.type == "cuda" else None

    def _pick_source(self) -> str | None:
        try:
            torch.cuda.utilization(self.device)
            return "torch"
        except Exception:  # noqa: BLE001 - pynvml missing or NVML failing
            pass
        if shutil.which("nvidia-smi") and self._smi() is not None:
            return "nvidia-smi"
        return None

    def _smi(self) -> float | None:
        index = self.device.index if self.device.index is not None else torch.cuda.current_device()
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu",
                                  "--format=csv,noheader,nounits", f"--id={index}"],
                                 capture_output=True, text=True, timeout=5)
            return float(out.stdout.strip().splitlines()[0])
        except Exception:  # noqa: BLE001
            return None

    def _read(self) -> float | None:
        if self.source == "torch":
            return float(torch.cuda.utilization(self.device))
        return self._smi()

    def _run(self) -> None:
        while not self._stop.is_set():
            value = self._read()
            if value is not None:
                self.samples.append(value)
            self._stop.wait(self.interval)

    def start(self) -> None:
        if self.source is None:
            return
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> float | None:
        if self._thread is None:
            return None
        self._stop.set()
        self._thread.join()
        return sum(self.samples) / len(self.samples) if self.samples else None
