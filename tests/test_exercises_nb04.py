"""The checks of notebook 04's exercises pass the solutions and reject plausible wrong answers."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmcourse.exercises import ExerciseFailed, check


def _fails(exercise_id: str, answer, match: str, **kwargs) -> None:
    with pytest.raises(ExerciseFailed, match=match):
        check(exercise_id, answer, **kwargs)


# ------------------------------------------------------------------------------ 4.1 z-scoring

def zscore(train_x, train_present, x):
    rows = train_x[train_present]
    mean, std = rows.mean(0), rows.std(0)
    return (x - mean) / torch.where(std > 0, std, torch.ones_like(std))


def test_4_1_passes_and_rejects():
    assert check("4.1", zscore).passed
    # the biased standard deviation (NumPy's default) is fine too
    assert check("4.1", lambda t, p, x: (x - t[p].mean(0)) / torch.where(
        t[p].std(0, correction=0) > 0, t[p].std(0, correction=0), torch.tensor(1.0))).passed
    _fails("4.1", lambda t, p, x: (x - t[p].mean(0)) / t[p].std(0), "inf or NaN")
    _fails("4.1", lambda t, p, x: (x - t[p].mean(0)) / (t[p].std(0) + 1e-8), "constant")
    _fails("4.1", lambda t, p, x: zscore(x, torch.ones(len(x), dtype=torch.bool), x), "OWN mean")
    _fails("4.1", lambda t, p, x: zscore(t, torch.ones(len(t), dtype=torch.bool), x),
           "including the samples whose modality is missing")
    _fails("4.1", lambda t, p, x: (x - t[p].mean()) / t[p].std(), "one mean and one std")
    _fails("4.1", lambda t, p, x: (x - x.mean(1, keepdim=True)) / x.std(1, keepdim=True),
           "each ROW")
    _fails("4.1", lambda t, p, x: x.sub_(t[p].mean(0)), "in place")
    _fails("4.1", lambda t, p, x: zscore(t, p, x).numpy(), "torch.Tensor")


# ---------------------------------------------------------------- 4.2 masked adaptive pooling

def masked_adaptive_pool(seq, positions, length):
    out = seq.new_zeros(seq.shape[0], length, seq.shape[2])
    for b in range(seq.shape[0]):
        real = seq[b, positions[b]]
        if len(real):
            out[b] = F.adaptive_avg_pool1d(real.T[None], length)[0].T
    return out


def test_4_2_passes_and_rejects():
    assert check("4.2", masked_adaptive_pool).passed
    _fails("4.2", lambda s, p, L: F.adaptive_avg_pool1d(s.transpose(1, 2), L).transpose(1, 2),
           "averaged padding")
    _fails("4.2", lambda s, p, L: F.adaptive_avg_pool1d(s, L), "feature axis")

    def interpolate(s, p, L):
        out = s.new_zeros(s.shape[0], L, s.shape[2])
        for b in range(len(s)):
            real = s[b, p[b]]
            if len(real):
                out[b] = F.interpolate(real.T[None], size=L, mode="linear")[0].T
        return out
    _fails("4.2", interpolate, "differs from adaptive average pooling")

    def no_empty(s, p, L):  # divides by zero for a sample without real positions
        w = p.unsqueeze(-1).float()
        return (F.adaptive_avg_pool1d((s * w).transpose(1, 2), L)
                / F.adaptive_avg_pool1d(w.transpose(1, 2), L)).transpose(1, 2)
    _fails("4.2", no_empty, "differs|NaN")


# ------------------------------------------------------------ 4.3 late fusion over present ones

def late_average(logits, present):
    logp = torch.log_softmax(logits, dim=-1)
    w = present.float().unsqueeze(-1)
    return (logp * w).sum(1) / w.sum(1)


def test_4_3_passes_and_rejects():
    assert check("4.3", late_average).passed
    _fails("4.3", lambda z, p: torch.log_softmax(z, -1).mean(1), "absent modalities vote")
    _fails("4.3", lambda z, p: (torch.log_softmax(z, -1) * p.unsqueeze(-1)).sum(1) / z.shape[1],
           "divided by M")
    _fails("4.3", lambda z, p: (torch.log_softmax(z, -1) * p.unsqueeze(-1)).sum(1), "summed")
    _fails("4.3", lambda z, p: (z * p.unsqueeze(-1)).sum(1) / p.sum(1, keepdim=True), "raw logits")
    _fails("4.3", lambda z, p: (torch.log_softmax(z, 1) * p.unsqueeze(-1)).sum(1)
           / p.sum(1, keepdim=True), "dim=1")
    _fails("4.3", lambda z, p: (torch.softmax(z, -1) * p.unsqueeze(-1)).sum(1)
           / p.sum(1, keepdim=True), "averaged probabilities")
    _fails("4.3", lambda z, p: late_average(z, p)[:, None], "shape")


# ---------------------------------------------------- 4.4 the gain where the image is missing

def _fake_test_split(n: int = 400) -> tuple[dict, SimpleNamespace]:
    """A stand-in for frozen features: heads (identity) and a test split in which each
    modality's features show the class where it is present, under noise."""
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (n,), generator=gen)
    present, pooled, models = {}, {}, {}
    for j, m in enumerate(("image", "audio", "text")):
        present[m] = torch.rand(n, generator=gen) > 0.3
        noise = 0.9 + j * 0.1
        x = F.one_hot(labels, 4).float() * present[m].unsqueeze(1) + noise * torch.randn(n, 4, generator=gen)
        pooled[m] = x
        head = nn.Linear(4, 4)
        with torch.no_grad():
            head.weight.copy_(torch.eye(4) * 2)
            head.bias.zero_()
        models[m] = SimpleNamespace(head=head)
    return models, SimpleNamespace(pooled=pooled, present=present, labels=labels)


