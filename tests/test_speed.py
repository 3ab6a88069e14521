"""mmcourse.speed and `mmcourse bench train`: every pipeline step runs and learns the same model.

Fast and CPU-only: tiny splits, one thread, no timed assertions. ``torch.compile`` is exercised
with the ``eager`` backend (the same graph capture by dynamo, no code generation, seconds instead
of a minute); inductor itself is measured by the bench, not here.
"""
from __future__ import annotations

import json
import math

import pytest
import torch

from mmcourse import speed
from mmcourse.cli import main as cli_main

pytestmark = pytest.mark.usefixtures("one_thread")

CLEAN = {"image": (1.0, 0.0, 0.0, 0.0), "audio": (1.0, 0.0, 0.0),
         "text": (1.0, 0.0, 0.0, 0.0)}


@pytest.fixture(scope="module")
def data():
    return speed.SpeedData.make(seed=0, size={"train": 96, "test": 32})


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


def test_naive_items_equal_precomputed_ones(data):
    """Per-sample and batched preprocessing give the same batches (same padding too)."""
    naive = speed.NaiveCourseDataset(data.split("train"), data.tokenizer)
    prepared = speed.PreparedDataset(data.prepare("train"))
    idx = list(range(10))
    a = speed.collate_padded([naive[i] for i in idx])
    b = speed.collate_padded([prepared[i] for i in idx])
    torch.testing.assert_close(a["audio"], b["audio"], atol=1e-4, rtol=1e-4)
    assert torch.equal(a["audio_lengths"], b["audio_lengths"])
    tokens = a["text"].shape[1]
    assert torch.equal(a["text"], b["text"][:, :tokens]) and (b["text"][:, tokens:] == 0).all()
    assert torch.equal(a["text_lengths"], b["text_lengths"])
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    assert all(torch.equal(a["present"][m], b["present"][m]) for m in a["present"])


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


def test_measure_throughput_takes_any_batches(data):
    pipe = speed.make_pipeline("on_device", data, batch_size=16)
    rate = speed.measure_throughput(pipe.model, pipe.batches, steps=2, warmup=0, device="cpu")
    assert rate > 0
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        speed.measure_throughput(pipe.model, pipe.batches, steps=0)


def test_naive_and_optimized_learn_the_same_model():
    """Same seed, same batches (see the two tests above: the fp32 pipelines compute the same
    thing); the fully optimized one (bfloat16, compiled, channels-last) differs by bfloat16's
    coarser rounding, which must not cost accuracy."""
    clean = speed.SpeedData.make(seed=0, size={"train": 256, "test": 200}, quality_probs=CLEAN)
    # 9 epochs: both runs reach a training loss below 0.05, where the accuracy has levelled off
    # (in the middle of the fast-falling part, rounding differences move it by 0.1 or more)
    kwargs = dict(epochs=9, batch_size=32, lr=1e-2, seed=0, device="cpu", dim=32)
    naive = speed.train_and_evaluate("naive", clean, **kwargs)
    best = speed.train_and_evaluate(speed.STEPS[-1], clean, compile_backend="eager", **kwargs)
    assert naive["accuracy"] > 0.85, naive  # it learned (chance is 0.125)
    # bf16 keeps about 3 significant digits: the trajectory drifts, the converged quality stays.
    # 0.05 (10 of 200 test samples) is about 3 standard errors of an accuracy near 0.95 on 200
    # samples: a real loss of quality would exceed it, rounding noise does not.
    assert best["epoch_loss"][-1] < 0.1 and naive["epoch_loss"][-1] < 0.1
    assert abs(best["accuracy"] - naive["accuracy"]) <= 0.05, (naive, best)


def test_fp16_is_skipped_on_cpu_with_the_reason():
    reason = speed.fp16_unavailable_reason("cpu")
    assert "40x slower" in reason and "bf16" in reason
    report = speed.run_train_bench(steps=1, warmup=0, batch_size=16, train_size=32,
                                   device="cpu", step_names=("naive", "fp16"))
    row = {r["step"]: r for r in report["rows"]}["fp16"]
    assert row["status"] == "skipped" and row["samples_per_s"] is None
    assert "40x slower" in row["note"]
    with pytest.raises(ValueError, match="needs CUDA"):
        speed.make_pipeline("fp16", speed.SpeedData.make(size={"train": 16}), device="cpu")


