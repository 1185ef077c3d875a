"""Tests of lib.stability: the edge-of-stability chapter's machinery on small problems."""

import numpy as np
import pytest
import torch
from scipy.special import expit

from lib import nets, stability, train


def _linear_problem(seed: int = 0, n: int = 30, d: int = 3, k: int = 2):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randn(n, k, generator=g, dtype=torch.float64)
    model = torch.nn.Linear(d, k, dtype=torch.float64)
    xt = torch.cat([x, torch.ones(n, 1, dtype=torch.float64)], 1)
    M = (xt.T @ xt / n).numpy()
    m_eig, m_vec = np.linalg.eigh(M)
    theta_star = np.linalg.lstsq(xt.numpy(), y.numpy(), rcond=None)[0].T
    return model, x, y, theta_star, m_vec[:, -1], m_eig[-1]


def test_quadratic_modes_follow_one_minus_eta_lambda() -> None:
    model, x, y, theta_star, u1, lam1 = _linear_problem()
    runs = stability.quadratic_mode_runs(model, nets.square_loss, x, y, theta_star, u1, lam1,
                                         (0.9, 1.05), 60)
    assert runs[0.9]["rel_err"] < 1e-8 and runs[1.05]["rel_err"] < 1e-8
    assert runs[0.9]["top"][-1] < runs[0.9]["top"][0] < runs[1.05]["top"][-1]
    with pytest.raises(ValueError, match="theta_star"):
        stability.quadratic_mode_runs(model, nets.square_loss, x, y, theta_star[:, :-1], u1,
                                      lam1, (0.9,), 5)
    with pytest.raises(TypeError, match="model"):
        stability.quadratic_mode_runs(torch.nn.Sequential(model), nets.square_loss, x, y,
                                      theta_star, u1, lam1, (0.9,), 5)
    with pytest.raises(ValueError, match="cs"):
        stability.quadratic_mode_runs(model, nets.square_loss, x, y, theta_star, u1, lam1, (), 5)


def _digits_like(n: int = 40):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 5, generator=g)
    labels = torch.randint(0, 3, (n,), generator=g)
    return x, torch.nn.functional.one_hot(labels, 3).float(), labels


def test_sharpness_runs_summaries_and_checks() -> None:
    x, y, labels = _digits_like()
    net = nets.mlp((5, 8, 3), "tanh", seed=0, dtype=torch.float32)
    before = [p.clone() for p in net.parameters()]
    eos, extra = stability.sharpness_runs(net, nets.square_loss, x, y, (0.1, 0.5), steps=20,
                                          every=5, tol=1e-4, test_inputs=x, test_labels=labels,
                                          check_eta=0.5, check_steps=10, theta_every=5)
    assert all(torch.equal(p, q) for p, q in zip(before, net.parameters()))
    for eta in (0.1, 0.5):
        e = eos[eta]
        assert list(e["sharp"]["step"]) == [0, 5, 10, 15, 20]
        assert len(e["loss"]) == 21 and 0 <= e["test_acc"] <= 1
    assert np.allclose(eos[0.5]["sharp"]["sharpness"], extra["check"]["sharpness"][:, 0],
                       rtol=1e-3)
    assert extra["theta_hook"].steps == [0, 5, 10]
    assert extra["check_seconds"] > 0
    with pytest.raises(ValueError, match="check_eta"):
        stability.sharpness_runs(net, nets.square_loss, x, y, (0.1,), steps=2, every=1,
                                 tol=1e-4, test_inputs=x, test_labels=labels, check_eta=0.3)
    with pytest.raises(ValueError, match="etas"):
        stability.sharpness_runs(net, nets.square_loss, x, y, (0.1, -1), steps=2, every=1,
                                 tol=1e-4, test_inputs=x, test_labels=labels)


