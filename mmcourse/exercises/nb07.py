"""Checks for the exercises of notebook 07 (joint training, speed, checkpoints)."""
from __future__ import annotations

import random

import numpy as np
import torch
import torch.nn.functional as F

from mmcourse.exercises.core import call, describe, expect_close, expect_tensor, fail, register
from mmcourse.exercises.predictions import expect_fractions, recorded

_C = 5


def _loss_inputs():
    gen = torch.Generator().manual_seed(7)
    n = 12
    logits = torch.randn(n, _C, generator=gen) * 2
    labels = torch.randint(0, _C, (n,), generator=gen)
    aux = {m: torch.randn(n, _C, generator=gen) * 2 for m in ("image", "audio", "text")}
    present = {"image": torch.tensor([1, 1, 0, 1, 0, 1, 1, 0, 1, 1, 0, 1]).bool(),
               "audio": torch.tensor([0, 1, 1, 1, 1, 0, 1, 1, 0, 1, 1, 1]).bool(),
               "text": torch.ones(n, dtype=torch.bool)}
    return logits, labels, aux, present


def _reference_loss(logits, labels, aux, present, main_weight, aux_weights, how="present"):
    """The loss, and plausible wrong variants of it (``how``)."""
    total = main_weight * F.cross_entropy(logits, labels)
    if how == "no_main_weight":
        total = F.cross_entropy(logits, labels)
    for m, z in aux.items():
        per = F.cross_entropy(z, labels, reduction="none")
        p = present[m]
        if how in ("present", "no_main_weight", "unweighted", "mean_over_modalities"):
            term = per[p].mean() if p.any() else per.sum() * 0
        elif how == "all_samples":
            term = per.mean()
        elif how == "zeroed_mean":
            term = (per * p).sum() / len(per)
        elif how == "summed":
            term = per[p].sum()
        w = 1.0 if how == "unweighted" else aux_weights.get(m, 0.0)
        if how == "mean_over_modalities":
            w = w / len(aux)
        total = total + w * term
    return total


@register("7.1", "the weighted multi-task loss: main + per-modality auxiliary terms",
          hint="main_weight times the cross-entropy over the batch, plus for each modality its "
               "weight times the cross-entropy over the rows that have it (a boolean selection); "
               "a modality with no rows adds nothing (not NaN).")
def check_multitask_loss(fn) -> str:
    if not callable(fn):
        fail(f"answer with your function multitask_loss itself, not {describe(fn)}")
    logits, labels, aux, present = _loss_inputs()
    weights = {"image": 0.5, "audio": 2.0, "text": 0.25}
    name = "multitask_loss(logits, labels, aux_logits, present, main_weight=0.7, aux_weights=...)"
    got = call(fn, logits, labels, aux, present, main_weight=0.7, aux_weights=weights)
    if isinstance(got, tuple):
        fail(f"{name} returned a tuple; return the total loss only, a scalar tensor")
    expect_tensor(name, got, shape=())
    if not got.requires_grad and any(t.requires_grad for t in aux.values()):
        fail("the loss does not carry gradients; compute it with torch operations on the logits")
    want = _reference_loss(logits, labels, aux, present, 0.7, weights)
    if torch.allclose(got, want, atol=1e-5):
        # a second case: a modality that no sample has must add 0, not NaN
        none = {**present, "audio": torch.zeros_like(present["audio"])}
        got2 = call(fn, logits, labels, aux, none, main_weight=1.0, aux_weights=weights)
        expect_tensor("multitask_loss(...) with no sample having audio", got2, shape=())
        if torch.isnan(got2):
            fail("when no sample of the batch has a modality, its term is the mean of nothing "
                 "(NaN); skip that term (or count it as 0)")
        expect_close("multitask_loss(...) with no sample having audio", got2,
                     _reference_loss(logits, labels, aux, none, 1.0, weights), atol=1e-5)
        return "weights applied, each auxiliary term averaged over the samples that have the modality"
    wrong = {
        "unweighted": "the auxiliary weights are ignored (every modality counts with weight 1); "
                      "multiply each modality's term by aux_weights[m]",
        "no_main_weight": "main_weight is ignored; multiply the main cross-entropy by it",
        "all_samples": "each auxiliary term is averaged over ALL samples, those without the "
                       "modality too (a black image or silence has no class evidence to learn "
                       "from); average over the samples where present[m] is True",
        "zeroed_mean": "the missing samples are zeroed but still counted in the mean (sum / B); "
                       "divide by the number of samples that HAVE the modality",
        "summed": "each auxiliary term is a SUM over samples, so it grows with the batch size "
                  "and swamps the main term; take the mean over the present samples",
        "mean_over_modalities": "the auxiliary terms are averaged over the modalities (divided by "
                                "3); the weights already say how much each counts: add "
                                "aux_weights[m] * term for each m",
    }
    for how, message in wrong.items():
        if torch.allclose(got, _reference_loss(logits, labels, aux, present, 0.7, weights, how),
                          atol=1e-5):
            fail(message)
    fail(f"{name} returned {float(got):.5f} but {float(want):.5f} was expected")


