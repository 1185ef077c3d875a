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
:func:`reference_count_pieces` (pure ``fractions.Fraction``, written independently).  The
counter itself (the algorithm below) is the private module ``lib._counting``.

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
  products is exact (so certified layers may use BLAS: any order of exact sums is exact).  The
  sawtooth and Yarotsky networks (dyadic weights with few bits) run entirely in this mode;
  that is what makes 2^20 pieces take about half a second (about 2e6 pieces per second).
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

import math
from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from typing import Any

import numpy as np
import torch
from torch import nn

from lib import fp, nets
from lib._counting import (RELU, UNIT_ROUNDOFF, CellLimitError, Counter, read_ops,
                           relu_widths_of)
from lib.exact import (check_count, check_dtype, check_interval, check_widths, exact_weights,
                       linear_relu_layers)

__all__ = [
    "MAX_PIECES", "MAX_DEPTH", "MAX_GRID_POINTS", "MAX_NETS", "MAX_SEEDS", "PieceAnalysis", "piece_analysis", "count_pieces", "breakpoints", "breakpoints_exact",
    "piece_widths", "VISIBLE_FRACTION", "tooth_width", "visible_width", "count_visible",
    "relu_widths", "piece_bound", "piece_bounds", "grid_count",
    "reference_breakpoints", "reference_count_pieces",
    "width_one_net", "random_net_counts", "resolution_rows", "perturbation_rows",
]

_U = UNIT_ROUNDOFF

MAX_PIECES = 2**24
"""Default size guard of the exact counter (``max_pieces=``): at most this many cells
(16,777,216, the pieces of ``sawtooth_net(24)``; about 300 bytes of memory each at the peak).
The product bound is checked first; where it exceeds the cap (for sawtooth nets it is far
above the real count) the default cap is checked layer by layer, before each allocation, so
``count_pieces(sawtooth_net(28))`` is refused only after about a depth-24 count's work; pass
a smaller ``max_pieces`` to be refused sooner.

Before any work the counter computes the product bound ``prod (n_l + 1)`` (:func:`piece_bound`);
if it is at most ``max_pieces`` the count runs unguarded (it cannot exceed the bound).  Otherwise
(the bound is far above the true count for most networks: ``4^L`` for the sawtooth's ``2^L``,
``129^16`` for a random 16 x 128 net with a few thousand pieces) the partition is checked at
every ReLU layer, before the children of its cells are allocated, and the count stops with a
``ValueError`` naming the cap and the override as soon as it would exceed ``max_pieces``
cells (cells >= pieces: adjacent cells with equal slopes merge at the end).  So a count never
allocates more than about ``max_pieces`` cells, and the work before a refusal is at most
that of a count of ``max_pieces`` pieces.  ``max_pieces=None`` removes the guard.
"""


MAX_DEPTH = 4096
"""Size guard of the ``depth`` arguments (:func:`tooth_width`, :func:`visible_width`,
:func:`count_visible`, :func:`width_one_net`, :func:`perturbation_rows`); the chapters use
depths up to 28."""
MAX_GRID_POINTS = 10**7
"""Size guard of :func:`grid_count`'s ``n_points`` (the chapters use at most ``10^6 + 1``)."""
MAX_NETS = 10**4
"""Size guard of :func:`random_net_counts`'s ``n_nets`` (the chapters use at most 50)."""
MAX_SEEDS = 10**4
"""Size guard of :func:`perturbation_rows`'s ``seeds`` (the chapters use at most 10)."""


def _check_max_pieces(max_pieces: Any) -> int | None:
    if max_pieces is None:
        return None
    return check_count(max_pieces, "max_pieces")


def _layers(net: Any) -> list[nn.Module]:
    """The layers of a Linear/ReLU net with scalar input and output (any order of layers)."""
    return linear_relu_layers(net, scalar_io=True, linear_ends=False)


def _interval(interval: Any) -> tuple[Fraction, Fraction]:
    return check_interval(interval, exact=True)


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


