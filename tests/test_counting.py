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
