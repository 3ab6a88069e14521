"""Checks for the exercises of notebook 10 (a LLaVA-style multimodal language model)."""
from __future__ import annotations

import torch
import torch.nn as nn

from mmcourse.exercises.core import (call, describe, expect_close, expect_number, expect_tensor, fail,
                                     register)

_IGNORE = -100


def _label_case() -> tuple[torch.Tensor, torch.Tensor, int, torch.Tensor, torch.Tensor]:
    """A right-padded batch and the library's labels for it (mmcourse.mllm.build_labels)."""
    from mmcourse.mllm import build_labels

    ids = torch.tensor([[1, 11, 12, 13, 20, 2, 0, 0],
                        [1, 14, 15, 21, 22, 23, 24, 2]])
    mask = (torch.arange(8)[None, :] < torch.tensor([[6], [8]])).long()
    start = torch.tensor([4, 3])
    n = 3
    return ids, mask, n, start, build_labels(ids, mask, n, start)


@register("10.1", "my_labels: -100 at image tokens, prompt and padding; the answer unshifted",
          hint=("the idea: labels are the input ids themselves, aligned with the sequence "
                "[image tokens][text]; a position the model must not learn from gets -100 (the "
                "image positions, the padding, the prompt before answer_start); GPT-2 shifts "
                "them itself. The tools: Tensor.masked_fill with a boolean mask, a comparison of "
                "torch.arange with answer_start (broadcasting), torch.full and torch.cat."))
def check_labels(my_labels) -> str:
    ids, mask, n, start, want = _label_case()
    from mmcourse.exercises.library_calls import call_without
    from mmcourse.mllm import build_labels

    ids_before = ids.clone()
    got = call_without(my_labels, {build_labels: "mmcourse.mllm.build_labels"}, ids, mask, n, start)
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


def _forward_case():
    """A tiny LM and projector, 3 images of 5 patches and 3 right-padded texts of different
    lengths, their text labels (-100 at prompt and padding) and the library's output."""
    from mmcourse.lm import make_gpt2, train_word_tokenizer
    from mmcourse.mllm import MultimodalLM, build_labels, make_projector

    tok = train_word_tokenizer(["a red circle", "a blue star", "what colour is it ?"])
    torch.manual_seed(0)
    lm = make_gpt2(tok, n_layer=1, n_embd=16, n_head=2).eval()
    projector = make_projector(4, 16, "mlp")
    gen = torch.Generator().manual_seed(1)
    features = torch.randn(3, 5, 4, generator=gen)
    ids = torch.randint(4, len(tok), (3, 6), generator=gen)
    lengths = torch.tensor([6, 4, 5])
    mask = (torch.arange(6)[None, :] < lengths[:, None]).long()
    ids = ids.masked_fill(mask == 0, 0)
    start = torch.tensor([3, 2, 2])
    text_labels = build_labels(ids, mask, 0, start)
    with torch.no_grad():
        want = MultimodalLM(lm, projector)(features, ids, mask, build_labels(ids, mask, 5, start))
    return lm, projector, features, ids, mask, text_labels, want