class _SpyTransform:
    """A stand-in for a log-mel transform: (B, L) -> (B, 3, L // 4), and it records each call."""

    def __init__(self):
        self.calls: list[int] = []

    def __call__(self, x):
        if not isinstance(x, torch.Tensor) or x.ndim != 2:
            raise ValueError(f"the transform takes a batch of waveforms (B, L), got "
                             f"{describe(x)}")
        self.calls.append(x.shape[0])
        frames = x.reshape(x.shape[0], -1, 4)
        return torch.stack([frames.mean(-1), frames.abs().amax(-1), frames.std(-1)], dim=1)


@register("7.2", "preprocessing done once, in chunks, instead of once per sample",
          hint="call transform on consecutive slices of at most chunk clips (the last may be "
               "shorter), never one clip at a time, and concatenate the results along dim 0, in "
               "order.")
def check_batched_preprocessing(fn) -> str:
    if not callable(fn):
        fail(f"answer with your function precompute itself, not {describe(fn)}")
    gen = torch.Generator().manual_seed(3)
    waveforms = torch.randn(37, 64, generator=gen)
    spy = _SpyTransform()
    with torch.no_grad():
        want = torch.cat([_SpyTransform()(waveforms[i:i + 1]) for i in range(37)])
    got = call(fn, waveforms, spy, chunk=16)
    name = "precompute(waveforms (37, 64), transform, chunk=16)"
    if not spy.calls:
        fail(f"{name} never called transform; compute the features with it")
    if len(spy.calls) == 37 and set(spy.calls) == {1}:
        fail(f"{name} called transform 37 times, once per clip: that is the per-sample "
             f"__getitem__ we want to get rid of; call it on chunks of up to 16 clips")
    if max(spy.calls) > 16:
        fail(f"{name} called transform on {max(spy.calls)} clips at once; with chunk=16 no call "
             f"should take more than 16 (the chunk bounds the memory a call needs)")
    expect_tensor(name, got, shape=(37, 3, 16))
    expect_close(name, got, want, atol=1e-5)
    if sorted(spy.calls) != sorted([16, 16, 5]):
        fail(f"{name} called transform with {spy.calls} clips; 3 calls (16, 16, 5) were expected")
    return "3 calls for 37 clips, the same features as one call per clip"


_DRAWS = ("torch", "numpy", "python")


def _draw():
    return {"torch": torch.rand(4), "numpy": np.random.rand(4), "python": [random.random() for _ in range(4)]}


def _same(a, b) -> dict[str, bool]:
    return {"torch": torch.equal(a["torch"], b["torch"]),
            "numpy": bool(np.array_equal(a["numpy"], b["numpy"])),
            "python": a["python"] == b["python"]}


@register("7.3", "capture and restore every random number generator a run draws from",
          hint="capture the whole state of all three generators (torch's, numpy's global one, "
               "python's random) in one object, and set all three back from it; reseeding "
               "restarts a generator instead of continuing it.")
def check_rng_state(answer) -> str:
    if not (isinstance(answer, tuple) and len(answer) == 2 and all(callable(f) for f in answer)):
        fail(f"answer with the pair of functions (capture_rng, restore_rng), got {describe(answer)}")
    capture, restore = answer
    from mmcourse.checkpoint import rng_state, set_rng_state
    from mmcourse.exercises.library_calls import call_without

    library = {rng_state: "mmcourse.checkpoint.rng_state",
               set_rng_state: "mmcourse.checkpoint.set_rng_state"}
    saved = (torch.get_rng_state(), np.random.get_state(), random.getstate())
    try:
        torch.manual_seed(1234)
        np.random.seed(4321)
        random.seed(2143)
        _draw()                                         # the generators are somewhere mid-stream
        state = call_without(capture, library)
        first = _draw()
        _draw()                                         # training goes on, then stops
        torch.manual_seed(0)                            # a new process starts from other states
        np.random.seed(0)
        random.seed(0)
        call_without(restore, library, state)
        second = _draw()
    finally:
        torch.set_rng_state(saved[0])
        np.random.set_state(saved[1])
        random.setstate(saved[2])
    same = _same(first, second)
    if all(same.values()):
        return "torch, NumPy and Python's random continue exactly where they were"
    if not any(same.values()):
        fail("after restore_rng, no generator continues where capture_rng left it; capture the "
             "whole state of each of the three generators and set it back, rather than seeding "
             "again")
    broken = [m for m in _DRAWS if not same[m]]
    setters = {"torch": "torch.get_rng_state() / torch.set_rng_state(state)",
               "numpy": "np.random.get_state() / np.random.set_state(state)",
               "python": "random.getstate() / random.setstate(state)"}
    fail(f"the draws from {', '.join(broken)} differ after restore_rng: that generator's state is "
         f"not restored (dropout and shuffling draw from torch, augmentation often from NumPy or "
         f"random); use " + "; ".join(setters[m] for m in broken))


