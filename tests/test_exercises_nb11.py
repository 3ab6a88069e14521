"""The checks of notebook 11's exercises pass the solutions and reject plausible wrong answers."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mmcourse.exercises import ExerciseFailed, NotSolved, check


def _fails(exercise_id: str, answer, match: str, **kwargs) -> str:
    with pytest.raises(ExerciseFailed, match=match) as info:
        check(exercise_id, answer, **kwargs)
    assert f"Exercise {exercise_id} failed" in str(info.value)
    return str(info.value)


# ------------------------------------------------------------------ 11.1 stratified split

def stratified_split(labels, fractions=(0.6, 0.2, 0.2), seed=0):
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts = {"train": [], "val": [], "test": []}
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        a = round(fractions[0] * len(idx))
        b = round((fractions[0] + fractions[1]) * len(idx))
        parts["train"].append(idx[:a])
        parts["val"].append(idx[a:b])
        parts["test"].append(idx[b:])
    return {name: np.sort(np.concatenate(p)) for name, p in parts.items()}


def _independent_draws(labels, fractions=(0.6, 0.2, 0.2), seed=0):
    """Each split drawn on its own: the same sample can land in two splits (a leak)."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    return {s: rng.choice(n, size=round(f * n), replace=False)
            for s, f in zip(("train", "val", "test"), fractions)}


def _not_stratified(labels, fractions=(0.6, 0.2, 0.2), seed=0):
    idx = np.random.default_rng(seed).permutation(len(labels))
    a, b = round(fractions[0] * len(idx)), round((fractions[0] + fractions[1]) * len(idx))
    return {"train": idx[:a], "val": idx[a:b], "test": idx[b:]}


def _floors(labels, fractions=(0.6, 0.2, 0.2), seed=0):
    """Each piece rounded down on its own: some samples end up in no split."""
    rng = np.random.default_rng(seed)
    parts = {"train": [], "val": [], "test": []}
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(np.asarray(labels) == c))
        sizes = [int(f * len(idx)) for f in fractions]
        parts["train"].append(idx[:sizes[0]])
        parts["val"].append(idx[sizes[0]:sizes[0] + sizes[1]])
        parts["test"].append(idx[sizes[0] + sizes[1]:sizes[0] + sizes[1] + sizes[2]])
    return {k: np.concatenate(v) for k, v in parts.items()}


def _unseeded(labels, fractions=(0.6, 0.2, 0.2), seed=0):
    return stratified_split(labels, fractions, seed=int(np.random.randint(0, 10**6)))


def test_11_1_passes_and_rejects():
    assert check("11.1", stratified_split).passed
    # lists of ints or tensors are fine too
    assert check("11.1", lambda y, fractions=(0.6, 0.2, 0.2), seed=0: {
        k: torch.from_numpy(v) for k, v in stratified_split(y, fractions, seed).items()}).passed
    _fails("11.1", _independent_draws, "leak")
    _fails("11.1", _not_stratified, "not stratified")
    _fails("11.1", _floors, "in none")
    _fails("11.1", _unseeded, "different splits")
    _fails("11.1", lambda y, fractions=(0.6, 0.2, 0.2), seed=0: stratified_split(y, fractions, 0),
           "seed is ignored")
    _fails("11.1", lambda y, fractions=(0.6, 0.2, 0.2), seed=0: {
        k: np.isin(np.arange(len(y)), v) for k, v in stratified_split(y, fractions, seed).items()},
        "boolean mask")
    _fails("11.1", lambda y, fractions=(0.6, 0.2, 0.2), seed=0: list(stratified_split(y).values()),
           "a dict")

    def with_replacement(labels, fractions=(0.6, 0.2, 0.2), seed=0):
        out = stratified_split(labels, fractions, seed)
        out["train"] = np.concatenate([out["train"], out["train"][:3]])
        return out
    _fails("11.1", with_replacement, "more than once")


