"""Checks for the exercises of notebook 11 (the capstone: your own data, your fusion, your evidence)."""
from __future__ import annotations

import math

import numpy as np
import torch

from mmcourse.exercises.core import call, describe, expect_number, fail, register

_SPLITS = ("train", "val", "test")


# ------------------------------------------------------------------ 11.1 a stratified split

def _check_split(name: str, got, labels: np.ndarray, fractions: tuple[float, float, float]) -> dict:
    """The split ``got`` as {split: int array}, failing on anything that is not a clean
    stratified split of ``labels`` in ``fractions``."""
    if not isinstance(got, dict) or set(got) != set(_SPLITS):
        keys = sorted(got) if isinstance(got, dict) else None
        fail(f"{name} returned {describe(got) if keys is None else 'a dict with keys ' + str(keys)}; "
             f"a dict {{'train': indices, 'val': indices, 'test': indices}} was expected")
    parts = {}
    for s in _SPLITS:
        value = got[s]
        if isinstance(value, torch.Tensor):
            value = value.cpu().numpy()
        value = np.asarray(value)
        if value.ndim != 1 or (value.size and not np.issubdtype(value.dtype, np.integer)):
            if value.dtype == bool:
                fail(f"{name}[{s!r}] is a boolean mask; return integer indices "
                     f"(np.flatnonzero(mask) turns a mask into them)")
            fail(f"{name}[{s!r}] is {describe(got[s])}; a 1-D array of integer sample indices "
                 f"was expected")
        if value.size and (value.min() < 0 or value.max() >= len(labels)):
            fail(f"{name}[{s!r}] holds indices outside 0..{len(labels) - 1}")
        parts[s] = value.astype(np.int64)
    n = len(labels)
    for s in _SPLITS:
        repeated = len(parts[s]) - len(np.unique(parts[s]))
        if repeated:
            fail(f"{name}[{s!r}] lists {repeated} sample(s) more than once (drawing with "
                 f"replacement?); every sample must appear once: shuffle the indices and cut them")
    for i, a in enumerate(_SPLITS):
        for b in _SPLITS[i + 1:]:
            both = np.intersect1d(parts[a], parts[b])
            if len(both):
                fail(f"{len(both)} sample(s) are in both {a!r} and {b!r} (e.g. index {int(both[0])}): "
                     f"that is a leak, the model is then tested on samples it was trained or tuned "
                     f"on. Cut ONE shuffled list of each class into three pieces instead of "
                     f"drawing each split separately")
    used = np.concatenate([parts[s] for s in _SPLITS])
    if len(used) != n:
        lost = n - len(used)
        fail(f"{name} puts {len(used)} of {n} samples into the splits; {lost} are in none "
             f"(rounding each piece down loses samples). Let the last split take the rest: "
             f"everything after the second cut")
    for k, c in enumerate(np.unique(labels)):
        total = int((labels == c).sum())
        for s, f in zip(_SPLITS, fractions):
            have = int((labels[parts[s]] == c).sum())
            if abs(have - f * total) > 1.0 + 1e-9:
                fail(f"class {c} has {total} samples and {name} puts {have} of them in {s!r}, but "
                     f"about {f * total:.1f} (a fraction {f:g}) were expected: the split is not "
                     f"stratified. Split each class separately (np.flatnonzero(labels == c)) so a "
                     f"small class keeps its share in every split")
    return parts


@register("11.1", "stratified_split puts every sample in exactly one split, each class in proportion",
          hint="per class: shuffle its indices with a generator seeded by seed, cut the shuffled "
               "list at the cumulative fractions (rounded), and give the three consecutive pieces "
               "to train, val and test.")
