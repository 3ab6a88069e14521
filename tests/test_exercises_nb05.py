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


def test_5_1_refuses_the_imported_library_function():
    """The notebook imports masked_softmax (for 5.2): handing it in, or wrapping it, is refused."""
    _fails("5.1", masked_softmax, "calls the library's mmcourse.fusion.masked_softmax")
    _fails("5.1", lambda s, p: masked_softmax(s, p, dim=1), "write it yourself")


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
    gen = torch.Generator().manual_seed(11)
    gates = torch.softmax(torch.randn(200, 3, generator=gen), 1)
    rng = np.random.default_rng(3)
    quality = np.stack([rng.integers(0, 4, 200), rng.integers(0, 3, 200),
                        rng.integers(0, 4, 200)], 1).astype(np.int8)
    return gates, quality


def _means(gates, rows):
    return {m: float(gates[torch.as_tensor(rows), j].mean())
            for j, m in enumerate(("image", "audio", "text"))}


def _selecting(rule):
    """A candidate answer: misleading_gate_means that averages the rows ``rule(quality)`` picks."""
    return lambda gates, quality: _means(gates, rule(quality))


def _right(q):
    return (q[:, 2] == 2) & (q[:, 0] != 3) & (q[:, 1] != 2)       # present: not "missing"


def test_5_4_passes_and_rejects():
    gates, quality = _gates()
    result = check("5.4", _selecting(_right), gates=gates, quality=quality)
    assert result.passed and "even split would give 0.333" in result.message
    want = _means(gates, _right(quality))
    assert f"the text gets {want['text']:.3f}" in result.message
    kw = dict(gates=gates, quality=quality)
    # the table's row (every misleading text, missing modalities included) is not the answer
    _fails("5.4", _selecting(lambda q: q[:, 2] == 2), "ALL samples with a misleading text", **kw)
    _fails("5.4", _selecting(lambda q: (q[:, 2] == 2) & (q[:, 0] != 3)), "image AND audio", **kw)
    _fails("5.4", _selecting(lambda q: (q[:, 2] == 2) & (q[:, 1] != 2)), "image AND audio", **kw)
    _fails("5.4", _selecting(lambda q: (q[:, 0] != 3) & (q[:, 1] != 2)), "every text quality", **kw)
    _fails("5.4", _selecting(lambda q: np.ones(len(q), bool)), "every text quality", **kw)
    _fails("5.4", _selecting(lambda q: (q[:, 2] == 0) & (q[:, 0] != 3) & (q[:, 1] != 2)),
           "'informative'", **kw)
    _fails("5.4", _selecting(lambda q: q[:, 2] == 1), "'uninformative'", **kw)
    _fails("5.4", _selecting(lambda q: (q[:, 0] == 2) & (q[:, 0] != 3) & (q[:, 1] != 2)),
           "column 0", **kw)
    _fails("5.4", lambda g, q: [0.3, 0.3, 0.4], "must return a dict", **kw)
    _fails("5.4", lambda g, q: {**_means(g, _right(q)), "text": "high"}, "number", **kw)
    _fails("5.4", lambda g, q: {**_means(g, _right(q)), "text": 0.9}, "it returned", **kw)
    _fails("5.4", _selecting(_right), "check\\('5.4'")


def test_5_4_a_hard_coded_answer_cannot_pass():
    """The lesson's gates split evenly (1/3 each), which the text says; numbers typed in, or a
    function returning them, fail on the check's own random gates."""
    gates, quality = _gates()
    _fails("5.4", {"image": 1 / 3, "audio": 1 / 3, "text": 1 / 3}, "expects the function",
           gates=gates, quality=quality)
    _fails("5.4", lambda g, q: {"image": 1 / 3, "audio": 1 / 3, "text": 1 / 3},
           "on 300 random test gates of the check", gates=gates, quality=quality)
    right_here = _means(gates, _right(quality))
    _fails("5.4", lambda g, q: dict(right_here), "on 300 random test gates", gates=gates,
           quality=quality)


def test_5_4_wrong_selections_give_other_numbers():
    """The rejections above are only meaningful if each wrong selection changes the means, on the
    check's own test gates."""
    from mmcourse.exercises.nb05 import _test_gates

    gates, quality = _test_gates()
    both = (quality[:, 0] != 3) & (quality[:, 1] != 2)
    right = _means(gates, _right(quality))
    for rows in (quality[:, 2] == 2, both, (quality[:, 2] == 0) & both,
                 (quality[:, 2] == 2) & (quality[:, 0] != 3), (quality[:, 2] == 2) & (quality[:, 1] != 2)):
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