class _Feats:
    """Just what the 4.4 check reads from CourseFeatures."""

    modalities = ("image", "audio", "text")
    device = torch.device("cpu")

    def __init__(self):
        self.models, self._test = _fake_test_split()

    def __getitem__(self, split):
        assert split == "test"
        return self._test


def _answer(feats, subset_fn=lambda t: ~t.present["image"], vote_all=False):
    t = feats["test"]
    with torch.no_grad():
        logp = torch.stack([torch.log_softmax(feats.models[m].head(t.pooled[m]), -1)
                            for m in feats.modalities], 1)
    present = torch.stack([t.present[m] for m in feats.modalities], 1)
    if vote_all:
        present = torch.ones_like(present)
    w = present.float().unsqueeze(-1)
    fused = ((logp * w).sum(1) / w.sum(1).clamp(min=1)).argmax(1)
    rows = subset_fn(t)
    acc = lambda pred: float((pred[rows] == t.labels[rows]).float().mean())  # noqa: E731
    return acc(fused), max(acc(logp[:, j].argmax(1)) for j in range(3)), acc(logp[:, 0].argmax(1))


def test_4_4_passes_and_rejects():
    feats = _Feats()
    fused, best, image = _answer(feats)
    assert fused - best > 0.01  # the stand-in makes the variants distinguishable
    assert check("4.4", fused - best, feats=feats).passed
    assert check("4.4", torch.tensor(fused - best), feats=feats).passed
    _fails("4.4", fused - best, "feats=feats")
    _fails("4.4", 100 * (fused - best), "percentage points", feats=feats)
    _fails("4.4", fused, "GAIN", feats=feats)
    f_all, b_all, _ = _answer(feats, subset_fn=lambda t: torch.ones_like(t.labels, dtype=torch.bool))
    _fails("4.4", f_all - b_all, "whole test split", feats=feats)
    f_vote, _, _ = _answer(feats, vote_all=True)
    _fails("4.4", f_vote - best, "present in each sample|GAIN|not the gain", feats=feats)
    _fails("4.4", fused - image, "BEST single head", feats=feats)
    _fails("4.4", "0.1", "a number was expected|fraction", feats=feats)
    _fails("4.4", fused - best + 0.05, "not the gain", feats=feats)


# ------------------------------------------------------------------ 4.5 predict, then measure

def test_4_5_records_any_well_formed_prediction():
    result = check("4.5", {"concat": 0.85, "late (average)": 0.82})
    assert result.passed and "concat 0.85, late (average) 0.82" in result.message
    assert check("4.5", {"concat": 1, "late (average)": 0.0}).passed          # the ends are fine
    assert check("4.5", {"concat": torch.tensor(0.9), "late (average)": 0.9}).passed


@pytest.mark.parametrize("answer, match", [
    ([0.85, 0.82], r"must be a dict .* but it is \[0\.85, 0\.82\] \(list\)"),
    ({"concat": 0.85}, r"has no entry for \['late \(average\)'\]"),
    ({"concat": 0.85, "late": 0.8}, r"has the key 'late', which is not one of"),
    ({"concat": 0.85, "late (average)": 0.8, "gated": 0.9}, r"'gated', which is not one of"),
    ({"concat": "high", "late (average)": 0.8}, r"my_prediction\['concat'\] has 'high' \(str\) "
                                                 r"but a number .* was expected"),
    ({"concat": True, "late (average)": 0.8}, r"has True \(bool\) but a number"),
    ({"concat": 85, "late (average)": 0.8}, r"is 85, but the predicted accuracy is a fraction .* \(85% is 0\.85\)"),
    ({"concat": -0.1, "late (average)": 0.8}, r"is -0\.1, but the predicted accuracy is a fraction between 0 and 1"),
    ({"concat": 250.0, "late (average)": 0.8}, r"is 250, but the predicted accuracy is a fraction between 0 and 1"),
    ({"concat": float("nan"), "late (average)": 0.8}, r"is NaN"),
])
def test_4_5_rejects_malformed_predictions(answer, match):
    _fails("4.5", answer, match)
