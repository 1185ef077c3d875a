"""Tests of lib.exact: exact conversions, dyadic numbers, the formats, checks, reading a net."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as hs
from torch import nn

from lib import exact as E

finite_floats = hs.floats(allow_nan=False, allow_infinity=False)
dyadics = hs.builds(lambda m, k: Fraction(m, 2**k), hs.integers(-2**70, 2**70), hs.integers(0, 80))


def test_to_fraction_is_exact_and_strict() -> None:
    assert E.to_fraction(0.1) == Fraction(3602879701896397, 2**55)
    assert E.to_fraction(np.float32(0.1)) == Fraction(float(np.float32(0.1)))
    assert E.to_fraction(3) == 3 and E.to_fraction(np.int64(-2)) == -2
    assert E.to_fraction(torch.tensor(0.25)) == Fraction(1, 4)
    assert E.to_fraction(torch.tensor([0.5])) == Fraction(1, 2)
    for bad, err in ((True, TypeError), ("0.5", TypeError), (None, TypeError),
                     (torch.zeros(2), TypeError), (math.nan, ValueError), (math.inf, ValueError)):
        with pytest.raises(err, match="lo"):
            E.to_fraction(bad, "lo")


@given(finite_floats)
def test_to_fraction_round_trips_every_float(x: float) -> None:
    q = E.to_fraction(x)
    assert float(q) == x and E.dyadic_parts(q) is not None


@given(dyadics)
def test_dyadic_parts_recover_the_number(q: Fraction) -> None:
    m, k = E.dyadic_parts(q)
    assert Fraction(m, 2**k) == q and (k == 0 or m % 2 == 1)


@given(hs.fractions(max_denominator=10**6))
def test_dyadic_parts_is_none_exactly_off_the_dyadics(q: Fraction) -> None:
    d = q.denominator
    assert (E.dyadic_parts(q) is None) == (d & (d - 1) != 0)


@given(hs.lists(hs.one_of(dyadics, finite_floats, hs.integers(-10**30, 10**30)), max_size=12))
def test_dyadic_integers_share_one_scale(values) -> None:
    ints, k = E.dyadic_integers(values)
    assert k >= 0 and len(ints) == len(values)
    assert [Fraction(n, 2**k) for n in ints] == [E.to_fraction(v) for v in values]
    # the smallest such exponent: some value needs it (or k = 0)
    assert k == 0 or any(n % 2 for n in ints)


def test_fractions_of_numpy_integers() -> None:
    q = Fraction(np.int64(3), 2 ** np.int64(5))  # keeps NumPy integers as its parts
    assert E.dyadic_parts(q) == (3, 5) and E.dyadic_integers([q, 0.5]) == ([3, 16], 5)


def test_dyadic_integers_rejects_other_rationals() -> None:
    with pytest.raises(ValueError, match="dyadic"):
        E.dyadic_integers([Fraction(1, 3)])


def test_formats_are_written_once() -> None:
    assert E.FLOAT_DTYPES == (torch.float16, torch.bfloat16, torch.float32, torch.float64)
    assert list(E.FORMAT_NAMES) == ["float16", "bfloat16", "float32", "float64"]
    for name, dtype in E.FORMAT_NAMES.items():
        assert E.check_dtype(name) is dtype and E.check_dtype(dtype) is dtype
    for bad in (torch.int32, "float8", None, np.float32):
        with pytest.raises((TypeError, ValueError), match="precision"):
            E.check_dtype(bad, "precision")
    with pytest.raises(E.InvalidArgumentError, match="dtype"):
        E.check_dtype("float32", names=False)


def test_count_positive_interval_and_knot_checks() -> None:
    assert E.check_count(np.int64(3), "n") == 3 and E.check_count(0, "n", 0) == 0
    for bad in (2.5, True, "3", None):
        with pytest.raises(E.InvalidArgumentError, match="n must be an integer"):
            E.check_count(bad, "n")
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        E.check_count(0, "n")
    assert E.check_positive(np.float32(0.5), "eta") == 0.5
    for bad in (0.0, -1.0, math.nan, math.inf, True, "x"):
        with pytest.raises(ValueError, match="eta"):
            E.check_positive(bad, "eta")
    assert E.check_interval((0, 2)) == (0.0, 2.0)
    assert E.check_interval((Fraction(1, 3), 1), exact=True) == (Fraction(1, 3), 1)
    for bad, err, match in (((1.0, 1.0), ValueError, "empty"), ((1.0, 0.0), ValueError, "reversed"),
                            ((0.0, math.inf), ValueError, "span must be finite"),
                            (3, TypeError, "span must be a pair"), ((True, 1.0), TypeError, "span")):
        with pytest.raises(err, match=match):
            E.check_interval(bad, "span")
    np.testing.assert_array_equal(E.check_knots([0, 0.5, 1]), [0, 0.5, 1])
    assert E.check_knots([0, Fraction(1, 3)], exact=True) == (0, Fraction(1, 3))
    for bad in ([0], [0, 0], [1, 0], [0, math.nan]):
        with pytest.raises(ValueError, match="knots must be at least two"):
            E.check_knots(bad)


def test_linear_relu_layers() -> None:
    net = nn.Sequential(nn.Linear(1, 3), nn.ReLU(), nn.Linear(3, 1))
    assert E.linear_relu_layers(net, scalar_io=True) == list(net)
    relu_first = nn.Sequential(nn.ReLU(), nn.Linear(1, 1))
    assert len(E.linear_relu_layers(relu_first, scalar_io=True, linear_ends=False)) == 2
    cases = [(nn.Linear(1, 1), TypeError, "Sequential", {}),
             (nn.Sequential(nn.Linear(1, 2), nn.Tanh(), nn.Linear(2, 1)), TypeError,
              "only nn.Linear and nn.ReLU", {}),
             (relu_first, ValueError, "start and end", {}),
             (nn.Sequential(nn.Linear(2, 1)), ValueError, "scalar input", {"scalar_io": True}),
             (nn.Sequential(nn.Linear(1, 2)), ValueError, "scalar output", {"scalar_io": True}),
             (nn.Sequential(nn.Linear(1, 3), nn.Linear(2, 1)), ValueError, "expects",
              {"scalar_io": True})]
    for bad, err, match, kw in cases:
        with pytest.raises(err, match=match):
            E.linear_relu_layers(bad, **kw)


@pytest.mark.parametrize("dtype", E.FLOAT_DTYPES)
def test_exact_weights_read_every_format(dtype) -> None:
    lin = nn.Linear(2, 3, dtype=dtype)
    net = nn.Sequential(lin, nn.ReLU(), nn.Linear(3, 1, bias=False, dtype=dtype))
    layers = E.exact_weights(list(net))
    assert layers[1] is None and layers[2][1] == [0]
    w, b = layers[0]
    assert [[Fraction(float(v)) for v in row] for row in lin.weight.detach().double()] == w
    assert [Fraction(float(v)) for v in lin.bias.detach().double()] == b
    with torch.no_grad():
        lin.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"net\[0\] has non-finite"):
        E.exact_weights(list(net))


# ------------------------------------------------------------------ exact signs of float expressions
finite = hs.floats(allow_nan=False, allow_infinity=False, width=64).filter(lambda v: abs(v) < 1e150)


@settings(max_examples=300, deadline=None)
@given(finite, finite, finite, finite)
def test_exact_sign_predicate(a: float, b: float, c: float, d: float) -> None:
    exact = Fraction(a) * Fraction(b) + Fraction(c) * Fraction(d)
    got = E.sign_of_products(*(np.array([v]) for v in (a, b, c, d)))[0]
    assert got == (exact > 0) - (exact < 0)
    # the cancelling case c d = -a b exactly
    got0 = E.sign_of_products(*(np.array([v]) for v in (a, b, -a, b)))[0]
    assert got0 == 0


@settings(max_examples=200, deadline=None)
@given(hs.integers(-2**52, 2**52), hs.integers(-2**52, 2**52), hs.integers(-2**52, 2**52),
       hs.integers(-60, 60))
def test_exact_sign_predicate_near_cancellation(p: int, q: int, r: int, k: int) -> None:
    # a b + c d with a b and c d agreeing to about 100 bits
    a, b = float(p) * 2.0**k, float(q)
    c, d = -a, b + float(r) * 2.0**-60 if b else 1.0
    exact = Fraction(a) * Fraction(b) + Fraction(c) * Fraction(d)
    got = E.sign_of_products(*(np.array([v]) for v in (a, b, c, d)))[0]
    assert got == (exact > 0) - (exact < 0)


# --------------------------------------------------------------------------- issue 19 regressions
def test_check_count_without_a_minimum_still_refuses_bools() -> None:
    assert E.check_count(-5, "a", minimum=None) == -5
    assert E.check_count(torch.tensor(-3), "a", minimum=None) == -3
    with pytest.raises(E.InvalidArgumentError, match=r"a must be an integer, got True"):
        E.check_count(True, "a", minimum=None)


def test_linear_arrays_checks_index_and_layer() -> None:
    lin = nn.Linear(2, 1)
    w, b = E.linear_arrays(lin, np.int64(3))
    assert w.shape == (1, 2) and b.shape == (1,)
    with pytest.raises(TypeError, match="index"):
        E.linear_arrays(lin, True)
    with pytest.raises(ValueError, match="index"):
        E.linear_arrays(lin, -1)
    with pytest.raises(TypeError, match="layer must be an nn.Linear"):
        E.linear_arrays(nn.ReLU())


def test_sign_of_products_converts_array_likes_and_refuses_bad_operands() -> None:
    """Reference: the sign of the exact Fraction value of a*b + c*d."""
    a, b, c, d = [0.1, -3.0], [0.2, 2.0], [0.3, 1.5], [-0.0666, 4.0]
    want = [int(np.sign(Fraction(p) * Fraction(q) + Fraction(r) * Fraction(s)))
            for p, q, r, s in zip(a, b, c, d)]
    assert E.sign_of_products(*(np.array(v) for v in (a, b, c, d))).tolist() == want
    assert E.sign_of_products(*(torch.tensor(v, dtype=torch.float64) for v in (a, b, c, d))).tolist() == want
    assert E.sign_of_products(a, b, c, d).tolist() == want
    with pytest.raises(ValueError, match="d must be a 1-D array"):
        E.sign_of_products(np.array([1.0]), np.array([1.0]), np.array([1.0]), -1424)
    with pytest.raises(ValueError, match="one shape"):
        E.sign_of_products(np.ones(2), np.ones(2), np.ones(2), np.ones(3))
    with pytest.raises(ValueError, match="c must be finite"):
        E.sign_of_products(np.ones(1), np.ones(1), np.array([math.nan]), np.ones(1))
    with pytest.raises(TypeError, match="b must be real numbers"):
        E.sign_of_products(np.ones(1), np.array([True]), np.ones(1), np.ones(1))
