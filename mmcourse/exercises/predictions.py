"""Checks of *predict, then measure* exercises whose prediction is a few fractions.

Such a check cannot know the answer (the measurement comes after it), so it only validates the
form of the prediction: a dict with exactly the expected keys, each value a fraction in [0, 1].
:func:`expect_fractions` does that and fails with a message that says what was expected and what
was given (the checks of exercises 0.4, 1.5, 2.5, 3.6, 4.5, 5.5, 6.5 and 7.5 use it);
:func:`recorded` writes the message of a prediction that passed.
"""
from __future__ import annotations

from typing import Any, Iterable

from mmcourse.exercises.core import describe, expect_number, fail


def expect_fractions(name: str, value: Any, keys: Iterable, what: str) -> dict:
    """Fail unless ``value`` is a dict with exactly ``keys``, each mapped to a fraction in [0, 1];
    return it as ``{key: float}`` in the order of ``keys``. ``name`` is the variable's name in
    messages, ``what`` says what each number is (e.g. "the accuracy on that quality level")."""
    __tracebackhide__ = True
    keys = list(keys)
    example = "{" + ", ".join(f"{k!r}: ..." for k in keys) + "}"
    if not isinstance(value, dict):
        fail(f"{name} must be a dict {example}, one entry per key, but it is "
             f"{describe(value)} ({type(value).__name__})")
    unknown = [k for k in value if k not in keys]
    if unknown:
        fail(f"{name} has the key {unknown[0]!r}, which is not one of {keys}; write {example}")
    missing = [k for k in keys if k not in value]
    if missing:
        fail(f"{name} has no entry for {missing}: give a prediction for every key of {example}")
    out = {}
    for key in keys:
        number = expect_number(f"{name}[{key!r}]", value[key], f"a number ({what})")
        if number != number:
            fail(f"{name}[{key!r}] is NaN; give a number between 0 and 1 ({what})")
        if not 0 <= number <= 1:
            hint = (f"; write percentages as fractions ({number:g}% is {number / 100:g})"
                    if 1 < number <= 100 else "")
            fail(f"{name}[{key!r}] is {number:g}, but {what} is a fraction between 0 and 1{hint}")
        out[key] = number
    return out


def recorded(values: dict, then: str) -> str:
    """The pass message of a recorded prediction: ``"recorded (key 0.80, ...); " + then``, where
    ``values`` maps each key to a fraction and ``then`` says what measures it next ("section 5
    measures them")."""
    listed = ", ".join(f"{key} {value:.2f}" for key, value in values.items())
    return f"recorded ({listed}); {then}"
