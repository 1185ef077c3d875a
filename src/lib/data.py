"""The data sets the book uses: scikit-learn's bundled *digits* and small synthetic sets.

Nothing is downloaded: ``sklearn.datasets.load_digits`` reads a file shipped with
scikit-learn (1,797 greyscale images of 8x8 pixels, integer values 0..16, ten classes, from
the UCI "Optical Recognition of Handwritten Digits" test set).

:func:`digits` returns a :class:`Dataset` (training tensors and an optional held-out split);
``x, y = digits(...)`` unpacks the training inputs and targets.  The chapter *GD vs gradient
flow* uses it with cross-entropy (integer labels, float64); the chapter *Edge of stability*
with MSE on one-hot targets (float32) and a test split for the test accuracy.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from sklearn.datasets import load_digits

from lib.exact import (check_count, check_dtype, check_interval,  # data.check_interval: the one check
                       check_real)
from lib.seeding import check_seed

N_DIGITS = 1797
N_PIXELS = 64
TARGET_KINDS = ("labels", "one_hot")


@dataclass(frozen=True)
class Dataset:
    """A training set and an optional held-out test set, as tensors.

    ``inputs`` ``(n, d)`` floating; ``targets`` ``(n,)`` int64 class indices (``"labels"``) or
    ``(n, C)`` one-hot rows in the inputs' dtype (``"one_hot"``), or regression targets;
    ``labels`` ``(n,)`` int64 class indices in ``0..C-1`` (``None`` for regression sets).
    The ``test_*`` fields are ``None`` without a test split.  ``classes`` lists the original
    digit of each class index; ``indices`` / ``test_indices`` the rows of ``load_digits()``
    that were taken (for digits), so every subset is reproducible and checkable.
    Iterating yields ``inputs, targets``: ``x, y = digits(...)``.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    labels: torch.Tensor | None = None
    test_inputs: torch.Tensor | None = None
    test_targets: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None
    classes: tuple[int, ...] = ()
    indices: np.ndarray | None = None
    test_indices: np.ndarray | None = None
    description: str = ""

    def __iter__(self) -> Iterator[torch.Tensor]:
        yield self.inputs
        yield self.targets

    @property
    def n(self) -> int:
        """Number of training examples."""
        return int(self.inputs.shape[0])

    @property
    def n_test(self) -> int:
        """Number of test examples (0 without a split)."""
        return 0 if self.test_inputs is None else int(self.test_inputs.shape[0])

    @property
    def n_classes(self) -> int:
        return len(self.classes)


