"""Tests of lib.approx: breakpoint networks, ensembles, quadrature loss, empirical NTK,
spline references, exact L2 errors and power-law fits."""

import copy
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from lib import approx, data, hessian, sawtooth, train


def _quad(m: int = 64, interval=(-1.0, 1.0)):
    return data.quadrature(m, order=2, interval=interval)


# ----------------------------------------------------------------------------- BreakpointNet
@given(st.integers(1, 40), st.integers(1, 3), st.integers(0, 10_000))
def test_breakpoint_net_fast_forward_equals_sum_of_relus(m: int, members: int, seed: int) -> None:
    net = approx.BreakpointNet.random(m, members, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(57, generator=gen, dtype=torch.float64) * 2.4 - 1.2   # unsorted, outside too
    x[:3] = net.theta.detach()[0, : min(3, m)].repeat(3)[:3]             # ties with breakpoints
    out = net(x)
    assert out.shape == (57, members)
    torch.testing.assert_close(out, net.dense_forward(x), rtol=0, atol=1e-14)
    torch.testing.assert_close(net(x.reshape(-1, 1)), out)


def test_breakpoint_net_gradient_and_hessian_match_the_dense_form() -> None:
    net = approx.BreakpointNet.random(30, 2, seed=3)
    q = _quad(50)
    y = data.gaussian_bump(q.nodes).reshape(-1, 1)
    loss = approx.quadrature_loss(q.weights)
    (g1,) = torch.autograd.grad(loss(net(q.inputs), y), net.theta)
    (g2,) = torch.autograd.grad(loss(net.dense_forward(q.inputs), y), net.theta)
    torch.testing.assert_close(g1, g2, rtol=0, atol=1e-15)
    # df/dtheta_r = -a_r m^{-1/2} 1[x > theta_r]
    member = net.member(1)
    h = hessian.dense_hessian(member, loss, q.inputs, y)
    th, a = member.theta.detach()[0], member.signs[0]
    jac = -(q.nodes[:, None] > th[None, :]).double() * a / math.sqrt(30)
    torch.testing.assert_close(h, 2 * jac.T @ (q.weights[:, None] * jac), rtol=0, atol=1e-14)


def test_breakpoint_net_random_layout_and_copies() -> None:
    net = approx.BreakpointNet.random(9, 4, interval=(0.0, 2.0), seed=7)
    assert net.width == 9 and net.members == 4
    assert torch.all((net.theta >= 0) & (net.theta <= 2))
    assert torch.all(net.signs.sum(1) == 1)                      # five +1, four -1
    assert not torch.equal(net.signs[0], net.signs[1])
    again = approx.BreakpointNet.random(9, 4, interval=(0.0, 2.0), seed=7)
    assert torch.equal(again.theta, net.theta) and torch.equal(again.signs, net.signs)
    one = net.member(2)
    assert one.members == 1 and torch.equal(one.theta[0], net.theta[2])
    with torch.no_grad():
        one.theta.add_(1.0)
    assert not torch.equal(one.theta[0], net.theta[2])            # a copy
    bp = net.breakpoints
    bp += 1
    assert not torch.equal(bp, net.theta)


def test_breakpoint_net_to_sequential_and_l2_errors() -> None:
    net = approx.BreakpointNet.random(12, 2, seed=1)
    x = torch.linspace(-1.5, 1.5, 301, dtype=torch.float64)
    seq = net.to_sequential(1)
    assert isinstance(seq, nn.Sequential) and sawtooth.hidden_widths(seq) == [12]
    torch.testing.assert_close(seq(x.reshape(-1, 1))[:, 0], net(x)[:, 1], rtol=0, atol=1e-14)
    errs = net.l2_errors(data.gaussian_bump)
    fine = data.quadrature(20_000, order=3, interval=(-1.0, 1.0))
    with torch.no_grad():
        ref = fine.integrate((net(fine.nodes) - data.gaussian_bump(fine.nodes)[:, None]) ** 2).sqrt()
    np.testing.assert_allclose(errs, ref.numpy(), rtol=1e-9)


@pytest.mark.parametrize("args, err, match", [
    ((torch.zeros(3), torch.ones(4)), ValueError, "signs must have the shape"),
    ((torch.zeros(3), torch.tensor([1.0, 0.5, -1.0])), ValueError, r"\+1 or -1"),
    ((torch.zeros(2, 3, 1), torch.ones(2, 3, 1)), ValueError, "breakpoints must have shape"),
    (([0.0], torch.ones(1)), TypeError, "breakpoints must be a torch.Tensor"),
    ((torch.zeros(3, dtype=torch.int64), torch.ones(3, dtype=torch.int64)), TypeError, "dtype"),
])
def test_breakpoint_net_bad_arguments(args, err, match) -> None:
    with pytest.raises(err, match=match):
        approx.BreakpointNet(*args)


def test_breakpoint_net_random_and_member_bad_arguments() -> None:
    with pytest.raises(ValueError, match="m must be"):
        approx.BreakpointNet.random(0)
    with pytest.raises(TypeError, match="members"):
        approx.BreakpointNet.random(3, 1.5)
    with pytest.raises(ValueError, match="interval"):
        approx.BreakpointNet.random(3, interval=(1.0, -1.0))
    with pytest.raises(ValueError, match="s must be <"):
        approx.BreakpointNet.random(3, 2).member(2)
    with pytest.raises(ValueError, match="shape"):
        approx.BreakpointNet.random(3)(torch.zeros(4, 2, dtype=torch.float64))


# ----------------------------------------------------------------------------- EnsembleMLP
def test_ensemble_members_are_the_stacked_networks() -> None:
    ens = approx.EnsembleMLP.random([4, 3, 5], members=3, seed=2)
    assert ens.members == 3 and ens.hidden == [4, 3, 5]
    assert ens.parameter_count() == (4 + 4) + (12 + 3) + (15 + 5) + (5 + 1)
    x = torch.linspace(-2, 2, 77, dtype=torch.float64)
    out = ens(x)
    for s in range(3):
        seq = ens.member(s)
        assert sawtooth.parameter_count(seq) == ens.parameter_count()
        torch.testing.assert_close(seq(x.reshape(-1, 1))[:, 0], out[:, s], rtol=0, atol=1e-14)
    # PyTorch's default bounds 1/sqrt(fan_in), fan_in of the second layer is 4
    assert float(ens.weights[1].detach().abs().max()) <= 0.5
    assert float(ens.biases[1].detach().abs().max()) <= 0.5
    again = approx.EnsembleMLP.random([4, 3, 5], members=3, seed=2)
    assert all(torch.equal(a, b) for a, b in zip(again.parameters(), ens.parameters()))


def test_ensemble_from_yarotsky_networks() -> None:
    nets = [sawtooth.yarotsky_square_net(3), sawtooth.yarotsky_square_net(3)]
    ens = approx.EnsembleMLP.from_sequentials(nets)
    x = torch.linspace(0, 1, 129, dtype=torch.float64)
    torch.testing.assert_close(ens(x)[:, 1], nets[0](x.reshape(-1, 1))[:, 0], rtol=0, atol=0)
    assert ens.parameter_count() == sawtooth.yarotsky_parameter_count(3)
    with pytest.raises(TypeError, match="nn.Linear and nn.ReLU"):
        approx.EnsembleMLP.from_sequentials([nn.Sequential(nn.Linear(1, 2), nn.Tanh(), nn.Linear(2, 1))])


def test_ensemble_bad_arguments() -> None:
    with pytest.raises(ValueError, match="at least one hidden"):
        approx.EnsembleMLP.random([])
    with pytest.raises(ValueError, match="hidden width must be"):
        approx.EnsembleMLP.random([3, 0])
    with pytest.raises(ValueError, match="one output"):
        approx.EnsembleMLP([torch.zeros(1, 2, 1)], [torch.zeros(1, 2)])
    with pytest.raises(ValueError, match="biases"):
        approx.EnsembleMLP([torch.zeros(1, 1, 1)], [torch.zeros(1, 2)])


# ----------------------------------------------------------------------------- loss and GD
def test_quadrature_loss_and_member_scales_are_per_member_step_sizes() -> None:
    net = approx.BreakpointNet.random(10, 2, seed=5)
    q = _quad(40)
    y = data.gaussian_bump(q.nodes).reshape(-1, 1)
    with torch.no_grad():
        out = net(q.inputs)
    manual = sum(float(q.integrate((out[:, s] - y[:, 0]) ** 2)) for s in range(2))
    assert abs(float(approx.quadrature_loss(q.weights)(out, y)) - manual) < 1e-15
    # GD on c_0 L_0 + c_1 L_1 with step eta == GD on each member with step eta * c_s
    scale = [1.0, 0.25]
    run = train.gd(net, approx.quadrature_loss(q.weights, scale), q.inputs, y, lr=0.4, steps=20)
    for s in range(2):
        alone = train.gd(net.member(s), approx.quadrature_loss(q.weights), q.inputs, y,
                         lr=0.4 * scale[s], steps=20)
        torch.testing.assert_close(run.model.theta.detach()[s], alone.model.theta.detach()[0],
                                   rtol=0, atol=1e-14)
    with pytest.raises(ValueError, match="positive"):
        approx.quadrature_loss(q.weights, [1.0, 0.0])
    with pytest.raises(ValueError, match="scale has"):
        approx.quadrature_loss(q.weights, [1.0, 1.0, 1.0])(out, y)
    with pytest.raises(ValueError, match="rows"):
        approx.quadrature_loss(q.weights)(out[:-1], y[:-1])


# ----------------------------------------------------------------------------- NTK
def test_ntk_of_breakpoint_net_is_the_breakpoint_cdf_at_min() -> None:
    net = approx.BreakpointNet.random(25, 2, seed=11)
    q = _quad(30)
    k = approx.ntk_gram(net, q.nodes, q.weights, member=1)
    th = net.theta.detach()[1]
    x = q.nodes
    mn = torch.minimum(x[:, None], x[None, :])
    cdf = (th[None, None, :] < mn[:, :, None]).double().mean(-1)     # (1/m) #{theta_r < min}
    ref = torch.sqrt(q.weights[:, None] * q.weights[None, :]) * cdf
    torch.testing.assert_close(k, ref, rtol=0, atol=1e-15)


def test_ntk_top_eigenvalue_gives_the_hessian_sharpness_of_breakpoint_nets() -> None:
    net = approx.BreakpointNet.random(40, 1, seed=2)
    q = _quad(80)
    y = data.gaussian_bump(q.nodes).reshape(-1, 1)
    lam_k = float(torch.linalg.eigvalsh(approx.ntk_gram(net, q.nodes, q.weights))[-1])
    lam_h = float(hessian.eigenvalues(net, approx.quadrature_loss(q.weights), q.inputs, y)[0])
    assert abs(lam_h - 2 * lam_k) < 1e-10 * lam_h
    eta = approx.step_size_from_gram(lam_k)
    assert abs(eta * lam_h - 1.0) < 1e-10


def test_ntk_of_a_sequential_matches_an_explicit_jacobian() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(1, 5), nn.ReLU(), nn.Linear(5, 3), nn.ReLU(), nn.Linear(3, 1)).double()
    x = torch.linspace(-1, 1, 9, dtype=torch.float64)
    rows = []
    for xi in x:
        net.zero_grad()
        net(xi.reshape(1, 1)).sum().backward()
        rows.append(torch.cat([p.grad.reshape(-1) for p in net.parameters()]))
    jac = torch.stack(rows)
    torch.testing.assert_close(approx.ntk_gram(net, x), jac @ jac.T, rtol=1e-13, atol=1e-14)
    w = torch.full((9,), 0.25, dtype=torch.float64)
    torch.testing.assert_close(approx.ntk_gram(net, x, w), 0.25 * jac @ jac.T, rtol=1e-13, atol=1e-14)
    # frozen parameters do not count
    net[0].weight.requires_grad_(False)
    k = approx.ntk_gram(net, x)
    torch.testing.assert_close(k, jac[:, 5:] @ jac[:, 5:].T, rtol=1e-13, atol=1e-14)


