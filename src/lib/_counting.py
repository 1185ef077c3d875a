"""The certified piece counter behind :mod:`lib.pieces` (private: use
:func:`lib.pieces.piece_analysis`).

Partition propagation over the layers of a Linear/ReLU network with one input and one output,
every decision certified exact (certified-exact float64, rigorous error bounds, exact float
expansions, or a rational fallback per cell): the algorithm and why the answers are exact are
described in the docstring of :mod:`lib.pieces`.  :class:`Counter` runs it; :func:`read_ops`
reads the network; :class:`CutRegistry` keeps the cuts and recomputes them exactly on demand.
Its float64 helpers live in :mod:`lib._reference`.

The hot path (every column and end certified exact, as for the sawtooth and Yarotsky nets)
avoids per-cell Python work and most temporaries: certified Linear layers run through BLAS on
one thread (exact in any order), a pre-activation's sign at a cut shared by two cells is
computed once (continuity), the children's ends are one array with ``L`` and ``R`` as views,
zero error bounds are zero-stride views, and work arrays are reused (:class:`Scratch`).  With
``max_cells`` the run stops (:class:`CellLimitError`) before a layer's children would exceed
it.  Measured: ``sawtooth_net(24)`` (16.8M pieces) in about 5 s of user time on one core.
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

from lib._reference import BLAS_MIN_ROWS as _BLAS_MIN_ROWS
from lib._reference import INFL as _INFL
from lib._reference import LIM as _LIM
from lib._reference import MAX_GRID as _MAX_GRID
from lib._reference import NO_GRID as _NO_GRID
from lib._reference import TINY as _TINY
from lib._reference import UNIT_ROUNDOFF as _U
from lib._reference import (Scratch, blas_controller, child_masks, children_layout, col_absmax,
                            end_values, float_bounds, float_grid, interleave, is_zero_view,
                            no_hugepage_advice, norm2_bound, sign_products,
                            single_cut_masks, slope_changes, zeros_view)
from lib.exact import dyadic_integers, linear_arrays

__all__ = ["UNIT_ROUNDOFF", "RELU", "Linear", "read_ops", "relu_widths_of", "Counter",
           "CountResult", "CellLimitError"]

UNIT_ROUNDOFF = _U
_norm2_bound, _float_grid = norm2_bound, float_grid   # (the tests reach them here)


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
        """A rigorous upper bound on the spectral norm ``||w||_2`` (see :func:`norm2_bound`)."""
        if self._norm2 is None:
            self._norm2 = norm2_bound(self.w)
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


def read_ops(layers: Sequence[nn.Module]) -> list[Any]:
    """The checked layers of a Linear/ReLU network (:func:`lib.exact.linear_relu_layers`) as
    operations: :class:`Linear` objects (float64 copies with grids) and :data:`RELU` markers."""
    ops: list[Any] = []
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.Linear):
            w, b = linear_arrays(layer, i)
            w = w + 0.0  # turn -0.0 into +0.0 (same value; keeps signs of zero out of sight)
            b = b + 0.0
            ops.append(Linear(w, b, float_grid(w), float_grid(b), np.abs(w)))
        else:
            ops.append(RELU)
    return ops


def relu_widths_of(ops: list[Any]) -> list[int]:
    """Width of the vector each ReLU of ``ops`` acts on (as :func:`lib.pieces.relu_widths`)."""
    widths, width = [], 1
    for op in ops:
        if op is RELU:
            widths.append(width)
        else:
            width = int(op.w.shape[0])
    return widths


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

# =====================================================================================
# The partition sets
# =====================================================================================
_FLOAT_FIELDS = ("A", "C", "EA", "EC", "NA", "NC", "L", "R", "gpos")
#: columns of the packed endpoint arrays L (left) and R (right): t = P/Q, bounds, grid, cut id
_P, _Q, _EP, _EQ, _G, _ID = range(6)


class _FloatSet:
    """Cells propagated in float64: coefficients ``A, C`` (K x n), componentwise error bounds
    ``EA, EC``, bounds ``NA, NC`` (K,) on the 2-norms of the error vectors, packed endpoints
    ``L, R`` (K x 6: P, Q, EP, EQ, grid, cut id) and ``gpos``.

    ``ends``: ``None``, or ``(max |P|, max |Q|, max grid)`` over all ends, and then every end
    is exact (``EP = EQ = 0``) and each cell's right end is the next cell's left end (the
    same row): what the hot path needs to know, kept instead of recomputed per layer."""

    ends: tuple[float, float, int] | None = None

    def __init__(self, **kw: Any) -> None:
        for name in _FLOAT_FIELDS:
            setattr(self, name, kw[name])
        self.ends = kw.get("ends")

    def take(self, idx: np.ndarray) -> _FloatSet:
        return _FloatSet(**{name: getattr(self, name)[idx] for name in _FLOAT_FIELDS})

    def replace(self, **kw: np.ndarray) -> _FloatSet:
        fields: dict[str, Any] = {name: getattr(self, name) for name in _FLOAT_FIELDS}
        fields.update(kw)
        if "L" not in kw and "R" not in kw:
            fields["ends"] = self.ends
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

    def register_float_cuts(self, pos: int, neuron: np.ndarray | None, plid: np.ndarray | None,
                            prid: np.ndarray | None, P: np.ndarray, Q: np.ndarray,
                            EP: np.ndarray | None, EQ: np.ndarray | None) -> np.ndarray:
        """Ids for cuts ``P/Q`` (bounds ``EP``, ``EQ``) made by ``neuron`` of operation ``pos``
        in the cells ``(plid, prid)``.  Exact cuts (``EP = EQ = None``: all bounds zero) need
        only ``P`` and ``Q``; those are kept as compact copies."""
        n = int(P.shape[0])
        ids = np.arange(self.next_id, self.next_id + n, dtype=np.int64)
        if n:
            self.batch_starts.append(self.next_id)
            self.batches.append((self.next_id, pos, neuron, plid, prid,
                                 np.ascontiguousarray(P), np.ascontiguousarray(Q), EP, EQ))
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
        if EP is None or (EP[k] == 0 and EQ[k] == 0):
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


class CellLimitError(Exception):
    """Raised by :meth:`Counter.run` when the partition would exceed ``max_cells`` cells
    (``cells``: how many the ReLU at operation ``pos`` would make); :mod:`lib.pieces` turns it
    into a ``ValueError`` that names the cap and the override."""

    def __init__(self, cells: int, pos: int) -> None:
        super().__init__(cells, pos)
        self.cells, self.pos = cells, pos


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
class _ReluSteps:
    """The steps of a ReLU layer on the float set (part of :class:`Counter`)."""

    col_exact: np.ndarray
    col_grid: np.ndarray
    stats: dict[str, int]
    cuts: CutRegistry
    out_bound: tuple[np.ndarray, np.ndarray] | None
    scratch: Scratch

    def _shared_side_signs(self, fs: _FloatSet) -> tuple[np.ndarray, np.ndarray] | None:
        """The hot path of :meth:`_side_signs` (or ``None`` where it does not apply): all
        coefficients and endpoints certified exact, every product certified, and each cell's
        right end the next cell's left end (same cut).  A pre-activation is continuous in
        ``x``, so its exact sign at a shared end is the same from both cells: the signs are
        computed once per end (``K + 1`` rows instead of ``2 K``)."""
        L, R = fs.L, fs.R
        if fs.ends is None:
            if not (L[:, _EP] == 0).all() or not (L[:, _EQ] == 0).all() \
                    or R[-1, _EP] != 0 or R[-1, _EQ] != 0 \
                    or not np.array_equal(R[:-1, _ID], L[1:, _ID]):
                return None
            fs.ends = (max(float(np.abs(L[:, _P]).max()), abs(float(R[-1, _P]))),
                       max(float(np.abs(L[:, _Q]).max()), abs(float(R[-1, _Q]))),
                       max(int(L[:, _G].max()), int(R[-1, _G])))
        max_p, max_q, g_end = fs.ends
        gmax = g_end + self.col_grid
        # first the bounds on |A|, |C| left by the Linear layer (masking only lowers them),
        # then, if they are not enough, the maxima themselves
        for bound in ([self.out_bound] if self.out_bound is not None else []) + [None]:
            if bound is None:
                max_a, max_c = col_absmax(fs.A, self.scratch), col_absmax(fs.C, self.scratch)
            else:
                max_a, max_c = bound
            with np.errstate(over="ignore"):
                ok = (np.ldexp(max_a * max_p, gmax) < _LIM) \
                    & (np.ldexp(max_c * max_q, gmax) < _LIM) & (gmax <= _MAX_GRID)
            if ok.all():
                break
        else:
            return None
        K, n = fs.A.shape
        v = np.multiply(fs.A, L[:, _P, None], out=self.scratch.get("v", (K, n)))
        v += np.multiply(fs.C, L[:, _Q, None], out=self.scratch.get("tmp", (K, n)))
        sL = (v > 0).view(np.int8) - (v < 0).view(np.int8)
        del v
        sR = np.empty_like(sL)
        sR[:-1] = sL[1:]
        sR[-1] = np.sign(fs.A[-1] * R[-1, _P] + fs.C[-1] * R[-1, _Q]).astype(np.int8)
        self.stats["certified_signs"] += 2 * K * n
        return sL, sR

    def _side_signs(self, fs: _FloatSet, E: np.ndarray,
                    all_exact: bool) -> tuple[np.ndarray, np.ndarray]:
        """Signs (and whether decided) of every pre-activation at the cells' endpoints ``E``."""
        ends_exact = (E[:, _EP] == 0) & (E[:, _EQ] == 0)
        if all_exact and ends_exact.all():
            # fast path: if the largest products of every column are certified, all
            # products are exact and the signs of the rounded sums are exact
            max_a, max_c = col_absmax(fs.A), col_absmax(fs.C)
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
        return sign_products(fs.A, E[:, _P, None], fs.C, E[:, _Q, None], fs.EA, E[:, _EP, None],
                              fs.EC, E[:, _EQ, None], exact, g, g, self.stats)

    def _crossings(self, fs: _FloatSet, sL: np.ndarray, sR: np.ndarray,
                   bad: np.ndarray) -> _Crossings:
        """The crossings in the good cells, sorted and grouped; cells whose crossings cannot be
        ordered exactly are marked in ``bad`` (in place) and their crossings dropped."""
        cross = (sL * sR) < 0                      # int8: -1, 0 or 1
        cross &= ~bad[:, None]
        n = cross.shape[1]
        flat = np.flatnonzero(cross)               # row-major: sorted by cell
        kk = flat // n
        jj = flat - kk * n
        sg = np.take(sR, flat).astype(np.float64)  # the sign of A_j on the cell
        cP = np.take(fs.C, flat)
        np.multiply(cP, sg, out=cP)
        np.negative(cP, out=cP)
        cQ = np.take(fs.A, flat)
        np.multiply(cQ, sg, out=cQ)
        if is_zero_view(fs.EC) and is_zero_view(fs.EA):
            cEP = cEQ = zeros_view(flat.shape[0])
        else:
            cEP, cEQ = np.take(fs.EC, flat), np.take(fs.EA, flat)
        single = not (kk.shape[0] > 1 and np.any(kk[1:] == kk[:-1]))
        cr = _Crossings(kk=kk, jj=jj, cP=cP, cQ=cQ, cEP=cEP, cEQ=cEQ, cX=self.col_exact[jj],
                        cG=self.col_grid[jj],
                        newgroup=None if single else np.ones(kk.shape[0], dtype=bool))
        if single:
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
        d, dec = sign_products(cr.cP[ib], cr.cQ[ia], -cr.cP[ia], cr.cQ[ib], cr.cEP[ib],
                                cr.cEQ[ia], cr.cEP[ia], cr.cEQ[ib], both, gab, gab, self.stats)
        wrong = ~dec | (d < 0)
        if wrong.any():
            bad[cr.kk[ia[wrong]]] = True
        cr.newgroup[ib] = d != 0
        return cr.take(~bad[cr.kk])

    def _float_children(self, fs: _FloatSet, bad: np.ndarray, sL: Any, sR: Any, cr: Any,
                        pos: int, all_exact: bool) -> tuple[_FloatSet, np.ndarray, _FloatSet]:
        """The children of the good float cells: ``(child, counts, good cells)``."""
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
            return child, empty, child
        newgroup, jj = cr.newgroup, cr.jj
        # newgroup None: at most one crossing per cell, each its own cut
        first = slice(None) if newgroup is None else newgroup
        m = np.bincount(ck[first], minlength=Kg)
        crossg = np.zeros((Kg, n), dtype=bool)
        crossg[ck, jj] = True
        single = newgroup is None and all_exact
        if single:
            cnt = m + 1
            start = np.cumsum(cnt) - cnt
            act = single_cut_masks(crossg, sL > 0, sR > 0, m)
        else:
            cnt, start, local, uoff = children_layout(m)
            rank = None
            if newgroup is not None:
                rank = np.zeros((Kg, n), dtype=np.int64)
                rank[ck, jj] = (np.cumsum(newgroup) - 1) - uoff[ck]
            act = child_masks(crossg, rank, sL > 0, sR > 0, cnt, local)
            del rank
        del crossg
        # the new cuts (one per group of equal crossings), in (cell, position) order
        uk, uj = ck[first], jj[first]
        cuts = np.empty((uk.shape[0], 6))
        cuts[:, _P] = cr.cP[first]
        cuts[:, _Q] = cr.cQ[first]
        cuts[:, _EP] = cr.cEP[first]
        cuts[:, _EQ] = cr.cEQ[first]
        cuts[:, _G] = np.where(cr.cX[first], cr.cG[first], 0)
        if is_zero_view(cr.cEP) and is_zero_view(cr.cEQ):       # exact cuts
            cuts[:, _ID] = self.cuts.register_float_cuts(pos, None, None, None, cuts[:, _P],
                                                         cuts[:, _Q], None, None)
        else:
            cuts[:, _ID] = self.cuts.register_float_cuts(
                pos, uj, gfs.L[uk, _ID].astype(np.int64), gfs.R[uk, _ID].astype(np.int64),
                cuts[:, _P], cuts[:, _Q], cuts[:, _EP], cuts[:, _EQ])
        total_c = int(cnt.sum())
        rep = lambda x: np.repeat(x, cnt, axis=0)  # noqa: E731
        inactive = np.logical_not(act, out=act)     # act is a fresh array: reuse it
        del act

        def masked(x: np.ndarray) -> np.ndarray:
            """``x`` on every child, zero (+0.0) for the units inactive there."""
            out = rep(x)
            np.copyto(out, 0.0, where=inactive)
            return out

        if all_exact:
            EA = EC = zeros_view(total_c, n)
            NA = NC = zeros_view(total_c)
        else:
            # masking zeroes components of the error vectors: the 2-norms do not grow
            EA = masked(gfs.EA)
            EC = masked(gfs.EC)
            NA, NC = rep(gfs.NA), rep(gfs.NC)
        ends = None
        if gfs is fs and (fs.ends is not None or np.array_equal(fs.R[:-1, _ID], fs.L[1:, _ID])):
            if fs.ends is not None and is_zero_view(cr.cEP) and is_zero_view(cr.cEQ):
                ends = fs.ends if not cuts.shape[0] else (
                    max(fs.ends[0], float(np.abs(cuts[:, _P]).max())),
                    max(fs.ends[1], float(np.abs(cuts[:, _Q]).max())),
                    max(fs.ends[2], int(cuts[:, _G].max())))
            # each cell's right end is the next one's left end (the same cut, the same row):
            # the children's ends are one array, L and R two views of it
            rows = np.empty((total_c + 1, fs.L.shape[1]))
            if total_c == 2 * Kg and (m == 1).all():   # every cell cut once: L0, c0, L1, ...
                pairs = rows[:-1].reshape(Kg, 2, -1)
                pairs[:, 0] = gfs.L
                pairs[:, 1] = cuts
            else:
                interleave(gfs.L, cuts, start, out=rows[:-1])
            rows[-1] = fs.R[-1]
            Lc, Rc = rows[:-1], rows[1:]
        else:
            Lc, Rc = interleave(gfs.L, cuts, start), interleave(gfs.R, cuts, start + m)
        child = _FloatSet(A=masked(gfs.A), C=masked(gfs.C),
                          EA=EA, EC=EC, NA=NA, NC=NC, L=Lc, R=Rc,
                          gpos=np.arange(total_c, dtype=np.int64), ends=ends)
        return child, cnt, gfs


