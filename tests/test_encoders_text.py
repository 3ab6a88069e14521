"""Text encoders: tokenizer training and reload, collate, the three from-scratch encoders and the
pretrained MiniLM sentence encoder (on the installed package; skipped without it)."""
from __future__ import annotations

import os
import shutil

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import transformers  # noqa: E402

from mmcourse.data.dataset import MultimodalDataset  # noqa: E402
from mmcourse.encoders import masks  # noqa: E402
from mmcourse.encoders import minilm as M  # noqa: E402
from mmcourse.encoders import text as T  # noqa: E402
from mmcourse.encoders import tokenizer as TK  # noqa: E402

transformers.logging.set_verbosity_error()

TEXTS = ["A big red star in the top left.", "there is a small blue circle in the middle",
         "Green square, tiny, near the bottom right corner.", "a huge yellow ring", "",
         "A little purple hexagon at the upper right; it is small."]


@pytest.fixture(scope="module")
def tokenizer():
    return T.train_tokenizer(TEXTS * 3, vocab_size=300)


# ---------------------------------------------------------------- tokenizer

def test_tokenizer_special_tokens_lowercase_and_template(tokenizer):
    assert tokenizer.convert_ids_to_tokens(list(range(5))) == list(TK.SPECIAL_TOKENS)
    assert tokenizer.pad_token_id == 0
    ids = tokenizer("A BIG Star")["input_ids"]
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    assert tokenizer.convert_ids_to_tokens(ids)[1:-1] == ["a", "big", "star"]
    assert tokenizer("")["input_ids"] == [tokenizer.cls_token_id, tokenizer.sep_token_id]
    # an unseen word splits into known pieces; a character never seen becomes [UNK]
    pieces = tokenizer.tokenize("starring 7")
    assert pieces[0] == "star" and pieces[-1] == "[UNK]" and all(p != "[UNK]" for p in pieces[:-1])


def test_tokenizer_is_deterministic_and_respects_vocab_size():
    a = T.train_tokenizer(TEXTS, vocab_size=60)
    b = T.train_tokenizer(list(TEXTS), vocab_size=60)
    assert a.get_vocab() == b.get_vocab()
    assert len(a) == 60
    assert len(T.train_tokenizer(TEXTS, vocab_size=10_000)) < 10_000  # stops when all words are whole


def test_learn_wordpiece_vocab_merges_most_frequent_pair_first():
    vocab = TK.learn_wordpiece_vocab({"ab": 5, "ac": 2}, vocab_size=100)
    base = list(TK.SPECIAL_TOKENS) + ["a", "##b", "##c"]
    assert vocab == base + ["ab", "ac"]
    assert TK.learn_wordpiece_vocab({"ab": 5, "ac": 2}, vocab_size=9) == base + ["ab"]
    assert TK.learn_wordpiece_vocab({"ab": 5, "ac": 2}, 100, min_frequency=3) == base + ["ab"]


