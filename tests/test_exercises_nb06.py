"""The checks of notebook 06's exercises pass the solutions and reject plausible wrong answers."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmcourse.exercises import ExerciseFailed, NotSolved, check


def _fails(exercise_id: str, answer, match: str, **kwargs) -> None:
    with pytest.raises(ExerciseFailed, match=match):
        check(exercise_id, answer, **kwargs)


# ------------------------------------------------------------------------------ 6.1 attention

def _attention(scale=True, dim=-1, mask_mode="inf", nan_fix=True):
    def attention(q, k, v, key_mask=None):
        scores = q @ k.transpose(-2, -1)
        if scale:
            scores = scores / math.sqrt(q.shape[-1])
        if key_mask is not None and mask_mode == "inf":
            scores = scores.masked_fill(~key_mask.unsqueeze(-2), float("-inf"))
        weights = torch.softmax(scores, dim=dim)
        if key_mask is not None and mask_mode == "after":
            weights = weights * key_mask.unsqueeze(-2)
        if nan_fix:
            weights = weights.nan_to_num(0.0)
        return weights @ v, weights
    return attention


def test_6_1_passes_and_rejects():
    assert check("6.1", _attention()).passed
    _fails("6.1", _attention(scale=False), "sqrt\\(d\\)")
    _fails("6.1", _attention(dim=-2), "over the queries")
    _fails("6.1", _attention(mask_mode="none"), "mask is not applied")
    _fails("6.1", _attention(mask_mode="after"), "no longer sum to 1")
    _fails("6.1", _attention(nan_fix=False), "ALL masked")
    _fails("6.1", lambda q, k, v, key_mask=None: _attention()(q, k, v, key_mask)[0], "pair")


def test_6_1_refuses_the_imported_library_function():
    from mmcourse.fusion import scaled_dot_product_attention

    _fails("6.1", lambda q, k, v, key_mask=None: scaled_dot_product_attention(q, k, v, key_mask),
           "calls the library's mmcourse.fusion.scaled_dot_product_attention")


def test_6_1_not_solved_passes_through():
    def stub(q, k, v, key_mask=None):
        raise NotSolved("6.1")
    with pytest.raises(NotSolved):
        check("6.1", stub)


# -------------------------------------------------------------------------- 6.2 modality tokens

def modality_tokens(features, proj, embedding):
    return torch.stack([proj[m](features[m]) + embedding[j] for j, m in enumerate(proj)], dim=1)


def test_6_2_passes_and_rejects():
    assert check("6.2", modality_tokens).passed
    _fails("6.2", lambda f, p, e: torch.stack([p[m](f[m]) for m in p], 1), "only the projections")
    _fails("6.2", lambda f, p, e: torch.stack([p[m](f[m]) + e[j] for j, m in enumerate(f)], 1),
           "order of the features")
    _fails("6.2", lambda f, p, e: torch.stack([p[m](f[m]) + e[0] for m in p], 1), "embedding\\[0\\]")
    _fails("6.2", lambda f, p, e: torch.stack([p[m](f[m]) + e.sum(0) for m in p], 1), "same embedding")
    _fails("6.2", lambda f, p, e: torch.cat([p[m](f[m]) + e[j] for j, m in enumerate(p)], 1), "shape")


# ------------------------------------------------------------------------------ 6.3 low rank

def _lowrank(constant=1.0, combine="product", weights=True, bias=True):
    def lowrank_forward(xs, factors, rank_weights, b):
        zs = [torch.einsum("bd,rdo->rbo", torch.cat([x, torch.full_like(x[:, :1], constant)], 1), f)
              for x, f in zip(xs, factors)]
        product = zs[0]
        for z in zs[1:]:
            product = product * z if combine == "product" else product + z
        out = torch.einsum("ur,rbo->bo", rank_weights, product) if weights else product.sum(0)
        return out + b if bias else out
    return lowrank_forward


def test_6_3_passes_and_rejects():
    assert check("6.3", _lowrank()).passed
    _fails("6.3", _lowrank(constant=0.0), "appended a 0")
    _fails("6.3", _lowrank(combine="sum"), "MULTIPLIES")
    _fails("6.3", _lowrank(weights=False), "rank_weights")
    _fails("6.3", _lowrank(bias=False), "bias is missing")
    # forgetting the appended 1 altogether: a shape error, reported readably
    _fails("6.3", lambda xs, fs, w, b: sum(torch.einsum("bd,rdo->bo", x, f) for x, f in zip(xs, fs)),
           "raised")


# ----------------------------------------------------------------------------------- 6.4 AUC

def area_under_curve(s, a):
    s, a = np.asarray(s, float), np.asarray(a, float)
    return float(((s[1:] - s[:-1]) * (a[1:] + a[:-1]) / 2).sum())


SEV = (0.0, 0.25, 0.5, 0.75, 1.0)
# four curves, each the answer to a different question: the largest loss (clean end minus area) is
# concat/text; the smallest area attention/image (low everywhere, but flat); the smallest loss
# concat/image; the largest drop from the first to the last severity attention/text
CURVES = {"concat": {"image": [0.90, 0.89, 0.88, 0.87, 0.86], "text": [0.95, 0.80, 0.75, 0.72, 0.70]},
          "attention": {"image": [0.70, 0.69, 0.67, 0.66, 0.64], "text": [0.95, 0.93, 0.90, 0.85, 0.50]}}


def _losses():
    return {(n, m): c[0] - area_under_curve(SEV, c) for n, per in CURVES.items() for m, c in per.items()}


def _least():
    losses = _losses()
    key = max(losses, key=losses.get)
    return (*key, losses[key])


def test_6_4_the_test_curves_separate_the_questions():
    areas = {(n, m): area_under_curve(SEV, c) for n, per in CURVES.items() for m, c in per.items()}
    losses = _losses()
    drops = {(n, m): c[0] - c[-1] for n, per in CURVES.items() for m, c in per.items()}
    assert max(losses, key=losses.get) == ("concat", "text")
    assert min(areas, key=areas.get) == ("attention", "image")
    assert min(losses, key=losses.get) == ("concat", "image")
    assert max(drops, key=drops.get) == ("attention", "text")
    assert math.isclose(losses["concat", "text"], 0.95 - 0.77375)


def test_6_4_refuses_numpys_trapezoid():
    """The exercise says "by hand": numpy's ready-made rule is refused, however it is reached."""
    _fails("6.4", (lambda s, a: float(np.trapezoid(a, s)), _least()), "numpy.trapezoid",
           curves=CURVES, severities=SEV)
    _fails("6.4", (lambda s, a: float(np.trapezoid(np.asarray(a), x=np.asarray(s))), _least()),
           "write it yourself", curves=CURVES, severities=SEV)


