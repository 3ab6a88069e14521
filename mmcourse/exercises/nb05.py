"""Checks for the exercises of notebook 05 (weighted and gated fusion)."""
from __future__ import annotations

import numpy as np
import torch

from mmcourse.exercises.core import call, describe, expect_close, expect_tensor, fail, register
from mmcourse.exercises.predictions import expect_fractions, recorded

_DIMS = {"image": 6, "audio": 5, "text": 4}


def _scores_and_mask() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    scores = torch.randn(6, 3, generator=gen) * 2
    present = torch.tensor([[True, True, True], [True, False, True], [False, False, True],
                            [False, True, False], [True, True, False], [False, False, False]])
    return scores, present


@register("5.1", "masked_weights gives a softmax over the present modalities only",
          hint="mask the missing modalities' scores before the softmax, so that exp gives them "
               "exactly 0 (not after it), and make the row with no modality all zeros instead of "
               "NaN.")
def check_masked_weights(masked_weights) -> str:
    scores, present = _scores_and_mask()
    original = scores.clone()
    from mmcourse.exercises.library_calls import call_without
    from mmcourse.fusion import masked_softmax

    got = call_without(masked_weights, {masked_softmax: "mmcourse.fusion.masked_softmax"},
                       scores, present)
    if not torch.equal(scores, original):
        fail("masked_weights changed the scores in place; use masked_fill (no underscore), "
             "which returns a new tensor")
    expect_tensor("masked_weights(scores, present)", got, shape=(6, 3))
    got = got.detach().float()
    want = torch.nan_to_num(torch.softmax(scores.masked_fill(~present, float("-inf")), 1), nan=0.0)
    if torch.isnan(got).any():
        fail("masked_weights gives NaN for the sample with no modality at all (a softmax over "
             "nothing is 0 / 0); turn those NaNs into zeros after the softmax")
    if torch.allclose(got, want, atol=1e-5):
        return "missing modalities get 0, the others sum to 1, an empty row is all zeros"
    if torch.allclose(got[:5], torch.softmax(scores, 1)[:5], atol=1e-5):
        fail("masked_weights is a plain softmax: missing modalities still get a weight; mask "
             "their scores before the softmax")
    if torch.allclose(got[:5], (torch.softmax(scores, 1) * present)[:5], atol=1e-5):
        fail("masked_weights zeroes the missing modalities AFTER the softmax, so the weights of a "
             "sample with a missing modality no longer sum to 1; mask the scores before it")
    zero_filled = torch.softmax(scores.masked_fill(~present, 0.0), 1)
    if torch.allclose(got[:5], zero_filled[:5], atol=1e-5):
        fail("masked_weights sets the scores of missing modalities to 0, but exp(0) = 1 still "
             "gives them a weight; use float('-inf') (exp(-inf) = 0)")
    if (got[~present].abs() > 1e-6).any():
        fail("masked_weights gives a weight to a missing modality; every False in present "
             "must get weight 0")
    expect_close("masked_weights(scores, present)", got, want, atol=1e-5)
    return "all cases"


def _reference_fusion(hidden: int):
    """The textbook gate the exercise asks for: ``sum_m softmax(gate([x_1; ...]))_m ReLU(W_m x_m)``.

    (The library's GatedFusion improves on it: gates that start at 1, sigmoids, normalised gate
    inputs, applied to concat's blocks; the exercise keeps the formula notebook 05 derives.)"""
    import torch.nn as nn
    import torch.nn.functional as F

    from mmcourse.fusion import Fusion, masked_softmax

    class TextbookGatedFusion(Fusion):
        def __init__(self, dims, out_dim, hidden=64):
            super().__init__(dims, out_dim)
            self.proj = nn.ModuleDict({m: nn.Linear(d, out_dim) for m, d in self.dims.items()})
            self.gate = nn.Sequential(nn.Linear(sum(self.dims.values()), hidden), nn.ReLU(),
                                      nn.Linear(hidden, len(self.dims)))

        def fuse(self, pooled, present):
            h = torch.stack([F.relu(self.proj[m](pooled[m])) for m in self.modalities], dim=1)
            scores = self.gate(torch.cat([pooled[m] for m in self.modalities], dim=1))
            weights = masked_softmax(scores, present)
            self.last_weights = weights.detach()
            return (weights.unsqueeze(-1) * h).sum(1)

    torch.manual_seed(0)
    return TextbookGatedFusion(_DIMS, 8, hidden=hidden)


