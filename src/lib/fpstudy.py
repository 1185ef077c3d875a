"""Experiments of the floating-point chapter that train or sweep (dynamics floor).

Gradient descent near the constructions in each float format, perturbation sweeps and the
counts taken along them: the machinery behind ``book/floating-point.md``, kept here so the
chapter shows the idea in short cells.  The sweeps over independent cells
(:func:`perturbation_sweep`'s depths x levels, :func:`perturbed_mse`'s levels,
:func:`he_precision_grid`'s depths x widths and depths x widths x formats) run through
:func:`lib.sweep.run`: serial under the ``quick`` profile, on all cores under ``paper``; every
cell draws from its own seeds, so the results do not depend on the backend.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn

from lib import fp, hessian, nets, pieces, sweep, train
from lib import sawtooth as st
from lib.exact import (check_count, check_dtype, check_positive, check_real, check_seed,
                       linear_relu_layers)

__all__ = ["half_crossings", "perturbation_sweep", "perturbed_mse", "absorption", "bias_updates",
           "StackedRun", "stacked_lambda_max", "representable_step", "gd_stacked", "step_bound",
           "noise_scale_counts", "is_dead", "he_precision_grid", "mean_reciprocal_update",
           "one_step_bound",
           "perturbed_start", "gd_near", "run_summary", "stall_summary"]


#: Size guards: GD steps of :func:`gd_stacked` and :func:`he_precision_grid`; seeds and draws
#: of the sweeps are at most 10,000.
MAX_STEPS = 10**6


def _check_levels(levels: Any, name: str) -> list[float]:
    """A number or a sequence/array/tensor of them as a list of finite floats ``>= 0`` (each
    entry through :func:`lib.exact.check_real`: bools, strings, ``None``, NaN refused)."""
    if isinstance(levels, torch.Tensor):
        items = list(levels.detach().reshape(-1))
    elif isinstance(levels, (str, bytes)) or np.ndim(levels) == 0:
        items = [levels]
    else:
        items = list(np.asarray(levels, dtype=object).reshape(-1))
    if not items:
        raise ValueError(f"{name} must be a non-empty sequence of finite numbers >= 0, got {levels!r}")
    return [check_real(v, f"{name}[{i}]", ge=0) for i, v in enumerate(items)]


def _check_xy(x: Any, y: Any, name_x: str = "x", name_y: str = "y") -> None:
    """``x`` and ``y``: non-empty finite floating tensors with the same number of rows; else
    ``TypeError``/``ValueError`` naming the argument."""
    for name, v in ((name_x, x), (name_y, y)):
        if not isinstance(v, torch.Tensor) or not v.is_floating_point():
            raise TypeError(f"{name} must be a floating torch.Tensor, got {type(v).__name__}")
        if v.ndim == 0 or v.shape[0] == 0:
            raise ValueError(f"{name} must hold at least one row, got shape {tuple(v.shape)}")
        if not bool(torch.isfinite(v).all()):
            raise ValueError(f"{name} must be finite, got {int((~torch.isfinite(v)).sum())} NaN/inf entries")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"{name_y} must have one row per row of {name_x} ({x.shape[0]}), got shape "
                         f"{tuple(y.shape)}")


def _check_eps(eps: Any) -> float:
    return check_real(eps, "eps", ge=0)


def half_crossings(net: nn.Sequential, analysis: pieces.PieceAnalysis | None = None) -> int:
    """How often ``net`` crosses the level 1/2 on [0, 1] (the sawtooth ``g_L``: ``2^L`` times,
    twice per tooth), from its exact pieces: the network is affine between breakpoints, so the
    crossings are the sign changes of ``net - 1/2`` at the breakpoints and the ends (in float64).
    ``analysis``: :func:`lib.pieces.piece_analysis` of ``net``, if already computed."""
    if not isinstance(net, nn.Sequential):
        raise TypeError(f"net must be an nn.Sequential, got {type(net).__name__}")
    if analysis is not None and not isinstance(analysis, pieces.PieceAnalysis):
        raise TypeError(f"analysis must be a PieceAnalysis or None, got {type(analysis).__name__}")
    analysis = analysis or pieces.piece_analysis(net)
    t = torch.tensor(np.concatenate([[0.0], analysis.breakpoints, [1.0]]), dtype=torch.float64)
    with torch.no_grad():
        v = np.sign(fp.to_format(net, torch.float64)(t.reshape(-1, 1)).flatten().numpy() - 0.5)
    v = v[v != 0]
    return int((v[1:] != v[:-1]).sum())


def perturbation_sweep(depths: Sequence[int], levels: Sequence[float],
                       seeds: int) -> dict[tuple[int, float], dict[str, float]]:
    """The sawtooth ``g_L`` of each depth ``L`` with every parameter perturbed by a relative
    ``level`` (:func:`lib.nets.perturbed_net`, seeds ``0 .. seeds - 1``), counted exactly.

    Returns ``{(L, level): {"exact": ..., "visible": ..., "crossings of 1/2": ...}}``: the mean
    over the seeds of all pieces, of the visible pieces (wider than the book's one threshold
    :func:`lib.pieces.visible_width` ``(L)`` ``= 2^-L / 2``, as :func:`lib.pieces.count_visible`
    counts them) and of the crossings of the level 1/2 (:func:`half_crossings`), each divided
    by ``2^L``.  The ``(L, level)`` cells run through :func:`lib.sweep.run`.
    Guards: ``levels`` finite reals ``>= 0`` (no bools), ``seeds <= 10,000``.
    """
    depths = [check_count(L, f"depths[{i}]") for i, L in enumerate(depths)]
    levels = _check_levels(levels, "levels")
    seeds = check_count(seeds, "seeds", maximum=10_000)
    cells = [(L, float(level)) for L in depths for level in levels]
    rows = sweep.run(partial(_perturbation_cell, seeds=seeds), cells, desc="perturbation sweep")
    return dict(zip(cells, rows))


def _perturbation_cell(cell: tuple[int, float], seeds: int) -> dict[str, float]:
    """One ``(L, level)`` cell of :func:`perturbation_sweep` (seeds ``0 .. seeds - 1``)."""
    L, level = cell
    net = st.sawtooth_net(L)
    exact_counts, visible, crossings = [], [], []
    for seed in range(seeds):
        perturbed = nets.perturbed_net(net, level, seed=seed)
        analysis = pieces.piece_analysis(perturbed)
        w = analysis.widths()
        exact_counts.append(w.size)
        visible.append(int((w > pieces.visible_width(L)).sum()))
        crossings.append(half_crossings(perturbed, analysis))
    return {"exact": np.mean(exact_counts) / 2**L, "visible": np.mean(visible) / 2**L,
            "crossings of 1/2": np.mean(crossings) / 2**L}


def perturbed_mse(net: nn.Sequential, x: torch.Tensor, y: torch.Tensor, levels: Sequence[float],
                  seeds: int) -> np.ndarray:
    """Mean squared error of ``net`` perturbed by each relative ``level`` against ``y`` at the
    inputs ``x`` (shape ``(n, 1)``), averaged over the seeds ``0 .. seeds - 1``: one value per level.
    The levels run through :func:`lib.sweep.run`.  Guards: ``levels`` finite reals ``>= 0`` (no
    bools), ``seeds <= 10,000``; ``x``, ``y`` non-empty finite tensors with the same number of rows."""
    _check_xy(x, y)
    levels = _check_levels(levels, "levels")
    seeds = check_count(seeds, "seeds", maximum=10_000)
    return np.array(sweep.run(partial(_mse_at_level, net, x, y, seeds=seeds), levels,
                              desc="perturbed mse"))


def _mse_at_level(net: nn.Sequential, x: torch.Tensor, y: torch.Tensor, level: float,
                  seeds: int) -> float:
    """One level of :func:`perturbed_mse`: the mean over the seeds ``0 .. seeds - 1``."""
    with torch.no_grad():
        return np.mean([float(((nets.perturbed_net(net, level, seed=s)(x) - y) ** 2).mean())
                        for s in range(seeds)])


def absorption(x: Any, ms: Sequence[int], dtype: Any) -> tuple[int, dict[int, int]]:
    """Where Yarotsky's ``f_m`` stops changing in a format: ``(m_a, changing)``.

    ``f_m`` (:func:`lib.sawtooth.yarotsky_square_net` in ``dtype``) is evaluated at the inputs
    ``x`` rounded to ``dtype`` for each ``m`` of ``ms``; ``changing[m]`` counts the inputs where
    ``f_m`` differs from ``f`` at the largest ``m``; ``m_a`` is the smallest ``m`` from which the
    outputs no longer change, or 0 if that is only the largest ``m`` (not reached).
    """
    for i, m in enumerate(ms):
        check_count(m, f"ms[{i}]")
    ms = sorted(ms)
    if not ms:
        raise ValueError("ms must not be empty")
    dtype = check_dtype(dtype)
    with torch.no_grad():
        xr = fp.round_to_format(x, dtype).reshape(-1, 1)
        outs = {m: st.yarotsky_square_net(m, dtype)(xr).flatten() for m in ms}
    changing = {m: int((outs[m] != outs[ms[-1]]).sum()) for m in ms}
    unchanged = [m for m in ms if all(torch.equal(outs[m], outs[k]) for k in ms if k >= m)]
    return (min(unchanged) if min(unchanged) < ms[-1] else 0), changing


def bias_updates(net: nn.Sequential, x: torch.Tensor, y: torch.Tensor, lam: float) -> torch.Tensor:
    """The updates ``Delta_j`` of all hidden biases in one GD step of size ``1/lam`` on the mean
    squared error of ``net`` at ``x`` against ``y``, flattened layer by layer (noise-free).
    ``net`` is evaluated in eval mode and not changed (:func:`lib.hessian.evaluation_mode`);
    ``x``, ``y``: non-empty finite tensors with the same number of rows."""
    if not isinstance(net, nn.Sequential):
        raise TypeError(f"net must be an nn.Sequential, got {type(net).__name__}")
    lam = check_positive(lam, "lam")
    _check_xy(x, y)
    hidden = [m for m in net if isinstance(m, nn.Linear)][:-1]
    if not hidden:
        raise ValueError("net must have at least one hidden layer")
    with hessian.evaluation_mode(net):
        out = net(x)
    grads = torch.autograd.grad(nets.mse(out, y), [m.bias for m in hidden])
    return torch.cat([g.reshape(-1) for g in grads]).detach() / lam


def one_step_bound(net: nn.Sequential, x: torch.Tensor, y: torch.Tensor, lam: float,
                   noises: Sequence[float], grid: torch.Tensor, seed: int = 1) -> dict[str, Any]:
    """One GD step of size ``1/lam`` with noise of each level ``s`` of ``noises`` on the bias
    updates, against the bound of the chapter's proposition.

    Returns the number of hidden neurons, ``N'`` (non-zero updates ``Delta_j``, from
    :func:`bias_updates`), the mean of ``1/|Delta_j|``, and per ``s``: the bound
    ``sum_j V(z_j) / (2 s |Delta_j|)`` over the neurons with ``Delta_j != 0`` (total variation
    of the hidden pre-activations ``z_j`` of the stepped network on the sorted ``grid``), the
    number of breakpoints of the stepped network on [0, 1] (exact), and how many neurons with
    ``Delta_j = 0`` have a pre-activation that changes sign on the grid (the hypothesis).
    """
    if not isinstance(grid, torch.Tensor) or grid.ndim != 2 or grid.shape[1] != 1:
        raise ValueError("grid must be a tensor of shape (n, 1)")
    if grid.shape[0] < 2 or not bool(torch.isfinite(grid).all()):
        raise ValueError(f"grid must hold at least 2 finite points, got shape {tuple(grid.shape)}")
    levels = _check_levels(noises, "noises")
    delta = bias_updates(net, x, y, lam)
    moving = delta != 0
    row: dict[str, Any] = {"neurons": delta.numel(), "N' (non-zero updates)": int(moving.sum()),
                           "mean 1/|update|": float((1 / delta[moving].abs()).mean())}
    for s in levels:
        stepped = train.gd(net, nets.mse, x, y, lr=1 / lam, steps=1, noise=s,
                           noise_on="bias_updates", seed=seed).model
        with torch.no_grad():
            z, pre = grid, []
            for m in stepped:
                z = m(z)
                if isinstance(m, nn.Linear):
                    pre.append(z)
            pre = torch.cat(pre[:-1], dim=1)                     # hidden pre-activations z_j
        variation = pre.diff(dim=0).abs().sum(dim=0)             # V(h_j) = V(z_j): the bias is constant
        row[f"bound, s = {s:.3g}"] = float((variation[moving] / (2 * s * delta[moving].abs())).sum())
        row[f"breakpoints, s = {s:.3g}"] = pieces.count_pieces(stepped) - 1
        row[f"Delta = 0, z changes sign, s = {s:.3g}"] = int(
            (~moving & (pre > 0).any(dim=0) & (pre < 0).any(dim=0)).sum())
    return row


def perturbed_start(base: nn.Sequential, eps: float, dtype: Any, seed: int = 0) -> nn.Sequential:
    """``base`` perturbed by a relative ``eps`` (:func:`lib.nets.perturbed_net`, in float64)
    and rounded once to ``dtype``: the start of :func:`gd_near`."""
    return fp.to_format(nets.perturbed_net(base, _check_eps(eps), seed=seed), check_dtype(dtype))


def gd_near(base: nn.Sequential, x: torch.Tensor, y: torch.Tensor, eps: float, dtype: Any,
            lr: float, *, steps: int, record_every: int, min_width: float, noise: float = 0.0,
            noise_on: str = "bias_updates", seed: int = 0) -> train.GDRun:
    """Full-batch GD (:func:`lib.train.gd`, mean squared error) in ``dtype`` from
    :func:`perturbed_start`, on the float64 data ``x``, ``y`` rounded to ``dtype``, recording
    the exact pieces and those wider than ``min_width`` (:func:`lib.train.piece_hooks`).
    ``noise``/``noise_on``/``seed``: as in :func:`lib.train.gd`."""
    dtype, eps = check_dtype(dtype), _check_eps(eps)
    _check_xy(x, y)
    net = perturbed_start(base, eps, dtype, seed)
    xd, yd = fp.round_to_format(x, dtype), fp.round_to_format(y, dtype)
    return train.gd(net, nets.mse, xd, yd, lr=lr, steps=steps, record_every=record_every,
                    hooks=train.piece_hooks(min_width), noise=noise, noise_on=noise_on, seed=seed,
                    desc=f"eps={eps:g} {fp.format_name(dtype)}")


def run_summary(run: train.GDRun, start: nn.Sequential) -> dict[str, Any]:
    """One row of the GD table: visible pieces at the start and end, all pieces at the end, the
    crossings of 1/2 (:func:`half_crossings`) of ``start`` and of the trained network, and the
    loss at the start and the end.  ``run`` needs the hooks ``"visible"`` and ``"pieces"``."""
    if not isinstance(run, train.GDRun):
        raise TypeError(f"run must be a GDRun, got {type(run).__name__}")
    h = run.history
    if "visible" not in h or "pieces" not in h:
        raise ValueError("run must have recorded the hooks 'visible' and 'pieces' (train.piece_hooks)")
    return {"visible at start": int(h["visible"][0]), "visible at end": int(h["visible"][-1]),
            "pieces at end": int(h["pieces"][-1]),
            "crossings at start": half_crossings(start),
            "crossings at end": half_crossings(run.model),
            "loss at start": h["loss"][0], "loss at end": h["loss"][-1]}


def stall_summary(base: nn.Sequential, start: nn.Sequential, frozen: train.GDRun,
                  moving: train.GDRun, x: torch.Tensor, y: torch.Tensor, lam: float,
                  dtype: Any, record_every: int) -> dict[str, Any]:
    """What rounding does to GD at the step ``1/lam`` in ``dtype``.

    ``start``: the start of ``frozen`` (a near-exact perturbation of ``base``, in ``dtype``);
    ``moving``: a run that is still repairing.  Returns how many parameters of ``start`` differ
    from ``base`` rounded to ``dtype``, how many non-zero ones ``frozen`` moved, the stored step
    size over ``1/lam``, how many of ``moving``'s final parameters one more step would change
    (an update below half an ulp rounds away), the number of parameters, the float64 loss of
    ``moving``'s final parameters on the float64 data ``x``, ``y``, and the number of final steps
    (in multiples of ``record_every``) with a constant recorded loss.
    """
    lam = check_positive(lam, "lam")
    dtype = check_dtype(dtype)
    record_every = check_count(record_every, "record_every")
    exact = fp.to_format(base, dtype)
    differs = sum(int((p != q).sum()) for p, q in zip(start.parameters(), exact.parameters()))
    nonzero_moved = sum(int(((p != q) & (q != 0)).sum())
                        for p, q in zip(frozen.model.parameters(), exact.parameters()))
    net = moving.model
    xd, yd = fp.round_to_format(x, dtype), fp.round_to_format(y, dtype)
    grads = torch.autograd.grad(nets.mse(net(xd), yd), list(net.parameters()))
    lr_d = torch.tensor(1 / lam, dtype=dtype)          # as train.gd stores it
    with torch.no_grad():
        would_move = sum(int((p - lr_d * g != p).sum()) for p, g in zip(net.parameters(), grads))
        loss64 = float(nets.mse(fp.to_format(net, torch.float64)(x), y))
    losses = moving.history["loss"]
    return {"differs from the construction at eps = 1e-8": differs,
            "non-zero moved in the eps = 1e-8 run": nonzero_moved,
            "stored eta / eta": float(lr_d) * lam,
            "eps = 1e-2: parameters that would still move": would_move,
            "parameters": sum(p.numel() for p in net.parameters()),
            "eps = 1e-2: final parameters, float64 loss": loss64,
            "eps = 1e-2: last steps with a constant loss":
                int(np.sum(np.cumprod((losses[::-1][1:] == losses[-1])))) * record_every}


# --------------------------------------------------------------------------- Karner et al.'s study
# He networks trained in each format, many seeds at once: the parameters of S networks of one
# architecture are stacked (weights (S, out, in), biases (S, out)) and trained by one batched
# loop whose loss is the sum of the S mean squared errors, so that every network receives
# exactly its own gradient (the other terms do not depend on its parameters).

@dataclass
class StackedRun:
    """Result of :func:`gd_stacked` for ``S`` networks of one architecture.

    ``nets``: the trained networks (``nn.Sequential``, in the training format); ``steps`` and
    ``loss`` (shape ``(S, len(steps))``): the losses at the recorded steps; ``recip`` (same
    shape): the network-wide mean of ``1/|Delta_j|`` over the non-zero hidden-bias updates
    of the step taken there (``inf`` where all are zero); ``moving``: how many hidden-bias
    updates were non-zero; ``next_update``: the update ``eta * grad`` (computed in the format,
    not applied) at the final parameters, per network a list of float64 tensors in the order
    of ``net.parameters()``; ``lrs``: the step sizes.
    """

    nets: list[nn.Sequential]
    steps: np.ndarray
    loss: np.ndarray
    recip: np.ndarray
    moving: np.ndarray
    next_update: list[list[torch.Tensor]]
    lrs: list[float]


def _check_stack(nets_list: Any) -> list[nn.Sequential]:
    if not isinstance(nets_list, (list, tuple)) or not nets_list:
        raise ValueError("nets_list must be a non-empty list of Linear/ReLU networks")
    shapes = None
    for i, net in enumerate(nets_list):
        layers = linear_relu_layers(net, scalar_io=True)
        kinds = [type(m).__name__ for m in layers]
        if any(a == b for a, b in zip(kinds, kinds[1:])):
            raise ValueError(f"nets_list[{i}] must alternate nn.Linear and nn.ReLU layers")
        sh = [tuple(p.shape) for p in net.parameters()]
        if shapes is not None and sh != shapes:
            raise ValueError(f"nets_list[{i}] has another architecture than nets_list[0]")
        shapes = sh
    return list(nets_list)


def _stack(nets_list: Sequence[nn.Sequential], dtype: torch.dtype) -> list[torch.Tensor]:
    """[W_1, b_1, W_2, b_2, ...] of all networks, stacked along a first axis, in ``dtype``
    (converted by torch from the networks' own format), as leaves that require gradients."""
    per_net = [list(net.parameters()) for net in nets_list]
    return [torch.stack([p[k].detach() for p in per_net]).to(dtype).requires_grad_(True)
            for k in range(len(per_net[0]))]


def _stacked_forward(params: Sequence[torch.Tensor], x: torch.Tensor) -> list[torch.Tensor]:
    """Pre-activations of every layer of the stacked networks at ``x`` (shape ``(n, 1)``):
    a list of tensors of shape ``(S, n, width)``, the last one the outputs."""
    z = x.unsqueeze(0).expand(params[0].shape[0], -1, -1)
    pre = []
    for k in range(0, len(params), 2):
        if k:
            z = torch.relu(z)
        z = torch.baddbmm(params[k + 1].unsqueeze(1), z, params[k].transpose(1, 2))
        pre.append(z)
    return pre


def _stacked_loss(params: Sequence[torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The mean squared error of every stacked network, shape ``(S,)``."""
    out = _stacked_forward(params, x)[-1]
    return ((out - y.unsqueeze(0)) ** 2).mean(dim=(1, 2))


def stacked_lambda_max(nets_list: Sequence[nn.Sequential], x: torch.Tensor,
                       y: torch.Tensor) -> np.ndarray:
    """Top Hessian eigenvalue ``lambda_max`` of the mean squared error of each network of
    ``nets_list`` at the data ``x``, ``y`` (shape ``(n, 1)``), in float64, by Lanczos
    (:func:`lib.hessian.eigenvalues`): shape ``(S,)``."""
    nets_list = _check_stack(nets_list)
    _check_xy(x, y)
    x64, y64 = x.to(torch.float64), y.to(torch.float64)
    return np.array([float(hessian.eigenvalues(fp.to_format(net, torch.float64), nets.mse, x64, y64)[0])
                     for net in nets_list])


def representable_step(lam: float) -> float:
    """The step size ``2^floor(log2(1/lam))`` in ``(1/(2 lam), 1/lam]``: a power of two, so
    exact in every format of :data:`lib.fp.SUPPORTED_DTYPES` while it is at least ``2^-24``."""
    lam = check_positive(lam, "lam")
    return 2.0 ** math.floor(math.log2(1.0 / lam))


def mean_reciprocal_update(delta: Any) -> np.ndarray:
    """Per row (a network; ``delta`` of shape ``(S, ...)``): the mean of ``1/|Delta|`` over the
    non-zero updates ``Delta`` of the row, ``inf`` if all are zero (assumption (A)'s quantity),
    NaN if the row holds a NaN (not counted as a zero update).  Float64."""
    a = np.abs(np.asarray(delta, dtype=np.float64))
    if a.ndim < 1 or a.shape[0] == 0:
        raise ValueError(f"delta must have a non-empty first axis (one row per network), got shape {a.shape}")
    a = a.reshape(len(a), -1)
    return np.array([np.nan if np.isnan(r).any() else (1 / r[r > 0]).mean() if (r > 0).any()
                     else np.inf for r in a])


def _mean_recip(bias_updates: Sequence[torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
    a = torch.cat([u.detach().to(torch.float64) for u in bias_updates], dim=1).numpy()   # (S, neurons)
    return mean_reciprocal_update(a), (a != 0).sum(axis=1)


def gd_stacked(nets_list: Sequence[nn.Sequential], x: torch.Tensor, y: torch.Tensor,
               lrs: Sequence[float], *, steps: int, dtype: Any, record_every: int) -> StackedRun:
    """Full-batch GD on the mean squared error, computed in ``dtype`` (parameters, data,
    forward, backward and update), for ``S`` networks of one Linear/ReLU architecture at once.

    ``x``, ``y``: data of shape ``(n, 1)``, rounded to ``dtype`` by torch; ``lrs``: one step size
    per network, each exactly representable in ``dtype`` (e.g. :func:`representable_step`).
    Each network follows ``theta - fl(eta * g)`` with its own gradient ``g`` (the batched loss
    is the sum of the ``S`` losses).  Records every ``record_every`` steps and at the end.
    Guard: ``steps <=`` :data:`MAX_STEPS`.
    """
    nets_list = _check_stack(nets_list)
    dtype = check_dtype(dtype)
    steps = check_count(steps, "steps", maximum=MAX_STEPS)
    record_every = check_count(record_every, "record_every")
    _check_xy(x, y)
    if x.ndim != 2 or x.shape[1] != 1 or y.shape != x.shape:
        raise ValueError(f"x and y must have shape (n, 1), got {tuple(x.shape)} and {tuple(y.shape)}")
    if len(lrs) != len(nets_list):
        raise ValueError(f"lrs must give one step size per network ({len(nets_list)}), got {len(lrs)}")
    lrs = [check_positive(lr, f"lrs[{i}]") for i, lr in enumerate(lrs)]
    lr_t = torch.tensor(lrs, dtype=dtype)
    for i, (lr, stored) in enumerate(zip(lrs, lr_t.tolist())):
        if stored != lr:
            raise ValueError(f"lrs[{i}] = {lr!r} is not representable in {fp.format_name(dtype)}")
    params = _stack(nets_list, dtype)
    xd, yd = x.to(dtype), y.to(dtype)
    shape = [lr_t.reshape(-1, *([1] * (p.ndim - 1))) for p in params]
    rec: dict[str, list] = {"steps": [], "loss": [], "recip": [], "moving": []}
    for step in range(steps + 1):
        loss = _stacked_loss(params, xd, yd)
        grads = torch.autograd.grad(loss.sum(), params)
        with torch.no_grad():
            updates = [s * g for s, g in zip(shape, grads)]
            if step % record_every == 0 or step == steps:
                recip, moving = _mean_recip(updates[1:-2:2])
                rec["steps"].append(step)
                rec["loss"].append(loss.detach().to(torch.float64).numpy())
                rec["recip"].append(recip)
                rec["moving"].append(moving)
            if step == steps:
                break
            for p, u in zip(params, updates):
                p.sub_(u)
    trained = []
    for i, net in enumerate(nets_list):
        copy_ = fp.to_format(net, dtype)
        with torch.no_grad():
            for q, p in zip(copy_.parameters(), params):
                q.copy_(p[i])
        trained.append(copy_)
    nxt = [[u[i].to(torch.float64) for u in updates] for i in range(len(nets_list))]
    return StackedRun(trained, np.array(rec["steps"]), np.stack(rec["loss"], axis=1),
                      np.stack(rec["recip"], axis=1), np.stack(rec["moving"], axis=1), nxt, lrs)


def _perturbed_step(net: nn.Sequential, update: Sequence[torch.Tensor], s: float,
                    gen: torch.Generator | None) -> nn.Sequential:
    """``net`` (in float64) after the step ``theta - update`` with the hidden-bias updates
    ``Delta_j`` multiplied by ``1 + delta_j``, ``delta_j ~ U[-s, s]`` (exact arithmetic up to
    float64; the output bias is not perturbed: it adds no breakpoint)."""
    stepped = fp.to_format(net, torch.float64)
    params = list(stepped.parameters())
    if len(update) != len(params) or any(u.shape != p.shape for u, p in zip(update, params)):
        raise ValueError("update must hold one tensor per parameter of net, of the same shapes")
    with torch.no_grad():
        for k, (p, u) in enumerate(zip(params, update)):
            u = u.to(torch.float64)
            if k % 2 == 1 and k < len(params) - 1 and s > 0:
                u = u * (1 + (torch.rand(u.shape, generator=gen, dtype=torch.float64) * 2 - 1) * s)
            p.sub_(u)
    return stepped


def step_bound(net: nn.Sequential, update: Sequence[torch.Tensor], s: float, grid: torch.Tensor,
               seed: int = 0) -> dict[str, Any]:
    """The one-step bound of the chapter's proposition against the count it bounds.

    ``update``: the GD update of every parameter of ``net`` (e.g. ``StackedRun.next_update``);
    the step ``theta - update`` is taken in float64 with noise of level ``s`` in ``(0, 1]`` on
    the hidden-bias updates (one draw from ``seed``).  Returns the bound
    ``sum_j V(h_j) / (2 s |Delta_j|)`` over the hidden neurons with ``Delta_j != 0`` (total
    variation of their pre-activations after the step on the sorted ``grid``, shape ``(m, 1)``,
    which can only underestimate it), the exact number of breakpoints of the stepped network
    on [0, 1], ``N'`` and the number of neurons with ``Delta_j = 0`` whose pre-activation
    changes sign on the grid (outside the proposition's hypothesis).  Guards: ``s`` a real in
    ``(0, 1]`` (no bools), ``seed`` a seed (:func:`lib.exact.check_seed`).
    """
    linear_relu_layers(net, scalar_io=True)
    s = check_real(s, "s (noise level)", gt=0, le=1)
    if not isinstance(grid, torch.Tensor) or grid.ndim != 2 or grid.shape[1] != 1:
        raise ValueError("grid must be a tensor of shape (m, 1)")
    if grid.shape[0] < 2 or not bool(torch.isfinite(grid).all()):
        raise ValueError(f"grid must hold at least 2 finite points, got shape {tuple(grid.shape)}")
    stepped = _perturbed_step(net, update, s, torch.Generator().manual_seed(check_seed(seed)))
    params = [p.detach().unsqueeze(0) for p in stepped.parameters()]
    with torch.no_grad():
        pre = torch.cat(_stacked_forward(params, grid.to(torch.float64))[:-1], dim=2)[0]
    delta = torch.cat([u.to(torch.float64).reshape(-1) for u in update[1:-2:2]])
    moving = delta != 0
    variation = pre.diff(dim=0).abs().sum(dim=0)
    return {"bound": float((variation[moving] / (2 * s * delta[moving].abs())).sum()),
            "breakpoints": pieces.count_pieces(stepped) - 1, "N'": int(moving.sum()),
            "outside hypothesis": int((~moving & (pre > 0).any(dim=0) & (pre < 0).any(dim=0)).sum())}


def noise_scale_counts(net: nn.Sequential, update: Sequence[torch.Tensor], levels: Sequence[float],
                       draws: int, seed: int = 0) -> tuple[np.ndarray, int]:
    """Exact breakpoint counts on [0, 1] of ``net`` after one perturbed step ``theta - update``
    (float64; hidden-bias updates times ``1 + delta``, ``delta ~ U[-s, s]``) for each noise
    level ``s`` of ``levels`` and ``draws`` draws each (from ``seed``): shape
    ``(len(levels), draws)``; and the count after the unperturbed step (``s = 0``).
    Guards: ``levels`` reals in ``[0, 1]``, ``draws <= 10,000``, ``seed`` a seed."""
    levels = _check_levels(levels, "levels")
    if any(s > 1 for s in levels):
        raise ValueError(f"levels must lie in [0, 1], got {levels!r}")
    draws = check_count(draws, "draws", maximum=10_000)
    linear_relu_layers(net, scalar_io=True)
    gen = torch.Generator().manual_seed(check_seed(seed))
    counts = np.array([[pieces.count_pieces(_perturbed_step(net, update, s, gen)) - 1
                        for _ in range(draws)] for s in levels])
    return counts, pieces.count_pieces(_perturbed_step(net, update, 0.0, None)) - 1


def is_dead(net: nn.Sequential, n_pieces: int | None = None) -> bool:
    """Whether ``net`` is constant on [0, 1] (one exact piece and equal values at 0 and 1): a
    *dead* network, reported as such (not an error).  ``n_pieces``: its exact count, if known."""
    linear_relu_layers(net, scalar_io=True)
    n = pieces.count_pieces(net) if n_pieces is None else check_count(n_pieces, "n_pieces")
    if n != 1:
        return False
    with torch.no_grad():
        ends = fp.to_format(net, torch.float64)(torch.tensor([[0.0], [1.0]], dtype=torch.float64))
    return bool(ends[0, 0] == ends[1, 0])


def init_bias_updates(depth: int, width: int, seeds: int, x: torch.Tensor,
                      y: torch.Tensor) -> np.ndarray:
    """The hidden-bias updates ``Delta`` of the first GD step (``eta = 1/lambda_max``, float64,
    mean squared error at ``x``, ``y``) of He networks (:func:`lib.nets.random_relu_net`,
    ``init="he"``) with ``depth`` hidden layers of ``width`` neurons, seeds ``0 .. seeds - 1``:
    shape ``(seeds, depth, width)``, float64, with exact zeros for dead neurons.
    Guard: ``seeds <= 10,000`` (and :func:`lib.nets.mlp`'s on the size of a network)."""
    depth, width = check_count(depth, "depth"), check_count(width, "width")
    seeds = check_count(seeds, "seeds", maximum=10_000)
    nets_list = [nets.random_relu_net([width] * depth, init="he", seed=s) for s in range(seeds)]
    lam = torch.tensor(stacked_lambda_max(nets_list, x, y))
    params = _stack(nets_list, torch.float64)
    loss = _stacked_loss(params, x.to(torch.float64), y.to(torch.float64)).sum()
    grads = torch.autograd.grad(loss, params[1:-2:2])
    return (torch.stack(grads, dim=1) / lam.reshape(-1, 1, 1)).detach().numpy()


def he_precision_grid(depths: Sequence[int], widths: Sequence[int], seeds: int, x: torch.Tensor,
                      y: torch.Tensor, dtypes: Sequence[Any], *, steps: int, record_every: int,
                      grid: torch.Tensor) -> tuple[list[dict[str, Any]], dict[tuple, StackedRun]]:
    """Karner et al.'s study at small scale: He networks (``depth`` hidden layers of ``width``
    neurons, seeds ``0 .. seeds - 1``) trained by :func:`gd_stacked` in each format of
    ``dtypes`` from the same start with the same step ``2^floor(log2(1/lambda_max))``
    (float64 ``lambda_max`` at initialisation), on the data ``x``, ``y`` (shape ``(n, 1)``).

    One row per network and format: exact pieces at initialisation and after training, whether
    the network is dead (constant on [0, 1], :func:`is_dead`) then, the losses, the mean
    reciprocal hidden-bias update of the first and of the next (unapplied) step, and
    :func:`step_bound` for that next step at ``s = u`` of the format on ``grid``.  A network
    whose parameters are no longer finite is marked ``diverged`` (pieces and breakpoints
    ``-1``, bound NaN), not an error.  Also returns the runs, keyed ``(depth, width, format name)``.
    Two sweeps through :func:`lib.sweep.run`: the starts per ``(depth, width)``, then the training
    and counts per ``(depth, width, format)``.
    Guards, before any work: ``seeds <= 10,000``, ``steps <=`` :data:`MAX_STEPS`.
    """
    depths = [check_count(L, f"depths[{i}]") for i, L in enumerate(depths)]
    widths = [check_count(N, f"widths[{i}]") for i, N in enumerate(widths)]
    seeds = check_count(seeds, "seeds", maximum=10_000)
    dtypes = [check_dtype(d, f"dtypes[{i}]") for i, d in enumerate(dtypes)]
    steps = check_count(steps, "steps", maximum=MAX_STEPS)   # before any work
    shapes = [(L, N) for L in depths for N in widths]
    starts = sweep.run(partial(_he_start, seeds=seeds, x=x, y=y), shapes, desc="He starts")
    cells = [(L, N, dtype, start) for (L, N), start in zip(shapes, starts) for dtype in dtypes]
    done = sweep.run(partial(_he_cell, x=x, y=y, steps=steps, record_every=record_every, grid=grid),
                     cells, desc="He precision grid")
    rows = [row for cell_rows, _ in done for row in cell_rows]
    runs = {(L, N, fp.format_name(dtype)): run for (L, N, dtype, _), (_, run) in zip(cells, done)}
    return rows, runs


def _he_start(shape: tuple[int, int], seeds: int, x: torch.Tensor,
              y: torch.Tensor) -> tuple[list[nn.Sequential], np.ndarray, list[int], list[bool]]:
    """The He networks of one ``(depth, width)`` of :func:`he_precision_grid` (seeds ``0 ..
    seeds - 1``): the networks, their float64 ``lambda_max``, pieces and deadness at init."""
    L, N = shape
    start = [nets.random_relu_net([N] * L, init="he", seed=s) for s in range(seeds)]
    at_init = [pieces.count_pieces(net) for net in start]
    return (start, stacked_lambda_max(start, x, y), at_init,
            [is_dead(net, c) for net, c in zip(start, at_init)])


def _he_cell(cell: tuple[int, int, torch.dtype, tuple], x: torch.Tensor, y: torch.Tensor, steps: int,
             record_every: int, grid: torch.Tensor) -> tuple[list[dict[str, Any]], StackedRun]:
    """One ``(depth, width, format, start)`` of :func:`he_precision_grid` (``start``: what
    :func:`_he_start` returned for that depth and width): its rows and its run."""
    L, N, dtype, (start, lam, at_init, dead_init) = cell
    lrs = [representable_step(v) for v in lam]
    name = fp.format_name(dtype)
    run = gd_stacked(start, x, y, lrs, steps=steps, dtype=dtype, record_every=record_every)
    rows = []
    for i, net in enumerate(run.nets):
        diverged = not all(bool(torch.isfinite(p).all()) for p in net.parameters())
        count = -1 if diverged else pieces.count_pieces(net)
        bound = ({"bound": math.nan, "breakpoints": -1, "N'": 0, "outside hypothesis": 0}
                 if diverged else
                 step_bound(net, run.next_update[i], fp.unit_roundoff(dtype), grid, seed=i))
        rows.append({"depth": L, "width": N, "seed": i, "format": name, "diverged": diverged,
                     "neurons": L * N, "lambda_max": float(lam[i]), "lr": lrs[i],
                     "pieces at init": at_init[i], "dead at init": dead_init[i],
                     "pieces": count, "dead": not diverged and is_dead(net, count),
                     "loss at init": float(run.loss[i, 0]), "loss": float(run.loss[i, -1]),
                     "recip first": float(run.recip[i, 0]), "recip next": float(run.recip[i, -1]),
                     "moving first": int(run.moving[i, 0]), "moving next": int(run.moving[i, -1]),
                     **{f"step {k}": v for k, v in bound.items()}})
    return rows, run
