"""Batching multimodal samples: the collate function for ``DataLoader(collate_fn=...)``.

``collate_multimodal`` (and ``make_collate`` for other padding values) turns a list of samples
as :class:`~mmcourse.data.dataset.MultimodalDataset` makes them into a batch: equal shapes are
stacked, variable-length sequences are zero-padded and come with their true lengths, strings
stay strings::

    {"image": (B, 3, H, W), "audio": (B, L), "audio_lengths": (B,), "text": [B strings],
     "label": (B,) int64, "present": {"image": (B,) bool, "audio": (B,) bool, "text": (B,) bool}}
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from mmcourse.checks import describe

#: Keys of a sample that are not modalities, so they cannot be used as modality names.
RESERVED_KEYS = ("label", "present")


class MultimodalCollate:
    """The collate function for ``DataLoader(collate_fn=...)``; build it with ``make_collate``.

    A class rather than a closure so that DataLoader workers can pickle it.
    """

    def __init__(
        self,
        pad_values: Mapping[str, float] | None = None,
        lengths_for: Iterable[str] = ("audio", "text"),
    ) -> None:
        self.pad_values = dict(pad_values or {})
        self.lengths_for = tuple(lengths_for)

    def __repr__(self) -> str:
        return f"MultimodalCollate(pad_values={self.pad_values}, lengths_for={self.lengths_for})"

    def __call__(self, batch: list[dict[str, Any]]) -> dict[str, Any]:
        if len(batch) == 0:
            raise ValueError("cannot collate an empty batch (got a list with 0 samples)")
        for position, sample in enumerate(batch):
            if not isinstance(sample, Mapping):
                raise TypeError(f"sample {position} of the batch is a {describe(sample)}, expected a dict")

        modalities = [key for key in batch[0] if key not in RESERVED_KEYS]
        expected = set(batch[0])
        for position, sample in enumerate(batch[1:], start=1):
            if set(sample) != expected:
                missing = sorted(expected - set(sample))
                extra = sorted(set(sample) - expected)
                raise ValueError(
                    f"sample {position} of the batch has different keys from sample 0: "
                    f"missing {missing}, extra {extra}"
                )

        out: dict[str, Any] = {}
        for name in modalities:
            values = [sample[name] for sample in batch]
            out[name], lengths = self._collate_modality(name, values)
            if lengths is not None:
                out[f"{name}_lengths"] = lengths

        if "label" in expected:
            out["label"] = torch.stack([torch.as_tensor(sample["label"]) for sample in batch]).to(torch.int64)
        if "present" in expected:
            present_names = list(batch[0]["present"])
            for position, sample in enumerate(batch):
                if set(sample["present"]) != set(present_names):
                    raise ValueError(
                        f"sample {position} of the batch has present flags for {sorted(sample['present'])}, "
                        f"sample 0 for {sorted(present_names)}"
                    )
            out["present"] = {
                name: torch.tensor([bool(sample["present"][name]) for sample in batch], dtype=torch.bool)
                for name in present_names
            }
        return out

    def _collate_modality(self, name: str, values: list) -> tuple[Any, torch.Tensor | None]:
        """Stack, pad or list one modality; returns (batched values, lengths or None)."""
        values = [
            torch.as_tensor(v) if isinstance(v, (np.ndarray, int, float)) and not isinstance(v, bool) else v
            for v in values
        ]
        kinds = [type(v).__name__ if not isinstance(v, torch.Tensor) else "Tensor" for v in values]
        if len(set(kinds)) > 1:
            raise TypeError(
                f"modality {name!r} mixes types in one batch: "
                + ", ".join(f"sample {i}: {k}" for i, k in enumerate(kinds))
            )
        if kinds[0] == "str":
            return list(values), None
        if kinds[0] != "Tensor":
            raise TypeError(f"modality {name!r}: cannot batch items of type {kinds[0]}, expected tensors or str")

        dtypes = {v.dtype for v in values}
        if len(dtypes) > 1:
            raise TypeError(f"modality {name!r} mixes dtypes in one batch: {sorted(map(str, dtypes))}")
        shapes = [tuple(v.shape) for v in values]
        if len(set(shapes)) == 1:
            stacked = torch.stack(values)
            if name in self.lengths_for and values[0].dim() >= 1:
                return stacked, torch.full((len(values),), shapes[0][0], dtype=torch.int64)
            return stacked, None

        # Shapes differ: only the first dimension (time / tokens) may vary.
        if len({len(s) for s in shapes}) > 1 or len(shapes[0]) == 0:
            raise ValueError(
                f"modality {name!r}: items have different numbers of dimensions, got shapes "
                f"{sorted(set(shapes))}"
            )
        trailing = {s[1:] for s in shapes}
        if len(trailing) > 1:
            raise ValueError(
                f"modality {name!r}: only the first dimension may differ between samples, but the "
                f"trailing dimensions disagree: {sorted(trailing)} (shapes {sorted(set(shapes))})"
            )
        lengths = torch.tensor([s[0] for s in shapes], dtype=torch.int64)
        pad_value = self.pad_values.get(name, 0)
        padded = values[0].new_full((len(values), int(lengths.max()), *shapes[0][1:]), pad_value)
        for row, value in enumerate(values):
            padded[row, : value.shape[0]] = value
        return padded, lengths


def make_collate(
    pad_values: Mapping[str, float] | None = None,
    lengths_for: Iterable[str] = ("audio", "text"),
) -> MultimodalCollate:
    """Build a collate function for ``DataLoader(collate_fn=...)`` that batches multimodal samples.

    For each modality of the samples:

    * tensors of identical shape are stacked into ``(B, ...)``;
    * tensors whose first dimension varies (waveforms ``(T,)``, token ids ``(T,)``, feature
      sequences ``(T, D)``) are padded to the longest with ``pad_values.get(name, 0)``, and
      ``batch[f"{name}_lengths"]`` holds the true lengths (int64, shape ``(B,)``);
    * strings stay a list of str.

    ``label`` becomes an int64 tensor ``(B,)`` and ``present`` a dict of bool tensors ``(B,)``.

    Args:
        pad_values: padding value per modality, e.g. ``{"text": tokenizer.pad_token_id}``;
            modalities not named are padded with 0.
        lengths_for: modalities that always get ``{name}_lengths``, even when a batch happens to
            have equal lengths, so the batch keys do not depend on luck. Any other modality gets
            it only when its lengths vary within the batch.

    Returns:
        A picklable callable ``list[dict] -> dict``.

    Example::

        >>> collate = make_collate(pad_values={"text": 1})
        >>> batch = collate([
        ...     {"text": torch.tensor([5, 6, 7]), "label": torch.tensor(0), "present": {"text": True}},
        ...     {"text": torch.tensor([8]), "label": torch.tensor(1), "present": {"text": True}},
        ... ])
        >>> batch["text"].tolist(), batch["text_lengths"].tolist()
        ([[5, 6, 7], [8, 1, 1]], [3, 1])
    """
    return MultimodalCollate(pad_values=pad_values, lengths_for=lengths_for)


def collate_multimodal(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Collate a list of multimodal samples, padding with 0; see ``make_collate`` for the rules.

    Example (``dataset`` being a ``MultimodalDataset``)::

        loader = torch.utils.data.DataLoader(dataset, batch_size=32, collate_fn=collate_multimodal)
    """
    return _DEFAULT_COLLATE(batch)


_DEFAULT_COLLATE = MultimodalCollate()
