"""Sawtooth constructions: the hat map, Telgarsky's sawtooth networks, Yarotsky's x^2 network.

Sources: Telgarsky, *Benefits of depth in neural networks* (COLT 2016) for the hat map and its
compositions; Yarotsky, *Error bounds for approximations with deep ReLU networks* (Neural
Networks 94, 2017) for ``f_m(x) = x - sum_{s<=m} g_s(x) / 4^s``.  Notation: the book's
*Notation* page (``g = 2 relu(x) - 4 relu(x - 1/2) + 2 relu(x - 1)``, ``g_s``: s-fold).

Three layers of the module (size guards: :data:`MAX_DEPTH` and its kin, checked first):

* **Exact references** (:class:`fractions.Fraction`): :func:`hat_exact`,
  :func:`sawtooth_exact`, :func:`yarotsky_exact`, :func:`product_exact`, and
  :func:`net_exact`, which evaluates any ``Linear``/``ReLU`` network exactly with its weights
  as stored.  They accept ``Fraction``, ``int`` and floats (a float converts *exactly*).
* **Networks** (``nn.Sequential`` of ``nn.Linear``/``nn.ReLU``, input ``(n, 1)``):
  :func:`sawtooth_net`, :func:`yarotsky_square_net`, :func:`yarotsky_product_net` (input
  ``(n, 2)``) and the one-hidden-layer :func:`shallow_sawtooth_net` and :func:`shallow_pl_net`.
  Every weight is a dyadic rational that the requested format represents exactly; a format
  that cannot raises ``ValueError``.  Building a network draws no random numbers.
* **Shallow approximation of g_k**: an exact lower bound for every continuous piecewise-linear
  function with a given number of pieces (:func:`pieces_l2_lower_bound_sq`,
  :func:`pieces_sup_lower_bound`) and exact best L2 fits on given knots (:func:`best_pl_fit`),
  which bracket the best fit by a one-hidden-layer net (:func:`shallow_fit_bounds`).

Formats: float16, bfloat16, float32, float64.  The sawtooth weights are exact in all four, and
so is its forward pass on [0, 1] in IEEE arithmetic with gradual underflow;
:func:`forward_exactness` and :func:`first_layer_flushes` check what torch's kernels do.
Yarotsky's weights are exact for ``m <= yarotsky_max_exact_m(dtype)`` (12, 67, 75, 537).
"""

from __future__ import annotations

import bisect
import itertools
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from numbers import Rational
from typing import Any

import numpy as np
import torch
from torch import nn

from lib.exact import (FLOAT_DTYPES, InvalidArgumentError, check_count, check_dtype, check_knots,
                       dyadic_parts, exact_weights, linear_relu_layers, to_fraction)

__all__ = [
    "SUPPORTED_DTYPES", "SAWTOOTH_WIDTH", "YAROTSKY_WIDTH", "InvalidArgumentError", "to_fraction",
    "hat_exact", "hat_numerator", "sawtooth_exact", "yarotsky_exact", "product_exact", "net_exact",
    "hat", "sawtooth", "yarotsky_square", "sawtooth_net", "yarotsky_square_net",
    "yarotsky_product_net", "shallow_pl_net", "shallow_sawtooth_net", "hidden_widths",
    "parameter_count", "sawtooth_parameter_count", "yarotsky_parameter_count",
    "shallow_sawtooth_parameter_count", "yarotsky_max_exact_m", "grid_pieces",
    "yarotsky_max_error_exact", "PLFit", "best_pl_fit", "uniform_knots", "leading_kink_knots",
    "pieces_l2_lower_bound_sq", "pieces_sup_lower_bound", "ShallowBounds", "shallow_fit_bounds",
    "dyadic_net_exact", "forward_exactness", "layer_rounding_mismatches",
    "yarotsky_rounding_errors", "square_error_on_cells", "first_layer_flushes",
    "smallest_flushing_batch",
]

#: The floating-point formats the networks can be built in (:data:`lib.exact.FLOAT_DTYPES`).
SUPPORTED_DTYPES = FLOAT_DTYPES
#: Hidden width of :func:`sawtooth_net` (the three ReLUs of g).
SAWTOOTH_WIDTH = 3
#: Size guards (checked before any work; ``ValueError`` naming the argument): a depth-``L``
#: sawtooth or tent network has ``L`` layers, Yarotsky's network ``m`` channels, the one-layer
#: sawtooth ``2^L`` units; exact work on the grid ``k/2^L`` has ``2^L`` Fractions.
MAX_DEPTH = 4096
MAX_M = 1024  # beyond float64's representability limit (m = 537)
MAX_SHALLOW_DEPTH = 24
MAX_GRID_DEPTH = 20
MAX_KNOTS = 1 << 20
#: Hidden width of :func:`yarotsky_square_net` (an accumulator plus the three ReLUs of g).
YAROTSKY_WIDTH = 4

_HALF = Fraction(1, 2)
#: g(y) = sum_j OUT[j] * relu(y - SHIFT[j]).
_HAT_SHIFTS = (Fraction(0), _HALF, Fraction(1))
_HAT_OUT = (Fraction(2), Fraction(-4), Fraction(2))


# --------------------------------------------------------------------------- exact references
def hat_exact(x: Any) -> Fraction:
    """The hat map ``g(x) = 2 relu(x) - 4 relu(x - 1/2) + 2 relu(x - 1)``, exactly.

    Equals ``2x`` on ``[0, 1/2]``, ``2(1 - x)`` on ``[1/2, 1]`` and 0 outside ``[0, 1]``.
    ``x``: ``Fraction``, ``int`` or float (converted exactly).  Returns a ``Fraction``.
    """
    return _g(to_fraction(x))


def hat_numerator(a: int, n: int) -> int:
    """Numerator of ``g(a/n)`` over the same denominator ``n >= 1`` (a power of two)."""
    if not (type(a) is int and type(n) is int and n > 0):  # the loops' fast path: no checks
        a, n = check_count(a, "a", minimum=None), check_count(n, "n")
    return 0 if a <= 0 or a >= n else 2 * a if 2 * a <= n else 2 * n - 2 * a


def _g(y: Fraction) -> Fraction:
    """The hat map on a ``Fraction``, by cases (equal to the ReLU formula; tested)."""
    return Fraction(0) if y <= 0 or y >= 1 else 2 * y if y <= _HALF else 2 - 2 * y


