"""mmcourse.fusion: one interface, eight methods, clear errors, masks that really mask."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmcourse.fusion import (FUSION_METHODS, AttentionFusion, ConcatFusion, CrossModalFusion,
                             Fusion, GatedFusion, LateFusion, LowRankFusion, TensorFusion,
                             WeightedFusion, make_fusion, masked_softmax,
                             scaled_dot_product_attention)

METHODS = list(FUSION_METHODS)
DIMS = {"image": 6, "audio": 5, "text": 4}
OUT = 8
B = 4
#: small settings so every method builds and runs in milliseconds
KWARGS = {"attention": {"heads": 2}, "cross": {"heads": 2}, "tensor": {"proj_dim": 3},
          "lowrank": {"rank": 3}}
#: padding of the sequence inputs: True at real positions (every sample has at least one)
POSITIONS = {"image": torch.ones(B, 3, dtype=torch.bool),
             "audio": torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1], [1, 1, 1, 0]]).bool(),
             "text": torch.tensor([[1, 1], [1, 0], [1, 1], [1, 0]]).bool()}


pytestmark = pytest.mark.usefixtures("one_thread")


def build(name: str, dims=DIMS, out_dim: int = OUT, **kwargs) -> Fusion:
    torch.manual_seed(0)
    return make_fusion(name, dims, out_dim, **{**KWARGS.get(name, {}), **kwargs}).eval()


def inputs(kind: str, seed: int = 0) -> dict:
    """Features of every modality of DIMS as pooled (B, D), sequences (B, T, D), (features,
    positions) pairs, or a mix of the three."""
    gen = torch.Generator().manual_seed(seed)
    seqs = {m: torch.randn(B, POSITIONS[m].shape[1], d, generator=gen) for m, d in DIMS.items()}
    if kind == "pooled":
        return {m: s[:, 0] for m, s in seqs.items()}
    if kind == "sequence":
        return seqs
    if kind == "pairs":
        return {m: (s, POSITIONS[m]) for m, s in seqs.items()}
    assert kind == "mix"
    return {"image": seqs["image"][:, 0], "audio": (seqs["audio"], POSITIONS["audio"]),
            "text": seqs["text"]}


def replace(features: dict, modality: str, value) -> dict:
    return {**features, modality: value}


# ---------------------------------------------------------------- the interface

def test_registry_and_flags():
    assert METHODS == ["concat", "late", "weighted", "gated", "attention", "cross", "tensor",
                       "lowrank"]
    for name, cls in FUSION_METHODS.items():
        assert issubclass(cls, Fusion) and issubclass(cls, nn.Module)
        fusion = build(name)
        assert type(fusion) is cls
        assert fusion.modalities == tuple(DIMS) and fusion.dims == DIMS and fusion.out_dim == OUT
        assert fusion.uses_sequences == (name in ("attention", "cross"))
        assert fusion.outputs_logits == (name == "late")
        assert "out_dim=8" in repr(fusion)


def test_make_fusion_passes_keyword_arguments_and_rejects_unknown_names():
    assert build("late", combine="learned").combine == "learned"
    assert build("lowrank", rank=5).rank == 5
    with pytest.raises(ValueError,
                       match=r"unknown fusion method 'sum'; expected one of \['concat'"):
        make_fusion("sum", DIMS, OUT)
    with pytest.raises(TypeError):
        make_fusion("concat", DIMS, OUT, bogus=1)


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("kind", ["pooled", "sequence", "pairs", "mix"])
def test_output_shape_for_pooled_sequence_and_mixed_inputs(name, kind):
    fusion = build(name)
    out = fusion(inputs(kind))
    assert out.shape == (B, OUT) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    # the order of the dict does not matter, only the names
    reordered = dict(reversed(list(inputs(kind).items())))
    torch.testing.assert_close(fusion(reordered), out)


@pytest.mark.parametrize("name", METHODS)
def test_mask_none_empty_or_all_true_are_the_same(name):
    fusion, x = build(name), inputs("pairs")
    out = fusion(x)
    torch.testing.assert_close(fusion(x, {}), out)
    torch.testing.assert_close(fusion(x, {m: torch.ones(B, dtype=torch.bool) for m in DIMS}), out)
    # lists and 0/1 integer masks are accepted too
    torch.testing.assert_close(fusion(x, {"audio": [True] * B}), out)
    torch.testing.assert_close(fusion(x, {"audio": torch.ones(B, dtype=torch.long)}), out)


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("kind", ["pooled", "pairs"])
def test_a_masked_modality_is_never_read(name, kind):
    fusion, x = build(name), inputs(kind)
    mask = {"audio": torch.tensor([True, False, True, False]),
            "text": torch.tensor([False, False, True, True])}
    out = fusion(x, mask)
    missing = ~mask["audio"]
    for fill in (torch.randn(1).item() * 100, float("nan"), float("inf"), -float("inf")):
        if kind == "pooled":
            changed = x["audio"].clone()
            changed[missing] = fill
        else:
            changed = x["audio"][0].clone()
            changed[missing] = fill
            changed = (changed, x["audio"][1])
        torch.testing.assert_close(fusion(replace(x, "audio", changed), mask), out,
                                   msg=f"{name}: a masked modality set to {fill} changed it")
    # ...whereas the features of a *present* modality do matter
    if kind == "pooled":
        other = x["audio"] + 1.0
    else:
        other = (x["audio"][0] + 1.0, x["audio"][1])
    changed_out = fusion(replace(x, "audio", other), mask)
    assert not torch.allclose(changed_out[mask["audio"]], out[mask["audio"]])
    torch.testing.assert_close(changed_out[missing], out[missing])


@pytest.mark.parametrize("name", METHODS)
def test_padding_positions_are_ignored(name):
    fusion, x = build(name), inputs("pairs")
    out = fusion(x)
    for fill in (5.0, float("nan"), float("inf")):
        changed = {}
        for m, (seq, pos) in x.items():
            seq = seq.clone()
            seq[~pos] = fill
            changed[m] = (seq, pos)
        torch.testing.assert_close(fusion(changed), out,
                                   msg=f"{name}: padding set to {fill} changed the output")


@pytest.mark.parametrize("name", [n for n in METHODS if not FUSION_METHODS[n].uses_sequences])
def test_pooled_methods_average_a_sequence_over_its_real_positions(name):
    fusion, x = build(name), inputs("pairs")
    means = {m: (seq * pos[..., None]).sum(1) / pos.sum(1, keepdim=True)
             for m, (seq, pos) in x.items()}
    torch.testing.assert_close(fusion(x), fusion(means))
    # a sequence without positions: every position is real
    seqs = inputs("sequence")
    torch.testing.assert_close(fusion(seqs), fusion({m: s.mean(1) for m, s in seqs.items()}))


@pytest.mark.parametrize("name", METHODS)
def test_a_present_modality_without_real_positions_gives_finite_output(name):
    fusion, x = build(name), inputs("pairs")
    seq, pos = x["text"]
    pos = pos.clone()
    pos[1] = False
    assert torch.isfinite(fusion(replace(x, "text", (seq, pos)))).all()


@pytest.mark.parametrize("name", METHODS)
def test_gradients_are_finite_when_masked_inputs_hold_nan(name):
    fusion = build(name).train()
    x = inputs("pairs")
    seq, pos = x["audio"]
    seq = seq.clone()
    seq[0] = float("nan")
    mask = {"audio": torch.tensor([False, True, True, True])}
    fusion(replace(x, "audio", (seq, pos)), mask).sum().backward()
    grads = [p.grad for p in fusion.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


# ---------------------------------------------------------------- bad input

def _bad_features():
    x = inputs("pooled")
    seq, pos = inputs("pairs")["audio"]
    return [
        ("unknown", {**x, "video": torch.zeros(B, 3)},
         r"unknown modality 'video': this fusion was built for \['image', 'audio', 'text'\]"),
        ("absent", {m: v for m, v in x.items() if m != "text"},
         r"no features for 'text'"),
        ("size", replace(x, "image", torch.zeros(B, 7)),
         r"features\['image'\] has size 7 .*dims says 6"),
        ("size of a sequence", replace(x, "audio", (torch.zeros(B, 4, 3), pos)),
         r"features\['audio'\] has size 3 .*dims says 5 \(shape \(4, 4, 3\)\)"),
        ("batch", replace(x, "audio", torch.zeros(B + 1, 5)),
         r"batch sizes disagree: image 4, audio 5, text 4"),
        ("batch of a sequence", replace(x, "text", torch.zeros(B - 1, 2, 4)),
         r"batch sizes disagree: image 4, audio 4, text 3"),
        ("4-d", replace(x, "image", torch.zeros(B, 2, 2, 6)),
         r"features\['image'\] must be a tensor \(B, D\) or \(B, T, D\), got a tensor of shape "
         r"\(4, 2, 2, 6\)"),
        ("1-d", replace(x, "image", torch.zeros(6)),
         r"features\['image'\] must be a tensor .* got a tensor of shape \(6,\)"),
        ("not a tensor", replace(x, "image", x["image"].numpy()),
         r"features\['image'\] must be a tensor .* got a ndarray"),
        ("integer", replace(x, "image", torch.zeros(B, 6, dtype=torch.long)),
         r"features\['image'\] must be floating point, got torch.int64"),
        ("triple", replace(x, "audio", (seq, pos, pos)),
         r"the pooled features of 'audio' \(third in its tuple\) must be a float tensor of "
         r"shape \(4, 5\), got a tensor of shape \(4, 4\)"),
        ("quadruple", replace(x, "audio", (seq, pos, pos, pos)),
         r"features\['audio'\] is a tuple of 4 items; a tuple must be \(features"),
        ("positions shape", replace(x, "audio", (seq, pos[:, :2])),
         r"positions of 'audio' must be a bool tensor of shape \(4, 4\), got a tensor of shape "
         r"\(4, 2\)"),
        ("positions not a tensor", replace(x, "audio", (seq, pos.tolist())),
         r"positions of 'audio' must be a bool tensor of shape \(4, 4\), got a list"),
        ("pooled with positions", replace(x, "audio", (seq[:, 0], pos)),
         r"features\['audio'\] came with positions but is pooled \(4, 5\)"),
    ]


BAD_FEATURES = _bad_features()


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("case", BAD_FEATURES, ids=[c[0] for c in BAD_FEATURES])
def test_bad_features_raise_a_clear_value_error(name, case):
    _, features, message = case
    with pytest.raises(ValueError, match=message):
        build(name)(features)


BAD_MASKS = [
    ("unknown", {"video": torch.ones(B, dtype=torch.bool)},
     r"mask names unknown modality 'video': this fusion was built for "
     r"\['image', 'audio', 'text'\]"),
    ("shape", {"audio": torch.ones(B + 1, dtype=torch.bool)},
     r"mask\['audio'\] must be a bool tensor of shape \(4,\), got a tensor of shape \(5,\)"),
    ("2-d", {"audio": torch.ones(B, 1, dtype=torch.bool)},
     r"mask\['audio'\] must be a bool tensor of shape \(4,\), got a tensor of shape \(4, 1\)"),
    ("float", {"audio": torch.ones(B)},
     r"mask\['audio'\] must be a bool tensor of shape \(4,\), .* dtype torch.float32"),
    ("all masked", {"image": torch.tensor([True, False, True, False]),
                    "audio": torch.tensor([True, False, False, False]),
                    "text": torch.tensor([False, False, True, False])},
     r"every modality is masked for sample\(s\) \[1, 3\]: there is nothing to fuse"),
]


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("case", BAD_MASKS, ids=[c[0] for c in BAD_MASKS])
def test_bad_masks_raise_a_clear_value_error(name, case):
    _, mask, message = case
    with pytest.raises(ValueError, match=message):
        build(name)(inputs("pairs"), mask)


@pytest.mark.parametrize("name", METHODS)
def test_features_and_mask_must_be_dicts(name):
    fusion = build(name)
    x = inputs("pooled")
    with pytest.raises(TypeError, match=r"features must be a dict .* got list"):
        fusion(list(x.values()))
    with pytest.raises(TypeError, match=r"mask must be a dict .* got Tensor"):
        fusion(x, torch.ones(B, 3, dtype=torch.bool))


@pytest.mark.parametrize("name", METHODS)
def test_a_sample_with_a_single_modality_left_is_fine(name):
    mask = {"image": torch.tensor([True, False, False, False]),
            "audio": torch.tensor([False, True, False, False]),
            "text": torch.tensor([False, False, True, True])}
    out = build(name)(inputs("pairs"), mask)
    assert out.shape == (B, OUT) and torch.isfinite(out).all()


@pytest.mark.parametrize("dims, out_dim, message", [
    ({}, 4, r"dims must be a non-empty mapping .* got \{\}"),
    ([("image", 4)], 4, r"dims must be a non-empty mapping .* got \[\('image', 4\)\]"),
    ({"image": 0}, 4, r"bad entries: \{'image': 0\}"),
    ({"image": 4.0}, 4, r"bad entries: \{'image': 4.0\}"),
    ({"image": True}, 4, r"bad entries: \{'image': True\}"),
    ({1: 4}, 4, r"bad entries: \{1: 4\}"),
    ({"image": 4}, 0, r"out_dim must be a positive integer, got 0"),
    ({"image": 4}, 2.5, r"out_dim must be a positive integer, got 2.5"),
])
@pytest.mark.parametrize("name", ["concat", "late", "weighted", "gated", "attention", "tensor",
                                  "lowrank"])
def test_bad_dims_and_out_dim_raise(name, dims, out_dim, message):
    with pytest.raises(ValueError, match=message):
        make_fusion(name, dims, out_dim)


@pytest.mark.parametrize("build_bad, message", [
    (lambda: LateFusion(DIMS, 3, combine="max"),
     r"combine must be 'average' or 'learned', got 'max'"),
    (lambda: WeightedFusion(DIMS, 3, fixed_weights={"image": 1, "audio": 1}),
     r"fixed_weights must give one weight per modality \['image', 'audio', 'text'\], got "
     r"\['image', 'audio'\]"),
    (lambda: WeightedFusion(DIMS, 3, fixed_weights={"image": 1, "audio": -1, "text": 1}),
     r"fixed_weights must be non-negative with a positive sum"),
    (lambda: WeightedFusion(DIMS, 3, fixed_weights={"image": 0, "audio": 0, "text": 0}),
     r"fixed_weights must be non-negative with a positive sum"),
    (lambda: AttentionFusion(DIMS, 6, heads=4), r"out_dim \(6\) must be divisible by heads \(4\)"),
    (lambda: CrossModalFusion(DIMS, 6, heads=4), r"out_dim \(6\) must be divisible by heads \(4\)"),
    (lambda: CrossModalFusion(DIMS, 8, query="video"),
     r"unknown query modality 'video'; expected one of \['image', 'audio', 'text'\]"),
    (lambda: CrossModalFusion({"image": 4}, 8), r"cross-modal attention needs at least two"),
    (lambda: TensorFusion({m: 4 for m in "abcde"}, 8, proj_dim=32),
     r"the outer product would have 39135393 entries; lower proj_dim \(now 32\)"),
    (lambda: LowRankFusion(DIMS, 8, rank=0), r"rank must be a positive integer, got 0"),
])
def test_bad_options_raise(build_bad, message):
    with pytest.raises(ValueError, match=message):
        build_bad()


# ---------------------------------------------------------------- every method learns

TOY_DIMS = {"a": 2, "b": 2, "noise": 2}
#: additive methods (late, weighted: f(a) + g(b)) cannot represent an XOR of two modalities,
#: so they get the task where one modality decides; every other method gets the interaction
TOY_TASK = {"late": "one", "weighted": "one"}


def toy_data(task: str, n: int = 256, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = {m: torch.randn(n, d, generator=gen) for m, d in TOY_DIMS.items()}
    if task == "one":  # the second modality alone decides
        y = (x["b"][:, 0] > 0).long()
    else:  # XOR: neither modality alone says anything about the label
        y = ((x["a"][:, 0] > 0) ^ (x["b"][:, 0] > 0)).long()
    return x, y


@pytest.mark.parametrize("name", METHODS)
def test_every_method_learns_a_toy_task(name):
    task = TOY_TASK.get(name, "xor")
    torch.manual_seed(0)
    fusion = make_fusion(name, TOY_DIMS, 2 if name == "late" else 16, **KWARGS.get(name, {}))
    head = nn.Identity() if fusion.outputs_logits else nn.Linear(16, 2)
    model = nn.Sequential()  # only to collect the parameters
    model.fusion, model.head = fusion, head
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-2)
    x, y = toy_data(task)
    losses = []
    for _ in range(150):
        loss = F.cross_entropy(head(fusion(x)), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if loss.item() < 0.1:
            break
    assert losses[-1] < 0.6 * losses[0], f"{name}: loss {losses[0]:.3f} -> {losses[-1]:.3f}"
    x_test, y_test = toy_data(task, seed=1)
    with torch.no_grad():
        acc = (head(fusion(x_test)).argmax(1) == y_test).float().mean().item()
    assert acc >= 0.85, f"{name} reached held-out accuracy {acc:.3f} on the {task} task"


# ---------------------------------------------------------------- the bilinear family

def test_lowrank_factors_are_a_parameter_list_that_trains():
    fusion = LowRankFusion(DIMS, OUT, rank=3)
    assert isinstance(fusion.factors, nn.ParameterList) and len(fusion.factors) == len(DIMS)
    for factor, d in zip(fusion.factors, DIMS.values()):
        assert factor.shape == (3, d + 1, OUT) and factor.requires_grad
    registered = {id(p) for p in fusion.parameters()}
    assert all(id(f) in registered for f in fusion.factors)
    assert any(name.startswith("factors.") for name, _ in fusion.named_parameters())
    before = [f.detach().clone() for f in fusion.factors]
    optimizer = torch.optim.SGD(fusion.parameters(), lr=0.1)
    fusion(inputs("pooled")).pow(2).mean().backward()
    for f in fusion.factors:
        assert f.grad is not None and f.grad.abs().sum() > 0
    assert fusion.rank_weights.grad is not None and fusion.bias.grad is not None
    optimizer.step()
    assert all(not torch.equal(b, f) for b, f in zip(before, fusion.factors))


def test_lowrank_computes_the_formula():
    fusion = LowRankFusion(DIMS, OUT, rank=3)
    with torch.no_grad():
        fusion.bias.normal_()
        fusion.rank_weights.normal_()
    x = inputs("pooled")
    mask = {"text": torch.tensor([True, False, True, True])}
    expected = torch.zeros(B, OUT)
    for r in range(3):
        term = torch.ones(B, OUT)
        for m, factor in zip(DIMS, fusion.factors):
            xm = x[m] * mask.get(m, torch.ones(B, dtype=torch.bool))[:, None]
            term = term * (torch.cat([xm, torch.ones(B, 1)], 1) @ factor[r])
        expected += fusion.rank_weights[0, r] * term
    torch.testing.assert_close(fusion(x, mask), expected + fusion.bias, rtol=1e-5, atol=1e-5)


def test_tensor_fusion_uses_the_outer_product_with_appended_ones():
    dims = {"a": 3, "b": 2}
    fusion = TensorFusion(dims, 5, proj_dim=2)
    assert fusion.product_size == 3 * 3 and fusion.out.in_features == 9
    seen = {}
    fusion.out.register_forward_hook(lambda mod, inp, out: seen.update(product=inp[0]))
    gen = torch.Generator().manual_seed(0)
    x = {"a": torch.randn(B, 3, generator=gen), "b": torch.randn(B, 2, generator=gen)}
    mask = {"b": torch.tensor([True, True, False, True])}
    out = fusion(x, mask)
    za = F.relu(fusion.proj["a"](x["a"]))
    zb = F.relu(fusion.proj["b"](x["b"])) * mask["b"][:, None]
    za1, zb1 = torch.cat([za, torch.ones(B, 1)], 1), torch.cat([zb, torch.ones(B, 1)], 1)
    expected = (za1[:, :, None] * zb1[:, None, :]).flatten(1)  # (B, 3 * 3)
    torch.testing.assert_close(seen["product"], expected)
    torch.testing.assert_close(out, F.relu(fusion.out(expected)))
    product = seen["product"].view(B, 3, 3)
    torch.testing.assert_close(product[:, :2, 2], za)  # unimodal terms of a (times b's 1)
    torch.testing.assert_close(product[:, 2, :2], zb)  # unimodal terms of b
    assert (product[:, 2, 2] == 1).all()               # the constant
    # with b missing, only a's unimodal terms and the constant remain: the output still
    # depends on a
    torch.testing.assert_close(product[2, :2, :2], torch.zeros(2, 2))
    x2 = {**x, "a": x["a"] + 1.0}
    assert not torch.allclose(fusion(x2, mask)[2], out[2])


def test_tensor_fusion_is_not_additive():
    """The output depends on the product of the modalities, not on a sum of separate terms."""
    fusion = TensorFusion({"a": 2, "b": 2}, 3, proj_dim=2)
    with torch.no_grad():
        for proj in fusion.proj.values():  # make both projections active (ReLU > 0)
            proj.weight.copy_(torch.eye(2))
            proj.bias.fill_(1.0)
        fusion.out.weight.zero_()
        fusion.out.weight[0, 1] = 1.0     # product index (0, 1) of the 3 x 3 product
        fusion.out.bias.zero_()
    # z_a[0] = 1 + a0 and z_b[1] = 1 + b1, so out[0] = (1 + a0) (1 + b1)
    a = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    out = fusion({"a": a, "b": b})[:, 0].detach()
    torch.testing.assert_close(out, torch.tensor([1.0, 2.0, 2.0, 4.0]))
    # an additive model f(a) + g(b) would give out[3] - out[2] - out[1] + out[0] == 0
    assert (out[3] - out[2] - out[1] + out[0]).item() == pytest.approx(1.0)


# ---------------------------------------------------------------- late and weighted fusion

def test_late_fusion_averages_the_logits_of_present_modalities():
    fusion = LateFusion(DIMS, 3)
    x = inputs("pooled")
    mask = {"audio": torch.tensor([True, False, True, True])}
    out = fusion(x, mask)
    logits = torch.stack([fusion.heads[m](x[m]) for m in DIMS], 1)
    torch.testing.assert_close(fusion.last_logits[[0, 2, 3]], logits[[0, 2, 3]])
    assert fusion.last_logits.shape == (B, 3, 3)
    torch.testing.assert_close(out[0], logits[0].mean(0))
    torch.testing.assert_close(out[1], (logits[1, 0] + logits[1, 2]) / 2)
    assert not fusion.weight_logits.requires_grad
    assert all(p is not fusion.weight_logits for p in fusion.parameters() if p.requires_grad)


def test_late_fusion_learned_weights_train():
    fusion = LateFusion(DIMS, 3, combine="learned")
    assert fusion.weight_logits.requires_grad
    fusion(inputs("pooled")).sum().backward()
    assert fusion.weight_logits.grad is not None


def test_weighted_fusion_fixed_weights_are_not_trained():
    fixed = {"image": 2.0, "audio": 1.0, "text": 1.0}
    fusion = WeightedFusion(DIMS, OUT, fixed_weights=fixed)
    assert "weight_logits" in dict(fusion.named_buffers())
    assert all(p is not fusion.weight_logits for p in fusion.parameters())
    assert fusion.modality_weights() == pytest.approx({"image": 0.5, "audio": 0.25, "text": 0.25})
    before = fusion.weight_logits.clone()
    optimizer = torch.optim.SGD(fusion.parameters(), lr=1.0)
    fusion(inputs("pooled")).sum().backward()
    optimizer.step()
    torch.testing.assert_close(fusion.weight_logits, before)
    # the output is the weighted sum of the projections, renormalised over present modalities
    x = inputs("pooled")
    mask = {"image": torch.tensor([True, False, True, True])}
    out = fusion(x, mask)
    h = {m: F.relu(fusion.proj[m](x[m])) for m in DIMS}
    torch.testing.assert_close(out[0], 0.5 * h["image"][0] + 0.25 * (h["audio"][0] + h["text"][0]))
    torch.testing.assert_close(out[1], 0.5 * (h["audio"][1] + h["text"][1]))
    torch.testing.assert_close(fusion.last_weights[1], torch.tensor([0.0, 0.5, 0.5]))


def test_weighted_fusion_learned_weights_sum_to_one_and_renormalise():
    fusion = WeightedFusion(DIMS, OUT)
    assert isinstance(fusion.weight_logits, nn.Parameter)
    with torch.no_grad():
        fusion.weight_logits.copy_(torch.tensor([0.3, -1.0, 1.2]))
    weights = fusion.modality_weights()
    assert list(weights) == list(DIMS) and sum(weights.values()) == pytest.approx(1.0)
    assert weights["text"] > weights["image"] > weights["audio"]
    mask = {"audio": torch.tensor([True, False, True, False]),
            "text": torch.tensor([True, True, False, False])}
    fusion(inputs("pooled"), mask)
    w = fusion.last_weights
    assert w.shape == (B, 3)
    torch.testing.assert_close(w.sum(1), torch.ones(B))
    assert (w[~mask["audio"], 1] == 0).all() and (w[~mask["text"], 2] == 0).all()
    torch.testing.assert_close(w[0], torch.tensor(list(weights.values())))
    # the ratio of two present modalities stays the global ratio
    assert w[1, 0] / w[1, 2] == pytest.approx(weights["image"] / weights["text"], rel=1e-5)
    torch.testing.assert_close(w[3], torch.tensor([1.0, 0.0, 0.0]))
    # the weights get gradients
    fusion(inputs("pooled")).sum().backward()
    assert fusion.weight_logits.grad is not None and fusion.weight_logits.grad.abs().sum() > 0


def test_gated_fusion_weights_per_sample():
    fusion = GatedFusion(DIMS, OUT, hidden=8)
    nn.init.normal_(fusion.gate[-1].weight)  # a trained gate: not uniform any more
    mask = {"image": torch.tensor([True, True, False, True]),
            "text": torch.tensor([True, False, True, False])}
    x = inputs("pooled")
    out = fusion(x, mask)
    w, g = fusion.last_weights, fusion.last_gates
    assert w.shape == g.shape == (B, 3) and not w.requires_grad and not g.requires_grad
    torch.testing.assert_close(w.sum(1), torch.ones(B))
    assert (w[~mask["image"], 0] == 0).all() and (w[~mask["text"], 2] == 0).all()
    assert (g[~mask["image"], 0] == 0).all() and (g[~mask["text"], 2] == 0).all()
    assert (w[0] > 0).all() and ((g > 0) & (g < 2)).sum() == 9  # 9 present (sample, modality)
    # per sample: two samples with all modalities present get different weights
    fusion(x)
    assert not torch.allclose(fusion.last_weights[0], fusion.last_weights[1])
    present = torch.stack([mask.get(m, torch.ones(B, dtype=torch.bool)) for m in DIMS], 1)
    blocks = torch.stack([fusion.proj[m](x[m]) for m in DIMS], 1) * present.unsqueeze(-1)
    torch.testing.assert_close(out, F.relu(fusion.bias + (g.unsqueeze(-1) * blocks).sum(1)))


@pytest.mark.parametrize("masked", [False, True])
def test_gated_fusion_starts_as_concat(masked):
    """At initialisation every gate is 1 and gated fusion is concat with the same weights."""
    gated, concat = GatedFusion(DIMS, OUT), ConcatFusion(DIMS, OUT)
    with torch.no_grad():
        concat.proj.weight.copy_(torch.cat([gated.proj[m].weight for m in DIMS], dim=1))
        concat.proj.bias.copy_(gated.bias)
    x = inputs("pooled")
    mask = {"audio": torch.tensor([True, False, True, False])} if masked else None
    torch.testing.assert_close(gated(x, mask), concat(x, mask))
    present = torch.ones(B, 3, dtype=torch.bool) if mask is None else torch.stack(
        [mask.get(m, torch.ones(B, dtype=torch.bool)) for m in DIMS], 1)
    torch.testing.assert_close(gated.last_gates, present.float())
    # and it is initialised like concat: the same uniform bound 1 / sqrt(sum of D_m)
    bound = 1 / math.sqrt(sum(DIMS.values()))
    assert all(gated.proj[m].weight.abs().max() <= bound for m in DIMS)


@pytest.mark.parametrize("kind", ["pooled", "pairs"])
def test_attention_fusion_starts_as_concat_of_the_mean_positions(kind):
    """At initialisation the summary token's share (alpha) is zero: attention fusion is concat
    (same weights) on each modality's mean over its real positions; attention then adds to it."""
    attention, concat = AttentionFusion(DIMS, OUT), ConcatFusion(DIMS, OUT)
    with torch.no_grad():
        concat.proj.weight.copy_(torch.cat([attention.concat[m].weight for m in DIMS], dim=1))
        concat.proj.bias.copy_(attention.bias)
    x = inputs(kind)
    mask = {"audio": torch.tensor([True, False, True, False])}
    pooled = {m: v if isinstance(v, torch.Tensor) else
              (v[0] * v[1].unsqueeze(-1)).sum(1) / v[1].sum(1, keepdim=True).clamp(min=1)
              for m, v in x.items()}
    torch.testing.assert_close(attention(x, mask), concat(pooled, mask))
    bound = 1 / math.sqrt(sum(DIMS.values()))
    assert all(attention.concat[m].weight.abs().max() <= bound for m in DIMS)
    # the attention path is live: its scale gets a gradient at once (the read-out is not zero),
    # and once the scale is non-zero the output changes
    attention(x, mask).sum().backward()
    assert attention.alpha.grad is not None and attention.alpha.grad.abs() > 0
    assert attention.readout.weight.abs().sum() > 0
    # so do the per-sample gates on the concat blocks, which start at exactly 1
    torch.testing.assert_close(attention.last_gates, torch.ones(B, len(DIMS)))
    assert attention.gate.weight.grad is not None and attention.gate.weight.grad.abs().sum() > 0
    with torch.no_grad():
        attention.alpha.fill_(1.0)
    assert not torch.allclose(attention(x, mask), concat(pooled, mask))


