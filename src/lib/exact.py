"""The ground floor: exact arithmetic, the float formats, argument checks, reading a network.

Every computing module of ``lib`` builds on this one; it imports nothing from ``lib``.

* **Exact numbers** -- :func:`to_fraction` (any real number, a float converted *exactly*),
  :func:`dyadic_parts` (``q = m / 2^k``, or ``None``), :func:`dyadic_integers` (numbers as
  integers over one common power of two) and :func:`sign_of_products` (the exact sign of
  ``a b + c d`` for float64 arrays, by Dekker's and Knuth's error-free transformations).
* **The float formats** -- :data:`FLOAT_DTYPES`, the one tuple of the four formats of the
  book (float16, bfloat16, float32, float64), :data:`FORMAT_NAMES` and :func:`check_dtype`.
* **Argument checks** shared by the modules: :func:`check_count`, :func:`check_positive`,
  :func:`check_interval`, :func:`check_knots`, and :class:`InvalidArgumentError` (both a
  ``TypeError`` and a ``ValueError``).
* **Reading a Linear/ReLU network** -- :func:`linear_relu_layers` checks that a network is
  an ``nn.Sequential`` of ``nn.Linear``/``nn.ReLU`` (optionally with scalar input and output),
  :func:`linear_arrays` gives a layer's weights as float64 arrays and :func:`exact_weights`
  every layer's weights as exact ``Fraction`` values (the weights of every format are dyadic
  rationals, so this is the function the stored weights define).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from fractions import Fraction
from numbers import Rational
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "InvalidArgumentError", "FLOAT_DTYPES", "FORMAT_NAMES", "check_dtype", "check_count",
    "check_positive", "check_interval", "check_knots", "check_widths", "to_fraction", "dyadic_parts",
    "dyadic_integers", "two_product", "two_sum", "sign_of_products", "linear_relu_layers", "linear_arrays", "exact_weights",
]

#: The four floating-point formats of the book, narrowest first.
FLOAT_DTYPES: tuple[torch.dtype, ...] = (
    torch.float16, torch.bfloat16, torch.float32, torch.float64,
)
#: Each format by its name (``"float16"``, ...).
FORMAT_NAMES: dict[str, torch.dtype] = {str(d).replace("torch.", ""): d for d in FLOAT_DTYPES}

ExactLayer = tuple[list[list[Fraction]], list[Fraction]]


class InvalidArgumentError(TypeError, ValueError):
    """A bad argument that is both of the wrong kind and an invalid value.

    Raised for a non-integer count (``2.5``, ``True``, ``"3"``) and for an unsupported
    dtype; catching either ``TypeError`` or ``ValueError`` catches it (like NumPy's
    ``AxisError``).
    """


# --------------------------------------------------------------------------- argument checks
def check_dtype(dtype: Any, name: str = "dtype", *, names: bool = True) -> torch.dtype:
    """Return the torch dtype for ``dtype``, one of :data:`FLOAT_DTYPES` (or, with
    ``names=True``, its name such as ``"float32"``); else raise :class:`InvalidArgumentError`
    naming the argument."""
    if names and isinstance(dtype, str) and dtype in FORMAT_NAMES:
        return FORMAT_NAMES[dtype]
    if isinstance(dtype, torch.dtype) and dtype in FLOAT_DTYPES:
        return dtype
    accepted = ", ".join(FORMAT_NAMES) + (" (a torch dtype or its name)" if names else
                                          " (a torch dtype)")
    raise InvalidArgumentError(f"{name} must be one of {accepted}, got {dtype!r}")


def check_count(value: Any, name: str, minimum: int = 1, maximum: int | None = None) -> int:
    """Return ``value`` as an int after checking it is an integer ``>= minimum`` (and
    ``<= maximum`` when given: the size guards that stop a call before it allocates).

    A non-integer raises :class:`InvalidArgumentError`, an out-of-range one ``ValueError``;
    both messages name the argument.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise InvalidArgumentError(
            f"{name} must be an integer >= {minimum}, got {value!r} of type {type(value).__name__}"
        )
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum} (a size guard), got {value}")
    return value


