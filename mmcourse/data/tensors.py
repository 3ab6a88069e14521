"""Batches straight from tensors: a fast loader for data that already fits in memory.

Much of the course trains on data that is already a tensor per modality (images, features
extracted by a frozen encoder, padded token ids). A ``DataLoader`` that collates one sample at a
time is slow for that; :class:`TensorBatches` slices whole batches instead, on whatever device
the tensors live (keep them on the GPU and no batch is ever copied).

    loader = TensorBatches({"image": x_img, "text": (tokens, positions)}, labels,
                           present={"text": text_present}, batch_size=128, shuffle=True, seed=0)
    for batch in loader:          # {"image": ..., "text": (...), "label": ..., "present": {...}}
        ...

:func:`as_loader` accepts either such tensors or any ``Dataset`` of sample dicts.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from mmcourse.checks import check_int
from mmcourse.data.collate import RESERVED_KEYS, collate_multimodal


def _rows(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        if value.ndim == 0:
            raise ValueError("a 0-d tensor has no samples to batch")
        return value.shape[0]
    if isinstance(value, (tuple, list)) and value and all(isinstance(v, torch.Tensor) for v in value):
        counts = {v.shape[0] for v in value}
        if len(counts) > 1:
            raise ValueError(f"the tensors of a tuple must have the same number of rows, got "
                             f"{sorted(counts)}")
        return counts.pop()
    raise TypeError(f"expected a tensor or a tuple of tensors, got {type(value).__name__}")


def _take(value: Any, index: torch.Tensor) -> Any:
    if isinstance(value, torch.Tensor):
        return value[index]
    return type(value)(v[index] for v in value)


def num_batches(n: int, batch_size: int, drop_last: bool) -> int:
    """Batches of ``batch_size`` in ``n`` samples: the last, smaller one counts unless
    ``drop_last``."""
    full, rest = divmod(n, batch_size)
    return full + (1 if rest and not drop_last else 0)


def batch_indices(n: int, batch_size: int, shuffle: bool, generator: torch.Generator,
                  drop_last: bool) -> Iterator[torch.Tensor]:
    """One epoch of sample indices, a (batch_size,) int64 tensor per batch: a permutation
    drawn from ``generator`` if ``shuffle``, else 0..n-1 in order; the last, smaller batch
    is skipped if ``drop_last``. The same generator state gives the same batches, which is
    how :class:`TensorBatches` and a ``DataLoader`` sampler can visit the same samples."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        index = order[start:start + batch_size]
        if drop_last and len(index) < batch_size:
            break
        yield index


class TensorBatches:
    """Iterate over batch dicts sliced from tensors of N rows each.

    Args:
        data: modality name -> tensor (N, ...) or a tuple of tensors (N, ...) such as
            ``(features, positions)`` or ``(token_ids, lengths)``. A key ``"x_lengths"`` next to
            ``"x"`` is sliced along too.
        labels: (N,) int64 class labels, or None for unlabelled data.
        present: optional modality -> bool (N,), False where the modality is missing; batches
            then carry ``batch["present"]`` like the course's collate function makes it.
        batch_size: samples per batch (the last one may be smaller, unless ``drop_last``).
        shuffle: a new order every epoch, drawn from a generator seeded with ``seed``, so the
            sequence of epochs is the same on every run.

    ``len(loader)`` is the number of batches per epoch.
    """

    def __init__(self, data: Mapping[str, Any], labels: Any = None, *,
                 present: Mapping[str, Any] | None = None, batch_size: int = 128,
                 shuffle: bool = False, seed: int = 0, drop_last: bool = False):
        if not isinstance(data, Mapping) or not data:
            raise ValueError("data must be a non-empty dict of modality name -> tensor")
        bad = [k for k in data if k in RESERVED_KEYS]
        if bad:
            raise ValueError(f"{bad[0]!r} is reserved; pass labels and present separately")
        check_int(batch_size, "batch_size")
        rows = {k: _rows(v) for k, v in data.items()}
        self.data = dict(data)
        self.labels = None if labels is None else torch.as_tensor(labels)
        if self.labels is not None:
            if self.labels.ndim != 1 or self.labels.is_floating_point():
                raise ValueError(f"labels must be integer class indices of shape (N,), got shape "
                                 f"{tuple(self.labels.shape)} and dtype {self.labels.dtype}")
            rows["labels"] = len(self.labels)
        self.present = {}
        for m, p in (present or {}).items():
            if m not in self.data:
                raise ValueError(f"present names {m!r}, which is not in data {list(self.data)}")
            p = torch.as_tensor(p)
            if p.ndim != 1 or p.is_floating_point():
                raise ValueError(f"present[{m!r}] must be bool (N,), got shape {tuple(p.shape)} "
                                 f"and dtype {p.dtype}")
            self.present[m] = p.bool()
            rows[f"present[{m}]"] = len(p)
        if len(set(rows.values())) > 1:
            raise ValueError("every tensor needs the same number of rows (samples); got " +
                             ", ".join(f"{k} {n}" for k, n in rows.items()))
        self.n = next(iter(rows.values()))
        if self.n == 0:
            raise ValueError("the data has no samples")
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return num_batches(self.n, self.batch_size, self.drop_last)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for index in batch_indices(self.n, self.batch_size, self.shuffle, self.generator,
                                   self.drop_last):
            batch = {k: _take(v, index.to(_device(v))) for k, v in self.data.items()}
            if self.labels is not None:
                batch["label"] = self.labels[index.to(self.labels.device)]
            if self.present:
                batch["present"] = {m: p[index.to(p.device)] for m, p in self.present.items()}
            yield batch

    def to(self, device: str | torch.device) -> "TensorBatches":
        """Move every tensor to ``device`` (once); returns self."""
        move = lambda v: v.to(device) if isinstance(v, torch.Tensor) else type(v)(t.to(device) for t in v)  # noqa: E731
        self.data = {k: move(v) for k, v in self.data.items()}
        if self.labels is not None:
            self.labels = self.labels.to(device)
        self.present = {m: p.to(device) for m, p in self.present.items()}
        return self


def _device(value: Any) -> torch.device:
    return value.device if isinstance(value, torch.Tensor) else value[0].device


def as_loader(data: Mapping[str, Any] | Dataset, labels: Any = None, *,
              present: Mapping[str, Any] | None = None, batch_size: int = 128,
              shuffle: bool = False, seed: int = 0, collate_fn=None):
    """Batches of dicts from either tensors (see :class:`TensorBatches`) or a ``Dataset`` whose
    items are sample dicts (a ``DataLoader`` with the course's collate function, or
    ``collate_fn``; ``labels``/``present`` must then come from the dataset itself)."""
    if isinstance(data, Dataset):
        if labels is not None or present is not None:
            raise ValueError("with a Dataset, labels and present come from its samples; pass them "
                             "only with a dict of tensors")
        generator = torch.Generator().manual_seed(seed)
        return DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=generator,
                          collate_fn=collate_fn or collate_multimodal)
    return TensorBatches(data, labels, present=present, batch_size=batch_size, shuffle=shuffle,
                         seed=seed)
