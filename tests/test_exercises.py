"""The exercise checks: NotSolved, check, the failure messages and the display bundle."""
from __future__ import annotations

import pickle

import pytest
import torch

from mmcourse.exercises import (
    CHECK_MIMETYPE,
    CheckResult,
    ExerciseFailed,
    NotSolved,
    UnknownExercise,
    call,
    check,
    check_bundle,
    expect_close,
    expect_equal,
    expect_tensor,
    fail,
    register,
)
from mmcourse.exercises import core

# Checks registered here use notebook numbers 97 and 96, which have no nbNN module.


@register("97.1", "Double a tensor", hint="multiply by 2")
def _check_double(answer, size=3):
    x = torch.arange(size, dtype=torch.float32)
    got = call(answer, x)
    expect_tensor("double(x)", got, shape=(size,), dtype=torch.float32)
    expect_close("double(x)", got, 2 * x)


@register("97.2", "Pick a number")
def _check_number(answer):
    if answer != 42:
        fail(f"the answer was {answer} but 42 was expected", hint="it is the answer to everything")
    return "exactly right"


@register("97.3", "Sum a list")
def _check_sum(answer):
    # Calls the learner's function directly, without call(): check() wraps its errors.
    if answer([1, 2, 3]) != 6:
        fail("wrong sum")


def test_not_solved_message():
    err = NotSolved("0.1")
    assert err.exercise_id == "0.1"
    assert isinstance(err, NotImplementedError)
    assert str(err) == ('Exercise 0.1 is not solved yet: replace the two lines "# YOUR CODE HERE" / '
                        '"raise NotSolved(...)" in its cell with your answer (the hints are in the '
                        'text above the cell).')


def test_not_solved_survives_pickling_and_rebuilding_from_its_message():
    err = pickle.loads(pickle.dumps(NotSolved("3.2")))
    assert err.exercise_id == "3.2" and str(err) == str(NotSolved("3.2"))
    # torch's DataLoader re-raises worker errors as type(err)(message)
    rebuilt = NotSolved("Caught NotSolved in worker.\n" + str(NotSolved("3.2")))
    assert rebuilt.exercise_id == "3.2" and str(rebuilt).startswith("Caught NotSolved")
    failed = pickle.loads(pickle.dumps(ExerciseFailed("wrong", "3.2", "look again")))
    assert str(failed) == "Exercise 3.2 failed: wrong\nHint: look again"


def test_check_passes_a_right_answer_and_prints_one_line(capsys):
    result = check("97.1", lambda x: x * 2)
    assert result == CheckResult("97.1", True, "Exercise 97.1 passed: Double a tensor")
    assert capsys.readouterr().out == "Exercise 97.1 passed: Double a tensor\n"
    result = check("97.2", 42)
    assert result.message == "Exercise 97.2 passed: Pick a number (exactly right)"


def test_check_passes_kwargs_to_the_check(capsys):
    assert check("97.1", lambda x: x + x, size=5).passed


def test_wrong_answer_raises_a_helpful_exercise_failed():
    with pytest.raises(ExerciseFailed) as info:
        check("97.1", lambda x: x * 3)
    err = info.value
    assert err.exercise_id == "97.1"
    text = str(err)
    assert text.startswith("Exercise 97.1 failed: double(x) differs from the expected values: "
                           "largest difference 2 at index (2,) (got 6, expected 4;")
    assert text.endswith("\nHint: multiply by 2")  # the exercise's default hint


def test_failure_hint_given_by_fail_wins():
    with pytest.raises(ExerciseFailed, match="the answer was 41 but 42 was expected") as info:
        check("97.2", 41)
    assert info.value.hint == "it is the answer to everything"


def test_wrong_shape_and_type_messages():
    with pytest.raises(ExerciseFailed, match=r"double\(x\) returned shape \(3, 1\) but \(3,\) was expected"):
        check("97.1", lambda x: (x * 2)[:, None])
    with pytest.raises(ExerciseFailed, match=r"double\(x\) returned a list but a torch.Tensor was expected"):
        check("97.1", lambda x: [0.0, 2.0, 4.0])
    with pytest.raises(ExerciseFailed, match=r"returned dtype torch.int64 but torch.float32 was expected"):
        check("97.1", lambda x: (x * 2).long())


