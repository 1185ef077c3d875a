"""The one argument-checking layer (``lib.exact.check_count``, ``check_real`` and the helpers
built on it): what it accepts, what it refuses, and that every refusal names the argument.

The reference for an accepted value is Python's own ``int(value)``/``float(value)`` (and a
brute-force evaluation of the bounds), independent of the layer's code path.
"""

from __future__ import annotations

import math
import time
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as hs

from lib import exact as E

names = hs.from_regex(r"[a-z][a-z_]{0,10}", fullmatch=True)
int64s = hs.integers(-2**63, 2**63 - 1)
finite = hs.floats(allow_nan=False, allow_infinity=False)

bools = hs.sampled_from([True, False, np.True_, np.False_, torch.tensor(True),
                         np.array(True)])
non_numbers = hs.one_of(hs.none(), hs.text(max_size=5), hs.binary(max_size=3),
                        hs.complex_numbers(), hs.lists(hs.integers(), max_size=3),
                        hs.just(torch.zeros(2)), hs.just(np.ones((1,))),
                        hs.just(torch.tensor(1 + 2j)), hs.just(object()))

integers = hs.one_of(
    hs.integers(),
    int64s.map(np.int64),
    hs.integers(-128, 127).map(np.int8),
    hs.integers(0, 2**64 - 1).map(np.uint64),
    int64s.map(lambda v: torch.tensor(v, dtype=torch.int64)),
    hs.integers(-2**31, 2**31 - 1).map(lambda v: torch.tensor(v, dtype=torch.int32)),
    int64s.map(np.array),
)
reals = hs.one_of(
    integers.filter(lambda v: abs(int(v)) < 2**1000),   # float(v) exists
    finite,
    finite.map(np.float64),
    hs.floats(width=32, allow_nan=False, allow_infinity=False).map(np.float32),
    hs.floats(width=16, allow_nan=False, allow_infinity=False).map(np.float16),
    hs.floats(width=32, allow_nan=False, allow_infinity=False).map(torch.tensor),
    finite.map(lambda v: torch.tensor(v, dtype=torch.float64)),
    hs.floats(width=16, allow_nan=False, allow_infinity=False).map(
        lambda v: torch.tensor(v, dtype=torch.float16)),
    finite.map(np.array),
    hs.fractions(min_value=-10**300, max_value=10**300, max_denominator=10**30),
)


def _reference_float(value) -> float:
    """``float(value)`` computed without the layer (0-d tensors and arrays by ``float``)."""
    return float(value)


# --------------------------------------------------------------------------- integers
@given(integers, names)
def test_check_count_accepts_every_integer_kind_as_the_same_int(value, name) -> None:
    assert E.check_count(value, name, minimum=None) == int(value)
    assert type(E.check_count(value, name, minimum=None)) is int


@given(hs.one_of(bools, non_numbers, finite, hs.fractions(),
                 finite.map(torch.tensor), hs.just(3.0), hs.just(np.float64(2.0))), names)
def test_check_count_refuses_bools_non_numbers_and_non_integers(value, name) -> None:
    with pytest.raises(E.InvalidArgumentError, match=f"{name} must be an integer"):
        E.check_count(value, name, minimum=None)


@given(hs.integers(-10**6, 10**6), hs.integers(-100, 100), hs.integers(0, 200), names)
def test_check_count_range_agrees_with_brute_force(value, minimum, span, name) -> None:
    maximum = minimum + span
    if minimum <= value <= maximum:
        assert E.check_count(value, name, minimum=minimum, maximum=maximum) == value
    else:
        with pytest.raises(ValueError, match=name) as info:
            E.check_count(value, name, minimum=minimum, maximum=maximum)
        assert not isinstance(info.value, TypeError)  # a range error, not a kind error
        assert str(value) in str(info.value)


def test_check_count_messages_name_the_argument_and_value() -> None:
    with pytest.raises(TypeError, match=r"depth must be an integer >= 1, got True of type bool"):
        E.check_count(True, "depth")
    with pytest.raises(TypeError, match=r"depth .* got '3' of type str"):
        E.check_count("3", "depth")
    with pytest.raises(TypeError, match=r"got 3\.0 of type float"):
        E.check_count(3.0, "depth")
    with pytest.raises(TypeError, match=r"got a tensor of shape \(2,\)"):
        E.check_count(torch.tensor([1, 2]), "depth")
    with pytest.raises(TypeError, match=r"bool"):
        E.check_count(torch.tensor(True), "depth")
    with pytest.raises(ValueError, match=r"depth must be at most 64 \(a size guard\), got 65"):
        E.check_count(torch.tensor(65), "depth", maximum=64)
    long_text = "x" * 1000
    with pytest.raises(TypeError) as info:
        E.check_count(long_text, "n")
    assert len(str(info.value)) < 150  # a long value is shortened in the message


def test_check_seed_range() -> None:
    assert E.check_seed(np.int64(7)) == 7 and E.check_seed(torch.tensor(0)) == 0
    assert E.check_seed(2**63 - 1) == 2**63 - 1
    for bad, err in ((-1, ValueError), (2**63, ValueError), (True, TypeError), (1.0, TypeError)):
        with pytest.raises(err, match="seed"):
            E.check_seed(bad)


# --------------------------------------------------------------------------- reals
@given(reals, names)
def test_check_real_returns_float_of_every_real_kind(value, name) -> None:
    out = E.check_real(value, name)
    assert type(out) is float and out == _reference_float(value)