def test_ntk_and_step_size_bad_arguments() -> None:
    net = approx.BreakpointNet.random(4, 2)
    x = torch.linspace(-1, 1, 5, dtype=torch.float64)
    with pytest.raises(ValueError, match="member must be < 2"):
        approx.ntk_gram(net, x, member=2)
    with pytest.raises(ValueError, match="weights must have 5"):
        approx.ntk_gram(net, x, torch.ones(4, dtype=torch.float64))
    with pytest.raises(TypeError, match="nn.Module"):
        approx.ntk_gram(lambda t: t, x)
    for bad in (0.0, -1.0, math.inf):
        with pytest.raises(ValueError, match="top_eigenvalue"):
            approx.step_size_from_gram(bad)
    with pytest.raises(ValueError, match="fraction"):
        approx.step_size_from_gram(1.0, fraction=2.0)
    assert approx.step_size_from_gram(2.0, fraction=0.5) == 0.125


# ----------------------------------------------------------------------------- splines
def test_spline_projection_equals_the_exact_best_fit_of_a_sawtooth() -> None:
    knots = [Fraction(0), Fraction(1, 8), Fraction(3, 8), Fraction(5, 8), Fraction(7, 8), Fraction(1)]
    exact = sawtooth.best_pl_fit(2, knots)
    # subdivide=2 puts the sawtooth's kinks 1/4, 1/2, 3/4 on sub-cell boundaries: exact quadrature
    fit = approx.spline_projection(lambda x: sawtooth.sawtooth(x, 2), [float(k) for k in knots],
                                   subdivide=2)
    assert abs(fit.l2_error - exact.l2_error) < 1e-14
    np.testing.assert_allclose(fit.values, [float(v) for v in exact.values], rtol=0, atol=1e-14)
    assert fit.interior_knots == 4
    assert abs(float(fit(0.5)) - float(exact(Fraction(1, 2)))) < 1e-14


