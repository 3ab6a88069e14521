"""Checks for the exercises of notebook 08 (scaling out with DistributedDataParallel)."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmcourse.exercises.core import call, describe, expect_number, fail, register

_SHARD_CASES = [(10, 3), (10, 4), (12, 4), (7, 2), (5, 8), (1, 3)]


def _sampler_indices(n: int, world_size: int, rank: int, drop_last: bool) -> list[int]:
    from torch.utils.data import DistributedSampler

    return list(DistributedSampler(range(n), num_replicas=world_size, rank=rank, shuffle=False,
                                   drop_last=drop_last))


def _as_int_list(name: str, value) -> list[int]:
    if isinstance(value, torch.Tensor):
        if value.ndim != 1 or value.is_floating_point():
            fail(f"{name} returned {describe(value)}; return a list (or 1-d integer tensor) of "
                 f"sample indices")
        return [int(v) for v in value.tolist()]
    if not isinstance(value, (list, tuple, range)) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        fail(f"{name} returned {describe(value)}; return a list of int sample indices")
    return list(value)


@register("8.1", "shard_indices splits the indices like a DistributedSampler (no shuffle)",
          hint="pad the index list by repeating it from its start to a multiple of world_size (or "
               "cut it to one with drop_last), then rank r takes every world_size-th entry, "
               "starting at r.")
def check_shard_indices(shard_indices) -> str:
    from torch.utils.data.distributed import DistributedSampler

    from mmcourse.exercises.library_calls import call_without

    sampler = {DistributedSampler.__init__: "torch.utils.data.DistributedSampler",
               DistributedSampler.__iter__: "torch.utils.data.DistributedSampler"}
    for drop_last in (False, True):
        for n, world in _SHARD_CASES:
            if drop_last and n < world:
                continue
            got = [_as_int_list(f"shard_indices({n}, {world}, {r}, drop_last={drop_last})",
                                call_without(shard_indices, sampler, n, world, r,
                                             drop_last=drop_last))
                   for r in range(world)]
            want = [_sampler_indices(n, world, r, drop_last) for r in range(world)]
            if got == want:
                continue
            call_text = f"shard_indices({n}, {world}, rank, drop_last={drop_last})"
            lengths = [len(g) for g in got]
            if len(set(lengths)) > 1:
                fail(f"{call_text} gives the ranks {lengths} indices: every rank must get the "
                     f"same number ({len(want[0])}), or the ranks would run different numbers of "
                     f"steps and a collective would wait forever. "
                     + ("Pad by repeating the first indices." if not drop_last else
                        "With drop_last, cut the tail to a multiple of world_size first."))
            flat = sorted(i for g in got for i in g)
            if drop_last and flat != sorted(i for w in want for i in w):
                fail(f"{call_text} should drop the last n % world_size indices (keep 0 .. "
                     f"{(n // world) * world - 1}), got {got}")
            blocks = [list(range(n))[r * len(want[0]):(r + 1) * len(want[0])] for r in range(world)]
            if not drop_last and any(i >= n or i < 0 for i in flat):
                fail(f"{call_text} returned indices outside 0..{n - 1}: pad with real sample "
                     f"indices (the first ones again), got {got}")
            if [g[:len(b)] for g, b in zip(got, blocks)] == blocks and got != want:
                fail(f"{call_text} gives each rank a contiguous block ({got[0]} for rank 0); a "
                     f"DistributedSampler interleaves: rank r takes indices r, r + world_size, "
                     f"r + 2 * world_size, ...; expected {want}")
            fail(f"{call_text} gave {got} for ranks 0..{world - 1}, expected {want}")
    return "interleaved, padded with the first indices or truncated, the same length on every rank"


_LR_CASES = [  # base_lr, base_batch, per_rank_batch, world_size, accum_steps
    (0.1, 256, 32, 8, 1), (0.1, 256, 32, 4, 4), (2e-3, 64, 64, 2, 2), (1e-3, 128, 16, 2, 3),
    (0.5, 1024, 64, 2, 1)]


@register("8.2", "global_batch_and_lr: the effective batch and the linearly scaled learning rate",
          hint="count the samples of one optimizer step over all the ranks and all the "
               "accumulation micro-steps; the linear scaling rule scales base_lr by the ratio of "
               "that global batch to base_batch.")
def check_global_batch_and_lr(global_batch_and_lr) -> str:
    for base_lr, base_batch, b, w, k in _LR_CASES:
        text = f"global_batch_and_lr({base_lr}, {base_batch}, {b}, {w}, {k})"
        out = call(global_batch_and_lr, base_lr, base_batch, b, w, k)
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            fail(f"{text} returned {describe(out)}; return a pair (global_batch, lr)")
        batch, lr = out
        if isinstance(batch, float) and batch.is_integer():
            batch = int(batch)
        if isinstance(batch, bool) or not isinstance(batch, int):
            fail(f"{text} gave a global batch of {describe(batch)}; it is a whole number of "
                 f"samples (an int)")
        want = b * w * k
        if batch != want:
            for wrong, what in ((b * w, "forgot the accumulation steps"),
                                (b * k, "forgot the world size (every rank takes a batch)"),
                                (b, "returned the per-rank batch")):
                if batch == wrong:
                    fail(f"{text} gave a global batch of {batch} but {want} was expected: it "
                         f"{what}; one optimizer step sees per_rank_batch x world_size x "
                         f"accum_steps samples")
            fail(f"{text} gave a global batch of {batch} but {want} was expected "
                 f"(count the samples of one optimizer step on every rank, over every "
                 f"accumulation micro-step)")
        lr = expect_number(f"the learning rate of {text}", lr, "a float learning rate")
        want_lr = base_lr * want / base_batch
        if not math.isclose(lr, want_lr, rel_tol=1e-6):
            if math.isclose(lr, base_lr * math.sqrt(want / base_batch), rel_tol=1e-6) \
                    and want != base_batch:
                fail(f"{text} scaled the learning rate by the square root of the batch ratio "
                     f"({lr:.4g}); this exercise asks for the linear rule: lr = base_lr x "
                     f"global_batch / base_batch = {want_lr:.4g}")
            if math.isclose(lr, base_lr * base_batch / want, rel_tol=1e-6):
                fail(f"{text} divided where it should multiply ({lr:.4g}): a larger batch gets a "
                     f"LARGER learning rate, base_lr x global_batch / base_batch = {want_lr:.4g}")
            fail(f"{text} gave the learning rate {lr:.4g} but {want_lr:.4g} was expected "
                 f"(the linear rule scales base_lr by the ratio of the global batch to base_batch)")
    return "global batch = per-rank batch x world size x accumulation steps; lr scaled linearly"


def _toy_problem(k: int):
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(12 * k, 5, generator=gen)
    y = torch.randint(0, 3, (12 * k,), generator=gen)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return model, x, y


def _grads(model: nn.Module) -> torch.Tensor:
    return torch.cat([torch.zeros(p.numel()) if p.grad is None else p.grad.detach().flatten()
                      for p in model.parameters()])


@register("8.3", "accumulate_gradients: k micro-batches give the gradient of one batch k times larger",
          hint="backward() adds into .grad: run one micro-batch at a time, scale each "
               "micro-batch's mean loss so that the k gradients add up to the mean over all of "
               "them, and do not zero the gradients in between.")
def check_accumulate_gradients(accumulate_gradients) -> str:
    from mmcourse.distributed import accumulate
    from mmcourse.exercises.library_calls import call_without

    library = {accumulate: "mmcourse.distributed.accumulate"}
    for k in (3, 4):
        model, x, y = _toy_problem(k)
        F.cross_entropy(model(x), y).backward()
        want = _grads(model)
        model.zero_grad(set_to_none=True)
        micro = list(zip(x.chunk(k), y.chunk(k)))
        params_before = [p.detach().clone() for p in model.parameters()]
        seen: list[int] = []
        hook = model.register_forward_pre_hook(
            lambda module, args: seen.append(len(args[0]) if args else 0))
        try:
            call_without(accumulate_gradients, library, model, micro)
        finally:
            hook.remove()
        if seen and max(seen) > len(micro[0][0]):
            fail(f"one forward pass of accumulate_gradients saw {max(seen)} samples, but each "
                 f"micro-batch has {len(micro[0][0])}: run the micro-batches one at a time (the "
                 f"point of accumulation is that a whole batch never has to fit in memory)")
        if any(not torch.equal(a, p.detach()) for a, p in zip(params_before, model.parameters())):
            fail("accumulate_gradients changed the weights; it should only fill .grad (the "
                 "optimizer step comes after it)")
        got = _grads(model)
        if torch.allclose(got, want, atol=1e-6, rtol=1e-4):
            continue
        if got.abs().max() == 0:
            fail("after accumulate_gradients every .grad is zero or None: call loss.backward() "
                 "for every micro-batch")
        if torch.allclose(got, want * k, atol=1e-5, rtol=1e-4):
            fail(f"the accumulated gradient is {k} times too large: divide each micro-batch's "
                 f"loss by k = len(micro_batches) = {k}, so the sum of the k gradients is the "
                 f"gradient of the mean loss")
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(micro[-1][0]), micro[-1][1]).backward()
        last = _grads(model)
        if torch.allclose(got, last, atol=1e-6, rtol=1e-4) or \
                torch.allclose(got, last / k, atol=1e-6, rtol=1e-4):
            fail("only the last micro-batch's gradient is left: do not zero the gradients (or "
                 "set them to None) inside the loop; backward adds into .grad")
        ratio = float(got.norm() / want.norm())
        fail(f"the accumulated gradient differs from the gradient of the whole batch "
             f"(its norm is {ratio:.3g} times the expected one); with mean-reduced losses, "
             f"divide each micro-batch loss by k = {k} and call backward on each")
    return "the sum of the k scaled micro-batch gradients equals the big batch's gradient"


@register("8.4", "combine_gradients: the global-batch gradient from ranks with unequal shard sizes",
          hint="each rank's gradient is a MEAN over its own samples: turn each back into a sum, "
               "add them, and divide by the total number of samples.")
def check_combine_gradients(combine_gradients) -> str:
    gen = torch.Generator().manual_seed(84)
    grads = [torch.randn(6, generator=gen) for _ in range(3)]
    for counts in ([64, 64, 64], [64, 64, 10], [5, 1, 30]):
        got = call(combine_gradients, [g.clone() for g in grads], list(counts))
        text = f"combine_gradients(grads, counts={counts})"
        if not isinstance(got, torch.Tensor) or got.shape != (6,):
            fail(f"{text} returned {describe(got)}; return one gradient tensor of the same shape "
                 f"as each rank's, (6,)")
        c = torch.tensor(counts, dtype=torch.float32)
        stacked = torch.stack(grads)
        want = (c[:, None] * stacked).sum(0) / c.sum()
        if torch.allclose(got, want, atol=1e-5):
            continue
        if torch.allclose(got, stacked.mean(0), atol=1e-5):
            fail(f"{text} is the plain mean of the ranks' gradients, which is what DDP's "
                 f"all-reduce gives: right only when every rank has the same number of samples. "
                 f"Weight each rank by its number of samples")
        if torch.allclose(got, stacked.sum(0), atol=1e-5):
            fail(f"{text} is the sum of the ranks' gradients; divide (weighted by the counts) to "
                 f"get a mean over all samples")
        if torch.allclose(got, (c[:, None] * stacked).sum(0), atol=1e-4):
            fail(f"{text} weights by the counts but forgets to divide by the total number of "
                 f"samples, sum(counts) = {int(c.sum())}")
        fail(f"{text} gave {describe(got)} but {describe(want)} was expected: "
             f"turn each rank's mean back into a sum, add them and divide by the total count")
    return "each rank weighted by its sample count (equal counts: the plain mean DDP uses)"


# ------------------------------------------------------------------ 8.5 predict, then measure

_PREDICTION_KEYS = ("bit_identical", "max_difference")


@register("8.5", "prediction: DDP against one process with the same global batch",
          hint="write what you expect before section 7 runs: are the DDP weights and the single "
               "process's weights equal bit for bit, and how large is the largest difference "
               "between them (0 if they are bit-identical)? Any well-formed prediction passes: "
               "the measurement, not the check, says whether you were right.")
def check_ddp_prediction(prediction) -> str:
    form = "{'bit_identical': True or False, 'max_difference': a number >= 0}"
    if not isinstance(prediction, dict):
        fail(f"the prediction must be a dict {form}, got {describe(prediction)}")
    missing = [k for k in _PREDICTION_KEYS if k not in prediction]
    if missing:
        fail(f"the prediction has no entry {missing[0]!r}; it needs both entries of {form}")
    extra = [k for k in prediction if k not in _PREDICTION_KEYS]
    if extra:
        fail(f"the prediction has an unknown entry {extra[0]!r}; its entries are "
             f"{list(_PREDICTION_KEYS)}")
    bit = prediction["bit_identical"]
    if not isinstance(bit, bool):
        fail(f"prediction['bit_identical'] must be True or False, got {describe(bit)} "
             f"({type(bit).__name__})")
    diff = expect_number("prediction['max_difference']", prediction["max_difference"],
                         "a number >= 0 (the largest |w_DDP - w_single| over all weights)")
    if not math.isfinite(diff) or diff < 0:
        fail(f"prediction['max_difference'] is {diff:g}, but the largest absolute difference "
             f"between two sets of weights is a finite number >= 0")
    if bit and diff != 0:
        fail(f"the prediction says bit-identical weights with a largest difference of {diff:g}; "
             f"bit-identical weights differ by exactly 0: set 'max_difference' to 0, or "
             f"'bit_identical' to False")
    if not bit and diff == 0:
        fail("the prediction says the weights are not bit-identical but differ by at most 0; "
             "weights that differ in some bit differ by more than 0 somewhere: give the size "
             "you expect (for example 1e-3), or set 'bit_identical' to True")
    return (f"recorded: bit-identical {bit}, largest difference {diff:.0e}; section 7 measures "
            f"both")