# =====================================================================================
# Public API
# =====================================================================================
def piece_analysis(net: nn.Sequential, interval: Any = (0.0, 1.0), *,
                   max_pieces: int | None = MAX_PIECES) -> PieceAnalysis:
    """Exact pieces of ``net`` on ``interval``: count, breakpoints, widths and diagnostics.

    ``net``: ``nn.Sequential`` of ``nn.Linear``/``nn.ReLU`` (any order, consecutive Linear
    layers allowed, any widths, weights of any floating dtype and device) with one input and
    one output.  ``interval``: ``(lo, hi)`` with ``lo < hi`` (floats, ints or Fractions,
    converted exactly).  See the module docstring for the algorithm and why it is exact.
    Size guard: ``max_pieces`` (default :data:`MAX_PIECES` ``= 2^24``; ``None``: no guard)
    caps the cells of the partition; where the product bound exceeds it, the count raises
    ``ValueError`` as soon as the partition would outgrow it (see :data:`MAX_PIECES`).
    """
    ops = read_ops(_layers(net))
    lo, hi = _interval(interval)
    cap = _check_max_pieces(max_pieces)
    bound = piece_bound(relu_widths_of(ops))
    guard = cap if cap is not None and bound > cap else None
    counter = Counter(ops, lo, hi, max_cells=guard)
    # overflow and invalid operations only produce inf/NaN, which no filter accepts: such
    # cells go to the rational fallback, so the warnings carry no information here
    try:
        with np.errstate(all="ignore"):
            res = counter.run()
    except CellLimitError as e:
        raise ValueError(
            f"max_pieces={cap:,}: the exact count of this network on [{float(lo)!r}, "
            f"{float(hi)!r}] would need {e.cells:,} cells after ReLU layer "
            f"{sum(op is RELU for op in ops[:e.pos + 1])} (more than max_pieces; its product bound "
            f"prod(n_l + 1) = {bound:,} exceeds max_pieces, so the count was guarded); pass "
            f"max_pieces=<a larger int> or max_pieces=None to count it (about 300 bytes of "
            f"memory per cell)") from None
    return PieceAnalysis(res.count, (lo, hi), res.stats, counter, res.bp_ids, res.bp_val,
                         res.bp_err)


def count_pieces(net: nn.Sequential, interval: Any = (0.0, 1.0), *,
                 max_pieces: int | None = MAX_PIECES) -> int:
    """Number of maximal affine pieces of ``net`` on ``interval``, exact for the stored weights.

    Adjacent intervals with the same affine map count as one piece.  Raises ``TypeError`` for
    layers other than ``nn.Linear``/``nn.ReLU`` and ``ValueError`` for an empty or reversed
    interval or a non-scalar input or output, and for a count that would need more than
    ``max_pieces`` cells (default :data:`MAX_PIECES` ``= 2^24``, checked only where the
    product bound :func:`piece_bound` exceeds it; ``None``: no guard).  About ``2e6``
    pieces per second on one core for the sawtooth.
    """
    return piece_analysis(net, interval, max_pieces=max_pieces).count


def breakpoints(net: nn.Sequential, interval: Any = (0.0, 1.0), *,
                max_pieces: int | None = MAX_PIECES) -> np.ndarray:
    """Sorted float64 array of the breakpoints of ``net`` strictly inside ``interval``.

    Its length is always ``count_pieces(net, interval) - 1``.  Each value is the exact
    breakpoint ``t`` rounded to nearest when its coefficients are certified-exact float64
    numbers (all dyadic constructions such as the sawtooth) or were computed in rational
    arithmetic; otherwise it is ``fl(P/Q)`` for float64 approximations of the coefficients
    whose rigorous error bound is at most ``2^-32 max(1, |t|)`` (where the bound is larger,
    the exact breakpoint is computed and rounded).  Distinct breakpoints closer than that may
    share a value (the array is made non-decreasing); :func:`breakpoints_exact` gives the
    exact ones.  ``max_pieces``: the size guard of :func:`piece_analysis`.
    """
    return piece_analysis(net, interval, max_pieces=max_pieces).breakpoints


def breakpoints_exact(net: nn.Sequential, interval: Any = (0.0, 1.0), *,
                      max_pieces: int | None = MAX_PIECES) -> list[Fraction]:
    """The breakpoints of ``net`` strictly inside ``interval`` as exact ``Fraction`` values
    (``max_pieces``: the size guard of :func:`piece_analysis`)."""
    return piece_analysis(net, interval, max_pieces=max_pieces).breakpoints_exact()


