"""mmcourse.speed: every pipeline step runs and learns the same model.

Fast and CPU-only: tiny splits, one thread, no timed assertions. ``torch.compile`` is exercised
with the ``eager`` backend (the same graph capture by dynamo, no code generation, seconds instead
of a minute); inductor itself is measured by the bench, not here.
"""
from __future__ import annotations

import math

import pytest
import torch

from mmcourse import speed
from mmcourse.data.tensors import TensorBatches
from mmcourse.device import get_device
from mmcourse.joint import SpeedData
from mmcourse.training import to_device

pytestmark = pytest.mark.usefixtures("one_thread")

CLEAN = {"image": (1.0, 0.0, 0.0, 0.0), "audio": (1.0, 0.0, 0.0),
         "text": (1.0, 0.0, 0.0, 0.0)}


@pytest.fixture(scope="module")
def data():
    return SpeedData.make(seed=0, size={"train": 96, "test": 32})


def test_steps_are_cumulative():
    flags = ("precompute", "on_device", "amp", "compile", "channels_last")
    previous = None
    for step in speed.STEPS:
        cfg = speed.step_config(step, "cpu")
        assert cfg.name == step and cfg.description
        if previous is not None:  # nothing switched on earlier is switched off again
            for flag in flags:
                assert bool(getattr(cfg, flag)) >= bool(getattr(previous, flag)), (step, flag)
        previous = cfg
    assert speed.step_config("loader", "cpu").num_workers >= 1
    assert not speed.step_config("loader", "cpu").pin_memory  # pinning is for CUDA only
    assert speed.step_config("on_device", "cpu").num_workers == 0
    final = speed.step_config(speed.STEPS[-1], "cpu")
    assert final.precompute and final.on_device and final.amp == "bf16" and final.compile
    assert speed.step_config("fp16", "cpu").amp == "fp16"


def test_every_pipeline_sees_the_same_batches(data):
    loader = speed.make_pipeline("batched", data, batch_size=32, seed=3).batches
    on_device = speed.make_pipeline("on_device", data, batch_size=32, seed=3).batches
    for a, b in zip(loader, on_device):
        assert torch.equal(a["label"], b["label"])
        assert torch.equal(a["audio"], b["audio"])


@pytest.mark.parametrize("step", [s for s in speed.ALL_STEPS if s != "fp16"])
def test_every_step_trains_with_finite_loss(data, step):
    pipe = speed.make_pipeline(step, data, "train", "cpu", batch_size=32, num_workers=1,
                               compile_backend="eager")
    m = speed.run_pipeline(pipe, steps=2, warmup=1)
    assert m.samples == 64 and m.samples_per_s > 0
    assert all(math.isfinite(v) for v in m.losses), m.losses
    assert m.gpu_utilization is None and m.peak_memory_mb is None  # CPU: nothing to sample
    assert not pipe.notes  # the eager backend compiles everywhere: no fallback


def test_measure_takes_any_batches(data):
    pipe = speed.make_pipeline("on_device", data, batch_size=16)
    m = speed.measure(pipe.model, pipe.batches, steps=2, warmup=0, device="cpu")
    assert m.samples_per_s > 0 and m.warmup_seconds >= 0 and len(m.losses) == 2
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        speed.measure(pipe.model, pipe.batches, steps=0)


def test_a_compile_step_falls_back_to_eager_once_and_says_why(data):
    pipe = speed.make_pipeline("compile", data, batch_size=16, compile_backend="eager")
    originals = dict(pipe.compiled)
    assert set(originals) == {"image", "audio"}
    calls = []

    def run():
        calls.append(len(calls))
        if len(calls) == 1:
            raise RuntimeError("no C++ compiler\nsecond line")
        return "ran"

    assert pipe.eager_if_compile_fails(run) == "ran" and calls == [0, 1]
    assert pipe.compiled == {} and pipe.notes == [
        "torch.compile unavailable, ran eager: RuntimeError: no C++ compiler"]
    assert all(pipe.model.encoders[m] is originals[m] for m in originals)
    with pytest.raises(RuntimeError, match="eager models fail as they are"):  # no second chance
        pipe.eager_if_compile_fails(lambda: (_ for _ in ()).throw(
            RuntimeError("eager models fail as they are")))


