"""Tests of mmcourse.mllm: the LLaVA-style projector, labels, stages and generation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from mmcourse.lm import BOS_ID, EOS_ID, make_gpt2, train_word_tokenizer
from mmcourse.mllm import (IGNORE_INDEX, PROMPTS, MultimodalLM, QFormerLite, answer,
                           attribute_accuracy, build_labels, encode_examples, make_examples,
                           make_projector, majority_accuracy, pack, parse_caption, qa_accuracy,
                           set_stage, train_mllm)

pytestmark = pytest.mark.usefixtures("one_thread")

ATTRS = np.array([[4, 4, 2, 0], [0, 0, 0, 4], [6, 3, 1, 3]])  # star blue large top left, ...


@pytest.fixture(scope="module")
def tok():
    texts = list(PROMPTS.values()) + [answer(a, "caption") for a in ATTRS]
    return train_word_tokenizer(texts)


@pytest.fixture
def model(tok):
    torch.manual_seed(0)
    return MultimodalLM(make_gpt2(tok, n_layer=1, n_embd=32, n_head=2), make_projector(8, 32))


def test_projector_shapes():
    x = torch.randn(2, 5, 8)
    lin, mlp = make_projector(8, 32, "linear"), make_projector(8, 32, "mlp")
    assert lin(x).shape == mlp(x).shape == (2, 5, 32)
    assert isinstance(lin, nn.Linear)
    assert [type(m) for m in mlp] == [nn.Linear, nn.GELU, nn.Linear]
    q = QFormerLite(8, 32, num_queries=3)
    assert q(x).shape == (2, 3, 32) and q.last_attention.shape == (2, 3, 5)
    with pytest.raises(ValueError, match="kind"):
        make_projector(8, 32, "conv")


def test_answers_and_examples():
    assert answer(ATTRS[0], "caption") == "large blue star top left"
    assert answer(ATTRS[1], "colour") == "red"
    index, prompts, answers = make_examples(ATTRS, ("caption", "size"))
    assert index.tolist() == [0, 1, 2, 0, 1, 2] and answers[3] == "large"
    assert parse_caption("large blue star top left") == {"shape": 4, "colour": 4, "size": 2, "position": 0}
    assert parse_caption("blue")["shape"] == -1
    acc = attribute_accuracy(["large blue star top left", "small red circle top left", ""], ATTRS)
    assert acc["shape"] == pytest.approx(2 / 3) and acc["position"] == pytest.approx(1 / 3)
    assert majority_accuracy(ATTRS, ATTRS)["size"] == pytest.approx(1 / 3)
    assert qa_accuracy(["blue", "red", "red"], ATTRS, "colour") == pytest.approx(2 / 3)


def test_labels_ignore_image_prompt_and_padding(tok):
    ids, mask, start = encode_examples(tok, ["what colour is the shape ?", "describe the image ."],
                                       ["blue", "large blue star top left"])
    labels = build_labels(ids, mask, 4, start)
    assert labels.shape == (2, 4 + ids.shape[1])
    assert (labels[:, :4] == IGNORE_INDEX).all()
    assert (labels[:, 4:][mask == 0] == IGNORE_INDEX).all()
    row = labels[0, 4:]
    assert (row[:start[0]] == IGNORE_INDEX).all()  # <bos> and the question
    assert row[start[0]] == tok.convert_tokens_to_ids("blue") and row[start[0] + 1] == EOS_ID
    # not shifted: the label at a position is the token at that position
    assert torch.equal(labels[1, 4:][mask[1] == 1][start[1]:], ids[1][mask[1] == 1][start[1]:])
    assert build_labels(ids, mask, 0).shape == ids.shape and build_labels(ids, mask, 0)[0, 0] == BOS_ID


def test_pack_moves_padding():
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    x = torch.tensor([[5, 6, 0, 0], [1, 2, 3, 4]])
    assert x.gather(1, pack(mask, "left")).tolist() == [[0, 0, 5, 6], [1, 2, 3, 4]]
    left = torch.tensor([[0, 1, 1]])
    assert torch.tensor([[0, 7, 8]]).gather(1, pack(left, "right")).tolist() == [[7, 8, 0]]


def test_padding_side_does_not_change_the_loss(model, tok):
    ids, mask, start = encode_examples(tok, ["describe the image .", "how big is the shape ?"],
                                       ["small red circle centre", "large"])
    labels = build_labels(ids, mask, 3, start)
    feats = torch.randn(2, 3, 8)
    with torch.no_grad():
        right = model(feats, ids, mask, labels).loss
        embeds, full_mask, positions, lab = model.embed(feats, ids, mask, labels, side="left")
        left = model.lm(inputs_embeds=embeds, attention_mask=full_mask, position_ids=positions,
                        labels=lab).loss
    assert full_mask[1, 0] == 0 or full_mask[0, 0] == 0
    assert torch.allclose(right, left, atol=1e-5)


def test_batched_left_padded_generation_equals_unbatched(model, tok):
    torch.manual_seed(1)
    feats = torch.randn(3, 3, 8)
    prompts = [PROMPTS["caption"], PROMPTS["colour"], PROMPTS["size"]]  # different lengths
    batched = model.generate(feats, prompts, tok, max_new_tokens=5)
    single = [model.generate(feats[i:i + 1], [p], tok, max_new_tokens=5)[0]
              for i, p in enumerate(prompts)]
    assert batched == single
    assert len(model.generate(None, prompts, tok, max_new_tokens=2)) == 3


def test_stage_one_freezes_the_lm(model, tok):
    names = set_stage(model, 1)
    assert names and all(n.startswith("projector.") for n in names)
    lm_before = {k: v.clone() for k, v in model.lm.state_dict().items()}
    proj_before = [p.clone() for p in model.projector.parameters()]
    index, prompts, answers = make_examples(ATTRS)
    ids, mask, start = encode_examples(tok, prompts, answers)
    labels = build_labels(ids, mask, 3, start)
    feats = torch.randn(len(ATTRS), 3, 8)[index]
    train_mllm(model, feats, ids, mask, labels, steps=3, batch_size=4)
    assert all(torch.equal(v, model.lm.state_dict()[k]) for k, v in lm_before.items())
    assert any(not torch.equal(a, b) for a, b in zip(proj_before, model.projector.parameters()))
    names2 = set_stage(model, 2)
    assert any(n.startswith("lm.") for n in names2)
    with pytest.raises(ValueError, match="stage"):
        set_stage(model, 3)
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="nothing to train"):
        train_mllm(model, feats, ids, mask, labels, steps=1)


def test_errors_for_bad_features(model, tok):
    ids, mask, _ = encode_examples(tok, ["describe the image ."] * 2, ["red", "blue"])
    with pytest.raises(ValueError, match="size 8"):
        model(torch.randn(2, 3, 7), ids, mask)
    with pytest.raises(ValueError, match="batch mismatch"):
        model(torch.randn(3, 3, 8), ids, mask)
    with pytest.raises(ValueError, match="unsqueeze"):
        model(torch.randn(2, 8), ids, mask)
    with pytest.raises(ValueError, match="build_labels"):
        model(torch.randn(2, 3, 8), ids, mask, build_labels(ids, mask, 2))
    with pytest.raises(ValueError, match="batch mismatch"):
        train_mllm(model, torch.randn(3, 3, 8), ids, mask, build_labels(ids, mask, 3))
