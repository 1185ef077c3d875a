"""Tests of lib.flows: closed forms for quadratics, the first-order gap, errors."""

import numpy as np
import pytest
import torch
from scipy.linalg import expm
from torch import nn

from lib import flows


def _least_squares(seed: int = 0, n: int = 40, d: int = 5):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randn(n, 1, generator=g, dtype=torch.float64)
    model = nn.Linear(d, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(1, d, generator=g, dtype=torch.float64))
    X, Y = x.numpy(), y.numpy()[:, 0]
    H = 2 * X.T @ X / n  # Hessian of nn.MSELoss (mean of squares)
    w_star = np.linalg.solve(X.T @ X, X.T @ Y)
    w0 = model.weight.detach().numpy()[0].copy()
    return model, nn.MSELoss(), x, y, H, w_star, w0


def test_flow_of_least_squares_matches_expm_closed_form() -> None:
    model, mse, x, y, H, w_star, w0 = _least_squares()
    times = np.array([0.0, 0.3, 1.0, 2.5, 6.0])
    traj = flows.gradient_flow(model, mse, x, y, times, rtol=1e-12, atol=1e-14)
    exact = np.array([w_star + expm(-H * t) @ (w0 - w_star) for t in times])
    assert isinstance(traj, np.ndarray) and traj.shape == (len(times), len(w0))
    np.testing.assert_allclose(np.asarray(traj), exact, rtol=0, atol=1e-8)
    assert traj.n_grad_evals > 0 and traj.info["method"] == "DOP853"
    np.testing.assert_array_equal(traj.times, times)
    assert traj.loss[-1] < traj.loss[0]
    # the model itself is not modified
    np.testing.assert_array_equal(model.weight.detach().numpy()[0], w0)


@pytest.mark.parametrize("method", ["RK45", "RK23"])
def test_other_adaptive_methods(method: str) -> None:
    model, mse, x, y, H, w_star, w0 = _least_squares(1)
    traj = flows.gradient_flow(model, mse, x, y, [1.0], rtol=1e-8, atol=1e-10, method=method)
    assert traj.info["method"] == method
    np.testing.assert_allclose(traj[0], w_star + expm(-H) @ (w0 - w_star), atol=1e-6)


def test_gradient_descent_on_a_quadratic_matches_its_closed_form() -> None:
    model, mse, x, y, H, w_star, w0 = _least_squares(2)
    eta = 0.05
    times = np.array([0.0, 0.5, 1.0, 5.0])
    gd = flows.gradient_descent(model, mse, x, y, times, eta)
    steps = np.rint(times / eta).astype(int)
    exact = np.array([w_star + np.linalg.matrix_power(np.eye(len(w0)) - eta * H, k) @ (w0 - w_star)
                      for k in steps])
    np.testing.assert_allclose(np.asarray(gd), exact, rtol=0, atol=1e-13)
    np.testing.assert_array_equal(gd.steps, steps)
    assert gd.n_grad_evals == steps[-1]
    by_steps = flows.gradient_descent(model, mse, x, y, eta=eta, steps=steps)
    np.testing.assert_array_equal(np.asarray(by_steps), np.asarray(gd))
    with pytest.raises(ValueError, match="eta"):  # no argument-order guessing: times, then eta
        flows.gradient_descent(model, mse, x, y, eta, times)
    every = flows.gradient_descent(model, mse, x, y, eta=eta, steps=20)
    assert every.shape == (21, len(w0))
    np.testing.assert_array_equal(every[10], gd[1])
    # Euler with h = eta is gradient descent
    euler = flows.fixed_step_flow(model, mse, x, y, times, eta, "euler")
    np.testing.assert_allclose(np.asarray(euler), np.asarray(gd), rtol=0, atol=1e-15)


