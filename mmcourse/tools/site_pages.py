"""What a notebook's page on the course website shows: the answers folded, or no answers at all.

Two versions of a solution notebook, both plain notebook dicts (as ``json`` reads them) that
Jupyter Book renders without executing anything:

* :func:`folded_notebook` (``mmcourse site``, the default): the solution notebook with each
  answer behind a native ``<details>``/``<summary>`` toggle, "Show solution N.M" (no JavaScript;
  the summary is a keyboard control: Tab to it, Enter or Space opens it). An exercise code cell is
  split at its solution markers into consecutive cells: the lines outside the regions stay in the
  open (the ``# Exercise N.M`` header, a ``def`` line and its docstring, the ``check(...)`` call),
  each region becomes a cell tagged ``hide-input`` (MyST-NB renders it folded), and the cell's
  outputs are folded too, behind "Show the result of exercise N.M": a check's verdict quotes the
  expected values (exercise 4.4's gain, 0.1's missing fractions), so every exercise cell's outputs
  count as part of the answer. A written answer (``<!-- BEGIN SOLUTION -->`` ...) becomes a
  sphinx-design ``dropdown``, which is a ``<details>`` element as well. Lesson cells are unchanged.
* :func:`student_notebook` (``mmcourse site --no-solutions``): the student version
  (:func:`mmcourse.tools.student.student_version`, exactly what ``notebooks/`` holds) with the
  committed outputs of the lesson cells put back; exercise cells keep no output (the verdict
  would quote the answer). No line of a solution region reaches the page.

Both drop the course's machine-readable output types (:data:`MIMETYPE_PREFIX`) where an output
also has a readable form.
"""
from __future__ import annotations

import copy
import json
import re

import nbformat

from mmcourse.notebook_format import (CODE_BEGIN, CODE_END, MD_REGION_RE, MIMETYPE_PREFIX,
                                      exercise_id)
from mmcourse.tools.student import student_version

MD_REGION_BODY_RE = re.compile(r"<!--\s*BEGIN SOLUTION\s*-->(.*?)<!--\s*END SOLUTION\s*-->",
                               re.DOTALL)
MD_EXERCISE_RE = re.compile(r"(?:Exercise|练习) (\d+\.\d+)")
#: The fold labels per edition language (a notebook's ``metadata.mmcourse.lang``).
LABELS = {
    "en": {"show": "Show {what}", "hide": "Hide {what}", "solution": "solution {id}",
           "solution_typed": "solution {id} ({{type}})", "result": "the result of exercise {id}",
           "dropdown": "Show solution {id}", "dropdown_plain": "Show solution"},
    "zh": {"show": "显示{what}", "hide": "隐藏{what}", "solution": "参考答案 {id}",
           "solution_typed": "参考答案 {id}（{{type}}）", "result": "练习 {id} 的结果",
           "dropdown": "显示参考答案 {id}", "dropdown_plain": "显示参考答案"},
}


def _labels(nb: dict) -> dict:
    return LABELS.get(nb.get("metadata", {}).get("mmcourse", {}).get("lang", "en"), LABELS["en"])


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def drop_course_mimetypes(nb: dict) -> dict:
    """Remove ``application/vnd.mmcourse.*`` from outputs that also have another form (in place);
    the page shows that form (text/plain). Returns ``nb``."""
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []):
            data = output.get("data")
            if not data:
                continue
            ours = [k for k in data if k.startswith(MIMETYPE_PREFIX)]
            if ours and len(ours) < len(data):
                for key in ours:
                    del data[key]
    return nb


def solution_pieces(source: str) -> list[tuple[bool, str]]:
    """Split a code cell's source at its solution markers: ``[(is_solution, text), ...]`` in
    order, without the marker lines; pieces left blank are dropped, and blank lines at the start
    and end of each piece are trimmed. A cell without markers is one piece ``(False, source)``."""
    pieces: list[tuple[bool, list[str]]] = [(False, [])]
    for line in source.split("\n"):
        marker = line.strip()
        if marker in (CODE_BEGIN, CODE_END):
            pieces.append((marker == CODE_BEGIN, []))
        else:
            pieces[-1][1].append(line)
    out = []
    for inside, lines in pieces:
        text = "\n".join(lines).strip("\n")
        if text.strip():
            out.append((inside, text))
    return out


