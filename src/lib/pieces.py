"""Exact affine pieces of ReLU networks with one input and one output, and the upper bounds.

A network ``nn.Sequential`` of ``nn.Linear`` and ``nn.ReLU`` layers with a scalar input and a
scalar output computes a continuous piecewise-affine function.  This module counts its
*pieces* on an interval ``[lo, hi]`` (maximal subintervals on which it is affine) and finds
its *breakpoints* (interior points where the affine map changes), **exactly with respect to
the weights as stored**: the weights of every format (float16, bfloat16, float32, float64)
are dyadic rationals, and the count equals the one exact rational arithmetic gives.

Public functions: :func:`count_pieces`, :func:`breakpoints`, :func:`breakpoints_exact`,
:func:`piece_widths`, :func:`piece_analysis` (all of these plus diagnostics), the bounds
:func:`piece_bound` / :func:`piece_bounds` with :func:`relu_widths`, the sampling estimate
:func:`grid_count`, and the slow reference :func:`reference_breakpoints` /
:func:`reference_count_pieces` (pure ``fractions.Fraction``, written independently).

Algorithm (partition propagation)
---------------------------------
Scan the layers in order, keeping a partition ``lo = t_0 < t_1 < ... < t_K = hi`` of the
interval such that on every cell the current layer's vector is affine in ``x``:
``h(x) = A x + C`` with one pair ``(A_j, C_j)`` per neuron.  A ``Linear`` layer maps the
coefficients (``A <- W A``, ``C <- W C + b``).  A ``ReLU`` layer needs, on each cell, the
zeros of every ``A_j x + C_j`` strictly inside the cell: with ``s_j(t)`` the sign of the
pre-activation at a cut point ``t``, neuron ``j`` crosses zero inside ``(t_k, t_{k+1})`` iff
``s_j(t_k) s_j(t_{k+1}) < 0``, and then at ``-C_j/A_j``.  The crossings of a cell are sorted
and equal ones merged into one cut; the cell splits there, and on each sub-cell each neuron has
a constant sign (its sign at the sub-cell's endpoints), which gives the ReLU mask.  At the end
the output is affine on each cell; adjacent cells with *equal slopes* form one piece (the
function is continuous, so equal slopes at a shared point mean equal affine maps).  So every
decision of the algorithm is one of three exact questions about rationals:

1. the sign of a pre-activation at a cut point, ``sign(A_j P + C_j Q)`` for the cut
   ``t = P/Q`` (``Q > 0``; every cut is ``-C/A`` of some neuron, or an interval end);
2. the order of two crossings in a cell, ``sign(P_b Q_a - P_a Q_b)`` (zero: they coincide);
3. equality of the output slopes of adjacent cells.

Why the answers are exact
-------------------------
The coefficients ``A, C`` on a cell are polynomials in the weights (they depend only on the
cell's activation pattern), hence dyadic rationals; cuts are ratios of them.  The
propagation runs vectorised in float64 and decides each question in the first of these
ways that applies:

* **Certified-exact float64.**  Each float64 column carries a *grid exponent* ``g`` (all its
  ``A`` and ``C`` are integer multiples of ``2^-g``, tracked from the weights' own grids).  A
  ``Linear`` output column is certified exact when all its inputs are and the magnitude
  bound ``sum_i |W_ji| max|h_i|`` is below ``2^(53-g)``: then every product and partial sum
  is an integer multiple of ``2^-g`` below ``2^53`` in those units, so float64 computes it
  without rounding, whatever the summation order.  Likewise a product ``A_j P`` of certified
  numbers below ``2^(53 - g_A - g_P)`` is exact, and the *sign* of a rounded sum of two exact
  products is exact.  The sawtooth and Yarotsky networks (dyadic weights with few bits) run
  entirely in this mode; that is what makes 2^20 pieces take about a second.
* **Rigorous error bounds.**  Otherwise each float64 number carries a bound on its distance
  from the exact value: ``|fl(sum_i w_i a_i) - sum_i w_i a_i| <= gamma_n sum_i |w_i a_i|``
  with ``gamma_n = n u/(1 - n u)``, ``u = 2^-53`` (Higham, *Accuracy and Stability of
  Numerical Algorithms*, 2nd ed., ch. 3), plus the propagated input bounds, componentwise
  (``E' = gamma |h||W|^T + E |W|^T``) and, per cell, in the 2-norm
  (``N' = ||W||_2 N + ||gamma |h||W|^T||_2`` with a rigorous bound on ``||W||_2`` from
  repeated squaring of ``W^T W``); each entry keeps the smaller bound, so the bounds grow
  like ``||W||_2`` per layer rather than ``max_j sum_i |W_ji|`` (for random ``n x n``
  layers about ``1`` against ``sqrt(n)/2``).  The bounds are computed in float64 and
  inflated by ``2^-40`` relative and ``2^-1000`` absolute to cover their own rounding and
  underflow.  The inner products are evaluated as an explicit sequence of elementwise
  float64 multiplications and additions (no BLAS), so the model
  ``fl(a op b) = (a op b)(1 + d)``, ``|d| <= u``, applies literally.  A sign is decided when
  ``|value| > bound``; slopes are decided *different* when ``|A - A'| > bound``.
* **Exact floating-point expansions.**  Where the filter cannot decide but all operands are
  exact floats (bounds zero), ``sign(a b + c d)`` is evaluated exactly with Dekker's
  TwoProduct and Shewchuk's Two-Two-Sum (a non-overlapping expansion whose leading non-zero
  term has the sign of the sum), vectorised; operands outside ``[2^-400, 2^400]`` go to
  ``Fraction``.
* **Rational fallback, per cell.**  A cell on which some question stays undecided (kinks
  closer than the error bounds, slope jumps below float64 resolution, coincident crossings of
  inexact coefficients, equal slopes) moves to an *exact set* that carries ``A, C`` as Python
  integers over a common power of two ``2^e`` (numpy object arrays), with cuts as
  ``Fraction``; all its later questions are decided in integer arithmetic.  Its coefficients
  are recomputed exactly by *replay*: the network is evaluated in exact arithmetic at an
  interior rational point ``m`` of the cell, with the ReLU masks read off the exact signs at
  ``m`` (on a cell of the current partition every earlier neuron has a constant sign, and a
  neuron that vanishes at an interior point vanishes on the whole cell, so the mask is
  irrelevant there).  The cell's endpoints, needed for ``m``, are made exact the same way:
  each cut records the layer and neuron that created it and the cell it split, and is
  recomputed by a replay in that cell (recursively, memoised; exact cuts of certified columns
  are simply ``P/Q``).  The final slope comparisons that bounds cannot settle use the same
  replay.

So the count and the breakpoints are exact; only the float64 *values* returned by
:func:`breakpoints` are rounded (see there), and :func:`breakpoints_exact` returns the exact
rationals.  :func:`reference_breakpoints` is an independent, deliberately simple
``Fraction`` implementation used by the tests and the chapter to check all of this.

Bounds (:func:`piece_bounds`): for hidden widths ``n_1..n_L``, the number of pieces on any
interval is at most ``prod (n_l + 1)`` (each ReLU layer cuts each cell at most ``n_l`` times)
and at most ``prod 2 n_l <= (2N/L)^L`` with ``N = sum n_l`` (the composition argument of
Telgarsky, *Benefits of depth in neural networks*, COLT 2016, in the form derived in the book's
chapter *Counting pieces*; the paper's exact constant could not be checked in our sources).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from numbers import Rational
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "PieceAnalysis", "piece_analysis", "count_pieces", "breakpoints", "breakpoints_exact",
    "piece_widths", "relu_widths", "piece_bound", "piece_bounds", "grid_count",
    "reference_breakpoints", "reference_count_pieces",
    "INITS", "random_relu_net", "perturbed_net", "representable", "resolved_pieces",
]

_U = 2.0**-53                 # unit roundoff of float64
_INFL = 1.0 + 2.0**-40        # relative inflation of computed error bounds
_TINY = 2.0**-1000            # absolute slack: underflow in products and in the bounds
_LIM = 2.0**53 * (1.0 - 2.0**-40)  # certified integers stay below this (strictly below 2^53)
_NO_GRID = -(1 << 20)          # grid exponent of the number zero (no constraint)
_MAX_GRID = 1074               # finest grid float64 can hold (smallest subnormal 2^-1074)
_EXP_LO, _EXP_HI = 2.0**-400, 2.0**400  # operand range of the exact expansions


# =====================================================================================
# Parsing and validation
# =====================================================================================
@dataclass
class _Linear:
    """A Linear layer as float64 arrays (exact copies) plus grids and a lazy integer form."""

    w: np.ndarray          # (out, in)
    b: np.ndarray          # (out,)
    wgrid: np.ndarray      # grid exponent of every weight (_NO_GRID for zeros)
    bgrid: np.ndarray
    wabs: np.ndarray
    _int: tuple[Any, int, Any, int] | None = None
    _norm2: float | None = None

    def norm2_bound(self) -> float:
        """A rigorous upper bound on the spectral norm ``||w||_2`` (see :func:`_norm2_bound`)."""
        if self._norm2 is None:
            self._norm2 = _norm2_bound(self.w)
        return self._norm2

    def integer_form(self) -> tuple[Any, int, Any, int]:
        """``(Wint_T, sw, bint, sb)``: ``w = Wint / 2^sw``, ``b = bint / 2^sb`` (object arrays)."""
        if self._int is None:
            wr = [[v.as_integer_ratio() for v in row] for row in self.w.tolist()]
            br = [v.as_integer_ratio() for v in self.b.tolist()]
            sw = max([0] + [d.bit_length() - 1 for row in wr for _, d in row])
            sb = max([0] + [d.bit_length() - 1 for _, d in br])
            wint = np.array([[n << (sw - (d.bit_length() - 1)) for n, d in row] for row in wr],
                            dtype=object).reshape(self.w.shape)
            bint = np.array([n << (sb - (d.bit_length() - 1)) for n, d in br],
                            dtype=object).reshape(self.b.shape)
            self._int = (wint.T.copy(), sw, bint, sb)
        return self._int


_RELU = "relu"


def _float_grid(x: np.ndarray) -> np.ndarray:
    """Grid exponents: the least ``g`` with ``x * 2^g`` an integer (``_NO_GRID`` for zeros)."""
    x = np.asarray(x, dtype=np.float64)
    m, e = np.frexp(x)
    mant = np.ldexp(m, 53).astype(np.int64)       # exact: |m| < 1 has at most 53 bits
    low = mant & -mant                              # lowest set bit, a power of two
    tz = np.frexp(low.astype(np.float64))[1].astype(np.int64) - 1
    g = 53 - e.astype(np.int64) - tz
    return np.where(x == 0, _NO_GRID, g)


def _plain_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` as an explicit sum of outer products (elementwise float64 operations only)."""
    out = np.zeros((a.shape[0], b.shape[1]))
    for k in range(a.shape[1]):
        out += a[:, k:k + 1] * b[k:k + 1, :]
    return out


