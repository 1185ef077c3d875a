"""The book's architectures in one place: random and perturbed ReLU nets, tent nets, MLPs, the
small CNN of the chapter *Edge of stability*, and the chapters' losses.

* :func:`mlp` -- the one MLP builder: widths, activation, initialisation, seed, dtype (and
  bias, weight scale, device).  Every draw comes from a ``torch.Generator`` seeded with
  ``seed``, layer by layer, weights before biases; building consumes no global random state.
* :func:`random_relu_net` -- a ReLU net ``1 -> n_1 -> ... -> n_L -> 1`` at initialisation,
  drawn in float64 and stored in any format (the chapter *Counting pieces*).
* :func:`perturbed_net` -- every weight multiplied by ``1 + rel u``, ``u ~ U(-1, 1)``.
* :func:`tent_net` -- the tent map with its kink off ``1/2`` composed ``depth`` times (the
  chapter *Floating-point error in backprop*).
* :class:`SunCNN` -- one convolution kernel, swish, global average pooling: the model of Sun et
  al. (arXiv 2206.02001) in the chapter *Edge of stability*.
* Losses: :func:`mse` (mean of squares), :func:`square_loss` (Cohen et al.'s
  ``0.5 ||f(x) - y||^2`` averaged over the examples), :func:`logistic` (binary cross-entropy
  on logits).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lib.exact import (check_count, check_dtype, check_real, check_widths, linear_arrays,
                       linear_relu_layers)
from lib.fp import to_format
from lib.seeding import check_seed, torch_generator

__all__ = [
    "INITS", "RELU_NET_INITS", "ACTIVATIONS", "mlp", "random_relu_net", "perturbed_net", "tent_net", "SunCNN",
    "mse", "square_loss", "logistic",
]

#: Initialisations of :func:`random_relu_net`.
RELU_NET_INITS: tuple[str, ...] = ("he", "pytorch", "he-zero-bias")
#: Initialisations of :func:`mlp`.
INITS: tuple[str, ...] = RELU_NET_INITS + ("xavier-normal",)
#: Size guard of :func:`mlp`: parameters in all (800 MB in float64).
MAX_MLP_PARAMETERS = 10**8
#: Activations of :func:`mlp` by name.
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}


# --------------------------------------------------------------------------- MLPs
def _activation(activation: Any) -> Callable[[], nn.Module] | None:
    if activation is None:
        return None
    if isinstance(activation, str):
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be None, one of {', '.join(ACTIVATIONS)} or an "
                             f"nn.Module class, got {activation!r}")
        return ACTIVATIONS[activation]
    if isinstance(activation, type) and issubclass(activation, nn.Module):
        return activation
    raise TypeError(f"activation must be None, a name or an nn.Module class, got {activation!r}")


def _init_linear(lin: nn.Linear, init: str, gen: torch.Generator, scale: float) -> None:
    """Draw ``lin``'s weights (then its bias) from ``gen`` by ``init``; weights times ``scale``."""
    fan_in = lin.in_features
    bound = 1.0 / math.sqrt(fan_in)
    with torch.no_grad():
        if init == "pytorch":
            lin.weight.uniform_(-bound, bound, generator=gen)
        elif init == "xavier-normal":
            nn.init.xavier_normal_(lin.weight, generator=gen)
        else:
            lin.weight.normal_(0.0, math.sqrt(2.0 / fan_in), generator=gen)
        lin.weight.mul_(scale)
        if lin.bias is not None:
            if init in ("he-zero-bias", "xavier-normal"):
                lin.bias.zero_()
            else:
                lin.bias.uniform_(-bound, bound, generator=gen)


def mlp(widths: Sequence[int], activation: Any = "relu", *, init: str = "pytorch",
        seed: int = 0, dtype: Any = torch.float64, bias: bool = True, scale: float = 1.0,
        device: Any = "cpu") -> nn.Sequential:
    """A fully connected network ``widths[0] -> widths[1] -> ... -> widths[-1]``.

    ``activation`` between the layers (not after the last): ``"relu"``, ``"tanh"``, an
    ``nn.Module`` class, or ``None`` (a deep linear network).  ``init``, with
    ``b = 1/sqrt(fan_in)``:

    * ``"pytorch"``: ``nn.Linear``'s default, weights and biases ``U(-b, b)``;
    * ``"he"``: He et al. (ICCV 2015) weights ``N(0, 2/fan_in)``, biases ``U(-b, b)``;
    * ``"he-zero-bias"``: He weights, zero biases;
    * ``"xavier-normal"``: Glorot-normal weights (``torch.nn.init.xavier_normal_``), zero biases.

    The weights are then multiplied by ``scale``.  Draws come from a ``torch.Generator``
    seeded with ``seed``, directly in ``dtype`` (layer by layer, weights then biases); the
    parameters live on ``device``.  Guards: ``widths`` positive integers (at most
    :data:`MAX_MLP_PARAMETERS` weights in all, checked before allocating), ``scale`` a positive
    finite real, ``seed`` as in :func:`lib.exact.check_seed`, ``bias`` a bool.
    """
    sizes = [check_count(w, f"widths[{i}]") for i, w in enumerate(widths)]
    if len(sizes) < 2:
        raise ValueError(f"widths must list at least the input and output sizes, got {widths!r}")
    if sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:])) > MAX_MLP_PARAMETERS:
        raise ValueError(f"widths must give at most {MAX_MLP_PARAMETERS} parameters (a size "
                         f"guard), got {sizes}")
    if init not in INITS:
        raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    act = _activation(activation)
    dtype = check_dtype(dtype)
    scale = check_real(scale, "scale", gt=0)
    if not isinstance(bias, (bool, np.bool_)):
        raise TypeError(f"bias must be a bool, got {bias!r}")
    gen = torch_generator(check_seed(seed))
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = nn.utils.skip_init(nn.Linear, n_in, n_out, bias=bias, dtype=dtype)
        _init_linear(lin, init, gen, scale)
        layers.append(lin)
        if act is not None and i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers).to(device)