def check_positive(value: Any, name: str) -> float:
    """Return ``value`` as a float after checking it is a positive finite real number."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer,
                                                                     np.floating)):
        raise InvalidArgumentError(f"{name} must be a positive finite number, got "
                                   f"{type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return value


def check_interval(interval: Any, name: str = "interval", *,
                   exact: bool = False) -> tuple[Any, Any]:
    """``interval`` as ``(lo, hi)`` with finite ``lo < hi``: floats, or with ``exact=True``
    Fractions (converted exactly by :func:`to_fraction`).

    ``TypeError`` if it is not a pair of real numbers, ``ValueError`` if an end is not finite
    or the interval is empty or reversed; the messages name the argument.
    """
    try:
        lo_raw, hi_raw = interval
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a pair (lo, hi) of numbers, got {interval!r}") from None
    try:
        lo, hi = to_fraction(lo_raw, f"{name}[0]"), to_fraction(hi_raw, f"{name}[1]")
    except ValueError:
        raise ValueError(f"{name} must be finite with lo < hi, got {interval!r}") from None
    if not lo < hi:
        kind = "an empty" if lo == hi else "a reversed"
        raise ValueError(f"{name} must satisfy lo < hi; got {kind} interval "
                         f"({float(lo)!r}, {float(hi)!r})")
    return (lo, hi) if exact else (float(lo), float(hi))


def check_knots(knots: Iterable[Any], name: str = "knots", *, exact: bool = False) -> Any:
    """At least two finite, strictly increasing numbers: a tuple of Fractions
    (``exact=True``, converted exactly) or a float64 array."""
    if exact:
        ks: Any = tuple(to_fraction(k, name) for k in knots)
        increasing = all(a < b for a, b in zip(ks, ks[1:]))
        finite = True
    else:
        ks = np.asarray(knots, dtype=np.float64).reshape(-1)
        finite = bool(np.all(np.isfinite(ks)))
        increasing = bool(np.all(np.diff(ks) > 0))
    if len(ks) < 2 or not finite or not increasing:
        raise ValueError(f"{name} must be at least two finite, strictly increasing numbers")
    return ks


def check_widths(widths: Any) -> list[int]:
    """A sequence of layer widths as a list of ints ``>= 0`` (``TypeError`` for a non-sequence
    or a non-integer entry, ``ValueError`` for a negative one, naming the entry)."""
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence):
        raise TypeError(f"widths must be a sequence of integers, got {type(widths).__name__}")
    out = []
    for i, w in enumerate(widths):
        if isinstance(w, (bool, np.bool_)) or not isinstance(w, (int, np.integer)):
            raise TypeError(f"widths[{i}] must be an integer, got {w!r}")
        if w < 0:
            raise ValueError(f"widths[{i}] must be >= 0, got {w}")
        out.append(int(w))
    return out


# --------------------------------------------------------------------------- exact numbers
def to_fraction(x: Any, name: str = "x") -> Fraction:
    """``x`` as an exact :class:`~fractions.Fraction`.

    Accepts ``Fraction`` (and other ``numbers.Rational``), ``int``, Python and NumPy floats
    and integers, and one-element torch tensors; a float converts exactly (``0.1`` becomes
    ``3602879701896397/36028797018963968``).  ``bool`` and non-numbers raise ``TypeError``,
    NaN and infinities ``ValueError`` (messages name the argument ``name``).
    """
    if isinstance(x, torch.Tensor):
        if x.numel() != 1:
            raise TypeError(f"{name} must be a number, got a tensor of shape {tuple(x.shape)}")
        x = x.item()
    if isinstance(x, (bool, np.bool_)):
        raise TypeError(f"{name} must be a number, got a bool")
    if isinstance(x, Fraction):
        return x
    if isinstance(x, (int, np.integer)):
        return Fraction(int(x))
    if isinstance(x, Rational):
        return Fraction(x.numerator, x.denominator)
    if isinstance(x, (float, np.floating)):
        value = float(x)  # float16/32 -> float64 is exact
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")
        return Fraction(value)
    raise TypeError(f"{name} must be a real number (Fraction, int or float), "
                    f"got {type(x).__name__}")


def dyadic_parts(q: Fraction) -> tuple[int, int] | None:
    """``(m, k)`` with ``q = m / 2^k`` in lowest terms, or ``None`` if the denominator of
    ``q`` is not a power of two."""
    d = int(q.denominator)  # a Fraction built from NumPy integers keeps them
    if d & (d - 1):
        return None
    return int(q.numerator), d.bit_length() - 1


def dyadic_integers(values: Sequence[Any]) -> tuple[list[int], int]:
    """``(ints, k)`` with ``values[i] = ints[i] / 2^k`` exactly and ``k >= 0`` the smallest
    such exponent: dyadic numbers (floats, ints, Fractions) over one common power of two.

    Raises ``ValueError`` if a value is not dyadic.
    """
    parts = []
    for v in values:
        if isinstance(v, float):
            n, d = v.as_integer_ratio()  # fast path; raises for NaN and infinities
        else:
            q = to_fraction(v)
            n, d = int(q.numerator), int(q.denominator)
        if d & (d - 1):
            raise ValueError(f"{v!r} is not a dyadic rational (its denominator is {d})")
        parts.append((n, d.bit_length() - 1))
    k = max([0] + [kk for _, kk in parts])
    return [n << (k - kk) for n, kk in parts], k


# --------------------------------------------------------------------------- exact signs
_SPLIT = 134217729.0  # 2^27 + 1 (Veltkamp splitting)
_EXPANSION_LO, _EXPANSION_HI = 2.0**-400, 2.0**400  # operand range of the exact expansions


def two_product(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dekker's TwoProduct: ``p + e == a * b`` exactly (no FMA needed; operands in range)."""
    p = a * b
    c = _SPLIT * a
    ah = c - (c - a)
    al = a - ah
    c = _SPLIT * b
    bh = c - (c - b)
    bl = b - bh
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, e


def two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Knuth's TwoSum: ``s + e == a + b`` exactly."""
    s = a + b
    bb = s - a
    e = (a - (s - bb)) + (b - bb)
    return s, e


