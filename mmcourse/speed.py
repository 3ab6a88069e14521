"""Training speed, one step at a time: a joint multimodal model and seven input pipelines.

Part 3 trains the encoders *and* the fusion together, end to end, from raw course data
(images, waveforms, texts). How fast that goes depends on the model's arithmetic and on how the
data reaches it (on a 2-core CPU the data side is about a third of a naive step; on a GPU it was
most of it). This module names each speed-up as a *step*; the steps are cumulative (``on_device``
replaces ``loader``'s DataLoader), in this order:

===================  ============================================================================
``naive``            per-sample preprocessing in ``Dataset.__getitem__`` (uint8 image -> float,
                     waveform -> log-mel, text -> token ids), a default ``DataLoader``
                     (``num_workers=0``) with a padding collate, each batch moved to the device
                     inside the loop
``batched``          preprocessing done once, up front, in batches (log-mels of 256 clips at a
                     time, all texts tokenized in one call); the dataset only indexes tensors
``loader``           ``DataLoader`` settings: worker processes, ``persistent_workers``, and
                     ``pin_memory`` on CUDA
``on_device``        every tensor moved to the device once; batches are sliced there
                     (:class:`~mmcourse.data.tensors.TensorBatches`), no ``DataLoader`` (so
                     no workers: it replaces ``loader``)
``bf16``             mixed precision: bfloat16 autocast (CPU and GPU)
``channels_last``    the conv encoders' weights and inputs in channels-last memory format
``compile``          ``torch.compile`` of the two conv encoders, where the work is (the compile
                     itself happens in the untimed warm-up and is reported separately)
===================  ============================================================================

``fp16`` (float16 autocast with a ``GradScaler``) is a side branch of ``bf16``, for CUDA only:
float16 on a CPU is correct but about 40x slower than float32 on the conv backward pass, so the
bench reports it as skipped there.

    data = SpeedData.make(seed=0)                          # course data + tokenizer, once
    pipe = make_pipeline("naive", data, "train", device="cpu", batch_size=128)
    measure_throughput(pipe.model, pipe.batches, steps=20, warmup=3, device="cpu")  # samples/s
    result = train_and_evaluate("compile", data, epochs=3)  # same quality as "naive"

The model (:func:`build_model`) is the course's default end-to-end classifier: ImageCNN
(16-32-64 channels), a CNN over log-mel spectrograms (:class:`LogMelCNN`, AudioCNN's layers),
a bag-of-words text encoder, 64 features each, concat fusion, a linear head. Every pipeline
feeds it the same batch dicts (log-mels arrive already computed, frames first), and every
pipeline visits the samples in the same order (:class:`SeededBatchSampler`), so a step can only
change the speed, never what is learned (up to float rounding, and bfloat16's coarser rounding).

``mmcourse bench train`` (:func:`run_train_bench`) measures every step on one device, in
``repeats`` interleaved rounds (every step once per round), and reports each step's median.
"""
from __future__ import annotations

import contextlib
import math
import os
import platform
import shutil
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from mmcourse.classifier import MultimodalClassifier
from mmcourse.data.course import CourseSplit, make_course_dataset
from mmcourse.data.tensors import TensorBatches, batch_indices, num_batches
from mmcourse.device import get_device
from mmcourse.encoders.audio import AudioCNN, LogMel, lengths_to_mask
from mmcourse.encoders.image import ImageCNN
from mmcourse.encoders.text import BagOfWordsEncoder, tokenize, train_tokenizer
from mmcourse.fusion import make_fusion
from mmcourse.reproducibility import seed_everything
from mmcourse.training import backward_and_step, mixed_precision, to_device

#: The cumulative steps, in order (see the module docstring).
STEPS = ("naive", "batched", "loader", "on_device", "bf16", "channels_last", "compile")
#: Steps that are not cumulative: measured beside the others.
SIDE_STEPS = ("fp16",)
ALL_STEPS = STEPS + SIDE_STEPS

N_MELS = 40
MEL_EPS = 1e-4
#: The value of a log-mel frame of silence: padding frames hold it, whichever pipeline made them.
MEL_PAD = math.log(MEL_EPS)


