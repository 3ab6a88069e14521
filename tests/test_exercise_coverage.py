"""A cheap guard: every registered exercise check has tests.

Each exercise N.M registered in ``mmcourse/exercises/nbNN.py`` must be named (as the string
``"N.M"``) in some ``tests/test_exercises_nb*.py`` file that also tests a rejection
(``ExerciseFailed``): the convention is that such a file feeds the check the solution and at least
one plausible wrong answer (CONTRIBUTING.md, "Exercises").
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from mmcourse.exercises import core, known_exercises

TESTS = Path(__file__).resolve().parent


def _course_exercises() -> list[str]:
    """Registered ids whose check lives in ``mmcourse.exercises.nbNN`` (tests register their own
    throwaway ids, such as 97.1 in test_exercises.py, which do not count)."""
    return [i for i in known_exercises()
            if re.fullmatch(r"mmcourse\.exercises\.nb\d\d", core._REGISTRY[i].fn.__module__)]


def _mentioned_ids(text: str) -> set[str]:
    """Exercise ids written as string literals in ``text``: ``"4.2"``, ``'4.2'``, and also the
    id at the start of a test id or f-string (``"4.2-..."``)."""
    return set(re.findall(r"""["'](\d+\.\d+)(?=["'\-: ])""", text))


def _exercise_test_files() -> dict[Path, str]:
    return {path: path.read_text(encoding="utf-8")
            for path in sorted(TESTS.glob("test_exercises_nb*.py"))}


def test_the_id_finder_reads_string_literals_only():
    text = 'check("4.2", f)\nWRONG = [(\'10.3\', g, "msg")]\nx = 4.25 + 1.5\n"see 3.1 above"'
    assert _mentioned_ids(text) == {"4.2", "10.3"}


def test_every_registered_exercise_is_named_in_an_exercise_test_file():
    ids = _course_exercises()
    assert ids, "no exercise checks are registered"
    files = _exercise_test_files()
    covered: set[str] = set()
    for path, text in files.items():
        if "ExerciseFailed" in text:  # a file that only passes solutions does not count
            covered |= _mentioned_ids(text)
    missing = [i for i in ids if i not in covered]
    if missing:
        where = ", ".join(f'{i} -> tests/test_exercises_nb{int(i.split(".")[0]):02d}.py'
                          for i in missing)
        pytest.fail(f"exercise checks without tests: {where}. Add a test that passes the "
                    f"solution to check(\"N.M\", ...) and feeds it at least one plausible wrong "
                    f"answer, asserting ExerciseFailed and its message.")


def test_every_notebook_with_checks_has_its_own_exercise_test_file():
    notebooks = sorted({int(i.split(".")[0]) for i in _course_exercises()})
    missing = [f"tests/test_exercises_nb{n:02d}.py" for n in notebooks
               if not (TESTS / f"test_exercises_nb{n:02d}.py").exists()]
    assert not missing, f"notebooks with exercise checks but no test file: {missing}"
