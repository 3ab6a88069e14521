"""``mmcourse bench regimes``: every single modality and every fusion method on the known-answer
tasks of :mod:`mmcourse.data.regimes`, over seeds, against the winner each regime predicts.

Protocol (the same for every regime and method, nothing tuned per method):

1. For each seed s, each regime is generated with seed s (:func:`make_regime`, its defaults
   unless ``sizes`` overrides the split sizes).
2. Each method is trained end to end from scratch with seed s: a single modality is its small
   encoder (:mod:`mmcourse.encoders.small`) plus a linear head; a fusion is both encoders, the
   fusion (``make_fusion`` with its defaults; a fusion whose ``outputs_logits`` is True gets
   ``out_dim`` = classes and no head) and a linear head. AdamW, learning rate 3e-3, batch 128,
   ``epochs`` epochs, the epoch with the best validation accuracy kept. Fusions that read
   sequences (``uses_sequences``) get the encoders' tokens (image patches, groups of frames).
3. Test accuracy on the regime's test split. Reported: mean and std over seeds (percent).

Judging a prediction (``won``): the best of the predicted methods (``pick``) against concat.
Where concat or late fusion is the predicted optimum (``baseline``), the prediction holds when no
method beats ``pick`` by more than the larger of the two standard deviations (``ties`` lists the
fusions within that spread of it, ``below`` those under it). Elsewhere it holds when ``pick`` beats concat by at least 3
points beyond the larger standard deviation: ``mean(pick) - mean(concat) - max(std) >= 3``.

Other tasks (such as the course-data synergy task, frozen vs joint) slot into the report
through :data:`EXTRA_TASKS`.
"""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import torch

from mmcourse.classifier import MultimodalClassifier
from mmcourse.data.regimes import MODALITIES, PRESETS, RegimeData, make_regime
from mmcourse.device import get_device
from mmcourse.encoders.small import SmallImageCNN, SmallSpectrogramCNN
from mmcourse.fusion import FUSION_METHODS, make_fusion
from mmcourse.progress import progress
from mmcourse.reproducibility import seed_everything
from mmcourse.tools.bench.matching import synergy_task
from mmcourse.training import UnimodalClassifier, accuracy, fit

METHODS = MODALITIES + tuple(FUSION_METHODS)
REGIMES = tuple(PRESETS)
FEATURES, FUSED = 32, 32  # encoder output size, fused size (a logits fusion gets the classes)
LR, BATCH = 3e-3, 128
MARGIN = 3.0  # points beyond one std by which a predicted (non-baseline) winner must beat concat

#: name -> ``fn(seeds=..., device=...) -> JSON-able dict``, added to the report under that name
#: (the course synergy task, frozen vs joint, is meant to be registered as "synergy_task").
EXTRA_TASKS: dict[str, Callable[..., dict[str, Any]]] = {"synergy_task": synergy_task}


def encoder(modality: str, data: RegimeData) -> torch.nn.Module:
    """A fresh small encoder for ``modality`` of ``data``."""
    if modality == "image":
        return SmallImageCNN(channels=1, out_dim=FEATURES)
    return SmallSpectrogramCNN(bands=data.knobs["bands"], out_dim=FEATURES)


def build_model(method: str, data: RegimeData) -> torch.nn.Module:
    """A single-modality classifier (``method`` a modality) or a fusion classifier."""
    k = data.num_classes
    if method in MODALITIES:
        return UnimodalClassifier(encoder(method, data), method, k)
    out_dim = k if FUSION_METHODS[method].outputs_logits else FUSED
    fusion = make_fusion(method, {m: FEATURES for m in MODALITIES}, out_dim)
    return MultimodalClassifier({m: encoder(m, data) for m in MODALITIES}, fusion, k)


def train_and_test(data: RegimeData, method: str, seed: int, epochs: int,
                   device: torch.device | str | None = None) -> float:
    """Train ``method`` on ``data`` with seed ``seed``; return its test accuracy (0 to 1)."""
    seed_everything(seed)
    model = build_model(method, data)
    fit(model, data.train.loader(BATCH, shuffle=True, seed=seed), data.val.loader(1000),
        epochs=epochs, lr=LR, device=device, desc=method)
    return accuracy(model, data.test.loader(1000), device=device)


def _summary(values: list[float]) -> dict[str, Any]:
    return {"mean": statistics.mean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0, "runs": values}


