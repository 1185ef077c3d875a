"""Gradient descent computed *in* a floating-point format, and in mixed precision.

The floating-point chapter trains the sawtooth and Yarotsky's network with the arithmetic of a
format, in one of the :data:`MODES`:

* ``"float16"``, ``"bfloat16"``, ``"float32"``, ``"float64"`` -- parameters, inputs, targets,
  forward and backward pass in the format; the step is :func:`lib.train.gd`'s (for float16 and
  bfloat16: ``eta`` held in float32, ``p <- fl_d(fl_32(p - fl_32(eta g)))``, one rounding to the
  format; for float32/float64 ``p <- fl(p - fl(eta) g)``);
* ``"mixed-float16"``, ``"mixed-bfloat16"`` -- mixed precision as practice uses it (Micikevicius
  et al. 2018): float32 *master* weights; each step rounds them once to the low format, runs the
  forward and backward pass there, and applies ``p32 <- fl_32(p32 - fl_32(eta fl_32(g)))`` to the
  master (no loss scaling: the gradients of these networks do not underflow).

Every recorded step reports the network *as stored* (the master weights in mixed precision):
its exact piece count and its pieces wider than :func:`lib.pieces.visible_width` (exact
breakpoints, :mod:`lib.pieces`), the loss computed in the mode, the float64 loss of the stored
parameters on the float64 data, and the parameter drift ``||theta - theta_0|| / ||theta_0||``
(float64).  A network whose output is constant on [0, 1] is reported as *dead*
(:attr:`LowPrecRun.dead`), not an error.  :func:`square_errors` gives the exact L2 and sup error
of a 1-D network against ``x^2`` on [0, 1] (for GD from Yarotsky's ``f_m``).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import torch
from torch import nn

from lib import fp, pieces, train
from lib.exact import check_count, check_positive, linear_relu_layers
from lib.nets import mse
from lib.sawtooth import MAX_DEPTH, net_exact

MODES = ("float16", "bfloat16", "mixed-float16", "mixed-bfloat16", "float32", "float64")
"""The supported modes: in-format training in each format, and mixed precision."""

_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32,
           "float64": torch.float64}


def mode_dtypes(mode: Any) -> tuple[torch.dtype, torch.dtype]:
    """``(storage dtype, compute dtype)`` of a mode: the format the parameters are stored and
    updated in, and the one the forward and backward pass run in.  Raises ``ValueError`` naming
    ``mode`` for an unsupported one."""
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode.startswith("mixed-"):
        return torch.float32, _DTYPES[mode[len("mixed-"):]]
    return _DTYPES[mode], _DTYPES[mode]


@dataclass
class LowPrecRun:
    """Result of :func:`train_in_format`.

    ``history`` maps ``"step"``, ``"loss"`` (computed in the mode), ``"loss64"`` (float64 loss
    of the stored parameters on the float64 data), ``"pieces"``, ``"visible"``, ``"drift"`` and
    ``"crossings"`` (of the level 1/2; with ``square=True`` ``"sup"``, ``"l2"`` instead) to NumPy arrays over the recorded steps.  ``model`` is the network as stored at the end
    (float32 master weights in mixed precision).  ``dead``: its output is constant on [0, 1].
    ``diverged_at``: first step with a non-finite loss (training stopped), or ``None``.
    """

    mode: str
    model: nn.Sequential
    history: dict[str, np.ndarray]
    steps_done: int
    dead: bool
    diverged_at: int | None = None
    config: dict[str, Any] = field(default_factory=dict)


def is_dead(net: nn.Sequential) -> bool:
    """Whether the 1-D network ``net`` is constant on [0, 1] (exact: one affine piece whose
    values at 0 and 1 agree)."""
    if _widths(net).size != 1:
        return False
    return net_exact(net, Fraction(0)) == net_exact(net, Fraction(1))


_WIDTHS_CACHE: dict[bytes, np.ndarray] = {}


def _widths(net: nn.Sequential) -> np.ndarray:
    """:func:`lib.pieces.piece_widths` on [0, 1], cached by the exact parameter values (runs in
    several modes share their start; a count at depth 12 takes about a second)."""
    key = b"".join(str(tuple(p.shape)).encode() + p.detach().to(torch.float64).numpy().tobytes()
                   for p in net.parameters())
    if key not in _WIDTHS_CACHE:
        if len(_WIDTHS_CACHE) > 64:
            _WIDTHS_CACHE.clear()
        _WIDTHS_CACHE[key] = pieces.piece_widths(net)
    return _WIDTHS_CACHE[key]


def _half_crossings(net: nn.Sequential, widths: np.ndarray) -> int:
    """Crossings of the level 1/2 on [0, 1] (``g_L``: ``2^L``), as
    :func:`lib.fpstudy.half_crossings` counts them, from the exact piece widths: the net is affine
    between its breakpoints, so they are the sign changes of ``net - 1/2`` there (float64)."""
    knots = np.concatenate([[0.0], np.cumsum(widths)[:-1], [1.0]])
    with torch.no_grad():
        v = np.sign(fp.to_format(net, torch.float64)(torch.from_numpy(knots).reshape(-1, 1)).flatten().numpy() - 0.5)
    v = v[v != 0]
    return int((v[1:] != v[:-1]).sum())


def square_errors(net: nn.Sequential) -> dict[str, float]:
    """Sup and L2 error of the 1-D network ``net`` against ``x^2`` on [0, 1].

    The breakpoints are exact (:func:`lib.pieces.breakpoints`); the values at them are computed
    in float64 (relative error about ``1e-16``, far below the errors measured here); between
    them ``net`` is affine, so the sup of ``|f - x^2|`` is attained at a breakpoint or where
    ``f' = 2x``, and ``int (f - x^2)^2`` is integrated exactly by 3-point Gauss-Legendre
    (exact for degree 5).  Returns ``{"sup": ..., "l2": ...}`` (L2 norm, not squared).
    """
    linear_relu_layers(net, scalar_io=True)
    knots = np.unique(np.concatenate([[0.0], pieces.breakpoints(net), [1.0]]))
    net64 = fp.to_format(net, torch.float64)
    with torch.no_grad():
        vals = net64(torch.from_numpy(knots).reshape(-1, 1)).reshape(-1).numpy()
    a, b, fa, fb = knots[:-1], knots[1:], vals[:-1], vals[1:]
    slope = (fb - fa) / (b - a)
    sup = float(np.abs(vals - knots**2).max())
    vertex = slope / 2                                 # where f - x^2 has its maximum
    inside = (vertex > a) & (vertex < b)
    if inside.any():
        ev = fa[inside] + slope[inside] * (vertex[inside] - a[inside]) - vertex[inside] ** 2
        sup = max(sup, float(np.abs(ev).max()))
    nodes, weights = np.polynomial.legendre.leggauss(3)
    mid, half = (a + b) / 2, (b - a) / 2
    xs = mid[:, None] + half[:, None] * nodes[None, :]
    err = fa[:, None] + slope[:, None] * (xs - a[:, None]) - xs**2
    l2sq = float((half[:, None] * weights[None, :] * err**2).sum())
    return {"sup": sup, "l2": math.sqrt(l2sq)}


def _flat64(net: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1).to(torch.float64) for p in net.parameters()])


def _check_data(x: Any, y: Any) -> tuple[torch.Tensor, torch.Tensor]:
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dtype != torch.float64:
            raise TypeError(f"{name} must be float64 (it is rounded to each mode's format), got {t.dtype}")
    x, y = x.reshape(-1, 1), y.reshape(-1, 1)
    if x.shape != y.shape or x.shape[0] == 0:
        raise ValueError(f"x and y must hold the same positive number of samples, got {x.shape[0]} "
                         f"and {y.shape[0]}")
    return x, y


class _Recorder:
    """Pieces, visible pieces, float64 loss and drift of the stored network at recorded steps."""

    def __init__(self, start: nn.Sequential, x: torch.Tensor, y: torch.Tensor, depth: int,
                 square: bool) -> None:
        self.theta0, self.x, self.y, self.square = _flat64(start), x, y, square
        self.min_width = pieces.visible_width(depth)
        keys = ("step", "loss", "loss64", "pieces", "visible", "drift") + (("sup", "l2") if square
                                                                           else ("crossings",))
        self.rows: dict[str, list[float]] = {k: [] for k in keys}

    def __call__(self, net: nn.Sequential, step: int, loss: float | None = None) -> float:
        theta = _flat64(net)
        drift = float((theta - self.theta0).norm() / self.theta0.norm())
        if torch.isfinite(theta).all():
            widths = _widths(net)
            count, visible = widths.size, int((widths > self.min_width).sum())
            with torch.no_grad():
                loss64 = float(mse(fp.to_format(net, torch.float64)(self.x), self.y))
            errors = square_errors(net) if self.square else {"crossings": _half_crossings(net, widths)}
        else:                                  # a diverged network has no pieces to count
            count, visible, loss64 = math.nan, math.nan, math.nan
            errors = {"sup": math.nan, "l2": math.nan} if self.square else {"crossings": math.nan}
        for key, value in errors.items():
            self.rows[key].append(value)
        for key, value in (("step", step), ("loss64", loss64), ("pieces", count),
                           ("visible", visible), ("drift", drift)):
            self.rows[key].append(value)
        if loss is not None:
            self.rows["loss"].append(loss)
        return 0.0

    def history(self) -> dict[str, np.ndarray]:
        out = {k: np.asarray(v, dtype=float) for k, v in self.rows.items()}
        out["step"] = out["step"].astype(int)
        return out


def _mixed_gd(master: nn.Sequential, low: torch.dtype, x: torch.Tensor, y: torch.Tensor, lr: float,
              steps: int, record_every: int, rec: _Recorder) -> tuple[int, int | None]:
    """Mixed-precision GD on the float32 ``master`` in place; returns (steps done, diverged at)."""
    xd, yd = fp.round_to_format(x, low), fp.round_to_format(y, low)
    lr32 = torch.tensor(lr, dtype=torch.float32)
    work = copy.deepcopy(master).to(low)
    for step in range(steps + 1):
        with torch.no_grad():                      # one rounding: float32 master -> low format
            for w, p in zip(work.parameters(), master.parameters()):
                w.copy_(p.to(low))
        work.zero_grad(set_to_none=True)
        loss = mse(work(xd), yd)
        value = float(loss.detach())
        if step % record_every == 0 or step == steps or not math.isfinite(value):
            rec(master, step, value)
        if not math.isfinite(value):
            return step, step
        if step == steps:
            break
        grads = torch.autograd.grad(loss, list(work.parameters()))
        with torch.no_grad():
            for p, g in zip(master.parameters(), grads):
                p.sub_(lr32 * g.to(torch.float32))
    return steps, None


def format_data(x: torch.Tensor, y: torch.Tensor, fmt: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The data as GD in ``fmt`` sees them: ``x`` and ``y`` (float64, shape ``(n,)`` or
    ``(n, 1)``) each rounded once to the format (:func:`lib.fp.round_to_format`) and returned
    as float64 tensors of shape ``(n, 1)``, as :func:`train_in_format` rounds them.  ``fmt``: a
    mode of :data:`MODES`; its compute format is used.  For the data controls of the chapter
    (float64 GD on the data a 16-bit mode trains on)."""
    compute = mode_dtypes(fmt)[1]
    x, y = _check_data(x, y)
    return (fp.round_to_format(x, compute).to(torch.float64),
            fp.round_to_format(y, compute).to(torch.float64))


