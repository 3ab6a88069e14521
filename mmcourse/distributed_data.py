"""The data a data-parallel run trains on: frozen course features in a file, or a stand-in.

The layout, in memory and on disk (``torch.save``)::

    {"features": {m: float (N, D)}, "present": {m: bool (N,)}, "labels": int64 (N,)}

:func:`save_features` writes it from a :class:`~mmcourse.features.FeatureSplit`,
:func:`load_data` reads it back (or makes :func:`synthetic_data`), :func:`take` cuts the batch
dict of some rows and :func:`data_to` moves it to a device.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from mmcourse.checks import check_int

Data = dict[str, Any]   # {"features": {m: (N, D)}, "present": {m: bool (N,)}, "labels": (N,)}


def save_features(split: Any, path: str | os.PathLike) -> Path:
    """Write the pooled features of a :class:`~mmcourse.features.FeatureSplit` to ``path`` in
    the form ``--data`` reads: ``{"features": {m: float (N, D)}, "present": {m: bool (N,)},
    "labels": int64 (N,)}``. Returns the path."""
    path = Path(path)
    data = {"features": {m: x.detach().cpu().float().contiguous() for m, x in split.pooled.items()},
            "present": {m: p.detach().cpu().bool() for m, p in split.present.items()},
            "labels": split.labels.detach().cpu().long()}
    check_data(data)
    torch.save(data, path)
    return path


def synthetic_data(n: int = 2048, dims: Mapping[str, int] | None = None, num_classes: int = 8,
                   seed: int = 0) -> Data:
    """A seeded stand-in for course features: each class has a random mean per modality, each
    sample is its class mean plus Gaussian noise (N samples, ``dims`` features per modality,
    every modality present). Used by default and by the tests."""
    check_int(n, "n")
    check_int(num_classes, "num_classes", minimum=2)
    dims = dict(dims or {"image": 16, "audio": 16, "text": 16})
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(num_classes, (n,), generator=gen)
    features = {}
    for m, d in dims.items():
        means = torch.randn(num_classes, d, generator=gen)
        features[m] = means[labels] + 1.5 * torch.randn(n, d, generator=gen)
    present = {m: torch.ones(n, dtype=torch.bool) for m in dims}
    return {"features": features, "present": present, "labels": labels}


def check_data(data: Any) -> Data:
    """Raise a ValueError unless ``data`` has the layout of :func:`save_features`; return it."""
    if not isinstance(data, Mapping) or not {"features", "present", "labels"} <= set(data):
        keys = sorted(data) if isinstance(data, Mapping) else type(data).__name__
        raise ValueError(f"expected a dict with 'features', 'present' and 'labels', got {keys}")
    labels = data["labels"]
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or labels.is_floating_point():
        raise ValueError("data['labels'] must be an int64 tensor of shape (N,)")
    n = len(labels)
    for m, x in data["features"].items():
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or len(x) != n:
            raise ValueError(f"data['features'][{m!r}] must be a float tensor (N={n}, D), got "
                             f"{getattr(x, 'shape', type(x).__name__)}")
    for m, p in data["present"].items():
        if m not in data["features"] or not isinstance(p, torch.Tensor) or p.shape != (n,):
            raise ValueError(f"data['present'][{m!r}] must be a bool tensor of shape ({n},) for "
                             f"a modality of data['features']")
    return dict(data)


def load_data(source: str | os.PathLike, seed: int = 0) -> Data:
    """``"synthetic"`` (see :func:`synthetic_data`) or a file written by :func:`save_features`."""
    if str(source) == "synthetic":
        return synthetic_data(seed=seed)
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"--data {source!r}: no such file; give 'synthetic' or a file "
                                f"written by mmcourse.distributed.save_features")
    return check_data(torch.load(path, weights_only=True))


def take(data: Data, index: torch.Tensor) -> dict[str, Any]:
    """The batch dict ``{m: (B, D), "present": {m: (B,)}, "label": (B,)}`` of rows ``index``."""
    batch: dict[str, Any] = {m: x[index] for m, x in data["features"].items()}
    batch["present"] = {m: p[index] for m, p in data["present"].items()}
    batch["label"] = data["labels"][index]
    return batch


def data_to(data: Data, device: torch.device | str) -> Data:
    """A copy of ``data`` with every tensor on ``device``."""
    return {"features": {m: x.to(device) for m, x in data["features"].items()},
            "present": {m: p.to(device) for m, p in data["present"].items()},
            "labels": data["labels"].to(device)}
