"""The sweeps of lib.fpstudy through lib.sweep: the same numbers as the plain loops.

``perturbation_sweep``, ``perturbed_mse`` and ``he_precision_grid`` now send their cells through
:func:`lib.sweep.run`.  The reference is the plain loop they ran before (written out below from
the public functions, in this process): every result must be bit-identical to it, serially
(the ``quick`` default) and in two loky worker processes (``BOOK_SWEEP_JOBS=2``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from lib import fp, fpstudy, nets, pieces, sweep
from lib import sawtooth as st

X = torch.linspace(0, 1, 24, dtype=torch.float64).reshape(-1, 1)
Y = X**2
GRID = torch.linspace(0, 1, 129, dtype=torch.float64).reshape(-1, 1)
PS_ARGS = ([3, 4], [1e-3, 0.05, 0.4], 2)                     # depths, levels, seeds
MSE_LEVELS = [0.0, 1e-3, 0.2]
HE_ARGS = dict(depths=[2, 3], widths=[3, 4], seeds=2, x=X, y=Y, dtypes=fp.SUPPORTED_DTYPES,
               steps=12, record_every=4, grid=GRID)


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (sweep.JOBS_ENV, sweep.BACKEND_ENV, "BOOK_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BOOK_PROGRESS", "0")


def _plain_perturbation_sweep(depths: list[int], levels: list[float], seeds: int) -> dict:
    out = {}
    for L in depths:
        net = st.sawtooth_net(L)
        for level in levels:
            exact, visible, crossings = [], [], []
            for seed in range(seeds):
                perturbed = nets.perturbed_net(net, float(level), seed=seed)
                analysis = pieces.piece_analysis(perturbed)
                w = analysis.widths()
                exact.append(w.size)
                visible.append(int((w > pieces.visible_width(L)).sum()))
                crossings.append(fpstudy.half_crossings(perturbed, analysis))
            out[(L, float(level))] = {"exact": np.mean(exact) / 2**L, "visible": np.mean(visible) / 2**L,
                                      "crossings of 1/2": np.mean(crossings) / 2**L}
    return out


def _plain_perturbed_mse(net: torch.nn.Sequential, levels: list[float], seeds: int) -> np.ndarray:
    with torch.no_grad():
        return np.array([np.mean([float(((nets.perturbed_net(net, e, seed=s)(X) - Y) ** 2).mean())
                                  for s in range(seeds)]) for e in levels])


def _plain_he_grid(depths, widths, seeds, x, y, dtypes, *, steps, record_every, grid):
    rows, runs = [], {}
    for L in depths:
        for N in widths:
            start = [nets.random_relu_net([N] * L, init="he", seed=s) for s in range(seeds)]
            lam = fpstudy.stacked_lambda_max(start, x, y)
            lrs = [fpstudy.representable_step(v) for v in lam]
            at_init = [pieces.count_pieces(net) for net in start]
            dead_init = [fpstudy.is_dead(net, c) for net, c in zip(start, at_init)]
            for dtype in dtypes:
                name = fp.format_name(dtype)
                run = runs[(L, N, name)] = fpstudy.gd_stacked(start, x, y, lrs, steps=steps, dtype=dtype,
                                                              record_every=record_every)
                for i, net in enumerate(run.nets):
                    diverged = not all(bool(torch.isfinite(p).all()) for p in net.parameters())
                    count = -1 if diverged else pieces.count_pieces(net)
                    bound = ({"bound": math.nan, "breakpoints": -1, "N'": 0, "outside hypothesis": 0}
                             if diverged else fpstudy.step_bound(net, run.next_update[i],
                                                                 fp.unit_roundoff(dtype), grid, seed=i))
                    rows.append({"depth": L, "width": N, "seed": i, "format": name, "diverged": diverged,
                                 "neurons": L * N, "lambda_max": float(lam[i]), "lr": lrs[i],
                                 "pieces at init": at_init[i], "dead at init": dead_init[i],
                                 "pieces": count, "dead": not diverged and fpstudy.is_dead(net, count),
                                 "loss at init": float(run.loss[i, 0]), "loss": float(run.loss[i, -1]),
                                 "recip first": float(run.recip[i, 0]), "recip next": float(run.recip[i, -1]),
                                 "moving first": int(run.moving[i, 0]), "moving next": int(run.moving[i, -1]),
                                 **{f"step {k}": v for k, v in bound.items()}})
    return rows, runs


def _same(a: Any, b: Any) -> bool:
    """Exact equality: same types, floats bit for bit (NaN equal to NaN), tensors by torch.equal."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(u, v) for u, v in zip(a, b))
    if isinstance(a, (float, np.floating)):
        return bool(a == b) or (math.isnan(a) and math.isnan(b))
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    if isinstance(a, torch.Tensor):
        return a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, torch.nn.Module):
        return _same(list(a.parameters()), list(b.parameters()))
    if isinstance(a, fpstudy.StackedRun):
        return all(_same(getattr(a, f), getattr(b, f))
                   for f in ("nets", "steps", "loss", "recip", "moving", "next_update", "lrs"))
    return a == b


def _all_three() -> tuple:
    net = st.sawtooth_net(4)
    return (fpstudy.perturbation_sweep(*PS_ARGS), fpstudy.perturbed_mse(net, X, Y, MSE_LEVELS, 3),
            fpstudy.he_precision_grid(**HE_ARGS))


def test_serial_sweeps_equal_the_plain_loops() -> None:
    assert sweep.plan() == ("serial", 1)
    ps, mse, (rows, runs) = _all_three()
    assert _same(ps, _plain_perturbation_sweep(*PS_ARGS))
    assert _same(mse, _plain_perturbed_mse(st.sawtooth_net(4), MSE_LEVELS, 3))
    plain_rows, plain_runs = _plain_he_grid(**HE_ARGS)
    assert len(rows) == 2 * 2 * 2 * 4 and _same(rows, plain_rows)
    assert _same(runs, plain_runs)
    assert any(r["pieces"] > 1 for r in rows)                   # not a grid of dead networks


def test_loky_sweeps_equal_the_serial_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    serial = _all_three()
    monkeypatch.setenv(sweep.JOBS_ENV, "2")
    assert sweep.plan() == ("loky", 2)
    assert _same(_all_three(), serial)
