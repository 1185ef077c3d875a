"""Gradient flow, gradient descent as its Euler discretisation, and the distance between them.

Following Elkabetz & Cohen (NeurIPS 2021, arXiv 2107.06608): gradient descent (GD) with step
size ``eta``, ``theta_{k+1} = theta_k - eta * grad L(theta_k)``, is Euler's method for the
gradient flow ``theta'(t) = -grad L(theta(t))``; iterate ``k`` is compared with the flow at the
matched time ``t = k * eta``.  All functions work on the model's trainable parameters flattened
into one vector (:class:`lib.hessian.FlatLoss`); the model itself is never modified.

* :func:`gradient_flow` -- the flow by an adaptive solver (``scipy.integrate.solve_ivp``,
  DOP853 by default) on the flattened parameters in float64.
* :func:`gradient_descent` -- GD, same output, at matched times.
* :func:`fixed_step_flow` -- the flow by fixed-step RK4 or Euler (for cost comparisons).
* :func:`first_order_gap` -- the first-order prediction ``theta_GD(t) - theta(t) = eta C(t) +
  O(eta^2)``, with ``C`` from the linearised error equation
  ``C' = -H(theta(t)) (C + grad L(theta(t)) / 2)``, ``C(0) = 0``.
* :func:`flow_accuracy` -- a flow's solver error against a tighter reference at every time.
* :func:`curvature_along`, :func:`negative_curvature_integral`, :func:`first_order_bound` --
  ``lambda_min``/``lambda_max`` along a trajectory and the bound's factors.
* :func:`curvature_to_loss` -- ``Lambda = int lambda_-`` along the flow up to a loss level
  (the initialisation-scale sweep), sampled uniformly or by :func:`monitor_times`.
* :func:`as_problem` -- turn a plain function ``f(theta)`` into the ``(model, loss_fn, inputs,
  targets)`` the rest of the library expects (for two-dimensional examples).

Trajectories are returned as :class:`Trajectory`: a float64 NumPy array of shape
``(len(times), n_params)`` carrying ``times``, ``loss`` and the cost (``n_grad_evals``); they
pickle with these attributes, so they can be the results of :func:`lib.sweep.run` tasks.  The one
loop here over independent runs, the flows of :func:`escape_times`, goes through ``lib.sweep``.

Guards: the model is evaluated in eval mode and never changed
(:func:`lib.hessian.evaluation_mode`); empty or non-finite data and a non-finite loss raise
``ValueError`` naming ``inputs``, ``targets`` or the parameters (:class:`NonFiniteLossError`);
step sizes, times and tolerances accept Python, NumPy and 0-d torch reals (bools and strings
are refused).  Size guards, before any work: GD and the fixed-step methods take at most
:data:`MAX_STEPS` steps, a trajectory holds at most :data:`MAX_ENTRIES` numbers, and the
adaptive solvers stop after :data:`MAX_EVALS` gradient evaluations unless ``max_evals`` says
otherwise.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.integrate import cumulative_trapezoid, solve_ivp
from torch import nn

from lib.exact import check_count, check_dtype, check_positive, check_real
from lib.hessian import (DEFAULT_HVP_METHOD, FlatLoss, LossFn, NonFiniteLossError,
                         eigenvalues_along, evaluation_mode, flatten_parameters,
                         hvp_operator_from_loss)
from lib.train import MAX_STEPS, gd
from lib import sweep
from lib._flows_helpers import check_times as _check_times
from lib._flows_helpers import gd_steps as _gd_steps, steps_for as _steps_for

ADAPTIVE_METHODS = ("DOP853", "RK45", "RK23", "Radau", "BDF", "LSODA")
FIXED_METHODS = ("euler", "rk4")
#: gradient evaluations per step of the fixed-step methods
FIXED_COST = {"euler": 1, "rk4": 4}
#: The most gradient evaluations :func:`gradient_flow` spends when ``max_evals`` is not given.
MAX_EVALS = 1_000_000
#: The most numbers a trajectory may hold (``len(times) * n_params``; 800 MB in float64).
MAX_ENTRIES = 100_000_000
#: Size guard of ``n_times`` and ``n_fine`` (:func:`monitor_times`, :func:`curvature_to_loss`).
MAX_TIMES = 1_000_000


class Trajectory(np.ndarray):
    """Flattened parameters at a sequence of times: a float64 array ``(len(times), n_params)``.

    Attributes: ``times`` (float64, the flow times; for GD ``k * eta``), ``steps`` (GD step
    indices, else ``None``), ``loss`` (the loss at each row), ``n_grad_evals`` (gradient
    evaluations spent, the cost measure of the chapter), ``info`` (a dict: method, tolerances,
    solver statistics).  Slices keep the attributes; arithmetic, single rows and columns are
    plain arrays; :meth:`at` picks rows by time; pickling keeps the attributes.
    """

    times: np.ndarray
    steps: np.ndarray | None
    loss: np.ndarray
    n_grad_evals: int
    info: dict[str, Any]

    def __new__(cls, params: np.ndarray, *, times: np.ndarray, loss: np.ndarray,
                n_grad_evals: int, steps: np.ndarray | None = None,
                info: dict[str, Any] | None = None) -> Trajectory:
        obj = np.asarray(params, dtype=np.float64).view(cls)
        obj.times = np.asarray(times, dtype=np.float64)
        obj.steps = None if steps is None else np.asarray(steps, dtype=np.int64)
        obj.loss = np.asarray(loss, dtype=np.float64)
        obj.n_grad_evals = int(n_grad_evals)
        obj.info = dict(info or {})
        return obj

    def __array_finalize__(self, obj: Any) -> None:
        if obj is None:
            return
        self.times = getattr(obj, "times", np.empty(0))
        self.steps = getattr(obj, "steps", None)
        self.loss = getattr(obj, "loss", np.empty(0))
        self.n_grad_evals = getattr(obj, "n_grad_evals", 0)
        self.info = getattr(obj, "info", {})

    def __array_wrap__(self, arr: np.ndarray, context: Any = None,
                       return_scalar: bool = False) -> Any:
        arr = np.asarray(arr)
        return arr[()] if return_scalar else arr.view(np.ndarray)

    def __getitem__(self, key: Any) -> Any:
        out = super().__getitem__(key)
        if not isinstance(out, Trajectory):
            return out
        if out.ndim != 2 or self.ndim != 2:
            return out.view(np.ndarray)  # a row, a column or an entry: a plain array
        rows = key[0] if isinstance(key, tuple) else key
        if rows is Ellipsis:
            rows = slice(None)
        idx = np.arange(self.shape[0])[rows]
        if np.ndim(idx) != 1 or len(idx) != out.shape[0]:
            return out.view(np.ndarray)
        out.times = self.times[idx] if len(self.times) == self.shape[0] else self.times
        out.loss = self.loss[idx] if len(self.loss) == self.shape[0] else self.loss
        if self.steps is not None and len(self.steps) == self.shape[0]:
            out.steps = self.steps[idx]
        return out

    def at(self, times: Any) -> Trajectory:
        """The rows recorded at ``times`` (each must match a recorded time to 1e-9 relative)."""
        t = np.atleast_1d(np.asarray(times, dtype=np.float64))
        idx = np.searchsorted(self.times, t)
        idx = np.clip(idx, 0, len(self.times) - 1)
        left = np.clip(idx - 1, 0, len(self.times) - 1)
        pick = np.where(np.abs(self.times[left] - t) < np.abs(self.times[idx] - t), left, idx)
        if np.any(np.abs(self.times[pick] - t) > 1e-9 * np.maximum(1.0, np.abs(t))):
            raise ValueError("some requested times were not recorded")
        return self[pick]

    def __reduce__(self) -> Any:  # pickling keeps the attributes (results of lib.sweep tasks)
        return (_trajectory, (np.asarray(self).copy(), self.times, self.loss, self.n_grad_evals,
                              self.steps, self.info))


def _trajectory(params: np.ndarray, times: np.ndarray, loss: np.ndarray, n_grad_evals: int,
                steps: np.ndarray | None, info: dict[str, Any]) -> Trajectory:
    """Unpickle a :class:`Trajectory` (the attributes as pickled, not re-checked); the rows
    are copied, so a read-only memory map from joblib becomes a writable array again."""
    obj = np.array(params, dtype=np.float64).view(Trajectory)
    obj.times, obj.loss, obj.n_grad_evals = times, loss, n_grad_evals
    obj.steps, obj.info = steps, info
    return obj


# ----------------------------------------------------------------------------- checks
def _check_entries(n_rows: int, n_params: int) -> None:
    """The size guard of a trajectory: ``n_rows * n_params <= MAX_ENTRIES``."""
    if n_rows * n_params > MAX_ENTRIES:
        raise ValueError(f"times: {n_rows} rows of {n_params} parameters exceed the size guard "
                         f"MAX_ENTRIES={MAX_ENTRIES} numbers; record fewer times")


def _check_solver(times: Any, rtol: Any, atol: Any, method: str) -> tuple[np.ndarray, float, float]:
    """Checked ``(times, rtol, atol)`` for ``solve_ivp``; ``method`` must be adaptive."""
    if method not in ADAPTIVE_METHODS:
        raise ValueError(f"method must be one of {ADAPTIVE_METHODS}, got {method!r}")
    return _check_times(times), check_positive(rtol, "rtol"), check_positive(atol, "atol")


def _vector_field(flat: FlatLoss, counter: dict[str, int]) -> Callable[[float, np.ndarray], np.ndarray]:
    """``-grad L`` as a NumPy float64 function for ``solve_ivp``; raises on non-finite values."""

    def fun(t: float, y: np.ndarray) -> np.ndarray:
        loss, g = flat.loss_and_grad(torch.from_numpy(np.ascontiguousarray(y)))
        counter["grad"] += 1
        g64 = g.to(dtype=torch.float64, device="cpu").numpy()
        if not (math.isfinite(loss) and np.all(np.isfinite(g64))):
            raise flat.nonfinite(torch.from_numpy(np.ascontiguousarray(y)), loss,
                                 f"the loss or gradient at flow time t={t:.6g}")
        return -g64

    return fun


def _initial(flat: FlatLoss, counter: dict[str, int]) -> np.ndarray:
    y0 = flat.theta0.detach().to(dtype=torch.float64, device="cpu").numpy().copy()
    loss0 = flat.loss(flat.theta0)
    counter["loss"] += 1
    if not math.isfinite(loss0):
        raise flat.nonfinite(flat.theta0, loss0, "the loss at the initial parameters")
    return y0


def _losses(flat: FlatLoss, rows: np.ndarray, counter: dict[str, int]) -> np.ndarray:
    out = np.empty(len(rows))
    for i, row in enumerate(rows):
        out[i] = flat.loss(torch.from_numpy(np.ascontiguousarray(row)))
        counter["loss"] += 1
    return out


# ----------------------------------------------------------------------------- the flow
def gradient_flow(model: nn.Module, loss_fn: LossFn, inputs: torch.Tensor, targets: torch.Tensor,
                  times: Any, rtol: float = 1e-10, atol: float = 1e-12, method: str = "DOP853",
                  *, max_evals: int | None = None, record_loss: bool = True) -> Trajectory:
    """The gradient flow ``theta' = -grad L(theta)``, ``theta(0)`` = the model's parameters,
    where ``L = loss_fn(model(inputs), targets)``, at the given ``times``.

    Integrated by ``scipy.integrate.solve_ivp`` (``method``: ``"DOP853"`` (default, explicit
    Runge-Kutta of order 8 with dense output), ``"RK45"``, ``"RK23"``, or the implicit
    ``"Radau"``, ``"BDF"``, ``"LSODA"``, which build Jacobians by finite differences and are
    only sensible for tiny models) with the tolerances ``rtol``, ``atol`` on the flattened
    parameters in float64 (the gradient itself is evaluated in the model's dtype).  ``times``:
    sorted, non-negative; the rows are ``theta(times[i])``.

    Returns a :class:`Trajectory` ``(len(times), n_params)``; ``n_grad_evals`` counts the
    gradient evaluations of the solver (the loss at the rows, ``record_loss``, is extra and not
    counted).  ``max_evals`` (default :data:`MAX_EVALS`, a size guard against a tight tolerance
    over a long horizon) stops a run that needs more gradients (``RuntimeError``); at most
    :data:`MAX_ENTRIES` numbers in the result (checked before any work).  Raises
    ``NonFiniteLossError`` (a ``ValueError``) if the loss or gradient is not finite, naming
    the parameters or data; the model is evaluated in eval mode and not changed.
    """
    t, rtol, atol = _check_solver(times, rtol, atol, method)
    max_evals = MAX_EVALS if max_evals is None else check_count(max_evals, "max_evals")
    flat = FlatLoss(model, loss_fn, inputs, targets)
    _check_entries(len(t), flat.n_params)
    counter = {"grad": 0, "loss": 0}
    y0 = _initial(flat, counter)
    field = _vector_field(flat, counter)

    class _Budget(Exception):
        pass

    def fun(tt: float, y: np.ndarray) -> np.ndarray:
        if counter["grad"] >= max_evals:
            raise _Budget
        return field(tt, y)

    try:
        rows, sol = _integrate(fun, y0, t, method, rtol, atol)
    except _Budget:
        raise RuntimeError(f"gradient_flow ({method}, rtol={rtol:g}) needed more than "
                           f"max_evals={max_evals} gradient evaluations before "
                           f"t={float(t[-1]):g}") from None
    sol_info: dict[str, Any] = ({"nfev": 0, "status": 0, "message": "t_end = 0"} if sol is None
                                else {"nfev": int(sol.nfev), "njev": int(sol.njev),
                                      "nlu": int(sol.nlu), "status": int(sol.status),
                                      "message": sol.message})
    loss = _losses(flat, rows, counter) if record_loss else np.full(len(t), np.nan)
    info = {"method": method, "rtol": rtol, "atol": atol, "dtype": str(flat.dtype), **sol_info}
    return Trajectory(rows, times=t, loss=loss, n_grad_evals=counter["grad"], info=info)


def _integrate(fun: Callable[[float, np.ndarray], np.ndarray], z0: np.ndarray, t: np.ndarray,
               method: str, rtol: float, atol: float) -> tuple[np.ndarray, Any]:
    """``z' = fun(t, z)``, ``z(0) = z0`` by ``solve_ivp`` from 0 to ``t[-1]``: the rows at
    ``t`` (a copy) and the solver's result (``None`` when ``t[-1] = 0``: the start repeated)."""
    if t[-1] == 0.0:
        return np.repeat(z0[None, :], len(t), axis=0), None
    sol = solve_ivp(fun, (0.0, float(t[-1])), z0, method=method, t_eval=t, rtol=rtol, atol=atol)
    if sol.status != 0:
        raise RuntimeError(f"solve_ivp ({method}) failed: {sol.message}")
    return sol.y.T.copy(), sol


def fixed_step_flow(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    times: Any,
    h: float,
    method: str = "rk4",
    *,
    record_loss: bool = True,
) -> Trajectory:
    """The gradient flow by a fixed-step method (``"rk4"``: classical Runge-Kutta, 4 gradients
    per step; ``"euler"``: 1 gradient per step, i.e. gradient descent with ``eta = h``) on
    float64 flattened parameters.  ``times`` must be multiples of ``h`` (to 1e-9 relative).
    Returns a :class:`Trajectory` like :func:`gradient_flow`.  Size guard: at most
    :data:`MAX_STEPS` steps (``times[-1] / h``), checked before any work."""
    if method not in FIXED_METHODS:
        raise ValueError(f"method must be one of {FIXED_METHODS}, got {method!r}")
    h = check_positive(h, "h")
    t = _check_times(times)
    steps = _steps_for(t, h, "h")
    flat = FlatLoss(model, loss_fn, inputs, targets)
    _check_entries(len(t), flat.n_params)
    counter = {"grad": 0, "loss": 0}
    y = _initial(flat, counter)
    f = _vector_field(flat, counter)
    rows = np.empty((len(t), flat.n_params))
    k = 0
    for i, target in enumerate(steps):
        while k < target:
            tk = k * h
            if method == "euler":
                y = y + h * f(tk, y)
            else:
                k1 = f(tk, y)
                k2 = f(tk + h / 2, y + (h / 2) * k1)
                k3 = f(tk + h / 2, y + (h / 2) * k2)
                k4 = f(tk + h, y + h * k3)
                y = y + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
            k += 1
        rows[i] = y
    loss = _losses(flat, rows, counter) if record_loss else np.full(len(t), np.nan)
    return Trajectory(rows, times=steps * h, steps=steps, loss=loss, n_grad_evals=counter["grad"],
                      info={"method": method, "h": h, "dtype": str(flat.dtype)})


# ----------------------------------------------------------------------------- GD
def gradient_descent(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    times: Any = None,
    eta: float | None = None,
    *,
    steps: Any = None,
    record_loss: bool = True,
    desc: str | None = None,
) -> Trajectory:
    """Full-batch gradient descent ``theta_{k+1} = theta_k - eta * grad L(theta_k)`` from the
    model's parameters: Euler's method on the vector field of :func:`gradient_flow`.

    Give the matched flow ``times`` (each an integer multiple of ``eta``; row ``i`` is the
    iterate ``k_i = times[i] / eta``), as for :func:`gradient_flow`, or ``steps``: an int ``N``
    (all iterates ``0..N``) or a sorted array of iterate indices.  The loop is :func:`lib.train.gd`
    in the model's dtype: the parameters are stored, and rounded after every step, in that
    dtype (a float32 model is stepped in float32; before the library's refactor the iterate was
    kept in float64, which only float64 models, the book's, share bit for bit).  The rows are
    the parameters in float64.
    Returns a :class:`Trajectory` ``(len(times), n_params)`` with ``times = k * eta``,
    ``steps = k`` and ``n_grad_evals`` = the number of steps taken.  Raises ``ValueError`` for a
    non-positive ``eta`` (a Python, NumPy or 0-d torch real; not a bool) or bad times/steps,
    for more than :data:`MAX_STEPS` steps (a size guard, checked before any work: a tiny
    ``eta`` over a long horizon), and ``NonFiniteLossError`` when the loss or the gradient is
    not finite (divergence), naming the step.  GD runs on a copy of the model in eval mode
    (as the flow's evaluations), so the model is not changed.
    """
    if eta is None:
        raise TypeError("gradient_descent needs the step size eta")
    eta = check_positive(eta, "eta")
    k_out = _gd_steps(times, steps, eta)
    flat = FlatLoss(model, loss_fn, inputs, targets)  # the checks of the other functions
    last = int(k_out[-1])
    _check_entries(len(k_out), flat.n_params)
    keep: dict[int, np.ndarray] = {}
    wanted = set(k_out.tolist())

    def snapshot(net: nn.Module, step: int) -> float:
        # a non-finite gradient with a finite loss shows up in the next iterate
        if not all(bool(torch.isfinite(p).all()) for p in net.parameters()):
            raise NonFiniteLossError(f"GD with eta={eta:g}: non-finite parameters at step {step} "
                                     "(a non-finite gradient)")
        if step in wanted:
            keep[step] = flatten_parameters(net).to(torch.float64).cpu().numpy()
        return 0.0

    with evaluation_mode(model):     # the copy that gd trains keeps the eval mode
        run = gd(model, loss_fn, inputs, targets, lr=eta, steps=last,
                 hooks={"theta": snapshot}, desc=desc or f"GD eta={eta:g}")
    if run.diverged_at is not None and (run.diverged_at < last or record_loss):
        raise NonFiniteLossError(f"GD with eta={eta:g}: non-finite loss or gradient at "
                                 f"step {run.diverged_at}")
    rows = np.stack([keep[k] for k in k_out.tolist()])
    loss_rows = run.history["loss"][k_out] if record_loss else np.full(len(k_out), np.nan)
    return Trajectory(rows, times=k_out * eta, steps=k_out, loss=loss_rows,
                      n_grad_evals=run.steps_done, info={"method": "gd", "eta": eta,
                                                         "dtype": str(flat.dtype)})


def matched_distances(a: Any, b: Any) -> np.ndarray:
    """``||a_i - b_i||_2`` for each row of two trajectories at the same times (e.g. GD and the
    flow at ``t = k * eta``).  Raises ``ValueError`` if shapes or (when both carry them) the
    times differ."""
    A, B = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if A.shape != B.shape or A.ndim != 2:
        raise ValueError(f"trajectories must have the same 2-D shape, got {A.shape} and {B.shape}")
    ta, tb = getattr(a, "times", None), getattr(b, "times", None)
    if ta is not None and tb is not None and len(ta) and len(tb):
        if not np.allclose(ta, tb, rtol=1e-12, atol=1e-12):
            raise ValueError("the trajectories are recorded at different times")
    return np.linalg.norm(A - B, axis=1)


# ----------------------------------------------------------------------------- first order
@dataclass
class GapPrediction:
    """Result of :func:`first_order_gap`: the flow (a :class:`Trajectory`) and ``C`` (float64,
    ``(len(times), n_params)``) with ``theta_GD(t) - theta(t) = eta * C(t) + O(eta^2)``.
    ``n_grad_evals`` counts right-hand-side evaluations (each one gradient and one
    Hessian-vector product)."""

    times: np.ndarray
    flow: Trajectory
    C: np.ndarray
    n_grad_evals: int
    info: dict[str, Any]

    def at(self, times: Any) -> np.ndarray:
        """The rows of ``C`` at ``times`` (recorded times, as :meth:`Trajectory.at`)."""
        rows = self.flow.at(times)
        idx = np.searchsorted(self.flow.times, rows.times)
        return self.C[idx]

    def predicted_distance(self, eta: float) -> np.ndarray:
        """``eta * ||C(t)||`` at each time."""
        return check_positive(eta, "eta") * np.linalg.norm(self.C, axis=1)


def first_order_gap(model: nn.Module, loss_fn: LossFn, inputs: torch.Tensor,
                    targets: torch.Tensor, times: Any, rtol: float = 1e-10, atol: float = 1e-12,
                    method: str = "DOP853") -> GapPrediction:
    """The first-order term of the GD-flow gap, ``theta_GD(k eta) - theta(k eta) = eta C(k eta)
    + O(eta^2)``.

    Euler's local error is ``-(eta^2 / 2) theta''`` with ``theta'' = H grad L``; the global
    error ``e_k`` obeys ``e_{k+1} = (I - eta H) e_k - (eta^2/2) H grad L + O(eta^3)``, so
    ``e = eta C`` with the linearised error equation along the flow
    ``C' = -H(theta(t)) (C + grad L(theta(t)) / 2)``, ``C(0) = 0``
    (the classical asymptotic error expansion of Euler's method, e.g. Hairer, Norsett & Wanner,
    *Solving ODEs I*, II.8).  Integrated jointly with the flow (state ``[theta, C]``) by
    ``solve_ivp``; Hessian-vector products by double backward.
    """
    t, rtol, atol = _check_solver(times, rtol, atol, method)
    flat = FlatLoss(model, loss_fn, inputs, targets)
    counter = {"grad": 0, "loss": 0}
    y0 = _initial(flat, counter)
    P = flat.n_params

    def fun(tt: float, y: np.ndarray) -> np.ndarray:
        theta = torch.from_numpy(np.ascontiguousarray(y[:P])).to(flat.dtype).requires_grad_(True)
        C = torch.from_numpy(np.ascontiguousarray(y[P:])).to(flat.dtype)
        with torch.enable_grad():
            loss = flat.loss_tensor(theta)
            (g,) = torch.autograd.grad(loss, theta, create_graph=True)
            (hw,) = torch.autograd.grad(g, theta, grad_outputs=C + g.detach() / 2)
        counter["grad"] += 1
        out = torch.cat([-g.detach(), -hw]).to(torch.float64).numpy()
        if not (math.isfinite(float(loss.detach())) and np.all(np.isfinite(out))):
            raise NonFiniteLossError(f"non-finite loss or gradient at flow time t={tt:.6g}")
        return out

    Z, sol = _integrate(fun, np.concatenate([y0, np.zeros(P)]), t, method, rtol, atol)
    sol_info = {"nfev": 0 if sol is None else int(sol.nfev)}
    rows = Z[:, :P].copy()
    loss = _losses(flat, rows, counter)
    info = {"method": method, "rtol": rtol, "atol": atol, **sol_info}
    flow = Trajectory(rows, times=t, loss=loss, n_grad_evals=counter["grad"], info=info)
    return GapPrediction(times=t, flow=flow, C=Z[:, P:].copy(), n_grad_evals=counter["grad"],
                         info=info)


# ----------------------------------------------------------------------------- accuracy
@dataclass
class FlowAccuracy:
    """A flow against a tighter reference at every recorded time.

    ``error[i] = ||flow[i] - reference[i]||_2`` (float64, one per time); ``max_error`` and
    ``t_max`` its maximum and where; ``resolve`` the distances the flow must resolve (or
    ``None``), ``ratio = error / resolve`` where ``resolve > 0`` (``nan`` elsewhere) and
    ``max_ratio`` its maximum; ``flow`` and ``reference`` the two :class:`Trajectory`."""

    times: np.ndarray
    error: np.ndarray
    max_error: float
    t_max: float
    flow: Trajectory
    reference: Trajectory
    resolve: np.ndarray | None
    ratio: np.ndarray | None
    max_ratio: float | None


def flow_accuracy(model: nn.Module, loss_fn: LossFn, inputs: torch.Tensor, targets: torch.Tensor,
                  times: Any, *, rtol: float = 1e-10, atol: float = 1e-12,
                  method: str = "DOP853", flow: Any = None, ref_rtol: float | None = None,
                  ref_atol: float | None = None, ref_method: str | None = None,
                  resolve: Any = None) -> FlowAccuracy:
    """The solver error of :func:`gradient_flow` over the whole path, not only at the end.

    The flow at ``(rtol, atol, method)`` (or the given ``flow``: rows at ``times``, e.g. an
    existing :class:`Trajectory`) is compared at every one of ``times`` with a reference
    integrated at ``ref_rtol``/``ref_atol`` (default ``rtol/1000``, ``atol/1000``, floored at
    ``1e-14``/``1e-16``) by ``ref_method`` (default ``method``; another method checks the
    method too).  ``resolve``: optional non-negative distances, one per time (e.g. the
    smallest GD-flow distance), for ``ratio = error / resolve``.  Float64 throughout.
    """
    t = _check_times(times)
    ref_method = method if ref_method is None else ref_method
    rtol, atol = check_positive(rtol, "rtol"), check_positive(atol, "atol")
    ref_rtol = max(rtol * 1e-3, 1e-14) if ref_rtol is None else check_positive(ref_rtol, "ref_rtol")
    ref_atol = max(atol * 1e-3, 1e-16) if ref_atol is None else check_positive(ref_atol, "ref_atol")
    if ref_rtol > rtol and ref_method == method:
        raise ValueError(f"ref_rtol ({ref_rtol:g}) must not exceed rtol ({rtol:g}) for the same "
                         "method: the reference has to be tighter")
    if flow is None:
        flow = gradient_flow(model, loss_fn, inputs, targets, t, rtol=rtol, atol=atol,
                             method=method)
    rows = np.asarray(flow, dtype=np.float64)
    if rows.ndim != 2 or len(rows) != len(t):
        raise ValueError(f"flow must have one row per time ({len(t)}), got shape {rows.shape}")
    ref = gradient_flow(model, loss_fn, inputs, targets, t, rtol=ref_rtol, atol=ref_atol,
                        method=ref_method)
    err = np.linalg.norm(rows - np.asarray(ref), axis=1)
    ratio = max_ratio = res = None
    if resolve is not None:
        res = np.asarray(resolve, dtype=np.float64)
        if res.shape != t.shape or np.any(res < 0) or not np.all(np.isfinite(res)):
            raise ValueError(f"resolve must hold {len(t)} finite non-negative distances, one per "
                             f"time, got shape {res.shape}")
        ratio = np.full(len(t), np.nan)
        pos = res > 0
        ratio[pos] = err[pos] / res[pos]
        max_ratio = float(np.max(ratio[pos])) if pos.any() else None
    i = int(np.argmax(err))
    return FlowAccuracy(times=t, error=err, max_error=float(err[i]), t_max=float(t[i]),
                        flow=flow, reference=ref, resolve=res, ratio=ratio, max_ratio=max_ratio)


# ----------------------------------------------------------------------------- curvature
@dataclass
class CurvaturePath:
    """Curvature along a trajectory: ``lam_min``, ``lam_max`` (Hessian extremes), ``accel``
    (``||theta''|| = ||H grad L||``) and ``grad_norm`` at each of ``times``; ``n_hvp`` counts
    the Hessian-vector products, ``converged`` whether every Lanczos run met its tolerance."""

    times: np.ndarray
    lam_min: np.ndarray
    lam_max: np.ndarray
    accel: np.ndarray
    grad_norm: np.ndarray
    n_hvp: int
    converged: bool


def curvature_along(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    trajectory: Any,
    *,
    times: Any = None,
    tol: float | None = None,
    max_iter: int | None = None,
    seed: int = 0,
    method: str = DEFAULT_HVP_METHOD,
) -> CurvaturePath:
    """``lambda_min`` and ``lambda_max`` of the Hessian (Lanczos, both ends of one Krylov
    space, :func:`lib.hessian.eigenvalues_along`, warm-started from the previous row's two
    eigenvectors, row ``i`` seeded with ``seed + i``) and ``||theta''|| = ||H grad L||`` at each
    row of ``trajectory`` (flattened parameters, e.g. a :class:`Trajectory` of the flow)."""
    rows = np.asarray(trajectory, dtype=np.float64)
    if rows.ndim != 2:
        raise ValueError(f"trajectory must be 2-D (times, n_params), got shape {rows.shape}")
    t = getattr(trajectory, "times", None) if times is None else _check_times(times)
    if t is None or len(t) != len(rows):
        raise ValueError("times must be given (one per row of trajectory)")
    flat = FlatLoss(model, loss_fn, inputs, targets)
    if rows.shape[1] != flat.n_params:
        raise ValueError(f"trajectory rows have {rows.shape[1]} entries, the model {flat.n_params}")
    path = eigenvalues_along(model, loss_fn, inputs, targets, rows, which="both", tol=tol,
                             max_iter=max_iter, seed=seed, seed_step=1, method=method,
                             normalize=False, nonfinite="raise", desc="curvature")
    accel = np.empty(len(rows))
    gnorm = np.empty(len(rows))
    for i in range(len(rows)):
        op = hvp_operator_from_loss(flat, torch.from_numpy(np.ascontiguousarray(rows[i])),
                                    method=method)
        accel[i] = float(op(op.grad).to(torch.float64).norm())
        gnorm[i] = float(op.grad.to(torch.float64).norm())
    return CurvaturePath(times=np.asarray(t, dtype=np.float64), lam_min=path.values[:, 0].copy(),
                         lam_max=path.values[:, 1].copy(), accel=accel, grad_norm=gnorm,
                         n_hvp=int(path.n_hvp.sum()) + len(rows),
                         converged=bool(path.converged.all()))


def negative_curvature_integral(times: Any, lam_min: Any) -> np.ndarray:
    """``int_0^t lambda_-(s) ds`` at each time, ``lambda_- = max(0, -lambda_min)``, by the
    trapezoidal rule on the given samples (``times[0]`` must be 0)."""
    t = _check_times(times)
    lm = np.asarray(lam_min, dtype=np.float64)
    if lm.shape != t.shape:
        raise ValueError(f"lam_min must have the shape of times {t.shape}, got {lm.shape}")
    if t[0] != 0.0:
        raise ValueError("times must start at 0")
    return cumulative_trapezoid(np.maximum(0.0, -lm), t, initial=0)


def first_order_bound(times: Any, lam_min: Any, accel: Any) -> np.ndarray:
    """The bound ``||C(t)|| <= (1/2) int_0^t exp(int_s^t lambda_-(r) dr) ||theta''(s)|| ds`` on the
    first-order gap coefficient (from ``d/dt ||C|| <= lambda_- ||C|| + ||theta''|| / 2``), by
    the trapezoidal rule on the samples; ``times[0]`` must be 0."""
    t = _check_times(times)
    a = np.asarray(accel, dtype=np.float64)
    if a.shape != t.shape:
        raise ValueError(f"accel must have the shape of times {t.shape}, got {a.shape}")
    big = negative_curvature_integral(t, lam_min)  # Lambda(t) = int_0^t lambda_-
    # (1/2) int_0^t exp(Lambda(t) - Lambda(s)) a(s) ds = (1/2) exp(Lambda(t)) int_0^t exp(-Lambda) a
    inner = cumulative_trapezoid(np.exp(-big) * a, t, initial=0)
    return 0.5 * np.exp(big) * inner


# ----------------------------------------------------------------------------- init scale
@dataclass
class CurvatureToLoss:
    """Negative curvature along a flow up to the time it reaches a loss level.

    ``times`` (from 0 to ``t_level``: uniform, or placed by :func:`monitor_times`), ``rows``
    (the flattened parameters there), ``loss``, ``lam_min``, ``lam_max`` at them,
    ``Lambda`` = ``int_0^t lambda_-`` (trapezoidal), ``t_level`` the flow time at which the loss
    first reaches ``level`` (a solver event), ``Lambda_level = Lambda[-1]``; ``n_grad_evals``,
    ``n_hvp`` the costs, ``converged`` whether every Lanczos run met its tolerance."""

    level: float
    times: np.ndarray
    rows: np.ndarray
    loss: np.ndarray
    lam_min: np.ndarray
    lam_max: np.ndarray
    Lambda: np.ndarray
    t_level: float
    Lambda_level: float
    n_grad_evals: int
    n_hvp: int
    converged: bool
    Lambda_check: float | None = None
    lam_min_check: np.ndarray | None = None


def monitor_times(times: Any, loss: Any, rows: Any, n_times: int) -> np.ndarray:
    """``n_times + 1`` times from ``times[0]`` to ``times[-1]`` equidistributing the monitor
    ``m = (t / T + (L_0 - L(t)) / (L_0 - L_end) + s(t) / s_end) / 3``: a third of the weight on
    time, a third on the loss decrease and a third on the arc length ``s`` in parameter space,
    all read off a fine sample (``times``, ``loss`` and ``rows`` of shape ``(len(times),
    n_params)``).  Points gather where the flow moves or the loss falls fast (where it leaves a
    plateau) without leaving long quiet stretches empty.  Guard: ``n_times <=`` :data:`MAX_TIMES`."""
    t = _check_times(times)
    n_times = check_count(n_times, "n_times", minimum=2, maximum=MAX_TIMES)
    lo = np.asarray(loss, dtype=np.float64)
    r = np.asarray(rows, dtype=np.float64)
    if lo.shape != t.shape or r.ndim != 2 or len(r) != len(t):
        raise ValueError(f"loss and rows must have one entry per time ({len(t)}), got "
                         f"{lo.shape} and {r.shape}")
    for name, arr in (("loss", lo), ("rows", r)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} must be finite (a NaN would silently weigh 0), got "
                             f"{int((~np.isfinite(arr)).sum())} non-finite entries")
    if len(t) < 2 or t[-1] <= t[0]:
        raise ValueError("times must span a positive interval")
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(r, axis=0), axis=1))])
    drop = np.maximum.accumulate(np.maximum(lo[0] - lo, 0.0))
    m = (t - t[0]) / (t[-1] - t[0])
    m = m + (drop / drop[-1] if drop[-1] > 0 else 0.0) + (arc / arc[-1] if arc[-1] > 0 else 0.0)
    out = np.interp(np.linspace(0.0, m[-1], n_times + 1), m, t)
    out[0], out[-1] = t[0], t[-1]
    return out


