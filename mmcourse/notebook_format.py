"""The course's notebook format, defined once: names, tags, exercise cells, solution markers and
the mimetypes of the results a notebook displays.

Torch-free and nbformat-free: it reads cells as the dicts ``nbformat`` (or ``json``) gives, so the
exercise checks, the tools (runner, grader, student generator, site) and the tests all share it.

* A course notebook is named ``NN_topic.ipynb``; its first code cell is tagged ``parameters``.
* An exercise cell is a code cell whose first line is exactly ``# Exercise N.M`` or
  ``# Exercise N.M: title`` (N the notebook's number). A first line that merely looks like one
  (``## exercise 3.1 -``) is an error the student generator reports.
* Solution regions: the lines ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` in code cells,
  ``<!-- BEGIN SOLUTION -->`` ... ``<!-- END SOLUTION -->`` in markdown cells.
* Tags: ``raises-exception`` on every exercise cell of a student notebook (Jupyter and nbclient run
  on past its error), ``nbval-ignore-output`` on cells whose output truly varies.
* Displayed results: a check's verdict under :data:`CHECK_MIMETYPE`, a notebook's key numbers
  under :data:`METRICS_MIMETYPE`.
"""
from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
NOTEBOOK_NAME_RE = re.compile(r"^(\d\d)_[^/\\]+\.ipynb$")

PARAMETERS_TAG = "parameters"
RAISES_TAG = "raises-exception"
IGNORE_OUTPUT_TAG = "nbval-ignore-output"

EXERCISE_ID_RE = re.compile(r"^(\d+)\.(\d+)$")
EXERCISE_HEADER_RE = re.compile(r"^# Exercise (\d+\.\d+)(?::\s*(\S.*?))?\s*$")
#: A first line that looks like an exercise header but is not one (reported, never guessed at).
LOOSE_HEADER_RE = re.compile(r"^\s*#+\s*exercise\s*\d", re.IGNORECASE)

CODE_BEGIN = "### BEGIN SOLUTION"
CODE_END = "### END SOLUTION"
MD_MARKER_RE = re.compile(r"<!--\s*(BEGIN|END) SOLUTION\s*-->")
MD_REGION_RE = re.compile(r"<!--\s*BEGIN SOLUTION\s*-->.*?<!--\s*END SOLUTION\s*-->", re.DOTALL)

MIMETYPE_PREFIX = "application/vnd.mmcourse."
CHECK_MIMETYPE = MIMETYPE_PREFIX + "check+json"
METRICS_MIMETYPE = MIMETYPE_PREFIX + "metrics+json"


def parse_exercise_id(exercise_id: str) -> tuple[int, int]:
    """``"3.12"`` -> ``(3, 12)``; raises ValueError for anything that is not ``N.M``."""
    match = EXERCISE_ID_RE.match(str(exercise_id))
    if not match:
        raise ValueError(f"exercise ids look like '3.1' (notebook number . exercise number), "
                         f"not {exercise_id!r}")
    return int(match.group(1)), int(match.group(2))


def notebook_number(name: str) -> int | None:
    """``"solutions/03_audio.ipynb"`` -> 3; None when the file name is not ``NN_topic.ipynb``."""
    match = NOTEBOOK_NAME_RE.match(re.split(r"[/\\]", str(name))[-1])
    return int(match.group(1)) if match else None


def _source(cell: Mapping[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source  # raw JSON keeps lines


def exercise_header(source: str) -> tuple[str, str | None] | None:
    """``(id, title or None)`` when the first line of ``source`` is ``# Exercise N.M[: title]``,
    else None."""
    match = EXERCISE_HEADER_RE.match(source.split("\n", 1)[0])
    return (match.group(1), match.group(2)) if match else None


def exercise_id(cell: Mapping[str, Any]) -> str | None:
    """The id ``"N.M"`` of an exercise cell (a code cell with the exercise header), else None."""
    if cell.get("cell_type") != "code":
        return None
    header = exercise_header(_source(cell))
    return header[0] if header else None


def exercise_ids(cells: Iterable[Mapping[str, Any]]) -> list[str]:
    """The ids of the exercise cells among ``cells`` (a notebook's ``cells``), each once, in order."""
    ids: list[str] = []
    for cell in cells:
        found = exercise_id(cell)
        if found and found not in ids:
            ids.append(found)
    return ids


def tags(cell: Mapping[str, Any]) -> list[str]:
    """The tags of a cell (an empty list when it has none)."""
    return list(cell.get("metadata", {}).get("tags", []))