@given(hs.one_of(bools, non_numbers), names)
def test_check_real_refuses_bools_and_non_numbers_naming_the_argument(value, name) -> None:
    with pytest.raises(E.InvalidArgumentError, match=f"{name} must be a finite number"):
        E.check_real(value, name)
    with pytest.raises(E.InvalidArgumentError, match=f"{name} must be a positive finite"):
        E.check_positive(value, name)


non_finite = hs.sampled_from([math.nan, math.inf, -math.inf, np.float32(np.nan),
                              np.float16(np.inf), torch.tensor(math.nan),
                              torch.tensor(-math.inf, dtype=torch.float64), 10**400,
                              Fraction(10**400), -(10**400)])


@given(non_finite, names)
def test_check_real_refuses_non_finite_values(value, name) -> None:
    with pytest.raises(ValueError, match=name):
        E.check_real(value, name)
    with pytest.raises(ValueError, match=name):
        E.check_positive(value, name)


@given(hs.one_of(hs.floats(max_value=0.0, allow_nan=False, allow_infinity=False),
                 hs.integers(max_value=0), hs.fractions(max_value=0)), names)
def test_check_positive_refuses_zero_and_negatives(value, name) -> None:
    with pytest.raises(ValueError, match=f"{name} must be a positive finite number"):
        E.check_positive(value, name)


@given(reals.filter(lambda v: float(v) > 0), names)
def test_check_positive_accepts_positive_reals(value, name) -> None:
    assert E.check_positive(value, name) == _reference_float(value)


bounds = hs.one_of(hs.none(), hs.integers(-5, 5), hs.floats(-5, 5))


@given(hs.floats(-10, 10), bounds, bounds, bounds, bounds)
def test_check_real_bounds_agree_with_brute_force(value, gt, ge, lt, le) -> None:
    ok = ((gt is None or value > gt) and (ge is None or value >= ge)
          and (lt is None or value < lt) and (le is None or value <= le))
    if ok:
        assert E.check_real(value, "v", gt=gt, ge=ge, lt=lt, le=le) == value
    else:
        with pytest.raises(ValueError, match=r"v must be a (positive |non-negative )?finite "
                                             rf"number.*, got {value!r}$"):
            E.check_real(value, "v", gt=gt, ge=ge, lt=lt, le=le)


def test_check_real_infinities_and_nan_when_admitted() -> None:
    assert E.check_real(math.inf, "t", finite=False) == math.inf
    assert E.check_real(-(10**400), "t", finite=False) == -math.inf
    with pytest.raises(ValueError, match="t must be a positive real number, got -inf"):
        E.check_real(-math.inf, "t", gt=0, finite=False)
    assert math.isnan(E.check_real(math.nan, "t", nan=True))
    assert math.isnan(E.check_real(torch.tensor(math.nan), "t", nan=True, gt=0))
    with pytest.raises(ValueError, match="t must be a real number, got nan"):
        E.check_real(math.nan, "t", finite=False)


def test_check_real_messages_state_the_range() -> None:
    with pytest.raises(ValueError, match=r"p must be a finite number in \[0, 1\], got 1\.5"):
        E.check_probability(1.5, "p")
    with pytest.raises(ValueError, match=r"a must be a finite number in \(0, 1\), got 1\.0"):
        E.check_probability(1, "a", open_ends=True)
    with pytest.raises(ValueError, match=r"c must be a non-negative finite number, got -1\.0"):
        E.check_real(-1, "c", ge=0)
    with pytest.raises(ValueError, match=r"c must be a finite number < 2, got 3\.0"):
        E.check_real(3, "c", lt=2)
    with pytest.raises(TypeError, match=r"eta must be a positive finite number, got a tensor "
                                        r"of shape \(3,\)"):
        E.check_positive(torch.ones(3), "eta")
    assert E.check_probability(np.float32(0.25), "p") == 0.25
    assert E.check_probability(Fraction(1, 3), "p") == 1 / 3


def test_check_positive_takes_what_hessian_returns() -> None:
    """Issue 19: a 0-d tensor (like ``top_eigenvalues(...)[0]``) and a Fraction were refused."""
    eig = torch.linalg.eigvalsh(torch.tensor([[2.0, 0.0], [0.0, 5.0]], dtype=torch.float64))
    assert E.check_positive(eig[-1], "top_eigenvalue") == 5.0
    assert E.check_positive(Fraction(1, 4), "eta") == 0.25
    assert E.check_positive(np.array(0.5), "eta") == 0.5
    assert E.check_positive(torch.tensor(2.0, requires_grad=True) * 1, "eta") == 2.0


def test_checks_are_quick_on_huge_values() -> None:
    start = time.perf_counter()
    with pytest.raises(ValueError, match="n"):
        E.check_count(10**10000, "n", maximum=10)
    with pytest.raises(ValueError, match="x"):
        E.check_real(Fraction(10**5000, 3), "x")
    assert time.perf_counter() - start < 0.5


@settings(max_examples=50)
@given(hs.lists(hs.one_of(integers, bools, finite), max_size=4))
def test_check_widths_uses_the_integer_rules(widths) -> None:
    def ok(w) -> bool:
        return (not isinstance(w, (bool, np.bool_, float)) and not
                (isinstance(w, (torch.Tensor, np.ndarray)) and w.dtype in (torch.bool, bool))
                and int(w) >= 0)
    if all(ok(w) for w in widths):
        assert E.check_widths(widths) == [int(w) for w in widths]
    else:
        bad = next(i for i, w in enumerate(widths) if not ok(w))
        with pytest.raises(ValueError, match=rf"widths\[{bad}\]"):
            E.check_widths(widths)
