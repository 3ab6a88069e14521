"""Starting data-parallel runs from Python (notebook 08): the torchrun command and its result.

:func:`launch` builds ``python -m torch.distributed.run --standalone --nproc_per_node=N -m
mmcourse.distributed ...`` (the worker of :mod:`mmcourse.distributed`), runs it and returns rank
0's results; :func:`torchrun_function` runs a small self-contained function on several processes
(the all-reduce demo of the notebook); :func:`command_text` shows a command as one shell line.
"""
from __future__ import annotations

import inspect
import json
import os
import shlex
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from mmcourse.checks import check_int


def torchrun_command(nproc_per_node: int = 2) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc_per_node=N`` with this Python
    (a bare ``torchrun`` may not be on a notebook kernel's PATH). ``--standalone`` starts a
    rendezvous on this machine on a free port."""
    check_int(nproc_per_node, "nproc_per_node")
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc_per_node}"]


def _run(command: list[str], threads: int, timeout: float) -> subprocess.CompletedProcess:
    # one thread per rank: several ranks share the cores, and torchrun prints a banner when
    # OMP_NUM_THREADS is unset
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    env.pop("MMCOURSE_FIGURE_AUDIT", None)   # the ranks draw no figures: skip matplotlib
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        lines = (proc.stdout + proc.stderr).strip().splitlines()
        errors = [ln for ln in lines if "Error" in ln and not ln.lstrip().startswith("File ")]
        hint = f"\nfirst error line: {errors[0].strip()}" if errors else ""
        raise RuntimeError(f"torchrun exited with status {proc.returncode}{hint}\nlast lines of "
                           f"its output:\n" + "\n".join(lines[-15:]))
    return proc


def launch(nproc_per_node: int = 2, *, out: str | os.PathLike, data: str | os.PathLike = "synthetic",
           epochs: int = 5, batch_size: int | None = 64, accum_steps: int = 1,
           global_batch_size: int | None = None, lr: float = 2e-3, seed: int = 0,
           hidden: int = 64, backend: str = "auto", threads: int = 1,
           timeout: float = 300) -> dict[str, Any]:
    """Run ``python -m torch.distributed.run --standalone --nproc_per_node=N -m
    mmcourse.distributed ...`` and return rank 0's results (see the module docstring), plus
    ``command`` (list of str), ``log`` (rank 0's printed lines) and ``wall_seconds`` (start-up
    included). Raises RuntimeError with the end of the output when a rank fails."""
    if global_batch_size is not None:
        batch_size = None
    command = torchrun_command(nproc_per_node) + [
        "-m", "mmcourse.distributed", "--data", str(data), "--out", str(out),
        "--epochs", str(epochs), "--accum-steps", str(accum_steps), "--lr", str(lr),
        "--seed", str(seed), "--hidden", str(hidden), "--backend", backend]
    command += ["--batch-size", str(batch_size)] if global_batch_size is None else \
        ["--global-batch-size", str(global_batch_size)]
    start = time.perf_counter()
    proc = _run(command, threads, timeout)
    wall = time.perf_counter() - start
    results = json.loads((Path(out) / "results.json").read_text())
    results.update(command=command, log=[ln for ln in proc.stdout.splitlines() if ln.strip()],
                   wall_seconds=wall)
    return results


def torchrun_function(fn: Callable[[], Any], nproc_per_node: int = 2, threads: int = 1,
                      timeout: float = 120) -> list[Any]:
    """Run a small self-contained function on ``nproc_per_node`` processes with torchrun and
    return what each rank's call returned, in rank order.

    ``fn`` takes no arguments and may use only ``torch``, ``dist`` (torch.distributed), ``os``
    and what it imports itself: its source code is written into a temporary script (header
    ``import os, torch, torch.distributed as dist``), which torchrun starts; each rank saves
    ``fn()`` with ``torch.save`` (tensors, numbers, lists, dicts).
    """
    source = textwrap.dedent(inspect.getsource(fn))
    with tempfile.TemporaryDirectory(prefix="mmcourse-torchrun-") as tmp:
        script = Path(tmp) / "script.py"
        script.write_text(
            "import os\nimport torch\nimport torch.distributed as dist\n\n" + source +
            f"\n\nif __name__ == '__main__':\n"
            f"    _result = {fn.__name__}()\n"
            f"    torch.save(_result, os.path.join({tmp!r}, f\"rank{{os.environ['RANK']}}.pt\"))\n")
        _run(torchrun_command(nproc_per_node) + [str(script)], threads, timeout)
        return [torch.load(Path(tmp) / f"rank{r}.pt", weights_only=True)
                for r in range(nproc_per_node)]


def command_text(command: Sequence[str], replace: Mapping[str, str] | None = None) -> str:
    """A command list as one shell line: this Python as ``python``, and ``replace`` applied
    (e.g. a temporary folder -> ``$RUN``)."""
    text = shlex.join(["python" if c == sys.executable else c for c in command])
    for old, new in (replace or {}).items():
        text = text.replace(old, new)
    return text
