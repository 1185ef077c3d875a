"""Regression tests for bad input found by a probe of the public API (issue "A library that
refuses bad input"): each call raises a clear error naming the argument, quickly, or returns
the documented value; nothing hangs, allocates without bound, or returns a finite number for
a non-finite input."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from lib import data, fp, nets
from lib import sawtooth as st
from lib.exact import check_count


@pytest.mark.parametrize("call, match", [
    (lambda: st.sawtooth_net(10**7), "depth"),
    (lambda: st.yarotsky_square_net(10**6), "m"),
    (lambda: st.shallow_sawtooth_net(40), "depth"),
    (lambda: st.sawtooth(0.3, 10**7), "depth"),
    (lambda: nets.tent_net(10**6, 0.3), "depth"),
    (lambda: data.quadrature(10**10), "panels"),
    (lambda: data.quadrature(10**6, order=50), "order"),
])
def test_size_guards_refuse_before_any_work(call, match) -> None:
    start = time.perf_counter()
    with pytest.raises(ValueError, match=match):
        call()
    assert time.perf_counter() - start < 1.0


def test_check_count_maximum_names_the_argument() -> None:
    assert check_count(np.int64(5), "k", maximum=5) == 5
    with pytest.raises(ValueError, match="k must be at most 4"):
        check_count(5, "k", maximum=4)


def test_ulp_of_non_finite_is_non_finite() -> None:
    assert math.isnan(fp.ulp(float("nan"), torch.float16))
    assert fp.ulp(float("inf"), torch.float16) == math.inf
    assert fp.ulp(-math.inf, torch.bfloat16) == math.inf
    out = fp.ulp(np.array([1.0, np.nan, -np.inf]), torch.float32)
    assert out[0] == 2.0**-23 and math.isnan(out[1]) and out[2] == math.inf


@pytest.mark.parametrize("bad", [None, "1.5", b"1", [1.0, None], ["0.5"]])
def test_round_to_format_refuses_non_numbers(bad) -> None:
    with pytest.raises(TypeError, match="x must be numbers"):
        fp.round_to_format(bad, torch.float16)


@pytest.mark.parametrize("bad", ["12", [1, "2"], [True, False], [1.0, 2.0]])
def test_digits_refuses_classes_that_are_not_ints(bad) -> None:
    with pytest.raises(TypeError, match="classes"):
        data.digits(20, classes=bad)