def test_expect_helpers_messages():
    with pytest.raises(ExerciseFailed) as info:
        expect_tensor("normalise(x)", torch.zeros(3, 32), shape=(32, 3))
    assert str(info.value) == "normalise(x) returned shape (3, 32) but (32, 3) was expected"
    with pytest.raises(ExerciseFailed, match=r"logits has shape \(2, 5\) but \(\*, 4\) was expected"):
        expect_tensor("logits", torch.zeros(2, 5), shape=(None, 4))
    assert expect_tensor("logits", torch.zeros(7, 4), shape=(None, 4)).shape == (7, 4)
    with pytest.raises(ExerciseFailed, match=r"accuracy has 0.5 but 0.75 was expected"):
        expect_close("accuracy", 0.5, 0.75)
    expect_close("accuracy", torch.tensor(0.75), 0.75)
    with pytest.raises(ExerciseFailed, match="contains NaN"):
        expect_close("x", torch.tensor([1.0, float("nan")]), torch.tensor([1.0, 2.0]))
    with pytest.raises(ExerciseFailed, match=r"classes\(\) returned a list \(\['a'\]\) but a tuple"):
        expect_equal("classes()", ["a"], ("a",))
    with pytest.raises(ExerciseFailed, match=r"n has 3 but 4 was expected"):
        expect_equal("n", 3, 4)


def test_learner_error_becomes_a_chained_exercise_failed():
    def double(x):
        return x * "2"

    with pytest.raises(ExerciseFailed) as info:
        check("97.1", double)
    err = info.value
    assert isinstance(err.__cause__, TypeError)
    assert "your code raised TypeError: " in str(err)
    assert "while being checked with input double(tensor([0., 1., 2.]))" in str(err)


def test_learner_error_outside_call_is_wrapped_too():
    def total(values):
        return values.sum()  # lists have no .sum()

    with pytest.raises(ExerciseFailed) as info:
        check("97.3", total)
    assert isinstance(info.value.__cause__, AttributeError)
    assert "your code raised AttributeError: 'list' object has no attribute 'sum'" in str(info.value)


def test_not_solved_propagates_from_the_answer():
    def double(x):
        # YOUR CODE HERE
        raise NotSolved("97.1")

    with pytest.raises(NotSolved, match="Exercise 97.1 is not solved yet"):
        check("97.1", double)


def test_unknown_id_is_a_clear_error():
    with pytest.raises(UnknownExercise, match=r"no check is registered for exercise 99\.9; known: .*97\.1, 97\.2"):
        check("99.9", None)
    with pytest.raises(ValueError, match="exercise ids look like"):
        check("nine", None)


def test_register_refuses_a_second_check_for_the_same_id():
    def other(answer):
        pass

    with pytest.raises(ValueError, match="exercise 97.1 already has a check"):
        register("97.1", "again")(other)
    register("96.1", "same function twice")(other)
    register("96.1", "same function twice")(other)  # a re-run cell replaces it


def test_check_bundle_payload():
    assert check_bundle("0.2", True, "Exercise 0.2 passed: x") == {
        CHECK_MIMETYPE: {"id": "0.2", "passed": True, "message": "Exercise 0.2 passed: x"},
        "text/plain": "Exercise 0.2 passed: x",
    }
    assert check_bundle("0.2", False, "long", "short")["text/plain"] == "short"


def test_no_bundle_outside_ipython(monkeypatch, capsys):
    shown = []
    monkeypatch.setattr(core, "_show", shown.append)
    assert not core._in_ipython()
    check("97.2", 42)
    assert shown == []


def test_bundles_shown_in_ipython(monkeypatch, capsys):
    shown = []
    monkeypatch.setattr(core, "_in_ipython", lambda: True)
    monkeypatch.setattr(core, "_show", shown.append)

    check("97.2", 42)
    assert capsys.readouterr().out == ""  # the bundle's text/plain is the visible line
    assert shown[-1] == check_bundle("97.2", True, "Exercise 97.2 passed: Pick a number (exactly right)")

    with pytest.raises(ExerciseFailed) as info:
        check("97.2", 41)
    assert shown[-1][CHECK_MIMETYPE] == {"id": "97.2", "passed": False, "message": str(info.value)}

    with pytest.raises(ExerciseFailed) as info:
        check("97.3", lambda values: values.sum())
    assert shown[-1][CHECK_MIMETYPE]["passed"] is False

    def double(x):
        raise NotSolved("97.1")

    with pytest.raises(NotSolved):
        check("97.1", double)
    assert shown[-1][CHECK_MIMETYPE] == {"id": "97.1", "passed": False, "message": str(NotSolved("97.1"))}
    assert shown[-1]["text/plain"] == "Exercise 97.1 is not solved yet."
    assert len(shown) == 4


def test_show_uses_ipython_display(monkeypatch):
    import IPython.display

    calls = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, raw=False: calls.append((obj, raw)))
    core._show({"text/plain": "x"})
    assert calls == [({"text/plain": "x"}, True)]
