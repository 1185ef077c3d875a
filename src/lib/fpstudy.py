"""Experiments of the floating-point chapter that train or sweep (dynamics floor).

Gradient descent near the constructions in each float format, perturbation sweeps and the
counts taken along them: the machinery behind ``book/floating-point.md``, kept here so the
chapter shows the idea in short cells.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from lib import fp, nets, pieces, train
from lib import sawtooth as st
from lib.exact import check_count, check_dtype

__all__ = ["half_crossings", "perturbation_sweep", "perturbed_mse", "absorption", "bias_updates",
           "one_step_bound",
           "perturbed_start", "gd_near", "run_summary", "stall_summary"]


def _check_levels(levels: Any, name: str) -> list[float]:
    values = [float(v) for v in np.atleast_1d(np.asarray(levels, dtype=float))]
    if not values or not all(math.isfinite(v) and v >= 0 for v in values):
        raise ValueError(f"{name} must be a non-empty sequence of finite numbers >= 0, got {levels!r}")
    return values


def _check_eps(eps: Any) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not (math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    return float(eps)


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
    over the seeds of all pieces, of the pieces wider than ``2^-L / 8`` and of the crossings of
    the level 1/2 (:func:`half_crossings`), each divided by ``2^L``.
    """
    depths = [check_count(L, f"depths[{i}]") for i, L in enumerate(depths)]
    levels = _check_levels(levels, "levels")
    seeds = check_count(seeds, "seeds")
    sweep: dict[tuple[int, float], dict[str, float]] = {}
    for L in depths:
        net = st.sawtooth_net(L)
        for level in levels:
            exact_counts, visible, crossings = [], [], []
            for seed in range(seeds):
                perturbed = nets.perturbed_net(net, float(level), seed=seed)
                analysis = pieces.piece_analysis(perturbed)
                w = analysis.widths()
                exact_counts.append(w.size)
                visible.append(int((w > 2.0**-L / 8).sum()))
                crossings.append(half_crossings(perturbed, analysis))
            sweep[(L, float(level))] = {"exact": np.mean(exact_counts) / 2**L,
                                        "visible": np.mean(visible) / 2**L,
                                        "crossings of 1/2": np.mean(crossings) / 2**L}
    return sweep


def perturbed_mse(net: nn.Sequential, x: torch.Tensor, y: torch.Tensor, levels: Sequence[float],
                  seeds: int) -> np.ndarray:
    """Mean squared error of ``net`` perturbed by each relative ``level`` against ``y`` at the
    inputs ``x`` (shape ``(n, 1)``), averaged over the seeds ``0 .. seeds - 1``: one value per level."""
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError("x and y must be torch tensors")
    levels = _check_levels(levels, "levels")
    seeds = check_count(seeds, "seeds")
    with torch.no_grad():
        return np.array([
            np.mean([float(((nets.perturbed_net(net, e, seed=s)(x) - y) ** 2).mean())
                     for s in range(seeds)])
            for e in levels])


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
    squared error of ``net`` at ``x`` against ``y``, flattened layer by layer (noise-free)."""
    if not isinstance(net, nn.Sequential):
        raise TypeError(f"net must be an nn.Sequential, got {type(net).__name__}")
    if not (isinstance(lam, (int, float)) and math.isfinite(lam) and lam > 0):
        raise ValueError(f"lam must be a finite number > 0, got {lam!r}")
    hidden = [m for m in net if isinstance(m, nn.Linear)][:-1]
    if not hidden:
        raise ValueError("net must have at least one hidden layer")
    grads = torch.autograd.grad(nets.mse(net(x), y), [m.bias for m in hidden])
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
    dtype = check_dtype(dtype)
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
    if not (isinstance(lam, (int, float)) and math.isfinite(lam) and lam > 0):
        raise ValueError(f"lam must be a finite number > 0, got {lam!r}")
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
