"""``mmcourse bench regimes``: every single modality and every fusion method on the known-answer
tasks of :mod:`mmcourse.data.regimes`, over seeds, against the winner each regime predicts.

The protocol and the judging rule are :mod:`mmcourse.regime_runs` (shared with notebook 12);
this module adds the report (one verdict per regime, JSON-able), the course synergy task
(:data:`EXTRA_TASKS`) and the text table.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import torch

from mmcourse.device import get_device
from mmcourse.regime_runs import (BATCH, FEATURES, FUSED, LR, MARGIN, METHODS, REGIMES, judge,
                                  measure)
from mmcourse.data.regimes import num_classes
from mmcourse.tools.bench.matching import synergy_task

#: name -> ``fn(seeds=..., device=...) -> JSON-able dict``, added to the report under that name
#: (the course synergy task, frozen vs joint, is registered as "synergy_task").
EXTRA_TASKS: dict[str, Callable[..., dict[str, Any]]] = {"synergy_task": synergy_task}


def run_regimes_bench(seeds: int = 3, epochs: int = 10, regimes: tuple[str, ...] = REGIMES,
                      methods: tuple[str, ...] = METHODS, sizes: dict[str, int] | None = None,
                      device: str | torch.device | None = None,
                      extra: dict[str, Callable[..., dict[str, Any]]] | None = None,
                      log: Callable[[str], None] | None = None, workers: int = 1) -> dict[str, Any]:
    """Run the bench; return a JSON-able dict with ``config``, ``regimes`` (one verdict per
    regime, see :func:`mmcourse.regime_runs.judge`, with ``results`` {method: mean, std, runs in
    percent}) and one entry per extra task (``EXTRA_TASKS`` by default). The arguments are those
    of :func:`mmcourse.regime_runs.measure`."""
    device = get_device(device)
    start = time.time()
    measured = measure(regimes, methods, seeds, epochs, sizes, device, workers=workers, log=log)
    report: dict[str, Any] = {
        "config": {"seeds": list(range(seeds)), "epochs": epochs, "workers": workers, "lr": LR,
                   "batch_size": BATCH,
                   "features": FEATURES, "fused": FUSED, "sizes": dict(sizes or {}),
                   "margin": MARGIN},
        "device": str(device), "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
        "regimes": []}
    for name, results in measured.items():
        entry = judge(name, results, 1.0 / num_classes(name, **dict(sizes or {})))
        entry["results"] = {m: {k: (100 * v if k != "runs" else [100 * x for x in v])
                                for k, v in r.items()} for m, r in results.items()}
        report["regimes"].append(entry)
    for key, task in (EXTRA_TASKS if extra is None else extra).items():
        report[key] = task(seeds=seeds, device=device)
    report["seconds"] = round(time.time() - start, 1)
    return report


def format_regimes_table(report: dict[str, Any]) -> str:
    """The report as a regime x method table (mean +- std, percent) and one verdict per line."""
    entries = report["regimes"]
    methods = list(entries[0]["results"])
    cfg = report["config"]
    lines = [f"Regimes bench: test accuracy (%), mean +- std over {len(cfg['seeds'])} seeds; "
             f"{cfg['epochs']} epochs; device {report['device']}, torch {report['torch']}, "
             f"{report['date']}",
             f"{'regime':18s}{'chance':>7s}" + "".join(f"{m:>12s}" for m in methods)]
    for e in entries:
        lines.append(f"{e['name']:18s}{e['chance']:7.1f}" + "".join(
            f"{e['results'][m]['mean']:6.1f} +-{e['results'][m]['std']:4.1f}" for m in methods))
    lines.append("")
    lines.append(f"{'regime':18s} {'predicted':18s} {'best':10s} verdict")
    for e in entries:
        if e["won"] is None:
            verdict = "not judged (the predicted methods or concat were not measured)"
        elif e["baseline"]:
            verdict = ("held: nothing beats " if e["won"] else "failed: beaten by " +
                       ", ".join(e["beaten_by"]) + "; ") + \
                f"{e['pick']} beyond the spread; ties: {', '.join(e['ties']) or 'none'}; " \
                f"below: {', '.join(e['below']) or 'none'}"
        else:
            verdict = (f"{'held' if e['won'] else 'failed'}: {e['pick']} - concat = "
                       f"{e['pick_minus_concat']:+.1f} points (needs >= {cfg['margin']:g} "
                       f"beyond one std)")
        lines.append(f"{e['name']:18s} {'/'.join(e['predicted']):18s} {e['best']:10s} {verdict}")
    if "synergy_task" in report:
        task = report["synergy_task"]
        lines.append(f"course synergy task (image-text matching, seed {task['seed']}): frozen "
                     f"features + concat {task['frozen']:.1f}, joint ({task['joint_epochs']} "
                     f"epochs) {task['joint']:.1f}, chance {task['chance']:.1f}")
    lines.append(f"({report['seconds']:.0f} s)")
    return "\n".join(lines)
