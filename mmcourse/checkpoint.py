"""Save a training run and resume it exactly: ``save_checkpoint`` / ``load_checkpoint``.

A run that stops (a full disk, a closed laptop, a time limit on a shared GPU) should continue as
if it had never stopped: the same weights, the same optimizer moments, the same learning-rate
schedule, the same batch order and the same random draws (dropout, modality dropout,
augmentation). A checkpoint therefore holds more than the weights:

* the model's and the optimizer's ``state_dict`` (and the scheduler's, if any);
* where training stands: ``epoch`` (the last finished one) and ``step`` (optimizer steps);
* the random number generators: PyTorch (CPU, and every CUDA device when there is one), NumPy,
  Python's ``random``, and any extra ``torch.Generator`` such as a loader's shuffling generator;
* the history so far (for example the losses per epoch), and anything else in ``extra``.

    save_checkpoint("runs/ckpt.pt", model, optimizer, epoch=epoch, history=history,
                    generators={"train_loader": train_loader.generator})
    state = load_checkpoint("runs/ckpt.pt", model, optimizer,
                            generators={"train_loader": train_loader.generator})
    start = state["epoch"] + 1

:func:`fit_resumable` is a training loop built on :func:`mmcourse.training.fit` that saves after
every epoch and picks up where the file says. Files are written atomically (a crash while saving
leaves the previous checkpoint intact) and read with ``torch.load(weights_only=True)``, which
never runs code from the file.
"""
from __future__ import annotations

import dataclasses
import os
import pickle
import random
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmcourse.checks import check_int
from mmcourse.device import get_device
from mmcourse.training import History, accuracy, fit

#: Written into every checkpoint; a file without it is not one of ours.
FORMAT = "mmcourse-checkpoint-1"


class CheckpointError(ValueError):
    """The file is not a usable checkpoint (unreadable, not a checkpoint, or saved from a
    different model)."""


# ---------------------------------------------------------------------------- random state

def rng_state(generators: Mapping[str, torch.Generator] | None = None) -> dict[str, Any]:
    """The state of every random number generator a training run draws from.

    Returns a dict of tensors, ints and lists only (so that ``torch.load(weights_only=True)``
    can read it back): ``"torch"`` (CPU), ``"cuda"`` (a list, one per device; only when CUDA is
    available), ``"numpy"``, ``"python"`` and ``"generators"`` (name -> state of each
    ``torch.Generator`` given).
    """
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
        "generators": {name: g.get_state() for name, g in (generators or {}).items()},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any],
                  generators: Mapping[str, torch.Generator] | None = None) -> None:
    """Restore what :func:`rng_state` captured (and the named ``generators``).

    The CUDA states are restored when this machine has as many CUDA devices as the saving one;
    a checkpoint saved on a GPU machine still resumes on a CPU (its CUDA states are then unused).
    """
    try:
        torch.set_rng_state(state["torch"].cpu())
        n = state["numpy"]
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                             n["has_gauss"], n["gauss"]))
        p = state["python"]
        random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    except (KeyError, TypeError, AttributeError) as err:
        raise CheckpointError(f"the random state in this checkpoint is incomplete or malformed "
                              f"({type(err).__name__}: {err})") from err
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
    saved = state.get("generators", {})
    for name, gen in (generators or {}).items():
        if name not in saved:
            raise CheckpointError(f"the checkpoint has no state for generator {name!r}; it has "
                                  f"{sorted(saved) or 'none'}")
        gen.set_state(saved[name].cpu())


# ---------------------------------------------------------------------------- save and load

#: The plain values a checkpoint keeps as they are (``torch.load(weights_only=True)`` reads them).
_PLAIN = (type(None), bool, int, float, complex, str, bytes)