def piece_widths(net: nn.Sequential, interval: Any = (0.0, 1.0), *,
                 max_pieces: int | None = MAX_PIECES) -> np.ndarray:
    """Float64 widths of the pieces of ``net`` on ``interval``, left to right.

    ``len == count_pieces(net, interval)``; each width has relative error below ``2^-20``
    (computed from the exact breakpoints where float64 values are not accurate enough), so
    ``(piece_widths(net, I) > tau).sum()`` counts the pieces wider than ``tau`` reliably
    unless a width lies within that relative distance of ``tau``.  ``max_pieces``: the size
    guard of :func:`piece_analysis`.
    """
    return piece_analysis(net, interval, max_pieces=max_pieces).widths()


VISIBLE_FRACTION = Fraction(1, 4)
"""A piece is *visible* at depth ``L`` if it is at least this fraction of a tooth wide."""


def tooth_width(depth: int) -> Fraction:
    """Width ``2^(1-L)`` of one tooth (one triangle) of the depth-``L`` sawtooth ``g_L`` on
    ``[0, 1]``; ``g_L`` has ``2^(L-1)`` teeth and ``2^L`` pieces, each half a tooth wide.
    Guard: ``1 <= depth <=`` :data:`MAX_DEPTH`."""
    L = check_count(depth, "depth", maximum=MAX_DEPTH)
    return Fraction(2) ** (1 - L)


def visible_width(depth: int) -> float:
    """The book's one threshold for a *visible* piece at depth ``L``: a quarter of a tooth,
    ``VISIBLE_FRACTION * 2^(1-L) = 2^(-L) / 2`` (half of one of ``g_L``'s pieces).

    Every chapter that says "visible" counts pieces strictly wider than this (see
    :func:`count_visible`); narrower pieces are slivers that the eye, a plot or a grid of
    ``2^L`` samples does not resolve.  Guard: ``1 <= depth <=`` :data:`MAX_DEPTH`.
    """
    return float(VISIBLE_FRACTION * tooth_width(depth))


def count_visible(net: nn.Sequential, depth: int, interval: Any = (0.0, 1.0)) -> int:
    """Number of pieces of ``net`` on ``interval`` wider than :func:`visible_width` ``(depth)``
    (exact breakpoints, widths from :func:`piece_widths`).  ``g_L`` itself gives ``2^L``.
    Guard: ``1 <= depth <=`` :data:`MAX_DEPTH`, checked before the count."""
    threshold = visible_width(depth)
    return int((piece_widths(net, interval) > threshold).sum())


