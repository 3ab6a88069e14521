"""Run the course headless: ``run_course`` (``mmcourse run``) and ``refresh_solutions``
(``mmcourse refresh``).

``run_course`` executes each notebook with papermill in a child process of its own
(:mod:`mmcourse.tools.papermill_child`), so that the kernel's peak memory can be read from
``getrusage(RUSAGE_CHILDREN)`` in that child once the kernel has exited. Exercise cells of the
student notebooks are tagged ``raises-exception`` and raise ``NotSolved`` until solved: such
errors count as "unsolved", not as failures.

Heavy imports (papermill, nbclient, nbformat) happen inside the functions.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

from mmcourse.notebook_format import (METRICS_MIMETYPE, NOTEBOOK_GLOB, RAISES_TAG, exercise_id,
                                      tags)
from mmcourse.tools import papermill_child

KERNEL_NAME = "mmcourse"
SETUP_COMMAND = "bash scripts/setup.sh"


def _cpu_isa_env() -> dict[str, str]:
    """PyTorch's own kernels (ATen), oneDNN and MKL capped at AVX2 on a Linux x86-64 CPU that has
    it; nothing elsewhere (ARM, or a CPU without AVX2).

    Where the CPU has AVX-512, these libraries use it, which changes the rounding of sums and so
    the last digits of a trained model, and then a test accuracy here and there: the committed
    outputs (made on an AVX2 CPU) would not reproduce under nbval. Capped, any x86-64 CPU with
    AVX2 (2013 on) gives the same numbers; small models train about as fast."""
    if not sys.platform.startswith("linux") or platform.machine() != "x86_64":
        return {}
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return {}
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
    if "avx2" not in flags:
        return {}
    return {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
            "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


#: See :func:`_cpu_isa_env`; in every kernel the course starts (:data:`KERNEL_ENV`: ``mmcourse
#: run``, ``refresh``, ``grade``), the tests and the course's command line, but not in a learner's
#: JupyterLab, where the CPU's own instructions (AVX-512, bfloat16) are used: numbers there may
#: differ from the committed ones in the last digits, as on any other CPU.
CPU_ISA_ENV = _cpu_isa_env()
# Set for every kernel with setdefault: a value already in the environment wins.
KERNEL_ENV = {
    **CPU_ISA_ENV,
    "MMCOURSE_PROGRESS": "0",                 # no progress-bar widgets in executed notebooks
    "HF_HUB_OFFLINE": "1",                    # never reach for the network
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "KINETO_LOG_LEVEL": "6",                  # silence the profiler's log lines
    "PYTHONHASHSEED": "0",
    "PYDEVD_DISABLE_FILE_VALIDATION": "1",    # the debugger's frozen-modules warning
    "MMCOURSE_STATIC_WIDGETS": "1",           # headless runs store the explorers' static view
}
PAPERMILL_ERROR_TAG = "papermill-error-cell-tag"  # markdown cells papermill inserts on errors
NOT_SOLVED = "NotSolved"


# ------------------------------------------------------------------------------------------------
# Finding notebooks, the kernel and its environment

def kernel_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of ``base`` (default ``os.environ``) with :data:`KERNEL_ENV` filled in where unset."""
    env = dict(os.environ if base is None else base)
    for key, value in KERNEL_ENV.items():
        env.setdefault(key, value)
    return env


def list_notebooks(folder: str | Path) -> list[Path]:
    """The ``NN_*.ipynb`` notebooks in ``folder``, in course order."""
    return sorted(Path(folder).glob(NOTEBOOK_GLOB))


