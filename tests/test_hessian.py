"""Tests of lib.hessian: HVPs and Lanczos against dense Hessians (float64, 1e-6 relative)."""

import numpy as np
import pytest
import torch
from torch import nn

from lib import hessian


def _tanh_net(seed: int = 0, bias: bool = True, act: type = nn.Tanh) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 6, bias=bias), act(), nn.Linear(6, 3, bias=bias)).double()


def _data(seed: int = 0, n: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


CE = nn.CrossEntropyLoss()


def test_dense_hessian_of_least_squares_is_2xtx_over_n() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(30, 4, generator=g, dtype=torch.float64)
    y = torch.randn(30, 1, generator=g, dtype=torch.float64)
    model = nn.Linear(4, 1, bias=False).double()
    h = hessian.dense_hessian(model, nn.MSELoss(), x, y)
    assert h.shape == (4, 4) and h.dtype == torch.float64
    torch.testing.assert_close(h, 2 * x.T @ x / 30, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("method", hessian.HVP_METHODS)
def test_hvp_methods_match_dense_hessian(method: str) -> None:
    model, (x, y) = _tanh_net(), _data()
    h = hessian.dense_hessian(model, CE, x, y)
    torch.testing.assert_close(h, h.T, rtol=1e-12, atol=1e-12)
    v = torch.randn(h.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    op = hessian.hvp_operator(model, CE, x, y, method=method)
    torch.testing.assert_close(op(v), h @ v, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(op(2 * v), 2 * (h @ v), rtol=1e-10, atol=1e-12)
    assert op.n_calls == 2
    torch.testing.assert_close(hessian.hvp(model, CE, x, y, v, method=method), h @ v,
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("act", [nn.Tanh, nn.ReLU])
def test_top_and_min_eigenvalues_match_dense(act: type) -> None:
    model, (x, y) = _tanh_net(3, act=act), _data(3)
    ev = torch.linalg.eigvalsh(hessian.dense_hessian(model, CE, x, y))
    top = hessian.eigenvalues(model, CE, x, y, k=3)
    assert isinstance(top, torch.Tensor) and top.shape == (3,)
    np.testing.assert_allclose(top.numpy(), ev[-3:].flip(0).numpy(), rtol=1e-6)
    lam_min = float(hessian.eigenvalues(model, CE, x, y, which="bottom")[0])
    np.testing.assert_allclose(lam_min, ev[0].item(), rtol=1e-6)
    lo, hi = hessian.eigenvalues(model, CE, x, y, which="both").tolist()
    np.testing.assert_allclose([lo, hi], [ev[0].item(), ev[-1].item()], rtol=1e-6)


def test_info_counts_hvps_and_warm_start_saves_them() -> None:
    model, (x, y) = _tanh_net(4), _data(4, n=60)
    vals, info = hessian.eigenvalues(model, CE, x, y, return_info=True)
    assert info.converged and info.n_hvp == info.lanczos.n_matvec >= 2
    v = info.vectors[:, 0]
    # warm start from a slightly perturbed parameter vector's eigenvector
    theta = hessian.flatten_parameters(model) + 1e-3
    cold, ic = hessian.eigenvalues(model, CE, x, y, theta=theta, return_info=True, seed=5)
    warm, iw = hessian.eigenvalues(model, CE, x, y, theta=theta, v0=v, return_info=True)
    np.testing.assert_allclose(warm.numpy(), cold.numpy(), rtol=1e-8)
    assert iw.n_hvp < ic.n_hvp


def test_lanczos_warm_start_in_an_invariant_subspace_still_finds_the_extremes() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(80, 80, generator=g, dtype=torch.float64)
    a = (a + a.T) / 2
    w, u = torch.linalg.eigh(a)
    for j in (0, 40, 79):
        res = hessian.lanczos(lambda v: a @ v, 80, k=2, which="LA", v0=u[:, j])
        assert res.converged
        np.testing.assert_allclose(res.values, w[-2:].flip(0).numpy(), rtol=1e-9)
        res = hessian.lanczos(lambda v: a @ v, 80, which="SA", v0=u[:, j])
        np.testing.assert_allclose(res.values, w[:1].numpy(), rtol=1e-9)


def test_lanczos_repeated_eigenvalues_and_null_space() -> None:
    g = torch.Generator().manual_seed(1)
    q, _ = torch.linalg.qr(torch.randn(60, 60, generator=g, dtype=torch.float64))
    d = torch.zeros(60, dtype=torch.float64)
    d[:4] = torch.tensor([5.0, 5.0, 3.0, 1.0], dtype=torch.float64)
    b = q @ torch.diag(d) @ q.T
    res = hessian.lanczos(lambda v: b @ v, 60, k=3, which="LA")
    np.testing.assert_allclose(res.values, [5.0, 5.0, 3.0], rtol=1e-10)
    res = hessian.lanczos(lambda v: b @ v, 60, k=1, which="SA")
    assert res.converged and abs(res.values[0]) <= 1e-10 * 5


def test_lanczos_large_spread_like_deep_sawtooth() -> None:
    # spectrum 4^0 .. 4^20 plus a null space: the top eigenvalue to 1e-10 relative, quickly
    g = torch.Generator().manual_seed(2)
    n = 120
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    d = torch.zeros(n, dtype=torch.float64)
    d[:21] = 4.0 ** torch.arange(21, dtype=torch.float64)
    b = q @ torch.diag(d) @ q.T
    res = hessian.lanczos(lambda v: b @ v, n, k=2)
    np.testing.assert_allclose(res.values, [4.0**20, 4.0**19], rtol=1e-10)
    assert res.n_matvec < 40
    vecs = res.vectors
    torch.testing.assert_close(b @ vecs[:, 0], 4.0**20 * vecs[:, 0], rtol=0, atol=1e-6 * 4.0**20)


def test_min_eigenvalue_at_a_minimum_with_a_null_space_does_not_stall() -> None:
    # rank-deficient least squares at its minimum: Hessian 2 X^T X / n with a null space
    g = torch.Generator().manual_seed(3)
    x = torch.randn(10, 30, generator=g, dtype=torch.float64)  # rank 10 < 30 parameters
    y = torch.randn(10, 1, generator=g, dtype=torch.float64)
    model = nn.Linear(30, 1, bias=False).double()
    w = torch.linalg.lstsq(x, y).solution
    with torch.no_grad():
        model.weight.copy_(w.T)
    vals, info = hessian.eigenvalues(model, nn.MSELoss(), x, y, which="bottom", return_info=True)
    lam = float(vals[0])
    top = hessian.eigenvalues(model, nn.MSELoss(), x, y)[0].item()
    assert info.converged and abs(lam) <= 1e-9 * top and info.n_hvp <= 30


def test_float32_model_uses_a_looser_default_tolerance() -> None:
    model64, (x, y) = _tanh_net(5), _data(5)
    model32 = _tanh_net(5).float()
    ev = torch.linalg.eigvalsh(hessian.dense_hessian(model64, CE, x, y))
    top32, info = hessian.eigenvalues(model32, CE, x.float(), y, return_info=True)
    assert info.tol == hessian.default_tol(torch.float32) > hessian.default_tol(torch.float64)
    np.testing.assert_allclose(top32.item(), ev[-1].item(), rtol=1e-4)


def test_flat_loss_round_trip_and_fixed_parameters() -> None:
    model, (x, y) = _tanh_net(6), _data(6)
    model[2].bias.requires_grad_(False)
    flat = hessian.FlatLoss(model, CE, x, y)
    assert flat.n_params == sum(p.numel() for p in model.parameters() if p.requires_grad)
    loss, g = flat.loss_and_grad()
    model.zero_grad()
    ref = CE(model(x), y)
    ref.backward()
    ref_g = torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.requires_grad])
    assert loss == pytest.approx(ref.item(), rel=1e-14)
    torch.testing.assert_close(g, ref_g, rtol=1e-12, atol=1e-14)
    clone = _tanh_net(7)
    clone[2].bias.requires_grad_(False)
    hessian.load_flat_parameters(clone, flat.theta0)
    torch.testing.assert_close(hessian.flatten_parameters(clone), flat.theta0)


def test_bad_input_raises_clearly() -> None:
    model, (x, y) = _tanh_net(), _data()
    with pytest.raises(TypeError, match="inputs"):
        hessian.eigenvalues(model, CE, x.float(), y)
    with pytest.raises(TypeError, match="model"):
        hessian.dense_hessian("net", CE, x, y)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k"):
        hessian.eigenvalues(model, CE, x, y, k=0)
    with pytest.raises(ValueError, match="method"):
        hessian.hvp_operator(model, CE, x, y, method="finite_differences")
    with pytest.raises(ValueError, match="tol"):
        hessian.lanczos(lambda v: v, 5, tol=-1.0)
    with pytest.raises(ValueError, match="which"):
        hessian.lanczos(lambda v: v, 5, which="LM")
    with pytest.raises(ValueError, match="v0"):
        hessian.lanczos(lambda v: v, 5, v0=torch.zeros(5))
    with pytest.raises(ValueError, match="theta"):
        hessian.eigenvalues(model, CE, x, y, theta=torch.zeros(3, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="Lanczos did not reach"):
        hessian.eigenvalues(model, CE, x, y, k=3, max_iter=3)


def _mid_problem() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A mid-sized model: tanh MLP 20-50-50-5 (3,855 parameters), 200 points, float64."""
    torch.manual_seed(11)
    model = nn.Sequential(nn.Linear(20, 50), nn.Tanh(), nn.Linear(50, 50), nn.Tanh(),
                          nn.Linear(50, 5)).double()
    g = torch.Generator().manual_seed(12)
    x = torch.randn(200, 20, generator=g, dtype=torch.float64)
    y = torch.randn(200, 5, generator=g, dtype=torch.float64)
    return model, x, y


def test_top_two_and_lambda_min_match_scipy_eigsh_on_a_mid_sized_model() -> None:
    from scipy.sparse.linalg import LinearOperator, eigsh
    model, x, y = _mid_problem()
    mse = nn.MSELoss()
    op = hessian.hvp_operator(model, mse, x, y)
    n = sum(p.numel() for p in model.parameters())
    assert n > 3000
    lin = LinearOperator((n, n), matvec=lambda v: op(torch.from_numpy(np.ravel(v))).numpy(),
                         dtype=np.float64)
    v0 = np.random.default_rng(0).standard_normal(n)
    ref_top = np.sort(eigsh(lin, k=2, which="LA", tol=1e-12, v0=v0)[0])[::-1]
    ref_min = eigsh(lin, k=1, which="SA", tol=1e-12, v0=v0)[0][0]
    top = hessian.eigenvalues(model, mse, x, y, k=2).numpy()
    lam_min = float(hessian.eigenvalues(model, mse, x, y, which="bottom")[0])
    scale = abs(ref_top[0])
    np.testing.assert_allclose(top, ref_top, rtol=0, atol=1e-8 * scale)
    assert abs(lam_min - ref_min) <= 1e-8 * scale
    assert ref_min < 0 < ref_top[1]        # a point with negative curvature: both ends tested
    # Ritz values are inner bounds (up to rounding)
    assert top[0] <= ref_top[0] + 1e-12 * scale and lam_min >= ref_min - 1e-12 * scale


def _rotated_quadratic(top: list[float], seed: int, n: int = 400):
    """A quadratic loss 0.5 w^T A w with A = Q diag(top, bulk in [-1, 5]) Q^T (Q random
    orthogonal), as a linear model on identity inputs: (q, model, loss, inputs, targets)."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    lam = np.concatenate([top, np.linspace(-1, 5, n - len(top))])
    a = torch.from_numpy(q @ np.diag(lam) @ q.T)
    model = nn.Linear(n, 1, bias=False).double()

    def quad(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        w = out.reshape(-1)                  # the inputs are the identity: out = w
        return 0.5 * w @ a @ w

    return rng, q, model, quad, torch.eye(n, dtype=torch.float64), torch.zeros(n, 1, dtype=torch.float64)


def test_tracker_warm_start_from_the_second_eigenvector_still_finds_the_top() -> None:
    # an unguarded warm start along u2 with no component along u1 (as after a swap)
    # certifies lambda_2; the random component of the guarded start finds lambda_1 (a gap of
    # 10 %: a gap the tolerance does not resolve cannot be separated by a residual test)
    rng, q, model, quad, x, y = _rotated_quadratic([10.0, 9.0], seed=5)
    n = len(q)
    # the previous vector: u2 plus 1 % of the bulk (no u1; lanczos restarts at an exact
    # eigenvector, which a slightly perturbed one does not trigger)
    bulk = q[:, 2:] @ rng.standard_normal(n - 2)
    u2 = torch.from_numpy(q[:, 1] + 1e-2 * bulk / np.linalg.norm(bulk))
    for mix, expect in ((0.0, 9.0), (0.5, 10.0)):
        tracker = hessian.EigenTracker(quad, x, y, tol=1e-4, mix=mix, cold_every=0)
        tracker.vector = u2
        tracker.calls = 1                    # not the first call: warm
        vals, n_hvp, ok = tracker(model)
        assert ok and abs(vals[0] - expect) < 1e-3, (mix, vals, n_hvp)


def test_tracker_with_an_edge_sized_gap_errs_by_at_most_the_gap() -> None:
    """At the edge of stability the top gap goes down to ~0.3 %: there the guarded warm start
    may certify either eigenvalue (the limit of the safeguard), so the sharpness is right to
    within the gap, while "the" top eigenvector is not determined."""
    rng, q, model, quad, x, y = _rotated_quadratic([10.0, 9.97], seed=6)
    n = len(q)
    bulk = q[:, 2:] @ rng.standard_normal(n - 2)
    u2 = torch.from_numpy(q[:, 1] + 1e-2 * bulk / np.linalg.norm(bulk))
    tracker = hessian.EigenTracker(quad, x, y, tol=1e-4, mix=0.5, cold_every=0)
    tracker.vector, tracker.calls = u2, 1
    vals, _, ok = tracker(model)
    assert ok and 9.97 - 1e-3 <= vals[0] <= 10.0 + 1e-12


def test_tracker_cold_starts_and_bad_safeguards() -> None:
    model, (x, y) = _tanh_net(), _data()
    tracker = hessian.EigenTracker(CE, x, y, tol=1e-8, cold_every=2)
    cold = hessian.eigenvalues(model, CE, x, y, tol=1e-8)
    v1 = tracker(model)[0]
    v2 = tracker(model)[0]
    v3 = tracker(model)[0]                   # calls 0 and 2 cold, call 1 warm
    np.testing.assert_array_equal(v1, cold.numpy())
    np.testing.assert_array_equal(v3, hessian.eigenvalues(model, CE, x, y, tol=1e-8,
                                                          seed=0).numpy())
    assert abs(v2[0] - v1[0]) < 1e-6 * abs(v1[0])
    with pytest.raises(ValueError, match="mix"):
        hessian.EigenTracker(CE, x, y, mix=-1.0)
    with pytest.raises(ValueError, match="cold_every"):
        hessian.EigenTracker(CE, x, y, cold_every=-1)


def test_top_means_largest_not_largest_in_magnitude() -> None:
    """A saddle whose negative eigenvalue dominates: Hessian diag(2, 1, 0.5, -5) of
    sum_i d_i w_i^2 / 2 (a closed form, independent of lib). "top" must give 2, 1 (not -5, 2);
    "bottom" must give -5; "both" both ends."""
    import torch
    from torch import nn

    from lib import hessian

    d = torch.tensor([2.0, 1.0, 0.5, -5.0], dtype=torch.float64)
    model = nn.Linear(4, 1, bias=False).double()
    inputs = torch.eye(4, dtype=torch.float64)

    def loss(out, _targets):   # out_i = w_i, so the loss is sum d_i w_i^2 / 2
        return 0.5 * (d * out.reshape(-1) ** 2).sum()

    targets = torch.zeros(4, 1, dtype=torch.float64)
    top = hessian.eigenvalues(model, loss, inputs, targets, k=2, which="top")
    assert torch.allclose(top, torch.tensor([2.0, 1.0], dtype=torch.float64), atol=1e-8)
    bottom = hessian.eigenvalues(model, loss, inputs, targets, k=1, which="bottom")
    assert torch.allclose(bottom, torch.tensor([-5.0], dtype=torch.float64), atol=1e-8)
    both = hessian.eigenvalues(model, loss, inputs, targets, k=1, which="both")
    assert torch.allclose(both, torch.tensor([-5.0, 2.0], dtype=torch.float64), atol=1e-8)


# ----------------------------------------------------------------------------- bad input (issue 19)
@pytest.mark.parametrize("which", ["inputs", "targets"])
def test_empty_data_raise_naming_the_argument(which: str) -> None:
    model, (x, y) = _tanh_net(), _data()
    x, y = (x[:0], y) if which == "inputs" else (x, y[:0])
    for call in (lambda: hessian.eigenvalues(model, CE, x, y),
                 lambda: hessian.dense_hessian(model, CE, x, y),
                 lambda: hessian.hvp_operator(model, CE, x, y)):
        with pytest.raises(ValueError, match=f"{which} must contain at least one sample"):
            call()


def test_non_finite_inputs_and_targets_raise_naming_them() -> None:
    model, (x, y) = _tanh_net(), _data()
    bad = x.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="inputs are not finite"):
        hessian.eigenvalues(model, CE, bad, y)
    yf = torch.randn(40, 3, dtype=torch.float64)
    yf[0, 0] = float("inf")
    with pytest.raises(ValueError, match="targets are not finite"):
        hessian.eigenvalues(model, nn.MSELoss(), x, yf)


@pytest.mark.parametrize("method", hessian.HVP_METHODS)
def test_non_finite_parameters_raise_naming_them_not_a_nan_eigenvalue(method: str) -> None:
    model, (x, y) = _tanh_net(), _data()
    with torch.no_grad():
        model[0].weight[0, 0] = float("nan")
    with pytest.raises(hessian.NonFiniteLossError, match="parameters") as err:
        hessian.eigenvalues(model, CE, x, y, method=method)
    assert isinstance(err.value, ValueError)
    with pytest.raises(ValueError, match="parameters"):
        hessian.dense_hessian(model, CE, x, y)


def test_an_overflowing_loss_raises_and_the_tracker_reports_nan() -> None:
    model, (x, y) = _tanh_net(), _data()

    def overflow(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (out.sum() * 1e300) ** 2           # inf for these finite parameters and data

    with pytest.raises(ValueError, match="loss is not finite.*overflows"):
        hessian.eigenvalues(model, overflow, x, y)
    values, n_hvp, ok = hessian.EigenTracker(overflow, x, y)(model)   # nonfinite="nan": GD diverging
    assert np.isnan(values).all() and n_hvp == 0 and not ok


def test_scalars_accept_numpy_and_torch_and_refuse_bools_and_strings() -> None:
    model, (x, y) = _tanh_net(), _data()
    ref = hessian.eigenvalues(model, CE, x, y, k=2, tol=1e-9)
    for k, tol in ((np.int64(2), np.float64(1e-9)), (torch.tensor(2), torch.tensor(1e-9))):
        torch.testing.assert_close(hessian.eigenvalues(model, CE, x, y, k=k, tol=tol), ref,
                                   rtol=0, atol=0)
    for kwargs in ({"k": True}, {"k": 2.0}, {"tol": True}, {"tol": "1e-9"}, {"max_iter": True}):
        with pytest.raises((TypeError, ValueError), match=next(iter(kwargs))):
            hessian.eigenvalues(model, CE, x, y, **kwargs)
    with pytest.raises(TypeError, match="k"):
        hessian.lanczos(lambda v: v, 5, k=True)
    assert hessian.lanczos(lambda v: 2 * v, np.int64(5), k=np.int64(1)).values[0] == pytest.approx(2)
    for kwargs in ({"mix": True}, {"cold_every": True}, {"k": True}):
        with pytest.raises(TypeError):
            hessian.EigenTracker(CE, x, y, **kwargs)


def test_size_guards_refuse_before_allocating(monkeypatch) -> None:
    model, (x, y) = _tanh_net(), _data()           # 57 parameters
    monkeypatch.setattr(hessian, "MAX_DENSE_PARAMS", 50)
    with pytest.raises(ValueError, match="MAX_DENSE_PARAMS=50"):
        hessian.dense_hessian(model, CE, x, y)
    monkeypatch.setattr(hessian, "MAX_BASIS_ENTRIES", 57 * 10)
    with pytest.raises(ValueError, match="max_iter=20.*MAX_BASIS_ENTRIES"):
        hessian.eigenvalues(model, CE, x, y, max_iter=20)
    assert hessian.eigenvalues(model, CE, x, y, max_iter=8, require_convergence=False).shape == (1,)


# --------------------------------------------------------------------------- guards (issue 19)
def test_check_data_refuses_targets_with_other_rows() -> None:
    x = torch.zeros(8, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="targets must have one row per input"):
        hessian.check_data(x, torch.zeros(1, 8, 1, dtype=torch.float64))
    hessian.check_data(x, torch.zeros(8, dtype=torch.float64))        # one row each: fine
    hessian.check_data(x, torch.tensor(0.0, dtype=torch.float64))     # 0-d: not per row


def test_load_flat_parameters_refuses_nan_and_leaves_the_model() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)).double()
    before = [p.detach().clone() for p in net.parameters()]
    theta = torch.zeros(13, dtype=torch.float64)
    theta[4] = float("nan")
    with pytest.raises(ValueError, match="theta must be finite"):
        hessian.load_flat_parameters(net, theta)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))


@pytest.mark.parametrize("dtype", [torch.int32, torch.complex64, None])
def test_default_tol_refuses_a_non_float_dtype(dtype) -> None:
    with pytest.raises((TypeError, ValueError), match="dtype"):
        hessian.default_tol(dtype)


def test_default_tol_values() -> None:
    """max(1e-10, 100 eps): eps from the IEEE formats (2^-23, 2^-52)."""
    assert hessian.default_tol(torch.float32) == 100 * 2.0**-23
    assert hessian.default_tol(torch.float64) == 1e-10


def test_eigen_tracker_refuses_a_loss_fn_that_is_not_callable() -> None:
    x = torch.zeros(4, 2, dtype=torch.float64)
    with pytest.raises(TypeError, match="loss_fn"):
        hessian.EigenTracker("x", x, torch.zeros(4, 1, dtype=torch.float64))


def test_inputs_of_the_wrong_width_are_named() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)).double()
    with pytest.raises(ValueError, match="inputs of shape"):
        hessian.eigenvalues(net, lambda o, t: ((o - t) ** 2).mean(),
                            torch.zeros(16, 1, dtype=torch.float64),
                            torch.zeros(16, 1, dtype=torch.float64))


def test_evaluation_mode_refuses_a_non_module_at_the_call() -> None:
    with pytest.raises(TypeError, match="model"):
        hessian.evaluation_mode("net")
    net = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)).train()
    with hessian.evaluation_mode(net):
        assert not any(m.training for m in net.modules())
    assert all(m.training for m in net.modules())