def test_tokenizer_save_and_reload_offline(tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tokenizer.save_pretrained(tmp_path)
    reloaded = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded.get_vocab() == tokenizer.get_vocab()
    assert reloaded(TEXTS)["input_ids"] == tokenizer(TEXTS)["input_ids"]
    assert reloaded.pad_token == "[PAD]" and reloaded.cls_token == "[CLS]"
    T.train_tokenizer(TEXTS, vocab_size=60, save_dir=tmp_path / "direct")
    assert (tmp_path / "direct" / "tokenizer.json").is_file()


@pytest.mark.parametrize("bad, error", [([], ValueError), ("a single string", TypeError),
                                        (["ok", 3], TypeError), (["", "  "], ValueError)])
def test_tokenizer_rejects_bad_texts(bad, error):
    with pytest.raises(error):
        T.train_tokenizer(bad)


def test_tokenizer_rejects_tiny_vocab():
    with pytest.raises(ValueError, match="vocab_size"):
        T.train_tokenizer(TEXTS, vocab_size=3)


# ---------------------------------------------------------------- tokenize and collate

def test_tokenize_pads_and_truncates(tokenizer):
    ids, lengths = T.tokenize(tokenizer, TEXTS, max_length=8)
    assert ids.dtype == torch.int64 and lengths.dtype == torch.int64
    assert ids.shape == (len(TEXTS), 8) and lengths.max() == 8
    assert lengths[4] == 2  # the empty text: [CLS] [SEP]
    assert (ids[4, 2:] == 0).all()
    assert (ids[torch.arange(len(TEXTS)), lengths - 1] == tokenizer.sep_token_id).all()
    with pytest.raises(TypeError):
        T.tokenize(tokenizer, ["ok", None])
    with pytest.raises(ValueError):
        T.tokenize(tokenizer, [])
    with pytest.raises(ValueError, match="max_length"):
        T.tokenize(tokenizer, TEXTS, max_length=1)


def test_text_collate_gives_ids_lengths_and_presence(tokenizer):
    present = [t != "" for t in TEXTS]
    ds = MultimodalDataset({"text": TEXTS}, labels=list(range(len(TEXTS))),
                           present={"text": present})
    collate = T.make_text_collate(tokenizer, max_length=32, keep_strings=True)
    batch = collate([ds[i] for i in range(len(ds))])
    assert batch["text"].dtype == torch.int64 and batch["text"].dim() == 2
    assert batch["text_lengths"].tolist() == [len(tokenizer(t)["input_ids"]) for t in TEXTS]
    assert batch["present"]["text"].tolist() == present
    assert batch["text_strings"] == TEXTS
    assert "TextCollate" in repr(collate)
    import pickle
    pickle.loads(pickle.dumps(collate))  # DataLoader workers can pickle it


# ---------------------------------------------------------------- encoders

def _batch(tokenizer, texts=TEXTS):
    return T.tokenize(tokenizer, texts, max_length=32)


@pytest.mark.parametrize("make", [
    lambda v: T.BagOfWordsEncoder(v, 16),
    lambda v: T.EmbeddingBagEncoder(v, 16),
    lambda v: T.TransformerTextEncoder(v, hidden=16, layers=1, heads=2, max_length=32),
    lambda v: T.TransformerTextEncoder(v, hidden=16, layers=1, heads=2, max_length=32,
                                       pooling="mean"),
], ids=["bow", "embbag", "transformer-cls", "transformer-mean"])
def test_encoder_shapes_masks_and_padding(tokenizer, make):
    torch.manual_seed(0)
    enc = make(len(tokenizer)).eval()
    ids, lengths = _batch(tokenizer)
    out = enc(ids, lengths)
    assert out.shape == (len(TEXTS), enc.out_dim) == (len(TEXTS), 16)
    seq, mask = enc.sequence(ids, lengths)
    assert seq.shape == (*ids.shape, 16) and mask.dtype == torch.bool
    assert mask.sum(1).tolist() == lengths.tolist()
    # the same text padded to a longer batch gives the same features
    longer = torch.cat([ids, torch.zeros(len(TEXTS), 5, dtype=torch.long)], dim=1)
    torch.testing.assert_close(enc(longer, lengths), out, atol=1e-5, rtol=1e-5)
    # lengths=None reads the padding from the [PAD] ids
    torch.testing.assert_close(enc(ids), out, atol=1e-5, rtol=1e-5)
    out.sum().backward()  # trainable end to end


def test_bag_of_words_counts_and_equivalence_to_summed_token_vectors(tokenizer):
    enc = T.BagOfWordsEncoder(len(tokenizer), 8)
    ids, lengths = T.tokenize(tokenizer, ["star star ring", ""])
    counts = enc.counts(ids, lengths)
    assert counts[0, tokenizer.convert_tokens_to_ids("star")] == 2
    assert counts[0].sum() == 3 and counts[1].sum() == 0  # [CLS], [SEP], [PAD] not counted
    assert T.BagOfWordsEncoder(len(tokenizer), 8, binary=True).counts(ids, lengths).max() == 1
    seq, mask = enc.sequence(ids, lengths)
    special = torch.isin(ids, torch.tensor([0, 2, 3]))
    summed = (seq * (mask & ~special).unsqueeze(-1)).sum(1) + enc.linear.bias
    torch.testing.assert_close(torch.relu(summed), enc(ids, lengths), atol=1e-5, rtol=1e-5)


def test_transformer_pooling_differs_and_rejects_bad_config(tokenizer):
    with pytest.raises(ValueError, match="pooling"):
        T.TransformerTextEncoder(50, pooling="max")
    with pytest.raises(ValueError, match="divisible"):
        T.TransformerTextEncoder(50, hidden=10, heads=4)
    enc = T.TransformerTextEncoder(len(tokenizer), hidden=16, layers=1, heads=2, max_length=8)
    ids = torch.full((1, 9), 5, dtype=torch.long)
    with pytest.raises(ValueError, match="max_length"):
        enc(ids)


def test_tiny_bert_save_and_reload(tokenizer, tmp_path):
    torch.manual_seed(0)
    enc = T.TransformerTextEncoder(len(tokenizer), hidden=16, layers=1, heads=2).eval()
    enc.bert.save_pretrained(tmp_path)
    reloaded = transformers.BertModel.from_pretrained(tmp_path).eval()
    ids, lengths = _batch(tokenizer)
    mask = masks.lengths_to_mask(lengths, ids.shape[1]).long()
    torch.testing.assert_close(reloaded(input_ids=ids, attention_mask=mask).last_hidden_state,
                               enc.sequence(ids, lengths)[0])


@pytest.mark.parametrize("ids, lengths, match", [
    (torch.zeros(2, 3), None, "integer"),                                    # float ids
    ([[1, 2]], None, "torch.Tensor"),                                        # a list
    (torch.zeros(3, dtype=torch.long), None, r"\(B, T\)"),                   # 1-D
    (torch.zeros(0, 4, dtype=torch.long), None, "empty"),                    # no texts
    (torch.tensor([[2, 500, 3]]), None, r"\[0, "),                           # id out of vocab
    (torch.tensor([[2, -1, 3]]), None, r"\[0, "),
    (torch.tensor([[2, 10, 3]]), torch.tensor([0]), "lengths"),              # empty text
    (torch.tensor([[2, 10, 3]]), torch.tensor([4]), "lengths"),              # longer than T
    (torch.tensor([[2, 10, 3]]), torch.tensor([3.0]), "lengths"),            # float lengths
])
def test_encoders_reject_bad_input(tokenizer, ids, lengths, match):
    for enc in (T.BagOfWordsEncoder(len(tokenizer), 4), T.EmbeddingBagEncoder(len(tokenizer), 4),
                T.TransformerTextEncoder(len(tokenizer), hidden=8, layers=1, heads=2)):
        with pytest.raises(ValueError, match=match):
            enc(ids, lengths)


def test_masked_mean_ignores_padding():
    x = torch.tensor([[[1.0], [3.0], [100.0]]])
    assert masks.masked_mean(x, torch.tensor([[True, True, False]])).item() == 2.0


# ---------------------------------------------------------------- pretrained MiniLM

MINILM = M.minilm_package_path()
needs_minilm = pytest.mark.skipif(
    MINILM is None, reason=f"the optional package {M.MINILM_PACKAGE} is not installed "
                           f"(scripts/setup.sh installs it); the pretrained path cannot be tested")


def test_availability_reports_a_reason():
    ok, reason = T.pretrained_text_encoder_available()
    assert isinstance(ok, bool) and M.MINILM_NAME in reason
    assert "/" not in reason.replace(M.MINILM_NAME, "")  # no local paths in notebook output
    assert ok == (MINILM is not None or M._hub_cache_path() is not None)


def test_availability_without_the_package(monkeypatch):
    monkeypatch.setattr(M, "minilm_package_path", lambda: None)
    monkeypatch.setattr(M, "_hub_cache_path", lambda: None)
    ok, reason = T.pretrained_text_encoder_available()
    assert not ok and "pip install" in reason


@pytest.fixture(scope="module")
def minilm():
    if MINILM is None:
        pytest.skip(f"the optional package {M.MINILM_PACKAGE} is not installed")
    return T.PretrainedSentenceEncoder()


@needs_minilm
def test_minilm_gives_the_real_embeddings(minilm):
    assert minilm.out_dim == M.MINILM_DIM == 384
    assert not any(p.requires_grad for p in minilm.parameters())
    emb = minilm.encode(["a photo of a cat", "a picture of a kitten", "a red car on the road"])
    assert emb.shape == (3, 384) and emb.dtype == torch.float32
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(3))
    assert emb[0] @ emb[1] == pytest.approx(0.795, abs=0.005)
    assert emb[0] @ emb[2] < 0.3
    # the common interface: token ids from its own tokenizer, padded, with lengths
    ids, lengths = T.tokenize(minilm.tokenizer, ["a photo of a cat", "a picture of a kitten"])
    padded = torch.cat([ids, torch.zeros(2, 4, dtype=torch.long)], dim=1)
    torch.testing.assert_close(minilm(padded, lengths), emb[:2], atol=1e-5, rtol=1e-5)
    seq, mask = minilm.sequence(ids, lengths)
    assert seq.shape == (2, ids.shape[1], 384) and mask.sum(1).tolist() == lengths.tolist()
    minilm.train()
    assert not minilm.model.training  # frozen: dropout stays off
    with pytest.raises(TypeError):
        minilm.encode(["fine", 3])
    with pytest.raises(ValueError):
        minilm.encode([])


@needs_minilm
def test_minilm_checksum_mismatch_is_refused(tmp_path):
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        if (MINILM / name).is_file():
            shutil.copy(MINILM / name, tmp_path / name)
    (tmp_path / "model.safetensors").write_bytes(b"not the real weights")
    with pytest.raises(M.WeightsChecksumError, match="SHA-256"):
        T.PretrainedSentenceEncoder(path=tmp_path)
    with pytest.raises(FileNotFoundError):
        M.verify_weights(tmp_path / "nowhere")


@needs_minilm
def test_minilm_checksum_of_the_installed_package():
    M.verify_weights(MINILM)  # the installed weights are the pinned revision's
    assert M.sha256_file(MINILM / "model.safetensors") == M.MINILM_SHA256
