"""Trained vs constructed approximation in 1-D: trainable shallow and deep ReLU networks, the
empirical neural tangent kernel (NTK), best linear-spline references and exact L2 errors.

Sources: Gentile and Welper, *Approximation results for gradient descent trained shallow
neural networks in 1d* (arXiv 2209.08399) for the breakpoint model
``f(x) = m^(-1/2) sum_r a_r relu(x - theta_r)`` with fixed signs ``a_r = +-1`` and trained
breakpoints ``theta_r``; Welper (arXiv 2405.11696; J. Mach. Learn. 3(2), 2024) for the
NTK argument in the under-parametrised regime of the continuous L2 loss; Yarotsky (2017) for
the constructed ``x^2`` network (:mod:`lib.sawtooth`).

Contents:

* :class:`BreakpointNet` -- ``S`` independent breakpoint networks of width ``m`` evaluated
  together (one GD run trains all of them: the loss is a sum of independent terms), with an
  ``O(n + m log n)`` forward pass (binary search and cumulative sums over the inputs) that
  equals the sum of ReLUs (:meth:`BreakpointNet.dense_forward`, tested).
* :class:`EnsembleMLP` -- ``S`` independent fully connected ReLU networks ``1 -> ... -> 1``
  with the same hidden widths, PyTorch's default initialisation drawn from an explicit seed;
  :meth:`EnsembleMLP.member` returns one of them as an ``nn.Sequential``.
* :func:`quadrature_loss` (per-member factors ``c_s`` give each member its own step), :func:`ntk_gram`
  (``K_ij = sqrt(w_i w_j) <grad f(x_i), grad f(x_j)>``; half the Gauss-Newton Hessian's top
  eigenvalue, :func:`step_size_from_gram`), :func:`spline_projection`, :func:`adapted_knots`
  (best L2 linear splines), :func:`pl_l2_error` (exact L2 error of a piecewise-affine function),
  :func:`yarotsky_l2_error_sq_exact` (exact arithmetic), :func:`fit_power_law`.
* The chapter's experiments: :func:`train_breakpoint_nets` (GD on breakpoint nets of one
  width, errors at several horizons) and :func:`breakpoint_width_sweep` (over the widths, through
  :func:`lib.sweep.run`, with breakpoint movement and kernel drift); the controls :func:`zero_output_start`,
  :func:`linearised_floor`, :func:`lemma_c_bound`, :func:`balanced_configuration`,
  :func:`model_upper_bound`, :func:`optimise_breakpoints` and :func:`model_floor_search` (the
  model's floor from above), :func:`authors_setting` (Gentile and Welper's own setting); the
  ``x^2`` runs :func:`train_relu_ensemble` and :func:`yarotsky_references`.

Everything computes in the dtype it is given (float64 in the book) and on the CPU by default.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch
from scipy.linalg import solve_banded
from torch import nn

from lib import hessian, pieces, sweep, train
from lib.data import quadrature
from lib.exact import (check_count, check_dtype, check_interval, check_knots, check_positive,
                       check_real, linear_relu_layers)
from lib.sawtooth import parameter_count, yarotsky_exact, yarotsky_square_net
from lib.seeding import check_seed, torch_generator
from lib._approx_helpers import (MAX_CELLS, MAX_EXACT_M, MAX_MEMBERS, MAX_PANELS, MAX_SUBDIVIDE,
                                 MAX_WIDTH)
from lib._approx_helpers import cells as _cells, check_horizons as _check_horizons
from lib._approx_helpers import check_panels as _check_panels, column as _column
from lib._approx_helpers import floats as _floats, target_np as _target_np

__all__ = [
    "MAX_WIDTH", "MAX_PANELS", "MAX_CELLS", "MAX_SUBDIVIDE", "MAX_EXACT_M", "MAX_MEMBERS",
    "BreakpointNet", "EnsembleMLP", "quadrature_loss", "ntk_gram", "step_size_from_gram",
    "SplineFit", "spline_projection", "adapted_knots", "pl_l2_error", "yarotsky_l2_error_sq_exact",
    "PowerFit", "fit_power_law", "train_breakpoint_nets", "breakpoint_width_sweep",
    "zero_output_start", "linearised_floor", "lemma_c_bound", "balanced_configuration",
    "model_upper_bound", "optimise_breakpoints", "model_floor_search", "authors_setting",
    "train_relu_ensemble", "yarotsky_references"]

Target = Callable[[torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------- breakpoint nets
class BreakpointNet(nn.Module):
    """``S`` shallow networks ``f_s(x) = m^(-1/2) sum_r a_{s,r} relu(x - theta_{s,r})``.

    The model of Gentile and Welper (arXiv 2209.08399): one hidden layer of width ``m`` with
    input weight 1, trained biases (the *breakpoints* ``theta``, a parameter of shape
    ``(S, m)``) and fixed output weights ``a / sqrt(m)`` with signs ``a = +-1`` (a buffer; with
    ``train_outer`` a parameter started at ``signs``, the control with trained outer weights).
    ``forward`` maps inputs ``(n,)`` or ``(n, 1)`` to outputs ``(n, S)``: column ``s`` is
    member ``s``.  The members share nothing, so GD on a sum of their losses is GD on each.

    The forward pass uses ``f(x) = m^(-1/2) (x A(x) - B(x))`` with
    ``A(x) = sum_{theta_r < x} a_r`` and ``B(x) = sum_{theta_r < x} a_r theta_r``: each
    breakpoint is located among the (sorted) inputs by binary search and ``A``, ``B`` are
    cumulative sums over the inputs, ``O(n + m log n)`` operations instead of ``O(n m)``, the same
    function and, a.e., the same gradient ``df/dtheta_r = -a_r m^(-1/2) 1[x > theta_r]``
    (at ``x = theta_r`` both give 0, PyTorch's ``relu'(0) = 0``).  The network is affine in
    ``theta`` between reorderings, so the Hessian of a quadrature loss is its Gauss-Newton
    matrix.  :meth:`dense_forward` is the plain sum of ReLUs (for tests).
    """

    def __init__(self, breakpoints: torch.Tensor, signs: torch.Tensor, *, train_outer: bool = False) -> None:
        super().__init__()
        for name, value in (("breakpoints", breakpoints), ("signs", signs)):
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        theta = breakpoints.detach().clone()
        if theta.dim() == 1:
            theta = theta.unsqueeze(0)
        if theta.dim() != 2 or theta.shape[1] < 1:
            raise ValueError(f"breakpoints must have shape (m,) or (S, m), got {tuple(breakpoints.shape)}")
        check_dtype(theta.dtype)
        if not bool(torch.isfinite(theta).all()):
            raise ValueError(f"breakpoints must be finite, got NaN or inf in {theta.tolist()}"[:200])
        if signs.shape != breakpoints.shape:
            raise ValueError(f"signs must have the shape of breakpoints {tuple(breakpoints.shape)}, "
                             f"got {tuple(signs.shape)}")
        a = signs.detach().clone().to(theta.dtype).reshape(theta.shape)
        if not (torch.all(torch.isfinite(a)) if train_outer else torch.all(a.abs() == 1)):
            raise ValueError("signs must all be +1 or -1 (finite when train_outer)")
        self.theta = nn.Parameter(theta)
        self.train_outer = bool(train_outer)   # True: the outer weights a_r are trained too
        if self.train_outer:
            self.signs = nn.Parameter(a)
        else:
            self.register_buffer("signs", a)

    @classmethod
    def random(cls, m: int, members: int = 1, *, interval: tuple[float, float] = (-1.0, 1.0),
               seed: int = 0, dtype: torch.dtype = torch.float64) -> BreakpointNet:
        """``members`` networks of width ``m`` with breakpoints i.i.d. uniform on ``interval``
        and signs a random arrangement of ``ceil(m/2)`` times ``+1`` and ``floor(m/2)`` times
        ``-1`` (balanced), all drawn from one generator seeded by ``seed`` (in float64, cast
        once to ``dtype``)."""
        m = check_count(m, "m")
        members = check_count(members, "members")
        a, b = check_interval(interval)
        check_dtype(dtype)
        gen = torch_generator(check_seed(seed))
        theta = a + (b - a) * torch.rand(members, m, generator=gen, dtype=torch.float64)
        base = torch.tensor([1.0 if r < (m + 1) // 2 else -1.0 for r in range(m)], dtype=torch.float64)
        signs = torch.stack([base[torch.randperm(m, generator=gen)] for _ in range(members)])
        return cls(theta.to(dtype), signs.to(dtype))

    @property
    def width(self) -> int:
        """The width ``m``."""
        return int(self.theta.shape[1])

    @property
    def members(self) -> int:
        """The number ``S`` of networks."""
        return int(self.theta.shape[0])

    @property
    def breakpoints(self) -> torch.Tensor:
        """A detached copy of the breakpoints, shape ``(S, m)``."""
        return self.theta.detach().clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _column(x, "x").to(self.theta.dtype)
        s, m = self.theta.shape
        n = x.shape[0]
        ascending = n < 2 or bool(torch.all(x[1:] >= x[:-1]))
        perm = None
        if not ascending:
            x, perm = torch.sort(x)
        # p_r = #{i: x_i <= theta_r}: breakpoint r is active (theta_r < x_i) exactly for i >= p_r
        p = torch.searchsorted(x.detach(), self.theta.detach(), side="right")
        acc = torch.zeros(s, n + 1, dtype=x.dtype, device=x.device)
        big_a = torch.cumsum(acc.scatter_add(1, p, self.signs), dim=1)[:, :n]
        big_b = torch.cumsum(acc.scatter_add(1, p, self.signs * self.theta), dim=1)[:, :n]
        out = (x.unsqueeze(0) * big_a - big_b) / math.sqrt(m)           # (S, n)
        if perm is not None:
            out = torch.empty_like(out).scatter(1, perm.unsqueeze(0).expand(s, -1), out)
        return out.transpose(0, 1)

    def dense_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The plain sum of ReLUs, ``O(n m S)``: same values as :meth:`forward`."""
        x = _column(x, "x").to(self.theta.dtype)
        h = torch.relu(x[None, :, None] - self.theta[:, None, :])       # (S, n, m)
        return (h * self.signs[:, None, :]).sum(-1).transpose(0, 1) / math.sqrt(self.width)

    def l2_errors(self, target: Target, interval: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
        """``||f_s - target||_{L2(interval)}`` for every member, shape ``(S,)``: :func:`pl_l2_error`
        with the member's breakpoints as knots (exact up to the target's quadrature)."""
        errs = [pl_l2_error(lambda x, s=s: self(x)[:, s], target, interval,
                            self.theta.detach()[s].cpu().numpy(), dtype=self.theta.dtype)
                for s in range(self.members)]
        return np.asarray(errs, dtype=np.float64)

    def member(self, s: int) -> BreakpointNet:
        """Member ``s`` as a one-member :class:`BreakpointNet` (a copy)."""
        s = check_count(s, "s", 0)
        if s >= self.members:
            raise ValueError(f"s must be < {self.members}, got {s}")
        return BreakpointNet(self.theta.detach()[s], self.signs.detach()[s], train_outer=self.train_outer)

    def to_sequential(self, s: int = 0) -> nn.Sequential:
        """Member ``s`` as ``Linear(1, m) -> ReLU -> Linear(m, 1)`` (weights 1, biases
        ``-theta``, output weights ``a / sqrt(m)``, output bias 0): the same function, in the
        form :mod:`lib.sawtooth` and the piece counter accept."""
        net = self.member(s)
        m, dtype = self.width, self.theta.dtype
        first = nn.Linear(1, m, dtype=dtype)
        last = nn.Linear(m, 1, dtype=dtype)
        with torch.no_grad():
            first.weight.fill_(1.0)
            first.bias.copy_(-net.theta[0])
            last.weight.copy_(net.signs / math.sqrt(m))
            last.bias.zero_()
        return nn.Sequential(first, nn.ReLU(), last)


# ----------------------------------------------------------------------------- ensembles of MLPs
class EnsembleMLP(nn.Module):
    """``S`` independent fully connected ReLU networks ``1 -> n_1 -> ... -> n_L -> 1``.

    Layer ``l`` holds weights ``(S, n_l, n_{l-1})`` and biases ``(S, n_l)``; ``forward`` maps
    inputs ``(n,)`` or ``(n, 1)`` to ``(n, S)`` with batched matrix products.  Initialisation
    (:meth:`random`): PyTorch's default for ``nn.Linear``, ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``
    for weights and biases, drawn in float64 from one seeded generator.  :meth:`member`
    returns member ``s`` as an ``nn.Sequential`` computing the same function.
    """

    def __init__(self, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor]) -> None:
        super().__init__()
        if len(weights) != len(biases) or len(weights) < 1:
            raise ValueError("weights and biases must be non-empty lists of the same length")
        s = weights[0].shape[0]
        prev = 1
        for i, (w, b) in enumerate(zip(weights, biases)):
            if w.dim() != 3 or w.shape[0] != s or w.shape[2] != prev:
                raise ValueError(f"weights[{i}] must have shape ({s}, n_out, {prev}), got {tuple(w.shape)}")
            if b.shape != (s, w.shape[1]):
                raise ValueError(f"biases[{i}] must have shape ({s}, {w.shape[1]}), got {tuple(b.shape)}")
            prev = w.shape[1]
        if prev != 1:
            raise ValueError(f"the last layer must have one output, got {prev}")
        check_dtype(weights[0].dtype)
        self.weights = nn.ParameterList([nn.Parameter(w.detach().clone()) for w in weights])
        self.biases = nn.ParameterList([nn.Parameter(b.detach().clone()) for b in biases])

    @classmethod
    def random(cls, hidden: Sequence[int], members: int = 1, *, seed: int = 0,
               dtype: torch.dtype = torch.float64) -> EnsembleMLP:
        """``members`` networks with hidden widths ``hidden`` (a non-empty sequence)."""
        widths = [check_count(n, "hidden width") for n in hidden]
        if not widths:
            raise ValueError("hidden must name at least one hidden layer")
        members = check_count(members, "members")
        check_dtype(dtype)
        gen = torch_generator(check_seed(seed))
        weights, biases, prev = [], [], 1
        for n_out in widths + [1]:
            bound = 1.0 / math.sqrt(prev)
            w = (torch.rand(members, n_out, prev, generator=gen, dtype=torch.float64) * 2 - 1) * bound
            b = (torch.rand(members, n_out, generator=gen, dtype=torch.float64) * 2 - 1) * bound
            weights.append(w.to(dtype))
            biases.append(b.to(dtype))
            prev = n_out
        return cls(weights, biases)

    @classmethod
    def from_sequentials(cls, nets: Sequence[nn.Sequential]) -> EnsembleMLP:
        """Stack networks ``Linear(1, n_1), ReLU, ..., ReLU, Linear(n_L, 1)`` of identical
        widths and dtype: Linear layers with biases and exactly one ReLU between consecutive
        ones, the only structure an ensemble member computes exactly.  Anything else raises
        ``TypeError``/``ValueError`` naming the layer ``nets[i][j]``."""
        if isinstance(nets, nn.Module) or not len(nets):
            raise ValueError("nets must be a non-empty sequence of nn.Sequential networks")
        per_net, shapes = [], None
        for i, net in enumerate(nets):
            try:
                layers = linear_relu_layers(net)
            except (TypeError, ValueError) as err:
                raise type(err)(f"nets[{i}]: {err}") from None
            for j, layer in enumerate(layers):
                if isinstance(layer, nn.Linear) != (j % 2 == 0) or getattr(layer, "bias", 0) is None:
                    raise ValueError(f"nets[{i}][{j}] is {layer}: a member must alternate Linear "
                                     "layers with biases and single ReLUs")
            shape = [(lin.in_features, lin.out_features, lin.weight.dtype) for lin in layers[::2]]
            if shape != (shapes := shapes or shape):
                raise ValueError(f"nets[{i}] has layers {shape}, nets[0] has {shapes}")
            per_net.append(layers[::2])
        return cls([torch.stack([ls[i].weight.detach() for ls in per_net]) for i in range(len(shapes))],
                   [torch.stack([ls[i].bias.detach() for ls in per_net]) for i in range(len(shapes))])

    @property
    def members(self) -> int:
        return int(self.weights[0].shape[0])

    @property
    def hidden(self) -> list[int]:
        """The hidden widths."""
        return [int(w.shape[1]) for w in self.weights[:-1]]

    def parameter_count(self) -> int:
        """Parameters of one member."""
        return sum(int(w[0].numel()) + int(b[0].numel()) for w, b in zip(self.weights, self.biases))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _column(x, "x").to(self.weights[0].dtype)
        h = x.reshape(1, 1, -1).expand(self.members, 1, -1)             # (S, 1, n)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b.unsqueeze(-1), w, h)                        # (S, n_out, n)
            if i < last:
                h = torch.relu(h)
        return h[:, 0, :].transpose(0, 1)

    def member(self, s: int) -> nn.Sequential:
        """Member ``s`` as ``Linear -> ReLU -> ... -> Linear`` (a copy)."""
        s = check_count(s, "s", 0)
        if s >= self.members:
            raise ValueError(f"s must be < {self.members}, got {s}")
        layers: list[nn.Module] = []
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            lin = nn.Linear(w.shape[2], w.shape[1], dtype=w.dtype, device=w.device)
            with torch.no_grad():
                lin.weight.copy_(w[s])
                lin.bias.copy_(b[s])
            layers.append(lin)
            if i < len(self.weights) - 1:
                layers.append(nn.ReLU())
        return nn.Sequential(*layers)


