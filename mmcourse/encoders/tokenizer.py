"""Text to token ids: the course's WordPiece tokenizer, batching strings, checking ids.

* :func:`train_tokenizer` learns a WordPiece vocabulary from the training texts (with the
  ``tokenizers`` library) and wraps it as a ``transformers.PreTrainedTokenizerFast``, so it can be
  saved with ``save_pretrained(dir)`` and reloaded offline with ``AutoTokenizer.from_pretrained(dir)``.
* :func:`tokenize` turns strings into right-padded ids (N, T) and lengths (N,).
* :func:`make_text_collate` batches the course's samples and turns their strings into padded
  token ids ``text`` (B, T) int64 plus ``text_lengths`` (B,): the common encoder input.
* :func:`check_token_ids` validates such a batch for an encoder and gives its mask.

Token id conventions: ``[PAD]`` is id 0 in every tokenizer of the course (and in MiniLM's), every
encoded text is ``[CLS] tokens [SEP]``, and an empty (missing) text becomes ``[CLS] [SEP]``
(length 2): the model sees "no words", and the batch's ``present["text"]`` says it was missing.
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import torch

from mmcourse.checks import check_int, check_texts
from mmcourse.encoders.masks import lengths_to_mask

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PAD_ID = 0  # [PAD] is always the first special token, so its id is 0


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

    It calls :func:`mmcourse.data.collate.collate_multimodal` (images stacked, audio padded,
    ``label``, ``present``) and then replaces the list of strings ``batch["text"]`` with
    ``text`` int64 (B, T) (right-padded with [PAD]) and ``text_lengths`` int64 (B,).
    A missing text (``""``, with ``present["text"] = False`` from the dataset) becomes
    ``[CLS] [SEP]``, length 2. With ``keep_strings=True`` the strings stay in ``text_strings``.

    A class rather than a closure so that DataLoader workers can pickle it.
    """

    def __init__(self, tokenizer, max_length: int = 32, keep_strings: bool = False,
                 base_collate=None):
        from mmcourse.data.collate import collate_multimodal

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