def test_spline_projection_reproduces_linear_splines_and_obeys_the_interpolation_bound() -> None:
    knots = np.array([-1.0, -0.3, 0.1, 0.7, 1.0])
    pl = lambda x: torch.as_tensor(np.interp(x.numpy(), knots, [1.0, -2.0, 0.5, 0.0, 3.0]))  # noqa: E731
    assert approx.spline_projection(pl, knots).l2_error < 1e-14
    g2 = float(np.max(np.abs(data.gaussian_bump(np.linspace(-1, 1, 20001), 2))))
    for m in (4, 16, 64):
        fit = approx.spline_projection(data.gaussian_bump, np.linspace(-1, 1, m + 2))
        h = 2 / (m + 1)
        assert fit.l2_error <= h**2 / 8 * g2 * math.sqrt(2)


def test_adapted_knots_are_density_quantiles() -> None:
    np.testing.assert_allclose(approx.adapted_knots(lambda x: torch.ones_like(x), 3, (0.0, 2.0)),
                               [0.0, 0.5, 1.0, 1.5, 2.0], atol=1e-12)
    # density 2x on [0, 1]: mass x^2, quantiles sqrt(j / 4)
    k = approx.adapted_knots(lambda x: 2 * x, 3, (0.0, 1.0), panels=20_000)
    np.testing.assert_allclose(k[1:-1], np.sqrt([0.25, 0.5, 0.75]), atol=1e-7)
    g = data.gaussian_bump
    adapted = approx.spline_projection(g, approx.adapted_knots(lambda x: g(x, 2).abs() ** 0.4, 30, (-1, 1)))
    uniform = approx.spline_projection(g, np.linspace(-1, 1, 32))
    assert adapted.l2_error < uniform.l2_error
    with pytest.raises(ValueError, match="non-negative"):
        approx.adapted_knots(lambda x: x, 2, (-1.0, 1.0))
    with pytest.raises(ValueError, match="positive mass"):
        approx.adapted_knots(lambda x: 0 * x, 2, (-1.0, 1.0))


