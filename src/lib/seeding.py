"""Seeds and determinism switches.

Every random draw in the book comes from an explicit seed: chapters call
:func:`seed_everything` once in their set-up cell and pass generators from
:func:`torch_generator` / :func:`numpy_rng` to the library functions that draw.
"""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch

from lib.config import is_paper
from lib.exact import check_count, check_seed

__all__ = ["check_seed", "seed_everything", "torch_generator", "numpy_rng"]


def seed_everything(seed: int, deterministic: bool = True, threads: int | None = None) -> None:
    """Seed Python's ``random``, NumPy's legacy global state and torch (CPU and CUDA).

    With ``deterministic=True`` also switch torch to deterministic algorithms (an error is
    raised by torch if an operation has no deterministic implementation) and set the
    cuBLAS workspace variable that CUDA needs for that.

    ``seed``: an integer in ``[0, 2**63)`` (:func:`lib.exact.check_seed`; NumPy and 0-d
    torch integers accepted, bools refused).  ``threads`` sets torch's number of CPU threads,
    an integer from 1 to the number of cores
    (``os.cpu_count()``; more would only oversubscribe, and torch crashes for absurd counts,
    so a larger value raises ``ValueError``).  The default ``None`` means one thread
    under the ``quick`` profile and torch's default under ``paper``: the book's CPU work is
    many small operations, for which one thread is fastest and free of OpenMP contention on
    a busy 2-core machine, and the thread count can change the order (hence the last bits)
    of parallel floating-point reductions.  Returns nothing; use :func:`torch_generator` /
    :func:`numpy_rng` for explicit generators.
    """
    seed = check_seed(seed)
    if not isinstance(deterministic, (bool, np.bool_)):
        raise TypeError(f"deterministic must be a bool, got {type(deterministic).__name__}")
    cores = os.cpu_count() or 1
    if threads is not None:
        threads = check_count(threads, "threads", minimum=1, maximum=cores)
    if threads is None and not is_paper():
        threads = 1
    if threads is not None:
        torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(bool(deterministic))


def torch_generator(seed: int, device: Any = "cpu") -> Any:
    """A fresh ``torch.Generator`` on ``device`` seeded with ``seed``."""
    gen = torch.Generator(device=device)
    gen.manual_seed(check_seed(seed))
    return gen


def numpy_rng(seed: int) -> np.random.Generator:
    """A fresh NumPy ``Generator`` (PCG64) seeded with ``seed``."""
    return np.random.default_rng(check_seed(seed))
