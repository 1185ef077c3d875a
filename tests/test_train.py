import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from lib import fp, nets, pieces, train
from lib import sawtooth as saw


def _mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((out - y) ** 2).mean()


def _problem(dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(32, 1, generator=gen, dtype=torch.float64)
    y = torch.sin(3 * x)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(1, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1))
    return model.to(dtype), x.to(dtype), y.to(dtype)


def _plain_gd(model, x, y, lr, steps):
    """Reference: the textbook loop, written independently of lib.train."""
    import copy

    net = copy.deepcopy(model)
    losses = []
    for _ in range(steps):
        net.zero_grad()
        loss = _mse(net(x), y)
        losses.append(float(loss.detach()))
        loss.backward()
        with torch.no_grad():
            for p in net.parameters():
                p -= lr * p.grad
    return net, losses


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_plain_gd_bit_for_bit(dtype) -> None:
    model, x, y = _problem(dtype)
    ref, ref_losses = _plain_gd(model, x, y, 0.1, 25)
    run = train.gd(model, _mse, x, y, lr=0.1, steps=25, noise=0.0, lastbit_k=1)
    for p, q in zip(run.model.parameters(), ref.parameters()):
        assert torch.equal(p, q)
    assert run.history["loss"][:-1].tolist() == ref_losses
    assert run.steps_done == 25 and run.diverged_at is None


def test_model_is_not_modified_and_dtype_is_applied() -> None:
    model, x, y = _problem(torch.float64)
    before = [p.clone() for p in model.parameters()]
    run = train.gd(model, _mse, x, y, lr=0.1, steps=3, dtype=torch.float32)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(p.dtype == torch.float32 for p in run.model.parameters())
    assert run.config["dtype"] == "torch.float32"


def test_gd_on_least_squares_matches_closed_form() -> None:
    # f(w) = 0.5 mean((Xw - y)^2) has Hessian H = X^T X / n; GD: w_k - w* = (I - eta H)^k (w_0 - w*).
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(40, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(40, 1, generator=gen, dtype=torch.float64)
    model = nn.Linear(3, 1, bias=False).double()
    w0 = model.weight.detach().clone().T
    H = X.T @ X / 40
    w_star = torch.linalg.solve(H, X.T @ y / 40)
    eta, k = 0.3, 50
    run = train.gd(model, _mse, X, y, lr=eta, steps=k)
    M = torch.eye(3, dtype=torch.float64) - eta * H
    expected = w_star + torch.linalg.matrix_power(M, k) @ (w0 - w_star)
    assert torch.allclose(run.model.weight.detach().T, expected, rtol=0, atol=1e-12)


def test_recording_schedule_and_hooks() -> None:
    model, x, y = _problem()
    calls = []
    run = train.gd(model, _mse, x, y, lr=0.05, steps=10, record_every=4,
                   hooks={"calls": lambda m, step: calls.append(step) or step * 2},
                   record_updates=True)
    assert run.history["step"].tolist() == [0, 4, 8, 10]
    assert calls == [0, 4, 8, 10]
    assert run.history["calls"].tolist() == [0, 8, 16, 20]
    stats = run.history["update/0.bias"]
    assert stats["max_abs"].shape == (3,)  # updates applied at steps 0, 4, 8 (none after 10)
    assert np.all(stats["max_abs"] >= stats["mean_abs"])


def test_update_stats_values() -> None:
    s = train.update_stats(torch.tensor([0.0, 0.5, -0.25, 0.0]))
    assert s == {"max_abs": 0.5, "mean_abs": 0.1875, "mean_reciprocal": 3.0, "n_zero": 2}
    assert train.update_stats(torch.zeros(3))["mean_reciprocal"] == math.inf


def test_frozen_parameters_do_not_move() -> None:
    model, x, y = _problem()
    model[0].weight.requires_grad_(False)
    run = train.gd(model, _mse, x, y, lr=0.1, steps=5)
    assert torch.equal(run.model[0].weight, model[0].weight)
    assert not torch.equal(run.model[0].bias, model[0].bias)


@pytest.mark.parametrize("noise_on", train.NOISE_TARGETS)
def test_noise_touches_only_biases_and_is_bounded(noise_on: str) -> None:
    model, x, y = _problem()
    s = 0.1
    plain = train.gd(model, _mse, x, y, lr=0.1, steps=1)
    noisy = train.gd(model, _mse, x, y, lr=0.1, steps=1, noise=s, noise_on=noise_on, seed=3)
    for (name, p0), p_plain, p_noisy in zip(model.named_parameters(), plain.model.parameters(),
                                            noisy.model.parameters()):
        if name.endswith("weight"):
            assert torch.equal(p_plain, p_noisy), name
            continue
        assert not torch.equal(p_plain, p_noisy), name
        if noise_on == "bias_updates":
            update = (p0 - p_plain).detach()
            bound = s * update.abs() * (1 + 1e-12)
        else:
            bound = s * p_plain.detach().abs() * (1 + 1e-12)
        assert torch.all((p_noisy - p_plain).abs() <= bound + 1e-300), name


def test_noise_is_reproducible_from_seed() -> None:
    model, x, y = _problem()
    a = train.gd(model, _mse, x, y, lr=0.1, steps=3, noise=0.5, seed=7)
    b = train.gd(model, _mse, x, y, lr=0.1, steps=3, noise=0.5, seed=7)
    c = train.gd(model, _mse, x, y, lr=0.1, steps=3, noise=0.5, seed=8)
    assert all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(a.model.parameters(), c.model.parameters()))


