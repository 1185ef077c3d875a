"""Hessians of training losses: Hessian-vector products, Lanczos extreme eigenvalues, dense
Hessians of small models.

Everything here is about the loss ``L(theta) = loss_fn(model(inputs), targets)`` as a function
of the model's **trainable parameters flattened into one vector** ``theta`` (in the order of
``model.named_parameters()``; parameters with ``requires_grad=False`` and buffers are held
fixed).  The computation runs in the parameters' dtype; ``inputs`` must have that dtype.

* :class:`FlatLoss` -- the loss, its gradient and Hessian-vector products (HVPs) on flat vectors.
* :func:`hvp_operator` -- the Hessian at one point as a linear operator ``v -> H v`` that
  counts its products.  Exact methods: ``"double_backward"`` (``torch.autograd.grad`` with
  ``create_graph=True``, the gradient's graph kept for all products at that point; the
  default, being the faster), ``"func"`` (``torch.func``: reverse-over-reverse through
  ``torch.func.vjp`` of ``torch.func.grad``, linearised once per point) and ``"func_jvp"``
  (``torch.func`` forward-over-reverse, recomputed for each product, several times slower).
  The chapter *GD vs gradient flow* measures all three.
* :func:`lanczos` -- Lanczos with full reorthogonalisation for the extreme eigenvalues of a
  symmetric operator, with a residual tolerance relative to the operator's norm (so it does
  not stall near minima, where ``scipy.sparse.linalg.eigsh(which='SA')`` asks for a residual
  relative to an eigenvalue close to zero), warm starts and a count of products.
* :func:`eigenvalues` -- the one entry point: the sharpness ``lambda_max`` (Cohen et al. 2021),
  ``lambda_min`` (Elkabetz & Cohen 2021) or both ends of a model's loss Hessian (``which``).
* :class:`EigenTracker` and :func:`eigenvalues_along` -- eigenvalues along a trajectory, each
  Lanczos run warm-started from the previous point's eigenvectors, mixed with a random
  vector, with a cold start every few calls (a warm start alone could certify the second
  eigenpair after the top two swap).
* :func:`dense_hessian` -- the full ``(P, P)`` Hessian (``torch.func.jacrev`` of
  ``torch.func.grad``), for tests and small models.

Ritz values are inner bounds: the top Ritz value is at most ``lambda_max`` and the bottom one
at least ``lambda_min`` (Cauchy interlacing), so sharpness and ``|lambda_min|`` are never
overestimated, and integrals of them are lower bounds.

**The model is never changed.**  Every evaluation of a model here (and in :mod:`lib.flows`,
:mod:`lib.stability`, :func:`lib.train.accuracy` and the hooks of :func:`lib.train.gd`) runs
in **eval mode** (:func:`evaluation_mode`: a train-mode BatchNorm uses its running statistics
and does not update them, Dropout is the identity), and every module's ``training`` flag is
restored afterwards; parameters are read through ``torch.func.functional_call``, buffers are
copied, ``requires_grad`` flags are untouched.  Empty data raise ``ValueError`` naming
``inputs``/``targets``; non-finite data, parameters or losses raise ``ValueError`` naming
them (:class:`NonFiniteLossError`, also a ``FloatingPointError``).

Memory: Lanczos keeps its basis, ``(max_iter + 1) x P`` float64 numbers (default
``max_iter = min(P, 300)``; at most :data:`MAX_BASIS_ENTRIES`, a size guard).
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal
from torch import nn

from lib.config import progress
from lib.exact import FLOAT_DTYPES, check_count, check_dtype, check_positive, check_real
from lib.seeding import check_seed

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
HVP_METHODS = ("func", "double_backward", "func_jvp")
#: The faster exact HVP method on the book's models (measured in the chapter *GD vs gradient
#: flow*: double backward with the gradient's graph kept is a little faster than
#: ``torch.func``'s reverse-over-reverse and several times faster than forward-over-reverse).
DEFAULT_HVP_METHOD = "double_backward"
#: Size guards, checked before any allocation: the most float64 numbers of a Lanczos basis
#: (``(max_iter + 1) * P``, 2 GB) and the most parameters of a dense Hessian (800 MB).
MAX_BASIS_ENTRIES = 250_000_000
MAX_DENSE_PARAMS = 10_000


class NonFiniteLossError(FloatingPointError, ValueError):
    """The loss, its gradient or a Hessian-vector product is ``inf``/``nan`` (bad parameters,
    bad data or an overflow); the message names the culprit when it can."""


def evaluation_mode(model: nn.Module) -> contextlib.AbstractContextManager[nn.Module]:
    """Context in which ``model`` and all its submodules are in eval mode; on exit every
    module's ``training`` flag is set back to what it was (also after an exception).

    The policy of the dynamics floor: a function that *evaluates* a model (a loss, a
    gradient, a Hessian, an accuracy) does it in eval mode, so a train-mode BatchNorm neither
    uses batch statistics nor updates its running statistics, and Dropout is deterministic.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return _evaluation_mode(model)


