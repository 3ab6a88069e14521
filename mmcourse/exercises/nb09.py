"""Checks for the exercises of notebook 09 (contrastive alignment, CLIP-style)."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from mmcourse.exercises.core import call, describe, expect_close, expect_number, expect_tensor, fail, register


def _loss_variants(a: torch.Tensor, b: torch.Tensor, t: float) -> dict[str, float]:
    """The library's loss and plausible wrong ones, for the messages of 9.1."""
    from mmcourse.alignment import clip_loss

    u, v = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    target = torch.arange(len(a))
    scale = math.exp(min(t, math.log(100)))

    def both(logits, target=target):
        return ((F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2).item()

    with torch.no_grad():
        return {
            "right": clip_loss(a, b, torch.tensor(t)).item(),
            "one direction (image to text only)": F.cross_entropy(scale * u @ v.T, target).item(),
            "one direction (text to image only)": F.cross_entropy(scale * v @ u.T, target).item(),
            "the sum of the two directions": 2 * both(scale * u @ v.T),
            "no normalisation": both(scale * a @ b.T),
            "logit_scale used as the scale (no exp)": both(t * u @ v.T),
            "cosines divided by logit_scale": both(u @ v.T / t) if t else math.nan,
            "no clamp at log(100)": both(math.exp(t) * u @ v.T),
            "scale 1 (logit_scale ignored)": both(u @ v.T),
            "every target 0 (the first column) instead of the diagonal":
                both(scale * u @ v.T, torch.zeros_like(target)),
            "the anti-diagonal as targets (B - 1, ..., 0) instead of the diagonal":
                both(scale * u @ v.T, target.flip(0)),
        }


_LOSS_FIXES = {
    "one direction (image to text only)": "add the text-to-image cross-entropy (each text picks "
                                          "its image among the B images) and average the two",
    "one direction (text to image only)": "add the image-to-text cross-entropy (each image picks "
                                          "its text among the B texts) and average the two",
    "the sum of the two directions": "return the mean of the two cross-entropies, not their sum",
    "no normalisation": "normalise both embeddings to unit length first, so that u v^T holds "
                        "cosines",
    "logit_scale used as the scale (no exp)": "logit_scale holds t = log(s): the cosines are "
                                              "multiplied by s = exp(t)",
    "cosines divided by logit_scale": "logit_scale holds log(s) = log(1 / temperature): multiply "
                                      "the cosines by exp(t), do not divide by t",
    "no clamp at log(100)": "clamp t at log(100) before taking exp, so that s never exceeds 100",
    "scale 1 (logit_scale ignored)": "multiply the cosines by s = exp(t)",
    "every target 0 (the first column) instead of the diagonal":
        "row i's right answer is column i (pair i sits on the diagonal): the targets are the "
        "indices 0, 1, ..., B - 1",
    "the anti-diagonal as targets (B - 1, ..., 0) instead of the diagonal":
        "row i's right answer is column i: the targets are 0, 1, ..., B - 1 in that order",
}

#: (batch size B, logit_scale t): several temperatures, including one the clamp must act on
#: (5 > log 100), t = 0 (scale 1) and CLIP's initial log(1 / 0.07).
_LOSS_CASES = ((6, 2.0), (6, 5.0), (3, math.log(1 / 0.07)), (17, 0.0), (17, 3.0))


@register("9.1", "my_clip_loss is CLIP's symmetric InfoNCE with a learnable temperature",
          hint="the idea: two B-way classifications over one (B, B) matrix of scaled cosines, "
               "row i's answer is column i; one classifies the rows, the other the columns; "
               "average them. The tools: F.normalize, Tensor.clamp and Tensor.exp for the scale, "
               "F.cross_entropy with class-index targets (torch.arange).")
def check_clip_loss(my_clip_loss) -> str:
    from mmcourse.alignment import clip_loss
    from mmcourse.exercises.library_calls import call_without

    if not callable(my_clip_loss):
        fail(f"answer with the function my_clip_loss itself, not {describe(my_clip_loss)}")
    gen = torch.Generator().manual_seed(9)
    for b, t in _LOSS_CASES:
        a = 3 * torch.randn(b, 4, generator=gen)      # not unit length: the loss must normalise
        c = 0.5 * torch.randn(b, 4, generator=gen)
        scale = torch.tensor(t, requires_grad=True)
        got = call_without(my_clip_loss, {clip_loss: "mmcourse.alignment.clip_loss"},
                           a.clone(), c.clone(), scale)
        name = f"my_clip_loss(image_emb ({b}, 4), text_emb ({b}, 4), logit_scale={t:.3g})"
        if not isinstance(got, torch.Tensor):
            fail(f"{name} returned a {type(got).__name__}; return the loss as a tensor, so that "
                 f"loss.backward() can train the encoders and the temperature")
        expect_tensor(name, got, shape=())
        if not got.requires_grad or torch.autograd.grad(got, scale, allow_unused=True)[0] is None:
            fail(f"{name} does not depend on logit_scale through autograd, so the temperature "
                 f"could never learn; compute the scale from the tensor logit_scale with tensor "
                 f"operations (no .item(), float() or math.exp on it)")
        variants = _loss_variants(a, c, t)
        value = got.item()
        if math.isclose(value, variants["right"], rel_tol=1e-4, abs_tol=1e-5):
            continue
        for wrong, expected in variants.items():
            if wrong != "right" and math.isclose(value, expected, rel_tol=1e-4, abs_tol=1e-5):
                fail(f"{name} returned {value:.4f}, which is the loss with {wrong}; "
                     f"mmcourse.alignment.clip_loss gives {variants['right']:.4f}. "
                     f"Fix: {_LOSS_FIXES[wrong]}")
        expect_close(name, value, variants["right"], atol=1e-5, rtol=1e-4)
    return (f"equal to mmcourse.alignment.clip_loss on {len(_LOSS_CASES)} batches (B = 3 to 17, "
            f"non-unit embeddings, t from 0 to 5)")


def _recall_reference(sim: torch.Tensor, pos: torch.Tensor, k: int) -> float:
    return pos.gather(1, sim.topk(k, dim=1).indices).any(1).float().mean().item()


def _recall_cases() -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(4)
    square = torch.randn(40, 40, generator=gen)
    square_pos = torch.eye(40, dtype=torch.bool)
    square_pos[torch.arange(0, 40, 3), torch.randint(0, 40, (14,), generator=gen)] = True
    wide = torch.randn(30, 50, generator=gen)
    wide_pos = torch.zeros(30, 50, dtype=torch.bool)
    wide_pos[torch.arange(30), torch.randint(0, 50, (30,), generator=gen)] = True
    wide_pos[torch.arange(0, 30, 4), torch.randint(0, 50, (8,), generator=gen)] = True
    return [(square, square_pos), (wide, wide_pos)]


def _hits(sim: torch.Tensor, pos: torch.Tensor, k: int, largest: bool = True) -> torch.Tensor:
    k = max(0, min(k, sim.shape[1]))
    return pos.gather(1, sim.topk(k, dim=1, largest=largest).indices)


_RECALL_VARIANTS = {
    "top k + 1 instead of top k": lambda s, p, k: _hits(s, p, k + 1).any(1).float().mean().item(),
    "top k - 1 instead of top k": lambda s, p, k: _hits(s, p, k - 1).any(1).float().mean().item(),
    "the k LEAST similar items (take the largest similarities: topk(k) or "
    "argsort(descending=True))":
        lambda s, p, k: _hits(s, p, k, largest=False).any(1).float().mean().item(),
    "the other direction (gallery items as queries: similarity.T)":
        lambda s, p, k: _hits(s.T.contiguous(), p.T.contiguous(), min(k, s.shape[0])).any(1)
        .float().mean().item(),
    "only the diagonal counted as correct (use positives: several items can be correct)":
        lambda s, p, k: (s.topk(k, dim=1).indices == torch.arange(len(s))[:, None]).any(1)
        .float().mean().item(),
    "the mean over all top-k slots instead of 'at least one positive per query'":
        lambda s, p, k: _hits(s, p, k).float().mean().item(),
}


@register("9.2", "my_recall_at_k counts the queries with a positive among their top k",
          hint="the idea: for each query (a row), take its k most similar gallery items and ask "
               "whether at least one of them is a positive; the recall is the share of queries "
               "for which the answer is yes. The tools: Tensor.topk (its .indices), Tensor.gather "
               "to read positives at those columns, Tensor.any over a dimension, then a mean.")
def check_recall_at_k(my_recall_at_k) -> str:
    if not callable(my_recall_at_k):
        fail(f"answer with the function my_recall_at_k itself, not {describe(my_recall_at_k)}")
    from mmcourse.alignment import recall_at_k
    from mmcourse.exercises.library_calls import call_without

    library = {recall_at_k: "mmcourse.alignment.recall_at_k"}
    inputs = [(sim, pos, k) for sim, pos in _recall_cases() for k in (1, 2, 3, 5)]
    got = []
    for sim, pos, k in inputs:
        name = f"my_recall_at_k(similarity {tuple(sim.shape)}, positives, k={k})"
        got.append(expect_number(name, call_without(my_recall_at_k, library, sim.clone(),
                                                    pos.clone(), k), "a float"))
    want = [_hits(sim, pos, k).any(1).float().mean().item() for sim, pos, k in inputs]
    if all(math.isclose(a, b, abs_tol=1e-6) for a, b in zip(got, want)):
        return "top k by the largest similarity, any positive counts, averaged over queries"
    for what, variant in _RECALL_VARIANTS.items():
        if all(math.isclose(a, variant(*x), abs_tol=1e-6) for a, x in zip(got, inputs)):
            fail(f"my_recall_at_k gives exactly what {what} gives (e.g. {got[1]:.4f} instead of "
                 f"{want[1]:.4f} for a (40, 40) similarity and k=2)")
    i = next(i for i, (a, b) in enumerate(zip(got, want)) if not math.isclose(a, b, abs_tol=1e-6))
    sim, pos, k = inputs[i]
    fail(f"my_recall_at_k(similarity {tuple(sim.shape)}, positives, k={k}) returned {got[i]:.4f} "
         f"but {want[i]:.4f} was expected: the share of the {sim.shape[0]} queries (rows) with at "
         f"least one positive among their {k} most similar items")


@register("9.3", "colour_pred classifies colours zero-shot",
          hint="the idea: zero-shot classes are texts; describe each colour by many captions "
               "that name it (the other words varied), average their embeddings per colour, and "
               "keep the classes in the order of list(COLOURS). The tools: tokenize and embed "
               "for the prompts, Tensor.view to group them (classes, prompts per class, D), "
               "zero_shot_classify.")
def check_zero_shot_colour(colour_pred, attributes) -> str:
    from mmcourse.data.course import COLOURS

    attributes = torch.as_tensor(np.asarray(attributes))
    n = len(attributes)
    if isinstance(colour_pred, np.ndarray):
        colour_pred = torch.from_numpy(colour_pred)
    expect_tensor("colour_pred", colour_pred, shape=(n,))
    if colour_pred.is_floating_point():
        fail(f"colour_pred has dtype {colour_pred.dtype}; it should hold class indices (int64), "
             f"e.g. the output of zero_shot_classify (an argmax), not similarities")
    pred = colour_pred.long().cpu()
    truth = attributes[:, 1]
    names = list(COLOURS)
    if pred.min() < 0 or pred.max() >= len(names):
        fail(f"colour_pred holds values from {int(pred.min())} to {int(pred.max())}, but colour "
             f"indices go from 0 to {len(names) - 1} ({', '.join(names)}); did you classify "
             f"something else (8 shapes?)")
    acc = (pred == truth).float().mean().item()
    if acc >= 0.8:
        return f"zero-shot colour accuracy {acc:.3f}; chance {1 / len(names):.3f}"
    alphabetical = torch.tensor([names.index(c) for c in sorted(names)])
    if (alphabetical[pred] == truth).float().mean().item() >= 0.8:
        fail(f"colour_pred matches the colours only {acc:.3f} of the time, but it would be right if "
             f"the classes were in alphabetical order: build the prompts in the order of "
             f"list(COLOURS) = {names}, so that class index c means names[c]")
    if (pred == attributes[:, 0]).float().mean().item() >= 0.5:
        fail(f"colour_pred agrees with the SHAPE of the images, not their colour (accuracy "
             f"{acc:.3f}); the classes must be the colours, with one prompt group per colour")
    fail(f"colour_pred is right for {acc:.3f} of the test images (chance {1 / len(names):.3f}); at "
         f"least 0.8 was expected. Use prompts in the caption language ('small red star top "
         f"left'), grouped colour by colour in the order of list(COLOURS), and classify image_emb")


@register("9.4", "audio_text aligns the calls with the captions",
          hint="the idea: the recipe of section 4 with the clips in place of the images; row i "
               "of the audio and row i of the captions must come from the same sample. The "
               "tools: DualEncoder with an 'audio' and a 'text' encoder, a batch dict holding "
               "both modalities and their lengths, TensorBatches, train_dual_encoder (the sizes "
               "and settings are in the exercise text).")
def check_audio_text(audio_text, audio, audio_lengths, prompts, labels) -> str:
    from mmcourse.alignment import DualEncoder, embed, zero_shot_classify

    if not isinstance(audio_text, DualEncoder):
        fail(f"audio_text should be a mmcourse.alignment.DualEncoder, got {describe(audio_text)}")
    if set(audio_text.modalities) != {"audio", "text"}:
        fail(f"audio_text embeds {list(audio_text.modalities)}; it needs an 'audio' and a 'text' "
             f"encoder (the names are the keys of the dict you pass to DualEncoder)")
    device = next(audio_text.parameters()).device
    audio_emb = embed(audio_text, "audio", audio, audio_lengths, device=device)
    class_emb = embed(audio_text, "text", *prompts, device=device)
    pred = zero_shot_classify(audio_emb, class_emb)
    labels = torch.as_tensor(labels)
    acc = (pred == labels).float().mean().item()
    if acc >= 0.6:
        return f"zero-shot shape accuracy from the audio alone: {acc:.3f}; chance 0.125"
    fail(f"classifying the test clips by the most similar shape word gives accuracy {acc:.3f} "
         f"(chance 0.125); at least 0.6 was expected. Check that the model was trained "
         f"(train_dual_encoder), that row i of the audio and row i of the captions come from the "
         f"same sample, and use batches of 64 for AUDIO_EPOCHS epochs")


# ------------------------------------------------------------------ 9.5 predict, then measure

def _is_group_size(key) -> bool:
    return isinstance(key, (int, np.integer)) and not isinstance(key, bool) and key >= 2


@register("9.5", "prediction: recall@1 for each contrastive group size",
          hint="write down, before the sweep of section 6 runs, the image -> text recall@1 you "
               "expect for every group size G of GROUP_SIZES (section 5 measured G = BATCH_SIZE). "
               "Any well-formed prediction passes: the sweep, not the check, says whether you "
               "were right.")
def check_negatives_prediction(prediction, groups=(4, 16, 64)) -> str:
    groups = [int(g) for g in groups]
    form = f"{{group size G: recall@1 between 0 and 1}} with an entry for every G in {groups}"
    if not isinstance(prediction, dict) or not prediction:
        fail(f"the prediction must be a dict {form}, got {describe(prediction)}")
    for key in prediction:
        if not _is_group_size(key):
            fail(f"the prediction has the key {key!r} ({type(key).__name__}), but its keys are "
                 f"group sizes, ints >= 2 such as {groups[0]}")
    missing = [g for g in groups if g not in prediction]
    if missing:
        fail(f"no prediction for G = {missing}: give a recall@1 for every G in GROUP_SIZES "
             f"({groups}) before the sweep runs")
    for g, value in prediction.items():
        value = expect_number(f"prediction[{g}]", value, "a recall@1 between 0 and 1")
        if not 0 <= value <= 1:
            fail(f"prediction[{g}] is {value:g}, but a recall is a share of the queries, between "
                 f"0 and 1 (write 0.5 for 50%)")
    recorded = ", ".join(f"G = {g}: {float(prediction[g]):.2f}" for g in sorted(prediction))
    return f"recorded ({recorded}); section 6 measures them"
