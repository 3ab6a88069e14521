"""``mmcourse bench train``: training throughput of the joint model at every pipeline step.

Every step of :mod:`mmcourse.speed` (``naive`` ... ``compile``, and ``fp16`` on CUDA) is set up once
and measured in ``repeats`` interleaved rounds (every step once per round), so that a slow spell
of a shared machine hits every step alike; each step's median is reported, with the speed-up over
``naive``. :func:`run_train_bench` returns the report, :func:`format_train_table` prints it.
"""
from __future__ import annotations

import math
import os
import platform
import time
from typing import Any, Callable, Mapping

import torch

from mmcourse.checks import check_int
from mmcourse.device import get_device
from mmcourse.joint import SpeedData
from mmcourse.speed import (ALL_STEPS, Measurement, Pipeline, fp16_unavailable_reason,
                            make_pipeline, run_pipeline, step_config)


def run_train_bench(steps: int = 20, batch_size: int = 128, device: str | torch.device | None = None,
                    warmup: int = 3, seed: int = 0, train_size: int = 2048,
                    step_names: tuple[str, ...] = ALL_STEPS, num_workers: int | None = None,
                    compile_backend: str = "inductor", log: Callable[[str], None] | None = None,
                    repeats: int = 3) -> dict[str, Any]:
    """Measure training throughput of every step on one device; return a JSON-able report.

    Every step is set up once (its model, optimizer and batches) and measured ``repeats`` times,
    in interleaved rounds: round 1 measures every step, then round 2 every step again, and so
    on, each pipeline training on where it left off. A slow spell of a shared machine then hits
    every step alike instead of one step's only measurement, and each step's median over the
    rounds is what the report (and its speed-ups) use. The first round's warm-up (``warmup``
    untimed steps; the compile steps compile there) is reported; later rounds warm up with one
    untimed step.

    Report keys: ``device``, ``device_name``, ``torch``, ``date``, ``threads``, ``cpu_count``,
    ``load_avg_1min`` / ``load_avg_1min_end`` (the machine's load when the bench started and
    ended), ``config``, ``seconds`` (wall time), ``rows`` (one per step: ``step``,
    ``description``, ``status`` "ok"/"skipped", ``samples_per_s`` (the median round),
    ``runs`` (samples/s of every round, in order), ``speedup`` (median vs naive's median),
    ``prepare_s`` (one-time preprocessing), ``warmup_s`` (the first round's untimed steps,
    compile included), ``gpu_util`` (%, the median over rounds, or None), ``peak_mem_mb``
    (CUDA: the most memory allocated while the step was timed, over the rounds; every step's
    model and device-resident data stay allocated between rounds, so it includes the other
    steps' too: compare it across runs, not across rows), ``final_loss``, ``note``), and
    ``best`` (the fastest step: ``step``, ``samples_per_s``, ``speedup``). Without ``naive``
    among ``step_names`` every ``speedup`` is None (the table prints n/a)."""
    unknown = [s for s in step_names if s not in ALL_STEPS]
    if unknown:
        raise ValueError(f"unknown step {unknown[0]!r}; expected some of {list(ALL_STEPS)}")
    for name, value in (("steps", steps), ("batch_size", batch_size), ("repeats", repeats)):
        check_int(value, name)
    check_int(train_size, "train_size", minimum=batch_size, unit="at least batch_size")
    device = get_device(device)
    saved = (torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        return _run_train_bench(steps, batch_size, device, warmup, seed, train_size, step_names,
                                num_workers, compile_backend, log, repeats)
    finally:  # the pipelines seed without deterministic kernels; leave the process as it was
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2:]


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _run_train_bench(steps, batch_size, device, warmup, seed, train_size, step_names,
                     num_workers, compile_backend, log, repeats) -> dict[str, Any]:
    wall = time.perf_counter()
    load_start = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    data = SpeedData.make(seed=0, size={"train": train_size})
    n_train = len(data.split("train"))
    rows: dict[str, dict[str, Any]] = {}
    pipes: dict[str, tuple[Pipeline, torch.optim.Optimizer]] = {}
    runs: dict[str, list[Measurement]] = {}
    for name in step_names:
        cfg = step_config(name, device, num_workers)
        rows[name] = {"step": name, "description": cfg.description}
        reason = fp16_unavailable_reason(device) if name == "fp16" else None
        if reason:
            rows[name].update(status="skipped", samples_per_s=None, runs=[], speedup=None,
                              note=reason)
            if log:
                log(f"{name}: skipped ({reason})")
            continue
        pipe = make_pipeline(name, data, "train", device, batch_size, seed=seed,
                             num_workers=num_workers, compile_backend=compile_backend,
                             deterministic=False)
        pipes[name] = (pipe, pipe.optimizer())
        runs[name] = []
    for round_ in range(repeats):
        for name, (pipe, optimizer) in pipes.items():
            m = run_pipeline(pipe, steps=steps, warmup=warmup if round_ == 0 else 1,
                             sample_gpu=device.type == "cuda", optimizer=optimizer)
            runs[name].append(m)
            if log:
                log(f"round {round_ + 1}/{repeats} {name}: {m.samples_per_s:.0f} samples/s")
    naive = _median([m.samples_per_s for m in runs["naive"]]) if "naive" in runs else None
    for name, measurements in runs.items():
        pipe = pipes[name][0]
        rates = [m.samples_per_s for m in measurements]
        rate = _median(rates)
        utils = [m.gpu_utilization for m in measurements if m.gpu_utilization is not None]
        peaks = [m.peak_memory_mb for m in measurements if m.peak_memory_mb is not None]
        losses = [v for m in measurements for v in m.losses]
        note = "; ".join(pipe.notes)
        if not all(math.isfinite(v) for v in losses):
            note = (note + "; " if note else "") + "non-finite loss"
        rows[name].update(status="ok", samples_per_s=round(rate, 1),
                          runs=[round(v, 1) for v in rates],
                          speedup=round(rate / naive, 2) if naive else None,
                          prepare_s=round(pipe.prepare_seconds, 2),
                          warmup_s=round(measurements[0].warmup_seconds, 2),
                          gpu_util=round(_median(utils), 1) if utils else None,
                          peak_mem_mb=round(max(peaks), 1) if peaks else None,
                          final_loss=round(losses[-1], 4), note=note)
    del pipes
    table = [rows[name] for name in step_names]
    ok = [r for r in table if r["status"] == "ok"]
    best = max(ok, key=lambda r: r["samples_per_s"]) if ok else None
    load = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    return {"device": str(device), "device_name": _device_name(device), "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d"), "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "load_avg_1min": load_start, "load_avg_1min_end": load,
            "config": {"steps": steps, "warmup": warmup, "repeats": repeats,
                       "batch_size": batch_size, "seed": seed,
                       "train_samples": n_train, "num_workers": step_config(
                           "loader", device, num_workers).num_workers,
                       "model": "ImageCNN(16-32-64) + LogMelCNN(8-16-32-32) + bag of words, "
                                "64-d each, concat fusion, 8 classes"},
            "seconds": round(time.perf_counter() - wall, 1), "rows": table,
            "best": None if best is None else {"step": best["step"], "speedup": best["speedup"],
                                               "samples_per_s": best["samples_per_s"]}}


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def format_train_table(report: Mapping[str, Any]) -> str:
    """The bench report as a plain-text table."""
    cfg = report["config"]
    lines = [f"mmcourse bench train: {report['device']} ({report['device_name']}), torch "
             f"{report['torch']}, {report['date']}, {report['threads']} threads, load "
             f"{report['load_avg_1min']} (start) / {report.get('load_avg_1min_end')} (end) on "
             f"{report['cpu_count']} cores",
             f"model: {cfg['model']}; batch {cfg['batch_size']}, {cfg['steps']} timed steps after "
             f"{cfg['warmup']} warm-up (1 in later rounds), {cfg['train_samples']} training "
             f"samples, loader workers {cfg['num_workers']}",
             f"samples/s: the median of {cfg.get('repeats', 1)} interleaved rounds (range: the "
             f"slowest and fastest round)", ""]
    gpu = report["device"].startswith("cuda")
    head = (f"{'step':<14} {'samples/s':>10} {'range':>13} {'vs naive':>9} {'prep s':>7} "
            f"{'warm-up s':>9}")
    if gpu:
        head += f" {'GPU %':>6} {'peak MB':>8}"
    lines += [head + "  note", "-" * len(head)]
    for r in report["rows"]:
        if r["status"] != "ok":
            lines.append(f"{r['step']:<14} {'skipped':>10} {'':>13} {'':>9} {'':>7} {'':>9}"
                         + (f" {'':>6} {'':>8}" if gpu else "") + f"  {r['note']}")
            continue
        runs = r.get("runs") or [r["samples_per_s"]]
        spread = f"{min(runs):.0f}-{max(runs):.0f}"
        ratio = "n/a" if r["speedup"] is None else f"{r['speedup']:.2f}x"  # naive not measured
        line = (f"{r['step']:<14} {r['samples_per_s']:>10.0f} {spread:>13} {ratio:>9} "
                f"{r['prepare_s']:>7.2f} {r['warmup_s']:>9.2f}")
        if gpu:
            util = "n/a" if r["gpu_util"] is None else f"{r['gpu_util']:.0f}"
            line += f" {util:>6} {r['peak_mem_mb'] or 0:>8.0f}"
        lines.append(line + (f"  {r['note']}" if r["note"] else ""))
    if report["best"]:
        best = report["best"]
        ratio = (f"{best['speedup']:.2f}x naive" if best["speedup"] is not None
                 else f"{best['samples_per_s']:.0f} samples/s (naive not measured)")
        lines += ["", f"fastest: {best['step']}, {ratio}; "
                  f"bench wall time {report['seconds']:.0f} s"]
    return "\n".join(lines)