def data_floor(net: nn.Sequential, x: torch.Tensor, y: torch.Tensor, fmt: str) -> float:
    """The loss the data of ``fmt`` impose without any training: the float64 mean squared error
    of ``net`` (evaluated in float64) at the inputs rounded to the compute format of ``fmt``,
    against the float64 targets ``y`` of the *unrounded* inputs.  At the sawtooth construction it
    is the loss of the construction on the rounded data, the part of the loss that the rounding
    of the inputs alone imposes before GD takes a step.  ``x``, ``y``:
    float64, shape ``(n,)`` or ``(n, 1)``."""
    linear_relu_layers(net, scalar_io=True)
    x, y = _check_data(x, y)
    xr = fp.round_to_format(x, mode_dtypes(fmt)[1]).to(torch.float64)
    with torch.no_grad():
        return float(mse(fp.to_format(net, torch.float64)(xr), y))


def train_in_format(net: nn.Sequential, x: torch.Tensor, y: torch.Tensor, mode: str, *, lr: float,
                    steps: int, depth: int, record_every: int = 1,
                    square: bool = False) -> LowPrecRun:
    """Full-batch GD (mean squared error) of the 1-D Linear/ReLU stack ``net`` in ``mode``.

    ``x``, ``y``: float64 data, shape ``(n,)`` or ``(n, 1)``, rounded once to the compute format
    (:func:`lib.fp.round_to_format`).  ``net`` is rounded once to the storage format and not
    modified.  ``lr > 0``: the step size; ``0 <= steps <= 10**6`` updates; ``depth`` in
    ``1..``:data:`lib.sawtooth.MAX_DEPTH`: the depth whose
    :func:`lib.pieces.visible_width` defines a visible piece; ``record_every >= 1``; ``square``:
    also record :func:`square_errors` (``"sup"``, ``"l2"``, against ``x^2``).  See the
    module docstring for the arithmetic of each mode.  Raises ``ValueError``/``TypeError`` naming
    the argument for an unsupported mode, a non-positive step, ``depth`` or ``record_every``
    below 1, a bool for a number (or a non-bool ``square``) and a network that is not a
    Linear/ReLU stack with scalar input and output.  ``lr``: Python, NumPy or 0-d torch real.
    """
    store, compute = mode_dtypes(mode)
    linear_relu_layers(net, scalar_io=True)
    lr = check_positive(lr, "lr (step size)")
    if not isinstance(square, (bool, np.bool_)):
        raise TypeError(f"square must be a bool, got {square!r}")
    steps = check_count(steps, "steps", 0, maximum=10**6)
    depth = check_count(depth, "depth", maximum=MAX_DEPTH)
    record_every = check_count(record_every, "record_every")
    x, y = _check_data(x, y)
    start = fp.to_format(net, store)
    rec = _Recorder(start, x, y, depth, bool(square))
    if store == compute:
        xd, yd = fp.round_to_format(x, store), fp.round_to_format(y, store)
        run = train.gd(start, mse, xd, yd, lr=lr, steps=steps, dtype=store, record_every=record_every,
                       hooks={"stored": rec})      # the hook sees the stored network, before the step
        model, done, diverged = run.model, run.steps_done, run.diverged_at
        rec.rows["loss"] = run.history["loss"].tolist()
    else:
        model = copy.deepcopy(start)
        done, diverged = _mixed_gd(model, compute, x, y, lr, steps, record_every, rec)
    return LowPrecRun(mode=mode, model=model, history=rec.history(), steps_done=done,
                      dead=is_dead(model), diverged_at=diverged,
                      config={"lr": lr, "steps": steps, "depth": depth, "storage": str(store),
                              "compute": str(compute)})
