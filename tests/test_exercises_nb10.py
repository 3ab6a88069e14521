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


def test_10_1_rejects_calling_build_labels():
    from mmcourse import mllm
    from mmcourse.mllm import build_labels

    _fails("10.1", build_labels, "calls the library's mmcourse.mllm.build_labels")
    _fails("10.1", lambda i, m, n, s: mllm.build_labels(i, m, n, s), "build_labels")


# ------------------------------------------------------------------------ 10.2 forward pass

def my_mllm_forward(lm, projector, features, ids, mask, text_labels, order="image first",
                    image_mask=1, image_label=-100, full_mask=True, full_labels=True,
                    use_ids=False, with_mask=True, with_labels=True):
    image = projector(features)
    text = lm.get_input_embeddings()(ids)
    n = image.shape[1]
    embeds = torch.cat([image, text] if order == "image first" else [text, image], dim=1)
    attention = torch.cat([mask.new_full((len(ids), n), image_mask), mask], 1) if full_mask \
        else mask
    labels = torch.cat([text_labels.new_full((len(ids), n), image_label), text_labels], 1) \
        if full_labels else text_labels
    kwargs = {"attention_mask": attention if with_mask else None,
              "labels": labels if with_labels else None}
    if use_ids:
        return lm(input_ids=ids, **kwargs)
    return lm(inputs_embeds=embeds, **kwargs)


def _forward_variant(**kw):
    return lambda *args: my_mllm_forward(*args, **kw)


def test_10_2_passes_and_rejects():
    from mmcourse.mllm import MultimodalLM, build_labels

    assert check("10.2", my_mllm_forward).passed
    _fails("10.2", _forward_variant(image_label=0), "must be -100")
    _fails("10.2", _forward_variant(full_labels=False), "text's labels alone")
    _fails("10.2", _forward_variant(full_mask=False), "text's mask alone")
    _fails("10.2", _forward_variant(image_mask=0), "0 at the image positions")
    _fails("10.2", _forward_variant(order="text first"), "image comes after the text")
    _fails("10.2", _forward_variant(use_ids=True), "input_ids")
    _fails("10.2", _forward_variant(with_mask=False), "without attention_mask")
    _fails("10.2", _forward_variant(with_labels=False), "without labels")
    _fails("10.2", lambda *args: my_mllm_forward(*args).loss, "return what the LM returns")

    def shifted(lm, projector, features, ids, mask, text_labels):
        left = torch.cat([text_labels[:, 1:], text_labels[:, :1] * 0 - 100], 1)
        return my_mllm_forward(lm, projector, features, ids, mask, left)
    _fails("10.2", shifted, "not shifted")

    def library(lm, projector, features, ids, mask, text_labels):
        n = features.shape[1]
        labels = torch.cat([torch.full((len(ids), n), -100), text_labels], 1)
        return MultimodalLM(lm, projector)(features, ids, mask, labels)
    _fails("10.2", library, "calls the library's MultimodalLM")

    def library_labels(lm, projector, features, ids, mask, text_labels):
        labels = build_labels(ids, mask, 0)       # not even the right labels: caught first
        return my_mllm_forward(lm, projector, features, ids, mask, labels)
    _fails("10.2", library_labels, "build_labels")


# ------------------------------------------------------------------------ 10.3 projector

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


def test_10_3_passes_and_rejects():
    assert check("10.3", MLPProjector).passed
    _fails("10.3", MLPProjector(6, 10), "class MLPProjector itself")
    _fails("10.3", _variant(lambda i, o: nn.Linear(i, o)), "two nn.Linear")
    _fails("10.3", _variant(lambda i, o: nn.Linear(i, o), lambda i, o: nn.ReLU(),
                            lambda i, o: nn.Linear(o, o)), "GELU")
    _fails("10.3", _variant(lambda i, o: nn.Linear(i, i), lambda i, o: nn.GELU(),
                            lambda i, o: nn.Linear(i, o)), "Linear\\(6, 10\\) then")
    _fails("10.3", _variant(lambda i, o: nn.Linear(i, o), lambda i, o: nn.Linear(o, o)), "GELU")


# ------------------------------------------------------------------------ 10.4 stage 1

def freeze_stage1(model):
    model.lm.requires_grad_(False)
    model.projector.requires_grad_(True)


def test_10_4_passes_and_rejects():
    assert check("10.4", freeze_stage1).passed
    _fails("10.4", lambda m: m.requires_grad_(True), "LM parameters still require grad")
    _fails("10.4", lambda m: m.lm.requires_grad_(False), "projector parameters are frozen")
    _fails("10.4", lambda m: (m.lm.requires_grad_(True), m.projector.requires_grad_(False)),
           "other way round")


def test_10_4_refuses_the_librarys_set_stage():
    from mmcourse.mllm import set_stage

    _fails("10.4", lambda m: set_stage(m, 1), "calls the library's mmcourse.mllm.set_stage")


# ------------------------------------------------------------------------ 10.5 left padding

def left_pad(rows, pad_id):
    t = max(len(r) for r in rows)
    ids = torch.tensor([[pad_id] * (t - len(r)) + list(r) for r in rows])
    mask = torch.tensor([[0] * (t - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


def test_10_5_passes_and_rejects():
    assert check("10.5", left_pad).passed
    from mmcourse.lm import pad_sequences
    _fails("10.5", lambda rows, p: pad_sequences(rows, "right", p), "on the right")
    _fails("10.5", lambda rows, p: (left_pad(rows, p)[0], 1 - left_pad(rows, p)[1]), "inverted")
    _fails("10.5", lambda rows, p: left_pad(rows, 0), "pad_id")
    _fails("10.5", lambda rows, p: left_pad([r[::-1] for r in rows], p), "reverse order")
    _fails("10.5", lambda rows, p: left_pad(rows, p)[0], "pair")


# ------------------------------------------------------------------------ 10.7 prediction

_ROWS = {"text only (no image)": 0.2, "stage 1": 0.6, "stage 1 + 2": 0.9}


def test_10_7_records_any_well_formed_prediction():
    result = check("10.7", _ROWS)
    assert result.passed
    assert "text only (no image): 0.20, stage 1: 0.60, stage 1 + 2: 0.90" in result.message
    assert check("10.7", {**_ROWS, "stage 1": 0, "stage 1 + 2": 1}).passed
    assert check("10.7", {**_ROWS, "stage 1": torch.tensor(0.4)}).passed


@pytest.mark.parametrize("prediction, match", [
    ([0.2, 0.6, 0.9], "must be a dict"),
    ({"stage 1": 0.6, "stage 1 + 2": 0.9}, "no entry 'text only \\(no image\\)'"),
    ({**_ROWS, "stage 2": 0.9}, "unknown row 'stage 2'"),
    ({**_ROWS, "stage 1": "low"}, r"prediction\['stage 1'\] has 'low' \(str\) but a number"),
    ({**_ROWS, "stage 1": True}, r"prediction\['stage 1'\] has True \(bool\)"),
    ({**_ROWS, "stage 1 + 2": 92}, r"prediction\['stage 1 \+ 2'\] is 92, but an accuracy"),
    ({**_ROWS, "text only (no image)": -0.1}, r"is -0.1, but an accuracy"),
])
def test_10_7_rejects_malformed_predictions(prediction, match):
    _fails("10.7", prediction, match)