def _norm2_bound(w: np.ndarray, squarings: int = 4) -> float:
    """A rigorous upper bound on the spectral norm of the float64 matrix ``w``.

    With ``X = w^T w`` (or ``w w^T``, the smaller), ``||w||_2^2 = rho(X) <= ||X^(2^s)||^(2^-s)``
    for the infinity norm.  ``X`` and its repeated squares ``Y_s`` are computed in float64 (as
    explicit sums of products) after an exact power-of-two scaling of ``w``; with
    ``eta_0 = gamma_r ||w||_1 ||w||_inf`` bounding ``||fl(X) - X||`` and
    ``eta_{s+1} = 2 (||Y_s|| + eta_s) eta_s + eta_s^2 + gamma_m ||Y_s||^2`` bounding
    ``||Y_{s+1} - X^(2^(s+1))||``, every ``(||Y_s|| + eta_s)^(2^-(s+1))`` is a bound; the
    smallest, inflated by ``2^-40``, is returned.  Falls back to ``sqrt(||w||_1 ||w||_inf)``.
    """
    if w.size == 0 or not np.any(w):
        return 0.0
    absw = np.abs(w)
    # sqrt(||w||_1 ||w||_inf), as a product of square roots (no underflow for tiny weights)
    crude = math.sqrt(float(absw.sum(axis=0).max())) * math.sqrt(float(absw.sum(axis=1).max()))
    crude = crude * _INFL * (1.0 + 2.0 * (max(w.shape) + 2) * _U)
    k = -int(np.frexp(absw.max())[1])          # scale max|w| into [1/2, 1): exact if no underflow
    ws = np.ldexp(w, k)
    if not np.array_equal(np.ldexp(ws, -k), w):
        return crude
    r = ws.shape[0]
    x = _plain_matmul(ws.T, ws) if ws.shape[1] <= ws.shape[0] else _plain_matmul(ws, ws.T)
    m = x.shape[0]
    if ws.shape[1] > ws.shape[0]:
        r = ws.shape[1]
    gam_r = (r + 1) * _U / (1 - (r + 1) * _U)
    gam_m = (m + 1) * _U / (1 - (m + 1) * _U)
    aws = np.abs(ws)
    eta = gam_r * float(aws.sum(axis=0).max()) * float(aws.sum(axis=1).max()) * _INFL
    best = math.inf
    y = x
    for s_ in range(squarings + 1):
        ny = float(np.abs(y).sum(axis=1).max())
        if not math.isfinite(ny) or not math.isfinite(eta):
            break
        best = min(best, (ny * _INFL + eta) ** (2.0 ** -(s_ + 1)))
        if s_ == squarings:
            break
        eta = (2 * (ny + eta) * eta + eta * eta + gam_m * ny * ny) * _INFL
        y = _plain_matmul(y, y)
    bound = math.ldexp(best * _INFL, -k)
    return min(bound, crude)


def _parse_net(net: Any) -> list[Any]:
    """Check ``net`` and return its operations: ``_Linear`` objects and ``_RELU`` markers."""
    if not isinstance(net, nn.Sequential):
        raise TypeError("net must be an nn.Sequential of nn.Linear and nn.ReLU layers, "
                        f"got {type(net).__name__}")
    ops: list[Any] = []
    width = 1
    first_linear = True
    for i, layer in enumerate(net):
        if isinstance(layer, nn.Linear):
            if layer.in_features != width:
                if first_linear:
                    raise ValueError(f"net must take a scalar input: net[{i}] is "
                                     f"nn.Linear({layer.in_features}, {layer.out_features})")
                raise ValueError(f"net[{i}] expects {layer.in_features} inputs but receives "
                                 f"{width}")
            first_linear = False
            w = layer.weight.detach().to("cpu", torch.float64).numpy().copy()
            b = (layer.bias.detach().to("cpu", torch.float64).numpy().copy()
                 if layer.bias is not None else np.zeros(layer.out_features))
            if not (np.isfinite(w).all() and np.isfinite(b).all()):
                raise ValueError(f"net[{i}] has non-finite weights")
            w = w + 0.0  # turn -0.0 into +0.0 (same value; keeps signs of zero out of sight)
            b = b + 0.0
            ops.append(_Linear(w, b, _float_grid(w), _float_grid(b), np.abs(w)))
            width = layer.out_features
        elif isinstance(layer, nn.ReLU):
            ops.append(_RELU)
        else:
            raise TypeError(f"net[{i}] is a {type(layer).__name__}; only nn.Linear and "
                            "nn.ReLU layers are supported")
    if width != 1:
        raise ValueError(f"net must have a scalar output, got {width} outputs")
    return ops


def _to_exact(v: Any, name: str) -> Fraction:
    if isinstance(v, torch.Tensor):
        if v.numel() != 1:
            raise TypeError(f"{name} must be a number, got a tensor of shape {tuple(v.shape)}")
        v = v.item()
    if isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name} must be a number, got a bool")
    if isinstance(v, (int, np.integer)):
        return Fraction(int(v))
    if isinstance(v, Rational):
        return Fraction(v.numerator, v.denominator)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if not math.isfinite(f):
            raise ValueError(f"{name} must be finite, got {f!r}")
        return Fraction(f)
    raise TypeError(f"{name} must be a real number, got {type(v).__name__}")


def _parse_interval(interval: Any) -> tuple[Fraction, Fraction]:
    try:
        lo_raw, hi_raw = interval
    except (TypeError, ValueError):
        raise TypeError(f"interval must be a pair (lo, hi), got {interval!r}") from None
    lo, hi = _to_exact(lo_raw, "interval[0]"), _to_exact(hi_raw, "interval[1]")
    if not lo < hi:
        kind = "empty" if lo == hi else "reversed"
        raise ValueError(f"interval must satisfy lo < hi; got an {kind} interval "
                         f"({float(lo)!r}, {float(hi)!r})")
    return lo, hi


def _endpoint_floats(t: Fraction) -> tuple[float, float, float, float]:
    """``(P, Q, EP, EQ)`` with ``t = P/Q`` exactly when the bounds are zero."""
    if t.denominator & (t.denominator - 1) == 0 and Fraction(float(t)) == t:
        return float(t), 1.0, 0.0, 0.0
    n, d = t.numerator, t.denominator
    if abs(n) < 2**53 and d < 2**53:
        return float(n), float(d), 0.0, 0.0
    p = float(t)
    return p, 1.0, abs(math.ulp(p)) + _TINY, 0.0


# =====================================================================================
# Exact sign predicates on float64 arrays
# =====================================================================================
_SPLIT = 134217729.0  # 2^27 + 1 (Veltkamp splitting)