def _piece_cell(cell: dict, number: int, text: str, tags: list[str], prompt: str | None,
                labels: dict) -> dict:
    piece = {"cell_type": "code", "execution_count": None, "metadata": {"tags": tags},
             "outputs": [], "source": text}
    if "id" in cell:
        piece["id"] = f"{cell['id']}-{number}"
    if prompt:
        piece["metadata"]["mystnb"] = {"code_prompt_show": labels["show"].format(what=prompt),
                                       "code_prompt_hide": labels["hide"].format(what=prompt)}
    return piece


def _fold_code_cell(cell: dict, ident: str, labels: dict) -> list[dict]:
    pieces = solution_pieces(_source(cell))
    cells = []
    for number, (inside, text) in enumerate(pieces):
        cells.append(_piece_cell(cell, number, text, ["hide-input"] if inside else [],
                                 labels["solution"].format(id=ident) if inside else None, labels))
    if cell.get("outputs"):
        last = cells[-1]
        last["outputs"] = copy.deepcopy(cell["outputs"])
        last["execution_count"] = cell.get("execution_count")
        last["metadata"]["tags"].append("hide-output")
        # a region that ends the cell gets two toggles; MyST-NB puts "source" / "output" in {type}
        prompt = labels["solution_typed"].format(id=ident) if "mystnb" in last["metadata"] else \
            labels["result"].format(id=ident)
        last["metadata"]["mystnb"] = {"code_prompt_show": labels["show"].format(what=prompt),
                                      "code_prompt_hide": labels["hide"].format(what=prompt)}
    return cells


def _dropdown(label: str, body: str) -> str:
    longest = max((len(run) for run in re.findall(r":{3,}", body)), default=2)
    fence = ":" * (longest + 1)
    return f"\n\n{fence}{{dropdown}} {label}\n{body.strip()}\n{fence}\n\n"


def _fold_markdown(source: str, labels: dict = LABELS["en"]) -> str:
    def replace(match: re.Match) -> str:
        before = MD_EXERCISE_RE.findall(source[: match.start()])
        label = labels["dropdown"].format(id=before[-1]) if before else labels["dropdown_plain"]
        return _dropdown(label, match.group(1))

    return MD_REGION_BODY_RE.sub(replace, source)


def folded_notebook(nb: dict) -> dict:
    """The solution notebook ``nb`` with every answer folded (see the module docstring; the labels
    in the notebook's edition language); ``nb`` is not changed."""
    out = drop_course_mimetypes(copy.deepcopy(nb))
    labels = _labels(nb)
    cells = []
    for cell in out.get("cells", []):
        ident = exercise_id(cell)
        if ident and (CODE_BEGIN in _source(cell) or cell.get("outputs")):
            cells += _fold_code_cell(cell, ident, labels)
        elif cell.get("cell_type") == "markdown" and MD_REGION_RE.search(_source(cell)):
            cells.append(dict(cell, source=_fold_markdown(_source(cell), labels)))
        else:
            cells.append(cell)
    out["cells"] = cells
    return out


def student_notebook(nb: dict, name: str) -> dict:
    """The student version of solution notebook ``nb`` (file name ``name``) with the committed
    outputs of its lesson cells; exercise cells have none. Raises
    :class:`mmcourse.tools.student.NotebookError` when ``nb`` breaks the exercise conventions."""
    student = student_version(nbformat.reads(json.dumps(nb), as_version=4), name)
    solved_cells = drop_course_mimetypes(copy.deepcopy(nb))["cells"]
    for solved, cell in zip(solved_cells, student.cells):  # student_version keeps the cells 1:1
        if cell.cell_type == "code" and exercise_id(solved) is None:
            cell.outputs = nbformat.from_dict(solved.get("outputs", []))
            cell.execution_count = solved.get("execution_count")
    return student