def test_pl_l2_error_exact_cases_and_missing_knots() -> None:
    # fn = 0, target x on [0, 1]: 1/sqrt(3)
    zero = lambda x: torch.zeros_like(x)  # noqa: E731
    assert abs(approx.pl_l2_error(zero, lambda x: x, (0.0, 1.0)) - 1 / math.sqrt(3)) < 1e-15
    # relu(x - 1/3) against 0 with and without its kink as a knot
    kink = lambda x: torch.relu(x - 1 / 3)  # noqa: E731
    exact = math.sqrt((2 / 3) ** 3 / 3)
    assert abs(approx.pl_l2_error(kink, lambda x: 0 * x, (0.0, 1.0), [1 / 3, 5.0, 1 / 3]) - exact) < 1e-15
    assert abs(approx.pl_l2_error(kink, lambda x: 0 * x, (0.0, 1.0)) - exact) > 1e-12
    # several columns at once
    two = lambda x: torch.cat([x, 2 * x], dim=1)  # noqa: E731
    np.testing.assert_allclose(approx.pl_l2_error(two, lambda x: 0 * x, (0.0, 1.0)),
                               [1 / math.sqrt(3), 2 / math.sqrt(3)], rtol=1e-15)
    with pytest.raises(ValueError, match="finite"):
        approx.pl_l2_error(zero, zero, (0.0, 1.0), [math.nan])


# ----------------------------------------------------------------------------- exact references
@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 6])
def test_yarotsky_l2_error_is_16_to_the_minus_m_over_30(m: int) -> None:
    assert approx.yarotsky_l2_error_sq_exact(m) == Fraction(1, 30 * 16**m)


def test_yarotsky_l2_error_matches_the_float_network() -> None:
    net = sawtooth.yarotsky_square_net(4)
    err = approx.pl_l2_error(net, lambda x: x**2, (0.0, 1.0), np.arange(17) / 16)
    assert abs(err**2 / float(approx.yarotsky_l2_error_sq_exact(4)) - 1) < 1e-9


def test_fit_power_law() -> None:
    x = np.array([8, 16, 32, 64])
    fit = approx.fit_power_law(x, 3.0 * x**-1.5)
    assert abs(fit.exponent + 1.5) < 1e-12 and abs(fit.constant - 3.0) < 1e-11 and fit.stderr < 1e-12
    np.testing.assert_allclose(fit(x), 3.0 * x**-1.5, rtol=1e-12)
    noisy = approx.fit_power_law(x, x**-1.0 * np.array([1.0, 1.2, 0.9, 1.1]))
    assert noisy.stderr > 0
    assert math.isnan(approx.fit_power_law([1, 2], [1, 2]).stderr)
    with pytest.raises(ValueError, match="positive"):
        approx.fit_power_law([1, 2], [1, 0])
    with pytest.raises(ValueError, match="same length"):
        approx.fit_power_law([1, 2, 3], [1, 2])


