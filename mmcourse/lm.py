"""A tiny causal language model (GPT-2) and its word-level tokenizer, trained from scratch offline.

Notebook 10 builds a LLaVA-style multimodal model on top of a language model. A real one
(Vicuna, Llama) is far too big for a 2-core CPU, so the course trains its own: a GPT-2 of two
layers and 128 dimensions (about 0.4 M parameters) on the course's texts and captions, whose
vocabulary has about a hundred words.

    tok = train_word_tokenizer(texts)                      # PreTrainedTokenizerFast, word level
    lm = make_gpt2(tok)                                    # transformers.GPT2LMHeadModel
    ids, mask = encode(tok, ["a red circle"], bos=True, eos=True)
    losses = train_lm(lm, tok, texts, steps=200)           # next-token prediction
    save_lm(lm, tok, "runs/lm"); lm, tok = load_lm("runs/lm")   # offline round trip

Token ids: ``<pad>`` is 0, ``<bos>`` 1, ``<eos>`` 2, ``<unk>`` 3 in every tokenizer of this module;
the model's ``bos/eos/pad_token_id`` are set to them (GPT-2's defaults, 50256, would be wrong).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn as nn

from mmcourse.checks import check_texts

SPECIAL = ("<pad>", "<bos>", "<eos>", "<unk>")
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3


def _quiet_transformers() -> None:
    """Silence transformers' logging and hub progress bars (they break strict notebook tests)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()  # "Loading weights", "Writing model shards"


def train_word_tokenizer(texts: Sequence[str]):
    """A word-level tokenizer learned from ``texts``: one id per distinct lower-cased word or
    punctuation mark, after the special tokens ``<pad> <bos> <eos> <unk>`` (ids 0-3).

    Returns a ``transformers.PreTrainedTokenizerFast`` (so ``save_pretrained`` and
    ``AutoTokenizer.from_pretrained`` work offline) with ``padding_side="left"``, the side that
    batched generation needs. Unknown words become ``<unk>``.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = check_texts(texts)
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces, "?" without one
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=list(SPECIAL)))
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>",
                                   eos_token="<eos>", unk_token="<unk>", padding_side="left")


def encode(tokenizer, texts: Sequence[str], bos: bool = True, eos: bool = True,
           side: str = "right") -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids int64 (B, T) and attention mask int64 (B, T) (1 = real token) of ``texts``,
    padded with ``<pad>`` on ``side`` ("right" or "left") to the longest text, with ``<bos>``
    before and ``<eos>`` after each text when asked."""
    texts = check_texts(texts)
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    rows = [([BOS_ID] if bos else []) + tokenizer(t, add_special_tokens=False)["input_ids"]
            + ([EOS_ID] if eos else []) for t in texts]
    return pad_sequences(rows, side=side)


def pad_sequences(rows: Sequence[Sequence[int]], side: str = "right",
                  pad_id: int = PAD_ID) -> tuple[torch.Tensor, torch.Tensor]:
    """Lists of token ids -> (ids int64 (B, T), mask int64 (B, T)), padded on ``side``."""
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    t = max(len(r) for r in rows)
    ids = torch.full((len(rows), t), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), t), dtype=torch.long)
    for i, r in enumerate(rows):
        sl = slice(t - len(r), t) if side == "left" else slice(0, len(r))
        ids[i, sl] = torch.as_tensor(list(r), dtype=torch.long)
        mask[i, sl] = 1
    return ids, mask


def make_gpt2(tokenizer, n_layer: int = 2, n_embd: int = 128, n_head: int = 4,
              n_positions: int = 64, dropout: float = 0.0):
    """A GPT-2 language model (``transformers.GPT2LMHeadModel``) with random weights, sized for
    ``tokenizer``: ``vocab_size=len(tokenizer)`` and its ``<bos>/<eos>/<pad>`` ids."""
    _quiet_transformers()
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=len(tokenizer), n_positions=n_positions, n_embd=n_embd,
                        n_layer=n_layer, n_head=n_head, resid_pdrop=dropout, embd_pdrop=dropout,
                        attn_pdrop=dropout, bos_token_id=BOS_ID, eos_token_id=EOS_ID,
                        pad_token_id=PAD_ID)
    return GPT2LMHeadModel(config)


def lm_loss(lm, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy of a right-padded batch (padding carries no loss)."""
    labels = ids.masked_fill(mask == 0, -100)
    return lm(input_ids=ids, attention_mask=mask, labels=labels).loss


def train_lm(lm, tokenizer, texts: Sequence[str], steps: int = 200, batch_size: int = 64,
             lr: float = 3e-3, seed: int = 0, device: str | torch.device | None = None,
             desc: str | None = "language model") -> list[float]:
    """Train ``lm`` on next-token prediction over ``texts`` for ``steps`` batches (AdamW, batches
    drawn at random with a seeded generator); returns the loss of every step."""
    from mmcourse.device import get_device
    from mmcourse.progress import progress

    device = get_device(device)
    ids, mask = encode(tokenizer, texts)
    lm.to(device).train()
    opt = torch.optim.AdamW(lm.parameters(), lr=lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for _ in progress(range(steps), desc=desc):
        idx = torch.randint(0, len(ids), (batch_size,), generator=gen)
        m = mask[idx]
        t = int(m.sum(1).max())  # trim the batch to its longest text
        loss = lm_loss(lm, ids[idx, :t].to(device), m[:, :t].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    lm.eval()
    return losses


def save_lm(lm, tokenizer, path: str | os.PathLike) -> Path:
    """``save_pretrained`` of the model and the tokenizer into the folder ``path``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    lm.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def load_lm(path: str | os.PathLike):
    """``(model, tokenizer)`` from a folder written by :func:`save_lm`, offline (files only)."""
    _quiet_transformers()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"no saved language model in {path} (config.json is missing); "
                                f"write one with save_lm(model, tokenizer, path)")
    lm = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    return lm.eval(), tok


@torch.no_grad()
def generate_text(lm, tokenizer, prompts: Sequence[str], max_new_tokens: int = 8) -> list[str]:
    """Greedy continuations of ``prompts`` (left-padded, ``<bos>`` first), decoded."""
    ids, mask = encode(tokenizer, prompts, eos=False, side="left")
    device = next(lm.parameters()).device
    out = lm.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                      max_new_tokens=max_new_tokens, pad_token_id=PAD_ID, eos_token_id=EOS_ID)
    return tokenizer.batch_decode(out[:, ids.shape[1]:], skip_special_tokens=True)


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (only those with ``requires_grad`` when ``trainable_only``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


__all__ = ["SPECIAL", "PAD_ID", "BOS_ID", "EOS_ID", "UNK_ID", "train_word_tokenizer", "encode",
           "pad_sequences", "make_gpt2", "lm_loss", "train_lm", "save_lm", "load_lm",
           "generate_text", "count_parameters"]
