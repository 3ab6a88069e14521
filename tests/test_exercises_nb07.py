"""The checks of notebook 07's exercises pass the solutions and reject plausible wrong answers."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmcourse.exercises import ExerciseFailed, check


def _fails(exercise_id: str, answer, match: str, **kwargs) -> None:
    with pytest.raises(ExerciseFailed, match=match):
        check(exercise_id, answer, **kwargs)


# ------------------------------------------------------------------------ 7.1 multi-task loss

def make_loss(averaging="present", weighted=True, main=True, per_modality_mean=False,
              nan_safe=True, as_tuple=False):
    def multitask_loss(logits, labels, aux_logits, present, main_weight=1.0, aux_weights=None):
        total = (main_weight if main else 1.0) * F.cross_entropy(logits, labels)
        for m, z in aux_logits.items():
            keep = present[m]
            if averaging == "present":
                if not keep.any() and nan_safe:
                    continue
                term = F.cross_entropy(z[keep], labels[keep])
            elif averaging == "all":
                term = F.cross_entropy(z, labels)
            elif averaging == "sum":
                term = F.cross_entropy(z[keep], labels[keep], reduction="sum")
            else:  # zeroed, divided by the batch size
                term = (F.cross_entropy(z, labels, reduction="none") * keep).sum() / len(labels)
            w = aux_weights[m] if weighted else 1.0
            total = total + (w / len(aux_logits) if per_modality_mean else w) * term
        return (total, {}) if as_tuple else total
    return multitask_loss


def test_7_1_passes_and_rejects():
    assert check("7.1", make_loss()).passed
    _fails("7.1", make_loss(weighted=False), "weights are ignored")
    _fails("7.1", make_loss(main=False), "main_weight is ignored")
    _fails("7.1", make_loss(averaging="all"), "ALL samples")
    _fails("7.1", make_loss(averaging="zeroed"), "still counted in the mean")
    _fails("7.1", make_loss(averaging="sum"), "SUM over samples")
    _fails("7.1", make_loss(per_modality_mean=True), "averaged over the modalities")
    _fails("7.1", make_loss(nan_safe=False), "NaN")
    _fails("7.1", make_loss(as_tuple=True), "tuple")
    _fails("7.1", "loss", "your function")


# ------------------------------------------------------------------------ 7.2 batched preprocessing

def precompute(waveforms, transform, chunk=256):
    return torch.cat([transform(waveforms[i:i + chunk]) for i in range(0, len(waveforms), chunk)])


def test_7_2_passes_and_rejects():
    assert check("7.2", precompute).passed
    per_item = lambda w, t, chunk=256: torch.cat([t(w[i:i + 1]) for i in range(len(w))])  # noqa: E731
    _fails("7.2", per_item, "once per clip")
    _fails("7.2", lambda w, t, chunk=256: t(w), "at once")
    drops_last = lambda w, t, chunk=256: torch.cat(  # noqa: E731
        [t(w[i:i + chunk]) for i in range(0, len(w) - chunk + 1, chunk)])
    _fails("7.2", drops_last, "shape")
    wrong_dim = lambda w, t, chunk=256: torch.cat(  # noqa: E731
        [t(w[i:i + chunk]) for i in range(0, len(w), chunk)], dim=2)
    _fails("7.2", wrong_dim, "shape")
    _fails("7.2", lambda w, t, chunk=256: torch.zeros(37, 3, 16), "never called")


# ------------------------------------------------------------------------ 7.3 RNG state

def capture_rng():
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
            "python": random.getstate()}


def restore_rng(state):
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def test_7_3_passes_and_rejects():
    assert check("7.3", (capture_rng, restore_rng)).passed

    def torch_only(state):
        torch.set_rng_state(state["torch"])
    _fails("7.3", (capture_rng, torch_only), "numpy, python differ")

    def no_python(state):
        torch.set_rng_state(state["torch"])
        np.random.set_state(state["numpy"])
    _fails("7.3", (capture_rng, no_python), "python differ.*random.getstate")
    _fails("7.3", (lambda: None, lambda state: torch.manual_seed(0)), "no generator continues")
    _fails("7.3", capture_rng, "pair of functions")


def test_7_3_refuses_the_checkpoint_modules_functions():
    from mmcourse.checkpoint import rng_state, set_rng_state

    _fails("7.3", (rng_state, set_rng_state), "calls the library's mmcourse.checkpoint.rng_state")
    _fails("7.3", (lambda: rng_state(), lambda state: set_rng_state(state)), "write it yourself")


def test_7_3_leaves_the_callers_generators_alone():
    torch.manual_seed(5)
    before = torch.rand(1)
    torch.manual_seed(5)
    check("7.3", (capture_rng, restore_rng))
    assert torch.equal(torch.rand(1), before)


# ------------------------------------------------------------------------ 7.4 gradient scaler

def scaled_step(loss, optimizer, scaler):
    optimizer.zero_grad()
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


def test_7_4_passes_and_rejects():
    assert check("7.4", scaled_step).passed

    def plain_step(loss, optimizer, scaler):
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        optimizer.step()
        scaler.update()
    _fails("7.4", plain_step, "1024x too big")

    def unscaled(loss, optimizer, scaler):
        optimizer.zero_grad()
        loss.backward()
        scaler.step(optimizer)
        scaler.update()
    _fails("7.4", unscaled, "scaler.scale\\(loss\\)")

    def no_update(loss, optimizer, scaler):
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
    _fails("7.4", no_update, "never calls scaler.update")

    def no_zero_grad(loss, optimizer, scaler):
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    _fails("7.4", no_zero_grad, "zero_grad")

    def update_first(loss, optimizer, scaler):
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.update()
        scaler.step(optimizer)
    _fails("7.4", update_first, "before scaler.step")


# ------------------------------------------------------------------ 7.5 predict, then measure

def test_7_5_records_any_well_formed_prediction():
    result = check("7.5", {"frozen + concat": 0.6, "end to end": np.float32(0.85)})
    assert result.passed and "frozen + concat 0.60, end to end 0.85" in result.message
    assert check("7.5", {"frozen + concat": 0.5, "end to end": 0.5}).passed   # chance is allowed


@pytest.mark.parametrize("answer, match", [
    ((0.6, 0.85), r"must be a dict \{'frozen \+ concat': \.\.\., 'end to end': \.\.\.\}"),
    ({"frozen + concat": 0.6}, r"has no entry for \['end to end'\]"),
    ({"frozen": 0.6, "end to end": 0.85}, r"has the key 'frozen', which is not one of"),
    ({"frozen + concat": 0.6, "end to end": 0.85, "joint": 0.9}, r"'joint', which is not one of"),
    ({"frozen + concat": None, "end to end": 0.85}, r"has None \(NoneType\) but a number"),
    ({"frozen + concat": 60, "end to end": 0.85}, r"is 60, but the predicted (?:test )?accuracy is a fraction"),
    ({"frozen + concat": 0.6, "end to end": 1.5}, r"is 1\.5, but the predicted (?:test )?accuracy is a fraction"),
    ({"frozen + concat": -0.5, "end to end": 0.85}, r"between 0 and 1"),
])
def test_7_5_rejects_malformed_predictions(answer, match):
    _fails("7.5", answer, match)