def check_stratified_split(stratified_split) -> str:
    from mmcourse.exercises.library_calls import call_without

    ready_made = {}
    try:  # section 3 splits with scikit-learn; the exercise asks for the split written by hand
        from sklearn.model_selection import train_test_split

        ready_made[getattr(train_test_split, "__wrapped__", train_test_split)] = \
            "sklearn.model_selection.train_test_split"
    except ImportError:  # pragma: no cover (scikit-learn is one of the course's packages)
        pass
    # an imbalanced label set: plain random splits then miss the proportions of small classes
    counts = {0: 120, 1: 61, 2: 23, 3: 9, 4: 200, 5: 37}
    rng = np.random.default_rng(11)
    labels = rng.permutation(np.concatenate([np.full(n, c) for c, n in counts.items()]))
    labels_copy = labels.copy()
    cases = [((0.6, 0.2, 0.2), 0), ((0.6, 0.2, 0.2), 1), ((0.5, 0.25, 0.25), 3), ((0.8, 0.1, 0.1), 0)]
    results = {}
    for fractions, seed in cases:
        name = f"stratified_split(labels, fractions={fractions}, seed={seed})"
        got = call_without(stratified_split, ready_made, labels.copy(), fractions=fractions,
                           seed=seed)
        results[fractions, seed] = _check_split(name, got, labels, fractions)
    if not np.array_equal(labels, labels_copy):  # pragma: no cover (copies are passed)
        fail("stratified_split changed the labels")
    again = _check_split("stratified_split(labels, seed=0) run a second time",
                         call(stratified_split, labels.copy(), fractions=(0.6, 0.2, 0.2), seed=0),
                         labels, (0.6, 0.2, 0.2))
    first = results[(0.6, 0.2, 0.2), 0]
    if any(not np.array_equal(np.sort(first[s]), np.sort(again[s])) for s in _SPLITS):
        fail("two calls with seed=0 gave different splits: draw the random numbers from "
             "np.random.default_rng(seed), not from the global generator, so the split can be "
             "reproduced")
    other = results[(0.6, 0.2, 0.2), 1]
    if all(np.array_equal(np.sort(first[s]), np.sort(other[s])) for s in _SPLITS):
        fail("seed=0 and seed=1 gave the same split: the seed is ignored (or the indices are "
             "not shuffled); shuffle each class with np.random.default_rng(seed)")
    return f"{len(labels)} samples in 6 unbalanced classes, 4 settings: no leak, none lost, stratified"


# ------------------------------------------------------------------ 11.2 a per-class report

_KEYS = ("precision", "recall", "f1", "support")


def _report_reference(cm: torch.Tensor) -> dict[str, torch.Tensor]:
    cm = cm.double()
    correct, support, predicted = cm.diag(), cm.sum(1), cm.sum(0)
    recall = torch.where(support > 0, correct / support.clamp(min=1), torch.zeros_like(support))
    precision = torch.where(predicted > 0, correct / predicted.clamp(min=1), torch.zeros_like(predicted))
    denominator = precision + recall
    f1 = torch.where(denominator > 0, 2 * precision * recall / denominator.clamp(min=1e-12),
                     torch.zeros_like(denominator))
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


@register("11.2", "per_class_report gives precision, recall, F1 and support of each class",
          hint="correct = the diagonal, support = the row sums (rows are true classes), predicted "
               "= the column sums; recall = correct / support, precision = correct / predicted, "
               "f1 their harmonic mean, each 0 where its denominator is 0.")
