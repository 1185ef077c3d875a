"""Private helpers and size guards of :mod:`lib.approx` (kept apart so that module stays
within the library's 900-line limit).  The constants are re-exported by :mod:`lib.approx`;
the functions are imported there under their underscored names."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from lib.data import MAX_QUADRATURE_NODES, gauss_legendre
from lib.exact import check_count

MAX_WIDTH = 2**16
"""Size guard of widths ``m`` and knot counts ``interior`` in :mod:`lib.approx` (the chapters
use at most 1024)."""
MAX_PANELS = 10**7
"""Size guard of ``panels`` in :func:`lib.approx.adapted_knots` (default 4096)."""
MAX_CELLS = 10**6
"""Size guard of ``cells`` in :func:`lib.approx.balanced_configuration` (the chapters use
fewer than ``2 * 1024``)."""
MAX_SUBDIVIDE = 4096
"""Size guard of ``subdivide`` (parts per cell) in :func:`lib.approx.spline_projection` and
:func:`lib.approx.pl_l2_error` (defaults 4 and 2)."""
MAX_EXACT_M = 20
"""Size guard of ``m`` in :func:`lib.approx.yarotsky_l2_error_sq_exact` (cost ``O(m 2^m)`` in
rational arithmetic; the chapters use ``m <= 10``)."""
MAX_MEMBERS = 2**12
"""Size guard of ``members`` in :func:`lib.approx.train_breakpoint_nets` and
:func:`lib.approx.train_relu_ensemble` (the chapters use at most 49)."""


def column(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    """``x`` of shape ``(n,)`` or ``(n, 1)`` as a flat ``(n,)`` tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 2 and x.shape[1] == 1:
        return x.reshape(-1)
    if x.dim() != 1:
        raise ValueError(f"{name} must have shape (n,) or (n, 1), got {tuple(x.shape)}")
    return x


def cells(knots: np.ndarray, order: int, subdivide: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gauss nodes and weights on every cell between knots (each cut into ``subdivide``
    equal parts); also the index of the knot cell of every node."""
    edges = knots[:-1, None] + (knots[1:] - knots[:-1])[:, None] * np.linspace(0, 1, subdivide + 1)[None, :]
    x, w = gauss_legendre(edges[:, :-1].reshape(-1), edges[:, 1:].reshape(-1), order)
    cell = np.repeat(np.arange(len(knots) - 1), subdivide * order)
    return x, w, cell


def target_np(target: Callable[[torch.Tensor], Any], x: np.ndarray) -> np.ndarray:
    y = target(torch.as_tensor(x, dtype=torch.float64))
    return np.asarray(y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else y,
                      dtype=np.float64).reshape(-1)


def check_horizons(steps: int, horizons: Sequence[int], max_steps: int) -> list[int]:
    steps = check_count(steps, "steps", maximum=max_steps)
    hz = [check_count(h, "horizons[i]") for h in horizons]
    if not hz or sorted(set(hz)) != hz or hz[-1] > steps:
        raise ValueError(f"horizons must be increasing step counts up to steps={steps}, got {horizons!r}")
    return hz


def check_panels(panels_per_width: Any, m: int) -> int:
    """``panels_per_width * m`` (the panels of a 2-point rule), refused naming
    ``panels_per_width`` when the rule would exceed :data:`lib.data.MAX_QUADRATURE_NODES`."""
    per = check_count(panels_per_width, "panels_per_width")
    if 2 * per * m > MAX_QUADRATURE_NODES:
        raise ValueError(f"panels_per_width * m must be at most {MAX_QUADRATURE_NODES // 2} panels "
                         f"(a size guard), got panels_per_width={per} with m={m}")
    return per * m


def floats(a: Any, name: str) -> np.ndarray:
    """``a`` as a float64 array, or ``TypeError`` naming ``name``."""
    try:
        return np.asarray(a, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an array of real numbers, got {type(a).__name__}") from None
