"""Exercises: the checks notebooks call.

In a notebook: ``from mmcourse.exercises import NotSolved, check``; see :mod:`.core` for writing
checks (``register``, ``fail`` and the ``expect_*`` helpers), :mod:`mmcourse.notebook_format` for
the exercise cells' format and :mod:`mmcourse.tools.student` for how student versions are made.
"""
from __future__ import annotations

from mmcourse.exercises.core import (
    CHECK_MIMETYPE,
    CheckResult,
    ExerciseFailed,
    NotSolved,
    UnknownExercise,
    call,
    check,
    check_bundle,
    describe,
    expect_close,
    expect_equal,
    expect_number,
    expect_tensor,
    fail,
    known_exercises,
    parse_exercise_id,
    register,
)

__all__ = [
    "CHECK_MIMETYPE", "CheckResult", "ExerciseFailed", "NotSolved", "UnknownExercise", "call",
    "check", "check_bundle", "describe", "expect_close", "expect_equal", "expect_number", "expect_tensor", "fail",
    "known_exercises", "parse_exercise_id", "register",
]