def check_per_class_report(per_class_report) -> str:
    classes = ["cat", "dog", "owl", "fox"]
    cm = torch.tensor([[30, 5, 0, 5],
                       [2, 20, 0, 8],
                       [4, 3, 0, 3],     # owl: never predicted, and never right
                       [0, 10, 0, 10]])
    n = int(cm.sum())
    cm_copy = cm.clone()
    got = call(per_class_report, cm, classes)
    if not torch.equal(cm, cm_copy):
        fail("per_class_report changed the confusion matrix passed to it; work on a copy")
    if not isinstance(got, dict) or list(got) != classes:
        keys = list(got) if isinstance(got, dict) else None
        fail(f"per_class_report(confusion, classes) returned "
             f"{describe(got) if keys is None else 'a dict with keys ' + str(keys)}; a dict with "
             f"one entry per class name, in order {classes}, was expected")
    values: dict[str, dict[str, float]] = {}
    for c in classes:
        entry = got[c]
        if not isinstance(entry, dict) or not set(_KEYS) <= set(entry):
            fail(f"per_class_report(...)[{c!r}] is {describe(entry)}; a dict with the keys "
                 f"{list(_KEYS)} was expected")
        values[c] = {}
        for k in _KEYS:
            v = entry[k]
            if isinstance(v, torch.Tensor) and v.numel() == 1 and v.is_floating_point() and torch.isnan(v):
                v = float("nan")
            number = expect_number(f"per_class_report(...)[{c!r}][{k!r}]", v, "a number")
            values[c][k] = number
    ref = _report_reference(cm)
    got_t = {k: torch.tensor([values[c][k] for c in classes], dtype=torch.float64) for k in _KEYS}
    if any(torch.isnan(v).any() for v in got_t.values()):
        bad = [f"{k} of {c}" for k in _KEYS for j, c in enumerate(classes) if math.isnan(got_t[k][j])]
        if "recall of owl" in bad and "precision of owl" not in bad:
            fail("the recall of 'owl' is NaN: it was divided by owl's COLUMN sum, the number of "
                 "times owl was predicted (never, here). Rows are the true classes: recall divides "
                 "the correct predictions by the row sum, precision by the column sum")
        fail(f"per_class_report gives NaN for {', '.join(bad)}: 'owl' is never predicted, so its "
             f"precision is 0 / 0; report 0.0 there (guard each division whose denominator can be "
             f"0, for example with torch.where)")

    def same(a, b):
        return torch.allclose(a, b.double(), atol=1e-6)

    if not same(got_t["support"], ref["support"]):
        if same(got_t["support"], cm.sum(0)):
            fail(f"the supports {got_t['support'].long().tolist()} are column sums, the number of "
                 f"times each class was PREDICTED; support counts the TRUE samples of a class, the "
                 f"row sums {ref['support'].long().tolist()}")
        total = float(got_t["support"].sum())
        fail(f"the supports {got_t['support'].tolist()} add up to {total:g}, but the confusion "
             f"matrix holds {n} samples; support is each row's sum: {ref['support'].long().tolist()}")
    if same(got_t["recall"], ref["precision"]) and same(got_t["precision"], ref["recall"]):
        fail("precision and recall are swapped: rows are TRUE classes, so recall = correct / row "
             "sum and precision = correct / column sum")
    if same(got_t["recall"], cm.diag().double() / n) or same(got_t["precision"], cm.diag().double() / n):
        fail(f"a class's recall or precision was divided by all {n} samples; divide the class's "
             f"correct predictions by its row sum (recall) or column sum (precision)")
    for k in ("recall", "precision"):
        if not same(got_t[k], ref[k]):
            want = ", ".join(f"{c} {float(v):.3f}" for c, v in zip(classes, ref[k]))
            given = ", ".join(f"{c} {float(v):.3f}" for c, v in zip(classes, got_t[k]))
            fail(f"the {k} values are {given}, but {want} were expected")
    if not same(got_t["f1"], ref["f1"]):
        if same(got_t["f1"], (ref["precision"] + ref["recall"]) / 2):
            fail("f1 is the arithmetic mean of precision and recall; it is the HARMONIC mean, "
                 "2 p r / (p + r), which is low when either is low")
        want = ", ".join(f"{c} {float(v):.3f}" for c, v in zip(classes, ref["f1"]))
        fail(f"the f1 values should be {want}: 2 p r / (p + r), and 0.0 where p + r = 0")
    return f"4 classes, one never predicted; supports add up to {n}"


# ------------------------------------------------------------------ 11.3 a deployment choice