def test_breakpoint_nets_train_towards_the_target() -> None:
    net = approx.BreakpointNet.random(32, 2, seed=0)
    q = _quad(64)
    y = data.gaussian_bump(q.nodes).reshape(-1, 1)
    run = train.gd(copy.deepcopy(net), approx.quadrature_loss(q.weights), q.inputs, y, lr=0.5, steps=200)
    assert np.all(run.model.l2_errors(data.gaussian_bump) < 0.5 * net.l2_errors(data.gaussian_bump))


# ----------------------------------------------------------------------------- the chapter's runs
def test_train_breakpoint_nets_steps_each_member_at_its_own_sharpness() -> None:
    r = approx.train_breakpoint_nets(data.gaussian_bump, 8, 2, 20, [10, 20], seed=5)
    assert r["err"].shape == (2, 2) and np.all(np.isfinite(r["err"]))
    np.testing.assert_allclose(r["eta"] * r["lam0"], 1.0, rtol=1e-12)
    assert abs(r["sharp0"] - 1) < 1e-8 and r["diverged"] is None
    start = r["net0"].l2_errors(data.gaussian_bump)
    assert np.all(r["err"][-1] < start)
    again = approx.train_breakpoint_nets(data.gaussian_bump, 8, 2, 20, [10, 20], seed=5, sharpness=False)
    np.testing.assert_array_equal(again["err"], r["err"])
    assert np.isnan(again["sharp"])


def test_train_breakpoint_nets_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="horizons"):
        approx.train_breakpoint_nets(data.gaussian_bump, 8, 1, 10, [20])
    with pytest.raises(ValueError, match="horizons"):
        approx.train_breakpoint_nets(data.gaussian_bump, 8, 1, 10, [10, 5])
    with pytest.raises(TypeError, match="net0"):
        approx.train_breakpoint_nets(data.gaussian_bump, 8, 1, 10, [10], net0="net")


def test_breakpoint_width_sweep_adds_movement_and_kernel_drift() -> None:
    rule = _quad(16)
    res = approx.breakpoint_width_sweep(data.gaussian_bump, [8], 2, 10, [10], rule.nodes, rule.weights)
    r = res[8]
    single = approx.train_breakpoint_nets(data.gaussian_bump, 8, 2, 10, [10])   # seed 1000 + m
    np.testing.assert_array_equal(r["err"], single["err"])
    assert r["move_max"].shape == (2,) and np.all(r["move_max"] >= r["move_rms"])
    assert np.all(r["drift"] >= 0) and np.all(r["top0"] > 0)
    with pytest.raises(ValueError, match="widths"):
        approx.breakpoint_width_sweep(data.gaussian_bump, [], 2, 10, [10], rule.nodes, rule.weights)


def test_zero_output_start_is_zero_with_paired_breakpoints() -> None:
    net0 = approx.BreakpointNet.random(9, 3, seed=2)
    z = approx.zero_output_start(net0)
    assert z.width == 8 and z.members == 3
    x = torch.linspace(-1.2, 1.2, 101, dtype=torch.float64)
    assert float(z(x).detach().abs().max()) < 1e-12
    torch.testing.assert_close(z.breakpoints[:, :4], net0.breakpoints[:, :4])
    with pytest.raises(TypeError, match="net0"):
        approx.zero_output_start(torch.zeros(3))


def test_linearised_floor_is_the_least_squares_residual_of_the_step_functions() -> None:
    rule = _quad(40)
    x, w = rule.nodes.numpy(), rule.weights.numpy()
    t = np.array([0.3, -0.5, 0.1])
    steps = (x[:, None] > np.sort(t)[None, :]).astype(float)             # columns: 1[x > t_r]
    residual = np.sin(3 * x) + x**2
    coef, *_ = np.linalg.lstsq(np.sqrt(w)[:, None] * steps, np.sqrt(w) * residual, rcond=None)
    brute = math.sqrt(float(np.sum(w * (residual - steps @ coef) ** 2)))
    assert approx.linearised_floor(t, x, w, residual) == pytest.approx(brute, rel=1e-10)
    assert approx.linearised_floor(t, x, w, steps @ np.array([1.0, -2.0, 0.5])) < 1e-12
    with pytest.raises(ValueError, match="residual"):
        approx.linearised_floor(t, x, w, residual[:-1])