class Counter(_ReluSteps):
    """One run of the partition propagation on one network and one interval."""

    def __init__(self, ops: list[Any], lo: Fraction, hi: Fraction,
                 max_cells: int | None = None) -> None:
        self.ops = ops
        self.max_cells = max_cells
        self.lo, self.hi = lo, hi
        self.stats = {"certified_signs": 0, "filtered_signs": 0, "expansion_signs": 0,
                      "exact_cells": 0, "replays": 0, "cells": 0}
        self.cuts = CutRegistry(ops, lo, hi, self.stats)

    def exact_cut(self, cid: int) -> Fraction:
        """The exact value of cut ``cid`` (see :meth:`CutRegistry.exact_cut`)."""
        return self.cuts.exact_cut(cid)

    def run(self) -> CountResult:
        try:
            with no_hugepage_advice():
                return self._run()
        finally:
            self.scratch = Scratch()       # the analysis keeps the counter: not its buffers

    def _run(self) -> CountResult:
        P0, Q0, EP0, EQ0 = _endpoint_floats(self.lo)
        P1, Q1, EP1, EQ1 = _endpoint_floats(self.hi)

        def grid_pair(p: float, q: float) -> int:
            return int(max(float_grid(np.array([p]))[0], float_grid(np.array([q]))[0]))

        left = np.array([[P0, Q0, EP0, EQ0, grid_pair(P0, Q0), 0]], dtype=np.float64)
        right = np.array([[P1, Q1, EP1, EQ1, grid_pair(P1, Q1), 1]], dtype=np.float64)
        fs = _FloatSet(A=np.ones((1, 1)), C=np.zeros((1, 1)), EA=np.zeros((1, 1)),
                       EC=np.zeros((1, 1)), NA=np.zeros(1), NC=np.zeros(1), L=left, R=right,
                       gpos=np.array([0]))
        self.col_exact = np.array([True])
        self.col_grid = np.array([0], dtype=np.int64)
        self.out_bound: tuple[np.ndarray, np.ndarray] | None = None
        self.scratch = Scratch()
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
        # certification of exact columns (from the inputs only)
        if K:
            max_a, max_c = col_absmax(fs.A, self.scratch), col_absmax(fs.C, self.scratch)
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
        if col_exact.all() and K >= _BLAS_MIN_ROWS and (ctl := blas_controller()) is not None:
            # every product and partial sum is exact in any order (and with FMA), so BLAS
            # computes the exact values; on one thread
            wt = np.ascontiguousarray(op.w.T)
            with ctl.limit(limits=1, user_api="blas"):
                A = fs.A @ wt
                C = fs.C @ wt
            A += 0.0                      # -0.0 -> +0.0, as the sums below give
            C += op.b
        else:
            A = np.zeros((K, m))
            C = np.zeros((K, m))
            tmp = np.empty((K, m))
            for i in range(n):
                col = op.w[:, i]
                if not col.any():
                    continue
                A += np.multiply(fs.A[:, i:i + 1], col, out=tmp)
                C += np.multiply(fs.C[:, i:i + 1], col, out=tmp)
            del tmp
            C += op.b
        if col_exact.all():
            EA = EC = zeros_view(K, m)
            NA = NC = zeros_view(K)
        else:
            EA, EC, NA, NC = float_bounds(fs, op, col_exact)
        self.col_exact = col_exact
        self.col_grid = np.where(col_exact, grid, 0)
        # rigorous bounds on every |A_j|, |C_j| of the output (its values are exact where
        # certified): sums of |W_ji| max |h_i|, inflated for their own rounding
        self.out_bound = (sa * slack, sc * slack)
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
            shared = self._shared_side_signs(fs) if all_exact else None
            if shared is not None:
                sL, sR = shared
                dL = dR = np.ones((1, 1), dtype=bool)
            else:
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
        if self.max_cells is not None:
            n_cuts = 0 if cr is None else (
                int(cr.kk.shape[0]) if cr.newgroup is None else int(cr.newgroup.sum()))
            cells = K - int(bad.sum()) + n_cuts + (
                int(e_children[1].sum()) if e_children is not None else 0)
            if cells > self.max_cells:
                raise CellLimitError(cells, pos)
        # ---- the float set's children, then the global positions of all children
        child, f_counts, gfs = self._float_children(
            fs, bad, sL, sR, cr, pos, all_exact)
        if e_children is None:
            # no exact cells: the float cells are the whole partition, in order (child.gpos
            # is already 0, 1, 2, ...)
            return child, None
        total = len(gfs) + (len(es) if es is not None else 0)
        cnt_all = np.zeros(total, dtype=np.int64)
        if len(gfs):
            cnt_all[gfs.gpos] = f_counts
        if e_children is not None:
            cnt_all[es.gpos] = e_children[1]
        off = np.cumsum(cnt_all) - cnt_all
        if len(child):
            f_start = np.cumsum(f_counts) - f_counts
            f_local = np.arange(len(child)) - np.repeat(f_start, f_counts)
            child.gpos = off[np.repeat(gfs.gpos, f_counts)] + f_local
        new_es = None
        if e_children is not None:
            new_es, _, e_parent_gpos, e_local = e_children
            new_es.gpos = off[e_parent_gpos] + e_local
        return child, new_es

    # ----------------------------------------------------------- final merge
    def _finish(self, fs: _FloatSet, es: _ExactSet | None) -> CountResult:
        nf = len(fs)
        ne = len(es) if es is not None else 0
        total = nf + ne
        self.stats["cells"] = total
        if not ne:
            return self._finish_float(fs)
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

        change = slope_changes(kind, slope_f, slope_e, exact_slope)
        bp_gpos = np.nonzero(change)[0]
        t_val, t_err = _cut_values(fs, es, total)
        return CountResult(int(bp_gpos.shape[0]) + 1, dict(self.stats), rid[bp_gpos],
                           t_val[bp_gpos].copy(), t_err[bp_gpos].copy())


    def _finish_float(self, fs: _FloatSet) -> CountResult:
        """:meth:`_finish` when every cell is a float cell (in order): no scattering, and the
        breakpoints' values only where the slope changes."""
        lid = fs.L[:, _ID]                          # float64 ids (exact integers)
        slope_f, slope_e = fs.A[:, 0], fs.EA[:, 0]
        exact_slopes: dict[int, Fraction] = {}

        def exact_slope(g: int) -> Fraction:
            hit = exact_slopes.get(g)
            if hit is None:
                if slope_e[g] == 0:
                    hit = Fraction(float(slope_f[g]))
                else:
                    hit = self.cuts.exact_slope(int(lid[g]), int(fs.R[g, _ID]))
                exact_slopes[g] = hit
            return hit

        if is_zero_view(slope_e) and np.isfinite(slope_f).all():
            change = slope_f[:-1] != slope_f[1:]    # exact slopes: equal iff equal floats
        else:
            change = slope_changes(np.zeros(len(fs), dtype=np.int8), slope_f, slope_e,
                                    exact_slope)
        bp_rows = fs.R[np.nonzero(change)[0]]
        val, err = end_values(bp_rows)
        return CountResult(int(bp_rows.shape[0]) + 1, dict(self.stats),
                           bp_rows[:, _ID].astype(np.int64), val, err)


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
    cnt, start, local, uoff = children_layout(m)
    parent = np.repeat(np.arange(K), cnt)
    act = child_masks(cross, rank, sL > 0, sR > 0, cnt, local)
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


def _cut_values(fs: _FloatSet, es: _ExactSet | None, total: int) -> tuple[np.ndarray, np.ndarray]:
    """Float64 values and error bounds of every cut of the final partition (right ends)."""
    t_val = np.zeros(total)
    t_err = np.zeros(total)
    if len(fs):
        val, err = end_values(fs.R)
        t_val[fs.gpos] = val
        t_err[fs.gpos] = err
    if es is not None and len(es):
        for g, t in zip(es.gpos.tolist(), es.hi.tolist()):
            t_val[g] = float(t)
            t_err[g] = _U * abs(float(t)) + 2.0**-1073
    return t_val, t_err