def _expected(table: dict, modality: str, p: float, column: str = "val") -> dict[str, float]:
    return {method: (1 - p) * row[f"{column}_accuracy"] + p * row[f"{column}_without_{modality}"]
            for method, row in table.items()}


def _made_up_tables() -> list[tuple[dict, str, float]]:
    """Tables in which the plausible wrong rules pick other rows than the right one."""
    def row(val, test, without, params=1000):
        r = {"val_accuracy": val, "test_accuracy": test, "val_accuracy_std": 0.01,
             "test_accuracy_std": 0.01, "params": params}
        for m in ("image", "audio", "text", "video"):
            r[f"val_without_{m}"] = without.get(m, val)
            r[f"test_without_{m}"] = without.get(m, test)
        return r
    a = {"image": row(0.60, 0.61, {"image": 0.12}),
         "audio": row(0.55, 0.54, {"audio": 0.12}),
         "concat": row(0.86, 0.88, {"audio": 0.50, "image": 0.70}),       # best with everything
         "gated": row(0.83, 0.80, {"audio": 0.78, "image": 0.71}),        # best with audio failing
         "attention": row(0.80, 0.90, {"audio": 0.74, "image": 0.65})}    # best on TEST columns
    b = {"video": row(0.70, 0.70, {"video": 0.10}),
         "late": row(0.74, 0.75, {"audio": 0.72, "video": 0.20}),
         "tensor": row(0.78, 0.79, {"audio": 0.40, "video": 0.60})}
    return [(a, "audio", 0.3), (a, "audio", 0.05), (b, "audio", 0.3), (b, "video", 0.5)]


@register("11.3", "deployment_choice picks the row with the best expected accuracy when a sensor fails",
          hint="for every row, weigh its two validation columns by how often a deployed sample "
               "is in each case (it has the modality, it does not) and add them; return the "
               "method with the largest value, and that value.")
def check_deployment_choice(deployment_choice, table=None) -> str:
    if table is None:
        fail("call the check as check('11.3', deployment_choice, table=results) with your own "
             "results table")
    if not isinstance(table, dict) or not table:
        fail(f"table must be your results dict {{method: {{'val_accuracy': ..., ...}}}}, got "
             f"{describe(table)}")
    cases = [(table, "audio", 0.3, "your results table")] + [
        (t, m, p, f"a made-up table ({', '.join(t)}) with {m} missing {p:.0%} of the time")
        for t, m, p in _made_up_tables()]
    mine = None
    for tab, modality, p, what in cases:
        name = f"deployment_choice(table, modality={modality!r}, p_missing={p})"
        got = call(deployment_choice, {k: dict(v) for k, v in tab.items()}, modality=modality, p_missing=p)
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            fail(f"{name} returned {describe(got)}; the pair (method, expected_accuracy) was expected")
        method, value = got
        value = expect_number(f"{name}[1] (the expected accuracy)", value, "a number")
        if method not in tab:
            fail(f"{name} chose {method!r}, which is not a row of the table ({list(tab)})")
        expected = _expected(tab, modality, p)
        best = max(expected, key=expected.get)
        if method != best and not math.isclose(expected[method], expected[best], abs_tol=1e-9):
            plain = max(tab, key=lambda k: tab[k]["val_accuracy"])
            swapped = _expected(tab, modality, 1 - p)
            on_test = _expected(tab, modality, p, "test")
            if method == plain:
                fail(f"on {what}, {name} chose {method!r}, the best with every modality "
                     f"({tab[method]['val_accuracy']:.3f}); with {modality} missing {p:.0%} of the "
                     f"time {best!r} is expected to do better ({expected[best]:.3f} vs "
                     f"{expected[method]:.3f}): weigh in the accuracy without {modality}")
            if method == max(on_test, key=on_test.get):
                fail(f"on {what}, {name} chose {method!r}, which is best on the TEST columns; "
                     f"choose with the validation columns (val_accuracy, val_without_{modality}): "
                     f"the test split is kept for the final report")
            if method == max(swapped, key=swapped.get):
                fail(f"on {what}, {name} chose {method!r}: the weights look swapped; a sample "
                     f"has its {modality} with probability 1 - p_missing = {1 - p:g}")
            fail(f"on {what}, {name} chose {method!r} (expected accuracy {expected[method]:.3f}), "
                 f"but {best!r} has the highest expected accuracy, {expected[best]:.3f}")
        if not math.isclose(value, expected[method], abs_tol=1e-6):
            if math.isclose(value, tab[method]["val_accuracy"], abs_tol=1e-6):
                fail(f"on {what}, {name} returned {value:.4f}, the accuracy with every modality; "
                     f"return the EXPECTED accuracy {expected[method]:.4f}")
            if math.isclose(value, _expected(tab, modality, p, "test")[method], abs_tol=1e-6):
                fail(f"on {what}, {name} computed the expected accuracy {value:.4f} from the TEST "
                     f"columns; use the validation columns (val_accuracy, val_without_{modality}): "
                     f"the test split is kept for the final report")
            if math.isclose(value, _expected(tab, modality, 1 - p)[method], abs_tol=1e-6):
                fail(f"on {what}, {name} returned {value:.4f}: the weights look swapped; a sample "
                     f"has its {modality} with probability 1 - p_missing = {1 - p:g}")
            fail(f"on {what}, {name} returned the expected accuracy {value:.4f} for {method!r}, "
                 f"but (1 - p) * val_accuracy + p * val_without_{modality} = {expected[method]:.4f}")
        if mine is None:
            mine = (method, expected[method])
    return f"on your table: {mine[0]} with an expected accuracy of {mine[1]:.3f}"


