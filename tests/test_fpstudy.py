"""Tests of lib.fpstudy: the floating-point chapter's sweeps, GD runs near the constructions
and their summaries."""

import numpy as np
import pytest
import torch

from lib import fp, fpstudy, nets, pieces, train
from lib import sawtooth as st


def _data(depth, n=32):
    x = torch.linspace(0, 1, n, dtype=torch.float64).reshape(-1, 1)
    return x, st.sawtooth(x, depth)


# ------------------------------------------------------------------ crossings and sweeps
@pytest.mark.parametrize("depth", [1, 3, 5])
def test_half_crossings_of_the_sawtooth(depth) -> None:
    net = st.sawtooth_net(depth)
    assert fpstudy.half_crossings(net) == 2**depth
    assert fpstudy.half_crossings(net, pieces.piece_analysis(net)) == 2**depth


def test_half_crossings_of_a_constant_and_errors() -> None:
    net = st.sawtooth_net(2)
    with torch.no_grad():
        net[-1].weight.zero_()
        net[-1].bias.fill_(0.25)
    assert fpstudy.half_crossings(net) == 0
    with pytest.raises(TypeError, match="net"):
        fpstudy.half_crossings(torch.nn.Linear(1, 1))
    with pytest.raises(TypeError, match="analysis"):
        fpstudy.half_crossings(st.sawtooth_net(2), analysis=3)


def test_perturbation_sweep_at_zero_and_small_levels() -> None:
    sweep = fpstudy.perturbation_sweep([3, 4], [0.0, 1e-6], 2)
    assert set(sweep) == {(3, 0.0), (3, 1e-6), (4, 0.0), (4, 1e-6)}
    for L in (3, 4):
        row = sweep[(L, 0.0)]
        assert row == {"exact": 1.0, "visible": 1.0, "crossings of 1/2": 1.0}
        assert sweep[(L, 1e-6)]["visible"] == 1.0   # far below the collapse level
    with pytest.raises(ValueError, match="levels"):
        fpstudy.perturbation_sweep([3], [-1.0], 2)
    with pytest.raises(ValueError, match="seeds"):
        fpstudy.perturbation_sweep([3], [0.1], 0)
    with pytest.raises(TypeError, match="depths"):
        fpstudy.perturbation_sweep([2.5], [0.1], 1)


def test_perturbed_mse_matches_a_direct_loop() -> None:
    x, y = _data(4)
    net = st.sawtooth_net(4)
    levels = [0.0, 1e-3, 1e-1]
    got = fpstudy.perturbed_mse(net, x, y, levels, 3)
    with torch.no_grad():
        want = [np.mean([float(((nets.perturbed_net(net, e, seed=s)(x) - y) ** 2).mean())
                         for s in range(3)]) for e in levels]
    assert got.tolist() == want
    assert got[0] == 0.0
    with pytest.raises(TypeError):
        fpstudy.perturbed_mse(net, x.numpy(), y, levels, 1)


def test_absorption_in_bfloat16_and_float64() -> None:
    x = fp.random_reals(64, seed=1)
    ms = list(range(1, 17))
    m_a, changing = fpstudy.absorption(x, ms, torch.bfloat16)
    assert m_a == 12 and changing[1] == 64 and all((changing[m] == 0) == (m >= m_a) for m in ms)
    assert fpstudy.absorption(x, ms[:12], torch.bfloat16)[0] == 0   # reached only at the last m
    m_a64, changing64 = fpstudy.absorption(x, [1, 2, 3], torch.float64)
    assert m_a64 == 0 and changing64[1] > 0          # float64 still resolves f_2 - f_3
    with pytest.raises(ValueError, match="empty"):
        fpstudy.absorption(x, [], torch.float32)
    with pytest.raises(ValueError, match="ms"):
        fpstudy.absorption(x, [0, 1], torch.float32)


