"""Generate the student notebooks (notebooks/) from the solution notebooks (solutions/).

Conventions (the solution notebooks are the single source; never edit notebooks/ by hand; the
names, tags and markers below are defined in :mod:`mmcourse.notebook_format`):

* Notebooks are named ``NN_topic.ipynb``; the first code cell is tagged ``parameters``.
* An exercise cell is a code cell whose first line is ``# Exercise N.M`` or ``# Exercise N.M: title``
  where N is the notebook number (exercise 3.1 lives in ``03_*.ipynb``). It holds solution regions,
  ``check("N.M", ...)`` calls, or both; ``check`` is called nowhere else.
* A solution region is the lines from ``### BEGIN SOLUTION`` to ``### END SOLUTION``. In the
  student version they become ``# YOUR CODE HERE`` and ``raise NotSolved("N.M")`` at the
  indentation of the BEGIN line; lines outside regions (a ``def`` line, its docstring) stay.
  One exercise id has its regions in one cell only.
* A region at the top level of a cell (not inside a ``def``) must have its ``check`` call in the
  same cell: in the student version the cell stops at the stub, so a later cell would fail with a
  NameError instead of NotSolved. Answers checked in a later cell are functions or classes whose
  ``def`` line stays outside the region.
* A cell before the first solution region imports NotSolved
  (``from mmcourse.exercises import NotSolved, check``).
* Written answers in markdown sit between ``<!-- BEGIN SOLUTION -->`` and ``<!-- END SOLUTION -->``
  and become ``*Your answer here.*``.
* Student versions: every exercise cell gets the tag ``raises-exception`` (so Jupyter, nbclient and
  papermill run the rest of the notebook), all outputs and execution counts are cleared, cell ids
  and notebook metadata are kept except volatile keys (papermill, widgets, execution timings).

Errors name the notebook and the cell by its index (counting from 0) and id.
"""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from mmcourse.notebook_format import (CODE_BEGIN, CODE_END, LOOSE_HEADER_RE, MD_MARKER_RE,
                                      MD_REGION_RE, NOTEBOOK_NAME_RE, PARAMETERS_TAG, RAISES_TAG,
                                      exercise_header, parse_exercise_id)
from mmcourse.notebook_format import notebook_number as _number

MD_STUB = "*Your answer here.*"
#: The stub of a written answer per edition language (a notebook's ``metadata.mmcourse.lang``).
MD_STUBS = {"en": MD_STUB, "zh": "*在此写下你的答案。*"}
CHECK_CALL_RE = re.compile(r"(?<![\w.])check\(\s*[\"']([^\"']*)[\"']")
IMPORT_RE = re.compile(r"from\s+mmcourse\.exercises(?:\.core)?\s+import\s+(\([^)]*\)|[^\n]*)")
VOLATILE_NOTEBOOK_KEYS = ("papermill", "widgets", "execution")
VOLATILE_CELL_KEYS = ("execution", "papermill", "ExecuteTime")


class NotebookError(ValueError):
    """A solution notebook breaks the exercise conventions, or notebooks/ has a stray notebook."""


def notebook_number(name: str) -> int:
    """``"solutions/03_fusion.ipynb"`` -> 3; NotebookError if the name is not ``NN_topic.ipynb``."""
    number = _number(name)
    if number is None:
        raise NotebookError(f"{name}: course notebooks are named NN_topic.ipynb, e.g. 03_fusion.ipynb")
    return number


def _where(name: str, index: int, cell: NotebookNode) -> str:
    cell_id = cell.get("id")
    return f"{name}, cell index {index}" + (f" (id {cell_id})" if cell_id else "")


def _code_regions(lines: list[str], where: str) -> list[tuple[int, int, str]]:
    """``(begin line, end line, indentation)`` of each solution region; NotebookError when unmatched."""
    regions, begin = [], None
    for number, line in enumerate(lines):
        marker = line.strip()
        if marker == CODE_BEGIN:
            if begin is not None:
                raise NotebookError(f"{where}: line {number + 1} opens a solution region inside the "
                                    f"one opened on line {begin + 1} (regions cannot nest)")
            begin = number
        elif marker == CODE_END:
            if begin is None:
                raise NotebookError(f"{where}: line {number + 1} has {CODE_END} without a "
                                    f"{CODE_BEGIN} before it")
            regions.append((begin, number, lines[begin][: len(lines[begin]) - len(lines[begin].lstrip())]))
            begin = None
        elif "BEGIN SOLUTION" in line or "END SOLUTION" in line:
            raise NotebookError(f"{where}: line {number + 1} looks like a solution marker; in code "
                                f"cells write exactly '{CODE_BEGIN}' / '{CODE_END}' on their own line")
    if begin is not None:
        raise NotebookError(f"{where}: {CODE_BEGIN} on line {begin + 1} has no {CODE_END}")
    return regions