@lru_cache(maxsize=1)
def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    bunch = load_digits()
    x = np.asarray(bunch.data, dtype=np.float64)
    y = np.asarray(bunch.target, dtype=np.int64)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def digits(
    n: int | None = None,
    *,
    classes: Sequence[int] | None = None,
    n_test: int = 0,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    standardize: bool = True,
    targets: str = "labels",
    one_hot: bool = False,
    device: torch.device | str = "cpu",
) -> Dataset:
    """A subset of scikit-learn's bundled digits (8x8 images, 64 features), as tensors.

    Subset: keep the images whose digit is in ``classes`` (default all ten; class index ``j``
    is the ``j``-th smallest digit of ``classes``), shuffle them with
    ``numpy.random.default_rng(seed).permutation`` and take the first ``n`` as the training set
    (``n=None``: all but ``n_test``) and the next ``n_test`` as the test set (disjoint).

    Preprocessing: pixel values ``v`` in ``0..16`` become ``v / 16`` in ``[0, 1]``; with
    ``standardize=True`` (default) each pixel is then centred and scaled to unit variance with
    the **training** set's mean and (population) standard deviation, the same affine map is
    applied to the test set, and pixels that are constant on the training set are only
    centred (they become 0).  Computed in float64, then cast once to ``dtype``.

    ``targets``: ``"labels"`` (int64 class indices, for cross-entropy) or ``"one_hot"``
    (rows of the identity in ``dtype``, for MSE as in Cohen et al. 2021); ``one_hot=True`` is
    the same as ``targets="one_hot"``.  ``labels`` always holds the class indices.

    Guards: ``n`` and ``n_test`` are integers (Python, NumPy or 0-d torch; not bools) with
    ``n + n_test`` at most the digits of ``classes``; ``classes`` is an iterable of distinct
    integers in 0..9 (a string such as ``'12'`` is refused); ``seed`` as in
    :func:`lib.exact.check_seed`.
    """
    x_all, y_all = _load_digits()
    if classes is None:
        classes_t = tuple(range(10))
    else:
        if isinstance(classes, (str, bytes)) or not isinstance(classes, Iterable):
            raise TypeError(f"classes must be a sequence of ints (digits 0..9), got {classes!r}")
        classes_t = tuple(sorted(check_count(c, f"classes[{i}]", minimum=0)
                                 for i, c in enumerate(classes)))
        if len(classes_t) < 2 or len(set(classes_t)) != len(classes_t) or not set(classes_t) <= set(range(10)):
            raise ValueError(f"classes must be at least two distinct digits in 0..9, got {classes!r}")
    n_test = check_count(n_test, "n_test", minimum=0)
    if not isinstance(one_hot, (bool, np.bool_)):
        raise TypeError(f"one_hot must be a bool, got {type(one_hot).__name__}")
    if one_hot:
        if targets not in ("labels", "one_hot"):
            raise ValueError(f"one_hot=True conflicts with targets={targets!r}")
        targets = "one_hot"
    if targets not in TARGET_KINDS:
        raise ValueError(f"targets must be one of {TARGET_KINDS}, got {targets!r}")
    if not isinstance(standardize, (bool, np.bool_)):
        raise TypeError(f"standardize must be a bool, got {type(standardize).__name__}")
    dtype = check_dtype(dtype)
    seed = check_seed(seed)
    pool = np.flatnonzero(np.isin(y_all, classes_t))
    n = len(pool) - n_test if n is None else check_count(n, "n")
    if n < 1:
        raise ValueError(f"n must be a positive int (or None), got {n!r}")
    if n + n_test > len(pool):
        raise ValueError(f"n + n_test = {n + n_test} exceeds the {len(pool)} digits of classes {classes_t}")

    order = pool[np.random.default_rng(seed).permutation(len(pool))]
    train_idx, test_idx = order[:n], order[n:n + n_test]
    x_train = x_all[train_idx] / 16.0
    x_test = x_all[test_idx] / 16.0
    if standardize:
        mean = x_train.mean(axis=0)
        std = x_train.std(axis=0)
        std = np.where(std > 0, std, 1.0)
        x_train = (x_train - mean) / std
        x_test = (x_test - mean) / std
    lookup = {c: j for j, c in enumerate(classes_t)}
    lab_train = np.array([lookup[int(c)] for c in y_all[train_idx]], dtype=np.int64)
    lab_test = np.array([lookup[int(c)] for c in y_all[test_idx]], dtype=np.int64)

    def tensors(x: np.ndarray, lab: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        xt = torch.as_tensor(x, dtype=torch.float64).to(dtype=dtype, device=device)
        lt = torch.as_tensor(lab, dtype=torch.int64, device=device)
        if targets == "one_hot":
            yt = torch.nn.functional.one_hot(lt, len(classes_t)).to(dtype=dtype)
        else:
            yt = lt.clone()
        return xt, yt, lt

    xt, yt, lt = tensors(x_train, lab_train)
    desc = (f"digits {classes_t}: n={n} train" + (f" + {n_test} test" if n_test else "")
            + f", seed {seed}, " + ("standardized" if standardize else "scaled to [0,1]")
            + f", {targets}, {str(dtype).replace('torch.', '')}")
    if n_test:
        xs, ys, ls = tensors(x_test, lab_test)
    else:
        xs = ys = ls = None
    return Dataset(inputs=xt, targets=yt, labels=lt, test_inputs=xs, test_targets=ys,
                   test_labels=ls, classes=classes_t, indices=train_idx.copy(),
                   test_indices=test_idx.copy(), description=desc)


#: Size guard of :func:`gaussian_regression`: entries of inputs and targets (80 MB of float64).
MAX_SYNTHETIC_ENTRIES = 10**7


def gaussian_regression(
    n: int,
    d: int,
    *,
    out_dim: int = 1,
    noise: float = 0.0,
    n_test: int = 0,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> Dataset:
    """Synthetic linear regression: inputs ``x ~ N(0, I_d)``, targets ``y = x W + noise * e``
    with ``W ~ N(0, 1/d)`` of shape ``(d, out_dim)`` and ``e ~ N(0, 1)``, all drawn in float64
    from ``numpy.random.default_rng(seed)`` and cast once to ``dtype``.  Targets have shape
    ``(n, out_dim)``.  A test split (``n_test`` more rows from the same model) is optional.

    Guards: integer sizes (not bools) with ``(n + n_test) * (d + out_dim)`` at most
    :data:`MAX_SYNTHETIC_ENTRIES`, checked before drawing; ``noise`` a finite real ``>= 0``.
    """
    n, d = check_count(n, "n"), check_count(d, "d")
    out_dim, n_test = check_count(out_dim, "out_dim"), check_count(n_test, "n_test", minimum=0)
    if (n + n_test) * (d + out_dim) > MAX_SYNTHETIC_ENTRIES:
        raise ValueError(f"(n + n_test) * (d + out_dim) must be at most {MAX_SYNTHETIC_ENTRIES} "
                         f"(a size guard), got n={n}, n_test={n_test}, d={d}, out_dim={out_dim}")
    noise = check_real(noise, "noise", ge=0)
    dtype = check_dtype(dtype)
    rng = np.random.default_rng(check_seed(seed))
    w = rng.standard_normal((d, out_dim)) / np.sqrt(d)
    x = rng.standard_normal((n + n_test, d))
    y = x @ w + noise * rng.standard_normal((n + n_test, out_dim))

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, dtype=torch.float64).to(dtype=dtype, device=device)

    return Dataset(inputs=t(x[:n]), targets=t(y[:n]),
                   test_inputs=t(x[n:]) if n_test else None,
                   test_targets=t(y[n:]) if n_test else None,
                   description=f"gaussian regression n={n}, d={d}, out_dim={out_dim}, "
                               f"noise={noise}, seed {seed}, {str(dtype).replace('torch.', '')}")


# ----------------------------------------------------------------------------- 1-D quadrature
# Appended for the chapter *Trained vs constructed approximation*: the continuous L2 loss
# ||f - g||^2_{L2(a, b)} of a 1-D network is replaced by a dense composite quadrature, and the
# smooth target of Gentile and Welper's experiments is provided with its derivatives.

QUADRATURE_RULES = ("gauss-legendre", "midpoint")


@dataclass(frozen=True)
class Quadrature:
    """A composite quadrature rule on ``[a, b]``: ``sum_i weights[i] * h(nodes[i])``
    approximates ``int_a^b h(x) dx``.

    ``nodes`` (n,) increasing and ``weights`` (n,) positive, in the requested dtype; ``panels``
    equal cells, ``order`` nodes per cell.  ``inputs`` is ``nodes`` as a column ``(n, 1)``,
    the shape a 1-D network takes.
    """

    nodes: torch.Tensor
    weights: torch.Tensor
    interval: tuple[float, float]
    rule: str
    panels: int
    order: int

    @property
    def n(self) -> int:
        """Number of nodes."""
        return int(self.nodes.shape[0])

    @property
    def inputs(self) -> torch.Tensor:
        """The nodes as a column ``(n, 1)``."""
        return self.nodes.reshape(-1, 1)

    def integrate(self, values: torch.Tensor) -> torch.Tensor:
        """``sum_i w_i values[i, ...]``: the quadrature of sampled values (first axis = nodes);
        NaN in, NaN out."""
        if not isinstance(values, torch.Tensor) or not torch.is_floating_point(values):
            raise TypeError(f"values must be a floating-point tensor, got {type(values).__name__}")
        if values.dim() == 0 or values.shape[0] != self.n:
            raise ValueError(f"values must have {self.n} rows (one per node), got {tuple(values.shape)}")
        w = self.weights.to(values.dtype).reshape((-1,) + (1,) * (values.dim() - 1))
        return (w * values).sum(0)

    @property
    def description(self) -> str:
        a, b = self.interval
        return (f"composite {self.rule}, {self.panels} panels x {self.order} nodes = {self.n} "
                f"nodes on [{a:g}, {b:g}]")


def _float_array(a: Any, name: str) -> np.ndarray:
    """``a`` as a float64 array, or ``TypeError`` naming ``name``."""
    try:
        return np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an array of real numbers, got {type(a).__name__}") from None


def composite_rule(lo: np.ndarray, hi: np.ndarray, ref_x: np.ndarray,
                   ref_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights (float64, flat, cell by cell) of the rule ``(ref_x, ref_w)`` on
    ``[-1, 1]`` mapped to every cell ``[lo[i], hi[i]]``.  ``lo``/``hi``: 1-D of one length,
    ``ref_x``/``ref_w``: 1-D of one non-zero length (else ``ValueError`` naming them)."""
    lo, hi, ref_x, ref_w = (_float_array(a, n) for a, n in
                            ((lo, "lo"), (hi, "hi"), (ref_x, "ref_x"), (ref_w, "ref_w")))
    if lo.ndim != 1 or hi.shape != lo.shape:
        raise ValueError(f"lo and hi must be 1-D of one length, got shapes {lo.shape}, {hi.shape}")
    if ref_x.ndim != 1 or ref_x.size == 0 or ref_w.shape != ref_x.shape:
        raise ValueError(f"ref_x and ref_w must be 1-D of one non-zero length, got shapes "
                         f"{ref_x.shape}, {ref_w.shape}")
    h = hi - lo
    x = lo[:, None] + (ref_x[None, :] + 1) / 2 * h[:, None]
    w = ref_w[None, :] / 2 * h[:, None]
    return x.reshape(-1), w.reshape(-1)


def gauss_legendre(lo: np.ndarray, hi: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """``order`` Gauss-Legendre nodes and weights on every cell ``[lo[i], hi[i]]``
    (:func:`composite_rule` of ``numpy.polynomial.legendre.leggauss``; ``order`` at most
    :data:`MAX_GAUSS_ORDER`, whose eigenproblem is of size ``order``)."""
    ref_x, ref_w = np.polynomial.legendre.leggauss(
        check_count(order, "order", maximum=MAX_GAUSS_ORDER))
    return composite_rule(np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64),
                          ref_x, ref_w)


#: Size guard of :func:`gauss_legendre` and :func:`quadrature`: nodes per cell.
MAX_GAUSS_ORDER = 256
#: Size guard of :func:`quadrature`: 10^7 nodes are 160 MB of float64 nodes and weights.
MAX_QUADRATURE_NODES = 10**7


def quadrature(
    panels: int,
    *,
    order: int = 2,
    rule: str = "gauss-legendre",
    interval: tuple[float, float] = (0.0, 1.0),
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> Quadrature:
    """Composite quadrature on ``panels`` equal cells of ``interval`` (at most
    :data:`MAX_QUADRATURE_NODES` nodes in all, checked before anything is allocated).

    ``rule="gauss-legendre"``: ``order`` Gauss-Legendre nodes per cell (exact for polynomials
    of degree ``2 order - 1`` on each cell; error ``O(h^(2 order))`` for smooth integrands and
    ``O(h^2)`` times the jump in the first derivative for a cell containing one kink, as for
    ``(f - g)^2`` with a ReLU network ``f``).  ``rule="midpoint"``: the cell midpoints, weight
    ``h`` (``order`` must be 1).  Nodes and weights are computed in float64
    (``numpy.polynomial.legendre.leggauss``) and cast once to ``dtype``.  Guards: integer
    ``panels``, ``order`` (at most :data:`MAX_GAUSS_ORDER`), a finite non-empty ``interval``.
    """
    panels = check_count(panels, "panels")
    order = check_count(order, "order", maximum=MAX_GAUSS_ORDER)
    if panels * order > MAX_QUADRATURE_NODES:
        raise ValueError(f"panels * order must be at most {MAX_QUADRATURE_NODES} nodes (a size guard), "
                         f"got panels={panels}, order={order}")
    if rule not in QUADRATURE_RULES:
        raise ValueError(f"rule must be one of {QUADRATURE_RULES}, got {rule!r}")
    if rule == "midpoint" and order != 1:
        raise ValueError(f"the midpoint rule has one node per panel: order must be 1, got {order}")
    a, b = check_interval(interval)
    dtype = check_dtype(dtype)
    edges = np.linspace(a, b, panels + 1)
    if rule == "midpoint":
        x, w = composite_rule(edges[:-1], edges[1:], np.zeros(1), np.full(1, 2.0))
    else:
        x, w = gauss_legendre(edges[:-1], edges[1:], order)

    def t(arr: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(arr, dtype=torch.float64).to(dtype=dtype, device=device)

    return Quadrature(nodes=t(x), weights=t(w), interval=(a, b), rule=rule, panels=panels,
                      order=order)


#: Amplitude of :func:`gaussian_bump`: ``5 / (4 sqrt(2 pi))``.
BUMP_AMPLITUDE = 5.0 / (4.0 * np.sqrt(2.0 * np.pi))
#: Width parameter of :func:`gaussian_bump`: ``exp(-x^2 / (2 s^2))`` with ``s = 1/5``.
BUMP_SCALE = 0.2


def gaussian_bump(x: torch.Tensor | np.ndarray | float, derivative: int = 0
                  ) -> torch.Tensor | np.ndarray | float:
    """The smooth target ``g(x) = 5 / (4 sqrt(2 pi)) exp(-25 x^2 / 2)`` or its first or second
    derivative (``derivative`` 0, 1, 2).  A tensor gives a tensor of its dtype; arrays and
    numbers are computed in float64 (an ndarray, or a float for a scalar); NaN gives NaN.
    Guards: ``derivative`` an integer 0, 1 or 2; ``x`` real (bools, strings, ``None`` refused).

    The Gaussian target of Gentile and Welper's experiments on ``[-1, 1]`` (a normal density
    with standard deviation 1/5, scaled by 1/4): ``g' = -25 x g``, ``g'' = (625 x^2 - 25) g``.
    """
    derivative = check_count(derivative, "derivative", minimum=0)
    if derivative > 2:
        raise ValueError(f"derivative must be 0, 1 or 2, got {derivative!r}")
    if isinstance(x, torch.Tensor):
        if not torch.is_floating_point(x):
            raise TypeError(f"x must be a floating tensor, got {x.dtype}")
        g = BUMP_AMPLITUDE * torch.exp(-12.5 * x * x)
    elif isinstance(x, (bool, np.bool_)):
        raise TypeError("x must be a number, array or tensor, got a bool")
    else:
        raw = np.asarray(x)
        if raw.dtype.kind not in "iuf":  # None, strings, bools, objects would become NaN or fail
            if raw.ndim == 0:
                x = check_real(x, "x", finite=False, nan=True)  # Fractions; refuses the rest
            else:
                raise TypeError(f"x must be real numbers, got an array of dtype {raw.dtype}")
        arr = np.asarray(x, dtype=np.float64)
        g = BUMP_AMPLITUDE * np.exp(-12.5 * arr * arr)
        if arr.ndim == 0:
            x, g = float(arr), float(g)
        else:
            x = arr
    if derivative == 0:
        return g
    if derivative == 1:
        return -25.0 * x * g
    return (625.0 * x * x - 25.0) * g