class _SpyScaler:
    """Wraps a real GradScaler and records which of its methods were called, in order."""

    def __init__(self, init_scale: float = 1024.0):
        self.real = torch.amp.GradScaler("cpu", init_scale=init_scale)
        self.calls: list[str] = []
        self.scaled: list[torch.Tensor] = []

    def scale(self, loss):
        self.calls.append("scale")
        out = self.real.scale(loss)
        self.scaled.append(out)
        return out

    def step(self, optimizer, *args, **kwargs):
        self.calls.append("step")
        if "scale" not in self.calls:  # the real scaler would raise; let the check explain
            fail("scaled_step called scaler.step(optimizer) without scaler.scale(loss) before "
                 "it: backward must run on the SCALED loss, so that small float16 gradients do "
                 "not underflow")
        return self.real.step(optimizer, *args, **kwargs)

    def update(self, *args, **kwargs):
        self.calls.append("update")
        if "step" not in self.calls:   # the real scaler would raise; let the check explain
            return None
        return self.real.update(*args, **kwargs)

    def unscale_(self, optimizer):
        self.calls.append("unscale_")
        return self.real.unscale_(optimizer)

    def get_scale(self):
        return self.real.get_scale()


@register("7.4", "one optimizer step with a gradient scaler (float16 training)",
          hint="clear the old gradients, backpropagate the SCALED loss (the scaler multiplies "
               "it), step through the scaler (it unscales, and skips a step with inf or NaN "
               "gradients), then let the scaler update its scale.")
def check_scaled_step(fn) -> str:
    if not callable(fn):
        fail(f"answer with your function scaled_step itself, not {describe(fn)}")

    def setup(bad: bool = False):
        torch.manual_seed(0)
        w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
        opt = torch.optim.SGD([w], lr=0.1)
        w.grad = torch.full_like(w, 100.0)                 # a stale gradient from a past step
        x = torch.tensor([1.0, 2.0, 3.0])
        loss = (w * x).sum() * (float("inf") if bad else 1.0)
        return w, opt, loss

    # an ordinary step: the update must be exactly SGD's on the unscaled gradient
    w, opt, loss = setup()
    scaler = _SpyScaler()
    call(fn, loss, opt, scaler)
    want = torch.tensor([1.0, -2.0, 0.5]) - 0.1 * torch.tensor([1.0, 2.0, 3.0])
    if "scale" not in scaler.calls:
        fail("scaled_step did not call scaler.scale(loss): backward must run on the SCALED "
             "loss, so that small float16 gradients do not underflow")
    if "step" not in scaler.calls:
        if torch.allclose(w.detach(), torch.tensor([1.0, -2.0, 0.5]) - 0.1 * 1024 *
                          torch.tensor([1.0, 2.0, 3.0]), atol=1e-3):
            fail("the optimizer stepped on gradients still multiplied by the scale (1024x too "
                 "big): step through the scaler, scaler.step(optimizer), which unscales first")
        fail("scaled_step did not call scaler.step(optimizer); optimizer.step() alone uses the "
             "scaled gradients and never skips a step with inf/NaN gradients")
    if "update" not in scaler.calls:
        fail("scaled_step never calls scaler.update(): without it the scale never adapts (it "
             "should shrink after an overflow and grow after many good steps)")
    if scaler.calls.index("update") < scaler.calls.index("step"):
        fail(f"scaler.update() was called before scaler.step(optimizer) (calls: {scaler.calls}); "
             f"update after the step")
    stale = torch.tensor([1.0, -2.0, 0.5]) - 0.1 * (torch.tensor([1.0, 2.0, 3.0]) + 100.0 / 1024)
    if torch.allclose(w.detach(), stale, atol=1e-4):
        fail("the old gradient was still there: the new one was added to it; call "
             "optimizer.zero_grad() before backward")
    expect_close("the weights after scaled_step", w.detach(), want, atol=1e-5)
    # an overflowing step: the scaler must skip it and lower its scale
    w, opt, loss = setup(bad=True)
    scaler = _SpyScaler()
    call(fn, loss, opt, scaler)
    if not torch.allclose(w.detach(), torch.tensor([1.0, -2.0, 0.5])):
        fail("with infinite gradients the weights changed; the step must go through "
             "scaler.step(optimizer), which skips it")
    if scaler.get_scale() >= 1024.0:
        fail("after an overflow the scale did not shrink; call scaler.update() after the step")
    return "scaled backward, unscaled step, overflow skipped and the scale lowered"


MATCHING_7_5 = ("frozen + concat", "end to end")


@register("7.5", "a prediction of the matching task's test accuracy, frozen and end to end",
          hint="a dict {'frozen + concat': ..., 'end to end': ...} of test accuracies on the "
               "matching task, as fractions (0.5 is chance there). Any well-formed prediction "
               "passes: the next cell measures both.")
def check_matching_prediction(answer) -> str:
    got = expect_fractions("my_prediction", answer, MATCHING_7_5, "the predicted test accuracy")
    return recorded(got, "the next cell measures them")
