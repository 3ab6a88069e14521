"""Train and judge every method on the known-answer regimes of :mod:`mmcourse.data.regimes`.

What notebook 12 and ``mmcourse bench regimes`` share::

    results = measure(("synergy",), ("image", "audio", "concat", "late"), seeds=2, epochs=8)
    results["synergy"]["concat"]        # {"mean": ..., "std": ..., "runs": [...]}, fractions
    judge("synergy", results["synergy"], chance=0.25)["won"]

Protocol (the same for every regime and method, nothing tuned per method):

1. For each seed s, the regime is generated with seed s (:func:`make_regime`, its defaults
   unless ``sizes`` overrides the split sizes).
2. Each method is trained end to end from scratch with seed s: a single modality is its small
   encoder (:mod:`mmcourse.encoders.small`) plus a linear head; a fusion is both encoders, the
   fusion (``make_fusion`` with its defaults; a fusion whose ``outputs_logits`` is True gets
   ``out_dim`` = classes and no head) and a linear head. AdamW, learning rate 3e-3, batch 128,
   ``epochs`` epochs, the epoch with the best validation accuracy kept. Fusions that read
   sequences (``uses_sequences``) get the encoders' tokens (image patches, groups of frames).
3. Test accuracy on the regime's test split; mean and std over seeds.

Optionally (``aux_weight`` > 0, off by default) every fusion also trains a linear *auxiliary
head* per modality on that modality's encoder output, with that weight on its cross-entropy
(notebook 07's :class:`~mmcourse.multitask.MultiTaskClassifier`): each encoder is then pushed to
classify alone, a remedy for one modality learned faster than the other (the ``imbalance``
regime). Single modalities train as always.

Judging a prediction (:func:`judge`): the best of the predicted methods (``pick``) against
concat. Where concat or late fusion is the predicted optimum (``baseline``), the prediction holds
when no method beats ``pick`` by more than the larger of the two standard deviations (``ties``
lists the fusions within that spread of it, ``below`` those under it). Elsewhere it holds when
``pick`` beats concat by at least ``MARGIN`` points beyond the larger standard deviation:
``mean(pick) - mean(concat) - max(std) >= 3``.
"""
from __future__ import annotations

import multiprocessing
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable

import torch
import torch.nn.functional as F

from mmcourse.classifier import MultimodalClassifier, UnimodalClassifier
from mmcourse.data.regimes import MODALITIES, PRESETS, RegimeData, make_regime
from mmcourse.device import get_device
from mmcourse.encoders.small import SmallImageCNN, SmallSpectrogramCNN
from mmcourse.fusion import FUSION_METHODS, make_fusion
from mmcourse.multitask import MultiTaskClassifier, MultiTaskLoss
from mmcourse.reproducibility import seed_everything
from mmcourse.training import accuracy, fit

METHODS = MODALITIES + tuple(FUSION_METHODS)
REGIMES = tuple(PRESETS)
FEATURES, FUSED = 32, 32  # encoder output size, fused size (a logits fusion gets the classes)
LR, BATCH = 3e-3, 128
MARGIN = 3.0  # points beyond one std by which a predicted (non-baseline) winner must beat concat

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
                   device: torch.device | str | None = None, aux_weight: float = 0.0) -> float:
    """Train ``method`` on ``data`` with seed ``seed``; return its test accuracy (0 to 1).
    ``aux_weight`` > 0: a fusion also trains an auxiliary head per modality (module docstring)."""
    seed_everything(seed)
    model = build_model(method, data)
    loss_fn = F.cross_entropy
    if aux_weight > 0 and method not in MODALITIES:
        model = MultiTaskClassifier(model)
        loss_fn = MultiTaskLoss(model, aux_weights=aux_weight)
    fit(model, data.train.loader(BATCH, shuffle=True, seed=seed), data.val.loader(1000),
        epochs=epochs, lr=LR, loss_fn=loss_fn, device=device, desc=method)
    return accuracy(model, data.test.loader(1000), device=device)


def summarise(values: list[float]) -> dict[str, Any]:
    """``{"mean", "std", "runs"}`` of a list of accuracies (std 0 for a single run)."""
    return {"mean": statistics.mean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0, "runs": values}