def sawtooth_exact(x: Any, depth: int) -> Fraction:
    """``g_depth(x)``: the hat map composed ``depth >= 1`` times, exactly (Telgarsky 2016).

    On ``[0, 1]`` it has ``2^depth`` affine pieces and ``2^(depth-1)`` teeth; on the cell
    ``[k/2^(depth-1), (k+1)/2^(depth-1)]`` it equals ``1 - |2^depth x - (2k+1)|``.
    Guard: ``1 <= depth <=`` :data:`MAX_DEPTH`.
    """
    depth = check_count(depth, "depth", maximum=MAX_DEPTH)
    y = to_fraction(x)
    dyadic = dyadic_parts(y)
    if dyadic is not None:  # integer fast path, same values (tested against _g)
        a, n = dyadic[0], 1 << dyadic[1]
        for _ in range(depth):
            a = hat_numerator(a, n) if a else 0
        return Fraction(a, n)
    for _ in range(depth):
        y = _g(y)
    return y


def yarotsky_exact(x: Any, m: int) -> Fraction:
    """Yarotsky's ``f_m(x) = x - sum_{s=1}^m g_s(x) / 4^s`` (``m >= 1``), exactly.

    On ``[0, 1]``, ``f_m`` is the piecewise-linear interpolant of ``x^2`` at the nodes
    ``k / 2^m`` and ``max |f_m - x^2| = 2^(-2m-2)``, attained at the cell midpoints
    (Yarotsky 2017; checked exactly in the book).  Guard: ``1 <= m <=`` :data:`MAX_M`.
    """
    m = check_count(m, "m", maximum=MAX_M)
    x = to_fraction(x)
    dyadic = dyadic_parts(x)
    if dyadic is not None:  # integer fast path over the common denominator 2^N 4^m
        a, n = dyadic[0], 1 << dyadic[1]
        total, g = a * 4**m, a
        for s in range(1, m + 1):
            g = hat_numerator(g, n)
            total -= g * 4 ** (m - s)
        return Fraction(total, n * 4**m)
    total, g = x, x
    for s in range(1, m + 1):
        g = _g(g)
        total -= g / 4**s
    return total


def product_exact(x: Any, y: Any, m: int) -> Fraction:
    """The polarisation product ``2 f_m((x+y)/2) - f_m(x)/2 - f_m(y)/2``, exactly.

    For ``x, y`` in ``[0, 1]`` it approximates ``xy = 2((x+y)/2)^2 - x^2/2 - y^2/2`` with
    error at most ``2^(-2m-1)``, attained at ``(0, 2^-m)``.
    """
    x, y = to_fraction(x, "x"), to_fraction(y, "y")
    return 2 * yarotsky_exact((x + y) / 2, m) - yarotsky_exact(x, m) / 2 - yarotsky_exact(y, m) / 2


def net_exact(net: nn.Sequential, x: Any) -> Fraction | list[Fraction]:
    """Evaluate a ``Linear``/``ReLU`` network exactly, with its weights as stored.

    Every weight (of any of the four formats) and every input converts exactly to a
    ``Fraction`` (:func:`lib.exact.exact_weights`); the result is the exact value of the
    function the stored weights define.
    ``x``: one point (returns a ``Fraction``, or a list if the output has several
    coordinates) or a sequence of points (returns a list).  A point is a scalar when the
    first layer has ``in_features == 1``, else a sequence of ``in_features`` numbers.
    """
    layers = linear_relu_layers(net)
    n_in = layers[0].in_features
    exact = exact_weights(layers)

    def run(value: Any) -> Fraction | list[Fraction]:
        h = [to_fraction(value)] if n_in == 1 else [to_fraction(v) for v in value]
        if len(h) != n_in:
            raise ValueError(f"x must have {n_in} coordinates per point, got {len(h)}")
        for item in exact:
            if item is None:
                h = [v if v > 0 else Fraction(0) for v in h]
            else:
                w, b = item
                h = [sum((wi * hi for wi, hi in zip(row, h)), bias) for row, bias in zip(w, b)]
        return h[0] if len(h) == 1 else h

    def is_point(v: Any) -> bool:
        if n_in == 1:
            return isinstance(v, (Rational, float, np.number)) or (
                isinstance(v, torch.Tensor) and v.dim() == 0)
        return len(v) > 0 and not isinstance(v[0], (Sequence, np.ndarray, torch.Tensor))

    return run(x) if is_point(x) else [run(v) for v in x]


# --------------------------------------------------------------------------- floating point
def hat(x: Any) -> Any:
    """The hat map g, ``2 relu(x) - 4 relu(x - 1/2) + 2 relu(x - 1)``, in the input's own
    precision: tensor -> tensor (dtype, device kept); ndarray or list -> ndarray (integers ->
    float64); ``Fraction`` -> ``Fraction`` (:func:`hat_exact`); ``int``/``float`` -> ``float``.
    """
    if isinstance(x, torch.Tensor):
        if not torch.is_floating_point(x):
            raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
        return 2 * torch.relu(x) - 4 * torch.relu(x - 0.5) + 2 * torch.relu(x - 1)
    if isinstance(x, (bool, np.bool_)):
        raise TypeError("x must be a number, tensor or array, got a bool")
    if isinstance(x, (int, float, np.number)):
        return float(hat(np.asarray(x, dtype=np.float64)))
    if isinstance(x, Rational):
        return hat_exact(x)
    arr = np.asarray(x)
    if arr.dtype == object or arr.dtype.kind not in "fiu":
        raise TypeError(f"x must be a real tensor, array or number, got {type(x).__name__}")
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    half, one, zero = arr.dtype.type(0.5), arr.dtype.type(1), arr.dtype.type(0)
    return (2 * np.maximum(arr, zero) - 4 * np.maximum(arr - half, zero)
            + 2 * np.maximum(arr - one, zero))


def sawtooth(x: Any, depth: int) -> Any:
    """``g_depth`` applied to a tensor, array or scalar with :func:`hat` (same precision)."""
    depth = check_count(depth, "depth", maximum=MAX_DEPTH)
    for _ in range(depth):
        x = hat(x)
    return x


def yarotsky_square(x: Any, m: int) -> Any:
    """``f_m(x) = x - sum_{s<=m} g_s(x)/4^s`` on a tensor, array or scalar (same precision)."""
    m = check_count(m, "m", maximum=MAX_M)
    if isinstance(x, Rational) and not isinstance(x, (bool, int, np.number)):
        return yarotsky_exact(x, m)
    total, g = x, x
    for s in range(1, m + 1):
        g = hat(g)
        total = total - g / 4**s
    return total