@register("5.2", "MyGatedFusion computes per-sample gates and the gated sum",
          hint="h_m = ReLU(proj_m(x_m)) side by side for all modalities; gate scores from the "
               "concatenated features (in the order of self.modalities); gates = a softmax over the "
               "present modalities only (keep a detached copy in self.last_weights); output = the "
               "gate-weighted sum of the h_m over the modalities.")
def check_gated_fusion(cls) -> str:
    if not isinstance(cls, type):
        fail(f"answer with the class MyGatedFusion itself, not {describe(cls)}")
    from mmcourse.fusion import Fusion

    if not issubclass(cls, Fusion):
        fail("MyGatedFusion must subclass mmcourse.fusion.Fusion (class MyGatedFusion(Fusion))")
    mine = call(cls, _DIMS, 8, hidden=16)
    ref = _reference_fusion(16)
    try:
        mine.load_state_dict(ref.state_dict())
    except RuntimeError as err:
        names = sorted(k for k, _ in mine.named_parameters())
        fail(f"MyGatedFusion's parameters do not have the expected layout ({names}); keep "
             f"self.proj = nn.ModuleDict of nn.Linear(D_m, out_dim) and self.gate = "
             f"nn.Sequential(nn.Linear(sum of D_m, hidden), nn.ReLU(), nn.Linear(hidden, M)) "
             f"({str(err).splitlines()[0]})")
    gen = torch.Generator().manual_seed(2)
    feats = {m: torch.randn(5, d, generator=gen) for m, d in _DIMS.items()}
    mask = {"image": torch.tensor([True, False, True, True, False]),
            "text": torch.tensor([True, True, False, True, False])}
    with torch.no_grad():
        want = ref(feats, mask)
        got = call(mine, feats, mask)
    expect_tensor("MyGatedFusion(features, mask)", got, shape=(5, 8))
    weights = getattr(mine, "last_weights", None)
    if not isinstance(weights, torch.Tensor):
        fail("MyGatedFusion does not keep its gates: set self.last_weights = weights.detach() "
             "(B, M) in fuse")
    expect_tensor("MyGatedFusion.last_weights", weights, shape=(5, 3))
    present = torch.stack([mask["image"], torch.ones(5, dtype=torch.bool), mask["text"]], 1)
    if (weights[~present].abs() > 1e-6).any():
        fail("a missing modality got a gate weight above 0: take the softmax over the present "
             "modalities only (exercise 5.1's idea; the notebook imports a function for it)")
    sums = weights.sum(1)
    if not torch.allclose(sums, torch.ones(5), atol=1e-4):
        fail(f"the gates of a sample should sum to 1 (a softmax over modalities), got sums "
             f"{[round(float(s), 3) for s in sums]}; a sigmoid per modality does not do that")
    if torch.allclose(weights[[0, 3]], weights[[0, 3]].mean(0, keepdim=True).expand(2, 3),
                      atol=1e-6):
        fail("two complete samples got the same gates; the gates must come from the features of "
             "each sample (self.gate on the concatenated features)")
    expect_close("MyGatedFusion.last_weights", weights.float(), ref.last_weights, atol=1e-5)
    if torch.allclose(got, torch.relu(want), atol=1e-5) and not torch.allclose(got, want, atol=1e-5):
        fail("the output has an extra ReLU after the weighted sum; return the sum itself")
    expect_close("MyGatedFusion(features, mask)", got.float(), want, atol=1e-5)
    return "same gates and output as the textbook gated fusion, missing modalities masked"


@register("5.3", "drop_modalities hides modalities at random but never all of them",
          hint="hide each present modality independently with probability p (a fresh uniform draw "
               "per entry, combined with present), then give every sample left with no modality its "
               "original row back.")
