"""The certified piece counter behind :mod:`lib.pieces` (private: use
:func:`lib.pieces.piece_analysis`).

Partition propagation over the layers of a Linear/ReLU network with one input and one output,
every decision certified exact (certified-exact float64, rigorous error bounds, exact float
expansions, or a rational fallback per cell): the algorithm and why the answers are exact are
described in the docstring of :mod:`lib.pieces`.  :class:`Counter` runs it; :func:`read_ops`
reads the network; :class:`CutRegistry` keeps the cuts and recomputes them exactly on demand.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
from torch import nn

from lib.exact import dyadic_integers, linear_arrays, sign_of_products

__all__ = ["UNIT_ROUNDOFF", "RELU", "Linear", "read_ops", "Counter", "CountResult"]

_U = 2.0**-53                 # unit roundoff of float64
UNIT_ROUNDOFF = _U
_INFL = 1.0 + 2.0**-40        # relative inflation of computed error bounds
_TINY = 2.0**-1000            # absolute slack: underflow in products and in the bounds
_LIM = 2.0**53 * (1.0 - 2.0**-40)  # certified integers stay below this (strictly below 2^53)
_NO_GRID = -(1 << 20)          # grid exponent of the number zero (no constraint)
_MAX_GRID = 1074               # finest grid float64 can hold (smallest subnormal 2^-1074)


# =====================================================================================
# The network as operations
# =====================================================================================
@dataclass
class Linear:
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
            wl, sw = dyadic_integers(self.w.reshape(-1).tolist())
            bl, sb = dyadic_integers(self.b.tolist())
            wint = np.empty(len(wl), dtype=object)
            wint[:] = wl
            bint = np.empty(len(bl), dtype=object)
            bint[:] = bl
            self._int = (wint.reshape(self.w.shape).T.copy(), sw, bint.reshape(self.b.shape), sb)
        return self._int


RELU = "relu"


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


def read_ops(layers: Sequence[nn.Module]) -> list[Any]:
    """The checked layers of a Linear/ReLU network (:func:`lib.exact.linear_relu_layers`) as
    operations: :class:`Linear` objects (float64 copies with grids) and :data:`RELU` markers."""
    ops: list[Any] = []
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.Linear):
            w, b = linear_arrays(layer, i)
            w = w + 0.0  # turn -0.0 into +0.0 (same value; keeps signs of zero out of sight)
            b = b + 0.0
            ops.append(Linear(w, b, _float_grid(w), _float_grid(b), np.abs(w)))
        else:
            ops.append(RELU)
    return ops


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
            sign[idx] = sign_of_products(A, B, C, D)
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
# Exact cuts: registry, replay
# =====================================================================================
class CutRegistry:
    """The cuts of one run: each has an id (0 and 1 are the interval's ends), and its exact
    value is known (memoised) or recomputed by replaying the network in the cell it split."""

    def __init__(self, ops: list[Any], lo: Fraction, hi: Fraction, stats: dict[str, int]) -> None:
        self.ops = ops
        self.stats = stats
        self.memo: dict[int, Fraction] = {0: lo, 1: hi}
        self.batches: list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray,
                                 np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self.batch_starts: list[int] = []
        self.next_id = 2
        self._schedule: list[int] | None = None

    def schedule(self) -> list[int]:
        """Exponents ``e`` of the exact representation before each operation (and after)."""
        if self._schedule is None:
            e, sched = 0, [0]
            for op in self.ops:
                if op is not RELU:
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
            if op is RELU:
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
        """Ids for cuts ``P/Q`` (bounds ``EP``, ``EQ``) made by ``neuron`` of operation ``pos``
        in the cells ``(plid, prid)``."""
        n = int(neuron.shape[0])
        ids = np.arange(self.next_id, self.next_id + n, dtype=np.int64)
        if n:
            self.batch_starts.append(self.next_id)
            self.batches.append((self.next_id, pos, neuron, plid, prid, P, Q, EP, EQ))
            self.next_id += n
        return ids

    def register_exact_cuts(self, cuts: list[Fraction]) -> np.ndarray:
        """Ids for cuts known exactly."""
        ids = np.arange(self.next_id, self.next_id + len(cuts), dtype=np.int64)
        self.next_id += len(cuts)
        for i, t in zip(ids.tolist(), cuts):
            self.memo[i] = t
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

    def exact_slope(self, lid: int, rid: int) -> Fraction:
        """The exact output slope on the cell between cuts ``lid`` and ``rid``."""
        a, c = self.exact_cut(lid), self.exact_cut(rid)
        A, _ = self.replay((a + c) / 2, len(self.ops))
        return Fraction(A[0], 1 << self.schedule()[-1])


# =====================================================================================
# Steps of the propagation that need no state
# =====================================================================================
def _float_bounds(fs: _FloatSet, op: Linear,
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


def _concat_exact(a: _ExactSet, b: _ExactSet) -> _ExactSet:
    return _ExactSet(np.concatenate([a.A, b.A]), np.concatenate([a.C, b.C]),
                     np.concatenate([a.lo, b.lo]), np.concatenate([a.hi, b.hi]),
                     np.concatenate([a.lid, b.lid]), np.concatenate([a.rid, b.rid]),
                     np.concatenate([a.gpos, b.gpos]))


def _obj(values: Sequence[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


@dataclass
class _Crossings:
    """The zero crossings of one ReLU layer inside the float cells, sorted by cell and
    position: cell ``kk``, neuron ``jj``, cut ``cP/cQ`` with bounds ``cEP``, ``cEQ``, whether
    it is certified exact (``cX``) and its grid (``cG``); ``newgroup`` marks the first of each
    group of equal crossings (one cut)."""

    kk: np.ndarray
    jj: np.ndarray
    cP: np.ndarray
    cQ: np.ndarray
    cEP: np.ndarray
    cEQ: np.ndarray
    cX: np.ndarray
    cG: np.ndarray
    newgroup: np.ndarray

    def take(self, sel: np.ndarray) -> _Crossings:
        return _Crossings(*(getattr(self, f)[sel] for f in self.__dataclass_fields__))


@dataclass
class CountResult:
    """What one run found: the count, how the decisions were taken, and the breakpoints (cut
    ids, float64 values and rigorous bounds on their errors)."""

    count: int
    stats: dict[str, int]
    bp_ids: np.ndarray
    bp_val: np.ndarray
    bp_err: np.ndarray


# =====================================================================================
# The counter
# =====================================================================================
class Counter:
    """One run of the partition propagation on one network and one interval."""

    def __init__(self, ops: list[Any], lo: Fraction, hi: Fraction) -> None:
        self.ops = ops
        self.lo, self.hi = lo, hi
        self.stats = {"certified_signs": 0, "filtered_signs": 0, "expansion_signs": 0,
                      "exact_cells": 0, "replays": 0, "cells": 0}
        self.cuts = CutRegistry(ops, lo, hi, self.stats)

    def exact_cut(self, cid: int) -> Fraction:
        """The exact value of cut ``cid`` (see :meth:`CutRegistry.exact_cut`)."""
        return self.cuts.exact_cut(cid)

    def run(self) -> CountResult:
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
            if op is RELU:
                fs, es = self._relu(fs, es, pos)
            else:
                fs = self._float_linear(fs, op)
                if es is not None and len(es):
                    es = self._exact_linear(es, op, pos)
        return self._finish(fs, es)

    # ----------------------------------------------------------- Linear
    def _float_linear(self, fs: _FloatSet, op: Linear) -> _FloatSet:
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
            EA, EC, NA, NC = _float_bounds(fs, op, col_exact)
        self.col_exact = col_exact
        self.col_grid = np.where(col_exact, grid, 0)
        return fs.replace(A=A, C=C, EA=EA, EC=EC, NA=NA, NC=NC)

    def _exact_linear(self, es: _ExactSet, op: Linear, pos: int) -> _ExactSet:
        wt, sw, bint, sb = op.integer_form()
        sched = self.cuts.schedule()
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
        sL = sR = cr = None
        bad = np.zeros(K, dtype=bool)
        if K:
            (sL, dL), (sR, dR) = (self._side_signs(fs, E, all_exact) for E in (fs.L, fs.R))
            if not (dL.all() and dR.all()):
                bad = ~(dL.all(axis=1) & dR.all(axis=1))
            if not all_exact:
                with np.errstate(invalid="ignore"):
                    bad |= ~(np.isfinite(fs.A).all(axis=1) & np.isfinite(fs.C).all(axis=1)
                             & np.isfinite(fs.EA).all(axis=1) & np.isfinite(fs.EC).all(axis=1))
            cr = self._crossings(fs, sL, sR, bad)
        # ---- move undecided cells to the exact set; its decisions and children
        if bad.any():
            moved = _to_exact_set(self.cuts, fs.take(np.nonzero(bad)[0]), pos)
            es = moved if es is None or not len(es) else _concat_exact(es, moved)
            self.stats["exact_cells"] += len(moved)
        e_children = _exact_relu_children(self.cuts, es) if es is not None and len(es) else None
        # ---- the float set's children, then the global positions of all children
        child, f_counts, f_parent_gpos, f_local, gfs = self._float_children(
            fs, bad, sL, sR, cr, pos, all_exact)
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

    def _side_signs(self, fs: _FloatSet, E: np.ndarray,
                    all_exact: bool) -> tuple[np.ndarray, np.ndarray]:
        """Signs (and whether decided) of every pre-activation at the cells' endpoints ``E``."""
        ends_exact = (E[:, _EP] == 0) & (E[:, _EQ] == 0)
        if all_exact and ends_exact.all():
            # fast path: if the largest products of every column are certified, all
            # products are exact and the signs of the rounded sums are exact
            max_a = np.abs(fs.A).max(axis=0)
            max_c = np.abs(fs.C).max(axis=0)
            gmax = int(E[:, _G].max()) + self.col_grid
            with np.errstate(over="ignore"):
                ok = (np.ldexp(max_a * float(np.abs(E[:, _P]).max()), gmax) < _LIM) \
                    & (np.ldexp(max_c * float(np.abs(E[:, _Q]).max()), gmax) < _LIM) \
                    & (gmax <= _MAX_GRID)
            if ok.all():
                v = fs.A * E[:, _P, None] + fs.C * E[:, _Q, None]
                self.stats["certified_signs"] += v.size
                return np.sign(v).astype(np.int8), np.ones(v.shape, dtype=bool)
        exact = self.col_exact[None, :] & ends_exact[:, None]
        g = self.col_grid[None, :] + E[:, _G].astype(np.int64)[:, None]
        return _sign_products(fs.A, E[:, _P, None], fs.C, E[:, _Q, None], fs.EA, E[:, _EP, None],
                              fs.EC, E[:, _EQ, None], exact, g, g, self.stats)

    def _crossings(self, fs: _FloatSet, sL: np.ndarray, sR: np.ndarray,
                   bad: np.ndarray) -> _Crossings:
        """The crossings in the good cells, sorted and grouped; cells whose crossings cannot be
        ordered exactly are marked in ``bad`` (in place) and their crossings dropped."""
        cross = (sL.astype(np.int16) * sR) < 0
        cross &= ~bad[:, None]
        kk, jj = np.nonzero(cross)                 # row-major: sorted by cell
        sg = sR[kk, jj].astype(np.float64)         # the sign of A_j on the cell
        cr = _Crossings(kk=kk, jj=jj, cP=-sg * fs.C[kk, jj], cQ=sg * fs.A[kk, jj],
                        cEP=fs.EC[kk, jj], cEQ=fs.EA[kk, jj], cX=self.col_exact[jj],
                        cG=self.col_grid[jj], newgroup=np.ones(kk.shape[0], dtype=bool))
        if not (kk.shape[0] > 1 and np.any(kk[1:] == kk[:-1])):
            return cr
        # several crossings in some cells: sort them by their float value, then check every
        # adjacent pair exactly (a wrong or undecided order -> exact set)
        with np.errstate(divide="ignore", invalid="ignore"):
            key = cr.cP / cr.cQ
        cr = cr.take(np.lexsort((key, cr.kk)))
        ia = np.nonzero(cr.kk[1:] == cr.kk[:-1])[0]   # pair (ia, ia + 1) in the same cell
        ib = ia + 1
        both = cr.cX[ia] & cr.cX[ib]
        gab = cr.cG[ia] + cr.cG[ib]
        # sign(t_b - t_a) = sign(P_b Q_a - P_a Q_b); zero: one cut
        d, dec = _sign_products(cr.cP[ib], cr.cQ[ia], -cr.cP[ia], cr.cQ[ib], cr.cEP[ib],
                                cr.cEQ[ia], cr.cEP[ia], cr.cEQ[ib], both, gab, gab, self.stats)
        wrong = ~dec | (d < 0)
        if wrong.any():
            bad[cr.kk[ia[wrong]]] = True
        cr.newgroup[ib] = d != 0
        return cr.take(~bad[cr.kk])

    def _float_children(self, fs: _FloatSet, bad: np.ndarray, sL: Any, sR: Any, cr: Any,
                        pos: int, all_exact: bool) -> tuple[_FloatSet, np.ndarray, np.ndarray,
                                                             np.ndarray, _FloatSet]:
        """The children of the good float cells: ``(child, counts, parent gpos, local index,
        good cells)``."""
        K, n = fs.A.shape
        if bad.any():
            good = np.nonzero(~bad)[0]
            remap = np.full(K, -1, dtype=np.int64)
            remap[good] = np.arange(good.shape[0])
            ck = remap[cr.kk]
            gfs = fs.take(good)
            sL, sR = sL[good], sR[good]
        else:
            ck, gfs = (cr.kk if cr is not None else None), fs
        Kg = len(gfs)
        if not Kg:
            empty = np.zeros(0, dtype=np.int64)
            child = fs.take(empty)
            return child, empty, empty, empty, child
        newgroup, jj = cr.newgroup, cr.jj
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
        uX = cr.cX[newgroup]
        cuts = np.column_stack([cr.cP[newgroup], cr.cQ[newgroup], cr.cEP[newgroup],
                                cr.cEQ[newgroup], np.where(uX, cr.cG[newgroup], 0),
                                np.zeros(uk.shape[0])])
        cuts[:, _ID] = self.cuts.register_float_cuts(pos, uj, gfs.lid[uk], gfs.rid[uk],
                                                     cuts[:, _P], cuts[:, _Q], cuts[:, _EP],
                                                     cuts[:, _EQ])
        total_c = local.shape[0]
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
                          EA=EA, EC=EC, NA=NA, NC=NC, L=_interleave(gfs.L, cuts, start),
                          R=_interleave(gfs.R, cuts, start + m),
                          gpos=np.zeros(total_c, dtype=np.int64))
        return child, cnt, rep(gfs.gpos), local, gfs

    # ----------------------------------------------------------- final merge
    def _finish(self, fs: _FloatSet, es: _ExactSet | None) -> CountResult:
        nf = len(fs)
        ne = len(es) if es is not None else 0
        total = nf + ne
        self.stats["cells"] = total
        kind = np.zeros(total, dtype=np.int8)      # 0: float cell, 1: exact cell
        lid = np.zeros(total, dtype=np.int64)
        rid = np.zeros(total, dtype=np.int64)
        lid[fs.gpos], rid[fs.gpos] = fs.lid, fs.rid
        # slopes: float cells (value, bound) and exact cells (Fraction)
        slope_f = np.zeros(total)
        slope_e = np.zeros(total)
        slope_f[fs.gpos] = fs.A[:, 0] if nf else 0.0
        slope_e[fs.gpos] = fs.EA[:, 0] if nf else 0.0
        exact_slopes: dict[int, Fraction] = {}
        if ne:
            kind[es.gpos] = 1
            lid[es.gpos], rid[es.gpos] = es.lid, es.rid
            e_final = self.cuts.schedule()[-1]
            for g, a in zip(es.gpos.tolist(), es.A[:, 0].tolist()):
                exact_slopes[g] = Fraction(a, 1 << e_final)

        def exact_slope(g: int) -> Fraction:
            hit = exact_slopes.get(g)
            if hit is None:
                if kind[g] == 0 and slope_e[g] == 0:
                    hit = Fraction(float(slope_f[g]))
                else:
                    hit = self.cuts.exact_slope(int(lid[g]), int(rid[g]))
                exact_slopes[g] = hit
            return hit

        change = _slope_changes(kind, slope_f, slope_e, exact_slope)
        bp_gpos = np.nonzero(change)[0]
        t_val, t_err = _cut_values(fs, es, total)
        return CountResult(int(bp_gpos.shape[0]) + 1, dict(self.stats), rid[bp_gpos],
                           t_val[bp_gpos].copy(), t_err[bp_gpos].copy())