def test_lastbit_accuracy_and_statistics() -> None:
    x, y, labels = _digits_like()
    make = lambda seed: nets.mlp((5, 8, 3), "tanh", seed=seed, dtype=torch.float32)  # noqa: E731
    acc = stability.lastbit_accuracy(make, nets.square_loss, x, y, eta_edge=0.5, eta_below=0.1,
                                     ks=(1, 3), n_seeds=2, steps=5, test_inputs=x,
                                     test_labels=labels)
    assert acc[0.5].shape == (2, 2) and (acc[0.5] > 0).all()
    assert acc[0.1][1, 1] == 0 and acc[0.1][0, 1] > 0          # below: k = 1 only for seed 1
    with pytest.raises(TypeError, match="make_net"):
        stability.lastbit_accuracy(None, nets.square_loss, x, y, eta_edge=0.5, eta_below=0.1,
                                   ks=(1,), n_seeds=1, steps=1, test_inputs=x, test_labels=labels)
    fam = train.lastbit_family(make(0), nets.square_loss, x, y, lr=0.5, steps=20, ks=(1, 3, 5),
                               record_every=5)
    st = stability.lastbit_statistics(fam, fam, 10, 20)
    assert st["div_pre"] == fam.divergence[1:, :3].max()
    assert st["div_end"].shape == (2,) and st["div_below"] == fam.divergence[1:].max()
    with pytest.raises(TypeError, match="edge"):
        stability.lastbit_statistics(object(), fam, 10, 20)


def test_checkerboard() -> None:
    img = stability.checkerboard(4)
    assert img.shape == (1, 1, 4, 4) and img[0, 0, 0, 0] == -1 and img[0, 0, 0, 1] == 1
    assert img.sum() == 0
    with pytest.raises(ValueError):
        stability.checkerboard(0)


def _sun_setup(size: int = 8, kernel: int = 4):
    img = stability.checkerboard(size)
    label = torch.ones(1, dtype=torch.float64)
    c = img[0, 0, :kernel, :kernel].reshape(-1)
    c_hat = (c / c.norm()).numpy()
    w0 = torch.randn(kernel**2, generator=torch.Generator().manual_seed(7),
                     dtype=torch.float64).numpy()
    return img, label, c, c_hat, w0


def test_weight_decay_runs_linear_model_is_its_closed_form() -> None:
    img, label, _, c_hat, w0 = _sun_setup()
    runs = stability.weight_decay_runs(w0, 20.0, 0.11, 30, img, label, c_hat)
    W, Wc = runs["linear"]["W"], runs["closed"]
    assert np.max(np.linalg.norm(W - Wc, axis=1) / np.linalg.norm(Wc, axis=1)) < 1e-10
    unseen = runs["cnn"]["unseen"]                       # x |1 - eta alpha| = 1.2 per step
    assert abs((unseen[20] / unseen[10]) ** 0.1 - 1.2) < 1e-9
    with pytest.raises(ValueError, match="w0"):
        stability.weight_decay_runs(w0[:-1], 20.0, 0.11, 3, img, label, c_hat)
    with pytest.raises(ValueError, match="c_hat"):
        stability.weight_decay_runs(w0, 20.0, 0.11, 3, img, label, c_hat[:-1])


def test_restrained_runs_and_the_one_dimensional_map_agree() -> None:
    img, label, c, c_hat, w0 = _sun_setup()
    n_patch = (8 - 4 + 1) ** 2
    runs = stability.restrained_runs(0.01 * w0, (0.3, 0.9), 2.0, 60, 10, img, label, c_hat)
    u = stability.sun_map(0.01 * w0 @ c_hat, (0.3, 0.9), 2.0, n_patch, float(c.norm()), 60)
    for i, eta in enumerate((0.3, 0.9)):
        assert np.abs(u[:, i] - runs[eta]["seen"]).max() < 1e-10
        r = runs[eta]
        assert r["amp"] == r["hi"] - r["lo"] >= 0 and r["period2"] >= 0
    with pytest.raises(ValueError, match="late"):
        stability.restrained_runs(w0, (0.3,), 2.0, 5, 10, img, label, c_hat)


