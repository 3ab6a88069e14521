"""Data-parallel training with DistributedDataParallel (DDP), launched by torchrun (notebook 08).

Every process (a *rank*) holds a full copy of the model and trains on its own shard of each
global batch; after every backward pass DDP averages the gradients of all ranks with an
all-reduce, so every rank takes the same optimizer step and keeps the same weights. The model is
the course's concatenation fusion head (:class:`~mmcourse.fusion.ConcatFusion` + a linear
head) on frozen features: small, so a run on two CPU processes takes seconds.

Run it as a script under torchrun (``torchrun`` is ``python -m torch.distributed.run``)::

    # 2 CPU processes (gloo) on a synthetic data set; results in runs/ddp/
    OMP_NUM_THREADS=1 python -m torch.distributed.run --standalone --nproc_per_node=2 \\
        -m mmcourse.distributed --out runs/ddp --epochs 5 --batch-size 64 --accum-steps 2

    # one GPU (NCCL is picked automatically when CUDA is available; rank r uses cuda:r)
    python -m torch.distributed.run --standalone --nproc_per_node=1 -m mmcourse.distributed \\
        --out runs/ddp-gpu
    python -m mmcourse.distributed --help       # every option (works without torchrun)

``--data`` is ``synthetic`` (default) or a file written by :func:`save_features` (the frozen
course features of notebook 08). Rank 0 prints the loss of each epoch and writes
``results.json`` (settings, loss per optimizer step, every rank's weight checksum, the largest
weight difference between ranks) and ``model.pt`` (the trained ``state_dict``) into ``--out``.

This module is the worker (what every rank runs) and the single-process comparison
(:func:`train_single_process`: the same model on the same global batches in one process). The
data layout and its helpers are in :mod:`mmcourse.distributed_data`; starting runs from Python
(:func:`launch`, :func:`torchrun_function`) is in :mod:`mmcourse.distributed_launch`. Notebook 08
imports all of them from here.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DistributedSampler

from mmcourse.checks import check_int
from mmcourse.classifier import MultimodalClassifier
# The data and the launcher have their own modules; notebook 08 imports save_features, launch,
# torchrun_function and command_text from here, with the training they serve.
from mmcourse.distributed_data import (Data, check_data, data_to, load_data,  # noqa: F401
                                       save_features, take)
from mmcourse.distributed_launch import command_text, launch, torchrun_function  # noqa: F401
from mmcourse.fusion import ConcatFusion

#: Environment variables torchrun sets in every process it starts.
TORCHRUN_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
BACKENDS = ("auto", "gloo", "nccl")


# ------------------------------------------------------------------------------- sharding

def rank_batches(n: int, world_size: int, rank: int, batch_size: int, accum_steps: int = 1,
                 epoch: int = 0, seed: int = 0) -> list[list[torch.Tensor]]:
    """The sample indices one rank trains on in one epoch, grouped for gradient accumulation.

    A :class:`~torch.utils.data.DistributedSampler` (shuffled with ``seed`` and ``epoch``, padded
    so every rank gets ``ceil(n / world_size)`` indices) gives this rank its shard; the shard is
    cut into micro-batches of ``batch_size`` and those into groups of ``accum_steps``. Incomplete
    micro-batches and groups at the end are dropped, so every optimizer step of every rank sees
    exactly ``batch_size * accum_steps`` samples and the global batch is always
    ``world_size * accum_steps * batch_size``.

    Returns: a list (one entry per optimizer step) of ``accum_steps`` int64 tensors (batch_size,).
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    sampler = DistributedSampler(range(n), num_replicas=world_size, rank=rank, shuffle=True,
                                 seed=seed)
    sampler.set_epoch(epoch)   # a new shuffle every epoch, the same on every rank
    order = torch.tensor(list(sampler), dtype=torch.long)
    per_step = batch_size * accum_steps
    steps = len(order) // per_step
    return [[order[s * per_step + j * batch_size: s * per_step + (j + 1) * batch_size]
             for j in range(accum_steps)] for s in range(steps)]


