"""Tests of lib.fp: formats, rounding, ulps, and the exact / mpmath references."""

import math
import random
from fractions import Fraction

import mpmath
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as hs
from torch import nn

from lib import fp, pieces
from lib import sawtooth as st

ALL = fp.SUPPORTED_DTYPES
NARROW = (torch.float16, torch.bfloat16, torch.float32)


# ------------------------------------------------------------------ independent helpers
def _random_net(widths, seed, dtype=torch.float64):
    torch.manual_seed(seed)
    layers = []
    for a, b in zip([1] + widths, widths):
        layers += [nn.Linear(a, b), nn.ReLU()]
    layers.append(nn.Linear(widths[-1], 1))
    return nn.Sequential(*layers).to(dtype)


def _slow_backprop(net, x, at_zero=Fraction(0)):
    """Textbook per-point backprop in Fractions of d N(x) / d theta (independent of lib.fp)."""
    layers = list(net)
    params = []
    for layer in layers:
        if isinstance(layer, nn.Linear):
            w = [[Fraction(v) for v in row] for row in layer.weight.detach().double().tolist()]
            b = [Fraction(v) for v in layer.bias.detach().double().tolist()]
            params.append((w, b))
        else:
            params.append(None)
    acts, zs = [[Fraction(x)]], []
    h = acts[0]
    for item in params:
        if item is None:
            zs.append(h)
            h = [v if v > 0 else Fraction(0) for v in h]
        else:
            w, b = item
            h = [sum((wi * hi for wi, hi in zip(row, h)), bb) for row, bb in zip(w, b)]
        acts.append(h)
    value = h[0]
    grads = []
    delta = [Fraction(1)]
    zi = len(zs) - 1
    for k in range(len(params) - 1, -1, -1):
        item = params[k]
        if item is None:
            z = zs[zi]
            zi -= 1
            delta = [d * (1 if v > 0 else (at_zero if v == 0 else 0)) for d, v in zip(delta, z)]
        else:
            w, b = item
            inp = acts[k]
            gw = [[d * a for a in inp] for d in delta]
            grads.append([v for row in gw for v in row] + list(delta))
            delta = [sum((w[i][j] * delta[i] for i in range(len(delta))), Fraction(0))
                     for j in range(len(inp))]
    flat = [v for g in reversed(grads) for v in g]
    return value, flat


def _rand_dyadics(n, bits, seed):
    rng = random.Random(seed)
    return [Fraction(rng.getrandbits(bits), 2**bits) for _ in range(n)]


# ------------------------------------------------------------------ formats
@pytest.mark.parametrize("dtype", ALL)
def test_format_constants_match_torch_finfo(dtype) -> None:
    f = fp.float_format(dtype)
    info = torch.finfo(dtype)
    assert f.bits == info.bits
    assert f.eps == info.eps == 2 * f.unit_roundoff
    assert f.smallest_normal == info.tiny == info.smallest_normal
    assert f.largest == info.max and -f.largest == info.min
    assert f.smallest_subnormal == info.tiny * info.eps
    assert fp.machine_epsilon(dtype) == info.eps
    assert fp.float_format(fp.format_name(dtype)) == f


def test_unit_roundoffs_are_the_ieee_values() -> None:
    assert [fp.unit_roundoff(d) for d in ALL] == [2.0**-11, 2.0**-8, 2.0**-24, 2.0**-53]
    assert [fp.float_format(d).precision for d in ALL] == [11, 8, 24, 53]
    rows = fp.formats_table()
    assert [r["format"] for r in rows] == ["float16", "bfloat16", "float32", "float64"]


@pytest.mark.parametrize("bad", [torch.int32, torch.complex64, "float8", None, 16, np.float32])
def test_bad_dtype_raises(bad) -> None:
    for fn in (fp.float_format, fp.unit_roundoff, lambda d: fp.round_exact(1.0, d),
               lambda d: fp.round_to_format(torch.ones(2, dtype=torch.float64), d),
               lambda d: fp.ulp(1.0, d), lambda d: fp.to_format(st.sawtooth_net(2), d),
               lambda d: fp.evaluate(st.sawtooth_net(2), [0.3], d, objective="mean_output")):
        with pytest.raises((TypeError, ValueError), match="dtype"):
            fn(bad)


# ------------------------------------------------------------------ rounding
_floats = hs.floats(min_value=-6e4, max_value=6e4, allow_nan=False, allow_infinity=False)


