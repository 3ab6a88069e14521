"""Autograding: ``mmcourse grade SUBMISSION.ipynb [...]`` (for instructors).

Each submission is executed top to bottom in a fresh kernel, inside a sandbox (see
:mod:`mmcourse.tools.sandbox`), every cell even after errors, within a time limit for the whole
notebook. The verdict of each exercise never comes from what the notebook displays:

* before the first cell, the grader takes its own references to every registered check
  (:mod:`mmcourse.tools.grade_kernel`), from the course code, read-only in the sandbox;
* in each exercise cell (first line ``# Exercise N.M``) the grader rewrites the last
  ``check("N.M", ...)`` statement into an assignment of its arguments to a name only the grader
  knows, so the submission's own ``check`` (redefined or not) is not what decides;
* right after the cell, a request of the grader's own runs the check it took on those arguments
  and returns the verdict in its reply (with a fresh nonce), checking first that the code a check
  relies on was not replaced.

An exercise passes only when its cell ran without error and that check passed. The exercises
graded are those of the reference notebook (``solutions/NN_*.ipynb`` for the number ``NN`` in
the submission's file name, or ``--reference``), so a deleted exercise counts as failed.

Output per notebook: ``{"notebook": "03_audio.ipynb", "exercises": [{"id": "3.2",
"passed": false, "message": "..."}], "error": None | str, "seconds": float, "sandboxed": bool,
"warnings": [...], "tampering": [...]}``.

What the submission prints or displays is not kept: the verdicts never read it, and a cell that
prints without end would otherwise fill the grader's memory (see :func:`_client_class`).
"""
from __future__ import annotations

import ast
import csv
import io
import json
import math
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

from mmcourse.notebook_format import exercise_id, exercise_ids
from mmcourse.tools import CHECKOUT, sandbox
from mmcourse.tools.runner import KERNEL_NAME, kernel_env

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
STARTUP_SECONDS = 240  # starting the kernel and taking the checks (importing torch): not the student's time


class GradingError(ValueError):
    """An argument of ``mmcourse grade`` that cannot work (raised before any notebook runs)."""


def read_notebook(path: str | Path):
    """The notebook at ``path``; GradingError naming the file when it is missing or not a notebook."""
    import nbformat

    path = Path(path)
    if not path.is_file():
        raise GradingError(f"no notebook at {path}")
    try:
        return nbformat.read(path, as_version=4)
    except Exception as err:  # not JSON, not a notebook
        raise GradingError(f"{path} is not a readable notebook: {str(err).splitlines()[0]}") from None


def find_reference(path: str | Path, nb: Any = None, root: Path = CHECKOUT) -> Path:
    """The course notebook a submission is a copy of: ``solutions/NN_*.ipynb`` (or
    ``notebooks/NN_*.ipynb``) for the number ``NN`` in its file name (``bob_03_audio.ipynb`` -> 03),
    else for the notebook number of its exercises. GradingError when neither tells."""
    name = Path(path).name
    folders = [root / "solutions", root / "notebooks"]

    def course_notebook(number: int) -> Path | None:
        for folder in folders:
            found = sorted(folder.glob(f"{number:02d}_*.ipynb"))
            if found:
                return found[0]
        return None

    candidates = {int(m) for m in re.findall(r"(?<!\d)(\d\d)_", name)}
    matches = {n: course_notebook(n) for n in candidates}
    matches = {n: p for n, p in matches.items() if p is not None}
    if len(matches) > 1:  # e.g. 2024_12_03_audio: keep the one whose topic the name also has
        topical = {n: p for n, p in matches.items() if p.stem[3:] in name}
        matches = topical if len(topical) == 1 else matches
    if len(matches) == 1:
        return next(iter(matches.values()))
    numbers = {int(e.split(".")[0]) for e in exercise_ids(nb.cells)} if nb is not None else set()
    if not matches and len(numbers) == 1 and course_notebook(min(numbers)):
        return course_notebook(min(numbers))
    raise GradingError(f"cannot tell which course notebook {path} is a copy of (its name should "
                       f"contain the number, like 03_audio.ipynb); pass --reference NOTEBOOK")


def check_grade_arguments(paths: list[str], timeout: float, reference: str | None = None,
                          csv_path: str | None = None, root: Path = CHECKOUT) -> list[tuple[Path, Path]]:
    """Every argument checked before the first notebook runs: (submission, reference) pairs."""
    if not isinstance(timeout, (int, float)) or not math.isfinite(timeout) or timeout <= 0:
        raise GradingError(f"--timeout must be a positive number of seconds, not {timeout!r}")
    if reference is not None:
        read_notebook(reference)
    if csv_path is not None:
        target = Path(csv_path)
        folder = target.parent if str(target.parent) else Path(".")
        if target.is_dir() or not folder.is_dir() or not os.access(folder, os.W_OK) or (
                target.exists() and not os.access(target, os.W_OK)):
            raise GradingError(f"--csv {csv_path}: cannot write there (the folder must exist and be "
                               f"writable)")
    notebooks = [read_notebook(path) for path in paths]  # all of them first, then references
    return [(Path(path), Path(reference) if reference else find_reference(path, nb, root))
            for path, nb in zip(paths, notebooks)]


