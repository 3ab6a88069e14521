"""Frozen unimodal features for fusion experiments (Part 2).

Part 2 compares fusion methods, so it keeps everything else fixed: one encoder per modality is
trained *alone* on the course data (image CNN, audio CNN on log-mels, bag-of-words text), then
frozen, and every split is turned into features once. Fusion models then train in seconds on
those features, every method on the same ones. (Part 3 trains encoders and fusion together.)

    feats = course_features(seed=0)                  # about a minute on a 2-core CPU, once
    feats.dims                                       # {"image": 64, "audio": 64, "text": 64}
    train = feats.loader("train", shuffle=True)      # batches of pooled features + present masks
    feats.unimodal_accuracy("test")                  # each frozen encoder's own head
    corrupted = feats.encode(make_course_dataset(..., quality_probs=...)["test"])

Every function is seeded: the same seed gives the same encoders and the same features.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmcourse.cache import entry_path, read_entry, source_files, write_entry
from mmcourse.classifier import UnimodalClassifier
from mmcourse.data.course import MODALITY_NAMES, CourseSplit, make_course_dataset
from mmcourse.data.tensors import TensorBatches
from mmcourse.device import get_device
from mmcourse.encoders.default import make_encoder
from mmcourse.encoders.tokenizer import tokenize, train_tokenizer
from mmcourse.reproducibility import seed_everything
from mmcourse.training import fit


@dataclass
class FeatureSplit:
    """Features of one split.

    Attributes:
        pooled: modality -> float (N, D).
        sequences: modality -> (float (N, T, D), bool (N, T) real positions).
        labels: int64 (N,); present: modality -> bool (N,); quality: int8 (N, 3) as in
        :class:`~mmcourse.data.course.CourseSplit`.
    """

    pooled: dict[str, torch.Tensor]
    sequences: dict[str, tuple[torch.Tensor, torch.Tensor]]
    labels: torch.Tensor
    present: dict[str, torch.Tensor]
    quality: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def loader(self, sequences: bool = False, batch_size: int = 128, shuffle: bool = False,
               seed: int = 0, modalities: tuple[str, ...] | None = None) -> TensorBatches:
        """Batches ``{m: features, "label": ..., "present": {...}}``; ``sequences=True`` gives
        the ``(features, positions, pooled)`` triples that attention fusions read: the sequence
        (N, T, D), its real positions (N, T) and the encoder's own pooled vector (N, D), which
        such a fusion uses wherever it needs one vector per modality (as concat reads it)."""
        modalities = tuple(modalities or self.pooled)
        unknown = [m for m in modalities if m not in self.pooled]
        if unknown:
            raise ValueError(f"unknown modality {unknown[0]!r}; expected some of {list(self.pooled)}")
        source = {m: (*self.sequences[m], self.pooled[m]) for m in modalities} if sequences \
            else self.pooled
        return TensorBatches({m: source[m] for m in modalities}, self.labels,
                             present={m: self.present[m] for m in modalities},
                             batch_size=batch_size, shuffle=shuffle, seed=seed)


def raw_tensors(split: CourseSplit, tokenizer, modalities=MODALITY_NAMES) -> dict[str, Any]:
    """A course split as model inputs: images float (N, 3, 32, 32) in [0, 1]; audio float
    (N, L) in [-1, 1] with ``audio_lengths``; text token ids (N, T) with ``text_lengths``."""
    data: dict[str, Any] = {}
    if "image" in modalities:
        data["image"] = torch.from_numpy(split.images).float() / 255.0
    if "audio" in modalities:
        data["audio"] = torch.from_numpy(split.audio.astype(np.float32) / 32768.0)
        data["audio_lengths"] = torch.from_numpy(split.audio_lengths)
    if "text" in modalities:
        data["text"], data["text_lengths"] = tokenize(tokenizer, split.texts)
    return data


def _batches(split: CourseSplit, tokenizer, modality: str, batch_size: int, shuffle: bool,
             seed: int) -> TensorBatches:
    raw = raw_tensors(split, tokenizer, (modality,))
    return TensorBatches(raw, torch.from_numpy(split.labels), batch_size=batch_size,
                         shuffle=shuffle, seed=seed)


@dataclass
class CourseFeatures:
    """Frozen encoders trained on the course data and the features they give.

    Attributes:
        splits: split name -> :class:`FeatureSplit` ("train", "val", "test").
        models: modality -> the trained :class:`~mmcourse.classifier.UnimodalClassifier` (its
            ``encoder`` is the frozen feature extractor, its ``head`` the unimodal baseline).
        tokenizer: the text tokenizer learned on the training texts.
        classes: class names; seed: the training seed.
    """

    splits: dict[str, FeatureSplit]
    models: dict[str, UnimodalClassifier]
    tokenizer: Any
    classes: tuple[str, ...]
    seed: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def dims(self) -> dict[str, int]:
        return {m: model.encoder.out_dim for m, model in self.models.items()}

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.models)

    def __getitem__(self, split: str) -> FeatureSplit:
        if split not in self.splits:
            raise KeyError(f"unknown split {split!r}; have {list(self.splits)}")
        return self.splits[split]

    def loader(self, split: str, **kwargs: Any) -> TensorBatches:
        """``self[split].loader(**kwargs)``."""
        return self[split].loader(**kwargs)

    @torch.no_grad()
    def encode(self, split: CourseSplit, batch_size: int = 500) -> FeatureSplit:
        """Features of any course split (for example a corrupted copy of the test split) through
        the frozen encoders."""
        pooled: dict[str, list] = {m: [] for m in self.models}
        seqs: dict[str, list] = {m: [] for m in self.models}
        for m, model in self.models.items():
            model.eval()
            for batch in _batches(split, self.tokenizer, m, batch_size, False, 0):
                x, lengths = batch[m].to(self.device), batch.get(f"{m}_lengths")
                kwargs = {} if lengths is None else {"lengths": lengths.to(self.device)}
                seq, pos = model.encoder.sequence(x, **kwargs)
                pooled[m].append(model.encoder(x, **kwargs).cpu())
                seqs[m].append((seq.cpu(), pos.cpu()))
        return FeatureSplit(
            pooled={m: torch.cat(v) for m, v in pooled.items()},
            sequences={m: _cat_padded(v) for m, v in seqs.items()},
            labels=torch.from_numpy(split.labels.copy()),
            present={m: torch.from_numpy(p.copy()) for m, p in split.present.items()
                     if m in self.models},
            quality=split.quality.copy())

    @torch.no_grad()
    def unimodal_accuracy(self, split: str | CourseSplit = "test") -> dict[str, float]:
        """Test accuracy of each frozen encoder with its own head: the unimodal baselines."""
        feats = self[split] if isinstance(split, str) else self.encode(split)
        out = {}
        for m, model in self.models.items():
            pred = model.head(feats.pooled[m].to(self.device)).argmax(1).cpu()
            out[m] = (pred == feats.labels).float().mean().item()
        return out


def _cat_padded(parts: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate (features, positions) batches whose T differs, padding with zeros / False."""
    t = max(seq.shape[1] for seq, _ in parts)
    seqs = [torch.nn.functional.pad(seq, (0, 0, 0, t - seq.shape[1])) for seq, _ in parts]
    pos = [torch.nn.functional.pad(p, (0, t - p.shape[1])) for _, p in parts]
    return torch.cat(seqs), torch.cat(pos)


