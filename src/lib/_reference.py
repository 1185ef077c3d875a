"""The exact and mpmath engine behind :func:`lib.fp.reference` (private to :mod:`lib.fp`).

A Linear/ReLU network is evaluated, and differentiated by backprop, on arrays of numbers in
one of three backends:

``"dyadic"``
    Python integers with one power-of-two scale per array (:class:`Arr` ``v * 2^e``): exact
    and fast when the weights, inputs, targets and ``relu'(0)`` are dyadic (every float is);
``"fraction"``
    ``Fraction`` objects, exact for any rational inputs;
``"mpmath"``
    mpmath numbers at the caller's working precision (``mpmath.workdps``).

The weights are read with :func:`lib.exact.exact_weights` (exact for every format).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import mpmath
import numpy as np
from torch import nn

from lib.exact import dyadic_integers, dyadic_parts, exact_weights, to_fraction

BACKENDS = ("dyadic", "fraction", "mpmath")


def is_mpf(v: Any) -> bool:
    """Whether ``v`` is an mpmath number."""
    return isinstance(v, mpmath.mpf)


def mp_to_fraction(v: Any) -> Fraction:
    """An mpmath number as the exact ``Fraction`` it stores."""
    m, e = mpmath.mpf(v).man_exp
    return Fraction(int(m)) * Fraction(2) ** int(e)


def choose_backend(arithmetic: str, exact_values: Iterable[Fraction], at_zero: Fraction) -> str:
    """``"mpmath"`` for mpmath arithmetic; else ``"dyadic"`` when ``at_zero`` and every value
    are dyadic, ``"fraction"`` otherwise."""
    if arithmetic == "mpmath":
        return "mpmath"
    dyadic = dyadic_parts(at_zero) is not None and all(
        dyadic_parts(v) is not None for v in exact_values)
    return "dyadic" if dyadic else "fraction"


class Arr:
    """An array of numbers ``v * 2^e``: ``v`` an object ndarray of Python ints (the dyadic
    backend, one shared exponent ``e``) or of Fractions / mpmath numbers (``e = 0``)."""

    __slots__ = ("v", "e")

    def __init__(self, v: np.ndarray, e: int = 0) -> None:
        self.v, self.e = v, e

    def __add__(self, other: Arr) -> Arr:
        if self.e == other.e:
            return Arr(self.v + other.v, self.e)
        if self.e > other.e:
            return Arr(self.v * (1 << (self.e - other.e)) + other.v, other.e)
        return Arr(self.v + other.v * (1 << (other.e - self.e)), self.e)

    def __sub__(self, other: Arr) -> Arr:
        return self + Arr(-other.v, other.e)

    def __mul__(self, other: Arr) -> Arr:
        return Arr(self.v * other.v, self.e + other.e)

    def __matmul__(self, other: Arr) -> Arr:
        return Arr(self.v @ other.v, self.e + other.e)

    @property
    def T(self) -> Arr:
        return Arr(self.v.T, self.e)

    def sum0(self) -> Arr:
        return Arr(np.sum(self.v, axis=0), self.e)

    def exact(self, backend: str) -> list[Any]:
        """Flat list of values: Fractions (exact backends) or mpf."""
        flat = self.v.reshape(-1).tolist()
        if backend == "dyadic":
            scale = Fraction(2) ** self.e
            return [Fraction(int(v)) * scale for v in flat]
        return list(flat)


def make(values: Sequence[Any], shape: tuple[int, ...], backend: str) -> Arr:
    """An :class:`Arr` holding exact numbers ``values`` (Fractions / ints / floats) in
    ``backend``."""
    if backend == "dyadic":
        ints, k = dyadic_integers(values)
        out = np.empty(len(ints), dtype=object)
        out[:] = ints
        return Arr(out.reshape(shape), -k)
    out = np.empty(len(values), dtype=object)
    if backend == "fraction":
        for i, v in enumerate(values):
            out[i] = to_fraction(v)
    else:  # mpmath, at the current working precision
        for i, v in enumerate(values):
            if is_mpf(v):
                out[i] = +v
            else:
                q = to_fraction(v)
                out[i] = mpmath.mpf(q.numerator) / q.denominator
    return Arr(out.reshape(shape), 0)


def relu_derivative(pos: np.ndarray, zero: np.ndarray, at_zero: Fraction, backend: str) -> Arr:
    """The ReLU derivative per entry: 1 where ``pos``, ``at_zero`` where ``zero``, else 0."""
    if backend == "dyadic":
        m, k = dyadic_parts(at_zero)  # checked dyadic by choose_backend
        one = 1 << k
        v = np.where(pos, one, np.where(zero, m, 0)).astype(object)
        return Arr(v, -k)
    if backend == "fraction":
        v = np.where(pos, Fraction(1), np.where(zero, at_zero, Fraction(0))).astype(object)
        return Arr(v, 0)
    z = mpmath.mpf(at_zero.numerator) / at_zero.denominator
    v = np.where(pos, mpmath.mpf(1), np.where(zero, z, mpmath.mpf(0))).astype(object)
    return Arr(v, 0)


def scale(v: Any, s: Fraction, backend: str) -> Any:
    """``v * s`` (in mpmath as ``v * numerator / denominator``)."""
    if backend == "mpmath":
        return v * s.numerator / s.denominator
    return v * s


@dataclass
class Pass:
    """A forward pass: outputs, the input of each Linear layer ``(n, k)``, the ``(pos, zero)``
    masks and pre-activations of each ReLU layer and, optionally, ``d(pre-activation)/dx``."""

    values: Arr
    inputs: list[Arr]
    masks: list[tuple[np.ndarray, np.ndarray]]
    preacts: list[Arr]
    tangents: list[Arr] | None


def network(layers: Sequence[nn.Module], backend: str) -> list[tuple[Arr, Arr] | None]:
    """The weights of Linear/ReLU ``layers`` as ``(W, b)`` arrays in ``backend`` (``None`` per
    ReLU); ``W`` has shape ``(out, in)``, ``b`` ``(1, out)``."""
    out: list[tuple[Arr, Arr] | None] = []
    for item in exact_weights(layers):
        if item is None:
            out.append(None)
            continue
        w, b = item
        shape = (len(w), len(w[0]) if w else 0)
        out.append((make([v for row in w for v in row], shape, backend),
                    make(b, (1, len(b)), backend)))
    return out


def forward(layers: list[tuple[Arr, Arr] | None], x: Arr, backend: str, at_zero: Fraction,
            tangents: bool) -> Pass:
    """The forward pass at the inputs ``x`` ``(n, 1)``; with ``tangents`` also the derivatives
    of the pre-activations with respect to the input (``relu'(0) = at_zero``)."""
    a = x
    t = make([1] * x.v.shape[0], x.v.shape, backend) if tangents else None
    inputs, masks, preacts, tans = [], [], [], []
    z: Arr | None = None
    for item in layers:
        if item is not None:
            w, b = item
            inputs.append(a)
            z = a @ w.T + b
            a = z
            if t is not None:
                t = t @ w.T
        else:
            assert z is not None
            pos, zero = z.v > 0, z.v == 0
            masks.append((pos, zero))
            preacts.append(z)
            if t is not None:
                tans.append(t)
                t = t * relu_derivative(pos, zero, at_zero, backend)
            a = Arr(np.where(pos, z.v, 0).astype(object), z.e)
            z = a
    return Pass(values=a, inputs=inputs, masks=masks, preacts=preacts,
                tangents=tans if tangents else None)


def backward(layers: list[tuple[Arr, Arr] | None], fwd: Pass, cot: Arr, backend: str,
             at_zero: Fraction) -> list[Arr]:
    """Gradients of ``sum_i cot_i N(x_i)`` w.r.t. each Linear's weight and bias, in
    ``named_parameters`` order."""
    grads: list[Arr] = []
    delta = cot  # (n, out)
    li, mi = len(fwd.inputs) - 1, len(fwd.masks) - 1
    for item in reversed(layers):
        if item is not None:
            w, _ = item
            a_in = fwd.inputs[li]
            li -= 1
            grads.append(delta.sum0())          # bias
            grads.append(delta.T @ a_in)        # weight, (out, in)
            delta = delta @ w
        else:
            pos, zero = fwd.masks[mi]
            mi -= 1
            delta = delta * relu_derivative(pos, zero, at_zero, backend)
    grads.reverse()
    return grads


def objective_and_gradient(layers: Sequence[nn.Module], xs: list[Any], ys: list[Any] | None,
                           objective: str, backend: str, at_zero: Fraction) -> dict[str, Any]:
    """Outputs, objective (``"mse"`` or ``"mean_output"``) and its flat parameter gradient at
    the inputs ``xs``; also the ``(n, width)`` masks of exact zeros of every ReLU layer."""
    n = len(xs)
    net = network(layers, backend)
    fwd = forward(net, make(xs, (n, 1), backend), backend, at_zero, tangents=False)
    if objective == "mse":
        assert ys is not None
        resid = fwd.values - make(ys, (n, 1), backend)
        cot, factor = resid, Fraction(2, n)
        loss = scale((resid * resid).sum0().exact(backend)[0], Fraction(1, n), backend)
    else:
        cot, factor = make([1] * n, (n, 1), backend), Fraction(1, n)
        loss = scale(fwd.values.sum0().exact(backend)[0], Fraction(1, n), backend)
    grads = backward(net, fwd, cot, backend, at_zero)
    return {"values": fwd.values.exact(backend), "loss": loss,
            "grad": [scale(v, factor, backend) for g in grads for v in g.exact(backend)],
            "zeros": [z for _, z in fwd.masks]}


def tangents(layers: Sequence[nn.Module], xs: list[Any], at_zero: Fraction) -> list[np.ndarray]:
    """``|d z_j / dx (x_i)|`` of every pre-activation ``z_j`` of every ReLU layer, exactly,
    as float64 arrays ``(n, width)``."""
    backend = choose_backend("exact", xs, at_zero)
    fwd = forward(network(layers, backend), make(xs, (len(xs), 1), backend), backend, at_zero,
                  tangents=True)
    assert fwd.tangents is not None
    return [np.array([abs(float(v)) for v in t.exact(backend)]).reshape(t.v.shape)
            for t in fwd.tangents]