def random_relu_net(widths: Sequence[int], init: str = "pytorch", seed: int = 0,
                    dtype: torch.dtype = torch.float64) -> nn.Sequential:
    """A random ReLU net ``1 -> n_1 -> ... -> n_L -> 1`` at initialisation.

    ``init``: ``"pytorch"`` (weights and biases ``U(-b, b)``, ``b = 1/sqrt(fan_in)``),
    ``"he"`` (weights ``N(0, 2/fan_in)``, biases ``U(-b, b)`` as PyTorch's) or
    ``"he-zero-bias"`` (He's weights with zero biases, as He et al. set them: then
    ``f(t x) = t f(x)`` for ``t >= 0``, so at most 2 pieces on any interval), as in :func:`mlp`.
    Drawn in float64 by :func:`mlp` from ``seed``, then stored in ``dtype`` by torch's
    conversion (to float16/bfloat16 it rounds through float32: see :func:`lib.fp.to_format`
    for the correctly rounded alternative).
    """
    ws = check_widths(widths)
    if not ws or min(ws) < 1:
        raise ValueError(f"widths must be a non-empty list of positive integers, got {widths!r}")
    if init not in RELU_NET_INITS:
        raise ValueError(f"init must be one of {', '.join(RELU_NET_INITS)}, got {init!r}")
    return mlp([1, *ws, 1], "relu", init=init, seed=seed).to(check_dtype(dtype))


def perturbed_net(net: nn.Sequential, rel: float, seed: int = 0,
                  dtype: torch.dtype | None = None) -> nn.Sequential:
    """A copy of ``net`` with every weight and bias ``w`` replaced by ``w (1 + rel u)``.

    ``u ~ U(-1, 1)`` i.i.d. from a NumPy generator seeded with ``seed``; computed in float64,
    stored in ``dtype`` (default: each layer's own dtype) by torch's conversion (to
    float16/bfloat16 it rounds through float32).  Zero weights stay zero.  Guards: ``rel`` a
    finite real ``>= 0``, ``seed`` as in :func:`lib.exact.check_seed`.
    """
    linear_relu_layers(net, scalar_io=True, linear_ends=False)
    seed = check_seed(seed)
    rel = check_real(rel, "rel", ge=0)
    dtype = None if dtype is None else check_dtype(dtype)
    rng = np.random.default_rng(seed)
    layers: list[nn.Module] = []
    for i, layer in enumerate(net):
        if isinstance(layer, nn.ReLU):
            layers.append(nn.ReLU())
            continue
        dt = dtype or layer.weight.dtype
        new = nn.utils.skip_init(nn.Linear, layer.in_features, layer.out_features,
                                 bias=layer.bias is not None, dtype=dt)
        w, b = linear_arrays(layer, i)
        with torch.no_grad():
            for src, dst in ((w, new.weight), (b if layer.bias is not None else None, new.bias)):
                if src is None:
                    continue
                u = torch.from_numpy(rng.uniform(-1.0, 1.0, size=src.shape))
                dst.copy_((torch.from_numpy(src) * (1.0 + float(rel) * u)).to(dt))
        layers.append(new)
    return nn.Sequential(*layers)


