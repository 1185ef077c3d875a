"""Sweeps of independent tasks (seeds x step sizes x formats x widths), serial or scaled out.

``run(fn, tasks)`` returns ``[fn(t) for t in tasks]``, in task order, computed through joblib:

* in this process, one task after the other, when the sweep has one job: the default under
  the ``quick`` profile (CI, ``pytest``, Binder);
* in worker processes (joblib's ``loky``), one per core, under the ``paper`` profile;
* on whatever backend the caller selected: ``with joblib.parallel_config(backend="dask"):``
  (with a ``dask.distributed.Client`` alive) runs the same call on a Dask cluster, and
  ``BOOK_SWEEP_BACKEND=dask`` does the same without touching the code (it connects to the
  scheduler at ``DASK_SCHEDULER_ADDRESS``, else starts a local cluster once per process).

``BOOK_SWEEP_JOBS=N`` overrides the number of jobs (``1``: serial in this process; ``-1``: all
of the backend's workers).  A sweep started inside a task of another sweep runs serially in that
task (pools never nest: the outer sweep already uses the cores).  The results do not depend on the backend, the number of jobs or
the order in which tasks run: each task runs with one torch thread, the caller's
deterministic-algorithms switch and default dtype, and its randomness from its own seed (taken
from the task by ``fn``, or set on the global generators by ``seed=``), never from a generator
shared between tasks.  Dask is an optional extra: nothing here imports it unless asked for.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import joblib
import joblib.parallel
import numpy as np
import torch

from lib.config import is_paper, progress
from lib.exact import check_count
from lib.seeding import check_seed

JOBS_ENV = "BOOK_SWEEP_JOBS"
BACKEND_ENV = "BOOK_SWEEP_BACKEND"
#: The joblib backends a sweep can be sent to by name (``backend=`` or ``BOOK_SWEEP_BACKEND``).
BACKENDS: tuple[str, ...] = ("sequential", "loky", "threading", "dask")

T = TypeVar("T")
R = TypeVar("R")

#: Serialises seeded tasks within one process (the global generators are per process, and the
#: threading and Dask backends run several tasks of one process at once).
_GLOBAL_RNG_LOCK = threading.RLock()
#: Marks the thread of this process that is running a sweep task (nested sweeps run serially).
_TASK = threading.local()
#: The Dask client started for ``BOOK_SWEEP_BACKEND=dask`` when none was running (kept alive).
_DASK_CLIENT: Any = None


def _check_jobs(jobs: Any, name: str) -> int:
    """A positive integer or -1 (Python, NumPy or 0-d torch integers; bools refused)."""
    message = f"{name} must be a positive int or -1 (all workers), got {jobs!r}"
    try:
        value = check_count(jobs, name, minimum=None)
    except (TypeError, ValueError):
        raise ValueError(message) from None
    if not (value >= 1 or value == -1):
        raise ValueError(message)
    return value


def _env_jobs() -> int | None:
    raw = os.environ.get(JOBS_ENV, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{JOBS_ENV}={raw!r} must be a positive int or -1 (all workers)") from None
    return _check_jobs(value, f"{JOBS_ENV}={raw!r}")


def _check_backend(backend: Any, name: str) -> str:
    if not isinstance(backend, str) or backend.strip().lower() not in BACKENDS:
        raise ValueError(f"{name} must be one of {', '.join(BACKENDS)}, got {backend!r}")
    return backend.strip().lower()


def default_jobs() -> int:
    """The number of jobs of a sweep when nothing selects one: ``BOOK_SWEEP_JOBS`` if set,
    else 1 under ``quick`` and the number of usable cores (``joblib.cpu_count()``) under
    ``paper``, except in a process that has started CUDA (1: its sweeps stay on its GPU in one
    process rather than open a CUDA context per worker).  A ``BOOK_SWEEP_JOBS`` that is not a positive int or -1 raises ``ValueError``.
    """
    env = _env_jobs()
    if env is not None:
        return env
    if torch.cuda.is_initialized():     # GPU work: one process, not a CUDA context per worker
        return 1
    return joblib.cpu_count() if is_paper() else 1


def _context() -> tuple[str | None, int | None]:
    """The backend name and ``n_jobs`` set by an enclosing ``joblib.parallel_config`` (or
    ``parallel_backend``); ``None`` for what it leaves unset."""
    jp = joblib.parallel
    config = getattr(jp._backend, "config", jp.default_parallel_config)
    chosen = config["backend"] is not jp.default_parallel_config["backend"]
    active, n_jobs = jp.get_active_backend()
    name = None
    if chosen:
        name = next((k for k, cls in jp.BACKENDS.items() if type(active) is cls), type(active).__name__)
    return name, n_jobs


def plan(jobs: int | None = None, backend: str | None = None) -> tuple[str, int]:
    """``(backend, jobs)`` that :func:`run` would use: ``("serial", 1)`` in this process, else
    a joblib backend name and its ``n_jobs`` (``-1``: all of its workers).

    Inside a task of another sweep: ``("serial", 1)``, whatever is asked (pools never nest).
    Otherwise, precedence, for the backend: the ``backend`` argument, an enclosing
    ``joblib.parallel_config``, ``BOOK_SWEEP_BACKEND``, else ``loky`` (processes).  For the jobs:
    the ``jobs`` argument, the enclosing ``parallel_config``'s ``n_jobs``, ``BOOK_SWEEP_JOBS``,
    ``-1`` when a backend was selected, else :func:`default_jobs`.  One job means serial in this
    process, whatever the backend.  Bad values raise ``ValueError`` naming where they came from.
    """
    if jobs is not None:
        jobs = _check_jobs(jobs, "jobs")
    if backend is not None:
        backend = _check_backend(backend, "backend")
    if getattr(_TASK, "active", False):
        return "serial", 1
    ctx_backend, ctx_jobs = _context()
    env_raw = os.environ.get(BACKEND_ENV, "").strip()
    env_backend = _check_backend(env_raw, BACKEND_ENV) if env_raw else None
    name = backend or ctx_backend or env_backend
    if jobs is None and ctx_jobs is not None:
        jobs = _check_jobs(ctx_jobs, "joblib.parallel_config(n_jobs)")
    if jobs is None:
        jobs = _env_jobs()
    if jobs is None:
        jobs = -1 if name is not None else default_jobs()
    if jobs == 1 or name == "sequential":
        return "serial", 1
    return name or "loky", jobs


def _switches() -> tuple[bool, bool, torch.dtype]:
    return (torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(), torch.get_default_dtype())


def _set_switches(switches: tuple[bool, bool, torch.dtype]) -> None:
    if _switches() != switches:
        torch.use_deterministic_algorithms(switches[0], warn_only=switches[1])
        torch.set_default_dtype(switches[2])


def _cuda_devices() -> list[int]:
    return list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []


def _call(fn: Callable[[Any], Any], task: Any, seed: int | None,
          switches: tuple[bool, bool, torch.dtype]) -> Any:
    """Run one task where it lands (this process, a worker thread or a worker process): one
    torch thread, the caller's switches, and, with ``seed``, Python's, NumPy's legacy and
    torch's global generators seeded with it and restored afterwards."""
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)
    _set_switches(switches)
    outer, _TASK.active = getattr(_TASK, "active", False), True
    try:
        return _seeded(fn, task, seed)
    finally:
        _TASK.active = outer