def test_model_floor_bounds_are_ordered_and_the_configuration_is_balanced() -> None:
    g = data.gaussian_bump
    for m in (16, 64):
        err, cells = approx.model_upper_bound(g, m)
        net = approx.balanced_configuration(g, m, cells)
        assert net.width == m and int((net.signs > 0).sum()) == (m + 1) // 2
        ends = torch.linspace(-1, 1, cells + 1, dtype=torch.float64)
        torch.testing.assert_close(net(ends)[:, 0].detach(), g(ends) - g(ends[0]), rtol=0, atol=1e-12)   # increments
        assert err == pytest.approx(float(net.l2_errors(g)[0]))
        assert 0 < approx.lemma_c_bound(g, m, np.linspace(-1, 1, 20_001)) < err
    assert approx.balanced_configuration(g, 2, 40) is None            # needs more signs
    with pytest.raises(ValueError, match="grid"):
        approx.lemma_c_bound(g, 8, np.zeros(1))
    with pytest.raises(ValueError, match="cells"):
        approx.balanced_configuration(g, 8, 0)


def test_train_relu_ensemble_reports_exact_errors_and_pieces() -> None:
    rule = data.quadrature(32, order=2, interval=(0.0, 1.0))
    out = approx.train_relu_ensemble([4], 2, 7, lambda x: x**2, rule, 4)
    assert out["params"] == 13 and out["diverged"] is None
    assert out["err"].shape == (2,) and np.all(out["pieces"] <= 5) and np.all(out["pieces"] >= 1)
    assert out["units"] == 8 and 0 <= out["kinks_in"] <= 8
    assert out["loss_drop"].shape == (2,) and out["sharp"].shape == (3,)
    with pytest.raises(ValueError, match="steps"):
        approx.train_relu_ensemble([4], 2, 7, lambda x: x**2, rule, 1)


def test_yarotsky_references_match_the_closed_forms() -> None:
    refs = approx.yarotsky_references([1, 2, 3])
    for m, r in zip([1, 2, 3], refs):
        assert r["pieces"] == 2**m and r["params"] == 20 * m - 7
        assert r["err_exact"] == pytest.approx(4.0**-m / math.sqrt(30), rel=1e-15)
        assert r["err_float"] == pytest.approx(r["err_exact"], rel=1e-8)
    with pytest.raises(ValueError):
        approx.yarotsky_references([0])


def test_trained_outer_weights_are_parameters_and_train() -> None:
    net0 = approx.BreakpointNet.random(8, 2, seed=3)
    z = approx.zero_output_start(net0, train_outer=True)
    assert z.train_outer and any(p is z.signs for p in z.parameters())
    assert not any(p is net0.signs for p in net0.parameters())
    assert float(z(torch.linspace(-1, 1, 11, dtype=torch.float64)).detach().abs().max()) < 1e-12
    r = approx.train_breakpoint_nets(data.gaussian_bump, 8, 2, 20, [20], net0=z, sharpness=False)
    assert not torch.equal(r["net"].signs, z.signs)            # the outer weights moved
    assert np.all(r["err"][-1] < z.l2_errors(data.gaussian_bump))
    assert r["net"].member(1).train_outer
    with pytest.raises(ValueError, match="signs"):
        approx.BreakpointNet(torch.zeros(2, dtype=torch.float64), torch.tensor([1.0, 0.5]))


def test_step_size_scale_and_large_steps() -> None:
    r = approx.train_breakpoint_nets(data.gaussian_bump, 16, 2, 10, [10], seed=4, lr_scale=0.5)
    np.testing.assert_allclose(r["eta"] * r["lam0"], 0.5, rtol=1e-12)
    assert abs(r["sharp0"] - 0.5) < 1e-8
    big = approx.train_breakpoint_nets(data.gaussian_bump, 16, 2, 400, [400], seed=4, lr_scale=50.0,
                                       sharpness=False)
    # the model is bounded in theta on [-1, 1] (breakpoints that leave switch off): no blow-up
    assert (big["diverged"] is None and np.all(np.isfinite(big["err"]))) or np.all(np.isinf(big["err"]))
    with pytest.raises(ValueError, match="lr_scale"):
        approx.train_breakpoint_nets(data.gaussian_bump, 8, 1, 10, [10], lr_scale=0.0)


def test_optimise_breakpoints_never_worsens_and_stays_above_lemma_c() -> None:
    g = data.gaussian_bump
    err, cells = approx.model_upper_bound(g, 32)
    net = approx.balanced_configuration(g, 32, cells)
    signs = net.signs.clone()
    best = approx.optimise_breakpoints(g, net, 200)
    assert best.shape == (2, 1) and best[1, 0] <= best[0, 0] <= err + 1e-15   # half-way, end
    assert best[1, 0] > approx.lemma_c_bound(g, 32, np.linspace(-1, 1, 20_001))
    torch.testing.assert_close(net.signs, signs)                   # signs fixed
    with pytest.raises(ValueError, match="lr"):
        approx.optimise_breakpoints(g, net, 10, lr=-1.0)


