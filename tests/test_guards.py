"""Regression tests for bad input found by a probe of the public API (issue "A library that
refuses bad input"): each call raises a clear error naming the argument, quickly, or returns
the documented value; nothing hangs, allocates without bound, or returns a finite number for
a non-finite input."""

from __future__ import annotations

import math
import time
from fractions import Fraction

import numpy as np
import pytest
import torch

from lib import data, fp, fpstudy, lowprec, nets
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


# ------------------------------------------------------------------ fpstudy and lowprec (issue 19)
def _sawtooth_data(depth: int = 2, n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.linspace(0, 1, n, dtype=torch.float64).reshape(-1, 1)
    return x, st.sawtooth(x, depth)


def test_fpstudy_levels_refuse_bools_none_and_nan_but_take_every_real_kind() -> None:
    """Reference for the accepted kinds: the same call with Python floats."""
    x, y = _sawtooth_data()
    net = st.sawtooth_net(2)
    want = fpstudy.perturbed_mse(net, x, y, [0.0, 1e-2], 2)
    for levels in (np.array([0.0, 1e-2]), torch.tensor([0.0, 1e-2], dtype=torch.float64),
                   [Fraction(0), np.float64(1e-2)]):
        assert fpstudy.perturbed_mse(net, x, y, levels, np.int64(2)).tolist() == want.tolist()
    for bad, match in (([0.0, True], r"levels\[1\]"), ([None], r"levels\[0\]"),
                       ([math.nan], r"levels\[0\]"), ("0.1", r"levels\[0\]"), ([], "non-empty"),
                       ([-1.0], r"levels\[0\] must be a non-negative")):
        with pytest.raises((TypeError, ValueError), match=match):
            fpstudy.perturbed_mse(net, x, y, bad, 1)
    with pytest.raises(ValueError, match="seeds must be at most"):
        fpstudy.perturbed_mse(net, x, y, [0.0], 10**9)


def test_fpstudy_scalars_take_every_kind_and_refuse_bools() -> None:
    """Reference: representable_step's closed form 2^floor(log2(1/lam)) at the Python float."""
    for lam in (3.0, np.float32(3.0), torch.tensor(3.0), Fraction(3)):
        assert fpstudy.representable_step(lam) == 0.25
    for bad in (True, math.nan, -1.0, "3"):
        with pytest.raises(ValueError, match="lam"):
            fpstudy.representable_step(bad)
    x, y = _sawtooth_data()
    net = st.sawtooth_net(2)
    assert torch.equal(fpstudy.bias_updates(net, x, y, torch.tensor(4.0)),
                       fpstudy.bias_updates(net, x, y, 4.0))
    with pytest.raises(TypeError, match="lam"):
        fpstudy.bias_updates(net, x, y, True)
    with pytest.raises(TypeError, match="eps"):
        fpstudy.perturbed_start(net, True, torch.float32)


def test_gd_near_takes_a_fraction_eps() -> None:
    """It used to fail formatting the progress label (``f"{eps:g}"`` of a Fraction)."""
    x, y = _sawtooth_data()
    net = st.sawtooth_net(2)
    a = fpstudy.gd_near(net, x, y, Fraction(1, 1000), torch.float32, 0.01, steps=1,
                        record_every=1, min_width=0.01)
    b = fpstudy.gd_near(net, x, y, 0.001, torch.float32, 0.01, steps=1, record_every=1,
                        min_width=0.01)
    assert a.history["loss"].tolist() == b.history["loss"].tolist()


def test_mean_reciprocal_update_keeps_nan() -> None:
    """A NaN update is not a zero update: the row's mean is NaN, not the mean of the others.
    Reference: the mean of 1/|Delta| over the non-zero entries, by hand."""
    out = fpstudy.mean_reciprocal_update(np.array([[0.2, 0.0, 0.5], [0.2, np.nan, 0.5],
                                                   [0.0, 0.0, 0.0]]))
    assert out[0] == pytest.approx((5 + 2) / 2) and math.isnan(out[1]) and out[2] == math.inf


def test_step_bound_and_noise_counts_check_s_and_seed() -> None:
    x, y = _sawtooth_data()
    net = st.sawtooth_net(2)
    update = [torch.zeros_like(p) for p in net.parameters()]
    grid = torch.linspace(0, 1, 9, dtype=torch.float64).reshape(-1, 1)
    for s, match in ((True, "s"), (math.nan, "s"), (1.5, "s")):
        with pytest.raises(ValueError, match=match):
            fpstudy.step_bound(net, update, s, grid)
    with pytest.raises(ValueError, match="seed"):
        fpstudy.step_bound(net, update, 0.5, grid, seed=-1)
    with pytest.raises(TypeError, match="seed"):
        fpstudy.noise_scale_counts(net, update, [0.5], 1, seed=True)
    assert fpstudy.step_bound(net, update, np.float64(0.5), grid, seed=np.int64(0)) == \
        fpstudy.step_bound(net, update, 0.5, grid, seed=0)


def test_step_counts_are_guarded_before_any_work() -> None:
    x, y = _sawtooth_data()
    start = time.perf_counter()
    with pytest.raises(ValueError, match="steps must be at most"):
        fpstudy.gd_stacked([st.sawtooth_net(1)], x, y, [0.5], steps=10**9, dtype=torch.float64,
                           record_every=1)
    with pytest.raises(ValueError, match="steps must be at most"):
        fpstudy.he_precision_grid([2], [3], 1, x, y, [torch.float64], steps=10**9,
                                  record_every=1, grid=x)
    with pytest.raises(ValueError, match="depth must be at most"):
        lowprec.train_in_format(st.sawtooth_net(1), x, y, "float64", lr=0.1, steps=1, depth=10**9)
    with pytest.raises(ValueError, match="steps must be at most"):
        lowprec.train_in_format(st.sawtooth_net(1), x, y, "float64", lr=0.1, steps=10**9, depth=1)
    assert time.perf_counter() - start < 2.0


def test_train_in_format_refuses_bools_and_takes_a_tensor_step() -> None:
    """Reference: the same run with the Python float step."""
    x, y = _sawtooth_data()
    net = st.sawtooth_net(2)
    a = lowprec.train_in_format(net, x, y, "float32", lr=torch.tensor(0.05), steps=2, depth=2)
    b = lowprec.train_in_format(net, x, y, "float32", lr=0.05, steps=2, depth=2)
    assert a.history["loss"].tolist() == b.history["loss"].tolist()
    for kwargs, match in (({"lr": True}, "lr"), ({"lr": 0.1, "square": 1}, "square"),
                          ({"lr": 0.1, "depth": True}, "depth"), ({"lr": 0.1, "steps": True}, "steps")):
        kwargs = {"steps": 1, "depth": 2, **kwargs}
        with pytest.raises((TypeError, ValueError), match=match):
            lowprec.train_in_format(net, x, y, "float64", **kwargs)