@given(_floats)
def test_round_exact_is_ieee_rounding(x: float) -> None:
    # float64 -> float32 in torch and float64 -> float16 in NumPy are single, correct roundings.
    assert fp.round_exact(x, torch.float32) == Fraction(float(torch.tensor(x, dtype=torch.float64).float()))
    assert fp.round_exact(x, torch.float16) == Fraction(float(np.float16(x)))
    assert fp.round_exact(x, torch.float64) == Fraction(x)


@given(hs.lists(_floats | hs.floats(min_value=-1e-6, max_value=1e-6), min_size=1, max_size=20))
def test_round_to_format_agrees_with_round_exact(values) -> None:
    t = torch.tensor(values, dtype=torch.float64)
    for dtype in ALL:
        out = fp.round_to_format(t, dtype)
        assert out.dtype == dtype
        assert [Fraction(v) for v in out.double().tolist()] == [fp.round_exact(v, dtype) for v in values]


def test_round_to_format_keeps_lists_in_float64() -> None:
    assert fp.round_to_format([0.1, 1 / 3], torch.float64).tolist() == [0.1, 1 / 3]
    assert fp.round_to_format([Fraction(1, 3)], torch.float32).item() == float(
        fp.round_exact(Fraction(1, 3), torch.float32))


def test_ties_subnormals_and_overflow() -> None:
    h = torch.float16
    assert fp.round_exact(1 + Fraction(1, 2**11), h) == 1            # tie to even (down)
    assert fp.round_exact(1 + Fraction(3, 2**11), h) == 1 + Fraction(2, 2**10)  # tie to even (up)
    assert fp.round_exact(Fraction(3, 2**25), h) == Fraction(2, 2**24)  # subnormal tie (up)
    assert fp.round_exact(Fraction(1, 2**25), h) == 0                   # subnormal tie (down)
    assert fp.round_exact(Fraction(3, 2**26), h) == Fraction(1, 2**24)
    assert fp.round_exact(65519, h) == 65504
    with pytest.raises(OverflowError):
        fp.round_exact(65520, h)                                        # the IEEE overflow tie
    out = fp.round_to_format(torch.tensor([65519.0, 65520.0, -1e6, math.inf]), h)
    assert out.tolist() == [65504.0, math.inf, -math.inf, math.inf]


def test_torch_double_rounding_is_avoided() -> None:
    # 1 + 2^-11 + 2^-40 lies just above a float16 tie: correct rounding goes up, torch's
    # float64 -> float32 -> float16 path rounds to the tie first and then to even (down).
    x = torch.tensor([1 + 2**-11 + 2**-40, 1 + 2**-8 + 2**-40], dtype=torch.float64)
    assert fp.round_to_format(x, torch.float16)[0].item() == 1 + 2**-10
    assert fp.round_to_format(x, torch.bfloat16)[1].item() == 1 + 2**-7
    assert x.to(torch.float16)[0].item() == 1.0 and x.to(torch.bfloat16)[1].item() == 1.0
    net = nn.Sequential(nn.Linear(1, 1, dtype=torch.float64))
    with torch.no_grad():
        net[0].weight.fill_(1 + 2**-11 + 2**-40)
    assert fp.to_format(net, torch.float16)[0].weight.item() == 1 + 2**-10


@pytest.mark.parametrize("dtype", NARROW)
def test_ulp_is_the_spacing_of_the_format(dtype) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.cat([torch.rand(200, generator=gen, dtype=torch.float64) * 100,
                   torch.tensor([1.0, 2.0, 0.5, 6e-5, 1e-30], dtype=torch.float64)])
    xr = fp.round_to_format(x, dtype)
    keep = xr != 0
    up = torch.nextafter(xr, torch.full_like(xr, math.inf))
    spacing = (up.double() - xr.double())[keep].numpy()
    assert np.array_equal(fp.ulp(xr.double()[keep], dtype), spacing)
    assert fp.ulp(1.0, dtype) == torch.finfo(dtype).eps
    assert fp.ulp(0.0, dtype) == fp.float_format(dtype).smallest_subnormal