def judge(name: str, results: dict[str, dict[str, Any]], chance: float) -> dict[str, Any]:
    """One regime's verdict from ``results`` {method: {"mean", "std"}} (fractions); see the
    module docstring. Returns name, predicted, baseline, pick, best, margins (points), won."""
    preset = PRESETS[name]
    mean = lambda m: 100 * results[m]["mean"]  # noqa: E731
    spread = lambda a, b: 100 * max(results[a]["std"], results[b]["std"])  # noqa: E731
    entry: dict[str, Any] = {"name": name, "predicted": list(preset.predicted),
                             "baseline": preset.baseline, "structure": preset.structure,
                             "why": preset.why, "chance": 100 * chance,
                             "best": max(results, key=mean), "won": None}
    candidates = [m for m in preset.predicted if m in results]
    if not candidates or "concat" not in results:
        return entry  # nothing to judge with the methods measured
    pick = entry["pick"] = max(candidates, key=mean)
    entry["pick_minus_concat"] = mean(pick) - mean("concat")
    if preset.baseline:
        entry["beaten_by"] = [m for m in results if mean(m) - mean(pick) > spread(m, pick)]
        entry["ties"] = [m for m in results if m in FUSION_METHODS
                         and abs(mean(m) - mean(pick)) <= spread(m, pick)]
        entry["below"] = [m for m in results if m in FUSION_METHODS
                          and mean(pick) - mean(m) > spread(m, pick)]
        entry["won"] = not entry["beaten_by"]
    else:
        entry["won"] = entry["pick_minus_concat"] - spread(pick, "concat") >= MARGIN
    return entry


def run_regimes_bench(seeds: int = 3, epochs: int = 10, regimes: tuple[str, ...] = REGIMES,
                      methods: tuple[str, ...] = METHODS, sizes: dict[str, int] | None = None,
                      device: str | torch.device | None = None,
                      extra: dict[str, Callable[..., dict[str, Any]]] | None = None,
                      log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the bench; return a JSON-able dict with ``config``, ``regimes`` (one verdict per
    regime, see :func:`judge`, with ``results`` {method: mean, std, runs in percent}) and one
    entry per extra task (``EXTRA_TASKS`` by default).

    ``sizes`` overrides the split sizes of every regime, e.g. ``{"n_train": 300}``. Runs on one
    CPU thread (restored afterwards): with models this small, more threads only add waiting.
    ``log``, if given, gets one line per regime and seed (accuracies and seconds so far).
    """
    for what, given, known in (("regime", regimes, REGIMES), ("method", methods, METHODS)):
        bad = [x for x in given if x not in known]
        if bad or not given:
            raise ValueError(f"unknown {what} {bad[0]!r}; expected some of {list(known)}" if bad
                             else f"give at least one {what}")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be a positive integer, got {seeds!r}")
    sizes = dict(sizes or {})
    device = get_device(device)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the models are tiny: more threads only wait on each other
    try:
        return _run(seeds, epochs, regimes, methods, sizes, device,
                    EXTRA_TASKS if extra is None else extra, log)
    finally:
        torch.set_num_threads(threads)


def _run(seeds, epochs, regimes, methods, sizes, device, extra, log) -> dict[str, Any]:
    start = time.time()
    report: dict[str, Any] = {
        "config": {"seeds": list(range(seeds)), "epochs": epochs, "lr": LR, "batch_size": BATCH,
                   "features": FEATURES, "fused": FUSED, "sizes": sizes, "margin": MARGIN},
        "device": str(device), "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
        "regimes": []}
    for name in progress(regimes, desc="regimes"):
        runs: dict[str, list[float]] = {m: [] for m in methods}
        for seed in range(seeds):
            data = make_regime(name, seed=seed, **sizes)
            for method in methods:
                runs[method].append(train_and_test(data, method, seed, epochs, device))
            if log is not None:
                log(f"{name} seed {seed}: " + " ".join(f"{m} {100 * runs[m][-1]:.1f}"
                                                      for m in methods) +
                    f" ({time.time() - start:.0f} s)")
        results = {m: _summary(v) for m, v in runs.items()}
        entry = judge(name, results, data.chance)
        entry["results"] = {m: {k: (100 * v if k != "runs" else [100 * x for x in v])
                                for k, v in r.items()} for m, r in results.items()}
        report["regimes"].append(entry)
    for key, task in extra.items():
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
