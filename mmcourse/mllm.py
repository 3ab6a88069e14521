"""A LLaVA-style multimodal language model: frozen image features -> projector -> soft tokens in
front of the text, read by a causal language model.

The recipe of LLaVA (Liu et al., 2023), at the course's scale:

* a **frozen image encoder** gives patch features (B, N, D_img) (here the course's image CNN:
  a 4x4 map, N = 16 patches; it is frozen, so its features are computed once);
* a **projector** maps each patch to the LM's embedding size E: ``nn.Linear`` (LLaVA v1) or
  Linear-GELU-Linear (LLaVA-1.5), see :func:`make_projector`;
* the N projected patches are **prepended** to the embedded text and the whole sequence goes to
  the LM through ``inputs_embeds``; the **labels** are -100 (no loss) at the image positions, at
  the prompt (the question) and at padding, so only the answer is learned (:func:`build_labels`);
* **stage 1** trains only the projector (the LM is frozen): it learns to speak the LM's
  language; **stage 2** trains the projector and the LM together (:func:`set_stage`).

    model = MultimodalLM(lm, make_projector(64, 128, "mlp"))
    out = model(features, ids, mask, labels)          # a transformers CausalLMOutput (.loss, .logits)
    model.generate(features, prompts, tokenizer)      # ["large blue star top left", ...]

BLIP-2's Q-Former differs: a fixed number of learned queries cross-attend to the frozen patches
and only those query outputs reach the LM (:class:`QFormerLite`, a one-layer version).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from mmcourse.checks import check_int
from mmcourse.lm import BOS_ID, EOS_ID, PAD_ID, pad_sequences
# The tasks and their scoring are in mllm_tasks.py; notebook 10 imports them from here.
from mmcourse.mllm_tasks import (ATTRIBUTE_VALUES, PROMPTS, answer,  # noqa: F401
                                 attribute_accuracy, majority_accuracy, make_examples,
                                 parse_caption, qa_accuracy)

IGNORE_INDEX = -100  # what torch's cross-entropy (and transformers' labels) skip


# --------------------------------------------------------------------------------------------
# Projectors
# --------------------------------------------------------------------------------------------

def make_projector(in_dim: int, out_dim: int, kind: str = "mlp") -> nn.Module:
    """The map from image features (..., in_dim) to LM embeddings (..., out_dim).

    ``kind="linear"``: ``nn.Linear(in_dim, out_dim)`` (LLaVA v1); ``"mlp"``:
    ``nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))``
    (LLaVA-1.5: hidden width = the LM's width).
    """
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))
    raise ValueError(f"kind must be 'linear' or 'mlp', got {kind!r}")


class QFormerLite(nn.Module):
    """A one-layer Q-Former (BLIP-2, Li et al., 2023): ``num_queries`` learned query vectors
    cross-attend to the frozen image patches, then a feed-forward block and a linear map to the
    LM's embedding size turn them into ``num_queries`` soft prompt tokens.

    Input: patches float (B, N, in_dim) (any N). Output: (B, num_queries, out_dim). Unlike a
    LLaVA projector, the number of tokens the LM sees is fixed by the queries, not by N.
    (The real Q-Former is a 12-layer BERT whose queries also self-attend, pretrained with
    contrastive, matching and captioning losses; this keeps only the idea.)
    """

    def __init__(self, in_dim: int, out_dim: int, num_queries: int = 4, dim: int = 64,
                 heads: int = 4):
        super().__init__()
        check_int(num_queries, "num_queries")
        self.in_dim, self.out_dim = in_dim, out_dim
        self.queries = nn.Parameter(torch.randn(num_queries, dim) * 0.02)
        self.kv = nn.Linear(in_dim, dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.out = nn.Linear(dim, out_dim)
        self.last_attention: torch.Tensor | None = None

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        _check_features(patches, self.in_dim, "QFormerLite")
        kv = self.kv(patches)
        q = self.queries.unsqueeze(0).expand(len(patches), -1, -1)
        attended, weights = self.attn(q, kv, kv, need_weights=True)
        self.last_attention = weights.detach()  # (B, num_queries, N)
        h = self.norm1(q + attended)
        h = self.norm2(h + self.ffn(h))
        return self.out(h)


def _check_features(features, dim: int | None, who: str) -> None:
    if not isinstance(features, torch.Tensor) or not features.is_floating_point():
        raise ValueError(f"{who} expects image features as a float tensor (B, N, D), got "
                         f"{type(features).__name__ if not isinstance(features, torch.Tensor) else features.dtype}")
    if features.dim() != 3:
        hint = " (pooled features? add a token axis with features.unsqueeze(1))" \
            if features.dim() == 2 else ""
        raise ValueError(f"{who} expects image features (B, N, D), got shape "
                         f"{tuple(features.shape)}{hint}")
    if dim is not None and features.shape[-1] != dim:
        raise ValueError(f"{who} expects features of size {dim} in the last axis, got shape "
                         f"{tuple(features.shape)}: the projector was built for the image "
                         f"encoder's out_dim")


def _projector_in_dim(projector: nn.Module) -> int | None:
    if isinstance(projector, QFormerLite):
        return projector.in_dim
    first = next((m for m in projector.modules() if isinstance(m, nn.Linear)), None)
    return None if first is None else first.in_features


# --------------------------------------------------------------------------------------------
# Sequences: prompts, answers, labels, padding
# --------------------------------------------------------------------------------------------

def encode_examples(tokenizer, prompts: Sequence[str], answers: Sequence[str]
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``<bos> prompt answer <eos>`` for every pair, right-padded.

    Returns ids int64 (B, T), mask int64 (B, T) and answer_start int64 (B,): the position of the
    first answer token in each row (everything before it is the prompt).
    """
    if len(prompts) != len(answers):
        raise ValueError(f"got {len(prompts)} prompts but {len(answers)} answers")
    rows, starts = [], []
    for p, a in zip(prompts, answers):
        prompt = [BOS_ID] + tokenizer(p, add_special_tokens=False)["input_ids"]
        answer = tokenizer(a, add_special_tokens=False)["input_ids"] + [EOS_ID]
        rows.append(prompt + answer)
        starts.append(len(prompt))
    ids, mask = pad_sequences(rows, side="right")
    return ids, mask, torch.tensor(starts)


def build_labels(ids: torch.Tensor, mask: torch.Tensor, num_image_tokens: int,
                 answer_start: torch.Tensor | None = None) -> torch.Tensor:
    """Labels (B, num_image_tokens + T) for the sequence ``[image tokens][text]``.

    The labels are the token ids themselves (GPT2LMHeadModel shifts them by one inside, so
    ``labels[t]`` is predicted from position t - 1: do **not** shift them here), with
    :data:`IGNORE_INDEX` (-100) at the image positions, at padding (``mask == 0``) and, when
    ``answer_start`` (B,) is given, at the prompt tokens before it.
    """
    if ids.shape != mask.shape:
        raise ValueError(f"ids {tuple(ids.shape)} and mask {tuple(mask.shape)} must match")
    text = ids.masked_fill(mask == 0, IGNORE_INDEX)
    if answer_start is not None:
        if answer_start.shape != (len(ids),):
            raise ValueError(f"answer_start must have shape ({len(ids)},), got "
                             f"{tuple(answer_start.shape)}")
        positions = torch.arange(ids.shape[1], device=ids.device)
        text = text.masked_fill(positions[None, :] < answer_start.to(ids.device)[:, None],
                                IGNORE_INDEX)
    image = torch.full((len(ids), num_image_tokens), IGNORE_INDEX, dtype=ids.dtype,
                       device=ids.device)
    return torch.cat([image, text], dim=1)


def pack(mask: torch.Tensor, side: str) -> torch.Tensor:
    """Index (B, L) that moves every row's padding (``mask == 0``) to ``side`` while keeping the
    real positions in order: ``x.gather(1, index)`` (use ``index[..., None].expand_as(x)`` for
    embeddings). ``side="left"`` is what batched generation needs."""
    if side == "left":
        return torch.argsort(mask.long(), dim=1, stable=True)
    if side == "right":
        return torch.argsort(1 - mask.long(), dim=1, stable=True)
    raise ValueError(f"side must be 'left' or 'right', got {side!r}")


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------

class MultimodalLM(nn.Module):
    """A causal LM that reads projected image tokens before the text.

    Args:
        lm: a ``transformers`` causal LM (e.g. :func:`mmcourse.lm.make_gpt2`).
        projector: maps features (B, N, D_img) to (B, N', E) with E the LM's embedding size
            (:func:`make_projector` or :class:`QFormerLite`).

    The image encoder is not part of this module: it is frozen throughout, so its features are
    computed once and passed in.
    """

    def __init__(self, lm: nn.Module, projector: nn.Module):
        super().__init__()
        self.lm, self.projector = lm, projector
        self.embed_dim = lm.get_input_embeddings().embedding_dim
        self.image_dim = _projector_in_dim(projector)

    def image_tokens(self, features: torch.Tensor) -> torch.Tensor:
        """Projected image tokens (B, N', E)."""
        _check_features(features, self.image_dim, type(self).__name__)
        tokens = self.projector(features)
        if tokens.shape[-1] != self.embed_dim:
            raise ValueError(f"the projector gives tokens of size {tokens.shape[-1]} but the LM "
                             f"embeds tokens in {self.embed_dim} dimensions")
        return tokens

    def embed(self, features: torch.Tensor | None, ids: torch.Tensor, mask: torch.Tensor,
              labels: torch.Tensor | None = None, side: str = "right"
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``[image tokens][text]`` with the padding moved to ``side``.

        Args:
            features: float (B, N, D_img), or None for text only.
            ids, mask: int64 (B, T), padded on either side.
            labels: None or int64 (B, N' + T) from :func:`build_labels`.

        Returns inputs_embeds (B, N' + T, E), attention_mask (B, N' + T), position_ids
        (B, N' + T) (0, 1, ... over the real positions, as ``generate`` computes them) and the
        labels in the same order (or None).
        """
        if ids.dim() != 2 or ids.shape != mask.shape:
            raise ValueError(f"ids and mask must both be (B, T), got {tuple(ids.shape)} and "
                             f"{tuple(mask.shape)}")
        text = self.lm.get_input_embeddings()(ids)
        if features is None:
            embeds, full_mask = text, mask
        else:
            if len(features) != len(ids):
                raise ValueError(f"batch mismatch: {len(features)} images but {len(ids)} texts")
            image = self.image_tokens(features).to(text.dtype)
            embeds = torch.cat([image, text], dim=1)
            full_mask = torch.cat([mask.new_ones(image.shape[:2]), mask], dim=1)
        if labels is not None and labels.shape != full_mask.shape:
            raise ValueError(f"labels must have shape {tuple(full_mask.shape)} (image tokens + "
                             f"text), got {tuple(labels.shape)}; build them with build_labels")
        order = pack(full_mask, side)
        embeds = embeds.gather(1, order[..., None].expand_as(embeds))
        full_mask = full_mask.gather(1, order)
        positions = (full_mask.cumsum(1) - 1).clamp(min=0)
        if labels is not None:
            labels = labels.gather(1, order)
        return embeds, full_mask, positions, labels

    def forward(self, features: torch.Tensor | None, ids: torch.Tensor, mask: torch.Tensor,
                labels: torch.Tensor | None = None):
        """The LM's output (``.logits`` (B, N' + T, V), ``.loss`` when labels are given)."""
        embeds, full_mask, positions, labels = self.embed(features, ids, mask, labels)
        return self.lm(inputs_embeds=embeds, attention_mask=full_mask, position_ids=positions,
                       labels=labels)

    @torch.no_grad()
    def generate(self, features: torch.Tensor | None, prompts: Sequence[str], tokenizer,
                 max_new_tokens: int = 8) -> list[str]:
        """Greedy answers to ``prompts`` about the images (``features`` (B, N, D_img), or None
        for the LM alone), batched with left padding; returns the decoded new tokens."""
        from mmcourse.lm import encode

        was_training = self.training
        self.eval()
        ids, mask = encode(tokenizer, prompts, eos=False, side="right")
        device = next(self.parameters()).device
        ids, mask = ids.to(device), mask.to(device)
        if features is not None:
            features = features.to(device)
        embeds, full_mask, _, _ = self.embed(features, ids, mask, side="left")
        out = self.lm.generate(inputs_embeds=embeds, attention_mask=full_mask, do_sample=False,
                               max_new_tokens=max_new_tokens, pad_token_id=PAD_ID,
                               eos_token_id=EOS_ID, bos_token_id=BOS_ID)
        self.train(was_training)
        return tokenizer.batch_decode(out, skip_special_tokens=True)


def set_stage(model: MultimodalLM, stage: int) -> list[str]:
    """Freeze for a LLaVA training stage; returns the names of the trainable parameters.

    Stage 1: only the projector trains (the LM is frozen). Stage 2: projector and LM train.
    (The image encoder is outside the model and frozen in both.)
    """
    if stage not in (1, 2):
        raise ValueError(f"stage must be 1 or 2, got {stage!r}")
    model.projector.requires_grad_(True)
    model.lm.requires_grad_(stage == 2)
    return [n for n, p in model.named_parameters() if p.requires_grad]


def train_mllm(model: MultimodalLM, features: torch.Tensor, ids: torch.Tensor,
               mask: torch.Tensor, labels: torch.Tensor, steps: int = 200, batch_size: int = 64,
               lr: float = 1e-3, seed: int = 0, device: str | torch.device | None = None,
               desc: str | None = None) -> list[float]:
    """Train the parameters of ``model`` that require grad for ``steps`` random batches (AdamW).

    ``features`` (M, N, D_img), ``ids``/``mask`` (M, T) right-padded, ``labels`` (M, N' + T) from
    :func:`build_labels`. Returns the loss of every step.
    """
    from mmcourse.device import get_device
    from mmcourse.progress import progress

    if not (len(features) == len(ids) == len(mask) == len(labels)):
        raise ValueError(f"batch mismatch: {len(features)} feature rows, {len(ids)} texts, "
                         f"{len(labels)} label rows")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("nothing to train: every parameter is frozen (call set_stage first)")
    device = get_device(device)
    model.to(device).train()
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    n_image = labels.shape[1] - ids.shape[1]
    losses = []
    for _ in progress(range(steps), desc=desc):
        idx = torch.randint(0, len(ids), (batch_size,), generator=gen)
        m = mask[idx]
        t = int(m.sum(1).max())  # trim right padding shared by the whole batch
        out = model(features[idx].to(device), ids[idx, :t].to(device), m[:, :t].to(device),
                    labels[idx, :n_image + t].to(device))
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    model.eval()
    return losses


__all__ = ["IGNORE_INDEX", "PROMPTS", "ATTRIBUTE_VALUES", "make_projector", "QFormerLite",
           "encode_examples", "build_labels", "pack", "MultimodalLM", "set_stage", "train_mllm",
           "answer", "make_examples", "parse_caption", "attribute_accuracy",
           "majority_accuracy", "qa_accuracy"]
