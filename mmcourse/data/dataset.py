"""A Dataset for samples made of several modalities, and the collate function that batches them.

A multimodal sample is a dictionary::

    {"image": tensor (3, 32, 32), "audio": tensor (T,), "text": "a red seven",
     "label": tensor(7), "present": {"image": True, "audio": True, "text": False}}

``present`` says which modalities were really observed. A missing modality still has content
(zeros, an empty string...) so that every sample has the same keys and batches stay regular;
models read ``present`` to know what to ignore.

``MultimodalDataset`` builds such samples from one container per modality, and
``collate_multimodal`` (in :mod:`mmcourse.data.collate`, importable from here too) turns a list
of them into a batch: equal shapes are stacked, variable-length sequences are zero-padded and
come with their true lengths, strings stay strings.

Example::

    >>> import torch
    >>> ds = MultimodalDataset(
    ...     {"image": torch.zeros(2, 3, 8, 8), "audio": [torch.ones(5), torch.ones(3)]},
    ...     labels=[0, 1],
    ...     present={"audio": [True, False]},
    ... )
    >>> batch = collate_multimodal([ds[0], ds[1]])
    >>> batch["image"].shape, batch["audio"].shape, batch["audio_lengths"].tolist()
    (torch.Size([2, 3, 8, 8]), torch.Size([2, 5]), [5, 3])
    >>> batch["present"]["audio"].tolist()
    [True, False]
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mmcourse.checks import describe
# Batching lives in collate.py; notebooks import collate_multimodal from here, with the dataset.
from mmcourse.data.collate import RESERVED_KEYS, collate_multimodal  # noqa: F401


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------

def _numpy_to_tensor(array: np.ndarray) -> torch.Tensor:
    """``torch.from_numpy`` that also accepts read-only arrays (it copies those)."""
    if not array.flags.writeable:
        array = array.copy()
    return torch.from_numpy(np.ascontiguousarray(array))


def _is_text_array(array: np.ndarray) -> bool:
    """True for numpy arrays of strings or Python objects (which torch cannot hold)."""
    return array.dtype.kind in ("U", "S", "O")


def _to_item(value: Any, modality: str, index: int) -> torch.Tensor | str:
    """Turn one per-sample item into a tensor or a str.

    Accepted: ``torch.Tensor`` (kept), ``np.ndarray`` (-> tensor, dtype kept), ``str`` (kept),
    a Python/NumPy number (-> 0-d tensor) and a list/tuple of numbers such as token ids
    (-> 1-D tensor, int64 for ints, float32 for floats).
    """
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, str):
        return str(value)  # also turns numpy's np.str_ into a plain str
    if isinstance(value, np.ndarray) and not _is_text_array(value):
        return _numpy_to_tensor(value)
    if isinstance(value, (bool, int, float, np.number, np.bool_)):
        return torch.tensor(value)
    if isinstance(value, (list, tuple)):
        try:
            return torch.tensor(value)
        except (TypeError, ValueError, RuntimeError):
            pass
    raise TypeError(
        f"modality {modality!r}, sample {index}: expected a tensor, a numpy array, a str or a "
        f"list of numbers, got {describe(value)}"
    )


def _check_modality_name(name: Any) -> None:
    if not isinstance(name, str) or not name:
        raise TypeError(f"modality names must be non-empty strings, got {name!r}")
    if name in RESERVED_KEYS:
        raise ValueError(
            f"{name!r} cannot be a modality name: the keys {RESERVED_KEYS} are reserved for the "
            f"label and the presence mask of each sample"
        )


# --------------------------------------------------------------------------------------------
# The Dataset
# --------------------------------------------------------------------------------------------

class MultimodalDataset(Dataset):
    """Samples made of several modalities, a label, and a mask of which modalities are present.

    Args:
        data: one entry per modality, ``{name: container}``. A container is either

            * a stacked tensor or numpy array whose first dimension is the sample, e.g. images
              ``(N, 3, 32, 32)``; numpy arrays become tensors with the same dtype (uint8 images
              stay uint8, turn them into floats with a transform), or
            * a sequence with one item per sample: 1-D waveforms of different lengths (tensors or
              arrays), strings, or token-id tensors/lists of different lengths.

            Any modality name works (``"video"``, ``"tabular"``...), except ``"label"`` and
            ``"present"``. The course's own three are
            ``mmcourse.data.course.MODALITY_NAMES``.
        labels: N integer class labels (list, numpy array or tensor), 0, 1, 2...
            Use ``mmcourse.data.adapters.encode_labels`` to turn string labels into integers.
        present: optional ``{name: N booleans}``; ``False`` marks the modality as missing for
            that sample. Modalities left out are present in every sample.
        transforms: optional ``{name: callable}`` applied to that modality's item in
            ``__getitem__`` (also to missing ones, which still hold content). For DataLoader
            workers on macOS/Windows, which pickle the dataset, use functions defined at module
            level rather than lambdas.

    ``dataset[i]`` returns ``{name: item for each modality, "label": int64 scalar tensor,
    "present": {name: bool for each modality}}``.

    Example::

        >>> ds = MultimodalDataset(
        ...     {"image": np.zeros((4, 3, 8, 8), dtype=np.uint8), "text": ["a", "b", "c", "d"]},
        ...     labels=[0, 1, 1, 0],
        ...     transforms={"image": lambda x: x.float() / 255},
        ... )
        >>> sample = ds[1]
        >>> sample["image"].dtype, sample["text"], sample["label"], sample["present"]
        (torch.float32, 'b', tensor(1), {'image': True, 'text': True})
        >>> ds.modalities, ds.num_classes, len(ds)
        (('image', 'text'), 2, 4)
    """

    def __init__(
        self,
        data: Mapping[str, Sequence | torch.Tensor | np.ndarray],
        labels: Sequence[int] | np.ndarray | torch.Tensor,
        present: Mapping[str, Sequence[bool] | np.ndarray | torch.Tensor] | None = None,
        transforms: Mapping[str, Callable] | None = None,
    ) -> None:
        if not isinstance(data, Mapping):
            raise TypeError(f"data must be a mapping {{modality name: samples}}, got {describe(data)}")
        if len(data) == 0:
            raise ValueError(
                "data is empty: expected at least one modality, e.g. {'image': images, 'audio': waveforms}"
            )
        self._data: dict[str, torch.Tensor | list] = {}
        for name, container in data.items():
            _check_modality_name(name)
            self._data[name] = self._convert_container(name, container)

        self.labels = self._convert_labels(labels)

        # Every modality and the labels must agree on the number of samples.
        sizes = {name: len(container) for name, container in self._data.items()}
        sizes_text = ", ".join(f"{name}: {size}" for name, size in sizes.items())
        if len(set(sizes.values()) | {len(self.labels)}) > 1:
            raise ValueError(
                "all modalities and the labels must have the same number of samples, got "
                f"{sizes_text}, labels: {len(self.labels)}"
            )
        if len(self.labels) == 0:
            raise ValueError(f"the dataset has zero samples ({sizes_text}, labels: 0)")

        self.present = self._convert_present(present)
        self.transforms = self._check_transforms(transforms)

    # -- construction helpers -----------------------------------------------------------------

    @staticmethod
    def _convert_container(name: str, container: Any) -> torch.Tensor | list:
        """A stacked tensor (first dim = samples) or a list of per-sample tensors / strs."""
        if isinstance(container, np.ndarray) and not _is_text_array(container):
            container = _numpy_to_tensor(container)
        if isinstance(container, torch.Tensor):
            if container.dim() == 0:
                raise ValueError(
                    f"modality {name!r}: expected a tensor whose first dimension is the sample, "
                    f"got a 0-d tensor"
                )
            return container
        if isinstance(container, (str, bytes, Mapping)) or not isinstance(container, Iterable):
            raise TypeError(
                f"modality {name!r}: expected a tensor, a numpy array or a sequence with one item "
                f"per sample (e.g. a list of waveforms or of strings), got {describe(container)}"
            )
        items = [_to_item(value, name, i) for i, value in enumerate(container)]
        kinds = {"str" if isinstance(item, str) else "tensor" for item in items}
        if len(kinds) > 1:
            first_str = next(i for i, item in enumerate(items) if isinstance(item, str))
            first_tensor = next(i for i, item in enumerate(items) if not isinstance(item, str))
            raise TypeError(
                f"modality {name!r} mixes strings and tensors (sample {first_str} is a str, "
                f"sample {first_tensor} is a tensor): one modality must hold one kind of item"
            )
        return items

    @staticmethod
    def _convert_labels(labels: Any) -> torch.Tensor:
        """Labels as an int64 tensor of shape (N,), checked to be non-negative integers."""
        if isinstance(labels, torch.Tensor):
            tensor = labels
        else:
            array = np.asarray(labels)
            if array.size == 0:
                array = array.astype(np.int64)  # an empty list: let the zero-samples check speak
            if array.dtype.kind not in "iu":
                hint = (
                    " (string labels: use mmcourse.data.adapters.encode_labels first)"
                    if array.dtype.kind in "USO" else ""
                )
                raise TypeError(f"labels must be integers, got dtype {array.dtype}{hint}")
            tensor = torch.from_numpy(array.astype(np.int64))
        if tensor.dtype == torch.bool or tensor.is_floating_point() or tensor.is_complex():
            raise TypeError(f"labels must be integers, got dtype {tensor.dtype}")
        if tensor.dim() != 1:
            raise ValueError(f"labels must be 1-D (one label per sample), got shape {tuple(tensor.shape)}")
        tensor = tensor.to(torch.int64)
        if len(tensor) and tensor.min() < 0:
            bad = tensor[tensor < 0].unique().tolist()
            raise ValueError(f"labels must be non-negative class indices 0, 1, 2..., got {bad}")
        return tensor

    def _convert_present(self, present: Mapping | None) -> dict[str, torch.Tensor]:
        """A boolean tensor (N,) per modality; modalities not given are all present."""
        n = len(self.labels)
        masks = {name: torch.ones(n, dtype=torch.bool) for name in self._data}
        if present is None:
            return masks
        if not isinstance(present, Mapping):
            raise TypeError(f"present must be a mapping {{modality: N booleans}}, got {describe(present)}")
        for name, mask in present.items():
            if name not in self._data:
                raise ValueError(
                    f"present names modality {name!r}, which is not in data (modalities: "
                    f"{list(self._data)})"
                )
            mask = mask if isinstance(mask, torch.Tensor) else torch.as_tensor(np.asarray(mask))
            if mask.dtype != torch.bool:
                raise TypeError(
                    f"present[{name!r}] must hold booleans (True = observed), got dtype {mask.dtype}"
                )
            if mask.shape != (n,):
                raise ValueError(
                    f"present[{name!r}] must have shape ({n},), one flag per sample, got "
                    f"{tuple(mask.shape)}"
                )
            masks[name] = mask.clone()
        return masks

    def _check_transforms(self, transforms: Mapping | None) -> dict[str, Callable]:
        if transforms is None:
            return {}
        if not isinstance(transforms, Mapping):
            raise TypeError(f"transforms must be a mapping {{modality: callable}}, got {describe(transforms)}")
        for name, transform in transforms.items():
            if name not in self._data:
                raise ValueError(
                    f"transforms names modality {name!r}, which is not in data (modalities: "
                    f"{list(self._data)})"
                )
            if not callable(transform):
                raise TypeError(f"transforms[{name!r}] must be callable, got {describe(transform)}")
        return dict(transforms)

    # -- the Dataset protocol -------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """The sample at ``index`` (negative indices count from the end), transforms applied."""
        if isinstance(index, torch.Tensor) and index.dim() == 0:
            index = index.item()
        if not isinstance(index, (int, np.integer)) or isinstance(index, (bool, np.bool_)):
            raise TypeError(f"index must be an integer, got {describe(index)}")
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} is out of range for a dataset of {n} samples (valid: 0..{n - 1})")
        index = int(index) % n

        sample: dict[str, Any] = {}
        for name, container in self._data.items():
            item = container[index]
            if isinstance(item, torch.Tensor):
                item = item.clone()  # a transform working in place must not change the dataset
            if name in self.transforms:
                item = self.transforms[name](item)
            sample[name] = item
        sample["label"] = self.labels[index].clone()
        sample["present"] = {name: bool(mask[index]) for name, mask in self.present.items()}
        return sample

    # -- conveniences ---------------------------------------------------------------------------

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modality names, in the order they were given."""
        return tuple(self._data)

    @property
    def num_classes(self) -> int:
        """Number of classes: the largest label + 1."""
        return int(self.labels.max()) + 1

    def subset(self, modalities: str | Iterable[str]) -> MultimodalDataset:
        """A dataset with only some modalities (same samples, labels, masks and transforms).

        Handy for unimodal baselines: ``ds.subset("image")`` or ``ds.subset(["image", "text"])``.
        The data is shared, not copied.
        """
        names = (modalities,) if isinstance(modalities, str) else tuple(modalities)
        if not names:
            raise ValueError(f"subset needs at least one modality, choose from {list(self.modalities)}")
        unknown = [name for name in names if name not in self._data]
        if unknown:
            raise ValueError(f"subset: unknown modalities {unknown}, the dataset has {list(self.modalities)}")
        return MultimodalDataset(
            data={name: self._data[name] for name in names},
            labels=self.labels,
            present={name: self.present[name] for name in names},
            transforms={name: t for name, t in self.transforms.items() if name in names},
        )

    def __repr__(self) -> str:
        lines = [f"MultimodalDataset({len(self)} samples, {self.num_classes} classes"]
        for name, container in self._data.items():
            if isinstance(container, torch.Tensor):
                content = f"tensor {tuple(container.shape)} {container.dtype}"
            elif isinstance(container[0], str):
                content = f"{len(container)} strings"
            else:
                lengths = [item.shape[0] if item.dim() else 1 for item in container]
                trailing = tuple(container[0].shape[1:])
                content = (
                    f"{len(container)} tensors, first dim {min(lengths)}..{max(lengths)}"
                    + (f", trailing dims {trailing}" if trailing else "")
                    + f", {container[0].dtype}"
                )
            missing = int((~self.present[name]).sum())
            extra = f", {missing} missing" if missing else ""
            transform = ", transformed" if name in self.transforms else ""
            lines.append(f"  {name}: {content}{extra}{transform}")
        return "\n".join(lines) + "\n)"
