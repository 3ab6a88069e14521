"""mmcourse.notebook_format: one definition of the notebook format, torch-free."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from mmcourse import notebook_format as fmt

REPO = Path(__file__).resolve().parents[1]


def _code(source, tags=None):
    return {"cell_type": "code", "source": source, "metadata": {"tags": tags or []}}


def test_exercise_header_is_strict():
    assert fmt.exercise_header("# Exercise 2.10: the collate function\nx = 1") == (
        "2.10", "the collate function")
    assert fmt.exercise_header("# Exercise 3.1\nx = 1") == ("3.1", None)
    for loose in ("#Exercise 3.1", "## Exercise 3.1", "# exercise 3.1", "# Exercise 3.1 -- x",
                  "x = 1\n# Exercise 2.1", "  # Exercise 3.1"):
        assert fmt.exercise_header(loose) is None, loose
    assert fmt.LOOSE_HEADER_RE.match("## exercise 3.1 -")  # reported by the student generator


def test_exercise_ids_read_code_cells_of_nbformat_or_raw_json():
    cells = [_code("# Exercise 1.1\nx = 1"), {"cell_type": "markdown", "source": "# Exercise 1.9"},
             _code(["# Exercise 1.2: list source\n", "y = 2"]), _code("# Exercise 1.1\ncheck()")]
    assert fmt.exercise_ids(cells) == ["1.1", "1.2"]
    assert fmt.exercise_id(cells[1]) is None and fmt.exercise_id(cells[2]) == "1.2"
    assert fmt.tags(_code("x", [fmt.RAISES_TAG])) == ["raises-exception"]
    assert fmt.tags({"cell_type": "code", "source": "", "metadata": {}}) == []


def test_ids_names_and_mimetypes():
    assert fmt.parse_exercise_id("3.12") == (3, 12)
    with pytest.raises(ValueError, match="exercise ids look like '3.1'"):
        fmt.parse_exercise_id("3")
    assert fmt.notebook_number("solutions/03_audio.ipynb") == 3
    assert fmt.notebook_number("audio.ipynb") is None
    assert fmt.CHECK_MIMETYPE == "application/vnd.mmcourse.check+json"
    assert fmt.METRICS_MIMETYPE == "application/vnd.mmcourse.metrics+json"
    assert all(m.startswith(fmt.MIMETYPE_PREFIX) for m in (fmt.CHECK_MIMETYPE, fmt.METRICS_MIMETYPE))


def test_the_course_notebooks_follow_the_format():
    for path in sorted((REPO / "solutions").glob(fmt.NOTEBOOK_GLOB)):
        nb = json.loads(path.read_text(encoding="utf-8"))
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert fmt.PARAMETERS_TAG in fmt.tags(code[0]), path.name
        number = fmt.notebook_number(path.name)
        assert all(fmt.parse_exercise_id(i)[0] == number for i in fmt.exercise_ids(nb["cells"]))


def test_the_module_imports_neither_torch_nor_the_rest_of_mmcourse():
    tree = ast.parse(Path(fmt.__file__).read_text(encoding="utf-8"))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= {"__future__", "re", "typing"}, imported