# --------------------------------------------------------------------------- networks
def _linear(weight: Sequence[Sequence[Fraction]], bias: Sequence[Fraction], dtype: torch.dtype,
            what: str) -> nn.Linear:
    """An ``nn.Linear`` holding exactly ``weight``/``bias`` in ``dtype`` (else ValueError).

    Uses ``skip_init``: building a network consumes no random numbers.
    """
    w64 = torch.tensor([[float(v) for v in row] for row in weight], dtype=torch.float64)
    b64 = torch.tensor([float(v) for v in bias], dtype=torch.float64)
    w, b = w64.to(dtype), b64.to(dtype)
    exact = [Fraction(v) for row in weight for v in row] + [Fraction(v) for v in bias]
    stored = w.to(torch.float64).flatten().tolist() + b.to(torch.float64).tolist()
    if any(Fraction(s) != v for s, v in zip(stored, exact)):
        raise ValueError(f"{what}: the construction's weights are not exactly representable in "
                         f"{dtype} (underflow, overflow or too few significand bits)")
    layer = nn.utils.skip_init(nn.Linear, w64.shape[1], w64.shape[0], dtype=dtype)
    with torch.no_grad():
        layer.weight.copy_(w)
        layer.bias.copy_(b)
    return layer


def _hat_rows(scale: Fraction = Fraction(1)) -> list[Fraction]:
    """Output weights of one hat block, times ``scale``."""
    return [scale * c for c in _HAT_OUT]


def sawtooth_net(depth: int, dtype: torch.dtype = torch.float64, *,
                 units: int = SAWTOOTH_WIDTH) -> nn.Sequential:
    """A ReLU network computing ``g_depth`` (Telgarsky's sawtooth), shape ``(n,1) -> (n,1)``.

    ``depth`` hidden layers of width 3 (:data:`SAWTOOTH_WIDTH`), ``12 depth - 2`` parameters.
    Hidden layer ``l`` holds ``relu(g_{l-1}(x) - t)`` for ``t = 0, 1/2, 1``; the next layer
    forms ``g_l = 2 h_0 - 4 h_1 + 2 h_2`` inside its affine map.  Because ``g`` is 0 outside
    ``[0, 1]``, the network equals ``g_depth`` on all of R.  Weights are 0, +-1, 2, -4 and
    -1/2: exact in all four formats.  ``units=2`` drops the unit ``relu(y - 1)`` (zero for
    ``y <= 1``): width 2, ``6 depth + 1`` parameters, equal to ``g_depth`` on ``[0, 1]``.
    """
    depth = check_count(depth, "depth", maximum=MAX_DEPTH)
    dtype = check_dtype(dtype, names=False)
    units = check_count(units, "units", minimum=2, maximum=3)
    shifts = [-t for t in _HAT_SHIFTS[:units]]
    rows = _hat_rows()[:units]
    layers: list[nn.Module] = [_linear([[1]] * units, shifts, dtype, "sawtooth_net"), nn.ReLU()]
    for _ in range(depth - 1):
        layers += [_linear([rows] * units, shifts, dtype, "sawtooth_net"), nn.ReLU()]
    layers.append(_linear([rows], [0], dtype, "sawtooth_net"))
    return nn.Sequential(*layers)


def _yarotsky_blocks(m: int) -> list[tuple[list[list[Fraction]], list[Fraction]]]:
    """The ``(weight, bias)`` of the ``m + 1`` affine maps of :func:`yarotsky_square_net`."""
    shifts = [-t for t in _HAT_SHIFTS]
    maps = [([[1], [1], [1], [1]], [Fraction(0)] + shifts)]
    for s in range(1, m):
        acc_row = [Fraction(1)] + _hat_rows(Fraction(-1, 4**s))
        hat_row = [Fraction(0)] + _hat_rows()
        maps.append(([acc_row, hat_row, hat_row, hat_row], [Fraction(0)] + shifts))
    maps.append(([[Fraction(1)] + _hat_rows(Fraction(-1, 4**m))], [Fraction(0)]))
    return maps


def yarotsky_square_net(m: int, dtype: torch.dtype = torch.float64) -> nn.Sequential:
    """Yarotsky's network for ``x^2``: computes ``f_m(x) = x - sum_{s<=m} g_s(x)/4^s`` on [0,1].

    ``m`` hidden layers of width 4 (:data:`YAROTSKY_WIDTH`): neuron 0 carries the partial sum
    ``f_{s-1}(x) >= x^2 >= 0`` (so the ReLU leaves it unchanged), neurons 1-3 carry the hat
    block of ``g_s``; ``20 m - 7`` parameters, ``2^m`` affine pieces, sup error ``2^(-2m-2)``
    on [0, 1].  Shape ``(n, 1) -> (n, 1)``.  The weights are dyadic, the smallest being
    ``2^(1-2m)``; a ``dtype`` that cannot hold them exactly (float16 for ``m > 12``) raises
    ``ValueError`` (see :func:`yarotsky_max_exact_m`).
    """
    m = check_count(m, "m", maximum=MAX_M)
    dtype = check_dtype(dtype, names=False)
    what = f"yarotsky_square_net(m={m}, dtype={dtype})"
    maps = _yarotsky_blocks(m)
    layers: list[nn.Module] = []
    for i, (w, b) in enumerate(maps):
        layers.append(_linear(w, b, dtype, what))
        if i < len(maps) - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _block_diag(blocks: Sequence[Sequence[Sequence[Fraction]]]) -> list[list[Fraction]]:
    cols = sum(len(b[0]) for b in blocks)
    out, offset = [], 0
    for block in blocks:
        for row in block:
            full = [Fraction(0)] * cols
            full[offset:offset + len(row)] = row
            out.append(full)
        offset += len(block[0])
    return out


def yarotsky_product_net(m: int, dtype: torch.dtype = torch.float64) -> nn.Sequential:
    """A ReLU network for ``xy`` on ``[0,1]^2`` by polarisation, shape ``(n, 2) -> (n, 1)``.

    Computes ``2 f_m((x+y)/2) - f_m(x)/2 - f_m(y)/2`` (:func:`product_exact`) with three
    copies of :func:`yarotsky_square_net` side by side (block-diagonal weights): ``m`` hidden
    layers of width 12, ``36 + 156 (m - 1) + 13 = 156 m - 107`` parameters counting the zero
    blocks.  Error at most ``2^(-2m-1)`` for ``x, y`` in ``[0, 1]``.
    """
    m = check_count(m, "m", maximum=MAX_M)
    dtype = check_dtype(dtype, names=False)
    what = f"yarotsky_product_net(m={m}, dtype={dtype})"
    maps = _yarotsky_blocks(m)
    first_w, first_b = maps[0]
    half, one, zero = Fraction(1, 2), Fraction(1), Fraction(0)
    inputs = ([half, half], [one, zero], [zero, one])  # the inputs (x+y)/2, x and y
    w0 = [[c * r[0] for c in mix] for mix in inputs for r in first_w]
    layers: list[nn.Module] = [_linear(w0, list(first_b) * 3, dtype, what), nn.ReLU()]
    for w, b in maps[1:-1]:
        layers += [_linear(_block_diag([w, w, w]), list(b) * 3, dtype, what), nn.ReLU()]
    last_w, _ = maps[-1]
    row = ([2 * v for v in last_w[0]] + [-v / 2 for v in last_w[0]] + [-v / 2 for v in last_w[0]])
    layers.append(_linear([row], [Fraction(0)], dtype, what))
    return nn.Sequential(*layers)