def test_11_1_refuses_scikit_learns_split():
    """Section 3 splits with scikit-learn's train_test_split; wrapping it is refused."""
    from sklearn.model_selection import train_test_split

    def wrapped(labels, fractions=(0.6, 0.2, 0.2), seed=0):
        labels = np.asarray(labels)
        index = np.arange(len(labels))
        train, rest = train_test_split(index, train_size=fractions[0], stratify=labels,
                                       random_state=seed)
        val, test = train_test_split(rest, train_size=fractions[1] / (fractions[1] + fractions[2]),
                                     stratify=labels[rest], random_state=seed)
        return {"train": train, "val": val, "test": test}
    _fails("11.1", wrapped, "calls the library's sklearn.model_selection.train_test_split")


def test_11_1_not_solved_passes_through():
    def stub(labels, fractions=(0.6, 0.2, 0.2), seed=0):
        raise NotSolved("11.1")
    with pytest.raises(NotSolved):
        check("11.1", stub)


# ------------------------------------------------------------------ 11.2 per-class report

def per_class_report(confusion, classes):
    cm = torch.as_tensor(confusion).double()
    correct, support, predicted = cm.diag(), cm.sum(1), cm.sum(0)
    recall = torch.where(support > 0, correct / support, 0.0)
    precision = torch.where(predicted > 0, correct / predicted, 0.0)
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {c: {"precision": float(precision[k]), "recall": float(recall[k]), "f1": float(f1[k]),
                "support": int(support[k])} for k, c in enumerate(classes)}


def _variant(swap=False, support_axis=1, nan=False, f1="harmonic", by_total=False):
    def report(confusion, classes):
        cm = torch.as_tensor(confusion).double()
        correct, rows, cols = cm.diag(), cm.sum(1), cm.sum(0)
        recall = correct / rows
        precision = correct / cols if nan else torch.where(cols > 0, correct / cols, 0.0)
        if by_total:
            recall = correct / cm.sum()
        if swap:
            recall, precision = precision, recall
        if f1 == "harmonic":
            score = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
        else:
            score = (precision + recall) / 2
        support = cm.sum(support_axis)
        return {c: {"precision": float(precision[k]), "recall": float(recall[k]),
                    "f1": float(score[k]), "support": int(support[k])} for k, c in enumerate(classes)}
    return report


def test_11_2_passes_and_rejects():
    assert check("11.2", per_class_report).passed
    _fails("11.2", _variant(swap=True), "swapped")
    _fails("11.2", _variant(support_axis=0), "PREDICTED")
    _fails("11.2", _variant(nan=True), "NaN")
    _fails("11.2", _variant(f1="mean"), "HARMONIC")
    _fails("11.2", _variant(by_total=True), "divided by all")

    def transposed(confusion, classes):        # rows read as predictions: owl's recall is 0 / 0
        out = per_class_report(confusion.T.contiguous(), classes)
        out["owl"]["recall"] = float("nan")
        return out
    _fails("11.2", transposed, "the recall of 'owl' is NaN: it was divided by owl's COLUMN sum")

    def supports_as_shares(confusion, classes):
        out = per_class_report(confusion, classes)
        total = sum(v["support"] for v in out.values())
        for v in out.values():
            v["support"] = v["support"] / total
        return out
    _fails("11.2", supports_as_shares, "add up to")
    _fails("11.2", lambda cm, classes: [per_class_report(cm, classes)[c] for c in classes], "one entry per class")
    _fails("11.2", lambda cm, classes: {c: {"precision": 1.0} for c in classes}, "keys")


# ------------------------------------------------------------------ 11.3 deployment choice

def deployment_choice(table, modality="audio", p_missing=0.3):
    expected = {m: (1 - p_missing) * r["val_accuracy"] + p_missing * r[f"val_without_{m_}"]
                for m, r in table.items() for m_ in [modality]}
    best = max(expected, key=expected.get)
    return best, expected[best]


def _table():
    def row(val, test, audio_val, audio_test, params):
        r = {"val_accuracy": val, "val_accuracy_std": 0.01, "test_accuracy": test,
             "test_accuracy_std": 0.01, "params": params}
        for m in ("image", "audio", "text"):
            r[f"val_without_{m}"], r[f"test_without_{m}"] = val - 0.02, test - 0.02
        r["val_without_audio"], r["test_without_audio"] = audio_val, audio_test
        return r
    return {"image": row(0.2, 0.18, 0.2, 0.18, 4680), "audio": row(0.65, 0.68, 0.14, 0.13, 4680),
            "concat": row(0.80, 0.81, 0.54, 0.53, 12872), "gated": row(0.79, 0.80, 0.60, 0.58, 25547)}


