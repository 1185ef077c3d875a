"""The ground floor: exact arithmetic, the float formats, argument checks, reading a network.

Every computing module of ``lib`` builds on this one; it imports nothing from ``lib``.

* **Exact numbers** -- :func:`to_fraction` (any real number, a float converted *exactly*),
  :func:`dyadic_parts` (``q = m / 2^k``, or ``None``), :func:`dyadic_integers` (numbers as
  integers over one common power of two) and :func:`sign_of_products` (the exact sign of
  ``a b + c d`` for float64 arrays, by Dekker's and Knuth's error-free transformations).
* **The float formats** -- :data:`FLOAT_DTYPES`, the one tuple of the four formats of the
  book (float16, bfloat16, float32, float64), :data:`FORMAT_NAMES` and :func:`check_dtype`.
* **Argument checks**, the one layer every module uses: :func:`check_count` (integers, with
  size guards), :func:`check_real` (reals with bounds; :func:`check_positive`,
  :func:`check_probability`), :func:`check_seed`, :func:`check_interval`, :func:`check_knots`,
  :func:`check_widths`, and :class:`InvalidArgumentError` (both a ``TypeError`` and a
  ``ValueError``).  Numbers may be Python, NumPy or 0-d torch scalars (and ``Fraction`` for
  reals); bools, strings and ``None`` are refused; messages name the argument and the value.
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
from numbers import Integral, Rational, Real
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "InvalidArgumentError", "FLOAT_DTYPES", "FORMAT_NAMES", "check_dtype", "check_count",
    "check_real", "check_positive", "check_probability", "check_seed", "check_interval",
    "check_knots", "check_widths", "to_fraction", "dyadic_parts", "dyadic_integers",
    "two_product", "two_sum", "sign_of_products", "linear_relu_layers", "linear_arrays",
    "exact_weights",
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


def _describe(value: Any) -> str:
    """A short description of a bad argument for an error message: its value and its type."""
    if isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim != 0:
        kind = "tensor" if isinstance(value, torch.Tensor) else "array"
        return f"a {kind} of shape {tuple(value.shape)} and dtype {value.dtype}"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    kind = type(value).__name__
    if isinstance(value, (torch.Tensor, np.ndarray)):
        kind = f"{kind} with dtype {value.dtype}"
    return f"{text} of type {kind}"


def _unwrap(value: Any) -> Any:
    """``value`` itself, or the Python/NumPy scalar in a 0-d torch tensor or NumPy array
    (multi-element tensors and arrays are returned unchanged, to be refused by the caller)."""
    if isinstance(value, torch.Tensor) and value.ndim == 0 and value.dtype != torch.bool:
        return value.item()  # int, float or complex
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value[()]
    return value


def _is_bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_)) or (
        isinstance(value, torch.Tensor) and value.dtype == torch.bool)


def check_count(value: Any, name: str, minimum: int | None = 1,
                maximum: int | None = None) -> int:
    """Return ``value`` as an int after checking it is an integer ``>= minimum`` (any integer
    with ``minimum=None``) and ``<= maximum`` when given (the size guards that stop a call
    before it allocates).

    Accepts Python ints, NumPy integer scalars and 0-d integer tensors/arrays.  A bool, a
    float (even ``3.0``), a string, ``None`` or a multi-element tensor raises
    :class:`InvalidArgumentError`, an out-of-range integer ``ValueError``; both messages name
    the argument and the value.
    """
    raw = value
    value = _unwrap(value)
    if _is_bool(value) or not isinstance(value, Integral):
        need = "an integer" if minimum is None else f"an integer >= {minimum}"
        raise InvalidArgumentError(f"{name} must be {need}, got {_describe(raw)}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum} (a size guard), got {value}")
    return value


def _requirement(gt: Any, ge: Any, lt: Any, le: Any, finite: bool) -> str:
    """The words of a range: ``a positive finite number``, ``a finite number in [0, 1]``..."""
    kind = "finite number" if finite else "real number"
    if lt is None and le is None and (gt, ge) in ((0, None), (None, 0)):
        return f"a {'positive' if gt is not None else 'non-negative'} {kind}"
    lower = f"> {gt!r}" if gt is not None else f">= {ge!r}" if ge is not None else None
    upper = f"< {lt!r}" if lt is not None else f"<= {le!r}" if le is not None else None
    if lower and upper:
        lo, hi = (gt, "(") if gt is not None else (ge, "[")
        top, close = (lt, ")") if lt is not None else (le, "]")
        return f"a {kind} in {hi}{lo!r}, {top!r}{close}"
    return f"a {kind} {lower or upper}" if (lower or upper) else f"a {kind}"


def check_real(value: Any, name: str, *, gt: Any = None, ge: Any = None, lt: Any = None,
               le: Any = None, finite: bool = True, nan: bool = False) -> float:
    """Return ``value`` as a float after checking it is a real number in range.

    Accepts Python ints and floats, NumPy integer and float scalars, 0-d integer or floating
    torch tensors and NumPy arrays (such as an eigenvalue returned by ``hessian``), and
    ``Fraction`` (rounded to the nearest float).  Bounds: ``gt``/``ge`` (``>``/``>=``) and
    ``lt``/``le`` (``<``/``<=``), checked on the returned float.  ``finite=False`` admits
    ``+-inf`` (within the bounds), ``nan=True`` admits NaN (returned as NaN, bounds not
    applied).  A bool, string, ``None``, complex number or multi-element tensor/array raises
    :class:`InvalidArgumentError`; a value out of range (or NaN, or an infinity when
    ``finite``) ``ValueError``; the messages name the argument and the value.
    """
    need = _requirement(gt, ge, lt, le, finite)
    raw = value
    value = _unwrap(value)
    if _is_bool(value) or not isinstance(value, Real):
        raise InvalidArgumentError(f"{name} must be {need}, got {_describe(raw)}")
    try:
        out = float(value)
    except OverflowError:  # an int or Fraction beyond the float range
        out = math.inf if value > 0 else -math.inf
    if math.isnan(out):
        if nan:
            return out
        raise ValueError(f"{name} must be {need}, got nan")
    if finite and math.isinf(out):
        raise ValueError(f"{name} must be {need}, got {_describe(raw)}")
    if ((gt is not None and not out > gt) or (ge is not None and not out >= ge)
            or (lt is not None and not out < lt) or (le is not None and not out <= le)):
        raise ValueError(f"{name} must be {need}, got {out!r}")
    return out


def check_positive(value: Any, name: str) -> float:
    """Return ``value`` as a float after checking it is a positive finite real number
    (:func:`check_real` with ``gt=0``: ints, floats, NumPy and 0-d torch scalars, Fractions)."""
    return check_real(value, name, gt=0)


def check_probability(value: Any, name: str, *, open_ends: bool = False) -> float:
    """Return ``value`` as a float in ``[0, 1]`` (``(0, 1)`` with ``open_ends=True``): a
    probability, a fraction of a set, a relative position (:func:`check_real`)."""
    if open_ends:
        return check_real(value, name, gt=0, lt=1)
    return check_real(value, name, ge=0, le=1)


def check_seed(value: Any, name: str = "seed") -> int:
    """Return a seed as an int in ``[0, 2**63)`` (what ``torch.manual_seed`` and NumPy's
    generators both accept); Python, NumPy and 0-d torch integers are accepted, bools,
    floats and strings refused (:class:`InvalidArgumentError`), others ``ValueError``."""
    raw = value
    value = _unwrap(value)
    if _is_bool(value) or not isinstance(value, Integral):
        raise InvalidArgumentError(f"{name} must be an integer in [0, 2**63), got "
                                   f"{_describe(raw)}")
    value = int(value)
    if not 0 <= value < 2**63:
        raise ValueError(f"{name} must lie in [0, 2**63), got {value}")
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


def check_widths(widths: Any, name: str = "widths") -> list[int]:
    """A sequence of layer widths as a list of ints ``>= 0`` (``TypeError`` for a non-sequence
    or a non-integer entry, ``ValueError`` for a negative one, naming the entry)."""
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence):
        raise TypeError(f"{name} must be a sequence of integers, got {type(widths).__name__}")
    return [check_count(w, f"{name}[{i}]", minimum=0) for i, w in enumerate(widths)]


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


def _float64_operand(x: Any, name: str) -> np.ndarray:
    """``x`` as a float64 array (exact for every float format): 1-D, finite, no bools."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu")
        if x.dtype == torch.bool or x.is_complex():
            raise TypeError(f"{name} must be real numbers, got a tensor of dtype {x.dtype}")
        x = x.to(torch.float64).numpy()
    arr = np.asarray(x)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be real numbers, got an array of dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {arr.shape}")
    if arr.dtype.kind in "iu" and arr.size and int(np.abs(arr).max()) > 2**53:
        raise ValueError(f"{name} holds integers that float64 does not represent exactly")
    arr = np.asarray(arr, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite")
    return arr


def sign_of_products(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray) -> np.ndarray:
    """``sign(a*b + c*d)`` exactly for exact float64 operands (1-D arrays of equal length).

    Dekker's TwoProduct gives ``ab = p1 + e1`` and ``cd = p2 + e2`` exactly; Shewchuk's
    Two-Two-Sum turns ``(p1 + e1) + (p2 + e2)`` into a non-overlapping expansion
    ``x3 + x2 + x1 + x0`` (decreasing magnitude), whose leading non-zero component has the
    sign of the sum.  Operands outside ``[2^-400, 2^400]`` (other than 0) use ``Fraction``.
    Array-likes (lists, tensors) are converted to float64 arrays; ``ValueError`` for operands
    that are not 1-D, of unequal shapes or not finite (their sign is undefined).
    """
    a, b, c, d = (_float64_operand(v, k) for v, k in ((a, "a"), (b, "b"), (c, "c"), (d, "d")))
    if not a.shape == b.shape == c.shape == d.shape:
        raise ValueError(f"a, b, c, d must have one shape, got {a.shape}, {b.shape}, {c.shape}, "
                         f"{d.shape}")
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
    index = check_count(index, "index", minimum=0)
    if not isinstance(layer, nn.Linear):
        raise TypeError(f"layer must be an nn.Linear, got {type(layer).__name__}")
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