# --------------------------------------------------------------------------------------------
# Step configurations
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StepConfig:
    """What one pipeline step does (the fields are cumulative along :data:`STEPS`).

    Attributes:
        name: the step's name.
        precompute: preprocessing done once, in batches (False: per sample in ``__getitem__``).
        num_workers, persistent_workers, pin_memory: the ``DataLoader``'s settings.
        on_device: batches sliced from device-resident tensors (no ``DataLoader``).
        amp: None, "bf16" or "fp16" (autocast dtype; fp16 adds a gradient scaler).
        compile: ``torch.compile`` the conv encoders (see :func:`make_pipeline`).
        channels_last: conv weights and images in channels-last memory format.
        description: one line for tables.
    """

    name: str
    precompute: bool = False
    num_workers: int = 0
    persistent_workers: bool = False
    pin_memory: bool = False
    on_device: bool = False
    amp: str | None = None
    compile: bool = False
    channels_last: bool = False
    description: str = ""


DESCRIPTIONS = {
    "naive": "per-sample preprocessing in __getitem__, DataLoader(num_workers=0), batch to device in the loop",
    "batched": "log-mels and token ids computed once, in batches; the dataset indexes tensors",
    "loader": "DataLoader workers + persistent_workers (+ pin_memory on CUDA)",
    "on_device": "tensors on the device once, batches sliced there (no DataLoader)",
    "bf16": "bfloat16 autocast",
    "fp16": "float16 autocast + GradScaler (CUDA only)",
    "channels_last": "channels-last memory format for the conv encoders",
    "compile": "torch.compile of the conv encoders (compile time = warm-up, not timed)",
}