def check_sizes(n: int, world_size: int, batch_size: int | None = None,
                accum_steps: int = 1, global_batch_size: int | None = None) -> int:
    """Validate the batch settings; return the per-rank micro-batch size.

    Give either ``batch_size`` (per rank, per micro-step) or ``global_batch_size``, which must be
    divisible by ``world_size * accum_steps``. Raises ValueError with what to change.
    """
    check_int(world_size, "world size")
    check_int(accum_steps, "accumulation steps")
    if (batch_size is None) == (global_batch_size is None):
        raise ValueError("give exactly one of batch_size (per rank) and global_batch_size")
    if global_batch_size is not None:
        if global_batch_size < 1 or global_batch_size % (world_size * accum_steps):
            raise ValueError(
                f"the global batch size {global_batch_size} is not divisible by world size "
                f"{world_size} x accumulation steps {accum_steps} = {world_size * accum_steps}; "
                f"choose a multiple of {world_size * accum_steps} or give --batch-size per rank")
        batch_size = global_batch_size // (world_size * accum_steps)
    check_int(batch_size, "the per-rank batch size")
    per_rank = -(-n // world_size)
    if per_rank < batch_size * accum_steps:
        raise ValueError(
            f"{n} samples over {world_size} ranks give {per_rank} per rank, fewer than one "
            f"optimizer step needs ({batch_size} x {accum_steps} accumulation steps); use a "
            f"smaller batch, fewer accumulation steps or fewer processes")
    return batch_size


# ---------------------------------------------------------------------------------- model

def make_model(dims: Mapping[str, int], num_classes: int = 8, hidden: int = 64,
               seed: int = 0) -> MultimodalClassifier:
    """The course's concatenation fusion head on features, seeded: ``batch -> logits (B, C)``.
    No dropout and no BatchNorm, so every rank computes exactly what one process would."""
    torch.manual_seed(seed)
    return MultimodalClassifier({m: None for m in dims}, ConcatFusion(dict(dims), hidden),
                                num_classes)


def accumulate(model: nn.Module, micro_batches: Sequence[Mapping[str, Any]]) -> torch.Tensor:
    """Forward and backward over ``k`` micro-batches, adding their gradients into ``.grad``.

    Each loss is divided by ``k``, so the summed gradient is that of the mean loss over all
    ``k`` micro-batches (equal sizes): the gradient of one batch ``k`` times larger. Under DDP,
    the first ``k - 1`` backward passes run inside ``model.no_sync()`` (no all-reduce); the last
    one all-reduces the accumulated gradients once. Returns the mean loss (detached).
    """
    k = len(micro_batches)
    if k == 0:
        raise ValueError("accumulate needs at least one micro-batch")
    total = torch.zeros(())
    for j, batch in enumerate(micro_batches):
        last = j == k - 1
        sync = contextlib.nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync()
        with sync:
            loss = F.cross_entropy(model(batch), batch["label"]) / k
            loss.backward()
        total = total + loss.detach().cpu()
    return total


def weights_vector(model: nn.Module) -> torch.Tensor:
    """Every parameter, flattened into one float32 CPU vector (in ``named_parameters`` order)."""
    return torch.cat([p.detach().float().cpu().flatten() for p in model.parameters()])


def checksum(model_or_vector: nn.Module | torch.Tensor) -> str:
    """sha256 of the weights' bytes (first 16 hex digits): equal only if bit-identical."""
    vec = model_or_vector if isinstance(model_or_vector, torch.Tensor) else \
        weights_vector(model_or_vector)
    return hashlib.sha256(vec.contiguous().numpy().tobytes()).hexdigest()[:16]


# ------------------------------------------------------------------------------- training

def pick_backend(requested: str = "auto") -> str:
    """``"auto"`` -> ``"nccl"`` when CUDA is available, else ``"gloo"``; ``"nccl"`` without
    CUDA raises a RuntimeError."""
    if requested not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {requested!r}")
    if requested == "auto":
        return "nccl" if torch.cuda.is_available() else "gloo"
    if requested == "nccl" and not torch.cuda.is_available():
        raise RuntimeError("the nccl backend needs CUDA GPUs, and none is available; use "
                           "--backend gloo (or auto) on the CPU")
    return requested


def torchrun_env() -> dict[str, int]:
    """RANK, LOCAL_RANK and WORLD_SIZE of this process, as torchrun sets them; a RuntimeError
    with the command to use when they are missing (started with plain ``python``)."""
    missing = [k for k in TORCHRUN_ENV if k not in os.environ]
    if missing:
        raise RuntimeError(
            f"the environment variables {', '.join(missing)} are not set: this script must be "
            f"started by torchrun, which starts one process per rank and sets them, e.g.\n"
            f"  python -m torch.distributed.run --standalone --nproc_per_node=2 "
            f"-m mmcourse.distributed --out runs/ddp")
    return {k: int(os.environ[k]) for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}


def train_worker(args: argparse.Namespace) -> dict[str, Any] | None:
    """The body of one rank: DDP training as set by ``args`` (see :func:`parse_args`).

    Returns the results dict on rank 0 (also written to ``args.out/results.json``), None on the
    other ranks.
    """
    env = torchrun_env()
    rank, local_rank, world_size = env["RANK"], env["LOCAL_RANK"], env["WORLD_SIZE"]
    backend = pick_backend(args.backend)
    if backend == "nccl":
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"local rank {local_rank} has no GPU: this machine has "
                               f"{torch.cuda.device_count()}; start at most that many processes "
                               f"per node (--nproc_per_node)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    data = load_data(args.data, seed=args.seed)
    n = len(data["labels"])
    batch_size = check_sizes(n, world_size, args.batch_size, args.accum_steps,
                             args.global_batch_size)
    data = data_to(data, device)   # in memory: each rank will read only its shard

    dist.init_process_group(backend)   # reads RANK, WORLD_SIZE, MASTER_ADDR/PORT from torchrun
    try:
        dims = {m: x.shape[1] for m, x in data["features"].items()}
        model = make_model(dims, int(data["labels"].max()) + 1, args.hidden, args.seed).to(device)
        # DDP broadcasts rank 0's weights to every rank, then all-reduces gradients in backward
        ddp = nn.parallel.DistributedDataParallel(
            model, device_ids=[local_rank] if device.type == "cuda" else None)
        optimizer = torch.optim.AdamW(ddp.parameters(), lr=args.lr)
        losses, epoch_losses = [], []
        start = time.perf_counter()
        for epoch in range(args.epochs):
            steps = rank_batches(n, world_size, rank, batch_size, args.accum_steps, epoch,
                                 args.seed)
            epoch_sum = 0.0
            for group in steps:
                optimizer.zero_grad(set_to_none=True)
                loss = accumulate(ddp, [take(data, i.to(device)) for i in group])
                optimizer.step()
                # for the log only: the mean loss over the global batch (all ranks)
                global_loss = loss.to(device)
                dist.all_reduce(global_loss)
                losses.append(global_loss.item() / world_size)
                epoch_sum += losses[-1]
            epoch_losses.append(epoch_sum / len(steps))
            if rank == 0:
                print(f"epoch {epoch + 1}/{args.epochs}: mean training loss "
                      f"{epoch_losses[-1]:.3f} ({len(steps)} steps of {world_size} ranks x "
                      f"{args.accum_steps} x {batch_size} samples)", flush=True)
        seconds = time.perf_counter() - start

        # every rank's weights, gathered on every rank, to show they are the same
        vec = weights_vector(model).to(device)
        gathered = [torch.empty_like(vec) for _ in range(world_size)]
        dist.all_gather(gathered, vec)
        results = None
        if rank == 0:
            gathered = [g.cpu() for g in gathered]
            results = {
                "backend": backend, "world_size": world_size, "device": device.type,
                "data": "synthetic" if str(args.data) == "synthetic" else "file",
                "samples": n, "per_rank_batch": batch_size, "accum_steps": args.accum_steps,
                "global_batch": world_size * args.accum_steps * batch_size,
                "epochs": args.epochs, "lr": args.lr, "seed": args.seed, "hidden": args.hidden,
                "steps": len(losses), "losses": losses, "epoch_losses": epoch_losses,
                "rank_checksums": [checksum(g) for g in gathered],
                "rank_weight_sums": [float(g.double().sum()) for g in gathered],
                "max_rank_difference": max(float((g - gathered[0]).abs().max())
                                           for g in gathered),
                "train_seconds": seconds,
            }
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            torch.save({k: v.cpu() for k, v in model.state_dict().items()}, out / "model.pt")
            (out / "results.json").write_text(json.dumps(results, indent=1))
            print(f"rank 0 wrote results.json and model.pt; weights identical on all "
                  f"{world_size} ranks: {len(set(results['rank_checksums'])) == 1}", flush=True)
        # wait for every rank before tearing down: without it, a rank that exits while another
        # is still in a collective can make the run abort at exit
        dist.barrier()
    finally:
        dist.destroy_process_group()
    return results


def train_single_process(data: Data, world_size: int, batch_size: int, accum_steps: int = 1,
                         epochs: int = 5, lr: float = 2e-3, seed: int = 0, hidden: int = 64,
                         device: str | torch.device = "cpu", threads: int | None = 1
                         ) -> tuple[MultimodalClassifier, list[float]]:
    """Train the model of the DDP run in ONE process on the same global batches.

    Each optimizer step takes the ``accum_steps`` micro-batches of every rank that
    :func:`rank_batches` gives (the DistributedSampler's order) and makes them ONE batch of
    ``world_size * accum_steps * batch_size`` samples. Mathematically this is the DDP step;
    numerically the sums run in another order, so the weights agree to float rounding, not bit
    for bit. ``threads``: torch threads while training (1, like each rank; None: unchanged).

    Returns: (the trained model, the loss of every optimizer step).
    """
    data = data_to(check_data(data), device)
    n = len(data["labels"])
    check_sizes(n, world_size, batch_size, accum_steps)
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        dims = {m: x.shape[1] for m, x in data["features"].items()}
        model = make_model(dims, int(data["labels"].max()) + 1, hidden, seed).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
        losses = []
        for epoch in range(epochs):
            shards = [rank_batches(n, world_size, r, batch_size, accum_steps, epoch, seed)
                      for r in range(world_size)]
            for step in range(len(shards[0])):
                index = torch.cat([i for shard in shards for i in shard[step]]).to(device)
                batch = take(data, index)
                optimizer.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(batch), batch["label"])
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
    finally:
        torch.set_num_threads(before)
    return model, losses


