"""``mmcourse bench fusion``: every fusion method, measured the same way, over several seeds.

Protocol (the same for every method, nothing tuned per method):

1. For each training seed, one encoder per modality is trained alone and frozen
   (:func:`mmcourse.features.course_features`); its own linear head is the *unimodal* baseline.
2. Every fusion method of ``mmcourse.fusion.FUSION_METHODS`` is trained on those frozen features
   (AdamW, learning rate 2e-3, batch 128, ``epochs`` epochs, the epoch with the best validation
   accuracy kept), read through its interface, never its name: a method with ``uses_sequences``
   reads the sequences (patches, frames, tokens), the others one pooled vector per modality; a
   method with ``outputs_logits`` fuses straight to class scores, the others to 64 features and a
   linear head.
3. All models are tested on the same test objects (data seed 0) under several conditions:

   * ``test``: the ordinary test split, with its per-sample corruption (the training distribution);
   * ``clean``: every modality clean;
   * ``<m>@<s>``: modality ``m`` corrupted in a share ``s`` of the samples (its corruption levels in
     their usual proportions, never missing), the other modalities as usual; the *area under the
     accuracy-vs-severity curve* over s = 0, 0.25, ..., 1 (trapezoid rule; 1 = always right) sums
     a curve up in one number, as MultiBench does for robustness (Liang et al. 2021);
   * ``no <m>``: modality ``m`` missing for every sample, the others as usual.

Reported: mean and standard deviation over seeds. Run ``mmcourse bench fusion --help``.
"""
from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from mmcourse.checks import check_int
from mmcourse.classifier import MultimodalClassifier
from mmcourse.data.course import MODALITY_NAMES, QUALITY_LEVELS, make_course_dataset
from mmcourse.device import get_device
from mmcourse.features import CourseFeatures, FeatureSplit, course_features
from mmcourse.fusion import FUSION_METHODS, make_fusion
from mmcourse.progress import progress
from mmcourse.reproducibility import seed_everything
from mmcourse.robustness import SEVERITIES, area_under_curve, corruption_probs
from mmcourse.training import accuracy, fit

#: The method every other fusion is compared with in the summary.
BASELINE = "concat"


def bench_methods() -> tuple[str, ...]:
    """What the bench can measure: the single modalities (each frozen encoder with its own head),
    then every registered fusion method, in ``FUSION_METHODS`` order."""
    return MODALITY_NAMES + tuple(FUSION_METHODS)


def test_conditions(n_test: int = 1000, data_seed: int = 0) -> dict[str, Any]:
    """The test splits of every condition (same objects, different corruption), by name."""
    def make(probs):
        return make_course_dataset(seed=data_seed, size={"test": n_test}, quality_probs=probs)["test"]

    conditions = {"test": make(None),
                  "clean": make({m: corruption_probs(m, 0.0) for m in MODALITY_NAMES})}
    for m in MODALITY_NAMES:
        for s in SEVERITIES:
            conditions[f"{m}@{s:g}"] = make({m: corruption_probs(m, s)})
    for m in MODALITY_NAMES:
        missing = tuple(float(name == "missing") for name in QUALITY_LEVELS[m])
        conditions[f"no {m}"] = make({m: missing})
    return conditions


def train_fusion(feats: CourseFeatures, method: str, seed: int, epochs: int = 12,
                 out_dim: int = 64, modality_dropout: float = 0.0,
                 device: str | torch.device | None = None) -> MultimodalClassifier:
    """One fusion classifier over the frozen features, trained with the bench's recipe."""
    n_classes = len(feats.classes)
    seed_everything(seed)
    fusion = make_fusion(method, feats.dims,
                         n_classes if FUSION_METHODS[method].outputs_logits else out_dim)
    model = MultimodalClassifier({m: None for m in feats.modalities}, fusion, n_classes,
                                 modality_dropout=modality_dropout)
    sequences = fusion.uses_sequences
    fit(model, feats.loader("train", sequences=sequences, shuffle=True, seed=seed),
        feats.loader("val", sequences=sequences, batch_size=1000), epochs=epochs, lr=2e-3,
        device=device, desc=method)
    return model.eval()


def _accuracy(feats: CourseFeatures, method: str, model, split: FeatureSplit, device) -> float:
    """Test accuracy of a fusion ``model``, or (``model`` None) of modality ``method``'s head."""
    if model is None:  # the frozen encoder's own head
        with torch.no_grad():
            head = feats.models[method].head.to(device)
            pred = head(split.pooled[method].to(device)).argmax(1).cpu()
        return (pred == split.labels).float().mean().item()
    return accuracy(model, split.loader(sequences=model.fusion.uses_sequences, batch_size=1000),
                    device=device)


