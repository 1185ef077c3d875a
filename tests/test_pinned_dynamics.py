"""Pinned values of the dynamics helpers, each against an independent computation.

* ``flows.curvature_along`` along *non-quadratic* paths (a 2-layer tanh net, a quartic),
  row by row against dense Hessians (``torch.autograd.functional.hessian`` of a loss written
  here, ``numpy.linalg.eigvalsh``, or a closed form), with ``grad_norm``, ``accel`` and the
  flow's loss per row asserted;
* ``flows.gradient_flow``: the reported loss equals the loss evaluated here at the returned
  parameters, and for least squares the closed form ``w* + expm(-tH)(w0 - w*)``;
* ``train.gd``: the recorded update statistics equal the statistics of the parameters'
  actual change between recorded steps (parameters snapshotted by a hook, statistics
  computed here in NumPy).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.linalg import expm
from torch import nn

from lib import flows, train

# ----------------------------------------------------------------------------- a tanh net
N_HIDDEN = 3


def _tanh_problem(seed: int = 3):
    """A 1-3-1 tanh net (10 parameters) in float64 on 12 points of a smooth target."""
    g = torch.Generator().manual_seed(seed)
    x = torch.linspace(-1.5, 1.5, 12, dtype=torch.float64).reshape(-1, 1)
    y = torch.sin(2.0 * x) + 0.3 * x
    model = nn.Sequential(nn.Linear(1, N_HIDDEN), nn.Tanh(), nn.Linear(N_HIDDEN, 1)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    return model, nn.MSELoss(), x, y


def _tanh_loss(theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The MSE loss of the 1-3-1 tanh net, written independently of lib and nn.Module:
    ``theta`` = [W1 (3x1), b1 (3), W2 (1x3), b2 (1)] (the order of ``named_parameters``)."""
    h = N_HIDDEN
    w1, b1 = theta[:h].reshape(h, 1), theta[h:2 * h]
    w2, b2 = theta[2 * h:3 * h].reshape(1, h), theta[3 * h]
    out = torch.tanh(x @ w1.T + b1) @ w2.T + b2
    return ((out - y) ** 2).mean()


def _tanh_loss_numpy(theta: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    """The same loss in plain NumPy (a second, torch-free evaluation)."""
    h = N_HIDDEN
    w1, b1, w2, b2 = theta[:h], theta[h:2 * h], theta[2 * h:3 * h], theta[3 * h]
    out = np.tanh(np.outer(x, w1) + b1) @ w2 + b2
    return float(np.mean((out - y) ** 2))


def _dense(theta: np.ndarray, x: torch.Tensor, y: torch.Tensor):
    """(gradient, eigenvalues of the dense Hessian, Hessian) of the tanh loss at ``theta``."""
    t = torch.tensor(theta, dtype=torch.float64)
    hess = torch.autograd.functional.hessian(lambda th: _tanh_loss(th, x, y), t).numpy()
    leaf = t.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(_tanh_loss(leaf, x, y), leaf)
    return grad.numpy(), np.linalg.eigvalsh(hess), hess


def test_tanh_loss_written_here_matches_the_module_and_finite_differences() -> None:
    """Self-check of the independent loss: it equals the nn.Module's loss at theta0, and its
    autograd gradient equals central finite differences of the NumPy loss."""
    model, mse, x, y = _tanh_problem()
    theta0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy()
    with torch.no_grad():
        module_loss = float(mse(model(x), y))
    assert _tanh_loss(torch.tensor(theta0), x, y).item() == pytest.approx(module_loss, rel=1e-14)
    xs, ys = x.numpy()[:, 0], y.numpy()[:, 0]
    assert _tanh_loss_numpy(theta0, xs, ys) == pytest.approx(module_loss, rel=1e-13)
    grad, _, _ = _dense(theta0, x, y)
    h = 1e-6
    fd = np.array([(_tanh_loss_numpy(theta0 + h * e, xs, ys)
                    - _tanh_loss_numpy(theta0 - h * e, xs, ys)) / (2 * h)
                   for e in np.eye(len(theta0))])
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-9)


@pytest.fixture(scope="module")
def tanh_flow():
    model, mse, x, y = _tanh_problem()
    times = np.array([0.0, 0.25, 1.0, 3.0, 8.0])
    flow = flows.gradient_flow(model, mse, x, y, times, rtol=1e-11, atol=1e-13)
    return model, mse, x, y, flow