def _check_call(tree: ast.Module, wanted: str) -> ast.stmt | None:
    """The last top-level ``check("N.M", ...)`` statement of a cell, or None."""
    for node in reversed(tree.body):
        call = node.value if isinstance(node, ast.Expr) else None
        if (isinstance(call, ast.Call) and call.args
                and isinstance(call.func, (ast.Name, ast.Attribute))
                and getattr(call.func, "id", getattr(call.func, "attr", None)) == "check"
                and isinstance(call.args[0], ast.Constant) and call.args[0].value == wanted):
            return node
    return None


def rewrite_exercise_cell(source: str, wanted: str, name: str) -> str | None:
    """The cell with its last ``check(wanted, a, k=b)`` replaced by ``name = ((a,), {'k': b})``;
    None when the cell has no such statement (or is not Python)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        try:
            from IPython.core.inputtransformer2 import TransformerManager

            source = TransformerManager().transform_cell(source)
            tree = ast.parse(source)
        except Exception:
            return None
    node = _check_call(tree, wanted)
    if node is None:
        return None
    call = node.value
    args = ", ".join(ast.unparse(a) for a in call.args[1:])
    kwargs = ", ".join(f"{k.arg!r}: {ast.unparse(k.value)}" if k.arg else f"**{ast.unparse(k.value)}"
                       for k in call.keywords)
    lines = source.splitlines(keepends=True)
    before = "".join(lines[:node.lineno - 1]) + lines[node.lineno - 1][:node.col_offset]
    after = lines[node.end_lineno - 1][node.end_col_offset:] + "".join(lines[node.end_lineno:])
    return f"{before}{name} = (({args}{',' if args else ''}), {{{kwargs}}}){after}"


async def _request(client: Any, expression: str, timeout: float) -> dict:
    """Evaluate ``expression`` in the kernel as a request of the grader's own; its reply's value."""
    import queue

    from nbclient.exceptions import DeadKernelError
    from nbclient.util import ensure_async

    msg_id = client.kc.execute("", silent=True, store_history=False, allow_stdin=False,
                               user_expressions={"v": expression})
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        try:
            msg = await ensure_async(client.kc.shell_channel.get_msg(timeout=min(left, 1.0)))
        except queue.Empty:
            if not await ensure_async(client.km.is_alive()):
                raise DeadKernelError("Kernel died") from None
            continue
        if msg.get("parent_header", {}).get("msg_id") == msg_id:
            return msg["content"].get("user_expressions", {}).get("v", {})


def _client_class():
    """nbclient's ``NotebookClient``, less the outputs: every output (and widget) message is read
    and dropped.

    The grader decides from the execute replies and its own requests, never from outputs, so
    keeping them (or the widgets' state) would only let a submission grow the grader's memory
    without bound (a loop of ``print``). The time limit bounds how long it can keep sending.
    """
    from nbclient import NotebookClient

    class DiscardingClient(NotebookClient):
        def output(self, outs, msg, display_id, cell_index):  # noqa: D102 - see the class
            return None

        def handle_comm_msg(self, outs, msg, cell_index):  # noqa: D102 - see the class
            return None

    return DiscardingClient


def _cell_error(reply: dict) -> str:
    ename, evalue = reply.get("ename", "Error"), _ANSI.sub("", reply.get("evalue", "")).strip()
    if ename == "NotSolved":
        return "not solved yet (the cell still raises NotSolved)"
    if ename == "ExerciseFailed":
        return evalue
    return f"the cell raised {ename}: {evalue.splitlines()[0] if evalue else ''}"


def grade_notebook(path: str | Path, timeout: float = 600, reference: str | Path | None = None,
                   kernel_name: str = KERNEL_NAME, sandboxed: bool = True, memory_gb: float = 8,
                   max_processes: int = 512, data_dirs: Iterable[str | Path] = (),
                   check_files: Iterable[str | Path] = ()) -> dict[str, Any]:
    """Execute ``path`` and grade every exercise of its reference (see the module docstring).

    Args:
        timeout: seconds the submission's cells (and the checks) may take in all.
        reference: the notebook whose exercises are graded (default: :func:`find_reference`).
        sandboxed: run in the bubblewrap sandbox (False: with the grader's rights, as the
            ``--no-sandbox`` option; the result then carries a warning).
        memory_gb, max_processes: the sandbox's caps (memory per process, processes in all).
        data_dirs: folders the submission may read (read-only, at their own paths).
        check_files: Python files registering extra checks (``register``), taken like the course's.
    """
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from nbclient.util import run_sync

    path = Path(path)
    nb = read_notebook(path)
    ref_path = Path(reference) if reference else find_reference(path, nb)
    graded = exercise_ids(read_notebook(ref_path).cells)
    result: dict[str, Any] = {"notebook": path.name, "exercises": [], "error": None, "seconds": 0.0,
                              "sandboxed": sandboxed, "warnings": [], "tampering": []}
    nonce = secrets.token_hex(8)
    cells: dict[str, int] = {}
    for index, cell in enumerate(nb.cells):
        found = exercise_id(cell)
        if found and found not in cells:
            cells[found] = index
            rewritten = rewrite_exercise_cell(cell.source, found, f"_grader_{nonce}_{found.replace('.', '_')}")
            cell.source = rewritten if rewritten is not None else cell.source
            cell.metadata["grader_found_check"] = rewritten is not None
    scratch = Path(tempfile.mkdtemp(prefix="mmcourse-grade-"))
    outcomes: dict[str, tuple[bool, str]] = {}
    replies: dict[int, dict] = {}
    start = time.monotonic()
    try:
        bwrap = sandbox.find_bwrap() if sandboxed else None
        if sandboxed and bwrap is None:
            raise GradingError("bubblewrap (bwrap) is not installed: grading needs it to sandbox "
                               "submissions (apt-get install bubblewrap), or pass --no-sandbox")
        owner, prefix, cwd = None, [], str(path.resolve().parent)
        cache = sandbox.grader_cache()
        python = sandbox.kernel_python(kernel_name)
        if sandboxed:
            course = CHECKOUT
            as_nobody = os.geteuid() == 0 and shutil.which("setpriv") is not None
            if os.geteuid() == 0 and not as_nobody:
                result["warnings"].append("ran as root inside the sandbox (setpriv, from "
                                          "util-linux, is missing): no process cap")
            owner = sandbox.NOBODY if as_nobody else None
            sandbox.prepare_scratch(scratch, cache, owner)
            extra = []
            for index, file in enumerate(check_files):
                extra.append(str(scratch / "checks" / f"checks_{index}.py"))
                shutil.copyfile(file, extra[-1])
            prefix = sandbox.sandbox_prefix(bwrap, scratch, course, python,
                                            int(memory_gb * 2 ** 30), max_processes,
                                            read_only=data_dirs, cache=cache, as_nobody=as_nobody)
            cwd = str(scratch / "work")
            env = {}
        else:
            result["warnings"].append("not sandboxed (--no-sandbox): the submission ran with the "
                                      "grader's rights, files and environment")
            env = kernel_env()  # and the grader's own course code first, as in the sandbox
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CHECKOUT), env.get("PYTHONPATH")]))
            extra = [str(Path(f).resolve()) for f in check_files]
        km = sandbox.kernel_manager(scratch, kernel_name, prefix, owner)
        client = _client_class()(nb, km=km, allow_errors=True, timeout=int(timeout),
                                 startup_timeout=STARTUP_SECONDS,
                                 resources={"metadata": {"path": cwd}},
                                 on_cell_executed=lambda cell, cell_index, execute_reply:
                                 replies.__setitem__(cell_index, execute_reply["content"]))
        log = open(scratch / "kernel.log", "wb")  # the kernel's own messages, never in the report
        try:
            with log, client.setup_kernel(env=env, cwd=cwd, stdout=log, stderr=log,
                                          stdin=subprocess.DEVNULL):
                reply = run_sync(_request)(client, "__import__('mmcourse.tools.grade_kernel', "
                                           f"fromlist=['install']).install({extra!r})", STARTUP_SECONDS)
                if reply.get("status") != "ok":
                    result["error"] = ("the grader could not take the course's checks in the kernel: "
                                       f"{reply.get('ename')}: {reply.get('evalue')}")
                start = time.monotonic()
                by_index = {i: e for e, i in cells.items()}
                for index, cell in enumerate([] if result["error"] else nb.cells):
                    address = int(reply["data"]["text/plain"])
                    left = timeout - (time.monotonic() - start)
                    if left <= 0:
                        result["error"] = f"time limit of {timeout:g} s reached before cell {index}"
                        break
                    client.timeout = max(1, int(math.ceil(left)))
                    try:
                        client.execute_cell(cell, index)
                    except CellTimeoutError:
                        result["error"] = f"time limit of {timeout:g} s reached in cell {index}"
                        break
                    if index in by_index:
                        found = by_index[index]
                        outcomes[found] = _judge(client, cell, replies.get(index, {}), found,
                                                 address, nonce, timeout - (time.monotonic() - start),
                                                 result)
                        if result["error"]:
                            break
        except DeadKernelError:
            result["error"] = ("the kernel died (the submission crashed it, exited, or was killed "
                               "at the memory cap)")
        except (RuntimeError, TimeoutError) as err:  # the kernel never started
            tail = (scratch / "kernel.log").read_text(errors="replace").strip().splitlines()[-2:]
            result["error"] = (f"the kernel did not start: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
                               + "".join(f" | {line}" for line in tail))
        finally:
            survivors = sandbox.stop_kernel(km, scratch if sandboxed else None)
            if survivors:
                result["warnings"].append(
                    f"{len(survivors)} process(es) of the sandbox outlived it (still there 35 s "
                    "after the kernel's shutdown, killed again and again): " + "; ".join(survivors))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result["seconds"] = round(time.monotonic() - start, 1)
    reason = result["error"] or "the notebook stopped before this cell"
    for found in graded:
        if found in outcomes:
            passed, message = outcomes[found]
        elif found in cells:
            passed, message = False, f"not run: {reason}"
        else:
            passed, message = False, "exercise cell not found in the submission"
        result["exercises"].append({"id": found, "passed": passed, "message": message})
    return result


def _judge(client: Any, cell: Any, reply: dict, found: str, address: int, nonce: str,
           left: float, result: dict) -> tuple[bool, str]:
    """The outcome of one exercise cell that just ran (see the module docstring)."""
    from nbclient.util import run_sync

    if reply.get("status") != "ok":
        return False, _cell_error(reply)
    if not cell.metadata.get("grader_found_check"):
        return False, f'the cell ran but never called check("{found}", ...) as its last step'
    name = f"_grader_{nonce}_{found.replace('.', '_')}"
    request_nonce = secrets.token_hex(8)
    expression = (f"__import__('ctypes').cast({address}, __import__('ctypes').py_object).value"
                  f".verdict({request_nonce!r}, {found!r}, {name!r})")
    try:
        value = run_sync(_request)(client, expression, max(left, 1))
    except TimeoutError:
        result["error"] = f"time limit reached while checking exercise {found}"
        return False, f"not checked: {result['error']}"
    try:
        verdict = json.loads(ast.literal_eval(value["data"]["text/plain"]))
        assert verdict["nonce"] == request_nonce and verdict["id"] == found
    except Exception:
        return False, "the grader's check did not come back intact (tampering with the kernel?)"
    result["tampering"] += [t for t in verdict["tampering"] if t not in result["tampering"]]
    return bool(verdict["passed"]), str(verdict["message"])


def format_grades(results: Iterable[dict[str, Any]], width: int = 90, header: bool = True) -> str:
    """A text table: one row per notebook and exercise, then the score per notebook."""
    lines = [f"{'notebook':32s} {'exercise':8s} {'result':6s}  message"] if header else []
    for res in results:
        for ex in res["exercises"]:
            message = ex["message"].replace("\n", " ")
            if len(message) > width:
                message = message[:width - 3] + "..."
            lines.append(f"{res['notebook']:32s} {ex['id']:8s} {'pass' if ex['passed'] else 'FAIL':6s}  "
                         f"{message}")
        score = sum(e["passed"] for e in res["exercises"])
        notes = [res["error"]] if res.get("error") else []
        notes += [f"WARNING: {w}" for w in res.get("warnings", [])]
        if res.get("tampering"):
            notes.append("tampering detected: " + "; ".join(res["tampering"][:3]))
        note = "".join(f"; {n}" for n in notes)
        lines.append(f"{res['notebook']:32s} {'total':8s} {score}/{len(res['exercises'])} passed "
                     f"({res['seconds']:.0f} s{note})")
    return "\n".join(lines)


CSV_HEADER = ["notebook", "exercise", "passed", "message"]


def grades_csv(results: Iterable[dict[str, Any]], header: bool = True) -> str:
    """CSV with a header: notebook, exercise, passed, message (one row per exercise)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header:
        writer.writerow(CSV_HEADER)
    for res in results:
        for ex in res["exercises"]:
            writer.writerow([res["notebook"], ex["id"], str(ex["passed"]).lower(), ex["message"]])
    return buffer.getvalue()


def class_summary(results: list[dict[str, Any]], seconds: float) -> str:
    """One line for a class: how many notebooks, how long in all, how many passed everything.

    ``results`` as :func:`grade_notebook` returns them; ``seconds`` the wall time of the whole run.
    """
    full = sum(1 for r in results if r["exercises"] and all(e["passed"] for e in r["exercises"]))
    stopped = sum(1 for r in results if r.get("error"))
    return (f"{len(results)} notebooks graded in {seconds / 60:.1f} min "
            f"({seconds / max(len(results), 1):.0f} s each on average): {full} passed every "
            f"exercise, {stopped} stopped early (time limit, dead kernel or grader error)")