def _storable(value: Any, where: str) -> Any:
    """``value`` in a form that ``torch.load(weights_only=True)`` reads back as it was given.

    Plain values, tensors, lists, tuples and dicts of them (and sets of plain values) are kept; a
    :class:`~mmcourse.training.History` and a ``pathlib`` path are tagged so that they come back
    as such; a NumPy scalar becomes the Python number of the same value. Anything else (a NumPy
    array, another class) raises a ``TypeError`` naming ``where`` it is, at save time, rather than
    writing a file that cannot be read back.
    """
    if isinstance(value, (np.bool_, np.integer, np.floating, np.str_)):  # np.float64 is a float
        return value.item()
    if type(value) in _PLAIN or isinstance(value, torch.Tensor):  # not subclasses such as enums
        return value
    if isinstance(value, os.PathLike):
        return {"__path__": os.fspath(value)}
    if isinstance(value, History):
        return {"__history__": "History", **{f.name: _storable(getattr(value, f.name),
                                                               f"{where}.{f.name}")
                                             for f in dataclasses.fields(value)}}
    if type(value) in (list, tuple):
        return type(value)(_storable(v, f"{where}[{i}]") for i, v in enumerate(value))
    if type(value) is set:
        for item in value:
            if type(item) not in _PLAIN:
                raise TypeError(f"cannot save {where}: it is a set holding a "
                                f"{type(item).__name__} ({item!r}); a checkpoint keeps sets of "
                                f"None, bools, numbers and strings only (use a list)")
        return value
    if isinstance(value, Mapping):
        out = {}
        for key, v in value.items():
            if not isinstance(key, (str, int, float, bool, type(None))):
                raise TypeError(f"cannot save {where}: its key {key!r} is a "
                                f"{type(key).__name__}; checkpoint dict keys must be str, int, "
                                f"float, bool or None")
            out[key] = _storable(v, f"{where}[{key!r}]")
        return out
    hint = (" (convert it with torch.from_numpy(...) or .tolist())" if isinstance(value, np.ndarray)
            else " (convert it with dataclasses.asdict(...))" if dataclasses.is_dataclass(value)
            else "")
    raise TypeError(f"cannot save {where}: a {type(value).__module__}.{type(value).__name__} "
                    f"cannot be read back from a checkpoint{hint}; expected None, bool, int, "
                    f"float, str, a tensor, a Path, a History, or lists, tuples, sets and dicts "
                    f"of them")