def _stub_code(lines: list[str], regions: list[tuple[int, int, str]], exercise_id: str) -> str:
    out, position = [], 0
    for begin, end, indent in regions:
        out += lines[position:begin]
        out += [f"{indent}# YOUR CODE HERE", f'{indent}raise NotSolved("{exercise_id}")']
        position = end + 1
    out += lines[position:]
    return "\n".join(out)


def _student_markdown(source: str, where: str, stub: str = MD_STUB) -> str:
    expect = "BEGIN"
    for match in MD_MARKER_RE.finditer(source):
        if match.group(1) != expect:
            problem = ("opens a region inside another" if expect == "END"
                       else "closes a region that was not opened")
            raise NotebookError(f"{where}: {match.group(0)} {problem}")
        expect = "END" if expect == "BEGIN" else "BEGIN"
    if expect == "END":
        raise NotebookError(f"{where}: <!-- BEGIN SOLUTION --> has no <!-- END SOLUTION -->")
    for line in source.splitlines():
        if line.strip() in (CODE_BEGIN, CODE_END):
            raise NotebookError(f"{where}: markdown cells mark written answers with "
                                f"<!-- BEGIN SOLUTION --> / <!-- END SOLUTION -->, not '{line.strip()}'")
    return MD_REGION_RE.sub(stub, source)


def student_version(nb: NotebookNode, name: str) -> NotebookNode:
    """The student version of solution notebook ``nb`` (``name`` is its file name or path, used
    for the notebook number and in errors). Pure: ``nb`` is not changed. NotebookError if ``nb``
    breaks the conventions in this module's docstring."""
    number = notebook_number(name)
    out = copy.deepcopy(nb)
    stub = MD_STUBS.get(out.metadata.get("mmcourse", {}).get("lang", "en"), MD_STUB)
    for key in VOLATILE_NOTEBOOK_KEYS:
        out.metadata.pop(key, None)

    code_cells = [i for i, cell in enumerate(out.cells) if cell.cell_type == "code"]
    if code_cells and PARAMETERS_TAG not in out.cells[code_cells[0]].metadata.get("tags", []):
        raise NotebookError(f"{_where(name, code_cells[0], out.cells[code_cells[0]])}: the first "
                            f"code cell must be tagged 'parameters' (papermill injects settings after it)")

    solution_cell: dict[str, int] = {}   # exercise id -> cell index holding its regions
    top_level_cell: dict[str, int] = {}  # ids whose regions include one at the top level
    imports_not_solved = False
    for index, cell in enumerate(out.cells):
        where = _where(name, index, cell)
        for key in VOLATILE_CELL_KEYS:
            cell.metadata.pop(key, None)
        if cell.cell_type == "markdown":
            cell.source = _student_markdown(cell.source, where, stub)
            continue
        if cell.cell_type != "code":
            continue
        cell.outputs = []
        cell.execution_count = None
        lines = cell.source.split("\n")
        regions = _code_regions(lines, where)
        checked = CHECK_CALL_RE.findall(cell.source)
        header = exercise_header(cell.source)

        if header is None:
            if LOOSE_HEADER_RE.match(lines[0]):
                raise NotebookError(f"{where}: first line {lines[0]!r} should read '# Exercise N.M' "
                                    f"or '# Exercise N.M: title'")
            if regions:
                raise NotebookError(f"{where}: solution markers in a cell whose first line is not "
                                    f"'# Exercise N.M'")
            if checked:
                raise NotebookError(f"{where}: check({checked[0]!r}, ...) outside an exercise cell; "
                                    f"lesson cells must not depend on exercises")
            imports = IMPORT_RE.findall(cell.source)
            if any(re.search(r"\bNotSolved\b|\*", names) for names in imports):
                imports_not_solved = True
            continue

        exercise_id = header[0]
        if parse_exercise_id(exercise_id)[0] != number:
            raise NotebookError(f"{where}: exercise {exercise_id} in notebook {number:02d}; "
                                f"exercises of {Path(name).name} are numbered {number}.M")
        if not regions and not checked:
            raise NotebookError(f"{where}: exercise cell {exercise_id} has neither a solution region "
                                f"nor a check({exercise_id!r}, ...) call")
        for other in checked:
            if other != exercise_id:
                raise NotebookError(f"{where}: the cell of exercise {exercise_id} calls "
                                    f"check({other!r}, ...)")
        if regions:
            if exercise_id in solution_cell:
                raise NotebookError(f"{where}: exercise {exercise_id} already has solution regions in "
                                    f"cell index {solution_cell[exercise_id]}; one cell per exercise id")
            if not imports_not_solved:
                raise NotebookError(f"{where}: no cell before it imports NotSolved, which the student "
                                    f"version raises; add 'from mmcourse.exercises import NotSolved, "
                                    f"check' to a setup cell")
            solution_cell[exercise_id] = index
            if any(indent == "" for _, _, indent in regions):
                top_level_cell[exercise_id] = index
            cell.source = _stub_code(lines, regions, exercise_id)
        elif exercise_id in top_level_cell:
            raise NotebookError(f"{where}: checks exercise {exercise_id}, whose top-level solution "
                                f"region is in cell index {top_level_cell[exercise_id]}; the student "
                                f"version stops at that region, so move this check(...) call there")
        tags = cell.metadata.setdefault("tags", [])
        if RAISES_TAG not in tags:
            tags.append(RAISES_TAG)
    return out