def _two_prod(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dekker's TwoProduct: ``p + e == a * b`` exactly (no FMA needed; operands in range)."""
    p = a * b
    c = _SPLIT * a
    ah = c - (c - a)
    al = a - ah
    c = _SPLIT * b
    bh = c - (c - b)
    bl = b - bh
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, e


def _two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Knuth's TwoSum: ``s + e == a + b`` exactly."""
    s = a + b
    bb = s - a
    e = (a - (s - bb)) + (b - bb)
    return s, e


def _sign_exact_float(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray) -> np.ndarray:
    """``sign(a*b + c*d)`` exactly for exact float64 operands (1-D arrays of equal length).

    Dekker's TwoProduct gives ``ab = p1 + e1`` and ``cd = p2 + e2`` exactly; Shewchuk's
    Two-Two-Sum turns ``(p1 + e1) + (p2 + e2)`` into a non-overlapping expansion
    ``x3 + x2 + x1 + x0`` (decreasing magnitude), whose leading non-zero component has the
    sign of the sum.  Operands outside ``[2^-400, 2^400]`` (other than 0) use ``Fraction``.
    """
    out = np.zeros(a.shape, dtype=np.int8)
    if a.size == 0:
        return out

    def ok(x: np.ndarray) -> np.ndarray:
        ax = np.abs(x)
        return (x == 0) | ((ax >= _EXP_LO) & (ax <= _EXP_HI))

    good = ok(a) & ok(b) & ok(c) & ok(d)
    ia = np.nonzero(good)[0]
    if ia.size:
        p1, e1 = _two_prod(a[ia], b[ia])
        p2, e2 = _two_prod(c[ia], d[ia])
        # Two_Two_Sum(a1=p1, a0=e1, b1=p2, b0=e2) -> x3, x2, x1, x0 (Shewchuk 1997)
        i, x0 = _two_sum(e1, e2)
        j, z = _two_sum(p1, i)
        i, x1 = _two_sum(z, p2)
        x3, x2 = _two_sum(j, i)
        s = np.sign(x3)
        for x in (x2, x1, x0):
            s = np.where(s == 0, np.sign(x), s)
        out[ia] = s.astype(np.int8)
    for k in np.nonzero(~good)[0]:
        v = (Fraction(float(a[k])) * Fraction(float(b[k]))
             + Fraction(float(c[k])) * Fraction(float(d[k])))
        out[k] = (v > 0) - (v < 0)
    return out


def _sign_products(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray,
                   ea: np.ndarray | float, eb: np.ndarray | float,
                   ec: np.ndarray | float, ed: np.ndarray | float,
                   exact: np.ndarray, g1: np.ndarray | None, g2: np.ndarray | None,
                   stats: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Sign of ``a*b + c*d`` where the true operands lie within ``e*`` of the given floats.

    All arrays broadcast to one shape.  ``exact`` marks entries whose four bounds are zero;
    there ``g1``/``g2`` (if given) are grid exponents of the true products ``ab`` and ``cd``.
    Returns ``(sign, decided)`` (int8 and bool arrays); undecided entries have sign 0.
    """
    p1 = a * b
    p2 = c * d
    v = p1 + p2
    shape = v.shape
    sign = np.sign(v).astype(np.int8)
    decided = np.zeros(shape, dtype=bool)
    exact = np.broadcast_to(exact, shape)
    if g1 is not None:
        # exact products: integer multiples of 2^-g below 2^53 in those units are floats,
        # and the sign of the rounded sum of two exact floats is exact.
        with np.errstate(over="ignore"):
            cert = exact & (np.ldexp(np.abs(p1), np.broadcast_to(g1, shape)) < _LIM) \
                & (np.ldexp(np.abs(p2), np.broadcast_to(g2, shape)) < _LIM) \
                & (np.broadcast_to(g1, shape) <= _MAX_GRID) & (np.broadcast_to(g2, shape) <= _MAX_GRID)
        decided |= cert
        stats["certified_signs"] += int(cert.sum())
    rest = ~decided
    if rest.any():
        with np.errstate(over="ignore", invalid="ignore"):
            aa, ab_ = np.abs(a), np.abs(b)
            ac, ad = np.abs(c), np.abs(d)
            bound = (2.0 * _U / (1.0 - 2.0 * _U)) * (np.abs(p1) + np.abs(p2)) \
                + (aa * eb + ab_ * ea + np.multiply(ea, eb)) \
                + (ac * ed + ad * ec + np.multiply(ec, ed))
            bound = bound * _INFL + _TINY
            filt = rest & (np.abs(v) > bound)
        decided |= filt
        stats["filtered_signs"] += int(filt.sum())
        need = ~decided & exact
        if need.any():
            idx = np.nonzero(need)
            A, B, C, D = (np.broadcast_to(x, shape)[idx] for x in (a, b, c, d))
            sign[idx] = _sign_exact_float(A, B, C, D)
            decided[idx] = True
            stats["expansion_signs"] += int(idx[0].size)
    sign[~decided] = 0
    return sign, decided


# =====================================================================================
# The partition sets
# =====================================================================================
_FLOAT_FIELDS = ("A", "C", "EA", "EC", "NA", "NC", "L", "R", "gpos")
#: columns of the packed endpoint arrays L (left) and R (right): t = P/Q, bounds, grid, cut id
_P, _Q, _EP, _EQ, _G, _ID = range(6)


class _FloatSet:
    """Cells propagated in float64: coefficients ``A, C`` (K x n), componentwise error bounds
    ``EA, EC``, bounds ``NA, NC`` (K,) on the 2-norms of the error vectors, packed endpoints
    ``L, R`` (K x 6: P, Q, EP, EQ, grid, cut id) and ``gpos``."""

    def __init__(self, **kw: np.ndarray) -> None:
        for name in _FLOAT_FIELDS:
            setattr(self, name, kw[name])

    def take(self, idx: np.ndarray) -> _FloatSet:
        return _FloatSet(**{name: getattr(self, name)[idx] for name in _FLOAT_FIELDS})

    def replace(self, **kw: np.ndarray) -> _FloatSet:
        fields = {name: getattr(self, name) for name in _FLOAT_FIELDS}
        fields.update(kw)
        return _FloatSet(**fields)

    @property
    def lid(self) -> np.ndarray:
        return self.L[:, _ID].astype(np.int64)

    @property
    def rid(self) -> np.ndarray:
        return self.R[:, _ID].astype(np.int64)

    def __len__(self) -> int:
        return int(self.gpos.shape[0])


class _ExactSet:
    """Cells propagated exactly: ``A, C`` integers over ``2^e``, endpoints as Fractions."""

    def __init__(self, A: np.ndarray, C: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                 lid: np.ndarray, rid: np.ndarray, gpos: np.ndarray) -> None:
        self.A, self.C, self.lo, self.hi = A, C, lo, hi
        self.lid, self.rid, self.gpos = lid, rid, gpos

    def __len__(self) -> int:
        return int(self.gpos.shape[0])


def _children_layout(m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Children of ``K`` cells cut ``m[k]`` times: counts, starts, local index, cut offsets."""
    cnt = m + 1
    start = np.cumsum(cnt) - cnt
    local = np.arange(int(cnt.sum())) - np.repeat(start, cnt)
    uoff = np.cumsum(m) - m
    return cnt, start, local, uoff


def _child_masks(cross: np.ndarray, rank: np.ndarray, pos_l: np.ndarray, pos_r: np.ndarray,
                 cnt: np.ndarray, local: np.ndarray) -> np.ndarray:
    """ReLU masks on the children: a crossing unit takes its left sign left of its zero.

    Per parent and unit a code: 1 active throughout, 2 active left of the zero (crossing
    down), 3 active right of it (crossing up), 0 inactive; then one repeat per array.
    """
    code = np.where(cross, np.where(pos_l, 2, 3), np.where(pos_l | pos_r, 1, 0)).astype(np.int8)
    code = np.repeat(code, cnt, axis=0)
    left = local[:, None] <= np.repeat(rank, cnt, axis=0)
    return (code == 1) | ((code == 2) & left) | ((code == 3) & ~left)


def _interleave(parent_end: np.ndarray, cuts: np.ndarray, at_parent: np.ndarray) -> np.ndarray:
    """Rows ``at_parent`` (indices) take the parents' endpoints, the other rows the cuts."""
    total = parent_end.shape[0] + cuts.shape[0]
    out = np.empty((total,) + parent_end.shape[1:], dtype=parent_end.dtype)
    out[at_parent] = parent_end
    rest = np.ones(total, dtype=bool)
    rest[at_parent] = False
    out[np.flatnonzero(rest)] = cuts
    return out


# =====================================================================================
# The counter
# =====================================================================================
class PieceAnalysis:
    """Everything :func:`piece_analysis` found on one interval.

    ``count``: the exact number of pieces.  ``interval``: ``(lo, hi)`` as Fractions.
    ``stats``: how the decisions were taken (``certified_signs``: signs from certified-exact
    float64; ``filtered_signs``: decided by an error bound; ``expansion_signs``: exact float
    expansions; ``exact_cells``: cells moved to rational arithmetic; ``replays``: exact
    re-evaluations of the network; ``cells``: cells of the final partition, before merging).
    ``breakpoints``, :meth:`widths` and :meth:`breakpoints_exact` are computed on demand
    (they may need exact replays that the count does not).
    """

    def __init__(self, count: int, interval: tuple[Fraction, Fraction], stats: dict[str, int],
                 counter: Any, bp_ids: np.ndarray, bp_val: np.ndarray,
                 bp_err: np.ndarray) -> None:
        self.count = count
        self.interval = interval
        self.stats = stats
        self._counter = counter
        self._bp_ids = bp_ids
        self._bp_val = bp_val      # float64 values of the breakpoints (raw)
        self._bp_err = bp_err      # rigorous bounds on their distance from the exact ones
        self._accurate = False
        self._widths: np.ndarray | None = None

    def __repr__(self) -> str:
        lo, hi = self.interval
        return f"PieceAnalysis(count={self.count}, interval=({float(lo)!r}, {float(hi)!r}))"

    def _make_accurate(self) -> None:
        """Replace float values whose bound exceeds ``2^-32 max(1, |t|)`` by exact ones."""
        if not self._accurate:
            val, err = self._bp_val, self._bp_err
            loose = np.nonzero(~(err <= 2.0**-32 * np.maximum(1.0, np.abs(val))))[0]
            for i in loose.tolist():
                t = self._counter.exact_cut(int(self._bp_ids[i]))
                val[i] = float(t)
                err[i] = _U * abs(val[i]) + 2.0**-1073
            self._accurate = True

    @property
    def breakpoints(self) -> np.ndarray:
        """Sorted float64 breakpoints (see :func:`breakpoints` for their accuracy)."""
        self._make_accurate()
        out = self._bp_val.copy()
        if out.size:
            # distinct breakpoints within their error bounds may come out of order
            out = np.maximum.accumulate(out)
        return out

    def breakpoints_exact(self) -> list[Fraction]:
        """The breakpoints as exact rationals (may replay the network for inexact cuts)."""
        return [self._counter.exact_cut(int(i)) for i in self._bp_ids]

    def widths(self) -> np.ndarray:
        """Float64 widths of the pieces, left to right, each with relative error below
        ``2^-20`` (from the exact breakpoints where the float64 ones are not accurate
        enough); a width below float64's normal range is its correctly rounded value
        (possibly 0 for pieces narrower than ``2^-1075``, which extreme weights can make)."""
        if self._widths is None:
            self._make_accurate()
            lo, hi = float(self.interval[0]), float(self.interval[1])
            edges = np.concatenate([[lo], self._bp_val, [hi]])
            err = np.concatenate([[_U * abs(lo) + 2.0**-1073], self._bp_err,
                                  [_U * abs(hi) + 2.0**-1073]])
            ids = np.concatenate([[0], self._bp_ids, [1]]).astype(np.int64)
            widths = np.diff(edges)
            werr = err[:-1] + err[1:] + 2 * _U * np.abs(widths)
            for i in np.nonzero(~(werr <= 2.0**-21 * np.abs(widths)))[0].tolist():
                w = self._counter.exact_cut(int(ids[i + 1])) - self._counter.exact_cut(int(ids[i]))
                widths[i] = float(w)
            self._widths = widths
        return self._widths


class _Counter:
    """One run of the partition propagation on one network and one interval."""

    def __init__(self, ops: list[Any], lo: Fraction, hi: Fraction) -> None:
        self.ops = ops
        self.lo, self.hi = lo, hi
        self.stats = {"certified_signs": 0, "filtered_signs": 0, "expansion_signs": 0,
                      "exact_cells": 0, "replays": 0, "cells": 0}
        self.memo: dict[int, Fraction] = {0: lo, 1: hi}
        self.batches: list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray,
                                 np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self.batch_starts: list[int] = []
        self.next_id = 2
        self._schedule: list[int] | None = None

    # ----------------------------------------------------------- exact machinery
    def schedule(self) -> list[int]:
        """Exponents ``e`` of the exact representation before each operation (and after)."""
        if self._schedule is None:
            e, sched = 0, [0]
            for op in self.ops:
                if op is not _RELU:
                    _, sw, _, sb = op.integer_form()
                    e = max(e + sw, sb)
                sched.append(e)
            self._schedule = sched
        return self._schedule

    def replay(self, m: Fraction, upto: int) -> tuple[list[int], list[int]]:
        """Exact ``(A, C)`` (integers over ``2^e``) before operation ``upto``, on the cell of
        ``m``: the network evaluated exactly with masks from the signs at ``m``."""
        self.stats["replays"] += 1
        mn, md = m.numerator, m.denominator
        A, C, e = [1], [0], 0
        for op in self.ops[:upto]:
            if op is _RELU:
                keep = [a * mn + c * md > 0 for a, c in zip(A, C)]
                A = [a if k else 0 for a, k in zip(A, keep)]
                C = [c if k else 0 for c, k in zip(C, keep)]
            else:
                wt, sw, bint, sb = op.integer_form()
                e_new = max(e + sw, sb)
                s1, s2 = 1 << (e_new - e - sw), 1 << (e_new - sb)
                cols = wt.T.tolist()
                A = [sum(w * a for w, a in zip(row, A)) * s1 for row in cols]
                C = [sum(w * c for w, c in zip(row, C)) * s1 + bb * s2
                     for row, bb in zip(cols, bint.tolist())]
                e = e_new
        return A, C

    def register_float_cuts(self, pos: int, neuron: np.ndarray, plid: np.ndarray,
                            prid: np.ndarray, P: np.ndarray, Q: np.ndarray, EP: np.ndarray,
                            EQ: np.ndarray) -> np.ndarray:
        n = int(neuron.shape[0])
        ids = np.arange(self.next_id, self.next_id + n, dtype=np.int64)
        if n:
            self.batch_starts.append(self.next_id)
            self.batches.append((self.next_id, pos, neuron, plid, prid, P, Q, EP, EQ))
            self.next_id += n
        return ids

    def exact_cut(self, cid: int) -> Fraction:
        """The exact value of cut ``cid`` (memoised; replays the network if necessary)."""
        hit = self.memo.get(cid)
        if hit is not None:
            return hit
        b = bisect.bisect_right(self.batch_starts, cid) - 1
        start, pos, neuron, plid, prid, P, Q, EP, EQ = self.batches[b]
        k = cid - start
        if EP[k] == 0 and EQ[k] == 0:
            t = Fraction(float(P[k])) / Fraction(float(Q[k]))
        else:
            a = self.exact_cut(int(plid[k]))
            c = self.exact_cut(int(prid[k]))
            A, C = self.replay((a + c) / 2, pos)
            j = int(neuron[k])
            t = Fraction(-C[j], A[j])
        self.memo[cid] = t
        return t

    # ----------------------------------------------------------- the run
    def run(self) -> PieceAnalysis:
        P0, Q0, EP0, EQ0 = _endpoint_floats(self.lo)
        P1, Q1, EP1, EQ1 = _endpoint_floats(self.hi)

        def grid_pair(p: float, q: float) -> int:
            return int(max(_float_grid(np.array([p]))[0], _float_grid(np.array([q]))[0]))

        left = np.array([[P0, Q0, EP0, EQ0, grid_pair(P0, Q0), 0]], dtype=np.float64)
        right = np.array([[P1, Q1, EP1, EQ1, grid_pair(P1, Q1), 1]], dtype=np.float64)
        fs = _FloatSet(A=np.ones((1, 1)), C=np.zeros((1, 1)), EA=np.zeros((1, 1)),
                       EC=np.zeros((1, 1)), NA=np.zeros(1), NC=np.zeros(1), L=left, R=right,
                       gpos=np.array([0]))
        self.col_exact = np.array([True])
        self.col_grid = np.array([0], dtype=np.int64)
        es: _ExactSet | None = None

        for pos, op in enumerate(self.ops):
            if op is _RELU:
                fs, es = self._relu(fs, es, pos)
            else:
                fs = self._float_linear(fs, op)
                if es is not None and len(es):
                    es = self._exact_linear(es, op, pos)
        return self._finish(fs, es)

    # ----------------------------------------------------------- Linear
    def _float_linear(self, fs: _FloatSet, op: _Linear) -> _FloatSet:
        K, n = fs.A.shape
        m = op.w.shape[0]
        A = np.zeros((K, m))
        C = np.zeros((K, m))
        for i in range(n):
            col = op.w[:, i]
            if not col.any():
                continue
            A += fs.A[:, i:i + 1] * col
            C += fs.C[:, i:i + 1] * col
        C += op.b
        # certification of exact columns
        if K:
            max_a = np.abs(fs.A).max(axis=0)
            max_c = np.abs(fs.C).max(axis=0)
        else:
            max_a = max_c = np.zeros(n)
        # a column matters unless it is certified exact and identically zero
        live = (max_a > 0) | (max_c > 0) | ~self.col_exact
        rel = (op.w != 0) & live[None, :]
        inputs_exact = np.all(~rel | self.col_exact[None, :], axis=1)
        terms = np.where(rel, op.wgrid + self.col_grid[None, :], _NO_GRID)
        grid = np.maximum(terms.max(axis=1, initial=_NO_GRID), op.bgrid)
        sa = op.wabs @ max_a
        sc = op.wabs @ max_c + np.abs(op.b)
        with np.errstate(over="ignore"):
            # (sa, sc are sums of n non-negative float64 terms: relative error <= n u)
            slack = _INFL * (1.0 + 2.0 * (n + 2) * _U)
            size_ok = np.ldexp(np.maximum(sa, sc) * slack, np.minimum(grid, 2000)) < _LIM
        col_exact = inputs_exact & size_ok & (grid <= _MAX_GRID)
        if col_exact.all():
            EA = np.zeros((K, m))
            EC = np.zeros((K, m))
            NA = np.zeros(K)
            NC = np.zeros(K)
        else:
            EA, EC, NA, NC = self._float_bounds(fs, op, col_exact)
        self.col_exact = col_exact
        self.col_grid = np.where(col_exact, grid, 0)
        return fs.replace(A=A, C=C, EA=EA, EC=EC, NA=NA, NC=NC)

    @staticmethod
    def _float_bounds(fs: _FloatSet, op: _Linear,
                      col_exact: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Error bounds after ``op`` for the float set: componentwise and in the 2-norm.

        Componentwise: ``E' = gamma_(n+1) |h| |W|^T + E |W|^T`` (rounding of the new sums
        plus propagated input errors).  In the 2-norm, per cell: ``N' = ||W||_2 N +
        ||gamma_(n+1) |h| |W|^T||_2``, which grows like ``||W||_2`` per layer instead of the
        componentwise ``max_j sum_i |W_ji|``.  Each entry keeps the smaller of the two.
        """
        K, n = fs.A.shape
        m = op.w.shape[0]
        gamma = (n + 1) * _U / (1.0 - (n + 1) * _U) * _INFL
        nrm_slack = _INFL * (1.0 + 2.0 * (m + 2) * _U)
        out = []
        absb = np.abs(op.b)
        for h, E, N, with_bias in ((fs.A, fs.EA, fs.NA, False), (fs.C, fs.EC, fs.NC, True)):
            R = np.zeros((K, m))        # rounding of this layer's sums
            P = np.zeros((K, m))        # propagated input errors
            # where every product w_i h_i is exactly zero (a zero input with a zero bound,
            # or w_i = 0) the float sum is exact: no bound, not even the underflow slack
            live = np.zeros((K, m), dtype=bool)
            absh = np.abs(h)
            for i in range(n):
                col = op.wabs[:, i]
                if not col.any():
                    continue
                live |= ((absh[:, i] != 0) | (E[:, i] != 0))[:, None] & (col != 0)
                R += (gamma * absh[:, i:i + 1]) * col
                P += E[:, i:i + 1] * col
            if with_bias:
                R += gamma * absb
            Ecomp = (R + P) * _INFL + _TINY
            Nnew = (op.norm2_bound() * N + np.sqrt((R * R).sum(axis=1)) * nrm_slack) * _INFL \
                + _TINY * math.sqrt(m + 1)
            Enew = np.where(live, np.minimum(Ecomp, Nnew[:, None]), 0.0)
            Enew[:, col_exact] = 0.0
            Nnew = np.minimum(Nnew, np.sqrt((Enew * Enew).sum(axis=1)) * nrm_slack + _TINY)
            out += [Enew, Nnew]
        EA, NA, EC, NC = out
        return EA, EC, NA, NC

    def _exact_linear(self, es: _ExactSet, op: _Linear, pos: int) -> _ExactSet:
        wt, sw, bint, sb = op.integer_form()
        sched = self.schedule()
        e, e_new = sched[pos], sched[pos + 1]
        s1, s2 = 1 << (e_new - e - sw), 1 << (e_new - sb)
        A = es.A.dot(wt) * s1
        C = es.C.dot(wt) * s1 + bint[None, :] * s2
        return _ExactSet(A, C, es.lo, es.hi, es.lid, es.rid, es.gpos)

    # ----------------------------------------------------------- ReLU
    def _relu(self, fs: _FloatSet, es: _ExactSet | None,
              pos: int) -> tuple[_FloatSet, _ExactSet | None]:
        K, n = fs.A.shape
        all_exact = bool(self.col_exact.all())
        # ---- float set: decisions
        if K:
            sides = []
            max_a = np.abs(fs.A).max(axis=0)
            max_c = np.abs(fs.C).max(axis=0)
            for E in (fs.L, fs.R):
                ends_exact = (E[:, _EP] == 0) & (E[:, _EQ] == 0)
                if all_exact and ends_exact.all():
                    # fast path: if the largest products of every column are certified, all
                    # products are exact and the signs of the rounded sums are exact
                    gmax = int(E[:, _G].max()) + self.col_grid
                    with np.errstate(over="ignore"):
                        ok = (np.ldexp(max_a * float(np.abs(E[:, _P]).max()), gmax) < _LIM) \
                            & (np.ldexp(max_c * float(np.abs(E[:, _Q]).max()), gmax) < _LIM) \
                            & (gmax <= _MAX_GRID)
                    if ok.all():
                        v = fs.A * E[:, _P, None] + fs.C * E[:, _Q, None]
                        sides.append((np.sign(v).astype(np.int8), np.ones(v.shape, dtype=bool)))
                        self.stats["certified_signs"] += v.size
                        continue
                exact = self.col_exact[None, :] & ends_exact[:, None]
                g = self.col_grid[None, :] + E[:, _G].astype(np.int64)[:, None]
                sides.append(_sign_products(
                    fs.A, E[:, _P, None], fs.C, E[:, _Q, None], fs.EA, E[:, _EP, None], fs.EC,
                    E[:, _EQ, None], exact, g, g, self.stats))
            (sL, dL), (sR, dR) = sides
            bad = np.zeros(K, dtype=bool) if (dL.all() and dR.all()) else \
                ~(dL.all(axis=1) & dR.all(axis=1))
            if not all_exact:
                with np.errstate(invalid="ignore"):
                    bad |= ~(np.isfinite(fs.A).all(axis=1) & np.isfinite(fs.C).all(axis=1)
                             & np.isfinite(fs.EA).all(axis=1) & np.isfinite(fs.EC).all(axis=1))
            cross = (sL.astype(np.int16) * sR) < 0
            cross &= ~bad[:, None]
            kk, jj = np.nonzero(cross)                 # row-major: sorted by cell
            sg = sR[kk, jj].astype(np.float64)         # the sign of A_j on the cell
            cP = -sg * fs.C[kk, jj]
            cQ = sg * fs.A[kk, jj]
            cEP = fs.EC[kk, jj]
            cEQ = fs.EA[kk, jj]
            cX = self.col_exact[jj]
            cG = self.col_grid[jj]
            newgroup = np.ones(kk.shape[0], dtype=bool)
            if kk.shape[0] > 1 and np.any(kk[1:] == kk[:-1]):
                # several crossings in some cells: sort them by their float value, then
                # check every adjacent pair exactly (a wrong or undecided order -> exact set)
                with np.errstate(divide="ignore", invalid="ignore"):
                    key = cP / cQ
                order = np.lexsort((key, kk))
                kk, jj, cP, cQ, cEP, cEQ, cX, cG = (
                    x[order] for x in (kk, jj, cP, cQ, cEP, cEQ, cX, cG))
                ia = np.nonzero(kk[1:] == kk[:-1])[0]   # pair (ia, ia + 1) in the same cell
                ib = ia + 1
                both = cX[ia] & cX[ib]
                gab = cG[ia] + cG[ib]
                # sign(t_b - t_a) = sign(P_b Q_a - P_a Q_b); zero: one cut
                d, dec = _sign_products(cP[ib], cQ[ia], -cP[ia], cQ[ib], cEP[ib], cEQ[ia],
                                        cEP[ia], cEQ[ib], both, gab, gab, self.stats)
                wrong = ~dec | (d < 0)
                if wrong.any():
                    bad[kk[ia[wrong]]] = True
                newgroup[ib] = d != 0
                keep_c = ~bad[kk]
                kk, jj, cP, cQ, cEP, cEQ, cX, cG, newgroup = (
                    x[keep_c] for x in (kk, jj, cP, cQ, cEP, cEQ, cX, cG, newgroup))
        else:
            bad = np.zeros(0, dtype=bool)
            kk = jj = np.zeros(0, dtype=np.int64)

        # ---- move undecided cells to the exact set
        if bad.any():
            moved = self._to_exact_set(fs.take(np.nonzero(bad)[0]), pos)
            es = moved if es is None or not len(es) else self._concat_exact(es, moved)
            self.stats["exact_cells"] += len(moved)

        # ---- exact set: decisions and children
        e_children = None
        if es is not None and len(es):
            e_children = self._exact_relu_children(es, pos)

        # ---- float set: children of the good cells
        if bad.any():
            good = np.nonzero(~bad)[0]
            remap = np.full(K, -1, dtype=np.int64)
            remap[good] = np.arange(good.shape[0])
            ck = remap[kk]
            gfs = fs.take(good)
            sL, sR = sL[good], sR[good]
        else:
            ck, gfs = kk, fs
        Kg = len(gfs)
        if Kg:
            u = np.cumsum(newgroup) - 1
            m = np.bincount(ck[newgroup], minlength=Kg)
            cnt, start, local, uoff = _children_layout(m)
            rank = np.zeros((Kg, n), dtype=np.int64)
            rank[ck, jj] = u - uoff[ck]
            crossg = np.zeros((Kg, n), dtype=bool)
            crossg[ck, jj] = True
            act = _child_masks(crossg, rank, sL > 0, sR > 0, cnt, local)
            # the new cuts (one per group of equal crossings), in (cell, position) order
            uk, uj = ck[newgroup], jj[newgroup]
            uX = cX[newgroup]
            cuts = np.column_stack([cP[newgroup], cQ[newgroup], cEP[newgroup], cEQ[newgroup],
                                    np.where(uX, cG[newgroup], 0), np.zeros(uk.shape[0])])
            ids = self.register_float_cuts(pos, uj, gfs.lid[uk], gfs.rid[uk], cuts[:, _P],
                                           cuts[:, _Q], cuts[:, _EP], cuts[:, _EQ])
            cuts[:, _ID] = ids
            total_c = local.shape[0]
            at_start, at_end = start, start + m
            rep = lambda x: np.repeat(x, cnt, axis=0)  # noqa: E731
            if all_exact:
                EA = EC = np.zeros((total_c, n))
                NA = NC = np.zeros(total_c)
            else:
                # masking zeroes components of the error vectors: the 2-norms do not grow
                EA = np.where(act, rep(gfs.EA), 0.0)
                EC = np.where(act, rep(gfs.EC), 0.0)
                NA, NC = rep(gfs.NA), rep(gfs.NC)
            child = _FloatSet(A=np.where(act, rep(gfs.A), 0.0), C=np.where(act, rep(gfs.C), 0.0),
                              EA=EA, EC=EC, NA=NA, NC=NC, L=_interleave(gfs.L, cuts, at_start),
                              R=_interleave(gfs.R, cuts, at_end),
                              gpos=np.zeros(total_c, dtype=np.int64))
            f_counts, f_parent_gpos, f_local = cnt, rep(gfs.gpos), local
        else:
            child = fs.take(np.zeros(0, dtype=np.int64))
            f_counts = np.zeros(0, dtype=np.int64)
            f_parent_gpos = f_local = np.zeros(0, dtype=np.int64)
            gfs = child

        # ---- global positions of all children
        total = len(gfs) + (len(es) if es is not None else 0)
        cnt_all = np.zeros(total, dtype=np.int64)
        if len(gfs):
            cnt_all[gfs.gpos] = f_counts
        if e_children is not None:
            cnt_all[es.gpos] = e_children[1]
        off = np.cumsum(cnt_all) - cnt_all
        if len(child):
            child.gpos = off[f_parent_gpos] + f_local
        new_es = None
        if e_children is not None:
            new_es, _, e_parent_gpos, e_local = e_children
            new_es.gpos = off[e_parent_gpos] + e_local
        return child, new_es

    def _to_exact_set(self, fs: _FloatSet, pos: int) -> _ExactSet:
        """Recompute cells exactly (replay at an interior point) for the exact set."""
        lo = [self.exact_cut(int(i)) for i in fs.lid]
        hi = [self.exact_cut(int(i)) for i in fs.rid]
        rowsA, rowsC = [], []
        for a, c in zip(lo, hi):
            A, C = self.replay((a + c) / 2, pos)
            rowsA.append(A)
            rowsC.append(C)
        n = fs.A.shape[1]
        A = np.empty((len(lo), n), dtype=object)
        C = np.empty((len(lo), n), dtype=object)
        for k in range(len(lo)):
            A[k, :] = rowsA[k]
            C[k, :] = rowsC[k]
        return _ExactSet(A, C, _obj(lo), _obj(hi), fs.lid.copy(), fs.rid.copy(), fs.gpos.copy())

    @staticmethod
    def _concat_exact(a: _ExactSet, b: _ExactSet) -> _ExactSet:
        return _ExactSet(np.concatenate([a.A, b.A]), np.concatenate([a.C, b.C]),
                         np.concatenate([a.lo, b.lo]), np.concatenate([a.hi, b.hi]),
                         np.concatenate([a.lid, b.lid]), np.concatenate([a.rid, b.rid]),
                         np.concatenate([a.gpos, b.gpos]))

    def _exact_relu_children(self, es: _ExactSet, pos: int) -> tuple[_ExactSet, np.ndarray,
                                                                      np.ndarray, np.ndarray]:
        K, n = es.A.shape
        ln = _obj([f.numerator for f in es.lo])[:, None]
        ld = _obj([f.denominator for f in es.lo])[:, None]
        rn = _obj([f.numerator for f in es.hi])[:, None]
        rd = _obj([f.denominator for f in es.hi])[:, None]
        zl = es.A * ln + es.C * ld
        zr = es.A * rn + es.C * rd
        sL = (zl > 0).astype(np.int8) - (zl < 0).astype(np.int8)
        sR = (zr > 0).astype(np.int8) - (zr < 0).astype(np.int8)
        cross = (sL.astype(np.int16) * sR) < 0
        kk, jj = np.nonzero(cross)
        per_row: dict[int, list[tuple[Fraction, int]]] = {}
        for k, j in zip(kk.tolist(), jj.tolist()):
            per_row.setdefault(k, []).append((Fraction(-es.C[k, j], es.A[k, j]), j))
        m = np.zeros(K, dtype=np.int64)
        rank = np.zeros((K, n), dtype=np.int64)
        cuts: list[Fraction] = []
        cut_row: list[int] = []
        for k in sorted(per_row):
            ts = sorted({t for t, _ in per_row[k]})
            where = {t: r for r, t in enumerate(ts)}
            for t, j in per_row[k]:
                rank[k, j] = where[t]
            m[k] = len(ts)
            cuts.extend(ts)
            cut_row.extend([k] * len(ts))
        cnt, start, local, uoff = _children_layout(m)
        parent = np.repeat(np.arange(K), cnt)
        act = _child_masks(cross, rank, sL > 0, sR > 0, cnt, local)
        ids = np.arange(self.next_id, self.next_id + len(cuts), dtype=np.int64)
        self.next_id += len(cuts)
        for i, t in zip(ids.tolist(), cuts):
            self.memo[i] = t
        first = local == 0
        last = local == m[parent]
        li = np.where(first, parent, K + uoff[parent] + local - 1)
        ri = np.where(last, parent, K + uoff[parent] + local)
        cut_arr = _obj(cuts)
        lo = np.concatenate([es.lo, cut_arr])[li]
        hi = np.concatenate([es.hi, cut_arr])[ri]
        lid = np.concatenate([es.lid, ids])[li]
        rid = np.concatenate([es.rid, ids])[ri]
        A = np.where(act, es.A[parent], 0).astype(object)
        C = np.where(act, es.C[parent], 0).astype(object)
        child = _ExactSet(A, C, lo, hi, lid, rid, np.zeros(parent.shape[0], dtype=np.int64))
        return child, m + 1, es.gpos[parent], local

    # ----------------------------------------------------------- final merge
    def _finish(self, fs: _FloatSet, es: _ExactSet | None) -> PieceAnalysis:
        nf = len(fs)
        ne = len(es) if es is not None else 0
        total = nf + ne
        self.stats["cells"] = total
        kind = np.zeros(total, dtype=np.int8)      # 0: float cell, 1: exact cell
        index = np.zeros(total, dtype=np.int64)
        kind[fs.gpos] = 0
        index[fs.gpos] = np.arange(nf)
        if ne:
            kind[es.gpos] = 1
            index[es.gpos] = np.arange(ne)
        lid = np.zeros(total, dtype=np.int64)
        rid = np.zeros(total, dtype=np.int64)
        lid[fs.gpos], rid[fs.gpos] = fs.lid, fs.rid
        if ne:
            lid[es.gpos], rid[es.gpos] = es.lid, es.rid

        # slopes: float cells (value, bound) and exact cells (Fraction)
        slope_f = np.zeros(total)
        slope_e = np.zeros(total)
        slope_f[fs.gpos] = fs.A[:, 0] if nf else 0.0
        slope_e[fs.gpos] = fs.EA[:, 0] if nf else 0.0
        e_final = self.schedule()[-1] if ne else 0
        exact_slopes: dict[int, Fraction] = {}
        if ne:
            for g, a in zip(es.gpos.tolist(), es.A[:, 0].tolist()):
                exact_slopes[g] = Fraction(a, 1 << e_final)

        def exact_slope(g: int) -> Fraction:
            hit = exact_slopes.get(g)
            if hit is None:
                if kind[g] == 0 and slope_e[g] == 0:
                    hit = Fraction(float(slope_f[g]))
                else:
                    a = self.exact_cut(int(lid[g]))
                    c = self.exact_cut(int(rid[g]))
                    A, _ = self.replay((a + c) / 2, len(self.ops))
                    hit = Fraction(A[0], 1 << self.schedule()[-1])
                exact_slopes[g] = hit
            return hit

        change = np.zeros(max(total - 1, 0), dtype=bool)
        if total > 1:
            both_float = (kind[:-1] == 0) & (kind[1:] == 0)
            a1, a2 = slope_f[:-1], slope_f[1:]
            e1, e2 = slope_e[:-1], slope_e[1:]
            with np.errstate(invalid="ignore", over="ignore"):
                diff = a1 - a2
                exact_pair = both_float & (e1 == 0) & (e2 == 0) & np.isfinite(a1) & np.isfinite(a2)
                differ = both_float & ~exact_pair & (
                    np.abs(diff) * (1 - 2 * _U) > (e1 + e2) * _INFL + _TINY)
            change[exact_pair] = a1[exact_pair] != a2[exact_pair]
            change[differ] = True
            undecided = np.nonzero(~exact_pair & ~differ)[0]
            for g in undecided.tolist():
                change[g] = exact_slope(g) != exact_slope(g + 1)

        bp_gpos = np.nonzero(change)[0]
        bp_ids = rid[bp_gpos]
        # float values and error bounds of every cut on the final partition (right endpoints)
        t_val = np.zeros(total)
        t_err = np.zeros(total)
        if nf:
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                rp, rq, rep_, req_ = (fs.R[:, c] for c in (_P, _Q, _EP, _EQ))
                val = rp / rq
                qmin = rq - req_
                err = np.where(qmin > 0, (rep_ + np.abs(val) * req_) / qmin, np.inf)
                err = err * _INFL + 2 * _U * np.abs(val) + _TINY
                err = np.where((rep_ == 0) & (req_ == 0), _U * np.abs(val) + 2.0**-1073, err)
            t_val[fs.gpos] = val
            t_err[fs.gpos] = err
        if ne:
            for g, t in zip(es.gpos.tolist(), es.hi.tolist()):
                t_val[g] = float(t)
                t_err[g] = _U * abs(float(t)) + 2.0**-1073
        return PieceAnalysis(int(bp_gpos.shape[0]) + 1, (self.lo, self.hi), dict(self.stats),
                             self, bp_ids, t_val[bp_gpos].copy(), t_err[bp_gpos].copy())


def _obj(values: Sequence[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


# =====================================================================================
# Public API
# =====================================================================================
def piece_analysis(net: nn.Sequential, interval: Any = (0.0, 1.0)) -> PieceAnalysis:
    """Exact pieces of ``net`` on ``interval``: count, breakpoints, widths and diagnostics.

    ``net``: ``nn.Sequential`` of ``nn.Linear``/``nn.ReLU`` (any order, consecutive Linear
    layers allowed, any widths, weights of any floating dtype and device) with one input and
    one output.  ``interval``: ``(lo, hi)`` with ``lo < hi`` (floats, ints or Fractions,
    converted exactly).  See the module docstring for the algorithm and why it is exact.
    """
    ops = _parse_net(net)
    lo, hi = _parse_interval(interval)
    # overflow and invalid operations only produce inf/NaN, which no filter accepts: such
    # cells go to the rational fallback, so the warnings carry no information here
    with np.errstate(all="ignore"):
        return _Counter(ops, lo, hi).run()


def count_pieces(net: nn.Sequential, interval: Any = (0.0, 1.0)) -> int:
    """Number of maximal affine pieces of ``net`` on ``interval``, exact for the stored weights.

    Adjacent intervals with the same affine map count as one piece.  Raises ``TypeError`` for
    layers other than ``nn.Linear``/``nn.ReLU`` and ``ValueError`` for an empty or reversed
    interval or a non-scalar input or output.
    """
    return piece_analysis(net, interval).count


def breakpoints(net: nn.Sequential, interval: Any = (0.0, 1.0)) -> np.ndarray:
    """Sorted float64 array of the breakpoints of ``net`` strictly inside ``interval``.

    Its length is always ``count_pieces(net, interval) - 1``.  Each value is the exact
    breakpoint ``t`` rounded to nearest when its coefficients are certified-exact float64
    numbers (all dyadic constructions such as the sawtooth) or were computed in rational
    arithmetic; otherwise it is ``fl(P/Q)`` for float64 approximations of the coefficients
    whose rigorous error bound is at most ``2^-32 max(1, |t|)`` (where the bound is larger,
    the exact breakpoint is computed and rounded).  Distinct breakpoints closer than that may
    share a value (the array is made non-decreasing); :func:`breakpoints_exact` gives the
    exact ones.
    """
    return piece_analysis(net, interval).breakpoints


def breakpoints_exact(net: nn.Sequential, interval: Any = (0.0, 1.0)) -> list[Fraction]:
    """The breakpoints of ``net`` strictly inside ``interval`` as exact ``Fraction`` values."""
    return piece_analysis(net, interval).breakpoints_exact()


def piece_widths(net: nn.Sequential, interval: Any = (0.0, 1.0)) -> np.ndarray:
    """Float64 widths of the pieces of ``net`` on ``interval``, left to right.

    ``len == count_pieces(net, interval)``; each width has relative error below ``2^-20``
    (computed from the exact breakpoints where float64 values are not accurate enough), so
    ``(piece_widths(net, I) > tau).sum()`` counts the pieces wider than ``tau`` reliably
    unless a width lies within that relative distance of ``tau``.
    """
    return piece_analysis(net, interval).widths()


def relu_widths(net: nn.Sequential) -> list[int]:
    """Width of the vector each ``nn.ReLU`` of ``net`` acts on, in order.

    For the usual architecture (``Linear, ReLU, ..., Linear``) these are the hidden widths
    ``n_1, ..., n_L``; it also covers consecutive ReLUs or a ReLU right after the input.
    """
    widths, width = [], 1
    for op in _parse_net(net):
        if op is _RELU:
            widths.append(width)
        else:
            width = op.w.shape[0]
    return widths


def _check_widths(widths: Any) -> list[int]:
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence):
        raise TypeError(f"widths must be a sequence of integers, got {type(widths).__name__}")
    out = []
    for i, w in enumerate(widths):
        if isinstance(w, (bool, np.bool_)) or not isinstance(w, (int, np.integer)):
            raise TypeError(f"widths[{i}] must be an integer, got {w!r}")
        if w < 0:
            raise ValueError(f"widths[{i}] must be >= 0, got {w}")
        out.append(int(w))
    return out


def piece_bounds(widths: Sequence[int]) -> dict[str, int]:
    """Upper bounds on the pieces of a 1-D-input ReLU net with ReLU-layer widths ``widths``.

    * ``"product"``: ``prod (n_l + 1)``.  Each ReLU layer of width ``n`` acts on a vector
      that is affine on each cell, so it cuts every cell at most ``n`` times (the 1-D case of
      the region bounds of Montufar et al., NeurIPS 2014, and Serra et al., ICML 2018).
    * ``"telgarsky"``: ``prod max(2 n_l, 1)``.  A pre-activation with ``p`` pieces has a ReLU
      with ``<= 2p`` pieces; a sum of ``n`` of those has ``<= 2 n p`` pieces (the composition
      argument of Telgarsky, COLT 2016, as derived in the book).
    * ``"telgarsky_amgm"``: ``floor((2N/L)^L)`` with ``N = sum n_l``, ``L = len(widths)``:
      the previous bound after the arithmetic-geometric mean inequality, Telgarsky's form.

    Every bound is an integer ``>= 1``; ``widths = []`` (an affine network) gives 1.
    """
    ws = _check_widths(widths)
    product = math.prod(w + 1 for w in ws)
    tel = math.prod(max(2 * w, 1) for w in ws)
    if ws:
        L, N = len(ws), sum(ws)
        amgm = max(math.floor(Fraction(2 * N, L) ** L), 1)
    else:
        amgm = 1
    return {"product": product, "telgarsky": tel, "telgarsky_amgm": amgm}


def piece_bound(widths: Sequence[int]) -> int:
    """The classical bound ``prod_l (n_l + 1)`` on the pieces of a 1-D-input ReLU network.

    ``widths``: the ReLU-layer widths ``n_1, ..., n_L`` (see :func:`relu_widths`).  This is
    the smallest of :func:`piece_bounds` (``n + 1 <= 2n`` for ``n >= 1``).
    """
    return min(piece_bounds(widths).values())


def grid_count(net: nn.Sequential, interval: Any = (0.0, 1.0), n_points: int = 1001,
               dtype: torch.dtype | None = None) -> int:
    """What sampling sees: ``1 +`` the number of activation-pattern changes along a grid.

    Evaluates ``net`` (in its own dtype, or ``dtype``) at ``n_points`` equispaced points of
    ``interval`` (``torch.linspace``) and counts consecutive points whose ReLU activation
    patterns (``pre-activation > 0``) differ, the usual empirical estimate of the regions
    along a line.  A pre-activation that is exactly zero at a grid point (a kink or a touching
    zero hit exactly, common for dyadic constructions) takes its state from the previous
    point (at the start, from the next one), so touching zeros and zeros at the interval's
    ends do not count and a crossing counts once.  Several changes
    inside one grid cell count once: pieces narrower than the spacing are missed.
    """
    _parse_net(net)
    lo, hi = _parse_interval(interval)
    if isinstance(n_points, bool) or not isinstance(n_points, (int, np.integer)) or n_points < 2:
        raise ValueError(f"n_points must be an integer >= 2, got {n_points!r}")
    params = list(net.parameters())
    if dtype is None:
        dtype = params[0].dtype if params else torch.float64
    device = params[0].device if params else torch.device("cpu")
    x = torch.linspace(float(lo), float(hi), int(n_points), dtype=torch.float64)
    h = x.to(device=device, dtype=dtype).reshape(-1, 1)
    changes = np.zeros(int(n_points) - 1, dtype=bool)
    idx = np.arange(int(n_points))[:, None]
    with torch.no_grad():
        for layer in net:
            if isinstance(layer, nn.ReLU):
                z = h.to("cpu", torch.float64).numpy()
                on = z > 0
                # fill the state over exact zeros from the previous point (leading zeros
                # from the next one); a unit that is zero at every point stays off
                known = z != 0
                n_pts = z.shape[0]
                prev = np.maximum.accumulate(np.where(known, idx, -1), axis=0)
                nxt = np.minimum.accumulate(np.where(known, idx, n_pts)[::-1], axis=0)[::-1]
                src = np.where(prev >= 0, prev, np.minimum(nxt, n_pts - 1))
                on = np.take_along_axis(on, src, axis=0)
                changes |= (on[1:] != on[:-1]).any(axis=1)
                h = torch.relu(h)
            else:
                h = nn.functional.linear(h, layer.weight.to(dtype),
                                         None if layer.bias is None else layer.bias.to(dtype))
    return 1 + int(changes.sum())


# =====================================================================================
# Networks for the experiments: random initialisations, perturbations, resolution
# =====================================================================================
#: Initialisations of :func:`random_relu_net`.
INITS: tuple[str, ...] = ("he", "pytorch", "he-zero-bias")


def random_relu_net(widths: Sequence[int], init: str = "pytorch", seed: int = 0,
                    dtype: torch.dtype = torch.float64) -> nn.Sequential:
    """A random ReLU net ``1 -> n_1 -> ... -> n_L -> 1`` at initialisation.

    ``init``:

    * ``"pytorch"``: ``nn.Linear``'s default, weights and biases ``U(-1/sqrt(fan_in),
      1/sqrt(fan_in))`` (Kaiming-uniform with ``a = sqrt(5)`` for the weights);
    * ``"he"``: He et al. (ICCV 2015) weights ``N(0, 2/fan_in)``, biases as PyTorch's default
      ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (He et al. set biases to zero, which makes the
      net positively homogeneous, see ``"he-zero-bias"``);
    * ``"he-zero-bias"``: He weights and zero biases: ``f(t x) = t f(x)`` for ``t >= 0``, so
      at most 2 pieces on any interval (kink only at 0).

    Draws from a ``torch.Generator`` seeded with ``seed`` (layer by layer, weights then
    biases), in float64, then stores the parameters in ``dtype``.
    """
    ws = _check_widths(widths)
    if not ws or min(ws) < 1:
        raise ValueError(f"widths must be a non-empty list of positive integers, got {widths!r}")
    if init not in INITS:
        raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    gen = torch.Generator().manual_seed(int(seed))
    layers: list[nn.Module] = []
    n_in = 1
    for i, n_out in enumerate(ws + [1]):
        lin = nn.utils.skip_init(nn.Linear, n_in, n_out, dtype=torch.float64)
        bound = 1.0 / math.sqrt(n_in)
        with torch.no_grad():
            if init == "pytorch":
                lin.weight.uniform_(-bound, bound, generator=gen)
            else:
                lin.weight.normal_(0.0, math.sqrt(2.0 / n_in), generator=gen)
            if init == "he-zero-bias":
                lin.bias.zero_()
            else:
                lin.bias.uniform_(-bound, bound, generator=gen)
        layers.append(lin.to(dtype))
        if i < len(ws):
            layers.append(nn.ReLU())
        n_in = n_out
    return nn.Sequential(*layers)


def perturbed_net(net: nn.Sequential, rel: float, seed: int = 0,
                  dtype: torch.dtype | None = None) -> nn.Sequential:
    """A copy of ``net`` with every weight and bias ``w`` replaced by ``w (1 + rel u)``.

    ``u ~ U(-1, 1)`` i.i.d. from a NumPy generator seeded with ``seed``; computed in float64,
    stored in ``dtype`` (default: each layer's own dtype).  Zero weights stay zero.
    """
    _parse_net(net)
    if not (isinstance(rel, (int, float, np.floating)) and math.isfinite(rel) and rel >= 0):
        raise ValueError(f"rel must be a finite number >= 0, got {rel!r}")
    rng = np.random.default_rng(seed)
    layers: list[nn.Module] = []
    for layer in net:
        if isinstance(layer, nn.ReLU):
            layers.append(nn.ReLU())
            continue
        dt = dtype or layer.weight.dtype
        new = nn.utils.skip_init(nn.Linear, layer.in_features, layer.out_features,
                                 bias=layer.bias is not None, dtype=dt)
        with torch.no_grad():
            for src, dst in ((layer.weight, new.weight), (layer.bias, new.bias)):
                if src is None:
                    continue
                w = src.detach().to("cpu", torch.float64)
                u = torch.from_numpy(rng.uniform(-1.0, 1.0, size=tuple(w.shape)))
                dst.copy_((w * (1.0 + float(rel) * u)).to(dt))
        layers.append(new)
    return nn.Sequential(*layers)


def representable(values: Sequence[Any], dtype: torch.dtype) -> np.ndarray:
    """Whether each exact number is a finite number of ``dtype``.

    ``values``: a float64 array (taken exactly; vectorised) or a sequence of ``Fraction``,
    ints or floats (each converted exactly).
    """
    if isinstance(values, np.ndarray) and values.dtype == np.float64:
        f = values
        exact64 = np.isfinite(f)
    else:
        ts = [_to_exact(v, "values[i]") for v in values]
        f = np.array([float(t) for t in ts], dtype=np.float64)
        exact64 = np.array([math.isfinite(x) and Fraction(x) == t for x, t in zip(f.tolist(), ts)],
                           dtype=bool)
    r = torch.from_numpy(f).to(dtype).to(torch.float64).numpy()
    return exact64 & (r == f)


def _next_above(t: Fraction, dtype: torch.dtype) -> Fraction:
    """The smallest number of ``dtype`` strictly above ``t`` (may be +inf)."""
    r = torch.tensor(float(t), dtype=torch.float64).to(dtype)
    inf = torch.tensor(math.inf, dtype=dtype)
    down = torch.tensor(-math.inf, dtype=dtype)
    while r.item() != math.inf and Fraction(r.item()) <= t:
        r = torch.nextafter(r, inf)
    while True:
        prev = torch.nextafter(r, down)
        if prev.item() == -math.inf or not Fraction(prev.item()) > t:
            break
        r = prev
    return Fraction(r.item()) if math.isfinite(r.item()) else Fraction(10**400)


def resolved_pieces(edges: Sequence[Any], dtype: torch.dtype) -> np.ndarray:
    """For consecutive ``edges`` (exact numbers), whether the open piece between two of them
    contains a number of ``dtype``: only then can an input of that format land inside it.

    ``edges``: ``[lo, breakpoints..., hi]`` as Fractions or float64 values (taken exactly).
    Float64 input is handled vectorised; Fractions one by one.
    """
    if isinstance(edges, np.ndarray) and edges.dtype == np.float64:
        e = torch.from_numpy(edges)
        r = e.to(dtype)
        up = torch.where(r.to(torch.float64) > e, r,
                         torch.nextafter(r, torch.full_like(r, math.inf)))
        return (up.to(torch.float64)[:-1] < e[1:]).numpy()
    ts = [_to_exact(v, "edges[i]") for v in edges]
    return np.array([_next_above(a, dtype) < b for a, b in zip(ts, ts[1:])], dtype=bool)


# =====================================================================================
# Reference implementation (slow, pure Fraction; independent of the code above)
# =====================================================================================
def _reference_layers(net: nn.Sequential) -> list[Any]:
    _parse_net(net)  # validation only
    layers: list[Any] = []
    for layer in net:
        if isinstance(layer, nn.ReLU):
            layers.append(None)
        else:
            w = layer.weight.detach().to("cpu", torch.float64).tolist()
            b = (layer.bias.detach().to("cpu", torch.float64).tolist() if layer.bias is not None
                 else [0.0] * layer.out_features)
            layers.append(([[Fraction(v) for v in row] for row in w], [Fraction(v) for v in b]))
    return layers


def _reference_forward(layers: list[Any], x: Fraction, upto: int) -> tuple[list[Fraction],
                                                                           list[Fraction]]:
    """Value and derivative of every neuron before layer ``upto`` at ``x`` (masks at x)."""
    val, der = [x], [Fraction(1)]
    for item in layers[:upto]:
        if item is None:
            on = [v > 0 for v in val]
            val = [v if o else Fraction(0) for v, o in zip(val, on)]
            der = [d if o else Fraction(0) for d, o in zip(der, on)]
        else:
            w, b = item
            val = [sum((wi * vi for wi, vi in zip(row, val)), bias) for row, bias in zip(w, b)]
            der = [sum((wi * di for wi, di in zip(row, der)), Fraction(0)) for row in w]
    return val, der


def reference_breakpoints(net: nn.Sequential, interval: Any = (0.0, 1.0)) -> list[Fraction]:
    """Breakpoints by brute force in ``Fraction`` arithmetic (slow; for tests and checks).

    For each ReLU layer in turn, on every cell of the current partition evaluate all its
    pre-activations and their derivatives exactly at the cell's midpoint (earlier ReLUs masked
    by their signs there) and cut the cell at every zero ``m - z/z'`` strictly inside it.
    Finally compare the exact output derivatives at the midpoints of adjacent cells.  Cost
    ``O(L^2 n^2)`` Fraction operations per cell.
    """
    layers = _reference_layers(net)
    lo, hi = _parse_interval(interval)
    cuts = [lo, hi]
    for upto, item in enumerate(layers):
        if item is not None:
            continue
        new = set(cuts)
        for a, b in zip(cuts, cuts[1:]):
            mid = (a + b) / 2
            val, der = _reference_forward(layers, mid, upto)
            for v, d in zip(val, der):
                if d != 0:
                    t = mid - v / d
                    if a < t < b:
                        new.add(t)
        cuts = sorted(new)
    slopes = []
    for a, b in zip(cuts, cuts[1:]):
        _, der = _reference_forward(layers, (a + b) / 2, len(layers))
        slopes.append(der[0])
    return [cuts[i + 1] for i in range(len(slopes) - 1) if slopes[i] != slopes[i + 1]]


def reference_count_pieces(net: nn.Sequential, interval: Any = (0.0, 1.0)) -> int:
    """``len(reference_breakpoints(net, interval)) + 1``."""
    return len(reference_breakpoints(net, interval)) + 1
