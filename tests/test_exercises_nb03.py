"""The checks of notebook 03's exercises pass the solutions and reject plausible wrong answers."""
from __future__ import annotations

import math

import pytest
import torch

from mmcourse.exercises import ExerciseFailed, NotSolved, check


def _fails(exercise_id: str, answer, match: str) -> None:
    with pytest.raises(ExerciseFailed, match=match):
        check(exercise_id, answer)


# ------------------------------------------------------------------------------ 3.1 mel scale

def hz_to_mel(f):
    return 2595 * torch.log10(1 + torch.as_tensor(f) / 700)


def mel_to_hz(m):
    return 700 * (10 ** (torch.as_tensor(m) / 2595) - 1)


def test_3_1_passes_and_rejects():
    assert check("3.1", (hz_to_mel, mel_to_hz)).passed
    _fails("3.1", (lambda f: 2595 * torch.log(1 + f / 700), mel_to_hz), "natural logarithm")
    # the natural-log form with 1127 = 2595 / ln(10) is the same curve
    assert check("3.1", (lambda f: 1127.01048 * torch.log(1 + f / 700), mel_to_hz)).passed
    _fails("3.1", (hz_to_mel, lambda m: 700 * (torch.exp(m / 2595) - 1)), "power of 10")
    _fails("3.1", (hz_to_mel, lambda m: m), "mel_to_hz")
    _fails("3.1", (lambda f: float(f[0]), mel_to_hz), "torch.Tensor")
    _fails("3.1", hz_to_mel, "pair of functions")


# -------------------------------------------------------------------------- 3.2 frame counts

def n_frames(length, n_fft, hop, center=True):
    return 1 + length // hop if center else 1 + (length - n_fft) // hop


def test_3_2_passes_and_rejects():
    assert check("3.2", n_frames).passed
    _fails("3.2", lambda n, f, h, center=True: n // h if center else 1 + (n - f) // h, "one short")
    _fails("3.2", lambda n, f, h, center=True: 1 + n // h, "without centring")
    _fails("3.2", lambda n, f, h, center=True: math.ceil(n / h) if center else 1 + (n - f) // h,
           "one short|including length")
    _fails("3.2", lambda n, f, h, center=True: str(1 + n // h), "a number was expected")


# ------------------------------------------------------------------------------ 3.3 time mask

def time_mask(spec, start, width, value=0.0):
    out = spec.clone()
    out[..., start:start + width] = value
    return out


def _in_place(spec, start, width, value=0.0):
    spec[..., start:start + width] = value
    return spec


def _freq_mask(spec, start, width, value=0.0):
    out = spec.clone()
    out[..., start:start + width, :] = value
    return out


def _off_by_one(spec, start, width, value=0.0):
    out = spec.clone()
    out[..., start:start + width + 1] = value
    return out


def test_3_3_passes_and_rejects():
    assert check("3.3", time_mask).passed
    _fails("3.3", _in_place, "in place")
    _fails("3.3", _freq_mask, "mel bands")
    _fails("3.3", _off_by_one, "5 to 11 inclusive")
    _fails("3.3", lambda s, st, w, value=0.0: time_mask(s, st, w), "ignored the value")


# ---------------------------------------------------------------------- 3.4 alias frequency

def alias_frequency(freq, sample_rate):
    return abs(freq - sample_rate * round(freq / sample_rate))


def test_3_4_passes_and_rejects():
    assert check("3.4", alias_frequency).passed
    _fails("3.4", lambda f, sr: f, "own frequency")
    _fails("3.4", lambda f, sr: f if f <= sr / 2 else sr - f, "NEAREST multiple")
    _fails("3.4", lambda f, sr: f % (sr / 2), "expected")


# ------------------------------------------------------------------------ 3.5 masked mean

def masked_mean(features, mask):
    weights = mask[..., None].float()
    return (features * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)


def test_3_5_passes_and_rejects():
    assert check("3.5", masked_mean).passed
    _fails("3.5", lambda x, m: x.mean(dim=1), "plain mean")
    _fails("3.5", lambda x, m: (x * m[..., None]).sum(1) / x.shape[1], "padded length")
    _fails("3.5", lambda x, m: (x * m[..., None]).sum(1) / m.sum(1, keepdim=True), "NaN")
    _fails("3.5", lambda x, m: (x * ~m[..., None]).sum(1) / (~m).sum(1, keepdim=True).clamp(min=1),
           "differs")
    _fails("3.5", lambda x, m: x.mean(dim=2), "shape")


def test_not_solved_passes_through():
    def stub(*args):
        raise NotSolved("3.5")

    with pytest.raises(NotSolved):
        check("3.5", stub)


# ------------------------------------------------------------------ 3.6 a prediction, recorded

def test_3_6_records_any_well_formed_prediction():
    result = check("3.6", {"clean": 0.95, "noisy": 0.5, "missing": 0.125})
    assert result.passed and "clean 0.95, noisy 0.50, missing 0.12" in result.message


@pytest.mark.parametrize("prediction, message", [
    ([0.95, 0.5, 0.125], "must be a dict {'clean': ..., 'noisy': ..., 'missing': ...}"),
    ({"clean": 0.95, "noisy": 0.5}, "no entry for ['missing']"),
    ({"clean": 0.95, "noisy": 0.5, "missing": 0.1, "occluded": 0.2}, "the key 'occluded', which is not one of"),
    ({"clean": 0.95, "noisy": [0.4, 0.6], "missing": 0.1}, "predicted_accuracy['noisy'] has [0.4, 0.6]"),
    ({"clean": 95, "noisy": 50, "missing": 12.5}, "95% is 0.95"),
    ({"clean": 0.95, "noisy": 0.5, "missing": 101}, "is 101, but the test accuracy"),
])
def test_3_6_rejects_malformed_predictions(prediction, message):
    with pytest.raises(ExerciseFailed) as info:
        check("3.6", prediction)
    assert message in str(info.value)
