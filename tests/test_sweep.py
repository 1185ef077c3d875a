"""lib.sweep: a sweep returns ``[fn(t) for t in tasks]`` whatever runs it.

The reference is the plain list comprehension in this process with one torch thread (what
``run`` promises), or, for per-task seeding, the draws after seeding the generators by hand.
Backends: serial, loky processes, threads, and a local Dask cluster (skipped only when
``dask.distributed`` is not importable: Dask is an optional extra).
"""

from __future__ import annotations

import itertools
import os
import random
import threading
import time

import joblib
import numpy as np
import pytest
import torch

from lib import sweep


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (sweep.JOBS_ENV, sweep.BACKEND_ENV, "BOOK_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BOOK_PROGRESS", "0")


def _work(task: tuple[int, int]) -> tuple[bytes, bytes, int, bool]:
    """A task that draws from its own seed and does float32 matrix work whose last bits could
    depend on the thread count; also reports the worker's threads and determinism switch."""
    seed, n = task
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=g, dtype=torch.float32)
    b = torch.randn(n, n, generator=g, dtype=torch.float32)
    x = np.random.default_rng(seed).standard_normal(n)
    y = (a @ b).sum(dim=1).numpy().astype(np.float64) * x
    return (a @ b).numpy().tobytes(), y.tobytes(), torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()


TASKS = [(s, n) for s, n in itertools.product((3, 17, 2019), (16, 96))]


def _reference(tasks: list) -> list:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return [_work(t) for t in tasks]
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("jobs, backend", [(1, None), (2, "loky"), (3, "threading"), (2, "sequential")])
def test_results_identical_on_every_backend(jobs: int | None, backend: str | None) -> None:
    threads = torch.get_num_threads()
    got = sweep.run(_work, TASKS, jobs=jobs, backend=backend)
    assert got == _reference(TASKS)
    assert all(r[2] == 1 for r in got)                        # one torch thread per task
    assert all(r[3] == torch.are_deterministic_algorithms_enabled() for r in got)
    assert torch.get_num_threads() == threads                 # the caller's threads are back


def test_results_identical_under_parallel_config() -> None:
    """The backend an enclosing ``joblib.parallel_config`` selects runs the same sweep."""
    with joblib.parallel_config(backend="threading", n_jobs=2):
        assert sweep.plan() == ("threading", 2)
        got = sweep.run(_work, TASKS)
    assert got == _reference(TASKS)


def _slow_identity(task: int) -> int:
    time.sleep(0.02 * (8 - task))                             # early tasks finish last
    return task


@pytest.mark.parametrize("backend", ["threading", "serial"])
def test_order_preserved(backend: str) -> None:
    kwargs = {"jobs": 4, "backend": "threading"} if backend == "threading" else {}
    assert sweep.run(_slow_identity, range(8), **kwargs) == list(range(8))
    assert sweep.run(_slow_identity, iter([5, 1, 7]), **kwargs) == [5, 1, 7]   # any iterable
    assert sweep.run(_slow_identity, [], **kwargs) == []


def _global_draws(task: int) -> tuple[float, float, list[float]]:
    return random.random(), float(np.random.rand()), torch.rand(3, dtype=torch.float64).tolist()


def _seeded_by_hand(s: int) -> tuple[float, float, list[float]]:
    random.seed(s)
    np.random.seed(s % 2**32)
    torch.manual_seed(s)
    return _global_draws(s)