def shallow_pl_net(knots: Sequence[Any], values: Sequence[Any],
                   dtype: torch.dtype = torch.float64) -> nn.Sequential:
    """A one-hidden-layer ReLU network equal to the PL interpolant of ``(knots, values)``.

    ``knots`` ``t_0 < ... < t_P`` and ``values`` (converted exactly); on ``[t_0, t_P]`` the
    network equals the continuous piecewise-linear function through the points.  ``P`` units:
    unit 0 is ``relu(x - t_0)`` with output weight the first slope, unit ``i`` is
    ``relu(x - t_i)`` with output weight the slope jump at ``t_i``; output bias ``values[0]``.
    ``3 P + 1`` parameters.  Raises ``ValueError`` when ``dtype`` cannot hold these numbers
    exactly.  (Every continuous PL function with ``P`` pieces on ``[0, 1]`` is therefore a
    ``P``-unit network there.)
    """
    dtype = check_dtype(dtype, names=False)
    ks = [to_fraction(k, f"knots[{i}]") for i, k in enumerate(knots)]
    vs = [to_fraction(v, f"values[{i}]") for i, v in enumerate(values)]
    if len(ks) < 2 or len(ks) != len(vs):
        raise ValueError("knots and values must have the same length >= 2, "
                         f"got {len(ks)} and {len(vs)}")
    check_knots(ks, exact=True)
    slopes = [(vb - va) / (b - a) for a, b, va, vb in zip(ks, ks[1:], vs, vs[1:])]
    out = [slopes[0]] + [b - a for a, b in zip(slopes, slopes[1:])]
    what = f"shallow_pl_net({len(slopes)} pieces, dtype={dtype})"
    hidden = _linear([[1]] * len(slopes), [-k for k in ks[:-1]], dtype, what)
    return nn.Sequential(hidden, nn.ReLU(), _linear([out], [vs[0]], dtype, what))


def shallow_sawtooth_net(depth: int, dtype: torch.dtype = torch.float64) -> nn.Sequential:
    """A one-hidden-layer ReLU network equal to ``g_depth`` on ``[0, 1]`` with ``2^depth`` units.

    :func:`shallow_pl_net` through the kinks ``i/2^depth``: unit 0 is ``relu(x)`` (output
    weight ``2^depth``, the first slope), unit ``i`` is ``relu(x - i/2^depth)`` with output
    weight ``-+2^(depth+1)`` (the slope jump at the ``i``-th kink).  ``3 * 2^depth + 1``
    parameters; ``2^depth`` units is the minimum on ``[0, 1]`` (see the chapter).  Raises
    ``ValueError`` where ``dtype`` cannot hold the knots or weights exactly (float16:
    depth > 11; bfloat16: depth > 8).
    """
    depth = check_count(depth, "depth", maximum=MAX_SHALLOW_DEPTH)
    dtype = check_dtype(dtype, names=False)
    n = 2**depth
    knots = [Fraction(i, n) for i in range(n + 1)]
    return shallow_pl_net(knots, [Fraction(i % 2) for i in range(n + 1)], dtype)


def hidden_widths(net: nn.Sequential) -> list[int]:
    """Widths ``n_1, ..., n_L`` of the hidden layers (Linear layers followed by a ReLU)."""
    layers = linear_relu_layers(net)
    return [layer.out_features for layer, nxt in zip(layers, layers[1:])
            if isinstance(layer, nn.Linear) and isinstance(nxt, nn.ReLU)]


def parameter_count(net: nn.Module) -> int:
    """Number of scalar parameters (weights and biases) of ``net``."""
    return sum(p.numel() for p in net.parameters())


def sawtooth_parameter_count(depth: int) -> int:
    """Parameters of :func:`sawtooth_net`: ``6 + 12 (depth - 1) + 4 = 12 depth - 2``."""
    return 12 * check_count(depth, "depth") - 2


def yarotsky_parameter_count(m: int) -> int:
    """Parameters of :func:`yarotsky_square_net`: ``8 + 20 (m - 1) + 5 = 20 m - 7``."""
    return 20 * check_count(m, "m") - 7


def shallow_sawtooth_parameter_count(depth: int) -> int:
    """Parameters of :func:`shallow_sawtooth_net`: ``3 * 2^depth + 1``."""
    return 3 * 2 ** check_count(depth, "depth", maximum=MAX_DEPTH) + 1


def yarotsky_max_exact_m(dtype: torch.dtype) -> int:
    """Largest ``m`` whose Yarotsky weights are exact in ``dtype``: the smallest, ``2^(1-2m)``,
    must be at least the smallest subnormal ``2^e``, so ``floor((1 - e)/2)``: 12, 67, 75, 537."""
    info = torch.finfo(check_dtype(dtype, names=False))
    return (1 - round(math.log2(info.tiny * info.eps))) // 2   # tiny * eps: smallest subnormal


# --------------------------------------------------------------------------- exact analysis
def grid_pieces(values: Sequence[Any]) -> int:
    """Number of maximal runs of equal slope of a function sampled on a uniform grid.

    ``values`` are the function's values at ``N + 1`` equally spaced points (exact numbers:
    ``Fraction``, ``int`` or floats that are exact values).  The result is the number of
    affine pieces of the function *provided it is affine between consecutive grid points*
    (true for ``g_s`` on the grid ``k/2^L``, ``L >= s``, and ``f_m`` on ``k/2^L``, ``L >= m``).
    It is not a general piece counter: pieces narrower than the grid are invisible to it.
    """
    vals = [to_fraction(v, f"values[{i}]") for i, v in enumerate(values)]
    if len(vals) < 2:
        raise ValueError(f"values must hold at least 2 points, got {len(vals)}")
    diffs = [b - a for a, b in zip(vals, vals[1:])]  # proportional to the slopes
    return 1 + sum(1 for a, b in zip(diffs, diffs[1:]) if a != b)


