"""The joint model of Part 3 and its data: everything trained together, from raw course data.

Notebook 07 trains the encoders *and* the fusion end to end, from images, waveforms and texts.

* :func:`build_model` is the course's default end-to-end classifier: ImageCNN (16-32-64
  channels), a CNN over log-mel spectrograms (:class:`LogMelCNN`, AudioCNN's layers), a
  bag-of-words text encoder, 64 features each, concat fusion, a linear head.
* Its data comes two ways, with the same batch dicts (log-mels frames first, padded with
  :data:`MEL_PAD`): :class:`NaiveCourseDataset` preprocesses one sample at a time in
  ``__getitem__`` (with :func:`collate_padded`), :func:`prepare_split` preprocesses a whole
  split once, in batches (:class:`PreparedSplit`, indexed by :class:`PreparedDataset`).
  :class:`SeededBatchSampler` batches either in the same seeded order as ``TensorBatches``.
* :class:`SpeedData` holds the course splits, the tokenizer and each split prepared once.

How fast the model trains on each kind of input pipeline is :mod:`mmcourse.speed`.

    data = SpeedData.make(seed=0)                          # course data + tokenizer, once
    model = build_model(data.vocab_size, num_classes=8)
    prepared = data.prepare("train")                       # tensors with N rows each
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset, Sampler

from mmcourse.classifier import MultimodalClassifier
from mmcourse.data.course import CourseSplit, make_course_dataset
from mmcourse.data.tensors import batch_indices, num_batches
from mmcourse.encoders.audio import AudioCNN, LogMel
from mmcourse.encoders.default import make_encoder
from mmcourse.encoders.masks import lengths_to_mask
from mmcourse.encoders.tokenizer import tokenize, train_tokenizer
from mmcourse.fusion import FUSION_METHODS, make_fusion

N_MELS = 40
MEL_EPS = 1e-4
#: The value of a log-mel frame of silence: padding frames hold it, whichever pipeline made them.
MEL_PAD = math.log(MEL_EPS)


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------

class LogMelCNN(AudioCNN):
    """:class:`~mmcourse.encoders.audio.AudioCNN` reading log-mel spectrograms made elsewhere.

    Input: log-mels (B, T, n_mels) float, frames first (so a collate function can pad the time
    axis), padded with :data:`MEL_PAD`; ``lengths`` (B,) int: the frames that belong to each clip
    (None: all T). Output: (B, out_dim); ``sequence`` gives (B, ceil(T / 16), out_dim) and a mask.
    Same layers, same maths as AudioCNN; only the spectrogram is computed before the model.
    """

    def _frames(self, spec, lengths, sample_rate=None):
        if not isinstance(spec, torch.Tensor) or spec.dim() != 3 or not spec.is_floating_point():
            got = (f"shape {tuple(spec.shape)}, dtype {spec.dtype}" if isinstance(spec, torch.Tensor)
                   else type(spec).__name__)
            raise ValueError(f"LogMelCNN expects float log-mels (B, T, {self.frontend.n_mels}), "
                             f"got {got}; a waveform batch (B, L) goes to AudioCNN instead")
        if spec.shape[-1] != self.frontend.n_mels:
            raise ValueError(f"LogMelCNN expects {self.frontend.n_mels} mel bands in the last "
                             f"dimension (B, T, n_mels), got shape {tuple(spec.shape)}")
        frames = spec.shape[1]
        if lengths is None:
            lengths = torch.full((spec.shape[0],), frames, dtype=torch.long, device=spec.device)
        x = self.norm(spec.transpose(1, 2).unsqueeze(1))  # (B, 1, n_mels, T)
        if self.spec_augment and self.training:
            x = self.time_mask(self.freq_mask(x))
        x = self.blocks(x)  # (B, C, n_mels / 16, T / 16)
        x = x.flatten(1, 2).transpose(1, 2)  # (B, T', C * mel')
        t_out = -(-lengths.long() // self.time_factor)
        return self.frame_proj(x), lengths_to_mask(t_out.clamp(max=x.shape[1]), x.shape[1])

    def forward(self, spec: torch.Tensor, lengths: torch.Tensor | None = None,
                sample_rate: int | None = None) -> torch.Tensor:
        """Log-mels (B, T, n_mels), lengths (B,) in frames -> (B, out_dim): AudioCNN's
        max over the clip's time steps."""
        return super().forward(spec, lengths, sample_rate)


