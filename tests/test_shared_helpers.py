"""Direct tests of the house's shared helpers (each was tested only through its callers)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as hs
from torch import nn

from lib import data, exact, flows, hessian, nets


@given(order=hs.integers(1, 8), cells=hs.integers(1, 5), seed=hs.integers(0, 2**16))
def test_gauss_legendre_integrates_polynomials_of_degree_2n_minus_1_exactly(order, cells, seed):
    """Law: an n-point Gauss-Legendre rule is exact for polynomials of degree <= 2n - 1,
    on every cell of a composite rule."""
    rng = np.random.default_rng(seed)
    edges = np.sort(rng.uniform(-2, 2, cells + 1))
    coeffs = rng.normal(size=2 * order)                 # degree 2n - 1
    x, w = data.gauss_legendre(edges[:-1], edges[1:], order)
    integral = np.polynomial.polynomial.Polynomial(coeffs).integ()
    exact_value = integral(edges[-1]) - integral(edges[0])
    assert np.sum(w * np.polynomial.polynomial.polyval(x, coeffs)) == pytest.approx(
        exact_value, rel=1e-10, abs=1e-10)
    assert x.shape == w.shape == (cells * order,)
    with pytest.raises((TypeError, ValueError), match="order"):
        data.gauss_legendre(edges[:-1], edges[1:], 0)


def test_composite_rule_maps_the_reference_rule_to_each_cell() -> None:
    x, w = data.composite_rule(np.array([0.0, 1.0]), np.array([1.0, 3.0]),
                               np.array([-1.0, 1.0]), np.array([1.0, 1.0]))
    np.testing.assert_array_equal(x, [0.0, 1.0, 1.0, 3.0])
    np.testing.assert_array_equal(w, [0.5, 0.5, 1.0, 1.0])


def test_eigenvalues_along_matches_pointwise_eigenvalues() -> None:
    torch.manual_seed(0)
    model = nets.mlp([3, 4, 1], "tanh", init="pytorch", seed=1, dtype=torch.float64)
    x = torch.randn(12, 3, dtype=torch.float64)
    y = torch.randn(12, 1, dtype=torch.float64)
    theta0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    rows = np.stack([(theta0 * s).numpy() for s in (1.0, 0.9, 1.1)])
    path = hessian.eigenvalues_along(model, nets.mse, x, y, rows, which="top", k=1, tol=1e-9)
    values = np.asarray(path.values).reshape(len(rows), -1)[:, 0]
    for i, row in enumerate(rows):
        ref = float(hessian.eigenvalues(model, nets.mse, x, y, theta=torch.from_numpy(row),
                                        tol=1e-9)[0])
        assert values[i] == pytest.approx(ref, rel=1e-6)
    np.testing.assert_array_equal(                      # the model is not modified
        torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy(), theta0.numpy())
    with pytest.raises(ValueError, match="thetas"):
        hessian.eigenvalues_along(model, nets.mse, x, y, np.zeros((0, 3)))


def test_check_widths_names_the_bad_entry() -> None:
    assert exact.check_widths((3, np.int64(4), 0)) == [3, 4, 0]
    with pytest.raises(TypeError, match="widths"):
        exact.check_widths("34")
    with pytest.raises(TypeError, match=r"widths\[1\]"):
        exact.check_widths([3, 2.5])
    with pytest.raises(TypeError, match=r"widths\[0\]"):
        exact.check_widths([True])
    with pytest.raises(ValueError, match=r"widths\[2\]"):
        exact.check_widths([1, 2, -1])


class _NanGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        return x.clone()

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        return g * math.nan


def test_gradient_descent_refuses_a_non_finite_gradient_with_a_finite_loss() -> None:
    model = nn.Sequential(nn.Linear(1, 1)).double()
    x = torch.ones(4, 1, dtype=torch.float64)
    y = torch.zeros(4, 1, dtype=torch.float64)

    def loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ((_NanGradient.apply(out) - target) ** 2).mean()

    with pytest.raises(flows.NonFiniteLossError, match="non-finite"):
        flows.gradient_descent(model, loss, x, y, eta=0.1, steps=3)


def test_builders_check_seed_and_scale() -> None:
    base = nets.random_relu_net([3], seed=0)
    with pytest.raises(TypeError, match="seed"):
        nets.perturbed_net(base, 1e-3, seed=1.5)
    with pytest.raises((TypeError, ValueError), match="scale"):
        nets.mlp([1, 2, 1], "relu", scale=True)
