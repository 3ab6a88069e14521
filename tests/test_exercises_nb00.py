"""The checks of notebook 00 pass the solutions and reject plausible wrong answers helpfully."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mmcourse.exercises import ExerciseFailed, NotSolved, check


def missing_fraction(split):
    return {m: float(np.mean(~present)) for m, present in split.present.items()}


def dominant_frequency(waveform, sample_rate):
    magnitude = torch.fft.rfft(torch.as_tensor(waveform, dtype=torch.float32)).abs()
    return float(torch.fft.rfftfreq(len(waveform), d=1 / sample_rate)[magnitude.argmax()])


def channel_stats(images):
    x = images.float() / 255.0
    return x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3))


@pytest.mark.parametrize("exercise, answer", [("0.1", missing_fraction),
                                              ("0.2", dominant_frequency),
                                              ("0.3", channel_stats)])
def test_solutions_pass(exercise, answer):
    assert check(exercise, answer).passed


WRONG = [
    ("0.1", lambda split: {m: float(np.mean(p)) for m, p in split.present.items()}, "fraction PRESENT"),
    ("0.1", lambda split: {m: int(np.sum(~p)) for m, p in split.present.items()}, "divide by len(split)"),
    ("0.1", lambda split: [0.1, 0.2, 0.1], "a dict like"),
    ("0.1", lambda split: {"image": 0.1}, "expected exactly"),
    ("0.2", lambda w, sr: float(torch.fft.rfft(torch.as_tensor(w)).abs().argmax()), "index of the FFT bin"),
    ("0.2", lambda w, sr: float(torch.fft.rfftfreq(len(w))[torch.fft.rfft(torch.as_tensor(w)).abs().argmax()]),
     "cycles per SAMPLE"),
    ("0.2", lambda w, sr: "440 Hz", "the frequency in Hz"),
    ("0.2", lambda w, sr: 440.0, "should be within"),
    ("0.3", lambda x: (x.float().mean(dim=(0, 2, 3)), x.float().std(dim=(0, 2, 3))), "divide by 255"),
    ("0.3", lambda x: ((x.float() / 255).mean(dim=(0, 1)), (x.float() / 255).std(dim=(0, 1))),
     "except the channel axis"),
    ("0.3", lambda x: {"mean": 0}, "a pair (mean, std)"),
    ("0.3", lambda x: ((x.float() / 255).mean(dim=(0, 2, 3)), (x.float() / 255).var(dim=(0, 2, 3))),
     "differs from the expected values"),
]


@pytest.mark.parametrize("exercise, answer, message", WRONG,
                         ids=[f"{e}-{m[:20]}" for e, _, m in WRONG])
def test_wrong_answers_are_rejected_with_a_reason(exercise, answer, message):
    with pytest.raises(ExerciseFailed) as info:
        check(exercise, answer)
    assert message in str(info.value)
    assert f"Exercise {exercise} failed" in str(info.value)


def test_unsolved_exercise_says_so():
    def stub(split):
        raise NotSolved("0.1")

    with pytest.raises(NotSolved, match="Exercise 0.1 is not solved yet"):
        check("0.1", stub)


# ------------------------------------------------------------------ 0.4 a prediction, recorded

def test_0_4_records_any_well_formed_prediction():
    binomial = {0: 0.125, 1: 0.375, 2: 0.375, 3: 0.125}
    assert check("0.4", binomial).passed
    assert "0: 12.5%" in check("0.4", binomial).message
    assert check("0.4", {0: 0.0, 1: 0.5, 2: 0.5, 3: np.float64(0.0)}).passed  # any shares that add up


@pytest.mark.parametrize("prediction, message", [
    ([0.125, 0.375, 0.375, 0.125], "must be a dict {0: ..., 1: ..., 2: ..., 3: ...}"),
    ({0: 0.2, 1: 0.4, 2: 0.4}, "no entry for [3]"),
    ({"0": 0.125, "1": 0.375, "2": 0.375, "3": 0.125}, "the key '0', which is not one of [0, 1, 2, 3]"),
    ({0: 0.125, 1: 0.375, 2: 0.375, 3: 0.125, 4: 0.0}, "the key 4, which is not one of"),
    ({0: "few", 1: 0.375, 2: 0.375, 3: 0.125}, "predicted_shares[0] has 'few' (str) but a number"),
    ({0: 12.5, 1: 37.5, 2: 37.5, 3: 12.5}, "12.5% is 0.125"),
    ({0: -0.1, 1: 0.5, 2: 0.5, 3: 0.1}, "is -0.1, but the share"),
    ({0: 0.25, 1: 0.25, 2: 0.25, 3: 0.5}, "add up to 1.250"),
])
def test_0_4_rejects_malformed_predictions(prediction, message):
    with pytest.raises(ExerciseFailed) as info:
        check("0.4", prediction)
    assert message in str(info.value)
