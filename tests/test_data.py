"""Tests of lib.data: the digits subsets and the synthetic regression set."""

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from lib import data


def test_digits_default_shapes_dtype_and_standardization() -> None:
    ds = data.digits(300, n_test=100)
    x, y = ds
    assert x.shape == (300, 64) and x.dtype == torch.float64
    assert y.shape == (300,) and y.dtype == torch.int64 and ds.labels is not None
    assert ds.test_inputs is not None and ds.test_inputs.shape == (100, 64)
    assert ds.n == 300 and ds.n_test == 100 and ds.n_classes == 10
    mean, std = x.mean(0), x.std(0, unbiased=False)
    assert torch.all(mean.abs() < 1e-12)
    constant = std < 1e-12
    assert torch.all((std[~constant] - 1).abs() < 1e-12)
    assert torch.all(x[:, constant] == 0)


def test_digits_rows_are_the_stated_subset_of_load_digits() -> None:
    raw = load_digits()
    ds = data.digits(200, classes=[7, 3], n_test=50, standardize=False, seed=4)
    assert ds.classes == (3, 7)
    assert set(raw.target[ds.indices]) <= {3, 7}
    assert not set(ds.indices) & set(ds.test_indices)
    np.testing.assert_array_equal(ds.inputs.numpy(), raw.data[ds.indices] / 16.0)
    np.testing.assert_array_equal(ds.labels.numpy(), (raw.target[ds.indices] == 7).astype(int))
    pool = np.flatnonzero(np.isin(raw.target, [3, 7]))
    perm = np.random.default_rng(4).permutation(len(pool))
    np.testing.assert_array_equal(ds.indices, pool[perm[:200]])


def test_digits_test_split_uses_training_statistics_and_seeds() -> None:
    a = data.digits(100, n_test=20, seed=0)
    b = data.digits(100, n_test=20, seed=0)
    c = data.digits(100, n_test=20, seed=1)
    torch.testing.assert_close(a.inputs, b.inputs)
    assert not torch.equal(a.inputs, c.inputs)
    raw = load_digits().data / 16.0
    tr = raw[a.indices]
    std = tr.std(0)
    std = np.where(std > 0, std, 1.0)
    np.testing.assert_allclose(a.test_inputs.numpy(), (raw[a.test_indices] - tr.mean(0)) / std,
                               rtol=0, atol=1e-12)


def test_digits_one_hot_float32_for_mse() -> None:
    ds = data.digits(50, targets="one_hot", dtype=torch.float32, classes=range(4))
    assert ds.targets.shape == (50, 4) and ds.targets.dtype == torch.float32
    assert ds.inputs.dtype == torch.float32
    torch.testing.assert_close(ds.targets.argmax(1), ds.labels)
    assert torch.all(ds.targets.sum(1) == 1)
    same = data.digits(50, one_hot=True, dtype=torch.float32, classes=range(4))
    torch.testing.assert_close(same.targets, ds.targets)


def test_digits_all_but_test_when_n_is_none() -> None:
    ds = data.digits(None, n_test=97)
    assert ds.n == data.N_DIGITS - 97


@pytest.mark.parametrize("kwargs, err, match", [
    ({"n": 0}, ValueError, "n must"),
    ({"n": 1800}, ValueError, "exceeds"),
    ({"n": 10, "classes": [1]}, ValueError, "classes"),
    ({"n": 10, "classes": [1, 12]}, ValueError, "classes"),
    ({"n": 10, "n_test": -1}, ValueError, "n_test"),
    ({"n": 10, "targets": "onehot"}, ValueError, "targets"),
    ({"n": 10, "dtype": torch.int64}, TypeError, "dtype"),
    ({"n": 10, "seed": -1}, ValueError, "seed"),
])
def test_digits_bad_arguments(kwargs: dict, err: type, match: str) -> None:
    with pytest.raises(err, match=match):
        data.digits(**kwargs)


