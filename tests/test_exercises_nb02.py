"""The checks of notebook 02's exercises pass the solutions and reject plausible wrong answers."""
from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from mmcourse.exercises import ExerciseFailed, check


# ---------------------------------------------------------------- 2.1 masked mean pooling

def _pool_right(hidden, lengths):
    mask = torch.arange(hidden.shape[1])[None, :] < lengths[:, None]
    return (hidden * mask[..., None]).sum(1) / lengths[:, None].float()


def test_2_1_passes_and_rejects():
    assert check("2.1", _pool_right).passed
    with pytest.raises(ExerciseFailed, match="padding included"):
        check("2.1", lambda h, n: h.mean(1))
    with pytest.raises(ExerciseFailed, match="divided by T"):
        check("2.1", lambda h, n: (h * (torch.arange(h.shape[1])[None] < n[:, None])[..., None]).sum(1) / h.shape[1])
    with pytest.raises(ExerciseFailed, match="SUM"):
        check("2.1", lambda h, n: (h * (torch.arange(h.shape[1])[None] < n[:, None])[..., None]).sum(1))
    with pytest.raises(ExerciseFailed, match="shape"):
        check("2.1", lambda h, n: h[:, 0, 0])
    with pytest.raises(ExerciseFailed, match="first padding token"):  # off by one: <= instead of <
        check("2.1", lambda h, n: (h * (torch.arange(h.shape[1])[None] <= n[:, None])[..., None]).sum(1)
              / n[:, None])


# ---------------------------------------------------------------- 2.2 OOV rate

def _oov_right(tokenizer, texts):
    vocab = tokenizer.get_vocab()
    words = [w for t in texts for w in re.findall(r"[a-z]+", t.lower())]
    return sum(w not in vocab for w in words) / len(words)


def test_2_2_passes_and_rejects():
    assert check("2.2", _oov_right).passed

    def count(tokenizer, texts):
        return _oov_right(tokenizer, texts) * sum(len(re.findall(r"[a-z]+", t.lower())) for t in texts)

    def unique(tokenizer, texts):
        words = {w for t in texts for w in re.findall(r"[a-z]+", t.lower())}
        return sum(w not in tokenizer.get_vocab() for w in words) / len(words)

    def cased(tokenizer, texts):
        words = [w for t in texts for w in re.findall(r"[A-Za-z]+", t)]
        return sum(w not in tokenizer.get_vocab() for w in words) / len(words)

    for wrong, match in ((count, "NUMBER"), (lambda tk, tx: 1 - _oov_right(tk, tx), "IN the"),
                         (unique, "distinct"), (cased, "lower-case"), (lambda tk, tx: "0.3", "number")):
        with pytest.raises(ExerciseFailed, match=match):
            check("2.2", wrong)


# ---------------------------------------------------------------- 2.3 bag of words

def _bow_right(text, vocab):
    out = torch.zeros(len(vocab))
    for w in re.findall(r"[a-z]+", text.lower()):
        if w in vocab:
            out[vocab.index(w)] += 1
    return out


def test_2_3_passes_and_rejects():
    assert check("2.3", _bow_right).passed
    with pytest.raises(ExerciseFailed, match="COUNTS"):
        check("2.3", lambda t, v: (_bow_right(t, v) > 0).float())
    with pytest.raises(ExerciseFailed, match="lower-case"):
        check("2.3", lambda t, v: torch.tensor([float(re.findall(r"[A-Za-z]+", t).count(w)) for w in v]))
    with pytest.raises(ExerciseFailed, match="shape"):
        check("2.3", lambda t, v: torch.cat([_bow_right(t, v), torch.zeros(1)]))
    with pytest.raises(ExerciseFailed, match="Tensor"):
        check("2.3", lambda t, v: _bow_right(t, v).tolist())


# ---------------------------------------------------------------- 2.4 cosine similarity

def test_2_4_passes_and_rejects():
    assert check("2.4", lambda a, b: F.normalize(a, dim=1) @ F.normalize(b, dim=1).T).passed
    with pytest.raises(ExerciseFailed, match="dot products"):
        check("2.4", lambda a, b: a @ b.T)
    with pytest.raises(ExerciseFailed, match="Euclidean"):
        check("2.4", torch.cdist)
    with pytest.raises(ExerciseFailed, match="COLUMN"):
        check("2.4", lambda a, b: F.normalize(a, dim=0) @ F.normalize(b, dim=0).T)
    with pytest.raises(ExerciseFailed, match="BOTH"):
        check("2.4", lambda a, b: F.normalize(a, dim=1) @ b.T)
    with pytest.raises(ExerciseFailed, match="shape"):
        check("2.4", lambda a, b: F.normalize(a, dim=1) * F.normalize(b, dim=1)[:3])


# ------------------------------------------------------------------ 2.5 a prediction, recorded

def test_2_5_records_any_well_formed_prediction():
    result = check("2.5", {"pretrained": 0.55, "scratch": 0.45})
    assert result.passed and "pretrained 0.55, scratch 0.45" in result.message
    assert check("2.5", {"scratch": 0.2, "pretrained": 0.9}).passed  # any order, any values


@pytest.mark.parametrize("prediction, message", [
    ("pretrained", "must be a dict {'pretrained': ..., 'scratch': ...}"),
    ({"pretrained": 0.55}, "no entry for ['scratch']"),
    ({"pretrained": 0.55, "scratch": 0.45, "bag of words": 0.5}, "the key 'bag of words', which is not one of"),
    ({"pretrained": "better", "scratch": 0.45}, "predicted_accuracy['pretrained'] has 'better' (str)"),
    ({"pretrained": 55, "scratch": 45}, "55% is 0.55"),
    ({"pretrained": 0.55, "scratch": -0.2}, "is -0.2, but a test accuracy is a fraction"),
])
def test_2_5_rejects_malformed_predictions(prediction, message):
    with pytest.raises(ExerciseFailed) as info:
        check("2.5", prediction)
    assert message in str(info.value)