def check_drop_modalities(drop_modalities) -> str:
    gen = torch.Generator().manual_seed(0)
    n = 20000
    present = torch.rand(n, 3, generator=gen) > 0.25
    present[:8000] = True                           # many complete samples, to measure the rate
    present[-100:] = False                           # and a few with nothing at all
    present[-200:-100] = torch.tensor([False, True, False])
    original = present.clone()
    for p in (0.0, 0.2, 0.5):
        out = call(drop_modalities, present, p, torch.Generator().manual_seed(1))
        name = f"drop_modalities(present, {p})"
        if not torch.equal(present, original):
            fail(f"{name} changed present in place; return a new tensor")
        expect_tensor(name, out, shape=(n, 3))
        if out.dtype != torch.bool:
            fail(f"{name} returned dtype {out.dtype}; a bool mask (True = kept) was expected")
        if (out & ~present).any():
            fail(f"{name} turned a missing modality on: a modality can only be hidden, so AND "
                 f"the random draw with present")
        had = present.any(1)
        if (had & ~out.any(1)).any():
            fail(f"{name} hid every modality of some samples; then there is nothing to fuse: "
                 f"give such samples their present modalities back")
        if not torch.equal(out[-200:-100], present[-200:-100]):
            fail(f"{name} hid the only modality of a sample that has just one; it must stay")
        full = out[:8000].float()
        rate = 1.0 - full.mean().item()
        if p == 0.0:
            if rate > 0:
                fail(f"{name} hid {rate:.1%} of the modalities; with p = 0 nothing is hidden")
            continue
        # p - (share of samples whose modalities were all hidden and given back): about p - p^3
        low, high = p - p ** 3 - 0.03, p + 0.03
        if not low <= rate <= high:
            hint = (" (it looks like p is the probability to KEEP a modality; hide with "
                    "probability p)" if abs(rate - (1 - p) + (1 - p) ** 3) < 0.05 or
                    abs(rate - (1 - p)) < 0.05 else "")
            fail(f"{name} hid {rate:.1%} of the modalities of complete samples; about "
                 f"{100 * p:.0f}% (a little less, since all-hidden samples are restored) was "
                 f"expected{hint}")
    return "never all hidden, never switches a missing modality on, rate about p"


def _test_gates() -> tuple[torch.Tensor, np.ndarray]:
    """300 random gate shares and quality rows (image, audio, text levels), on which every wrong
    selection of rows gives other means than the right one."""
    gen = torch.Generator().manual_seed(4)
    gates = torch.softmax(torch.randn(300, 3, generator=gen), 1)
    rng = np.random.default_rng(0)
    quality = np.stack([rng.integers(0, 4, 300), rng.integers(0, 3, 300),
                        rng.integers(0, 4, 300)], 1).astype(np.int8)
    return gates, quality


def _gate_dict(name: str, answer) -> dict:
    from mmcourse.data.course import MODALITY_NAMES

    if not isinstance(answer, dict) or set(answer) != set(MODALITY_NAMES):
        fail(f"{name} must return a dict {{'image': ..., 'audio': ..., 'text': ...}} of mean "
             f"gates, but it returned {describe(answer)}")
    got = {}
    for m in MODALITY_NAMES:
        value = answer[m]
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail(f"{name}[{m!r}] is {describe(value)}; a number (the mean gate) was expected")
        got[m] = float(value)
    return got