def test_one_dimensional_derivatives_and_curvature() -> None:
    a, n, h = np.linspace(-3, 3, 13), 25, 1e-5
    phi = lambda t: -np.log(expit(stability.sun_pi(t, n)))  # noqa: E731
    num1 = (phi(a + h) - phi(a - h)) / (2 * h)
    assert np.allclose(stability.sun_phi_1(a, n), num1, atol=1e-8)
    num2 = (stability.sun_phi_1(a + h, n) - stability.sun_phi_1(a - h, n)) / (2 * h)
    assert np.allclose(stability.sun_phi_2(a, n), num2, atol=1e-7)
    assert stability.sun_curvature(0.5, 2.0, n, 3.0) == 9 * stability.sun_phi_2(1.5, n) + 2.0
    with pytest.raises(ValueError, match="n"):
        stability.sun_pi(1.0, 0)
    with pytest.raises(ValueError, match="c_norm"):
        stability.sun_map(0.1, (0.1,), 2.0, n, -1.0, 3)
    with pytest.raises(ValueError, match="alpha"):
        stability.sun_map(0.1, (0.1,), float("nan"), n, 1.0, 3)


def test_full_loss_grad_matches_the_reduction_and_summed_eigenvalue() -> None:
    img, label, c, c_hat, w0 = _sun_setup(size=8, kernel=4)
    n = 25
    w = w0 + 0.4 * c_hat
    loss, grad = stability.sun_full_loss_grad(w, img, label, 20.0)
    a = float(c.norm()) * (w @ c_hat)
    assert abs(loss / (np.logaddexp(0.0, -stability.sun_pi(a, n)) + 10.0 * (w @ w)) - 1) < 1e-12
    grad_1d = float(c.norm()) * stability.sun_phi_1(a, n) * c_hat + 20.0 * w
    assert np.linalg.norm(grad - grad_1d) < 1e-12 * np.linalg.norm(grad)
    lam, resid = stability.summed_top_eigenvalue(img, 4, w0)
    assert resid < 1e-10 and abs(lam / (n * float(c @ c)) - 1) < 1e-12
    with pytest.raises(ValueError, match="w"):
        stability.sun_full_loss_grad(np.ones(5), img, label, 1.0)
    with pytest.raises(ValueError, match="v0"):
        stability.summed_top_eigenvalue(img, 4, np.ones(5))


def test_sun_loss_is_the_objective_of_sun_full_loss_grad() -> None:
    img, label = stability.checkerboard(8), torch.tensor([1.0], dtype=torch.float64)
    w = np.linspace(-0.3, 0.4, 9)
    loss, grad = stability.sun_full_loss_grad(w, img, label, 2.0)
    wt = torch.tensor(w, requires_grad=True)
    value = stability.sun_loss(wt, img, label, 2.0)
    (g,) = torch.autograd.grad(value, wt)
    assert float(value.detach()) == loss and np.array_equal(g.numpy(), grad)
    with pytest.raises(TypeError, match="w"):
        stability.sun_loss(w, img, label, 2.0)
    with pytest.raises(ValueError, match="square"):
        stability.sun_loss(torch.ones(5, dtype=torch.float64), img, label, 2.0)


def _small_checkerboard(size: int = 12, kernel: int = 4):
    img = stability.checkerboard(size)
    c = img[0, 0, :kernel, :kernel].reshape(-1).numpy()
    pat = torch.nn.functional.unfold(img, kernel)[0].T.numpy()
    sgn = np.sign(pat @ c)
    return img, c, int((sgn > 0).sum()), int((sgn < 0).sum())