def test_first_order_gap_on_a_quadratic_matches_closed_form_and_gd() -> None:
    model, mse, x, y, H, w_star, w0 = _least_squares(3)
    times = np.array([0.0, 0.5, 1.0, 2.0, 4.0])
    gap = flows.first_order_gap(model, mse, x, y, times, rtol=1e-12, atol=1e-14)
    exact_c = np.array([-0.5 * t * H @ H @ expm(-H * t) @ (w0 - w_star) for t in times])
    np.testing.assert_allclose(gap.C, exact_c, rtol=0, atol=1e-9)
    flow = flows.gradient_flow(model, mse, x, y, times, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.asarray(gap.flow), np.asarray(flow), atol=1e-9)
    # GD - flow = eta C + O(eta^2): the remainder shrinks like eta^2
    rem = []
    for eta in (0.02, 0.01):
        gd = flows.gradient_descent(model, mse, x, y, times, eta)
        rem.append(np.abs(np.asarray(gd) - np.asarray(flow) - eta * gap.C).max())
    assert 3.0 < rem[0] / rem[1] < 5.0
    np.testing.assert_allclose(gap.predicted_distance(0.01), 0.01 * np.linalg.norm(exact_c, axis=1),
                               atol=1e-10)


def test_gd_flow_distance_is_first_order_on_a_nonlinear_model() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4, bias=False), nn.Tanh(), nn.Linear(4, 2, bias=False)).double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(20, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (20,), generator=g)
    ce = nn.CrossEntropyLoss()
    times = np.linspace(0, 2, 5)
    flow = flows.gradient_flow(model, ce, x, y, times)
    gap = flows.first_order_gap(model, ce, x, y, times)
    rel = []
    for eta in (0.05, 0.025):
        d = flows.matched_distances(flows.gradient_descent(model, ce, x, y, times, eta), flow)
        rel.append(abs(d[-1] / gap.predicted_distance(eta)[-1] - 1))
    assert rel[1] < 0.05 and 1.5 < rel[0] / rel[1] < 2.5


def test_rk4_is_fourth_order() -> None:
    model, mse, x, y, H, w_star, w0 = _least_squares(4)
    exact = w_star + expm(-2.0 * H) @ (w0 - w_star)
    err = [np.abs(flows.fixed_step_flow(model, mse, x, y, [2.0], h, "rk4")[0] - exact).max()
           for h in (0.1, 0.05)]
    assert 12 < err[0] / err[1] < 20
    traj = flows.fixed_step_flow(model, mse, x, y, [2.0], 0.1, "rk4")
    assert traj.n_grad_evals == 4 * 20


def test_curvature_along_a_quadratic_and_the_bound_helpers() -> None:
    model, mse, x, y, H, w_star, w0 = _least_squares(5)
    times = np.array([0.0, 1.0, 2.0])
    flow = flows.gradient_flow(model, mse, x, y, times)
    cp = flows.curvature_along(model, mse, x, y, flow)
    ev = np.linalg.eigvalsh(H)
    np.testing.assert_allclose(cp.lam_min, ev[0], rtol=1e-8)
    np.testing.assert_allclose(cp.lam_max, ev[-1], rtol=1e-8)
    g = np.array([H @ (row - w_star) for row in np.asarray(flow)])
    np.testing.assert_allclose(cp.accel, np.linalg.norm(g @ H, axis=1), rtol=1e-10)
    assert cp.converged and cp.n_hvp > 0
    t = np.linspace(0, 2, 2001)
    np.testing.assert_allclose(flows.negative_curvature_integral(t, -np.ones_like(t)), t, atol=1e-12)
    np.testing.assert_array_equal(flows.negative_curvature_integral(t, np.ones_like(t)), 0 * t)
    bound = flows.first_order_bound(t, -np.ones_like(t), np.ones_like(t))
    np.testing.assert_allclose(bound, 0.5 * (np.exp(t) - 1), rtol=1e-6, atol=1e-12)


