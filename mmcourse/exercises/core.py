"""Exercise checks: ``check("0.2", answer)`` runs the check registered for exercise 0.2.

How the pieces fit:

* A check is a function ``fn(answer, **kwargs)`` registered with ``@register("0.2", "title")``
  in the module ``mmcourse/exercises/nb00.py`` (exercise N.M lives in ``nbNN.py``, imported the
  first time one of its exercises is checked). It returns None, or a short string of details, when
  the answer is right, and calls ``fail("...")`` (which raises :class:`ExerciseFailed`) when not.
* Helpers for check authors: :func:`call` runs the learner's function and turns an error in it
  into a readable :class:`ExerciseFailed`; :func:`expect_tensor`, :func:`expect_close` and
  :func:`expect_equal` compare values and fail with messages such as
  ``normalise(x) returned shape (3, 32) but (32, 3) was expected``.
* In student notebooks the solution is replaced by ``raise NotSolved("0.2")``; :class:`NotSolved`
  passes through ``check`` unchanged so the learner sees which exercise is still open.
* Inside IPython every check also displays a bundle of mimetype :data:`CHECK_MIMETYPE`,
  ``{"id": "0.2", "passed": true, "message": "..."}``, which is what a grader reads from an
  executed notebook (an exercise counts as passed only if such a bundle says so).
"""
from __future__ import annotations

import importlib
import math
import os
import pkgutil
import re
import sys
from dataclasses import dataclass
from typing import Any, Callable, NoReturn

from mmcourse.exercises import i18n
from mmcourse.notebook_format import CHECK_MIMETYPE, EXERCISE_ID_RE, parse_exercise_id


class NotSolved(NotImplementedError):
    """Raised by the stub the student notebooks put where a solution goes: ``raise NotSolved("0.1")``."""

    def __init__(self, exercise_id: str):
        exercise_id = str(exercise_id)
        if EXERCISE_ID_RE.match(exercise_id):
            self.exercise_id: str | None = exercise_id
            message = i18n.frame(
                "not_solved", i18n.language(),
                f'Exercise {exercise_id} is not solved yet: replace the two lines '
                f'"# YOUR CODE HERE" / "raise NotSolved(...)" in its cell with your answer '
                f'(the hints are in the text above the cell).', id=exercise_id)
        else:
            # Re-created from a finished message, e.g. by a DataLoader worker re-raising it.
            found = re.search(r"(?:Exercise|练习) (\d+\.\d+) (?:is not solved|尚未完成)", exercise_id)
            self.exercise_id = found.group(1) if found else None
            message = exercise_id
        super().__init__(message)

    def __reduce__(self):
        return (type(self), (self.exercise_id or str(self),))