@pytest.mark.parametrize("jobs, backend", [(1, None), (4, "threading")])
def test_per_task_seeds_do_not_depend_on_order(jobs: int, backend: str | None) -> None:
    """``seed=`` seeds the global generators per task: a task's draws are those after seeding by
    hand, whichever tasks ran before it (or beside it, on threads), and the caller's generators
    are left as they were."""
    tasks = list(range(10))
    seed = lambda t: 1000 + 7 * t                             # noqa: E731
    torch.manual_seed(5)
    np.random.seed(5)
    random.seed(5)
    forward = sweep.run(_global_draws, tasks, seed=seed, jobs=jobs, backend=backend)
    after_run = _global_draws(-1)
    backward = sweep.run(_global_draws, tasks[::-1], seed=seed, jobs=jobs, backend=backend)
    assert forward == backward[::-1]
    torch.manual_seed(5)
    np.random.seed(5)
    random.seed(5)
    assert after_run == _global_draws(-1)                     # the caller's state is untouched
    assert forward == [_seeded_by_hand(seed(t)) for t in tasks]
    assert len({str(r) for r in forward}) == len(tasks)       # the seeds do differ


def test_explicit_task_seeds_do_not_depend_on_order() -> None:
    shuffled = TASKS[::-1]
    assert sweep.run(_work, shuffled, jobs=2, backend="threading") == _reference(TASKS)[::-1]


def _fail_on_three(task: int) -> int:
    if task == 3:
        raise ValueError("task 3 failed")
    return task


@pytest.mark.parametrize("jobs, backend", [(1, None), (2, "threading")])
def test_a_failing_task_fails_the_sweep(jobs: int, backend: str | None) -> None:
    with pytest.raises(ValueError, match="task 3 failed"):
        sweep.run(_fail_on_three, range(6), jobs=jobs, backend=backend)


def test_plan_follows_profile_environment_and_context(monkeypatch: pytest.MonkeyPatch) -> None:
    assert sweep.plan() == ("serial", 1)
    assert sweep.default_jobs() == 1
    monkeypatch.setenv("BOOK_PROFILE", "paper")
    cores = joblib.cpu_count()
    assert sweep.default_jobs() == cores
    assert sweep.plan() == (("loky", cores) if cores > 1 else ("serial", 1))
    monkeypatch.setenv(sweep.JOBS_ENV, "3")
    assert sweep.plan() == ("loky", 3)
    assert sweep.plan(jobs=2) == ("loky", 2)                  # the argument wins
    monkeypatch.setenv(sweep.JOBS_ENV, "1")
    assert sweep.plan() == ("serial", 1)
    monkeypatch.delenv(sweep.JOBS_ENV)
    monkeypatch.delenv("BOOK_PROFILE")
    monkeypatch.setenv(sweep.BACKEND_ENV, " Threading ")
    assert sweep.plan() == ("threading", -1)                  # a chosen backend: all its workers
    assert sweep.plan(backend="loky", jobs=2) == ("loky", 2)
    assert sweep.plan(backend="sequential") == ("serial", 1)
    with joblib.parallel_config(backend="loky"):
        assert sweep.plan() == ("loky", -1)                   # the context beats the variable
    with joblib.parallel_config(n_jobs=2):                    # n_jobs only: the variable's backend
        assert sweep.plan() == ("threading", 2)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"fn": 3}, TypeError, "fn must be callable"),
    ({"tasks": "abc"}, TypeError, "tasks must be an iterable"),
    ({"tasks": {1: 2}}, TypeError, "tasks must be an iterable.*dict"),
    ({"tasks": 5}, TypeError, "tasks must be an iterable.*int"),
    ({"jobs": 0}, ValueError, "jobs must be a positive int or -1.*0"),
    ({"jobs": -2}, ValueError, "jobs must be.*-2"),
    ({"jobs": True}, ValueError, "jobs must be.*True"),
    ({"jobs": 1.5}, ValueError, "jobs must be.*1.5"),
    ({"backend": "spark"}, ValueError, "backend must be one of.*'spark'"),
    ({"backend": 2}, ValueError, "backend must be one of"),
    ({"seed": 3}, TypeError, "seed must be None or callable"),
    ({"seed": lambda t: -1}, ValueError, r"seed\(tasks\[0\]\) must lie in.*-1"),
    ({"seed": lambda t: 0.5}, TypeError, r"seed\(tasks\[0\]\) must be an int"),
    ({"desc": None}, TypeError, "desc must be a str"),
])
def test_bad_input_is_refused(kwargs: dict, error: type, match: str) -> None:
    args = {"fn": _slow_identity, "tasks": [1, 2]} | kwargs
    fn, tasks = args.pop("fn"), args.pop("tasks")
    with pytest.raises(error, match=match):
        sweep.run(fn, tasks, **args)