def test_as_problem_two_dimensional_saddle() -> None:
    model, loss_fn, inputs, targets = flows.as_problem(lambda th: 0.5 * (th[0] ** 2 - th[1] ** 2),
                                                       [1.0, 1e-3])
    traj = flows.gradient_flow(model, loss_fn, inputs, targets, [0.0, 1.0, 3.0], rtol=1e-12,
                               atol=1e-15)
    np.testing.assert_allclose(traj[:, 0], np.exp(-traj.times), rtol=1e-10)
    np.testing.assert_allclose(traj[:, 1], 1e-3 * np.exp(traj.times), rtol=1e-10)
    gd = flows.gradient_descent(model, loss_fn, inputs, targets, [3.0], 0.1)
    np.testing.assert_allclose(gd[0], [0.9**30, 1e-3 * 1.1**30], rtol=1e-12)


def test_trajectory_slicing_and_arithmetic() -> None:
    t = flows.Trajectory(np.arange(12.0).reshape(4, 3), times=[0, 1, 2, 3], loss=[4, 3, 2, 1],
                         n_grad_evals=7)
    half = t[::2]
    assert isinstance(half, flows.Trajectory)
    np.testing.assert_array_equal(half.times, [0, 2])
    np.testing.assert_array_equal(half.loss, [4, 2])
    np.testing.assert_array_equal(t.at([1, 3]).times, [1, 3])
    assert type(t[0]) is np.ndarray and type(t - 1) is np.ndarray
    with pytest.raises(ValueError, match="recorded"):
        t.at([0.5])


def test_bad_input_raises_clearly() -> None:
    model, mse, x, y, *_ = _least_squares()
    for eta in (0.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="eta"):
            flows.gradient_descent(model, mse, x, y, [1.0], eta)
    with pytest.raises(ValueError, match="sorted"):
        flows.gradient_flow(model, mse, x, y, [1.0, 0.5])
    with pytest.raises(ValueError, match=">= 0"):
        flows.gradient_flow(model, mse, x, y, [-1.0, 0.5])
    with pytest.raises(ValueError, match="sorted"):
        flows.gradient_descent(model, mse, x, y, [1.0, 0.5], 0.1)
    with pytest.raises(ValueError, match="multiples"):
        flows.gradient_descent(model, mse, x, y, [0.25], 0.1)
    with pytest.raises(ValueError, match="method"):
        flows.gradient_flow(model, mse, x, y, [1.0], method="euler")
    with pytest.raises(ValueError, match="rtol"):
        flows.gradient_flow(model, mse, x, y, [1.0], rtol=0.0)
    with pytest.raises(ValueError, match="exactly one"):
        flows.gradient_descent(model, mse, x, y, eta=0.1)
    bad = x.clone()
    bad[0, 0] = float("nan")
    for err in (ValueError, FloatingPointError, flows.NonFiniteLossError):
        with pytest.raises(err, match="not finite"):
            flows.gradient_flow(model, mse, bad, y, [1.0])
    # divergence: eta far beyond 2 / lambda_max
    with pytest.raises(flows.NonFiniteLossError, match="step"):
        flows.gradient_descent(model, mse, x, y, eta=1e3, steps=[400])
    with pytest.raises(RuntimeError, match="max_evals"):
        flows.gradient_flow(model, mse, x, y, [50.0], max_evals=5)


# --------------------------------------------------------------------------- two-dimensional toys
def test_double_well_gd_end_is_gradient_descent() -> None:
    kappa, start = 0.5, np.array([0.3, -0.2])
    lib_end = flows.gradient_descent(*flows.as_problem(lambda th: flows.double_well(th, kappa),
                                                       start), eta=0.1, steps=[40],
                                     record_loss=False)[0]
    py_end = np.array(flows.double_well_gd_end(0.3, -0.2, 0.1, 40, kappa))
    assert np.max(np.abs(py_end - lib_end)) < 1e-12
    assert flows.double_well_gd_end(0.3, -0.2, 0.1, 0, kappa) == (0.3, -0.2)
    with pytest.raises(ValueError, match="steps"):
        flows.double_well_gd_end(0.3, -0.2, 0.1, -1, kappa)
    with pytest.raises(ValueError, match="eta"):
        flows.double_well_gd_end(0.3, -0.2, 0.0, 1, kappa)


