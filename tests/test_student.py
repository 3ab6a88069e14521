"""The solution -> student notebook generator: stubs, tags, cleared outputs, determinism, validation."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from mmcourse.exercises import NotSolved
from mmcourse.notebook_format import CHECK_MIMETYPE, RAISES_TAG, exercise_id, exercise_ids
from mmcourse.tools.student import NotebookError, make_student_notebooks, student_version

REPO = Path(__file__).resolve().parents[1]
NAME = "98_testing.ipynb"

DOUBLE_SOLUTION = '''# Exercise 98.1: double a tensor
def double(x):
    """Return 2 * x."""
    ### BEGIN SOLUTION
    y = x + x
    return y
    ### END SOLUTION'''

DOUBLE_STUDENT = '''# Exercise 98.1: double a tensor
def double(x):
    """Return 2 * x."""
    # YOUR CODE HERE
    raise NotSolved("98.1")'''

VALUE_SOLUTION = '''# Exercise 98.2
### BEGIN SOLUTION
answer = 3
### END SOLUTION
check("98.2", answer)'''

VALUE_STUDENT = '''# Exercise 98.2
# YOUR CODE HERE
raise NotSolved("98.2")
check("98.2", answer)'''

REGISTER_CHECKS = '''import torch
from mmcourse.exercises import NotSolved, check, expect_close, expect_equal, register

@register("98.1", "Double a tensor")
def _check_double(answer):
    x = torch.arange(3.0)
    expect_close("double(x)", answer(x), 2 * x)

@register("98.2", "Pick three")
def _check_three(answer):
    expect_equal("answer", answer, 3)'''


def code(source: str, tags=(), outputs=(), count=None, **metadata):
    cell = new_code_cell(source, outputs=list(outputs), execution_count=count)
    if tags:
        cell.metadata["tags"] = list(tags)
    cell.metadata.update(metadata)
    return cell


def lesson_only_notebook() -> nbformat.NotebookNode:
    """A notebook without exercises (any number fits it)."""
    nb = solution_notebook()
    nb.cells = nb.cells[:2]
    return nb


def solution_notebook() -> nbformat.NotebookNode:
    """A small solution notebook with every kind of cell, its outputs as if executed."""
    stream = new_output("stream", name="stdout", text="hello\n")
    cells = [
        code("seed = 0", tags=["parameters"], count=1),
        new_markdown_cell("# Testing\nLesson text."),
        code(REGISTER_CHECKS, count=2, execution={"iopub.status.busy": "2025-01-01T00:00:00"}),
        code("print('hello')", outputs=[stream], count=3),
        code(DOUBLE_SOLUTION, count=4, tags=["keep-me"]),
        code('# Exercise 98.1\ncheck("98.1", double)', count=5,
             outputs=[new_output("stream", name="stdout", text="Exercise 98.1 passed\n")]),
        new_markdown_cell("Why does it work?\n\n<!-- BEGIN SOLUTION -->\nBecause x + x = 2x.\n"
                          "<!-- END SOLUTION -->\n\nMore lesson."),
        code(VALUE_SOLUTION, count=6, papermill={"duration": 0.1}),
        code("print('the lesson goes on', seed)", count=7),
    ]
    for index, cell in enumerate(cells):
        cell.id = f"cell-{index}"
    return new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "mmcourse", "display_name": "Python 3 (mmcourse)", "language": "python"},
        "language_info": {"name": "python", "version": "3.11.0"},
        "papermill": {"duration": 3.2, "start_time": "2025-01-01"},
        "widgets": {"application/vnd.jupyter.widget-state+json": {"state": {}}},
    })


def write_notebook(nb, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def test_student_version_replaces_regions_with_stubs():
    solution = solution_notebook()
    before = copy.deepcopy(solution)
    student = student_version(solution, NAME)
    assert solution == before  # pure
    sources = [cell.source for cell in student.cells]
    assert sources[4] == DOUBLE_STUDENT
    assert sources[5] == '# Exercise 98.1\ncheck("98.1", double)'
    assert sources[6] == "Why does it work?\n\n*Your answer here.*\n\nMore lesson."
    assert sources[7] == VALUE_STUDENT
    assert sources[:4] == [cell.source for cell in solution.cells[:4]]
    assert exercise_ids(solution.cells) == exercise_ids(student.cells) == ["98.1", "98.2"]


def test_student_version_tags_clears_and_keeps_ids_and_metadata():
    solution = solution_notebook()
    student = student_version(solution, NAME)
    tags = [cell.metadata.get("tags", []) for cell in student.cells]
    assert tags == [["parameters"], [], [], [], ["keep-me", "raises-exception"],
                    ["raises-exception"], [], ["raises-exception"], []]
    for cell in student.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
        assert "execution" not in cell.metadata and "papermill" not in cell.metadata
    assert [c.id for c in student.cells] == [c.id for c in solution.cells]
    assert set(student.metadata) == {"kernelspec", "language_info"}
    assert student.metadata.kernelspec.name == "mmcourse"


def test_region_indentation_and_several_regions():
    nb = solution_notebook()
    nb.cells[4].source = ("# Exercise 98.1\nclass Net:\n    def forward(self, x):\n"
                          "        ### BEGIN SOLUTION\n        return x\n        ### END SOLUTION\n\n"
                          "    def size(self):\n        ### BEGIN SOLUTION\n        return 1\n"
                          "        ### END SOLUTION")
    assert student_version(nb, NAME).cells[4].source == (
        '# Exercise 98.1\nclass Net:\n    def forward(self, x):\n        # YOUR CODE HERE\n'
        '        raise NotSolved("98.1")\n\n    def size(self):\n        # YOUR CODE HERE\n'
        '        raise NotSolved("98.1")')


def test_make_student_notebooks_writes_deterministically(tmp_path):
    solutions, notebooks = tmp_path / "solutions", tmp_path / "notebooks"
    write_notebook(solution_notebook(), solutions / NAME)
    write_notebook(lesson_only_notebook(), solutions / "97_other.ipynb")

    assert make_student_notebooks(solutions, notebooks, check=True) == ["97_other.ipynb", NAME]
    assert not notebooks.exists()  # check mode writes nothing
    assert make_student_notebooks(solutions, notebooks) == ["97_other.ipynb", NAME]
    first = (notebooks / NAME).read_bytes()
    assert first.endswith(b"}\n") and b'\n "cells": [\n  {\n' in first  # nbformat.write, indent 1
    assert make_student_notebooks(solutions, notebooks) == []
    assert make_student_notebooks(solutions, notebooks, check=True) == []
    assert (notebooks / NAME).read_bytes() == first

    (notebooks / NAME).unlink()
    assert make_student_notebooks(solutions, notebooks) == [NAME]
    assert (notebooks / NAME).read_bytes() == first
    student = nbformat.read(notebooks / NAME, as_version=4)
    assert student == student_version(nbformat.read(solutions / NAME, as_version=4), NAME)


def test_check_mode_reports_out_of_date_missing_and_orphans(tmp_path):
    solutions, notebooks = tmp_path / "solutions", tmp_path / "notebooks"
    nb = solution_notebook()
    write_notebook(nb, solutions / NAME)
    make_student_notebooks(solutions, notebooks)

    nb.cells[1].source += "\nA new sentence."
    write_notebook(nb, solutions / NAME)
    assert make_student_notebooks(solutions, notebooks, check=True) == [NAME]

    write_notebook(lesson_only_notebook(), solutions / "96_new.ipynb")
    write_notebook(lesson_only_notebook(), notebooks / "95_gone.ipynb")
    assert make_student_notebooks(solutions, notebooks, check=True) == [
        "96_new.ipynb", NAME, "95_gone.ipynb (no solutions/95_gone.ipynb: delete it or add the solution)"]
    with pytest.raises(NotebookError, match="95_gone.ipynb with no solution .*delete it or add the solution"):
        make_student_notebooks(solutions, notebooks)
    assert make_student_notebooks(solutions, notebooks, check=True)[:2] == ["96_new.ipynb", NAME]  # nothing written


def test_misnamed_solution_is_reported(tmp_path):
    solutions, notebooks = tmp_path / "solutions", tmp_path / "notebooks"
    write_notebook(solution_notebook(), solutions / "intro.ipynb")
    assert make_student_notebooks(solutions, notebooks, check=True) == [
        "solutions/intro.ipynb (not named NN_topic.ipynb, so it has no student version)"]
    with pytest.raises(NotebookError, match="named NN_topic.ipynb"):
        make_student_notebooks(solutions, notebooks)


def test_solution_cells_without_ids_are_refused(tmp_path):
    path = write_notebook(solution_notebook(), tmp_path / "solutions" / NAME)
    raw = json.loads(path.read_text())
    del raw["cells"][3]["id"]
    path.write_text(json.dumps(raw))
    with pytest.raises(NotebookError, match=r"98_testing.ipynb, cell index 3: the cell has no id"):
        make_student_notebooks(tmp_path / "solutions", tmp_path / "notebooks")


def _set(index, source):
    def change(nb):
        nb.cells[index].source = source
    return change


def _untag_parameters(nb):
    nb.cells[0].metadata["tags"] = []


def _duplicate_solution(nb):
    nb.cells.insert(5, code(DOUBLE_SOLUTION))


def _separate_check(nb):
    nb.cells[7].source = VALUE_SOLUTION.rsplit("\n", 1)[0]
    nb.cells.insert(8, code('# Exercise 98.2\ncheck("98.2", answer)'))


INVALID = {
    "begin without end": (_set(4, "# Exercise 98.1\n### BEGIN SOLUTION\nx = 1"),
                          r"cell index 4 \(id cell-4\): ### BEGIN SOLUTION on line 2 has no ### END SOLUTION"),
    "end without begin": (_set(4, "# Exercise 98.1\nx = 1\n### END SOLUTION"),
                          r"cell index 4 .*line 3 has ### END SOLUTION without a ### BEGIN SOLUTION"),
    "nested": (_set(4, "# Exercise 98.1\n### BEGIN SOLUTION\n  ### BEGIN SOLUTION\n### END SOLUTION"),
               r"cell index 4 .*line 3 opens a solution region inside the one opened on line 2"),
    "misspelt marker": (_set(4, "# Exercise 98.1\n## BEGIN SOLUTION\nx = 1\n## END SOLUTION"),
                        r"cell index 4 .*line 2 looks like a solution marker"),
    "markers outside an exercise": (_set(3, "x = 1\n### BEGIN SOLUTION\nx = 2\n### END SOLUTION"),
                                    r"cell index 3 .*solution markers in a cell whose first line is not"),
    "wrong notebook number": (_set(4, DOUBLE_SOLUTION.replace("98.1", "3.1")),
                              r"cell index 4 .*exercise 3.1 in notebook 98"),
    "same id in two cells": (_duplicate_solution,
                             r"cell index 5 .*exercise 98.1 already has solution regions in cell index 4"),
    "no parameters tag": (_untag_parameters, r"cell index 0 .*must be tagged 'parameters'"),
    "markdown begin without end": (_set(6, "<!-- BEGIN SOLUTION -->\nBecause."),
                                   r"cell index 6 .*<!-- BEGIN SOLUTION --> has no <!-- END SOLUTION -->"),
    "markdown end without begin": (_set(6, "Because.\n<!-- END SOLUTION -->"),
                                   r"cell index 6 .*closes a region that was not opened"),
    "code markers in markdown": (_set(6, "### BEGIN SOLUTION\nBecause.\n### END SOLUTION"),
                                 r"cell index 6 .*markdown cells mark written answers with"),
    "check in a lesson cell": (_set(3, 'check("98.1", 1)'), r"cell index 3 .*outside an exercise cell"),
    "check of another id": (_set(5, '# Exercise 98.1\ncheck("98.2", double)'),
                            r"cell index 5 .*calls check\('98.2', ...\)"),
    "exercise cell doing nothing": (_set(5, "# Exercise 98.1\nprint(1)"),
                                    r"cell index 5 .*neither a solution region nor a check"),
    "malformed header": (_set(4, DOUBLE_SOLUTION.replace("# Exercise 98.1:", "# exercise 98.1 -")),
                         r"cell index 4 .*should read '# Exercise N.M'"),
    "no NotSolved import": (_set(2, "import torch"), r"cell index 4 .*no cell before it imports NotSolved"),
    "check apart from a top-level region": (_separate_check,
                                            r"cell index 8 .*top-level solution region is in cell index 7"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_validation_errors_name_the_notebook_and_cell(case, tmp_path):
    change, message = INVALID[case]
    nb = solution_notebook()
    change(nb)
    with pytest.raises(NotebookError, match=r"98_testing\.ipynb, " + message):
        student_version(nb, NAME)
    path = write_notebook(nb, tmp_path / "solutions" / NAME)
    with pytest.raises(NotebookError, match=str(path).replace(".", r"\.")):
        make_student_notebooks(tmp_path / "solutions", tmp_path / "notebooks", check=True)
    assert not (tmp_path / "notebooks").exists()


def test_notebook_name_must_carry_its_number():
    with pytest.raises(NotebookError, match="named NN_topic.ipynb"):
        student_version(solution_notebook(), "testing.ipynb")


@pytest.mark.notebook
def test_student_notebook_runs_with_not_solved_in_every_exercise_cell(tmp_path):
    """The one test that starts a kernel: lesson cells run clean; every exercise cell that runs a
    stub (a top-level region, or a check(...) of a stubbed function) stops with NotSolved; a cell
    that only defines a function around its region runs without error (the def is not called)."""
    from nbclient import NotebookClient

    write_notebook(solution_notebook(), tmp_path / "solutions" / NAME)
    make_student_notebooks(tmp_path / "solutions", tmp_path / "notebooks")
    nb = nbformat.read(tmp_path / "notebooks" / NAME, as_version=4)
    NotebookClient(nb, timeout=60, kernel_name="mmcourse",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()

    errors = {index: [out for out in cell.outputs if out.output_type == "error"]
              for index, cell in enumerate(nb.cells) if cell.cell_type == "code"}
    assert all(cell.execution_count is not None for cell in nb.cells if cell.cell_type == "code")
    exercise_cells = {index: exercise_id(cell) for index, cell in enumerate(nb.cells)
                      if RAISES_TAG in cell.metadata.get("tags", [])}
    assert exercise_cells == {4: "98.1", 5: "98.1", 7: "98.2"}
    assert errors[4] == []  # defines double(), whose body is the stub
    for index in (5, 7):
        assert [e.ename for e in errors[index]] == ["NotSolved"], nb.cells[index].source
        assert f"Exercise {exercise_cells[index]} is not solved yet" in errors[index][0].evalue
    for index in set(errors) - set(exercise_cells):
        assert errors[index] == [], nb.cells[index].source
    assert nb.cells[3].outputs[0].text == "hello\n"
    assert nb.cells[-1].outputs[0].text == "the lesson goes on 0\n"
    # check("98.1", double) reached check(), which showed its bundle before re-raising NotSolved
    shown = [out for out in nb.cells[5].outputs if out.output_type == "display_data"]
    assert [out.data for out in shown] == [{
        CHECK_MIMETYPE: {"id": "98.1", "passed": False, "message": str(NotSolved("98.1"))},
        "text/plain": "Exercise 98.1 is not solved yet."}]


def test_repo_student_notebooks_in_sync():
    solutions = REPO / "solutions"
    if not sorted(solutions.glob("[0-9][0-9]_*.ipynb")):
        pytest.skip("solutions/ has no notebooks yet")
    stale = make_student_notebooks(solutions, REPO / "notebooks", check=True)
    assert stale == [], "student notebooks out of date: " + ", ".join(stale) + "; run `mmcourse student`"
