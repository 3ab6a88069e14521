"""Tests of mmcourse.lm: the word tokenizer and the tiny GPT-2, offline."""
from __future__ import annotations

import pytest
import torch

from mmcourse.lm import (BOS_ID, EOS_ID, PAD_ID, count_parameters, encode, generate_text,
                         load_lm, make_gpt2, pad_sequences, save_lm, train_lm,
                         train_word_tokenizer)

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = ["a small red circle top left", "a large blue star centre", "describe the image .",
         "what colour is the shape ?", "a medium green ring bottom right"]


@pytest.fixture(scope="module")
def tok():
    return train_word_tokenizer(TEXTS)


def test_tokenizer_ids_and_round_trip(tok):
    assert [tok.convert_ids_to_tokens(i) for i in (PAD_ID, BOS_ID, EOS_ID)] == ["<pad>", "<bos>", "<eos>"]
    ids = tok("A red star ?", add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == "a red star?"
    assert tok.padding_side == "left"
    assert tok("zebra", add_special_tokens=False)["input_ids"] == [tok.unk_token_id]


def test_encode_pads_on_either_side(tok):
    ids, mask = encode(tok, ["a red", "a large blue star"], side="right")
    assert ids[0, 0] == BOS_ID and ids[0, 3] == EOS_ID and ids[0, -1] == PAD_ID
    assert mask.tolist()[0] == [1, 1, 1, 1, 0, 0]
    left, lmask = encode(tok, ["a red", "a large blue star"], side="left")
    assert lmask.tolist()[0] == [0, 0, 1, 1, 1, 1] and left[0, 2] == BOS_ID
    with pytest.raises(TypeError, match="single str"):
        encode(tok, "a red")
    with pytest.raises(ValueError, match="side"):
        pad_sequences([[1]], side="middle")


def test_gpt2_sized_for_tokenizer_trains_and_generates(tok):
    torch.manual_seed(0)
    lm = make_gpt2(tok, n_layer=1, n_embd=32, n_head=2)
    assert lm.config.vocab_size == len(tok)
    assert (lm.config.bos_token_id, lm.config.eos_token_id, lm.config.pad_token_id) == (BOS_ID, EOS_ID, PAD_ID)
    losses = train_lm(lm, tok, TEXTS * 4, steps=30, batch_size=8, lr=1e-2, desc=None)
    assert losses[-1] < losses[0]
    out = generate_text(lm, tok, ["a", "what colour is"], max_new_tokens=4)
    assert len(out) == 2 and all(isinstance(o, str) for o in out)
    assert count_parameters(lm) > count_parameters(lm, trainable_only=True) - 1


def test_save_load_round_trip_offline(tok, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    lm = make_gpt2(tok, n_layer=1, n_embd=32, n_head=2).eval()
    save_lm(lm, tok, tmp_path / "lm")
    lm2, tok2 = load_lm(tmp_path / "lm")
    ids, mask = encode(tok, TEXTS)
    assert tok2(TEXTS[0])["input_ids"] == tok(TEXTS[0])["input_ids"]
    with torch.no_grad():
        assert torch.allclose(lm(input_ids=ids, attention_mask=mask).logits,
                              lm2(input_ids=ids, attention_mask=mask).logits, atol=1e-6)
    with pytest.raises(FileNotFoundError, match="save_lm"):
        load_lm(tmp_path / "nothing")