def test_double_well_sides_and_separatrix() -> None:
    # kappa = 0: the y-axis is the separatrix by symmetry; GD keeps the sign of y
    assert flows.double_well_side([0.0, 0.0], 1e-3, 0.1, 20.0, 0.0) == 1.0
    assert flows.double_well_side([0.0, 0.0], -1e-3, 0.1, 20.0, 0.0) == -1.0
    assert abs(flows.double_well_separatrix([0.5, 0.0], 0.1, 20.0, 0.0)) < 1e-9
    # a shifted start: the offset is found to the bisection's resolution, sides differ across it
    d = flows.double_well_separatrix([0.5, 0.01], 0.1, 20.0, 0.0, iters=20)
    assert abs(d + 0.01) < 1e-6
    assert (flows.double_well_side([0.5, 0.01], d - 1e-6, 0.1, 20.0, 0.0)
            != flows.double_well_side([0.5, 0.01], d + 1e-6, 0.1, 20.0, 0.0))
    with pytest.raises(ValueError, match="start"):
        flows.double_well_side([0.0, 0.0, 0.0], 0.0, 0.1, 1.0, 0.5)
    with pytest.raises(ValueError, match="lo < hi"):
        flows.double_well_separatrix([0.0, 0.0], 0.1, 1.0, 0.5, lo=0.1, hi=-0.1)
    with pytest.raises(ValueError, match="iters"):
        flows.double_well_separatrix([0.0, 0.0], 0.1, 1.0, 0.5, iters=0)


def test_escape_times_from_a_saddle_grow_like_log_one_over_delta() -> None:
    # f = (x^2 - y^2) / 2: y(t) = delta e^t, so |theta| = 0.5 at t = log(0.5 / delta)
    saddle = lambda th: 0.5 * (th[0] ** 2 - th[1] ** 2)  # noqa: E731
    times = np.arange(0, 1201) * 0.01
    deltas = (1e-2, 1e-4)
    esc, ends = flows.escape_times(saddle, [np.array([0.0, d]) for d in deltas], times)
    assert np.allclose(esc, np.log(0.5 / np.array(deltas)), atol=0.011)
    assert all(end[1] > 0 for end in ends)
    with pytest.raises(ValueError, match="radius"):
        flows.escape_times(saddle, [np.array([0.0, 1e-2])], times, radius=0)


def test_evals_for_error_interpolates_and_extrapolates_power_laws() -> None:
    rows = [(n, 3.0 * n**-4.0) for n in (10, 100, 1000)]       # order 4
    n, p = flows.evals_for_error(rows, 3.0 * 300.0**-4.0)
    assert abs(n / 300 - 1) < 1e-9 and abs(p - 4) < 1e-9
    n, p = flows.evals_for_error(rows[::-1], 3.0 * 1e4**-4.0)    # outside: extrapolation
    assert abs(n / 1e4 - 1) < 1e-9
    with pytest.raises(ValueError, match="rows"):
        flows.evals_for_error(rows[:1], 1e-6)
    with pytest.raises(ValueError, match="target"):
        flows.evals_for_error(rows, -1.0)


# ----------------------------------------------------------------------------- flow_accuracy
def test_flow_accuracy_measures_the_error_at_every_time() -> None:
    model, mse, x, y, H, w_star, w0 = _least_squares(3)
    times = np.linspace(0.0, 4.0, 9)
    acc = flows.flow_accuracy(model, mse, x, y, times, rtol=1e-4, atol=1e-6,
                              ref_rtol=1e-12, ref_atol=1e-14)
    exact = np.array([w_star + expm(-H * t) @ (w0 - w_star) for t in times])
    true_err = np.linalg.norm(np.asarray(acc.flow) - exact, axis=1)
    # the reference is exact to far below the loose flow's error
    np.testing.assert_allclose(acc.error, true_err, rtol=1e-3, atol=1e-11)
    assert acc.max_error == acc.error.max() > 0 and acc.t_max in times
    assert acc.resolve is None and acc.ratio is None and acc.max_ratio is None
    # a given flow is used as is; resolve gives the ratio where it is positive
    resolve = np.linspace(0.0, 1.0, len(times))
    again = flows.flow_accuracy(model, mse, x, y, times, rtol=1e-4, atol=1e-6, flow=acc.flow,
                                ref_rtol=1e-12, ref_atol=1e-14, resolve=resolve)
    np.testing.assert_array_equal(again.error, acc.error)
    assert np.isnan(again.ratio[0])
    np.testing.assert_allclose(again.ratio[1:], acc.error[1:] / resolve[1:])
    assert again.max_ratio == pytest.approx(np.max(acc.error[1:] / resolve[1:]))


