"""Inside a check: run the learner's function and fail if it called the library's own version.

An exercise that asks the learner to write a mechanism the library already has (notebook 09's
symmetric InfoNCE, notebook 10's labels and forward pass) cannot be checked by comparing with the
library alone: ``def my_loss(a, b, t): return clip_loss(a, b, t)`` would pass. Looking for the name
in the learner's source is fragile (an alias, ``alignment.clip_loss``, a ``functools.partial``, a
helper that calls it). :func:`call_without` watches *execution* instead: while the learner's
function runs, a profile hook (``sys.setprofile``) sees every Python function call, and the check
fails if the code object of one of the library functions is entered, whatever name reached it.
The previous profile hook (a profiler, a debugger) is restored afterwards.

    got = call_without(my_clip_loss, {clip_loss: "mmcourse.alignment.clip_loss"}, a, b, t)

The hook only sees Python functions; the library functions watched here are all Python.
"""
from __future__ import annotations

import sys
from typing import Any, Callable, Mapping

from mmcourse.exercises.core import ExerciseFailed, call, fail


def _code_of(fn: Any):
    fn = getattr(fn, "__func__", fn)  # a bound method -> its function
    code = getattr(fn, "__code__", None)
    if code is None:
        raise TypeError(f"cannot watch {fn!r}: it is not a Python function")
    return code


def call_without(fn: Callable[..., Any], forbidden: Mapping[Any, str], *args: Any,
                 **kwargs: Any) -> Any:
    """``call(fn, *args, **kwargs)``, failing if ``fn`` ran any of the functions in ``forbidden``.

    ``forbidden`` maps each library function (or method) to the name the failure message uses.
    """
    __tracebackhide__ = True
    codes = {_code_of(f): name for f, name in forbidden.items()}
    seen: list[str] = []

    def hook(frame, event, arg):
        if event == "call" and frame.f_code in codes and not seen:
            seen.append(codes[frame.f_code])

    def refuse() -> None:
        name = getattr(fn, "__name__", "your function")
        fail(f"{name} calls the library's {seen[0]}; this exercise asks you to write it yourself "
             f"(the check compares your result with the library's afterwards). Replace the call "
             f"with your own lines.")

    previous = sys.getprofile()
    sys.setprofile(hook)
    try:
        result = call(fn, *args, **kwargs)
    except ExerciseFailed:
        if seen:  # the library call explains the failure better than its consequence does
            refuse()
        raise
    finally:
        sys.setprofile(previous)
    if seen:
        refuse()
    return result
