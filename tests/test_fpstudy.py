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


def test_perturbation_sweep_counts_with_the_books_visible_width() -> None:
    # a control that fails with the old threshold 2^-L / 8: the sweep's "visible" is count_visible
    L, level = 4, 0.2
    sweep = fpstudy.perturbation_sweep([L], [level], 3)
    expect = np.mean([pieces.count_visible(nets.perturbed_net(st.sawtooth_net(L), level, seed=s), L)
                      for s in range(3)]) / 2**L
    assert sweep[(L, level)]["visible"] == pytest.approx(expect, abs=0)


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


# ------------------------------------------------------------------ Karner et al.'s study (batched GD)
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as hs  # noqa: E402

from lib import hessian  # noqa: E402


def _he(depth, width, seeds):
    return [nets.random_relu_net([width] * depth, init="he", seed=s) for s in range(seeds)]


def _square(n=24):
    x = torch.linspace(0, 1, n, dtype=torch.float64).reshape(-1, 1)
    return x, x**2


def test_stacked_lambda_max_matches_lanczos() -> None:
    x, y = _square()
    start = _he(3, 4, 3)
    lam = fpstudy.stacked_lambda_max(start, x, y)
    want = [float(hessian.eigenvalues(net, nets.mse, x, y)[0]) for net in start]
    assert np.allclose(lam, want, rtol=1e-6)