def test_bad_input_raises_clear_errors(data):
    with pytest.raises(ValueError, match=r"unknown step 'turbo'; expected one of \['naive'"):
        speed.step_config("turbo")
    with pytest.raises(ValueError, match="unknown step 'turbo'"):
        speed.run_train_bench(step_names=("naive", "turbo"))
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        speed.make_pipeline("naive", data, device="tpu")
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        speed.make_pipeline("naive", data, batch_size=0)
    with pytest.raises(KeyError, match="unknown split 'dev'"):
        speed.make_pipeline("naive", data, "dev")
    with pytest.raises(ValueError, match="train_size must be an integer of at least batch_size"):
        speed.run_train_bench(batch_size=64, train_size=32)
    encoder = speed.LogMelCNN(out_dim=8)
    with pytest.raises(ValueError, match="expects float log-mels .* a waveform batch"):
        encoder(torch.zeros(2, 4000))
    with pytest.raises(ValueError, match="40 mel bands in the last dimension"):
        encoder(torch.zeros(2, 40, 30))


def test_cli_json_has_the_documented_keys(capsys):
    code = cli_main(["bench", "train", "--device", "cpu", "--steps", "1", "--warmup", "0",
                     "--batch-size", "16", "--train-size", "32", "--only", "naive,on_device,fp16",
                     "--repeats", "1", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert {"device", "device_name", "torch", "date", "threads", "load_avg_1min", "config",
            "seconds", "rows", "best"} <= set(report)
    assert report["device"] == "cpu" and report["torch"] == torch.__version__
    assert [r["step"] for r in report["rows"]] == ["naive", "on_device", "fp16"]
    naive, on_device, fp16 = report["rows"]
    for row in (naive, on_device):
        assert {"step", "description", "status", "samples_per_s", "runs", "speedup", "prepare_s",
                "warmup_s", "gpu_util", "peak_mem_mb", "final_loss", "note"} <= set(row)
        assert row["runs"] == [row["samples_per_s"]]  # --repeats 1: one round
        assert row["status"] == "ok" and row["samples_per_s"] > 0
        assert row["gpu_util"] is None  # CPU
    assert naive["speedup"] == 1.0 and fp16["status"] == "skipped"
    assert report["best"]["step"] in ("naive", "on_device")
    table = speed.format_train_table(report)
    assert "samples/s" in table and "skipped" in table and "fastest" in table


def test_bench_reports_the_median_of_interleaved_rounds():
    report = speed.run_train_bench(steps=1, warmup=0, batch_size=16, train_size=32,
                                   device="cpu", step_names=("naive", "on_device"), repeats=3)
    assert report["config"]["repeats"] == 3
    for row in report["rows"]:
        assert len(row["runs"]) == 3 and all(v > 0 for v in row["runs"])
        assert row["samples_per_s"] == sorted(row["runs"])[1]  # the median of three
    naive, on_device = report["rows"]
    assert on_device["speedup"] == round(on_device["samples_per_s"] / naive["samples_per_s"], 2)
    table = speed.format_train_table(report)
    assert "median of 3 interleaved rounds" in table
    low, high = min(naive["runs"]), max(naive["runs"])
    assert f"{low:.0f}-{high:.0f}" in table
    with pytest.raises(ValueError, match="repeats must be a positive integer, got 0"):
        speed.run_train_bench(repeats=0)


def test_bench_without_naive_prints_no_ratio():
    report = speed.run_train_bench(steps=1, warmup=0, batch_size=16, train_size=32,
                                   device="cpu", step_names=("on_device",), repeats=1)
    [row] = report["rows"]
    assert row["speedup"] is None and report["best"]["speedup"] is None
    assert report["best"]["samples_per_s"] == row["samples_per_s"]
    table = speed.format_train_table(report)
    assert "n/a" in table and "(naive not measured)" in table


def test_cli_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit, match="unknown step 'warp'"):
        cli_main(["bench", "train", "--only", "naive,warp"])
    with pytest.raises(SystemExit, match="unknown device 'tpu'"):
        cli_main(["bench", "train", "--device", "tpu", "--only", "naive"])
    with pytest.raises(SystemExit, match="repeats must be a positive integer, got 0"):
        cli_main(["bench", "train", "--repeats", "0", "--only", "naive"])
