"""The checks of notebook 12's exercises pass the solutions and reject plausible wrong answers."""
from __future__ import annotations

import pytest
import torch

from mmcourse.exercises import ExerciseFailed, check
from mmcourse.regime_runs import MARGIN, REGIMES


def _fails(exercise_id: str, answer, match: str, **kwargs) -> None:
    with pytest.raises(ExerciseFailed, match=match):
        check(exercise_id, answer, **kwargs)


# ------------------------------------------------------------------------ 12.1 predictions

def test_12_1_records_any_known_prediction_for_every_regime():
    every = {r: "concat" for r in REGIMES}
    assert check("12.1", every, regimes=REGIMES).passed
    assert check("12.1", {**every, "synergy": ("tensor", "lowrank")}, regimes=REGIMES).passed
    assert "synergy: tensor/lowrank" in check("12.1", {**every, "synergy": ("tensor", "lowrank")},
                                             regimes=REGIMES).message


def test_12_1_rejects_incomplete_or_unknown_predictions():
    every = {r: "concat" for r in REGIMES}
    _fails("12.1", {"synergy": "tensor"}, "no prediction for", regimes=REGIMES)
    _fails("12.1", {**every, "attn": "gated"}, "not regimes", regimes=REGIMES)
    assert check("12.1", every, regimes=REGIMES[:2]).passed  # a shorter REGIMES (test runs)
    _fails("12.1", {**every, "synergy": "attn"}, "'attn', which is not a method", regimes=REGIMES)
    _fails("12.1", {**every, "synergy": 3}, "method name or a tuple", regimes=REGIMES)
    _fails("12.1", {**every, "synergy": ()}, "method name or a tuple", regimes=REGIMES)
    _fails("12.1", ["concat"], "must be a dict")
    _fails("12.1", {}, "must be a dict")


# ------------------------------------------------------------------------ 12.3 synergy label

def test_12_3_accepts_latin_squares_other_than_the_generator_s():
    _fails("12.3", lambda a, b, k: (a + b) % k, "generator's own rule")
    _fails("12.3", lambda a, b, k: (b + a) % k, "generator's own rule")
    assert check("12.3", lambda a, b, k: (a - b) % k).passed
    # the generator's rule with its labels renamed groups the same pairs: refused too
    _fails("12.3", lambda a, b, k: (a + b + 1) % k, "labels renamed")
    _fails("12.3", lambda a, b, k: (-(a + b)) % k, "labels renamed")
    assert check("12.3", lambda a, b, k: (a + 2 * b) % k if k % 2 else (a - b) % k).passed
    assert check("12.3", lambda a, b, k: (2 * a + b + 1) % k if k % 2 else (a + b) % k).passed


@pytest.mark.parametrize("wrong, match", [
    (lambda a, b, k: a, "audio alone tells|image alone tells"),
    (lambda a, b, k: (a * b) % k, "image symbol is 0 .* not all equally likely"),
    (lambda a, b, k: torch.maximum(a, b), "not all equally likely"),
    (lambda a, b, k: (a + b) // 2, "not all equally likely"),
    (lambda a, b, k: a + b, "must lie in 0..1"),
    (lambda a, b, k: a ^ b, "must lie in 0..2"),
    (lambda a, b, k: ((a + b) % k).float(), "integer class labels"),
    (lambda a, b, k: ((a + b) % k).tolist(), "must return a tensor"),
    (lambda a, b, k: ((a + b) % k)[:1], "one label per sample"),
])
def test_12_3_rejects_labels_a_single_modality_reveals(wrong, match):
    _fails("12.3", wrong, match)


# ------------------------------------------------------------------------ 12.2 the judging rule

def beats(results, a, b, margin=MARGIN):
    gap = 100 * (results[a]["mean"] - results[b]["mean"])
    return gap - 100 * max(results[a]["std"], results[b]["std"]) >= margin


def test_12_2_passes_the_rule_the_bench_uses():
    from mmcourse.exercises.nb12 import _cases
    from mmcourse.regime_runs import judge
    assert check("12.2", beats).passed
    # the rule of the check is the library's: judge a non-baseline regime on the same numbers
    for results, a, b, _ in _cases():
        named = {"lowrank": results[a], "concat": results[b]}
        assert judge("synergy", named, 0.25)["won"] == beats(results, a, b, MARGIN)


@pytest.mark.parametrize("wrong, match", [
    (lambda r, a, b, m=3.0: 100 * (r[a]["mean"] - r[b]["mean"]) >= m, "subtract the larger"),
    (lambda r, a, b, m=3.0: 100 * (r[a]["mean"] - r[b]["mean"] - r[a]["std"] - r[b]["std"]) >= m,
     "not the sum"),
    (lambda r, a, b, m=3.0: (r[a]["mean"] - r[b]["mean"]) - max(r[a]["std"], r[b]["std"]) >= m,
     "fractions with a margin in points"),
    (lambda r, a, b, m=3.0: abs(100 * (r[a]["mean"] - r[b]["mean"]))
     - 100 * max(r[a]["std"], r[b]["std"]) >= m, "BELOW"),
    (lambda r, a, b, m=3.0: float(beats(r, a, b, m)), "True or False"),
])
def test_12_2_rejects_wrong_rules(wrong, match):
    _fails("12.2", wrong, match)