@pytest.mark.parametrize("name, value, match", [
    (sweep.JOBS_ENV, "x", "BOOK_SWEEP_JOBS='x'"),
    (sweep.JOBS_ENV, "0", "BOOK_SWEEP_JOBS='0'"),
    (sweep.BACKEND_ENV, "bogus", "BOOK_SWEEP_BACKEND must be one of.*'bogus'"),
])
def test_bad_environment_is_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str, match: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=match):
        sweep.run(_slow_identity, [1])


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("dask.distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=2, processes=True,
                                       dashboard_address=None)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def _on_dask(task: tuple[int, int]) -> tuple[tuple, int]:
    from dask.distributed import get_worker                  # raises outside a Dask worker

    return _work(task), os.getpid() if get_worker() is not None else -1


def test_dask_cluster_gives_identical_results(dask_client, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = _reference(TASKS)
    with joblib.parallel_config(backend="dask"):
        assert sweep.plan()[0] == "dask"
        got = sweep.run(_on_dask, TASKS)
    assert [r for r, _ in got] == expected
    assert os.getpid() not in {pid for _, pid in got}         # the tasks ran on the workers
    monkeypatch.setenv(sweep.BACKEND_ENV, "dask")             # the same through the variable
    assert [r for r, _ in sweep.run(_on_dask, TASKS)] == expected
    seed = lambda t: 11 * t                                   # noqa: E731
    assert sweep.run(_global_draws, range(6), seed=seed) == [_seeded_by_hand(seed(t)) for t in range(6)]


def _inner(task: int) -> tuple[tuple[str, int], list[int]]:
    """A task that starts a sweep of its own (seeded, like its outer sweep)."""
    return sweep.plan(jobs=2), sweep.run(lambda k: int(torch.randint(0, 10**9, (1,))) + k, range(3),
                                         jobs=2, seed=lambda k: 100 * task + k)


@pytest.mark.parametrize(("jobs", "backend"), [(1, None), (2, "loky"), (2, "threading")])
def test_nested_sweeps_run_serially_inside_a_task(jobs: int, backend: str | None) -> None:
    """Pools never nest: inside a task, plan() is serial whatever is asked; seeded sweeps nested
    in seeded tasks neither deadlock on the generators' lock nor change their draws."""
    expected = [[_draw(100 * t + k) + k for k in range(3)] for t in range(4)]
    box: list = []
    runner = threading.Thread(target=lambda: box.append(
        sweep.run(_inner, range(4), jobs=jobs, backend=backend, seed=lambda t: 7 + t)), daemon=True)
    runner.start()
    runner.join(timeout=120)
    assert box, "the nested sweep did not finish in 120 s (deadlock on the generators' lock?)"
    out = box[0]
    assert [plan for plan, _ in out] == [("serial", 1)] * 4
    assert [draws for _, draws in out] == expected
    assert sweep.plan(jobs=2) == ("loky", 2)          # outside a task: as asked


def _draw(seed: int) -> int:
    """What torch's global generator, seeded with ``seed``, draws first in ``_inner``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return int(torch.randint(0, 10**9, (1,)))


def test_a_process_on_cuda_keeps_its_sweeps_in_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under paper a sweep uses every core, except in a process that has started CUDA (one
    process keeps the work on its GPU); an explicit job count still wins."""
    monkeypatch.setenv("BOOK_PROFILE", "paper")
    assert sweep.default_jobs() == joblib.cpu_count()
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    assert sweep.default_jobs() == 1 and sweep.plan() == ("serial", 1)
    assert sweep.plan(jobs=2) == ("loky", 2)
    monkeypatch.setenv(sweep.JOBS_ENV, "2")
    assert sweep.default_jobs() == 2
