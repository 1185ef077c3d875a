"""Tests of lib.pieces: exact piece counts against the slow Fraction reference, laws, bounds.

The reference (``P.reference_breakpoints``) shares no code path with the counter except the
argument checks: it re-derives every cell's coefficients by exact forward evaluation at the
cell's midpoint.  Where the expected count is known in closed form (sawtooth, Yarotsky,
one-hidden-layer nets, compositions) the tests use the closed form instead.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as hs
from torch import nn

from lib import nets as N
from lib import pieces as P
from lib import sawtooth as st

DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)


# ------------------------------------------------------------------ helpers
def linear(weight, bias, dtype=torch.float64) -> nn.Linear:
    """An nn.Linear holding ``weight``/``bias`` rounded to ``dtype`` (what the net stores)."""
    w = torch.tensor([[float(v) for v in row] for row in weight], dtype=torch.float64)
    b = torch.tensor([float(v) for v in bias], dtype=torch.float64)
    layer = nn.Linear(w.shape[1], w.shape[0], dtype=dtype)
    with torch.no_grad():
        layer.weight.copy_(w.to(dtype))
        layer.bias.copy_(b.to(dtype))
    return layer


def compose(*nets: nn.Sequential) -> nn.Sequential:
    """``nets[-1] o ... o nets[0]`` as one Sequential (consecutive Linear layers at the seams)."""
    return nn.Sequential(*[layer for net in nets for layer in net])


def perturbed(net: nn.Sequential, eps: float, seed: int, dtype=torch.float64) -> nn.Sequential:
    """Every weight w -> w (1 + eps u), u ~ U(-1, 1), then stored in ``dtype``."""
    rng = np.random.default_rng(seed)
    layers = []
    for layer in net:
        if isinstance(layer, nn.Linear):
            w = layer.weight.detach().to(torch.float64).numpy()
            b = layer.bias.detach().to(torch.float64).numpy()
            w = w * (1 + eps * rng.uniform(-1, 1, size=w.shape))
            b = b * (1 + eps * rng.uniform(-1, 1, size=b.shape))
            layers.append(linear(w.tolist(), b.tolist(), dtype))
        else:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def assert_matches_reference(net: nn.Sequential, interval=(0.0, 1.0)) -> P.PieceAnalysis:
    ref = P.reference_breakpoints(net, interval)
    a = P.piece_analysis(net, interval)
    assert a.count == len(ref) + 1 == P.count_pieces(net, interval)
    assert a.breakpoints_exact() == ref
    bps = a.breakpoints
    assert bps.dtype == np.float64 and bps.ndim == 1 and len(bps) == len(ref)
    assert np.all(np.diff(bps) >= 0)
    if ref:  # float values: within 2^-32 max(1, |t|) (exact ones: correctly rounded)
        exact = np.array([float(t) for t in ref])
        err = [abs(Fraction(float(v)) - t) for v, t in zip(bps, ref)]
        assert all(e <= Fraction(2.0**-32) * max(1, abs(t)) for e, t in zip(err, ref)), (
            bps, exact)
    widths = a.widths()
    exact_w = np.diff([float(Fraction(interval[0]))] + [float(t) for t in ref]
                      + [float(Fraction(interval[1]))])
    true_w = [float(b - a_) for a_, b in zip([Fraction(interval[0])] + ref,
                                             ref + [Fraction(interval[1])])]
    assert len(widths) == a.count and np.all(widths >= 0)
    # relative accuracy 2^-20 wherever the true width is a normal float64 (extreme weights
    # can make a piece narrower than the smallest subnormal: it then reads 0)
    normal = np.abs(true_w) >= np.finfo(np.float64).tiny
    assert np.allclose(widths[normal], np.array(true_w)[normal], rtol=2.0**-19, atol=0), (
        widths, exact_w)
    assert np.all(widths[~normal] <= np.finfo(np.float64).tiny)
    return a


# ------------------------------------------------------------------ strategies
dyadic_w = hs.integers(-8, 8).map(lambda k: k / 4)
float_w = hs.floats(-3, 3, allow_nan=False, allow_infinity=False)
tiny_w = hs.sampled_from([1e-300, -1e-300, 2.0**-1060, 1e-20, 3e200])
weights = {
    "dyadic": dyadic_w,
    "float": float_w,
    "mixed": hs.one_of(dyadic_w, float_w, hs.just(0.0)),
    "extreme": hs.one_of(dyadic_w, float_w, tiny_w),
}


@hs.composite
def nets(draw, max_depth: int = 3, max_width: int = 6, dtypes=DTYPES) -> nn.Sequential:
    """Random Linear/ReLU nets with zero rows, dead units, duplicated and scaled rows
    (coincident breakpoints), extra Linear layers without a ReLU, ReLUs after the input."""
    depth = draw(hs.integers(1, max_depth))
    widths = [draw(hs.integers(1, max_width)) for _ in range(depth)] + [1]
    dtype = draw(hs.sampled_from(dtypes))
    style = draw(hs.sampled_from(sorted(weights)))
    if style == "extreme":
        dtype = torch.float64  # 1e-300 and 3e200 exist only there
    w_st = weights[style]
    layers: list[nn.Module] = []
    if draw(hs.integers(0, 9)) == 0:
        layers.append(nn.ReLU())  # a ReLU straight on the input
    n_in = 1
    for i, n_out in enumerate(widths):
        W = [[draw(w_st) for _ in range(n_in)] for _ in range(n_out)]
        b = [draw(w_st) for _ in range(n_out)]
        if n_out > 1 and draw(hs.booleans()):  # a coincident breakpoint: row j = c * row k
            j, k = draw(hs.integers(0, n_out - 1)), draw(hs.integers(0, n_out - 1))
            c = draw(hs.sampled_from([1.0, 2.0, 0.5, -1.0, -4.0]))
            W[j], b[j] = [c * v for v in W[k]], c * b[k]
        if draw(hs.integers(0, 4)) == 0:  # a zero row or a zero bias
            j = draw(hs.integers(0, n_out - 1))
            if draw(hs.booleans()):
                W[j] = [0.0] * n_in
            else:
                b[j] = 0.0
        layers.append(linear(W, b, dtype))
        if i < len(widths) - 1:
            if draw(hs.integers(0, 5)) == 0:  # consecutive Linear layers
                m = draw(hs.integers(1, max_width))
                layers.append(linear([[draw(w_st) for _ in range(n_out)] for _ in range(m)],
                                     [draw(w_st) for _ in range(m)], dtype))
                n_out = m
            layers.append(nn.ReLU())
            if draw(hs.integers(0, 9)) == 0:
                layers.append(nn.ReLU())  # idempotent, still allowed
        n_in = n_out
    return nn.Sequential(*layers)


ends = hs.sampled_from([-2.0, -1.0, -0.5, 0.0, 0.25, 0.5, 1.0, 1.5, 3.0])
intervals = hs.tuples(hs.one_of(ends, hs.floats(-4, 4)), hs.one_of(ends, hs.floats(-4, 4))
                      ).filter(lambda t: t[0] < t[1])


# ------------------------------------------------------------------ exactness vs reference
@settings(max_examples=250, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(nets(), intervals)
def test_random_nets_match_reference(net: nn.Sequential, interval) -> None:
    assert_matches_reference(net, interval)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(nets(), hs.data())
def test_interval_ends_at_breakpoints(net: nn.Sequential, data) -> None:
    """Intervals that start or end exactly at a breakpoint (or at a kink of a hidden unit)."""
    ref = P.reference_breakpoints(net, (-4.0, 4.0))
    dyadic = [t for t in ref if t.denominator & (t.denominator - 1) == 0]
    assume(dyadic)
    t = data.draw(hs.sampled_from(dyadic))
    for interval in ((t, Fraction(5)), (Fraction(-5), t)):
        assert_matches_reference(net, interval)


@pytest.mark.parametrize("width", [1, 2, 3, 8, 17, 32, 64])
def test_wide_one_and_two_hidden_layers(width: int) -> None:
    gen = torch.Generator().manual_seed(width)
    for depth in (1, 2) if width <= 32 else (1,):
        layers, n_in = [], 1
        for _ in range(depth):
            lin = nn.Linear(n_in, width, dtype=torch.float64)
            with torch.no_grad():
                lin.weight.normal_(0, (2 / n_in) ** 0.5, generator=gen)
                lin.bias.normal_(0, 1, generator=gen)
            layers += [lin, nn.ReLU()]
            n_in = width
        out = nn.Linear(n_in, 1, dtype=torch.float64)
        with torch.no_grad():
            out.weight.normal_(0, 1, generator=gen)
        net = nn.Sequential(*layers, out)
        a = assert_matches_reference(net, (-3.0, 3.0))
        if depth == 1:
            assert a.count <= width + 1


@pytest.mark.parametrize("eps", [1e-15, 1e-13, 1e-11, 1e-8, 1e-5, 1e-2])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_perturbed_constructions_match_reference(eps: float, dtype) -> None:
    """Tiny relative perturbations create kinks closer than 1e-13 and slope jumps below
    float64 resolution: the cases a float64 sweep with tolerances gets wrong."""
    for seed, base in enumerate([st.sawtooth_net(6), st.yarotsky_square_net(5),
                                 st.sawtooth_net(3)]):
        net = perturbed(base, eps, seed, dtype)
        for interval in ((0.0, 1.0), (-0.25, 1.25)):
            assert_matches_reference(net, interval)


def test_perturbed_sawtooth_has_tiny_pieces() -> None:
    """The exact count sees pieces far below float64 resolution of [0, 1]."""
    net = perturbed(st.sawtooth_net(6), 1e-13, 0)
    a = assert_matches_reference(net)
    assert a.count > 2**6
    assert a.widths().min() < 1e-13
    assert a.stats["exact_cells"] > 0  # the rational fallback was needed


# ------------------------------------------------------------------ closed forms
@pytest.mark.parametrize("dtype", DTYPES)
def test_sawtooth_and_yarotsky_counts(dtype) -> None:
    for L in range(1, 13):
        net = st.sawtooth_net(L, dtype)
        a = P.piece_analysis(net)
        assert a.count == 2**L
        assert a.stats["exact_cells"] == 0 and a.stats["replays"] == 0  # certified path
        assert a.breakpoints_exact() == [Fraction(k, 2**L) for k in range(1, 2**L)]
        assert np.array_equal(a.breakpoints, np.arange(1, 2**L) / 2**L)
        assert np.array_equal(a.widths(), np.full(2**L, 2.0**-L))
    for m in range(1, 11):
        assert P.count_pieces(st.yarotsky_square_net(m, dtype)) == 2**m
    for k in range(1, 8 if dtype is not torch.bfloat16 else 7):
        assert P.count_pieces(st.shallow_sawtooth_net(k, dtype)) == 2**k


def test_sawtooth_outside_unit_interval() -> None:
    # g_L is 0 outside [0, 1]: two more pieces on a larger interval, with kinks at 0 and 1
    for L in (1, 4, 9):
        assert P.count_pieces(st.sawtooth_net(L), (-1.0, 2.0)) == 2**L + 2
        assert P.count_pieces(st.sawtooth_net(L), (1.0, 2.0)) == 1
        assert P.count_pieces(st.sawtooth_net(L), (-3.0, 0.0)) == 1


def test_sawtooth_depth_20() -> None:
    assert P.count_pieces(st.sawtooth_net(20)) == 2**20


@settings(max_examples=25, deadline=None)
@given(hs.integers(1, 7), hs.integers(1, 7), hs.sampled_from(DTYPES))
def test_composition_law(a: int, b: int, dtype) -> None:
    """g_a o g_b = g_(a+b): 2^(a+b) pieces, with two Linear layers in a row at the seam."""
    net = compose(st.sawtooth_net(b, dtype), st.sawtooth_net(a, dtype))
    assert P.count_pieces(net) == 2 ** (a + b)
    assert P.relu_widths(net) == [3] * (a + b)


# ------------------------------------------------------------------ laws
@settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(nets(), intervals)
def test_count_below_bounds(net: nn.Sequential, interval) -> None:
    widths = P.relu_widths(net)
    count = P.count_pieces(net, interval)
    bounds = P.piece_bounds(widths)
    assert count <= P.piece_bound(widths) == bounds["product"]
    assert bounds["product"] <= bounds["telgarsky"] <= bounds["telgarsky_amgm"]


@settings(max_examples=60, deadline=None)
@given(hs.lists(hs.tuples(float_w, float_w, float_w), min_size=1, max_size=40), intervals)
def test_one_hidden_layer_at_most_w_plus_one(units, interval) -> None:
    net = nn.Sequential(linear([[u[0]] for u in units], [u[1] for u in units]), nn.ReLU(),
                        linear([[u[2] for u in units]], [0.0]))
    assert P.count_pieces(net, interval) <= len(units) + 1


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(nets(max_depth=2), hs.sampled_from([-1.0, -0.25, 0.0, 0.5, 0.75]), hs.data())
def test_interval_additivity(net: nn.Sequential, mid: float, data) -> None:
    """pieces(a, c) = pieces(a, b) + pieces(b, c) - [b is not a breakpoint]."""
    lo = data.draw(hs.sampled_from([-2.0, -1.5])) if mid > -1.5 else -2.0
    hi = 2.0
    whole = P.breakpoints_exact(net, (lo, hi))
    left, right = P.count_pieces(net, (lo, mid)), P.count_pieces(net, (mid, hi))
    assert len(whole) + 1 == left + right - (0 if Fraction(mid) in whole else 1)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(nets(max_depth=2, dtypes=(torch.float64, torch.float32)), intervals)
def test_mirror_and_rescaling_invariance(net: nn.Sequential, interval) -> None:
    """x -> -x mirrors the breakpoints; positive power-of-two rescaling of a hidden unit
    (row times 2^k, next column times 2^-k) and output scaling do not change the function."""
    layers = list(net)
    first = next(i for i, l in enumerate(layers) if isinstance(l, nn.Linear))
    mirrored = [nn.ReLU() if isinstance(l, nn.ReLU) else l for l in layers]
    w = layers[first].weight.detach().to(torch.float64).numpy()
    mirrored[first] = linear((-w).tolist(), layers[first].bias.detach().to(torch.float64).tolist(),
                             layers[first].weight.dtype)
    mirror_net = nn.Sequential(*mirrored)
    # (a leading ReLU acts on x itself: mirroring does not commute with it)
    if first == 0:
        bp = P.breakpoints_exact(net, interval)
        bp_m = P.breakpoints_exact(mirror_net, (-interval[1], -interval[0]))
        assert bp_m == sorted(-t for t in bp)
    # rescale hidden unit 0 of the first Linear+ReLU pair by 4 (exact in both formats)
    lin_relu = [i for i in range(len(layers) - 1)
                if isinstance(layers[i], nn.Linear) and isinstance(layers[i + 1], nn.ReLU)]
    nxt = [i for i in range(len(layers)) if isinstance(layers[i], nn.Linear)]
    if lin_relu:
        i = lin_relu[0]
        j = next(k for k in nxt if k > i)
        dt = layers[i].weight.dtype
        W1 = layers[i].weight.detach().to(torch.float64).numpy().copy()
        b1 = layers[i].bias.detach().to(torch.float64).numpy().copy()
        W2 = layers[j].weight.detach().to(torch.float64).numpy().copy()
        W1_0, b1_0, W2_0 = W1.copy(), b1.copy(), W2.copy()
        W1[0] *= 4
        b1[0] *= 4
        W2[:, 0] /= 4
        scaled = list(layers)
        scaled[i] = linear(W1.tolist(), b1.tolist(), dt)
        scaled[j] = linear(W2.tolist(), layers[j].bias.detach().to(torch.float64).tolist(), dt)
        # exact only if nothing over- or underflowed (a subnormal weight divided by 4 can
        # round to 0 and change the function) and every value is stored exactly in dt
        exact_rescale = (
            (W1 / 4 == W1_0).all() and (b1 / 4 == b1_0).all() and (W2 * 4 == W2_0).all()
            and all(float(torch.tensor(v, dtype=torch.float64).to(dt)) == v
                    for v in list(W1.ravel()) + list(b1.ravel()) + list(W2.ravel()))
        )
        if exact_rescale:
            assert P.breakpoints_exact(nn.Sequential(*scaled), interval) == \
                P.breakpoints_exact(net, interval)


def test_constant_and_affine_nets() -> None:
    zero_out = nn.Sequential(linear([[1.0], [-1.0]], [0.0, 0.5]), nn.ReLU(),
                             linear([[0.0, 0.0]], [3.0]))
    assert P.count_pieces(zero_out, (-5, 5)) == 1 and len(P.breakpoints(zero_out, (-5, 5))) == 0
    # a unit whose kink is invisible downstream (zero output weight)
    hidden = nn.Sequential(linear([[1.0], [1.0]], [0.0, -0.5]), nn.ReLU(),
                           linear([[1.0, 0.0]], [0.0]))
    assert P.breakpoints_exact(hidden, (-1, 1)) == [0]
    # |x| = relu(x) + relu(-x): two pieces
    absx = nn.Sequential(linear([[1.0], [-1.0]], [0.0, 0.0]), nn.ReLU(), linear([[1.0, 1.0]], [0.0]))
    assert P.breakpoints_exact(absx, (-1, 1)) == [0]
    # x = relu(x) - relu(-x): one piece, although both units switch at 0
    ident = nn.Sequential(linear([[1.0], [-1.0]], [0.0, 0.0]), nn.ReLU(), linear([[1.0, -1.0]], [0.0]))
    assert P.count_pieces(ident, (-1, 1)) == 1
    # no ReLU at all; Linear without bias; a ReLU on the input
    affine = nn.Sequential(nn.Linear(1, 3, bias=False, dtype=torch.float64),
                           nn.Linear(3, 1, dtype=torch.float64))
    assert P.count_pieces(affine, (-1, 1)) == 1
    assert P.breakpoints_exact(nn.Sequential(nn.ReLU()), (-1, 1)) == [0]
    assert P.count_pieces(nn.Sequential(nn.ReLU(), nn.ReLU()), (0.5, 1)) == 1


def test_equal_slopes_of_inexact_coefficients_are_merged_exactly() -> None:
    """Two units whose kinks cancel exactly although their coefficients are not float-exact."""
    a, b = 0.1, 0.3   # kink at -b/a = -3 (not representable); jump +1 then -1 at the same x
    net = nn.Sequential(linear([[a], [2 * a]], [b, 2 * b]), nn.ReLU(),
                        linear([[2.0, -1.0]], [0.0]))
    assert P.count_pieces(net, (-10, 10)) == 1
    assert_matches_reference(net, (-10.0, 10.0))


# ------------------------------------------------------------------ bounds
def test_piece_bounds_values() -> None:
    assert P.piece_bound([]) == 1
    assert P.piece_bound([3] * 5) == 4**5
    assert P.piece_bounds([3] * 5) == {"product": 4**5, "telgarsky": 6**5, "telgarsky_amgm": 6**5}
    assert P.piece_bounds([1, 3]) == {"product": 8, "telgarsky": 12, "telgarsky_amgm": 16}
    assert P.piece_bound((0, 5)) == 6
    assert P.piece_bound(np.array([2, 2]).tolist()) == 9
    for bad, err in (("12", TypeError), ([1.5], TypeError), ([True], TypeError), ([-1], ValueError),
                     (3, TypeError)):
        with pytest.raises(err):
            P.piece_bound(bad)


def test_bounds_hold_for_constructions() -> None:
    for L in range(1, 10):
        net = st.sawtooth_net(L)
        assert P.relu_widths(net) == st.hidden_widths(net) == [3] * L
        assert P.count_pieces(net) == 2**L <= P.piece_bound(P.relu_widths(net)) == 4**L
    net = st.shallow_sawtooth_net(5)
    assert P.count_pieces(net) == 32 <= P.piece_bound(P.relu_widths(net)) == 33


# ------------------------------------------------------------------ grid sampling
def test_grid_count() -> None:
    net = st.sawtooth_net(6)
    assert P.grid_count(net, n_points=2**6 * 8 + 1) == 64       # fine enough
    coarse = P.grid_count(net, n_points=33)
    assert coarse < 64                                           # misses narrow pieces
    assert P.grid_count(net, (0.0, 1.0), 1001, dtype=torch.float32) == 64
    with pytest.raises(ValueError):
        P.grid_count(net, n_points=1)


# ------------------------------------------------------------------ argument checks
def test_argument_errors() -> None:
    good = st.sawtooth_net(2)
    with pytest.raises(TypeError, match="Tanh"):
        P.count_pieces(nn.Sequential(nn.Linear(1, 2), nn.Tanh(), nn.Linear(2, 1)))
    with pytest.raises(TypeError, match="Sequential"):
        P.count_pieces(nn.Sequential(nn.Sequential(nn.Linear(1, 1))))
    with pytest.raises(TypeError):
        P.count_pieces(nn.Linear(1, 1))
    with pytest.raises(ValueError, match="empty"):
        P.count_pieces(good, (0.5, 0.5))
    with pytest.raises(ValueError, match="reversed"):
        P.count_pieces(good, (1.0, 0.0))
    with pytest.raises(ValueError, match="scalar input"):
        P.count_pieces(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)))
    with pytest.raises(ValueError, match="scalar output"):
        P.count_pieces(nn.Sequential(nn.Linear(1, 3), nn.ReLU(), nn.Linear(3, 2)))
    with pytest.raises(ValueError, match="expects"):
        P.count_pieces(nn.Sequential(nn.Linear(1, 3), nn.ReLU(), nn.Linear(2, 1)))
    with pytest.raises(ValueError, match="finite"):
        P.count_pieces(good, (0.0, float("inf")))
    with pytest.raises(ValueError, match="finite"):
        P.count_pieces(good, (float("nan"), 1.0))
    with pytest.raises(TypeError):
        P.count_pieces(good, (True, 1.0))
    with pytest.raises(TypeError):
        P.count_pieces(good, 1.0)
    nan_net = st.sawtooth_net(1)
    with torch.no_grad():
        nan_net[0].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        P.count_pieces(nan_net)
    for f in (P.breakpoints, P.piece_widths, P.breakpoints_exact, P.reference_breakpoints):
        with pytest.raises(ValueError):
            f(good, (2.0, 1.0))


def test_interval_types() -> None:
    net = st.sawtooth_net(3)
    assert P.count_pieces(net, (0, 1)) == 8
    assert P.count_pieces(net, (Fraction(1, 3), Fraction(2, 3))) == \
        P.reference_count_pieces(net, (Fraction(1, 3), Fraction(2, 3)))
    assert P.count_pieces(net, (np.float32(0), torch.tensor(1.0))) == 8
    assert P.breakpoints_exact(net, (Fraction(1, 3), Fraction(1, 2))) == [Fraction(3, 8)]


# ------------------------------------------------------------------ random nets
@settings(max_examples=40, deadline=None)
@given(hs.lists(hs.integers(1, 12), min_size=1, max_size=6), hs.integers(0, 10**6), intervals)
def test_zero_bias_nets_are_homogeneous(widths, seed, interval) -> None:
    net = N.random_relu_net(widths, "he-zero-bias", seed=seed)
    bps = P.breakpoints_exact(net, interval)
    assert bps in ([], [0])


@settings(max_examples=60, deadline=None)
@given(hs.integers(1, 14), hs.integers(0, 10**6), hs.sampled_from(["he", "pytorch"]), intervals)
def test_width_one_nets_have_at_most_three_pieces(depth, seed, init, interval) -> None:
    net = N.random_relu_net([1] * depth, init, seed=seed)
    assert P.count_pieces(net, interval) <= (2 if depth == 1 else 3)


# --------------------------------------------------------------------------- chapter experiments
@pytest.mark.parametrize("depth", [1, 2, 5])
def test_width_one_net_has_three_pieces_from_depth_two(depth: int) -> None:
    net = P.width_one_net(depth)
    assert P.relu_widths(net) == [1] * depth
    assert P.count_pieces(net, (-5.0, 5.0)) == (2 if depth == 1 else 3)
    assert P.count_pieces(net, (-5.0, 5.0)) == P.reference_count_pieces(net, (-5.0, 5.0))
    with pytest.raises(ValueError, match="depth"):
        P.width_one_net(0)


def test_random_net_counts_rows_and_seeds() -> None:
    rows = P.random_net_counts((1, 2), (2, 3), 2, ((-1.0, 1.0), (-10.0, 10.0)), inits=("he",))
    assert [(r["depth"], r["width"]) for r in rows] == [(1, 2), (1, 3), (2, 2), (2, 3)]
    r = rows[-1]
    assert r["neurons"] == 6 and r["product bound"] == 16 and len(r["counts"]) == 2
    net = N.random_relu_net([3, 3], "he", seed=10_000 * 2 + 100 * 3 + 1)
    assert r["counts"][0][1] == P.count_pieces(net, (-1.0, 1.0))
    assert all(a <= b for a, b in zip(*r["counts"]))   # the wider window sees at least as many
    with pytest.raises(ValueError, match="inits"):
        P.random_net_counts((1,), (2,), 2, ((-1.0, 1.0),), inits=("glorot",))
    with pytest.raises(TypeError, match="intervals"):
        P.random_net_counts((1,), (2,), 2, ())
    with pytest.raises(ValueError, match="n_nets"):
        P.random_net_counts((1,), (2,), 1, ((-1.0, 1.0),))


def test_resolution_rows_match_the_proposition() -> None:
    rows = P.resolution_rows(st.sawtooth_net, {"float16": (torch.float16, range(1, 13))})
    for r in rows:
        assert r["pieces"] == 2 ** r["L"]
        assert (r["representable"] == 1.0) == (r["L"] <= 11)
        assert r["resolved"] == min(2 ** r["L"], 2**10)
    win = P.resolution_rows(st.sawtooth_net, {"float16": (torch.float16, (12,))}, window_pieces=16)
    assert win[0]["pieces"] == 16 and win[0]["resolved"] == 0
    with pytest.raises(ValueError, match="window_pieces"):
        P.resolution_rows(st.sawtooth_net, {"float16": (torch.float16, (3,))}, window_pieces=6)
    with pytest.raises(ValueError, match="window_pieces"):
        P.resolution_rows(st.sawtooth_net, {"float16": (torch.float16, (3,))}, window_pieces=8)
    with pytest.raises(TypeError, match="build"):
        P.resolution_rows(None, {})
    with pytest.raises(TypeError, match="cases"):
        P.resolution_rows(st.sawtooth_net, [("float16", torch.float16, (3,))])


def test_perturbation_rows_counts_and_thresholds() -> None:
    base = st.sawtooth_net(4)
    rows = P.perturbation_rows(base, (1e-9, 1e-3, 0.3), 2, 4)
    assert [(r["rel"], r["seed"]) for r in rows][:4] == [(1e-9, 0), (1e-9, 1), (1e-3, 0), (1e-3, 1)]
    for r in rows:
        net = N.perturbed_net(base, r["rel"], seed=r["seed"])
        assert r["pieces"] == P.count_pieces(net)
        # the one definition: the visible column IS count_visible on the same net
        assert r["visible"] == P.count_visible(net, 4)
        assert r["pieces"] >= r["wider than 1e-12"] >= r["visible"]
        assert r["visible"] - r["added"] == 2**4 - r["lost"]     # one-to-one matching
    assert (rows[0]["visible"], rows[0]["lost"], rows[0]["added"], rows[0]["crossings of 1/2"]) == (16, 0, 0, 16)
    with pytest.raises(ValueError, match="depth"):
        P.perturbation_rows(base, (1e-9,), 1, 0)
    with pytest.raises(ValueError, match="seeds"):
        P.perturbation_rows(base, (1e-9,), 0, 4)


def test_cell_matches_counts_losses_and_additions() -> None:
    h = 2.0**-3
    ideal = np.arange(9) * h
    assert P._cell_matches(ideal, 3) == (0, 0)
    # merge cells 0 and 1 into one piece: it shares only half of itself with each -> 2 lost, 1 added
    assert P._cell_matches(np.delete(ideal, 1), 3) == (2, 1)
    # split cell 2 into halves: neither half is wider than h/2 -> cell 2 lost, nothing added
    assert P._cell_matches(np.insert(ideal, 3, 2.5 * h), 3) == (1, 0)
    # a piece covering 3h/4 of cells 2 and 3 (slivers beside it) matches neither: 2 lost, 1 added
    shifted = np.array([0, h, 2 * h, 2.25 * h, 3.75 * h, 4 * h, 5 * h, 6 * h, 7 * h, 1.0])
    assert P._cell_matches(shifted, 3) == (2, 1)
    # moved by h/4: [0.25h, 1.25h] shares 3h/4 with cell 0... and cell 0 keeps its match
    moved = np.array([0, 0.25 * h, 1.25 * h, 2 * h, 3 * h, 4 * h, 5 * h, 6 * h, 7 * h, 1.0])
    assert P._cell_matches(moved, 3) == (0, 0)
    # pieces centred on cell boundaries (h/2 on each side) keep no cell: cells 1-3 lost, 2 added
    odd = np.array([0, h, 1.5 * h, 2.5 * h, 3.5 * h, 4 * h, 5 * h, 6 * h, 7 * h, 1.0])
    assert P._cell_matches(odd, 3) == (3, 2)


def test_no_hand_written_visibility_threshold_in_lib() -> None:
    """The book's one definition: no module of lib compares piece widths with a threshold of
    its own (``2.0**-L / 8`` and the like); they call ``pieces.visible_width``."""
    import re
    from pathlib import Path
    pattern = re.compile(r"(\bw\b|width\w*)\s*[<>]=?\s*[^\n]*\b2(\.0)?\s*\*\*\s*\(?-")
    offenders = []
    for path in sorted((Path(P.__file__).parent).glob("*.py")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line) and "visible_width" not in line:
                offenders.append(f"{path.name}:{n}: {line.strip()}")
    assert not offenders, offenders


def test_visible_pieces_one_definition():
    from fractions import Fraction
    assert P.VISIBLE_FRACTION == Fraction(1, 4)
    for L in (1, 3, 6, 10):
        assert P.tooth_width(L) == Fraction(2, 2**L)
        assert P.visible_width(L) == 2.0**-L / 2
        # g_L: 2^L pieces of width 2^-L, all visible
        assert P.count_visible(st.sawtooth_net(L), L) == 2**L
        # judged at a deeper scale they are still visible; at a much shallower one, not
        assert P.count_visible(st.sawtooth_net(L), L + 3) == 2**L
    # pieces of g_6 are 2^-6 wide: invisible against the threshold of depth 4 (2^-5)
    assert P.count_visible(st.sawtooth_net(6), 4) == 0
    with pytest.raises(ValueError, match="depth"):
        P.visible_width(0)
    with pytest.raises((ValueError, TypeError), match="depth"):
        P.tooth_width(2.5)


# ------------------------------------------------------------------ size guard (max_pieces)
def test_max_pieces_guard_refuses_and_names_the_override() -> None:
    net = st.sawtooth_net(12)                       # 4096 pieces; product bound 4^12
    assert P.piece_bound(P.relu_widths(net)) > 2**12
    assert P.count_pieces(net, max_pieces=2**12) == 2**12      # exactly at the cap: counted
    assert P.count_pieces(net, max_pieces=None) == 2**12
    with pytest.raises(ValueError, match=r"max_pieces=4,095.*max_pieces=None"):
        P.count_pieces(net, max_pieces=2**12 - 1)
    for f in (P.piece_analysis, P.breakpoints, P.breakpoints_exact, P.piece_widths):
        with pytest.raises(ValueError, match="max_pieces"):
            f(net, (0.0, 1.0), max_pieces=100)
    with pytest.raises(ValueError, match="max_pieces"):
        P.count_pieces(net, max_pieces=0)
    for bad in (True, 2.5, "16"):
        with pytest.raises(TypeError, match="max_pieces"):
            P.count_pieces(net, max_pieces=bad)
    # a depth-60 sawtooth (2^60 pieces) is refused once its partition passes the cap
    with pytest.raises(ValueError, match=r"2,048 cells after ReLU layer 11"):
        P.count_pieces(st.sawtooth_net(60), max_pieces=2**10)


def test_max_pieces_guard_lets_small_counts_of_big_nets_through() -> None:
    """The product bound of g_40 is 4^40, but a window of 2^-30 holds 2^10 pieces (closed
    form); a net whose product bound is within the cap is never checked."""
    lo = Fraction(2**30 - 1, 2**30)
    assert P.count_pieces(st.sawtooth_net(40), (lo, Fraction(1)), max_pieces=2**10) == 2**10
    assert P.count_pieces(st.sawtooth_net(40), (lo, Fraction(1))) == 2**10
    small = N.random_relu_net([3, 3], "he", seed=0)
    assert P.piece_bound([3, 3]) == 16
    assert P.count_pieces(small, (-1.0, 1.0), max_pieces=16) == P.reference_count_pieces(small, (-1.0, 1.0))
    assert P.MAX_PIECES == 2**24


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_sawtooth_breakpoints_and_widths_closed_form(dtype) -> None:
    """The hot path (shared cell ends) against the closed form: g_L breaks at k / 2^L."""
    L = 9
    a = P.piece_analysis(st.sawtooth_net(L, dtype))
    assert a.breakpoints_exact() == [Fraction(k, 2**L) for k in range(1, 2**L)]
    assert np.array_equal(a.breakpoints, np.arange(1, 2**L) / 2**L)
    assert np.array_equal(a.widths(), np.full(2**L, 2.0**-L))
    assert a.stats["filtered_signs"] == a.stats["expansion_signs"] == a.stats["exact_cells"] == 0


# --------------------------------------------------------------------------- size guards (issue 19)
@pytest.mark.parametrize("call", [
    lambda: P.tooth_width(P.MAX_DEPTH + 1), lambda: P.visible_width(10**9),
    lambda: P.count_visible(st.sawtooth_net(2), 10**9), lambda: P.width_one_net(10**9),
    lambda: P.grid_count(st.sawtooth_net(2), n_points=P.MAX_GRID_POINTS + 1),
    lambda: P.perturbation_rows(st.sawtooth_net(3), [0.0], 10**9, 3),
    lambda: P.random_net_counts([2], [3], 10**9, [(0.0, 1.0)]),
])
def test_size_guards_refuse_before_work(call) -> None:
    """Sizes above the documented MAX_* constants are refused with a ValueError naming the
    guard (no independent oracle: the contract is the refusal itself)."""
    with pytest.raises(ValueError, match="size guard"):
        call()


def test_size_guards_admit_the_chapters_sizes() -> None:
    """The largest sizes the chapters use (paper profile) pass the guards; the values are
    the closed forms of notation.md (tooth 2^(1-L), visible 2^-L / 2)."""
    assert P.tooth_width(28) == Fraction(2, 2**28)
    assert P.visible_width(20) == 2.0**-20 / 2
    assert P.grid_count(st.sawtooth_net(3), (0.0, 1.0), 10**6 + 1) == 8
    assert P.MAX_NETS >= 50 and P.MAX_SEEDS >= 10 and P.MAX_GRID_POINTS >= 10**6 + 1


@pytest.mark.parametrize("dtype", [torch.complex64, torch.int32, "float64x", 1])
def test_grid_count_refuses_a_non_float_dtype(dtype) -> None:
    with pytest.raises((TypeError, ValueError), match="dtype"):
        P.grid_count(st.sawtooth_net(2), dtype=dtype)


def test_count_pieces_refuses_past_an_explicit_cap_quickly() -> None:
    """sawtooth_net(28) with max_pieces=2**16: refused at the first layer whose cells exceed
    the cap (layer 17: 2^17 cells), the message naming max_pieces."""
    with pytest.raises(ValueError, match="max_pieces=65,536.*layer 17"):
        P.count_pieces(st.sawtooth_net(28), max_pieces=2**16)
