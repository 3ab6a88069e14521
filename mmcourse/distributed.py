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

From Python (a notebook), :func:`launch` builds that command, runs it and returns the results;
:func:`train_single_process` trains the same model on the same global batches in one process,
for comparison; :func:`torchrun_function` runs a small self-contained function on several
processes (the all-reduce demo of the notebook).
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import inspect
import json
import os
import shlex
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DistributedSampler

from mmcourse.checks import check_int
from mmcourse.classifier import MultimodalClassifier
from mmcourse.fusion import ConcatFusion

#: Environment variables torchrun sets in every process it starts.
TORCHRUN_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
BACKENDS = ("auto", "gloo", "nccl")

Data = dict[str, Any]   # {"features": {m: (N, D)}, "present": {m: bool (N,)}, "labels": (N,)}


# ------------------------------------------------------------------------------------ data

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


# ------------------------------------------------------------------------------ launching

def torchrun_command(nproc_per_node: int = 2) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc_per_node=N`` with this Python
    (a bare ``torchrun`` may not be on a notebook kernel's PATH). ``--standalone`` starts a
    rendezvous on this machine on a free port."""
    check_int(nproc_per_node, "nproc_per_node")
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc_per_node}"]


def _run(command: list[str], threads: int, timeout: float) -> subprocess.CompletedProcess:
    # one thread per rank: several ranks share the cores, and torchrun prints a banner when
    # OMP_NUM_THREADS is unset
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    env.pop("MMCOURSE_FIGURE_AUDIT", None)   # the ranks draw no figures: skip matplotlib
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        lines = (proc.stdout + proc.stderr).strip().splitlines()
        errors = [ln for ln in lines if "Error" in ln and not ln.lstrip().startswith("File ")]
        hint = f"\nfirst error line: {errors[0].strip()}" if errors else ""
        raise RuntimeError(f"torchrun exited with status {proc.returncode}{hint}\nlast lines of "
                           f"its output:\n" + "\n".join(lines[-15:]))
    return proc


def launch(nproc_per_node: int = 2, *, out: str | os.PathLike, data: str | os.PathLike = "synthetic",
           epochs: int = 5, batch_size: int | None = 64, accum_steps: int = 1,
           global_batch_size: int | None = None, lr: float = 2e-3, seed: int = 0,
           hidden: int = 64, backend: str = "auto", threads: int = 1,
           timeout: float = 300) -> dict[str, Any]:
    """Run ``python -m torch.distributed.run --standalone --nproc_per_node=N -m
    mmcourse.distributed ...`` and return rank 0's results (see the module docstring), plus
    ``command`` (list of str), ``log`` (rank 0's printed lines) and ``wall_seconds`` (start-up
    included). Raises RuntimeError with the end of the output when a rank fails."""
    if global_batch_size is not None:
        batch_size = None
    command = torchrun_command(nproc_per_node) + [
        "-m", "mmcourse.distributed", "--data", str(data), "--out", str(out),
        "--epochs", str(epochs), "--accum-steps", str(accum_steps), "--lr", str(lr),
        "--seed", str(seed), "--hidden", str(hidden), "--backend", backend]
    command += ["--batch-size", str(batch_size)] if global_batch_size is None else \
        ["--global-batch-size", str(global_batch_size)]
    start = time.perf_counter()
    proc = _run(command, threads, timeout)
    wall = time.perf_counter() - start
    results = json.loads((Path(out) / "results.json").read_text())
    results.update(command=command, log=[ln for ln in proc.stdout.splitlines() if ln.strip()],
                   wall_seconds=wall)
    return results


def torchrun_function(fn: Callable[[], Any], nproc_per_node: int = 2, threads: int = 1,
                      timeout: float = 120) -> list[Any]:
    """Run a small self-contained function on ``nproc_per_node`` processes with torchrun and
    return what each rank's call returned, in rank order.

    ``fn`` takes no arguments and may use only ``torch``, ``dist`` (torch.distributed), ``os``
    and what it imports itself: its source code is written into a temporary script (header
    ``import os, torch, torch.distributed as dist``), which torchrun starts; each rank saves
    ``fn()`` with ``torch.save`` (tensors, numbers, lists, dicts).
    """
    source = textwrap.dedent(inspect.getsource(fn))
    with tempfile.TemporaryDirectory(prefix="mmcourse-torchrun-") as tmp:
        script = Path(tmp) / "script.py"
        script.write_text(
            "import os\nimport torch\nimport torch.distributed as dist\n\n" + source +
            f"\n\nif __name__ == '__main__':\n"
            f"    _result = {fn.__name__}()\n"
            f"    torch.save(_result, os.path.join({tmp!r}, f\"rank{{os.environ['RANK']}}.pt\"))\n")
        _run(torchrun_command(nproc_per_node) + [str(script)], threads, timeout)
        return [torch.load(Path(tmp) / f"rank{r}.pt", weights_only=True)
                for r in range(nproc_per_node)]


def command_text(command: Sequence[str], replace: Mapping[str, str] | None = None) -> str:
    """A command list as one shell line: this Python as ``python``, and ``replace`` applied
    (e.g. a temporary folder -> ``$RUN``)."""
    text = shlex.join(["python" if c == sys.executable else c for c in command])
    for old, new in (replace or {}).items():
        text = text.replace(old, new)
    return text


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