def test_gradient_flow_loss_per_row_is_the_loss_at_that_row(tanh_flow) -> None:
    """The recorded ``loss`` equals the loss evaluated here (NumPy, no lib) at each returned
    row, and the rows solve the flow: d theta/dt at the end matches -grad (checked through a
    short extra integration by finite differences in time)."""
    model, mse, x, y, flow = tanh_flow
    rows = np.asarray(flow)
    xs, ys = x.numpy()[:, 0], y.numpy()[:, 0]
    expected = np.array([_tanh_loss_numpy(r, xs, ys) for r in rows])
    np.testing.assert_allclose(flow.loss, expected, rtol=1e-12, atol=0)
    assert expected[-1] < 0.5 * expected[0]  # the path really moves
    # the flow's velocity at t=1 (central difference of two extra rows) is -grad L there
    eps = 1e-3
    extra = np.asarray(flows.gradient_flow(model, mse, x, y, [1.0 - eps, 1.0, 1.0 + eps],
                                           rtol=1e-12, atol=1e-14))
    velocity = (extra[2] - extra[0]) / (2 * eps)
    grad, _, _ = _dense(extra[1], x, y)
    np.testing.assert_allclose(velocity, -grad, rtol=0, atol=1e-5 * np.linalg.norm(grad) + 1e-9)