def sign_of_products(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray) -> np.ndarray:
    """``sign(a*b + c*d)`` exactly for exact float64 operands (1-D arrays of equal length).

    Dekker's TwoProduct gives ``ab = p1 + e1`` and ``cd = p2 + e2`` exactly; Shewchuk's
    Two-Two-Sum turns ``(p1 + e1) + (p2 + e2)`` into a non-overlapping expansion
    ``x3 + x2 + x1 + x0`` (decreasing magnitude), whose leading non-zero component has the
    sign of the sum.  Operands outside ``[2^-400, 2^400]`` (other than 0) use ``Fraction``.
    """
    out = np.zeros(a.shape, dtype=np.int8)
    if a.size == 0:
        return out

    def ok(x: np.ndarray) -> np.ndarray:
        ax = np.abs(x)
        return (x == 0) | ((ax >= _EXPANSION_LO) & (ax <= _EXPANSION_HI))

    good = ok(a) & ok(b) & ok(c) & ok(d)
    ia = np.nonzero(good)[0]
    if ia.size:
        p1, e1 = two_product(a[ia], b[ia])
        p2, e2 = two_product(c[ia], d[ia])
        # Two_Two_Sum(a1=p1, a0=e1, b1=p2, b0=e2) -> x3, x2, x1, x0 (Shewchuk 1997)
        i, x0 = two_sum(e1, e2)
        j, z = two_sum(p1, i)
        i, x1 = two_sum(z, p2)
        x3, x2 = two_sum(j, i)
        s = np.sign(x3)
        for x in (x2, x1, x0):
            s = np.where(s == 0, np.sign(x), s)
        out[ia] = s.astype(np.int8)
    for k in np.nonzero(~good)[0]:
        v = (Fraction(float(a[k])) * Fraction(float(b[k]))
             + Fraction(float(c[k])) * Fraction(float(d[k])))
        out[k] = (v > 0) - (v < 0)
    return out


# --------------------------------------------------------------------------- networks
def linear_relu_layers(net: Any, *, scalar_io: bool = False,
                       linear_ends: bool = True) -> list[nn.Module]:
    """Check that ``net`` is an ``nn.Sequential`` of ``nn.Linear`` and ``nn.ReLU`` layers and
    return its layers as a list.

    ``linear_ends``: it must start and end with an ``nn.Linear``.  ``scalar_io``: it must take
    one input and give one output, and the widths of consecutive layers must agree.  Raises
    ``TypeError`` for another container or layer type and ``ValueError`` otherwise.
    """
    if not isinstance(net, nn.Sequential):
        raise TypeError("net must be an nn.Sequential of nn.Linear and nn.ReLU layers, "
                        f"got {type(net).__name__}")
    layers = list(net)
    for i, layer in enumerate(layers):
        if not isinstance(layer, (nn.Linear, nn.ReLU)):
            raise TypeError(f"net[{i}] is a {type(layer).__name__}; only nn.Linear and "
                            "nn.ReLU layers are supported")
    if linear_ends and (not layers or not isinstance(layers[0], nn.Linear)
                        or not isinstance(layers[-1], nn.Linear)):
        raise ValueError("net must start and end with an nn.Linear layer")
    if scalar_io:
        width, first = 1, True
        for i, layer in enumerate(layers):
            if not isinstance(layer, nn.Linear):
                continue
            if layer.in_features != width:
                if first:
                    raise ValueError(f"net must take a scalar input: net[{i}] is "
                                     f"nn.Linear({layer.in_features}, {layer.out_features})")
                raise ValueError(f"net[{i}] expects {layer.in_features} inputs but receives "
                                 f"{width}")
            first, width = False, layer.out_features
        if width != 1:
            raise ValueError(f"net must have a scalar output, got {width} outputs")
    return layers


def linear_arrays(layer: nn.Linear, index: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(weight, bias)`` of an ``nn.Linear`` as float64 NumPy arrays (exact copies; a missing
    bias is zeros).  Raises ``ValueError`` naming ``net[index]`` for non-finite weights."""
    w = layer.weight.detach().to("cpu", torch.float64).numpy().copy()
    b = (layer.bias.detach().to("cpu", torch.float64).numpy().copy()
         if layer.bias is not None else np.zeros(layer.out_features))
    if not (np.isfinite(w).all() and np.isfinite(b).all()):
        raise ValueError(f"net[{index}] has non-finite weights")
    return w, b


def exact_weights(layers: Sequence[nn.Module]) -> list[ExactLayer | None]:
    """The exact weights of Linear/ReLU ``layers``: per ``nn.Linear`` a pair ``(W, b)`` of
    nested lists of ``Fraction`` (``W[j][i]``: output ``j``, input ``i``), per ``nn.ReLU``
    ``None``.  Every float of every format converts exactly."""
    out: list[ExactLayer | None] = []
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.Linear):
            w, b = linear_arrays(layer, i)
            out.append(([[Fraction(v) for v in row] for row in w.tolist()],
                        [Fraction(v) for v in b.tolist()]))
        else:
            out.append(None)
    return out