def _seeded(fn: Callable[[Any], Any], task: Any, seed: int | None) -> Any:
    if seed is None:
        return fn(task)
    with _GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=_cuda_devices()):
        saved = random.getstate(), np.random.get_state()
        try:
            random.seed(seed)
            np.random.seed(seed % 2**32)
            torch.random.default_generator.manual_seed(seed)
            if torch.cuda.is_available():   # lazy before CUDA starts: a fresh worker seeds it too
                torch.cuda.manual_seed_all(seed)
            return fn(task)
        finally:
            random.setstate(saved[0])
            np.random.set_state(saved[1])


def _dask_client() -> Any:
    """The running Dask client, else one started here (``DASK_SCHEDULER_ADDRESS`` if set, else
    a local cluster of process workers); ``ImportError`` naming the extra without Dask."""
    global _DASK_CLIENT
    try:
        from dask.distributed import Client, get_client  # noqa: PLC0415 -- optional extra
    except ImportError as e:
        raise ImportError(f"{BACKEND_ENV}=dask needs dask.distributed: "
                          "pip install 'dask[distributed]'") from e
    try:
        return get_client()
    except ValueError:
        _DASK_CLIENT = Client()
        return _DASK_CLIENT


def _checked_tasks(fn: Any, tasks: Any, seed: Any, desc: Any) -> list[Any]:
    if not callable(fn):
        raise TypeError(f"fn must be callable as fn(task), got {type(fn).__name__}")
    if isinstance(tasks, (str, bytes, Mapping)) or not isinstance(tasks, Iterable):
        raise TypeError(f"tasks must be an iterable of tasks (a list, a range, itertools.product, "
                        f"...), got {type(tasks).__name__}")
    if seed is not None and not callable(seed):
        raise TypeError(f"seed must be None or callable as seed(task) -> int, got {type(seed).__name__}")
    if not isinstance(desc, str):
        raise TypeError(f"desc must be a str, got {type(desc).__name__}")
    return list(tasks)


