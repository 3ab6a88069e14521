"""The checks of notebook 10's exercises pass the solutions and reject plausible wrong answers."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from mmcourse.exercises import ExerciseFailed, check


def _fails(exercise_id: str, answer, match: str) -> None:
    with pytest.raises(ExerciseFailed, match=match):
        check(exercise_id, answer)


# ------------------------------------------------------------------------ 10.1 labels

def my_labels(ids, mask, num_image_tokens, answer_start):
    labels = ids.masked_fill(mask == 0, -100)
    before = torch.arange(ids.shape[1])[None, :] < answer_start[:, None]
    labels = labels.masked_fill(before, -100)
    image = torch.full((len(ids), num_image_tokens), -100, dtype=ids.dtype)
    return torch.cat([image, labels], dim=1)


def test_10_1_passes_and_rejects():
    assert check("10.1", my_labels).passed
    _fails("10.1", lambda i, m, n, s: my_labels(i, m, 0, s), "whole sequence")
    _fails("10.1", lambda i, m, n, s: torch.cat([torch.zeros(len(i), n, dtype=i.dtype),
                                                 my_labels(i, m, 0, s)], 1), "image positions")

    def shifted(i, m, n, s):
        lab = my_labels(i, m, n, s)
        text = torch.cat([lab[:, n + 1:], torch.full((len(i), 1), -100)], 1)
        return torch.cat([lab[:, :n], text], 1)
    _fails("10.1", shifted, "shifted one step to the left")
    _fails("10.1", lambda i, m, n, s: my_labels(i, torch.ones_like(m), n, s), "padding")
    _fails("10.1", lambda i, m, n, s: my_labels(i, m, n, torch.zeros_like(s)), "prompt")

    def in_place(i, m, n, s):
        i.masked_fill_(m == 0, -100)
        return my_labels(i, m, n, s)
    _fails("10.1", in_place, "in place")


# ------------------------------------------------------------------------ 10.2 projector

class MLPProjector(nn.Module):
    def __init__(self, in_dim, out_dim):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))

    def forward(self, x):
        return self.net(x)


def _variant(*layers):
    class P(nn.Module):
        def __init__(self, in_dim, out_dim):
            super().__init__()
            self.net = nn.Sequential(*[f(in_dim, out_dim) for f in layers])

        def forward(self, x):
            return self.net(x)
    return P


def test_10_2_passes_and_rejects():
    assert check("10.2", MLPProjector).passed
    _fails("10.2", MLPProjector(6, 10), "class MLPProjector itself")
    _fails("10.2", _variant(lambda i, o: nn.Linear(i, o)), "two nn.Linear")
    _fails("10.2", _variant(lambda i, o: nn.Linear(i, o), lambda i, o: nn.ReLU(),
                            lambda i, o: nn.Linear(o, o)), "GELU")
    _fails("10.2", _variant(lambda i, o: nn.Linear(i, i), lambda i, o: nn.GELU(),
                            lambda i, o: nn.Linear(i, o)), "Linear\\(6, 10\\) then")
    _fails("10.2", _variant(lambda i, o: nn.Linear(i, o), lambda i, o: nn.Linear(o, o)), "GELU")


# ------------------------------------------------------------------------ 10.3 stage 1

def freeze_stage1(model):
    model.lm.requires_grad_(False)
    model.projector.requires_grad_(True)


def test_10_3_passes_and_rejects():
    assert check("10.3", freeze_stage1).passed
    _fails("10.3", lambda m: m.requires_grad_(True), "LM parameters still require grad")
    _fails("10.3", lambda m: m.lm.requires_grad_(False), "projector parameters are frozen")
    _fails("10.3", lambda m: (m.lm.requires_grad_(True), m.projector.requires_grad_(False)),
           "other way round")


# ------------------------------------------------------------------------ 10.4 left padding

def left_pad(rows, pad_id):
    t = max(len(r) for r in rows)
    ids = torch.tensor([[pad_id] * (t - len(r)) + list(r) for r in rows])
    mask = torch.tensor([[0] * (t - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


def test_10_4_passes_and_rejects():
    assert check("10.4", left_pad).passed
    from mmcourse.lm import pad_sequences
    _fails("10.4", lambda rows, p: pad_sequences(rows, "right", p), "on the right")
    _fails("10.4", lambda rows, p: (left_pad(rows, p)[0], 1 - left_pad(rows, p)[1]), "inverted")
    _fails("10.4", lambda rows, p: left_pad(rows, 0), "pad_id")
    _fails("10.4", lambda rows, p: left_pad([r[::-1] for r in rows], p), "reverse order")
    _fails("10.4", lambda rows, p: left_pad(rows, p)[0], "pair")
