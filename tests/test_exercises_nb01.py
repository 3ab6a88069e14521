"""The checks of notebook 01's exercises pass right answers and reject plausible wrong ones."""
from __future__ import annotations

import math

import pytest
import torch

from mmcourse.exercises import check
from mmcourse.exercises.core import ExerciseFailed, NotSolved


def failure(exercise_id: str, answer) -> str:
    with pytest.raises(ExerciseFailed) as info:
        check(exercise_id, answer)
    return str(info.value)


# ---------------------------------------------------------------- 1.1

def conv_output_size(size, kernel, stride=1, padding=0, dilation=1):
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def test_1_1_passes_the_formula(capsys):
    assert check("1.1", conv_output_size).passed
    assert "Exercise 1.1 passed" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, message", [
    (lambda n, k, s=1, p=0, d=1: (n + 2 * p - d * (k - 1) - 1) // s, "ends with + 1"),
    (lambda n, k, s=1, p=0, d=1: (n + p - d * (k - 1) - 1) // s + 1, "BOTH sides"),
    (lambda n, k, s=1, p=0, d=1: (n + 2 * p - k) // s + 1, "dilation"),
    (lambda n, k, s=1, p=0, d=1: math.ceil((n + 2 * p - d * (k - 1) - 1) / s) + 1, "round DOWN"),
    (lambda n, k, s=1, p=0, d=1: (n + 2 * p - d * (k - 1) - 1) / s + 1, "whole number"),
    (lambda n, k, s=1, p=0, d=1: "32", "int"),
])
def test_1_1_rejects_wrong_formulas(wrong, message):
    assert message in failure("1.1", wrong)


# ---------------------------------------------------------------- 1.2

def normalize(x, mean, std):
    return (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


def test_1_2_passes(capsys):
    assert check("1.2", normalize).passed


def test_1_2_and_1_3_refuse_the_ready_made_versions():
    """Section 3 builds v2.Normalize and the lesson's layers with nn.Conv2d: handing them in is
    refused, whatever the route."""
    import torch.nn as nn
    from torchvision.transforms import v2

    for ready in (lambda x, m, s: v2.functional.normalize(x, m.tolist(), s.tolist()),
                  lambda x, m, s: v2.Normalize(m.tolist(), s.tolist())(x)):
        with pytest.raises(ExerciseFailed, match="torchvision.transforms.v2.functional.normalize"):
            check("1.2", ready)
    with pytest.raises(ExerciseFailed, match="calls the library's torch.nn.Conv2d"):
        check("1.3", lambda i, o, k, bias=True: sum(
            p.numel() for p in nn.Conv2d(i, o, k, bias=bias).parameters()))


def _in_place(x, mean, std):
    return x.sub_(mean.view(1, -1, 1, 1)).div_(std.view(1, -1, 1, 1))


@pytest.mark.parametrize("wrong, message", [
    (lambda x, m, s: (x - m) / s, "COLUMN"),
    (lambda x, m, s: (x - m.view(1, -1, 1, 1)) / s.view(1, -1, 1, 1) ** 2, "variance"),
    (lambda x, m, s: x / s.view(1, -1, 1, 1) - m.view(1, -1, 1, 1), "subtract the mean first"),
    (_in_place, "in place"),
    (lambda x, m, s: (x - x.mean()) / x.std(), "differs from the expected"),
    (lambda x, m, s: x.numpy(), "torch.Tensor"),
])
def test_1_2_rejects_wrong_normalisations(wrong, message):
    assert message in failure("1.2", wrong)


# ---------------------------------------------------------------- 1.3

def conv_params(in_channels, out_channels, kernel, bias=True):
    return out_channels * in_channels * kernel * kernel + (out_channels if bias else 0)


def test_1_3_passes():
    assert check("1.3", conv_params).passed


@pytest.mark.parametrize("wrong, message", [
    (lambda i, o, k, bias=True: o * i * k * k, "one bias per output channel"),
    (lambda i, o, k, bias=True: o * i * k * k + o, "no biases"),
    (lambda i, o, k, bias=True: o * k * k + (o if bias else 0), "in_channels x"),
    (lambda i, o, k, bias=True: o * i * k + (o if bias else 0), "in_channels x"),
    (lambda i, o, k, bias=True: 2 * o * i * k * k, "nn.Conv2d has"),
])
def test_1_3_rejects_wrong_counts(wrong, message):
    assert message in failure("1.3", wrong)


# ---------------------------------------------------------------- 1.4

def most_confused_pair(cm):
    off = cm.clone()
    off.fill_diagonal_(-1)
    row, col = divmod(int(off.argmax()), off.shape[1])
    return row, col


def test_1_4_passes():
    assert check("1.4", most_confused_pair).passed


def _mutating(cm):
    cm.fill_diagonal_(-1)
    return divmod(int(cm.argmax()), cm.shape[1])


@pytest.mark.parametrize("wrong, message", [
    (lambda cm: divmod(int(cm.argmax()), cm.shape[1]), "diagonal"),
    (lambda cm: most_confused_pair(cm)[::-1], "(row, column)"),
    (_mutating, "changed the confusion matrix"),
    (lambda cm: int(most_confused_pair(cm)[0]), "a pair"),
    (lambda cm: (3, 0), "not the largest"),
])
def test_1_4_rejects_wrong_pairs(wrong, message):
    assert message in failure("1.4", wrong)


def test_not_solved_passes_through():
    def stub(*args):
        raise NotSolved("1.1")

    with pytest.raises(NotSolved):
        check("1.1", stub)


# ------------------------------------------------------------------ 1.5 a prediction, recorded

def test_1_5_records_any_well_formed_prediction():
    guess = {"clean": 0.9, "noisy": 0.5, "occluded": 0.2, "missing": 0.125}
    result = check("1.5", guess)
    assert result.passed and "clean 0.90, noisy 0.50, occluded 0.20, missing 0.12" in result.message
    assert check("1.5", {"clean": 1, "noisy": 0, "occluded": torch.tensor(0.3), "missing": 0.0}).passed


@pytest.mark.parametrize("prediction, message", [
    ((0.9, 0.5, 0.2, 0.1), "must be a dict {'clean': ..., 'noisy': ..., 'occluded': ..., 'missing': ...}"),
    ({"clean": 0.9, "noisy": 0.5, "occluded": 0.2}, "no entry for ['missing']"),
    ({"clean": 0.9, "noisy": 0.5, "occluded": 0.2, "blurred": 0.1}, "the key 'blurred', which is not one of"),
    ({"clean": 0.9, "noisy": None, "occluded": 0.2, "missing": 0.1}, "predicted_accuracy['noisy'] has None"),
    ({"clean": 90, "noisy": 50, "occluded": 20, "missing": 12.5}, "90% is 0.9"),
    ({"clean": 1.2, "noisy": 0.5, "occluded": 0.2, "missing": 0.1}, "is 1.2, but the test accuracy"),
])
def test_1_5_rejects_malformed_predictions(prediction, message):
    with pytest.raises(ExerciseFailed) as info:
        check("1.5", prediction)
    assert message in str(info.value)
