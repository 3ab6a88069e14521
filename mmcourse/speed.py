"""Training speed, one step at a time: seven input pipelines for the joint model, and measuring them.

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

``fp16`` (float16 autocast with a ``GradScaler``) is a side branch of ``bf16``, for CUDA only
(float16 on a CPU is correct but about 40x slower than float32 on the conv backward pass).

    data = SpeedData.make(seed=0)              # mmcourse.joint: course data + tokenizer, once
    pipe = make_pipeline("naive", data, "train", device="cpu", batch_size=128)
    run_pipeline(pipe, steps=20, warmup=3).samples_per_s

The model and its data are :mod:`mmcourse.joint`'s (:func:`~mmcourse.joint.build_model`).
Every pipeline feeds it the same batch dicts (log-mels arrive already computed, frames first),
and every pipeline visits the samples in the same order (``joint.SeededBatchSampler``), so a step
can only change the speed, never what is learned (up to float rounding, and bfloat16's coarser
rounding). ``mmcourse bench train`` (:mod:`mmcourse.tools.bench.train`) measures every step.
"""
from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from mmcourse.checks import check_int
from mmcourse.data.tensors import TensorBatches
from mmcourse.device import GpuUtilization, get_device, synchronize
from mmcourse.joint import (NaiveCourseDataset, PreparedDataset, SeededBatchSampler, SpeedData,
                            build_model, collate_padded)
from mmcourse.reproducibility import seed_everything
from mmcourse.training import backward_and_step, mixed_precision, to_device

#: The cumulative steps, in order (see the module docstring).
STEPS = ("naive", "batched", "loader", "on_device", "bf16", "channels_last", "compile")
#: Steps that are not cumulative: measured beside the others.
SIDE_STEPS = ("fp16",)
ALL_STEPS = STEPS + SIDE_STEPS


# ---- Step configurations ---------------------------------------------------------------------

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


# ---- Pipelines -------------------------------------------------------------------------------

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

    def eager_if_compile_fails(self, run: Callable[[], Any]) -> Any:
        """``run()``; if it fails while encoders are compiled (no C++ compiler, an unsupported
        device: compile errors come in many types), :meth:`fall_back_to_eager` and ``run()``
        again. Errors of an eager model are raised as they are."""
        try:
            return run()
        except Exception as err:  # noqa: BLE001
            if not self.compiled:
                raise
            self.fall_back_to_eager(f"{type(err).__name__}: {str(err).splitlines()[0][:200]}")
            return run()


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
    check_int(batch_size, "batch_size")
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


# ---- Training steps and measurement ----------------------------------------------------------

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
    check_int(steps, "steps")
    check_int(warmup, "warmup", minimum=0)
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
    synchronize(device)
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
    synchronize(device)
    seconds = time.perf_counter() - start
    util = sampler.stop() if sampler else None
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return Measurement(samples / seconds, steps, samples, seconds, warm,
                       [float(v) for v in torch.stack(losses).cpu()], util, peak)


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
    return pipe.eager_if_compile_fails(lambda: measure(pipe.model, pipe.batches, **kwargs))
