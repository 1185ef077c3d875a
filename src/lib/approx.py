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
* :func:`quadrature_loss` -- the continuous L2 loss ``sum_s c_s ||f_s - g||^2`` replaced by a
  quadrature rule; the factors ``c_s`` give each member its own step size in one GD run.
* :func:`ntk_gram` -- the empirical NTK Gram matrix on quadrature nodes,
  ``K_ij = sqrt(w_i w_j) <grad_theta f(x_i), grad_theta f(x_j)>``; its top eigenvalue is half
  the top eigenvalue of the Gauss-Newton Hessian of the quadrature loss, which fixes the
  step size (:func:`step_size_from_gram`).
* :func:`spline_projection`, :func:`adapted_knots` -- best L2 approximation by continuous
  piecewise-linear functions with given knots (the reference "linear spline with m knots").
* :func:`pl_l2_error` -- the L2 error of a function that is affine between given
  breakpoints (for a general network: :func:`lib.pieces.breakpoints`), by Gauss-Legendre on
  every cell (exact up to the smooth target's quadrature error).
* :func:`yarotsky_l2_error_sq_exact` -- ``||f_m - x^2||^2_{L2[0,1]}`` in exact arithmetic.
* :func:`fit_power_law` -- least-squares slope of ``log y`` against ``log x``.

Everything computes in the dtype it is given (float64 in the book) and on the CPU by default.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch
from scipy.linalg import solve_banded
from torch import nn

from lib.data import gauss_legendre
from lib.exact import check_count, check_dtype, check_interval, check_knots, linear_relu_layers
from lib.sawtooth import yarotsky_exact
from lib.seeding import check_seed, torch_generator

__all__ = [
    "BreakpointNet", "EnsembleMLP", "quadrature_loss", "ntk_gram", "step_size_from_gram",
    "SplineFit", "spline_projection", "adapted_knots", "pl_l2_error",
    "yarotsky_l2_error_sq_exact", "PowerFit", "fit_power_law",
]

Target = Callable[[torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------- argument checks
def _column(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    """``x`` of shape ``(n,)`` or ``(n, 1)`` as a flat ``(n,)`` tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 2 and x.shape[1] == 1:
        return x.reshape(-1)
    if x.dim() != 1:
        raise ValueError(f"{name} must have shape (n,) or (n, 1), got {tuple(x.shape)}")
    return x


# ----------------------------------------------------------------------------- breakpoint nets
class BreakpointNet(nn.Module):
    """``S`` shallow networks ``f_s(x) = m^(-1/2) sum_r a_{s,r} relu(x - theta_{s,r})``.

    The model of Gentile and Welper (arXiv 2209.08399): one hidden layer of width ``m`` with
    input weight 1, trained biases (the *breakpoints* ``theta``, a parameter of shape
    ``(S, m)``) and fixed output weights ``a / sqrt(m)`` with signs ``a = +-1`` (a buffer).
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

    def __init__(self, breakpoints: torch.Tensor, signs: torch.Tensor) -> None:
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
        if signs.shape != breakpoints.shape:
            raise ValueError(f"signs must have the shape of breakpoints {tuple(breakpoints.shape)}, "
                             f"got {tuple(signs.shape)}")
        a = signs.detach().clone().to(theta.dtype).reshape(theta.shape)
        if not torch.all(a.abs() == 1):
            raise ValueError("signs must all be +1 or -1")
        self.theta = nn.Parameter(theta)
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
        return BreakpointNet(self.theta.detach()[s], self.signs[s])

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
        """Stack ``Linear``/``ReLU`` networks of identical architecture (input and output 1)."""
        if not nets:
            raise ValueError("nets must not be empty")
        per_net = []
        for net in nets:
            layers = linear_relu_layers(net)
            per_net.append([layer for layer in layers if isinstance(layer, nn.Linear)])
        weights = [torch.stack([layers[i].weight.detach() for layers in per_net])
                   for i in range(len(per_net[0]))]
        biases = [torch.stack([layers[i].bias.detach() for layers in per_net])
                  for i in range(len(per_net[0]))]
        return cls(weights, biases)

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
    member = check_count(member, "member", 0)
    trainable = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    if not trainable:
        raise ValueError("model has no trainable parameters")
    fixed = {n: p.detach() for n, p in model.named_parameters() if not p.requires_grad}
    fixed.update(dict(model.named_buffers()))
    with torch.no_grad():
        width = model(x.reshape(-1, 1)).reshape(x.shape[0], -1).shape[1]
    if member >= width:
        raise ValueError(f"member must be < {width}, got {member}")

    def column(params: dict[str, torch.Tensor]) -> torch.Tensor:
        out = torch.func.functional_call(model, {**params, **fixed}, (x.reshape(-1, 1),))
        return out.reshape(x.shape[0], -1)[:, member]

    jacs = torch.func.jacrev(column)(trainable)
    rows = [jacs[n].reshape(x.shape[0], -1) for n in trainable]
    jac = torch.cat(rows, dim=1).detach()
    if weights is not None:
        w = _column(weights, "weights").to(jac.dtype)
        if w.shape[0] != jac.shape[0]:
            raise ValueError(f"weights must have {jac.shape[0]} entries, got {w.shape[0]}")
        jac = jac * w.sqrt().unsqueeze(1)
    return jac @ jac.T


def step_size_from_gram(top_eigenvalue: float, fraction: float = 1.0) -> float:
    """``eta = fraction / lambda_max(H_GN)`` with ``H_GN = 2 J^T W J``, i.e.
    ``fraction / (2 lambda_max(K))`` for the top eigenvalue of :func:`ntk_gram`.

    ``fraction = 1`` puts ``2/eta`` at twice the Gauss-Newton sharpness: half the largest
    step for which GD on the linearised model is stable (``eta < 2 / lambda_max``).
    """
    if not (isinstance(top_eigenvalue, (int, float)) and math.isfinite(top_eigenvalue)
            and top_eigenvalue > 0):
        raise ValueError(f"top_eigenvalue must be a positive finite number, got {top_eigenvalue!r}")
    if not (isinstance(fraction, (int, float)) and 0 < fraction < 2):
        raise ValueError(f"fraction must lie in (0, 2), got {fraction!r}")
    return float(fraction) / (2.0 * float(top_eigenvalue))


# ----------------------------------------------------------------------------- splines
def _cells(knots: np.ndarray, order: int, subdivide: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gauss nodes and weights on every cell between knots (each cut into ``subdivide``
    equal parts); also the index of the knot cell of every node."""
    edges = knots[:-1, None] + (knots[1:] - knots[:-1])[:, None] * np.linspace(0, 1, subdivide + 1)[None, :]
    x, w = gauss_legendre(edges[:, :-1].reshape(-1), edges[:, 1:].reshape(-1), order)
    cell = np.repeat(np.arange(len(knots) - 1), subdivide * order)
    return x, w, cell


def _target_np(target: Target, x: np.ndarray) -> np.ndarray:
    y = target(torch.as_tensor(x, dtype=torch.float64))
    return np.asarray(y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else y,
                      dtype=np.float64).reshape(-1)


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
    cell.  ``target`` maps a float64 tensor to values.
    """
    k = check_knots(knots)
    x, w, cell = _cells(k, order, check_count(subdivide, "subdivide"))
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
    the local L2 error of linear interpolation (our choice of adapted knots).
    """
    n = check_count(interior, "interior", 0)
    a, b = check_interval(interval)
    grid = np.linspace(a, b, check_count(panels, "panels") + 1)
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
    cell width).
    """
    a, b = check_interval(interval)
    t = np.asarray(breakpoints, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(t)):
        raise ValueError("breakpoints must be finite")
    knots = np.unique(np.concatenate([[a, b], t[(t > a) & (t < b)]]))
    x, w, _ = _cells(knots, order, check_count(subdivide, "subdivide"))
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
    ``16^(-m) / 30``, since ``f_m`` interpolates ``x^2`` at the nodes.)  Cost ``O(m 2^m)``.
    """
    m = check_count(m, "m")
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
    if dof > 0:
        s2 = float(resid @ resid) / dof
        cov = s2 * np.linalg.inv(design.T @ design)
        stderr = float(np.sqrt(cov[1, 1]))
    else:
        stderr = float("nan")
    return PowerFit(exponent=float(coef[1]), constant=float(np.exp(coef[0])), stderr=stderr)