def curvature_to_loss(model: nn.Module, loss_fn: LossFn, inputs: torch.Tensor,
                      targets: torch.Tensor, level: float, *, t_max: float, n_times: int = 40,
                      rtol: float = 1e-9, atol: float = 1e-11,
                      tol: float | None = None, seed: int = 0,
                      sampling: str = "uniform", n_fine: int = 2000,
                      check: bool = False) -> CurvatureToLoss:
    """The gradient flow (DOP853, dense output, float64) until its loss first reaches
    ``level`` (``RuntimeError`` if not by ``t_max``), ``lambda_min``/``lambda_max`` (Lanczos,
    :func:`curvature_along`; Ritz values, so ``lambda_-`` and ``Lambda`` can only be
    underestimated apart from quadrature) at ``n_times + 1`` times from 0 to the level time,
    and ``Lambda(t) = int_0^t lambda_-``.  ``sampling="uniform"``: equally spaced times;
    ``"adaptive"``: :func:`monitor_times` on ``n_fine + 1`` equally spaced points of the dense
    output (loss evaluations only).  ``check=True`` also computes ``lambda_min`` at the
    midpoints of the grid (same flow) and returns ``Lambda_check`` (trapezoidal rule on the
    grid refined once) and ``lam_min_check`` (at the midpoints), so the quadrature and the
    peak of ``lambda_-`` can be checked against a refined grid.  For the initialisation-scale sweep of Elkabetz & Cohen's
    negative-curvature integral.  Guards: ``n_times``, ``n_fine <=`` :data:`MAX_TIMES`."""
    level, t_max = check_positive(level, "level"), check_positive(t_max, "t_max")
    n_times = check_count(n_times, "n_times", minimum=2, maximum=MAX_TIMES)
    if sampling not in ("uniform", "adaptive"):
        raise ValueError(f"sampling must be 'uniform' or 'adaptive', got {sampling!r}")
    n_fine = check_count(n_fine, "n_fine", minimum=2, maximum=MAX_TIMES)
    rtol, atol = check_positive(rtol, "rtol"), check_positive(atol, "atol")
    flat = FlatLoss(model, loss_fn, inputs, targets)
    counter = {"grad": 0, "loss": 0}
    y0 = _initial(flat, counter)
    if flat.loss(flat.theta0) <= level:
        raise ValueError(f"level ({level:g}) must be below the initial loss")

    def event(tt: float, y: np.ndarray) -> float:
        return flat.loss(torch.from_numpy(np.ascontiguousarray(y))) - level

    event.terminal, event.direction = True, -1  # type: ignore[attr-defined]
    sol = solve_ivp(_vector_field(flat, counter), (0.0, t_max), y0, method="DOP853", rtol=rtol,
                    atol=atol, events=event, dense_output=True)
    if sol.status != 1:
        raise RuntimeError(f"the flow did not reach loss {level:g} by t_max={t_max:g}")
    t_level = float(sol.t_events[0][0])
    t = np.linspace(0.0, t_level, n_times + 1)
    if sampling == "adaptive":
        fine = np.linspace(0.0, t_level, n_fine + 1)
        fine_rows = sol.sol(fine).T
        fine_rows[0] = y0
        t = monitor_times(fine, _losses(flat, fine_rows, counter), fine_rows, n_times)
    rows = sol.sol(t).T.copy()
    rows[0] = y0
    loss = _losses(flat, rows, counter)
    cp = curvature_along(model, loss_fn, inputs, targets, rows, times=t, tol=tol, seed=seed)
    lam_int = negative_curvature_integral(t, cp.lam_min)
    lam_check, mid_min, n_hvp, converged = None, None, cp.n_hvp, cp.converged
    if check:
        mid = 0.5 * (t[1:] + t[:-1])
        cm = curvature_along(model, loss_fn, inputs, targets, sol.sol(mid).T.copy(), times=mid,
                             tol=tol, seed=seed + len(t))
        both_t = np.empty(2 * len(t) - 1)
        both_t[0::2], both_t[1::2] = t, mid
        both = np.empty(2 * len(t) - 1)
        both[0::2], both[1::2] = cp.lam_min, cm.lam_min
        lam_check = float(negative_curvature_integral(both_t, both)[-1])
        mid_min, n_hvp, converged = cm.lam_min, n_hvp + cm.n_hvp, converged and cm.converged
    return CurvatureToLoss(level=level, times=t, rows=rows, loss=loss, lam_min=cp.lam_min,
                           lam_max=cp.lam_max, Lambda=lam_int, t_level=t_level,
                           Lambda_level=float(lam_int[-1]), n_grad_evals=counter["grad"],
                           n_hvp=n_hvp, converged=converged, Lambda_check=lam_check,
                           lam_min_check=mid_min)


