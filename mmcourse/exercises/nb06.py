"""Checks for the exercises of notebook 06 (attention fusion, the bilinear family, robustness)."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn

from mmcourse.exercises.core import (call, describe, expect_close, expect_number, expect_tensor, fail,
                                     register)
from mmcourse.exercises.predictions import expect_fractions, recorded


def _reference_attention(q, k, v, key_mask=None, scale=True, dim=-1):
    scores = q @ k.transpose(-2, -1)
    if scale:
        scores = scores / math.sqrt(q.shape[-1])
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask.unsqueeze(-2), float("-inf"))
    weights = torch.softmax(scores, dim=dim).nan_to_num(0.0)
    return weights @ v, weights


def _pair(name, result, shape_out, shape_w):
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        fail(f"{name} must return the pair (output, weights), got {type(result).__name__}")
    out, weights = result
    expect_tensor(f"{name}[0] (the output)", out, shape=shape_out)
    expect_tensor(f"{name}[1] (the weights)", weights, shape=shape_w)
    return out, weights


@register("6.1", "attention computes softmax(Q K^T / sqrt(d)) V with a key mask",
          hint="scores = scaled query-key dot products; masked keys get -inf BEFORE the softmax "
               "(the mask needs a query axis to broadcast); softmax over the keys (the last axis); "
               "rows without a usable key become zeros, not NaN; output = weights times values.")
def check_attention(attention) -> str:
    gen = torch.Generator().manual_seed(6)
    q = torch.randn(2, 3, 8, generator=gen) * 2
    k = torch.randn(2, 5, 8, generator=gen) * 2
    v = torch.randn(2, 5, 4, generator=gen)
    from mmcourse.exercises.library_calls import call_without
    from mmcourse.fusion import scaled_dot_product_attention

    library = {scaled_dot_product_attention: "mmcourse.fusion.scaled_dot_product_attention"}
    # 1. no mask
    out, weights = _pair("attention(q, k, v)", call_without(attention, library, q, k, v),
                         (2, 3, 4), (2, 3, 5))
    want_out, want_w = _reference_attention(q, k, v)
    if not torch.allclose(weights, want_w, atol=1e-5):
        if torch.allclose(weights, _reference_attention(q, k, v, scale=False)[1], atol=1e-5):
            fail("the weights are softmax(Q K^T) without the scaling: divide the scores by "
                 "sqrt(d) = sqrt(q.shape[-1]) before the softmax")
        if torch.allclose(weights, _reference_attention(q, k, v, dim=-2)[1], atol=1e-5):
            fail("the softmax runs over the queries (dim=-2): each query's weights over the "
                 "KEYS must sum to 1, so take the softmax over the last axis")
        if torch.allclose(weights.sum(-1), torch.ones(2, 3), atol=1e-4) and torch.allclose(
                weights, torch.softmax(q @ k.transpose(-2, -1) / 8, dim=-1), atol=1e-5):
            fail("the scores are divided by d, not by sqrt(d)")
        expect_close("attention(q, k, v)[1] (the weights)", weights, want_w)
    expect_close("attention(q, k, v)[0] (the output)", out, want_out)
    # 2. some keys masked, and one query batch with every key masked
    mask = torch.tensor([[True, False, True, True, False], [False] * 5])
    result = call_without(attention, library, q, k, v, key_mask=mask)
    out, weights = _pair("attention(q, k, v, key_mask)", result, (2, 3, 4), (2, 3, 5))
    want_out, want_w = _reference_attention(q, k, v, mask)
    if torch.isnan(weights[0]).any() or torch.isnan(out[0]).any():
        fail("attention(q, k, v, key_mask) gives NaN where some keys are still allowed; set "
             "masked scores to -inf BEFORE the softmax (not the weights after it)")
    if not torch.allclose(weights[0], want_w[0], atol=1e-5):
        if torch.allclose(weights[0], _reference_attention(q, k, v)[1][0], atol=1e-5):
            fail("the key mask is not applied: masked keys (False in key_mask) must get weight 0")
        if torch.allclose(weights[0][..., ~mask[0]], torch.zeros(3, 2)) and not torch.allclose(
                weights[0].sum(-1), torch.ones(3), atol=1e-4):
            fail("the masked keys get weight 0 but the weights no longer sum to 1: set the "
                 "scores to -inf before the softmax instead of zeroing the weights after it")
        expect_close("attention(q, k, v, key_mask)[1][0] (weights of the first batch)",
                     weights[0], want_w[0])
    if torch.isnan(weights[1]).any() or torch.isnan(out[1]).any():
        fail("a query whose keys are ALL masked gives NaN (softmax of a row of -inf is 0 / 0); "
             "turn those NaNs into zeros after the softmax, so that such a query gets zero "
             "weights and a zero output")
    expect_close("attention(q, k, v, key_mask)[1][1] (a batch with every key masked)",
                 weights[1], torch.zeros(3, 5))
    expect_close("attention(q, k, v, key_mask)[0]", out, want_out)
    # 3. extra leading (head) dimension
    q4, k4, v4 = q.view(2, 3, 2, 4).transpose(1, 2), k.view(2, 5, 2, 4).transpose(1, 2), \
        v.view(2, 5, 2, 2).transpose(1, 2)
    out, weights = _pair("attention(q (2, 2, 3, 4), k, v)", call(attention, q4, k4, v4),
                         (2, 2, 3, 2), (2, 2, 3, 5))
    expect_close("attention with a heads dimension [0]", out, _reference_attention(q4, k4, v4)[0])
    return "scaled scores, masked keys, an empty row gives zeros, extra batch dimensions"


@register("6.2", "modality_tokens projects each modality and adds its modality embedding",
          hint="token j = the j-th modality of proj, projected, plus row j of the embedding; follow "
               "the order of proj (not of features) and stack the tokens along axis 1.")
def check_modality_tokens(modality_tokens) -> str:
    torch.manual_seed(62)
    dims = {"image": 5, "audio": 3, "text": 4}
    proj = nn.ModuleDict({m: nn.Linear(d, 6) for m, d in dims.items()})
    embedding = torch.randn(3, 6) * 3
    gen = torch.Generator().manual_seed(2)
    # features given in a different order than proj: the order of proj counts
    features = {m: torch.randn(7, dims[m], generator=gen) for m in ("text", "image", "audio")}
    with torch.no_grad():
        got = call(modality_tokens, features, proj, embedding)
        expect_tensor("modality_tokens(features, proj, embedding)", got, shape=(7, 3, 6))
        base = torch.stack([proj[m](features[m]) for m in dims], dim=1)
        want = base + embedding
        if torch.allclose(got, want, atol=1e-5):
            return "(B, M, dim) tokens that know their modality"
        if torch.allclose(got, base, atol=1e-5):
            fail("the tokens are only the projections: add the modality embedding "
                 "embedding[j] of each modality, or attention cannot tell modalities apart")
        order = torch.stack([proj[m](features[m]) for m in features], dim=1)
        if torch.allclose(got, order + embedding, atol=1e-5) or torch.allclose(
                got, order + embedding[[2, 0, 1]], atol=1e-5):
            fail("the tokens follow the order of the features dict (text, image, audio here); "
                 "use the order of proj (image, audio, text) so token j is always modality j")
        if torch.allclose(got, base + embedding[0], atol=1e-5):
            fail("every modality got embedding[0]: modality j needs its own row embedding[j]")
        if torch.allclose(got, base + embedding.sum(0), atol=1e-5) or torch.allclose(
                got, base + embedding.mean(0), atol=1e-5):
            fail("every modality got the same embedding (a sum or mean of the rows): modality j "
                 "needs its own row embedding[j]")
        expect_close("modality_tokens(features, proj, embedding)", got, want)
    return "(B, M, dim) tokens that know their modality"


def _lowrank_reference(xs, factors, rank_weights, bias):
    product = None
    for x, factor in zip(xs, factors):
        x1 = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
        z = torch.einsum("bd,rdo->rbo", x1, factor)
        product = z if product is None else product * z
    return torch.einsum("ur,rbo->bo", rank_weights, product) + bias


@register("6.3", "lowrank_forward computes low-rank fusion from its factors",
          hint="append a column of ones to each x, map it through every rank factor of its modality "
               "(rank, B, out), multiply the modalities elementwise, then take the "
               "rank_weights-weighted sum over the rank axis and add the bias.")
def check_lowrank(lowrank_forward) -> str:
    from mmcourse.fusion import LowRankFusion

    torch.manual_seed(63)
    fusion = LowRankFusion({"image": 4, "audio": 3, "text": 5}, out_dim=6, rank=3)
    with torch.no_grad():
        fusion.rank_weights.copy_(torch.tensor([[0.7, -0.4, 1.3]]))
        fusion.bias.copy_(torch.linspace(-0.5, 0.5, 6))
    gen = torch.Generator().manual_seed(3)
    xs = [torch.randn(8, d, generator=gen) for d in (4, 3, 5)]
    factors = [f.detach().clone() for f in fusion.factors]
    w, b = fusion.rank_weights.detach().clone(), fusion.bias.detach().clone()
    got = call(lowrank_forward, xs, factors, w, b)
    expect_tensor("lowrank_forward(xs, factors, rank_weights, bias)", got, shape=(8, 6))
    with torch.no_grad():
        want = fusion({"image": xs[0], "audio": xs[1], "text": xs[2]})
    if torch.allclose(got, want, atol=1e-4):
        return "equals LowRankFusion for 3 modalities, rank 3"
    reference = _lowrank_reference(xs, factors, w, b)
    # plausible mistakes, each rebuilt and compared
    def with_constant(c):
        product = None
        for x, f in zip(xs, factors):
            z = torch.einsum("bd,rdo->rbo", torch.cat([x, torch.full_like(x[:, :1], c)], 1), f)
            product = z if product is None else product * z
        return torch.einsum("ur,rbo->bo", w, product) + b
    if torch.allclose(got, with_constant(0.0), atol=1e-4):
        fail("you appended a 0, not a 1, to each modality's features: the constant 1 is what "
             "keeps the unimodal and pairwise terms in the product")
    zs = [torch.einsum("bd,rdo->rbo", torch.cat([x, torch.ones_like(x[:, :1])], 1), f)
          for x, f in zip(xs, factors)]
    summed = torch.einsum("ur,rbo->bo", w, zs[0] + zs[1] + zs[2]) + b
    if torch.allclose(got, summed, atol=1e-4):
        fail("the modalities' projections are added; low-rank fusion MULTIPLIES them "
             "elementwise (that product is what makes it bilinear, like the outer product)")
    product = zs[0] * zs[1] * zs[2]
    if torch.allclose(got, product.sum(0) + b, atol=1e-4) or torch.allclose(
            got, product.mean(0) + b, atol=1e-4):
        fail("the rank components are summed or averaged equally: weight them with "
             "rank_weights (1, rank) before summing")
    if torch.allclose(got, reference - b, atol=1e-4):
        fail("the bias is missing: add bias (out,) at the end")
    expect_close("lowrank_forward(xs, factors, rank_weights, bias)", got, want, atol=1e-4)
    return "equals LowRankFusion for 3 modalities, rank 3"


def _trapezoid(x, y):
    return sum((x[i + 1] - x[i]) * (y[i + 1] + y[i]) / 2 for i in range(len(x) - 1))


@register("6.4", "area under an accuracy-vs-severity curve, and the pair that loses the most",
          hint="the trapezoid rule: add, over neighbouring severities, the width of each step times "
               "the mean of the two accuracies at its ends. A pair's loss is its accuracy at the "
               "first severity (clean) minus its area; return the pair of `curves` with the "
               "LARGEST loss, and that loss.")
def check_robustness(answer, curves=None, severities=None) -> str:
    if not isinstance(answer, (tuple, list)) or len(answer) != 2 or not callable(answer[0]):
        fail(f"check('6.4', ...) expects (area_under_curve, least_robust) with least_robust = "
             f"(method, modality, loss), got {type(answer).__name__}")
    area_under_curve, least = answer
    cases = [((0.0, 0.5, 1.0), (0.9, 0.7, 0.3), 0.65),
             ((0.0, 0.1, 0.5, 1.0), (0.8, 0.8, 0.4, 0.2), 0.08 + 0.24 + 0.15),
             ((0.0, 1.0), (0.6, 0.2), 0.4),
             ((0.2, 0.4, 0.8), (1.0, 1.0, 0.5), 0.2 + 0.3)]
    from mmcourse.exercises.library_calls import call_without

    # numpy's public functions are dispatchers; the Python code that a profile hook sees is their
    # _implementation
    ready_made = {getattr(f, "_implementation", f): f"numpy.{name}"
                  for name in ("trapezoid", "trapz") if callable(f := getattr(np, name, None))}
    for s, a, want in cases:
        name = f"area_under_curve({list(s)}, {list(a)})"
        got = expect_number(name, call_without(area_under_curve, ready_made, list(s), list(a)),
                            "the area (a number)")
        if math.isclose(got, want, abs_tol=1e-6):
            continue
        if math.isclose(got, sum(a) / len(a), abs_tol=1e-6):
            fail(f"{name} returned {got:.4g}, the plain mean of the accuracies; the trapezoid rule "
                 f"weights each accuracy by half the width of the segments on either side of it, so "
                 f"the two end points count half as much as the inner ones (and unevenly spaced "
                 f"severities count unequally)")
        left = sum((s[i + 1] - s[i]) * a[i] for i in range(len(s) - 1))
        if math.isclose(got, left, abs_tol=1e-6):
            fail(f"{name} returned {got:.4g}, a left Riemann sum (rectangles); average the two "
                 f"ends of each segment instead of taking its left end")
        if math.isclose(got, sum(a), abs_tol=1e-6) or math.isclose(got, want * 2, abs_tol=1e-6):
            fail(f"{name} returned {got:.4g} but {want:.4g} was expected: each trapezoid's "
                 f"area is its width times the MEAN of its two heights")
        fail(f"{name} returned {got:.4g} but {want:.4g} was expected")
    if curves is None or severities is None:
        return "the trapezoid rule"
    if not isinstance(least, (tuple, list)) or len(least) != 3:
        fail(f"least_robust must be (method, modality, loss), got {describe(least)}")
    method, modality, loss = least
    severities = list(severities)
    areas = {(mth, m): _trapezoid(severities, list(acc))
             for mth, per in curves.items() for m, acc in per.items()}
    losses = {pair: curves[pair[0]][pair[1]][0] - area for pair, area in areas.items()}
    want_pair = max(losses, key=losses.get)
    want_loss = losses[want_pair]
    loss = expect_number("least_robust[2] (the loss)", loss, "the loss (a number)")
    if (method, modality) not in areas:
        fail(f"least_robust names ({method!r}, {modality!r}), which is not a pair of `curves`; "
             f"methods are {list(curves)}, modalities {list(next(iter(curves.values())))}")
    pair = (method, modality)
    if pair != want_pair:
        if pair == min(areas, key=areas.get):
            fail(f"({method!r}, {modality!r}) has the smallest AREA: the lowest curve, which may "
                 f"simply start low. The question asks which pair LOSES the most: subtract each "
                 f"pair's area from its own accuracy at the first severity")
        if pair == min(losses, key=losses.get):
            fail(f"({method!r}, {modality!r}) loses the LEAST, it is the most robust pair; the "
                 f"question asks for the largest loss")
        drops = {p: curves[p[0]][p[1]][0] - curves[p[0]][p[1]][-1] for p in areas}
        if pair == max(drops, key=drops.get):
            fail(f"({method!r}, {modality!r}) has the largest drop from the first to the last "
                 f"severity; the loss asked for is the first accuracy minus the AREA (over severities "
                 f"from 0 to 1, the average height of the whole curve), not minus the last accuracy")
        fail(f"({method!r}, {modality!r}) loses {losses[pair]:.3f}, but another pair loses more; "
             f"compare every method and every corrupted modality")
    if math.isclose(loss, areas[pair], abs_tol=1e-4):
        fail(f"{loss:.4f} is the AREA of ({method!r}, {modality!r}); give its loss, the accuracy "
             f"at the first severity minus the area")
    if math.isclose(loss, -want_loss, abs_tol=1e-4):
        fail(f"{loss:.4f} has the wrong sign: the loss is the accuracy at the first severity minus "
             f"the area (positive when the curve falls)")
    if not math.isclose(loss, want_loss, abs_tol=1e-4):
        fail(f"the loss of ({method!r}, {modality!r}) is {want_loss:.4f} (accuracy at the first "
             f"severity minus the trapezoid area), you gave {loss:.4f}")
    return f"{method} under {modality} corruption loses {want_loss:.3f} on average"


@register("6.5", "a prediction of concatenation's accuracy with every sample's modality corrupted",
          hint="a dict {'image': ..., 'audio': ..., 'text': ...}: for each modality, the test "
               "accuracy you expect from concat fusion when that modality is corrupted in every "
               "test sample (a fraction). Any well-formed prediction passes: section 6 "
               "measures them.")
def check_severity_prediction(answer) -> str:
    from mmcourse.data.course import MODALITY_NAMES

    got = expect_fractions("my_prediction", answer, MODALITY_NAMES, "the predicted accuracy")
    return recorded(got, "section 6 measures them")