@torch.no_grad()
def _accuracy(model, data, split, device, amp):
    autocast, _ = speed.autocast_and_scaler(amp, device)
    prepared = data.prepare(split)
    model.eval()
    correct = 0
    for batch in TensorBatches(prepared.tensors, prepared.labels, present=prepared.present,
                               batch_size=500):
        batch = to_device(batch, device)
        with autocast():
            correct += int((model(batch).argmax(1) == batch["label"]).sum())
    return correct / len(prepared)


def _train_and_evaluate(step, data, epochs, batch_size, lr, seed, device, dim,
                        compile_backend="inductor"):
    """Train a fresh model with pipeline ``step``; its training loss per epoch and test accuracy."""
    pipe = speed.make_pipeline(step, data, "train", device, batch_size, seed=seed,
                               compile_backend=compile_backend, dim=dim)
    autocast, scaler = speed.autocast_and_scaler(pipe.config.amp, pipe.device)
    optimizer = pipe.optimizer(lr)
    epoch_loss = []
    for _ in range(epochs):
        pipe.model.train()
        losses = [pipe.eager_if_compile_fails(lambda: speed.train_step(
            pipe.model, to_device(batch, pipe.device), optimizer, autocast, scaler))
            for batch in pipe.batches]
        epoch_loss.append(float(torch.stack(losses).mean()))
    return {"accuracy": _accuracy(pipe.model, data, "test", get_device(device), pipe.config.amp),
            "epoch_loss": epoch_loss, "notes": pipe.notes}


def test_naive_and_optimized_learn_the_same_model():
    """Same seed, same batches (see the two tests above: the fp32 pipelines compute the same
    thing); the fully optimized one (bfloat16, compiled, channels-last) differs by bfloat16's
    coarser rounding, which must not cost accuracy."""
    clean = SpeedData.make(seed=0, size={"train": 256, "test": 200}, quality_probs=CLEAN)
    # 9 epochs: both runs reach a training loss below 0.05, where the accuracy has levelled off
    # (in the middle of the fast-falling part, rounding differences move it by 0.1 or more)
    kwargs = dict(epochs=9, batch_size=32, lr=1e-2, seed=0, device="cpu", dim=32)
    naive = _train_and_evaluate("naive", clean, **kwargs)
    best = _train_and_evaluate(speed.STEPS[-1], clean, compile_backend="eager", **kwargs)
    assert naive["accuracy"] > 0.85, naive  # it learned (chance is 0.125)
    # bf16 keeps about 3 significant digits: the trajectory drifts, the converged quality stays.
    # 0.05 (10 of 200 test samples) is about 3 standard errors of an accuracy near 0.95 on 200
    # samples: a real loss of quality would exceed it, rounding noise does not.
    assert best["epoch_loss"][-1] < 0.1 and naive["epoch_loss"][-1] < 0.1
    assert abs(best["accuracy"] - naive["accuracy"]) <= 0.05, (naive, best)


def test_fp16_needs_cuda():
    assert "40x slower" in speed.fp16_unavailable_reason("cpu")
    with pytest.raises(ValueError, match="needs CUDA"):
        speed.make_pipeline("fp16", SpeedData.make(size={"train": 16}), device="cpu")


def test_bad_input_raises_clear_errors(data):
    with pytest.raises(ValueError, match=r"unknown step 'turbo'; expected one of \['naive'"):
        speed.step_config("turbo")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        speed.make_pipeline("naive", data, device="tpu")
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        speed.make_pipeline("naive", data, batch_size=0)
    with pytest.raises(KeyError, match="unknown split 'dev'"):
        speed.make_pipeline("naive", data, "dev")