def _to_exact_set(cuts: CutRegistry, fs: _FloatSet, pos: int) -> _ExactSet:
    """Recompute cells exactly (replay at an interior point) for the exact set."""
    lo = [cuts.exact_cut(int(i)) for i in fs.lid]
    hi = [cuts.exact_cut(int(i)) for i in fs.rid]
    rowsA, rowsC = [], []
    for a, c in zip(lo, hi):
        A, C = cuts.replay((a + c) / 2, pos)
        rowsA.append(A)
        rowsC.append(C)
    n = fs.A.shape[1]
    A = np.empty((len(lo), n), dtype=object)
    C = np.empty((len(lo), n), dtype=object)
    for k in range(len(lo)):
        A[k, :] = rowsA[k]
        C[k, :] = rowsC[k]
    return _ExactSet(A, C, _obj(lo), _obj(hi), fs.lid.copy(), fs.rid.copy(), fs.gpos.copy())

def _exact_relu_children(registry: CutRegistry, es: _ExactSet) -> tuple[
        _ExactSet, np.ndarray, np.ndarray, np.ndarray]:
    """Decisions and children of the exact set at a ReLU, in integer arithmetic: ``(children,
    counts, parent gpos, local index)``."""
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
    for k in sorted(per_row):
        ts = sorted({t for t, _ in per_row[k]})
        where = {t: r for r, t in enumerate(ts)}
        for t, j in per_row[k]:
            rank[k, j] = where[t]
        m[k] = len(ts)
        cuts.extend(ts)
    cnt, start, local, uoff = _children_layout(m)
    parent = np.repeat(np.arange(K), cnt)
    act = _child_masks(cross, rank, sL > 0, sR > 0, cnt, local)
    ids = registry.register_exact_cuts(cuts)
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


