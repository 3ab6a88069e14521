"""Checks for the exercises of notebook 04 (alignment, early and late fusion)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mmcourse.exercises.core import call, expect_close, expect_number, expect_tensor, fail, register
from mmcourse.exercises.predictions import expect_fractions, recorded


def _close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-4) -> bool:
    return (isinstance(a, torch.Tensor) and a.shape == b.shape
            and torch.allclose(a.double(), b.double(), atol=atol, rtol=1e-4))


# ---------------------------------------------------------------------------- 4.1 z-scoring

def _zscore_reference(train_x, train_present, x, correction=1):
    rows = train_x[train_present]
    mean = rows.mean(0)
    std = rows.std(0, correction=correction)
    return (x - mean) / torch.where(std > 0, std, torch.ones_like(std))


@register("4.1", "zscore standardises each feature with statistics of the present training rows",
          hint="compute the mean and the std of each feature over the present training rows only "
               "(boolean indexing), replace a std of 0 by 1, and standardise x; do not change the "
               "inputs in place.")
def check_zscore(zscore) -> str:
    gen = torch.Generator().manual_seed(41)
    n, d = 300, 6
    scale = torch.tensor([1.0, 10.0, 0.1, 3.0, 1.0, 5.0])
    offset = torch.tensor([0.0, 20.0, -1.0, 2.0, 0.0, 7.0])
    train_x = torch.randn(n, d, generator=gen) * scale + offset
    train_x[:, 4] = 0.0                      # a feature that never fires on the training set
    train_present = torch.rand(n, generator=gen) > 0.25
    train_x[~train_present] = 0.0            # missing samples: features of "nothing"
    x = torch.randn(40, d, generator=gen) * scale * 2 + offset + 3.0   # a shifted test set
    x[:, 4] = 0.5
    train_copy, x_copy = train_x.clone(), x.clone()

    got = call(zscore, train_x, train_present, x)
    if not (torch.equal(train_x, train_copy) and torch.equal(x, x_copy)):
        fail("zscore changed its inputs in place; compute a new tensor instead")
    expect_tensor("zscore(train_x, train_present, x)", got, shape=(40, d))
    got = got.detach().double()
    want = [_zscore_reference(train_x, train_present, x, c).double() for c in (1, 0)]
    if any(_close(got, w) for w in want):
        return "per-feature train statistics over present rows, a constant feature kept finite"

    if not torch.isfinite(got).all():
        fail("zscore returned inf or NaN: feature 4 is constant (0) on the training set, so its "
             "std is 0; divide by 1 there instead (as scikit-learn's StandardScaler does)")
    if _close(got[:, [0, 1, 2, 3, 5]], want[0][:, [0, 1, 2, 3, 5]]) or \
            _close(got[:, [0, 1, 2, 3, 5]], want[1][:, [0, 1, 2, 3, 5]]):
        fail(f"every feature is right except the one that is constant on the training set: it "
             f"should keep x - mean (divide by 1), giving {float(want[0][0, 4]):.3g}, but zscore "
             f"gave {float(got[0, 4]):.3g}; an epsilon added to std blows it up instead")
    own = (x - x.mean(0)) / torch.where(x.std(0) > 0, x.std(0), torch.ones(d))
    if _close(got, own.double(), atol=1e-3) or got.mean(0).abs().max() < 1e-4:
        fail("zscore standardised x with its OWN mean and std; use the statistics of the "
             "training rows, so that every split is transformed the same way (the test set must "
             "not influence its own preprocessing)")
    every_row = _zscore_reference(train_x, torch.ones(n, dtype=torch.bool), x).double()
    if _close(got, every_row, atol=1e-3) or \
            _close(got, _zscore_reference(train_x, torch.ones(n, dtype=torch.bool), x, 0).double(),
                   atol=1e-3):
        fail("zscore used every training row, including the samples whose modality is missing "
             "(their features are those of a black image / silence / an empty text); compute mean "
             "and std over train_x[train_present] only")
    rows = train_x[train_present]
    scalar = (x - rows.mean()) / rows.std()
    if _close(got, scalar.double(), atol=1e-3):
        fail("zscore used one mean and one std for all features; compute them per feature, "
             "over the rows (dim=0), so each feature gets its own (shape (D,))")
    per_row = (x - x.mean(1, keepdim=True)) / x.std(1, keepdim=True)
    if _close(got, per_row.double(), atol=1e-3):
        fail("zscore standardised each ROW (dim=1), which is what LayerNorm does per sample; "
             "z-scoring standardises each FEATURE with the training statistics (dim=0)")
    expect_close("zscore(train_x, train_present, x)", got, want[0], atol=1e-3)
    return "ok"  # pragma: no cover (expect_close fails above)


# ---------------------------------------------------------------- 4.2 masked adaptive pooling

def _pool_reference(seq: torch.Tensor, positions: torch.Tensor, length: int) -> torch.Tensor:
    out = seq.new_zeros(seq.shape[0], length, seq.shape[2])
    for b in range(seq.shape[0]):
        real = seq[b][positions[b]]                     # (n, D)
        if len(real):
            out[b] = F.adaptive_avg_pool1d(real.T.unsqueeze(0), length)[0].T
    return out


@register("4.2", "masked_adaptive_pool resamples the real positions of each sequence to L",
          hint="per sample: keep only its real positions, average-pool them adaptively over the "
               "position axis to length L (adaptive_avg_pool1d pools the LAST axis), and leave "
               "zeros for a sample without any.")
def check_masked_adaptive_pool(masked_adaptive_pool) -> str:
    gen = torch.Generator().manual_seed(42)
    cases = [((3, 12, 5), [12, 7, 3], 4),      # downsample, with padding
             ((4, 5, 3), [5, 2, 4, 3], 8),      # upsample: fewer real positions than L
             ((2, 6, 4), [6, 6], 6),            # no padding, L = T: unchanged
             ((3, 9, 2), [9, 0, 5], 3)]         # one sample without any real position
    for (b, t, d), lengths, length in cases:
        seq = torch.randn(b, t, d, generator=gen) + 1.0
        positions = torch.arange(t)[None, :] < torch.tensor(lengths)[:, None]
        seq[~positions] = 10.0                  # padding holds junk: it must never be read
        seq_copy = seq.clone()
        name = f"masked_adaptive_pool(seq {tuple(seq.shape)}, lengths {lengths}, L={length})"
        got = call(masked_adaptive_pool, seq, positions, length)
        if not torch.equal(seq, seq_copy):
            fail(f"{name} changed seq in place; compute a new tensor instead")
        if isinstance(got, torch.Tensor) and tuple(got.shape) == (b, t, length) and t != length:
            fail(f"{name} returned shape {tuple(got.shape)}: you pooled the feature axis. The "
                 f"sequence axis is dim 1 of (B, T, D); adaptive_avg_pool1d pools the LAST axis, "
                 f"so transpose to (D, T) first and back after")
        expect_tensor(name, got, shape=(b, length, d))
        got = got.detach().double()
        want = _pool_reference(seq, positions, length).double()
        if _close(got, want):
            continue
        if not torch.isfinite(got).all():
            fail(f"{name} contains NaN or inf: a sample without any real position must give "
                 f"zeros (there is nothing to average)")
        unmasked = F.adaptive_avg_pool1d(seq.transpose(1, 2), length).transpose(1, 2).double()
        if _close(got, unmasked) or (got > 5).any():
            fail(f"{name} averaged padding too: the padded positions (which hold 10.0 here) must "
                 f"never be read. Pool only the n real positions of each sample (seq[b, "
                 f"positions[b]]) to L")
        ok_rows = [i for i in range(b) if torch.allclose(got[i], want[i], atol=1e-4)]
        bad_rows = [i for i in range(b) if i not in ok_rows]
        fail(f"{name} differs from adaptive average pooling of the real positions in sample(s) "
             f"{bad_rows} (lengths {[lengths[i] for i in bad_rows]}); bins must follow "
             f"F.adaptive_avg_pool1d over the n real positions (for n < L positions repeat)")
    return "matches masked adaptive pooling on 4 batches, padding and empty samples included"


# ------------------------------------------------------------ 4.3 late fusion over present ones

def _late_reference(logits: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits, dim=-1)
    w = present.to(logp.dtype).unsqueeze(-1)
    return (logp * w).sum(1) / w.sum(1)


@register("4.3", "late_average averages log-probabilities over the present modalities",
          hint="log_softmax over the classes, then a masked mean over the modality axis: add the "
               "present modalities' log-probabilities and divide by how many are present.")
def check_late_average(late_average) -> str:
    gen = torch.Generator().manual_seed(43)
    b, m, c = 6, 3, 5
    logits = torch.randn(b, m, c, generator=gen) * 3
    present = torch.tensor([[1, 1, 1], [1, 0, 1], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 0]],
                           dtype=torch.bool)
    logits[~present] = torch.tensor([40.0, -40.0, 0.0, 0.0, 0.0])  # loud junk where absent
    logits_copy = logits.clone()
    name = "late_average(logits (6, 3, 5), present (6, 3))"
    got = call(late_average, logits, present)
    if not torch.equal(logits, logits_copy):
        fail("late_average changed logits in place; compute a new tensor instead")
    expect_tensor(name, got, shape=(b, c))
    got = got.detach().double()
    want = _late_reference(logits, present).double()
    if _close(got, want):
        # a second batch with a different number of classes, every modality present
        logits2 = torch.randn(4, 2, 8, generator=gen)
        got2 = call(late_average, logits2, torch.ones(4, 2, dtype=torch.bool))
        expect_close("late_average(logits (4, 2, 8), all present)", got2,
                     torch.log_softmax(logits2, -1).mean(1), atol=1e-4)
        return "log-probabilities averaged over the present modalities only"
    everyone = _late_reference(logits, torch.ones_like(present)).double()
    if _close(got, everyone):
        fail(f"{name} lets absent modalities vote: their logits (junk here, favouring class 0) "
             f"changed the result. Multiply by present and divide by the number of PRESENT "
             f"modalities per sample, not by M")
    by_m = (torch.log_softmax(logits, -1) * present.unsqueeze(-1)).sum(1) / m
    if _close(got, by_m.double()):
        fail(f"{name} divided by M = {m}, the number of modalities; a sample with one present "
             f"modality then gets a third of its log-probabilities. Divide by the number of "
             f"present modalities of each sample (present.sum(1))")
    summed = (torch.log_softmax(logits, -1) * present.unsqueeze(-1)).sum(1).double()
    if _close(got, summed):
        fail(f"{name} summed the log-probabilities; divide by the number of present modalities "
             f"of each sample (w.sum(1)) to average them")
    raw = (logits * present.unsqueeze(-1)).sum(1) / present.sum(1, keepdim=True)
    if _close(got, raw.double()):
        fail(f"{name} averaged raw logits; turn each modality's logits into log-probabilities "
             f"first (torch.log_softmax over the classes, dim=-1), so that each modality's "
             f"scores are on the same scale")
    wrong_axis = (torch.log_softmax(logits, dim=1) * present.unsqueeze(-1)).sum(1) \
        / present.sum(1, keepdim=True)
    if _close(got, wrong_axis.double()):
        fail(f"{name} normalised over the modalities (dim=1); log_softmax must run over the "
             f"classes, the last axis")
    probs = (torch.softmax(logits, -1) * present.unsqueeze(-1)).sum(1) / present.sum(1, keepdim=True)
    if _close(got, probs.double()) or _close(got, probs.log().double()):
        fail(f"{name} averaged probabilities; the late fusion taught here averages "
             f"LOG-probabilities (a product of experts: each confident 'no' counts)")
    expect_close(name, got, want, atol=1e-4)
    return "ok"  # pragma: no cover


# ---------------------------------------------------- 4.4 the gain where the image is missing

@torch.no_grad()
def _gain_variants(feats) -> dict[str, float]:
    """The right answer and the plausible wrong ones, from the frozen unimodal heads."""
    test = feats["test"]
    modalities = list(feats.modalities)
    logp = torch.stack([torch.log_softmax(feats.models[m].head(test.pooled[m].to(feats.device))
                                          .cpu(), -1) for m in modalities], 1)
    present = torch.stack([test.present[m] for m in modalities], 1)
    w = present.float().unsqueeze(-1)
    fused = ((logp * w).sum(1) / w.sum(1).clamp(min=1)).argmax(1)
    fused_all = logp.mean(1).argmax(1)
    correct = lambda pred, rows: float((pred[rows] == test.labels[rows]).float().mean())  # noqa: E731
    subset = ~test.present["image"]
    everyone = torch.ones_like(subset)
    single = {m: correct(logp[:, j].argmax(1), subset) for j, m in enumerate(modalities)}
    single_all = {m: correct(logp[:, j].argmax(1), everyone) for j, m in enumerate(modalities)}
    best = max(single.values())
    return {
        "right": correct(fused, subset) - best,
        "fused accuracy": correct(fused, subset),
        "all samples": correct(fused, everyone) - max(single_all.values()),
        "absent image voted": correct(fused_all, subset) - best,
        "versus the image head": correct(fused, subset) - single["image"],
        "n": float(subset.sum()),
    }


@register("4.4", "the gain of training-free late fusion on the samples whose image is missing",
          hint="fuse by averaging the heads' log-probabilities over each sample's present "
               "modalities (exercise 4.3); on the samples without an image, subtract the accuracy "
               "of the best single head on those same samples from the fused accuracy; a fraction, "
               "not a percentage.")
def check_missing_image_gain(answer, feats=None) -> str:
    if feats is None:
        fail("call check('4.4', gain, feats=feats) so the check can recompute the number from the "
             "same frozen features")
    gain = expect_number("your answer", answer, "the gain as a fraction (for example 0.05)")
    v = _gain_variants(feats)
    if math.isclose(gain, v["right"], abs_tol=1.5e-3):
        return (f"fusion of the frozen heads gains {v['right']:+.3f} over the best single head on "
                f"the {int(v['n'])} test samples without an image")
    if math.isclose(gain, 100 * v["right"], abs_tol=0.15):
        fail(f"{gain:g} looks like percentage points; give the gain as a fraction of 1 "
             f"({gain / 100:.3f})")
    if math.isclose(gain, v["fused accuracy"], abs_tol=1.5e-3):
        fail(f"{gain:.3f} is the accuracy of the fused prediction on those samples; the question "
             f"asks for the GAIN: subtract the best single head's accuracy on the same samples")
    if math.isclose(gain, v["all samples"], abs_tol=1.5e-3):
        fail(f"{gain:.3f} is the gain over the whole test split; keep only the samples whose image "
             f"is missing (~feats['test'].present['image']), for both accuracies")
    if math.isclose(gain, v["absent image voted"], abs_tol=1.5e-3):
        fail(f"{gain:.3f} lets the image head vote on samples without an image (it sees a black "
             f"image); average only over the modalities present in each sample")
    if math.isclose(gain, v["versus the image head"], abs_tol=1.5e-3):
        fail(f"{gain:.3f} compares with the image head, which cannot do anything without an "
             f"image; compare with the BEST single head on those samples")
    fail(f"your answer {gain:.4f} is not the gain the check computes from feats; recompute it: "
         f"accuracy of the fused prediction minus the best single head's accuracy, both on the "
         f"test samples whose image is missing")


FUSIONS_4_5 = ("concat", "late (average)")


@register("4.5", "a prediction of early and late fusion's test accuracy, recorded before training",
          hint="a dict {'concat': ..., 'late (average)': ...} of test accuracies as fractions "
               "(0.80 for 80%). Any well-formed prediction passes: the measurement of section 5, "
               "not the check, says how close you were.")
def check_fusion_prediction(answer) -> str:
    got = expect_fractions("my_prediction", answer, FUSIONS_4_5, "the predicted accuracy")
    return recorded(got, "section 5 measures them")
