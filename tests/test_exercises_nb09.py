"""The checks of notebook 09's exercises pass the solutions and reject plausible wrong answers."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmcourse.alignment import DualEncoder
from mmcourse.data.course import COLOURS
from mmcourse.exercises import ExerciseFailed, check


def _fails(exercise_id: str, answer, match: str, **kwargs) -> None:
    with pytest.raises(ExerciseFailed, match=match):
        check(exercise_id, answer, **kwargs)


# ------------------------------------------------------------------------ 9.1 the loss

def _loss(directions="both", normalise=True, scale="exp", clamp=True, reduce="mean",
          targets="diagonal"):
    def my_clip_loss(image_emb, text_emb, logit_scale):
        u, v = image_emb, text_emb
        if normalise:
            u, v = F.normalize(u, dim=-1), F.normalize(v, dim=-1)
        t = logit_scale.clamp(max=math.log(100)) if clamp else logit_scale
        if scale == "exp":
            logits = t.exp() * u @ v.T
        elif scale == "linear":
            logits = t * u @ v.T
        elif scale == "divide":
            logits = u @ v.T / t
        else:  # .item(): no gradient to the scale
            logits = math.exp(t.item()) * u @ v.T
        target = torch.arange(len(u))
        if targets == "zeros":
            target = torch.zeros_like(target)
        elif targets == "flipped":
            target = target.flip(0)
        i2t, t2i = F.cross_entropy(logits, target), F.cross_entropy(logits.T, target)
        if directions == "image":
            return i2t
        return (i2t + t2i) / 2 if reduce == "mean" else i2t + t2i
    return my_clip_loss


def test_9_1_passes_and_rejects():
    assert check("9.1", _loss()).passed
    _fails("9.1", _loss(directions="image"), "one direction")
    _fails("9.1", _loss(normalise=False), "normalise both")
    _fails("9.1", _loss(scale="linear"), "no exp")
    _fails("9.1", _loss(scale="divide"), "divided")
    _fails("9.1", _loss(clamp=False), "clamp")
    _fails("9.1", _loss(reduce="sum"), "sum of the two")
    _fails("9.1", _loss(scale="item"), "autograd")
    _fails("9.1", _loss(targets="zeros"), "every target 0")
    _fails("9.1", _loss(targets="flipped"), "anti-diagonal")
    _fails("9.1", lambda a, b, t: _loss()(a, b, t) * 1.01, "was expected")
    _fails("9.1", lambda a, b, t: 0.5, "tensor")
    _fails("9.1", "loss", "function")


def test_9_1_rejects_calling_the_library_under_any_name():
    import functools

    from mmcourse import alignment
    from mmcourse.alignment import clip_loss as renamed

    _fails("9.1", lambda a, b, t: alignment.clip_loss(a, b, t), "calls the library's")
    _fails("9.1", lambda a, b, t: renamed(a, b, t), "calls the library's")
    _fails("9.1", functools.partial(renamed), "calls the library's")

    def helper(a, b, t):
        return renamed(a, b, t) + 0 * _loss()(a, b, t)
    _fails("9.1", lambda a, b, t: helper(a, b, t), "calls the library's")


def test_library_call_watch_restores_the_previous_profile_hook():
    import sys

    from mmcourse.exercises.library_calls import call_without

    def other_hook(frame, event, arg):
        pass

    sys.setprofile(other_hook)
    try:
        assert call_without(lambda x: x + 1, {_loss: "a helper"}, 1) == 2
        assert sys.getprofile() is other_hook
        with pytest.raises(ExerciseFailed, match="calls the library's a helper"):
            call_without(lambda: _loss(), {_loss: "a helper"})
        assert sys.getprofile() is other_hook
    finally:
        sys.setprofile(None)


# ------------------------------------------------------------------------ 9.2 recall@k

def recall(similarity, positives, k):
    top = similarity.topk(k, dim=1).indices
    return positives.gather(1, top).any(1).float().mean().item()


def test_9_2_refuses_the_imported_recall_at_k():
    from mmcourse.alignment import recall_at_k

    _fails("9.2", lambda s, p, k: recall_at_k(s, torch.eye(s.shape[1]), k, p)[k],
           "calls the library's mmcourse.alignment.recall_at_k")


def test_9_2_passes_and_rejects():
    assert check("9.2", recall).passed
    _fails("9.2", lambda s, p, k: recall(s, p, k + 1), r"top k \+ 1")
    _fails("9.2", lambda s, p, k: recall(s, p, k - 1) if k > 1 else 0.0, "top k - 1")
    _fails("9.2", lambda s, p, k: recall(s, p, k) * 0.9, "0.9 was expected|was expected")
    _fails("9.2", lambda s, p, k: recall(-s, p, k), "LEAST similar")
    _fails("9.2", lambda s, p, k: recall(s.T.contiguous(), p.T.contiguous(), min(k, s.shape[0])),
           "other direction")
    _fails("9.2", lambda s, p, k: (s.topk(k, 1).indices == torch.arange(len(s))[:, None]).any(1)
           .float().mean().item(), "diagonal")
    _fails("9.2", lambda s, p, k: p.gather(1, s.topk(k, 1).indices).float().mean().item(),
           "at least one positive per query")
    _fails("9.2", lambda s, p, k: "high", "float")


# ------------------------------------------------------------------------ 9.3 zero-shot colour

def _attributes(n=600, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, 8, n), rng.integers(0, 6, n), rng.integers(0, 3, n),
                     rng.integers(0, 5, n)], 1)


def test_9_3_passes_and_rejects():
    attr = _attributes()
    good = torch.from_numpy(attr[:, 1].copy())
    good[:30] = (good[:30] + 1) % 6                         # 95% right
    assert check("9.3", good, attributes=attr).passed
    names = list(COLOURS)
    to_alphabetical = torch.tensor([sorted(names).index(c) for c in names])
    _fails("9.3", to_alphabetical[good], "alphabetical", attributes=attr)
    _fails("9.3", torch.from_numpy(attr[:, 0].copy()), "from 0 to 7", attributes=attr)
    _fails("9.3", torch.from_numpy(attr[:, 0] % 6), "SHAPE", attributes=attr)
    _fails("9.3", torch.zeros(600, dtype=torch.long), "0.8 was expected", attributes=attr)
    _fails("9.3", good.float(), "dtype", attributes=attr)
    _fails("9.3", good[:100], "shape", attributes=attr)


# ------------------------------------------------------------------------ 9.4 audio-text

class OneHot(nn.Module):
    """A stand-in encoder: class index (first column of x) -> one-hot (shifted by `shift`)."""

    out_dim = 8

    def __init__(self, shift=0):
        super().__init__()
        self.shift = shift
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x, lengths=None):
        return F.one_hot((x[:, 0].long() + self.shift) % 8, 8).float() + 0 * self.dummy


def _aligned(shift=0, names=("audio", "text")):
    model = DualEncoder({names[0]: OneHot(), names[1]: OneHot(shift)}, dim=8)
    with torch.no_grad():
        for proj in model.projections.values():
            proj.weight.copy_(torch.eye(8))
    return model


def test_9_4_passes_and_rejects():
    labels = torch.arange(80) % 8
    audio = labels[:, None].float().repeat(1, 5)            # a stand-in "clip" carrying its class
    kwargs = dict(audio=audio, audio_lengths=torch.full((80,), 5), labels=labels,
                  prompts=(torch.arange(8)[:, None], torch.ones(8, dtype=torch.long)))
    assert check("9.4", _aligned(), **kwargs).passed
    _fails("9.4", _aligned(shift=1), "0.6 was expected", **kwargs)       # pairs misaligned
    _fails("9.4", _aligned(names=("image", "text")), "'audio'", **kwargs)
    _fails("9.4", nn.Linear(2, 2), "DualEncoder", **kwargs)


# ------------------------------------------------------------------------ 9.5 prediction

def test_9_5_records_any_well_formed_prediction():
    result = check("9.5", {4: 0.3, 16: 0.5, 64: 0.6}, groups=(4, 16, 64))
    assert result.passed and "G = 4: 0.30, G = 16: 0.50, G = 64: 0.60" in result.message
    assert check("9.5", {4: 0, 16: 1, 64: np.float64(0.9)}, groups=(4, 16, 64)).passed
    # a shorter GROUP_SIZES (the test run's): the other entries may stay
    assert check("9.5", {4: 0.3, 16: 0.5, 64: 0.6}, groups=[16]).passed
    assert check("9.5", {np.int64(16): 0.5}, groups=[16]).passed


@pytest.mark.parametrize("prediction, match", [
    ([0.3, 0.5, 0.6], "must be a dict"),
    ({}, "must be a dict"),
    ({"4": 0.3, 16: 0.5, 64: 0.6}, r"key '4' \(str\), but its keys are group sizes"),
    ({4.0: 0.3, 16: 0.5, 64: 0.6}, r"key 4.0 \(float\)"),
    ({4: 0.3, 16: 0.5}, r"no prediction for G = \[64\]"),
    ({4: 0.3, 16: "half", 64: 0.6}, r"prediction\[16\] has 'half' \(str\) but a recall@1"),
    ({4: 0.3, 16: 50, 64: 0.6}, r"prediction\[16\] is 50, but a recall is a share"),
    ({4: -0.1, 16: 0.5, 64: 0.6}, r"prediction\[4\] is -0.1"),
])
def test_9_5_rejects_malformed_predictions(prediction, match):
    _fails("9.5", prediction, match, groups=(4, 16, 64))
