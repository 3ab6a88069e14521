"""The child process of ``mmcourse run``: execute one notebook with papermill and report back.

:func:`mmcourse.tools.runner.run_notebook` runs this file by path (``runpy``), in a fresh Python
process whose only child is the notebook's kernel, so that the kernel's peak memory can be read
from ``getrusage(RUSAGE_CHILDREN)`` once it has exited. The file imports nothing from ``mmcourse``
(so not torch either): the process stays as small and quick as papermill itself.

Input (``argv[1]``, JSON): ``input``, ``output`` (notebook paths), ``cwd``, ``kernel``, ``timeout``
(seconds per cell), ``parameters`` (injected by papermill), ``result`` (where to write).
Output (the ``result`` file, JSON): ``{"wall_s", "peak_mb", "error"}``; ``error`` is None or the
first line of an exception other than a cell's error (the parent classifies those).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def first_line(text: str, limit: int = 300) -> str:
    """The first line of ``text``, stripped, cut to ``limit`` characters."""
    line = text.strip().split("\n", 1)[0]
    return line if len(line) <= limit else line[: limit - 3] + "..."


def main(argv: list[str]) -> int:
    """Run papermill as ``argv[0]`` (the JSON spec above) says; write the result file."""
    spec = json.loads(argv[0])
    import papermill
    from papermill.exceptions import PapermillExecutionError

    error = None
    start = time.perf_counter()
    try:
        papermill.execute_notebook(spec["input"], spec["output"], kernel_name=spec["kernel"],
                                   cwd=spec["cwd"], execution_timeout=spec["timeout"],
                                   parameters=spec.get("parameters") or None,
                                   progress_bar=False, log_output=False)
    except PapermillExecutionError:
        pass
    except Exception as err:  # noqa: BLE001 - reported to the parent, which marks a failure
        error = f"{type(err).__name__}: {first_line(str(err))}"
    wall_s = time.perf_counter() - start
    try:
        import resource
    except ImportError:  # Windows: no getrusage
        peak_mb = 0
    else:
        # The kernel was this process's only child and has been reaped; its peak resident set
        # size is ru_maxrss of RUSAGE_CHILDREN: kilobytes on Linux, bytes on macOS.
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        peak_mb = round(peak / 2**20) if sys.platform == "darwin" else round(peak / 2**10)
    Path(spec["result"]).write_text(json.dumps({"wall_s": wall_s, "peak_mb": peak_mb,
                                                "error": error}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