def _judge_gate_means(got: dict, gates: torch.Tensor, quality: np.ndarray, where: str) -> dict:
    """Return the right means if ``got`` equals them, else fail naming the wrong selection."""
    from mmcourse.data.course import MODALITY_NAMES, QUALITY_LEVELS

    def means(rows) -> dict:
        rows = torch.as_tensor(rows)
        return {m: float(gates[rows, j].mean()) for j, m in enumerate(MODALITY_NAMES)}

    def same(a, b) -> bool:
        return all(abs(a[m] - b[m]) < 5e-4 for m in MODALITY_NAMES)

    text_q = quality[:, 2]
    has = {m: quality[:, j] != QUALITY_LEVELS[m].index("missing")
           for j, m in enumerate(MODALITY_NAMES)}
    both = has["image"] & has["audio"]
    level = {name: text_q == QUALITY_LEVELS["text"].index(name) for name in QUALITY_LEVELS["text"]}
    want = means(level["misleading"] & both)
    if same(got, want):
        return want
    if same(got, means(level["misleading"])):
        fail(f"{where}: these are the mean gates over ALL samples with a misleading text, like the "
             f"row of the table in section 4; it mixes in samples whose image or audio is missing "
             f"(there the text's share is 1/2 or 1). Keep only the samples whose image and audio "
             f"are present too")
    if same(got, means(level["misleading"] & has["image"])) or \
            same(got, means(level["misleading"] & has["audio"])):
        fail(f"{where}: you removed the samples without an image OR those without audio, not "
             f"both: keep the samples whose image AND audio are present")
    if same(got, means(both)) or same(got, means(np.ones(len(text_q), dtype=bool))):
        fail(f"{where}: these are the mean gates over every text quality; keep only the samples "
             f"whose text is misleading")
    for name, rows in level.items():
        if name != "misleading" and (same(got, means(rows & both)) or same(got, means(rows))):
            fail(f"{where}: these are the mean gates over the samples whose text is {name!r}; the "
                 f"text level 'misleading' has index {QUALITY_LEVELS['text'].index('misleading')}")
    for j, m in enumerate(MODALITY_NAMES[:2]):
        for level_index in range(len(QUALITY_LEVELS[m])):
            rows = quality[:, j] == level_index
            if same(got, means(rows)) or same(got, means(rows & both)):
                fail(f"{where}: these rows were selected with column {j} of quality ({m}); the "
                     f"text quality is column 2")
    given = ", ".join(f"{m} {v:.3f}" for m, v in got.items())
    fail(f"{where} it returned {given}, which is not the mean gate of each modality over the "
         f"samples whose text is misleading and whose image and audio are present; select those "
         f"rows with the columns of quality and average each column of gates over them")


@register("5.4", "the mean gate of each modality on samples with a misleading text and all "
                 "three modalities present",
          hint="keep the samples whose TEXT quality is 'misleading' (the text column of quality) "
               "and whose image and audio are not 'missing' (their columns), then average each "
               "modality's column of gates over them.")
def check_misleading_gates(misleading_gate_means, gates=None, quality=None) -> str:
    if gates is None or quality is None:
        fail("call the check as check('5.4', misleading_gate_means, gates=gates, "
             "quality=gate_quality) with the test gates and quality of the lesson")
    if not callable(misleading_gate_means):
        fail(f"check('5.4', ...) expects the function misleading_gate_means(gates, quality), "
             f"which returns the dict of mean gates; got {describe(misleading_gate_means)}. The "
             f"check runs it on gates of its own first, so a dict of numbers cannot be checked")
    name = getattr(misleading_gate_means, "__name__", "misleading_gate_means")
    test_gates, test_quality = _test_gates()
    got = _gate_dict(f"{name}(gates, quality)",
                     call(misleading_gate_means, test_gates.clone(), test_quality.copy()))
    _judge_gate_means(got, test_gates, test_quality, "on 300 random test gates of the check")
    gates = torch.as_tensor(gates).float()
    quality = np.asarray(quality)
    got = _gate_dict(f"{name}(gates, quality)", call(misleading_gate_means, gates, quality))
    want = _judge_gate_means(got, gates, quality, "on the lesson's gates")
    return (f"right on the check's random gates; on the lesson's, with all three modalities "
            f"present and a misleading text, the text gets {want['text']:.3f} of the gates (an "
            f"even split would give 0.333)")


@register("5.5", "a prediction of the fixed-weight grid's test accuracies, recorded before training",
          hint="a dict with one test accuracy per setting of `grid` (as fractions, 0.80 for 80%), "
               "for example {'equal (1/3 each)': 0.85, ...}. Any well-formed prediction passes: "
               "the next cell measures them.")
def check_grid_prediction(answer, settings=None) -> str:
    if settings is None:
        fail("call the check as check('5.5', my_prediction, settings=grid), so that it knows the "
             "settings of the grid")
    got = expect_fractions("my_prediction", answer, list(settings), "the predicted test accuracy")
    return recorded(got, "the next cell measures them")
