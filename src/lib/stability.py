"""Experiments of the edge-of-stability chapter (dynamics floor).

Sharpness runs at several step sizes, last-bit families, the reduced model of Sun et al.
and the summaries the chapter reads from them: the machinery behind
``book/edge-of-stability.md``, kept here so the chapter shows the idea in short cells.

Guards: models are trained on copies (:func:`lib.train.gd`) and evaluated in eval mode
(:func:`lib.hessian.evaluation_mode`), so a model passed in is never changed; empty or
non-finite data raise ``ValueError`` naming ``inputs``/``targets``; step sizes and other
reals accept Python, NumPy and 0-d torch scalars and refuse bools and strings; step counts
are integers up to :data:`lib.train.MAX_STEPS` (a size guard, checked before any work);
tables with NaN entries are refused rather than summarised as numbers.

Sweeps go through :func:`lib.sweep.run` (serial under ``quick``, one process per core under
``paper``, identical results): the step sizes of :func:`sharpness_runs` and
:func:`restrained_runs`, the seeds x step sizes of :func:`lastbit_accuracy`, the seeds x
perturbations of :func:`lastbit_accuracy_avg`, the records of :func:`flow_departure` and the
step sizes of :func:`sun_toy_fft_check`.  Each task owns its state (its GD copy, its Lanczos
warm start, its hooks); networks are built by ``make_net`` in the caller, in seed order.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.signal import fftconvolve
from scipy.special import expit
from torch import nn

from lib import flows, hessian, nets, sweep, train
from lib.exact import (check_count, check_dtype, check_positive, check_probability, check_real,
                       check_seed)

__all__ = [
    "quadratic_mode_runs", "sharpness_runs", "lastbit_accuracy", "lastbit_statistics",
    "checkerboard", "weight_decay_runs", "restrained_runs", "sun_pi", "sun_phi_1", "sun_phi_2",
    "sun_map", "sun_curvature", "sun_full_loss_grad", "summed_top_eigenvalue",
    "sun_toy_runs", "sun_toy_conv_check", "lastbit_accuracy_avg", "spread_ratio",
    "spread_by_window", "count_swaps", "top2_along", "sun_full_loss_grad_fft",
    "sun_toy_fft_check",
    "flow_departure",
]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _check_etas(etas: Any, name: str = "etas") -> tuple[float, ...]:
    """A non-empty sequence of positive finite step sizes as floats (each a Python, NumPy
    or 0-d torch real; bools and strings refused, naming ``name[i]``)."""
    if isinstance(etas, (str, bytes)) or not hasattr(etas, "__iter__"):
        raise TypeError(f"{name} must be a sequence of step sizes, got {etas!r}")
    values = tuple(check_positive(e, f"{name}[{i}]") for i, e in enumerate(etas))
    if not values:
        raise ValueError(f"{name} must be a non-empty sequence of positive step sizes, "
                         f"got {etas!r}")
    return values


def _steps(steps: Any, name: str = "steps") -> int:
    """A step count ``>= 1`` within the size guard :data:`lib.train.MAX_STEPS`."""
    return check_count(steps, name, maximum=train.MAX_STEPS)


# --------------------------------------------------------------------------- quadratic
def quadratic_mode_runs(model: nn.Linear, loss_fn: LossFn, inputs: torch.Tensor,
                        targets: torch.Tensor, theta_star: np.ndarray, u1: np.ndarray,
                        lam1: float, cs: Sequence[float], steps: int,
                        floor: float = 1e-6) -> dict[float, dict[str, Any]]:
    """GD on a linear model (a quadratic loss) at ``eta = c * 2 / lam1`` for each ``c`` in
    ``cs``, each run from ``model``'s parameters (not modified), and the error along the top
    eigenvector ``u1`` of the input second moment against ``|1 - 2c|^k``.

    ``theta_star``: the minimiser as ``(n_out, n_in + 1)`` rows ``[W, b]``.  Per ``c``:
    ``top`` (``||E_k u_1||``), ``predicted``, ``valid`` (where the prediction is above
    ``floor`` times the whole initial error) and ``rel_err`` (max relative error there).
    """
    if not isinstance(model, nn.Linear):
        raise TypeError(f"model must be an nn.Linear, got {type(model).__name__}")
    steps = _steps(steps)
    lam1 = check_positive(lam1, "lam1")
    cs = _check_etas(cs, "cs")
    n_out, n_in = model.out_features, model.in_features
    theta_star = np.asarray(theta_star)
    if theta_star.shape != (n_out, n_in + 1):
        raise ValueError(f"theta_star must have shape {(n_out, n_in + 1)}, got {theta_star.shape}")
    runs = {}
    for c in cs:
        keep = train.parameter_hook()
        train.gd(model, loss_fn, inputs, targets, lr=c * 2 / lam1, steps=steps,
                 hooks={"theta": keep})
        theta = keep.array()                      # rows: [W (n_out x n_in) row-major, b]
        E = np.concatenate([theta[:, :n_out * n_in].reshape(-1, n_out, n_in),
                            theta[:, n_out * n_in:, None]], 2)
        top = np.linalg.norm((E - theta_star) @ u1, axis=1)    # ||E_k u_1||
        predicted = np.abs(1 - c * 2) ** np.arange(steps + 1) * top[0]
        valid = predicted > floor * np.linalg.norm(E[0] - theta_star)
        runs[c] = {"top": top, "predicted": predicted, "valid": valid,
                   "rel_err": np.max(np.abs(top[valid] / predicted[valid] - 1))}
    return runs


# --------------------------------------------------------------------------- sharpness runs
def sharpness_runs(model: nn.Module, loss_fn: LossFn, inputs: torch.Tensor,
                   targets: torch.Tensor, etas: Sequence[float], *, steps: int, every: int,
                   tol: float, test_inputs: torch.Tensor, test_labels: torch.Tensor,
                   check_eta: float | None = None, check_steps: int = 0,
                   theta_every: int = 20) -> tuple[dict[float, dict[str, Any]], dict[str, Any]]:
    """GD from ``model`` (not modified) at each step size, its sharpness every ``every`` steps
    (warm-started Lanczos at ``tol``), and the summaries the edge of stability is read from.

    Per ``eta``: ``run`` (the :class:`train.GDRun`), ``sharp`` (the hook's result),
    ``stats`` (:func:`train.edge_statistics`), ``loss``, ``up_before``/``up_after`` (fraction
    of steps where the loss went up, before/after the crossing of ``2/eta``), ``test_acc``
    and ``seconds`` (the run's wall time, hooks included; the runs may run in parallel).  At
    ``check_eta`` the run also keeps its parameters every ``theta_every`` steps up to
    ``check_steps`` and runs two cold-started cross-checks of the sharpness (the same
    tolerance; three eigenvalues at 1e-6).  The second value holds ``theta_hook``,
    ``cold``, ``check`` (hook results; ``None`` without ``check_eta``) and ``check_seconds``.
    One :func:`lib.sweep.run` task per step size, with its own hooks (warm starts).
    """
    etas = _check_etas(etas)
    steps, every = _steps(steps), check_count(every, "every")
    tol = check_positive(tol, "tol")
    theta_every = check_count(theta_every, "theta_every")
    if check_eta is not None and check_eta not in etas:
        raise ValueError(f"check_eta must be one of etas {etas}, got {check_eta!r}")
    eos: dict[float, dict[str, Any]] = {}
    extra: dict[str, Any] = {"theta_hook": None, "cold": None, "check": None, "check_seconds": 0.0}
    task = functools.partial(_sharpness_run, model=model, loss_fn=loss_fn, inputs=inputs,
                             targets=targets, steps=steps, every=every, tol=tol,
                             test_inputs=test_inputs, test_labels=test_labels,
                             check_eta=check_eta, check_steps=check_steps, theta_every=theta_every)
    for eta, (entry, checks) in zip(etas, sweep.run(task, etas, desc="sharpness runs")):
        eos[eta] = entry
        if checks is not None:
            extra.update(checks)
    return eos, extra


def _sharpness_run(eta: float, *, model: nn.Module, loss_fn: LossFn, inputs: torch.Tensor,
                   targets: torch.Tensor, steps: int, every: int, tol: float,
                   test_inputs: torch.Tensor, test_labels: torch.Tensor,
                   check_eta: float | None, check_steps: int, theta_every: int
                   ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """One step size of :func:`sharpness_runs`: its entry, and its checks at ``check_eta``
    (else ``None``); the hooks (and the Lanczos warm start) are this run's own."""
    t0 = time.perf_counter()
    sharp = train.sharpness_hook(loss_fn, inputs, targets, every=every, tol=tol)
    hooks: dict[str, Any] = {"sharpness": sharp}
    if eta == check_eta:                      # parameters for the flow comparison
        theta_hook = train.parameter_hook(theta_every)
        hooks["theta"] = lambda m, k: theta_hook(m, k) if k <= check_steps else 0.0
        cold_hook = train.sharpness_hook(loss_fn, inputs, targets, every=every, tol=tol,
                                         warm_start=False)
        check_hook = train.sharpness_hook(loss_fn, inputs, targets, every=every, k=3,
                                          tol=1e-6, warm_start=False)
        hooks.update({"cold": cold_hook, "check": check_hook})
    run = train.gd(model, loss_fn, inputs, targets, lr=eta, steps=steps, hooks=hooks,
                   desc=f"GD eta={eta}")
    res = sharp.result()
    stats = train.edge_statistics(res["step"], res["sharpness"], eta)
    loss = run.history["loss"]
    cross = stats["crossing"]
    up = np.diff(loss) > 0                    # the loss went up from step k to k+1
    entry = {"run": run, "sharp": res, "stats": stats, "loss": loss,
             "up_before": up[:cross].mean() if cross else up.mean(),
             "up_after": up[cross:].mean() if cross else np.nan,
             "test_acc": train.accuracy(run.model, test_inputs, test_labels),
             "seconds": time.perf_counter() - t0}
    if eta != check_eta:
        return entry, None
    cold, check = cold_hook.result(), check_hook.result()
    return entry, {"theta_hook": theta_hook, "cold": cold, "check": check,
                   "check_seconds": cold["seconds"].sum() + check["seconds"].sum()}


# --------------------------------------------------------------------------- last bits
def lastbit_accuracy(make_net: Callable[[int], nn.Module], loss_fn: LossFn,
                     inputs: torch.Tensor, targets: torch.Tensor, *, eta_edge: float,
                     eta_below: float, ks: Sequence[int], n_seeds: int, steps: int,
                     test_inputs: torch.Tensor, test_labels: torch.Tensor
                     ) -> dict[float, np.ndarray]:
    """Final test accuracy of last-bit families (:func:`train.lastbit_family`), seeds
    ``0 .. n_seeds - 1`` (``make_net(seed)``) by perturbations ``ks``: all of ``ks`` at
    ``eta_edge``; at ``eta_below`` all of them for seed 0 and ``k = ks[0]`` for the others (the
    rest of the row stays 0).  ``{eta: (n_seeds, len(ks)) array}``.  The networks are built
    here, in seed order; each (seed, step size) family is a :func:`lib.sweep.run` task."""
    if not callable(make_net):
        raise TypeError("make_net must be callable: seed -> network")
    n_seeds, steps = check_count(n_seeds, "n_seeds"), _steps(steps)
    ks = tuple(check_count(k, "ks[i]") for k in ks)
    if not ks:
        raise ValueError("ks must not be empty")
    _check_etas((eta_edge, eta_below), "(eta_edge, eta_below)")
    acc = {eta_edge: np.zeros((n_seeds, len(ks))), eta_below: np.zeros((n_seeds, len(ks)))}
    tasks = []
    for seed in range(n_seeds):
        net_s = make_net(seed)
        for eta in (eta_edge, eta_below):
            tasks.append((seed, eta, net_s, ks if (eta == eta_edge or seed == 0) else ks[:1]))

    def family(task: tuple[int, float, nn.Module, tuple[int, ...]]) -> np.ndarray:
        _, eta, net_s, ks_here = task                # below the edge: k = 1 only
        return train.lastbit_family(net_s, loss_fn, inputs, targets, lr=eta, steps=steps,
                                    ks=ks_here, record_every=steps, test_inputs=test_inputs,
                                    test_labels=test_labels).test_accuracy

    for (seed, eta, _, ks_here), fam_acc in zip(tasks, sweep.run(family, tasks, desc="last bits")):
        acc[eta][seed, : len(ks_here)] = fam_acc
    return acc


def lastbit_statistics(edge: Any, below: Any, crossing: int, steps: int) -> dict[str, Any]:
    """Divergence statistics of two last-bit families (``edge`` at the edge, ``below`` below
    it; rows of ``divergence`` after the first are the perturbed members) over ``steps``
    steps, the edge run crossing ``2/eta`` at step ``crossing``: ``div_pre`` (max before the
    crossing), ``div_below``, ``div_end`` (per member, at the end), ``grow_at`` (first record
    where a member passes 100 ``div_pre``), ``late_growth`` (max over the second half / max at
    its start); the dip after the jump, on the largest member's divergence per record:
    ``peak`` at ``peak_at`` (max within 100 steps of ``grow_at``), ``trough`` at ``trough_at``
    (min after the peak), ``plateau`` (median over the last quarter of the run) and
    ``back_at`` (first record after the trough at or above half the plateau)."""
    crossing, steps = check_count(crossing, "crossing"), check_count(steps, "steps")
    for name, fam in (("edge", edge), ("below", below)):
        if not (hasattr(fam, "steps") and hasattr(fam, "divergence")):
            raise TypeError(f"{name} must be a last-bit family (steps, divergence)")
    pre = edge.steps <= crossing
    late = edge.steps >= steps // 2
    div_pre = edge.divergence[1:, pre].max()
    top = edge.divergence[1:].max(axis=0)
    grow_at = edge.steps[np.argmax((edge.divergence[1:] > 100 * div_pre).any(axis=0))]
    near = (edge.steps >= grow_at) & (edge.steps <= grow_at + 100)
    i_peak = int(np.flatnonzero(near)[np.argmax(top[near])])
    i_trough = i_peak + int(np.argmin(top[i_peak:]))
    plateau = float(np.median(top[edge.steps >= steps - steps // 4]))
    back = np.flatnonzero(top[i_trough:] >= plateau / 2)
    dip = {"peak": top[i_peak], "peak_at": int(edge.steps[i_peak]), "trough": top[i_trough],
           "trough_at": int(edge.steps[i_trough]), "plateau": plateau,
           "back_at": int(edge.steps[i_trough + back[0]]) if len(back) else None}
    return {**dip,
        "div_pre": div_pre, "div_below": below.divergence[1:].max(),
        "div_end": edge.divergence[1:, -1],
        "grow_at": grow_at,
        # "restrained": over the second half of the run the divergence does not keep growing
        "late_growth": edge.divergence[1:, late].max()
        / edge.divergence[1:, edge.steps == (steps // 2)].max(),
    }


# --------------------------------------------------------------------------- Sun's model
def checkerboard(size: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A ``(1, 1, size, size)`` checkerboard of +-1, -1 at ``(0, 0)`` (as Sun et al.'s), in a
    floating ``dtype`` (:func:`lib.exact.check_dtype`); guard ``size <= 4096``."""
    size = check_count(size, "size", maximum=4096)
    dtype = check_dtype(dtype, names=False)
    ij = torch.arange(size)
    img = torch.where((ij[:, None] + ij[None, :]) % 2 == 0, -1.0, 1.0).to(dtype)
    return img.reshape(1, 1, size, size)


def _check_kernel_start(w0: Any, kernel: int, name: str = "w0") -> np.ndarray:
    w0 = np.asarray(w0, dtype=np.float64)
    if w0.shape != (kernel * kernel,):
        raise ValueError(f"{name} must hold kernel**2 = {kernel * kernel} entries, got shape "
                         f"{w0.shape}")
    return w0


def weight_decay_runs(w0: Any, alpha: float, eta: float, steps: int, image: torch.Tensor,
                      label: torch.Tensor, c_hat: np.ndarray, kernel: int = 4
                      ) -> dict[str, Any]:
    """GD with weight decay ``alpha`` from the kernel ``w0`` on :class:`nets.SunCNN` and on its
    quadratic model at ``w = 0`` (from :mod:`lib.hessian`), parameters at every step.

    ``{"linear": ..., "cnn": ...}`` each with ``W`` (the kernels), ``unseen`` (``||P w_k||``,
    ``P`` the projection off ``c_hat``) and ``seen`` (``<w_k, c_hat>``); ``"closed"``: the
    linear model's closed form ``w* + R^k (w_0 - w*)``.
    """
    kernel = check_count(kernel, "kernel")
    w0 = _check_kernel_start(w0, kernel)
    alpha, eta = check_positive(alpha, "alpha"), check_positive(eta, "eta")
    steps = _steps(steps)
    c_hat = np.asarray(c_hat, dtype=np.float64)
    if c_hat.shape != w0.shape:
        raise ValueError(f"c_hat must have the shape of w0 {w0.shape}, got {c_hat.shape}")
    zero = nets.SunCNN(torch.zeros(kernel * kernel), kernel)
    loss0, g0 = hessian.FlatLoss(zero, nets.logistic, image, label).loss_and_grad()
    H0 = hessian.dense_hessian(zero, nets.logistic, image, label)
    P_inv = np.eye(kernel**2) - np.outer(c_hat, c_hat)     # onto the unseen directions
    linear = flows.as_problem(lambda th: loss0 + g0 @ th + 0.5 * th @ (H0 @ th), w0)
    out: dict[str, Any] = {}
    for name, (model, loss_fn, inp, tgt) in (
            ("linear", linear), ("cnn", (nets.SunCNN(w0, kernel), nets.logistic, image, label))):
        keep = train.parameter_hook()
        train.gd(model, loss_fn, inp, tgt, lr=eta, steps=steps, weight_decay=alpha,
                 hooks={"w": keep})
        W = keep.array()
        out[name] = {"W": W, "unseen": np.linalg.norm(W @ P_inv, axis=1), "seen": W @ c_hat}
    A = H0.numpy() + alpha * np.eye(kernel**2)
    w_star = -np.linalg.solve(A, g0.numpy())
    lam_a, V = np.linalg.eigh(A)
    coef = V.T @ (w0 - w_star)
    R = (1 - eta * lam_a)[None, :] ** np.arange(steps + 1)[:, None]
    out["closed"] = w_star + (R * coef) @ V.T
    return out


def restrained_runs(w0: Any, etas: Sequence[float], alpha: float, steps: int, late: int,
                    image: torch.Tensor, label: torch.Tensor, c_hat: np.ndarray,
                    kernel: int = 4) -> dict[float, dict[str, Any]]:
    """GD with weight decay on :class:`nets.SunCNN` from ``w0`` at each step size, and what its
    last ``late`` steps show along ``c_hat``: ``seen``, ``unseen`` (as in
    :func:`weight_decay_runs`), ``amp`` (late span, 0 if converged), ``period2`` (late
    ``max |u_k - u_{k-2}|``, 0 on a 2-cycle), ``lo``/``hi`` (late range).  One
    :func:`lib.sweep.run` task per step size."""
    kernel = check_count(kernel, "kernel")
    w0 = _check_kernel_start(w0, kernel)
    etas = _check_etas(etas)
    alpha = check_positive(alpha, "alpha")
    steps, late = _steps(steps), check_count(late, "late", 3)
    if late > steps + 1:
        raise ValueError(f"late must be at most steps + 1 = {steps + 1}, got {late}")
    c_hat = np.asarray(c_hat, dtype=np.float64)
    P_inv = np.eye(kernel**2) - np.outer(c_hat, c_hat)

    def one(eta: float) -> dict[str, Any]:
        keep = train.parameter_hook()
        train.gd(nets.SunCNN(w0, kernel), nets.logistic, image, label, lr=eta, steps=steps,
                 weight_decay=alpha, hooks={"w": keep})
        W = keep.array()
        tail = (W @ c_hat)[-late:]
        return {"seen": W @ c_hat, "unseen": np.linalg.norm(W @ P_inv, axis=1),
                "amp": tail.max() - tail.min(), "period2": np.abs(tail[2:] - tail[:-2]).max(),
                "lo": tail.min(), "hi": tail.max()}

    return dict(zip(etas, sweep.run(one, etas, desc="restrained runs")))


# --------------------------------------------------------------------------- 1-D reduction
def _check_n(n: Any) -> float:
    """``n`` (the number of patches) as a positive float (NumPy, 0-d torch, Fraction too)."""
    return check_positive(n, "n (the number of patches)")


def sun_pi(a: Any, n: Any) -> Any:
    """The logit ``p`` as a function of ``a = ||c|| u`` (lem-sun-1d), ``n`` patches."""
    n = _check_n(n)
    return 0.5 * a * np.tanh(a / 2) + a / (2 * n)


def _dpi(a: Any, n: Any) -> Any:
    t = np.tanh(a / 2)
    return 0.5 * t + 0.25 * a * (1 - t * t) + 1 / (2 * n)


def _d2pi(a: Any) -> Any:
    t = np.tanh(a / 2)
    return (0.5 - 0.25 * a * t) * (1 - t * t)


def sun_phi_1(a: Any, n: Any) -> Any:
    """``phi'(a)`` for ``phi = -log sigmoid(pi(a))``."""
    return -expit(-sun_pi(a, n)) * _dpi(a, n)


def sun_phi_2(a: Any, n: Any) -> Any:
    """``phi''(a)`` for ``phi = -log sigmoid(pi(a))``."""
    P = sun_pi(a, n)
    return expit(P) * expit(-P) * _dpi(a, n) ** 2 - expit(-P) * _d2pi(a)


def sun_map(u0: Any, etas: Sequence[float], alpha: float, n: Any, c_norm: float,
            steps: int) -> np.ndarray:
    """The one-dimensional GD map of lem-sun-1d for several step sizes at once:
    ``(steps + 1, len(etas))`` iterates ``u_k`` (overflow gives inf/nan silently); the weight
    decay ``alpha`` must be positive and finite."""
    etas = np.asarray(_check_etas(etas), dtype=float)
    steps = _steps(steps)
    c_norm = check_positive(c_norm, "c_norm")
    alpha = check_positive(alpha, "alpha")
    n = _check_n(n)
    u = np.empty((steps + 1, len(etas)))
    u[0] = u0
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(steps):
            u[k + 1] = u[k] - etas * (c_norm * sun_phi_1(c_norm * u[k], n) + alpha * u[k])
    return u


def sun_curvature(u: Any, alpha: float, n: Any, c_norm: float) -> Any:
    """The curvature of the 1-D objective along ``c_hat`` at ``u``: ``||c||^2 phi''(||c|| u) +
    alpha`` (``alpha``: a positive finite real)."""
    c_norm = check_positive(c_norm, "c_norm")
    alpha, n = check_positive(alpha, "alpha"), _check_n(n)
    return c_norm**2 * sun_phi_2(c_norm * u, n) + alpha


def sun_loss(w: torch.Tensor, image: torch.Tensor, label: torch.Tensor, alpha: float,
             beta: float = 1.0) -> torch.Tensor:
    """The loss (eq-sun-model) of Sun et al.'s one-layer model with weight decay ``alpha``,
    ``logistic(mean(swish_beta(w * image)), label) + alpha/2 |w|^2``, as a differentiable
    0-d tensor of the flat square kernel ``w`` (the objective of its gradient flow)."""
    if not isinstance(w, torch.Tensor) or w.ndim != 1:
        raise TypeError(f"w must be a flat tensor, got {type(w).__name__}")
    alpha, beta = check_real(alpha, "alpha", ge=0), check_real(beta, "beta")
    kernel = int(round(math.sqrt(w.numel())))
    if kernel * kernel != w.numel():
        raise ValueError(f"w must hold a square kernel, got {w.numel()} entries")
    z = F.conv2d(image, w.reshape(1, 1, kernel, kernel))
    p = (z * torch.sigmoid(beta * z)).mean(dim=(1, 2, 3))
    return nets.logistic(p, label) + 0.5 * alpha * (w @ w)


def sun_full_loss_grad(w: np.ndarray, image: torch.Tensor, label: torch.Tensor, alpha: float,
                       beta: float = 1.0) -> tuple[float, np.ndarray]:
    """:func:`sun_loss` and its gradient for the flat kernel ``w`` (a float64 array)."""
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 1:
        raise ValueError(f"w must be a flat square kernel, got shape {w.shape}")
    wt = torch.tensor(w, requires_grad=True)
    loss = sun_loss(wt, image, label, alpha, beta)
    (g,) = torch.autograd.grad(loss, wt)
    return float(loss.detach()), g.numpy()


def sun_full_loss_grad_fft(w: np.ndarray, image: np.ndarray, alpha: float,
                           beta: float = 1.0) -> tuple[float, np.ndarray]:
    """:func:`sun_loss` (label 1) and its gradient through FFT convolutions (scipy
    ``fftconvolve``, float64): ``image`` a 2-D array, ``w`` the flat square kernel.  The same
    cross-correlation as ``F.conv2d`` up to FFT rounding; milliseconds instead of a second."""
    w, image = np.asarray(w, dtype=np.float64), np.asarray(image, dtype=np.float64)
    if w.ndim != 1 or image.ndim != 2:
        raise ValueError(f"w must be flat and image 2-D, got shapes {w.shape}, {image.shape}")
    kernel = int(round(math.sqrt(w.size)))
    if kernel * kernel != w.size or kernel > min(image.shape):
        raise ValueError(f"w must hold a square kernel no larger than image, got {w.size}")
    wk = w.reshape(kernel, kernel)
    z = fftconvolve(image, wk[::-1, ::-1], mode="valid")         # cross-correlation
    p = float(_swish(z, beta).mean())
    loss = float(np.logaddexp(0.0, -p)) + 0.5 * alpha * float(w @ w)
    dz = -expit(-p) * _swish_1(z, beta) / z.size
    g = fftconvolve(image[::-1, ::-1], dz, mode="valid")[::-1, ::-1]
    return loss, g.reshape(-1) + alpha * w


def summed_top_eigenvalue(image: torch.Tensor, kernel: int, v0: np.ndarray
                          ) -> tuple[float, float]:
    """``lambda_max(sum_j x_j x_j^T)`` over the ``kernel x kernel`` patches ``x_j`` of
    ``image`` by two applications of the map to ``v0`` (enough for a checkerboard, whose
    top eigenvector is the pattern): the Rayleigh quotient and the relative residual."""
    kernel = check_count(kernel, "kernel")
    v0 = _check_kernel_start(v0, kernel, "v0")

    def summed_map(v: np.ndarray) -> np.ndarray:
        vt = torch.tensor(v.reshape(1, 1, kernel, kernel), requires_grad=True)
        z = F.conv2d(image, vt)
        (g,) = torch.autograd.grad(0.5 * (z * z).sum(), vt)
        return g.numpy().reshape(-1)

    v1 = summed_map(v0)
    v1 /= np.linalg.norm(v1)
    v2 = summed_map(v1)
    lam = float(v1 @ v2)
    return lam, float(np.linalg.norm(v2 - lam * v1) / lam)


# --------------------------------------------------------------------------- Sun's toy
def _swish(z: np.ndarray, beta: float) -> np.ndarray:
    return z * expit(beta * z)


def _swish_1(z: np.ndarray, beta: float) -> np.ndarray:
    s = expit(beta * z)
    return s + beta * z * s * (1 - s)


def sun_toy_runs(w0: Any, lrs: Sequence[float], alpha: float, steps: int, c: np.ndarray,
                 n_plus: int, n_minus: int, beta: float = 1.0) -> dict[str, np.ndarray]:
    """Sun et al.'s one-layer model on a checkerboard (``single_layer/PySun.py``: swish, mean
    pooling, logistic loss on label 1, update ``w <- w - lr (g + alpha w)``) run in the full
    kernel space, float64 as their NumPy script, exploiting that every patch is ``+c`` or
    ``-c`` (``n_plus`` and ``n_minus`` of them): each convolution output is ``+-<c, w>``, and
    the gradient is ``(n_plus s'(a) - n_minus s'(-a)) / N * dl/dp * c``, the same numbers as
    the convolution up to the order of its sums.  Arrays ``(steps + 1, len(lrs))``: ``loss``
    (with its weight-decay term, before each update, as their plot), ``seen`` ``<w, c_hat>``,
    ``unseen`` ``||w - <w, c_hat> c_hat||``; the linearised model's ``lin_seen`` and
    ``lin_unseen`` (gradient ``g0 + (H0 + alpha) w`` at ``w = 0``, prop-linear-wd), and
    ``mu`` (its curvature along ``c``).  Overflow gives inf/nan silently."""
    lrs_a = np.asarray(_check_etas(lrs, "lrs"), dtype=float)
    steps = _steps(steps)
    n_plus, n_minus = check_count(n_plus, "n_plus"), check_count(n_minus, "n_minus")
    c = np.asarray(c, dtype=np.float64).reshape(-1)
    w0 = np.asarray(w0, dtype=np.float64).reshape(-1)
    if w0.shape != c.shape:
        raise ValueError(f"w0 must have the shape of c {c.shape}, got {w0.shape}")
    alpha = check_real(alpha, "alpha", ge=0)
    n = n_plus + n_minus
    c_hat = c / np.linalg.norm(c)
    W = np.tile(w0, (len(lrs_a), 1))
    out = {name: np.full((steps + 1, len(lrs_a)), np.nan) for name in ("loss", "seen", "unseen")}
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(steps + 1):
            a = W @ c
            p = (n_plus * _swish(a, beta) + n_minus * _swish(-a, beta)) / n
            ww = np.einsum("ij,ij->i", W, W)
            out["loss"][k] = np.logaddexp(0.0, -p) + 0.5 * alpha * ww
            seen = W @ c_hat
            out["seen"][k] = seen
            out["unseen"][k] = np.linalg.norm(W - seen[:, None] * c_hat, axis=1)
            if k == steps:
                break
            dl_dp = -expit(-p)
            coef = dl_dp * (n_plus * _swish_1(a, beta) - n_minus * _swish_1(-a, beta)) / n
            W = W - lrs_a[:, None] * (coef[:, None] * c + alpha * W)
    # the linear model: H0 = mu c_hat c_hat^T, g0 = -(delta / 4) c with delta = (n+ - n-)/N
    delta, c2 = (n_plus - n_minus) / n, float(c @ c)
    mu = c2 * (delta**2 / 16 - beta / 4)
    g0_seen = -delta * math.sqrt(c2) / 4
    k_idx = np.arange(steps + 1)[:, None]
    u_star = -g0_seen / (mu + alpha)
    u0 = float(w0 @ c_hat)
    with np.errstate(over="ignore", invalid="ignore"):
        out["lin_seen"] = u_star + (1 - lrs_a * (mu + alpha)) ** k_idx * (u0 - u_star)
        out["lin_unseen"] = (np.abs(1 - lrs_a * alpha) ** k_idx
                             * np.linalg.norm(w0 - u0 * c_hat))
    out["mu"] = np.asarray(mu)
    return out


def sun_toy_conv_check(w0: Any, lr: float, alpha: float, steps: int, image: torch.Tensor,
                       label: torch.Tensor, c: np.ndarray, n_plus: int, n_minus: int,
                       beta: float = 1.0) -> float:
    """The largest relative difference, over ``steps`` GD steps at ``lr``, between
    :func:`sun_toy_runs` and GD through the full convolution (:func:`sun_full_loss_grad`,
    float64) on ``image``: of the kernel, of the loss and of the seen component."""
    lr = check_positive(lr, "lr")
    steps = _steps(steps)
    fast = sun_toy_runs(w0, (lr,), alpha, steps, c, n_plus, n_minus, beta)
    c_hat = np.asarray(c, dtype=np.float64).reshape(-1) / np.linalg.norm(c)
    w = np.asarray(w0, dtype=np.float64).reshape(-1).copy()
    worst = 0.0
    for k in range(steps + 1):
        loss, g = sun_full_loss_grad(w, image, label, alpha, beta)
        seen = float(w @ c_hat)
        worst = max(worst, abs(loss / fast["loss"][k, 0] - 1),
                    abs(seen - fast["seen"][k, 0]) / max(abs(seen), 1e-300))
        w = w - lr * g
    return worst


def sun_toy_fft_check(w0: Any, lrs: Sequence[float], alpha: float, steps: int,
                      image: np.ndarray, c: np.ndarray, n_plus: int, n_minus: int,
                      beta: float = 1.0) -> dict[str, np.ndarray]:
    """GD on Sun et al.'s toy through FFT convolutions (:func:`sun_full_loss_grad_fft`, label
    1) against :func:`sun_toy_runs` for every step: ``rel`` ``(steps + 1, len(lrs))``, the
    larger relative difference of the loss and of the seen component (nan once either
    overflows), ``seen`` of the FFT runs, and ``horizon`` (first step where ``rel`` exceeds
    1e-6, ``steps + 1`` if never: chaotic runs part there, as any reordering of sums would).
    One :func:`lib.sweep.run` task per step size."""
    lrs_a = _check_etas(lrs, "lrs")
    steps = _steps(steps)
    fast = sun_toy_runs(w0, lrs_a, alpha, steps, c, n_plus, n_minus, beta)
    c_hat = np.asarray(c, dtype=np.float64).reshape(-1) / np.linalg.norm(c)

    def one(j: int) -> tuple[np.ndarray, np.ndarray]:
        rel, seen = np.full(steps + 1, np.nan), np.full(steps + 1, np.nan)
        w = np.asarray(w0, dtype=np.float64).reshape(-1).copy()
        with np.errstate(over="ignore", invalid="ignore"):
            for k in range(steps + 1):
                if not np.all(np.isfinite(w)):
                    break
                loss, g = sun_full_loss_grad_fft(w, image, alpha, beta)
                seen[k] = w @ c_hat
                rel[k] = max(abs(loss / fast["loss"][k, j] - 1), abs(seen[k] - fast["seen"][k, j])
                             / max(abs(fast["seen"][k, j]), 1e-300))
                w = w - lrs_a[j] * g
        return rel, seen

    cols = sweep.run(one, range(len(lrs_a)), desc="FFT check")
    rel, seen = (np.stack([col[i] for col in cols], axis=1) for i in (0, 1))
    bad = ~(rel <= 1e-6)
    horizon = np.where(bad.any(axis=0), bad.argmax(axis=0), steps + 1)
    return {"rel": rel, "seen": seen, "horizon": horizon}


# --------------------------------------------------------------------------- last-bit spread
def lastbit_accuracy_avg(make_net: Callable[[int], nn.Module], loss_fn: LossFn,
                         inputs: torch.Tensor, targets: torch.Tensor, *, eta: float,
                         ks: Sequence[int], seeds: Sequence[int], steps: int, last: int,
                         every: int, test_inputs: torch.Tensor, test_labels: torch.Tensor,
                         record_from: int | None = None) -> dict[str, np.ndarray]:
    """Test accuracy of GD with the step applied as ``fl(eta k) fl(g/k)`` (Sun et al.'s last-bit
    family, :func:`train.gd` with ``lastbit_k``) for each seed (``make_net(seed)``) and ``k``:
    ``mean``, averaged over the records every ``every`` steps in the last ``last`` steps, and
    ``final``, after the last step; each ``(len(seeds), len(ks))`` fractions.  With
    ``record_from`` (a step ``<= steps - last``) the accuracy is recorded from that step on:
    ``history`` ``(len(seeds), len(ks), n)`` at the steps ``record_steps``, so that windows
    ending earlier can be averaged too (:func:`spread_by_window`).  The networks are built
    here, in seed order; each (seed, ``k``) run is a :func:`lib.sweep.run` task."""
    if not callable(make_net):
        raise TypeError("make_net must be callable: seed -> network")
    steps, last, every = (_steps(steps), check_count(last, "last"),
                          check_count(every, "every"))
    if last > steps:
        raise ValueError(f"last must be <= steps={steps}, got {last}")
    eta = _check_etas((eta,), "eta")[0]
    ks = tuple(check_count(k, "ks[i]") for k in ks)
    seeds = tuple(int(s) for s in seeds)
    if not ks or not seeds:
        raise ValueError("ks and seeds must not be empty")
    first = steps - last
    if record_from is not None:
        record_from = check_count(record_from, "record_from", minimum=0)
        if record_from > first:
            raise ValueError(f"record_from must be <= steps - last = {first}, got {record_from}")
    start = first if record_from is None else record_from

    def acc_hook(m: nn.Module, k: int) -> float:
        return train.accuracy(m, test_inputs, test_labels) if k >= start else math.nan

    def acc_run(task: tuple[nn.Module, int]) -> tuple[np.ndarray, np.ndarray]:
        net, kk = task
        run = train.gd(net, loss_fn, inputs, targets, lr=eta, steps=steps, lastbit_k=kk,
                       record_every=every, hooks={"acc": acc_hook})
        return np.asarray(run.history["acc"], dtype=float), np.asarray(run.history["step"])

    acc = {"mean": np.zeros((len(seeds), len(ks))), "final": np.zeros((len(seeds), len(ks)))}
    hist: list[list[np.ndarray]] = []
    rec_steps = np.zeros(0)
    nets_ = [make_net(seed) for seed in seeds]
    results = iter(sweep.run(acc_run, [(net, kk) for net in nets_ for kk in ks],
                             desc="last-bit accuracy"))
    for i in range(len(seeds)):
        hist.append([])
        for j in range(len(ks)):
            values, rec = next(results)
            keep = rec >= start
            rec_steps, values = rec[keep], values[keep]
            acc["mean"][i, j] = values[rec_steps >= first].mean()
            acc["final"][i, j] = values[-1]
            hist[i].append(values)
    acc["history"] = np.asarray(hist)
    acc["record_steps"] = rec_steps
    return acc


def _components(a: np.ndarray) -> tuple[float, float]:
    """One-way random-effects estimates ``(sigma_p, sigma_s)`` of a ``(seeds, perturbations)``
    table: ``sigma_p^2`` the mean within-row variance, ``sigma_s^2`` the variance of the row
    means less ``sigma_p^2 / K`` (clipped at 0)."""
    within = a.var(axis=1, ddof=1).mean()
    between = a.mean(axis=1).var(ddof=1) - within / a.shape[1]
    return float(math.sqrt(within)), float(math.sqrt(max(between, 0.0)))


def spread_ratio(acc: np.ndarray, *, n_boot: int = 2000, level: float = 0.9,
                 seed: int = 0) -> dict[str, Any]:
    """Spreads of a ``(seeds, perturbations)`` table ``a_ij = m + s_i + e_ij`` (one-way random
    effects: a perturbation index means nothing across seeds): ``pert`` (``sigma_p``, the
    spread over perturbations within a seed), ``seed`` (``sigma_s``, the spread of the seed
    effect, from the row means less their perturbation noise ``sigma_p^2/K``), their ``ratio``
    (``inf`` when the seed estimate is 0; equal spreads read 1) and a percentile bootstrap
    interval ``ci`` at ``level``: rows resampled, then the columns of each row, with
    replacement.  ``naive``: the older estimate (mean std over columns / mean std over rows),
    which reads ~``sigma_p / sqrt(sigma_s^2 + sigma_p^2)`` and cannot exceed about 1.
    ``seed``: :func:`lib.exact.check_seed`."""
    seed = check_seed(seed)
    acc = np.asarray(acc, dtype=float)
    if acc.ndim != 2 or min(acc.shape) < 2:
        raise ValueError(f"acc must be a 2-D table with at least 2 rows and columns, "
                         f"got shape {acc.shape}")
    if not np.all(np.isfinite(acc)):
        raise ValueError(f"acc must be finite (a NaN would read as an infinite ratio), got "
                         f"{int((~np.isfinite(acc)).sum())} non-finite entries")
    n_boot = check_count(n_boot, "n_boot", maximum=10**6)
    level = check_probability(level, "level", open_ends=True)
    pert, sd = _components(acc)
    rng = np.random.default_rng(seed)
    n_s, n_k = acc.shape
    ratios = np.empty(n_boot)
    for b in range(n_boot):
        rows = acc[rng.integers(0, n_s, n_s)]
        sample = np.take_along_axis(rows, rng.integers(0, n_k, (n_s, n_k)), axis=1)
        p, s = _components(sample)
        ratios[b] = p / s if s > 0 else np.inf
    lo, hi = np.quantile(ratios, [(1 - level) / 2, (1 + level) / 2], method="inverted_cdf")
    naive = acc.std(axis=1, ddof=1).mean() / acc.std(axis=0, ddof=1).mean()
    return {"pert": pert, "seed": sd, "ratio": pert / sd if sd > 0 else math.inf,
            "ci": (float(lo), float(hi)), "naive": float(naive)}


def spread_by_window(history: Any, steps: Any, ends: Sequence[int], length: int, *,
                     n_boot: int = 1000, level: float = 0.9, seed: int = 0
                     ) -> dict[str, np.ndarray]:
    """:func:`spread_ratio` of the accuracy averaged over the records in ``[end - length,
    end]`` for each ``end`` in ``ends``; ``history`` ``(seeds, perturbations, n)`` recorded at
    ``steps`` (``n``).  Arrays over ``ends``: ``ratio``, ``lo``, ``hi``, ``pert``, ``seed``,
    ``n_records``."""
    seed = check_seed(seed)
    history, steps = np.asarray(history, dtype=float), np.asarray(steps)
    if history.ndim != 3 or history.shape[2] != len(steps):
        raise ValueError(f"history must be (seeds, perturbations, len(steps)), got "
                         f"{history.shape} for {len(steps)} steps")
    length = check_count(length, "length")
    out = {key: np.zeros(len(ends)) for key in ("ratio", "lo", "hi", "pert", "seed", "n_records")}
    for i, end in enumerate(ends):
        window = (steps >= end - length) & (steps <= end)
        if not window.any():
            raise ValueError(f"ends: no record in the window ending at {end}")
        sr = spread_ratio(history[:, :, window].mean(axis=2), n_boot=n_boot, level=level,
                          seed=seed)
        for key, val in (("ratio", sr["ratio"]), ("lo", sr["ci"][0]), ("hi", sr["ci"][1]),
                         ("pert", sr["pert"]), ("seed", sr["seed"]),
                         ("n_records", window.sum())):
            out[key][i] = val
    return out


# --------------------------------------------------------------------------- top two at the edge
def top2_along(model: nn.Module, loss_fn: LossFn, inputs: torch.Tensor, targets: torch.Tensor,
               *, eta: float, start: int, stop: int, every: int, tol: float = 1e-6
               ) -> dict[str, np.ndarray]:
    """GD from ``model`` (not modified) at ``eta``, and at steps ``start, start + every, ...
    <= stop`` the two largest Hessian eigenvalues (cold-started Lanczos, residual
    ``<= tol ||H||``) and their eigenvectors.  ``values`` ``(n, 2)``, ``steps``, ``overlap``
    ``(n - 1, 2, 2)`` (``|<u_i(j), u_l(j+1)>|``), ``swap`` (the previous top eigenvector is
    closer to the new second one than to the new top one) and ``converged``.  Guards:
    ``start <= stop <=`` :data:`lib.train.MAX_STEPS`, ``tol`` a positive real."""
    eta = _check_etas((eta,), "eta")[0]
    start, stop, every = (check_count(start, "start"),
                          check_count(stop, "stop", maximum=train.MAX_STEPS), check_count(every, "every"))
    tol = check_positive(tol, "tol")
    if stop < start:
        raise ValueError(f"stop must be >= start={start}, got {stop}")
    vals: list[np.ndarray] = []
    vecs: list[np.ndarray] = []
    steps: list[int] = []
    ok: list[bool] = []

    def hook(m: nn.Module, k: int) -> float:
        if k < start or (k - start) % every:
            return math.nan
        v, info = hessian.eigenvalues(m, loss_fn, inputs, targets, k=2, tol=tol, seed=k,
                                      require_convergence=False, return_info=True)
        vals.append(v.numpy())
        vecs.append(info.vectors.numpy())
        steps.append(k)
        ok.append(info.converged)
        return float(v[0])

    train.gd(model, loss_fn, inputs, targets, lr=eta, steps=stop, hooks={"top2": hook})
    V = np.stack(vecs)
    overlap = np.abs(np.einsum("nai,naj->nij", V[:-1], V[1:]))
    return {"values": np.stack(vals), "steps": np.asarray(steps), "overlap": overlap,
            "swap": overlap[:, 0, 1] > overlap[:, 0, 0], "converged": np.asarray(ok),
            "vectors": V}


def count_swaps(vectors: Any, stride: int = 1) -> tuple[int, int]:
    """Swaps of the top two eigenvectors between estimates ``stride`` apart: ``vectors``
    ``(n, P, 2)`` (columns: top, second, as :func:`top2_along` returns them); a swap is
    ``|<u1(j), u2(j + stride)>| > |<u1(j), u1(j + stride)>|``.  ``(swaps, intervals)``."""
    V = np.asarray(vectors, dtype=float)
    if V.ndim != 3 or V.shape[2] < 2:
        raise ValueError(f"vectors must be (n, P, >= 2), got shape {V.shape}")
    if not np.all(np.isfinite(V)):
        raise ValueError("vectors must be finite (a NaN overlap would count as no swap)")
    stride = check_count(stride, "stride")
    if stride >= len(V):
        raise ValueError(f"stride must be < the number of estimates {len(V)}, got {stride}")
    a, b = V[:-stride], V[stride:]
    same = np.abs(np.einsum("ni,ni->n", a[:, :, 0], b[:, :, 0]))
    other = np.abs(np.einsum("ni,ni->n", a[:, :, 0], b[:, :, 1]))
    return int((other > same).sum()), len(same)


# --------------------------------------------------------------------------- leaving the flow
def flow_departure(steps: Any, dist: Any, c_norm: Any, eta: float, crossing: int,
                   thetas: Any = None, model: nn.Module | None = None,
                   loss_fn: LossFn | None = None, inputs: torch.Tensor | None = None,
                   targets: torch.Tensor | None = None, tol: float = 1e-6, top: int = 10,
                   n_after: int = 3, proj_from: int = 0) -> dict[str, Any]:
    """When GD leaves the gradient flow.  ``steps`` (records, the first 0), ``dist``
    (``||theta_k - theta(k eta)||``), ``c_norm`` (``||C(k eta)||``, the first-order term of
    gd-vs-flow's lem-first-order) at those records; ``crossing``: GD's step of ``S >= 2/eta``.
    Returns ``ratio`` (``d / (eta ||C||)`` from the second record on), ``level`` (its mean up
    to the crossing), ``depart`` (first record from which the ratio stays above 2 level for
    ``n_after`` consecutive records, or ``None``, also when fewer records remain: censored),
    ``last_on`` (last record before it within 10 % of the level).  With ``thetas`` (GD's
    parameters at the records, rows) and ``model``/``loss_fn``/``inputs``/``targets``, also
    ``proj`` ``(records, top)``: the fraction ``||U_j^T (theta_k - theta(k eta))|| / d`` of
    the gap in the span of the top ``j`` Hessian eigenvectors at GD's iterate, ``j = 1 ..
    top`` (Lanczos at ``tol``; ``gap``: rows of the gap), ``values`` (the eigenvalues) and
    ``converged`` (per record), computed at the records from step ``proj_from`` on (nan,
    resp. True, before it), one :func:`lib.sweep.run` task per record."""
    steps, dist, c_norm = (np.asarray(a, dtype=float) for a in (steps, dist, c_norm))
    if not (steps.shape == dist.shape == c_norm.shape) or steps.ndim != 1 or len(steps) < 3:
        raise ValueError("steps, dist and c_norm must be 1-D of the same length >= 3")
    eta = check_positive(eta, "eta")
    crossing = check_count(crossing, "crossing")
    ratio = dist[1:] / (eta * c_norm[1:])
    st = steps[1:]
    pre = ratio[st <= crossing]
    if len(pre) == 0:
        raise ValueError(f"no record at or before crossing={crossing}")
    level = pre.mean()
    n_after, top = check_count(n_after, "n_after"), check_count(top, "top")
    off = ratio > 2 * level
    runs = [i for i in range(len(off) - n_after + 1) if off[i: i + n_after].all()]
    depart = int(st[runs[0]]) if runs else None
    on = (np.abs(ratio / level - 1) <= 0.1) & (st < (depart if depart is not None else np.inf))
    out: dict[str, Any] = {"ratio": ratio, "steps": st, "level": level, "pre": pre,
                           "depart": depart, "last_on": int(st[on].max()) if on.any() else None}
    if thetas is not None:
        if model is None or loss_fn is None or inputs is None or targets is None:
            raise ValueError("thetas needs model, loss_fn, inputs and targets")
        gap = np.asarray(thetas["gap"], dtype=float)
        rows = np.asarray(thetas["gd"], dtype=float)
        proj, values = np.full((len(rows), top), np.nan), np.full((len(rows), top), np.nan)
        conv = np.ones(len(rows), dtype=bool)

        def project(task: tuple[int, np.ndarray, np.ndarray]
                    ) -> tuple[np.ndarray, np.ndarray, bool]:
            i, row, gap_i = task
            v, info = hessian.eigenvalues(model, loss_fn, inputs, targets, k=top, tol=tol,
                                          seed=i, theta=torch.from_numpy(row),
                                          return_info=True, require_convergence=False)
            parts = (info.vectors.numpy().T @ gap_i) / max(np.linalg.norm(gap_i), 1e-300)
            return np.sqrt(np.cumsum(parts**2)), v.numpy(), info.converged

        tasks = [(i, row, gap[i]) for i, row in enumerate(rows) if st[i] >= proj_from]
        for (i, _, _), (p, v, ok) in zip(tasks, sweep.run(project, tasks, desc="projections")):
            proj[i], values[i], conv[i] = p, v, ok
        out.update(proj=proj, values=values, converged=conv)
    return out
