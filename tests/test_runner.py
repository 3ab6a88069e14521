"""mmcourse.tools.runner and mmcourse.report on small notebooks written into a temporary course folder.

The notebooks really run (papermill, kernel "mmcourse"); the course run is shared by the tests of
this module so that only a few kernels start.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from mmcourse.notebook_format import METRICS_MIMETYPE, RAISES_TAG
from mmcourse.report import format_metrics, report_metrics
from mmcourse.tools.runner import (check_kernel, classify_notebook, format_table, list_notebooks,
                                   refresh_solutions, run_course, select_notebooks)

ALLOC_MB = 300  # the first notebook holds this much memory, to check the peak measurement


def _notebook(*cells) -> nbformat.NotebookNode:
    """A notebook of ``(source, tags)`` code cells (a str is a markdown cell); the first code
    cell gets the ``parameters`` tag."""
    nb = new_notebook()
    nb.metadata.kernelspec = {"name": "mmcourse", "display_name": "Python 3 (mmcourse)",
                              "language": "python"}
    for cell in cells:
        if isinstance(cell, str):
            nb.cells.append(new_markdown_cell(cell))
        else:
            source, tags = cell
            nb.cells.append(new_code_cell(source, metadata={"tags": list(tags)} if tags else {}))
    return nb


def write_course(root: Path) -> Path:
    """A course folder: solutions/00_demo plus three student notebooks in notebooks/."""
    (root / "solutions").mkdir(parents=True)
    (root / "notebooks").mkdir()
    nbformat.write(_notebook(
        ("seed = 0", ["parameters"]),
        "# Demo",
        ("# Exercise 1.1: add\ntotal = 1 + 2\nprint('total', total)", []),
        ("print('done')", []),
    ), root / "solutions" / "00_demo.ipynb")
    nbformat.write(_notebook(
        (f"n_mb = {ALLOC_MB}", ["parameters"]),
        ("import os\nblob = bytearray(n_mb * 2**20)\n"
         "for i in range(0, len(blob), 4096):\n    blob[i] = 1\n"
         "print(os.path.basename(os.getcwd()), os.environ['MMCOURSE_PROGRESS'])", []),
        ("from mmcourse.exercises import NotSolved\nfrom mmcourse.report import report_metrics\n"
         "_ = report_metrics({'accuracy': 0.912345}, name='demo', n=3)", []),
        ("# Exercise 1.2: fill in\n# YOUR CODE HERE\nraise NotSolved('1.2')", [RAISES_TAG]),
        ("print('after the exercise')", []),
    ), root / "notebooks" / "00_demo.ipynb")
    nbformat.write(_notebook(
        ("x = 1", ["parameters"]),
        "A markdown cell counts as a cell.",
        ("raise ValueError('boom\\nsecond line')", []),
        ("print('never')", []),
    ), root / "notebooks" / "01_broken.ipynb")
    nbformat.write(_notebook(
        ("x = 1", ["parameters"]),
        ("class NotSolved(Exception):\n    pass\n\n# Exercise 2.1\nraise NotSolved('2.1')", []),
    ), root / "notebooks" / "02_untagged.ipynb")
    return root


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    return write_course(tmp_path_factory.mktemp("course"))


@pytest.fixture(scope="module")
def course_run(course, tmp_path_factory):
    """(results by notebook name, stderr progress text) of one run of the student notebooks."""
    out = tmp_path_factory.mktemp("runs") / "latest"
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        results = run_course(course, out_dir=out)
    return {r["notebook"]: r for r in results}, stderr.getvalue()


# ------------------------------------------------------------------------------------------------
# run_course

def test_run_course_result_shape_and_order(course_run):
    results, _ = course_run
    assert list(results) == ["00_demo", "01_broken", "02_untagged"]
    for result in results.values():
        assert set(result) == {"notebook", "status", "wall_s", "peak_mb", "metric", "unsolved",
                               "error", "output"}
        assert isinstance(result["wall_s"], float) and result["wall_s"] > 0
        assert isinstance(result["peak_mb"], int) and result["peak_mb"] > 10
        assert Path(result["output"]).is_file()


def test_student_notebook_ok_with_unsolved_exercise_metrics_and_peak(course_run):
    result = course_run[0]["00_demo"]
    assert result["status"] == "ok", result["error"]
    assert result["error"] is None
    assert result["unsolved"] == ["1.2"]
    assert result["metric"] == {"accuracy": 0.9123, "name": "demo", "n": 3}
    # ru_maxrss of the reaped kernel includes the bytearray the notebook held
    assert result["peak_mb"] >= ALLOC_MB
    nb = nbformat.read(result["output"], as_version=4)
    texts = [o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert "notebooks 0\n" in texts  # kernel cwd = the notebook's folder; env set for the kernel
    assert "after the exercise\n" in texts  # the cells after the exercise still ran


def test_failing_notebook_reports_cell_and_error(course_run):
    result = course_run[0]["01_broken"]
    assert result["status"] == "failed"
    assert result["error"] == "cell 2: ValueError: boom"
    assert result["unsolved"] == [] and result["metric"] == {}


def test_notsolved_in_untagged_cell_is_a_failure(course_run):
    result = course_run[0]["02_untagged"]
    assert result["status"] == "failed"
    assert result["error"].startswith("cell 1: NotSolved: 2.1")
    assert "not tagged raises-exception" in result["error"]


def test_progress_lines_on_stderr(course_run):
    _, stderr = course_run
    assert "[1/3] 00_demo: ok in" in stderr
    assert "[2/3] 01_broken: failed in" in stderr
    assert "cell 2: ValueError: boom" in stderr


def test_any_error_fails_in_solutions_mode(course_run):
    nb = nbformat.read(course_run[0]["00_demo"]["output"], as_version=4)
    assert classify_notebook(nb, solutions=False) == ("ok", ["1.2"], None)
    status, unsolved, error = classify_notebook(nb, solutions=True)
    assert status == "failed" and unsolved == []
    assert error.startswith("cell 3: NotSolved: Exercise 1.2 is not solved yet")


def test_unknown_only_lists_existing_notebooks(course):
    with pytest.raises(ValueError, match=r"unknown notebook '07'.*00_demo, 01_broken, 02_untagged"):
        run_course(course, only=["07"])


def test_select_notebooks_by_number_or_name(course):
    paths = list_notebooks(course / "notebooks")
    names = lambda only: [p.stem for p in select_notebooks(paths, only)]  # noqa: E731
    assert names(None) == ["00_demo", "01_broken", "02_untagged"]
    assert names(["2", "00"]) == ["00_demo", "02_untagged"]
    assert names("01_broken.ipynb") == ["01_broken"]
    assert names([1, "01_broken"]) == ["01_broken"]


def test_missing_kernel_says_how_to_install_it():
    with pytest.raises(RuntimeError, match=r"'no-such-kernel-xyz' is not installed.*scripts/setup\.sh"):
        check_kernel("no-such-kernel-xyz")


def test_format_table(course_run):
    table = format_table(list(course_run[0].values()))
    lines = table.splitlines()
    assert lines[0].split() == ["notebook", "status", "wall", "s", "peak", "MB", "unsolved", "metric"]
    row = next(line for line in lines if line.startswith("00_demo "))
    assert "accuracy=0.9123, n=3, name=demo" in row  # nbformat stores JSON keys sorted
    assert "01_broken failed: cell 2: ValueError: boom" in lines
    assert lines[-1].startswith("total: 3 notebooks, 1 ok, 2 failed,")
    assert lines[-1].endswith("1 unsolved exercises")
    assert lines[2].index(" ok ") + 1 == lines[0].index("status")  # columns aligned
    assert format_table([]) == "no notebooks were run"


# ------------------------------------------------------------------------------------------------
# the CLI

def test_cli_run_json(tmp_path):
    # A light notebook (no mmcourse import, so no torch in the kernel) showing a metrics bundle
    # and an unsolved exercise; 01 is there to check that --only picks 00.
    course = tmp_path / "course"
    (course / "solutions").mkdir(parents=True)
    (course / "notebooks").mkdir()
    nbformat.write(_notebook(
        ("x = 1", ["parameters"]),
        ("from IPython.display import display\n"
         f"display({{'{METRICS_MIMETYPE}': {{'acc': 0.5}}, 'text/plain': 'acc  0.5'}}, raw=True)",
         []),
        ("# Exercise 0.1\nclass NotSolved(Exception):\n    pass\n\nraise NotSolved()", [RAISES_TAG]),
    ), course / "notebooks" / "00_light.ipynb")
    nbformat.write(_notebook(("raise ValueError", [])), course / "notebooks" / "01_other.ipynb")

    mmcourse = Path(sys.executable).with_name("mmcourse")
    proc = subprocess.run([str(mmcourse), "run", "--root", str(course), "--only", "00", "--json",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert isinstance(results, list) and len(results) == 1
    result = results[0]
    assert set(result) == {"notebook", "status", "wall_s", "peak_mb", "metric", "unsolved",
                           "error", "output"}
    assert result["notebook"] == "00_light"
    assert result["status"] == "ok" and result["error"] is None
    assert result["unsolved"] == ["0.1"]
    assert result["metric"] == {"acc": 0.5}
    assert isinstance(result["wall_s"], float) and isinstance(result["peak_mb"], int)
    assert result["output"] == str(tmp_path / "out" / "00_light.ipynb")
    assert "[1/1]" not in proc.stderr  # --json runs quietly


def test_run_course_runs_the_chinese_edition_in_chinese(tmp_path):
    course = tmp_path / "course"
    (course / "notebooks" / "zh").mkdir(parents=True)
    nbformat.write(_notebook(
        ("x = 1", ["parameters"]),
        ("from mmcourse.exercises import NotSolved", []),
        ("# Exercise 0.1\n# YOUR CODE HERE\nraise NotSolved('0.1')", [RAISES_TAG]),
    ), course / "notebooks" / "zh" / "00_light.ipynb")
    [result] = run_course(course, out_dir=tmp_path / "out", quiet=True, lang="zh")
    assert result["status"] == "ok" and result["unsolved"] == ["0.1"]
    nb = nbformat.read(result["output"], as_version=4)
    errors = [out["evalue"] for cell in nb.cells for out in cell.get("outputs", [])
              if out.get("output_type") == "error"]
    assert len(errors) == 1 and "练习 0.1 尚未完成" in errors[0], errors
    with pytest.raises(ValueError, match="no edition in language 'fr'"):
        run_course(course, lang="fr")


# ------------------------------------------------------------------------------------------------
# refresh_solutions

def test_refresh_solutions_in_place(course, monkeypatch):
    calls = []
    stand_in = types.ModuleType("mmcourse.tools.student")
    stand_in.make_student_notebooks = \
        lambda src, dst, only=None: calls.append((src, dst, only)) or ["00_demo"]
    monkeypatch.setitem(sys.modules, "mmcourse.tools.student", stand_in)

    path = course / "solutions" / "00_demo.ipynb"
    lines = list(refresh_solutions(course))
    assert lines[0].startswith("00_demo: updated (")
    assert lines[-1] == "student notebooks regenerated: 00_demo"
    assert calls == [(course / "solutions", course / "notebooks", None)]
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[2].outputs[0]["text"] == "total 3\n"
    for cell in nb.cells:
        assert "execution" not in cell.metadata and "papermill" not in cell.metadata
    assert path.read_text().startswith('{\n "cells": [\n  {\n')  # nbformat, indent 1

    before = path.read_text()
    assert list(refresh_solutions(course, only="0"))[0].startswith("00_demo: unchanged (")
    assert path.read_text() == before
    assert calls[-1][2] == ["00_demo.ipynb"]  # only that notebook's student version


# ------------------------------------------------------------------------------------------------
# report_metrics

def test_report_metrics_rounds_and_returns():
    np = pytest.importorskip("numpy")
    out = report_metrics({"acc": 0.123456789, "n": 3}, loss=np.float32(0.5), epochs=np.int64(2),
                         label="cnn", ok=True)
    assert out == {"acc": 0.1235, "n": 3, "loss": 0.5, "epochs": 2, "label": "cnn", "ok": True}
    assert type(out["epochs"]) is int
    json.dumps(out)
    assert format_metrics({"acc": 0.5, "epochs": 2}) == "acc     0.5\nepochs  2"


@pytest.mark.parametrize("args, kw, error, match", [
    ({1: 0.5}, {}, TypeError, r"metric names must be str, got 1 \(int\)"),
    (None, {"acc": [0.5, 0.6]}, TypeError, r"metric 'acc' must be an int, float, str or bool, got list"),
    (None, {"acc": None}, TypeError, r"metric 'acc' must be .* got NoneType"),
    ([("acc", 1)], {}, TypeError, r"expected a dict of metrics .* got list"),
    (None, {"loss": math.nan}, ValueError, r"metric 'loss' is nan"),
])
def test_report_metrics_rejects(args, kw, error, match):
    with pytest.raises(error, match=match):
        report_metrics(args, **kw)


def test_report_metrics_rejects_multi_element_arrays():
    np = pytest.importorskip("numpy")
    with pytest.raises(TypeError, match=r"metric 'acc' must be a single number"):
        report_metrics(acc=np.array([0.1, 0.2]))


def test_report_metrics_display_bundle(course_run):
    nb = nbformat.read(course_run[0]["00_demo"]["output"], as_version=4)
    bundles = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
               if METRICS_MIMETYPE in o.get("data", {})]
    assert len(bundles) == 1 and bundles[0]["output_type"] == "display_data"
    assert bundles[0]["data"]["text/plain"] == "accuracy  0.9123\nname      demo\nn         3"


def test_the_cpu_kernels_are_capped_at_avx2_where_the_cpu_has_it(monkeypatch, tmp_path):
    """Kernels, tests and the command line cap PyTorch, oneDNN and MKL at AVX2 on x86-64 Linux, so
    that a notebook's numbers are the committed ones on an AVX-512 CPU too (AVX-512 rounds sums
    differently and moves test accuracies by tenths of a point)."""
    from mmcourse.tools import runner

    if runner.CPU_ISA_ENV:
        assert runner.CPU_ISA_ENV == {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                                      "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
        assert all(runner.KERNEL_ENV[k] == v for k, v in runner.CPU_ISA_ENV.items())
        code = "import torch; print(torch.backends.cpu.get_cpu_capability())"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=runner.kernel_env(), check=True).stdout.strip()
        assert out == "AVX2", out
    # the decision itself: only Linux x86-64 with AVX2 gets the caps
    cpuinfo = tmp_path / "cpuinfo"
    for machine, flags, expected in (("x86_64", "fpu sse2 avx avx2 avx512f", True),
                                     ("x86_64", "fpu sse2 avx", False),
                                     ("aarch64", "fp asimd", False)):
        cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        real_path = runner.Path
        monkeypatch.setattr(runner.platform, "machine", lambda: machine)
        monkeypatch.setattr(runner.sys, "platform", "linux")
        monkeypatch.setattr(runner, "Path", lambda p: real_path(cpuinfo) if p == "/proc/cpuinfo"
                            else real_path(p))
        assert bool(runner._cpu_isa_env()) is expected, (machine, flags)
        monkeypatch.setattr(runner, "Path", real_path)