#: Training epochs and learning rate of each encoder (chosen where validation accuracy levels
#: off on the small dataset; the epoch with the best validation accuracy is kept).
EPOCHS = {"image": 8, "audio": 4, "text": 4}
LEARNING_RATES = {"image": 3e-3, "audio": 3e-3, "text": 1e-2}


def course_features(seed: int = 0, size: str | Mapping[str, int] = "small", dim: int = 64,
                    epochs: Mapping[str, int] | None = None, data_seed: int = 0,
                    splits: Mapping[str, CourseSplit] | None = None,
                    device: str | torch.device | None = None,
                    cache: bool | str | os.PathLike = True) -> CourseFeatures:
    """Train one encoder per modality on the course data, freeze them, extract features.

    Args:
        seed: training seed (initial weights and batch order).
        size, data_seed: which course dataset (see :func:`make_course_dataset`), unless
            ``splits`` are given (a dict with at least "train" and "val").
        dim: features per modality.
        epochs: training epochs per modality (default :data:`EPOCHS`); the epoch with the best
            validation accuracy is kept.
        device: where to train (see :func:`mmcourse.get_device`).
        cache: keep the result on disk and reuse it next time (training takes about a minute on a
            2-core CPU; loading well under a second). True: in ``$MMCOURSE_CACHE`` or
            ``~/.cache/mmcourse``; a path: there; False: never. The cache key covers every
            argument, the library's source code and the torch version, so a stale entry is never
            used; given ``splits`` are never cached. On the CPU the encoders train with one
            thread, so that the features are the same whatever the machine's core count.
    """
    epochs = {**EPOCHS, **(epochs or {})}
    path = None
    if cache and splits is None:
        path = _cache_path(cache, dict(seed=seed, size=size, dim=dim, epochs=epochs,
                                       data_seed=data_seed, device=str(get_device(device))))
        cached = read_entry(path, lambda p: torch.load(p, weights_only=False),
                            valid=lambda value: isinstance(value, CourseFeatures))
        if cached is not None:
            return cached
    device = get_device(device)
    if splits is None:
        splits = make_course_dataset(seed=data_seed, size=size)
    missing = {"train", "val"} - set(splits)
    if missing:
        raise ValueError(f"splits needs 'train' and 'val', got {list(splits)}")
    train = splits["train"]
    tokenizer = train_tokenizer([t for t in train.texts if t])
    models = {}
    # On the CPU, train with one thread: the number of threads changes the order of floating-
    # point sums and so the last digits of the weights; with one thread, every machine (2 cores
    # or 64) gets the same features, and the course's printed numbers reproduce.
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        for m in MODALITY_NAMES:
            seed_everything(seed)
            model = UnimodalClassifier(make_encoder(m, dim, len(tokenizer)), m, len(train.classes))
            fit(model, _batches(train, tokenizer, m, 128, True, seed),
                _batches(splits["val"], tokenizer, m, 500, False, 0),
                epochs=epochs[m], lr=LEARNING_RATES[m], device=device, desc=f"{m} encoder")
            model.eval().requires_grad_(False)
            models[m] = model
        feats = CourseFeatures({}, models, tokenizer, tuple(train.classes), seed, device)
        feats.splits = {name: feats.encode(split) for name, split in splits.items()}
    finally:
        torch.set_num_threads(threads)
    if path is not None:
        write_entry(path, lambda tmp: torch.save(feats, tmp))
    return feats


def _cache_path(cache: bool | str | os.PathLike, args: dict) -> Path:
    return entry_path("features", cache, args, __file__, prefix=f"seed{args['seed']}",
                      suffix=".pt", versions=(torch.__version__,))


def _source_files() -> list[Path]:
    """features.py and every mmcourse module it imports, directly or through other modules: the
    code that shapes the frozen features (see :func:`mmcourse.cache.source_files`)."""
    return source_files(__file__)
