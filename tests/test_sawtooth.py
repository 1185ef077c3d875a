"""Tests of lib.sawtooth: exact references, networks, floating-point exactness, shallow fits.

The references below (``relu_hat``, ``integral_sq``) are written independently of the
library's code paths: the library evaluates g by cases and, for dyadic inputs, with integers.
"""

from __future__ import annotations

import math
import time
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as hs
from torch import nn

from lib import sawtooth as S

DTYPES = S.SUPPORTED_DTYPES
ZERO = Fraction(0)


def relu(v: Fraction) -> Fraction:
    return v if v > 0 else ZERO


def relu_hat(x: Fraction) -> Fraction:
    """g by its ReLU formula (the book's definition)."""
    return 2 * relu(x) - 4 * relu(x - Fraction(1, 2)) + 2 * relu(x - 1)


def relu_sawtooth(x: Fraction, depth: int) -> Fraction:
    for _ in range(depth):
        x = relu_hat(x)
    return x


def relu_yarotsky(x: Fraction, m: int) -> Fraction:
    total, g = x, x
    for s in range(1, m + 1):
        g = relu_hat(g)
        total -= g / 4**s
    return total


unit_q = hs.fractions(min_value=0, max_value=1, max_denominator=10**6)
wide_q = hs.fractions(min_value=-2, max_value=3, max_denominator=10**5)
dyadic_q = hs.builds(lambda n, k: Fraction(k % (2**n + 1), 2**n), hs.integers(0, 60), hs.integers(0, 2**62))
unit_x = hs.one_of(unit_q, dyadic_q, hs.floats(0, 1))
depths = hs.integers(1, 24)
ms = hs.integers(1, 12)


# ------------------------------------------------------------------ exact references
def test_to_fraction_is_exact_and_strict() -> None:
    assert S.to_fraction(0.1) == Fraction(3602879701896397, 2**55)
    assert S.to_fraction(np.float32(0.1)) == Fraction(float(np.float32(0.1)))
    assert S.to_fraction(3) == 3 and S.to_fraction(np.int64(-2)) == -2
    assert S.to_fraction(torch.tensor(0.25)) == Fraction(1, 4)
    for bad, err in ((True, TypeError), ("0.5", TypeError), (None, TypeError),
                     (math.nan, ValueError), (math.inf, ValueError)):
        with pytest.raises(err):
            S.to_fraction(bad)


@given(wide_q)
def test_hat_exact_is_the_relu_formula(x: Fraction) -> None:
    assert S.hat_exact(x) == relu_hat(x)
    assert S.hat(x) == relu_hat(x)


@given(hs.one_of(wide_q, dyadic_q, hs.floats(-2, 3)), depths)
def test_sawtooth_exact_is_the_composition(x, depth: int) -> None:
    assert S.sawtooth_exact(x, depth) == relu_sawtooth(S.to_fraction(x), depth)


@given(unit_x, depths)
def test_sawtooth_closed_form_on_cells(x, s: int) -> None:
    x = S.to_fraction(x)
    value = S.sawtooth_exact(x, s)
    if x == 1:
        assert value == 0
        return
    k = math.floor(x * 2 ** (s - 1))  # cell [k/2^(s-1), (k+1)/2^(s-1)]
    assert value == 1 - abs(2**s * x - (2 * k + 1))


@given(hs.one_of(unit_q, dyadic_q, hs.floats(0, 1)), ms)
def test_yarotsky_exact_definition_and_increment(x, m: int) -> None:
    x = S.to_fraction(x)
    fm = S.yarotsky_exact(x, m)
    assert fm == relu_yarotsky(x, m)
    previous = S.yarotsky_exact(x, m - 1) if m > 1 else x
    assert fm - previous == -S.sawtooth_exact(x, m) / 4**m


@given(hs.one_of(unit_q, dyadic_q, hs.floats(0, 1)), ms)
def test_yarotsky_is_the_interpolant_of_the_square(x, m: int) -> None:
    x = S.to_fraction(x)
    a = Fraction(math.floor(x * 2**m), 2**m)
    b = a + Fraction(1, 2**m)
    err = S.yarotsky_exact(x, m) - x * x
    assert err == (x - a) * (b - x)
    assert 0 <= err <= Fraction(1, 2 ** (2 * m + 2))