# ------------------------------------------------------------------ 11.4 predict, then measure

_MODALITIES = ("image", "audio", "text")
_PREDICTION_KEYS = ("concat_val_accuracy", "most_harmful_missing")


@register("11.4", "prediction: concat's validation accuracy and the modality it misses most",
          hint="write, before section 5 trains the models, the mean validation accuracy you "
               "expect for concat fusion and the modality whose removal will cost it most; the "
               "encoders' accuracies of section 4 are your evidence. Any well-formed prediction "
               "passes: the results table, not the check, says whether you were right.")
def check_fusion_prediction(prediction) -> str:
    form = ("{'concat_val_accuracy': a number between 0 and 1, 'most_harmful_missing': one of "
            f"{list(_MODALITIES)}}}")
    if not isinstance(prediction, dict):
        fail(f"the prediction must be a dict {form}, got {describe(prediction)}")
    missing = [k for k in _PREDICTION_KEYS if k not in prediction]
    if missing:
        fail(f"the prediction has no entry {missing[0]!r}; it needs both entries of {form}")
    extra = [k for k in prediction if k not in _PREDICTION_KEYS]
    if extra:
        fail(f"the prediction has an unknown entry {extra[0]!r}; its entries are "
             f"{list(_PREDICTION_KEYS)}")
    accuracy = expect_number("prediction['concat_val_accuracy']", prediction["concat_val_accuracy"],
                             "a number between 0 and 1 (a mean accuracy)")
    if not 0 <= accuracy <= 1:
        fail(f"prediction['concat_val_accuracy'] is {accuracy:g}, but an accuracy is a share of "
             f"the samples, between 0 and 1 (write 0.5 for 50%)")
    modality = prediction["most_harmful_missing"]
    if not isinstance(modality, str):
        fail(f"prediction['most_harmful_missing'] must be a modality name, one of "
             f"{list(_MODALITIES)}, got {describe(modality)} ({type(modality).__name__})")
    if modality not in _MODALITIES:
        fail(f"prediction['most_harmful_missing'] is {modality!r}, which is not a modality here; "
             f"use one of {list(_MODALITIES)}")
    return (f"recorded (concat {accuracy:.2f}, most harmful to lose: {modality}); section 5 "
            f"measures both")
