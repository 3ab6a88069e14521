"""Autograding: ``mmcourse grade SUBMISSION.ipynb [...]`` (for instructors).

Each submission is executed top to bottom in a fresh kernel (the course kernel, in the
notebook's own folder, with the course's headless environment), every cell even after errors,
within a time limit for the whole notebook. Then every exercise cell (first line
``# Exercise N.M``) is read:

* passed: its ``check("N.M", ...)`` displayed a passing result;
* failed: the check rejected the answer (its message says why), the learner's code raised,
  the exercise is still ``NotSolved``, the cell never called its check, or it did not run
  (time limit).

Exercises of the reference notebook (``solutions/<same name>`` when it exists) that the
submission no longer has count as failed too, so deleting an exercise does not hide it.

Student code runs with the grader's rights: grade untrusted submissions in a container or a
throw-away account.

Output per notebook: ``{"notebook": "03_audio.ipynb", "exercises": [{"id": "3.2",
"passed": false, "message": "..."}], "error": None | str, "seconds": float}``.
"""
from __future__ import annotations

import csv
import io
import json
import re
import time
from pathlib import Path
from typing import Any, Iterable

from mmcourse.notebook_format import CHECK_MIMETYPE, exercise_id, exercise_ids
from mmcourse.tools import CHECKOUT
from mmcourse.tools.runner import KERNEL_NAME, kernel_env

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _outcome(cell: Any, ran: bool) -> tuple[bool, str]:
    """(passed, message) of one executed exercise cell."""
    if not ran:
        return False, "not run: the notebook hit the time limit before this cell"
    checks, errors = [], []
    for out in cell.get("outputs", []):
        data = out.get("data", {})
        if CHECK_MIMETYPE in data:
            value = data[CHECK_MIMETYPE]
            checks.append(json.loads(value) if isinstance(value, str) else dict(value))
        if out.get("output_type") == "error":
            errors.append(out)
    for err in errors:
        ename, evalue = err.get("ename", "Error"), _ANSI.sub("", err.get("evalue", ""))
        if ename == "NotSolved":
            return False, "not solved yet (the cell still raises NotSolved)"
        if ename == "ExerciseFailed":
            return False, evalue.strip()
        return False, f"the cell raised {ename}: {evalue.strip().splitlines()[0] if evalue.strip() else ''}"
    if checks:
        last = checks[-1]
        return bool(last.get("passed")), str(last.get("message", ""))
    return False, "the cell ran but never called check(...) for this exercise"


def grade_notebook(path: str | Path, timeout: float = 600, reference: str | Path | None = None,
                   kernel_name: str = KERNEL_NAME) -> dict[str, Any]:
    """Execute ``path`` in a fresh kernel and grade every exercise (see the module docstring).

    Args:
        path: the submitted notebook.
        timeout: seconds allowed for the whole notebook; cells not reached count as not run.
        reference: the notebook whose exercises must all be graded (default: the file of the
            same name in the course's ``solutions/`` folder, if there is one).
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    path = Path(path)
    result: dict[str, Any] = {"notebook": path.name, "exercises": [], "error": None, "seconds": 0.0}
    try:
        nb = nbformat.read(path, as_version=4)
    except FileNotFoundError:
        raise FileNotFoundError(f"no notebook at {path}") from None
    except Exception as err:  # not JSON, not a notebook
        raise ValueError(f"{path} is not a readable notebook: {err}") from None
    expected = exercise_ids(nb.cells)
    ref_path = Path(reference) if reference else CHECKOUT / "solutions" / path.name
    if ref_path.exists():
        missing = [e for e in exercise_ids(nbformat.read(ref_path, as_version=4).cells)
                   if e not in expected]
    else:
        missing = []
    client = NotebookClient(nb, kernel_name=kernel_name, allow_errors=True, timeout=int(timeout),
                            resources={"metadata": {"path": str(path.resolve().parent)}})
    env = kernel_env()
    start = time.monotonic()
    ran: set[int] = set()
    try:
        with client.setup_kernel(env=env, cwd=str(path.resolve().parent)):
            for index, cell in enumerate(nb.cells):
                left = timeout - (time.monotonic() - start)
                if left <= 0:
                    result["error"] = f"time limit of {timeout:g} s reached before cell {index}"
                    break
                client.timeout = max(1, int(left))
                try:
                    client.execute_cell(cell, index)
                except CellTimeoutError:
                    result["error"] = f"time limit of {timeout:g} s reached in cell {index}"
                    break
                ran.add(index)
    except DeadKernelError as err:
        result["error"] = f"the kernel died: {err}"
    result["seconds"] = round(time.monotonic() - start, 1)
    seen = set()
    for index, cell in enumerate(nb.cells):
        found = exercise_id(cell)
        if found and found not in seen:
            seen.add(found)
            passed, message = _outcome(cell, index in ran)
            result["exercises"].append({"id": found, "passed": passed, "message": message})
    for found in missing:
        result["exercises"].append({"id": found, "passed": False,
                                    "message": "exercise cell not found in the submission"})
    result["exercises"].sort(key=lambda e: tuple(int(p) for p in e["id"].split(".")))
    return result


def format_grades(results: Iterable[dict[str, Any]], width: int = 90) -> str:
    """A text table: one row per notebook and exercise, then the score per notebook."""
    lines = [f"{'notebook':32s} {'exercise':8s} {'result':6s}  message"]
    for res in results:
        for ex in res["exercises"]:
            message = ex["message"].replace("\n", " ")
            if len(message) > width:
                message = message[:width - 3] + "..."
            lines.append(f"{res['notebook']:32s} {ex['id']:8s} {'pass' if ex['passed'] else 'FAIL':6s}  "
                         f"{message}")
        score = sum(e["passed"] for e in res["exercises"])
        note = f"; {res['error']}" if res.get("error") else ""
        lines.append(f"{res['notebook']:32s} {'total':8s} {score}/{len(res['exercises'])} passed "
                     f"({res['seconds']:.0f} s{note})")
    return "\n".join(lines)


def grades_csv(results: Iterable[dict[str, Any]]) -> str:
    """CSV with a header: notebook, exercise, passed, message (one row per exercise)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["notebook", "exercise", "passed", "message"])
    for res in results:
        for ex in res["exercises"]:
            writer.writerow([res["notebook"], ex["id"], str(ex["passed"]).lower(), ex["message"]])
    return buffer.getvalue()
