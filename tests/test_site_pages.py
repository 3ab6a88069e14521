"""The website's notebook pages (mmcourse.tools.site_pages) on small notebooks, without a build:
answers folded (split at the solution markers, outputs folded) or left out (the student version
with the lesson outputs). The built pages are tested in tests/test_site.py."""
from __future__ import annotations

import copy
import json

import pytest

from mmcourse.notebook_format import CHECK_MIMETYPE
from mmcourse.tools.site_pages import folded_notebook, solution_pieces, student_notebook
from mmcourse.tools.student import NotebookError


def _code(source, outputs=(), cell_id=None, tags=()):
    return {"cell_type": "code", "id": cell_id or f"c{abs(hash(source)) % 10**8}",
            "execution_count": 1, "metadata": {"tags": list(tags)}, "outputs": list(outputs),
            "source": source}


def _md(source, cell_id):
    return {"cell_type": "markdown", "id": cell_id, "metadata": {}, "source": source}


def _stream(text):
    return {"output_type": "stream", "name": "stdout", "text": text}


VERDICT = {"output_type": "display_data", "metadata": {},
           "data": {CHECK_MIMETYPE: {"passed": True},
                    "text/plain": "Exercise 3.1 passed: the mean is 2.500"}}
EXERCISE = ("# Exercise 3.1\ndef mean(xs):\n    \"\"\"The mean of xs.\"\"\"\n"
            "    ### BEGIN SOLUTION\n    total = sum(xs)\n    return total / len(xs)\n"
            "    ### END SOLUTION\n\n\ncheck(\"3.1\", mean)")


def _notebook():
    cells = [_code("SEED = 0", cell_id="params", tags=["parameters"]),
             _code("from mmcourse.exercises import NotSolved, check\nprint('lesson')",
                   [_stream("lesson\n")], cell_id="lesson"),
             _code(EXERCISE, [VERDICT], cell_id="ex31"),
             _md("### Exercise 3.2 (open)\n\nWhy?\n\n<!-- BEGIN SOLUTION -->\nBecause "
                 "::: colons.\n<!-- END SOLUTION -->\n", "md32")]
    return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def test_solution_pieces_split_at_the_markers():
    assert solution_pieces(EXERCISE) == [
        (False, "# Exercise 3.1\ndef mean(xs):\n    \"\"\"The mean of xs.\"\"\""),
        (True, "    total = sum(xs)\n    return total / len(xs)"),
        (False, "check(\"3.1\", mean)")]
    assert solution_pieces("x = 1\n") == [(False, "x = 1")]
    # a region that ends the cell leaves no empty piece behind
    assert solution_pieces("# Exercise 3.1\n### BEGIN SOLUTION\nx = 1\n### END SOLUTION\n") == [
        (False, "# Exercise 3.1"), (True, "x = 1")]


def test_folded_notebook_hides_exactly_the_answer_and_the_exercise_outputs():
    nb = _notebook()
    original = copy.deepcopy(nb)
    folded = folded_notebook(nb)
    assert nb == original, "folded_notebook changed its input"
    cells = folded["cells"]
    assert [c["id"] for c in cells] == ["params", "lesson", "ex31-0", "ex31-1", "ex31-2", "md32"]
    header, answer, check = cells[2:5]
    assert header["metadata"]["tags"] == [] and not header["outputs"]
    assert answer["metadata"]["tags"] == ["hide-input"] and "total = sum" in answer["source"]
    assert answer["metadata"]["mystnb"]["code_prompt_show"] == "Show solution 3.1"
    assert check["metadata"]["tags"] == ["hide-output"]
    assert check["metadata"]["mystnb"]["code_prompt_show"] == "Show the result of exercise 3.1"
    assert check["outputs"][0]["data"] == {"text/plain": "Exercise 3.1 passed: the mean is 2.500"}
    assert all("SOLUTION" not in c["source"] for c in cells)
    # lesson cells are untouched
    assert cells[1] == original["cells"][1]
    # the written answer is a dropdown whose fence is longer than any colon run inside it
    md = cells[5]["source"]
    assert "::::{dropdown} Show solution 3.2\nBecause ::: colons.\n::::" in md
    assert "BEGIN SOLUTION" not in md and md.startswith("### Exercise 3.2 (open)\n\nWhy?")


def test_folded_notebook_with_a_region_that_ends_the_cell_folds_source_and_output():
    nb = _notebook()
    nb["cells"][2] = _code("# Exercise 3.1\n### BEGIN SOLUTION\nprint(2.5)\n### END SOLUTION",
                           [_stream("2.5\n")], cell_id="ex31")
    last = folded_notebook(nb)["cells"][3]
    assert last["metadata"]["tags"] == ["hide-input", "hide-output"]
    assert last["metadata"]["mystnb"]["code_prompt_show"] == "Show solution 3.1 ({type})"
    assert last["outputs"] == [_stream("2.5\n")]


def test_student_notebook_keeps_lesson_outputs_and_no_answer():
    nb = _notebook()
    original = copy.deepcopy(nb)
    page = student_notebook(nb, "03_means.ipynb")
    assert nb == original, "student_notebook changed its input"
    text = json.dumps(page)
    for answer in ("total = sum(xs)", "return total / len(xs)", "Because", "passed", "2.500"):
        assert answer not in text, f"{answer!r} reached the page without solutions"
    lesson, exercise = page["cells"][1], page["cells"][2]
    assert lesson["outputs"] == [_stream("lesson\n")]
    assert exercise["outputs"] == [] and 'raise NotSolved("3.1")' in exercise["source"]
    assert "*Your answer here.*" in page["cells"][3]["source"]


def test_student_notebook_refuses_a_notebook_that_breaks_the_conventions():
    nb = _notebook()
    nb["cells"][2]["source"] = EXERCISE.replace("    ### END SOLUTION\n", "")
    with pytest.raises(NotebookError, match="has no ### END SOLUTION"):
        student_notebook(nb, "03_means.ipynb")