def select_notebooks(paths: list[Path], only: Iterable[str | int] | str | int | None) -> list[Path]:
    """Keep the notebooks named in ``only`` (numbers like ``3``/``"03"`` or names like
    ``"03_audio"``), in course order; all of them when ``only`` is None.

    Raises ValueError naming what exists when an entry matches nothing.
    """
    if only is None:
        return list(paths)
    if isinstance(only, (str, int)):
        only = [only]
    chosen: set[Path] = set()
    for item in only:
        wanted = str(item).strip()
        if wanted.endswith(".ipynb"):
            wanted = wanted[: -len(".ipynb")]
        if wanted.isdigit():
            matches = [p for p in paths if int(p.name[:2]) == int(wanted)]
        else:
            matches = [p for p in paths if p.stem == wanted]
        if not matches:
            folder = paths[0].parent.name + "/" if paths else "the folder"
            existing = ", ".join(p.stem for p in paths) or "no NN_*.ipynb notebooks"
            raise ValueError(f"unknown notebook {item!r}: expected a number like 3 or 03, or a "
                             f"full name; {folder} has: {existing}")
        chosen.update(matches)
    return [p for p in paths if p in chosen]


def check_kernel(name: str = KERNEL_NAME) -> None:
    """Raise RuntimeError, saying how to install it, when the Jupyter kernel ``name`` is missing."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        raise RuntimeError(
            f"the Jupyter kernel {name!r} is not installed (this Python is {sys.executable}); "
            f"run the README's set-up command `{SETUP_COMMAND}`, which registers it, then try "
            f"again") from None


# ------------------------------------------------------------------------------------------------
# Running the course with papermill

def run_course(root: str | Path, only: Iterable[str | int] | str | None = None,
               out_dir: str | Path = "runs/latest", solutions: bool = False, timeout: int = 900,
               quiet: bool = False, parameters: dict[str, Any] | None = None,
               lang: str = "en") -> list[dict[str, Any]]:
    """Execute the course notebooks in order, each with papermill in its own child process.

    Inputs: ``root`` the course folder; ``only`` numbers or names to run (default all);
    ``out_dir`` where executed notebooks go (relative to the current folder, created);
    ``solutions`` run ``solutions/`` instead of the student ``notebooks/``; ``timeout`` seconds
    per cell; ``quiet`` no progress lines on stderr; ``parameters`` values papermill injects after
    each notebook's ``parameters`` cell (e.g. ``{"EPOCHS": 1}``; default none); ``lang`` the
    edition (``"zh"``: ``notebooks/zh/`` or ``solutions/zh/``, check messages in Chinese).
    Output: one dict per notebook (see :func:`run_notebook`). A failure does not stop the run.
    """
    folder = Path(root) / ("solutions" if solutions else "notebooks")
    if lang != "en":
        from mmcourse.tools.translate import check_language

        folder = folder / check_language(lang)
    if not folder.is_dir():
        raise FileNotFoundError(f"expected a folder {folder} with the course notebooks; "
                                f"is {root} the course folder?")
    paths = select_notebooks(list_notebooks(folder), only)
    check_kernel()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for number, path in enumerate(paths, 1):
        result = run_notebook(path, out / path.name, solutions=solutions, timeout=timeout,
                              parameters=parameters, lang=lang)
        results.append(result)
        if not quiet:
            print(f"[{number}/{len(paths)}] {_progress_line(result)}", file=sys.stderr, flush=True)
    return results


def run_notebook(path: str | Path, output: str | Path, solutions: bool = False,
                 timeout: int = 900, parameters: dict[str, Any] | None = None,
                 lang: str = "en") -> dict[str, Any]:
    """Execute one notebook with papermill (kernel ``mmcourse``, cwd = the notebook's folder) in a
    child process, and classify the result. ``parameters`` (JSON-serialisable) are injected after
    the notebook's ``parameters`` cell. ``lang``: the language of the check messages
    (``MMCOURSE_LANG`` in the kernel's environment).

    Output: ``{"notebook": stem, "status": "ok"|"failed", "wall_s": float, "peak_mb": int (the
    kernel's peak RSS; 0 where it cannot be measured), "metric": dict (the last metrics output),
    "unsolved": [exercise ids], "error": None or "cell N: Name: message", "output": str}``.
    ``N`` counts the cells of the source notebook from 0.
    """
    path, output = Path(path), Path(output)
    result: dict[str, Any] = {"notebook": path.stem, "status": "failed", "wall_s": 0.0,
                              "peak_mb": 0, "metric": {}, "unsolved": [], "error": None,
                              "output": str(output)}
    spec = {"input": str(path.resolve()), "output": str(output.resolve()),
            "cwd": str(path.resolve().parent), "kernel": KERNEL_NAME, "timeout": timeout,
            "parameters": dict(parameters or {})}
    with tempfile.TemporaryDirectory(prefix="mmcourse-run-") as tmp:
        spec["result"] = str(Path(tmp) / "result.json")
        # run the file as a script (argv = [file, spec]) without its folder on sys.path
        boot = ("import runpy, sys; sys.argv[:] = sys.argv[1:]; "
                "runpy.run_path(sys.argv[0], run_name='__main__')")
        proc = subprocess.run([sys.executable, "-c", boot,
                               str(Path(papermill_child.__file__).resolve()), json.dumps(spec)],
                              env={**kernel_env(), "MMCOURSE_LANG": lang},
                              capture_output=True, text=True)
        child = (json.loads(Path(spec["result"]).read_text())
                 if Path(spec["result"]).exists() else None)
    if child is None:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        result["error"] = f"the papermill child process exited with code {proc.returncode}:\n{tail}"
        return result
    result["wall_s"] = round(child["wall_s"], 1)
    result["peak_mb"] = child["peak_mb"]
    if not output.exists():
        result["error"] = child["error"] or "papermill wrote no output notebook"
        return result

    import nbformat

    nb = nbformat.read(output, as_version=4)
    status, unsolved, error = classify_notebook(nb, solutions=solutions)
    if child["error"] and status == "ok":  # e.g. a cell timeout, which leaves no error output
        status, error = "failed", child["error"]
    elif child["error"] and error:  # a timeout: the interrupted cell shows KeyboardInterrupt
        error = f"{error.split(':', 1)[0]}: {child['error']}"
    result.update(status=status, unsolved=unsolved, error=error, metric=last_metrics(nb))
    return result


def classify_notebook(nb: Any, solutions: bool = False) -> tuple[str, list[str], str | None]:
    """Read the error outputs of an executed notebook: ``(status, unsolved ids, first error)``.

    NotSolved raised in a ``raises-exception`` cell of a student notebook is an unsolved exercise
    (its id from the cell's ``# Exercise N.M`` first line); any other error, any error in a
    solutions notebook, or a cell papermill marked as failed (a timeout) makes it "failed".
    """
    unsolved: list[str] = []
    errors: list[str] = []
    index = -1
    for cell in nb.cells:
        cell_tags = tags(cell)
        if PAPERMILL_ERROR_TAG in cell_tags:
            continue
        index += 1
        if cell.get("cell_type") != "code":
            continue
        cell_errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"
                       and not (o.get("ename") == "SystemExit" and o.get("evalue") in ("", "0"))]
        for out in cell_errors:
            ename, evalue = out.get("ename", "Error"), papermill_child.first_line(out.get("evalue", ""))
            if ename == NOT_SOLVED and RAISES_TAG in cell_tags and not solutions:
                unsolved.append(exercise_id(cell) or f"cell {index}")
                continue
            note = ""
            if ename == NOT_SOLVED and solutions:
                note = " (a solutions notebook must run without errors)"
            elif ename == NOT_SOLVED:
                note = f" (NotSolved in a cell not tagged {RAISES_TAG})"
            errors.append(f"cell {index}: {ename}: {evalue}{note}")
        papermill_meta = cell.get("metadata", {}).get("papermill", {})
        if not cell_errors and papermill_meta.get("exception") is True:
            errors.append(f"cell {index}: did not finish (papermill marked it as failed)")
    if not errors:
        return "ok", unsolved, None
    more = f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""
    return "failed", unsolved, errors[0] + more


def last_metrics(nb: Any) -> dict[str, Any]:
    """The data of the notebook's last ``application/vnd.mmcourse.metrics+json`` output, or {}."""
    found: dict[str, Any] = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if METRICS_MIMETYPE in data:
                value = data[METRICS_MIMETYPE]
                found = json.loads(value) if isinstance(value, str) else dict(value)
    return found


def format_table(results: list[dict[str, Any]]) -> str:
    """An aligned text table of :func:`run_course` results, the errors of failed notebooks, and a
    last line with totals."""
    if not results:
        return "no notebooks were run"
    header = ["notebook", "status", "wall s", "peak MB", "unsolved", "metric"]
    rows = [[r["notebook"], r["status"], f"{r['wall_s']:.1f}", str(r["peak_mb"]),
             str(len(r["unsolved"])), ", ".join(f"{k}={v}" for k, v in r["metric"].items())]
            for r in results]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    right = {2, 3, 4}  # numeric columns

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    lines = [line(header), line(["-" * w for w in widths]), *(line(row) for row in rows)]
    lines += [f"{r['notebook']} failed: {r['error']}" for r in results if r["status"] != "ok"]
    failed = sum(r["status"] != "ok" for r in results)
    lines.append(f"total: {len(results)} notebooks, {len(results) - failed} ok, {failed} failed, "
                 f"{sum(r['wall_s'] for r in results):.1f} s, "
                 f"max peak {max(r['peak_mb'] for r in results)} MB, "
                 f"{sum(len(r['unsolved']) for r in results)} unsolved exercises")
    return "\n".join(lines)


def _progress_line(result: dict[str, Any]) -> str:
    text = (f"{result['notebook']}: {result['status']} in {result['wall_s']:.1f} s, "
            f"peak {result['peak_mb']} MB")
    if result["unsolved"]:
        text += f", unsolved {', '.join(result['unsolved'])}"
    if result["error"]:
        text += f"\n    {result['error']}"
    return text


# ------------------------------------------------------------------------------------------------
# Refreshing the committed solutions

class RefreshError(RuntimeError):
    """A solutions notebook failed while being re-executed; the file was left unchanged."""


def refresh_solutions(root: str | Path, only: Iterable[str | int] | str | None = None,
                      timeout: int = 900) -> Iterator[str]:
    """Re-execute ``solutions/NN_*.ipynb`` in place with nbclient, then regenerate the student
    notebooks. Yields one line per notebook, then one for the student notebooks.

    Volatile metadata (cell ``execution`` timestamps, ``papermill`` keys) is removed; a notebook
    is written (nbformat, indent 1) only when its text changed; with ``only``, just those
    notebooks' student versions are regenerated. Raises RefreshError on the first
    notebook that fails (that file is left as it was and no student notebook is regenerated).
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    root = Path(root)
    folder = root / "solutions"
    if not folder.is_dir():
        raise FileNotFoundError(f"expected a folder {folder} with the solution notebooks")
    paths = select_notebooks(list_notebooks(folder), only)
    check_kernel()
    for path in paths:
        original = path.read_text(encoding="utf-8")
        nb = nbformat.reads(original, as_version=4)
        client = NotebookClient(nb, timeout=timeout, kernel_name=KERNEL_NAME,
                                resources={"metadata": {"path": str(folder.resolve())}},
                                record_timing=False)
        start = time.perf_counter()
        try:
            client.execute(env=kernel_env())
        except (CellExecutionError, CellTimeoutError) as err:
            raise RefreshError(f"{path.name} failed, left unchanged:\n{err}") from None
        wall_s = time.perf_counter() - start
        strip_volatile_metadata(nb)
        text = nbformat.writes(nb, version=4)
        if not text.endswith("\n"):
            text += "\n"
        changed = text != original
        if changed:
            path.write_text(text, encoding="utf-8")
        yield f"{path.stem}: {'updated' if changed else 'unchanged'} ({wall_s:.1f} s)"

    from mmcourse.tools.student import make_student_notebooks

    regenerated = make_student_notebooks(root / "solutions", root / "notebooks",
                                         only=None if only is None else [p.name for p in paths])
    from mmcourse.tools.translate import build_edition, editions

    for lang in editions(root):  # a translated edition copies the English code cells' outputs
        regenerated += build_edition(root, lang)
    yield ("student notebooks regenerated: " + ", ".join(regenerated) if regenerated
           else "student notebooks: all up to date")


def strip_volatile_metadata(nb: Any) -> Any:
    """Remove cell ``execution`` timestamps and ``papermill`` metadata in place; return ``nb``."""
    nb.metadata.pop("papermill", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        cell.metadata.pop("papermill", None)
    return nb
