"""Checks for the exercises of notebook 10 (a LLaVA-style multimodal language model)."""
from __future__ import annotations

import torch
import torch.nn as nn

from mmcourse.exercises.core import call, describe, expect_close, expect_tensor, fail, register

_IGNORE = -100


def _label_case() -> tuple[torch.Tensor, torch.Tensor, int, torch.Tensor, torch.Tensor]:
    ids = torch.tensor([[1, 11, 12, 13, 20, 2, 0, 0],
                        [1, 14, 15, 21, 22, 23, 24, 2]])
    mask = (torch.arange(8)[None, :] < torch.tensor([[6], [8]])).long()
    start = torch.tensor([4, 3])
    n = 3
    text = ids.masked_fill(mask == 0, _IGNORE)
    text = text.masked_fill(torch.arange(8)[None, :] < start[:, None], _IGNORE)
    want = torch.cat([torch.full((2, n), _IGNORE), text], 1)
    return ids, mask, n, start, want


@register("10.1", "my_labels: -100 at image tokens, prompt and padding; the answer unshifted",
          hint="labels = ids with -100 where mask == 0 and where the position is before "
               "answer_start (torch.arange(T)[None, :] < answer_start[:, None]); then put "
               "num_image_tokens columns of -100 in front (torch.cat along dim 1). Do not shift: "
               "GPT2LMHeadModel shifts the labels itself.")
def check_labels(my_labels) -> str:
    ids, mask, n, start, want = _label_case()
    ids_before = ids.clone()
    got = call(my_labels, ids, mask, n, start)
    if not torch.equal(ids, ids_before):
        fail("my_labels changed ids in place; use masked_fill (no underscore) or clone first")
    if isinstance(got, torch.Tensor) and tuple(got.shape) == tuple(ids.shape):
        fail(f"my_labels returned shape {tuple(got.shape)}, the text alone; the labels cover the "
             f"whole sequence [image tokens][text]: shape (B, num_image_tokens + T) = "
             f"{tuple(want.shape)}")
    expect_tensor("my_labels(ids, mask, 3, answer_start)", got, shape=tuple(want.shape))
    got = got.long()
    if not (got[:, :n] == _IGNORE).all():
        fail(f"the image positions must be -100 (no token to predict there), got "
             f"{got[:, :n].tolist()}")
    text, ref = got[:, n:], want[:, n:]
    if torch.equal(text[:, :-1], ref[:, 1:]) and not torch.equal(text, ref):
        fail("the labels are shifted one step to the left; GPT2LMHeadModel shifts them inside "
             "(logits at t predict labels at t + 1), so give labels aligned with the input ids")
    if torch.equal(text[:, 1:], ref[:, :-1]) and not torch.equal(text, ref):
        fail("the labels are shifted one step to the right; keep them aligned with the input ids")
    if (text[mask == 0] != _IGNORE).any():
        fail("padding positions (mask == 0) must be -100, or the model learns to predict <pad>")
    before = torch.arange(8)[None, :] < start[:, None]
    if (text[before] != _IGNORE).any():
        fail("the prompt (<bos> and the question, positions before answer_start) must be -100: "
             "only the answer is learned, as in LLaVA")
    if torch.equal(got, want):
        return "image, prompt and padding ignored; answer and <eos> kept in place"
    expect_close("my_labels(...)", got.float(), want.float(), atol=0)
    return "all cases"


@register("10.2", "MLPProjector: Linear(in, out) -> GELU -> Linear(out, out)",
          hint="self.net = nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), "
               "nn.Linear(out_dim, out_dim)); forward returns self.net(x), applied to every "
               "patch (nn.Linear works on the last axis of (B, N, in_dim)).")