# ------------------------------------------------------------------------------------ CLI

def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m torch.distributed.run --standalone --nproc_per_node=N -m mmcourse.distributed",
        description="Train the course's fusion head with DistributedDataParallel, one process "
                    "per rank (start it with torchrun).")
    parser.add_argument("--data", default="synthetic",
                        help="'synthetic' (default) or a file from mmcourse.distributed.save_features")
    parser.add_argument("--out", default="runs/ddp", help="where rank 0 writes results.json and "
                        "model.pt (default runs/ddp)")
    parser.add_argument("--epochs", type=int, default=5)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--batch-size", type=int, default=None,
                      help="samples per rank per micro-step (default 64)")
    size.add_argument("--global-batch-size", type=int, default=None,
                      help="samples per optimizer step over all ranks; must be divisible by "
                           "world size x accumulation steps")
    parser.add_argument("--accum-steps", type=int, default=1,
                        help="micro-batches per optimizer step (gradient accumulation)")
    parser.add_argument("--lr", type=float, default=2e-3, help="AdamW learning rate")
    parser.add_argument("--hidden", type=int, default=64, help="width of the fusion layer")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="auto: nccl when CUDA is available, else gloo")
    args = parser.parse_args(argv)
    if args.batch_size is None and args.global_batch_size is None:
        args.batch_size = 64
    for name in ("epochs", "accum_steps", "hidden"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.lr <= 0:
        parser.error(f"--lr must be positive, got {args.lr}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        torchrun_env()
        pick_backend(args.backend)
    except RuntimeError as err:   # not started by torchrun, or nccl without a GPU
        raise SystemExit(f"mmcourse.distributed: error: {err}") from None
    try:
        train_worker(args)
    except (ValueError, FileNotFoundError) as err:   # bad settings: a message, not a traceback
        raise SystemExit(f"mmcourse.distributed: error: {err}") from None


if __name__ == "__main__":
    main()