def test_attention_fusion_gates_scale_each_modality_block_per_sample():
    """A gate of 0 removes a modality's concat block for that sample, a gate of 2 doubles it: with
    the read-out off (alpha = 0), the output is concat of the gated blocks."""
    attention = AttentionFusion(DIMS, OUT)
    x = inputs("pooled")
    target = torch.tensor([[0.0, 1.0, 2.0]]).expand(B, -1)   # image off, text as is, audio x2
    with torch.no_grad():  # gate = 2 sigmoid(bias): bias = logit(g / 2)
        attention.gate.bias.copy_(torch.logit(target[0] / 2, eps=1e-12))
    out = attention(x)
    torch.testing.assert_close(attention.last_gates, target, atol=1e-6, rtol=0)
    by_hand = F.relu(attention.bias + sum(target[:, j:j + 1] * attention.concat[m](x[m])
                                          for j, m in enumerate(DIMS)))
    torch.testing.assert_close(out, by_hand, atol=1e-5, rtol=0)


def _separable(n, gen, noise_dim=8):
    """Modality "a" says the label (a noisy linear rule); modality "b" is pure noise, 10x larger."""
    a = torch.randn(n, 6, generator=gen)
    y = (a[:, :3].sum(1) + 0.5 * torch.randn(n, generator=gen) > 0).long()
    return {"a": a, "b": 10 * torch.randn(n, noise_dim, generator=gen)}, y