def test_6_4_passes_and_rejects():
    result = check("6.4", (area_under_curve, _least()), curves=CURVES, severities=SEV)
    assert result.passed and "concat under text corruption loses 0.176" in result.message
    _fails("6.4", (lambda s, a: float(np.mean(a)), _least()), "plain mean", curves=CURVES,
           severities=SEV)
    _fails("6.4", (lambda s, a: sum((s[i + 1] - s[i]) * a[i] for i in range(len(s) - 1)), _least()),
           "left Riemann", curves=CURVES, severities=SEV)
    _fails("6.4", (lambda s, a: sum((s[i + 1] - s[i]) * (a[i] + a[i + 1]) for i in range(len(s) - 1)),
                   _least()), "width", curves=CURVES, severities=SEV)
    losses = _losses()
    for pair, match in ((("attention", "image"), "smallest AREA"),
                        (("concat", "image"), "loses the LEAST"),
                        (("attention", "text"), "largest drop from the first to the last")):
        _fails("6.4", (area_under_curve, (*pair, losses[pair])), match, curves=CURVES,
               severities=SEV)
    area = area_under_curve(SEV, CURVES["concat"]["text"])
    _fails("6.4", (area_under_curve, ("concat", "text", area)), "is the AREA", curves=CURVES,
           severities=SEV)
    _fails("6.4", (area_under_curve, ("concat", "text", -losses["concat", "text"])), "wrong sign",
           curves=CURVES, severities=SEV)
    plain = CURVES["concat"]["text"][0] - float(np.mean(CURVES["concat"]["text"]))
    _fails("6.4", (area_under_curve, ("concat", "text", plain)), r"is 0\.176\d .* you gave 0\.1660",
           curves=CURVES, severities=SEV)
    _fails("6.4", (area_under_curve, ("gated", "text", 0.2)), "not a pair of `curves`",
           curves=CURVES, severities=SEV)
    _fails("6.4", (area_under_curve, ("concat", "text")), r"must be \(method, modality, loss\)",
           curves=CURVES, severities=SEV)
    _fails("6.4", area_under_curve, "expects")


# ------------------------------------------------------------------ 6.5 predict, then measure

def test_6_5_records_any_well_formed_prediction():
    result = check("6.5", {"image": 0.8, "audio": 0.78, "text": 0.65})
    assert result.passed and "image 0.80, audio 0.78, text 0.65" in result.message
    assert check("6.5", {"text": 0.1, "audio": 0.9, "image": 0.5}).passed    # any order of keys


@pytest.mark.parametrize("answer, match", [
    (0.8, r"must be a dict .* but it is 0\.8 \(float\)"),
    ({"image": 0.8, "audio": 0.78}, r"has no entry for \['text'\]"),
    ({"image": 0.8, "audio": 0.78, "text": 0.65, "video": 0.5}, r"'video', which is not one of"),
    ({"image": 0.8, "audio": [0.78], "text": 0.65}, r"my_prediction\['audio'\] has \[0\.78\]"),
    ({"image": 80, "audio": 0.78, "text": 0.65}, r"is 80, but the predicted (?:test )?accuracy is a fraction"),
    ({"image": 0.8, "audio": 0.78, "text": -0.01}, r"between 0 and 1"),
])
def test_6_5_rejects_malformed_predictions(answer, match):
    _fails("6.5", answer, match)