def yarotsky_max_error_exact(m: int) -> tuple[Fraction, list[Fraction]]:
    """``max_{[0,1]} |f_m(x) - x^2|`` and all its maximisers, computed exactly cell by cell.

    ``f_m`` is affine on each cell ``[k/2^m, (k+1)/2^m]`` (its breakpoints lie on that grid),
    so ``f_m - x^2`` is a concave quadratic there, ``-x^2 + a x + b``: its extreme values on
    the cell are at the endpoints and at the vertex ``x* = a/2`` if inside.  The slope ``a``
    comes from exact endpoint values of :func:`yarotsky_exact`.  Cost: ``O(m 2^m)`` Fraction
    operations (guard: ``m <=`` :data:`MAX_GRID_DEPTH`).
    """
    m = check_count(m, "m", maximum=MAX_GRID_DEPTH)
    n = 2**m
    nodes = [Fraction(k, n) for k in range(n + 1)]
    vals = [yarotsky_exact(x, m) for x in nodes]
    errors: dict[Fraction, Fraction] = {}
    for k in range(n):
        a, b = nodes[k], nodes[k + 1]
        slope = (vals[k + 1] - vals[k]) / (b - a)
        for x in [a, b] + ([slope / 2] if a < slope / 2 < b else []):
            errors[x] = abs(vals[k] + slope * (x - a) - x * x)
    best = max(errors.values())
    return best, sorted(x for x, err in errors.items() if err == best)


# --------------------------------------------------------------------------- shallow fits
def pieces_l2_lower_bound_sq(depth: int, pieces: int) -> Fraction:
    """Exact lower bound on ``||p - g_depth||^2_{L2[0,1]}`` over continuous piecewise-linear p.

    For every continuous ``p`` with at most ``pieces`` affine pieces on ``[0, 1]``:
    ``||p - g_k||_2^2 >= (1/12) max(0, 1 - (pieces - 1) / 2^(k-1))``.  Proof (the book's,
    chapter *Sawtooth constructions*): ``p`` has ``pieces - 1`` breakpoints, each inside at
    most one of the ``2^(k-1)`` teeth; on a tooth of width ``2^(1-k)`` without one, ``p`` is
    affine and the best affine fit of a tent leaves ``width/12``.  Equality for ``pieces = 1``.
    Guard: ``depth <=`` :data:`MAX_DEPTH`.
    """
    k = check_count(depth, "depth", maximum=MAX_DEPTH)
    pieces = check_count(pieces, "pieces")
    teeth = 2 ** (k - 1)
    return Fraction(max(0, teeth - (pieces - 1)), 12 * teeth)


def pieces_sup_lower_bound(depth: int, pieces: int) -> Fraction:
    """Exact lower bound on ``max_{[0,1]} |p - g_depth|`` for continuous p with ``pieces`` pieces.

    ``1/2`` if ``pieces <= 2^(depth-1)`` (some tooth contains no breakpoint and an affine
    function misses the tent values 0, 1, 0 at its ends and middle by at least 1/2 at one of
    them), else 0.  The constant ``1/2`` attains it, so below that size no such ``p`` beats a
    constant in the sup norm.  Guard: ``depth <=`` :data:`MAX_DEPTH`.
    """
    k = check_count(depth, "depth", maximum=MAX_DEPTH)
    pieces = check_count(pieces, "pieces")
    return _HALF if pieces <= 2 ** (k - 1) else Fraction(0)


@dataclass(frozen=True)
class PLFit:
    """An exact best L2 fit of ``g_depth`` by continuous piecewise-linear functions on ``knots``.

    ``values[i]`` is the fit at ``knots[i]``; ``l2_error_sq`` is ``||p - g||^2_{L2[0,1]}`` and
    ``sup_error`` is ``max_{[0,1]} |p - g|``, both exact.
    """

    depth: int
    knots: tuple[Fraction, ...]
    values: tuple[Fraction, ...]
    l2_error_sq: Fraction
    sup_error: Fraction

    @property
    def pieces(self) -> int:
        """Number of knot intervals (an upper bound on the fit's affine pieces)."""
        return len(self.knots) - 1

    @property
    def l2_error(self) -> float:
        """``sqrt(l2_error_sq)`` as a float."""
        return math.sqrt(self.l2_error_sq)

    def __call__(self, x: Any) -> Fraction:
        """The fit at ``x`` in ``[0, 1]``, exactly."""
        return _interp(self.knots, self.values, to_fraction(x))


def _interp(knots: Sequence[Fraction], values: Sequence[Fraction], x: Fraction) -> Fraction:
    if not knots[0] <= x <= knots[-1]:
        raise ValueError(f"x must lie in [{knots[0]}, {knots[-1]}], got {x}")
    i = min(max(bisect.bisect_right(knots, x) - 1, 0), len(knots) - 2)
    a, b = knots[i], knots[i + 1]
    return values[i] + (values[i + 1] - values[i]) * (x - a) / (b - a)


def _check_knots(knots: Iterable[Any]) -> tuple[Fraction, ...]:
    ks = check_knots(knots, exact=True)
    if ks[0] != 0 or ks[-1] != 1:
        raise ValueError("knots must start at 0 and end at 1 (at least two knots)")
    return ks


def best_pl_fit(depth: int, knots: Iterable[Any]) -> PLFit:
    """The best L2[0,1] approximation of ``g_depth`` by continuous PL functions on ``knots``.

    ``knots``: ``0 = t_0 < ... < t_P = 1`` (Fractions, ints or floats, converted exactly).
    Solves the normal equations in the hat-function basis exactly: the Gram matrix is
    tridiagonal (``(h_i + h_{i+1})/3`` and ``h_i/6``), the right-hand side integrates products
    of affine functions on the merged breakpoints of ``g_depth`` and the knots (exact
    formula), and ``||g - p||^2 = ||g||^2 - <c, b>``.  Everything is a ``Fraction``.
    Guard: ``depth <=`` :data:`MAX_GRID_DEPTH` (``2^depth`` kinks).
    """
    k = check_count(depth, "depth", maximum=MAX_GRID_DEPTH)
    ks = _check_knots(knots)
    n = len(ks)
    kinks = [Fraction(i, 2**k) for i in range(2**k + 1)]
    points = sorted(set(ks) | set(kinks))
    gvals = {t: sawtooth_exact(t, k) for t in points}

    rhs = [Fraction(0)] * n
    norm_sq = Fraction(0)
    cell = 0
    for u, v in zip(points, points[1:]):
        while ks[cell + 1] <= u:
            cell += 1
        a, b = ks[cell], ks[cell + 1]
        gu, gv, w = gvals[u], gvals[v], v - u
        # basis functions on [a, b]: phi_left = (b - x)/(b - a), phi_right = (x - a)/(b - a)
        lu, lv = (b - u) / (b - a), (b - v) / (b - a)
        ru, rv = 1 - lu, 1 - lv
        rhs[cell] += w * (2 * gu * lu + gu * lv + gv * lu + 2 * gv * lv) / 6
        rhs[cell + 1] += w * (2 * gu * ru + gu * rv + gv * ru + 2 * gv * rv) / 6
        norm_sq += w * (gu * gu + gu * gv + gv * gv) / 3

    h = [b - a for a, b in zip(ks, ks[1:])]
    zero = Fraction(0)
    diag = [((h[i - 1] if i > 0 else zero) + (h[i] if i < n - 1 else zero)) / 3 for i in range(n)]
    off = [hi / 6 for hi in h]
    # Thomas algorithm (the Gram matrix is symmetric positive definite).
    cp, dp = [Fraction(0)] * n, [Fraction(0)] * n
    for i in range(n):
        denom = diag[i] - (off[i - 1] * cp[i - 1] if i > 0 else 0)
        cp[i] = off[i] / denom if i < n - 1 else Fraction(0)
        dp[i] = (rhs[i] - (off[i - 1] * dp[i - 1] if i > 0 else 0)) / denom
    coef = [Fraction(0)] * n
    coef[-1] = dp[-1]
    for i in range(n - 2, -1, -1):
        coef[i] = dp[i] - cp[i] * coef[i + 1]

    err_sq = norm_sq - sum((c * r for c, r in zip(coef, rhs)), Fraction(0))
    if not isinstance(err_sq, Fraction) or err_sq < 0:  # exact arithmetic cannot give this
        raise ArithmeticError(f"best_pl_fit lost exactness: error^2 = {err_sq!r}")
    sup = max(abs(_interp(ks, coef, t) - gvals[t]) for t in points)
    return PLFit(k, ks, tuple(coef), err_sq, sup)


