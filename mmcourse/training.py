"""A small, readable training loop for models that take a batch dictionary.

Every model in the course takes the dictionaries that :func:`mmcourse.data.collate.collate_multimodal`
makes (``{"image": ..., "audio": ..., "audio_lengths": ..., "text": ..., "label": ...,
"present": {...}}``) and returns logits (B, num_classes). That one convention lets the same loop
train a unimodal baseline (Part 1) and every fusion model (Part 2).

    history = fit(model, train_loader, val_loader, epochs=5, lr=1e-3)
    accuracy(model, test_loader)
"""
from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmcourse.checks import check_int
# UnimodalClassifier lives beside MultimodalClassifier; notebooks 01-03, 05, 09 and 11 import
# it from here, with the loop that trains it.
from mmcourse.classifier import UnimodalClassifier  # noqa: F401
from mmcourse.device import fast_bfloat16, get_device
from mmcourse.progress import progress


def to_device(batch: Any, device: torch.device | str) -> Any:
    """Move every tensor in a (nested) batch dict/list to ``device``; other values stay as they are."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


@dataclass
class History:
    """What :func:`fit` records per epoch: mean training loss, validation accuracy (if a
    validation loader was given), and the epoch whose weights the model ends with."""

    train_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False

    def __repr__(self) -> str:
        last = f"train_loss={self.train_loss[-1]:.3f}" if self.train_loss else "not trained"
        val = f", best val_accuracy={max(self.val_accuracy):.3f} (epoch {self.best_epoch})" \
            if self.val_accuracy else ""
        return f"History({len(self.train_loss)} epochs, {last}{val})"


AMP_CHOICES = (None, "auto", "bf16", "fp16")


def resolve_amp(amp: str | None, device: str | torch.device | None = None) -> str | None:
    """``amp`` with ``"auto"`` resolved for ``device``: ``"bf16"`` where the hardware computes
    bfloat16 fast (:func:`mmcourse.device.fast_bfloat16`), else None (float32). Other values
    (None, "bf16", "fp16") are returned as given; anything else is a ``ValueError``."""
    if amp not in AMP_CHOICES:
        raise ValueError(f"amp must be one of {AMP_CHOICES}, got {amp!r}")
    if amp == "auto":
        return "bf16" if fast_bfloat16(device) else None
    return amp


def mixed_precision(amp: str | None, device: torch.device):
    """``(autocast context factory, GradScaler or None)`` for ``amp`` in (None, "auto", "bf16",
    "fp16") (see :func:`resolve_amp` for "auto"); fp16 needs a CUDA device."""
    amp = resolve_amp(amp, device)
    if amp is None:
        return contextlib.nullcontext, None
    if amp == "bf16":
        return (lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)), None
    if amp == "fp16":
        if device.type != "cuda":
            raise ValueError(f"amp='fp16' needs a CUDA device (float16 training on {device.type} "
                             f"is slow or unsupported); use amp='bf16' there")
        return ((lambda: torch.autocast(device_type="cuda", dtype=torch.float16)),
                torch.amp.GradScaler("cuda"))
    raise AssertionError(f"unreachable: amp={amp!r}")


def backward_and_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                      scaler: torch.amp.GradScaler | None = None) -> None:
    """One optimisation step from a scalar ``loss``: zero the gradients, back-propagate, step
    the optimizer; with a ``GradScaler`` (float16), scale the loss first and let the scaler
    step (it skips steps whose gradients overflowed) and update its scale. Synchronises
    nothing: the loss is not read back."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()


def fit(model: nn.Module, train_loader: Iterable[dict], val_loader: Iterable[dict] | None = None,
        *, epochs: int, lr: float = 1e-3, weight_decay: float = 0.0,
        optimizer: torch.optim.Optimizer | None = None,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
        device: str | torch.device | None = None, keep_best: bool = True,
        patience: int | None = None, amp: str | None = None,
        desc: str = "training") -> History:
    """Train ``model`` on batch dicts; return a :class:`History`.

    Args:
        model: maps a batch dict to logits (B, C).
        train_loader, val_loader: iterables of batch dicts with a ``"label"`` tensor (B,).
        epochs: passes over ``train_loader`` (a positive integer).
        lr, weight_decay: for the default optimizer, AdamW; or pass ``optimizer``.
        loss_fn: ``loss_fn(logits, labels)``, cross-entropy by default.
        device: where to train (see :func:`mmcourse.get_device`); the model is moved there.
        keep_best: with a validation loader, end with the weights of the epoch with the best
            validation accuracy.
        patience: with a validation loader, stop after this many epochs without a better
            validation accuracy (early stopping); None trains all ``epochs``.
        amp: mixed precision: None (float32), ``"bf16"`` (bfloat16 autocast, CPU or GPU),
            ``"fp16"`` (float16 autocast with a gradient scaler; CUDA only) or ``"auto"``
            (bf16 where the hardware computes it fast, else float32; :func:`resolve_amp`).
    """
    check_int(epochs, "epochs")
    check_int(patience, "patience", allow_none=True)
    device = get_device(device)
    autocast, scaler = mixed_precision(amp, device)
    model.to(device)
    if optimizer is None:
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    history = History()
    best_state, best_acc, stale = None, -1.0, 0
    for epoch in progress(range(epochs), desc=desc):
        model.train()
        total, count = 0.0, 0
        for batch in train_loader:
            batch = to_device(batch, device)
            if "label" not in batch:
                raise KeyError(f"fit needs batches with a 'label' entry; got keys {sorted(batch)}")
            with autocast():
                loss = loss_fn(model(batch).float(), batch["label"])
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the loss became {loss.item()} in epoch {epoch}; lower "
                                         f"the learning rate (now {lr}) or check the inputs")
            backward_and_step(loss, optimizer, scaler)
            total += loss.item() * len(batch["label"])
            count += len(batch["label"])
        if count == 0:
            raise ValueError("train_loader yielded no batches")
        history.train_loss.append(total / count)
        if val_loader is not None:
            acc = accuracy(model, val_loader, device=device)
            history.val_accuracy.append(acc)
            if acc > best_acc:
                best_acc, history.best_epoch, stale = acc, epoch, 0
                if keep_best:
                    best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
                if patience is not None and stale >= patience:
                    history.stopped_early = True
                    break
    if best_state is not None:
        model.load_state_dict(best_state)
    elif val_loader is None:
        history.best_epoch = epochs - 1
    return history