def _read_solution(path: Path) -> NotebookNode:
    """Read a solution notebook, refusing ones whose cells lack ids (nbformat would invent random
    ones, and the student versions would change on every run)."""
    text = path.read_text(encoding="utf-8")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise NotebookError(f"{path}: not a notebook (invalid JSON: {err})") from err
    if raw.get("nbformat") != 4:
        raise NotebookError(f"{path}: save it in notebook format 4 (it is {raw.get('nbformat')})")
    if raw.get("nbformat_minor", 0) >= 5:
        for index, cell in enumerate(raw.get("cells", [])):
            if "id" not in cell:
                raise NotebookError(f"{path}, cell index {index}: the cell has no id; open and save the "
                                    f"notebook in Jupyter (or use nbformat.validator.normalize) to add ids")
    return nbformat.reads(text, as_version=4)


def _render(nb: NotebookNode) -> str:
    """The exact text nbformat.write produces (indent 1, sorted keys, trailing newline)."""
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def _current(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.is_file() else None


def make_student_notebooks(solutions_dir: str | Path, notebooks_dir: str | Path,
                           check: bool = False, only: list[str] | None = None) -> list[str]:
    """Build the student version of every ``solutions_dir/NN_*.ipynb`` into ``notebooks_dir``.

    ``check=False``: write the notebooks that are missing or differ (creating ``notebooks_dir``)
    and return their file names. ``check=True``: write nothing and return the names that are
    missing or differ, plus notes for notebooks in ``notebooks_dir`` with no solution and for
    misnamed solution notebooks. In write mode those two raise NotebookError (nothing is deleted
    or skipped silently). Validation errors raise NotebookError before anything is written.
    ``only``: file names (``"04_alignment_and_concat.ipynb"``) to build; the others are neither
    read nor written.

    Executing a student notebook: nbclient and JupyterLab run every cell, since exercise cells are
    tagged ``raises-exception``. ``papermill.execute_notebook`` also runs every cell but then
    raises PapermillExecutionError, because it reports any error output whatever the tags; the
    course runner treats NotSolved errors in exercise cells as expected.
    """
    solutions_dir, notebooks_dir = Path(solutions_dir), Path(notebooks_dir)
    misnamed = sorted(p.name for p in solutions_dir.glob("*.ipynb") if not NOTEBOOK_NAME_RE.match(p.name))
    wanted = {}
    for path in sorted(solutions_dir.glob("*.ipynb")):
        if only is not None and path.name not in only:
            continue
        if NOTEBOOK_NAME_RE.match(path.name):
            wanted[path.name] = _render(student_version(_read_solution(path), str(path)))
    orphans = [] if only is not None else sorted(
        p.name for p in notebooks_dir.glob("*.ipynb") if NOTEBOOK_NAME_RE.match(p.name) and p.name not in wanted)

    if check:
        stale = [name for name, text in wanted.items() if _current(notebooks_dir / name) != text]
        stale += [f"{name} (no solutions/{name}: delete it or add the solution)" for name in orphans]
        stale += [f"solutions/{name} (not named NN_topic.ipynb, so it has no student version)"
                  for name in misnamed]
        return stale

    if orphans:
        raise NotebookError(f"{notebooks_dir} has {', '.join(orphans)} with no solution in "
                            f"{solutions_dir}; delete it or add the solution notebook")
    if misnamed:
        raise NotebookError(f"{solutions_dir} has {', '.join(misnamed)}; course notebooks are named "
                            f"NN_topic.ipynb (rename it, or move it out of {solutions_dir})")
    notebooks_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in wanted.items():
        target = notebooks_dir / name
        if _current(target) != text:
            with open(target, "w", encoding="utf-8", newline="\n") as fh:
                fh.write(text)
            written.append(name)
    return written