@pytest.mark.parametrize("m", range(1, 10))
def test_yarotsky_max_error_is_attained_at_the_midpoints(m: int) -> None:
    err, where = S.yarotsky_max_error_exact(m)
    assert err == Fraction(1, 2 ** (2 * m + 2))
    assert where == [Fraction(2 * k + 1, 2 ** (m + 1)) for k in range(2**m)]
    for x in where[:: max(1, len(where) // 7)]:
        assert S.yarotsky_exact(x, m) - x * x == err
    for k in range(2**m + 1):  # interpolation at the nodes
        assert S.yarotsky_exact(Fraction(k, 2**m), m) == Fraction(k * k, 4**m)


@given(unit_q, unit_q, hs.integers(1, 10))
def test_product_error_bound(x: Fraction, y: Fraction, m: int) -> None:
    assert abs(S.product_exact(x, y, m) - x * y) <= Fraction(1, 2 ** (2 * m + 1))


@pytest.mark.parametrize("m", [1, 3, 7])
def test_product_error_bound_is_attained(m: int) -> None:
    y = Fraction(1, 2**m)
    assert S.product_exact(0, y, m) - 0 * y == Fraction(1, 2 ** (2 * m + 1))


# ------------------------------------------------------------------ teeth and pieces
@pytest.mark.parametrize("s", range(1, 11))
def test_sawtooth_teeth_and_pieces(s: int) -> None:
    level = s + 1
    grid = [Fraction(i, 2**level) for i in range(2**level + 1)]
    values = [S.sawtooth_exact(x, s) for x in grid]
    assert S.grid_pieces(values) == 2**s
    peaks = [x for x in grid if S.sawtooth_exact(x, s) == 1]
    assert peaks == [Fraction(2 * j + 1, 2**s) for j in range(2 ** (s - 1))]  # 2^(s-1) teeth
    assert all(S.sawtooth_exact(Fraction(j, 2 ** (s - 1)), s) == 0 for j in range(2 ** (s - 1) + 1))
    # A grid coarser than the teeth sees a constant: the limit of grid counting.
    coarse = [S.sawtooth_exact(Fraction(j, 2 ** (s - 1)), s) for j in range(2 ** (s - 1) + 1)]
    assert S.grid_pieces(coarse) == 1


@pytest.mark.parametrize("m", range(1, 9))
def test_yarotsky_has_2_to_the_m_pieces(m: int) -> None:
    values = [S.yarotsky_exact(Fraction(i, 2 ** (m + 1)), m) for i in range(2 ** (m + 1) + 1)]
    assert S.grid_pieces(values) == 2**m


def test_grid_pieces_rejects_too_few_values() -> None:
    with pytest.raises(ValueError, match="values"):
        S.grid_pieces([1])


# ------------------------------------------------------------------ networks: structure
def _check_structure(net: nn.Sequential, widths: list[int], n_in: int = 1) -> None:
    layers = list(net)
    assert all(isinstance(layer, (nn.Linear, nn.ReLU)) for layer in layers)
    assert [type(layer) for layer in layers[::2]] == [nn.Linear] * (len(widths) + 1)
    assert [type(layer) for layer in layers[1::2]] == [nn.ReLU] * len(widths)
    assert S.hidden_widths(net) == widths
    assert layers[0].in_features == n_in and layers[-1].out_features == 1


@pytest.mark.parametrize("depth", [1, 2, 5, 20])
def test_sawtooth_net_architecture(depth: int) -> None:
    net = S.sawtooth_net(depth)
    _check_structure(net, [S.SAWTOOTH_WIDTH] * depth)
    assert S.parameter_count(net) == S.sawtooth_parameter_count(depth) == 12 * depth - 2
    out = net(torch.rand(7, 1, dtype=torch.float64))
    assert out.shape == (7, 1) and out.dtype == torch.float64


@pytest.mark.parametrize("m", [1, 2, 6, 12])
def test_yarotsky_net_architecture(m: int) -> None:
    net = S.yarotsky_square_net(m)
    _check_structure(net, [S.YAROTSKY_WIDTH] * m)
    assert S.parameter_count(net) == S.yarotsky_parameter_count(m) == 20 * m - 7
    product = S.yarotsky_product_net(m)
    _check_structure(product, [3 * S.YAROTSKY_WIDTH] * m, n_in=2)
    assert S.parameter_count(product) == 156 * m - 107


@pytest.mark.parametrize("depth", [1, 3, 6])
def test_shallow_sawtooth_net_architecture(depth: int) -> None:
    net = S.shallow_sawtooth_net(depth)
    _check_structure(net, [2**depth])
    assert S.parameter_count(net) == S.shallow_sawtooth_parameter_count(depth) == 3 * 2**depth + 1


@pytest.mark.parametrize("dtype", DTYPES)
def test_nets_have_the_requested_dtype_and_consume_no_randomness(dtype: torch.dtype) -> None:
    state = torch.get_rng_state()
    nets = [S.sawtooth_net(3, dtype), S.yarotsky_square_net(4, dtype),
            S.yarotsky_product_net(2, dtype), S.shallow_sawtooth_net(3, dtype)]
    assert torch.equal(state, torch.get_rng_state())
    for net in nets:
        assert all(p.dtype == dtype and p.requires_grad for p in net.parameters())


# ------------------------------------------------------------------ networks: exact values
@given(wide_q, hs.integers(1, 12))
def test_sawtooth_net_weights_define_g_depth_on_the_line(x: Fraction, depth: int) -> None:
    assert S.net_exact(S.sawtooth_net(depth), x) == S.sawtooth_exact(x, depth)


@given(hs.one_of(unit_q, dyadic_q), ms)
def test_yarotsky_net_weights_define_f_m(x: Fraction, m: int) -> None:
    assert S.net_exact(S.yarotsky_square_net(m), x) == S.yarotsky_exact(x, m)


@given(unit_q, unit_q, hs.integers(1, 6))
def test_product_net_weights_define_the_product(x: Fraction, y: Fraction, m: int) -> None:
    assert S.net_exact(S.yarotsky_product_net(m), [x, y]) == S.product_exact(x, y, m)


@given(hs.one_of(unit_q, dyadic_q), hs.integers(1, 7))
def test_shallow_net_is_g_depth_on_the_unit_interval(x: Fraction, depth: int) -> None:
    assert S.net_exact(S.shallow_sawtooth_net(depth), x) == S.sawtooth_exact(x, depth)


@given(hs.one_of(unit_q, dyadic_q), hs.integers(1, 6))
def test_shallow_pl_net_realises_the_interpolant_of_f_m(x: Fraction, m: int) -> None:
    knots = [Fraction(k, 2**m) for k in range(2**m + 1)]
    net = S.shallow_pl_net(knots, [k * k for k in knots])
    assert S.parameter_count(net) == 3 * 2**m + 1
    assert S.net_exact(net, x) == S.yarotsky_exact(x, m)


def test_shallow_pl_net_validation() -> None:
    with pytest.raises(ValueError, match="same length"):
        S.shallow_pl_net([0, 1], [0])
    with pytest.raises(ValueError, match="increasing"):
        S.shallow_pl_net([0, 1, 1], [0, 1, 0])
    with pytest.raises(ValueError, match="not exactly representable"):
        S.shallow_pl_net([0, 1], [0, Fraction(1, 3)])


@pytest.mark.parametrize("dtype", DTYPES)
def test_net_exact_reads_every_format(dtype: torch.dtype) -> None:
    net = S.yarotsky_square_net(min(5, S.yarotsky_max_exact_m(dtype)), dtype)
    xs = [Fraction(1, 3), Fraction(5, 7), 0.3]
    assert S.net_exact(net, xs) == [S.yarotsky_exact(x, 5) for x in xs]


def test_net_exact_rejects_other_layers() -> None:
    with pytest.raises(TypeError, match="Tanh"):
        S.net_exact(nn.Sequential(nn.Linear(1, 2), nn.Tanh(), nn.Linear(2, 1)), 0.5)
    with pytest.raises(TypeError, match="Sequential"):
        S.net_exact(nn.Linear(1, 1), 0.5)
    with pytest.raises(ValueError, match="coordinates"):
        S.net_exact(S.yarotsky_product_net(1), [0.5, 0.5, 0.5])


# ------------------------------------------------------------------ floating point
def _rounded_inputs(dtype: torch.dtype, n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, generator=gen, dtype=torch.float64).to(dtype)
    dyadic = torch.arange(0, 1025, dtype=torch.float64).div(1024).reshape(-1, 1).to(dtype)
    return torch.cat([x, dyadic, torch.tensor([[0.0], [0.5], [1.0]], dtype=dtype)])


@pytest.mark.parametrize("dtype", DTYPES)
def test_sawtooth_net_is_exact_in_every_format(dtype: torch.dtype) -> None:
    """For inputs in [0, 1] every floating-point operation of the forward pass is exact."""
    x = _rounded_inputs(dtype, 200, seed=3)
    exact_inputs = [Fraction(v) for v in x.to(torch.float64).flatten().tolist()]
    for depth in (1, 2, 5, 12, 30):
        with torch.no_grad():
            out = S.sawtooth_net(depth, dtype)(x).to(torch.float64).flatten().tolist()
        expected = [S.sawtooth_exact(v, depth) for v in exact_inputs]
        assert [Fraction(v) for v in out] == expected, (dtype, depth)
        tensor_path = S.sawtooth(x, depth).to(torch.float64).flatten().tolist()
        assert [Fraction(v) for v in tensor_path] == expected, (dtype, depth)


@given(hs.floats(0, 1), hs.integers(1, 60))
def test_hat_on_floats_is_exact(x: float, depth: int) -> None:
    assert Fraction(S.sawtooth(x, depth)) == S.sawtooth_exact(x, depth)
    arr = np.array([x], dtype=np.float32)
    assert Fraction(float(S.sawtooth(arr, depth)[0])) == S.sawtooth_exact(float(arr[0]), depth)


@pytest.mark.parametrize("m", [1, 4, 12])
def test_yarotsky_net_float64_is_close_to_exact(m: int) -> None:
    x = _rounded_inputs(torch.float64, 300, seed=5)
    with torch.no_grad():
        out = S.yarotsky_square_net(m)(x).flatten().tolist()
    worst = max(abs(Fraction(o) - S.yarotsky_exact(v, m)) for o, v in zip(out, x.flatten().tolist()))
    # hat channels exact; at most 3 roundings (each <= 2^-53, sums below 2) per affine map
    assert worst <= 3 * m * Fraction(1, 2**53)
    array_path = S.yarotsky_square(x.numpy(), m)
    assert np.max(np.abs(array_path - np.asarray(out).reshape(-1, 1))) <= 6 * m * 2.0**-53


def test_tensor_and_array_helpers_keep_the_precision() -> None:
    for dtype in DTYPES:
        assert S.hat(torch.zeros(3, dtype=dtype)).dtype == dtype
    assert S.hat(np.zeros(3, dtype=np.float32)).dtype == np.float32
    assert S.hat(np.array([0, 1])).dtype == np.float64
    assert isinstance(S.hat(0.25), float) and S.hat(0.25) == 0.5
    assert S.hat(Fraction(1, 3)) == Fraction(2, 3)
    assert S.yarotsky_square(Fraction(1, 3), 2) == S.yarotsky_exact(Fraction(1, 3), 2)
    with pytest.raises(TypeError):
        S.hat(torch.zeros(3, dtype=torch.int64))
    with pytest.raises(TypeError):
        S.hat(True)


# ------------------------------------------------------------------ formats
def test_sawtooth_weights_are_exact_in_every_format() -> None:
    reference = [p.detach() for p in S.sawtooth_net(4).parameters()]
    assert set(torch.cat([p.flatten() for p in reference]).tolist()) <= {0.0, 1.0, -1.0, 2.0, -4.0, -0.5}
    for dtype in DTYPES:
        for p, q in zip(S.sawtooth_net(4, dtype).parameters(), reference):
            assert torch.equal(p.detach().to(torch.float64), q)


@pytest.mark.parametrize("dtype, expected", [(torch.float16, 12), (torch.bfloat16, 67),
                                             (torch.float32, 75), (torch.float64, 537)])
def test_yarotsky_weights_exact_up_to_the_format_limit(dtype: torch.dtype, expected: int) -> None:
    m = S.yarotsky_max_exact_m(dtype)
    assert m == expected
    net = S.yarotsky_square_net(m, dtype)
    flat = torch.cat([p.detach().flatten() for p in net.parameters()]).abs()
    smallest = flat[flat != 0].min().item()
    assert smallest == 2.0 ** (1 - 2 * m)
    with pytest.raises(ValueError, match="not exactly representable"):
        S.yarotsky_square_net(m + 1, dtype)


def test_shallow_net_format_limits() -> None:
    S.shallow_sawtooth_net(11, torch.float16)
    S.shallow_sawtooth_net(8, torch.bfloat16)
    with pytest.raises(ValueError, match="not exactly representable"):
        S.shallow_sawtooth_net(12, torch.float16)
    with pytest.raises(ValueError, match="not exactly representable"):
        S.shallow_sawtooth_net(9, torch.bfloat16)


# ------------------------------------------------------------------ bad input
BUILDERS = [S.sawtooth_net, S.yarotsky_square_net, S.yarotsky_product_net, S.shallow_sawtooth_net]


@pytest.mark.parametrize("build", BUILDERS)
@pytest.mark.parametrize("bad", [0, -1])
def test_too_small_depth_raises(build, bad: int) -> None:
    with pytest.raises(ValueError, match="depth|m"):
        build(bad)


@pytest.mark.parametrize("build", BUILDERS)
@pytest.mark.parametrize("bad", [2.5, 3.0, True, "3", None])
def test_non_integer_depth_raises(build, bad) -> None:
    for err in (TypeError, ValueError):
        with pytest.raises(err, match="must be an integer"):
            build(bad)


@pytest.mark.parametrize("build", BUILDERS)
@pytest.mark.parametrize("bad", [torch.int32, torch.complex64, torch.float8_e4m3fn, "float32",
                                 np.float32, None])
def test_unsupported_dtype_raises(build, bad) -> None:
    for err in (TypeError, ValueError):
        with pytest.raises(err, match="dtype"):
            build(2, bad)


@pytest.mark.parametrize("fn", [S.sawtooth_exact, S.yarotsky_exact])
def test_exact_references_reject_bad_depth(fn) -> None:
    with pytest.raises(ValueError):
        fn(0.5, 0)
    with pytest.raises(TypeError):
        fn(0.5, 1.5)
    with pytest.raises(TypeError):
        fn("0.5", 2)


# ------------------------------------------------------------------ shallow approximation
def integral_sq(depth: int, knots, values) -> Fraction:
    """||p - g_depth||^2 on [0, 1] for the PL p through (knots, values), by exact quadrature."""
    points = sorted(set(knots) | {Fraction(i, 2**depth) for i in range(2**depth + 1)})

    def p(x: Fraction) -> Fraction:
        for a, b, va, vb in zip(knots, knots[1:], values, values[1:]):
            if a <= x <= b:
                return va + (vb - va) * (x - a) / (b - a)
        raise AssertionError(x)

    total = ZERO
    for u, v in zip(points, points[1:]):
        du, dv = p(u) - relu_sawtooth(u, depth), p(v) - relu_sawtooth(v, depth)
        total += (v - u) * (du * du + du * dv + dv * dv) / 3  # exact for affine differences
    return total


@pytest.mark.parametrize("depth", range(1, 7))
def test_one_piece_bound_is_tight(depth: int) -> None:
    fit = S.best_pl_fit(depth, [0, 1])
    assert fit.l2_error_sq == Fraction(1, 12) == S.pieces_l2_lower_bound_sq(depth, 1)
    assert fit.sup_error == Fraction(1, 2)


@pytest.mark.parametrize("depth", range(1, 8))
def test_all_kinks_fit_exactly(depth: int) -> None:
    fit = S.best_pl_fit(depth, S.leading_kink_knots(depth, 2**depth))
    assert fit.l2_error_sq == 0 and fit.sup_error == 0
    bounds = S.shallow_fit_bounds(depth, 2**depth)
    assert bounds.upper_sq == 0 and bounds.lower_sq == 0


knot_sets = hs.lists(hs.fractions(min_value=0, max_value=1, max_denominator=64), max_size=8)


@given(hs.integers(1, 5), knot_sets)
def test_best_fit_is_exact_optimal_and_above_the_lower_bounds(depth: int, interior) -> None:
    knots = sorted({Fraction(0), Fraction(1), *interior})
    fit = S.best_pl_fit(depth, knots)
    pieces = len(knots) - 1
    assert fit.l2_error_sq == integral_sq(depth, fit.knots, fit.values)
    assert fit.l2_error_sq >= S.pieces_l2_lower_bound_sq(depth, pieces)
    assert fit.sup_error >= S.pieces_sup_lower_bound(depth, pieces)
    for i in {0, len(knots) // 2, len(knots) - 1}:  # optimality: a node change does not help
        for delta in (Fraction(1, 50), Fraction(-1, 50)):
            values = list(fit.values)
            values[i] += delta
            assert integral_sq(depth, fit.knots, values) > fit.l2_error_sq


def test_lower_bounds_formulae() -> None:
    assert S.pieces_l2_lower_bound_sq(6, 1) == Fraction(1, 12)
    assert S.pieces_l2_lower_bound_sq(6, 17) == Fraction(1, 24)
    assert S.pieces_l2_lower_bound_sq(6, 33) == 0
    assert S.pieces_sup_lower_bound(6, 32) == Fraction(1, 2)
    assert S.pieces_sup_lower_bound(6, 33) == 0


@pytest.mark.parametrize("depth", [3, 5])
def test_shallow_bounds_sandwich(depth: int) -> None:
    previous = None
    for width in range(1, 2**depth + 1):
        b = S.shallow_fit_bounds(depth, width)
        assert 0 <= b.lower_sq <= b.upper_sq <= Fraction(1, 12)
        assert b.upper_fit.pieces == width
        if previous is not None:
            assert b.lower_sq <= previous.lower_sq
        previous = b


def test_knot_validation() -> None:
    for bad in ([0, Fraction(1, 2)], [Fraction(1, 4), 1], [0, Fraction(1, 2), Fraction(1, 2), 1], [0]):
        with pytest.raises(ValueError, match="knots"):
            S.best_pl_fit(3, bad)
    with pytest.raises(ValueError, match="pieces"):
        S.leading_kink_knots(3, 9)


def _floats_in_unit_interval(np_dtype) -> np.ndarray:
    if np_dtype == np.float16:  # all of them: bit patterns 0x0000 .. 0x3C00 (= 1.0)
        return np.arange(0, 0x3C01, dtype=np.uint16).view(np.float16)
    rng = np.random.default_rng(7)
    sample = rng.random(20000).astype(np_dtype)
    tiny = np.array([0, 2.0**-149, 2.0**-126, 0.25, 0.5, 1.0], dtype=np.float64).astype(np_dtype)
    return np.concatenate([sample, np.ldexp(sample[:2000], -100).astype(np_dtype), tiny])


@pytest.mark.parametrize("np_dtype", [np.float16, np.float32])
def test_sawtooth_layer_is_exact_in_every_summation_order(np_dtype) -> None:
    """One merged layer maps exact hidden values to exact hidden values, whatever the order.

    If the previous layer holds h_j = relu(y - t_j) exactly for a float y in [0, 1], every
    order of the sum 2 h_0 - 4 h_1 + 2 h_2 - t (rounded to the format after each addition)
    gives relu(g(y) - t) exactly after the ReLU.  By induction the whole forward pass is exact,
    independently of how a BLAS orders its sums (products by 2 and 4 are exact, so FMA changes
    nothing).
    """
    import itertools

    y = _floats_in_unit_interval(np_dtype)
    y64 = y.astype(np.float64)
    h = [np.maximum(y64 - t, 0).astype(np_dtype) for t in (0.0, 0.5, 1.0)]
    assert all(np.array_equal(hj.astype(np.float64), np.maximum(y64 - t, 0)) for hj, t in zip(h, (0.0, 0.5, 1.0)))
    g64 = 2 * np.maximum(y64, 0) - 4 * np.maximum(y64 - 0.5, 0) + 2 * np.maximum(y64 - 1, 0)
    for t in (0.0, 0.5, 1.0):
        terms = [np_dtype(2) * h[0], np_dtype(-4) * h[1], np_dtype(2) * h[2], np.full_like(y, -t)]
        expected = np.maximum(g64 - t, 0)
        for order in itertools.permutations(range(4)):
            acc = terms[order[0]]
            for i in order[1:]:
                acc = (acc + terms[i]).astype(np_dtype)
            assert np.array_equal(np.maximum(acc, 0).astype(np.float64), expected), (t, order)
            if t == 0.0:  # the output layer (bias 0, no ReLU) returns g(y) itself
                assert np.array_equal(acc.astype(np.float64), g64), order


# --------------------------------------------------------------------------- chapter checks
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("build, arg", [(S.sawtooth_net, 5), (S.yarotsky_square_net, 4),
                                        (S.shallow_sawtooth_net, 3)])
def test_dyadic_net_exact_agrees_with_net_exact(build, arg: int, dtype: torch.dtype) -> None:
    net = build(arg, dtype)
    points = [Fraction(k, 64) for k in range(65)] + [Fraction(-3, 4), Fraction(5, 2), 0.375, 1]
    assert S.dyadic_net_exact(net, points) == S.net_exact(net, points)


def test_dyadic_net_exact_edge_cases() -> None:
    net = S.sawtooth_net(2)
    assert S.dyadic_net_exact(net, []) == []
    with pytest.raises(ValueError, match="dyadic"):
        S.dyadic_net_exact(net, [Fraction(1, 3)])
    with pytest.raises(TypeError, match="points"):
        S.dyadic_net_exact(net, 0.5)
    with pytest.raises(TypeError):
        S.dyadic_net_exact(nn.Sequential(nn.Tanh()), [0.5])


@pytest.mark.parametrize("dtype, n_inputs", [(torch.float16, 15361), (torch.bfloat16, 16257)])
def test_layer_rounding_mismatches_is_exhaustive_and_clean(dtype: torch.dtype, n_inputs: int) -> None:
    assert S.layer_rounding_mismatches(dtype) == (n_inputs, 0)


def test_layer_rounding_mismatches_rejects_wide_formats() -> None:
    with pytest.raises(ValueError, match="dtype"):
        S.layer_rounding_mismatches(torch.float32)
    with pytest.raises(TypeError, match="dtype"):
        S.layer_rounding_mismatches("float8")


def test_yarotsky_rounding_errors_parts() -> None:
    x = torch.rand(256, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    rows = S.yarotsky_rounding_errors(x, torch.float16, 6)
    assert [r["m"] for r in rows] == list(range(1, 7))
    u = 2.0**-11
    for r in rows:
        # the total is at most the sum of its parts, and m = 1 is dominated by the approximation
        assert r["total / u"] <= r["input rounding / u"] + r["arithmetic / u"] + 1e-12
        assert r["total / 2^(-2m-2)"] == pytest.approx(r["total / u"] * u * 4 ** (r["m"] + 1))
    assert 0.5 < rows[0]["total / 2^(-2m-2)"] <= 1.01   # 2^-4 plus a few u
    with pytest.raises(ValueError, match="max_m"):
        S.yarotsky_rounding_errors(x, torch.float16, 13)
    with pytest.raises(ValueError, match="dtype"):
        S.yarotsky_rounding_errors(x, torch.float64, 3)
    with pytest.raises(TypeError, match="x_real"):
        S.yarotsky_rounding_errors(x.float(), torch.float16, 3)


@pytest.mark.parametrize("m", [1, 3, 5])
def test_square_error_on_cells_is_the_yarotsky_sup(m: int) -> None:
    kinks = [Fraction(k, 2**m) for k in range(1, 2**m)]
    sup, where, smallest = S.square_error_on_cells(S.yarotsky_square_net(m), kinks)
    assert sup == Fraction(1, 4 ** (m + 1))
    assert where == [Fraction(2 * k + 1, 2 ** (m + 1)) for k in range(2**m)]
    assert smallest == 0
    assert (sup, where) == S.yarotsky_max_error_exact(m)


def test_square_error_on_cells_validation() -> None:
    net = S.yarotsky_square_net(2)
    with pytest.raises(ValueError, match="breakpoints"):
        S.square_error_on_cells(net, [Fraction(1, 2), Fraction(1, 4)])
    with pytest.raises(TypeError, match="breakpoints"):
        S.square_error_on_cells(net, 0.5)


def test_unit_interval_floats_are_every_16_bit_float_in_0_1() -> None:
    for dtype, n in ((torch.float16, 15361), (torch.bfloat16, 16257)):
        x = S.unit_interval_floats(dtype)
        assert x.dtype == dtype and x.numel() == n
        assert float(x[0]) == 0.0 and float(x[-1]) == 1.0
        assert bool((x[1:].double() > x[:-1].double()).all())      # increasing, no repeats
        # the next float after 1 is not included, the largest float below 1 is
        assert float(x[-2]) == 1.0 - float(torch.finfo(dtype).eps) / 2
    with pytest.raises(ValueError, match="dtype"):
        S.unit_interval_floats(torch.float32)


# ------------------------------------------------------------------ two units, forward exactness
@given(unit_q, hs.integers(1, 10))
def test_two_unit_sawtooth_net_is_g_depth_on_the_unit_interval(x: Fraction, depth: int) -> None:
    assert S.net_exact(S.sawtooth_net(depth, units=2), x) == S.sawtooth_exact(x, depth)


@pytest.mark.parametrize("depth", [1, 2, 7])
def test_two_unit_sawtooth_net_architecture(depth: int) -> None:
    net = S.sawtooth_net(depth, units=2)
    _check_structure(net, [2] * depth)
    assert S.parameter_count(net) == 6 * depth + 1
    # beyond [0, 1]: depth 1 gives 2 - 2x for x > 1, deeper nets are 0 there (as g_depth)
    assert S.net_exact(net, Fraction(3, 2)) == (Fraction(-1) if depth == 1 else 0)
    for bad in (1, 4, 2.0, True):
        with pytest.raises(ValueError, match="units"):
            S.sawtooth_net(depth, units=bad)


def _relu_net_outputs(x: torch.Tensor, depth: int) -> list[float]:
    with torch.no_grad():
        return S.sawtooth_net(depth, x.dtype)(x).to(torch.float64).flatten().tolist()


@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_exactness_uses_the_networks_of_each_depth(dtype: torch.dtype) -> None:
    x = torch.rand(50, 1, generator=torch.Generator().manual_seed(3), dtype=torch.float64).to(dtype)
    rows = S.forward_exactness(x, 6)
    assert [r["depth"] for r in rows] == list(range(1, 7))
    assert all(r["mismatches"] == r["at subnormal inputs"] == r["flushed"] == 0 for r in rows)
    for r in rows:      # the reference: the exact orbit, independently
        exact = [S.sawtooth_exact(v, r["depth"]) for v in x.to(torch.float64).flatten().tolist()]
        assert r["nonzero"] == sum(e != 0 for e in exact)
        assert [Fraction(o) for o in _relu_net_outputs(x, r["depth"])] == exact


def test_forward_exactness_counts_orbits_and_detects_wrong_outputs() -> None:
    # 2^-3 has the orbit 1/4, 1/2, 1, 0: non-zero at depths 1 to 3; 3/4 -> 1/2 -> 1 -> 0
    x = torch.tensor([[0.125], [0.75], [0.0], [1.0]], dtype=torch.float64)
    assert [r["nonzero"] for r in S.forward_exactness(x, 5)] == [2, 2, 1, 0, 0]
    # the float16 network fed float16 subnormals (kept by torch's small-batch kernels here)
    tiny = torch.tensor([[2.0**-24], [2.0**-20]], dtype=torch.float16)
    rows = S.forward_exactness(tiny, 26)
    assert rows[-1]["nonzero"] == 0 and rows[23]["nonzero"] == 1


def test_forward_exactness_takes_float64_subnormals() -> None:
    # 2^-1074 doubles at each layer (g(y) = 2y below 1/2): still 2^(L-1074) at depth 10
    x = torch.tensor([[2.0**-1074], [3 * 2.0**-1074], [0.375]], dtype=torch.float64)
    rows = S.forward_exactness(x, 10)
    assert all(r["mismatches"] == 0 for r in rows) and rows[-1]["nonzero"] == 2


@pytest.mark.parametrize("dtype", DTYPES)
def test_first_layer_flushes_none_without_onednn(dtype: torch.dtype) -> None:
    # IEEE arithmetic with gradual underflow: the reference kernels keep every subnormal
    assert S.first_layer_flushes(dtype, 4096, onednn=False) == 0
    assert S.smallest_flushing_batch(dtype, 4096, onednn=False) is None
    if dtype != torch.bfloat16:     # oneDNN's fp16/fp32/fp64 paths keep them too
        assert S.first_layer_flushes(dtype, 4096) == 0


def test_smallest_flushing_batch_is_a_threshold() -> None:
    b = S.smallest_flushing_batch(torch.bfloat16, 4096)
    if b is not None:               # machine-dependent: where it flushes, it is a threshold
        assert S.first_layer_flushes(torch.bfloat16, b) > 0
        assert b == 127 or S.first_layer_flushes(torch.bfloat16, b - 1) == 0
    with pytest.raises(ValueError, match="batch"):
        S.first_layer_flushes(torch.bfloat16, 100)
    with pytest.raises(ValueError, match="largest"):
        S.smallest_flushing_batch(torch.bfloat16, 10)
    with pytest.raises(TypeError, match="dtype"):
        S.first_layer_flushes(torch.int32, 200)


def test_yarotsky_rounding_errors_exhaustive_sup() -> None:
    x = torch.rand(2048, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    sup = S.yarotsky_rounding_errors(None, torch.float16, 7)
    sampled = S.yarotsky_rounding_errors(x, torch.float16, 7)
    for r, q in zip(sup, sampled):   # a supremum over all reals bounds every sampled maximum
        for key in ("total / u", "input rounding / u", "arithmetic / u"):
            assert q[key] <= r[key]
        assert 0.99 < r["sup |fl(x)^2 - x^2| / u"] < 1       # |x^2 - fl(x)^2| < 2 u x^2 ... < u
    # brute force at m = 5: every float16 v and the ends of its rounding interval, in Fractions
    v = S.unit_interval_floats(torch.float16).to(torch.float64).tolist()
    net = S.yarotsky_square_net(5, torch.float16)
    with torch.no_grad():
        out = net(torch.tensor(v, dtype=torch.float16).reshape(-1, 1)).to(torch.float64).flatten().tolist()
    ends = [Fraction(0)] + [(Fraction(a) + Fraction(b)) / 2 for a, b in zip(v, v[1:])] + [Fraction(1)]
    best = max(max(abs(Fraction(o) - lo**2), abs(Fraction(o) - hi**2))
               for o, lo, hi in zip(out, ends, ends[1:]))
    assert float(best) / 2.0**-11 == sup[4]["total / u"]
    with pytest.raises(TypeError, match="x_real"):
        S.yarotsky_rounding_errors([0.5], torch.float16, 3)


def test_forward_exactness_rejects_bad_input() -> None:
    x = torch.tensor([[0.5]], dtype=torch.float64)
    with pytest.raises(TypeError, match="x"):
        S.forward_exactness(x.flatten(), 3)
    with pytest.raises(TypeError, match="x"):
        S.forward_exactness([[0.5]], 3)
    with pytest.raises(TypeError, match="x"):
        S.forward_exactness(x.to(torch.int32), 3)
    with pytest.raises(ValueError, match="x"):
        S.forward_exactness(torch.tensor([[1.5]], dtype=torch.float64), 3)
    with pytest.raises(ValueError, match="max_depth"):
        S.forward_exactness(x, 0)


# ------------------------------------------------------------------ issue 19: guards and the one layer
def _g_ref(y: Fraction) -> Fraction:
    """The hat map by its ReLU formula, on Fractions (independent of the module's cases)."""
    relu = lambda t: max(t, Fraction(0))  # noqa: E731
    return 2 * relu(y) - 4 * relu(y - Fraction(1, 2)) + 2 * relu(y - 1)


@given(hs.integers(0, 2**20), hs.integers(0, 20), hs.integers(1, 4096))
def test_sawtooth_exact_with_early_exit_agrees_with_the_formula(k: int, e: int, depth: int) -> None:
    """The dyadic fast path stops once the numerator is 0; brute force: iterate the formula."""
    x = Fraction(k, 2**e) if k <= 2**e else Fraction(1)
    y = x
    for _ in range(min(depth, e + 2)):  # after e + 2 steps every k/2^e has reached 0
        y = _g_ref(y)
    assert S.sawtooth_exact(x, depth) == y


@pytest.mark.parametrize("call, match", [
    (lambda: S.sawtooth_exact(0.3, 10**9), "depth must be at most 4096"),
    (lambda: S.yarotsky_exact(0.3, 10**9), "m must be at most 1024"),
    (lambda: S.product_exact(0.3, 0.2, 10**9), "m must be at most"),
    (lambda: S.shallow_sawtooth_parameter_count(10**9), "depth must be at most"),
    (lambda: S.yarotsky_max_error_exact(10**3), "m must be at most 20"),
    (lambda: S.pieces_l2_lower_bound_sq(10**9, 3), "depth must be at most"),
    (lambda: S.pieces_sup_lower_bound(10**9, 3), "depth must be at most"),
    (lambda: S.best_pl_fit(40, [0, 1]), "depth must be at most 20"),
    (lambda: S.uniform_knots(10**9), "pieces must be at most"),
    (lambda: S.leading_kink_knots(10**9, 3), "depth must be at most"),
    (lambda: S.leading_kink_knots(40, 10**9), "pieces must be at most"),
    (lambda: S.shallow_fit_bounds(10**6, 3), "depth must be at most 20"),
    (lambda: S.forward_exactness(torch.zeros(2, 1), 10**9), "max_depth must be at most"),
])
def test_size_guards_refuse_quickly(call, match) -> None:
    start = time.perf_counter()
    with pytest.raises(ValueError, match=match):
        call()
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("call, match", [
    (lambda: S.sawtooth_net(2, units=True), "units"),
    (lambda: S.sawtooth_net(2, units=np.True_), "units"),
    (lambda: S.hat_numerator(True, 4), "a must be an integer"),
    (lambda: S.hat_numerator(1, True), "n must be an integer"),
    (lambda: S.hat_numerator(1, 0), "n must be an integer >= 1"),
    (lambda: S.hat_numerator(1.0, 4), "a must be an integer"),
    (lambda: S.grid_pieces([0, math.nan, 1]), r"values\[1\] must be finite"),
    (lambda: S.grid_pieces([0, True, 1]), r"values\[1\]"),
    (lambda: S.sawtooth_exact(0.3, True), "depth"),
])
def test_bools_and_nan_are_refused_naming_the_argument(call, match) -> None:
    with pytest.raises((TypeError, ValueError), match=match):
        call()


def test_numpy_and_torch_integers_build_the_same_networks() -> None:
    """Reference: the same construction from the Python int."""
    for build in (S.sawtooth_net, S.yarotsky_square_net, S.shallow_sawtooth_net):
        a, b = build(np.int64(3)), build(torch.tensor(3))
        ref = build(3)
        assert all(torch.equal(p, q) and torch.equal(p, r)
                   for p, q, r in zip(ref.parameters(), a.parameters(), b.parameters()))
    assert S.hat_numerator(np.int64(3), np.int64(8)) == S.hat_numerator(3, 8) == 6
    assert S.sawtooth_net(2, units=np.int64(2))[0].out_features == 2


# --------------------------------------------------------------------------- messages (issue 19)
@pytest.mark.parametrize("call, name", [
    (lambda: S.product_exact(0.3, math.nan, 3), "y"),
    (lambda: S.shallow_pl_net([0.0, math.nan, 1.0], [0.0, 1.0, 0.0]), "knots[1]"),
    (lambda: S.shallow_pl_net([0.0, 0.5, 1.0], [0.0, math.nan, 0.0]), "values[1]"),
    (lambda: S.dyadic_net_exact(S.sawtooth_net(2), [0.25, math.nan]), "points[1]"),
])
def test_exact_functions_name_the_non_finite_argument(call, name) -> None:
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value).startswith(name), str(info.value)