def relu_widths(net: nn.Sequential) -> list[int]:
    """Width of the vector each ``nn.ReLU`` of ``net`` acts on, in order.

    For the usual architecture (``Linear, ReLU, ..., Linear``) these are the hidden widths
    ``n_1, ..., n_L``; it also covers consecutive ReLUs or a ReLU right after the input.
    """
    widths, width = [], 1
    for layer in _layers(net):
        if isinstance(layer, nn.ReLU):
            widths.append(width)
        else:
            width = layer.out_features
    return widths


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
    ws = check_widths(widths)
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
    Guards: ``2 <= n_points <=`` :data:`MAX_GRID_POINTS`; ``dtype`` (if given) a floating
    torch dtype (:func:`lib.exact.check_dtype`).
    """
    _layers(net)
    lo, hi = _interval(interval)
    n_points = check_count(n_points, "n_points", 2, maximum=MAX_GRID_POINTS)
    if dtype is not None:
        dtype = check_dtype(dtype, names=False)
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
# Reference implementation (slow, pure Fraction; independent of the code above)
# =====================================================================================
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
    layers = exact_weights(_layers(net))
    lo, hi = _interval(interval)
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


# =========================================================================== chapter experiments
def width_one_net(depth: int) -> nn.Sequential:
    """The construction of the book's width-one lemma: ``depth`` ReLU layers of width 1,
    ``sigma(x)``, then ``sigma(1 - u)``, then ``sigma(u)`` repeatedly, and the output ``u``
    (float64).  It has 3 pieces on the line for every ``depth >= 2``.

    The layers are built with ``nn.Linear`` and then filled, so building consumes torch's
    global random numbers exactly as ``nn.Linear`` does.  Guard: ``1 <= depth <=``
    :data:`MAX_DEPTH`.
    """
    depth = check_count(depth, "depth", maximum=MAX_DEPTH)
    layers = [nn.Linear(1, 1, dtype=torch.float64) for _ in range(depth + 1)]
    with torch.no_grad():
        for i, layer in enumerate(layers):
            layer.weight.fill_(-1.0 if i == 1 else 1.0)
            layer.bias.fill_(1.0 if i == 1 else 0.0)
    return nn.Sequential(*[m for layer in layers[:-1] for m in (layer, nn.ReLU())], layers[-1])


def random_net_counts(depths: Sequence[int], widths: Sequence[int], n_nets: int,
                      intervals: Sequence[Any], inits: Sequence[str] = ("he", "pytorch"),
                      ) -> list[dict[str, Any]]:
    """Exact piece counts of random ReLU nets ``1 -> n -> ... -> n -> 1`` at initialisation.

    For each ``init`` in ``inits``, depth ``L`` in ``depths`` and width ``n`` in ``widths``,
    ``n_nets`` networks :func:`lib.nets.random_relu_net` (network ``k`` with seed
    ``10^4 L + 100 n + k``), each counted exactly on every interval of ``intervals``.  Returns
    one row per ``(init, L, n)``: ``init``, ``depth``, ``width``, ``neurons``, ``product
    bound`` and ``counts``, a list per interval of the ``n_nets`` counts.
    Guard: ``2 <= n_nets <=`` :data:`MAX_NETS`.
    """
    n_nets = check_count(n_nets, "n_nets", 2, maximum=MAX_NETS)
    depths = [check_count(d, "depths") for d in depths]
    widths = [check_count(w, "widths") for w in widths]
    if isinstance(intervals, (str, bytes)) or not isinstance(intervals, Sequence) or not intervals:
        raise TypeError("intervals must be a non-empty sequence of (lo, hi) pairs")
    for iv in intervals:
        check_interval(iv, "intervals")
    for init in inits:
        if init not in nets.RELU_NET_INITS:
            raise ValueError(f"inits must be among {sorted(nets.RELU_NET_INITS)}, got {init!r}")
    rows = []
    for init in inits:
        for depth in depths:
            for width in widths:
                counts: list[list[int]] = [[] for _ in intervals]
                for k in range(n_nets):
                    net = nets.random_relu_net([width] * depth, init, seed=10_000 * depth + 100 * width + k)
                    for c, interval in zip(counts, intervals):
                        c.append(count_pieces(net, interval))
                rows.append({"init": init, "depth": depth, "width": width, "neurons": depth * width,
                             "product bound": piece_bound([width] * depth), "counts": counts})
    return rows


def resolution_rows(build: Callable[[int, torch.dtype], nn.Sequential],
                    cases: Mapping[str, tuple[torch.dtype, Sequence[int]]],
                    window_pieces: int | None = None) -> list[dict[str, Any]]:
    """Exact pieces of ``build(L, dtype)`` and how many of them a format can see.

    ``cases``: ``{format name: (dtype, depths)}``.  Without ``window_pieces`` the count is on
    ``[0, 1]``; with it, on the window ``[1 - window_pieces / 2^L, 1]`` (``window_pieces`` a
    power of two below ``2^L``), where the network of the book has ``window_pieces`` pieces.
    Each row: ``format``, ``L``, the exact ``pieces``, the share of the breakpoints that are
    numbers of the format (``representable``, :func:`lib.fp.representable`), the pieces whose
    interior holds a number of the format (``resolved``, :func:`lib.fp.resolved_pieces`), and
    the counter's statistics ``signs by bounds or expansions`` and ``rational cells``.
    """
    if not callable(build):
        raise TypeError(f"build must be callable as build(L, dtype), got {type(build).__name__}")
    if not isinstance(cases, Mapping):
        raise TypeError(f"cases must be a mapping of format names to (dtype, depths), got {type(cases).__name__}")
    if window_pieces is not None:
        window_pieces = check_count(window_pieces, "window_pieces")
        if window_pieces & (window_pieces - 1):
            raise ValueError(f"window_pieces must be a power of two, got {window_pieces}")
    rows = []
    for name, (dtype, depths) in cases.items():
        for L in depths:
            L = check_count(L, "depths")
            net = build(L, dtype)
            if window_pieces is None:
                a = piece_analysis(net)
                edges: Sequence[Any] = np.concatenate([[0.0], a.breakpoints, [1.0]])  # exact in float64
                bps: Sequence[Any] = a.breakpoints
            else:
                if window_pieces >= 2**L:
                    raise ValueError(f"window_pieces must be below 2^L = {2**L}, got {window_pieces}")
                k = 2**L // window_pieces
                lo = Fraction(k - 1, k)
                a = piece_analysis(net, (lo, Fraction(1)))
                bps = a.breakpoints_exact()
                edges = [lo] + list(bps) + [Fraction(1)]
            rows.append({"format": name, "L": L, "pieces": a.count,
                         "representable": float(fp.representable(bps, dtype).mean()),
                         "resolved": int(fp.resolved_pieces(edges, dtype).sum()),
                         "signs by bounds or expansions": a.stats["filtered_signs"] + a.stats["expansion_signs"],
                         "rational cells": a.stats["exact_cells"]})
    return rows


def _cell_matches(edges: np.ndarray, depth: int) -> tuple[int, int]:
    """``(lost, added)`` of the visible pieces between ``edges`` (a partition of ``[0, 1]``)
    against the ``2^L`` ideal cells ``[k 2^-L, (k+1) 2^-L]`` (the pieces of ``g_L``): a piece
    and a cell *match* if they share more than half of each (so matching is one-to-one);
    ``lost`` counts the cells without a match, ``added`` the visible pieces without one."""
    h, half, n = 2.0**-depth, visible_width(depth), 2**depth
    lo, hi = edges[:-1], edges[1:]
    vis = (hi - lo) > half
    lo, hi = lo[vis], hi[vis]
    first = np.minimum(np.floor(lo / h).astype(np.int64), n - 1)
    span = np.minimum(np.floor(hi / h).astype(np.int64), n - 1) - first
    kept, matched = set(), np.zeros(len(lo), dtype=bool)
    for off in range(int(span.max(initial=0)) + 1):
        k = first + off
        overlap = np.minimum(hi, (k + 1) * h) - np.maximum(lo, k * h)
        good = (off <= span) & (overlap > half) & (overlap > (hi - lo) / 2)
        kept.update(k[good].tolist())
        matched |= good
    return n - len(kept), int((~matched).sum())


def perturbation_rows(net: nn.Sequential, rels: Sequence[float], seeds: int,
                      depth: int) -> list[dict[str, Any]]:
    """Exact pieces of ``net`` (a copy of the depth-``depth`` construction) with every non-zero
    parameter perturbed by each relative amount of ``rels`` (:func:`lib.nets.perturbed_net`,
    seeds ``0, ..., seeds - 1``), counted on ``[0, 1]``.  Each row: ``rel``, ``seed``,
    ``pieces``, the pieces wider than ``1e-12``, the ``visible`` pieces (:func:`count_visible`'s
    threshold :func:`visible_width` ``(depth)``), the ideal cells ``lost`` and visible pieces
    ``added`` (:func:`_cell_matches`), the ``crossings of 1/2`` (sign changes of ``net - 1/2``
    at the breakpoints, float64; ``g_L``: ``2^L``), the ``smallest width`` and the counter's
    ``rational cells``.  Guards: ``1 <= seeds <=`` :data:`MAX_SEEDS`, ``1 <= depth <= 40``.
    """
    seeds = check_count(seeds, "seeds", maximum=MAX_SEEDS)
    depth = check_count(depth, "depth", maximum=40)
    rows = []
    for rel in rels:
        for seed in range(seeds):
            perturbed = nets.perturbed_net(net, rel, seed=seed)
            a = piece_analysis(perturbed)
            w = a.widths()
            edges = np.concatenate([[0.0], a.breakpoints, [1.0]])
            with torch.no_grad():
                v = perturbed.double()(torch.tensor(edges).reshape(-1, 1)).flatten().numpy() - 0.5
            signs = np.sign(v[v != 0])
            lost, added = _cell_matches(edges, depth)
            rows.append({"rel": rel, "seed": seed, "pieces": a.count,
                         "wider than 1e-12": int((w > 1e-12).sum()),
                         "visible": int((w > visible_width(depth)).sum()),
                         "lost": lost, "added": added,
                         "crossings of 1/2": int((signs[1:] != signs[:-1]).sum()),
                         "smallest width": float(w.min()),
                         "rational cells": a.stats["exact_cells"]})
    return rows