def build_model(vocab_size: int, num_classes: int = 8, dim: int = 64,
                fusion: str = "concat") -> MultimodalClassifier:
    """The joint model: ImageCNN (16-32-64) + LogMelCNN + bag of words, ``dim`` features each,
    a fusion of ``mmcourse.fusion.FUSION_METHODS`` (``fusion``, concat by default) to ``dim`` and
    a linear head (a fusion that outputs class scores, such as late fusion, fuses to the classes).
    Reads ``image`` (B, 3, 32, 32), ``audio`` (B, T, 40) log-mels with ``audio_lengths``
    (frames), ``text`` ids (B, T) with ``text_lengths``. The encoders are built first, so the
    same seed gives the same encoders whatever the fusion."""
    encoders = {"image": make_encoder("image", dim),
                "audio": LogMelCNN(out_dim=dim, n_mels=N_MELS),
                "text": make_encoder("text", dim, vocab_size)}
    method = FUSION_METHODS.get(fusion)  # an unknown name: make_fusion says which exist
    out_dim = num_classes if method is not None and method.outputs_logits else dim
    fused = make_fusion(fusion, {m: dim for m in encoders}, out_dim)
    return MultimodalClassifier(encoders, fused, num_classes)


# --------------------------------------------------------------------------------------------
# Data: the course splits, per-sample (naive) or precomputed
# --------------------------------------------------------------------------------------------

class NaiveCourseDataset(Dataset):
    """Course samples preprocessed one at a time in ``__getitem__`` (the naive pipeline).

    ``dataset[i]`` -> ``{"image": float (3, 32, 32) in [0, 1], "audio": log-mel (T, 40),
    "audio_lengths": T_i, "text": ids (n_i,), "text_lengths": n_i, "label": int64,
    "present": {m: bool}}``; :func:`collate_padded` pads the texts.

    Every log-mel is padded with :data:`MEL_PAD` to the same ``T`` frames (default: the split's
    longest clip), as the batched pipeline pads them: the audio CNN's batch normalisation sees
    the padding too, so padding to each batch's longest clip instead would train a (slightly)
    different model, and give a compiled model a new shape every batch.
    """

    def __init__(self, split: CourseSplit, tokenizer, max_length: int = 32,
                 frames: int | None = None):
        self.split, self.tokenizer, self.max_length = split, tokenizer, max_length
        self.logmel = LogMel(sample_rate=split.sample_rate, n_mels=N_MELS, eps=MEL_EPS)
        self.frames = int(frames if frames is not None else
                          self.logmel.frame_lengths(torch.tensor(int(split.audio_lengths.max()))))
        self.present = {m: torch.from_numpy(v.copy()) for m, v in split.present.items()}

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> dict[str, Any]:
        s = self.split
        image = torch.from_numpy(s.images[i]).float() / 255.0
        wave = torch.from_numpy(s.waveform(i))
        with torch.no_grad():
            mel = self.logmel(wave[None])[0].T  # (T_i, n_mels)
        frames = mel.shape[0]
        mel = F.pad(mel, (0, 0, 0, self.frames - frames), value=MEL_PAD)  # (T, n_mels)
        ids = self.tokenizer(s.texts[i], truncation=True, max_length=self.max_length)["input_ids"]
        return {"image": image, "audio": mel, "audio_lengths": torch.tensor(frames),
                "text": torch.tensor(ids, dtype=torch.long), "text_lengths": torch.tensor(len(ids)),
                "label": torch.tensor(int(s.labels[i])),
                "present": {m: bool(p[i]) for m, p in self.present.items()}}


PAD_VALUES = {"audio": MEL_PAD, "text": 0}


