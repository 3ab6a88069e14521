"""The tasks of notebook 10's multimodal LM: captions and questions about the course's objects,
their target answers, and how answers are scored.

    index, prompts, answers = make_examples(split.attributes)     # every sample, every task
    attribute_accuracy(captions, test.attributes)                  # per attribute and mean
    majority_accuracy(train.attributes, test.attributes)           # the chance level
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mmcourse.data.course import COLOURS, POSITIONS, SHAPES, SIZES

#: The prompts of the training tasks: a caption, and one question per attribute.
PROMPTS = {
    "caption": "describe the image .",
    "shape": "what shape is it ?",
    "colour": "what colour is the shape ?",
    "size": "how big is the shape ?",
    "position": "where is the shape ?",
}
ATTRIBUTE_VALUES = {"shape": SHAPES, "colour": tuple(COLOURS), "size": SIZES,
                    "position": POSITIONS}


def answer(attributes: Sequence[int] | np.ndarray, task: str) -> str:
    """The target text of ``task`` for one sample's attributes (shape, colour, size, position):
    the canonical caption ("large blue star top left") or one attribute's name."""
    s, c, z, p = (int(a) for a in attributes)
    words = {"shape": SHAPES[s], "colour": list(COLOURS)[c], "size": SIZES[z],
             "position": POSITIONS[p]}
    if task == "caption":
        return f"{words['size']} {words['colour']} {words['shape']} {words['position']}"
    if task not in words:
        raise ValueError(f"unknown task {task!r}; expected one of {list(PROMPTS)}")
    return words[task]


def make_examples(attributes: np.ndarray, tasks: Sequence[str] = tuple(PROMPTS)
                  ) -> tuple[np.ndarray, list[str], list[str]]:
    """Every sample with every task: (sample index (M,), prompts, answers), M = N * len(tasks)."""
    index, prompts, answers = [], [], []
    for task in tasks:
        if task not in PROMPTS:
            raise ValueError(f"unknown task {task!r}; expected one of {list(PROMPTS)}")
        for i, attrs in enumerate(attributes):
            index.append(i)
            prompts.append(PROMPTS[task])
            answers.append(answer(attrs, task))
    return np.asarray(index), prompts, answers


def parse_caption(text: str) -> dict[str, int]:
    """The attribute indices a caption names (-1 where it names none or several values)."""
    words = f" {text.lower()} "
    out = {}
    for attr, values in ATTRIBUTE_VALUES.items():
        found = [i for i, v in enumerate(values) if f" {v} " in words]
        out[attr] = found[0] if len(found) == 1 else -1
    return out


def attribute_accuracy(captions: Sequence[str], attributes: np.ndarray) -> dict[str, float]:
    """Share of test samples whose caption names the right value, per attribute, and their mean."""
    attributes = np.asarray(attributes)
    if len(captions) != len(attributes):
        raise ValueError(f"got {len(captions)} captions for {len(attributes)} samples")
    parsed = [parse_caption(c) for c in captions]
    out = {a: float(np.mean([p[a] == int(row[k]) for p, row in zip(parsed, attributes)]))
           for k, a in enumerate(ATTRIBUTE_VALUES)}
    out["mean"] = float(np.mean(list(out.values())))
    return out


def majority_accuracy(train_attributes: np.ndarray, test_attributes: np.ndarray
                      ) -> dict[str, float]:
    """Accuracy of always naming the most frequent training value of each attribute (chance)."""
    out = {}
    for k, a in enumerate(ATTRIBUTE_VALUES):
        values, counts = np.unique(np.asarray(train_attributes)[:, k], return_counts=True)
        out[a] = float(np.mean(np.asarray(test_attributes)[:, k] == values[counts.argmax()]))
    out["mean"] = float(np.mean(list(out.values())))
    return out


def qa_accuracy(answers: Sequence[str], attributes: np.ndarray, task: str) -> float:
    """Share of answers to ``task``'s question that equal the right value exactly."""
    want = [answer(a, task) for a in attributes]
    return float(np.mean([g.strip() == w for g, w in zip(answers, want)]))