def _restored(value: Any) -> Any:
    """The inverse of :func:`_storable`: tagged paths and histories come back as such."""
    if isinstance(value, dict):
        if set(value) == {"__path__"} and isinstance(value["__path__"], str):
            return Path(value["__path__"])
        if value.get("__history__") == "History":
            return History(**{k: _restored(v) for k, v in value.items() if k != "__history__"})
        return {k: _restored(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_restored(v) for v in value)
    return value


def save_checkpoint(path: str | os.PathLike, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None,
                    scheduler: Any | None = None, *, epoch: int, step: int | None = None,
                    history: Any = None, generators: Mapping[str, torch.Generator] | None = None,
                    extra: Mapping[str, Any] | None = None) -> Path:
    """Write a checkpoint of a training run to ``path``; return the path.

    Args:
        model, optimizer, scheduler: saved through their ``state_dict()``.
        epoch: the last *finished* epoch (0-based); a resumed run starts at ``epoch + 1``.
        step: optimizer steps so far (optional).
        history: the run's history so far: a :class:`~mmcourse.training.History`, a dict or a
            list (plain values and tensors).
        generators: extra ``torch.Generator`` objects to save by name (a loader's shuffling).
        extra: anything else to keep (plain values and tensors).

    ``history`` and ``extra`` may hold None, bools, numbers, strings, tensors, ``Path``s, a
    ``History``, and lists, tuples, sets and dicts of them; each comes back from
    :func:`load_checkpoint` as it was given (a NumPy scalar comes back as the Python number of
    the same value). Anything else raises a ``TypeError`` naming the field (``extra['out']``),
    before anything is written.

    The file is written next to ``path`` and then renamed over it, so an interrupted save never
    leaves a half-written checkpoint behind.
    """
    check_int(epoch, "epoch", minimum=0, unit="the last finished epoch")
    check_int(step, "step", minimum=0, allow_none=True, unit="optimizer steps")
    if extra is not None and not isinstance(extra, Mapping):
        raise TypeError(f"extra must be a dict of name -> value, got {type(extra).__name__}")
    history = _storable(history, "history")
    extra = _storable(dict(extra or {}), "extra")
    epoch, step = int(epoch), None if step is None else int(step)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "model_class": type(model).__name__,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "epoch": epoch,
        "step": step,
        "history": history,
        "rng": rng_state(generators),
        "extra": extra,
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def _check_same_model(saved: Mapping[str, torch.Tensor], model: nn.Module, saved_class: str,
                      path: Path) -> None:
    """Raise a CheckpointError that lists the differences if ``saved`` does not fit ``model``."""
    current = model.state_dict()
    missing = [k for k in current if k not in saved]
    unexpected = [k for k in saved if k not in current]
    shapes = [f"{k} {tuple(saved[k].shape)} in the file, {tuple(v.shape)} in the model"
              for k, v in current.items() if k in saved and tuple(saved[k].shape) != tuple(v.shape)]
    if not (missing or unexpected or shapes):
        return
    lines = [f"{path} was saved from a different model ({saved_class}, "
             f"{len(saved)} tensors) than the one given ({type(model).__name__}, "
             f"{len(current)} tensors):"]
    if missing:
        lines.append(f"  not in the file: {missing[:5]}" + (" ..." if len(missing) > 5 else ""))
    if unexpected:
        lines.append(f"  not in the model: {unexpected[:5]}" +
                     (" ..." if len(unexpected) > 5 else ""))
    if shapes:
        lines.append("  other shapes: " + "; ".join(shapes[:5]) + (" ..." if len(shapes) > 5 else ""))
    lines.append("Build the model exactly as in the run that saved it (same classes, sizes and "
                 "modalities), or start a new run with a new checkpoint path.")
    raise CheckpointError("\n".join(lines))


#: The entries of a checkpoint and the type each must have.
_ENTRIES = {"model": Mapping, "optimizer": (Mapping, type(None)), "scheduler": (Mapping, type(None)),
            "epoch": int, "step": (int, type(None)), "rng": Mapping, "extra": Mapping}


def _check_payload(payload: Any, path: Path) -> None:
    """Raise a CheckpointError naming ``path`` unless ``payload`` is a checkpoint of our format
    with every entry :func:`save_checkpoint` writes, each of the right type."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path} is a PyTorch file but not an mmcourse checkpoint (format "
                              f"{found!r}, expected {FORMAT!r}); a bare state_dict loads with "
                              f"model.load_state_dict(torch.load(path))")
    missing = [k for k in (*_ENTRIES, "history") if k not in payload]
    if missing:
        raise CheckpointError(f"{path} is an incomplete checkpoint: it lacks {missing} (it has "
                              f"{sorted(payload)}); save it again with save_checkpoint")
    wrong = [f"{k} is a {type(payload[k]).__name__}" for k, kind in _ENTRIES.items()
             if not isinstance(payload[k], kind) or isinstance(payload[k], bool)]
    if wrong:
        raise CheckpointError(f"{path} is a corrupted checkpoint: " + ", ".join(wrong) +
                              " (expected model, rng and extra dicts, an int epoch, an int or "
                              "None step, optimizer and scheduler dicts or None)")


def load_checkpoint(path: str | os.PathLike, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None,
                    scheduler: Any | None = None, *, restore_rng: bool = True,
                    generators: Mapping[str, torch.Generator] | None = None,
                    map_location: str | torch.device | None = None) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` into ``model`` (and ``optimizer``,
    ``scheduler``) and, by default, restore the random number generators.

    Args:
        map_location: where to put the loaded tensors; default: the device of the model's first
            parameter (so a GPU checkpoint resumes on a CPU and the other way round).
        generators: the same named ``torch.Generator`` objects given to :func:`save_checkpoint`;
            their states are restored.

    Returns:
        The rest of the checkpoint: ``{"epoch", "step", "history", "extra", "model_class"}``
        (``history`` as a :class:`~mmcourse.training.History` if one was saved).

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: the file is unreadable (truncated, not a PyTorch file), is not a
            checkpoint of this format, or was saved from a model with other parameters (the
            message lists which), or an optimizer/scheduler state is missing.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder; expected a checkpoint file written by "
                              f"save_checkpoint (for example {path / 'ckpt.pt'})")
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}" +
                                ("" if path.parent.is_dir() else f" (the folder {path.parent} "
                                 f"does not exist either)"))
    if map_location is None:
        first = next(iter(model.parameters()), None)
        map_location = first.device if first is not None else torch.device("cpu")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - arbitrary bytes raise many kinds (KeyError, ...)
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or corrupted, or "
                              f"not written by torch.save): {type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''}") from err
    _check_payload(payload, path)
    _check_same_model(payload["model"], model, payload.get("model_class", "?"), path)
    model.load_state_dict(payload["model"])
    if optimizer is not None:
        if payload["optimizer"] is None:
            raise CheckpointError(f"{path} holds no optimizer state (it was saved without one); "
                                  f"resume without an optimizer or save one")
        try:
            optimizer.load_state_dict(payload["optimizer"])
        except (ValueError, KeyError) as err:
            raise CheckpointError(f"the optimizer state in {path} does not fit the optimizer "
                                  f"given ({type(optimizer).__name__}): {err}") from err
    if scheduler is not None:
        if payload["scheduler"] is None:
            raise CheckpointError(f"{path} holds no scheduler state (it was saved without one)")
        try:
            scheduler.load_state_dict(payload["scheduler"])
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise CheckpointError(f"the scheduler state in {path} does not fit the scheduler "
                                  f"given ({type(scheduler).__name__}): {err}") from err
    if restore_rng:
        try:
            set_rng_state(payload["rng"], generators)
        except CheckpointError as err:
            raise CheckpointError(f"{path}: {err}") from err
    return {"epoch": payload["epoch"], "step": payload["step"],
            "history": _restored(payload["history"]), "extra": _restored(payload["extra"]),
            "model_class": payload.get("model_class")}


# ---------------------------------------------------------------------------- a resumable loop

def fit_resumable(model: nn.Module, train_loader: Iterable[dict],
                  val_loader: Iterable[dict] | None = None, *, epochs: int,
                  path: str | os.PathLike, optimizer: torch.optim.Optimizer,
                  scheduler: Any | None = None,
                  loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
                  device: str | torch.device | None = None, amp: str | None = None,
                  resume: bool = True, stop_after: int | None = None) -> History:
    """Train for ``epochs`` epochs with :func:`mmcourse.training.fit`, one epoch at a time, and
    save a checkpoint to ``path`` after each; with ``resume=True`` and a checkpoint at ``path``,
    continue from it (the same weights, optimizer, scheduler, random state and batch order).

    The optimizer must be built by the caller (it is part of the saved state). A
    ``scheduler`` is stepped once per epoch. ``train_loader.generator`` (a
    :class:`~mmcourse.data.tensors.TensorBatches` or a ``DataLoader`` with a generator), if
    there, is saved and restored too. ``stop_after=k`` stops after the k-th epoch, as if
    interrupted (for demonstrations and tests). Returns the history of the whole run, epochs
    before the resume included: ``train_loss`` per epoch and, with ``val_loader``,
    ``val_accuracy``; the model ends with its last weights (no best-epoch rollback).
    """
    check_int(epochs, "epochs")
    device = get_device(device)
    model.to(device)
    gen = getattr(train_loader, "generator", None)
    generators = {"train_loader": gen} if isinstance(gen, torch.Generator) else {}
    path = Path(path)
    history, start, step = History(), 0, 0
    if resume and path.exists():
        state = load_checkpoint(path, model, optimizer, scheduler, generators=generators)
        history = state["history"] if isinstance(state["history"], History) else History()
        start, step = state["epoch"] + 1, state["step"] or 0
    for epoch in range(start, epochs):
        one = fit(model, train_loader, epochs=1, optimizer=optimizer, loss_fn=loss_fn,
                  device=device, amp=amp, desc=f"epoch {epoch + 1}/{epochs}")
        history.train_loss.extend(one.train_loss)
        step += len(train_loader) if hasattr(train_loader, "__len__") else 0
        if val_loader is not None:
            history.val_accuracy.append(accuracy(model, val_loader, device=device))
        history.best_epoch = epoch
        if scheduler is not None:
            scheduler.step()
        save_checkpoint(path, model, optimizer, scheduler, epoch=epoch, step=step,
                        history=history, generators=generators)
        if stop_after is not None and epoch + 1 >= stop_after:
            break
    return history