@given(st.integers(min_value=0, max_value=6))
def test_lastbit_split_by_power_of_two_is_exact(e: int) -> None:
    # Scaling by 2^e is exact in binary floating point, so eta*k and g/k reproduce plain GD.
    model, x, y = _problem(torch.float32)
    plain = train.gd(model, _mse, x, y, lr=0.1, steps=5)
    split = train.gd(model, _mse, x, y, lr=0.1, steps=5, lastbit_k=2**e)
    assert all(torch.equal(p, q) for p, q in zip(plain.model.parameters(), split.model.parameters()))


@pytest.mark.parametrize("k", [3, 5, 7, 11])
def test_lastbit_split_differs_by_rounding_only(k: int) -> None:
    model, x, y = _problem(torch.float32)
    plain = train.gd(model, _mse, x, y, lr=0.1, steps=1)
    split = train.gd(model, _mse, x, y, lr=0.1, steps=1, lastbit_k=k)
    u = 2.0**-24
    for p0, p, q in zip(model.parameters(), plain.model.parameters(), split.model.parameters()):
        step = (p0 - p).detach().abs()
        # fl(eta k) fl(g/k) = eta g (1+d1)(1+d2)(1+d3): at most ~3u relative in the update,
        # plus the rounding of the subtraction (half an ulp of the result).
        slack = 4 * u * step + 2 * u * p.detach().abs()
        assert torch.all((p - q).abs() <= slack)


def test_weight_decay_adds_lambda_theta() -> None:
    model = nn.Linear(1, 1, bias=False).double()
    with torch.no_grad():
        model.weight.fill_(2.0)
    x = torch.zeros(4, 1, dtype=torch.float64)  # zero data gradient: only the decay acts
    run = train.gd(model, _mse, x, torch.zeros(4, 1, dtype=torch.float64), lr=0.25, steps=3,
                   weight_decay=0.5)
    assert run.model.weight.item() == 2.0 * (1 - 0.25 * 0.5) ** 3


def test_divergence_is_detected() -> None:
    model = nn.Linear(1, 1, bias=False).half()
    with torch.no_grad():
        model.weight.fill_(1.0)
    x = torch.ones(4, 1, dtype=torch.float16)
    y = torch.zeros(4, 1, dtype=torch.float16)
    # Hessian of 0.5 mean (w x)^2 is 1: eta = 3 > 2 gives w_k = (-2)^k, overflowing float16.
    run = train.gd(model, _mse, x, y, lr=3.0, steps=100)
    assert run.diverged_at is not None and run.diverged_at < 30
    assert not math.isfinite(run.history["loss"][-1])
    assert run.steps_done == run.diverged_at