class ExerciseFailed(AssertionError):
    """An answer that does not pass its check: what was expected, what was given, and a hint.

    Check functions raise it through :func:`fail`; :func:`check` fills in ``exercise_id`` and the
    exercise's default hint.
    """

    def __init__(self, message: str, exercise_id: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.exercise_id = exercise_id
        self.hint = hint

    def __str__(self) -> str:
        lang = i18n.language()
        text = (i18n.frame("failed", lang, f"Exercise {self.exercise_id} failed: {self.message}",
                           id=self.exercise_id, message=self.message)
                if self.exercise_id else self.message)
        if self.hint:
            text += "\n" + i18n.frame("hint", lang, f"Hint: {self.hint}", hint=self.hint)
        return text

    def __reduce__(self):
        return (type(self), (self.message, self.exercise_id, self.hint))


class UnknownExercise(LookupError):
    """``check`` was called with an id that no ``nbNN`` module registers (a course bug, not yours)."""


@dataclass
class CheckResult:
    """What :func:`check` returns on success (failures raise instead)."""

    exercise_id: str
    passed: bool
    message: str

    def _ipython_display_(self) -> None:
        # check() has already shown its line; do not repeat it as the cell's Out[] value.
        pass


@dataclass
class _Check:
    exercise_id: str
    title: str
    fn: Callable[..., Any]
    hint: str | None = None


_REGISTRY: dict[str, _Check] = {}


def register(exercise_id: str, title: str, hint: str | None = None) -> Callable:
    """Decorator: register ``fn(answer, **kwargs)`` as the check of ``exercise_id``.

    ``title`` is shown when the exercise passes; ``hint`` is added to failures that give none.
    Registering the same id again from the same function (a re-run cell, a reloaded module)
    replaces it; registering it from a different function is an error (a copy-pasted id).
    """
    parse_exercise_id(exercise_id)

    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        old = _REGISTRY.get(exercise_id)
        if old is not None and (old.fn.__module__, old.fn.__qualname__) != (fn.__module__, fn.__qualname__):
            raise ValueError(f"exercise {exercise_id} already has a check "
                             f"({old.fn.__module__}.{old.fn.__qualname__}); ids must be unique")
        _REGISTRY[exercise_id] = _Check(exercise_id, title, fn, hint)
        return fn

    return decorator


def fail(message: str, hint: str | None = None) -> NoReturn:
    """Inside a check: stop with an :class:`ExerciseFailed` carrying ``message`` (and ``hint``)."""
    __tracebackhide__ = True
    raise ExerciseFailed(message, hint=hint)


def known_exercises() -> list[str]:
    """Ids of all registered checks, after importing every ``mmcourse.exercises.nbNN`` module."""
    package = importlib.import_module("mmcourse.exercises")
    for module in pkgutil.iter_modules(package.__path__):
        if re.fullmatch(r"nb\d\d", module.name):
            importlib.import_module(f"mmcourse.exercises.{module.name}")
    return sorted(_REGISTRY, key=parse_exercise_id)


def _lookup(exercise_id: str) -> _Check:
    """The registered check of ``exercise_id``, importing its ``nbNN`` module when needed."""
    notebook, _ = parse_exercise_id(exercise_id)
    if exercise_id not in _REGISTRY:
        module = f"mmcourse.exercises.nb{notebook:02d}"
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:  # the module exists but something it imports does not
                raise
    if exercise_id not in _REGISTRY:
        known = ", ".join(known_exercises()) or "none"
        raise UnknownExercise(f"no check is registered for exercise {exercise_id}; known: {known}")
    return _REGISTRY[exercise_id]


def check_bundle(exercise_id: str, passed: bool, message: str, text: str | None = None) -> dict:
    """The display bundle a check shows in IPython: ``{CHECK_MIMETYPE: {...}, "text/plain": text}``.

    ``text`` is the visible line (default ``message``). Deterministic: no times, no paths.
    """
    return {CHECK_MIMETYPE: {"id": exercise_id, "passed": bool(passed), "message": message},
            "text/plain": message if text is None else text}


def _in_ipython() -> bool:
    """True inside a running IPython shell or Jupyter kernel (without importing IPython)."""
    ipython = sys.modules.get("IPython")
    get = getattr(ipython, "get_ipython", None)
    return get is not None and get() is not None


def _show(bundle: dict) -> None:
    from IPython.display import display

    display(bundle, raw=True)


def check(exercise_id: str, answer: Any, **kwargs: Any) -> CheckResult:
    """Check ``answer`` for exercise ``exercise_id`` (e.g. ``"0.2"``); ``kwargs`` go to the check.

    Success: shows ``Exercise 0.2 passed: <title>`` (printed outside IPython; inside IPython the
    same line is the text of the display bundle) and returns a :class:`CheckResult`.
    Failure: raises :class:`ExerciseFailed`; errors raised by the learner's code become an
    ExerciseFailed chained to them. :class:`NotSolved` passes through unchanged.
    """
    __tracebackhide__ = True
    exercise_id = str(exercise_id)
    registered = _lookup(exercise_id)
    ipython = _in_ipython()
    lang = i18n.language()
    default_hint = i18n.hint(exercise_id, registered.hint, lang)
    not_passed = i18n.frame("not_passed_yet", lang,
                            f"Exercise {exercise_id} not passed yet: see the error below.", id=exercise_id)
    try:
        details = registered.fn(answer, **kwargs)
    except NotSolved as err:
        if ipython:
            shown = err.exercise_id or exercise_id
            _show(check_bundle(exercise_id, False, str(err), i18n.frame(
                "not_solved_short", lang, f"Exercise {shown} is not solved yet.", id=shown)))
        raise _without_grader_frames(err)
    except ExerciseFailed as err:
        if err.exercise_id is None:
            err.exercise_id = exercise_id
        err.message = i18n.translate(err.message, lang)
        err.args = (err.message,)
        err.hint = default_hint if err.hint is None else i18n.translate(err.hint, lang)
        if ipython:
            _show(check_bundle(exercise_id, False, str(err), not_passed))
        if err.__cause__ is not None:
            _without_grader_frames(err.__cause__)
        raise _without_grader_frames(err)
    except Exception as err:
        failed = ExerciseFailed(i18n.translate(
            f"your code raised {_error_line(err)} while it was being checked; "
            f"the traceback above shows where.", lang), exercise_id, default_hint)
        if ipython:
            _show(check_bundle(exercise_id, False, str(failed), not_passed))
        raise failed from _without_grader_frames(err)
    message = passed_line(exercise_id, registered.title, details, lang)
    if ipython:
        _show(check_bundle(exercise_id, True, message))
    else:
        print(message)
    return CheckResult(exercise_id, True, message)


def passed_line(exercise_id: str, title: str, details: str | None = None, lang: str = "en") -> str:
    """``Exercise 0.2 passed: <title> (<details>)``, in ``lang``: what a passed check shows."""
    title = i18n.title(exercise_id, title, lang)
    message = i18n.frame("passed", lang, f"Exercise {exercise_id} passed: {title}",
                         id=exercise_id, title=title)
    if details:
        details = i18n.translate(details, lang)
        message += i18n.frame("details", lang, f" ({details})", details=details)
    return message


_GRADER_DIR = os.path.dirname(os.path.abspath(__file__))


def _without_grader_frames(err: BaseException) -> BaseException:
    """Drop the leading traceback frames that belong to the checks themselves (this package), so
    a learner sees their own code and the message, not the grader's source (which may contain
    the reference answer). Returns ``err`` with the shortened traceback."""
    tb = err.__traceback__
    while tb is not None and os.path.dirname(os.path.abspath(tb.tb_frame.f_code.co_filename)) == _GRADER_DIR:
        tb = tb.tb_next
    return err.with_traceback(tb)


# ---------------------------------------------------------------- helpers for check authors

def _error_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def describe(value: Any, limit: int = 60) -> str:
    """A short, deterministic description of a value for messages: tensors and arrays by dtype
    and shape (small ones with their values), other values by a shortened repr."""
    torch = sys.modules.get("torch")
    numpy = sys.modules.get("numpy")
    if torch is not None and isinstance(value, torch.Tensor):
        if value.numel() <= 6 and value.dim() <= 1:
            return repr(value)
        return f"<{str(value.dtype).replace('torch.', '')} tensor of shape {tuple(value.shape)}>"
    if numpy is not None and isinstance(value, numpy.ndarray):
        return f"<{value.dtype} array of shape {value.shape}>"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Inside a check: return ``fn(*args, **kwargs)`` for the learner's function ``fn``.

    An error raised by ``fn`` becomes an :class:`ExerciseFailed` (chained to it) saying which input
    it was checked with; NotSolved and ExerciseFailed pass through.
    """
    __tracebackhide__ = True
    try:
        return fn(*args, **kwargs)
    except (NotSolved, ExerciseFailed):
        raise
    except Exception as err:
        name = getattr(fn, "__name__", "your function")
        inputs = ", ".join([describe(a) for a in args] + [f"{k}={describe(v)}" for k, v in kwargs.items()])
        raise ExerciseFailed(f"your code raised {_error_line(err)} while being checked with input "
                             f"{name}({inputs}); the traceback above shows the line.") from err


def _verb(name: str) -> str:
    return "returned" if name.endswith(")") else "has"


def expect_tensor(name: str, value: Any, shape: tuple | None = None, dtype: Any = None) -> Any:
    """Fail unless ``value`` is a torch.Tensor with ``shape`` (None entries match any size) and
    ``dtype``; return ``value``. ``name`` says what it is in messages, e.g. ``"normalise(x)"``."""
    __tracebackhide__ = True
    import torch

    if not isinstance(value, torch.Tensor):
        fail(f"{name} {_verb(name)} a {type(value).__name__} but a torch.Tensor was expected")
    if shape is not None:
        got = tuple(value.shape)
        shape = tuple(shape)
        if len(got) != len(shape) or any(s is not None and s != g for g, s in zip(got, shape)):
            sizes = ["*" if s is None else str(s) for s in shape]
            wanted = f"({sizes[0]},)" if len(sizes) == 1 else "(" + ", ".join(sizes) + ")"
            fail(f"{name} {_verb(name)} shape {got} but {wanted} was expected")
    if dtype is not None and value.dtype != dtype:
        fail(f"{name} {_verb(name)} dtype {value.dtype} but {dtype} was expected")
    return value


def expect_close(name: str, got: Any, expected: Any, atol: float = 1e-5, rtol: float = 1e-4) -> None:
    """Fail unless ``got`` is close to ``expected`` (numbers or tensors, same shape), reporting
    the largest difference and where it is."""
    __tracebackhide__ = True
    import torch

    if isinstance(expected, torch.Tensor):
        expect_tensor(name, got, shape=tuple(expected.shape))
        got_f, exp_f = got.detach().double().cpu(), expected.detach().double().cpu()
        if torch.isnan(got_f).any() and not torch.isnan(exp_f).any():
            fail(f"{name} contains NaN values")
        if torch.allclose(got_f, exp_f, atol=atol, rtol=rtol):
            return
        diff = (got_f - exp_f).abs().nan_to_num(nan=math.inf)
        flat = int(diff.argmax())
        index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), diff.shape))
        fail(f"{name} differs from the expected values: largest difference {float(diff.max()):.4g} "
             f"at index {index} (got {float(got_f[index]):.6g}, expected {float(exp_f[index]):.6g}; "
             f"allowed atol={atol:g}, rtol={rtol:g})")
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.item()
    if not isinstance(got, (int, float)) or isinstance(got, bool):
        fail(f"{name} {_verb(name)} {describe(got)} but a number close to {expected:.6g} was expected")
    if not math.isclose(got, expected, rel_tol=rtol, abs_tol=atol):
        fail(f"{name} {_verb(name)} {got:.6g} but {expected:.6g} was expected "
             f"(allowed atol={atol:g}, rtol={rtol:g})")


def expect_number(name: str, value: Any, what: str = "a number") -> float:
    """Fail unless ``value`` is a real number (int, float, NumPy scalar or one-element tensor);
    return it as a float. ``what`` describes the number in the message, e.g. "the frequency in Hz"."""
    __tracebackhide__ = True
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if hasattr(value, "dtype") and getattr(value, "size", None) == 1:  # NumPy scalar or 1-element array
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        fail(f"{name} {_verb(name)} {describe(value)} ({type(value).__name__}) but {what} was expected")
    return float(value)


def expect_equal(name: str, got: Any, expected: Any) -> None:
    """Fail unless ``got == expected`` (for ints, strings, tuples, lists, dicts...)."""
    __tracebackhide__ = True
    numbers = (int, float)
    if type(got) is not type(expected) and not (isinstance(got, numbers) and isinstance(expected, numbers)):
        fail(f"{name} {_verb(name)} a {type(got).__name__} ({describe(got)}) "
             f"but a {type(expected).__name__} ({describe(expected)}) was expected")
    if got != expected:
        fail(f"{name} {_verb(name)} {describe(got)} but {describe(expected)} was expected")