def test_sun_toy_runs_match_the_convolution_the_map_and_the_linear_model() -> None:
    img, c, n_plus, n_minus = _small_checkerboard()
    assert n_plus + n_minus == (12 - 4 + 1) ** 2
    w0 = np.random.default_rng(0).standard_normal(16)
    label = torch.ones(1, dtype=torch.float64)
    assert stability.sun_toy_conv_check(w0, 0.05, 2.0, 5, img, label, c, n_plus, n_minus) < 1e-12
    r = stability.sun_toy_runs(w0, (0.05, 0.3), 2.0, 40, c, n_plus, n_minus)
    cn = float(np.linalg.norm(c))
    u = stability.sun_map(w0 @ c / cn, (0.05, 0.3), 2.0, n_plus + n_minus, cn, 40)
    np.testing.assert_allclose(r["seen"], u, rtol=1e-9, atol=1e-12)
    # the unseen part follows |1 - eta alpha|^k exactly (lem-invisible)
    np.testing.assert_allclose(r["unseen"][:20], r["lin_unseen"][:20], rtol=1e-9)
    # loss with weight decay, before the update
    np.testing.assert_allclose(r["loss"][0, 0], stability.sun_loss(
        torch.from_numpy(w0), img, label, 2.0).item(), rtol=1e-12)
    # linear model along c: mu = ||c||^2 (delta^2/16 - 1/4)
    delta = (n_plus - n_minus) / (n_plus + n_minus)
    assert abs(float(r["mu"]) - cn**2 * (delta**2 / 16 - 0.25)) < 1e-12
    with pytest.raises(ValueError, match="w0"):
        stability.sun_toy_runs(w0[:3], (0.1,), 2.0, 5, c, n_plus, n_minus)
    with pytest.raises(ValueError, match="lrs"):
        stability.sun_toy_runs(w0, (), 2.0, 5, c, n_plus, n_minus)


