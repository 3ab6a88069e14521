"""``mmcourse bench joint``: fusion methods trained *end to end* (encoders and fusion together)
on the course data, over several seeds, against concatenation.

Protocol (the same for every method, nothing tuned per method):

* the model is notebook 07's joint model (:func:`mmcourse.joint.build_model`: an image CNN, a
  log-mel CNN and a bag of words, 64 features each, a linear head) with only its fusion swapped;
* data: the course dataset, data seed 0, the ``"small"`` splits (4000 training, 1000 validation,
  1000 test samples), preprocessed once (:class:`mmcourse.joint.SpeedData`);
* for each training seed 0..N-1: the same initialisation of the encoders (the seed is set before
  the model is built; the fusion is built last) and the same batch order for every method; AdamW,
  learning rate 3e-3 (notebook 07's), batch 128, ``epochs`` epochs, the epoch with the best
  validation accuracy kept; float32;
* reported: test accuracy on the ordinary test split and with each modality missing for every
  sample, mean and standard deviation over seeds, and each method minus concat.

Where :mod:`mmcourse.tools.bench.fusion` asks "which fusion, on frozen features?", this asks
whether the fusions that contain concatenation (gated, attention) keep up with it when the
encoders learn at the same time.
"""
from __future__ import annotations

import datetime
import statistics
import time
from typing import Any, Callable

import torch

from mmcourse.checks import check_int
from mmcourse.data.course import MODALITY_NAMES
from mmcourse.data.tensors import TensorBatches
from mmcourse.device import get_device
from mmcourse.fusion import FUSION_METHODS
from mmcourse.joint import SpeedData, build_model
from mmcourse.reproducibility import seed_everything
from mmcourse.tools.bench.fusion import mean_std_rows
from mmcourse.training import evaluate, fit

#: The method every other fusion is compared with.
BASELINE = "concat"
#: What the bench measures by default: concat and the two fusions that start as concat.
DEFAULT_METHODS = ("concat", "gated", "attention")
LR, BATCH_SIZE, DIM = 3e-3, 128, 64


def _batches(prepared, device, seed: int, shuffle: bool = False, hide: str | None = None,
             batch_size: int = BATCH_SIZE) -> TensorBatches:
    present = {m: p.clone() for m, p in prepared.present.items()}
    if hide is not None:
        present[hide].zero_()
    return TensorBatches(dict(prepared.tensors), prepared.labels, present=present,
                         batch_size=batch_size, shuffle=shuffle, seed=seed).to(device)


def run_joint_bench(seeds: int = 3, epochs: int = 12,
                    methods: tuple[str, ...] = DEFAULT_METHODS,
                    device: torch.device | str | None = None,
                    size: str | dict[str, int] = "small",
                    log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train every fusion of ``methods`` end to end for seeds 0..``seeds``-1 (see the module's
    protocol); return ``{"results": {method: {condition: {"mean", "std", "runs"}}},
    "summary": {"<method> - concat": points}, "config", "device", "torch", "date", "seconds"}``
    (accuracies as fractions, differences in points). ``size``: the course dataset's splits
    (``"small"``, or a dict of split sizes for a quick run)."""
    check_int(seeds, "seeds")
    check_int(epochs, "epochs")
    if not methods:
        raise ValueError("methods is empty; expected fusion names such as "
                         f"{list(DEFAULT_METHODS)}")
    unknown = [m for m in methods if m not in FUSION_METHODS]
    if unknown:
        raise ValueError(f"unknown fusion method(s) {unknown}; expected some of "
                         f"{list(FUSION_METHODS)}")
    began = time.monotonic()
    device = get_device(device)
    data = SpeedData.make(seed=0, size=size)
    train, val, test = (data.prepare(s) for s in ("train", "val", "test"))
    conditions = {"test": None, **{f"no {m}": m for m in MODALITY_NAMES}}
    values: dict[str, dict[str, list[float]]] = {m: {c: [] for c in conditions} for m in methods}
    for seed in range(seeds):
        for method in methods:
            seed_everything(seed)
            model = build_model(data.vocab_size, num_classes=len(data.split("train").classes),
                                dim=DIM, fusion=method)
            fit(model, _batches(train, device, seed, shuffle=True),
                _batches(val, device, seed, batch_size=500), epochs=epochs, lr=LR,
                device=device, desc=f"{method} seed {seed}")
            for name, hide in conditions.items():
                loader = _batches(test, device, seed, hide=hide, batch_size=500)
                values[method][name].append(evaluate(model, loader, device=device)["accuracy"])
            if log:
                log(f"seed {seed} {method}: test {100 * values[method]['test'][-1]:.1f} "
                    f"({time.monotonic() - began:.0f} s)")
    results = {m: {c: {"mean": statistics.mean(v), "std": statistics.pstdev(v), "runs": v}
                   for c, v in per.items()} for m, per in values.items()}
    summary = {}
    if BASELINE in results:
        for method in (m for m in results if m != BASELINE):
            summary[f"{method} - {BASELINE}"] = {
                c: 100 * (results[method][c]["mean"] - results[BASELINE][c]["mean"])
                for c in conditions}
    return {"results": results, "summary": summary,
            "config": {"seeds": list(range(seeds)), "epochs": epochs, "lr": LR,
                       "batch_size": BATCH_SIZE, "size": size, "methods": list(methods)},
            "device": device.type, "torch": torch.__version__,
            "date": datetime.date.today().isoformat(),
            "seconds": time.monotonic() - began}


def format_joint_table(report: dict[str, Any]) -> str:
    """The bench report as a text table, with each method minus concat."""
    res, cfg = report["results"], report["config"]
    cols = list(next(iter(res.values())))
    lines = [f"Joint bench (end to end): test accuracy (%), mean +- std over "
             f"{len(cfg['seeds'])} training seeds; {cfg['epochs']} epochs; device "
             f"{report['device']}, torch {report['torch']}, {report['date']}",
             *mean_std_rows(res, cols), ""]
    for key, diff in report["summary"].items():
        lines.append(f"{key:20s}" + "".join(f"{diff[c]:+13.1f}" for c in cols) + "  points")
    lines.append(f"({report['seconds']:.0f} s)")
    return "\n".join(lines)