def test_gaussian_regression() -> None:
    ds = data.gaussian_regression(20, 3, out_dim=2, n_test=5, seed=3)
    assert ds.inputs.shape == (20, 3) and ds.targets.shape == (20, 2)
    assert ds.test_inputs.shape == (5, 3)
    # noise-free targets are an exact linear function of the inputs
    w = torch.linalg.lstsq(ds.inputs, ds.targets).solution
    torch.testing.assert_close(ds.inputs @ w, ds.targets, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="noise"):
        data.gaussian_regression(5, 2, noise=-1.0)


# ----------------------------------------------------------------------------- 1-D quadrature
@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_gauss_legendre_is_exact_for_degree_2_order_minus_1(order: int) -> None:
    q = data.quadrature(7, order=order, interval=(-1.0, 2.0))
    assert q.n == 7 * order and q.nodes.dtype == torch.float64
    assert torch.all(q.nodes[1:] > q.nodes[:-1]) and torch.all(q.weights > 0)
    assert abs(float(q.weights.sum()) - 3.0) < 1e-14
    for k in range(2 * order):
        exact = (2.0 ** (k + 1) - (-1.0) ** (k + 1)) / (k + 1)
        assert abs(float(q.integrate(q.nodes**k)) - exact) < 1e-12 * max(1.0, abs(exact))
    # degree 2 * order is not integrated exactly on one panel
    one = data.quadrature(1, order=order, interval=(0.0, 1.0))
    assert abs(float(one.integrate(one.nodes ** (2 * order))) - 1 / (2 * order + 1)) > 1e-8


def test_midpoint_rule_and_its_error_order() -> None:
    q = data.quadrature(4, order=1, rule="midpoint", interval=(0.0, 1.0))
    torch.testing.assert_close(q.nodes, torch.tensor([0.125, 0.375, 0.625, 0.875], dtype=torch.float64))
    assert abs(float(q.integrate(3 * q.nodes + 1)) - 2.5) < 1e-15
    errs = []
    for n in (8, 16):
        r = data.quadrature(n, order=1, rule="midpoint")
        errs.append(abs(float(r.integrate(r.nodes**2)) - 1 / 3))
    assert abs(errs[0] / errs[1] - 4.0) < 1e-9          # O(h^2): exactly h^2/12 for x^2
    assert abs(errs[0] - 1 / (12 * 64)) < 1e-15


def test_quadrature_of_a_kinked_integrand_converges_like_h2() -> None:
    # |x - 1/3| has a kink inside a panel; the error falls by ~4 per halving of h
    errs = []
    for n in (30, 60, 120):
        q = data.quadrature(n + 1, order=2, interval=(0.0, 1.0))
        errs.append(abs(float(q.integrate((q.nodes - 1 / 3).abs())) - 5 / 18))
    assert all(e > 0 for e in errs)
    assert 2.5 < errs[0] / errs[1] < 6 and 2.5 < errs[1] / errs[2] < 6


def test_quadrature_inputs_dtype_and_description() -> None:
    q = data.quadrature(3, order=2, dtype=torch.float32, interval=(-1, 1))
    assert q.inputs.shape == (6, 1) and q.weights.dtype == torch.float32
    assert "6 nodes on [-1, 1]" in q.description
    with pytest.raises(ValueError, match="rows"):
        q.integrate(torch.ones(5))


@pytest.mark.parametrize("kwargs, err, match", [
    ({"panels": 0}, ValueError, "panels"),
    ({"panels": 2, "order": 0}, ValueError, "order"),
    ({"panels": 2, "rule": "simpson"}, ValueError, "rule"),
    ({"panels": 2, "rule": "midpoint", "order": 2}, ValueError, "order must be 1"),
    ({"panels": 2, "interval": (1.0, 0.0)}, ValueError, "interval"),
    ({"panels": 2, "interval": 3}, TypeError, "interval"),
    ({"panels": 2, "dtype": torch.int32}, TypeError, "dtype"),
])
def test_quadrature_bad_arguments(kwargs: dict, err: type, match: str) -> None:
    with pytest.raises(err, match=match):
        data.quadrature(**kwargs)


