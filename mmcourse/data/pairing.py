"""Labels shared across sources: class names -> indices, and pairing unpaired modalities.

* ``encode_labels``: labels (strings or numbers) -> integer class indices, in natural order.
* ``pair_modalities_by_label``: build multimodal samples from unpaired unimodal sources by
  pairing items that share a label (how AV-MNIST is made from MNIST + spoken digits).

    data, labels = pair_modalities_by_label(
        {"image": (images, digit_labels), "audio": (audio.waveforms, audio.labels)}, seed=0)
    labels, classes = encode_labels(labels)
    dataset = MultimodalDataset(data, labels)
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from mmcourse.checks import check_int


def natural_key(text: str) -> list:
    """Sort key that puts 'x_2' before 'x_10'."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text)]


def encode_labels(labels: Sequence[Any]) -> tuple[np.ndarray, list[str]]:
    """Map labels to class indices 0, 1, 2... in sorted order of their names.

    Labels are compared as strings (the integer 7 and the string "7" are one class), sorted
    with numbers in numeric order ("2" before "10").

    Args:
        labels: one label per sample, e.g. ``["cat", "dog", "cat"]`` or ``AudioFolder.labels``.

    Returns:
        ``(indices, classes)``: int64 array ``(N,)`` and the class names, with
        ``classes[indices[i]] == str(labels[i])``.

    Example::

        >>> indices, classes = encode_labels(["dog", "cat", "dog"])
        >>> indices.tolist(), classes
        ([1, 0, 1], ['cat', 'dog'])
    """
    names = [str(label) for label in labels]
    if not names:
        raise ValueError("encode_labels got no labels (an empty sequence)")
    classes = sorted(set(names), key=natural_key)
    index = {name: i for i, name in enumerate(classes)}
    return np.array([index[name] for name in names], dtype=np.int64), classes


def _take(items: Any, indices: np.ndarray) -> Any:
    """``items[indices]`` for arrays and tensors, a list for other sequences."""
    if isinstance(items, np.ndarray):
        return items[indices]
    if isinstance(items, torch.Tensor):
        return items[torch.from_numpy(indices)]
    return [items[int(i)] for i in indices]


def pair_modalities_by_label(
    sources: Mapping[str, tuple[Any, Sequence[Any]]],
    seed: int = 0,
    per_class: int | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Build multimodal samples from unpaired unimodal data by pairing items with the same label.

    Each sample combines one item of every modality that share a label: an image of a 7 with a
    recording of someone saying "seven". This is how AV-MNIST is built from MNIST and the Free
    Spoken Digit Dataset. The pairing is random but repeats with the same ``seed``; within a
    modality every item is used at most once. Labels are compared as strings, so the integer
    7 of ``digits_images`` pairs with the "7" of ``7_jackson_32.wav``.

    Args:
        sources: ``{modality: (items, labels)}``; items are a stacked array/tensor (first dim =
            sample) or a sequence, with one label each.
        seed: seeds which items are paired and the order of the samples (shuffled, so classes
            are mixed).
        per_class: samples to build per class; ``None`` uses as many as the rarest modality of
            each class allows.

    Returns:
        ``(data, labels)``: ``data[modality]`` has the chosen items in the same container type as
        given (array, tensor or list); ``labels`` are the shared labels as str. Turn them into
        class indices with ``encode_labels`` before ``MultimodalDataset``.

    Example::

        >>> data, labels = pair_modalities_by_label({
        ...     "image": (np.arange(6), [0, 0, 1, 1, 2, 2]),
        ...     "text": (["zero", "one", "two", "nought"], ["0", "1", "2", "0"]),
        ... }, per_class=1)
        >>> sorted(zip(labels, data["text"]))[1:]
        [('1', 'one'), ('2', 'two')]
    """
    if not isinstance(sources, Mapping) or not sources:
        raise ValueError("sources must be a non-empty mapping {modality: (items, labels)}")
    check_int(per_class, "per_class", allow_none=True)

    # Where each class sits in each modality.
    positions: dict[str, dict[str, list[int]]] = {}
    for name, source in sources.items():
        if not isinstance(source, (tuple, list)) or len(source) != 2:
            raise TypeError(f"sources[{name!r}] must be a pair (items, labels), got {type(source).__name__}")
        items, labels = source
        labels = labels.tolist() if isinstance(labels, (np.ndarray, torch.Tensor)) else list(labels)
        if len(items) != len(labels):
            raise ValueError(f"sources[{name!r}]: {len(items)} items but {len(labels)} labels")
        by_class: dict[str, list[int]] = {}
        for i, label in enumerate(labels):
            by_class.setdefault(str(label), []).append(i)
        positions[name] = by_class

    classes = sorted(set().union(*(set(by_class) for by_class in positions.values())), key=natural_key)
    if not classes:
        raise ValueError("sources hold no items")
    for cls in classes:
        lacking = [name for name in positions if cls not in positions[name]]
        if lacking:
            having = [name for name in positions if cls in positions[name]]
            raise ValueError(
                f"class {cls!r} is in {having} but absent from {lacking}: every class needs items "
                f"in every modality to be paired"
            )

    rng = np.random.default_rng(seed)
    chosen: dict[str, list[int]] = {name: [] for name in sources}
    sample_labels: list[str] = []
    for cls in classes:
        available = min(len(positions[name][cls]) for name in positions)
        count = available if per_class is None else per_class
        if count > available:
            counts = {name: len(positions[name][cls]) for name in positions}
            raise ValueError(
                f"per_class={per_class} but class {cls!r} has only {counts} items; "
                f"use per_class <= {available} or None"
            )
        for name in positions:
            picked = rng.permutation(positions[name][cls])[:count]
            chosen[name].extend(int(i) for i in picked)
        sample_labels.extend([cls] * count)

    order = rng.permutation(len(sample_labels))
    data = {
        name: _take(sources[name][0], np.asarray(chosen[name], dtype=np.int64)[order])
        for name in sources
    }
    return data, [sample_labels[i] for i in order]