def test_error_measures() -> None:
    assert fp.ulp_error([1 + 2.0**-9], [1.0], torch.float16).tolist() == [2.0]
    assert fp.ulp_error([Fraction(1, 3)], [Fraction(1, 3)], torch.float32).tolist() == [0.0]
    rel = fp.relative_error([1.5, 0.0, 1.0], [1.0, 0.0, 0.0])
    assert rel.tolist() == [0.5, 0.0, math.inf]
    with pytest.raises(ValueError, match="same length"):
        fp.relative_error([1.0], [1.0, 2.0])


# ------------------------------------------------------------------ the reference
@pytest.mark.parametrize("seed", range(6))
def test_reference_matches_slow_exact_backprop(seed) -> None:
    net = _random_net([3, 5, 4][: 1 + seed % 3], seed)
    xs = _rand_dyadics(5, 40, seed)
    ref = fp.reference(net, xs, objective="mean_output")
    values, grads = zip(*[_slow_backprop(net, x) for x in xs])
    assert ref.values == list(values)
    assert ref.values == st.net_exact(net, xs)
    expected = [sum(col, Fraction(0)) / len(xs) for col in zip(*grads)]
    assert ref.grad == expected
    assert ref.loss == sum(values, Fraction(0)) / len(xs)


@pytest.mark.parametrize("seed", range(4))
def test_mse_reference_is_exact(seed) -> None:
    net = _random_net([4, 4], 10 + seed)
    xs = _rand_dyadics(6, 30, seed)
    ys = [Fraction(1, 3), Fraction(-2, 7)] + _rand_dyadics(4, 20, seed + 1)  # non-dyadic targets
    ref = fp.reference(net, xs, objective="mse", targets=ys)
    values, grads = zip(*[_slow_backprop(net, x) for x in xs])
    n = len(xs)
    assert ref.loss == sum(((v - y) ** 2 for v, y in zip(values, ys)), Fraction(0)) / n
    expected = [sum((2 * (v - y) * g for v, y, g in zip(values, ys, col)), Fraction(0)) / n
                for col in zip(*grads)]
    assert ref.grad == expected


def test_reference_gradient_is_the_derivative() -> None:
    """A central difference in exact arithmetic: N is piecewise polynomial in theta."""
    net = _random_net([3, 3], 7)
    xs = _rand_dyadics(4, 30, 3)
    ref = fp.reference(net, xs, objective="mean_output")
    rng = random.Random(1)
    direction = [Fraction(rng.randint(-8, 8), 8) for _ in ref.grad]
    t = Fraction(1, 2**40)

    def mean_output(shift):
        shifted = []
        for (w, b), (dw, db) in _split(net, direction):
            shifted.append(([[wi + shift * di for wi, di in zip(r, dr)] for r, dr in zip(w, dw)],
                            [bi + shift * di for bi, di in zip(b, db)]))
        total = Fraction(0)
        for x in xs:
            h = [Fraction(x)]
            for k, (w, b) in enumerate(shifted):
                h = [sum((wi * hi for wi, hi in zip(r, h)), bb) for r, bb in zip(w, b)]
                if k < len(shifted) - 1:
                    h = [v if v > 0 else Fraction(0) for v in h]
            total += h[0]
        return total / len(xs)

    fd = (mean_output(t) - mean_output(-t)) / (2 * t)
    exact = sum((g * d for g, d in zip(ref.grad, direction)), Fraction(0))
    assert abs(fd - exact) < Fraction(1, 2**60)


def _split(net, direction):
    out, k = [], 0
    for layer in net:
        if isinstance(layer, nn.Linear):
            w = [[Fraction(v) for v in r] for r in layer.weight.detach().double().tolist()]
            b = [Fraction(v) for v in layer.bias.detach().double().tolist()]
            nw = layer.weight.numel()
            flat = direction[k:k + nw]
            dw = [flat[i * layer.in_features:(i + 1) * layer.in_features] for i in range(layer.out_features)]
            db = direction[k + nw:k + nw + layer.out_features]
            k += nw + layer.out_features
            out.append(((w, b), (dw, db)))
    return out