@pytest.mark.parametrize("kwargs, match, exc", [
    ({"lr": 0.0}, "lr", ValueError), ({"lr": -1.0}, "lr", ValueError),
    ({"lr": float("nan")}, "lr", ValueError), ({"steps": -1}, "steps", ValueError),
    ({"steps": 2.0}, "steps", TypeError), ({"record_every": 0}, "record_every", ValueError),
    ({"noise": 1.5}, "noise", ValueError), ({"noise_on": "weights"}, "noise_on", ValueError),
    ({"dtype": torch.int32}, "dtype", TypeError), ({"lastbit_k": 0}, "lastbit_k", ValueError),
    ({"weight_decay": -0.1}, "weight_decay", ValueError), ({"seed": -1}, "seed", ValueError),
    ({"hooks": {"loss": lambda m, s: 0}}, "hook names", ValueError),
])
def test_bad_arguments_raise(kwargs, match, exc) -> None:
    model, x, y = _problem()
    args = {"lr": 0.1, "steps": 2}
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        train.gd(model, _mse, x, y, **args)


def test_bad_model_and_data_raise() -> None:
    model, x, y = _problem()
    with pytest.raises(TypeError, match="model"):
        train.gd(object(), _mse, x, y, lr=0.1, steps=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="inputs"):
        train.gd(model, _mse, x.numpy(), y, lr=0.1, steps=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="inputs"):
        train.gd(model, _mse, x[:0], y[:0], lr=0.1, steps=1)
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="trainable"):
        train.gd(model, _mse, x, y, lr=0.1, steps=1)


# ----------------------------------------------------------------------------- edge of stability
from fractions import Fraction  # noqa: E402

from lib import hessian  # noqa: E402