def uniform_knots(pieces: int) -> list[Fraction]:
    """``[0, 1/P, 2/P, ..., 1]`` for ``P = pieces`` (at most :data:`MAX_KNOTS`)."""
    p = check_count(pieces, "pieces", maximum=MAX_KNOTS)
    return [Fraction(i, p) for i in range(p + 1)]


def leading_kink_knots(depth: int, pieces: int) -> list[Fraction]:
    """Knots that follow ``g_depth`` from the left: ``0, 1/2^k, ..., (P-1)/2^k, 1``.

    With ``P = pieces <= 2^depth`` pieces the fit can copy ``g_depth`` on
    ``[0, (P-1)/2^depth]`` and has one piece for the rest; ``P = 2^depth`` gives all kinks.
    Guards: ``depth <=`` :data:`MAX_DEPTH`, ``pieces <=`` :data:`MAX_KNOTS`.
    """
    k = check_count(depth, "depth", maximum=MAX_DEPTH)
    p = check_count(pieces, "pieces", maximum=MAX_KNOTS)
    if p > 2**k:
        raise ValueError(f"pieces must be at most 2^depth = {2**k}, got {p}")
    return [Fraction(i, 2**k) for i in range(p)] + [Fraction(1)]


@dataclass(frozen=True)
class ShallowBounds:
    """Bounds on ``inf ||N - g_depth||_{L2[0,1]}`` over one-hidden-layer ReLU nets N of a width.

    ``lower_sq``: :func:`pieces_l2_lower_bound_sq` with ``width + 1`` pieces (a net with W
    units has at most W + 1 pieces on [0, 1]).  ``upper_sq``: the better of the exact best
    fits on :func:`uniform_knots` and :func:`leading_kink_knots` with ``min(width, 2^depth)``
    pieces (every continuous PL function with W pieces on [0, 1] is a W-unit net there).
    ``sup_lower``: :func:`pieces_sup_lower_bound` with ``width + 1`` pieces.
    """

    depth: int
    width: int
    lower_sq: Fraction
    upper_sq: Fraction
    sup_lower: Fraction
    upper_fit: PLFit
    upper_knots: str

    lower = property(lambda self: math.sqrt(self.lower_sq), doc="``sqrt(lower_sq)``.")
    upper = property(lambda self: math.sqrt(self.upper_sq), doc="``sqrt(upper_sq)``.")


def shallow_fit_bounds(depth: int, width: int) -> ShallowBounds:
    """Exact lower and upper bounds on the best L2 fit of ``g_depth`` by ``width`` ReLU units.

    See :class:`ShallowBounds`.  The true best fit lies between the two; neither bound comes
    from an optimiser.  Guard: ``depth <=`` :data:`MAX_GRID_DEPTH` (as :func:`best_pl_fit`).
    """
    k = check_count(depth, "depth", maximum=MAX_GRID_DEPTH)
    w = check_count(width, "width")
    pieces = min(w, 2**k)
    fits = {"uniform": best_pl_fit(k, uniform_knots(pieces)),
            "leading kinks": best_pl_fit(k, leading_kink_knots(k, pieces))}
    name = min(fits, key=lambda key: fits[key].l2_error_sq)
    return ShallowBounds(k, w, pieces_l2_lower_bound_sq(k, w + 1), fits[name].l2_error_sq,
                         pieces_sup_lower_bound(k, w + 1), fits[name], name)