def test_gaussian_bump_values_and_derivatives() -> None:
    assert abs(data.gaussian_bump(0.0) - 5 / (4 * np.sqrt(2 * np.pi))) < 1e-15
    q = data.quadrature(200, order=4, interval=(-1.0, 1.0))
    # a normal density with sd 1/5 scaled by 5/4 * (1/5) ... integrates to 1/4 up to erf(5 / sqrt 2)
    from math import erf, sqrt
    assert abs(float(q.integrate(data.gaussian_bump(q.nodes))) - 0.25 * erf(5 / sqrt(2))) < 1e-13
    x = torch.linspace(-1, 1, 41, dtype=torch.float64, requires_grad=True)
    g = data.gaussian_bump(x)
    (d1,) = torch.autograd.grad(g.sum(), x, create_graph=True)
    (d2,) = torch.autograd.grad(d1.sum(), x)
    torch.testing.assert_close(d1.detach(), data.gaussian_bump(x.detach(), 1))
    torch.testing.assert_close(d2, data.gaussian_bump(x.detach(), 2))
    arr = data.gaussian_bump(np.array([0.1, 0.2], dtype=np.float32), 2)
    assert isinstance(arr, np.ndarray)
    assert isinstance(data.gaussian_bump(0.3, 1), float)
    with pytest.raises(ValueError, match="derivative"):
        data.gaussian_bump(0.1, 3)
    with pytest.raises(TypeError, match="bool"):
        data.gaussian_bump(True)


def test_check_interval() -> None:
    assert data.check_interval((0, 2)) == (0.0, 2.0)
    with pytest.raises(ValueError, match="span must be finite"):
        data.check_interval((1.0, float("inf")), name="span")
    with pytest.raises(TypeError, match="interval must be a pair"):
        data.check_interval(None)


def test_gaussian_regression_reproduces_its_documented_draws() -> None:
    """Pinned against the docstring's recipe, drawn here with numpy directly: W ~ N(0, 1/d),
    x ~ N(0, I), y = x W + noise e, in that order from default_rng(seed)."""
    n, d, out, noise, seed = 7, 3, 2, 0.25, 11
    ds = data.gaussian_regression(n, d, out_dim=out, noise=noise, n_test=2, seed=seed)
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((d, out)) / np.sqrt(d)
    x = rng.standard_normal((n + 2, d))
    y = x @ w + noise * rng.standard_normal((n + 2, out))
    assert np.array_equal(ds.inputs.numpy(), x[:n]) and np.array_equal(ds.targets.numpy(), y[:n])
    assert np.array_equal(ds.test_inputs.numpy(), x[n:]) and np.array_equal(ds.test_targets.numpy(), y[n:])
    assert np.abs(ds.targets.numpy()).min() > 0
    other = data.gaussian_regression(n, d, out_dim=out, noise=noise, seed=seed + 1)
    assert not np.array_equal(other.targets.numpy(), ds.targets.numpy())


# ------------------------------------------------------------------ issue 19: the one argument layer
def test_digits_takes_numpy_and_torch_integers_as_the_python_ones() -> None:
    """Reference: the same call with Python ints."""
    ref = data.digits(30, classes=(3, 5), n_test=4, seed=1)
    for n, n_test, seed, classes in ((np.int64(30), np.int32(4), np.int64(1), np.array([3, 5])),
                                     (torch.tensor(30), torch.tensor(4), torch.tensor(1),
                                      [torch.tensor(3), np.int8(5)])):
        ds = data.digits(n, classes=classes, n_test=n_test, seed=seed)
        assert torch.equal(ds.inputs, ref.inputs) and torch.equal(ds.test_labels, ref.test_labels)
        assert ds.classes == (3, 5)


@pytest.mark.parametrize("kwargs, match", [
    ({"n": True}, "n must be an integer"), ({"n": 10.0}, "n must be an integer"),
    ({"n": 10, "n_test": True}, "n_test"), ({"n": 10, "classes": 3}, "classes"),
    ({"n": 10, "classes": [1, np.True_]}, r"classes\[1\]"), ({"n": 10, "seed": np.True_}, "seed"),
    ({"n": 10, "one_hot": 1}, "one_hot"), ({"n": 10, "standardize": "yes"}, "standardize"),
])
def test_digits_refuses_bools_and_wrong_kinds(kwargs: dict, match: str) -> None:
    with pytest.raises((TypeError, ValueError), match=match):
        data.digits(**kwargs)