def test_flow_accuracy_default_reference_is_tighter() -> None:
    model, mse, x, y, *_ = _least_squares(4)
    acc = flows.flow_accuracy(model, mse, x, y, [0.0, 1.0], rtol=1e-6, atol=1e-8)
    assert acc.reference.info["rtol"] == pytest.approx(1e-9)
    assert acc.reference.info["atol"] == pytest.approx(1e-11)
    assert acc.error[0] == 0.0


@pytest.mark.parametrize("kwargs, name", [
    ({"ref_rtol": 1e-3}, "ref_rtol"),
    ({"ref_atol": -1.0}, "ref_atol"),
    ({"rtol": 0.0}, "rtol"),
    ({"resolve": [1.0]}, "resolve"),
    ({"resolve": [1.0, -1.0]}, "resolve"),
    ({"flow": np.zeros((3, 5))}, "flow"),
])
def test_flow_accuracy_rejects_bad_arguments(kwargs: dict, name: str) -> None:
    model, mse, x, y, *_ = _least_squares(5)
    with pytest.raises(ValueError, match=name):
        flows.flow_accuracy(model, mse, x, y, [0.0, 1.0], **{"rtol": 1e-6, **kwargs})


# ----------------------------------------------------------------------------- curvature_to_loss
def test_curvature_to_loss_on_a_saddle_integrates_lambda_minus_exactly() -> None:
    # f = 2 - a^2/2 + b^2/2 from (1, 1): a = e^t, b = e^-t, lambda_min = -1, and the loss reaches
    # 1 when sinh(2t) = 1
    model, loss_fn, inputs, targets = flows.as_problem(
        lambda th: 2 - 0.5 * th[0] ** 2 + 0.5 * th[1] ** 2, [1.0, 1.0])
    res = flows.curvature_to_loss(model, loss_fn, inputs, targets, 1.0, t_max=10.0, n_times=8,
                                  rtol=1e-12, atol=1e-14)
    t_exact = np.arcsinh(1.0) / 2
    assert res.t_level == pytest.approx(t_exact, rel=1e-8)
    np.testing.assert_allclose(res.times, np.linspace(0, t_exact, 9), rtol=1e-8)
    np.testing.assert_allclose(res.lam_min, -1.0, atol=1e-8)
    np.testing.assert_allclose(res.lam_max, 1.0, atol=1e-8)
    assert res.Lambda_level == pytest.approx(t_exact, rel=1e-8)
    np.testing.assert_allclose(res.rows[:, 0], np.exp(res.times), rtol=1e-8)
    assert res.loss[-1] == pytest.approx(1.0, abs=1e-8) and res.converged


def test_curvature_to_loss_convex_has_no_negative_curvature() -> None:
    model, mse, x, y, H, w_star, w0 = _least_squares(6)
    loss0 = mse(model(x), y).item()
    res = flows.curvature_to_loss(model, mse, x, y, 0.5 * loss0 + 0.5 * float(
        np.mean((x.numpy() @ w_star - y.numpy()[:, 0]) ** 2)), t_max=100.0, n_times=4)
    assert res.Lambda_level == 0.0 and np.all(res.lam_min > 0)
    assert np.all(np.diff(res.loss) < 0)


