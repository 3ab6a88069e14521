"""The checks of notebook 05's exercises pass the solutions and reject plausible wrong answers."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmcourse.exercises import ExerciseFailed, check
from mmcourse.fusion import Fusion, masked_softmax


def _fails(exercise_id: str, answer, match: str, **kwargs) -> None:
    with pytest.raises(ExerciseFailed, match=match):
        check(exercise_id, answer, **kwargs)


# ------------------------------------------------------------------------ 5.1 masked weights

def masked_weights(scores, present):
    w = torch.softmax(scores.masked_fill(~present, float("-inf")), dim=1)
    return torch.nan_to_num(w, nan=0.0)


def test_5_1_passes_and_rejects():
    assert check("5.1", masked_weights).passed
    _fails("5.1", lambda s, p: torch.softmax(s, 1), "plain softmax")
    _fails("5.1", lambda s, p: torch.softmax(s, 1) * p, "AFTER the softmax")
    _fails("5.1", lambda s, p: torch.softmax(s.masked_fill(~p, 0.0), 1), "float\\('-inf'\\)")
    _fails("5.1", lambda s, p: torch.softmax(s.masked_fill(~p, float("-inf")), 1), "NaN")

    def in_place(s, p):
        s.masked_fill_(~p, float("-inf"))
        return torch.nan_to_num(torch.softmax(s, 1))
    _fails("5.1", in_place, "in place")
    _fails("5.1", lambda s, p: masked_weights(s, p)[:, :2], "shape")


# ------------------------------------------------------------------------ 5.2 gated fusion

def _make(gate_fn="softmax", relu_out=False, store=True):
    class MyGatedFusion(Fusion):
        def __init__(self, dims, out_dim, hidden=64):
            super().__init__(dims, out_dim)
            self.proj = nn.ModuleDict({m: nn.Linear(d, out_dim) for m, d in self.dims.items()})
            self.gate = nn.Sequential(nn.Linear(sum(self.dims.values()), hidden), nn.ReLU(),
                                      nn.Linear(hidden, len(self.dims)))

        def fuse(self, pooled, present):
            h = torch.stack([F.relu(self.proj[m](pooled[m])) for m in self.modalities], 1)
            scores = self.gate(torch.cat([pooled[m] for m in self.modalities], 1))
            if gate_fn == "softmax":
                w = masked_softmax(scores, present)
            elif gate_fn == "unmasked":
                w = torch.softmax(scores, 1)
            else:
                w = torch.sigmoid(scores) * present
            if store:
                self.last_weights = w.detach()
            out = (w.unsqueeze(-1) * h).sum(1)
            return F.relu(out) if relu_out else out
    return MyGatedFusion


def test_5_2_passes_and_rejects():
    assert check("5.2", _make()).passed
    _fails("5.2", _make("unmasked"), "missing modality")
    _fails("5.2", _make("sigmoid"), "sum to 1")
    _fails("5.2", _make(store=False), "last_weights")
    _fails("5.2", 3, "class")

    class WrongLayout(Fusion):
        def __init__(self, dims, out_dim, hidden=64):
            super().__init__(dims, out_dim)
            self.gates = nn.Linear(sum(dims.values()), len(dims))

        def fuse(self, pooled, present):  # pragma: no cover
            raise AssertionError
    _fails("5.2", WrongLayout, "layout")
    _fails("5.2", nn.Linear, "subclass")


# ------------------------------------------------------------------------ 5.3 modality dropout

def drop_modalities(present, p, generator=None):
    keep = present & (torch.rand(present.shape, generator=generator) >= p)
    emptied = ~keep.any(1, keepdim=True)
    return torch.where(emptied, present, keep)


def keep_one(present, p, generator=None):
    keep = present & (torch.rand(present.shape, generator=generator) >= p)
    emptied = ~keep.any(1) & present.any(1)
    first = present.float().argmax(1)
    keep[emptied, first[emptied]] = True
    return keep


def test_5_3_passes_and_rejects():
    assert check("5.3", drop_modalities).passed
    assert check("5.3", keep_one).passed        # keeping one modality is fine too
    _fails("5.3", lambda pr, p, g=None: torch.rand(pr.shape, generator=g) >= p, "turned a missing")
    _fails("5.3", lambda pr, p, g=None: pr & (torch.rand(pr.shape, generator=g) >= p),
           "hid every modality")
    _fails("5.3", lambda pr, p, g=None: drop_modalities(pr, 1 - p, g) if p else pr.clone(),
           "KEEP")
    _fails("5.3", lambda pr, p, g=None: drop_modalities(pr, p, g).float(), "bool")

    def in_place(pr, p, g=None):
        out = drop_modalities(pr, p, g)
        pr.copy_(out)
        return out
    _fails("5.3", in_place, "in place")


# ------------------------------------------------------------------------ 5.4 reading the gates

def _gates():
    gen = torch.Generator().manual_seed(4)
    gates = torch.softmax(torch.randn(300, 3, generator=gen), 1)
    rng = np.random.default_rng(0)
    quality = np.stack([rng.integers(0, 4, 300), rng.integers(0, 3, 300),
                        rng.integers(0, 4, 300)], 1).astype(np.int8)
    return gates, quality


def _means(gates, rows):
    return {m: float(gates[torch.as_tensor(rows), j].mean())
            for j, m in enumerate(("image", "audio", "text"))}


def test_5_4_passes_and_rejects():
    gates, quality = _gates()
    image, audio = quality[:, 0] != 3, quality[:, 1] != 2          # present: not "missing"
    both = image & audio
    right = _means(gates, (quality[:, 2] == 2) & both)
    result = check("5.4", right, gates=gates, quality=quality)
    assert result.passed and "even split would give 0.333" in result.message
    # the table's row (every misleading text, missing modalities included) is not the answer
    _fails("5.4", _means(gates, quality[:, 2] == 2), "ALL samples with a misleading text",
           gates=gates, quality=quality)
    _fails("5.4", _means(gates, (quality[:, 2] == 2) & image), "image AND audio", gates=gates,
           quality=quality)
    _fails("5.4", _means(gates, (quality[:, 2] == 2) & audio), "image AND audio", gates=gates,
           quality=quality)
    _fails("5.4", _means(gates, both), "every text quality", gates=gates, quality=quality)
    _fails("5.4", _means(gates, np.ones(300, bool)), "every text quality", gates=gates,
           quality=quality)
    _fails("5.4", _means(gates, (quality[:, 2] == 0) & both), "'informative'", gates=gates,
           quality=quality)
    _fails("5.4", _means(gates, quality[:, 2] == 1), "'uninformative'", gates=gates,
           quality=quality)
    _fails("5.4", _means(gates, (quality[:, 0] == 2) & both), "column 0", gates=gates,
           quality=quality)
    _fails("5.4", [0.3, 0.3, 0.4], "dict", gates=gates, quality=quality)
    _fails("5.4", {**right, "text": "high"}, "number", gates=gates, quality=quality)
    _fails("5.4", {**right, "text": right["text"] + 0.1}, "answer says", gates=gates,
           quality=quality)
    _fails("5.4", right, "check\\('5.4'")


def test_5_4_wrong_selections_give_other_numbers():
    """The rejections above are only meaningful if each wrong selection changes the means."""
    gates, quality = _gates()
    both = (quality[:, 0] != 3) & (quality[:, 1] != 2)
    right = _means(gates, (quality[:, 2] == 2) & both)
    for rows in (quality[:, 2] == 2, both, (quality[:, 2] == 0) & both):
        wrong = _means(gates, rows)
        assert max(abs(wrong[m] - right[m]) for m in right) > 5e-4


# ------------------------------------------------------------------ 5.5 predict, then measure

GRID = {"equal (1/3 each)": {}, "audio x2": {}, "image x4": {}, "image only": {}, "audio only": {}}
GUESS = {"equal (1/3 each)": 0.87, "audio x2": 0.87, "image x4": 0.85, "image only": 0.54,
         "audio only": 0.64}


def test_5_5_records_any_well_formed_prediction():
    result = check("5.5", GUESS, settings=GRID)
    assert result.passed and "image only 0.54" in result.message
    assert check("5.5", {k: 0.5 for k in GRID}, settings=GRID).passed
    assert check("5.5", {"a": 0.1}, settings={"a": {}}).passed       # the grid decides the keys


@pytest.mark.parametrize("answer, match", [
    ([0.87] * 5, r"must be a dict .* but it is \[0\.87"),
    ({k: v for k, v in GUESS.items() if k != "image only"}, r"has no entry for \['image only'\]"),
    ({**GUESS, "text only": 0.5}, r"'text only', which is not one of"),
    ({**GUESS, "audio x2": "same"}, r"my_prediction\['audio x2'\] has 'same' \(str\)"),
    ({**GUESS, "image x4": 87}, r"is 87, but the predicted (?:test )?accuracy is a fraction"),
    ({**GUESS, "image only": -0.2}, r"between 0 and 1"),
])
def test_5_5_rejects_malformed_predictions(answer, match):
    _fails("5.5", answer, match, settings=GRID)


def test_5_5_needs_the_grid():
    _fails("5.5", GUESS, r"check\('5.5', my_prediction, settings=grid\)")