def default_workers() -> int:
    """Worker processes for the ``loader`` step: the CPU cores, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))


def step_config(step: str, device: str | torch.device | None = None,
                num_workers: int | None = None) -> StepConfig:
    """The configuration of ``step`` (one of :data:`ALL_STEPS`) on ``device``.

    Each step of :data:`STEPS` keeps every earlier step's settings and adds its own; ``fp16``
    is ``bf16``'s settings with float16 instead. ``num_workers`` overrides the ``loader`` step's
    worker count (default :func:`default_workers`).
    """
    if step not in ALL_STEPS:
        raise ValueError(f"unknown step {step!r}; expected one of {list(ALL_STEPS)}")
    device = get_device(device)
    workers = default_workers() if num_workers is None else int(num_workers)
    if workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers!r}")
    order = STEPS[:STEPS.index("bf16") + 1] if step == "fp16" else STEPS[:STEPS.index(step) + 1]
    cfg: dict[str, Any] = {}
    for s in order:
        if s == "batched":
            cfg["precompute"] = True
        elif s == "loader":
            cfg.update(num_workers=workers, persistent_workers=workers > 0,
                       pin_memory=device.type == "cuda")
        elif s == "on_device":
            cfg.update(on_device=True, num_workers=0, persistent_workers=False, pin_memory=False)
        elif s == "bf16":
            cfg["amp"] = "bf16"
        elif s == "compile":
            cfg["compile"] = True
        elif s == "channels_last":
            cfg["channels_last"] = True
    if step == "fp16":
        cfg["amp"] = "fp16"
    return StepConfig(name=step, description=DESCRIPTIONS[step], **cfg)


def fp16_unavailable_reason(device: str | torch.device | None = None) -> str | None:
    """Why float16 training is not measured on ``device`` (None: it is, on CUDA)."""
    device = get_device(device)
    if device.type == "cuda":
        return None
    if device.type == "cpu":
        return ("float16 on the CPU is correct but about 40x slower than float32 on the conv "
                "backward pass (no fast kernels); use bf16 there")
    return f"float16 with a GradScaler is only measured on CUDA, not on {device.type}"


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


def build_model(vocab_size: int, num_classes: int = 8, dim: int = 64) -> MultimodalClassifier:
    """The joint model: ImageCNN (16-32-64) + LogMelCNN + bag of words, ``dim`` features each,
    concat fusion to ``dim``, a linear head. Reads ``image`` (B, 3, 32, 32), ``audio`` (B, T, 40)
    log-mels with ``audio_lengths`` (frames), ``text`` ids (B, T) with ``text_lengths``."""
    encoders = {"image": ImageCNN(channels=(16, 32, 64), out_dim=dim),
                "audio": LogMelCNN(out_dim=dim, n_mels=N_MELS),
                "text": BagOfWordsEncoder(vocab_size, out_dim=dim)}
    fusion = make_fusion("concat", {m: dim for m in encoders}, dim)
    return MultimodalClassifier(encoders, fusion, num_classes)


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


# --------------------------------------------------------------------------------------------
# Pipelines
# --------------------------------------------------------------------------------------------

class _ChannelsLast:
    """Wrap an iterable of batches: images in channels-last memory format."""

    def __init__(self, batches: Iterable[dict]):
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]

    def __iter__(self):
        for batch in self.batches:
            batch = dict(batch)
            batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
            yield batch


@dataclass
class Pipeline:
    """A model and the batches that feed it, set up as one step says.

    Attributes:
        config: the :class:`StepConfig`.
        model: the model to train; for the compile steps its image and audio encoders are
            ``torch.compile``'d modules (``compiled`` keeps the originals).
        batches: an iterable of batch dicts (a ``DataLoader`` or :class:`TensorBatches`); may
            be iterated once per epoch.
        device: where the model lives; batches are moved there in the training loop.
        prepare_seconds: the one-time preprocessing the step needed (0 for ``naive``).
        compile_backend: the ``torch.compile`` backend (``"inductor"`` by default).
    """

    config: StepConfig
    model: nn.Module
    batches: Iterable[dict]
    device: torch.device
    prepare_seconds: float = 0.0
    compile_backend: str | None = None
    compiled: dict[str, nn.Module] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def optimizer(self, lr: float = 2e-3) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.model.parameters(), lr=lr)

    def fall_back_to_eager(self, reason: str) -> None:
        """Stop compiling: put the original encoders back and note why."""
        for m, original in self.compiled.items():
            self.model.encoders[m] = original
        self.compiled = {}
        self.notes.append(f"torch.compile unavailable, ran eager: {reason}")


def make_pipeline(step: str, data: SpeedData, split: str = "train",
                  device: str | torch.device | None = None, batch_size: int = 128, *,
                  seed: int = 0, shuffle: bool = True, drop_last: bool = True,
                  num_workers: int | None = None, compile_backend: str = "inductor",
                  model: nn.Module | None = None, dim: int = 64,
                  deterministic: bool = True) -> Pipeline:
    """Set up ``step`` (see :data:`ALL_STEPS`): its batches of split ``split`` and its model.

    Args:
        step: the pipeline step; it includes every earlier step of :data:`STEPS`.
        data: a :class:`SpeedData` (splits + tokenizer).
        split: which split to iterate ("train", "val", "test").
        device: see :func:`mmcourse.get_device`.
        batch_size: samples per batch.
        seed: seeds the model's initial weights (``seed_everything``) and the batch order; every
            step with the same seed starts from the same weights and sees the same batches.
        shuffle, drop_last: batch order and whether to drop the last, smaller batch (dropped by
            default: a compiled model would otherwise compile once more for its shape).
        num_workers: the ``loader`` step's DataLoader workers (default :func:`default_workers`).
        compile_backend: for the compile steps (``"inductor"``; ``"eager"`` or ``"aot_eager"``
            test the graph capture without a C++ compiler, quickly).
        model: a model to use instead of a new :func:`build_model` (moved to ``device``).
        dim: the new model's features per modality.
        deterministic: passed to ``seed_everything`` (the bench turns it off: deterministic
            GPU kernels can be slower).

    Returns:
        A :class:`Pipeline` (``.model``, ``.batches``, ``.config``, ``.device``).
    """
    config = step_config(step, device, num_workers)
    device = get_device(device)
    if config.amp == "fp16" and device.type != "cuda":
        raise ValueError(f"step 'fp16' needs CUDA: {fp16_unavailable_reason(device)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    source = data.split(split)
    prepare_seconds = 0.0
    if not config.precompute:
        dataset: Dataset = NaiveCourseDataset(source, data.tokenizer)
    else:
        prepared = data.prepare(split)
        prepare_seconds = prepared.seconds
        dataset = PreparedDataset(prepared)
    if config.on_device:
        prepared = data.prepare(split)
        batches: Iterable[dict] = TensorBatches(
            {k: v for k, v in prepared.tensors.items()}, prepared.labels, present=prepared.present,
            batch_size=batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last).to(device)
    else:
        sampler = SeededBatchSampler(len(dataset), batch_size, shuffle, seed, drop_last)
        kwargs: dict[str, Any] = {}
        if config.num_workers > 0:
            kwargs = dict(num_workers=config.num_workers,
                          persistent_workers=config.persistent_workers, prefetch_factor=4)
        batches = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_padded,
                             pin_memory=config.pin_memory, **kwargs)
    if config.channels_last:
        batches = _ChannelsLast(batches)
    if model is None:
        seed_everything(seed, deterministic=deterministic)
        model = build_model(data.vocab_size, len(source.classes), dim)
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    compiled = {}
    if config.compile:
        # Compile the conv encoders, where the work is, not the whole classifier: its glue
        # (token-id checks, the branch for samples with no modality at all, which indexes a
        # data-dependent number of rows) breaks the graph and would recompile, mid-training,
        # whenever a batch takes the other branch. The encoders see fixed shapes: one compile.
        for m in ("image", "audio"):
            if m in getattr(model, "encoders", {}):
                compiled[m] = model.encoders[m]
                model.encoders[m] = torch.compile(compiled[m], backend=compile_backend)
    return Pipeline(config, model, batches, device, prepare_seconds,
                    compile_backend if config.compile else None, compiled)


# --------------------------------------------------------------------------------------------
# Training steps and measurement
# --------------------------------------------------------------------------------------------

def autocast_and_scaler(amp: str | None, device: torch.device):
    """``(context factory, GradScaler or None)`` for ``amp`` in (None, "bf16", "fp16"), as in
    :func:`mmcourse.training.mixed_precision`, with the bench's reason when fp16 cannot run."""
    if amp == "fp16" and device.type != "cuda":
        raise ValueError(fp16_unavailable_reason(device))
    return mixed_precision(amp, device)


