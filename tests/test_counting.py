"""Tests of lib._counting, the certified counter's own pieces: the grids and the rigorous
bound on the spectral norm.  (The counter as a whole is tested through lib.pieces against
the independent Fraction reference in test_pieces.py.)"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as hs

from lib import _counting as C


@settings(max_examples=80, deadline=None)
@given(hs.integers(1, 40), hs.integers(1, 40), hs.integers(0, 10**6),
       hs.sampled_from([1e-200, 1e-8, 1.0, 1e8, 1e150]), hs.booleans())
def test_norm2_bound(rows: int, cols: int, seed: int, scale: float, low_rank: bool) -> None:
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((rows, cols)) * scale
    if low_rank:
        w = np.outer(w[:, 0], rng.standard_normal(cols)) * (scale if scale < 1 else 1.0)
    w[rng.random(w.shape) < 0.2] = 0.0
    bound = C._norm2_bound(w)
    true = np.linalg.svd(w, compute_uv=False).max() if w.any() else 0.0
    assert bound >= true * (1 - 1e-12)
    crude = math.sqrt(np.abs(w).sum(axis=0).max()) * math.sqrt(np.abs(w).sum(axis=1).max())
    assert bound <= crude * (1 + 1e-9)
    if w.any() and 1e-100 < scale < 1e100:
        assert bound <= true * 1.2   # the squarings make it nearly tight


def test_float_grid() -> None:
    x = np.array([0.0, 1.0, 0.5, 3.0, 0.1, 2.0**-1074, 2.0**1000, -0.75])
    g = C._float_grid(x)
    assert g[0] == C._NO_GRID
    for v, gv in zip(x[1:], g[1:]):
        f = Fraction(float(v)) * Fraction(2) ** int(gv)
        assert f.denominator == 1 and (f / 2).denominator == 2  # least such exponent


@settings(max_examples=60, deadline=None)
@given(hs.integers(1, 30), hs.integers(1, 5), hs.integers(0, 10**6), hs.booleans())
def test_child_masks_and_interleave_against_a_loop(K: int, n: int, seed: int, single: bool) -> None:
    """The vectorised children layout against a plain per-cell loop (independent code)."""
    from lib import _reference as A
    rng = np.random.default_rng(seed)
    sl = rng.integers(-1, 2, size=(K, n))
    sr = rng.integers(-1, 2, size=(K, n))
    cross = sl * sr < 0
    if single:                                   # at most one crossing per cell
        for k in range(K):
            js = np.flatnonzero(cross[k])
            cross[k, js[1:]] = False
    # each cell's crossings form groups (cuts) in a random order: rank = the group index
    rank = np.zeros((K, n), dtype=np.int64)
    m = np.zeros(K, dtype=np.int64)
    for k in range(K):
        js = np.flatnonzero(cross[k])
        groups = rng.integers(0, max(len(js), 1), size=len(js))
        uniq = np.unique(groups)
        m[k] = len(uniq)
        for j, g in zip(js, groups):
            rank[k, j] = int(np.searchsorted(uniq, g))
    cnt, start, local, uoff = A.children_layout(m)
    act = A.child_masks(cross, rank, sl > 0, sr > 0, cnt, local)
    expected = []
    for k in range(K):
        for c in range(m[k] + 1):            # child c lies between cut c - 1 and cut c
            row = []
            for j in range(n):
                if cross[k, j]:
                    row.append(bool(sl[k, j] > 0) if c <= rank[k, j] else bool(sr[k, j] > 0))
                else:
                    row.append(bool(sl[k, j] > 0 or sr[k, j] > 0))
            expected.append(row)
    assert act.tolist() == expected
    ends = rng.standard_normal((K, 6))
    cuts = rng.standard_normal((int(m.sum()), 6))
    out = A.interleave(ends, cuts, start)
    rows, u = [], 0
    for k in range(K):
        rows.append(ends[k].tolist())
        for _ in range(m[k]):
            rows.append(cuts[u].tolist())
            u += 1
    assert out.tolist() == rows
