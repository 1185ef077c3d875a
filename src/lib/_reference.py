"""The exact and mpmath engine behind :func:`lib.fp.reference` (private to :mod:`lib.fp`).

A Linear/ReLU network is evaluated, and differentiated by backprop, on arrays of numbers in
one of three backends:

``"dyadic"``
    Python integers with one power-of-two scale per array (:class:`Arr` ``v * 2^e``): exact
    and fast when the weights, inputs, targets and ``relu'(0)`` are dyadic (every float is);
``"fraction"``
    ``Fraction`` objects, exact for any rational inputs;
``"mpmath"``
    mpmath numbers at the caller's working precision (``mpmath.workdps``).

The weights are read with :func:`lib.exact.exact_weights` (exact for every format).

The second half of the module is the float64 arithmetic of the certified piece counter
(private to :mod:`lib._counting`): grid exponents, a rigorous spectral-norm bound, exact sign
predicates, componentwise error bounds, the vectorised layout of cut cells' children, and the
work buffers and BLAS/huge-page settings of the counter's hot path.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import mpmath
import numpy as np
from numpy._core.multiarray import _set_madvise_hugepage  # type: ignore[attr-defined]
from threadpoolctl import ThreadpoolController
from torch import nn

from lib.exact import dyadic_integers, dyadic_parts, exact_weights, sign_of_products, to_fraction

BACKENDS = ("dyadic", "fraction", "mpmath")


def is_mpf(v: Any) -> bool:
    """Whether ``v`` is an mpmath number."""
    return isinstance(v, mpmath.mpf)


def mp_to_fraction(v: Any) -> Fraction:
    """An mpmath number as the exact ``Fraction`` it stores."""
    m, e = mpmath.mpf(v).man_exp
    return Fraction(int(m)) * Fraction(2) ** int(e)


def choose_backend(arithmetic: str, exact_values: Iterable[Fraction], at_zero: Fraction) -> str:
    """``"mpmath"`` for mpmath arithmetic; else ``"dyadic"`` when ``at_zero`` and every value
    are dyadic, ``"fraction"`` otherwise."""
    if arithmetic == "mpmath":
        return "mpmath"
    dyadic = dyadic_parts(at_zero) is not None and all(
        dyadic_parts(v) is not None for v in exact_values)
    return "dyadic" if dyadic else "fraction"


class Arr:
    """An array of numbers ``v * 2^e``: ``v`` an object ndarray of Python ints (the dyadic
    backend, one shared exponent ``e``) or of Fractions / mpmath numbers (``e = 0``)."""

    __slots__ = ("v", "e")

    def __init__(self, v: np.ndarray, e: int = 0) -> None:
        self.v, self.e = v, e

    def __add__(self, other: Arr) -> Arr:
        if self.e == other.e:
            return Arr(self.v + other.v, self.e)
        if self.e > other.e:
            return Arr(self.v * (1 << (self.e - other.e)) + other.v, other.e)
        return Arr(self.v + other.v * (1 << (other.e - self.e)), self.e)

    def __sub__(self, other: Arr) -> Arr:
        return self + Arr(-other.v, other.e)

    def __mul__(self, other: Arr) -> Arr:
        return Arr(self.v * other.v, self.e + other.e)

    def __matmul__(self, other: Arr) -> Arr:
        return Arr(self.v @ other.v, self.e + other.e)

    @property
    def T(self) -> Arr:
        return Arr(self.v.T, self.e)

    def sum0(self) -> Arr:
        return Arr(np.sum(self.v, axis=0), self.e)

    def exact(self, backend: str) -> list[Any]:
        """Flat list of values: Fractions (exact backends) or mpf."""
        flat = self.v.reshape(-1).tolist()
        if backend == "dyadic":
            scale = Fraction(2) ** self.e
            return [Fraction(int(v)) * scale for v in flat]
        return list(flat)


def make(values: Sequence[Any], shape: tuple[int, ...], backend: str) -> Arr:
    """An :class:`Arr` holding exact numbers ``values`` (Fractions / ints / floats) in
    ``backend``."""
    if backend == "dyadic":
        ints, k = dyadic_integers(values)
        out = np.empty(len(ints), dtype=object)
        out[:] = ints
        return Arr(out.reshape(shape), -k)
    out = np.empty(len(values), dtype=object)
    if backend == "fraction":
        for i, v in enumerate(values):
            out[i] = to_fraction(v)
    else:  # mpmath, at the current working precision
        for i, v in enumerate(values):
            if is_mpf(v):
                out[i] = +v
            else:
                q = to_fraction(v)
                out[i] = mpmath.mpf(q.numerator) / q.denominator
    return Arr(out.reshape(shape), 0)


def relu_derivative(pos: np.ndarray, zero: np.ndarray, at_zero: Fraction, backend: str) -> Arr:
    """The ReLU derivative per entry: 1 where ``pos``, ``at_zero`` where ``zero``, else 0."""
    if backend == "dyadic":
        m, k = dyadic_parts(at_zero)  # checked dyadic by choose_backend
        one = 1 << k
        v = np.where(pos, one, np.where(zero, m, 0)).astype(object)
        return Arr(v, -k)
    if backend == "fraction":
        v = np.where(pos, Fraction(1), np.where(zero, at_zero, Fraction(0))).astype(object)
        return Arr(v, 0)
    z = mpmath.mpf(at_zero.numerator) / at_zero.denominator
    v = np.where(pos, mpmath.mpf(1), np.where(zero, z, mpmath.mpf(0))).astype(object)
    return Arr(v, 0)


def scale(v: Any, s: Fraction, backend: str) -> Any:
    """``v * s`` (in mpmath as ``v * numerator / denominator``)."""
    if backend == "mpmath":
        return v * s.numerator / s.denominator
    return v * s


@dataclass
class Pass:
    """A forward pass: outputs, the input of each Linear layer ``(n, k)``, the ``(pos, zero)``
    masks and pre-activations of each ReLU layer and, optionally, ``d(pre-activation)/dx``."""

    values: Arr
    inputs: list[Arr]
    masks: list[tuple[np.ndarray, np.ndarray]]
    preacts: list[Arr]
    tangents: list[Arr] | None


def network(layers: Sequence[nn.Module], backend: str) -> list[tuple[Arr, Arr] | None]:
    """The weights of Linear/ReLU ``layers`` as ``(W, b)`` arrays in ``backend`` (``None`` per
    ReLU); ``W`` has shape ``(out, in)``, ``b`` ``(1, out)``."""
    out: list[tuple[Arr, Arr] | None] = []
    for item in exact_weights(layers):
        if item is None:
            out.append(None)
            continue
        w, b = item
        shape = (len(w), len(w[0]) if w else 0)
        out.append((make([v for row in w for v in row], shape, backend),
                    make(b, (1, len(b)), backend)))
    return out


def forward(layers: list[tuple[Arr, Arr] | None], x: Arr, backend: str, at_zero: Fraction,
            tangents: bool) -> Pass:
    """The forward pass at the inputs ``x`` ``(n, 1)``; with ``tangents`` also the derivatives
    of the pre-activations with respect to the input (``relu'(0) = at_zero``)."""
    a = x
    t = make([1] * x.v.shape[0], x.v.shape, backend) if tangents else None
    inputs, masks, preacts, tans = [], [], [], []
    z: Arr | None = None
    for item in layers:
        if item is not None:
            w, b = item
            inputs.append(a)
            z = a @ w.T + b
            a = z
            if t is not None:
                t = t @ w.T
        else:
            assert z is not None
            pos, zero = z.v > 0, z.v == 0
            masks.append((pos, zero))
            preacts.append(z)
            if t is not None:
                tans.append(t)
                t = t * relu_derivative(pos, zero, at_zero, backend)
            a = Arr(np.where(pos, z.v, 0).astype(object), z.e)
            z = a
    return Pass(values=a, inputs=inputs, masks=masks, preacts=preacts,
                tangents=tans if tangents else None)


def backward(layers: list[tuple[Arr, Arr] | None], fwd: Pass, cot: Arr, backend: str,
             at_zero: Fraction) -> list[Arr]:
    """Gradients of ``sum_i cot_i N(x_i)`` w.r.t. each Linear's weight and bias, in
    ``named_parameters`` order."""
    grads: list[Arr] = []
    delta = cot  # (n, out)
    li, mi = len(fwd.inputs) - 1, len(fwd.masks) - 1
    for item in reversed(layers):
        if item is not None:
            w, _ = item
            a_in = fwd.inputs[li]
            li -= 1
            grads.append(delta.sum0())          # bias
            grads.append(delta.T @ a_in)        # weight, (out, in)
            delta = delta @ w
        else:
            pos, zero = fwd.masks[mi]
            mi -= 1
            delta = delta * relu_derivative(pos, zero, at_zero, backend)
    grads.reverse()
    return grads


def objective_and_gradient(layers: Sequence[nn.Module], xs: list[Any], ys: list[Any] | None,
                           objective: str, backend: str, at_zero: Fraction) -> dict[str, Any]:
    """Outputs, objective (``"mse"`` or ``"mean_output"``) and its flat parameter gradient at
    the inputs ``xs``; also the ``(n, width)`` masks of exact zeros of every ReLU layer."""
    n = len(xs)
    net = network(layers, backend)
    fwd = forward(net, make(xs, (n, 1), backend), backend, at_zero, tangents=False)
    if objective == "mse":
        assert ys is not None
        resid = fwd.values - make(ys, (n, 1), backend)
        cot, factor = resid, Fraction(2, n)
        loss = scale((resid * resid).sum0().exact(backend)[0], Fraction(1, n), backend)
    else:
        cot, factor = make([1] * n, (n, 1), backend), Fraction(1, n)
        loss = scale(fwd.values.sum0().exact(backend)[0], Fraction(1, n), backend)
    grads = backward(net, fwd, cot, backend, at_zero)
    return {"values": fwd.values.exact(backend), "loss": loss,
            "grad": [scale(v, factor, backend) for g in grads for v in g.exact(backend)],
            "zeros": [z for _, z in fwd.masks]}


def tangents(layers: Sequence[nn.Module], xs: list[Any], at_zero: Fraction) -> list[np.ndarray]:
    """``|d z_j / dx (x_i)|`` of every pre-activation ``z_j`` of every ReLU layer, exactly,
    as float64 arrays ``(n, width)``."""
    backend = choose_backend("exact", xs, at_zero)
    fwd = forward(network(layers, backend), make(xs, (len(xs), 1), backend), backend, at_zero,
                  tangents=True)
    assert fwd.tangents is not None
    return [np.array([abs(float(v)) for v in t.exact(backend)]).reshape(t.v.shape)
            for t in fwd.tangents]


# =====================================================================================
# Float64 arithmetic of the certified piece counter (lib._counting)
# =====================================================================================
# Grid exponents of floats, a rigorous bound on a spectral norm, exact sign predicates on
# float64 arrays, the vectorised layout of the children of cut cells, slope changes and cut
# values: pure functions, arrays in and arrays out.
UNIT_ROUNDOFF = 2.0**-53            # unit roundoff of float64
INFL = 1.0 + 2.0**-40               # relative inflation of computed error bounds
TINY = 2.0**-1000                   # absolute slack: underflow in products and in the bounds
LIM = 2.0**53 * (1.0 - 2.0**-40)    # certified integers stay below this (strictly below 2^53)
NO_GRID = -(1 << 20)                # grid exponent of the number zero (no constraint)
MAX_GRID = 1074                     # finest grid float64 can hold (smallest subnormal 2^-1074)
_P, _Q, _EP, _EQ = range(4)         # the first columns of lib._counting's packed cut rows


@contextlib.contextmanager
def no_hugepage_advice() -> Iterator[None]:
    """Within the block numpy does not advise the kernel to back large arrays by huge pages.

    The counter allocates many large, short-lived arrays; with the advice the kernel spends
    more time (system time, compaction) faulting huge pages in than the pages save (measured
    on the 2-core build machine: system time 3.3 s -> 1.0 s for ``sawtooth_net(22)``).
    numpy's switch is process-wide and private (``_set_madvise_hugepage``); it is restored on
    exit.
    """
    previous = _set_madvise_hugepage(False)
    try:
        yield
    finally:
        _set_madvise_hugepage(previous)


def float_grid(x: np.ndarray) -> np.ndarray:
    """Grid exponents: the least ``g`` with ``x * 2^g`` an integer (``NO_GRID`` for zeros)."""
    x = np.asarray(x, dtype=np.float64)
    m, e = np.frexp(x)
    mant = np.ldexp(m, 53).astype(np.int64)       # exact: |m| < 1 has at most 53 bits
    low = mant & -mant                              # lowest set bit, a power of two
    tz = np.frexp(low.astype(np.float64))[1].astype(np.int64) - 1
    g = 53 - e.astype(np.int64) - tz
    return np.where(x == 0, NO_GRID, g)


def plain_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` as an explicit sum of outer products (elementwise float64 operations only)."""
    out = np.zeros((a.shape[0], b.shape[1]))
    for k in range(a.shape[1]):
        out += a[:, k:k + 1] * b[k:k + 1, :]
    return out


def norm2_bound(w: np.ndarray, squarings: int = 4) -> float:
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
    crude = crude * INFL * (1.0 + 2.0 * (max(w.shape) + 2) * UNIT_ROUNDOFF)
    k = -int(np.frexp(absw.max())[1])          # scale max|w| into [1/2, 1): exact if no underflow
    ws = np.ldexp(w, k)
    if not np.array_equal(np.ldexp(ws, -k), w):
        return crude
    r = ws.shape[0]
    x = plain_matmul(ws.T, ws) if ws.shape[1] <= ws.shape[0] else plain_matmul(ws, ws.T)
    m = x.shape[0]
    if ws.shape[1] > ws.shape[0]:
        r = ws.shape[1]
    gam_r = (r + 1) * UNIT_ROUNDOFF / (1 - (r + 1) * UNIT_ROUNDOFF)
    gam_m = (m + 1) * UNIT_ROUNDOFF / (1 - (m + 1) * UNIT_ROUNDOFF)
    aws = np.abs(ws)
    eta = gam_r * float(aws.sum(axis=0).max()) * float(aws.sum(axis=1).max()) * INFL
    best = math.inf
    y = x
    for s_ in range(squarings + 1):
        ny = float(np.abs(y).sum(axis=1).max())
        if not math.isfinite(ny) or not math.isfinite(eta):
            break
        best = min(best, (ny * INFL + eta) ** (2.0 ** -(s_ + 1)))
        if s_ == squarings:
            break
        eta = (2 * (ny + eta) * eta + eta * eta + gam_m * ny * ny) * INFL
        y = plain_matmul(y, y)
    bound = math.ldexp(best * INFL, -k)
    return min(bound, crude)


def sign_products(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray,
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
            cert = exact & (np.ldexp(np.abs(p1), np.broadcast_to(g1, shape)) < LIM) \
                & (np.ldexp(np.abs(p2), np.broadcast_to(g2, shape)) < LIM) \
                & (np.broadcast_to(g1, shape) <= MAX_GRID) & (np.broadcast_to(g2, shape) <= MAX_GRID)
        decided |= cert
        stats["certified_signs"] += int(cert.sum())
    rest = ~decided
    if rest.any():
        with np.errstate(over="ignore", invalid="ignore"):
            aa, ab_ = np.abs(a), np.abs(b)
            ac, ad = np.abs(c), np.abs(d)
            bound = (2.0 * UNIT_ROUNDOFF / (1.0 - 2.0 * UNIT_ROUNDOFF)) * (np.abs(p1) + np.abs(p2)) \
                + (aa * eb + ab_ * ea + np.multiply(ea, eb)) \
                + (ac * ed + ad * ec + np.multiply(ec, ed))
            bound = bound * INFL + TINY
            filt = rest & (np.abs(v) > bound)
        decided |= filt
        stats["filtered_signs"] += int(filt.sum())
        need = ~decided & exact
        if need.any():
            idx = np.nonzero(need)
            A, B, C, D = (np.broadcast_to(x, shape)[idx] for x in (a, b, c, d))
            sign[idx] = sign_of_products(A, B, C, D)
            decided[idx] = True
            stats["expansion_signs"] += int(idx[0].size)
    sign[~decided] = 0
    return sign, decided


def children_layout(m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Children of ``K`` cells cut ``m[k]`` times: counts, starts, local index, cut offsets."""
    cnt = m + 1
    start = np.cumsum(cnt) - cnt
    local = np.arange(int(cnt.sum())) - np.repeat(start, cnt)
    uoff = np.cumsum(m) - m
    return cnt, start, local, uoff


def child_masks(cross: np.ndarray, rank: np.ndarray | None, pos_l: np.ndarray, pos_r: np.ndarray,
                 cnt: np.ndarray, local: np.ndarray) -> np.ndarray:
    """ReLU masks on the children: a crossing unit takes its left sign left of its zero.

    A unit that does not cross is active on every child if it is positive at either end of
    the parent; a crossing unit is active left of its zero iff positive at the left end, and
    right of it iff positive at the right end.  With at most one cut per parent, "left of the
    zero" is simply the first child.
    """
    steady = ~cross
    on_left = pos_l | (steady & pos_r)
    on_right = pos_r | (steady & pos_l)
    if cnt.shape[0] and int(cnt.max()) <= 2:
        left = (local == 0)[:, None]
    else:
        left = local[:, None] <= np.repeat(rank, cnt, axis=0)
    return np.where(left, np.repeat(on_left, cnt, axis=0), np.repeat(on_right, cnt, axis=0))


def interleave(parent_end: np.ndarray, cuts: np.ndarray, at_parent: np.ndarray,
                out: np.ndarray | None = None) -> np.ndarray:
    """Rows ``at_parent`` (indices) take the parents' endpoints, the other rows the cuts
    (rows moved as single 48-byte items: much faster than row-wise fancy indexing); written
    into ``out`` (C-contiguous float64) if given."""
    total = parent_end.shape[0] + cuts.shape[0]
    width = parent_end.shape[1]
    if out is None:
        out = np.empty((total, width), dtype=np.float64)
    item = np.dtype((np.void, 8 * width))
    ov = out.view(item).reshape(total)
    ov[at_parent] = np.ascontiguousarray(parent_end).view(item).reshape(-1)
    rest = np.ones(total, dtype=bool)
    rest[at_parent] = False
    ov[rest] = np.ascontiguousarray(cuts, dtype=np.float64).view(item).reshape(-1)
    return out


def col_absmax(x: np.ndarray, scratch: Scratch | None = None) -> np.ndarray:
    """``np.abs(x).max(axis=0)`` for a non-empty 2-D ``x`` (column by column when there are
    few columns: a contiguous reduction is several times faster than one across rows), the
    absolute values written into ``scratch`` if given."""
    if x.shape[1] > 8:
        return np.abs(x).max(axis=0)
    buf = scratch.get("absmax", (x.shape[0],)) if scratch is not None else None
    return np.array([np.abs(x[:, j], out=buf).max() for j in range(x.shape[1])],
                    dtype=np.float64)


class Scratch:
    """Reusable float64 work arrays by name, grown geometrically: temporaries of the hot
    path written into them instead of fresh arrays (fresh memory costs page faults, which
    showed up as system time as large as the computation itself)."""

    def __init__(self) -> None:
        self._bufs: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        size = math.prod(shape)
        buf = self._bufs.get(name)
        if buf is None or buf.size < size:
            buf = np.empty(max(size, int(1.25 * (buf.size if buf is not None else 0))))
            self._bufs[name] = buf
        return buf[:size].reshape(shape)


def is_zero_view(x: np.ndarray) -> bool:
    """Whether ``x`` is (like) an array made by :func:`zeros_view` (all strides zero)."""
    return x.ndim > 0 and all(st == 0 for st in x.strides) and x.size > 0 and x.flat[0] == 0.0


def zeros_view(*shape: int) -> np.ndarray:
    """A read-only array of zeros that takes no memory (the error bounds of exact cells)."""
    return np.broadcast_to(np.float64(0.0), shape)


def slope_changes(kind: np.ndarray, slope_f: np.ndarray, slope_e: np.ndarray,
                   exact_slope: Any) -> np.ndarray:
    """Whether the output slope changes between adjacent cells: exactly equal float slopes,
    float slopes farther apart than their bounds, else the exact slopes."""
    total = kind.shape[0]
    change = np.zeros(max(total - 1, 0), dtype=bool)
    if total > 1:
        both_float = (kind[:-1] == 0) & (kind[1:] == 0)
        a1, a2 = slope_f[:-1], slope_f[1:]
        e1, e2 = slope_e[:-1], slope_e[1:]
        with np.errstate(invalid="ignore", over="ignore"):
            diff = a1 - a2
            exact_pair = both_float & (e1 == 0) & (e2 == 0) & np.isfinite(a1) & np.isfinite(a2)
            differ = both_float & ~exact_pair & (
                np.abs(diff) * (1 - 2 * UNIT_ROUNDOFF) > (e1 + e2) * INFL + TINY)
        change[exact_pair] = a1[exact_pair] != a2[exact_pair]
        change[differ] = True
        undecided = np.nonzero(~exact_pair & ~differ)[0]
        for g in undecided.tolist():
            change[g] = exact_slope(g) != exact_slope(g + 1)
    return change


def end_values(R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float64 values ``P/Q`` of packed cut rows ``R`` and rigorous bounds on their errors."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        rp, rq, rep_, req_ = (R[:, c] for c in (_P, _Q, _EP, _EQ))
        val = rp / rq
        exact = (rep_ == 0) & (req_ == 0)
        if exact.all():
            err = np.abs(val)
            err *= UNIT_ROUNDOFF
            err += 2.0**-1073
        else:
            qmin = rq - req_
            err = np.where(qmin > 0, (rep_ + np.abs(val) * req_) / qmin, np.inf)
            err = err * INFL + 2 * UNIT_ROUNDOFF * np.abs(val) + TINY
            err = np.where(exact, UNIT_ROUNDOFF * np.abs(val) + 2.0**-1073, err)
    return val, err


BLAS_MIN_ROWS = 1 << 14
BLAS_CONTROLLER: list[Any] = []


def blas_controller() -> Any:
    """A ``threadpoolctl`` controller of the loaded BLAS (made once, on first use: 0.2 s), or
    ``None`` where it cannot be made."""
    if not BLAS_CONTROLLER:
        try:
            BLAS_CONTROLLER.append(ThreadpoolController())
        except Exception:  # pragma: no cover - threadpoolctl failing
            BLAS_CONTROLLER.append(None)
    return BLAS_CONTROLLER[0]


def single_cut_masks(cross: np.ndarray, pos_l: np.ndarray, pos_r: np.ndarray,
                     m: np.ndarray) -> np.ndarray:
    """:func:`child_masks` for cells cut at most once (``m[k]`` in {0, 1}): the children of
    cell ``k`` are its first part (units on at its left end, or on throughout) and, if cut,
    its second; built as both parts of every cell, then only the parts that exist."""
    K, n = cross.shape
    steady = ~cross
    both = np.empty((K, 2, n), dtype=bool)
    both[:, 0] = pos_l | (steady & pos_r)
    both[:, 1] = pos_r | (steady & pos_l)
    act = both.reshape(2 * K, n)
    if not (m > 0).all():
        keep = np.ones((K, 2), dtype=bool)
        keep[:, 1] = m > 0
        act = act.view(np.dtype((np.void, n))).reshape(-1)[keep.reshape(-1)].view(
            bool).reshape(-1, n)
    return act


def float_bounds(fs: Any, op: Any,
                  col_exact: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Error bounds after ``op`` for the float set: componentwise and in the 2-norm.

    Componentwise: ``E' = gamma_(n+1) |h| |W|^T + E |W|^T`` (rounding of the new sums
    plus propagated input errors).  In the 2-norm, per cell: ``N' = ||W||_2 N +
    ||gamma_(n+1) |h| |W|^T||_2``, which grows like ``||W||_2`` per layer instead of the
    componentwise ``max_j sum_i |W_ji|``.  Each entry keeps the smaller of the two.
    """
    K, n = fs.A.shape
    m = op.w.shape[0]
    gamma = (n + 1) * UNIT_ROUNDOFF / (1.0 - (n + 1) * UNIT_ROUNDOFF) * INFL
    nrm_slack = INFL * (1.0 + 2.0 * (m + 2) * UNIT_ROUNDOFF)
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
        Ecomp = (R + P) * INFL + TINY
        Nnew = (op.norm2_bound() * N + np.sqrt((R * R).sum(axis=1)) * nrm_slack) * INFL \
            + TINY * math.sqrt(m + 1)
        Enew = np.where(live, np.minimum(Ecomp, Nnew[:, None]), 0.0)
        Enew[:, col_exact] = 0.0
        Nnew = np.minimum(Nnew, np.sqrt((Enew * Enew).sum(axis=1)) * nrm_slack + TINY)
        out += [Enew, Nnew]
    EA, NA, EC, NC = out
    return EA, EC, NA, NC