def _inspect_lm_call(args, kwargs, lm, projector, features, ids, mask, text_labels) -> None:
    """What the learner passed to the LM, against [image tokens][text]: fail at the first
    problem."""
    b, n, t = len(ids), features.shape[1], ids.shape[1]
    if args or kwargs.get("input_ids") is not None:
        fail("the LM was called with input_ids; token ids cannot hold image tokens. Build the "
             "embeddings of the whole sequence yourself and pass them as lm(inputs_embeds=...)")
    embeds = kwargs.get("inputs_embeds")
    expect_tensor("the inputs_embeds you passed to the LM", embeds)
    if tuple(embeds.shape) == (b, t, 16):
        fail(f"inputs_embeds has shape {tuple(embeds.shape)}: the text alone. Put the {n} "
             f"projected image tokens in front: shape (B, N + T, E) = {(b, n + t, 16)}")
    expect_tensor("the inputs_embeds you passed to the LM", embeds, shape=(b, n + t, 16))
    with torch.no_grad():
        image, text = projector(features), lm.get_input_embeddings()(ids)
    embeds = embeds.detach().float()
    if torch.allclose(embeds, torch.cat([text, image], 1), atol=1e-5):
        fail("inputs_embeds is [text][image tokens]: the image comes after the text. LLaVA puts "
             "the image tokens first, so that every text token (the answer above all) can "
             "attend to them under the causal mask")
    if not torch.allclose(embeds, torch.cat([image, text], 1), atol=1e-5):
        if torch.allclose(embeds[:, n:], text, atol=1e-5):
            fail("the text part of inputs_embeds is right but the image part is not "
                 "projector(features): the LM must read the projected patches, one token each")
        fail("inputs_embeds differs from [projector(features)][the LM's embeddings of ids]; the "
             "token embeddings are lm.get_input_embeddings()(ids)")
    full = kwargs.get("attention_mask")
    if full is None:
        fail("the LM was called without attention_mask; pass one for the whole sequence (1 at "
             "the image tokens and at real text tokens, 0 at padding). Here the padding is on "
             "the right and the outputs would not change, but with left padding (generation) "
             "they would")
    if tuple(full.shape) == (b, t):
        fail(f"attention_mask has shape {tuple(full.shape)}, the text's mask alone; the sequence "
             f"is {n} image tokens longer: shape {(b, n + t)}, with 1 at every image position")
    expect_tensor("the attention_mask you passed to the LM", full, shape=(b, n + t))
    ones = torch.ones(b, n, dtype=torch.long)
    full = full.long()
    if torch.equal(full, torch.cat([ones * 0, mask], 1)):
        fail("attention_mask is 0 at the image positions: the LM may not attend to the image "
             "at all. The image tokens are real tokens: 1")
    if not torch.equal(full, torch.cat([ones, mask], 1)):
        fail(f"attention_mask should be [1 at the {n} image positions][the text's mask], got "
             f"{full.tolist()}")
    labels = kwargs.get("labels")
    if labels is None:
        fail("the LM was called without labels, so it computes no loss; pass the labels of the "
             "whole sequence")
    if tuple(labels.shape) == (b, t):
        fail(f"labels has shape {tuple(labels.shape)}, the text's labels alone; the labels must "
             f"cover the whole sequence: {n} image positions in front, shape {(b, n + t)}")
    expect_tensor("the labels you passed to the LM", labels, shape=(b, n + t))
    labels = labels.long()
    if not (labels[:, :n] == _IGNORE).all():
        fail(f"the labels at the {n} image positions are {labels[:, :n].unique().tolist()}, but "
             f"nothing is to be predicted there: they must be -100 (GPT-2 then skips them in the "
             f"loss)")
    if not torch.equal(labels[:, n:], text_labels):
        fail("the text part of the labels differs from text_labels: put them after the image "
             "columns unchanged (not shifted: GPT-2 shifts inside)")


@register("10.2", "my_mllm_forward: [image tokens][text] through the LM on inputs_embeds",
          hint=("the idea: the LM reads one sequence of vectors, the projected patches followed "
                "by the text's token embeddings; the mask and the labels must describe that same "
                "sequence, position by position (an image position is a real token, with nothing "
                "to predict). The tools: lm.get_input_embeddings(), torch.cat along the sequence "
                "axis, torch.ones / torch.full (new_ones, new_full), lm(inputs_embeds=..., "
                "attention_mask=..., labels=...)."))
def check_mllm_forward(my_mllm_forward) -> str:
    from mmcourse.exercises.library_calls import call_without
    from mmcourse.mllm import MultimodalLM, build_labels

    if not callable(my_mllm_forward):
        fail(f"answer with the function my_mllm_forward itself, not {describe(my_mllm_forward)}")
    lm, projector, features, ids, mask, text_labels, want = _forward_case()
    inputs = (features.clone(), ids.clone(), mask.clone(), text_labels.clone())

    def inspect(module, args, kwargs):
        _inspect_lm_call(args, kwargs, lm, projector, *inputs)

    handle = lm.register_forward_pre_hook(inspect, with_kwargs=True)
    try:
        got = call_without(my_mllm_forward,
                           {MultimodalLM.forward: "MultimodalLM (its forward)",
                            MultimodalLM.embed: "MultimodalLM.embed",
                            build_labels: "mmcourse.mllm.build_labels"},
                           lm, projector, features, ids, mask, text_labels)
    finally:
        handle.remove()
    if not (hasattr(got, "logits") and hasattr(got, "loss")):
        fail(f"my_mllm_forward returned {describe(got)}; return what the LM returns (its output, "
             f"with .logits and .loss)")
    if got.loss is None:
        fail("the output has no loss: pass the labels to the LM")
    real = torch.cat([torch.ones(len(ids), features.shape[1], dtype=torch.long), mask], 1) == 1
    expect_tensor("my_mllm_forward(...).logits", got.logits, shape=tuple(want.logits.shape))
    expect_close("my_mllm_forward(...).logits at the real positions",
                 got.logits.detach()[real], want.logits[real], atol=1e-5)
    expect_close("my_mllm_forward(...).loss", got.loss.item(), want.loss.item(), atol=1e-5)
    return "same logits and loss as mmcourse.mllm.MultimodalLM"