def test_mpmath_and_fraction_backends_agree_with_the_dyadic_one() -> None:
    net = _random_net([4, 4, 4], 3)
    xs = _rand_dyadics(8, 50, 5)
    exact = fp.reference(net, xs, objective="mse", targets=[Fraction(1, 2)] * 8)
    mp = fp.reference(net, xs, objective="mse", targets=[Fraction(1, 2)] * 8,
                      arithmetic="mpmath", dps=60)
    assert mp.arithmetic == "mpmath" and mp.dps == 60
    with mpmath.workdps(100):
        for a, b in zip(mp.grad + mp.values, exact.grad + exact.values):
            assert abs(a - mpmath.mpf(b.numerator) / b.denominator) <= mpmath.mpf(10) ** -50 * (1 + abs(a))
    # Non-dyadic inputs take the Fraction path; compare with mpmath at 80 digits.
    thirds = [Fraction(1, 3), Fraction(2, 7), Fraction(5, 11)]
    frac = fp.reference(net, thirds, objective="mean_output")
    mp2 = fp.reference(net, thirds, objective="mean_output", arithmetic="mpmath", dps=80)
    assert frac.values == st.net_exact(net, thirds)
    with mpmath.workdps(100):
        for a, b in zip(mp2.grad, frac.grad):
            assert abs(a - mpmath.mpf(b.numerator) / b.denominator) <= mpmath.mpf(10) ** -70 * (1 + abs(a))


