"""Plain full-batch gradient descent, the one training loop the chapters share.

:func:`gd` runs ``theta_{k+1} = theta_k - eta * grad L(theta_k)`` in a chosen dtype on a copy
of a model, records the loss and any *hooks* every ``record_every`` steps, and optionally

* injects multiplicative noise ``(1 + delta)``, ``delta ~ U[-s, s]`` i.i.d. per entry and
  step, into the **bias updates** (the perturbation model of Karner, Kazeev and Petersen,
  their Definition 2.3) or into the **bias values** after the step (a stronger model);
* applies L2 weight decay (``grad + weight_decay * theta``);
* splits the step as ``(eta * k) * (grad / k)`` (Sun et al.'s last-bit perturbation: the
  same update in exact arithmetic, different roundings in floating point; ``k = 1`` is
  plain GD bit for bit);
* records the size of every parameter's update (for the assumption on bias updates).

**Where the step is rounded.**  In float32 and float64 ``eta`` is stored in the format, the
update is ``u = fl(eta g)`` and ``p <- fl(p - u)``.  In float16 and bfloat16 the step is formed in
float32, as PyTorch's CPU kernels form sums and products of these formats (their float32
"opmath"): ``eta`` is held in float32, ``u = fl_32(eta g)`` (``g`` is exact in float32) and
``p <- fl_d(fl_32(p - u))``, one rounding to the format at the end.  So a step size below
float16's range (``1/lambda_max`` of a deep sawtooth) is not flushed to 0, while an update below
half an ulp of its parameter still rounds away.  (Measured on the CPU: ``Tensor.add_(g,
alpha=-eta)``, the step of ``torch.optim.SGD``, rounds ``alpha`` to the 16-bit format first, so
plain SGD in float16 would flush such a step; :func:`gd` does not.)

Only parameters with ``requires_grad=True`` are trained.  The loss is
``loss_fn(model(inputs), targets)`` on the full batch.  :func:`lib.flows.gradient_descent`
runs this loop too.

Hooks and helpers:

* :func:`sharpness_hook` -- the sharpness (top Hessian eigenvalue, Cohen et al. 2021) every
  ``k`` steps, by Lanczos warm-started from the previous eigenvector
  (:class:`lib.hessian.EigenTracker`), with the number of Hessian-vector products per
  estimate; :func:`sharpness_along` -- the same along a trajectory (e.g. the gradient flow,
  :func:`lib.hessian.eigenvalues_along`); :func:`edge_statistics` -- the step where the
  sharpness first reaches ``2/eta`` and the ratio ``sharpness / (2/eta)`` afterwards;
* :func:`piece_hooks` -- the exact and the visible piece counts of a 1-D network
  (:mod:`lib.pieces`), for the chapter *Floating-point error in backprop*;
* :func:`parameter_hook` -- flattened parameters every ``k`` steps;
* :func:`lastbit_family` -- Sun et al.'s family of runs ``fl(eta k) fl(g / k)``, with weight
  divergence and test accuracy (:func:`accuracy`, :func:`relative_l1_difference`).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from lib import hessian
from lib.config import progress
from lib.exact import (check_count, check_dtype, check_interval, check_positive, check_probability,
                       check_real)
from lib.pieces import piece_widths
from lib.seeding import check_seed, torch_generator

NOISE_TARGETS = ("bias_updates", "bias_values")
NARROW_DTYPES = (torch.float16, torch.bfloat16)
"""Formats whose GD step :func:`gd` forms in float32 (see its ``dtype`` parameter)."""

Hook = Callable[[nn.Module, int], Any]
#: The size guard of every GD loop of the library (:func:`gd`, :func:`lib.flows.gradient_descent`,
#: the fixed-step flows): at most this many steps, checked before any work.
MAX_STEPS = 10_000_000


@dataclass
class GDRun:
    """Result of :func:`gd`.

    ``model`` is the trained copy; ``history`` maps ``"step"``, ``"loss"``, each hook's name
    and (with ``record_updates``) ``"update/<parameter name>"`` to the values recorded at the
    recorded steps (NumPy arrays where the values are numbers, lists otherwise).
    ``diverged_at`` is the first step whose loss was not finite (training stopped there), or
    ``None``.  ``steps_done`` counts the updates applied.
    """

    model: nn.Module
    history: dict[str, Any]
    steps_done: int
    diverged_at: int | None = None
    config: dict[str, Any] = field(default_factory=dict)


def update_stats(update: torch.Tensor) -> dict[str, float]:
    """Summary of one parameter's update: max and mean of ``|u|``, the mean of ``1/|u|``
    over the non-zero entries (Karner et al.'s assumption (A) bounds this) and the number of
    zero entries.  Computed in float64; ``update`` a non-empty tensor (else ``TypeError`` /
    ``ValueError`` naming it)."""
    if not isinstance(update, torch.Tensor):
        raise TypeError(f"update must be a torch.Tensor, got {type(update).__name__}")
    if update.numel() == 0:
        raise ValueError("update must hold at least one entry, got an empty tensor")
    a = update.detach().abs().to(torch.float64).reshape(-1)
    nonzero = a[a > 0]
    has_nan = bool(torch.isnan(a).any())      # a NaN update gives NaN statistics, never 0
    return {
        "max_abs": float(a.max()) if a.numel() else 0.0,
        "mean_abs": float(a.mean()) if a.numel() else 0.0,
        "mean_reciprocal": (math.nan if has_nan else float((1.0 / nonzero).mean())
                            if nonzero.numel() else math.inf),
        "n_zero": int(a.numel() - nonzero.numel()),
    }


def _check_args(lr: float, steps: int, record_every: int, noise: float, noise_on: str,
                weight_decay: float, lastbit_k: int, dtype: torch.dtype | None, seed: int
                ) -> tuple[float, int, float, float, int]:
    """Checked ``(lr, steps, noise, weight_decay, seed)`` of :func:`gd` (reals may be Python,
    NumPy or 0-d torch scalars; bools and strings are refused; ``steps <= MAX_STEPS``)."""
    lr = check_positive(lr, "lr (step size)")
    steps = check_count(steps, "steps", 0, maximum=MAX_STEPS)
    check_count(record_every, "record_every")
    check_count(lastbit_k, "lastbit_k")
    noise = check_probability(noise, "noise (level s of delta ~ U[-s, s])")
    if noise_on not in NOISE_TARGETS:
        raise ValueError(f"noise_on must be one of {NOISE_TARGETS}, got {noise_on!r}")
    weight_decay = check_real(weight_decay, "weight_decay", ge=0)
    if dtype is not None:
        check_dtype(dtype)
    return lr, steps, noise, weight_decay, check_seed(seed)


def _check_hooks(hooks: Mapping[str, Hook] | None) -> dict[str, Hook]:
    hooks = dict(hooks or {})
    reserved = {"step", "loss"}
    if reserved & hooks.keys() or any(k.startswith("update/") for k in hooks):
        raise ValueError(f"hook names must not be {sorted(reserved)} or start with 'update/'")
    return hooks


def _training_copy(model: nn.Module, dtype: Any, inputs: torch.Tensor, targets: torch.Tensor
                   ) -> tuple[nn.Module, list[tuple[str, torch.Tensor]], torch.Tensor, torch.Tensor]:
    """A copy of ``model`` in ``dtype`` (``None``: its own), its trained parameters, and the
    inputs and (float) targets in their dtype and on their device."""
    net = copy.deepcopy(model)
    if dtype is not None:
        net = net.to(check_dtype(dtype))
    params = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters (requires_grad=True)")
    dtype, device = params[0][1].dtype, params[0][1].device
    x = inputs.to(device=device, dtype=dtype)
    y = targets.to(device=device, dtype=dtype) if targets.is_floating_point() else targets.to(device)
    return net, params, x, y


def _check_problem(model: Any, loss_fn: Any, inputs: Any, targets: Any) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError("loss_fn must be callable")
    hessian.check_data(inputs, targets)
    if inputs.ndim == 0:
        raise ValueError("inputs must contain at least one sample, got a 0-d tensor")
    for name, p in model.named_parameters():
        if p.requires_grad and not bool(torch.isfinite(p).all()):
            raise ValueError(f"the model's parameters must be finite: {name!r} holds "
                             f"{int((~torch.isfinite(p)).sum())} non-finite entries")


def _flat64(model: nn.Module) -> np.ndarray:
    """The trainable parameters of ``model`` flattened into one float64 NumPy vector (a copy)."""
    return torch.cat([p.detach().reshape(-1).to(torch.float64).cpu()
                      for p in model.parameters() if p.requires_grad]).numpy()


def _is_bias(name: str) -> bool:
    return name == "bias" or name.endswith(".bias")


def gd(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    lr: float,
    steps: int,
    dtype: torch.dtype | None = None,
    record_every: int = 1,
    hooks: Mapping[str, Hook] | None = None,
    record_updates: bool = False,
    noise: float = 0.0,
    noise_on: str = "bias_updates",
    seed: int = 0,
    weight_decay: float = 0.0,
    lastbit_k: int = 1,
    stop_on_nonfinite: bool = True,
    desc: str | None = None,
) -> GDRun:
    """Full-batch gradient descent on a copy of ``model``.

    Parameters
    ----------
    model, loss_fn, inputs, targets
        The loss is ``loss_fn(model(inputs), targets)``; a copy of ``model`` is trained (in its
        own mode).  Empty or non-finite data or parameters raise ``ValueError`` naming them.
    lr, steps
        Step size ``eta > 0`` (a Python, NumPy or 0-d torch real) and number of updates (an
        integer, at most :data:`MAX_STEPS`: a size guard checked before any work).
    dtype
        Format of the parameters, inputs, float targets, forward and backward pass (``None``:
        the model's).  The step, as the module docstring says: ``p <- fl(p - fl(eta) g)`` in
        float32/float64; in float16/bfloat16 ``p <- fl_d(fl_32(p - fl_32(eta_32 g)))``.
    record_every
        Record at steps ``0, k, 2k, ...`` and after the last update.  At a recorded step the
        loss and the hooks see the parameters *before* that step's update; ``"update/..."``
        entries are the update applied at that step (recorded only where one was applied).
    hooks
        ``{name: fn(model, step) -> value}`` evaluated at the recorded steps (e.g. exact piece
        counts, the sharpness); hooks run under ``torch.no_grad`` is *not* enforced, so
        hooks that differentiate (Hessian-vector products) work.
    record_updates
        Record :func:`update_stats` of every trained parameter's update.
    noise, noise_on, seed
        Multiplicative noise level ``s`` in ``[0, 1]`` on ``"bias_updates"`` (``b - eta*g*(1+delta)``)
        or ``"bias_values"`` (``(b - eta*g)*(1+delta)``); ``delta`` is drawn in float64 from a
        generator seeded by ``seed``; the perturbed value is formed in float64 and converted to
        ``dtype`` by torch (one rounding for float32; a perturbed bias update of float16/bfloat16
        stays in float32 until the step's final rounding, a perturbed bias value is converted
        through float32, so possibly rounded twice), and noise far below the format's unit
        roundoff may round away.  ``noise=0`` is plain GD bit for bit.
    weight_decay
        L2 coefficient ``lambda``: the gradient becomes ``g + lambda*theta``.
    lastbit_k
        Apply the step as ``fl(eta*k) * fl(g/k)`` (Sun et al.); ``1`` is plain GD.
    stop_on_nonfinite
        Stop at the first step whose loss is ``inf``/``nan`` and report it in ``diverged_at``.
    desc
        Label of the progress bar.
    """
    _check_problem(model, loss_fn, inputs, targets)
    lr, steps, noise, weight_decay, seed = _check_args(lr, steps, record_every, noise, noise_on,
                                                       weight_decay, lastbit_k, dtype, seed)
    hooks = _check_hooks(hooks)
    net, params, x, y = _training_copy(model, dtype, inputs, targets)
    work_dtype, device = params[0][1].dtype, params[0][1].device
    step_fn = _Step(lr, work_dtype, device, lastbit_k, weight_decay, noise, noise_on,
                    torch_generator(seed, device="cpu") if noise > 0 else None)
    history: dict[str, list] = {"step": [], "loss": [], **{name: [] for name in hooks}}
    if record_updates:
        history.update({f"update/{name}": [] for name, _ in params})

    diverged_at: int | None = None
    steps_done = 0
    for step in progress(range(steps + 1), desc=desc or "GD", total=steps + 1):
        net.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), y)
        loss_value = float(loss.detach())
        diverging = stop_on_nonfinite and not math.isfinite(loss_value)
        recorded = step % record_every == 0 or step == steps or diverging
        if recorded:
            history["step"].append(step)
            history["loss"].append(loss_value)
            for name, hook in hooks.items():
                history[name].append(hook(net, step))
        if diverging:
            diverged_at = step
            break
        if step == steps:
            break
        grads = torch.autograd.grad(loss, [p for _, p in params])
        step_fn(params, grads, history if recorded and record_updates else None)
        steps_done += 1

    config = {"lr": lr, "steps": steps, "dtype": str(work_dtype), "noise": noise,
              "noise_on": noise_on, "weight_decay": weight_decay, "lastbit_k": lastbit_k,
              "seed": seed}
    return GDRun(model=net, history=_pack_history(history), steps_done=steps_done,
                 diverged_at=diverged_at, config=config)


def step_dtype(dtype: Any) -> torch.dtype:
    """The format in which :func:`gd` holds ``eta`` and forms ``eta g`` and ``p - eta g`` for
    parameters in ``dtype``: float32 for float16 and bfloat16, ``dtype`` itself otherwise."""
    dtype = check_dtype(dtype)
    return torch.float32 if dtype in NARROW_DTYPES else dtype


class _Step:
    """One GD update of every trained parameter, in place: ``p - fl(eta k) fl(g / k)`` (plain
    ``p - eta g`` for ``k = 1``), with weight decay and the multiplicative noise of :func:`gd`."""

    def __init__(self, lr: float, dtype: torch.dtype, device: Any, k: int, weight_decay: float,
                 noise: float, noise_on: str, generator: torch.Generator | None) -> None:
        # float16/bfloat16: eta, eta*g and p - eta*g in float32 (one rounding to the format at the
        # end), so a step size that float32 holds is never flushed by the narrow format's range
        self.dtype = dtype
        self.op_dtype = step_dtype(dtype)
        self.lr_t = torch.tensor(lr, dtype=self.op_dtype, device=device)
        self.lr_k = self.lr_t * k if k != 1 else self.lr_t  # fl(eta * k) in the operation format
        self.k, self.weight_decay = k, weight_decay
        self.noise, self.noise_on, self.generator = noise, noise_on, generator

    def __call__(self, params: list[tuple[str, torch.Tensor]], grads: tuple[torch.Tensor, ...],
                 history: dict[str, list] | None) -> None:
        k, noise = self.k, self.noise
        with torch.no_grad():
            for (name, p), g in zip(params, grads):
                narrow = self.op_dtype != p.dtype
                if narrow:      # exact: every float16/bfloat16 number is a float32 number
                    g = g.to(self.op_dtype)
                if self.weight_decay:
                    g = g + self.weight_decay * (p.to(self.op_dtype) if narrow else p)
                update = self.lr_k * (g / k) if k != 1 else self.lr_t * g
                if noise > 0 and self.noise_on == "bias_updates" and _is_bias(name):
                    update = _perturb(update, noise, self.generator)
                if narrow:      # fl_d(fl_32(p - fl_32(eta g))): one rounding to the format
                    p.copy_((p.to(self.op_dtype) - update).to(p.dtype))
                else:
                    p.sub_(update)
                if noise > 0 and self.noise_on == "bias_values" and _is_bias(name):
                    p.copy_(_perturb(p, noise, self.generator))
                if history is not None:
                    history[f"update/{name}"].append(update_stats(update))


def _pack_history(history: dict[str, list]) -> dict[str, Any]:
    """Recorded values as NumPy arrays where they are numbers (lists otherwise)."""
    out: dict[str, Any] = {}
    for name, values in history.items():
        if name.startswith("update/"):
            out[name] = {key: np.array([v[key] for v in values]) for key in
                         ("max_abs", "mean_abs", "mean_reciprocal", "n_zero")}
        else:
            try:
                arr = np.asarray(values, dtype=float)
                out[name] = arr if arr.ndim == 1 else values
            except (TypeError, ValueError):
                out[name] = values
    out["step"] = np.asarray(history["step"], dtype=int)
    return out


def _perturb(value: torch.Tensor, s: float, generator: torch.Generator) -> torch.Tensor:
    """``fl(value * (1 + delta))`` with ``delta ~ U[-s, s]`` i.i.d. per entry: the product is
    formed in float64 and converted to ``value``'s format by torch (for float16/bfloat16
    through float32)."""
    delta = (torch.rand(value.shape, generator=generator, dtype=torch.float64) * 2 - 1) * s
    perturbed = value.to(torch.float64) * (1 + delta.to(value.device))
    return perturbed.to(value.dtype)


# ----------------------------------------------------------------------------- sharpness
class SharpnessHook:
    """A :func:`gd` hook that records the sharpness (Cohen et al. 2021): the top eigenvalue(s)
    of the training-loss Hessian, every ``every`` steps.

    Each estimate is :func:`lib.hessian.eigenvalues` (``which="top"``; Lanczos on exact Hessian-vector
    products in the model's dtype, the Krylov space capped at ``max_iter``), warm-started from
    the previous estimate's top eigenvector(s) (``warm_start``), so consecutive estimates along
    a trajectory need few products.  Called as ``hook(model, step)`` it returns the top
    eigenvalue (a float; ``k > 1``: an array of the ``k`` largest, largest first) at the steps
    divisible by ``every`` and ``nan`` at the others (so ``gd(..., record_every=1)`` can record
    the loss at every step and the sharpness every ``every``).  Non-finite parameters or
    Hessian-vector products give ``nan`` (GD diverging).

    After a run: ``steps``, ``values`` (``(n,)`` or ``(n, k)``), ``n_hvp`` (products per
    estimate), ``converged`` and ``seconds`` (wall time per estimate) list the estimates;
    :meth:`result` returns them as NumPy arrays.  ``inputs``/``targets`` are cast to the
    model's dtype and device at each call (as :func:`gd` does), so the hook works on the
    training copy in any format.
    """

    def __init__(self, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 inputs: torch.Tensor, targets: torch.Tensor, *, every: int = 1, k: int = 1,
                 tol: float | None = None, max_iter: int | None = None, seed: int = 0,
                 method: str | None = None, warm_start: bool = True) -> None:
        method = _check_sharpness(loss_fn, inputs, targets, every, k, tol, max_iter, method,
                                  warm_start)
        self.loss_fn, self.inputs, self.targets = loss_fn, inputs, targets
        self.every, self.k, self.tol, self.max_iter = every, k, tol, max_iter
        self.seed, self.method, self.warm_start = check_seed(seed), method, warm_start
        self._tracker = hessian.EigenTracker(loss_fn, inputs, targets, which="top", k=k, tol=tol,
                                             max_iter=max_iter, seed=self.seed, method=method,
                                             warm_start=warm_start)
        self.reset()

    def reset(self) -> None:
        """Forget the recorded estimates and the warm start."""
        self.steps: list[int] = []
        self.values: list[Any] = []
        self.n_hvp: list[int] = []
        self.converged: list[bool] = []
        self.seconds: list[float] = []
        self._tracker.reset()

    @property
    def vector(self) -> torch.Tensor | None:
        """The warm start of the next estimate (``None`` before the first)."""
        return self._tracker.vector

    def _nan(self) -> Any:
        return math.nan if self.k == 1 else np.full(self.k, math.nan)

    def evaluate(self, model: nn.Module, step: int = -1,
                 theta: torch.Tensor | np.ndarray | None = None) -> Any:
        """The sharpness of ``model`` (at the flat parameters ``theta`` if given), recorded
        under ``step``; always computed (no ``every`` test)."""
        t0 = time.perf_counter()
        values, n_hvp, ok = self._tracker(model, theta)
        value = float(values[0]) if self.k == 1 else values.copy()
        self.steps.append(int(step))
        self.values.append(value)
        self.n_hvp.append(int(n_hvp))
        self.converged.append(bool(ok))
        self.seconds.append(time.perf_counter() - t0)
        return value

    def __call__(self, model: nn.Module, step: int) -> Any:
        if step % self.every:
            return self._nan()
        return self.evaluate(model, step)

    def result(self) -> dict[str, np.ndarray]:
        """The recorded estimates as arrays: ``step``, ``sharpness`` (``(n,)`` or ``(n, k)``),
        ``n_hvp``, ``converged``, ``seconds``."""
        values = np.asarray(self.values, dtype=float) if self.values else np.empty((0,))
        return {"step": np.asarray(self.steps, dtype=int), "sharpness": values,
                "n_hvp": np.asarray(self.n_hvp, dtype=int),
                "converged": np.asarray(self.converged, dtype=bool),
                "seconds": np.asarray(self.seconds, dtype=float)}


def sharpness_hook(
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    every: int = 1,
    k: int = 1,
    tol: float | None = None,
    max_iter: int | None = None,
    seed: int = 0,
    method: str | None = None,
    warm_start: bool = True,
) -> SharpnessHook:
    """A :class:`SharpnessHook` for :func:`gd`: ``hooks={"sharpness": sharpness_hook(loss_fn,
    x, y, every=20)}`` records the top Hessian eigenvalue every 20 steps (``nan`` between),
    warm-started from the previous eigenvector; ``hook.result()["n_hvp"]`` gives the
    Hessian-vector products per estimate.  ``tol``: Lanczos residual tolerance relative to
    ``||H||`` (default :func:`lib.hessian.default_tol` of the model's dtype); ``max_iter``: the
    largest Krylov space (default :func:`lib.hessian.lanczos`'s); ``method``: the HVP method
    (default :data:`lib.hessian.DEFAULT_HVP_METHOD`)."""
    return SharpnessHook(loss_fn, inputs, targets, every=every, k=k, tol=tol, max_iter=max_iter,
                         seed=seed, method=method, warm_start=warm_start)


def sharpness_along(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    thetas: Any,
    *,
    steps: Any = None,
    k: int = 1,
    tol: float | None = None,
    max_iter: int | None = None,
    seed: int = 0,
    method: str | None = None,
    desc: str | None = None,
) -> dict[str, np.ndarray]:
    """The sharpness at each row of ``thetas`` (flattened trainable parameters of ``model``,
    e.g. a :class:`lib.flows.Trajectory` of the gradient flow), warm-started row to row as in
    :class:`SharpnessHook`; returns its :meth:`SharpnessHook.result` (``step`` = ``steps`` or
    the row index).  ``model`` supplies the architecture and dtype and is not modified.
    Guard: ``k`` at most the number of trainable parameters, checked before any work."""
    method = _check_sharpness(loss_fn, inputs, targets, 1, k, tol, max_iter, method, True)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    k = check_count(k, "k", maximum=max(n_params, 1))
    n_rows = np.asarray(thetas).shape[0] if np.ndim(thetas) == 2 else 0
    labels = np.arange(n_rows) if steps is None else np.asarray(steps)
    if n_rows and labels.shape != (n_rows,):
        raise ValueError(f"steps must have one entry per row of thetas ({n_rows}), got shape {labels.shape}")
    path = hessian.eigenvalues_along(model, loss_fn, inputs, targets, thetas, which="top", k=k,
                                     tol=tol, max_iter=max_iter, seed=seed, method=method,
                                     desc=desc or "sharpness")
    return {"step": labels.astype(int), "sharpness": path.values[:, 0].copy() if k == 1
            else path.values, "n_hvp": path.n_hvp, "converged": path.converged,
            "seconds": path.seconds}


def _check_sharpness(loss_fn: Any, inputs: Any, targets: Any, every: Any, k: Any, tol: Any,
                     max_iter: Any, method: str | None, warm_start: Any) -> str:
    """Checked arguments of :class:`SharpnessHook`; returns the HVP method."""
    if not callable(loss_fn):
        raise TypeError("loss_fn must be callable")
    for name, tensor in (("inputs", inputs), ("targets", targets)):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    check_count(every, "every")
    check_count(k, "k")
    if tol is not None:
        check_positive(tol, "tol")
    if max_iter is not None:
        check_count(max_iter, "max_iter")
    method = hessian.DEFAULT_HVP_METHOD if method is None else method
    if method not in hessian.HVP_METHODS:
        raise ValueError(f"method must be one of {hessian.HVP_METHODS}, got {method!r}")
    if not isinstance(warm_start, bool):
        raise TypeError(f"warm_start must be a bool, got {type(warm_start).__name__}")
    return method


def edge_statistics(steps: Any, sharpness: Any, lr: float, *, after: int = 0) -> dict[str, Any]:
    """Summary of a GD run at the edge of stability (Cohen et al. 2021).

    ``steps``/``sharpness``: the recorded estimates (``nan`` entries are ignored).  Returns
    ``crossing``: the first recorded step with ``sharpness >= 2/lr`` (``None`` if never), and
    over the estimates at steps ``>= crossing + after``: ``n``, ``mean``, ``std`` (population),
    ``min`` and ``max`` of the ratio ``sharpness / (2/lr)`` (``nan`` when there are none), and
    ``peak``: the largest ratio over all estimates."""
    lr = check_positive(lr, "lr (step size)")
    s = np.asarray(steps, dtype=float)
    v = np.asarray(sharpness, dtype=float)
    if s.ndim != 1 or s.shape != v.shape:
        raise ValueError(f"steps and sharpness must be 1-D of the same length, got {s.shape}, {v.shape}")
    after = check_count(after, "after", minimum=0)
    ok = np.isfinite(v)
    s, v = s[ok], v[ok]
    ratio = v * lr / 2.0
    hit = np.flatnonzero(ratio >= 1.0)
    out: dict[str, Any] = {"crossing": None, "n": 0, "mean": math.nan, "std": math.nan,
                           "min": math.nan, "max": math.nan,
                           "peak": float(ratio.max()) if ratio.size else math.nan}
    if hit.size == 0:
        return out
    crossing = int(s[hit[0]])
    window = ratio[s >= crossing + after]
    out.update({"crossing": crossing, "n": int(window.size), "peak": float(ratio.max())})
    if window.size:
        out.update({"mean": float(window.mean()), "std": float(window.std()),
                    "min": float(window.min()), "max": float(window.max())})
    return out


def piece_hooks(min_width: float, interval: Any = (0.0, 1.0)) -> dict[str, Hook]:
    """Hooks for :func:`gd`: ``"pieces"`` (the exact count of :func:`lib.pieces.count_pieces`)
    and ``"visible"`` (pieces wider than ``min_width``, :func:`lib.pieces.piece_widths`) of the
    trained network on ``interval``, one piece analysis per recorded step.  ``interval`` is
    checked here (:func:`lib.exact.check_interval`), not at the first recorded step."""
    min_width = check_real(min_width, "min_width", ge=0)
    check_interval(interval)
    cache: dict[tuple[int, int, bytes], np.ndarray] = {}

    def widths(model: nn.Module, step: int) -> np.ndarray:
        state = b"".join(p.detach().to("cpu", torch.float64).numpy().tobytes()
                         for p in model.parameters())
        key = (id(model), step, state)
        if key not in cache:
            cache.clear()
            cache[key] = piece_widths(model, interval)
        return cache[key]

    return {"pieces": lambda m, s: int(widths(m, s).size),
            "visible": lambda m, s: int((widths(m, s) > min_width).sum())}


class ParameterHook:
    """A :func:`gd` hook that keeps a float64 copy of the flattened trainable parameters (in
    the order of ``model.parameters()``) at the steps divisible by ``every``; returns ``0.0``
    (so nothing large lands in the run's history).  ``steps`` and :meth:`array` give them."""

    def __init__(self, every: int = 1) -> None:
        self.every = check_count(every, "every")
        self.steps: list[int] = []
        self.values: list[np.ndarray] = []

    def __call__(self, model: nn.Module, step: int) -> float:
        if step % self.every == 0:
            self.steps.append(int(step))
            self.values.append(_flat64(model))
        return 0.0

    def array(self) -> np.ndarray:
        """The kept parameter vectors as a float64 array ``(len(steps), n_params)``."""
        if not self.values:
            return np.empty((0, 0))
        return np.stack(self.values)


def parameter_hook(every: int = 1) -> ParameterHook:
    """A :class:`ParameterHook`: ``hooks={"theta": parameter_hook(20)}`` keeps the flattened
    parameters every 20 steps (for distances to a gradient-flow trajectory or another run)."""
    return ParameterHook(every)


# ----------------------------------------------------------------------------- last bit
def accuracy(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of rows whose largest output is the label: ``mean(argmax model(x) == label)``
    (``labels``: int class indices; the model is evaluated in its own dtype, without grad, in
    eval mode, and left unchanged).  NaN outputs give a NaN accuracy."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    for name, tensor in (("inputs", inputs), ("labels", labels)):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if labels.is_floating_point() or labels.ndim != 1 or labels.shape[0] != inputs.shape[0]:
        raise ValueError(f"labels must be a 1-D integer tensor with one entry per input row, "
                         f"got dtype {labels.dtype}, shape {tuple(labels.shape)}")
    if labels.shape[0] == 0:
        raise ValueError("inputs must contain at least one row")
    param = next(iter(model.parameters()), None)
    x = inputs if param is None else inputs.to(device=param.device, dtype=param.dtype)
    with torch.no_grad(), hessian.evaluation_mode(model):
        out = model(x)
    if bool(torch.isnan(out).any()):
        return math.nan
    pred = out.argmax(dim=1).to(labels.device)
    return float((pred == labels).to(torch.float64).mean())


def relative_l1_difference(a: Any, b: Any) -> float:
    """Sun et al.'s weight-divergence measure ``2 mean(|a - b| / (|a| + |b|))`` over the
    entries (entries where both are zero count as 0); it lies in ``[0, 2]``.  Float64; a NaN
    entry gives NaN."""
    x = np.asarray(a, dtype=np.float64).reshape(-1)
    y = np.asarray(b, dtype=np.float64).reshape(-1)
    if x.shape != y.shape or x.size == 0:
        raise ValueError(f"a and b must have the same non-zero size, got {x.size} and {y.size}")
    den = np.abs(x) + np.abs(y)
    num = np.abs(x - y)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = np.where(den == 0, 0.0, num / np.where(den == 0, 1.0, den))
    return float(2.0 * q.mean())


@dataclass
class LastBitFamily:
    """Result of :func:`lastbit_family`.

    ``ks``: the split factors, the first is the reference; ``steps``: the steps recorded in
    the reference run.  ``divergence`` ``(len(ks), len(steps))``: relative distance
    ``||theta^(k) - theta^(ref)|| / ||theta^(ref)||`` at each recorded step (``nan`` after a
    run stopped); ``rel_l1``: Sun et al.'s average relative L1 difference
    (:func:`relative_l1_difference`) at the same steps; ``bitwise_equal``: whether each run's
    final parameters equal the reference's bit for bit; ``final_loss``; ``test_accuracy``
    (``None`` without test data); ``runs``: the :class:`GDRun` of each ``k``.
    """

    ks: tuple[int, ...]
    steps: np.ndarray
    divergence: np.ndarray
    rel_l1: np.ndarray
    bitwise_equal: np.ndarray
    final_loss: np.ndarray
    test_accuracy: np.ndarray | None
    runs: dict[int, GDRun]

    @property
    def reference(self) -> int:
        return self.ks[0]


def lastbit_family(
    model: nn.Module, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    inputs: torch.Tensor, targets: torch.Tensor, *, lr: float, steps: int,
    ks: tuple[int, ...] | list[int] = (1, 3, 5, 7, 9, 11), dtype: torch.dtype | None = None,
    weight_decay: float = 0.0, record_every: int = 1, test_inputs: torch.Tensor | None = None,
    test_labels: torch.Tensor | None = None, desc: str | None = None,
) -> LastBitFamily:
    """Sun et al.'s last-bit perturbation family: GD from the same start with the step applied
    as ``fl(lr * k) * fl(g / k)`` for each ``k`` in ``ks`` (identical in exact arithmetic,
    different in the last bits; :func:`gd` with ``lastbit_k=k``).  The first ``k`` is the
    reference (use ``k = 1``: plain GD); every other run is compared with it at the recorded
    steps (weight divergence, :class:`LastBitFamily`), and with ``test_inputs``/``test_labels``
    the final test accuracy of each run is measured (:func:`accuracy`).

    Sun et al. (arXiv 2206.02001, code ``sunyx523/surprising-instabilities``) use
    ``k = 1, 3, ..., 11`` with SGD; here the loop is full-batch GD (no momentum).  Powers of two
    leave the update unchanged in binary floating point.  Memory: the reference's parameters
    at every recorded step, in float64.
    """
    ks = tuple(ks)
    if not ks:
        raise ValueError("ks must contain at least one split factor")
    ks = tuple(check_count(kk, f"ks[{i}]") for i, kk in enumerate(ks))
    if len(set(ks)) != len(ks):
        raise ValueError(f"ks must be distinct, got {ks!r}")
    if (test_inputs is None) != (test_labels is None):
        raise ValueError("give both test_inputs and test_labels, or neither")
    keep = ParameterHook(1)  # gd calls hooks only at its recorded steps
    runs: dict[int, GDRun] = {}
    ref = ks[0]
    runs[ref] = gd(model, loss_fn, inputs, targets, lr=lr, steps=steps, dtype=dtype,
                   record_every=record_every, hooks={"_snapshot": keep},
                   weight_decay=weight_decay, lastbit_k=ref,
                   desc=f"{desc or 'last bit'} k={ref}")
    snapshots = dict(zip(keep.steps, keep.values))
    ref_steps = runs[ref].history["step"]
    ref_norm = {s: float(np.linalg.norm(v)) for s, v in snapshots.items()}
    div = np.full((len(ks), len(ref_steps)), np.nan)
    rel = np.full((len(ks), len(ref_steps)), np.nan)
    div[0] = 0.0
    rel[0] = 0.0
    column = {int(s): j for j, s in enumerate(ref_steps)}
    ref_final = _flat64(runs[ref].model)
    equal = np.zeros(len(ks), dtype=bool)
    equal[0] = True
    for i, kk in enumerate(ks[1:], start=1):
        def compare(m: nn.Module, step: int, i: int = i) -> float:
            if step in snapshots:
                theta = _flat64(m)
                d = float(np.linalg.norm(theta - snapshots[step]))
                div[i, column[step]] = d / ref_norm[step] if ref_norm[step] > 0 else d
                rel[i, column[step]] = relative_l1_difference(theta, snapshots[step])
            return 0.0

        runs[kk] = gd(model, loss_fn, inputs, targets, lr=lr, steps=steps, dtype=dtype,
                      record_every=record_every, hooks={"_compare": compare},
                      weight_decay=weight_decay, lastbit_k=kk,
                      desc=f"{desc or 'last bit'} k={kk}")
        final = _flat64(runs[kk].model)
        equal[i] = final.shape == ref_final.shape and bool(np.array_equal(final, ref_final))
    for run in runs.values():
        run.history.pop("_snapshot", None)
        run.history.pop("_compare", None)
    final_loss = np.array([runs[kk].history["loss"][-1] for kk in ks], dtype=float)
    acc = None
    if test_inputs is not None and test_labels is not None:
        acc = np.array([accuracy(runs[kk].model, test_inputs, test_labels) for kk in ks])
    return LastBitFamily(ks=ks, steps=np.asarray(ref_steps, dtype=int), divergence=div,
                         rel_l1=rel, bitwise_equal=equal, final_loss=final_loss,
                         test_accuracy=acc, runs=runs)