@contextlib.contextmanager
def _evaluation_mode(model: nn.Module) -> Iterator[nn.Module]:
    """The context of :func:`evaluation_mode` (``model`` checked there)."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        for m, _ in flags:
            m.training = False
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


def check_data(inputs: Any, targets: Any) -> None:
    """``inputs`` and ``targets`` must be tensors with at least one sample (first dimension
    ``> 0``) and finite values (floating ones), and ``targets`` (unless 0-d) one row per input
    (its first dimension that of ``inputs``); else ``TypeError``/``ValueError`` (for
    non-finite values :class:`NonFiniteLossError`) naming the argument."""
    for name, value in (("inputs", inputs), ("targets", targets)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        if value.ndim >= 1 and value.shape[0] == 0:
            raise ValueError(f"{name} must contain at least one sample, got shape "
                             f"{tuple(value.shape)}")
        if (value.is_floating_point() or value.is_complex()) and not bool(
                torch.isfinite(value).all()):
            raise NonFiniteLossError(f"{name} are not finite: "
                                     f"{int((~torch.isfinite(value)).sum())} NaN/inf entries")
    if inputs.ndim >= 1 and targets.ndim >= 1 and targets.shape[0] != inputs.shape[0]:
        raise ValueError(f"targets must have one row per input ({inputs.shape[0]} rows), got "
                         f"shape {tuple(targets.shape)}")


# ----------------------------------------------------------------------------- the flat loss
def _check_model(model: Any) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("model has no trainable parameters (requires_grad=True)")
    return model


def flatten_parameters(model: nn.Module) -> torch.Tensor:
    """The trainable parameters of ``model`` as one detached 1-D tensor (a copy), in the order
    of ``model.named_parameters()``, in their dtype."""
    _check_model(model)
    return torch.cat([p.detach().reshape(-1) for p in model.parameters() if p.requires_grad]).clone()


def load_flat_parameters(model: nn.Module, theta: torch.Tensor | np.ndarray) -> nn.Module:
    """Copy the flat vector ``theta`` into the trainable parameters of ``model`` (in place);
    returns ``model``.  ``theta`` is cast to the parameters' dtype and device; a non-finite
    ``theta`` raises ``ValueError`` (the model is then left unchanged)."""
    _check_model(model)
    params = [p for p in model.parameters() if p.requires_grad]
    n = sum(p.numel() for p in params)
    theta = torch.as_tensor(theta)
    if theta.ndim != 1 or theta.numel() != n:
        raise ValueError(f"theta must be a vector of length {n}, got shape {tuple(theta.shape)}")
    if (theta.is_floating_point() or theta.is_complex()) and not bool(torch.isfinite(theta).all()):
        raise ValueError(f"theta must be finite, got {int((~torch.isfinite(theta)).sum())} "
                         "NaN/inf entries")
    with torch.no_grad():
        offset = 0
        for p in params:
            p.copy_(theta[offset:offset + p.numel()].view_as(p).to(p))
            offset += p.numel()
    return model


class FlatLoss:
    """``L(theta) = loss_fn(model(inputs), targets)`` on flat parameter vectors.

    ``theta0`` is a copy of the model's current trainable parameters; the model itself is
    never modified (evaluations use ``torch.func.functional_call`` on copies of the buffers,
    in eval mode, :func:`evaluation_mode`).  ``n_grad`` and ``n_hvp`` count the gradients and
    Hessian-vector products computed through this object.

    Raises ``TypeError`` when ``inputs`` is not a floating tensor of the parameters' dtype,
    ``ValueError`` (naming the argument) for empty or non-finite ``inputs``/``targets``
    (:func:`check_data`).
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, inputs: torch.Tensor,
                 targets: torch.Tensor) -> None:
        _check_model(model)
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
        check_data(inputs, targets)
        trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        dtypes = {p.dtype for _, p in trainable}
        if len(dtypes) != 1:
            raise TypeError(f"model's trainable parameters mix dtypes {sorted(map(str, dtypes))}")
        self.dtype: torch.dtype = dtypes.pop()
        if self.dtype not in FLOAT_DTYPES:
            raise TypeError(f"model parameters must be floating point, got {self.dtype}")
        if inputs.dtype != self.dtype:
            raise TypeError(f"inputs must have the parameters' dtype {self.dtype}, got {inputs.dtype}")
        self.device = trainable[0][1].device
        self.model, self.loss_fn = model, loss_fn
        self.inputs, self.targets = inputs, targets
        self.names = [n for n, _ in trainable]
        self.shapes = [p.shape for _, p in trainable]
        self.numels = [p.numel() for _, p in trainable]
        self.n_params = sum(self.numels)
        self.fixed = {n: p.detach() for n, p in model.named_parameters() if not p.requires_grad}
        self.fixed.update({n: b.detach().clone() for n, b in model.named_buffers()})
        self.theta0 = flatten_parameters(model)
        self.n_grad = 0
        self.n_hvp = 0

    # -- evaluation
    def as_vector(self, theta: torch.Tensor | np.ndarray | None) -> torch.Tensor:
        """``theta`` as a 1-D tensor of the loss's dtype and device (``None``: ``theta0``)."""
        if theta is None:
            return self.theta0
        theta = torch.as_tensor(theta)
        if theta.ndim != 1 or theta.numel() != self.n_params:
            raise ValueError(f"theta must be a vector of length {self.n_params}, "
                             f"got shape {tuple(theta.shape)}")
        return theta.to(device=self.device, dtype=self.dtype)

    def _params(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        pieces = torch.split(theta, self.numels)
        params = {n: t.view(s) for n, t, s in zip(self.names, pieces, self.shapes)}
        params.update(self.fixed)
        return params

    def loss_tensor(self, theta: torch.Tensor) -> torch.Tensor:
        """The loss at the flat ``theta`` as a 0-d tensor, differentiable in ``theta``."""
        return self._loss(theta)

    def _loss(self, theta: torch.Tensor) -> torch.Tensor:
        with evaluation_mode(self.model):
            try:
                out = torch.func.functional_call(self.model, self._params(theta), (self.inputs,))
            except RuntimeError as e:   # e.g. inputs of the wrong width for the first layer
                raise ValueError(f"model(inputs) failed for inputs of shape "
                                 f"{tuple(self.inputs.shape)}: {e}") from e
        loss = self.loss_fn(out, self.targets)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise ValueError("loss_fn must return a scalar tensor")
        return loss.reshape(())

    def nonfinite(self, theta: torch.Tensor, value: Any, what: str = "the loss"
                  ) -> NonFiniteLossError:
        """The error for a non-finite ``what`` (e.g. the loss ``value``) at ``theta``, naming
        the parameters when they are not finite (the data were checked on construction)."""
        if not bool(torch.isfinite(theta).all()):
            culprit = (f"the parameters (theta) hold {int((~torch.isfinite(theta)).sum())} "
                       "non-finite entries")
        else:
            culprit = ("the parameters, inputs and targets are finite: the loss overflows in "
                       f"{self.dtype} at these parameters")
        return NonFiniteLossError(f"{what} is not finite ({value}): {culprit}")

    def check_finite(self, theta: torch.Tensor, loss: Any) -> None:
        """Raise :meth:`nonfinite` if the loss value ``loss`` is not finite."""
        value = float(loss)
        if not math.isfinite(value):
            raise self.nonfinite(theta, value)

    def loss(self, theta: torch.Tensor | np.ndarray | None = None) -> float:
        """The loss at ``theta`` as a Python float."""
        with torch.no_grad():
            return float(self._loss(self.as_vector(theta)))

    def loss_and_grad(self, theta: torch.Tensor | np.ndarray | None = None
                      ) -> tuple[float, torch.Tensor]:
        """``(L(theta), grad L(theta))``; the gradient is a detached 1-D tensor."""
        theta = self.as_vector(theta).detach().requires_grad_(True)
        with torch.enable_grad():
            loss = self._loss(theta)
            (g,) = torch.autograd.grad(loss, theta)
        self.n_grad += 1
        return float(loss.detach()), g.detach()

    def grad(self, theta: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
        """``grad L(theta)`` as a detached 1-D tensor."""
        return self.loss_and_grad(theta)[1]

    def hvp(self, theta: torch.Tensor | np.ndarray | None, v: torch.Tensor,
            method: str = DEFAULT_HVP_METHOD) -> torch.Tensor:
        """One Hessian-vector product ``H(theta) v`` (builds a fresh operator)."""
        return hvp_operator_from_loss(self, theta, method=method)(v)


# ----------------------------------------------------------------------------- HVP operators
@dataclass
class HVPOperator:
    """The Hessian ``H(theta)`` as a linear operator on flat vectors.

    Calling it with a 1-D tensor (any float dtype) returns ``H v`` in the loss's dtype.
    ``n_calls`` counts the products; ``grad`` is the gradient at ``theta``.
    """

    matvec: Callable[[torch.Tensor], torch.Tensor]
    n_params: int
    dtype: torch.dtype
    device: torch.device
    theta: torch.Tensor
    grad: torch.Tensor
    method: str
    flat_loss: FlatLoss | None = None
    n_calls: int = 0

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        if not isinstance(v, torch.Tensor):
            v = torch.as_tensor(v)
        if v.ndim != 1 or v.numel() != self.n_params:
            raise ValueError(f"v must be a vector of length {self.n_params}, got shape {tuple(v.shape)}")
        self.n_calls += 1
        if self.flat_loss is not None:
            self.flat_loss.n_hvp += 1
        return self.matvec(v.to(device=self.device, dtype=self.dtype))


def hvp_operator_from_loss(flat: FlatLoss, theta: torch.Tensor | np.ndarray | None = None,
                           method: str = DEFAULT_HVP_METHOD) -> HVPOperator:
    """:class:`HVPOperator` of ``flat`` at ``theta`` (``None``: ``flat.theta0``)."""
    if method not in HVP_METHODS:
        raise ValueError(f"method must be one of {HVP_METHODS}, got {method!r}")
    theta = flat.as_vector(theta).detach()

    def loss_aux(th: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        value = flat._loss(th)
        return value, value.detach()

    if method == "func":
        with torch.enable_grad():
            g, vjp_fn, loss = torch.func.vjp(torch.func.grad(loss_aux, has_aux=True), theta,
                                             has_aux=True)

        def matvec(v: torch.Tensor) -> torch.Tensor:
            with torch.enable_grad():
                return vjp_fn(v)[0].detach()

    elif method == "func_jvp":
        grad_fn = torch.func.grad(flat._loss)
        with torch.enable_grad():
            g, loss = torch.func.grad(loss_aux, has_aux=True)(theta)

        def matvec(v: torch.Tensor) -> torch.Tensor:
            with torch.enable_grad(), warnings.catch_warnings():
                # torch's forward-mode decompositions call the deprecated torch.jit.script
                warnings.filterwarnings("ignore", message=".*torch.jit.script.*",
                                        category=DeprecationWarning)
                return torch.func.jvp(grad_fn, (theta,), (v,))[1].detach()

    else:  # double_backward
        leaf = theta.clone().requires_grad_(True)
        with torch.enable_grad():
            loss = flat._loss(leaf)
            (g,) = torch.autograd.grad(loss, leaf, create_graph=True)

        def matvec(v: torch.Tensor) -> torch.Tensor:
            with torch.enable_grad():
                (hv,) = torch.autograd.grad(g, leaf, grad_outputs=v, retain_graph=True)
            return hv.detach()

    flat.n_grad += 1
    flat.check_finite(theta, loss.detach())
    if not bool(torch.isfinite(g).all()):
        raise flat.nonfinite(theta, "inf/nan", "the gradient")
    return HVPOperator(matvec=matvec, n_params=flat.n_params, dtype=flat.dtype,
                       device=flat.device, theta=theta, grad=g.detach(), method=method,
                       flat_loss=flat)


def hvp_operator(model: nn.Module, loss_fn: LossFn, inputs: torch.Tensor, targets: torch.Tensor,
                 *, theta: torch.Tensor | np.ndarray | None = None,
                 method: str = DEFAULT_HVP_METHOD) -> HVPOperator:
    """The Hessian of ``loss_fn(model(inputs), targets)`` at ``theta`` (default: the model's
    current parameters) as an :class:`HVPOperator` on flat vectors."""
    return hvp_operator_from_loss(FlatLoss(model, loss_fn, inputs, targets), theta, method)


def hvp(model: nn.Module, loss_fn: LossFn, inputs: torch.Tensor, targets: torch.Tensor,
        v: torch.Tensor, *, method: str = DEFAULT_HVP_METHOD) -> torch.Tensor:
    """One Hessian-vector product ``H v`` at the model's current parameters (flat ``v``)."""
    return hvp_operator(model, loss_fn, inputs, targets, method=method)(v)


def dense_hessian(model: nn.Module, loss_fn: LossFn, inputs: torch.Tensor,
                  targets: torch.Tensor) -> torch.Tensor:
    """The full Hessian of ``loss_fn(model(inputs), targets)`` w.r.t. the flattened trainable
    parameters at their current values: a ``(P, P)`` tensor in the parameters' dtype
    (``torch.func.jacrev`` of ``torch.func.grad``: reverse-over-reverse, exact up to rounding).
    Memory ``P**2``: small models only (``P <= MAX_DENSE_PARAMS``, a size guard checked
    first).  Evaluated in eval mode, the model unchanged; a non-finite loss or Hessian raises
    :class:`NonFiniteLossError`."""
    flat = FlatLoss(model, loss_fn, inputs, targets)
    if flat.n_params > MAX_DENSE_PARAMS:
        raise ValueError(f"model has {flat.n_params} trainable parameters: a dense Hessian "
                         f"exceeds the size guard MAX_DENSE_PARAMS={MAX_DENSE_PARAMS}")
    flat.check_finite(flat.theta0, flat.loss())
    with torch.enable_grad():
        h = torch.func.jacrev(torch.func.grad(flat._loss))(flat.theta0)
    if not bool(torch.isfinite(h).all()):
        raise flat.nonfinite(flat.theta0, "inf/nan", "the Hessian")
    return h.detach()


# ----------------------------------------------------------------------------- Lanczos
@dataclass
class LanczosResult:
    """Result of :func:`lanczos`.

    ``values``: the wanted Ritz values (float64 NumPy), the largest first for ``which="LA"``,
    the smallest first for ``"SA"``; for ``"BE"`` ``values_low``/``values_high`` hold both ends.
    ``vectors``: the Ritz vectors as columns of a float64 tensor ``(n, k)`` (same order).
    ``residuals``: ``||A y - theta y||`` of each returned pair (computed from the recurrence).
    ``n_matvec``: operator applications used; ``n_iter``: Krylov dimension reached;
    ``converged``: every returned pair met ``residual <= tol * scale``, with ``scale`` the
    largest Ritz value in absolute value (an estimate of ``||A||``).  For a symmetric operator
    each returned value then lies within ``residual`` of an eigenvalue.
    """

    values: np.ndarray
    vectors: torch.Tensor
    residuals: np.ndarray
    n_matvec: int
    n_iter: int
    converged: bool
    tol: float
    scale: float
    which: str
    values_low: np.ndarray = field(default_factory=lambda: np.empty(0))
    values_high: np.ndarray = field(default_factory=lambda: np.empty(0))
    vectors_low: torch.Tensor | None = None
    vectors_high: torch.Tensor | None = None


WHICH = ("LA", "SA", "BE")


def default_tol(dtype: torch.dtype) -> float:
    """Default relative residual tolerance for a Hessian computed in ``dtype``:
    ``max(1e-10, 100 * eps(dtype))`` (1e-10 in float64, about 1.2e-5 in float32); ``dtype`` a
    floating torch dtype (:func:`lib.exact.check_dtype`)."""
    return max(1e-10, 100.0 * torch.finfo(check_dtype(dtype, names=False)).eps)


def lanczos(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    n: int,
    *,
    k: int = 1,
    which: str = "LA",
    v0: torch.Tensor | np.ndarray | None = None,
    tol: float = 1e-10,
    max_iter: int | None = None,
    seed: int = 0,
    device: Any = "cpu",
) -> LanczosResult:
    """Extreme eigenpairs of a symmetric linear operator by Lanczos with full reorthogonalisation.

    ``matvec(v)`` applies the operator to a float64 vector of length ``n`` (any float dtype may
    come back).  ``which``: ``"LA"`` the ``k`` largest algebraic eigenvalues, ``"SA"`` the ``k``
    smallest, ``"BE"`` ``k`` from each end (one Krylov space serves both).  The iteration stops
    when every wanted Ritz pair has residual ``<= tol * scale`` (``scale``: the largest Ritz value
    in absolute value), or the space is exhausted, or ``max_iter`` (default ``min(n, 300)``)
    steps were taken (then ``converged`` is false).  The tolerance is relative to ``||A||``,
    not to the wanted eigenvalue, so eigenvalues near zero (a Hessian near a minimum) or a
    spread of many orders of magnitude (deep sawtooth networks) do not stall it; an eigenvalue
    is then accurate to about ``tol * ||A||`` (much better when it is well separated).

    ``v0`` is the starting vector (a warm start, e.g. the previous top eigenvector); default: a
    Gaussian vector from ``seed``.  On a (near) breakdown, when the basis spans an invariant
    subspace to within ``tol * scale`` (e.g. ``v0`` is an eigenvector), the iteration continues
    with a random vector orthogonal to the basis and stops only when that new block has
    converged too, so a warm start in an invariant subspace cannot hide the extremes (a ``v0``
    with a tiny but non-zero component along the wanted eigenvector can still return the next
    eigenvalue, as for any Krylov method).  All Lanczos arithmetic is in float64.
    """
    max_iter, need, seed, n, k, tol = _check_lanczos(n, k, which, tol, max_iter, seed)
    gen = torch.Generator(device="cpu").manual_seed(seed)

    def random_vector() -> torch.Tensor:
        return torch.randn(n, generator=gen, dtype=torch.float64).to(device)

    V = torch.zeros((max_iter + 1, n), dtype=torch.float64, device=device)
    V[0] = _start_vector(v0, n, device, random_vector)
    alphas: list[float] = []
    betas: list[float] = []  # betas[j] couples V[j] and V[j+1] (0 at a restart)
    n_matvec, m, converged = 0, 0, False
    block_start = 0  # index of the first vector of the current Krylov block
    block_random = v0 is None  # whether the current block started from a random vector
    while m < max_iter:
        w = torch.as_tensor(matvec(V[m])).to(device=device, dtype=torch.float64).reshape(-1)
        n_matvec += 1
        if not torch.isfinite(w).all():
            raise FloatingPointError("the operator returned non-finite values")
        alphas.append(float(torch.dot(w, V[m])))
        # full reorthogonalisation, twice (classical Gram-Schmidt)
        for _ in range(2):
            w = w - V[: m + 1].T @ (V[: m + 1] @ w)
        beta = float(w.norm())
        m += 1
        # Ritz pairs of the (block-diagonal) tridiagonal T_m
        d = np.asarray(alphas)
        theta, S, res = _ritz(d, np.asarray(betas[: m - 1]), beta)
        scale = max(abs(theta[0]), abs(theta[-1]), np.finfo(np.float64).tiny)
        idx = _wanted(theta, k, which)
        ok = bool(np.all(res[idx] <= tol * scale)) and len(idx) == need
        if ok and block_start > 0:
            # the current block (the Krylov space of the restart vector) must have converged
            # at its own wanted ends too: its extremes are those of the operator on the
            # complement of the invariant subspace found before.
            ok = _block_converged(d[block_start:], betas[block_start: m - 1], beta, k, which,
                                  tol * scale)
        # (near) breakdown: the block spans an invariant subspace to within the tolerance.
        breakdown = beta <= tol * scale
        if m == n:
            converged = ok
            break
        if breakdown and not block_random:
            # a user-given v0 may lie in a small invariant subspace that misses the extremes:
            # continue from a random vector orthogonal to the basis (no acceptance yet).
            V[m] = _orthogonal_random(V, m, random_vector)
            betas.append(0.0)
            block_start, block_random = m, True
            continue
        if breakdown and ok:
            # A block started from a random vector that breaks down has (with probability one)
            # captured every *distinct* eigenvalue of the operator on its complement.  A repeated
            # eigenvalue shows up once per block: for k > 1, restart until a new block adds
            # nothing to the wanted values.
            if k == 1 or (block_start > 0 and _same_wanted(d, betas, block_start, theta, k,
                                                             which, tol * scale)):
                converged = True
                break
            V[m] = _orthogonal_random(V, m, random_vector)
            betas.append(0.0)
            block_start = m
            continue
        if ok and m - block_start >= 2:
            converged = True
            break
        V[m] = w / beta
        betas.append(beta)
    return _lanczos_result(V[:len(theta)], theta, S, res, k, which, device, n_matvec=n_matvec,
                           converged=converged, tol=tol, scale=float(scale))


def _check_lanczos(n: int, k: int, which: str, tol: float, max_iter: int | None,
                   seed: int) -> tuple[int, int, int, int, int, float]:
    """Checked ``(max_iter, number of wanted values, seed)`` for :func:`lanczos`: ``n``,
    ``k``, ``max_iter`` integers ``>= 1`` (NumPy/0-d torch integers accepted, bools refused),
    ``tol`` a positive finite real."""
    n, k = check_count(n, "n"), check_count(k, "k")
    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, got {which!r}")
    if k > n:
        raise ValueError(f"k={k} exceeds the dimension n={n}")
    tol = check_positive(tol, "tol")
    seed = check_seed(seed)
    max_iter = min(n, 300) if max_iter is None else check_count(max_iter, "max_iter")
    max_iter = min(max_iter, n)
    if (max_iter + 1) * n > MAX_BASIS_ENTRIES:
        raise ValueError(f"max_iter={max_iter}: a Lanczos basis of {max_iter + 1} x {n} numbers "
                         f"exceeds the size guard MAX_BASIS_ENTRIES={MAX_BASIS_ENTRIES}; "
                         "lower max_iter")
    need = 2 * k if which == "BE" else k
    if need > n:
        raise ValueError(f"which='BE' with k={k} needs n >= {need}, got n={n}")
    return max_iter, need, seed, n, k, tol


def _start_vector(v0: Any, n: int, device: Any,
                  random_vector: Callable[[], torch.Tensor]) -> torch.Tensor:
    """The normalised first Lanczos vector: ``v0`` (checked) or a random one."""
    if v0 is None:
        v = random_vector()
    else:
        v = torch.as_tensor(v0).to(device=device, dtype=torch.float64).reshape(-1)
        if v.numel() != n:
            raise ValueError(f"v0 must have {n} entries, got {v.numel()}")
        if not torch.isfinite(v).all() or float(v.norm()) == 0.0:
            raise ValueError("v0 must be a finite non-zero vector")
    return v / v.norm()


def _orthogonal_random(V: torch.Tensor, m: int,
                       random_vector: Callable[[], torch.Tensor]) -> torch.Tensor:
    """A random unit vector orthogonal to ``V[:m]`` (a restart of the Krylov space)."""
    w = random_vector()
    for _ in range(2):
        w = w - V[:m].T @ (V[:m] @ w)
    return w / w.norm()


def _ritz(d: np.ndarray, e: np.ndarray, beta: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ritz values (ascending), vectors and residuals of the tridiagonal ``(d, e)`` whose next
    coupling is ``beta``."""
    theta, S = eigh_tridiagonal(d, e) if len(d) > 1 else (d.copy(), np.ones((1, 1)))
    return theta, S, np.abs(beta * S[-1, :])


def _block_converged(d: np.ndarray, betas: list[float], beta: float, k: int, which: str,
                     atol: float) -> bool:
    """Whether the wanted Ritz pairs of the last Krylov block have residuals ``<= atol``."""
    tb, _, rb = _ritz(d, np.asarray(betas), beta)
    kb = min(k, len(tb))
    ib = _wanted(tb, kb, which) if which != "BE" or len(tb) >= 2 * kb else np.arange(len(tb))
    return bool(np.all(rb[ib] <= atol))


def _lanczos_result(Vm: torch.Tensor, theta: np.ndarray, S: np.ndarray, res: np.ndarray, k: int,
                    which: str, device: Any, **info: Any) -> LanczosResult:
    """The wanted Ritz pairs as a :class:`LanczosResult` (both ends for ``"BE"``)."""
    idx = _wanted(theta, k, which)

    def pack(sel: np.ndarray) -> tuple[np.ndarray, torch.Tensor, np.ndarray]:
        vecs = Vm.T @ torch.as_tensor(S[:, sel], dtype=torch.float64, device=device)
        return theta[sel].copy(), vecs, res[sel].copy()

    if which == "BE":
        vl, xl, rl = pack(idx[:k])
        vh, xh, rh = pack(idx[k:])
        return LanczosResult(values=np.concatenate([vl, vh]), vectors=torch.cat([xl, xh], 1),
                             residuals=np.concatenate([rl, rh]), n_iter=len(theta), which=which,
                             values_low=vl, values_high=vh, vectors_low=xl, vectors_high=xh,
                             **info)
    vals, vecs, r = pack(idx)
    return LanczosResult(values=vals, vectors=vecs, residuals=r, n_iter=len(theta), which=which,
                         **info)


def _same_wanted(d: np.ndarray, betas: list[float], block_start: int, theta: np.ndarray,
                 k: int, which: str, atol: float) -> bool:
    """Whether the wanted Ritz values of all blocks equal those of the blocks before
    ``block_start`` (so the last block contributed nothing), to within ``atol``."""
    dp, ep = d[:block_start], np.asarray(betas[: block_start - 1])
    tp = eigh_tridiagonal(dp, ep)[0] if len(dp) > 1 else dp.copy()
    need = 2 * k if which == "BE" else k
    if len(tp) < need:
        return False
    return bool(np.allclose(tp[_wanted(tp, k, which)], theta[_wanted(theta, k, which)],
                            rtol=0.0, atol=atol))


def _wanted(theta: np.ndarray, k: int, which: str) -> np.ndarray:
    """Indices (into ascending ``theta``) of the wanted Ritz values, in the reported order."""
    m = len(theta)
    if which == "LA":
        return np.arange(m - 1, max(m - 1 - k, -1), -1)
    if which == "SA":
        return np.arange(0, min(k, m))
    if m < 2 * k:
        return np.arange(0, 0)
    return np.concatenate([np.arange(0, k), np.arange(m - 1, m - 1 - k, -1)])


# ----------------------------------------------------------------------------- model-level API
@dataclass
class EigenInfo:
    """Details of an eigenvalue computation: the Lanczos result (vectors, residuals,
    ``n_matvec`` = Hessian-vector products, ``converged``) and the HVP method used."""

    lanczos: LanczosResult
    n_hvp: int
    method: str
    tol: float

    @property
    def vectors(self) -> torch.Tensor:
        return self.lanczos.vectors

    @property
    def converged(self) -> bool:
        return self.lanczos.converged


#: Which end of the spectrum :func:`eigenvalues` returns, and the Lanczos ``which`` for each.
ENDS = {"top": "LA", "bottom": "SA", "both": "BE"}


def eigenvalues(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    k: int = 1,
    *,
    which: str = "top",
    v0: torch.Tensor | np.ndarray | None = None,
    tol: float | None = None,
    max_iter: int | None = None,
    seed: int = 0,
    method: str = DEFAULT_HVP_METHOD,
    theta: torch.Tensor | np.ndarray | None = None,
    require_convergence: bool = True,
    return_info: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, EigenInfo]:
    """Extreme eigenvalues of the Hessian of ``loss_fn(model(inputs), targets)`` w.r.t. the
    trainable parameters (flattened), as a float64 tensor.

    ``which``: ``"top"`` the ``k`` largest, largest first (``values[0]`` is the sharpness,
    Cohen et al. 2021); ``"bottom"`` the ``k`` smallest, smallest first (``lambda_min``,
    Elkabetz & Cohen 2021); ``"both"``: the ``k`` smallest then the ``k`` largest, from one
    Krylov space.  One :func:`lanczos` on exact Hessian-vector products in the parameters'
    dtype; it stops when each Ritz residual is ``<= tol * ||H||`` (``tol`` default
    :func:`default_tol`: 1e-10 in float64), so each value is within ``tol * ||H||`` of an
    eigenvalue, also near a minimum, where ``lambda_min`` sits in a cluster close to zero (the
    test is not relative to ``|lambda_min|``, which is what makes ``eigsh(which='SA')`` stall).
    ``v0``: warm start (e.g. the previous eigenvector, ``info.vectors[:, 0]``).  ``theta``:
    evaluate at these flat parameters instead of the model's.  With ``return_info=True``
    returns ``(values, EigenInfo)``; ``info.n_hvp`` counts the Hessian-vector products.
    Raises ``RuntimeError`` if not converged within ``max_iter`` (unless
    ``require_convergence=False``); ``ValueError`` for empty or non-finite data and
    :class:`NonFiniteLossError` (a ``ValueError``) when the loss, the gradient or a
    Hessian-vector product is not finite, naming the parameters or the data.  The model is
    evaluated in eval mode and left unchanged (:func:`evaluation_mode`).  ``k``,
    ``max_iter``: integers (bools refused); ``tol``: a positive real.  The values are Ritz values, inner bounds of the spectrum:
    the top ones are at most the true eigenvalues, the bottom ones at least (so a sharpness
    or a ``|lambda_min|`` from here can only be underestimated).
    """
    if which not in ENDS:
        raise ValueError(f"which must be one of {tuple(ENDS)}, got {which!r}")
    k = check_count(k, "k")
    tol = None if tol is None else check_positive(tol, "tol")
    max_iter = None if max_iter is None else check_count(max_iter, "max_iter")
    flat = FlatLoss(model, loss_fn, inputs, targets)
    op = hvp_operator_from_loss(flat, theta, method=method)
    tol = default_tol(flat.dtype) if tol is None else tol
    try:
        res = lanczos(op, flat.n_params, k=k, which=ENDS[which], v0=v0, tol=tol,
                      max_iter=max_iter, seed=seed, device=flat.device)
    except FloatingPointError:
        raise flat.nonfinite(op.theta, "inf/nan", "a Hessian-vector product") from None
    if require_convergence and not res.converged:
        raise RuntimeError(
            f"Lanczos did not reach tol={tol:g} in {res.n_iter} steps (residuals "
            f"{np.array2string(res.residuals, precision=2)}, scale {res.scale:.3g}); "
            "raise max_iter or tol, or pass require_convergence=False")
    values = torch.as_tensor(res.values, dtype=torch.float64)
    info = EigenInfo(lanczos=res, n_hvp=op.n_calls, method=method, tol=tol)
    return (values, info) if return_info else values



def top_eigenvalues(model: nn.Module, loss_fn: LossFn, inputs: torch.Tensor,
                    targets: torch.Tensor, k: int = 1, **options: Any) -> torch.Tensor:
    """The ``k`` largest Hessian eigenvalues, largest first (``values[0]`` is the sharpness):
    :func:`eigenvalues` with ``which="top"`` (same options, same guarantees: the model is not
    modified, bad or empty data and non-finite losses raise ``ValueError``)."""
    if "which" in options:
        raise TypeError("top_eigenvalues takes no 'which' (it is 'top'); use eigenvalues()")
    return eigenvalues(model, loss_fn, inputs, targets, k, which="top", **options)


# ----------------------------------------------------------------------------- along a path
class EigenTracker:
    """Hessian eigenvalues at a sequence of points (a trajectory, or the recorded steps of a
    training run), each :func:`eigenvalues` run warm-started from the previous one's
    eigenvectors (their sum; with ``normalize`` scaled to norm 1).

    Called as ``tracker(model, theta=None)`` it returns ``(values, n_hvp, converged)`` at the
    model's parameters (or the flat ``theta``); ``inputs``/``targets`` are cast to the model's
    dtype and device.  ``seed + seed_step * i`` seeds the ``i``-th call.  With
    ``nonfinite="nan"``, non-finite parameters or Hessian-vector products give ``nan`` values
    (GD diverging) instead of raising ``FloatingPointError``.

    Safeguards of the warm start.  A residual test certifies that a Ritz value lies close to
    *an* eigenvalue, not that it is the extreme one: a start vector almost parallel to the
    second eigenvector (after the top two swap, as at the edge of stability) has a tiny
    component along the first and can certify the second.  So the warm start is mixed with a
    Gaussian vector of the call's seed, ``v0 = u/|u| + mix * r/|r|`` (``mix``, default 0.5,
    gives the wanted eigenvector a component of order ``mix / sqrt(P)`` whatever the previous
    vector), and every ``cold_every``-th call (default 10; 0: never) starts cold from the
    random vector alone.  ``mix=0, cold_every=0`` is the unguarded warm start.

    Ritz values are inner bounds: every Ritz value lies in ``[lambda_min, lambda_max]``, so
    the top value underestimates ``lambda_max`` and the bottom one overestimates
    ``lambda_min`` (both are pulled towards the inside of the spectrum); a sharpness from
    here is never above the true one, a negative ``lambda_min`` never larger in
    modulus than the true one, and an integral of ``max(0, -lambda_min)`` is a lower bound.
    """

    def __init__(self, loss_fn: LossFn, inputs: torch.Tensor, targets: torch.Tensor, *,
                 which: str = "top", k: int = 1, tol: float | None = None,
                 max_iter: int | None = None, seed: int = 0, seed_step: int = 0,
                 method: str = DEFAULT_HVP_METHOD, warm_start: bool = True,
                 normalize: bool = True, nonfinite: str = "nan", mix: float = 0.5,
                 cold_every: int = 10) -> None:
        if which not in ENDS:
            raise ValueError(f"which must be one of {tuple(ENDS)}, got {which!r}")
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
        mix = check_real(mix, "mix", ge=0)
        cold_every = check_count(cold_every, "cold_every", minimum=0)
        k = check_count(k, "k")
        tol = None if tol is None else check_positive(tol, "tol")
        max_iter = None if max_iter is None else check_count(max_iter, "max_iter")
        seed_step = check_count(seed_step, "seed_step", minimum=0)
        check_data(inputs, targets)
        self.mix, self.cold_every = float(mix), cold_every
        if nonfinite not in ("nan", "raise"):
            raise ValueError(f"nonfinite must be 'nan' or 'raise', got {nonfinite!r}")
        self.loss_fn, self.inputs, self.targets = loss_fn, inputs, targets
        self.which, self.k, self.tol, self.max_iter, self.method = which, k, tol, max_iter, method
        self.seed, self.seed_step = check_seed(seed), seed_step
        self.warm_start, self.normalize, self.nonfinite = warm_start, normalize, nonfinite
        self.reset()

    def reset(self) -> None:
        """Forget the warm start and the number of calls."""
        self.vector: torch.Tensor | None = None
        self.calls = 0

    def __call__(self, model: nn.Module,
                 theta: torch.Tensor | np.ndarray | None = None) -> tuple[np.ndarray, int, bool]:
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("model has no trainable parameters (requires_grad=True)")
        dtype, device = params[0].dtype, params[0].device
        x = self.inputs.to(device=device, dtype=dtype)
        y = (self.targets.to(device=device, dtype=dtype) if self.targets.is_floating_point()
             else self.targets.to(device))
        seed = self.seed + self.seed_step * self.calls
        self.calls += 1
        nan = np.full(2 * self.k if self.which == "both" else self.k, math.nan)
        if self.nonfinite == "nan":
            if theta is None:
                finite = all(bool(torch.isfinite(p).all()) for p in params)
            else:
                finite = bool(np.all(np.isfinite(np.asarray(theta, dtype=np.float64))))
            if not finite:
                return nan, 0, False
        v0 = self._start(seed, sum(p.numel() for p in params))
        try:
            vals, info = eigenvalues(
                model, self.loss_fn, x, y, self.k, which=self.which,
                v0=v0, tol=self.tol,
                max_iter=self.max_iter, seed=seed, method=self.method, theta=theta,
                require_convergence=False, return_info=True)
        except FloatingPointError:
            if self.nonfinite == "raise":
                raise
            return nan, 0, False
        # the two warm-start rules of the book, kept bit for bit: the normalised sum of the
        # eigenvectors (the sharpness hook), or their plain sum (the curvature along a flow)
        if self.normalize:
            start = info.vectors.sum(dim=1)
            if float(start.norm()) > 0:
                self.vector = start / start.norm()
        else:
            self.vector = functools.reduce(torch.add, info.vectors.unbind(1))
        return vals.numpy(), info.n_hvp, info.converged

    def _start(self, seed: int, n: int) -> torch.Tensor | None:
        """The start vector of this call: ``None`` (cold) on the first call, without warm
        starts and every ``cold_every``-th call; else the warm start mixed with the seed's
        Gaussian vector."""
        cold = (not self.warm_start or self.vector is None
                or (self.cold_every > 0 and (self.calls - 1) % self.cold_every == 0))
        if cold:
            return None
        if self.mix == 0:
            return self.vector
        # the same Gaussian vector that lanczos(seed=seed) would start from
        r = torch.randn(n, generator=torch.Generator(device="cpu").manual_seed(seed),
                        dtype=torch.float64).to(self.vector.device)
        u = self.vector.to(torch.float64)
        return u / u.norm() + self.mix * r / r.norm()


@dataclass
class EigenPath:
    """Result of :func:`eigenvalues_along`: ``values`` ``(n, k)`` (``(n, 2k)`` for
    ``which="both"``: the smallest, then the largest), ``n_hvp``, ``converged`` and ``seconds``
    (wall time) per point."""

    values: np.ndarray
    n_hvp: np.ndarray
    converged: np.ndarray
    seconds: np.ndarray


def eigenvalues_along(model: nn.Module, loss_fn: LossFn, inputs: torch.Tensor,
                      targets: torch.Tensor, thetas: Any, *, desc: str | None = None,
                      **options: Any) -> EigenPath:
    """Hessian eigenvalues at each row of ``thetas`` (flattened trainable parameters of
    ``model``, e.g. a :class:`lib.flows.Trajectory`), warm-started row to row by an
    :class:`EigenTracker` with ``options``.  ``model`` supplies the architecture and dtype and
    is not modified."""
    rows = np.asarray(thetas, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[0] == 0:
        raise ValueError(f"thetas must be a non-empty 2-D array (rows, n_params), got shape {rows.shape}")
    tracker = EigenTracker(loss_fn, inputs, targets, **options)
    values, n_hvp, converged, seconds = [], [], [], []
    for i in progress(range(len(rows)), desc=desc or "eigenvalues", total=len(rows)):
        t0 = time.perf_counter()
        v, n, ok = tracker(model, torch.from_numpy(np.ascontiguousarray(rows[i])))
        values.append(v)
        n_hvp.append(n)
        converged.append(ok)
        seconds.append(time.perf_counter() - t0)
    return EigenPath(values=np.stack(values), n_hvp=np.asarray(n_hvp, dtype=int),
                     converged=np.asarray(converged, dtype=bool),
                     seconds=np.asarray(seconds, dtype=float))
