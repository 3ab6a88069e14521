"""What this machine offers the course: ``environment_report()`` and ``format_report()``."""
from __future__ import annotations

import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version

PACKAGES = ("torch", "torchvision", "torchaudio", "transformers", "numpy", "matplotlib",
            "ipywidgets", "jupyterlab", "papermill", "nbval")


def _version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def environment_report() -> dict:
    """Versions and devices, as a dict of plain values (JSON-serialisable).

    Keys: python, platform, cpu_count, torch_threads, packages (name -> version), device (what
    :func:`mmcourse.get_device` picks), cuda (None or a dict with the GPU names and CUDA version),
    mps (bool), bf16_cpu (whether autocast to bfloat16 runs on this CPU), bf16_cpu_fast (whether
    it runs in hardware: AVX-512 BF16 or AMX; where it does not, it is emulated and slow),
    cpu_capability (the instruction set PyTorch's CPU kernels use, e.g. "AVX2"; the course caps
    it at AVX2 on x86-64 so that numbers repeat across CPUs: ``mmcourse.tools.runner.CPU_ISA_ENV``).
    """
    import torch

    from mmcourse.device import _mps_available, fast_bfloat16, get_device

    cuda = None
    if torch.cuda.is_available():
        cuda = {"version": torch.version.cuda,
                "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.ones(2, 2) @ torch.ones(2, 2)
        bf16 = True
    except RuntimeError:
        bf16 = False
    return {
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "packages": {name: _version(name) for name in PACKAGES},
        "device": str(get_device()),
        "cuda": cuda,
        "mps": _mps_available(),
        "bf16_cpu": bf16,
        "bf16_cpu_fast": bf16 and fast_bfloat16("cpu"),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "executable": sys.executable,
    }


def format_report(report: dict) -> str:
    """The report as aligned ``name: value`` lines."""
    lines = [f"{'python':14s} {report['python']} ({report['platform']})",
             f"{'cpus':14s} {report['cpu_count']} (torch uses {report['torch_threads']} threads)"]
    lines += [f"{name:14s} {ver}" for name, ver in report["packages"].items()]
    cuda = report["cuda"]
    lines.append(f"{'cuda':14s} " + (f"{cuda['version']}: {', '.join(cuda['devices'])}"
                                      if cuda else "not available"))
    lines.append(f"{'mps':14s} {'available' if report['mps'] else 'not available'}")
    bf16 = "no" if not report["bf16_cpu"] else "yes, in hardware" if report.get("bf16_cpu_fast") \
        else "emulated (slower than float32: train in float32 here)"
    lines.append(f"{'bf16 on cpu':14s} {bf16}")
    capped = " (capped by ATEN_CPU_CAPABILITY)" if os.environ.get("ATEN_CPU_CAPABILITY") else ""
    lines.append(f"{'cpu kernels':14s} {report.get('cpu_capability', '?')}{capped}")
    lines.append(f"{'device':14s} {report['device']}  <- what get_device() picks")
    return "\n".join(lines)