def check_projector(cls) -> str:
    if not isinstance(cls, type) or not issubclass(cls, nn.Module):
        fail(f"answer with the class MLPProjector itself (an nn.Module subclass), not {describe(cls)}")
    proj = call(cls, 6, 10)
    linears = [m for m in proj.modules() if isinstance(m, nn.Linear)]
    if len(linears) != 2:
        fail(f"the projector should have two nn.Linear layers (LLaVA-1.5), found {len(linears)}")
    dims = [(m.in_features, m.out_features) for m in linears]
    if dims != [(6, 10), (10, 10)]:
        fail(f"with in_dim=6, out_dim=10 the layers should be Linear(6, 10) then Linear(10, 10) "
             f"(hidden width = the LM's width), got {dims}")
    acts = [type(m).__name__ for m in proj.modules()
            if isinstance(m, (nn.GELU, nn.ReLU, nn.Tanh, nn.Sigmoid, nn.SiLU))]
    if acts != ["GELU"]:
        fail(f"use one nn.GELU between the two layers (as LLaVA-1.5), found {acts or 'none'}")
    x = torch.randn(2, 5, 6, generator=torch.Generator().manual_seed(0))
    got = call(proj, x)
    expect_tensor("MLPProjector(6, 10)(patches (2, 5, 6))", got, shape=(2, 5, 10))
    l1, l2 = linears
    with torch.no_grad():
        want = l2(nn.functional.gelu(l1(x)))
    expect_close("MLPProjector(6, 10)(patches)", got.detach(), want, atol=1e-5)
    return "two layers, GELU between, one token per patch"


@register("10.3", "freeze_stage1: only the projector trains",
          hint="model.lm.requires_grad_(False); model.projector.requires_grad_(True)")
def check_stage1(freeze_stage1) -> str:
    from mmcourse.lm import make_gpt2, train_word_tokenizer
    from mmcourse.mllm import MultimodalLM, make_projector

    tok = train_word_tokenizer(["a red circle", "a blue star"])
    torch.manual_seed(0)
    model = MultimodalLM(make_gpt2(tok, n_layer=1, n_embd=16, n_head=2), make_projector(4, 16))
    model.projector.requires_grad_(False)  # the answer must switch it on, not rely on defaults
    call(freeze_stage1, model)
    lm_trainable = [n for n, p in model.lm.named_parameters() if p.requires_grad]
    proj_frozen = [n for n, p in model.projector.named_parameters() if not p.requires_grad]
    if lm_trainable and proj_frozen:
        fail("the LM trains and the projector is frozen: the other way round in stage 1")
    if lm_trainable:
        fail(f"{len(lm_trainable)} LM parameters still require grad (e.g. {lm_trainable[0]}); "
             f"in stage 1 the LM is frozen: model.lm.requires_grad_(False)")
    if proj_frozen:
        fail(f"projector parameters are frozen ({proj_frozen}); the projector is what stage 1 "
             f"trains: model.projector.requires_grad_(True)")
    return "LM frozen, projector trainable"


@register("10.4", "left_pad: pads on the left, mask 1 at real tokens",
          hint="T = max(len(r) for r in rows); row i gets T - len(r) pads followed by its tokens; "
               "the mask is 0 at those pads and 1 elsewhere; both int64 (B, T).")
def check_left_pad(left_pad) -> str:
    rows = [[1, 5, 6], [1, 7], [1, 8, 9, 10]]
    got = call(left_pad, rows, 0)
    if not (isinstance(got, tuple) and len(got) == 2):
        fail(f"left_pad should return a pair (ids, mask), got {describe(got)}")
    ids, mask = got
    expect_tensor("ids", ids, shape=(3, 4))
    expect_tensor("mask", mask, shape=(3, 4))
    want = torch.tensor([[0, 1, 5, 6], [0, 0, 1, 7], [1, 8, 9, 10]])
    want_mask = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1], [1, 1, 1, 1]])
    if torch.equal(ids.long(), torch.tensor([[1, 5, 6, 0], [1, 7, 0, 0], [1, 8, 9, 10]])):
        fail("the ids are padded on the right; generate continues from the LAST position, so "
             "batched generation needs the pads on the left")
    if torch.equal(ids.long(), torch.tensor([[0, 6, 5, 1], [0, 0, 7, 1], [10, 9, 8, 1]])):
        fail("the tokens are in reverse order; keep each row's order and put the pads before it")
    if not torch.equal(ids.long(), want):
        fail(f"ids should be {want.tolist()}, got {ids.tolist()}")
    if torch.equal(mask.long(), 1 - want_mask):
        fail("the mask is inverted: 1 marks a real token, 0 a pad")
    if not torch.equal(mask.long(), want_mask):
        fail(f"mask should be {want_mask.tolist()}, got {mask.tolist()}")
    odd = call(left_pad, [[4], [4, 4]], 3)
    if odd[0].tolist() != [[3, 4], [4, 4]]:
        fail(f"left_pad ignores pad_id: with pad_id=3, [[4], [4, 4]] should become "
             f"[[3, 4], [4, 4]], got {odd[0].tolist()}")
    return "pads on the left, mask marks real tokens"