def run_fusion_bench(seeds: int = 3, epochs: int = 12, n_test: int = 1000,
                     methods: tuple[str, ...] | None = None, modality_dropout: float = 0.0,
                     device: str | torch.device | None = None) -> dict[str, Any]:
    """Run the whole bench on ``methods`` (default: all of :func:`bench_methods`); return a
    JSON-able dict (see :func:`format_fusion_table`)."""
    known = bench_methods()
    methods = known if methods is None else tuple(methods)
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise ValueError(f"unknown method {unknown[0]!r}; expected some of {list(known)}")
    check_int(seeds, "seeds")
    device = get_device(device)
    start = time.time()
    conditions = test_conditions(n_test)
    runs: dict[str, dict[str, list[float]]] = {m: {c: [] for c in conditions} for m in methods}
    for seed in progress(range(seeds), desc="seeds"):
        feats = course_features(seed=seed, device=device)
        encoded = {name: feats.encode(split) for name, split in conditions.items()}
        for method in methods:
            model = None if method in MODALITY_NAMES else train_fusion(
                feats, method, seed, epochs, modality_dropout=modality_dropout, device=device)
            for name, split in encoded.items():
                runs[method][name].append(_accuracy(feats, method, model, split, device))
    results: dict[str, Any] = {}
    for method, by_condition in runs.items():
        entry = {c: _summary(v) for c, v in by_condition.items()}
        for m in MODALITY_NAMES:
            aucs = [area_under_curve([by_condition[f"{m}@{s:g}"][i] for s in SEVERITIES])
                    for i in range(seeds)]
            entry[f"auc {m}"] = _summary(aucs)
        results[method] = entry
    return {"config": {"seeds": list(range(seeds)), "epochs": epochs, "n_test": n_test,
                       "modality_dropout": modality_dropout, "severities": list(SEVERITIES)},
            "device": str(device), "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d"), "seconds": round(time.time() - start, 1),
            "results": results, "summary": summarise(results)}


def _summary(values: list[float]) -> dict[str, Any]:
    return {"mean": statistics.mean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0, "runs": values}


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """The comparisons the course cares about, in points (percentage points of accuracy)."""
    mean = lambda method, key: 100 * results[method][key]["mean"]  # noqa: E731
    out: dict[str, Any] = {}
    unimodal = [m for m in MODALITY_NAMES if m in results]
    fusions = [m for m in results if m not in MODALITY_NAMES]
    if unimodal and fusions:
        best_uni = max(unimodal, key=lambda m: mean(m, "test"))
        best_fusion = max(fusions, key=lambda m: mean(m, "test"))
        out["best_single"] = {"method": best_uni, "test": mean(best_uni, "test")}
        out["best_fusion"] = {"method": best_fusion, "test": mean(best_fusion, "test"),
                              "gain_over_best_single": mean(best_fusion, "test") - mean(best_uni, "test")}
    if BASELINE in results:
        for method in (m for m in fusions if m != BASELINE):
            out[f"{method} - {BASELINE}"] = {
                "test": mean(method, "test") - mean(BASELINE, "test"),
                "corruption_auc": statistics.mean(mean(method, f"auc {m}") - mean(BASELINE, f"auc {m}")
                                                  for m in MODALITY_NAMES),
                "missing": statistics.mean(mean(method, f"no {m}") - mean(BASELINE, f"no {m}")
                                           for m in MODALITY_NAMES)}
    return out


def mean_std_rows(results: dict[str, Any], cols: list[str]) -> list[str]:
    """A header and one row per method: each column's mean +- std, in % (from fractions)."""
    lines = [f"{'method':10s}" + "".join(f"{c:>13s}" for c in cols)]
    for method, entry in results.items():
        lines.append(f"{method:10s}" + "".join(
            f"{100 * entry[c]['mean']:7.1f} +-{100 * entry[c]['std']:4.1f}" for c in cols))
    return lines


def format_fusion_table(report: dict[str, Any]) -> str:
    """The bench report as a text table with a plain-words summary."""
    res, cfg = report["results"], report["config"]
    cols = ["test", "clean"] + [f"auc {m}" for m in MODALITY_NAMES] + [f"no {m}" for m in MODALITY_NAMES]
    lines = [f"Fusion bench: test accuracy (%), mean +- std over {len(cfg['seeds'])} training seeds; "
             f"{cfg['n_test']} test objects; {cfg['epochs']} epochs; device {report['device']}, "
             f"torch {report['torch']}, {report['date']}", *mean_std_rows(res, cols)]
    lines += ["", "test: the ordinary test split (per-sample corruption as in training); clean: "
              "every modality clean;", "auc m: area under accuracy vs share of m corrupted "
              "(0 to 1); no m: m missing for every sample."]
    summary = report["summary"]
    if "best_fusion" in summary:
        b, u = summary["best_fusion"], summary["best_single"]
        lines.append(f"\nBest fusion on the test split: {b['method']} {b['test']:.1f}%, "
                     f"{b['gain_over_best_single']:+.1f} points over the best single modality "
                     f"({u['method']} {u['test']:.1f}%).")
    suffix = f" - {BASELINE}"
    for key, diff in summary.items():
        if key.endswith(suffix):
            lines.append(f"{key:20s} test {diff['test']:+5.1f}   corruption AUC (mean of 3) "
                         f"{diff['corruption_auc']:+5.1f}   missing (mean of 3) "
                         f"{diff['missing']:+5.1f} points")
    robust = [k[:-len(suffix)] for k, d in summary.items()
              if k.endswith(suffix) and min(d["corruption_auc"], d["missing"]) >= 3]
    lines.append(f"Fusion methods at least 3 points above {BASELINE} under both corruption and "
                 "missing modalities: " + (", ".join(robust) if robust else "none on this run") + ".")
    lines.append(f"({report['seconds']:.0f} s)")
    return "\n".join(lines)

