"""The course notebooks of this checkout, executed (slow: marker ``notebook``).

(a) strict nbval: re-executing each solutions/NN_*.ipynb reproduces its committed outputs (up to
    tests/nbval_sanitize.cfg); a cell that raises fails it, so this also shows every solution
    notebook runs. nbval runs in a pytest subprocess, so that this session never collects
    notebooks itself;
(b) every notebooks/NN_*.ipynb (student version) runs with papermill, and exactly its unsolved
    exercises raise NotSolved, so the rest of the notebook works before any exercise is solved.
    A notebook may name smaller parameters for this run in its metadata
    (``"mmcourse": {"test_parameters": {"EPOCHS": 1}}``): (a) already checks the full defaults'
    outputs, (b) checks that the student version runs top to bottom, which smaller values show
    as well and keep the suite within its time budget.
    This run also audits every figure the notebook draws (mmcourse.figure_audit: a title,
    labelled axes, colour-blind-safe colours) and fails on any problem, and when the audit's log
    is missing or empty (figure_audit.AuditNotRun: the audit did not run).

(The course runner on the solutions, ``mmcourse run --solutions``, is the same execution as (a)
without the comparison, so it is not repeated here; tests/test_runner.py covers the runner.)
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from mmcourse import figure_audit
from mmcourse.notebook_format import exercise_id
from mmcourse.tools.runner import list_notebooks, run_course

pytestmark = pytest.mark.notebook

REPO_ROOT = Path(__file__).resolve().parents[1]


def _params(folder: str) -> list:
    """One param per NN_*.ipynb in ``folder`` (id = its name), or a single skipped one."""
    paths = list_notebooks(REPO_ROOT / folder)
    if not paths:
        return [pytest.param(None, id="none", marks=pytest.mark.skip(reason="no notebooks yet"))]
    return [pytest.param(path, id=path.stem) for path in paths]


def _expected_unsolved(path: Path) -> list[str]:
    """Exercise ids of the cells that start with ``# Exercise N.M`` and contain
    ``raise NotSolved``, in notebook order."""
    nb = nbformat.read(path, as_version=4)
    return [exercise_id(cell) for cell in nb.cells
            if exercise_id(cell) and "raise NotSolved" in cell.source]


@pytest.mark.parametrize("path", _params("notebooks"))
def test_student_notebook_runs_up_to_its_exercises(path: Path, repo_root: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch):
    audit = tmp_path / "figure_audit.jsonl"
    monkeypatch.setenv(figure_audit.ENV_VAR, str(audit))
    nb = nbformat.read(path, as_version=4)
    parameters = nb.metadata.get("mmcourse", {}).get("test_parameters")
    [result] = run_course(repo_root, only=[path.stem], out_dir=tmp_path, quiet=True,
                          parameters=parameters)
    assert result["status"] == "ok", f"{path.name}: {result['error']} (see {result['output']})"
    assert result["unsolved"] == _expected_unsolved(path), (
        "the exercises that raised NotSolved differ from the exercise cells of the notebook")
    problems = figure_audit.read_problems(audit)
    assert not problems, (f"{path.name}: figures break the course's figure rules "
                          "(CONTRIBUTING.md):\n" + "\n".join(f"- {p['figure']}: {p['problem']}"
                                                             for p in problems))


@pytest.mark.parametrize("path", _params("solutions"))
def test_solution_outputs_reproduce_with_nbval(path: Path, repo_root: Path):
    cmd = [sys.executable, "-m", "pytest", "--nbval", str(path.relative_to(repo_root)),
           "--nbval-sanitize-with", "tests/nbval_sanitize.cfg", "--nbval-current-env",
           "-p", "no:cacheprovider", "-q", "--color=no"]
    proc = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True)
    rc, output = proc.returncode, f"{proc.stdout}\n{proc.stderr}".strip()
    assert rc == 0, f"strict nbval failed for {path.name} (rc {rc}):\n{output}"


# The Chinese edition has the English code and outputs (tests/test_translation.py checks that
# for every notebook without executing it); one Chinese notebook is executed too, to show that
# the committed Chinese outputs are what a run in that edition shows (the checks' lines). A
# Chinese student notebook's NotSolved in Chinese: tests/test_runner.py, tests/test_browser.py.
ZH_NOTEBOOK = "00_setup_and_tour"


def test_a_chinese_solution_notebook_reproduces_its_outputs(repo_root: Path):
    path = Path("solutions") / "zh" / f"{ZH_NOTEBOOK}.ipynb"
    cmd = [sys.executable, "-m", "pytest", "--nbval", str(path),
           "--nbval-sanitize-with", "tests/nbval_sanitize.cfg", "--nbval-current-env",
           "-p", "no:cacheprovider", "-q", "--color=no"]
    proc = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True,
                          env={**os.environ, "MMCOURSE_LANG": "zh"})
    output = f"{proc.stdout}\n{proc.stderr}".strip()
    assert proc.returncode == 0, f"strict nbval failed for {path} (rc {proc.returncode}):\n{output}"