def tent_net(depth: int, apex: float, dtype: Any = torch.float64) -> nn.Sequential:
    """The tent map with its kink at ``apex`` in (0, 1), composed ``depth`` times, as a ReLU
    network with ``depth`` hidden layers of width 3:
    ``T(y) = y/a`` on ``[0, a]``, ``(1 - y)/(1 - a)`` on ``[a, 1]``, 0 outside, i.e.
    ``T(y) = sigma(y)/a - (1/a + 1/(1-a)) sigma(y - a) + sigma(y - 1)/(1 - a)``.

    The weights are computed in float64 and rounded to ``dtype`` (correctly,
    :func:`lib.fp.to_format`), so the network in each format realises a slightly different
    tent; ``apex = 1/2`` gives the hat map.  Its orbits expand errors by about
    ``exp(lib.fp.tent_lyapunov(apex))`` per layer.  Guards: ``depth`` an integer in
    1..4096, ``apex`` a real in (0, 1) (Python, NumPy, 0-d torch or Fraction).
    """
    depth = check_count(depth, "depth", maximum=4096)  # size guard: one layer per composition
    dtype = check_dtype(dtype)
    a = check_real(apex, "apex", gt=0, lt=1)
    out_w = torch.tensor([[1 / a, -(1 / a + 1 / (1 - a)), 1 / (1 - a)]], dtype=torch.float64)
    shifts = torch.tensor([0.0, -a, -1.0], dtype=torch.float64)
    layers: list[nn.Module] = []
    for i in range(depth):
        lin = nn.utils.skip_init(nn.Linear, 1 if i == 0 else 3, 3, dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(torch.ones(3, 1, dtype=torch.float64) if i == 0
                             else torch.ones(3, 1, dtype=torch.float64) @ out_w)
            lin.bias.copy_(shifts)
        layers += [lin, nn.ReLU()]
    last = nn.utils.skip_init(nn.Linear, 3, 1, dtype=torch.float64)
    with torch.no_grad():
        last.weight.copy_(out_w)
        last.bias.zero_()
    layers.append(last)
    return to_format(nn.Sequential(*layers), dtype)


# --------------------------------------------------------------------------- the small CNN
class SunCNN(nn.Module):
    """Convolution with one ``kernel x kernel`` filter (no bias) -> swish ``z sigmoid(beta z)``
    -> global average pooling: one logit per image (Sun et al., arXiv 2206.02001).

    ``weight``: the ``kernel**2`` filter entries (any array-like); float64 by default.
    Input ``(n, 1, H, W)``, output ``(n,)``.  Guards: ``kernel`` an integer in 1..64,
    ``beta`` a finite real, ``weight`` ``kernel**2`` finite real numbers.
    """

    def __init__(self, weight: Any, kernel: int = 4, beta: float = 1.0,
                 dtype: Any = torch.float64) -> None:
        super().__init__()
        self.kernel = check_count(kernel, "kernel", maximum=64)
        self.beta = check_real(beta, "beta")
        try:
            w = torch.as_tensor(weight)
        except (TypeError, ValueError, RuntimeError):
            w = None
        if w is None or w.dtype == torch.bool or w.is_complex() or w.numel() != self.kernel**2:
            got = f"shape {tuple(w.shape)}, dtype {w.dtype}" if w is not None else type(weight).__name__
            raise ValueError(f"weight must hold kernel**2 = {self.kernel**2} real numbers, got {got}")
        if w.is_floating_point() and not bool(torch.isfinite(w).all()):
            raise ValueError(f"weight must be finite, got {int((~torch.isfinite(w)).sum())} NaN/inf entries")
        self.conv = nn.Conv2d(1, 1, self.kernel, bias=False, dtype=check_dtype(dtype))
        with torch.no_grad():
            self.conv.weight.copy_(w.reshape(1, 1, self.kernel, self.kernel))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        z = self.conv(image)
        return (z * torch.sigmoid(self.beta * z)).mean(dim=(1, 2, 3))


# --------------------------------------------------------------------------- losses
def _check_pair(out: torch.Tensor, y: torch.Tensor) -> None:
    """Refuse targets that broadcast ``out`` to a bigger shape (``(n, 1)`` against ``(n,)``
    would silently average ``n^2`` differences)."""
    if not isinstance(out, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(f"out and y must be tensors, got {type(out).__name__} and "
                        f"{type(y).__name__}")
    if out.shape != y.shape and torch.broadcast_shapes(out.shape, y.shape) != out.shape:
        raise ValueError(f"y of shape {tuple(y.shape)} does not match out of shape "
                         f"{tuple(out.shape)}")


def mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean of the squared errors over all entries: ``mean((out - y)^2)`` (NaN stays NaN).
    ``ValueError`` if ``y`` would broadcast ``out`` to a bigger shape."""
    _check_pair(out, y)
    return ((out - y) ** 2).mean()


def square_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cohen et al.'s square loss: ``0.5 ||f(x) - y||^2`` per example (rows), averaged
    (NaN stays NaN).  ``ValueError`` if ``y`` would broadcast ``out`` to a bigger shape."""
    _check_pair(out, y)
    return 0.5 * ((out - y) ** 2).sum(dim=1).mean()


def logistic(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The logistic loss of logits ``out`` against labels in {0, 1}, averaged
    (``binary_cross_entropy_with_logits``)."""
    return F.binary_cross_entropy_with_logits(out, target)
