"""Text: from strings to token ids to feature vectors.

The pieces, in the order notebook 02 teaches them (all importable from here):

* the tokenizer, in :mod:`mmcourse.encoders.tokenizer`: :func:`train_tokenizer` learns a
  WordPiece vocabulary from the training texts and wraps it for ``transformers``;
  :func:`tokenize` turns strings into padded ids; :func:`make_text_collate` batches the course's
  samples into token ids ``text`` (B, T) int64 plus ``text_lengths`` (B,), the common encoder
  input.
* Three encoders trained from scratch, in this module, all following the interface of
  :mod:`mmcourse.encoders` (``encoder(ids, lengths) -> (B, D)``,
  ``encoder.sequence(ids, lengths) -> (B, T, D), mask``, ``encoder.out_dim``):
  :class:`BagOfWordsEncoder` (token counts -> linear -> ReLU), :class:`EmbeddingBagEncoder`
  (mean of learned token embeddings) and :class:`TransformerTextEncoder` (a small BERT built
  from a ``BertConfig``).
* the pretrained all-MiniLM-L6-v2 sentence encoder, in :mod:`mmcourse.encoders.minilm`:
  :class:`PretrainedSentenceEncoder` (384-d, loaded offline after a checksum) and
  :func:`pretrained_text_encoder_available` (whether it can be loaded here).

Token id conventions: ``[PAD]`` is id 0, every encoded text is ``[CLS] tokens [SEP]``, and an
empty (missing) text becomes ``[CLS] [SEP]`` (see :mod:`mmcourse.encoders.tokenizer`).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmcourse.encoders.masks import masked_mean
# The tokenizer and the pretrained encoder live in their own modules; notebooks import them
# from here, with the encoders, as the pieces of one topic.
from mmcourse.encoders.minilm import (  # noqa: F401
    PretrainedSentenceEncoder, pretrained_text_encoder_available)
from mmcourse.encoders.tokenizer import (  # noqa: F401
    PAD_ID, check_token_ids, make_text_collate, tokenize, train_tokenizer)


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
