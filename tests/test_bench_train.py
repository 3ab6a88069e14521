"""mmcourse bench train (mmcourse.tools.bench.train): the report, its table and the command."""
from __future__ import annotations

import json

import pytest
import torch

from mmcourse.tools.bench.train import format_train_table, run_train_bench
from mmcourse.tools.cli import main as cli_main

pytestmark = pytest.mark.usefixtures("one_thread")


def test_fp16_is_skipped_on_cpu_with_the_reason():
    report = run_train_bench(steps=1, warmup=0, batch_size=16, train_size=32,
                             device="cpu", step_names=("naive", "fp16"))
    row = {r["step"]: r for r in report["rows"]}["fp16"]
    assert row["status"] == "skipped" and row["samples_per_s"] is None
    assert "40x slower" in row["note"]


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="unknown step 'turbo'"):
        run_train_bench(step_names=("naive", "turbo"))
    with pytest.raises(ValueError, match=r"train_size must be an integer >= 64 \(at least batch_size\), got 32"):
        run_train_bench(batch_size=64, train_size=32)


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
    table = format_train_table(report)
    assert "samples/s" in table and "skipped" in table and "fastest" in table


def test_bench_reports_the_median_of_interleaved_rounds():
    report = run_train_bench(steps=1, warmup=0, batch_size=16, train_size=32,
                             device="cpu", step_names=("naive", "on_device"), repeats=3)
    assert report["config"]["repeats"] == 3
    for row in report["rows"]:
        assert len(row["runs"]) == 3 and all(v > 0 for v in row["runs"])
        assert row["samples_per_s"] == sorted(row["runs"])[1]  # the median of three
    naive, on_device = report["rows"]
    assert on_device["speedup"] == round(on_device["samples_per_s"] / naive["samples_per_s"], 2)
    table = format_train_table(report)
    assert "median of 3 interleaved rounds" in table
    low, high = min(naive["runs"]), max(naive["runs"])
    assert f"{low:.0f}-{high:.0f}" in table
    with pytest.raises(ValueError, match="repeats must be a positive integer, got 0"):
        run_train_bench(repeats=0)


def test_bench_without_naive_prints_no_ratio():
    report = run_train_bench(steps=1, warmup=0, batch_size=16, train_size=32,
                             device="cpu", step_names=("on_device",), repeats=1)
    [row] = report["rows"]
    assert row["speedup"] is None and report["best"]["speedup"] is None
    assert report["best"]["samples_per_s"] == row["samples_per_s"]
    table = format_train_table(report)
    assert "n/a" in table and "(naive not measured)" in table


def test_cli_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit, match="unknown step 'warp'"):
        cli_main(["bench", "train", "--only", "naive,warp"])
    with pytest.raises(SystemExit, match="unknown device 'tpu'"):
        cli_main(["bench", "train", "--device", "tpu", "--only", "naive"])
    with pytest.raises(SystemExit, match="repeats must be a positive integer, got 0"):
        cli_main(["bench", "train", "--repeats", "0", "--only", "naive"])