@pytest.mark.parametrize("seed", range(3))
def test_float64_evaluation_is_close_to_the_reference(seed) -> None:
    net = _random_net([8, 8, 8], 20 + seed)
    xs = torch.rand(32, 1, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    ys = torch.sin(6 * xs)
    rep = fp.compare(net, xs, torch.float64, objective="mse", targets=ys)
    assert rep.forward_ulps <= 64 and rep.grad_rel < 1e-13
    rep32 = fp.compare(net, xs, torch.float32, objective="mse", targets=ys)
    assert 1e-9 < rep32.grad_rel < 1e-4 and rep32.forward_rel < 1e-4


def test_sawtooth_at_format_inputs_has_no_forward_error() -> None:
    """The hat map is exact in binary floating point (chapter 'Sawtooth constructions')."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, generator=gen, dtype=torch.float64)
    for dtype in ALL:
        xr = fp.round_to_format(x, dtype).double()
        rows = fp.errors_by_depth(st.sawtooth_net, [1, 7, 15], xr, [dtype], objective="mean_output")
        assert [r["forward_abs"] for r in rows] == [0.0, 0.0, 0.0]
        assert all(r["format"] == fp.format_name(dtype) for r in rows)


def test_single_point_sawtooth_gradient_is_exact_in_float64() -> None:
    net = st.sawtooth_net(6)
    for x in (Fraction(3, 10), Fraction(1, 2), Fraction(5, 16)):
        xf = float(x)
        ev = fp.evaluate(net, [xf], torch.float64, objective="mean_output")
        ref = fp.reference(net, [xf], objective="mean_output")
        assert [Fraction(v) for v in ev.grad.tolist()] == ref.grad


def test_relu_prime_at_zero_decides_the_gradient_at_kinks() -> None:
    net = st.sawtooth_net(4)
    at_kink = fp.reference(net, [Fraction(1, 2)], objective="mean_output")
    assert at_kink.kink_points.tolist() == [True] and at_kink.kinks >= 1
    other = fp.reference(net, [Fraction(1, 2)], objective="mean_output", relu_prime_at_zero=1)
    assert other.grad != at_kink.grad and other.values == at_kink.values
    off = fp.reference(net, [Fraction(1, 3)], objective="mean_output")
    assert off.kink_points.tolist() == [False] and off.kinks == 0
    assert off.grad == fp.reference(net, [Fraction(1, 3)], objective="mean_output",
                                    relu_prime_at_zero=1).grad
    # the convention at the kink is what torch uses: relu'(0) = 0
    ev = fp.evaluate(net, [0.5], torch.float64, objective="mean_output")
    assert [Fraction(v) for v in ev.grad.tolist()] == at_kink.grad


def test_preactivation_slopes() -> None:
    xs = _rand_dyadics(40, 30, 2)
    slopes = fp.preactivation_slopes(st.sawtooth_net(7), xs)
    assert [s.tolist() for s in slopes] == [[2.0 ** l] * 3 for l in range(7)]
    y = fp.preactivation_slopes(st.yarotsky_square_net(5), xs)
    assert [s[1:].tolist() for s in y] == [[2.0 ** l] * 3 for l in range(5)]
    assert all(1 <= s[0] < 2 for s in y)  # the accumulator f_{l-1}' = slope of the interpolant
    net = _random_net([5, 5], 0)
    slopes = fp.preactivation_slopes(net, xs)
    w1 = net[0].weight.detach().abs().reshape(-1).numpy()
    assert np.array_equal(slopes[0], w1)


# ------------------------------------------------------------------ argument checks
def test_bad_arguments_raise_clearly() -> None:
    net = st.sawtooth_net(2)
    with pytest.raises(ValueError, match="objective"):
        fp.reference(net, [0.3], objective="cross_entropy")
    with pytest.raises(ValueError, match="targets"):
        fp.reference(net, [0.3], objective="mse")
    with pytest.raises(ValueError, match="targets"):
        fp.evaluate(net, [0.3, 0.4], torch.float32, objective="mse", targets=[0.1])
    with pytest.raises(ValueError, match="dps"):
        fp.reference(net, [0.3], objective="mean_output", arithmetic="mpmath", dps=5)
    with pytest.raises(ValueError, match="arithmetic"):
        fp.reference(net, [0.3], objective="mean_output", arithmetic="interval")
    with pytest.raises(ValueError, match="relu_prime_at_zero"):
        fp.reference(net, [0.3], objective="mean_output", relu_prime_at_zero=2)
    with pytest.raises(ValueError, match="at least one"):
        fp.reference(net, [], objective="mean_output")
    with pytest.raises(TypeError, match="Tanh"):
        fp.reference(nn.Sequential(nn.Linear(1, 2), nn.Tanh(), nn.Linear(2, 1)), [0.3],
                     objective="mean_output")
    with pytest.raises(ValueError, match="scalar"):
        fp.reference(nn.Sequential(nn.Linear(2, 1)), [0.3], objective="mean_output")
    with pytest.raises(TypeError, match="nn.Sequential"):
        fp.evaluate(nn.Linear(1, 1), [0.3], torch.float32, objective="mean_output")


# ------------------------------------------------------------------ sawtooth orbits, crossings
def test_kink_depth_is_minus_log2_of_the_smallest_subnormal() -> None:
    assert [fp.kink_depth(d) for d in ALL] == [24, 133, 149, 1074]
    for d in ALL:
        info = torch.finfo(d)
        assert 2.0 ** -fp.kink_depth(d) == info.tiny * info.eps


def test_float16_sawtooth_dies_at_depth_q_plus_one() -> None:
    """Exhaustive over the float16 numbers in [0, 1] (lemma 'float orbits die')."""
    bits = torch.arange(0, 2**15, dtype=torch.int32).to(torch.int16)
    v = bits.view(torch.float16)
    v = v[(v >= 0) & (v <= 1)]
    q = fp.kink_depth(torch.float16)
    assert torch.all(st.sawtooth(v, q + 1) == 0)
    assert torch.any(st.sawtooth(v, q) != 0)


def test_sawtooth_orbits() -> None:
    xs = fp.random_reals(200, seed=3)
    for dtype in ALL:
        o = fp.sawtooth_orbits(xs, 30, dtype)
        assert o.float_exact and o.errors.shape == (30, 200)
        assert np.all(o.errors <= o.amplified) and np.all(o.errors <= 1)
        p = fp.float_format(dtype).precision
        # far from saturation the error is exactly the amplified rounding error
        k = min(p - 6, 30)
        assert np.array_equal(o.errors[:k], o.amplified[:k])
        share = o.kink_share()
        assert np.all(np.diff(share) >= 0)
    # exact values at a few points, checked independently
    x = [Fraction(5, 16), Fraction(1, 2)]  # 5/16 -> 5/8 -> 3/4 -> 1/2: a kink at layer 4
    o = fp.sawtooth_orbits(x, 4, torch.float64)
    assert o.errors.max() == 0 and o.first_kink.tolist() == [4, 1]
    assert np.array_equal(o.kink_share(), [0.5, 0.5, 0.5, 1.0])
    with pytest.raises(ValueError, match="dyadic"):
        fp.sawtooth_orbits([Fraction(1, 3)], 2, torch.float32)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fp.sawtooth_orbits([1.5], 2, torch.float32)
    with pytest.raises((TypeError, ValueError), match="max_depth"):
        fp.sawtooth_orbits([0.5], 0, torch.float32)


def test_random_reals() -> None:
    a = fp.random_reals(5, seed=1)
    assert a == fp.random_reals(5, seed=1) and a != fp.random_reals(5, seed=2)
    assert all(0 <= v < 1 and v.denominator <= 2**96 for v in a)
    assert fp.random_reals(3, seed=0, bits=4)[0].denominator <= 16
    with pytest.raises(ValueError, match="seed"):
        fp.random_reals(3, seed=-1)


def test_absolute_error() -> None:
    assert fp.absolute_error([0.5, math.inf], [Fraction(1, 3), 0]).tolist() == [
        float(Fraction(1, 2) - Fraction(1, 3)), math.inf]


@given(hs.lists(hs.fractions(min_value=-2, max_value=2, max_denominator=64), min_size=2, max_size=8),
       hs.fractions(min_value=-2, max_value=2, max_denominator=16),
       hs.fractions(min_value=Fraction(1, 32), max_value=4, max_denominator=32))
def test_expected_crossings_exact_and_bounded(values, center, width) -> None:
    e = fp.expected_crossings(values, center, width)
    assert 0 <= e <= fp.total_variation(values) / width
    # brute force: average of the exact crossing count over a fine grid of levels
    lo = center - width / 2
    n = 256
    grid = [lo + width * Fraction(2 * k + 1, 2 * n) for k in range(n)]
    brute = Fraction(sum(sum(1 for a, c in zip(values, values[1:]) if min(a, c) < b < max(a, c))
                         for b in grid), n)
    # midpoint rule on a step function with at most 2 len(values) jumps
    assert abs(brute - e) <= Fraction(2 * len(values), n)


def test_total_variation_and_crossings_of_the_sawtooth() -> None:
    knots = [Fraction(k, 16) for k in range(17)]
    values = [st.sawtooth_exact(t, 4) for t in knots]
    assert fp.total_variation(values) == 16
    assert fp.expected_crossings(values, Fraction(1, 2), Fraction(1, 10)) == 16
    assert fp.expected_crossings(values, Fraction(1, 2), 2) == 8   # half the levels miss [0, 1]
    with pytest.raises(ValueError, match="width"):
        fp.expected_crossings(values, 0, 0)
    with pytest.raises(ValueError, match="2 points"):
        fp.total_variation([1])


def test_collapse_level() -> None:
    levels = [1e-3, 1e-2, 1e-1, 1.0]
    assert fp.collapse_level(levels, [1.0, 0.9, 0.3, 0.1]) == pytest.approx(10 ** (-2 + 0.4 / 0.6))
    assert fp.collapse_level(levels, [1.0, 1.0, 0.9, 0.6]) == math.inf
    assert fp.collapse_level(levels, [0.2, 0.1, 0.1, 0.1]) == 1e-3
    with pytest.raises(ValueError, match="increasing"):
        fp.collapse_level([1.0, 0.1], [1.0, 0.5])
    with pytest.raises(ValueError, match="same length"):
        fp.collapse_level([0.1, 1.0], [1.0])


# ------------------------------------------------------------------ representability and resolution
def _all_positive_values(dtype) -> np.ndarray:
    """Every finite positive number of a 16-bit format, by enumerating bit patterns."""
    top = 0x7C00 if dtype == torch.float16 else 0x7F80
    bits = torch.arange(1, top, dtype=torch.int32).to(torch.int16)
    return bits.view(dtype).to(torch.float64).numpy()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_representable_and_resolved_by_enumeration(dtype) -> None:
    values = np.concatenate([[0.0], _all_positive_values(dtype)])
    rng = np.random.default_rng(0)
    probe = np.sort(rng.uniform(0, 2, size=400))
    probe = np.concatenate([probe, values[:50], values[-5:], [1.0, 0.5]])
    rep = fp.representable(probe, dtype)
    assert np.array_equal(rep, np.isin(probe, values))
    frac = [Fraction(v) for v in probe] + [Fraction(1, 3)]
    assert np.array_equal(fp.representable(frac, dtype)[:-1], rep) and not fp.representable(frac, dtype)[-1]
    edges = np.unique(np.concatenate([probe, values[100:140]]))
    resolved = fp.resolved_pieces(edges, dtype)
    brute = [bool(np.any((values > a) & (values < b))) for a, b in zip(edges, edges[1:])]
    assert np.array_equal(resolved, brute)
    assert np.array_equal(fp.resolved_pieces([Fraction(v) for v in edges], dtype), brute)


@pytest.mark.parametrize("name, dtype, p", [("float16", torch.float16, 11),
                                            ("bfloat16", torch.bfloat16, 8),
                                            ("float32", torch.float32, 24)])
def test_resolution_limit_of_the_sawtooth(name, dtype, p) -> None:
    """The book's proposition: breakpoints representable iff L <= p; min(2^L, 2^(p-1))
    pieces contain a number of the format."""
    for L in range(1, 15):
        a = pieces.piece_analysis(st.sawtooth_net(L, dtype))
        edges = np.concatenate([[0.0], a.breakpoints, [1.0]])
        assert fp.representable(a.breakpoints, dtype).all() == (L <= p)
        assert fp.resolved_pieces(edges, dtype).sum() == min(2**L, 2 ** (p - 1))


# IEEE 754 parameters typed from the standard (not read from lib): precision p (with the
# hidden bit), smallest normal exponent emin, largest exponent emax.
_IEEE = {torch.float16: (11, -14, 15), torch.bfloat16: (8, -126, 127), torch.float32: (24, -126, 127)}


@pytest.mark.parametrize("dtype", list(_IEEE), ids=["float16", "bfloat16", "float32"])
@given(data=hs.data())
def test_round_to_format_breaks_exact_midpoint_ties_to_even(dtype, data) -> None:
    """Exact midpoints between neighbours, normal and subnormal, both signs: the result is the
    neighbour with the even integer significand (independent: integer arithmetic here)."""
    p, emin, emax = _IEEE[dtype]
    subnormal = data.draw(hs.booleans())
    if subnormal:
        e, m = emin, data.draw(hs.integers(1, 2 ** (p - 1) - 1))
    else:
        e, m = data.draw(hs.integers(emin, emax - 1)), data.draw(hs.integers(2 ** (p - 1), 2 ** p - 1))
    sign = data.draw(hs.sampled_from([1, -1]))
    quantum = Fraction(2) ** (e - p + 1)
    tie = sign * (m + Fraction(1, 2)) * quantum
    expected = sign * (m if m % 2 == 0 else m + 1) * quantum
    got = fp.round_to_format(torch.tensor([float(tie)], dtype=torch.float64), dtype)
    assert Fraction(got.to(torch.float64).item()) == expected
    assert Fraction(float(fp.round_exact(tie, dtype))) == expected


@pytest.mark.parametrize("L", [1, 3, 6, 8])
def test_compare_reports_the_known_forward_error_of_the_sawtooth(L) -> None:
    """float16 input 1/3 through g_L: the error is exactly 2^L |fl(1/3) - 1/3| while the
    rounded orbit stays on the same pieces (L <= 10 here); fl(1/3) = 1365/4096 by hand."""
    third = Fraction(1, 3)
    d = abs(Fraction(1365, 4096) - third)
    report = fp.compare(st.sawtooth_net(L), [third], torch.float16, objective="mean_output")
    assert report.forward_abs == float(2**L * d)
    assert report.forward_abs > 0


def test_sawtooth_orbits_errors_are_the_amplified_input_rounding() -> None:
    """A 60-bit dyadic near 1/3: along 8 layers the float16 orbit's error is exactly
    2^L |fl(x) - x| (fl by the integer rule: nearest multiple of 2^-12 in [1/4, 1/2))."""
    x = Fraction(round(Fraction(1, 3) * 2**60), 2**60)
    q = Fraction(1, 2**12)  # float16 spacing in [1/4, 1/2): 2^(-2-10)
    flx = round(x / q) * q
    orbit = fp.sawtooth_orbits([x], 8, torch.float16)
    expected = [float(2**L * abs(flx - x)) for L in range(1, 9)]
    assert orbit.errors[:, 0].tolist() == expected
    assert orbit.amplified[:, 0].tolist() == expected
    assert orbit.float_exact


# ------------------------------------------------------------------ issue 19: the one argument layer
@pytest.mark.parametrize("bad", [True, [True, 0.5], np.array([True]), torch.tensor([True]),
                                 1 + 2j, np.array([1 + 1j]), [0.5, None], "0.5"])
def test_round_to_format_and_ulp_refuse_bools_and_non_reals(bad) -> None:
    with pytest.raises(TypeError, match="x must be numbers"):
        fp.round_to_format(bad, torch.float16)
    with pytest.raises(TypeError, match="x must be numbers"):
        fp.ulp(bad, torch.float16)


def test_round_to_format_keeps_nan_and_the_integer_path() -> None:
    """Reference: round_exact on the same exact numbers; NaN stays NaN."""
    out = fp.round_to_format([1, 2049, math.nan], torch.float16).to(torch.float64)
    assert out[0].item() == 1.0 and out[1].item() == float(fp.round_exact(2049, torch.float16))
    assert math.isnan(out[2].item())
    assert fp.round_to_format(np.int64(2049), torch.float16).item() == 2048.0


def test_error_measures_name_the_non_finite_side() -> None:
    with pytest.raises(ValueError, match="computed must be finite"):
        fp.ulp_error([math.nan], [Fraction(1, 3)], torch.float32)
    with pytest.raises(ValueError, match="ref must be finite"):
        fp.relative_error([0.5], [math.inf])
    assert fp.absolute_error([math.nan], [Fraction(1, 3)])[0] == math.inf  # documented: inf
    with pytest.raises(ValueError, match=r"values\[1\] must be finite"):
        fp.total_variation([0, math.nan, 1])
    with pytest.raises(ValueError, match=r"values\[0\]"):
        fp.expected_crossings([math.inf, 1], 0.5, 0.2)
    with pytest.raises(TypeError, match="center"):
        fp.expected_crossings([0, 1], True, 0.2)
    assert fp.expected_crossings([0, 1], torch.tensor(0.5), Fraction(1, 5)) == 1


def test_representability_checks_its_dtype() -> None:
    for call in (lambda d: fp.representable([0.5], d), lambda d: fp.resolved_pieces([0, 1], d)):
        with pytest.raises(TypeError, match="dtype"):
            call(torch.int32)
        assert bool(np.all(call("float16")))


def test_reference_checks_dps_in_every_arithmetic() -> None:
    net = st.sawtooth_net(1)
    for bad, err in ((True, TypeError), (2.5, TypeError), (10**9, ValueError)):
        with pytest.raises(err, match="dps"):
            fp.reference(net, [0.3], objective="mean_output", dps=bad)
    ref = fp.reference(net, [0.3], objective="mean_output", dps=np.int64(30))
    assert ref.dps is None and ref.values == [fp.reference(net, [0.3], objective="mean_output").values[0]]


def test_construction_arguments_take_every_scalar_kind() -> None:
    """Reference: the closed form at the Python float."""
    want = -0.3 * math.log(0.3) - 0.7 * math.log(0.7)
    for apex in (0.3, np.float64(0.3), torch.tensor(0.3, dtype=torch.float64)):
        assert fp.tent_lyapunov(apex) == want
    assert fp.tent_lyapunov(Fraction(1, 2)) == math.log(2)
    for bad in (True, 0.0, 1, math.nan, "0.3"):
        with pytest.raises(ValueError, match="apex"):
            fp.tent_lyapunov(bad)
    assert fp.random_reals(np.int64(3), seed=torch.tensor(1)) == fp.random_reals(3, seed=1)
    for kwargs, match in (({"n": 10**9}, "n must be at most"), ({"n": 2, "bits": 10**9}, "bits"),
                          ({"n": True}, "n must be an integer")):
        with pytest.raises(ValueError, match=match):
            fp.random_reals(seed=0, **kwargs)
    with pytest.raises(ValueError, match="max_depth must be at most"):
        fp.sawtooth_orbits([0.5], 10**9, torch.float16)


def test_collapse_level_refuses_nan_and_bad_levels() -> None:
    levels = [1e-4, 1e-3, 1e-2, 1e-1]
    assert fp.collapse_level(levels, [1.0, 0.9, 0.3, 0.1], np.float64(0.5)) == \
        fp.collapse_level(levels, [1.0, 0.9, 0.3, 0.1])
    for lv, fr, match in ((levels, [1.0, math.nan, 0.3, 0.1], "fractions must not be NaN"),
                          ([1e-4, math.nan, 1e-2, 1e-1], [1.0] * 4, "levels must be finite"),
                          ([1e-4, 1e-3, 1e-2, math.inf], [1.0] * 4, "levels must be finite"),
                          ([True, 2, 3, 4], [1.0] * 4, "levels must be numbers"),
                          (levels, [None, 1, 1, 1], "fractions must be numbers")):
        with pytest.raises((TypeError, ValueError), match=match):
            fp.collapse_level(lv, fr)
    with pytest.raises(TypeError, match="threshold"):
        fp.collapse_level(levels, [1.0] * 4, threshold=True)