def test_gaussian_regression_guards() -> None:
    ref = data.gaussian_regression(6, 2, noise=0.5, seed=3)
    same = data.gaussian_regression(np.int64(6), torch.tensor(2), noise=torch.tensor(0.5), seed=3)
    assert torch.equal(ref.targets, same.targets)
    for kwargs, match in (({"n": True, "d": 2}, "n must be an integer"),
                          ({"n": 5, "d": 2, "noise": True}, "noise"),
                          ({"n": 5, "d": 2, "noise": float("nan")}, "noise"),
                          ({"n": 10**6, "d": 10**3}, "size guard"),
                          ({"n": 5, "d": 2, "out_dim": 0}, "out_dim")):
        with pytest.raises(ValueError, match=match):
            data.gaussian_regression(**kwargs)


def test_gauss_legendre_order_is_guarded() -> None:
    """A huge order would build an order x order eigenproblem: refused before any work."""
    with pytest.raises(ValueError, match="order must be at most 256"):
        data.gauss_legendre(np.zeros(1), np.ones(1), 10**6)
    with pytest.raises(ValueError, match="order must be at most 256"):
        data.quadrature(1, order=10**6)
    with pytest.raises(TypeError, match="panels"):
        data.quadrature(True)
    x, w = data.gauss_legendre(np.zeros(1), np.ones(1), np.int64(3))
    np.testing.assert_allclose(w.sum(), 1.0, rtol=1e-15)


def test_gaussian_bump_refuses_non_numbers_and_keeps_nan() -> None:
    """Reference for the accepted kinds: the float64 formula at the same number."""
    assert data.gaussian_bump(Fraction(1, 4)) == data.gaussian_bump(0.25)
    assert data.gaussian_bump(0.25, np.int64(1)) == data.gaussian_bump(0.25, 1)
    assert math.isnan(data.gaussian_bump(math.nan))
    assert np.isnan(data.gaussian_bump(np.array([0.0, np.nan]), 2)[1])
    for bad in (None, "0.5", np.array([True, False]), [None, 1.0], 1 + 2j):
        with pytest.raises(TypeError, match="x"):
            data.gaussian_bump(bad)
    for bad in (True, 1.0, 3, -1):
        with pytest.raises(ValueError, match="derivative"):
            data.gaussian_bump(0.5, bad)


def test_quadrature_integrate_checks_values_and_keeps_nan() -> None:
    """Reference: int_0^1 x^2 dx = 1/3 (two Gauss-Legendre nodes per panel are exact)."""
    rule = data.quadrature(np.int64(4), order=torch.tensor(2))
    assert rule.integrate(rule.nodes**2).item() == pytest.approx(1 / 3, rel=1e-14)
    values = rule.nodes.clone()
    values[3] = math.nan
    assert math.isnan(rule.integrate(values).item())
    for bad in (rule.nodes.tolist(), torch.ones(rule.n, dtype=torch.int64), torch.tensor(1.0)):
        with pytest.raises((TypeError, ValueError), match="values"):
            rule.integrate(bad)


# --------------------------------------------------------------------------- guards (issue 19)
@pytest.mark.parametrize("lo, hi", [(np.zeros(0), np.array([0.5, 1.0])),
                                    (np.zeros((1, 2, 1)), np.array([0.5, 1.0])),
                                    (np.array([0.0, 0.5]), np.array([1.0]))])
def test_gauss_legendre_refuses_mis_shaped_cells(lo, hi) -> None:
    with pytest.raises(ValueError, match="lo and hi"):
        data.gauss_legendre(lo, hi, 2)


def test_composite_rule_names_bad_arguments() -> None:
    lo, hi = np.array([0.0, 0.5]), np.array([0.5, 1.0])
    with pytest.raises(ValueError, match="ref_x and ref_w"):
        data.composite_rule(lo, hi, np.zeros(0), np.zeros(0))
    with pytest.raises(TypeError, match="lo"):
        data.composite_rule("x", hi, np.zeros(1), np.full(1, 2.0))
    x, w = data.composite_rule(lo, hi, np.zeros(1), np.full(1, 2.0))   # midpoint rule
    assert x.tolist() == [0.25, 0.75] and w.tolist() == [0.5, 0.5]