def _slope_changes(kind: np.ndarray, slope_f: np.ndarray, slope_e: np.ndarray,
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
                np.abs(diff) * (1 - 2 * _U) > (e1 + e2) * _INFL + _TINY)
        change[exact_pair] = a1[exact_pair] != a2[exact_pair]
        change[differ] = True
        undecided = np.nonzero(~exact_pair & ~differ)[0]
        for g in undecided.tolist():
            change[g] = exact_slope(g) != exact_slope(g + 1)
    return change


def _cut_values(fs: _FloatSet, es: _ExactSet | None, total: int) -> tuple[np.ndarray, np.ndarray]:
    """Float64 values and error bounds of every cut of the final partition (right ends)."""
    t_val = np.zeros(total)
    t_err = np.zeros(total)
    if len(fs):
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            rp, rq, rep_, req_ = (fs.R[:, c] for c in (_P, _Q, _EP, _EQ))
            val = rp / rq
            qmin = rq - req_
            err = np.where(qmin > 0, (rep_ + np.abs(val) * req_) / qmin, np.inf)
            err = err * _INFL + 2 * _U * np.abs(val) + _TINY
            err = np.where((rep_ == 0) & (req_ == 0), _U * np.abs(val) + 2.0**-1073, err)
        t_val[fs.gpos] = val
        t_err[fs.gpos] = err
    if es is not None and len(es):
        for g, t in zip(es.gpos.tolist(), es.hi.tolist()):
            t_val[g] = float(t)
            t_err[g] = _U * abs(float(t)) + 2.0**-1073
    return t_val, t_err