# ------------------------------------------------------------------ one step of GD
def test_bias_updates_match_a_gd_step() -> None:
    x, y = _data(3)
    net = nets.perturbed_net(st.sawtooth_net(3), 1e-2, seed=0)
    delta = fpstudy.bias_updates(net, x, y, 4.0)
    stepped = train.gd(net, nets.mse, x, y, lr=0.25, steps=1).model
    hidden = [(a, b) for a, b in zip(net, stepped) if isinstance(a, torch.nn.Linear)][:-1]
    moved = torch.cat([(a.bias - b.bias).detach() for a, b in hidden])
    assert torch.allclose(delta, moved, rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="lam"):
        fpstudy.bias_updates(net, x, y, 0.0)


def test_one_step_bound_columns_and_checks() -> None:
    x, y = _data(3)
    net = nets.perturbed_net(st.sawtooth_net(3), 1e-2, seed=0)
    grid = torch.linspace(0, 1, 257, dtype=torch.float64).reshape(-1, 1)
    row = fpstudy.one_step_bound(net, x, y, 4.0, [1e-3, 1.0], grid)
    assert row["neurons"] == 9 and 0 < row["N' (non-zero updates)"] <= 9
    for s in ("0.001", "1"):
        assert row[f"bound, s = {s}"] > 0 and row[f"breakpoints, s = {s}"] >= 1
    with pytest.raises(ValueError, match="grid"):
        fpstudy.one_step_bound(net, x, y, 4.0, [1.0], grid.flatten())
    with pytest.raises(ValueError, match="noises"):
        fpstudy.one_step_bound(net, x, y, 4.0, [float("nan")], grid)


# ------------------------------------------------------------------ GD near the constructions
def test_perturbed_start_rounds_small_perturbations_away() -> None:
    base = st.sawtooth_net(4)
    start = fpstudy.perturbed_start(base, 1e-8, torch.float32)
    exact = fp.to_format(base, torch.float32)
    assert all(torch.equal(p, q) for p, q in zip(start.parameters(), exact.parameters()))
    start64 = fpstudy.perturbed_start(base, 1e-8, torch.float64)
    assert not all(torch.equal(p, q) for p, q in zip(start64.parameters(), base.parameters()))
    with pytest.raises(ValueError, match="eps"):
        fpstudy.perturbed_start(base, -1.0, torch.float32)


def test_gd_near_summary_and_stall() -> None:
    base = st.sawtooth_net(3)
    x, y = _data(3, 64)
    kw = {"steps": 20, "record_every": 5, "min_width": 2.0**-3 / 8}
    frozen = fpstudy.gd_near(base, x, y, 1e-8, torch.float32, 0.01, **kw)
    moving = fpstudy.gd_near(base, x, y, 1e-2, torch.float32, 0.01, **kw)
    assert frozen.history["step"].tolist() == [0, 5, 10, 15, 20]
    row = fpstudy.run_summary(moving, fpstudy.perturbed_start(base, 1e-2, torch.float32))
    assert row["visible at start"] == int(moving.history["visible"][0])
    assert row["crossings at end"] == fpstudy.half_crossings(moving.model)
    assert row["loss at end"] == moving.history["loss"][-1]
    stall = fpstudy.stall_summary(base, fpstudy.perturbed_start(base, 1e-8, torch.float32),
                                  frozen, moving, x, y, 100.0, torch.float32, 5)
    assert stall["differs from the construction at eps = 1e-8"] == 0
    assert stall["parameters"] == sum(p.numel() for p in base.parameters())
    assert stall["stored eta / eta"] == pytest.approx(1.0, rel=1e-7)
    assert stall["eps = 1e-2: last steps with a constant loss"] % 5 == 0
    with pytest.raises(TypeError, match="run"):
        fpstudy.run_summary("run", base)
    plain = train.gd(base, nets.mse, x, y, lr=0.01, steps=2)
    with pytest.raises(ValueError, match="hooks"):
        fpstudy.run_summary(plain, base)
    with pytest.raises(ValueError, match="lam"):
        fpstudy.stall_summary(base, base, frozen, moving, x, y, -1.0, torch.float32, 5)