@pytest.mark.parametrize("kwargs, name, exc", [
    ({"level": 10.0}, "level", ValueError),
    ({"level": -1.0}, "level", ValueError),
    ({"t_max": 1e-3}, "t_max", RuntimeError),
    ({"n_times": 1}, "n_times", ValueError),
])
def test_curvature_to_loss_rejects_bad_arguments(kwargs: dict, name: str, exc: type) -> None:
    model, mse, x, y, *_ = _least_squares(7)
    args = {"level": 0.5 * mse(model(x), y).item(), "t_max": 100.0, **kwargs}
    with pytest.raises(exc, match=name):
        flows.curvature_to_loss(model, mse, x, y, args.pop("level"), **args)


# ----------------------------------------------------------------------------- monitor_times
def test_monitor_times_gathers_points_where_the_loss_falls() -> None:
    # a loss that stays flat, then drops in [4, 5]: half the monitor's weight (loss and arc
    # length) sits in that tenth of the interval, so about half the points land there
    t = np.linspace(0.0, 10.0, 10_001)
    loss = 1.0 - np.clip(t - 4.0, 0.0, 1.0)
    rows = loss[:, None] * np.array([[1.0, 2.0]])
    out = flows.monitor_times(t, loss, rows, 60)
    assert out[0] == 0.0 and out[-1] == 10.0 and np.all(np.diff(out) > 0)
    inside = np.sum((out > 4.0) & (out < 5.0))
    assert 35 <= inside <= 45                      # 2/3 of the weight: ~40 of 60 intervals
    # no stretch is left empty: the largest gap is at most 3 / n_times of the interval
    assert np.diff(out).max() <= 3 * 10.0 / 60 + 1e-9


def test_monitor_times_is_uniform_when_only_time_moves() -> None:
    t = np.linspace(0.0, 2.0, 101)
    out = flows.monitor_times(t, np.ones_like(t), np.zeros((101, 3)), 8)
    np.testing.assert_allclose(out, np.linspace(0.0, 2.0, 9), atol=1e-12)


@pytest.mark.parametrize("args, name", [
    (([0.0, 1.0], [1.0], np.zeros((2, 1)), 4), "loss"),
    (([0.0, 1.0], [1.0, 0.5], np.zeros((2, 1)), 1), "n_times"),
])
def test_monitor_times_rejects_bad_arguments(args: tuple, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        flows.monitor_times(*args)


def test_curvature_to_loss_adaptive_sampling_keeps_the_exact_integral() -> None:
    # the saddle of the uniform test: lambda_- = 1 everywhere, so Lambda = t_level whatever the
    # sampling; the adaptive times are increasing and span [0, t_level]
    model, loss_fn, inputs, targets = flows.as_problem(
        lambda th: 2 - 0.5 * th[0] ** 2 + 0.5 * th[1] ** 2, [1.0, 1.0])
    res = flows.curvature_to_loss(model, loss_fn, inputs, targets, 1.0, t_max=10.0, n_times=8,
                                  rtol=1e-12, atol=1e-14, sampling="adaptive", n_fine=400)
    t_exact = np.arcsinh(1.0) / 2
    assert res.times[0] == 0.0 and res.times[-1] == pytest.approx(t_exact, rel=1e-8)
    assert np.all(np.diff(res.times) > 0) and len(res.times) == 9
    assert res.Lambda_level == pytest.approx(t_exact, rel=1e-8)
    with pytest.raises(ValueError, match="sampling"):
        flows.curvature_to_loss(model, loss_fn, inputs, targets, 1.0, t_max=10.0,
                                sampling="random")


def test_curvature_to_loss_check_refines_the_grid_once() -> None:
    # convex quadratic: lambda_- = 0, so the refined integral is 0 too; the midpoints are
    # computed on the same flow
    model, mse, x, y, H, w_star, w0 = _least_squares(8)
    loss0 = mse(model(x), y).item()
    level = 0.5 * loss0 + 0.5 * float(np.mean((x.numpy() @ w_star - y.numpy()[:, 0]) ** 2))
    res = flows.curvature_to_loss(model, mse, x, y, level, t_max=100.0, n_times=4, check=True)
    assert res.Lambda_check == 0.0 and res.lam_min_check.shape == (4,)
    assert np.all(res.lam_min_check > 0)
    plain = flows.curvature_to_loss(model, mse, x, y, level, t_max=100.0, n_times=4)
    assert plain.Lambda_check is None and plain.lam_min_check is None


# ----------------------------------------------------------------------------- bad input (issue 19)
def test_a_tiny_step_over_a_long_horizon_is_refused_before_any_work(monkeypatch) -> None:
    import time

    model, mse, x, y, *_ = _least_squares()
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="MAX_STEPS"):
        flows.gradient_descent(model, mse, x, y, [1.0], 1e-9)
    with pytest.raises(ValueError, match="size guard"):
        flows.gradient_descent(model, mse, x, y, eta=0.1, steps=flows.MAX_STEPS + 1)
    with pytest.raises(ValueError, match="MAX_STEPS"):
        flows.fixed_step_flow(model, mse, x, y, [1e3], 1e-6)
    assert time.perf_counter() - t0 < 5.0
    monkeypatch.setattr(flows, "MAX_ENTRIES", 10)       # 3 rows of 5 parameters
    with pytest.raises(ValueError, match="MAX_ENTRIES=10"):
        flows.gradient_flow(model, mse, x, y, [0.0, 0.5, 1.0])