def train_step(model: nn.Module, batch: dict, optimizer: torch.optim.Optimizer,
               autocast: Callable = contextlib.nullcontext,
               scaler: torch.amp.GradScaler | None = None) -> torch.Tensor:
    """One optimisation step on one batch (already on the model's device); returns the loss
    (a 0-d tensor, not synchronised: call ``.item()`` only when needed)."""
    with autocast():
        loss = F.cross_entropy(model(batch).float(), batch["label"])
    backward_and_step(loss, optimizer, scaler)  # as in fit, without fit's finiteness check,
    return loss.detach()                        # which would synchronise every timed step


def _cycle(batches: Iterable[dict]) -> Iterator[dict]:
    while True:
        empty = True
        for batch in batches:
            empty = False
            yield batch
        if empty:
            raise ValueError("the batches are empty: no batch to train on")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


@dataclass
class Measurement:
    """One timed run: ``samples_per_s`` over ``steps`` steps after ``warmup`` untimed ones."""

    samples_per_s: float
    steps: int
    samples: int
    seconds: float
    warmup_seconds: float
    losses: list[float]
    gpu_utilization: float | None = None
    peak_memory_mb: float | None = None


def measure(model: nn.Module, batches: Iterable[dict], *, steps: int = 20, warmup: int = 3,
            amp: str | None = None, device: str | torch.device | None = None,
            optimizer: torch.optim.Optimizer | None = None, lr: float = 2e-3,
            sample_gpu: bool = False) -> Measurement:
    """Train ``model`` for ``warmup`` untimed steps, then ``steps`` timed ones; see
    :class:`Measurement`. Batches are moved to ``device`` inside the loop (a no-op for batches
    already there) and the batches are cycled if they run out. CUDA is synchronised before the
    clock starts and before it stops."""
    for name, value, low in (("steps", steps, 1), ("warmup", warmup, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    device = get_device(device)
    autocast, scaler = autocast_and_scaler(amp, device)
    model.train()
    if optimizer is None:
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    stream = _cycle(batches)
    losses: list[torch.Tensor] = []
    start = time.perf_counter()
    for _ in range(warmup):
        losses.append(train_step(model, to_device(next(stream), device), optimizer, autocast, scaler))
    _sync(device)
    warm = time.perf_counter() - start
    sampler = GpuUtilization(device) if sample_gpu else None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if sampler:
        sampler.start()
    samples = 0
    start = time.perf_counter()
    for _ in range(steps):
        batch = to_device(next(stream), device)
        losses.append(train_step(model, batch, optimizer, autocast, scaler))
        samples += len(batch["label"])
    _sync(device)
    seconds = time.perf_counter() - start
    util = sampler.stop() if sampler else None
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return Measurement(samples / seconds, steps, samples, seconds, warm,
                       [float(v) for v in torch.stack(losses).cpu()], util, peak)


def measure_throughput(model: nn.Module, batches: Iterable[dict], *, steps: int = 20,
                       warmup: int = 3, amp: str | None = None,
                       device: str | torch.device | None = None,
                       optimizer: torch.optim.Optimizer | None = None) -> float:
    """Training samples per second: ``warmup`` untimed steps, then ``steps`` timed ones
    (see :func:`measure` for everything else it records)."""
    return measure(model, batches, steps=steps, warmup=warmup, amp=amp, device=device,
                   optimizer=optimizer).samples_per_s


def run_pipeline(pipe: Pipeline, *, steps: int = 20, warmup: int = 3, lr: float = 2e-3,
                 sample_gpu: bool = False,
                 optimizer: torch.optim.Optimizer | None = None) -> Measurement:
    """:func:`measure` a pipeline with its own settings. For a compile step the first call
    compiles; if compiling fails (no C++ compiler, an unsupported device), the pipeline falls
    back to the eager model and says why in ``pipe.notes``. ``optimizer``: one to keep training
    with (None: a new ``pipe.optimizer(lr)``)."""
    optimizer = pipe.optimizer(lr) if optimizer is None else optimizer
    kwargs = dict(steps=steps, warmup=max(warmup, 1 if pipe.config.compile else 0),
                  amp=pipe.config.amp, device=pipe.device, optimizer=optimizer,
                  sample_gpu=sample_gpu)
    try:
        return measure(pipe.model, pipe.batches, **kwargs)
    except Exception as err:  # noqa: BLE001 - compile failures come in many types
        if not pipe.compiled:
            raise
        pipe.fall_back_to_eager(f"{type(err).__name__}: {str(err).splitlines()[0][:200]}")
        return measure(pipe.model, pipe.batches, **kwargs)


# --------------------------------------------------------------------------------------------
# Train for a few epochs and evaluate (naive and optimized learn the same model)
# --------------------------------------------------------------------------------------------

@torch.no_grad()
def evaluate_accuracy(model: nn.Module, data: SpeedData, split: str = "test",
                      device: str | torch.device | None = None, amp: str | None = None,
                      batch_size: int = 500) -> float:
    """Accuracy of ``model`` on a split (precomputed tensors, autocast as in training)."""
    device = get_device(device)
    autocast, _ = autocast_and_scaler(amp if amp != "fp16" or device.type == "cuda" else None,
                                      device)
    prepared = data.prepare(split)
    loader = TensorBatches(prepared.tensors, prepared.labels, present=prepared.present,
                           batch_size=batch_size)
    model.eval()
    correct = 0
    for batch in loader:
        batch = to_device(batch, device)
        with autocast():
            correct += int((model(batch).argmax(1) == batch["label"]).sum())
    return correct / len(prepared)


def train_and_evaluate(step: str, data: SpeedData, *, epochs: int = 3, batch_size: int = 128,
                       lr: float = 2e-3, seed: int = 0, device: str | torch.device | None = None,
                       train_split: str = "train", test_split: str = "test",
                       compile_backend: str = "inductor", dim: int = 64) -> dict[str, Any]:
    """Train a fresh model with pipeline ``step`` for ``epochs`` epochs; return
    ``{"step", "accuracy" (on test_split), "epoch_loss" (mean training loss per epoch),
    "seconds" (training wall time, compile included), "notes"}``.

    Every step starts from the same weights and sees the same batches (same ``seed``), so
    the accuracies differ only by float rounding (bfloat16 rounds more coarsely)."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    pipe = make_pipeline(step, data, train_split, device, batch_size, seed=seed,
                         compile_backend=compile_backend, dim=dim)
    autocast, scaler = autocast_and_scaler(pipe.config.amp, pipe.device)
    optimizer = pipe.optimizer(lr)
    epoch_loss = []
    start = time.perf_counter()
    for _ in range(epochs):
        pipe.model.train()
        losses = []
        for batch in pipe.batches:
            batch = to_device(batch, pipe.device)
            try:
                losses.append(train_step(pipe.model, batch, optimizer, autocast, scaler))
            except Exception as err:  # noqa: BLE001
                if not pipe.compiled:
                    raise
                pipe.fall_back_to_eager(f"{type(err).__name__}: {str(err).splitlines()[0][:200]}")
                losses.append(train_step(pipe.model, batch, optimizer, autocast, scaler))
        epoch_loss.append(float(torch.stack(losses).mean()))
    _sync(pipe.device)
    seconds = time.perf_counter() - start
    acc = evaluate_accuracy(pipe.model, data, test_split, pipe.device, pipe.config.amp)
    return {"step": step, "accuracy": acc, "epoch_loss": epoch_loss, "seconds": seconds,
            "notes": list(pipe.notes)}


# --------------------------------------------------------------------------------------------
# GPU utilisation while a step runs
# --------------------------------------------------------------------------------------------

class GpuUtilization:
    """Sample the GPU's utilisation (%) in a background thread: ``start()``, ``stop() -> mean``.

    Uses ``torch.cuda.utilization()`` (needs pynvml) when it works, else ``nvidia-smi``; ``stop``
    returns None when neither works or the device is not CUDA.
    """

    def __init__(self, device: torch.device, interval: float = 0.1):
        self.device, self.interval = device, interval
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.source = self._pick_source() if device.type == "cuda" else None

    def _pick_source(self) -> str | None:
        try:
            torch.cuda.utilization(self.device)
            return "torch"
        except Exception:  # noqa: BLE001 - pynvml missing or NVML failing
            pass
        if shutil.which("nvidia-smi") and self._smi() is not None:
            return "nvidia-smi"
        return None

    def _smi(self) -> float | None:
        index = self.device.index if self.device.index is not None else torch.cuda.current_device()
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu",
                                  "--format=csv,noheader,nounits", f"--id={index}"],
                                 capture_output=True, text=True, timeout=5)
            return float(out.stdout.strip().splitlines()[0])
        except Exception:  # noqa: BLE001
            return None

    def _read(self) -> float | None:
        if self.source == "torch":
            return float(torch.cuda.utilization(self.device))
        return self._smi()

    def _run(self) -> None:
        while not self._stop.is_set():
            value = self._read()
            if value is not None:
                self.samples.append(value)
            self._stop.wait(self.interval)

    def start(self) -> None:
        if self.source is None:
            return
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> float | None:
        if self._thread is None:
            return None
        self._stop.set()
        self._thread.join()
        return sum(self.samples) / len(self.samples) if self.samples else None


# --------------------------------------------------------------------------------------------
# The bench
# --------------------------------------------------------------------------------------------

def run_train_bench(steps: int = 20, batch_size: int = 128, device: str | torch.device | None = None,
                    warmup: int = 3, seed: int = 0, train_size: int = 2048,
                    step_names: tuple[str, ...] = ALL_STEPS, num_workers: int | None = None,
                    compile_backend: str = "inductor", log: Callable[[str], None] | None = None,
                    repeats: int = 3) -> dict[str, Any]:
    """Measure training throughput of every step on one device; return a JSON-able report.

    Every step is set up once (its model, optimizer and batches) and measured ``repeats`` times,
    in interleaved rounds: round 1 measures every step, then round 2 every step again, and so
    on, each pipeline training on where it left off. A slow spell of a shared machine then hits
    every step alike instead of one step's only measurement, and each step's median over the
    rounds is what the report (and its speed-ups) use. The first round's warm-up (``warmup``
    untimed steps; the compile steps compile there) is reported; later rounds warm up with one
    untimed step.

    Report keys: ``device``, ``device_name``, ``torch``, ``date``, ``threads``, ``cpu_count``,
    ``load_avg_1min`` / ``load_avg_1min_end`` (the machine's load when the bench started and
    ended), ``config``, ``seconds`` (wall time), ``rows`` (one per step: ``step``,
    ``description``, ``status`` "ok"/"skipped", ``samples_per_s`` (the median round),
    ``runs`` (samples/s of every round, in order), ``speedup`` (median vs naive's median),
    ``prepare_s`` (one-time preprocessing), ``warmup_s`` (the first round's untimed steps,
    compile included), ``gpu_util`` (%, the median over rounds, or None), ``peak_mem_mb``
    (CUDA: the most memory allocated while the step was timed, over the rounds; every step's
    model and device-resident data stay allocated between rounds, so it includes the other
    steps' too: compare it across runs, not across rows), ``final_loss``, ``note``), and
    ``best`` (the fastest step: ``step``, ``samples_per_s``, ``speedup``). Without ``naive``
    among ``step_names`` every ``speedup`` is None (the table prints n/a)."""
    unknown = [s for s in step_names if s not in ALL_STEPS]
    if unknown:
        raise ValueError(f"unknown step {unknown[0]!r}; expected some of {list(ALL_STEPS)}")
    for name, value in (("steps", steps), ("batch_size", batch_size), ("repeats", repeats)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if isinstance(train_size, bool) or not isinstance(train_size, int) or train_size < batch_size:
        raise ValueError(f"train_size must be an integer of at least batch_size ({batch_size}), "
                         f"got {train_size!r}")
    device = get_device(device)
    saved = (torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        return _run_train_bench(steps, batch_size, device, warmup, seed, train_size, step_names,
                                num_workers, compile_backend, log, repeats)
    finally:  # the pipelines seed without deterministic kernels; leave the process as it was
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2:]


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _run_train_bench(steps, batch_size, device, warmup, seed, train_size, step_names,
                     num_workers, compile_backend, log, repeats) -> dict[str, Any]:
    wall = time.perf_counter()
    load_start = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    data = SpeedData.make(seed=0, size={"train": train_size})
    n_train = len(data.split("train"))
    rows: dict[str, dict[str, Any]] = {}
    pipes: dict[str, tuple[Pipeline, torch.optim.Optimizer]] = {}
    runs: dict[str, list[Measurement]] = {}
    for name in step_names:
        cfg = step_config(name, device, num_workers)
        rows[name] = {"step": name, "description": cfg.description}
        reason = fp16_unavailable_reason(device) if name == "fp16" else None
        if reason:
            rows[name].update(status="skipped", samples_per_s=None, runs=[], speedup=None,
                              note=reason)
            if log:
                log(f"{name}: skipped ({reason})")
            continue
        pipe = make_pipeline(name, data, "train", device, batch_size, seed=seed,
                             num_workers=num_workers, compile_backend=compile_backend,
                             deterministic=False)
        pipes[name] = (pipe, pipe.optimizer())
        runs[name] = []
    for round_ in range(repeats):
        for name, (pipe, optimizer) in pipes.items():
            m = run_pipeline(pipe, steps=steps, warmup=warmup if round_ == 0 else 1,
                             sample_gpu=device.type == "cuda", optimizer=optimizer)
            runs[name].append(m)
            if log:
                log(f"round {round_ + 1}/{repeats} {name}: {m.samples_per_s:.0f} samples/s")
    naive = _median([m.samples_per_s for m in runs["naive"]]) if "naive" in runs else None
    for name, measurements in runs.items():
        pipe = pipes[name][0]
        rates = [m.samples_per_s for m in measurements]
        rate = _median(rates)
        utils = [m.gpu_utilization for m in measurements if m.gpu_utilization is not None]
        peaks = [m.peak_memory_mb for m in measurements if m.peak_memory_mb is not None]
        losses = [v for m in measurements for v in m.losses]
        note = "; ".join(pipe.notes)
        if not all(math.isfinite(v) for v in losses):
            note = (note + "; " if note else "") + "non-finite loss"
        rows[name].update(status="ok", samples_per_s=round(rate, 1),
                          runs=[round(v, 1) for v in rates],
                          speedup=round(rate / naive, 2) if naive else None,
                          prepare_s=round(pipe.prepare_seconds, 2),
                          warmup_s=round(measurements[0].warmup_seconds, 2),
                          gpu_util=round(_median(utils), 1) if utils else None,
                          peak_mem_mb=round(max(peaks), 1) if peaks else None,
                          final_loss=round(losses[-1], 4), note=note)
    del pipes
    table = [rows[name] for name in step_names]
    ok = [r for r in table if r["status"] == "ok"]
    best = max(ok, key=lambda r: r["samples_per_s"]) if ok else None
    load = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    return {"device": str(device), "device_name": _device_name(device), "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d"), "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "load_avg_1min": load_start, "load_avg_1min_end": load,
            "config": {"steps": steps, "warmup": warmup, "repeats": repeats,
                       "batch_size": batch_size, "seed": seed,
                       "train_samples": n_train, "num_workers": step_config(
                           "loader", device, num_workers).num_workers,
                       "model": "ImageCNN(16-32-64) + LogMelCNN(8-16-32-32) + bag of words, "
                                "64-d each, concat fusion, 8 classes"},
            "seconds": round(time.perf_counter() - wall, 1), "rows": table,
            "best": None if best is None else {"step": best["step"], "speedup": best["speedup"],
                                               "samples_per_s": best["samples_per_s"]}}


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def format_train_table(report: Mapping[str, Any]) -> str:
    """The bench report as a plain-text table."""
    cfg = report["config"]
    lines = [f"mmcourse bench train: {report['device']} ({report['device_name']}), torch "
             f"{report['torch']}, {report['date']}, {report['threads']} threads, load "
             f"{report['load_avg_1min']} (start) / {report.get('load_avg_1min_end')} (end) on "
             f"{report['cpu_count']} cores",
             f"model: {cfg['model']}; batch {cfg['batch_size']}, {cfg['steps']} timed steps after "
             f"{cfg['warmup']} warm-up (1 in later rounds), {cfg['train_samples']} training "
             f"samples, loader workers {cfg['num_workers']}",
             f"samples/s: the median of {cfg.get('repeats', 1)} interleaved rounds (range: the "
             f"slowest and fastest round)", ""]
    gpu = report["device"].startswith("cuda")
    head = (f"{'step':<14} {'samples/s':>10} {'range':>13} {'vs naive':>9} {'prep s':>7} "
            f"{'warm-up s':>9}")
    if gpu:
        head += f" {'GPU %':>6} {'peak MB':>8}"
    lines += [head + "  note", "-" * len(head)]
    for r in report["rows"]:
        if r["status"] != "ok":
            lines.append(f"{r['step']:<14} {'skipped':>10} {'':>13} {'':>9} {'':>7} {'':>9}"
                         + (f" {'':>6} {'':>8}" if gpu else "") + f"  {r['note']}")
            continue
        runs = r.get("runs") or [r["samples_per_s"]]
        spread = f"{min(runs):.0f}-{max(runs):.0f}"
        ratio = "n/a" if r["speedup"] is None else f"{r['speedup']:.2f}x"  # naive not measured
        line = (f"{r['step']:<14} {r['samples_per_s']:>10.0f} {spread:>13} {ratio:>9} "
                f"{r['prepare_s']:>7.2f} {r['warmup_s']:>9.2f}")
        if gpu:
            util = "n/a" if r["gpu_util"] is None else f"{r['gpu_util']:.0f}"
            line += f" {util:>6} {r['peak_mem_mb'] or 0:>8.0f}"
        lines.append(line + (f"  {r['note']}" if r["note"] else ""))
    if report["best"]:
        best = report["best"]
        ratio = (f"{best['speedup']:.2f}x naive" if best["speedup"] is not None
                 else f"{best['samples_per_s']:.0f} samples/s (naive not measured)")
        lines += ["", f"fastest: {best['step']}, {ratio}; "
                  f"bench wall time {report['seconds']:.0f} s"]
    return "\n".join(lines)
