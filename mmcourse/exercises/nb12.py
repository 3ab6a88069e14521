"""Checks for the exercises of notebook 12 (which fusion, when: known-answer tasks)."""
from __future__ import annotations

import torch

from mmcourse.data.regimes import PRESETS
from mmcourse.exercises.core import call, describe, fail, register
from mmcourse.regime_runs import METHODS  # what a prediction may name: a modality or a fusion



@register("12.1", "predictions: one method (or a tuple of methods) named for every regime",
          hint="for each regime, ask which information the label needs (one modality? both? "
               "their combination?) and whether the right modality changes from sample to "
               "sample; then name the method built for that. Any known name is accepted: the "
               "measurement, not the check, says whether you were right.")
def check_predictions(predictions, regimes=None) -> str:
    if not isinstance(predictions, dict) or not predictions:
        fail(f"predictions must be a dict {{regime name: method}}, got {describe(predictions)}")
    regimes = tuple(regimes) if regimes is not None else tuple(predictions)
    missing = [r for r in regimes if r not in predictions]
    if missing:
        fail(f"no prediction for {missing}: name a method for every regime of REGIMES "
             f"({list(regimes)}) before you measure")
    extra = [r for r in predictions if r not in regimes and r not in PRESETS]
    if extra:
        fail(f"{extra} are not regimes; the regimes are {list(PRESETS)}")
    for regime, guess in predictions.items():
        names = (guess,) if isinstance(guess, str) else guess
        if not isinstance(names, (tuple, list)) or not names or \
                not all(isinstance(n, str) for n in names):
            fail(f"predictions[{regime!r}] must be a method name or a tuple of names, got "
                 f"{describe(guess)}")
        unknown = [n for n in names if n not in METHODS]
        if unknown:
            fail(f"predictions[{regime!r}] names {unknown[0]!r}, which is not a method here; "
                 f"use one of {list(METHODS)}")
    recorded = ", ".join(f"{r}: {'/'.join((g,) if isinstance(g, str) else g)}"
                         for r, g in predictions.items())
    return f"recorded ({recorded}); section 3 compares them with the measurement"


def _label_table(fn, k: int) -> torch.Tensor:
    a = torch.arange(k).repeat_interleave(k)
    b = torch.arange(k).repeat(k)
    out = call(fn, a, b, k)
    if not isinstance(out, torch.Tensor):
        fail(f"synergy_label(a, b, {k}) must return a tensor, got {describe(out)}")
    if out.shape != a.shape:
        fail(f"synergy_label(a, b, {k}) with a and b of shape {tuple(a.shape)} returned shape "
             f"{tuple(out.shape)}; give one label per sample")
    if out.is_floating_point() or out.dtype == torch.bool:
        fail(f"synergy_label must return integer class labels, got dtype {out.dtype}")
    if out.min() < 0 or out.max() >= k:
        fail(f"with k = {k} the labels must lie in 0..{k - 1}; synergy_label gave labels from "
             f"{int(out.min())} to {int(out.max())}")
    return out.view(k, k)  # row: the image symbol a, column: the audio symbol b


@register("12.3", "synergy_label: a label that neither symbol alone says anything about",
          hint="a single modality is at chance when, whatever its symbol, every label stays "
               "equally likely over the other modality's symbols. Think of a k x k table of "
               "labels (rows: image symbol, columns: audio symbol): what must every row and "
               "every column look like? Shuffling the rows of a valid table keeps it valid.")
def check_synergy_label(synergy_label) -> str:
    generator = []
    for k in (2, 3, 4, 5):
        table = _label_table(synergy_label, k)
        grid = torch.arange(k)
        generator_table = (grid.view(-1, 1) + grid.view(1, -1)) % k
        # the same rule with its labels renamed: every cell with one generator label gets one label
        generator.append(all(len(torch.unique(table[generator_table == g])) == 1 for g in range(k)))
        full = torch.arange(k)
        for axis, name, other in ((1, "image", "audio"), (0, "audio", "image")):
            for s in range(k):
                line = table[s] if axis == 1 else table[:, s]
                if not torch.equal(line.sort().values, full):
                    counts = torch.bincount(line, minlength=k).tolist()
                    fail(f"with k = {k}, when the {name} symbol is {s} the labels over the {k} "
                         f"{other} symbols are {line.tolist()} (label counts {counts}): they are "
                         f"not all equally likely, so the {name} alone tells something about "
                         f"the label. Every {name} symbol must leave each of the {k} labels "
                         f"exactly once.")
    if all(generator):
        fail("that is the generator's own rule, (a + b) mod k, which the text gives, or the same "
             "rule with its labels renamed (the same pairs of symbols share a label): it is right, "
             "but find a rule that groups the pairs differently (the table of labels has others)")
    return "for k = 2..5, each symbol alone leaves every label equally likely; both fix it"


