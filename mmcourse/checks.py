"""Argument checks shared by the library, each with an error that names the argument, says
what was expected and shows what was given.

    check_int(epochs, "epochs")                     # ValueError: epochs must be a positive
                                                    # integer, got 0
    check_int(size, "size", allow_none=True, unit="pixels")
    texts = check_texts(texts)                      # a non-empty list of str, or a clear error
    describe(value)             # "tensor of shape (2, 3) and dtype torch.float32"
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch


def check_int(value: Any, name: str, minimum: int = 1, *, allow_none: bool = False,
              unit: str | None = None) -> Any:
    """Return ``value`` if it is an integer (a Python ``int`` or a NumPy integer, not a bool) of
    at least ``minimum`` (or None when ``allow_none``); otherwise raise a ValueError such as
    ``"size must be a positive integer (pixels) or None, got 0"``.

    ``name`` is how the error calls the argument; ``unit`` (optional) says what the integer
    counts, or why the minimum is what it is.
    """
    if value is None and allow_none:
        return value
    if (isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
            and value >= minimum):
        return value
    kind = {1: "a positive integer", 0: "a non-negative integer"}.get(
        minimum, f"an integer >= {minimum}")
    expected = kind + (f" ({unit})" if unit else "") + (" or None" if allow_none else "")
    raise ValueError(f"{name} must be {expected}, got {value!r}")


def check_texts(texts: Any, what: str = "texts") -> list[str]:
    """``texts`` as a non-empty list of str, or a TypeError/ValueError saying what is wrong (a
    single str instead of a list, something not iterable, an empty list, a non-str item)."""
    if isinstance(texts, str):
        raise TypeError(f"{what} must be a list of strings, got a single str {texts[:40]!r}; "
                        f"wrap it in a list: [text]")
    if not isinstance(texts, Iterable):
        raise TypeError(f"{what} must be a list of strings, got {type(texts).__name__}")
    texts = list(texts)
    if not texts:
        raise ValueError(f"{what} is empty: expected at least one string")
    bad = [(i, type(t).__name__) for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        i, kind = bad[0]
        raise TypeError(f"{what} must all be str, but item {i} is a {kind} "
                        f"({len(bad)} non-str item(s) in all); a missing text is the empty string ''")
    return texts


def describe(value: Any) -> str:
    """A short description of a value for error messages: its type, and shape/dtype if it has one."""
    if isinstance(value, torch.Tensor):
        return f"tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    if isinstance(value, np.ndarray):
        return f"numpy array of shape {value.shape} and dtype {value.dtype}"
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return f"str {text!r}"
    return type(value).__name__