@pytest.mark.parametrize("name", ["gated", "attention"])
def test_a_pure_noise_modality_does_not_drag_adaptive_fusion_below_the_other_alone(name):
    """Adaptive fusion contains 'a alone' (gate b to 0, or concat's block of b to 0): adding a
    modality of pure noise must not cost more than a little accuracy on held-out data."""
    def train_and_test(dims):
        torch.manual_seed(0)
        fusion = make_fusion(name, dims, 16, **KWARGS.get(name, {}))
        head = nn.Linear(16, 2)
        params = [*fusion.parameters(), *head.parameters()]
        optimizer = torch.optim.Adam(params, lr=1e-2)
        x, y = _separable(512, torch.Generator().manual_seed(0))
        for _ in range(150):
            loss = F.cross_entropy(head(fusion({m: x[m] for m in dims})), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        x, y = _separable(2000, torch.Generator().manual_seed(1))
        with torch.no_grad():
            return (head(fusion({m: x[m] for m in dims})).argmax(1) == y).float().mean().item()

    alone, both = train_and_test({"a": 6}), train_and_test({"a": 6, "b": 8})
    assert alone > 0.85
    assert both >= alone - 0.03, f"{name}: a alone {alone:.3f}, a + noise {both:.3f}"


# ---------------------------------------------------------------- attention

def test_attention_fusion_attention_maps():
    fusion = build("attention", layers=2)
    with pytest.raises(RuntimeError, match="call the fusion on a batch first"):
        fusion.modality_attention()
    x = inputs("pairs")
    mask = {"audio": torch.tensor([True, False, True, True])}
    fusion(x, mask)
    lengths = [POSITIONS[m].shape[1] for m in DIMS]
    length = 1 + sum(lengths)
    assert fusion.last_attention.shape == (B, length)
    owner = fusion.last_token_modality
    assert owner.tolist() == [-1] + [j for j, t in enumerate(lengths) for _ in range(t)]
    torch.testing.assert_close(fusion.last_attention.sum(1), torch.ones(B))
    # padding and missing modalities get no attention
    keep = torch.cat([POSITIONS[m] & mask.get(m, torch.ones(B, dtype=torch.bool))[:, None]
                      for m in DIMS], 1)
    assert (fusion.last_attention[:, 1:][~keep] == 0).all()
    per_modality = fusion.modality_attention()
    assert per_modality.shape == (B, 3)
    assert (per_modality >= 0).all() and (per_modality.sum(1) <= 1 + 1e-6).all()
    assert per_modality[1, 1] == 0
    # what the summary token does not give to modalities it keeps for itself
    torch.testing.assert_close(per_modality.sum(1) + fusion.last_attention[:, 0], torch.ones(B))


def test_attention_fusion_on_pooled_tokens_has_one_position_per_modality():
    fusion = build("attention")
    fusion(inputs("pooled"))
    assert fusion.last_attention.shape == (B, 4)
    assert fusion.last_token_modality.tolist() == [-1, 0, 1, 2]


def test_cross_modal_fusion_with_one_query():
    fusion = build("cross", query="text")
    assert set(fusion.q_proj) == {"text"}
    x = inputs("pairs")
    # sample 1: text present, every other modality missing -> nothing to attend to
    mask = {"image": torch.tensor([True, False, True, True]),
            "audio": torch.tensor([False, False, True, True])}
    out = fusion(x, mask)
    assert torch.isfinite(out).all()
    assert set(fusion.last_attention) == {"text"}
    t_text = POSITIONS["text"].shape[1]
    t_keys = POSITIONS["image"].shape[1] + POSITIONS["audio"].shape[1]
    att = fusion.last_attention["text"]
    assert att.shape == (B, t_text, t_keys)
    assert fusion.last_key_modality["text"].tolist() == [0] * 3 + [1] * 4
    assert (att[1] == 0).all()  # nothing to attend to: zero weights, not NaN
    torch.testing.assert_close(att[[0, 2, 3]].sum(-1), torch.ones(3, t_text))
    assert (att[0, :, 3:] == 0).all()  # audio missing in sample 0
    # padded audio positions of sample 2 get no attention
    assert (att[2, :, 3:][:, ~POSITIONS["audio"][2]] == 0).all()


def test_cross_modal_fusion_every_modality_queries():
    fusion = build("cross")
    x = inputs("pairs")
    mask = {"image": torch.tensor([True, False, True, True]),
            "audio": torch.tensor([True, False, True, True])}
    out = fusion(x, mask)
    assert torch.isfinite(out).all()
    assert set(fusion.last_attention) == set(DIMS)
    for m, att in fusion.last_attention.items():
        assert att.shape == (B, POSITIONS[m].shape[1], fusion.last_key_modality[m].numel())
        assert torch.isfinite(att).all()
    assert (fusion.last_attention["text"][1] == 0).all()


# ---------------------------------------------------------------- attention helpers

def test_scaled_dot_product_attention_matches_torch():
    gen = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 3, 5, 8, generator=gen), torch.randn(2, 3, 7, 8, generator=gen)
    v = torch.randn(2, 3, 7, 6, generator=gen)
    out, weights = scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v))
    assert weights.shape == (2, 3, 5, 7)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 5))
    torch.testing.assert_close(weights, torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(8), -1))
    key_mask = torch.rand(2, 3, 7, generator=gen) > 0.4
    key_mask[..., 0] = True
    out, weights = scaled_dot_product_attention(q, k, v, key_mask)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask.unsqueeze(-2))
    torch.testing.assert_close(out, expected)
    assert (weights.masked_select(~key_mask.unsqueeze(-2).expand_as(weights)) == 0).all()