# ----------------------------------------------------------------------------- losses and NTK
def quadrature_loss(weights: torch.Tensor, scale: torch.Tensor | Sequence[float] | None = None
                    ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The quadrature of the continuous L2 loss, ``sum_s c_s sum_i w_i (out[i, s] - t[i])^2``.

    ``weights`` (n,): quadrature weights; ``out`` (n, S) or (n,), targets (n,), (n, 1) or
    (n, S).  ``scale`` (S,) positive factors ``c_s`` (default 1): GD with step ``eta`` on the
    scaled sum is GD with step ``eta * c_s`` on member ``s``'s own loss.
    """
    if not isinstance(weights, torch.Tensor) or weights.dim() != 1:
        raise TypeError("weights must be a 1-D torch.Tensor of quadrature weights")
    if weights.numel() == 0 or not bool(torch.isfinite(weights).all()):
        raise ValueError(f"weights must be non-empty and finite, got {weights.numel()} entries")
    c = None if scale is None else torch.as_tensor(scale, dtype=torch.float64).reshape(-1)
    if c is not None and not bool(torch.all(c > 0)):
        raise ValueError("scale must be positive")

    def loss(out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        o = out.reshape(out.shape[0], -1)
        t = targets.reshape(targets.shape[0], -1)
        if o.shape[0] != weights.shape[0]:
            raise ValueError(f"out has {o.shape[0]} rows but there are {weights.shape[0]} weights")
        per_member = (weights.to(o.dtype).unsqueeze(1) * (o - t) ** 2).sum(0)
        if c is not None:
            if c.numel() != per_member.numel():
                raise ValueError(f"scale has {c.numel()} entries for {per_member.numel()} members")
            per_member = per_member * c.to(o.dtype)
        return per_member.sum()

    return loss


def ntk_gram(model: nn.Module, inputs: torch.Tensor, weights: torch.Tensor | None = None,
             member: int = 0) -> torch.Tensor:
    """The empirical NTK Gram matrix of output column ``member`` at ``inputs`` (n points).

    ``K[i, j] = sqrt(w_i w_j) sum_p df(x_i)/dtheta_p df(x_j)/dtheta_p`` over the trainable
    parameters (``weights=None``: all ``w_i = 1``).  With quadrature weights, the nonzero
    eigenvalues of ``K`` are those of ``J^T W J``, and the Gauss-Newton Hessian of the
    quadrature loss ``sum_i w_i (f(x_i) - g(x_i))^2`` is ``2 J^T W J``.  The Jacobian ``J``
    (``n x P``) comes from ``torch.func.jacrev`` on ``functional_call``, in the model's dtype.
    Returns ``(n, n)``, symmetric positive semi-definite.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    x = _column(inputs, "inputs")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("inputs must be finite, got NaN or inf")
    member = check_count(member, "member", 0)
    trainable = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    if not trainable:
        raise ValueError("model has no trainable parameters")
    fixed = {n: p.detach() for n, p in model.named_parameters() if not p.requires_grad}
    fixed.update({n: b.detach().clone() for n, b in model.named_buffers()})
    def column(params: dict[str, torch.Tensor]) -> torch.Tensor:
        out = torch.func.functional_call(model, {**params, **fixed}, (x.reshape(-1, 1),))
        return out.reshape(x.shape[0], -1)[:, member]

    with hessian.evaluation_mode(model):           # eval mode; the model is not changed
        with torch.no_grad():
            width = model(x.reshape(-1, 1)).reshape(x.shape[0], -1).shape[1]
        if member >= width:
            raise ValueError(f"member must be < {width}, got {member}")
        jacs = torch.func.jacrev(column)(trainable)
    rows = [jacs[n].reshape(x.shape[0], -1) for n in trainable]
    jac = torch.cat(rows, dim=1).detach()
    if weights is not None:
        w = _column(weights, "weights").to(jac.dtype)
        if not bool(torch.isfinite(w).all()):
            raise ValueError("weights must be finite, got NaN or inf")
        if w.shape[0] != jac.shape[0]:
            raise ValueError(f"weights must have {jac.shape[0]} entries, got {w.shape[0]}")
        jac = jac * w.sqrt().unsqueeze(1)
    return jac @ jac.T


def step_size_from_gram(top_eigenvalue: float, fraction: float = 1.0) -> float:
    """``eta = fraction / lambda_max(H_GN)`` with ``H_GN = 2 J^T W J``, i.e.
    ``fraction / (2 lambda_max(K))`` for the top eigenvalue of :func:`ntk_gram`.

    ``fraction = 1`` puts ``2/eta`` at twice the Gauss-Newton sharpness: half the largest
    step for which GD on the linearised model is stable (``eta < 2 / lambda_max``).  Both
    are reals (NumPy, 0-d or one-element torch, e.g. ``hessian.eigenvalues(...)``)."""
    if isinstance(top_eigenvalue, (torch.Tensor, np.ndarray)) and top_eigenvalue.shape == (1,):
        top_eigenvalue = top_eigenvalue[0]
    top = check_positive(top_eigenvalue, "top_eigenvalue")
    return check_real(fraction, "fraction", gt=0, lt=2) / (2.0 * top)


# ----------------------------------------------------------------------------- splines
@dataclass(frozen=True)
class SplineFit:
    """The best L2 approximation of a target by continuous piecewise-linear functions.

    ``knots`` ``t_0 < ... < t_K`` (the interval's ends included), ``values`` at the knots,
    ``l2_error`` ``= ||p - g||_{L2(t_0, t_K)}`` (Gauss-Legendre on every cell).
    ``interior_knots`` ``= K - 1``: a shallow ReLU network of width ``m`` is such a function
    with at most ``m`` interior knots.
    """

    knots: np.ndarray
    values: np.ndarray
    l2_error: float

    @property
    def interior_knots(self) -> int:
        return int(self.knots.size - 2)

    def __call__(self, x: np.ndarray | float) -> np.ndarray:
        return np.interp(x, self.knots, self.values)


def spline_projection(target: Target, knots: Sequence[float] | np.ndarray, *, order: int = 8,
                      subdivide: int = 4) -> SplineFit:
    """Best ``L2(t_0, t_K)`` approximation of ``target`` from the continuous piecewise-linear
    functions with breakpoints ``knots`` (float64).

    Normal equations in the hat basis: the Gram matrix is tridiagonal with entries
    ``(h_{i-1} + h_i)/3`` and ``h_i/6`` (exact), the right-hand side ``int g phi_i`` and the
    error are integrated with ``order`` Gauss-Legendre nodes on ``subdivide`` parts of every
    cell.  ``target`` maps a float64 tensor to values.  Guard: ``subdivide <=``
    :data:`MAX_SUBDIVIDE`.
    """
    k = check_knots(knots)
    x, w, cell = _cells(k, order, check_count(subdivide, "subdivide", maximum=MAX_SUBDIVIDE))
    gx = _target_np(target, x)
    h = np.diff(k)
    lam = (x - k[cell]) / h[cell]                     # position inside the knot cell
    rhs = np.zeros(k.size)
    np.add.at(rhs, cell, w * gx * (1 - lam))
    np.add.at(rhs, cell + 1, w * gx * lam)
    ab = np.zeros((3, k.size))
    ab[1, :-1] += h / 3
    ab[1, 1:] += h / 3
    ab[0, 1:] = h / 6
    ab[2, :-1] = h / 6
    values = solve_banded((1, 1), ab, rhs)
    p = values[cell] * (1 - lam) + values[cell + 1] * lam
    err = float(np.sqrt(np.sum(w * (p - gx) ** 2)))
    return SplineFit(knots=k, values=values, l2_error=err)


def adapted_knots(density: Target, interior: int, interval: tuple[float, float], *,
                  panels: int = 4096) -> np.ndarray:
    """``interior`` knots placed at the equal-mass quantiles of ``density >= 0`` on
    ``interval`` (plus the two ends): ``int_a^{t_j} density = j/(interior+1) int_a^b density``.

    The cumulative integral is tabulated with 4-point Gauss-Legendre on ``panels`` cells and
    inverted by linear interpolation.  With ``density = |g''|^(2/5)`` this equidistributes
    the local L2 error of linear interpolation (our choice of adapted knots).  Guards:
    ``interior <=`` :data:`MAX_WIDTH`, ``panels <=`` :data:`MAX_PANELS`.
    """
    n = check_count(interior, "interior", 0, maximum=MAX_WIDTH)
    a, b = check_interval(interval)
    grid = np.linspace(a, b, check_count(panels, "panels", maximum=MAX_PANELS) + 1)
    x, w, cell = _cells(grid, 4, 1)
    d = _target_np(density, x)
    if np.any(d < 0) or not np.all(np.isfinite(d)):
        raise ValueError("density must be finite and non-negative")
    mass = np.concatenate([[0.0], np.cumsum(np.bincount(cell, weights=w * d, minlength=grid.size - 1))])
    if mass[-1] <= 0:
        raise ValueError("density must have positive mass on the interval")
    levels = mass[-1] * np.arange(1, n + 1) / (n + 1)
    inner = np.interp(levels, mass, grid)
    return np.concatenate([[a], inner, [b]])


def pl_l2_error(fn: Callable[[torch.Tensor], torch.Tensor], target: Target,
                interval: tuple[float, float], breakpoints: Sequence[float] | np.ndarray = (), *,
                order: int = 8, subdivide: int = 2, dtype: torch.dtype = torch.float64
                ) -> float | np.ndarray:
    """``||fn - target||_{L2(a, b)}`` for a ``fn`` that is affine between its ``breakpoints``
    (any finite superset of its breakpoints; those outside ``(a, b)`` and repeats are ignored).

    The cells between the sorted breakpoints and the ends are each cut into ``subdivide``
    equal parts with ``order`` Gauss-Legendre nodes: ``(fn - g)^2`` is smooth on every part,
    so the result is exact up to rounding and the quadrature error of the smooth target.
    ``fn`` receives a ``(n, 1)`` tensor of ``dtype`` (a network) and may return ``(n,)``,
    ``(n, 1)`` or ``(n, S)``: one error, or an array of ``S`` errors (one per column).
    Breakpoints missing from the list leave an ``O(h^2)`` error per missing kink (``h`` the
    cell width).  Guard: ``subdivide <=`` :data:`MAX_SUBDIVIDE`.
    """
    a, b = check_interval(interval)
    t = np.asarray(breakpoints, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(t)):
        raise ValueError("breakpoints must be finite")
    knots = np.unique(np.concatenate([[a, b], t[(t > a) & (t < b)]]))
    x, w, _ = _cells(knots, order, check_count(subdivide, "subdivide", maximum=MAX_SUBDIVIDE))
    gx = _target_np(target, x)
    with torch.no_grad():
        out = fn(torch.as_tensor(x, dtype=torch.float64).to(check_dtype(dtype)).reshape(-1, 1))
    vals = np.asarray(out.detach().to(torch.float64).cpu().numpy()).reshape(x.size, -1)
    err = np.sqrt(np.sum(w[:, None] * (vals - gx[:, None]) ** 2, axis=0))
    return float(err[0]) if err.size == 1 else err


# ----------------------------------------------------------------------------- exact references
def yarotsky_l2_error_sq_exact(m: int) -> Fraction:
    """``int_0^1 (f_m(x) - x^2)^2 dx`` exactly, for Yarotsky's ``f_m`` (:mod:`lib.sawtooth`).

    ``f_m`` is affine on each cell ``[k/2^m, (k+1)/2^m]`` with exact endpoint values
    (:func:`lib.sawtooth.yarotsky_exact`); on a cell, ``f_m - x^2`` is a quadratic whose
    square is integrated exactly in rational arithmetic.  (The book's closed form:
    ``16^(-m) / 30``, since ``f_m`` interpolates ``x^2`` at the nodes.)  Cost ``O(m 2^m)``;
    guard: ``m <=`` :data:`MAX_EXACT_M`.
    """
    m = check_count(m, "m", maximum=MAX_EXACT_M)
    n = 2**m
    h = Fraction(1, n)
    vals = [yarotsky_exact(Fraction(k, n), m) for k in range(n + 1)]
    total = Fraction(0)
    for k in range(n):
        a = Fraction(k, n)
        # e(t) = f_m(a + t) - (a + t)^2 = c0 + c1 t + c2 t^2 on t in [0, h]
        c0 = vals[k] - a * a
        c1 = (vals[k + 1] - vals[k]) / h - 2 * a
        c2 = Fraction(-1)
        # int_0^h (c0 + c1 t + c2 t^2)^2 dt
        total += (c0 * c0 * h + c0 * c1 * h**2 + (c1 * c1 + 2 * c0 * c2) * h**3 / 3
                  + c1 * c2 * h**4 / 2 + c2 * c2 * h**5 / 5)
    return total


@dataclass(frozen=True)
class PowerFit:
    """``y ~ constant * x^exponent``, fitted by least squares on ``log y`` vs ``log x``;
    ``stderr`` is the standard error of the exponent (``nan`` for two points)."""

    exponent: float
    constant: float
    stderr: float

    def __call__(self, x: np.ndarray | float) -> np.ndarray:
        return self.constant * np.asarray(x, dtype=np.float64) ** self.exponent


def fit_power_law(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> PowerFit:
    """Least-squares fit of ``log y = log c + p log x`` (at least two positive points)."""
    lx = np.log(np.asarray(x, dtype=np.float64).reshape(-1))
    yy = np.asarray(y, dtype=np.float64).reshape(-1)
    if lx.size != yy.size or lx.size < 2:
        raise ValueError("x and y must have the same length >= 2")
    if np.any(~np.isfinite(lx)) or np.any(yy <= 0) or np.any(~np.isfinite(yy)):
        raise ValueError("x and y must be positive and finite")
    ly = np.log(yy)
    design = np.stack([np.ones_like(lx), lx], axis=1)
    coef, *_ = np.linalg.lstsq(design, ly, rcond=None)
    resid = ly - design @ coef
    dof = lx.size - 2
    stderr = (float(np.sqrt(float(resid @ resid) / dof * np.linalg.inv(design.T @ design)[1, 1]))
              if dof > 0 else float("nan"))
    return PowerFit(exponent=float(coef[1]), constant=float(np.exp(coef[0])), stderr=stderr)


# ----------------------------------------------------------------------------- the chapter's runs
def train_breakpoint_nets(target: Target, m: int, members: int, steps: int, horizons: Sequence[int],
                          *, interval: tuple[float, float] = (-1.0, 1.0), panels_per_width: int = 2,
                          seed: int | None = None, sharpness: bool = True,
                          net0: BreakpointNet | None = None, lr_scale: float = 1.0) -> dict:
    """GD on ``members`` breakpoint nets of width ``m`` on the quadrature loss of ``target``
    (composite 2-point Gauss-Legendre on ``panels_per_width * m`` panels), each member with its
    own step size ``eta_s = 1 / lambda_max(H_s(theta_0))`` (one run, scaled loss).

    ``net0``: the starting nets (default: :meth:`BreakpointNet.random` with ``seed``, default
    ``1000 + m``); ``lr_scale``: ``eta_s = lr_scale / lambda_max(H_s(theta_0))`` (the step-size
    sweep; a run that diverges reports ``err = inf``).  Returns a dict: ``quad``, ``net0``, ``net`` (trained), ``lam0`` (initial
    sharpness per member), ``eta``, ``err`` (exact L2 errors, horizons x members), ``sharp``
    (largest ``eta_s lambda_max(H_s)`` at the checks; NaN without ``sharpness``), ``sharp0``
    (at the start) and ``diverged`` (``train.gd``'s ``diverged_at``).  Guards: ``m <=``
    :data:`MAX_WIDTH`, ``members <=`` :data:`MAX_MEMBERS`, ``panels_per_width * m`` panels
    within :data:`lib.data.MAX_QUADRATURE_NODES` / 2.
    """
    m, members = check_count(m, "m", maximum=MAX_WIDTH), check_count(members, "members", maximum=MAX_MEMBERS)
    horizons = _check_horizons(steps, horizons, train.MAX_STEPS)
    interval = check_interval(interval)
    quad = quadrature(_check_panels(panels_per_width, m), order=2, interval=interval)
    y = target(quad.nodes).reshape(-1, 1)
    if net0 is None:
        net0 = BreakpointNet.random(m, members, interval=interval, seed=1000 + m if seed is None else seed)
    elif not isinstance(net0, BreakpointNet):
        raise TypeError(f"net0 must be a BreakpointNet or None, got {type(net0).__name__}")
    plain = quadrature_loss(quad.weights)
    lam0 = np.array([float(hessian.eigenvalues(net0.member(s), plain, quad.inputs, y, which="top")[0])
                     for s in range(members)])
    lr_scale = check_positive(lr_scale, "lr_scale")
    eta = lr_scale / lam0.max()
    loss = quadrature_loss(quad.weights, lam0.max() / lam0)   # eta_s = 1 / lam0[s]

    def errors(model: BreakpointNet, step: int) -> np.ndarray:
        return model.l2_errors(target, interval) if step in horizons else np.full(members, np.nan)

    every = math.gcd(*horizons)
    hooks = {"err": errors}
    if sharpness:   # lambda_max of the scaled loss = max_s c_s lambda_max(H_s); times eta
        hooks["sharp"] = train.sharpness_hook(loss, quad.inputs, y, every=max(every, steps // 4))
    run = train.gd(net0, loss, quad.inputs, y, lr=eta, steps=steps, record_every=every,
                   hooks=hooks, desc=f"m={m}")
    steps_done = list(run.history["step"])
    err = np.array([run.history["err"][steps_done.index(h)] if h in steps_done and run.diverged_at is None
                    else np.full(members, np.inf) for h in horizons])   # (horizons, members)
    sharp = eta * np.asarray(run.history["sharp"]) if sharpness else np.full(1, np.nan)
    return {"quad": quad, "net0": net0, "net": run.model, "lam0": lam0, "eta": lr_scale / lam0, "err": err,
            "sharp": np.nanmax(sharp) if np.isfinite(sharp).any() else math.nan,
            "sharp0": sharp[0], "diverged": run.diverged_at}


def breakpoint_width_sweep(target: Target, widths: Sequence[int], members: int, steps: int,
                           horizons: Sequence[int], ntk_nodes: torch.Tensor, ntk_weights: torch.Tensor,
                           *, interval: tuple[float, float] = (-1.0, 1.0)) -> dict[int, dict]:
    """:func:`train_breakpoint_nets` at every width (seed ``1000 + m``), each result with the
    breakpoints' movement per member (``move_max``, ``move_rms``) and the NTK Gram matrix on
    the fixed rule ``(ntk_nodes, ntk_weights)`` before and after: its relative Frobenius change
    ``drift`` and top eigenvalues ``top0``, ``top1``.  Returns ``{m: result}``.  The widths are
    independent tasks of :func:`lib.sweep.run` (serial under ``quick``, one process per core
    under ``paper``; the same numbers either way: each width's nets come from its own seed)."""
    if not len(widths):
        raise ValueError("widths must not be empty")
    task = functools.partial(_width_run, target, members, steps, horizons, ntk_nodes, ntk_weights, interval)
    return dict(zip(widths, sweep.run(task, list(widths), desc="widths")))


def _width_run(target: Target, members: int, steps: int, horizons: Sequence[int], ntk_nodes: torch.Tensor,
               ntk_weights: torch.Tensor, interval: tuple[float, float], m: int) -> dict:
    """One width of :func:`breakpoint_width_sweep` (a task of :func:`lib.sweep.run`)."""
    r = train_breakpoint_nets(target, m, members, steps, horizons, interval=interval)
    move = (r["net"].breakpoints - r["net0"].breakpoints).abs()
    r["move_max"] = move.max(dim=1).values.numpy()
    r["move_rms"] = move.pow(2).mean(dim=1).sqrt().numpy()
    k0 = [ntk_gram(r["net0"].member(s), ntk_nodes, ntk_weights) for s in range(members)]
    k1 = [ntk_gram(r["net"].member(s), ntk_nodes, ntk_weights) for s in range(members)]
    r["drift"] = np.array([float(torch.linalg.norm(b - a) / torch.linalg.norm(a)) for a, b in zip(k0, k1)])
    r["top0"] = np.array([float(torch.linalg.eigvalsh(a)[-1]) for a in k0])
    r["top1"] = np.array([float(torch.linalg.eigvalsh(b)[-1]) for b in k1])
    return r


def zero_output_start(net0: BreakpointNet, train_outer: bool = False) -> BreakpointNet:
    """The zero-output control: the first ``m // 2`` breakpoints of each member of ``net0``,
    each paired with a copy of opposite sign, so the function is 0 up to rounding (with
    ``train_outer``: the outer weights are trained too, started at the signs)."""
    if not isinstance(net0, BreakpointNet):
        raise TypeError(f"net0 must be a BreakpointNet, got {type(net0).__name__}")
    half = net0.breakpoints[:, : net0.width // 2]
    return BreakpointNet(torch.cat([half, half], 1), torch.cat([torch.ones_like(half), -torch.ones_like(half)], 1),
                         train_outer=train_outer)


def linearised_floor(breakpoints: np.ndarray, nodes: np.ndarray, weights: np.ndarray,
                     residual: np.ndarray) -> float:
    """The floor of the breakpoint model linearised at ``breakpoints``: the weighted L2 norm
    (quadrature ``nodes``, ``weights``) of ``residual`` minus its best approximation by step
    functions jumping at the breakpoints and zero left of them (infinitely many linearised GD
    steps)."""
    t = np.sort(_floats(breakpoints, "breakpoints").ravel())
    x, w, r = (_floats(a, n) for a, n in ((nodes, "nodes"), (weights, "weights"), (residual, "residual")))
    for a, n in ((t, "breakpoints"), (x, "nodes")):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{n} must be finite, got NaN or inf")
    if x.ndim != 1 or w.shape != x.shape or r.shape != x.shape:
        raise ValueError(f"nodes, weights and residual must be 1-D of one length, got shapes "
                         f"{x.shape}, {w.shape}, {r.shape}")
    cell = np.searchsorted(t, x, side="left")                         # number of breakpoints < x
    mass = np.bincount(cell, weights=w, minlength=t.size + 1)
    mean = np.bincount(cell, weights=w * r, minlength=t.size + 1) / np.where(mass > 0, mass, 1)
    mean[0] = 0.0
    return math.sqrt(float(np.sum(w * (r - mean[cell]) ** 2)))


def lemma_c_bound(target: Callable[..., np.ndarray], m: int, grid: np.ndarray | None = None) -> float:
    """Lemma (c) of the chapter: ``||f_theta - g|| >= sqrt(|S|^3 / (192 m (m + c)^2))`` for
    every breakpoint net of width ``m``, ``S = {x : dist(sqrt(m) g'(x), Z) >= 1/4}`` with ``c``
    components; ``|S|`` and ``c`` measured on the uniform ``grid`` (default 2,000,001 points
    on ``[-1, 1]``).  ``target(x, 1)`` must give ``g'``."""
    m = check_count(m, "m")
    grid = np.linspace(-1, 1, 2_000_001) if grid is None else np.asarray(grid, dtype=float)
    if grid.ndim != 1 or grid.size < 2:
        raise ValueError(f"grid must be a 1-D array of at least 2 points, got shape {grid.shape}")
    v = math.sqrt(m) * target(grid, 1)
    in_s = np.abs(v - np.round(v)) >= 0.25
    size = float(np.mean(in_s)) * float(grid[-1] - grid[0])
    comps = int(in_s[0]) + int(np.sum(in_s[1:] & ~in_s[:-1]))
    return math.sqrt(size**3 / (192 * m * (m + comps) ** 2))


def balanced_configuration(target: Callable[..., np.ndarray], m: int, cells: int,
                           interval: tuple[float, float] = (-1.0, 1.0)) -> BreakpointNet | None:
    """An explicit breakpoint net of width ``m`` with ``ceil(m/2)`` signs +1 and ``floor(m/2)``
    signs -1, or None if it needs more of one sign.  On each of ``cells`` equal cells the slope
    takes the two multiples of ``m^(-1/2)`` that bracket the chord slope of ``target``, the
    higher first, in the proportion that matches its increment on the cell (pulse-width
    modulation), so ``f`` matches the increments of ``target`` from ``a`` at the cell ends; the breakpoints that return the slope
    to 0 sit at the right end ``b``, the unused ones at ``b + (b - a)/4``, outside.  Guards:
    ``m <=`` :data:`MAX_WIDTH`, ``cells <=`` :data:`MAX_CELLS`."""
    m, cells = check_count(m, "m", maximum=MAX_WIDTH), check_count(cells, "cells", maximum=MAX_CELLS)
    a, b = check_interval(interval)
    xs = np.linspace(a, b, cells + 1)
    h = xs[1] - xs[0]
    q = np.diff(target(xs)) / h * math.sqrt(m)            # chord slopes in units of m^(-1/2)
    k = np.floor(q)
    p = q - k
    first = k + (p > 0)
    jump = (first - np.concatenate([[0.0], k[:-1]])).astype(int)
    end = int(k[-1])
    mid = p > 0
    n_plus = int(np.clip(jump, 0, None).sum()) + max(-end, 0)
    n_minus = int(np.clip(-jump, 0, None).sum()) + int(mid.sum()) + max(end, 0)
    plus, minus = (m + 1) // 2, m // 2
    if n_plus > plus or n_minus > minus:
        return None
    theta = np.concatenate([np.repeat(xs[:-1], np.abs(jump)), (xs[:-1] + p * h)[mid],
                            np.full(abs(end), b), np.full(plus - n_plus + minus - n_minus, b + (b - a) / 4)])
    signs = np.concatenate([np.repeat(np.sign(jump), np.abs(jump)), -np.ones(int(mid.sum())),
                            np.full(abs(end), -np.sign(end)), np.ones(plus - n_plus),
                            -np.ones(minus - n_minus)])
    return BreakpointNet(torch.tensor(theta), torch.tensor(signs))


def model_upper_bound(target: Callable[..., np.ndarray], m: int, tries: int = 5,
                      interval: tuple[float, float] = (-1.0, 1.0)) -> tuple[float, int]:
    """``(error, cells)``: the best exact L2 error of :func:`balanced_configuration` among the
    ``tries`` largest cell counts below ``2m`` that the sign budget allows, an upper bound on
    the breakpoint model's best error at width ``m`` (guard: ``m <=`` :data:`MAX_WIDTH`)."""
    m, tries = check_count(m, "m", maximum=MAX_WIDTH), check_count(tries, "tries")
    feasible = [n for n in range(1, 2 * m) if balanced_configuration(target, m, n, interval) is not None]
    best = None
    for n in sorted(feasible)[-tries:]:
        net = balanced_configuration(target, m, n, interval)
        assert int((net.signs > 0).sum()) == (m + 1) // 2 and net.width == m
        err = float(net.l2_errors(target, interval)[0])
        best = (err, n) if best is None or err < best[0] else best
    return best


def optimise_breakpoints(target: Target, net: BreakpointNet, steps: int, *, lr: float | None = None,
                         interval: tuple[float, float] = (-1.0, 1.0), panels_per_width: int = 8) -> np.ndarray:
    """The breakpoint model's own floor, approached from above: Adam directly on the breakpoints
    of ``net`` (signs fixed; trained in place) for the quadrature loss of ``target`` (2-point
    Gauss-Legendre, ``panels_per_width * m`` panels), step ``lr`` (default ``0.05/m``) times 0.2
    at each quarter of the run (the shape of the authors' StepLR).  Returns the exact L2 errors
    ``(2, S)`` of each member's best iterate among the checks (the start, every ``steps // 10``):
    row 0 up to half the steps, row 1 up to the end."""
    steps, m = check_count(steps, "steps", maximum=train.MAX_STEPS), net.width
    lr = 0.05 / m if lr is None else check_positive(lr, "lr")
    quad = quadrature(_check_panels(panels_per_width, m), order=2, interval=interval)
    y, loss = target(quad.nodes).reshape(-1, 1), quadrature_loss(quad.weights)
    opt = torch.optim.Adam([net.theta], lr=lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=max(steps // 4, 1), gamma=0.2)
    best = half = net.l2_errors(target, interval)
    for step in range(1, steps + 1):
        opt.zero_grad()
        loss(net(quad.nodes), y).backward()
        opt.step()
        sched.step()
        if step % max(steps // 10, 1) == 0 or step == steps:
            best = np.minimum(best, net.l2_errors(target, interval))
        half = best if step == steps // 2 else half
    return np.stack([half, best])


def model_floor_search(target: Target, m: int, starts: int, steps: int, *, extra: BreakpointNet | None = None,
                       seed: int = 0, lr: float | None = None,
                       interval: tuple[float, float] = (-1.0, 1.0)) -> dict:
    """The best breakpoint net of width ``m`` found (an upper bound on the model's floor F_m):
    :func:`optimise_breakpoints` (step decay, ``lr`` default ``0.5/m``) from ``starts`` random
    balanced-sign starts (seed ``seed``) and the nets of ``extra`` (e.g. an explicit configuration,
    trained nets), all members in one batch.  Returns ``floor`` (best exact error), ``half_steps``
    (best after half the steps), ``half_starts`` (best over the first half of the random starts and
    ``extra``) and ``errors`` (per member, ``(2, S)`` as :func:`optimise_breakpoints`)."""
    m, starts = check_count(m, "m"), check_count(starts, "starts")
    net = BreakpointNet.random(m, starts, interval=interval, seed=check_seed(seed))
    if extra is not None:
        if not isinstance(extra, BreakpointNet) or extra.width != m:
            raise TypeError(f"extra must be a BreakpointNet of width {m} or None")
        net = BreakpointNet(torch.cat([net.breakpoints, extra.breakpoints]), torch.cat([net.signs, extra.signs]))
    err = optimise_breakpoints(target, net, steps, lr=0.5 / m if lr is None else lr, interval=interval)
    keep = np.r_[np.arange(max(starts // 2, 1)), np.arange(starts, err.shape[1])]
    return {"floor": float(err[1].min()), "half_steps": float(err[0].min()),
            "half_starts": float(err[1, keep].min()), "errors": err}


def authors_setting(target: Target, m: int, members: int, steps: int, horizons: Sequence[int], *,
                    seed: int = 0, lr: float = 1e-3, decay_every: int = 10_000, gamma: float = 0.2,
                    dtype: torch.dtype = torch.float32, interval: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """Gentile and Welper's public experiment (their ``func_approx_untrained_ar.py``, re-written):
    the breakpoint model with i.i.d. signs and breakpoints uniform on ``interval``, Adam with
    step ``lr`` times ``gamma`` every ``decay_every`` steps, on the mean squared error at ``2m``
    equispaced points, in ``dtype``.  Returns exact L2 errors ``(horizons, members)``."""
    m, members, horizons = check_count(m, "m"), check_count(members, "members"), _check_horizons(steps, horizons, train.MAX_STEPS)
    (a, b), gamma = check_interval(interval), check_positive(gamma, "gamma")
    gen = torch_generator(check_seed(seed))
    theta = a + (b - a) * torch.rand(members, m, generator=gen, dtype=torch.float64)
    signs = torch.randint(0, 2, (members, m), generator=gen).double() * 2 - 1
    net = BreakpointNet(theta.to(check_dtype(dtype)), signs.to(dtype))
    x = torch.linspace(a, b, 2 * m, dtype=torch.float64)
    y, x = target(x).to(dtype).reshape(-1, 1), x.to(dtype)
    opt = torch.optim.Adam(net.parameters(), lr=check_positive(lr, "lr"))
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=check_count(decay_every, "decay_every"), gamma=gamma)
    errs = []
    for step in range(1, steps + 1):
        opt.zero_grad()
        ((net(x) - y) ** 2).mean(0).sum().backward()      # each member's own MSE (Adam is per coordinate)
        opt.step()
        sched.step()
        if step in horizons:
            errs.append(net.l2_errors(target, interval))
    return np.array(errs)


def train_relu_ensemble(hidden: Sequence[int], members: int, seed: int, target: Target, quad: object,
                        steps: int, interval: tuple[float, float] = (0.0, 1.0),
                        start: EnsembleMLP | None = None) -> dict:
    """GD on ``members`` ReLU nets ``1 -> hidden -> 1`` (:meth:`EnsembleMLP.random` with
    ``seed``) on the quadrature loss of ``target`` (rule ``quad``: ``nodes``, ``weights``,
    ``inputs``), each with ``eta_s = 1 / (2 lambda_max(Gram_s))``, for ``steps`` steps; the
    sharpness and each member's loss recorded at the start, half-way and the end.  ``start``:
    the starting ensemble instead (e.g. perturbed constructions; ``hidden``, ``members`` and
    ``seed`` must then match it).  Returns a dict: ``params``, ``err`` and ``pieces`` (exact, on
    ``interval``, per member), ``pieces0`` and ``err0`` (at the start), ``diverged``, ``kinks_in``/``units`` (first-layer kinks inside
    ``interval`` at initialisation), ``loss_drop`` (half-way / end, per member) and ``sharp``
    (``max_s eta_s lambda_max(H_s)`` at the checks).  Guard: ``members <=`` :data:`MAX_MEMBERS`."""
    members = check_count(members, "members", maximum=MAX_MEMBERS)
    steps = check_count(steps, "steps", 2, train.MAX_STEPS)
    lo, hi = check_interval(interval)
    y = target(quad.nodes).reshape(-1, 1)

    def member_losses(model: nn.Module, step: int) -> np.ndarray:
        """The quadrature loss of every member (unscaled)."""
        with torch.no_grad():
            return ((model(quad.inputs) - y) ** 2 * quad.weights.reshape(-1, 1)).sum(0).numpy()

    ens = EnsembleMLP.random(hidden, members, seed=seed) if start is None else start
    if not isinstance(ens, EnsembleMLP) or ens.members != members or ens.hidden != list(hidden):
        raise ValueError(f"start must be an EnsembleMLP with {members} members and hidden widths {list(hidden)}")
    an0 = [pieces.piece_analysis(ens.member(s), interval) for s in range(members)]
    pieces0 = np.array([a.count for a in an0])
    err0 = np.array([pl_l2_error(ens.member(s), target, interval, a.breakpoints) for s, a in enumerate(an0)])
    kink0 = -ens.biases[0].detach() / ens.weights[0].detach()[:, :, 0]   # first-layer kinks
    lam = np.array([float(torch.linalg.eigvalsh(
        ntk_gram(ens.member(s), quad.nodes, quad.weights))[-1]) for s in range(members)])
    eta = step_size_from_gram(float(lam.max()))                 # eta_s = 1 / (2 lam_s)
    loss = quadrature_loss(quad.weights, lam.max() / lam)
    hooks = {"member_loss": member_losses,   # lambda_max of the scaled loss = max_s c_s lambda_max(H_s)
             "sharp": train.sharpness_hook(loss, quad.inputs, y, every=steps // 2)}
    run = train.gd(ens, loss, quad.inputs, y, lr=eta, steps=steps,
                   record_every=steps // 2, hooks=hooks, desc=f"{list(hidden)}")
    member_loss = np.asarray(run.history["member_loss"])               # (0, half, end) x members
    out = {"params": ens.parameter_count(), "err": [], "pieces": [], "pieces0": pieces0, "err0": err0,
           "diverged": run.diverged_at,
           "kinks_in": int(((kink0 > lo) & (kink0 < hi)).sum()), "units": int(kink0.numel()),
           "loss_drop": member_loss[1] / member_loss[-1],              # per member, half-way / end
           "sharp": eta * np.asarray(run.history["sharp"])}            # max_s eta_s lambda_max(H_s)
    for s in range(members):
        member = run.model.member(s)
        analysis = pieces.piece_analysis(member, interval)
        out["pieces"].append(analysis.count)
        out["err"].append(pl_l2_error(member, target, interval, analysis.breakpoints))
    out["err"], out["pieces"] = np.array(out["err"]), np.array(out["pieces"])
    return out


def yarotsky_references(depths: Sequence[int]) -> list[dict]:
    """Yarotsky's ``x^2`` network at each depth on ``[0, 1]``: ``params``, exact ``pieces``,
    ``err_exact`` (``sqrt`` of :func:`yarotsky_l2_error_sq_exact`) and ``err_float`` (the
    float64 network's error integrated between its exact breakpoints)."""
    out = []
    for m in depths:
        m = check_count(m, "depths[i]")
        net = yarotsky_square_net(m)
        analysis = pieces.piece_analysis(net, (0.0, 1.0))
        out.append({"params": parameter_count(net), "pieces": analysis.count,
                    "err_exact": math.sqrt(yarotsky_l2_error_sq_exact(m)),
                    "err_float": pl_l2_error(net, lambda x: x**2, (0.0, 1.0), analysis.breakpoints)})
    return out