@register("10.3", "MLPProjector: Linear(in, out) -> GELU -> Linear(out, out)",
          hint=("the idea: LLaVA-1.5's projector is a two-layer MLP applied to every "
                "patch on its own, whose hidden width is the LM's width. The tools: nn.Linear "
                "(it acts on the last axis, whatever comes before it), nn.GELU, nn.Sequential."))
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


@register("10.4", "freeze_stage1: only the projector trains",
          hint=("the idea: a parameter trains when it requires gradients; stage 1 "
                "keeps the LM fixed and trains the projector, whatever the flags were before. "
                "The tool: Module.requires_grad_, which sets the flag of every parameter of a "
                "module."))
def check_stage1(freeze_stage1) -> str:
    from mmcourse.lm import make_gpt2, train_word_tokenizer
    from mmcourse.mllm import MultimodalLM, make_projector

    tok = train_word_tokenizer(["a red circle", "a blue star"])
    torch.manual_seed(0)
    model = MultimodalLM(make_gpt2(tok, n_layer=1, n_embd=16, n_head=2), make_projector(4, 16))
    model.projector.requires_grad_(False)  # the answer must switch it on, not rely on defaults
    from mmcourse.exercises.library_calls import call_without
    from mmcourse.mllm import set_stage

    call_without(freeze_stage1, {set_stage: "mmcourse.mllm.set_stage"}, model)
    lm_trainable = [n for n, p in model.lm.named_parameters() if p.requires_grad]
    proj_frozen = [n for n, p in model.projector.named_parameters() if not p.requires_grad]
    if lm_trainable and proj_frozen:
        fail("the LM trains and the projector is frozen: the other way round in stage 1")
    if lm_trainable:
        fail(f"{len(lm_trainable)} LM parameters still require grad (e.g. {lm_trainable[0]}); "
             f"in stage 1 every parameter of the LM is frozen")
    if proj_frozen:
        fail(f"projector parameters are frozen ({proj_frozen}); the projector is what stage 1 "
             f"trains, so its parameters must require gradients whatever they did before")
    return "LM frozen, projector trainable"


@register("10.5", "left_pad: pads on the left, mask 1 at real tokens",
          hint=("the idea: every row gets as many pads as it is shorter than the "
                "longest row, all in front of its tokens, and the mask says which positions are "
                "real. The tools: max and len over the rows, list concatenation, torch.tensor "
                "(int64 by default for Python ints)."))
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


# ------------------------------------------------------------------ 10.7 predict, then measure

_PREDICTED_ROWS = ("text only (no image)", "stage 1", "stage 1 + 2")


@register("10.7", "prediction: the mean caption accuracy without the image, after stage 1 and "
                  "after stage 2",
          hint="write, before section 6 trains anything, the mean attribute accuracy you expect "
               "for each row: a number between 0 and 1 (the majority guess of section 2 and the "
               "linear probe are the two reference points). Any well-formed prediction passes: "
               "the table of section 8, not the check, says whether you were right.")
def check_stage_prediction(prediction) -> str:
    form = "{" + ", ".join(f"{r!r}: a number between 0 and 1" for r in _PREDICTED_ROWS) + "}"
    if not isinstance(prediction, dict):
        fail(f"the prediction must be a dict {form}, got {describe(prediction)}")
    missing = [r for r in _PREDICTED_ROWS if r not in prediction]
    if missing:
        fail(f"the prediction has no entry {missing[0]!r}; it needs the three rows of {form}")
    extra = [r for r in prediction if r not in _PREDICTED_ROWS]
    if extra:
        fail(f"the prediction has an unknown row {extra[0]!r}; the rows are "
             f"{list(_PREDICTED_ROWS)}")
    for row in _PREDICTED_ROWS:
        number = expect_number(f"prediction[{row!r}]", prediction[row],
                               "a number between 0 and 1 (a mean accuracy)")
        if not 0 <= number <= 1:
            fail(f"prediction[{row!r}] is {number:g}, but an accuracy is a share of the "
                 f"attributes, between 0 and 1 (write 0.5 for 50%)")
    recorded = ", ".join(f"{r}: {float(prediction[r]):.2f}" for r in _PREDICTED_ROWS)
    return f"recorded ({recorded}); section 8 measures them"