def test_representable_step() -> None:
    for lam in (0.3, 1.0, 7.5, 1000.0):
        lr = fpstudy.representable_step(lam)
        assert 1 / (2 * lam) < lr <= 1 / lam and np.log2(lr) == int(np.log2(lr))
        for d in fp.SUPPORTED_DTYPES:
            assert torch.tensor(lr, dtype=d).item() == lr
    with pytest.raises(ValueError, match="lam"):
        fpstudy.representable_step(0.0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_gd_stacked_matches_train_gd(dtype) -> None:
    x, y = _square()
    start = _he(3, 4, 3)
    lrs = [0.125, 0.0625, 0.25]
    run = fpstudy.gd_stacked(start, x, y, lrs, steps=5, dtype=dtype, record_every=2)
    assert run.steps.tolist() == [0, 2, 4, 5] and run.loss.shape == (3, 4)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for net, trained, lr, loss in zip(start, run.nets, lrs, run.loss):
        ref = train.gd(net, nets.mse, x, y, lr=lr, steps=5, dtype=dtype, record_every=2)
        assert trained[0].weight.dtype == dtype
        for p, q in zip(trained.parameters(), ref.model.parameters()):
            assert torch.allclose(p, q, rtol=tol, atol=tol)
        assert np.allclose(loss, ref.history["loss"], rtol=tol)


@settings(max_examples=15, deadline=None)
@given(seed=hs.integers(0, 1000), k=hs.integers(1, 3))
def test_gd_stacked_networks_do_not_interact(seed, k) -> None:
    """Each network of the stack follows its own GD: training it alone gives the same result."""
    x, y = _square(16)
    start = [nets.random_relu_net([3, 3], init="he", seed=seed + i) for i in range(3)]
    both = fpstudy.gd_stacked(start, x, y, [0.125] * 3, steps=k, dtype=torch.float64, record_every=1)
    alone = fpstudy.gd_stacked(start[1:2], x, y, [0.125], steps=k, dtype=torch.float64, record_every=1)
    for p, q in zip(both.nets[1].parameters(), alone.nets[0].parameters()):
        assert torch.allclose(p, q, rtol=1e-13, atol=1e-15)


def test_gd_stacked_low_precision_and_updates() -> None:
    x, y = _square()
    start = _he(2, 3, 2)
    run = fpstudy.gd_stacked(start, x, y, [2.0**-3, 2.0**-4], steps=3, dtype=torch.bfloat16, record_every=1)
    assert all(p.dtype == torch.bfloat16 for net in run.nets for p in net.parameters())
    assert [u.dtype for u in run.next_update[0]] == [torch.float64] * 6
    hidden = torch.cat([u.abs().reshape(-1) for u in run.next_update[0][1:-2:2]])
    nz = hidden[hidden > 0]
    assert run.moving[0, -1] == nz.numel()
    if nz.numel():
        assert run.recip[0, -1] == pytest.approx(float((1 / nz).mean()), rel=1e-12)


def test_gd_stacked_rejects_bad_input() -> None:
    x, y = _square()
    start = _he(2, 3, 2)
    kw = {"steps": 2, "dtype": torch.float16, "record_every": 1}
    with pytest.raises(ValueError, match="lrs"):
        fpstudy.gd_stacked(start, x, y, [0.1, 0.125], **kw)          # 0.1 is not a float16
    with pytest.raises(ValueError, match="lrs"):
        fpstudy.gd_stacked(start, x, y, [0.125], **kw)
    with pytest.raises(ValueError, match="lrs"):
        fpstudy.gd_stacked(start, x, y, [-0.125, 0.125], **kw)
    with pytest.raises((TypeError, ValueError), match="dtype"):
        fpstudy.gd_stacked(start, x, y, [0.125, 0.125], steps=2, dtype=torch.int32, record_every=1)
    with pytest.raises(ValueError, match="steps"):
        fpstudy.gd_stacked(start, x, y, [0.125, 0.125], steps=0, dtype=torch.float32, record_every=1)
    with pytest.raises(ValueError, match="nets_list"):
        fpstudy.gd_stacked([], x, y, [], **kw)
    with pytest.raises(ValueError, match="architecture"):
        fpstudy.gd_stacked([start[0], _he(3, 3, 1)[0]], x, y, [0.125, 0.125], **kw)
    with pytest.raises(TypeError, match="Tanh"):
        fpstudy.gd_stacked([nets.mlp([1, 3, 1], "tanh")], x, y, [0.125], **kw)
    with pytest.raises(ValueError, match="shape"):
        fpstudy.gd_stacked(start, x.flatten(), y.flatten(), [0.125, 0.125], **kw)


def test_step_bound_scales_like_one_over_s_and_counts_exactly() -> None:
    x, y = _square()
    run = fpstudy.gd_stacked(_he(3, 6, 1), x, y, [2.0**-4], steps=5, dtype=torch.float64, record_every=5)
    net, update = run.nets[0], run.next_update[0]
    grid = torch.linspace(0, 1, 1025, dtype=torch.float64).reshape(-1, 1)
    a = fpstudy.step_bound(net, update, 1e-6, grid)
    b = fpstudy.step_bound(net, update, 1e-3, grid)
    assert a["bound"] * 1e-6 == pytest.approx(b["bound"] * 1e-3, rel=1e-4)
    counts, base = fpstudy.noise_scale_counts(net, update, [0.0, 1e-9], 2)
    assert counts.shape == (2, 2) and (counts[0] == base).all()
    assert a["breakpoints"] == base                                  # tiny noise: the same count
    with pytest.raises(ValueError, match="s"):
        fpstudy.step_bound(net, update, 0.0, grid)
    with pytest.raises(ValueError, match="grid"):
        fpstudy.step_bound(net, update, 0.5, grid.flatten())
    with pytest.raises(ValueError, match="update"):
        fpstudy.step_bound(net, update[:-1], 0.5, grid)
    with pytest.raises(ValueError, match="levels"):
        fpstudy.noise_scale_counts(net, update, [2.0], 1)
    with pytest.raises(ValueError, match="draws"):
        fpstudy.noise_scale_counts(net, update, [0.5], 0)


def test_is_dead() -> None:
    assert not fpstudy.is_dead(st.sawtooth_net(3))
    net = nets.random_relu_net([3, 3], init="he", seed=0)
    with torch.no_grad():
        net[2].weight.zero_()
        net[2].bias.fill_(-1.0)                                       # second hidden layer dead
    assert fpstudy.is_dead(net)
    line = torch.nn.Sequential(torch.nn.Linear(1, 1, dtype=torch.float64), torch.nn.ReLU(),
                               torch.nn.Linear(1, 1, dtype=torch.float64))
    with torch.no_grad():
        line[0].weight.fill_(1.0)
        line[0].bias.fill_(1.0)
    assert not fpstudy.is_dead(line)                                  # one piece, not constant
    with pytest.raises(TypeError, match="net"):
        fpstudy.is_dead(torch.nn.Linear(1, 1))


def test_init_bias_updates_match_bias_updates() -> None:
    x, y = _square()
    got = fpstudy.init_bias_updates(3, 4, 2, x, y)
    assert got.shape == (2, 3, 4)
    net = nets.random_relu_net([4] * 3, init="he", seed=1)
    lam = float(fpstudy.stacked_lambda_max([net], x, y)[0])
    assert np.allclose(got[1].reshape(-1), fpstudy.bias_updates(net, x, y, lam).numpy(), rtol=1e-8, atol=1e-15)
    with pytest.raises(ValueError, match="width"):
        fpstudy.init_bias_updates(3, 0, 2, x, y)


def test_he_precision_grid_rows() -> None:
    x, y = _square()
    grid = torch.linspace(0, 1, 257, dtype=torch.float64).reshape(-1, 1)
    rows, runs = fpstudy.he_precision_grid([2], [3, 4], 2, x, y, [torch.float32, torch.float64],
                                           steps=4, record_every=2, grid=grid)
    assert len(rows) == 2 * 2 * 2 and set(runs) == {(2, w, f) for w in (3, 4) for f in ("float32", "float64")}
    for r in rows:
        assert r["pieces"] == pieces.count_pieces(runs[(2, r["width"], r["format"])].nets[r["seed"]])
        assert r["dead"] == (r["pieces"] == 1 and fpstudy.is_dead(runs[(2, r["width"], r["format"])].nets[r["seed"]]))
        assert r["step bound"] >= 0 and r["step breakpoints"] >= 0
    with pytest.raises(ValueError, match="depths"):
        fpstudy.he_precision_grid([0], [3], 1, x, y, [torch.float32], steps=1, record_every=1, grid=grid)
    with pytest.raises((TypeError, ValueError), match="dtypes"):
        fpstudy.he_precision_grid([2], [3], 1, x, y, ["float8"], steps=1, record_every=1, grid=grid)



def test_mean_reciprocal_update_by_hand() -> None:
    """Rows are networks: mean of 1/|Delta| over the non-zero entries, inf for an all-zero row."""
    delta = np.array([[[0.5, -0.25], [0.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]])
    out = fpstudy.mean_reciprocal_update(delta)
    assert out[0] == (2 + 4 + 1) / 3 and np.isinf(out[1])
    with pytest.raises(ValueError, match="delta"):
        fpstudy.mean_reciprocal_update(np.zeros((0, 3)))


# --------------------------------------------------------------------------- guards (issue 19)
def _bn_net() -> torch.nn.Sequential:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(1, 3), torch.nn.BatchNorm1d(3), torch.nn.ReLU(),
                               torch.nn.Linear(3, 1)).double().train()


def test_bias_updates_leave_a_train_mode_batchnorm_unchanged() -> None:
    """The running statistics and the training flag are as before (compared bit for bit)."""
    net = _bn_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.linspace(0, 1, 9, dtype=torch.float64).reshape(-1, 1)
    fpstudy.bias_updates(net, x, x**2, 0.1)
    assert net.training and all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_bias_updates_and_one_step_bound_name_bad_x_and_y() -> None:
    x = torch.linspace(0, 1, 9, dtype=torch.float64).reshape(-1, 1)
    net = st.sawtooth_net(3)
    bad_y = (x**2).clone()
    bad_y[2] = float("nan")
    with pytest.raises(ValueError, match="y must be finite"):
        fpstudy.bias_updates(net, x, bad_y, 0.1)
    with pytest.raises(ValueError, match="x must hold"):
        fpstudy.bias_updates(net, x[:0], x**2, 0.1)
    with pytest.raises(ValueError, match="y must have one row"):
        fpstudy.one_step_bound(net, x, x[:4] ** 2, 0.1, [1e-3], x)
    with pytest.raises(TypeError, match="x must be"):
        fpstudy.perturbed_mse(net, "x", x**2, [0.1], 1)


def test_step_bound_refuses_a_nan_or_empty_grid() -> None:
    net = st.sawtooth_net(3)
    update = [torch.zeros_like(p) for p in net.parameters()]
    grid = torch.linspace(0, 1, 33, dtype=torch.float64).reshape(-1, 1)
    grid[5] = float("nan")
    with pytest.raises(ValueError, match="grid"):
        fpstudy.step_bound(net, update, 0.5, grid)
    with pytest.raises(ValueError, match="grid"):
        fpstudy.step_bound(net, update, 0.5, grid[:0])