def run(fn: Callable[[T], R], tasks: Iterable[T], *, jobs: int | None = None,
        backend: str | None = None, seed: Callable[[T], int] | None = None,
        desc: str = "sweep") -> list[R]:
    """``[fn(t) for t in tasks]``, in task order, on the backend and jobs of :func:`plan`.

    Each task runs with one torch thread and the caller's deterministic-algorithms switch
    and default dtype; with ``seed`` (a function of the task, e.g. ``seed=lambda t: t[0]``)
    the global generators are seeded with ``seed(task)`` around it (and the caller's restored),
    so a task's draws never depend on the other tasks.  ``fn`` must be picklable by cloudpickle
    for the process backends (functions, lambdas and ``functools.partial`` are) and return
    picklable results.  The caller's torch threads and switches are restored afterwards.  A
    progress bar (``desc``) follows :func:`lib.config.progress`.  Guards: ``fn`` and ``seed``
    callable, ``tasks`` an iterable (not a string or mapping), ``jobs`` and ``backend`` as in
    :func:`plan`, every ``seed(task)`` an int in [0, 2**63); errors of a task are re-raised.
    """
    items = _checked_tasks(fn, tasks, seed, desc)
    name, n_jobs = plan(jobs, backend)
    seeds = [None if seed is None else check_seed(seed(t), f"seed(tasks[{i}])") for i, t in enumerate(items)]
    switches, threads = _switches(), torch.get_num_threads()
    # the backend joblib is given: None keeps the one an enclosing parallel_config selected
    chosen = name if backend is not None or _context()[0] is None else None
    results: list[Any] = []
    try:
        with progress(total=len(items), desc=desc) as bar:
            if name == "serial" or not items:
                for t, s in zip(items, seeds):
                    results.append(_call(fn, t, s, switches))
                    bar.update()
                return results
            if chosen == "dask":
                _dask_client()
            config = joblib.parallel_config(backend=chosen) if chosen else contextlib.nullcontext()
            with config:
                calls = (joblib.delayed(_call)(fn, t, s, switches) for t, s in zip(items, seeds))
                try:
                    parallel = joblib.Parallel(n_jobs=n_jobs, return_as="generator")
                except ValueError as e:     # a backend that returns lists only (multiprocessing)
                    if "return_as" not in str(e):
                        raise
                    parallel = joblib.Parallel(n_jobs=n_jobs)
                for r in parallel(calls):
                    results.append(r)
                    bar.update()
            return results
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        _set_switches(switches)