def test_scaled_dot_product_attention_fully_masked_rows_are_zero():
    q, k, v = torch.randn(3, 2, 4), torch.randn(3, 5, 4), torch.randn(3, 5, 6)
    key_mask = torch.ones(3, 5, dtype=torch.bool)
    key_mask[1] = False
    out, weights = scaled_dot_product_attention(q, k, v, key_mask)
    assert torch.isfinite(out).all() and torch.isfinite(weights).all()
    assert (out[1] == 0).all() and (weights[1] == 0).all()
    torch.testing.assert_close(weights[[0, 2]].sum(-1), torch.ones(2, 2))


def test_scaled_dot_product_attention_bad_shapes():
    q = torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match="same last dimension, got 4 and 5"):
        scaled_dot_product_attention(q, torch.randn(2, 6, 5), torch.randn(2, 6, 4))
    with pytest.raises(ValueError, match="same number of positions, got 6 and 7"):
        scaled_dot_product_attention(q, torch.randn(2, 6, 4), torch.randn(2, 7, 4))
    with pytest.raises(ValueError, match=r"key_mask must have shape \(2, 6\) .* got \(2, 5\)"):
        scaled_dot_product_attention(q, torch.randn(2, 6, 4), torch.randn(2, 6, 4),
                                     torch.ones(2, 5, dtype=torch.bool))


def test_masked_softmax():
    logits = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True], [True, False, True], [False, False, False]])
    w = masked_softmax(logits, mask)
    torch.testing.assert_close(w[0], torch.softmax(logits[0], 0))
    torch.testing.assert_close(w[1], torch.tensor([math.exp(1), 0, math.exp(3)]) /
                               (math.exp(1) + math.exp(3)))
    assert (w[2] == 0).all()


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("kind", ["pooled", "pairs"])
def test_a_batch_without_samples_gives_an_empty_output(name, kind):
    """(A classifier fuses only the samples that have a modality: possibly none of a batch.)"""
    x = {m: (v[0][:0], v[1][:0]) if isinstance(v, tuple) else v[:0]
         for m, v in inputs(kind).items()}
    out = build(name).train()(x)
    assert out.shape == (0, OUT)
    out.sum().backward()
