"""Recording a *predict, then measure* answer: a dict of predicted accuracies, one per setting.

The check of a *predict, then measure* exercise (4.5) cannot know whether a prediction is right
(the notebook measures that afterwards); it only makes sure the prediction is well formed, so that
the notebook's comparison cell can put every predicted number next to its measurement.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

from mmcourse.exercises.core import describe, expect_number, fail


def recorded_accuracies(answer: Any, keys: Sequence[str], name: str = "my_prediction") -> dict:
    """Fail unless ``answer`` is a dict with exactly the keys ``keys``, each an accuracy given as
    a fraction in [0, 1] (an int, a float or a one-element NumPy / torch value); return
    ``{key: float}`` in the order of ``keys``. Messages say what was expected and what was given."""
    __tracebackhide__ = True
    keys = list(keys)
    if not isinstance(answer, dict):
        fail(f"{name} must be a dict {{setting: predicted accuracy}} with the keys {keys}, got "
             f"{describe(answer)} ({type(answer).__name__})")
    missing = [k for k in keys if k not in answer]
    if missing:
        fail(f"{name} has no prediction for {missing}: give a number for every one of {keys} "
             f"before you measure")
    unknown = [k for k in answer if k not in keys]
    if unknown:
        fail(f"{name} has the key {unknown[0]!r}, which is not one of the settings {keys}")
    got = {}
    for key in keys:
        value = expect_number(f"{name}[{key!r}]", answer[key],
                              "a number (the predicted accuracy, a fraction between 0 and 1)")
        if math.isnan(value):
            fail(f"{name}[{key!r}] is NaN; give a number between 0 and 1")
        if 1 < value <= 100:
            fail(f"{name}[{key!r}] is {value:g}: accuracies here are fractions (0.85 for 85%), "
                 f"not percentages; divide by 100")
        if not 0 <= value <= 1:
            fail(f"{name}[{key!r}] is {value:g}, but an accuracy lies between 0 and 1")
        got[key] = float(value)
    return got


def recorded_message(got: dict, where: str) -> str:
    """The details line of a passed prediction check: what was recorded and where it is measured."""
    listed = ", ".join(f"{key} {value:.2f}" for key, value in got.items())
    return f"recorded ({listed}); {where} measures them"