def judge(name: str, results: dict[str, dict[str, Any]], chance: float) -> dict[str, Any]:
    """One regime's verdict from ``results`` {method: {"mean", "std"}} (fractions, as
    :func:`measure` gives them); see the module docstring. Returns name, predicted, baseline, pick, best, margins (points), won."""
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


def _job(name: str, seed: int, methods: tuple[str, ...], epochs: int, sizes: dict[str, int],
         device: str, aux_weight: float = 0.0) -> list[float]:
    """One regime and seed: every method's test accuracy (what a worker process runs)."""
    torch.set_num_threads(1)  # the models are tiny: more threads only wait on each other
    data = make_regime(name, seed=seed, **sizes)
    return [train_and_test(data, method, seed, epochs, device, aux_weight) for method in methods]


def _quiet_worker() -> None:
    os.environ["MMCOURSE_PROGRESS"] = "0"  # no progress bars from the worker processes


def measure(regimes: tuple[str, ...] = REGIMES, methods: tuple[str, ...] = METHODS,
            seeds: int = 3, epochs: int = 10, sizes: dict[str, int] | None = None,
            device: str | torch.device | None = None, workers: int = 1,
            log: Callable[[str], None] | None = None,
            aux_weight: float = 0.0) -> dict[str, dict[str, dict[str, Any]]]:
    """Train and test every method of ``methods`` on every regime of ``regimes``, once per seed.

    Returns ``{regime: {method: {"mean", "std", "runs"}}}`` (fractions, runs in seed order).
    ``sizes`` overrides knobs of every regime asked for: the split sizes, e.g.
    ``{"n_train": 300}``, or any knob they all accept, e.g. ``{"cue": "other"}`` for
    ``("reliability",)``. Every model trains on one CPU thread: with models this small, more
    threads only add waiting. On a CPU, ``workers`` > 1 trains that many (regime, seed) jobs at
    once in separate processes, one per core; the numbers are the same as with one worker (each
    job seeds itself), only sooner.
    ``log``, if given, gets one line per regime and seed (accuracies and seconds so far).
    ``aux_weight`` > 0 gives every fusion an auxiliary head per modality with that loss weight
    (see the module docstring); single modalities are unchanged.
    """
    for what, given, known in (("regime", regimes, REGIMES), ("method", methods, METHODS)):
        if isinstance(given, str):
            raise ValueError(f"{what}s must be a tuple of names, got the string {given!r}")
        bad = [x for x in given if x not in known]
        if bad or not given:
            raise ValueError(f"unknown {what} {bad[0]!r}; expected some of {list(known)}" if bad
                             else f"give at least one {what}")
    for name, value in (("seeds", seeds), ("epochs", epochs), ("workers", workers)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if (isinstance(aux_weight, bool) or not isinstance(aux_weight, (int, float))
            or not aux_weight >= 0 or aux_weight == float("inf")):
        raise ValueError(f"aux_weight must be a finite number >= 0, got {aux_weight!r}")
    sizes, device = dict(sizes or {}), get_device(device)
    jobs = [(name, seed) for name in regimes for seed in range(seeds)]
    args = [(name, seed, tuple(methods), epochs, sizes, str(device), float(aux_weight))
            for name, seed in jobs]
    start, accs = time.time(), {}

    def done(job, result):
        accs[job] = result
        if log is not None:
            log(f"{job[0]} seed {job[1]}: " + " ".join(
                f"{m} {100 * a:.1f}" for m, a in zip(methods, result)) +
                f" ({time.time() - start:.0f} s)")

    if workers > 1 and device.type == "cpu" and len(jobs) > 1:
        context = multiprocessing.get_context("spawn")  # fork is unsafe once torch has threads
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context,
                                 initializer=_quiet_worker) as pool:
            for job, result in zip(jobs, pool.map(_job, *zip(*args))):
                done(job, result)
    else:
        threads = torch.get_num_threads()
        try:
            for job, a in zip(jobs, args):
                done(job, _job(*a))
        finally:
            torch.set_num_threads(threads)
    return {name: {m: summarise([accs[(name, seed)][i] for seed in range(seeds)])
                   for i, m in enumerate(methods)} for name in regimes}