def test_authors_setting_runs_in_float32_and_improves() -> None:
    g = data.gaussian_bump
    errs = approx.authors_setting(g, 16, 3, 400, [1, 400], seed=1, decay_every=200)
    assert errs.shape == (2, 3) and np.all(errs[1] < errs[0])
    again = approx.authors_setting(g, 16, 3, 400, [1, 400], seed=1, decay_every=200)
    np.testing.assert_array_equal(errs, again)
    with pytest.raises(ValueError, match="horizons"):
        approx.authors_setting(g, 16, 1, 10, [20])


def test_train_relu_ensemble_from_a_given_start() -> None:
    rule = data.quadrature(64, order=2, interval=(0.0, 1.0))
    nets = [sawtooth.yarotsky_square_net(2) for _ in range(2)]
    start = approx.EnsembleMLP.from_sequentials(nets)
    out = approx.train_relu_ensemble([4, 4], 2, 0, lambda x: x**2, rule, 4, start=start)
    np.testing.assert_allclose(out["err0"], 4.0**-2 / math.sqrt(30), rtol=1e-8)
    assert np.all(out["pieces0"] == 4)
    with pytest.raises(ValueError, match="start"):
        approx.train_relu_ensemble([4], 2, 0, lambda x: x**2, rule, 4, start=start)


def test_model_floor_search_batches_starts_and_reports_its_convergence() -> None:
    g = data.gaussian_bump
    explicit = approx.balanced_configuration(g, 16, approx.model_upper_bound(g, 16)[1])
    before = float(explicit.l2_errors(g)[0])
    out = approx.model_floor_search(g, 16, 4, 300, extra=explicit, seed=2)
    assert out["errors"].shape == (2, 5)
    # the best found never exceeds its starts, and each half-budget value is no better than the full
    assert out["floor"] <= before + 1e-15
    assert out["floor"] <= out["half_steps"] and out["floor"] <= out["half_starts"]
    assert out["floor"] == pytest.approx(float(out["errors"][1].min()))
    assert out["floor"] > approx.lemma_c_bound(g, 16, np.linspace(-1, 1, 20_001))
    # the same seed gives the same search
    again = approx.model_floor_search(g, 16, 4, 300, extra=explicit, seed=2)
    assert again["floor"] == out["floor"]
    with pytest.raises(TypeError, match="extra"):
        approx.model_floor_search(g, 16, 2, 10, extra=approx.BreakpointNet.random(8, 1))
    with pytest.raises(ValueError, match="starts"):
        approx.model_floor_search(g, 16, 0, 10)


# ----------------------------------------------------------------------------- bad input (issue 19)
def _relu_seq(widths: list[int], seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip([1] + widths, widths + [1])):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(widths) else [])
    return nn.Sequential(*layers).double()


def test_from_sequentials_computes_each_accepted_sequential_exactly() -> None:
    """Reference: each ``nn.Sequential``'s own forward pass (PyTorch's Linear/ReLU)."""
    nets = [_relu_seq([3, 4], seed) for seed in (0, 1, 2)]
    ens = approx.EnsembleMLP.from_sequentials(nets)
    x = torch.linspace(-3, 3, 101, dtype=torch.float64)
    out = ens(x)
    for s, net in enumerate(nets):
        torch.testing.assert_close(out[:, s], net(x.reshape(-1, 1))[:, 0], rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("layers, where", [
    ([nn.Linear(1, 3), nn.Linear(3, 1)], r"nets\[0\]\[1\]"),                    # no ReLU between
    ([nn.Linear(1, 3), nn.ReLU(), nn.ReLU(), nn.Linear(3, 1)], r"nets\[0\]\[2\]"),
    ([nn.Linear(1, 3), nn.ReLU(), nn.Linear(3, 1, bias=False)], r"nets\[0\]\[2\]"),
])
def test_from_sequentials_refuses_what_it_cannot_represent(layers, where) -> None:
    seq = nn.Sequential(*layers).double()
    with pytest.raises(ValueError, match=where):
        approx.EnsembleMLP.from_sequentials([seq])


def test_from_sequentials_refuses_mixed_architectures_and_non_sequences() -> None:
    with pytest.raises(ValueError, match=r"nets\[1\] has layers"):
        approx.EnsembleMLP.from_sequentials([_relu_seq([3], 0), _relu_seq([4], 1)])
    with pytest.raises(TypeError, match=r"nets\[0\]"):
        approx.EnsembleMLP.from_sequentials([nn.Linear(1, 1)])
    with pytest.raises(ValueError, match="nets"):
        approx.EnsembleMLP.from_sequentials(_relu_seq([3], 0))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_breakpoint_net_refuses_non_finite_breakpoints(bad: float) -> None:
    with pytest.raises(ValueError, match="breakpoints must be finite"):
        approx.BreakpointNet(torch.tensor([0.1, bad, -0.3], dtype=torch.float64),
                             torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64))