def collate_padded(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack sample dicts into a batch; ``audio`` and ``text`` are padded along their first
    dimension (with :data:`MEL_PAD` and [PAD] = 0) when their lengths differ; ``present``
    becomes a dict of bool (B,)."""
    if not samples:
        raise ValueError("cannot collate an empty batch")
    batch: dict[str, Any] = {}
    for key in samples[0]:
        if key == "present":
            batch[key] = {m: torch.tensor([s[key][m] for s in samples], dtype=torch.bool)
                          for m in samples[0][key]}
            continue
        values = [s[key] for s in samples]
        if len({v.shape for v in values}) == 1:
            batch[key] = torch.stack(values)
        else:
            batch[key] = nn.utils.rnn.pad_sequence(values, batch_first=True,
                                                   padding_value=PAD_VALUES.get(key, 0))
    return batch


@dataclass
class PreparedSplit:
    """A split preprocessed once: every tensor has N rows (see :func:`prepare_split`)."""

    tensors: dict[str, torch.Tensor]
    labels: torch.Tensor
    present: dict[str, torch.Tensor]
    seconds: float = 0.0

    def __len__(self) -> int:
        return len(self.labels)


@torch.no_grad()
def prepare_split(split: CourseSplit, tokenizer, chunk: int = 256, max_length: int = 32
                  ) -> PreparedSplit:
    """Preprocess a whole split in batches: images float (N, 3, 32, 32), log-mels (N, T, 40)
    (padding frames set to :data:`MEL_PAD`, as the naive pipeline pads), ``audio_lengths`` in
    frames, token ids (N, T_text) and ``text_lengths``. ``seconds`` records how long it took."""
    start = time.perf_counter()
    logmel = LogMel(sample_rate=split.sample_rate, n_mels=N_MELS, eps=MEL_EPS)
    wave = torch.from_numpy(split.audio.astype(np.float32) / 32768.0)
    lengths = torch.from_numpy(split.audio_lengths.astype(np.int64))
    # trim the padding no clip needs, so the frame count matches the naive pipeline's longest
    wave = wave[:, :int(lengths.max())]
    mels = torch.cat([logmel(wave[i:i + chunk]) for i in range(0, len(wave), chunk)])
    mels = mels.transpose(1, 2).contiguous()  # (N, T, n_mels)
    frames = logmel.frame_lengths(lengths)
    mels.masked_fill_(~lengths_to_mask(frames, mels.shape[1])[..., None], MEL_PAD)
    ids, text_lengths = tokenize(tokenizer, split.texts, max_length=max_length)
    tensors = {"image": torch.from_numpy(split.images).float() / 255.0, "audio": mels,
               "audio_lengths": frames, "text": ids, "text_lengths": text_lengths}
    return PreparedSplit(tensors, torch.from_numpy(split.labels.astype(np.int64)),
                         {m: torch.from_numpy(v.copy()) for m, v in split.present.items()},
                         time.perf_counter() - start)


class PreparedDataset(Dataset):
    """Samples indexed out of a :class:`PreparedSplit` (steps ``batched`` and ``loader``)."""

    def __init__(self, prepared: PreparedSplit):
        self.p = prepared

    def __len__(self) -> int:
        return len(self.p)

    def __getitem__(self, i: int) -> dict[str, Any]:
        sample = {k: v[i] for k, v in self.p.tensors.items()}
        sample["label"] = self.p.labels[i]
        sample["present"] = {m: bool(v[i]) for m, v in self.p.present.items()}
        return sample


class SeededBatchSampler(Sampler):
    """Index batches in a seeded order: the same permutation as :class:`TensorBatches` with the
    same seed, so every pipeline sees the same samples in the same batches."""

    def __init__(self, n: int, batch_size: int, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = True):
        self.n, self.batch_size, self.shuffle, self.drop_last = n, batch_size, shuffle, drop_last
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return num_batches(self.n, self.batch_size, self.drop_last)

    def __iter__(self) -> Iterator[list[int]]:
        for index in batch_indices(self.n, self.batch_size, self.shuffle, self.generator,
                                   self.drop_last):
            yield index.tolist()


@dataclass
class SpeedData:
    """The course splits, the tokenizer learned on the training texts, and each split
    preprocessed once (lazily, on first use, then kept)."""

    splits: dict[str, CourseSplit]
    tokenizer: Any
    prepared: dict[str, PreparedSplit] = field(default_factory=dict)

    @classmethod
    def make(cls, seed: int = 0, size: str | Mapping[str, int] = "small",
             quality_probs: Mapping[str, tuple[float, ...]] | None = None) -> "SpeedData":
        """The course dataset (``make_course_dataset(seed, size, quality_probs=...)``) and a
        tokenizer trained on its training texts."""
        splits = make_course_dataset(seed=seed, size=size, quality_probs=quality_probs)
        return cls(dict(splits), train_tokenizer([t for t in splits["train"].texts if t]))

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def split(self, name: str) -> CourseSplit:
        if name not in self.splits:
            raise KeyError(f"unknown split {name!r}; have {list(self.splits)}")
        return self.splits[name]

    def prepare(self, name: str) -> PreparedSplit:
        """:func:`prepare_split` of split ``name``, computed once."""
        if name not in self.prepared:
            self.prepared[name] = prepare_split(self.split(name), self.tokenizer)
        return self.prepared[name]
