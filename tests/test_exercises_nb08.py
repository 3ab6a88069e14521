"""The checks of notebook 08's exercises pass the solutions and reject plausible wrong answers."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mmcourse.exercises import ExerciseFailed, check


def _fails(exercise_id: str, answer, match: str) -> None:
    with pytest.raises(ExerciseFailed, match=match):
        check(exercise_id, answer)


# ------------------------------------------------------------------------ 8.1 shard indices

def shard_indices(n, world_size, rank, drop_last=False):
    if drop_last:
        total = (n // world_size) * world_size
        indices = list(range(total))
    else:
        total = math.ceil(n / world_size) * world_size
        indices = [i % n for i in range(total)]
    return indices[rank:total:world_size]


def test_8_1_passes_and_rejects():
    assert check("8.1", shard_indices).passed
    assert check("8.1", lambda n, w, r, drop_last=False:
                 torch.tensor(shard_indices(n, w, r, drop_last))).passed

    def no_padding(n, w, r, drop_last=False):
        return list(range(n))[r::w]
    _fails("8.1", no_padding, "same number")

    def blocks(n, w, r, drop_last=False):
        per = math.ceil(n / w) if not drop_last else n // w
        return [i % n for i in range(r * per, (r + 1) * per)]
    _fails("8.1", blocks, "interleaves")

    def pad_minus_one(n, w, r, drop_last=False):
        total = math.ceil(n / w) * w
        return (list(range(n)) + [-1] * (total - n))[r:total:w]
    _fails("8.1", pad_minus_one, "outside")

    def ignores_drop_last(n, w, r, drop_last=False):
        return shard_indices(n, w, r, False)
    _fails("8.1", ignores_drop_last, "drop")
    _fails("8.1", lambda n, w, r, drop_last=False: 3, "list")


# ------------------------------------------------------------------------ 8.2 batch and lr

def global_batch_and_lr(base_lr, base_batch, per_rank_batch, world_size, accum_steps):
    batch = per_rank_batch * world_size * accum_steps
    return batch, base_lr * batch / base_batch


def test_8_2_passes_and_rejects():
    assert check("8.2", global_batch_and_lr).passed
    _fails("8.2", lambda lr, bb, b, w, k: (b * w, lr * b * w / bb), "accumulation steps")
    _fails("8.2", lambda lr, bb, b, w, k: (b * k, lr * b * k / bb), "world size")
    _fails("8.2", lambda lr, bb, b, w, k: (b * w * k, lr * math.sqrt(b * w * k / bb)),
           "square root")
    _fails("8.2", lambda lr, bb, b, w, k: (b * w * k, lr * bb / (b * w * k)), "divided")
    _fails("8.2", lambda lr, bb, b, w, k: (b * w * k / 3, lr), "int")
    _fails("8.2", lambda lr, bb, b, w, k: b * w * k, "pair")


# --------------------------------------------------------------- 8.3 gradient accumulation

def accumulate_gradients(model, micro_batches):
    k = len(micro_batches)
    for x, y in micro_batches:
        (F.cross_entropy(model(x), y) / k).backward()


def test_8_1_refuses_torchs_sampler():
    from torch.utils.data.distributed import DistributedSampler

    _fails("8.1", lambda n, w, r, drop_last=False: list(DistributedSampler(
        range(n), num_replicas=w, rank=r, shuffle=False, drop_last=drop_last)),
        "calls the library's torch.utils.data.DistributedSampler")


def test_8_3_passes_and_rejects():
    assert check("8.3", accumulate_gradients).passed

    def one_big_batch(model, micro_batches):
        x = torch.cat([x for x, _ in micro_batches])
        y = torch.cat([y for _, y in micro_batches])
        F.cross_entropy(model(x), y).backward()
    _fails("8.3", one_big_batch, "one forward pass of accumulate_gradients saw")

    from mmcourse.distributed import accumulate
    _fails("8.3", lambda model, micro: accumulate(model, [{"x": x, "y": y} for x, y in micro]),
           "calls the library's mmcourse.distributed.accumulate")

    def no_division(model, micro_batches):
        for x, y in micro_batches:
            F.cross_entropy(model(x), y).backward()
    _fails("8.3", no_division, "times too large")

    def zero_inside(model, micro_batches):
        for x, y in micro_batches:
            model.zero_grad()
            (F.cross_entropy(model(x), y) / len(micro_batches)).backward()
    _fails("8.3", zero_inside, "only the last")

    def steps_too(model, micro_batches):
        accumulate_gradients(model, micro_batches)
        torch.optim.SGD(model.parameters(), lr=0.1).step()
    _fails("8.3", steps_too, "changed the weights")
    _fails("8.3", lambda model, micro_batches: None, "zero or None")


# ----------------------------------------------------------------- 8.4 combine gradients

def combine_gradients(grads, counts):
    total = sum(counts)
    return sum(n * g for n, g in zip(counts, grads)) / total


def test_8_4_passes_and_rejects():
    assert check("8.4", combine_gradients).passed
    _fails("8.4", lambda grads, counts: torch.stack(grads).mean(0), "plain mean")
    _fails("8.4", lambda grads, counts: torch.stack(grads).sum(0), "sum of the ranks")
    _fails("8.4", lambda grads, counts: sum(n * g for n, g in zip(counts, grads)), "forgets")
    _fails("8.4", lambda grads, counts: [g.tolist() for g in grads], "one gradient tensor")


# ------------------------------------------------------------------------ 8.5 prediction

def test_8_5_records_any_well_formed_prediction():
    result = check("8.5", {"bit_identical": False, "max_difference": 1e-3})
    assert result.passed and "bit-identical False, largest difference 1e-03" in result.message
    assert check("8.5", {"bit_identical": True, "max_difference": 0}).passed
    assert check("8.5", {"bit_identical": False, "max_difference": torch.tensor(2e-7)}).passed


@pytest.mark.parametrize("prediction, match", [
    ([False, 1e-3], "must be a dict"),
    ({"bit_identical": False}, "no entry 'max_difference'"),
    ({"max_difference": 0.0}, "no entry 'bit_identical'"),
    ({"bit_identical": False, "max_difference": 1e-3, "ranks": True}, "unknown entry 'ranks'"),
    ({"bit_identical": "no", "max_difference": 1e-3}, r"must be True or False, got 'no' \(str\)"),
    ({"bit_identical": 0, "max_difference": 1e-3}, r"must be True or False, got 0 \(int\)"),
    ({"bit_identical": False, "max_difference": "tiny"}, "'tiny' \\(str\\) but a number >= 0"),
    ({"bit_identical": False, "max_difference": -1e-3}, "is -0.001, but .* >= 0"),
    ({"bit_identical": False, "max_difference": math.inf}, "finite number >= 0"),
    ({"bit_identical": True, "max_difference": 1e-7}, "differ by exactly 0"),
    ({"bit_identical": False, "max_difference": 0}, "not bit-identical but differ by at most 0"),
])
def test_8_5_rejects_malformed_predictions(prediction, match):
    _fails("8.5", prediction, match)