def test_gradient_flow_stops_at_the_default_evaluation_cap(monkeypatch) -> None:
    model, mse, x, y, *_ = _least_squares()
    monkeypatch.setattr(flows, "MAX_EVALS", 20)
    with pytest.raises(RuntimeError, match="max_evals=20"):
        flows.gradient_flow(model, mse, x, y, [0.0, 100.0], rtol=1e-13, atol=1e-15)


def test_step_sizes_accept_numpy_and_torch_scalars_and_refuse_bools_and_strings() -> None:
    model, mse, x, y, *_ = _least_squares()
    ref = flows.gradient_descent(model, mse, x, y, [0.0, 0.3], 0.1)
    for eta in (np.float64(0.1), torch.tensor(0.1, dtype=torch.float64)):
        np.testing.assert_array_equal(flows.gradient_descent(model, mse, x, y, [0.0, 0.3], eta),
                                      ref)
    np.testing.assert_array_equal(flows.gradient_descent(model, mse, x, y, eta=0.1,
                                                         steps=np.int64(3))[[0, 3]], ref)
    for kwargs in ({"eta": True, "steps": 3}, {"eta": "0.1", "steps": 3},
                   {"eta": 0.1, "steps": True}, {"eta": 0.1, "steps": [0, True]}):
        with pytest.raises(TypeError):
            flows.gradient_descent(model, mse, x, y, **kwargs)
    with pytest.raises(TypeError, match="max_evals"):
        flows.gradient_flow(model, mse, x, y, [1.0], max_evals=True)
    with pytest.raises(TypeError, match="times"):
        flows.gradient_flow(model, mse, x, y, [0.0, True])
    with pytest.raises(TypeError, match="rtol"):
        flows.gradient_flow(model, mse, x, y, [1.0], rtol="1e-8")
    with pytest.raises(TypeError, match="steps"):
        flows.double_well_gd_end(0.1, 0.2, 0.1, True, 0.1)
    with pytest.raises(TypeError, match="iters"):
        flows.double_well_separatrix([0.0, 0.0], 0.1, 1.0, 0.1, iters=True)


@pytest.mark.parametrize("which", ["inputs", "targets"])
def test_empty_data_raise_naming_the_argument(which: str) -> None:
    model, mse, x, y, *_ = _least_squares()
    x, y = (x[:0], y) if which == "inputs" else (x, y[:0])
    for call in (lambda: flows.gradient_flow(model, mse, x, y, [0.0, 1.0]),
                 lambda: flows.gradient_descent(model, mse, x, y, [0.0, 1.0], 0.1)):
        with pytest.raises(ValueError, match=which):
            call()


def test_non_finite_parameters_raise_naming_them() -> None:
    model, mse, x, y, *_ = _least_squares()
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="parameters"):
        flows.gradient_flow(model, mse, x, y, [0.0, 1.0])
    with pytest.raises(ValueError, match="parameters"):
        flows.gradient_descent(model, mse, x, y, [0.0, 1.0], 0.1)