# ----------------------------------------------------------------------------- toy problems
class FunctionModel(nn.Module):
    """A "model" whose only parameter is the vector ``theta`` and whose output is
    ``f(theta)``, so plain functions of ``theta`` go through the library (use with
    :func:`objective_loss`).  ``theta0`` (finite, non-empty) is copied in float64 unless another
    floating ``dtype`` is given (:func:`lib.exact.check_dtype`)."""

    def __init__(self, f: Callable[[torch.Tensor], torch.Tensor], theta0: Any,
                 dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        if not callable(f):
            raise TypeError(f"f must be callable, got {type(f).__name__}")
        t0 = torch.as_tensor(theta0, dtype=check_dtype(dtype, names=False)).reshape(-1).clone()
        if t0.numel() == 0 or not bool(torch.isfinite(t0).all()):
            raise ValueError(f"theta0 must be a non-empty finite vector, got {t0.tolist()[:4]}")
        self.f = f
        self.theta = nn.Parameter(t0)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.f(self.theta)


def objective_loss(output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The loss of a :class:`FunctionModel`: its output itself (``targets`` are ignored)."""
    return output.reshape(())


def as_problem(f: Callable[[torch.Tensor], torch.Tensor], theta0: Any,
               dtype: torch.dtype = torch.float64
               ) -> tuple[FunctionModel, LossFn, torch.Tensor, torch.Tensor]:
    """``(model, loss_fn, inputs, targets)`` for minimising ``f(theta)`` from ``theta0`` with
    :func:`gradient_flow`, :func:`gradient_descent` and :mod:`lib.hessian`."""
    model = FunctionModel(f, theta0, dtype)        # checks dtype and theta0
    dummy = torch.zeros(1, dtype=dtype)
    return model, objective_loss, dummy, dummy


# --------------------------------------------------------------------------- two-dimensional toys
def double_well(theta: Any, kappa: float) -> Any:
    """The tilted double well ``f(x, y) = x^2/2 + (y^2 - 1)^2/4 + kappa x y`` at ``theta =
    (x, y)`` (tensor or array): a saddle at the origin between two minima; ``kappa`` a finite
    real."""
    kappa = check_real(kappa, "kappa")
    x, y = theta[0], theta[1]
    return 0.5 * x**2 + 0.25 * (y**2 - 1) ** 2 + kappa * x * y


def double_well_gd_end(x: float, y: float, eta: float, steps: int,
                       kappa: float) -> tuple[float, float]:
    """GD on :func:`double_well` from ``(x, y)`` for ``steps`` steps, in plain Python floats
    (fast for millions of steps); the end point."""
    eta = check_positive(eta, "eta")
    steps = check_count(steps, "steps", minimum=0, maximum=MAX_STEPS)
    x, y = check_real(x, "x", nan=True, finite=False), check_real(y, "y", nan=True, finite=False)
    kappa = check_real(kappa, "kappa")
    for _ in range(steps):
        x, y = x - eta * (x + kappa * y), y - eta * (y * y * y - y + kappa * x)
    return x, y


def double_well_side(start: Any, delta: float, eta: float, horizon: float,
                     kappa: float) -> float:
    """Which minimum GD reaches: the sign of ``y`` after GD on :func:`double_well` from
    ``start + (0, delta)`` up to time ``horizon`` (``round(horizon / eta)`` steps)."""
    start = np.asarray(start, dtype=np.float64)
    if start.shape != (2,):
        raise ValueError(f"start must be a point (x, y), got shape {start.shape}")
    eta = check_positive(eta, "eta")
    steps = round(check_positive(horizon, "horizon") / eta)
    if steps > MAX_STEPS:
        raise ValueError(f"horizon / eta = {steps} steps exceed the size guard "
                         f"MAX_STEPS={MAX_STEPS}")
    delta = check_real(delta, "delta")
    _, y_end = double_well_gd_end(float(start[0]), float(start[1] + delta), eta, steps, kappa)
    return float(np.sign(y_end))


def double_well_separatrix(start: Any, eta: float, horizon: float, kappa: float,
                           lo: float = -0.05, hi: float = 0.05, iters: int = 30) -> float:
    """The offset ``delta*`` at which GD with step ``eta`` from ``start + (0, delta)`` switches
    minimum (:func:`double_well_side`), by ``iters`` bisections of ``[lo, hi]``; ``start``
    a finite point ``(x, y)``."""
    if not np.all(np.isfinite(np.asarray(start, dtype=np.float64))):
        raise ValueError(f"start must be a finite point (x, y), got {start!r}")
    lo, hi = check_real(lo, "lo"), check_real(hi, "hi")
    if not lo < hi:
        raise ValueError(f"need lo < hi, got lo={lo!r}, hi={hi!r}")
    iters = check_count(iters, "iters", maximum=1000)
    side_lo = double_well_side(start, lo, eta, horizon, kappa)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        same = double_well_side(start, mid, eta, horizon, kappa) == side_lo
        lo, hi = (mid, hi) if same else (lo, mid)
    return 0.5 * (lo + hi)


def escape_times(f: Callable[[torch.Tensor], torch.Tensor], starts: Any, times: Any, *,
                 radius: float = 0.5, rtol: float = 1e-12,
                 atol: float = 1e-15) -> tuple[np.ndarray, list[np.ndarray]]:
    """For the flow of ``f`` from each start: the first time in ``times`` after its closest
    approach to the origin at which it is at least ``radius`` away again (the time it lingers
    at a saddle at the origin), and its end point.  Returns ``(escape_times, end_points)``.
    The flows, one per start, are the tasks of a :func:`lib.sweep.run` (serial under the quick
    profile, worker processes under paper); ``f`` must then be picklable by cloudpickle."""
    radius = check_positive(radius, "radius")
    times = _check_times(times)
    task = functools.partial(_escape_one, f, times=times, radius=radius, rtol=rtol, atol=atol)
    out = sweep.run(task, list(starts), desc="escape times")
    return np.array([e for e, _ in out]), [end for _, end in out]


def _escape_one(f: Callable[[torch.Tensor], torch.Tensor], start: Any, *, times: np.ndarray,
                radius: float, rtol: float, atol: float) -> tuple[Any, np.ndarray]:
    """One task of :func:`escape_times`: the escape time and the end point of one flow."""
    tr = np.asarray(gradient_flow(*as_problem(f, start), times, rtol=rtol, atol=atol))
    r = np.linalg.norm(tr, axis=1)
    closest = np.argmin(r)
    return times[closest + np.argmax(r[closest:] >= radius)], tr[-1]


def evals_for_error(rows: Any, target: float) -> tuple[float, float]:
    """Gradient evaluations a solver needs for error ``target``, from its measured ``(evals,
    error)`` pairs ``rows``: log-log interpolation inside their range, extrapolation along the
    fitted power law outside it.  Returns ``(evals, p)``, ``p`` the fitted order in
    ``error ~ evals^-p``."""
    rows = sorted((float(n), float(e)) for n, e in rows)
    if len(rows) < 2 or not all(math.isfinite(v) and v > 0 for r in rows for v in r):
        raise ValueError(f"rows must hold at least two positive finite (evals, error) pairs, "
                         f"got {rows!r}")
    target = check_positive(target, "target")
    n, err = np.log([r[0] for r in rows]), np.log([r[1] for r in rows])
    slope, icpt = np.polyfit(n, err, 1)
    if err.min() <= np.log(target) <= err.max():
        return float(np.exp(np.interp(np.log(target), err[::-1], n[::-1]))), -slope
    return float(np.exp((np.log(target) - icpt) / slope)), -slope