def test_step_size_from_gram_takes_what_hessian_returns() -> None:
    net = approx.BreakpointNet.random(4, 1, seed=3)
    quad = data.quadrature(8, order=2)
    loss = approx.quadrature_loss(quad.weights)
    top = hessian.eigenvalues(net, loss, quad.inputs, torch.zeros(16, 1, dtype=torch.float64))
    expected = 1.0 / (2.0 * float(top[0]))
    for value in (top, top[0], top.numpy(), np.float64(top[0]), Fraction(float(top[0]))):
        assert approx.step_size_from_gram(value) == expected
    assert approx.step_size_from_gram(2.0, fraction=np.float32(0.5)) == 0.125
    for bad in (True, "1.0", None, torch.ones(2)):
        with pytest.raises(TypeError, match="top_eigenvalue"):
            approx.step_size_from_gram(bad)
    with pytest.raises(TypeError, match="fraction"):
        approx.step_size_from_gram(1.0, fraction=True)
    with pytest.raises(ValueError, match="top_eigenvalue"):
        approx.step_size_from_gram(math.nan)


# --------------------------------------------------------------------------- guards (issue 19)
def _sq(x, derivative=0):
    x = np.asarray(x)
    return x**2 if derivative == 0 else 2 * x if derivative == 1 else 2 + 0 * x


@pytest.mark.parametrize("call", [
    lambda: approx.adapted_knots(lambda x: torch.ones_like(x), 10**9, (0.0, 1.0)),
    lambda: approx.adapted_knots(lambda x: torch.ones_like(x), 3, (0.0, 1.0), panels=10**9),
    lambda: approx.balanced_configuration(_sq, 10**9, 8),
    lambda: approx.balanced_configuration(_sq, 3, 10**9),
    lambda: approx.model_upper_bound(_sq, 10**9),
    lambda: approx.yarotsky_l2_error_sq_exact(approx.MAX_EXACT_M + 1),
    lambda: approx.spline_projection(lambda x: x, [0.0, 1.0], subdivide=10**9),
    lambda: approx.pl_l2_error(lambda x: x, lambda x: x, (0.0, 1.0), subdivide=10**9),
    lambda: approx.train_breakpoint_nets(lambda x: x, 3, 10**9, 2, [2]),
    lambda: approx.train_relu_ensemble([4], 10**9, 0, lambda x: x, data.quadrature(8), 2),
])
def test_size_guards_refuse_before_work(call) -> None:
    """Sizes above the documented MAX_* constants raise ValueError at once (the contract
    itself is the oracle)."""
    with pytest.raises(ValueError, match="size guard"):
        call()


def test_panels_guard_names_panels_per_width() -> None:
    with pytest.raises(ValueError, match="panels_per_width"):
        approx.train_breakpoint_nets(lambda x: x, 1024, 1, 2, [2], panels_per_width=10**6)


def test_guards_admit_the_chapters_sizes() -> None:
    """Chapter sizes pass; the exact L2 error equals the closed form 16^-m / 30."""
    assert approx.yarotsky_l2_error_sq_exact(3) == Fraction(1, 30 * 16**3)
    assert approx.MAX_WIDTH >= 1024 and approx.MAX_MEMBERS >= 49 and approx.MAX_EXACT_M >= 10


def test_nan_data_is_refused_or_nan() -> None:
    """NaN nodes/breakpoints, NaN inputs of ntk_gram and NaN quadrature weights raise a
    ValueError naming the argument; a NaN residual gives NaN (numpy propagation)."""
    q = data.quadrature(8, interval=(-1.0, 1.0))
    x, w = q.nodes.numpy(), q.weights.numpy()
    bp = np.array([-0.5, 0.5])
    with pytest.raises(ValueError, match="breakpoints"):
        approx.linearised_floor(np.array([np.nan, 0.5]), x, w, x**2)
    with pytest.raises(ValueError, match="nodes"):
        approx.linearised_floor(bp, np.where(np.arange(x.size) == 3, np.nan, x), w, x**2)
    with pytest.raises(TypeError, match="residual"):
        approx.linearised_floor(bp, x, w, "x")
    assert math.isnan(approx.linearised_floor(bp, x, w, np.full(x.size, np.nan)))
    net = approx.BreakpointNet(torch.linspace(-0.5, 0.5, 3, dtype=torch.float64),
                               torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="inputs"):
        approx.ntk_gram(net, torch.tensor([0.1, math.nan], dtype=torch.float64))
    with pytest.raises(ValueError, match="weights"):
        approx.quadrature_loss(torch.tensor([0.5, math.nan], dtype=torch.float64))
    with pytest.raises(ValueError, match="weights"):
        approx.quadrature_loss(torch.zeros(0, dtype=torch.float64))