def test_curvature_along_a_tanh_flow_row_by_row(tanh_flow) -> None:
    """Each row's ``lam_min``, ``lam_max``, ``grad_norm`` and ``accel`` = ``||H g||`` equal the
    dense Hessian and the gradient of the loss written here, evaluated at that row's
    parameters.  The rows' dense spectra differ from each other (a non-quadratic path), so
    evaluating at the wrong row cannot pass."""
    model, mse, x, y, flow = tanh_flow
    cp = flows.curvature_along(model, mse, x, y, flow)
    assert cp.converged
    np.testing.assert_array_equal(cp.times, flow.times)
    rows = np.asarray(flow)
    dense = [_dense(r, x, y) for r in rows]
    lam_min = np.array([ev[0] for _, ev, _ in dense])
    lam_max = np.array([ev[-1] for _, ev, _ in dense])
    gnorm = np.array([np.linalg.norm(g) for g, _, _ in dense])
    accel = np.array([np.linalg.norm(h @ g) for g, _, h in dense])
    # the test's own premise: curvature and gradient change along the path by far more
    # than the tolerances below
    assert np.ptp(lam_max) > 1e-2 * np.abs(lam_max).max()
    assert np.ptp(lam_min) > 1e-2 * np.abs(lam_min).max()
    assert np.ptp(gnorm) > 1e-1 * gnorm.max() and gnorm.min() > 0
    assert lam_min.min() < 0 < lam_max.min()  # indefinite somewhere: a non-convex path
    np.testing.assert_allclose(cp.lam_min, lam_min, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(cp.lam_max, lam_max, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(cp.grad_norm, gnorm, rtol=1e-10, atol=0)
    np.testing.assert_allclose(cp.accel, accel, rtol=1e-9, atol=0)


def test_curvature_along_arbitrary_rows_with_explicit_times() -> None:
    """Rows far apart (not a flow), given with ``times=``: every row still gets its own
    curvature and gradient (dense, computed here)."""
    model, mse, x, y = _tanh_problem(seed=7)
    gen = np.random.default_rng(11)
    rows = gen.normal(size=(4, 10))
    times = np.array([0.0, 1.0, 2.0, 5.0])
    cp = flows.curvature_along(model, mse, x, y, rows, times=times, seed=2)
    assert cp.converged
    np.testing.assert_array_equal(cp.times, times)
    for i, r in enumerate(rows):
        g, ev, h = _dense(r, x, y)
        assert cp.lam_min[i] == pytest.approx(ev[0], rel=1e-7, abs=1e-9)
        assert cp.lam_max[i] == pytest.approx(ev[-1], rel=1e-7, abs=1e-9)
        assert cp.grad_norm[i] == pytest.approx(np.linalg.norm(g), rel=1e-10)
        assert cp.accel[i] == pytest.approx(np.linalg.norm(h @ g), rel=1e-9)


def _quartic(th):
    """``f = (|theta|^2 - 1)^2 / 4 + a theta_0 theta_1`` with ``a = 0.3`` (a Mexican hat tilted
    into a saddle at 0): closed-form gradient and Hessian below."""
    return 0.25 * (th[0] ** 2 + th[1] ** 2 - 1.0) ** 2 + 0.3 * th[0] * th[1]


def _quartic_closed_form(th: np.ndarray):
    r2 = th @ th
    swap = np.array([[0.0, 1.0], [1.0, 0.0]])
    grad = (r2 - 1.0) * th + 0.3 * swap @ th
    hess = (r2 - 1.0) * np.eye(2) + 2.0 * np.outer(th, th) + 0.3 * swap
    value = 0.25 * (r2 - 1.0) ** 2 + 0.3 * th[0] * th[1]
    return value, grad, hess


def test_curvature_along_a_quartic_flow_against_the_closed_form() -> None:
    """The flow of the quartic from near the saddle at 0: loss, gradient norm, ``lam_min``
    (negative early, positive late), ``lam_max`` and ``accel`` per row against the closed-form
    value, gradient and 2x2 Hessian."""
    problem = flows.as_problem(_quartic, [0.05, 0.02])
    times = np.array([0.0, 1.0, 4.0, 8.0, 20.0])
    flow = flows.gradient_flow(*problem, times, rtol=1e-12, atol=1e-14)
    cp = flows.curvature_along(*problem, flow)
    rows = np.asarray(flow)
    closed = [_quartic_closed_form(r) for r in rows]
    np.testing.assert_allclose(flow.loss, [v for v, _, _ in closed], rtol=1e-13, atol=1e-15)
    ev = np.array([np.linalg.eigvalsh(h) for _, _, h in closed])
    assert ev[0, 0] < -0.5 and ev[-1, 0] > 0  # from the saddle region into a minimum
    np.testing.assert_allclose(cp.lam_min, ev[:, 0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(cp.lam_max, ev[:, 1], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(cp.grad_norm, [np.linalg.norm(g) for _, g, _ in closed],
                               rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(cp.accel, [np.linalg.norm(h @ g) for _, g, h in closed],
                               rtol=1e-9, atol=1e-15)


# ----------------------------------------------------------------------------- least squares
def test_least_squares_flow_rows_and_loss_match_expm() -> None:
    """``w(t) = w* + expm(-tH)(w0 - w*)``, ``H = 2 X^T X / n`` (scipy.linalg.expm), and the
    reported loss equals ``mean((X w(t) - y)^2)`` at that closed-form ``w(t)``."""
    from test_flows import _least_squares

    model, _, x, y, H, w_star, w0 = _least_squares(seed=4, n=30, d=4)
    X, Y = x.numpy(), y.numpy()[:, 0]
    times = np.array([0.0, 0.5, 2.0, 7.0])
    traj = flows.gradient_flow(model, nn.MSELoss(), x, y, times, rtol=1e-12, atol=1e-14)
    exact = np.array([w_star + expm(-H * t) @ (w0 - w_star) for t in times])
    np.testing.assert_allclose(np.asarray(traj), exact, rtol=0, atol=1e-9)
    loss = np.array([np.mean((X @ w - Y) ** 2) for w in exact])
    np.testing.assert_allclose(traj.loss, loss, rtol=1e-9, atol=0)
    assert loss[0] > 1.5 * loss[-1]


def test_gradient_flow_record_loss_false_gives_nan() -> None:
    model, mse, x, y = _tanh_problem()
    traj = flows.gradient_flow(model, mse, x, y, [0.0, 0.5], record_loss=False)
    assert np.isnan(traj.loss).all() and traj.loss.shape == (2,)


# ----------------------------------------------------------------------------- train.gd
def _stats(change: np.ndarray) -> dict[str, float]:
    """The statistics of ``train.update_stats`` computed here in NumPy, from their
    definition: max and mean of |u|, mean of 1/|u| over non-zero entries, number of zeros."""
    a = np.abs(change).reshape(-1)
    nz = a[a > 0]
    return {"max_abs": a.max(), "mean_abs": a.mean(),
            "mean_reciprocal": (1.0 / nz).mean() if nz.size else np.inf,
            "n_zero": a.size - nz.size}


@pytest.mark.parametrize("record_every", [1, 3])
def test_gd_recorded_updates_equal_the_parameters_change(record_every: int) -> None:
    """A hook snapshots every parameter at each recorded step (before that step's update);
    with ``record_every = 1`` consecutive snapshots differ by exactly the recorded update, so
    its statistics equal those of the actual change (float64: up to one rounding of p).
    With ``record_every = 3`` the change over the recorded step itself is checked by
    re-running one step from the snapshot with an independent textbook update."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 5), nn.Tanh(), nn.Linear(5, 1)).double()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(20, 2, generator=gen, dtype=torch.float64)
    y = torch.sin(x.sum(1, keepdim=True))
    lr, steps = 0.2, 7

    def snapshot(net: nn.Module, step: int):
        return {n: p.detach().clone().numpy() for n, p in net.named_parameters()}

    loss_fn = nn.MSELoss()
    run = train.gd(model, loss_fn, x, y, lr=lr, steps=steps, record_every=record_every,
                   hooks={"params": snapshot}, record_updates=True)
    snaps = run.history["params"]
    recorded = run.history["step"].tolist()
    names = [n for n, _ in model.named_parameters()]
    n_updates = len([s for s in recorded if s < steps])
    for name in names:
        stats = run.history[f"update/{name}"]
        assert stats["max_abs"].shape == (n_updates,)
        for j, step in enumerate(recorded[:n_updates]):
            if record_every == 1:
                change = snaps[j + 1][name] - snaps[j][name]
            else:  # one textbook step from the snapshot (independent of lib.train)
                net = nn.Sequential(nn.Linear(2, 5), nn.Tanh(), nn.Linear(5, 1)).double()
                net.load_state_dict({n: torch.from_numpy(v) for n, v in snaps[j].items()})
                loss = loss_fn(net(x), y)
                grads = dict(zip(names, torch.autograd.grad(loss, list(net.parameters()))))
                change = -lr * grads[name].numpy()
            want = _stats(change)
            assert stats["max_abs"][j] == pytest.approx(want["max_abs"], rel=1e-9)
            assert stats["mean_abs"][j] == pytest.approx(want["mean_abs"], rel=1e-9)
            assert stats["mean_reciprocal"][j] == pytest.approx(want["mean_reciprocal"], rel=1e-9)
            assert stats["n_zero"][j] == want["n_zero"]
            assert want["max_abs"] > 1e-4  # the parameters really move


def test_gd_update_statistics_count_exact_zeros() -> None:
    """A parameter whose gradient is exactly zero (a dead ReLU unit: its input weight and
    bias get zero gradient) records ``n_zero`` equal to the number of entries that do not
    move, counted here from the snapshots."""
    model = nn.Sequential(nn.Linear(1, 2), nn.ReLU(), nn.Linear(2, 1)).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0], [1.0]], dtype=torch.float64))
        model[0].bias.copy_(torch.tensor([0.5, -5.0], dtype=torch.float64))  # unit 2 dead on [0,1]
        model[2].weight.copy_(torch.tensor([[0.5, 0.5]], dtype=torch.float64))
        model[2].bias.zero_()
    x = torch.linspace(0, 1, 9, dtype=torch.float64).reshape(-1, 1)
    y = 2 * x

    def snapshot(net: nn.Module, step: int):
        return {n: p.detach().clone().numpy() for n, p in net.named_parameters()}

    run = train.gd(model, nn.MSELoss(), x, y, lr=0.1, steps=3, hooks={"p": snapshot},
                   record_updates=True)
    snaps = run.history["p"]
    for name in ("0.weight", "0.bias"):
        for j in range(3):
            change = snaps[j + 1][name] - snaps[j][name]
            want = _stats(change)
            assert want["n_zero"] == 1
            assert run.history[f"update/{name}"]["n_zero"][j] == want["n_zero"]
            assert run.history[f"update/{name}"]["max_abs"][j] == pytest.approx(
                want["max_abs"], rel=1e-12)
            assert run.history[f"update/{name}"]["mean_reciprocal"][j] == pytest.approx(
                want["mean_reciprocal"], rel=1e-9)
