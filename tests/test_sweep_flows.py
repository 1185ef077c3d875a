"""lib.flows through lib.sweep: the same numbers serially, in worker processes and as the loop
that ran before.

References: ``escape_times`` against its old plain loop, written out here (one flow per start
in this process); Trajectories sent through a process (pickled) against the originals.  No
closed form exists for these flows, so the comparisons are exact equality with the old path.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from lib import flows, sweep

STARTS = [[0.3, 0.02], [0.3, -0.03], [-0.4, 0.1]]
TIMES = np.arange(0, 801) * 0.01


@pytest.fixture(autouse=True)
def _quick_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (sweep.JOBS_ENV, sweep.BACKEND_ENV, "BOOK_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BOOK_PROGRESS", "0")


def _well(theta: torch.Tensor) -> torch.Tensor:
    return flows.double_well(theta, 0.5)


def _old_escape_times(f, starts, times, radius=0.5, rtol=1e-12, atol=1e-15):
    """The loop of ``escape_times`` before it went through lib.sweep."""
    escape, ends = [], []
    for start in starts:
        tr = np.asarray(flows.gradient_flow(*flows.as_problem(f, start), times, rtol=rtol,
                                            atol=atol))
        r = np.linalg.norm(tr, axis=1)
        closest = np.argmin(r)
        escape.append(times[closest + np.argmax(r[closest:] >= radius)])
        ends.append(tr[-1])
    return np.array(escape), ends


def _gd_task(eta: float) -> flows.Trajectory:
    return flows.gradient_descent(*flows.as_problem(_well, [0.3, 0.02]), [0.0, 0.5, 1.0], eta)


def test_trajectory_pickles_with_its_attributes() -> None:
    tr = _gd_task(0.1)
    back = pickle.loads(pickle.dumps(tr))
    assert isinstance(back, flows.Trajectory) and np.array_equal(back, tr)
    assert np.array_equal(back.times, tr.times) and np.array_equal(back.loss, tr.loss)
    assert np.array_equal(back.steps, tr.steps) and back.n_grad_evals == tr.n_grad_evals == 10
    assert back.info == tr.info
    assert np.array_equal(back.at([0.5]), tr.at([0.5]))


def test_escape_times_and_gd_identical_serial_processes_and_old_loop(
        monkeypatch: pytest.MonkeyPatch) -> None:
    old_esc, old_ends = _old_escape_times(_well, STARTS, TIMES)
    assert sweep.plan() == ("serial", 1)
    serial = flows.escape_times(_well, STARTS, TIMES)
    gd_serial = sweep.run(_gd_task, [0.1, 0.05])
    monkeypatch.setenv(sweep.JOBS_ENV, "2")
    assert sweep.plan() == ("loky", 2)
    procs = flows.escape_times(_well, STARTS, TIMES)
    gd_procs = sweep.run(_gd_task, [0.1, 0.05])
    for esc, ends in (serial, procs):
        assert np.array_equal(esc, old_esc)
        assert len(ends) == len(old_ends) and all(np.array_equal(a, b) for a, b in zip(ends, old_ends))
    # the flows do part: two starts escape to different minima, none escapes at t = 0
    assert np.all(old_esc > 0) and len({np.sign(e[1]) for e in old_ends}) == 2
    for a, b in zip(gd_serial, gd_procs):
        assert isinstance(b, flows.Trajectory) and np.array_equal(a, b)
        assert np.array_equal(a.loss, b.loss) and np.array_equal(a.times, b.times)
        assert a.n_grad_evals == b.n_grad_evals



def _rows_writable(tr: flows.Trajectory) -> tuple[bool, float]:
    return bool(np.asarray(tr).flags.writeable), float(np.asarray(tr).sum())


def test_large_trajectory_arrives_writable_in_a_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """joblib sends arrays over 1 MB to loky workers as read-only memory maps; a Trajectory
    arrives as a writable copy with the same rows (torch.from_numpy would warn otherwise)."""
    rows = np.arange(200 * 1000, dtype=np.float64).reshape(200, 1000)
    tr = flows.Trajectory(rows, times=np.arange(200.0), loss=np.zeros(200), n_grad_evals=3)
    monkeypatch.setenv(sweep.JOBS_ENV, "2")
    assert sweep.run(_rows_writable, [tr, tr]) == [(True, float(rows.sum()))] * 2


def test_escape_times_guards() -> None:
    with pytest.raises(ValueError, match="radius"):
        flows.escape_times(_well, STARTS, TIMES, radius=0.0)
    with pytest.raises(ValueError, match="times"):
        flows.escape_times(_well, STARTS, [1.0, 0.5])