def _least_squares(n: int = 40, d: int = 5, seed: int = 1, dtype=torch.float64):
    """A bias-free linear model with _mse: the loss is quadratic with Hessian X^T X / n."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = torch.randn(n, 1, generator=gen, dtype=torch.float64)
    model = nn.Linear(d, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(1, d, generator=gen, dtype=torch.float64))
    lam = np.linalg.eigvalsh((X.T @ X / n).numpy())
    return model.to(dtype), X.to(dtype), y.to(dtype), lam


@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-9), (torch.float32, 1e-4)])
def test_sharpness_of_quadratic_is_its_top_eigenvalue(dtype, rtol) -> None:
    model, X, y, lam = _least_squares(dtype=dtype)
    hook = train.sharpness_hook(_mse, X, y, every=3)
    run = train.gd(model, _mse, X, y, lr=0.5 / lam[-1], steps=10, hooks={"sharpness": hook})
    res = hook.result()
    assert res["step"].tolist() == [0, 3, 6, 9]  # every 3rd of the recorded steps 0..10
    assert np.all(res["converged"]) and np.all(res["n_hvp"] >= 1)
    # the Hessian of a quadratic is constant: every estimate is lambda_max(X^T X / n)
    np.testing.assert_allclose(res["sharpness"], lam[-1], rtol=rtol)
    s = run.history["sharpness"]
    assert np.all(np.isnan(s[[1, 2, 4, 5, 7, 8, 10]]))
    np.testing.assert_allclose(s[[0, 3, 6, 9]], lam[-1], rtol=rtol)
    # k = 2: the two largest eigenvalues, largest first
    hook2 = train.sharpness_hook(_mse, X, y, k=2)
    values = hook2(model, 0)
    np.testing.assert_allclose(values, lam[::-1][:2], rtol=rtol)


@pytest.mark.parametrize("margin", [0.1, 0.02])
def test_gd_on_quadratic_diverges_iff_eta_above_two_over_lambda_max(margin: float) -> None:
    model, X, y, lam = _least_squares()
    w_star = np.linalg.solve((X.T @ X).numpy(), (X.T @ y).numpy())[:, 0]
    d0 = np.linalg.norm(model.weight.detach().numpy()[0] - w_star)
    steps = int(np.ceil(12 / np.log1p(2 * margin)))  # |1 - eta lambda| = 1 +- 2 margin
    dist = {}
    for side in (-1, 1):
        eta = (1 + side * margin) * 2 / lam[-1]
        run = train.gd(model, _mse, X, y, lr=eta, steps=steps)
        dist[side] = np.linalg.norm(run.model.weight.detach().numpy()[0] - w_star) / d0
        assert run.diverged_at is None
    # below 2/lambda_max every mode contracts; above, the top mode grows like (1 + 2 margin)^k
    assert dist[-1] < 1.0
    assert dist[1] > 1e4
    rate = (2 * (1 + margin) - 1)
    assert dist[1] < rate**steps  # never faster than the top multiplier


def test_sharpness_hook_does_not_change_the_run_and_warm_starts_help() -> None:
    model, x, y = _problem(torch.float32)
    plain = train.gd(model, _mse, x, y, lr=0.05, steps=30)
    warm = train.sharpness_hook(_mse, x, y, every=5)
    cold = train.sharpness_hook(_mse, x, y, every=5, warm_start=False)
    a = train.gd(model, _mse, x, y, lr=0.05, steps=30, hooks={"s": warm})
    b = train.gd(model, _mse, x, y, lr=0.05, steps=30, hooks={"s": cold})
    for run in (a, b):
        assert all(torch.equal(p, q) for p, q in zip(plain.model.parameters(), run.model.parameters()))
    rw, rc = warm.result(), cold.result()
    np.testing.assert_allclose(rw["sharpness"], rc["sharpness"], rtol=1e-4)
    assert rw["n_hvp"][1:].sum() < rc["n_hvp"][1:].sum()
    warm.reset()
    assert warm.result()["step"].size == 0 and warm.vector is None


def test_sharpness_along_matches_eigenvalues() -> None:
    model, x, y = _problem(torch.float64)
    keep = train.parameter_hook(every=4)
    train.gd(model, _mse, x, y, lr=0.1, steps=12, hooks={"theta": keep})
    thetas = keep.array()
    assert keep.steps == [0, 4, 8, 12] and thetas.shape == (4, sum(p.numel() for p in model.parameters()))
    np.testing.assert_array_equal(thetas[0], hessian.flatten_parameters(model).numpy())
    res = train.sharpness_along(model, _mse, x, y, thetas, steps=keep.steps)
    assert res["step"].tolist() == keep.steps
    for row, value in zip(thetas, res["sharpness"]):
        ref = hessian.eigenvalues(model, _mse, x, y, theta=torch.from_numpy(row))[0].item()
        np.testing.assert_allclose(value, ref, rtol=1e-8)


def test_sharpness_hook_returns_nan_on_non_finite_parameters() -> None:
    model, x, y = _problem()
    with torch.no_grad():
        model[0].weight[0, 0] = float("inf")
    hook = train.sharpness_hook(_mse, x, y)
    assert math.isnan(hook(model, 0))
    assert hook.result()["n_hvp"].tolist() == [0]


def test_edge_statistics() -> None:
    steps = np.arange(0, 100, 10)
    lr = 0.5  # 2/lr = 4
    s = np.array([1.0, 2.0, 3.0, 4.2, np.nan, 3.8, 4.0, 4.4, 4.0, 3.6])
    st = train.edge_statistics(steps, s, lr)
    assert st["crossing"] == 30
    window = np.array([4.2, 3.8, 4.0, 4.4, 4.0, 3.6]) / 4
    assert st["n"] == 6
    np.testing.assert_allclose([st["mean"], st["std"], st["min"], st["max"]],
                               [window.mean(), window.std(), 0.9, 1.1])
    assert train.edge_statistics(steps, s, lr, after=25)["n"] == 4  # steps 60..90
    none = train.edge_statistics(steps, s, 0.1)
    assert none["crossing"] is None and math.isnan(none["mean"]) and none["peak"] == pytest.approx(0.22)
    with pytest.raises(ValueError, match="lr"):
        train.edge_statistics(steps, s, 0.0)
    with pytest.raises(ValueError, match="same length"):
        train.edge_statistics(steps, s[:-1], lr)


def test_accuracy_and_relative_l1() -> None:
    model = nn.Linear(2, 3, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]))
    x = torch.tensor([[2.0, 1.0], [0.0, 3.0], [-2.0, -2.0], [1.0, 0.5]], dtype=torch.float64)
    # predictions 0, 1, 2, 0
    assert train.accuracy(model, x, torch.tensor([0, 1, 2, 1])) == 0.75
    with pytest.raises(ValueError, match="labels"):
        train.accuracy(model, x, torch.zeros(4))
    assert train.relative_l1_difference([1.0, 0.0, -2.0], [1.0, 0.0, 2.0]) == pytest.approx(2 * (0 + 0 + 1) / 3)
    assert train.relative_l1_difference([3.0], [1.0]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same"):
        train.relative_l1_difference([1.0], [1.0, 2.0])


def _exact_gd(X: np.ndarray, y: np.ndarray, w0: np.ndarray, eta: float, steps: int) -> list:
    """GD on 0.5 mean((Xw - y)^2) in exact rational arithmetic, with the float step size's
    exact binary value: the reference for pure rounding errors."""
    n, d = X.shape
    Xf = [[Fraction(float(v)) for v in row] for row in X]
    yf = [Fraction(float(v)) for v in y]
    w = [Fraction(float(v)) for v in w0]
    e = Fraction(eta)
    path = [list(w)]
    for _ in range(steps):
        r = [sum(Xf[i][j] * w[j] for j in range(d)) - yf[i] for i in range(n)]
        g = [sum(Xf[i][j] * r[i] for i in range(n)) / n for j in range(d)]
        w = [w[j] - e * g[j] for j in range(d)]
        path.append(list(w))
    return path


def test_lastbit_family_float64_bitwise_for_k1_and_rounding_only_otherwise() -> None:
    n, d, steps = 6, 3, 25
    model, X, y, lam = _least_squares(n=n, d=d, seed=5)
    eta = 0.7 / lam[-1]  # contraction: ||I - eta H|| < 1
    fam = train.lastbit_family(model, _mse, X, y, lr=eta, steps=steps, ks=(1, 2, 3, 5, 7, 9))
    keep = train.parameter_hook()
    plain = train.gd(model, _mse, X, y, lr=eta, steps=steps, hooks={"theta": keep})
    # k = 1 is plain GD bit for bit, k = 2 too (scaling by 2 is exact)
    assert torch.equal(fam.runs[1].model.weight, plain.model.weight)
    assert fam.bitwise_equal.tolist()[:2] == [True, True]
    assert np.all(fam.divergence[1] == 0)
    # the odd splits differ from plain GD in the last bits at some steps ...
    assert np.any(fam.divergence[2:] > 0)
    # ... and only by rounding: plain GD stays within a rounding bound B_j of exact GD at every
    # step j, so every split run is within 2 B_j of plain GD
    path = _exact_gd(X.numpy(), y.numpy()[:, 0], model.weight.detach().numpy()[0], eta, steps)
    exact = np.array([[float(v) for v in w] for w in path])
    u = 2.0**-53
    Xn, yn = X.numpy(), y.numpy()[:, 0]
    local = []
    for wf in exact[:-1]:
        g_err = (n + d + 2) * u * (np.abs(Xn).T @ (np.abs(Xn) @ np.abs(wf) + np.abs(yn))) / n
        g = Xn.T @ (Xn @ wf - yn) / n
        # gradient rounding (dot-product bounds), fl(eta k) fl(g / k) (3 roundings), subtraction
        local.append(np.linalg.norm(eta * g_err + 4 * u * eta * np.abs(g) + 2 * u * np.abs(wf)))
    bound = 2 * np.concatenate([[0.0], np.cumsum(local)])  # propagated by the contraction
    err_plain = np.linalg.norm(keep.array() - exact, axis=1)
    assert np.all(err_plain <= bound), (err_plain, bound)
    assert bound[-1] < 1e-13 * np.linalg.norm(exact[-1])  # a rounding-size bound
    norms = np.linalg.norm(keep.array(), axis=1)
    assert np.all(fam.divergence * norms <= 2 * bound)


def test_lastbit_family_records_divergence_and_accuracy() -> None:
    model, x, y = _problem(torch.float32)
    labels = (y[:, 0] > 0).long()
    two_class = nn.Sequential(model, nn.Linear(1, 2).float())
    loss = lambda out, t: nn.functional.cross_entropy(out, t)  # noqa: E731
    fam = train.lastbit_family(two_class, loss, x, labels, lr=0.1, steps=20, ks=(1, 4, 3),
                               record_every=5, test_inputs=x, test_labels=labels)
    assert fam.reference == 1 and fam.steps.tolist() == [0, 5, 10, 15, 20]
    assert fam.divergence.shape == (3, 5) and fam.rel_l1.shape == (3, 5)
    assert np.all(fam.divergence[:, 0] == 0)  # same start
    assert fam.bitwise_equal.tolist()[:2] == [True, True]
    assert np.all(fam.divergence[1] == 0) and np.all(fam.rel_l1[1] == 0)
    for i, k in enumerate(fam.ks):
        assert fam.test_accuracy[i] == train.accuracy(fam.runs[k].model, x, labels)
        assert fam.final_loss[i] == fam.runs[k].history["loss"][-1]
        assert "_compare" not in fam.runs[k].history and "_snapshot" not in fam.runs[k].history


@pytest.mark.parametrize("kwargs, match", [
    ({"ks": ()}, "ks"), ({"ks": (1, 1)}, "distinct"), ({"ks": (0, 1)}, "ks"),
    ({"test_inputs": torch.zeros(2, 1)}, "test_labels"),
])
def test_lastbit_family_bad_arguments(kwargs, match) -> None:
    model, x, y = _problem()
    with pytest.raises(ValueError, match=match):
        train.lastbit_family(model, _mse, x, y, lr=0.1, steps=2, **kwargs)


@pytest.mark.parametrize("kwargs, match, exc", [
    ({"every": 0}, "every", ValueError), ({"every": 1.5}, "every", TypeError),
    ({"k": 0}, "k", ValueError), ({"tol": -1.0}, "tol", ValueError),
    ({"max_iter": 0}, "max_iter", ValueError), ({"method": "bad"}, "method", ValueError),
])
def test_sharpness_hook_bad_arguments(kwargs, match, exc) -> None:
    _, x, y = _problem()
    with pytest.raises(exc, match=match):
        train.sharpness_hook(_mse, x, y, **kwargs)
    with pytest.raises(ValueError, match="every"):
        train.parameter_hook(0)


def test_piece_hooks_count_exactly_during_gd() -> None:
    net = saw.sawtooth_net(4)
    x = torch.rand(32, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    hooks = train.piece_hooks(2.0**-4 / 8)
    run = train.gd(net, lambda o, y: ((o - y) ** 2).mean(), x, saw.sawtooth(x, 4), lr=1e-6,
                   steps=3, hooks=hooks)
    assert run.history["pieces"].tolist() == [16] * 4 and run.history["visible"].tolist() == [16] * 4
    pert = nets.perturbed_net(net, 1e-3, seed=0)
    assert hooks["pieces"](pert, 0) == pieces.count_pieces(pert)  # no stale cache across models
    for dtype in (torch.float16, torch.bfloat16):
        assert hooks["pieces"](fp.to_format(net, dtype), 0) == 16
    with pytest.raises(ValueError, match="min_width"):
        train.piece_hooks(-1.0)



def _one_step(dtype: torch.dtype, lr: float, w: float, x: float) -> tuple[float, torch.Tensor]:
    """One GD step of (w x)^2 from w in dtype: the new w and the gradient at the old one."""
    model = nn.Linear(1, 1, bias=False).to(dtype)
    with torch.no_grad():
        model.weight.fill_(w)
    xs, zero = torch.full((1, 1), x, dtype=dtype), torch.zeros(1, 1, dtype=dtype)
    loss = lambda o, y: ((o - y) ** 2).sum()   # noqa: E731
    (g,) = torch.autograd.grad(loss(model(xs), zero), [model.weight])
    run = train.gd(model, loss, xs, zero, lr=lr, steps=1)
    return float(run.model.weight.detach()), g.reshape(())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_narrow_step_is_formed_in_float32_and_rounded_once(dtype: torch.dtype) -> None:
    # eta = 2^-25 is half float16's smallest subnormal 2^-24: stored in float16 it would be 0
    assert torch.tensor(2.0**-25, dtype=torch.float16).item() == 0.0
    w, lr = 1.5 * 2.0**-8, 2.0**-25
    new, g = _one_step(dtype, lr, w, 256.0)          # g = 2 w x^2 = 768: update 3 2^-17
    assert float(g) == 768.0
    expected = fp.round_to_format(torch.tensor(w - lr * float(g), dtype=torch.float64), dtype)
    assert new == float(expected) and new < w        # the update moves w (it exceeds ulp(w)/2)
    # an update below half an ulp of its parameter still rounds away
    new, _ = _one_step(dtype, 2.0**-40, 1.0, 1.0)
    assert new == 1.0


@settings(max_examples=40, deadline=None)
@given(st.floats(0.01, 4.0), st.floats(-2.0, 2.0), st.floats(1e-9, 1e-1))
def test_narrow_step_equals_the_float32_step_rounded_once(w: float, x: float, lr: float) -> None:
    for dtype in (torch.float16, torch.bfloat16):
        wd, xd = float(torch.tensor(w).to(dtype)), float(torch.tensor(x).to(dtype))
        new, g = _one_step(dtype, lr, wd, xd)
        lr32 = torch.tensor(lr, dtype=torch.float32)
        step = (torch.tensor(wd, dtype=torch.float32) - lr32 * g.to(torch.float32)).to(dtype)
        assert new == float(step)


def test_float32_and_float64_steps_keep_eta_in_the_format() -> None:
    for dtype in (torch.float32, torch.float64):
        new, g = _one_step(dtype, 0.1, 0.75, 1.5)
        assert new == float(torch.tensor(0.75, dtype=dtype) - torch.tensor(0.1, dtype=dtype) * g)


def test_step_dtype() -> None:
    assert train.step_dtype(torch.float16) == torch.float32
    assert train.step_dtype(torch.bfloat16) == torch.float32
    assert train.step_dtype(torch.float64) == torch.float64
    with pytest.raises(TypeError, match="dtype"):
        train.step_dtype(torch.int8)


# ----------------------------------------------------------------------------- bad input (issue 19)
@pytest.mark.parametrize("which", ["inputs", "targets"])
def test_empty_and_non_finite_data_raise_naming_the_argument(which: str) -> None:
    model, x, y = _problem()
    empty = (x[:0], y) if which == "inputs" else (x, y[:0])
    with pytest.raises(ValueError, match=f"{which} must contain at least one sample"):
        train.gd(model, _mse, *empty, lr=0.1, steps=1)
    bad = (x.clone(), y.clone())
    bad[0 if which == "inputs" else 1][5, 0] = float("nan")
    with pytest.raises(ValueError, match=f"{which} are not finite"):
        train.gd(model, _mse, *bad, lr=0.1, steps=1)


def test_non_finite_parameters_raise_naming_them() -> None:
    model, x, y = _problem()
    with torch.no_grad():
        model[2].bias[3] = float("inf")
    with pytest.raises(ValueError, match=r"parameters must be finite: '2.bias'"):
        train.gd(model, _mse, x, y, lr=0.1, steps=1)


def test_step_sizes_accept_numpy_and_torch_scalars_bit_for_bit() -> None:
    """Reference: the same run with a Python float step size."""
    model, x, y = _problem()
    ref = train.gd(model, _mse, x, y, lr=0.1, steps=3)
    for lr in (np.float64(0.1), torch.tensor(0.1, dtype=torch.float64), Fraction(1, 10)):
        run = train.gd(model, _mse, x, y, lr=lr, steps=np.int64(3), weight_decay=np.float64(0.0))
        assert all(torch.equal(a, b) for a, b in zip(run.model.parameters(), ref.model.parameters()))


@pytest.mark.parametrize("kwargs, match", [
    ({"lr": True}, "lr"), ({"lr": "0.1"}, "lr"), ({"steps": True}, "steps"),
    ({"noise": True}, "noise"), ({"weight_decay": True}, "weight_decay"),
    ({"lastbit_k": True}, "lastbit_k"), ({"record_every": True}, "record_every"),
])
def test_bools_and_strings_are_refused(kwargs, match) -> None:
    model, x, y = _problem()
    with pytest.raises(TypeError, match=match):
        train.gd(model, _mse, x, y, **{"lr": 0.1, "steps": 2, **kwargs})


def test_too_many_steps_are_refused_before_any_work() -> None:
    import time

    model, x, y = _problem()
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="size guard"):
        train.gd(model, _mse, x, y, lr=0.1, steps=train.MAX_STEPS + 1)
    assert time.perf_counter() - t0 < 2.0


def test_helpers_refuse_bools() -> None:
    model, x, y = _problem()
    with pytest.raises(TypeError, match="every"):
        train.parameter_hook(True)
    with pytest.raises(TypeError, match=r"ks\[1\]"):
        train.lastbit_family(model, _mse, x, y, lr=0.1, steps=2, ks=(1, True))
    with pytest.raises(TypeError, match="lr"):
        train.edge_statistics([0, 1], [1.0, 2.0], True)
    with pytest.raises(TypeError, match="after"):
        train.edge_statistics([0, 1], [1.0, 2.0], 0.1, after=True)
    assert train.edge_statistics([0, 1], [1.0, 30.0], np.float64(0.1))["crossing"] == 1
    with pytest.raises(TypeError, match="min_width"):
        train.piece_hooks(True)


def test_nan_is_not_reduced_to_zero() -> None:
    assert math.isnan(train.relative_l1_difference([np.nan, 1.0], [1.0, 1.0]))
    assert train.relative_l1_difference([0.0, 1.0], [0.0, 3.0]) == 0.5   # 2 * mean(0, 1/2)
    stats = train.update_stats(torch.tensor([0.5, float("nan"), 0.0]))
    assert math.isnan(stats["mean_reciprocal"]) and math.isnan(stats["max_abs"])
    model = nn.Linear(2, 3).double()
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    x = torch.ones(4, 2, dtype=torch.float64)
    assert math.isnan(train.accuracy(model, x, torch.zeros(4, dtype=torch.long)))


# --------------------------------------------------------------------------- guards (issue 19)
@pytest.mark.parametrize("interval", [(1.0, 0.0), (0.0, math.nan), None, "01"])
def test_piece_hooks_checks_its_interval_at_the_call(interval) -> None:
    with pytest.raises((TypeError, ValueError), match="interval"):
        train.piece_hooks(1e-3, interval)


def test_sharpness_along_bounds_k_by_the_parameters() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)).double()
    x, y = torch.randn(8, 2, dtype=torch.float64), torch.randn(8, 1, dtype=torch.float64)
    theta = torch.nn.utils.parameters_to_vector(net.parameters()).detach()
    with pytest.raises(ValueError, match="k must be at most 13"):
        train.sharpness_along(net, nets.mse, x, y, torch.stack([theta] * 2), k=10**9)


def test_gd_refuses_targets_with_other_rows() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)).double()
    x = torch.randn(8, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="targets"):
        train.gd(net, nets.mse, x, torch.zeros(4, 1, dtype=torch.float64), lr=0.1, steps=1)


def test_update_stats_refuses_empty_or_non_tensor_updates() -> None:
    with pytest.raises(ValueError, match="update"):
        train.update_stats(torch.zeros(0, dtype=torch.float64))
    with pytest.raises(TypeError, match="update"):
        train.update_stats("x")