def _tiny_classification():
    """40 random 4-d inputs in 3 classes, one-hot targets, and a factory of 4-8-3 tanh MLPs."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 4, generator=g)
    labels = torch.randint(0, 3, (40,), generator=g)
    y = torch.nn.functional.one_hot(labels, 3).float()
    make = lambda seed: nets.mlp((4, 8, 3), "tanh", init="pytorch", dtype=torch.float32,  # noqa: E731
                                 seed=seed)
    return x, labels, y, make


def test_lastbit_accuracy_avg_and_spread_ratio() -> None:
    x, labels, y, make = _tiny_classification()
    acc = stability.lastbit_accuracy_avg(make, nets.square_loss, x, y, eta=0.1, ks=(1, 3),
                                         seeds=(0, 1), steps=20, last=10, every=5,
                                         test_inputs=x, test_labels=labels)
    assert acc["mean"].shape == (2, 2) and np.all((0 <= acc["mean"]) & (acc["mean"] <= 1))
    final = train.accuracy(train.gd(make(0), nets.square_loss, x, y, lr=0.1, steps=20).model,
                           x, labels)
    runs = [train.gd(make(0), nets.square_loss, x, y, lr=0.1, steps=s).model for s in (10, 15)]
    expect = np.mean([train.accuracy(m, x, labels) for m in runs] + [final])
    assert acc["mean"][0, 0] == pytest.approx(expect) and acc["final"][0, 0] == final
    with pytest.raises(ValueError, match="last"):
        stability.lastbit_accuracy_avg(make, nets.square_loss, x, y, eta=0.1, ks=(1,),
                                       seeds=(0,), steps=5, last=10, every=1, test_inputs=x,
                                       test_labels=labels)
    table = np.array([[1.0, 2.0, 3.0], [4.0, 6.0, 5.0], [9.0, 7.0, 8.0]])
    sr = stability.spread_ratio(table, n_boot=200)
    assert sr["pert"] == pytest.approx(1.0)
    # row means 2, 5, 8 (variance 9), within-row variance 1: sigma_s^2 = 9 - 1/3
    assert sr["seed"] == pytest.approx(np.sqrt(9 - 1 / 3))
    assert sr["naive"] == pytest.approx(
        1.0 / np.mean([np.sqrt(98 / 6), np.sqrt(7), np.sqrt(19 / 3)]))
    assert sr["ratio"] == pytest.approx(sr["pert"] / sr["seed"]) and sr["ci"][0] <= sr["ci"][1]
    with pytest.raises(ValueError, match="acc"):
        stability.spread_ratio(np.ones(3))
    with pytest.raises(ValueError, match="level"):
        stability.spread_ratio(table, level=1.5)


def test_top2_along_and_flow_departure() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(30, 3, generator=g, dtype=torch.float64)
    y = torch.randn(30, 2, generator=g, dtype=torch.float64)
    net = nets.mlp((3, 6, 2), "tanh", init="pytorch", dtype=torch.float64, seed=0)
    r = stability.top2_along(net, nets.square_loss, x, y, eta=0.1, start=2, stop=10, every=4,
                             tol=1e-10)
    assert list(r["steps"]) == [2, 6, 10] and r["values"].shape == (3, 2)
    assert np.all(r["values"][:, 0] >= r["values"][:, 1]) and r["converged"].all()
    assert r["overlap"].shape == (2, 2, 2) and np.all(r["overlap"] <= 1 + 1e-12)
    with pytest.raises(ValueError, match="stop"):
        stability.top2_along(net, nets.square_loss, x, y, eta=0.1, start=5, stop=2, every=1)
    steps = np.arange(0, 100, 10)
    c_norm = np.arange(10.0)
    dist = 0.1 * c_norm * np.where(steps >= 70, 5.0, 1.0)
    dep = stability.flow_departure(steps, dist, c_norm, 0.1, 40)
    assert dep["depart"] == 70 and dep["last_on"] == 60 and dep["level"] == pytest.approx(1)
    with pytest.raises(ValueError, match="crossing"):
        stability.flow_departure(steps, dist, c_norm, 0.1, 0)
    # the gap's share in the top eigenvectors: cumulative, at most 1, and nan before proj_from
    p = sum(q.numel() for q in net.parameters())
    th = np.random.default_rng(0).normal(size=(9, p)) * 0.1
    th += torch.nn.utils.parameters_to_vector(net.parameters()).detach().numpy()
    gap = np.random.default_rng(1).normal(size=(9, p))
    dep = stability.flow_departure(steps, dist, c_norm, 0.1, 40, thetas={"gd": th, "gap": gap},
                                   model=net, loss_fn=nets.square_loss, inputs=x, targets=y,
                                   tol=1e-8, top=3, proj_from=50)
    pr = dep["proj"]
    assert pr.shape == (9, 3) and np.isnan(pr[:4]).all() and dep["converged"].all()
    assert np.all(np.diff(pr[4:], axis=1) >= 0) and np.all(pr[4:] <= 1 + 1e-12)


def test_spread_ratio_reads_equal_spreads_as_one() -> None:
    """Variance components: equal seed and perturbation spreads read ~1 (the naive estimate
    reads ~0.71), and a pure perturbation table gives a ratio far above 1 (a control that the
    estimator can exceed 1)."""
    rng = np.random.default_rng(0)
    table = rng.normal(size=(400, 1)) + rng.normal(size=(400, 8))
    sr = stability.spread_ratio(table, n_boot=50)
    assert 0.85 < sr["ratio"] < 1.15 and 0.6 < sr["naive"] < 0.8
    assert sr["ci"][0] < sr["ci"][1] < 1.5
    noise = stability.spread_ratio(rng.normal(size=(400, 8)) + 0.1 * rng.normal(size=(400, 1)),
                                   n_boot=50)
    assert noise["ratio"] > 4


def test_spread_by_window_and_history() -> None:
    x, labels, y, make = _tiny_classification()
    acc = stability.lastbit_accuracy_avg(make, nets.square_loss, x, y, eta=0.5, ks=(1, 3, 5),
                                         seeds=(0, 1, 2), steps=30, last=10, every=5,
                                         test_inputs=x, test_labels=labels, record_from=10)
    assert list(acc["record_steps"]) == [10, 15, 20, 25, 30]
    assert acc["history"].shape == (3, 3, 5)
    assert np.allclose(acc["history"][:, :, 2:].mean(axis=2), acc["mean"])
    hist = np.random.default_rng(1).normal(size=(4, 3, 5))
    w = stability.spread_by_window(hist, acc["record_steps"], ends=(20, 30), length=10,
                                   n_boot=20)
    ref = stability.spread_ratio(hist[:, :, 2:].mean(axis=2), n_boot=20)
    assert w["ratio"][1] == pytest.approx(ref["ratio"]) and list(w["n_records"]) == [3, 3]
    with pytest.raises(ValueError, match="record_from"):
        stability.lastbit_accuracy_avg(make, nets.square_loss, x, y, eta=0.5, ks=(1,),
                                       seeds=(0,), steps=30, last=10, every=5, test_inputs=x,
                                       test_labels=labels, record_from=25)
    with pytest.raises(ValueError, match="history"):
        stability.spread_by_window(hist[0], acc["record_steps"], ends=(20,), length=10)


def test_count_swaps() -> None:
    e = np.eye(3)
    V = np.stack([e[:, [0, 1]], e[:, [1, 0]], e[:, [1, 0]], e[:, [0, 1]]])
    assert stability.count_swaps(V, 1) == (2, 3)
    assert stability.count_swaps(V, 3) == (0, 1)
    with pytest.raises(ValueError, match="stride"):
        stability.count_swaps(V, 4)
    with pytest.raises(ValueError, match="vectors"):
        stability.count_swaps(V[:, :, :1])


def test_flow_departure_is_censored_without_enough_records() -> None:
    steps = np.arange(0, 100, 10)
    c_norm = np.arange(10.0)
    dist = 0.1 * c_norm * np.where(steps >= 80, 5.0, 1.0)     # only two records above
    assert stability.flow_departure(steps, dist, c_norm, 0.1, 40)["depart"] is None
    spike = 0.1 * c_norm * np.where(steps == 50, 5.0, 1.0)    # a single spike is no departure
    assert stability.flow_departure(steps, spike, c_norm, 0.1, 40)["depart"] is None


def test_sun_fft_matches_convolution() -> None:
    img = stability.checkerboard(12)
    label = torch.ones(1, dtype=torch.float64)
    w = np.random.default_rng(0).normal(size=16)
    l1, g1 = stability.sun_full_loss_grad(w, img, label, 2.0)
    l2, g2 = stability.sun_full_loss_grad_fft(w, img[0, 0].numpy(), 2.0)
    assert abs(l1 / l2 - 1) < 1e-13 and np.linalg.norm(g1 - g2) < 1e-13 * np.linalg.norm(g1)
    c = img[0, 0, :4, :4].reshape(-1).numpy()
    sgn = np.sign(torch.nn.functional.unfold(img, 4)[0].T.numpy() @ c)
    r = stability.sun_toy_fft_check(w, (0.05,), 2.0, 20, img[0, 0].numpy(), c,
                                    int((sgn > 0).sum()), int((sgn < 0).sum()))
    assert np.nanmax(r["rel"]) < 1e-10 and r["horizon"][0] == 21
    with pytest.raises(ValueError, match="w must"):
        stability.sun_full_loss_grad_fft(w[:5], img[0, 0].numpy(), 2.0)


# ----------------------------------------------------------------------------- bad input (issue 19)
def test_step_sizes_accept_numpy_and_torch_and_refuse_bools_and_strings() -> None:
    """Reference: the same map with plain floats (the iterates must be identical)."""
    ref = stability.sun_map(0.1, [0.5, 0.25], 0.01, 16, 2.0, 5)
    got = stability.sun_map(0.1, [np.float64(0.5), torch.tensor(0.25, dtype=torch.float64)],
                            np.float64(0.01), 16, torch.tensor(2.0, dtype=torch.float64),
                            np.int64(5))
    np.testing.assert_array_equal(got, ref)
    for etas in ("0.5", [True], ["0.5"], [0.5, None]):
        with pytest.raises(TypeError, match="etas"):
            stability.sun_map(0.1, etas, 0.01, 16, 2.0, 5)
    for kwargs in ({"steps": True}, {"alpha": True}, {"n": True}):
        args = {"u0": 0.1, "etas": [0.5], "alpha": 0.01, "n": 16, "c_norm": 2.0, "steps": 5}
        with pytest.raises(TypeError, match=next(iter(kwargs))):
            stability.sun_map(**{**args, **kwargs})
    with pytest.raises(ValueError, match="size guard"):
        stability.sun_map(0.1, [0.5], 0.01, 16, 2.0, train.MAX_STEPS + 1)


def test_spread_ratio_refuses_nan_rather_than_reporting_a_ratio() -> None:
    acc = np.array([[0.9, 0.8, 0.85], [0.7, np.nan, 0.75]])
    with pytest.raises(ValueError, match="acc must be finite"):
        stability.spread_ratio(acc, n_boot=10)
    with pytest.raises(TypeError, match="level"):
        stability.spread_ratio(np.ones((2, 2)), n_boot=10, level=True)


@pytest.mark.parametrize("which", ["inputs", "targets"])
def test_empty_data_raise_naming_the_argument(which: str) -> None:
    x, _, y, make = _tiny_classification()
    x, y = (x[:0], y) if which == "inputs" else (x, y[:0])
    with pytest.raises(ValueError, match=f"{which} must contain at least one sample"):
        stability.top2_along(make(0), nn_mse, x, y, eta=0.1, start=1, stop=2, every=1)
    with pytest.raises(ValueError, match=which):
        stability.sharpness_runs(make(0), nn_mse, x, y, [0.1], steps=2, every=1, tol=1e-4,
                                 test_inputs=x, test_labels=torch.zeros(len(x), dtype=torch.long))


def nn_mse(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return ((out - t) ** 2).mean()


# --------------------------------------------------------------------------- guards (issue 19)
@pytest.mark.parametrize("seed", [True, None, [0], 1.5, "0", -1])
def test_spread_seeds_are_checked(seed) -> None:
    acc = np.random.default_rng(0).uniform(size=(4, 3))
    with pytest.raises((TypeError, ValueError), match="seed"):
        stability.spread_ratio(acc, n_boot=20, seed=seed)
    with pytest.raises((TypeError, ValueError), match="seed"):
        stability.spread_by_window(acc[:, :, None].repeat(10, axis=2), np.arange(10), [9], 4,
                                   n_boot=20, seed=seed)


def test_spread_ratio_accepts_a_0d_tensor_seed() -> None:
    acc = np.random.default_rng(0).uniform(size=(4, 3))
    a = stability.spread_ratio(acc, n_boot=20, seed=torch.tensor(3))
    b = stability.spread_ratio(acc, n_boot=20, seed=3)
    assert a["ci"] == b["ci"]


@pytest.mark.parametrize("alpha", [0.0, -1.0, float("nan"), float("inf"), True, "0.1"])
def test_sun_alpha_is_a_positive_finite_real(alpha) -> None:
    with pytest.raises((TypeError, ValueError), match="alpha"):
        stability.sun_curvature(0.1, alpha, 4.0, 1.0)
    with pytest.raises((TypeError, ValueError), match="alpha"):
        stability.sun_map(0.1, [0.5], alpha, 4.0, 1.0, 3)


def test_sun_functions_accept_a_0d_tensor_n() -> None:
    """A 0-d tensor n gives the float's result; sun_pi against its closed form."""
    a = 0.3
    assert stability.sun_pi(a, torch.tensor(4.0)) == stability.sun_pi(a, 4.0) == \
        pytest.approx(0.5 * a * np.tanh(a / 2) + a / 8, rel=1e-15)
    np.testing.assert_array_equal(stability.sun_map(0.1, [0.5], 0.01, torch.tensor(4), 1.0, 3),
                                  stability.sun_map(0.1, [0.5], 0.01, 4, 1.0, 3))
    assert stability.sun_curvature(0.1, 0.01, np.int64(4), 1.0) == \
        stability.sun_curvature(0.1, 0.01, 4, 1.0)


@pytest.mark.parametrize("dtype", [torch.int32, torch.complex64, None, "float64x"])
def test_checkerboard_refuses_a_non_float_dtype(dtype) -> None:
    with pytest.raises((TypeError, ValueError), match="dtype"):
        stability.checkerboard(4, dtype)


def test_top2_along_checks_tol_and_stop() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1)).double()
    x, y = torch.randn(8, 2, dtype=torch.float64), torch.randn(8, 1, dtype=torch.float64)
    loss = lambda o, t: ((o - t) ** 2).mean()  # noqa: E731
    with pytest.raises((TypeError, ValueError), match="tol"):
        stability.top2_along(net, loss, x, y, eta=0.1, start=1, stop=2, every=1, tol=None)
    with pytest.raises(ValueError, match="stop"):
        stability.top2_along(net, loss, x, y, eta=0.1, start=1, stop=10**9, every=1)
