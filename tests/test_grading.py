"""mmcourse grade: run a submission in a fresh kernel, grade every exercise (table/JSON/CSV)."""
from __future__ import annotations

import csv
import io
import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from mmcourse.tools.cli import main as cli_main
from mmcourse.tools.grading import format_grades, grade_notebook, grades_csv

SETUP = '''from mmcourse.exercises import NotSolved, check, fail, register

@register("98.1", "double a number")
def _check_double(answer):
    if answer != 42:
        fail(f"expected double of 21, got {answer!r}", hint="multiply by 2")

for _id in ("98.2", "98.3", "98.4", "98.5"):
    register(_id, "same check")(_check_double)
'''


def make_submission(path, cells, kernel="mmcourse"):
    nb = new_notebook(cells=[new_markdown_cell("# A submission"), new_code_cell(SETUP), *cells])
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": "Python 3 (mmcourse)",
                                 "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("grading")
    cells = [
        new_code_cell('# Exercise 98.1\nanswer = 21 * 2\ncheck("98.1", answer)'),
        new_code_cell('# Exercise 98.2\nanswer = 21 + 2\ncheck("98.2", answer)'),
        new_code_cell('# Exercise 98.3\nraise NotSolved("98.3")\ncheck("98.3", answer)'),
        new_code_cell('# Exercise 98.4\nanswer = 1 / 0\ncheck("98.4", answer)'),
        new_code_cell('# Exercise 98.5\nanswer = 42'),
        new_code_cell('print("after the exercises")'),
    ]
    reference = make_submission(folder / "reference.ipynb", [
        *cells, new_code_cell('# Exercise 98.6\ncheck("98.6", 42)')])
    submission = make_submission(folder / "student.ipynb", cells)
    return grade_notebook(submission, timeout=120, reference=reference), folder


def test_each_exercise_gets_its_outcome(graded):
    result, _ = graded
    assert result["notebook"] == "student.ipynb" and result["error"] is None
    by_id = {e["id"]: e for e in result["exercises"]}
    assert list(by_id) == ["98.1", "98.2", "98.3", "98.4", "98.5", "98.6"]
    assert by_id["98.1"]["passed"] and "98.1 passed" in by_id["98.1"]["message"]
    assert not by_id["98.2"]["passed"]
    assert "expected double of 21, got 23" in by_id["98.2"]["message"]
    assert "multiply by 2" in by_id["98.2"]["message"]          # the hint reaches the grade
    assert by_id["98.3"]["message"].startswith("not solved yet")
    assert "ZeroDivisionError" in by_id["98.4"]["message"]
    assert "never called check" in by_id["98.5"]["message"]
    assert by_id["98.6"]["message"] == "exercise cell not found in the submission"
    assert sum(e["passed"] for e in result["exercises"]) == 1


def test_table_csv_and_json_formats(graded):
    result, _ = graded
    table = format_grades([result])
    assert "student.ipynb" in table and "FAIL" in table and "1/6 passed" in table
    rows = list(csv.DictReader(io.StringIO(grades_csv([result, result]))))
    assert len(rows) == 12 and rows[0] == {"notebook": "student.ipynb", "exercise": "98.1",
                                           "passed": "true", "message": rows[0]["message"]}
    json.dumps(result)


def test_cli_grade_json_and_csv(graded, capsys):
    _, folder = graded
    out_csv = folder / "grades.csv"
    code = cli_main(["grade", str(folder / "student.ipynb"), "--json", "--csv", str(out_csv),
                     "--reference", str(folder / "reference.ipynb")])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["notebook"] == "student.ipynb"
    assert [e["passed"] for e in report["exercises"]] == [True, False, False, False, False, False]
    assert set(report["exercises"][0]) == {"id", "passed", "message"}
    assert out_csv.read_text().startswith("notebook,exercise,passed,message\n")


def test_time_limit_marks_later_exercises_not_run(tmp_path):
    path = make_submission(tmp_path / "slow.ipynb", [
        new_code_cell('# Exercise 98.1\ncheck("98.1", 42)'),
        new_code_cell("import time\ntime.sleep(60)"),
        new_code_cell('# Exercise 98.2\ncheck("98.2", 42)'),
    ])
    result = grade_notebook(path, timeout=15, reference=path)
    assert "time limit of 15 s" in result["error"]
    first, second = result["exercises"]
    assert first["passed"] and not second["passed"]
    assert second["message"].startswith("not run")
    assert result["seconds"] < 50


def test_bad_paths_give_clear_errors(tmp_path):
    with pytest.raises(SystemExit, match="no notebook at"):
        cli_main(["grade", str(tmp_path / "missing.ipynb")])
    bad = tmp_path / "broken.ipynb"
    bad.write_text("{ not json")
    with pytest.raises(SystemExit, match="is not a readable notebook"):
        cli_main(["grade", str(bad)])