def test_11_3_passes_and_rejects():
    table = _table()
    result = check("11.3", deployment_choice, table=table)
    assert result.passed and "gated" in result.message
    _fails("11.3", lambda t, modality="audio", p_missing=0.3:
           (max(t, key=lambda k: t[k]["val_accuracy"]), max(r["val_accuracy"] for r in t.values())),
           "weigh in the accuracy without", table=table)

    def on_test(t, modality="audio", p_missing=0.3):
        e = {k: (1 - p_missing) * r["test_accuracy"] + p_missing * r[f"test_without_{modality}"]
             for k, r in t.items()}
        best = max(e, key=e.get)
        return best, e[best]
    _fails("11.3", on_test, "TEST columns", table=table)

    def swapped(t, modality="audio", p_missing=0.3):
        return deployment_choice(t, modality, 1 - p_missing)
    _fails("11.3", swapped, "swapped", table=table)

    def hard_coded(t, modality="audio", p_missing=0.3):
        return "gated", (1 - p_missing) * t["gated"]["val_accuracy"] + p_missing * t["gated"]["val_without_audio"]
    _fails("11.3", hard_coded, "not a row|chose", table=table)

    def plain_value(t, modality="audio", p_missing=0.3):
        best, _ = deployment_choice(t, modality, p_missing)
        return best, t[best]["val_accuracy"]
    _fails("11.3", plain_value, "EXPECTED accuracy", table=table)
    _fails("11.3", lambda t, modality="audio", p_missing=0.3: "gated", "pair", table=table)
    _fails("11.3", lambda t, modality="audio", p_missing=0.3: ("svm", 0.9), "not a row", table=table)
    _fails("11.3", deployment_choice, "table=results")


def test_11_3_rejections_name_the_learners_table_when_it_fails_there():
    message = _fails("11.3", lambda t, modality="audio", p_missing=0.3:
                     (max(t, key=lambda k: t[k]["val_accuracy"]), 0.0), "your results table",
                     table=_table())
    assert "concat" in message and "gated" in message


# ------------------------------------------------------------------ 11.4 prediction

def test_11_4_records_any_well_formed_prediction():
    result = check("11.4", {"concat_val_accuracy": 0.75, "most_harmful_missing": "audio"})
    assert result.passed and "concat 0.75, most harmful to lose: audio" in result.message
    assert check("11.4", {"concat_val_accuracy": 1, "most_harmful_missing": "image"}).passed
    assert check("11.4", {"concat_val_accuracy": np.float32(0.5),
                          "most_harmful_missing": "text"}).passed


@pytest.mark.parametrize("prediction, match", [
    (("audio", 0.75), "must be a dict"),
    ({"concat_val_accuracy": 0.75}, "no entry 'most_harmful_missing'"),
    ({"most_harmful_missing": "audio"}, "no entry 'concat_val_accuracy'"),
    ({"concat_val_accuracy": 0.75, "most_harmful_missing": "audio", "gated": 0.8},
     "unknown entry 'gated'"),
    ({"concat_val_accuracy": "high", "most_harmful_missing": "audio"},
     r"'high' \(str\) but a number between 0 and 1"),
    ({"concat_val_accuracy": 75, "most_harmful_missing": "audio"}, "is 75, but an accuracy"),
    ({"concat_val_accuracy": -0.2, "most_harmful_missing": "audio"}, "is -0.2, but an accuracy"),
    ({"concat_val_accuracy": 0.75, "most_harmful_missing": 1}, r"modality name, .* got 1 \(int\)"),
    ({"concat_val_accuracy": 0.75, "most_harmful_missing": "sound"},
     "'sound', which is not a modality here"),
])
def test_11_4_rejects_malformed_predictions(prediction, match):
    _fails("11.4", prediction, match)