def test_monitor_times_refuses_nan_rather_than_weighing_it_zero() -> None:
    t = np.linspace(0, 1, 5)
    loss = np.array([1.0, 0.5, np.nan, 0.2, 0.1])
    with pytest.raises(ValueError, match="loss must be finite"):
        flows.monitor_times(t, loss, np.zeros((5, 2)), 3)


# --------------------------------------------------------------------------- guards (issue 19)
@pytest.mark.parametrize("dtype", [None, torch.complex64, torch.int32, "float64"])
def test_function_model_refuses_a_non_float_dtype(dtype) -> None:
    for make in (flows.FunctionModel, flows.as_problem):
        with pytest.raises((TypeError, ValueError), match="dtype"):
            make(lambda th: (th ** 2).sum(), [0.3, 0.2], dtype)


@pytest.mark.parametrize("theta0", [[float("nan"), 0.2], [0.3, float("inf")], []])
def test_function_model_refuses_non_finite_or_empty_theta0(theta0) -> None:
    with pytest.raises(ValueError, match="theta0"):
        flows.as_problem(lambda th: (th ** 2).sum(), theta0)


@pytest.mark.parametrize("kappa", [True, float("nan"), float("inf"), "1", None])
def test_double_well_refuses_a_bad_kappa(kappa) -> None:
    with pytest.raises((TypeError, ValueError), match="kappa"):
        flows.double_well(np.array([0.3, 0.2]), kappa)


def test_double_well_value_unchanged() -> None:
    """Closed form at (0.3, 0.2), kappa 1: 0.045 + 0.25 * 0.96^2 + 0.06."""
    assert flows.double_well(np.array([0.3, 0.2]), 1.0) == pytest.approx(0.045 + 0.25 * 0.96**2 + 0.06)
    assert flows.double_well(np.array([0.3, 0.2]), np.float64(1.0)) == flows.double_well(
        np.array([0.3, 0.2]), 1.0)


def test_n_times_size_guards() -> None:
    t = np.linspace(0, 1, 11)
    with pytest.raises(ValueError, match="n_times"):
        flows.monitor_times(t, np.linspace(1, 0.1, 11), np.zeros((11, 2)), 10**9)
    model, loss, x, y = flows.as_problem(lambda th: (th ** 2).sum(), [0.3, 0.2])
    with pytest.raises(ValueError, match="n_times"):
        flows.curvature_to_loss(model, loss, x, y, 0.01, t_max=2.0, n_times=10**9)
    with pytest.raises(ValueError, match="n_fine"):
        flows.curvature_to_loss(model, loss, x, y, 0.01, t_max=2.0, n_fine=10**9)


def test_gradient_descent_reads_a_0d_array_as_a_step_count() -> None:
    """steps=np.array(2) is the int 2 (iterates 0, 1, 2), not a list of one iterate; the
    iterates of f = |theta|^2 with eta 0.1 are theta0 * 0.8^k (closed form)."""
    problem = flows.as_problem(lambda th: (th ** 2).sum(), [0.3, 0.2])
    a = flows.gradient_descent(*problem, eta=0.1, steps=np.array(2))
    b = flows.gradient_descent(*problem, eta=0.1, steps=2)
    assert np.array_equal(np.asarray(a), np.asarray(b)) and list(a.steps) == [0, 1, 2]
    np.testing.assert_allclose(np.asarray(a)[2], np.array([0.3, 0.2]) * 0.64, rtol=1e-14)


def test_targets_with_other_rows_are_refused() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)).double()
    x = torch.randn(8, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="targets"):
        flows.gradient_descent(net, lambda o, t: ((o - t) ** 2).mean(), x,
                               torch.zeros(1, 8, 1, dtype=torch.float64), eta=0.1, steps=1)


def test_double_well_separatrix_refuses_a_non_finite_start() -> None:
    with pytest.raises(ValueError, match="start"):
        flows.double_well_separatrix((float("nan"), 0.01), 0.1, 1.0, 0.5, iters=3)
