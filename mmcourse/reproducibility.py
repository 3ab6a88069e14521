"""One call that makes a run repeatable: ``seed_everything(seed)``."""
from __future__ import annotations

import os
import random

import numpy as np
import torch

from mmcourse.checks import check_int


def seed_everything(seed: int = 0, deterministic: bool = True) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (CPU and every GPU) with ``seed``.

    Args:
        seed: a non-negative integer.
        deterministic: also ask PyTorch for deterministic algorithms where they exist
            (``warn_only=True``: an operation without a deterministic version warns instead of
            failing) and turn off cuDNN's autotuner, which picks kernels by timing.

    Returns:
        A ``torch.Generator`` seeded with ``seed``, handy for ``DataLoader(generator=...)`` so
        that shuffling, and the seeds of worker processes, repeat too.
    """
    check_int(seed, "seed", minimum=0)
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # seeds CUDA and MPS generators too
    if deterministic:
        # cuBLAS needs this to be deterministic on GPUs; harmless elsewhere.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    else:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def seed_worker(worker_id: int) -> None:
    """``DataLoader(worker_init_fn=seed_worker)``: seed NumPy and ``random`` in each worker.

    PyTorch seeds each worker's torch generator from the loader's generator; NumPy and Python's
    ``random`` are left alone, so augmentation written with them would repeat across workers.
    """
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)