# --------------------------------------------------------------------------- chapter checks
def dyadic_net_exact(net: nn.Sequential, points: Iterable[Any]) -> list[Fraction]:
    """The exact outputs of a scalar ``Linear``/``ReLU`` network at dyadic points.

    The same values as :func:`net_exact`, computed faster for this case: every weight of a
    binary format and every dyadic point is an integer over a power of two, so the forward
    pass runs on Python integers (NumPy object arrays) with one common power of two per
    layer.  ``points``: dyadic rationals (``Fraction``, ``int`` or floats); a point that is
    not dyadic raises ``ValueError``.  Returns a list of ``Fraction`` (empty for no points).
    """
    if isinstance(points, (str, bytes)) or not isinstance(points, Iterable):
        raise TypeError(f"points must be an iterable of numbers, got {type(points).__name__}")
    layers = linear_relu_layers(net)
    pts = [to_fraction(t, f"points[{i}]") for i, t in enumerate(points)]
    if not pts:
        return []
    for t in pts:
        if t.denominator & (t.denominator - 1):
            raise ValueError(f"points must be dyadic rationals, got {t}")
    e = max(t.denominator.bit_length() - 1 for t in pts)
    h = np.array([[t.numerator * 2**e // t.denominator] for t in pts], dtype=object)
    for layer in layers:
        if isinstance(layer, nn.ReLU):
            h = np.where(h > 0, h, 0)
            continue
        w = [Fraction(v) for v in layer.weight.detach().to(torch.float64).flatten().tolist()]
        b = [Fraction(v) for v in layer.bias.detach().to(torch.float64).tolist()]
        d = max(v.denominator.bit_length() - 1 for v in w + b)
        weight = np.array([int(v * 2**d) for v in w], dtype=object).reshape(tuple(layer.weight.shape))
        bias = np.array([int(v * 2 ** (d + e)) for v in b], dtype=object)
        h, e = h.dot(weight.T) + bias, e + d
    return [Fraction(int(v), 2**e) for v in h[:, 0]]


def unit_interval_floats(dtype: torch.dtype) -> torch.Tensor:
    """Every number of a 16-bit format (``torch.float16`` or ``torch.bfloat16``) in
    ``[0, 1]``, increasing, enumerated through the int16 bit patterns (15,361 and 16,257)."""
    dtype = check_dtype(dtype)
    if dtype not in (torch.float16, torch.bfloat16):
        raise ValueError(f"dtype must be torch.float16 or torch.bfloat16, got {dtype}")
    one = int(torch.tensor(1.0, dtype=dtype).view(torch.int16))
    return torch.arange(0, one + 1, dtype=torch.int16).view(dtype)


def forward_exactness(x: torch.Tensor, max_depth: int) -> list[dict[str, int]]:
    """Whole :func:`sawtooth_net` forward passes in ``x``'s format against the exact ``g_L(x)``,
    ``L = 1, ..., max_depth``, one batch per depth (as a chapter evaluates a network).

    ``x``: tensor ``(n, 1)`` of a supported dtype, values in ``[0, 1]`` (subnormals included).
    The depth-``L`` network is the first ``L`` hidden layers of ``sawtooth_net(max_depth)``
    and its output layer (the same weights as ``sawtooth_net(L)``).  Reference: the hat map on integer numerators over a
    common power of two (:func:`hat_numerator`'s rule, vectorised), compared exactly with
    the outputs.  One row per depth: ``depth``, ``mismatches``, ``at subnormal inputs`` (of
    them, inputs below the smallest normal), ``flushed`` (output 0, exact value not) and
    ``nonzero`` (exact values other than 0).
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != 1:
        raise TypeError("x must be a tensor of shape (n, 1)")
    dtype = check_dtype(x.dtype, "x")
    max_depth = check_count(max_depth, "max_depth", maximum=MAX_DEPTH)
    x64 = x.detach().to(torch.float64).flatten()
    if not bool(((x64 >= 0) & (x64 <= 1)).all()):
        raise ValueError("x must have values in [0, 1]")
    exact = [Fraction(v) for v in x64.tolist()]
    e = max([t.denominator.bit_length() - 1 for t in exact] + [0])
    a = np.array([t.numerator << (e - t.denominator.bit_length() + 1) for t in exact], dtype=object)
    n = 1 << e
    sub = ((x64 > 0) & (x64 < torch.finfo(dtype).tiny)).numpy()
    layers, rows, h = list(sawtooth_net(max_depth, dtype)), [], x
    with torch.no_grad():
        for depth in range(1, max_depth + 1):
            h = layers[2 * depth - 1](layers[2 * depth - 2](h))
            out = layers[-1](h).to(torch.float64).flatten().numpy()
            a = np.where(a <= 0, 0, np.where(2 * a <= n, 2 * a, np.where(a >= n, 0, 2 * n - 2 * a)))
            scaled = ((out * 2.0**e).astype(object) if e <= 1000    # else 2^e overflows a float
                      else np.array([Fraction(v) * n for v in out.tolist()], dtype=object))
            bad = np.asarray(a != scaled, dtype=bool)
            nonzero = np.asarray(a != 0, dtype=bool)
            rows.append({"depth": depth, "mismatches": int(bad.sum()),
                         "at subnormal inputs": int((bad & sub).sum()),
                         "flushed": int((bad & (out == 0) & nonzero).sum()),
                         "nonzero": int(nonzero.sum())})
    return rows


def _subnormals(dtype: torch.dtype) -> torch.Tensor:   # smallest min(2^(p-1) - 1, 127) > 0
    finfo = torch.finfo(dtype)
    k = min(round(1 / finfo.eps) - 1, 127)             # every one of bfloat16's
    return (torch.arange(1, k + 1, dtype=torch.float64) * finfo.tiny * finfo.eps).to(dtype)


def first_layer_flushes(dtype: torch.dtype, batch: int, *, onednn: bool = True) -> int:
    """How many of the smallest ``min(2^(p-1) - 1, 127)`` positive subnormals of ``dtype`` the
    first ``nn.Linear`` of :func:`sawtooth_net` returns as 0 in its first unit (exact: the
    input), torch on CPU, one batch of ``batch`` rows (the subnormals, then 3/4s).  ``onednn``:
    oneDNN (``torch.backends.mkldnn``) kernels allowed.  IEEE gradual underflow flushes none."""
    sub = _subnormals(check_dtype(dtype))
    batch = check_count(batch, "batch", len(sub), maximum=1 << 22)
    x = torch.cat([sub, torch.full((batch - len(sub),), 0.75, dtype=dtype)]).reshape(-1, 1)
    with warnings.catch_warnings(action="ignore"), torch.no_grad(), \
            torch.backends.mkldnn.flags(enabled=onednn):        # (it warns about Intel GPUs)
        y = sawtooth_net(1, dtype)[0](x)[: len(sub), 0]
    return int((y == 0).sum())


def smallest_flushing_batch(dtype: torch.dtype, largest: int = 1 << 16, *,
                            onednn: bool = True) -> int | None:
    """The smallest batch at which :func:`first_layer_flushes` is non-zero, by bisection
    (assumes flushing is monotone in the batch size; checked at both ends), or ``None`` if
    ``largest`` rows flush nothing."""
    lo = len(_subnormals(check_dtype(dtype)))
    hi = check_count(largest, "largest", lo, maximum=1 << 22)
    if not first_layer_flushes(dtype, hi, onednn=onednn) or first_layer_flushes(dtype, lo, onednn=onednn):
        return lo if first_layer_flushes(dtype, lo, onednn=onednn) else None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if first_layer_flushes(dtype, mid, onednn=onednn) else (mid, hi)
    return hi


def layer_rounding_mismatches(dtype: torch.dtype) -> tuple[int, int]:
    """One layer of :func:`sawtooth_net` in a 16-bit format, for every input ``y`` in
    ``[0, 1]`` of the format and every order of summation.

    Checks the first layer (``relu(y - t)``, ``t = 0, 1/2, 1``), every hidden layer (rounded
    sums of ``2 h0 - 4 h1 + 2 h2 - t`` in all 24 orders, through the ReLU) and the output layer
    against exact float64 values.  Returns ``(number of inputs, number of mismatches)``.
    """
    y = unit_interval_floats(dtype)                                  # all of them, 0 to 1
    y64 = y.to(torch.float64)
    bad = 0
    for t in (0.0, 0.5, 1.0):                                         # the first layer: x - t
        bad += int((torch.relu(y - t).to(torch.float64) != torch.relu(y64 - t)).sum())
    h = [torch.relu(y64 - t).to(dtype) for t in (0.0, 0.5, 1.0)]     # exact hidden values
    g64 = 2 * y64 - 4 * torch.relu(y64 - 0.5) + 2 * torch.relu(y64 - 1)
    for t in (0.0, 0.5, 1.0):
        terms = [2 * h[0], -4 * h[1], 2 * h[2], torch.full_like(y, -t)]
        for order in itertools.permutations(range(4)):
            acc = terms[order[0]]
            for i in order[1:]:
                acc = acc + terms[i]                                  # rounded to `dtype`
            bad += int((torch.relu(acc).to(torch.float64) != torch.relu(g64 - t)).sum())
            if t == 0.0:                                              # the output layer: no ReLU
                bad += int((acc.to(torch.float64) != g64).sum())
    return len(y), bad


def yarotsky_rounding_errors(x_real: torch.Tensor | None, dtype: torch.dtype,
                             max_m: int) -> list[dict[str, float]]:
    """The error of ``yarotsky_square_net(m, dtype)`` against ``x^2``, split into its parts,
    for ``m = 1, ..., max_m``, at real inputs ``x`` rounded to a 16-bit format.

    With ``fl(x)`` the rounded input, ``N`` the network in ``dtype`` and ``u`` the unit
    roundoff: *total* ``max |N(fl(x)) - x^2|``, *input rounding* ``max |f_m(fl(x)) - x^2|``
    (``f_m`` exact) and *arithmetic* ``max |N(fl(x)) - f_m(fl(x))|``, each divided by ``u``
    and by ``2^(-2m-2)``.  ``x_real``: float64 ``(n, 1)`` sampled inputs (sampled maxima), or
    ``None``: the exact supremum over *every* real ``x`` in ``[0, 1]``, from every number of
    the format there and the ends of the interval that rounds to it (then also the row key
    ``sup |fl(x)^2 - x^2| / u``).  Exact in float64 while ``max_m <=
    yarotsky_max_exact_m(dtype)``.  ``dtype``: float16 or bfloat16.  One dict per ``m``.
    """
    dtype = check_dtype(dtype)
    if dtype not in (torch.float16, torch.bfloat16):
        raise ValueError(f"dtype must be torch.float16 or torch.bfloat16, got {dtype}")
    max_m = check_count(max_m, "max_m")
    if max_m > yarotsky_max_exact_m(dtype):
        raise ValueError(f"max_m must be at most {yarotsky_max_exact_m(dtype)} for {dtype}, got {max_m}")
    if x_real is None:
        x_low = unit_interval_floats(dtype).reshape(-1, 1)
        v = x_low.to(torch.float64).flatten()
        mids = (v[1:] + v[:-1]) / 2                       # exact: a 16-bit format has p <= 11
        ends = (torch.cat([v[:1], mids]), torch.cat([mids, v[-1:]]))
    elif isinstance(x_real, torch.Tensor) and x_real.dtype == torch.float64 and x_real.dim() == 2 \
            and x_real.shape[1] == 1:
        x_low = x_real.to(dtype)
        ends = (x_real.flatten(),)
    else:
        raise TypeError("x_real must be None or a float64 tensor of shape (n, 1)")
    u = torch.finfo(dtype).eps / 2
    v_exact = [Fraction(v) for v in x_low.to(torch.float64).flatten().tolist()]
    e = max(t.denominator.bit_length() - 1 for t in v_exact)
    a = np.array([t.numerator << (e - t.denominator.bit_length() + 1) for t in v_exact],
                 dtype=np.int64 if e + 2 * max_m < 60 else object)     # float16: int64 suffices
    big, n, f_at = a.copy(), 1 << e, []      # g_s and f_m as integer numerators over 2^e, 2^(e+2m)
    for m in range(1, max_m + 1):
        a = np.where(a <= 0, 0, np.where(2 * a <= n, 2 * a, np.where(a >= n, 0, 2 * n - 2 * a)))
        big = 4 * big - a
        f_at.append(torch.tensor(np.ldexp(big.astype(np.float64), -e - 2 * m) if big.dtype == np.int64
                                 else [math.ldexp(float(t), -e - 2 * m) for t in big]))  # <= 53 bits

    def worst(values: torch.Tensor) -> float:    # sup over the real inputs of |values - x^2|
        return max(float((values - e**2).abs().max()) for e in ends)

    rows = []
    for m in range(1, max_m + 1):
        with torch.no_grad():
            out = yarotsky_square_net(m, dtype)(x_low).to(torch.float64).flatten()
        fm = f_at[m - 1]
        total, inp, arith = worst(out), worst(fm), float((out - fm).abs().max())
        rows.append({"m": m, "approximation error 2^(-2m-2)": 2.0 ** (-2 * m - 2),
                     "total / u": total / u, "input rounding / u": inp / u,
                     "arithmetic / u": arith / u,
                     "total / 2^(-2m-2)": total * 2.0 ** (2 * m + 2),
                     "input rounding / 2^(-2m-2)": inp * 2.0 ** (2 * m + 2),
                     "arithmetic / 2^(-2m-2)": arith * 2.0 ** (2 * m + 2)}
                    | ({"sup |fl(x)^2 - x^2| / u": worst(x_low.to(torch.float64).flatten() ** 2) / u}
                       if x_real is None else {}))
    return rows


def square_error_on_cells(net: nn.Sequential,
                          breakpoints: Sequence[Any]) -> tuple[Fraction, list[Fraction], Fraction]:
    """The exact sup over ``[0, 1]`` of ``|N(x) - x^2|`` for a scalar network ``N`` that is
    affine between the given ``breakpoints`` (its own, e.g. from
    :func:`lib.pieces.breakpoints_exact`).

    On a cell ``N - x^2`` is a concave quadratic, so its extrema lie at the cell ends or at the
    vertex (half the slope); the stored weights are evaluated exactly there
    (:func:`dyadic_net_exact`).  ``breakpoints``: increasing dyadic points inside ``(0, 1)``.
    Returns ``(sup, the points where it is attained, the smallest N(x) - x^2 among the
    evaluated points)``.
    """
    if isinstance(breakpoints, (str, bytes)) or not isinstance(breakpoints, Sequence):
        raise TypeError(f"breakpoints must be a sequence of numbers, got {type(breakpoints).__name__}")
    ends = [Fraction(0)] + [to_fraction(t, f"breakpoints[{i}]") for i, t in enumerate(breakpoints)] + [Fraction(1)]
    if any(a >= b for a, b in zip(ends, ends[1:])):
        raise ValueError("breakpoints must be increasing and inside (0, 1)")
    at_ends = dyadic_net_exact(net, ends)
    slopes = [(fb - fa) / (b - a) for a, b, fa, fb in zip(ends, ends[1:], at_ends, at_ends[1:])]
    vertices = [v for a, b, v in zip(ends, ends[1:], (s / 2 for s in slopes)) if a < v < b]
    candidates = ends + vertices
    errors = [n - t * t for n, t in zip(at_ends + dyadic_net_exact(net, vertices), candidates)]
    sup = max(abs(e) for e in errors)
    maximisers = sorted(t for t, e in zip(candidates, errors) if abs(e) == sup)
    return sup, maximisers, min(errors)