def _rule(results: dict, a: str, b: str, margin: float) -> bool:
    gap = 100 * (results[a]["mean"] - results[b]["mean"])
    return gap - 100 * max(results[a]["std"], results[b]["std"]) >= margin


def _cases() -> list[tuple[dict, str, str, float]]:
    r = lambda m, s: {"mean": m, "std": s}  # noqa: E731
    return [
        ({"x": r(0.90, 0.01), "y": r(0.85, 0.01)}, "x", "y", 3.0),    # 5 - 1 = 4 >= 3
        ({"x": r(0.90, 0.03), "y": r(0.85, 0.01)}, "x", "y", 3.0),    # 5 - 3 = 2 < 3
        ({"x": r(0.90, 0.01), "y": r(0.85, 0.025)}, "x", "y", 3.0),   # 5 - 2.5 < 3
        ({"x": r(0.85, 0.0), "y": r(0.90, 0.0)}, "x", "y", 3.0),      # below
        ({"x": r(0.85, 0.0), "y": r(0.90, 0.0)}, "y", "x", 3.0),      # 5 >= 3
        ({"x": r(0.60, 0.015), "y": r(0.55, 0.015)}, "x", "y", 3.0),  # 5 - 1.5 = 3.5
        ({"x": r(0.60, 0.015), "y": r(0.55, 0.015)}, "x", "y", 4.0),  # 3.5 < 4
        ({"x": r(0.70, 0.02), "y": r(0.66, 0.005)}, "x", "y", 1.0),   # 4 - 2 = 2 >= 1
        ({"x": r(0.70, 0.012), "y": r(0.66, 0.012)}, "x", "y", 3.0),  # 4 - 1.2 = 2.8 < 3
        ({"x": r(0.97, 0.004), "y": r(0.93, 0.004)}, "x", "y", 3.0),  # 4 - 0.4 = 3.6
    ]


@register("12.2", "beats(results, a, b, margin): a wins only beyond the seeds' own spread",
          hint="a difference between two means counts only when it is larger than the scatter "
               "you would see between seeds anyway. results holds fractions (0.85), the margin "
               "is in points (percent).")
def check_beats(beats) -> str:
    for results, a, b, margin in _cases():
        got = call(beats, results, a, b, margin)
        if not isinstance(got, bool):
            fail(f"beats must return True or False, got {describe(got)}")
        want = _rule(results, a, b, margin)
        if got == want:
            continue
        ra, rb = results[a], results[b]
        gap = 100 * (ra["mean"] - rb["mean"])
        where = (f"for {a} = {ra} and {b} = {rb} with margin {margin:g}: the gap is "
                 f"{gap:+.1f} points, the larger std {100 * max(ra['std'], rb['std']):.1f} "
                 f"points")
        if got and gap >= margin:
            fail(f"beats said True {where}. A gap that the seeds' scatter could produce is not a "
                 f"win: subtract the larger of the two standard deviations before comparing "
                 f"with the margin")
        if got and gap < 0:
            fail(f"beats said True {where}: {a} is BELOW {b}; the question is whether {a} "
                 f"beats {b}, not whether they differ")
        if not got and gap - 100 * (ra["std"] + rb["std"]) < margin <= \
                gap - 100 * max(ra["std"], rb["std"]):
            fail(f"beats said False {where}. The rule subtracts the larger std (max), not "
                 f"the sum of both")
        if not got and gap >= margin + 100 * max(ra["std"], rb["std"]) and \
                (ra["mean"] - rb["mean"]) < margin:
            fail(f"beats said False {where}. Are you comparing fractions with a margin in "
                 f"points? Multiply the means and stds by 100 first")
        fail(f"beats said {got} {where}; the rule is: gap - larger std >= margin "
             f"(expected {want})")
    return f"all {len(_cases())} cases, including gaps hidden by the spread"