def check_logits(logits: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None) -> None:
    """Raise unless ``logits`` (B, C) are finite and every label is a class index in
    [0, num_classes) (``num_classes`` defaults to C): a NaN logit would otherwise still give an
    argmax, and so an accuracy, and a label out of range would be silently counted as wrong."""
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"expected logits (B, C) and labels (B,), got {tuple(logits.shape)} and "
                         f"{tuple(labels.shape)}")
    finite = torch.isfinite(logits)
    if not finite.all():
        rows = (~finite.all(dim=1)).nonzero().flatten()
        values = sorted({str(v) for v in logits[~finite].tolist()})
        raise FloatingPointError(f"the model gave non-finite logits ({', '.join(values)}) for "
                                 f"{len(rows)} of {len(logits)} samples of a batch (first rows "
                                 f"{rows[:5].tolist()}); expected finite class scores: check the "
                                 f"inputs and the learning rate")
    num_classes = logits.shape[1] if num_classes is None else num_classes
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)].unique()
        raise ValueError(f"labels must be class indices in [0, {num_classes}), got "
                         f"{bad[:10].tolist()}; check that the labels and the model's "
                         f"{logits.shape[1]} outputs describe the same classes")


@torch.no_grad()
def predict(model: nn.Module, loader: Iterable[dict],
            device: str | torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted classes and true labels for every batch of ``loader``, as two int64 tensors on
    the CPU (N,). Raises (see :func:`check_logits`) on non-finite logits or a label outside
    [0, number of outputs)."""
    device = get_device(device)
    model.to(device).eval()
    preds, labels = [], []
    for batch in loader:
        batch = to_device(batch, device)
        logits, label = model(batch), batch["label"]
        check_logits(logits, label)
        preds.append(logits.argmax(dim=1).cpu())
        labels.append(label.cpu())
    if not preds:
        raise ValueError("loader yielded no batches")
    return torch.cat(preds), torch.cat(labels)


def accuracy(model: nn.Module, loader: Iterable[dict],
             device: str | torch.device | None = None) -> float:
    """Share of correctly classified samples in ``loader`` (a float in [0, 1]); raises on
    non-finite logits or labels outside the model's classes (see :func:`check_logits`)."""
    preds, labels = predict(model, loader, device)
    return (preds == labels).float().mean().item()


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable[dict], num_classes: int | None = None,
             device: str | torch.device | None = None,
             loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy
             ) -> dict[str, Any]:
    """Everything about a model on one data set, in one pass.

    Returns a dict: ``accuracy`` (float), ``loss`` (mean ``loss_fn``), ``confusion``
    (num_classes x num_classes counts, rows = true class), ``per_class_accuracy`` (list of
    floats, NaN for a class without samples), ``n`` (samples). ``num_classes`` defaults to the
    width of the model's output. Raises on non-finite logits or labels outside
    [0, num_classes) (see :func:`check_logits`).
    """
    device = get_device(device)
    model.to(device).eval()
    preds, labels, total = [], [], 0.0
    for batch in loader:
        batch = to_device(batch, device)
        logits = model(batch).float()
        # the loss needs each label below the model's width, the confusion matrix below num_classes
        check_logits(logits, batch["label"], min(num_classes or logits.shape[1], logits.shape[1]))
        total += loss_fn(logits, batch["label"]).item() * len(batch["label"])
        num_classes = num_classes or logits.shape[1]
        preds.append(logits.argmax(dim=1).cpu())
        labels.append(batch["label"].cpu())
    if not preds:
        raise ValueError("loader yielded no batches")
    preds, labels = torch.cat(preds), torch.cat(labels)
    confusion = confusion_matrix(preds, labels, num_classes)
    per_class = (confusion.diag().float() / confusion.sum(1).float()).tolist()
    return {"accuracy": (preds == labels).float().mean().item(), "loss": total / len(labels),
            "confusion": confusion, "per_class_accuracy": per_class, "n": len(labels)}


def confusion_matrix(preds: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts (num_classes, num_classes): row = true class, column = predicted class."""
    preds, labels = torch.as_tensor(preds).long(), torch.as_tensor(labels).long()
    if preds.shape != labels.shape or preds.ndim != 1:
        raise ValueError(f"preds and labels must be 1-D of equal length, got {tuple(preds.shape)} "
                         f"and {tuple(labels.shape)}")
    if len(labels) and (min(preds.min(), labels.min()) < 0 or max(preds.max(), labels.max()) >= num_classes):
        raise ValueError(f"class indices must be in [0, {num_classes}), got values from "
                         f"{int(min(preds.min(), labels.min()))} to {int(max(preds.max(), labels.max()))}")
    return torch.bincount(labels * num_classes + preds, minlength=num_classes ** 2).view(
        num_classes, num_classes)
