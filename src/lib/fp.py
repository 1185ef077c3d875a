"""Floating-point formats, rounding, and networks evaluated in a chosen precision against an
exact or high-precision reference.

Sources: the rounding model and unit roundoff follow Higham, *Accuracy and Stability of
Numerical Algorithms* (2nd ed., SIAM 2002), ch. 2; the formats are IEEE 754 binary16, binary32,
binary64 and Google's bfloat16.  The chapter *Floating-point error in backprop* uses this module
to test the setting of Karner, Kazeev and Petersen (Adv. Comput. Math. 50:14, 2024).

Five layers:

* **Formats** -- :class:`FloatFormat` (precision ``p``, exponent range, unit roundoff
  ``u = 2^-p``, machine epsilon ``2u``, smallest normal/subnormal, largest) derived from the
  IEEE parameters alone (the unit tests check them against ``torch.finfo``):
  :func:`float_format`, :func:`unit_roundoff`, :func:`machine_epsilon`, :func:`formats_table`.
* **Rounding and errors** -- :func:`round_exact` (a ``Fraction`` rounded to nearest, ties to
  even), :func:`round_to_format` (the same, vectorised, for float64 tensors/arrays; note that
  ``torch``'s own float64 -> float16/bfloat16 conversion goes through float32 and can round
  twice), :func:`to_format` (a network with correctly rounded parameters), :func:`ulp`,
  :func:`ulp_error`, :func:`relative_error`.
* **Evaluation and reference** -- :func:`evaluate` computes a network's outputs, a loss and
  the loss's parameter gradient in a chosen format with torch; :func:`reference` computes the
  same things *exactly* (rational arithmetic; dyadic inputs run on Python integers with a
  shared power-of-two scale, other rationals on ``Fraction``) or with ``mpmath`` at a stated
  number of decimal digits, with a chosen ``relu'(0)``; :func:`compare` and
  :func:`errors_by_depth` turn both into forward and gradient errors;
  :func:`preactivation_slopes` gives the exact derivatives of all pre-activations with respect
  to the input (assumption (B) of Karner et al.).
* **Representability and resolution** -- :func:`representable` (is an exact number a float
  of the format) and :func:`resolved_pieces` (does an open piece contain a float of the
  format, so that an input in that format can land in it).
* **The chapter's measurements** -- :func:`random_reals` (exact stand-ins for real inputs,
  finer than float64), :func:`sawtooth_orbits` (the sawtooth's forward error along its layers
  and the layer at which each float orbit meets a kink), :func:`kink_depth` (after which every
  float orbit is dead), :func:`tent_lyapunov` (the error growth of the tent networks of
  :func:`lib.nets.tent_net`), :func:`total_variation` and :func:`expected_crossings` (the
  one-neuron estimate behind Karner et al.'s theorem, exactly) and :func:`collapse_level`.
  The exact engine behind :func:`reference` is the private module ``lib._reference``.

Networks are ``nn.Sequential`` of ``nn.Linear`` and ``nn.ReLU`` with scalar input and output
(inputs of shape ``(n, 1)``), as everywhere in the book.  Parameters are flattened in the
order of ``net.named_parameters()`` (``weight`` row-major, then ``bias``, layer by layer).
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from numbers import Rational
from typing import Any

import mpmath
import numpy as np
import torch
from torch import nn

from lib import _reference as engine
from lib.config import progress
from lib.exact import (FLOAT_DTYPES, FORMAT_NAMES, check_count, check_dtype, check_real,
                       dyadic_integers, linear_relu_layers, to_fraction)
from lib.sawtooth import MAX_DEPTH, hat, hat_numerator
from lib.seeding import check_seed

__all__ = [
    "SUPPORTED_DTYPES", "FORMAT_NAMES", "OBJECTIVES", "ARITHMETICS", "FloatFormat",
    "float_format", "unit_roundoff", "machine_epsilon", "formats_table",
    "round_exact", "round_to_format", "to_format", "ulp", "ulp_error", "relative_error", "absolute_error",
    "representable", "resolved_pieces",
    "Evaluation", "Reference", "ErrorReport", "evaluate", "reference", "compare",
    "errors_by_depth", "preactivation_slopes", "tent_lyapunov",
    "format_name", "kink_depth", "SawtoothOrbits", "sawtooth_orbits", "total_variation",
    "expected_crossings", "collapse_level", "random_reals",
]

#: The four formats of the book, narrowest first (:data:`lib.exact.FLOAT_DTYPES`).
SUPPORTED_DTYPES = FLOAT_DTYPES
#: The scalar objectives whose parameter gradient :func:`evaluate`/:func:`reference` compute.
OBJECTIVES = ("mse", "mean_output")
#: Reference arithmetics.
ARITHMETICS = ("exact", "mpmath")

# IEEE 754 parameters: (storage bits, precision p including the implicit bit, emax);
# emin = 1 - emax.  bfloat16 is float32 with its significand cut to 8 bits.
_IEEE: dict[torch.dtype, tuple[int, int, int]] = {
    torch.float16: (16, 11, 15),
    torch.bfloat16: (16, 8, 127),
    torch.float32: (32, 24, 127),
    torch.float64: (64, 53, 1023),
}

# =========================================================================== formats
def format_name(dtype: Any) -> str:
    """``"float16"``, ``"bfloat16"``, ``"float32"`` or ``"float64"``."""
    return str(check_dtype(dtype)).replace("torch.", "")


@dataclass(frozen=True)
class FloatFormat:
    """A binary floating-point format: ``bits`` of storage, precision ``p`` (significand
    bits including the implicit one) and largest exponent ``emax`` (``emin = 1 - emax``).

    Every derived constant is an exact power of two or a sum of two (as a ``Fraction`` in the
    ``*_exact`` properties, as a float otherwise).
    """

    name: str
    dtype: torch.dtype
    bits: int
    precision: int
    emax: int

    @property
    def emin(self) -> int:
        return 1 - self.emax

    @property
    def unit_roundoff_exact(self) -> Fraction:
        """``u = 2^-p``: ``fl(x) = x (1 + d)``, ``|d| <= u``, for ``x`` in the normal range."""
        return Fraction(1, 2**self.precision)

    @property
    def unit_roundoff(self) -> float:
        return float(self.unit_roundoff_exact)

    @property
    def eps(self) -> float:
        """Machine epsilon ``2^(1-p) = 2u``: the gap between 1 and the next float."""
        return 2.0 ** (1 - self.precision)

    @property
    def smallest_normal(self) -> float:
        return 2.0**self.emin

    @property
    def smallest_subnormal(self) -> float:
        return 2.0 ** (self.emin - self.precision + 1)

    @property
    def largest_exact(self) -> Fraction:
        return (2 - Fraction(1, 2 ** (self.precision - 1))) * Fraction(2) ** self.emax

    @property
    def largest(self) -> float:
        return float(self.largest_exact)


def float_format(dtype: Any) -> FloatFormat:
    """The :class:`FloatFormat` of ``dtype`` (``torch.float16``, ..., or its name)."""
    dtype = check_dtype(dtype)
    bits, p, emax = _IEEE[dtype]
    return FloatFormat(format_name(dtype), dtype, bits, p, emax)


def unit_roundoff(dtype: Any) -> float:
    """``u = 2^-p``: 2^-11 (float16), 2^-8 (bfloat16), 2^-24 (float32), 2^-53 (float64)."""
    return float_format(dtype).unit_roundoff


def machine_epsilon(dtype: Any) -> float:
    """``eps = 2^(1-p) = 2u`` (``torch.finfo(dtype).eps``)."""
    return float_format(dtype).eps


def formats_table() -> list[dict[str, Any]]:
    """One row per format: name, bits, precision p, u, eps, smallest normal/subnormal, largest."""
    rows = []
    for dtype in SUPPORTED_DTYPES:
        f = float_format(dtype)
        rows.append({"format": f.name, "bits": f.bits, "precision p": f.precision,
                     "unit roundoff u": f.unit_roundoff, "eps = 2u": f.eps,
                     "smallest normal": f.smallest_normal,
                     "smallest subnormal": f.smallest_subnormal, "largest": f.largest})
    return rows


# =========================================================================== rounding
def _floor_log2(q: Fraction) -> int:
    """``floor(log2(q))`` for a positive Fraction, exactly."""
    n, d = q.numerator, q.denominator
    e = n.bit_length() - d.bit_length()
    # 2^e <= n/d < 2^(e+1) after at most one correction
    if (n << max(-e, 0)) < (d << max(e, 0)):
        e -= 1
    return e


def _quantum(q: Fraction, fmt: FloatFormat) -> Fraction:
    """Spacing of the format's floats at ``|q|`` (for a power of two: the spacing above it)."""
    if q == 0:
        return Fraction(2) ** (fmt.emin - fmt.precision + 1)
    e = max(_floor_log2(abs(q)), fmt.emin)
    return Fraction(2) ** (e - fmt.precision + 1)


def round_exact(x: Any, dtype: Any) -> Fraction:
    """``fl(x)``: the exact value ``x`` rounded to the nearest float of ``dtype``, ties to even.

    ``x``: ``Fraction``, ``int`` or float (converted exactly).  Subnormals are handled;
    ``|x| >= largest + ulp/2`` raises ``OverflowError`` (IEEE would give an infinity).
    """
    fmt = float_format(dtype)
    q = to_fraction(x)
    if q == 0:
        return Fraction(0)
    quantum = _quantum(q, fmt)
    k, rem = divmod(q / quantum, 1)  # q = (k + rem) * quantum, 0 <= rem < 1
    k = int(k)
    if rem > Fraction(1, 2) or (rem == Fraction(1, 2) and k % 2 == 1):
        k += 1
    result = k * quantum
    if abs(result) > fmt.largest_exact:
        raise OverflowError(f"x = {float(q):.6g} overflows {fmt.name} (largest {fmt.largest:.6g})")
    return result


def round_to_format(x: Any, dtype: Any) -> torch.Tensor:
    """Round float64 values to ``dtype`` correctly (nearest, ties to even) and return a tensor
    of ``dtype`` (same shape).

    ``x``: a tensor (any float dtype, converted to float64 exactly), array or list; a list that
    holds ``Fraction`` values is rounded element by element with :func:`round_exact`.  Each value
    is rounded *once*: ``rint(x / q) * q`` with ``q`` the format's spacing at ``x`` (exact in
    float64).  ``torch``'s own ``Tensor.to(float16 / bfloat16)`` from float64 rounds to float32
    first and can therefore be off by one unit in the last place at a tie (double rounding);
    this function never is (tested against :func:`round_exact`).  Values beyond the largest
    float become ``inf`` with the sign, as in IEEE; NaN stays NaN.  ``TypeError`` for ``None``,
    strings, bools and complex numbers (as scalars, in lists, arrays or tensors).
    """
    dtype = check_dtype(dtype)
    fmt = float_format(dtype)
    _check_numbers(x)
    if isinstance(x, (list, tuple)) and any(
            isinstance(v, Rational) and not isinstance(v, (int, bool)) for v in x):
        # exact rationals: round each once, never through float64 first
        return torch.tensor([float(round_exact(v, dtype)) for v in x], dtype=torch.float64).to(dtype)
    if isinstance(x, torch.Tensor):
        t = x if torch.is_floating_point(x) else x.to(torch.float64)
    else:  # lists and arrays: float64, never torch's default float32
        t = torch.from_numpy(np.asarray(x, dtype=np.float64))
    device = t.device
    a = t.detach().to("cpu", torch.float64).numpy()
    if dtype == torch.float64:
        out = a.copy()
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            _, ex = np.frexp(a)  # |a| = m 2^ex, m in [0.5, 1)
            e = np.maximum(ex.astype(np.int64) - 1, fmt.emin)
            q = np.ldexp(1.0, (e - fmt.precision + 1).astype(np.int64))
            out = np.rint(a / q) * q
        big = np.abs(out) > fmt.largest
        out = np.where(big, np.copysign(np.inf, a), out)
        out = np.where(np.isfinite(a), out, a)
    return torch.from_numpy(np.ascontiguousarray(out)).to(device=device, dtype=dtype)


def to_format(net: nn.Module, dtype: Any) -> nn.Module:
    """A deep copy of ``net`` in ``dtype`` whose parameters are *correctly* rounded
    (:func:`round_to_format`), unlike ``net.to(dtype)`` for float16/bfloat16."""
    dtype = check_dtype(dtype)
    if not isinstance(net, nn.Module):
        raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
    out = copy.deepcopy(net).to(dtype)
    with torch.no_grad():
        for (_, p), (_, q) in zip(net.named_parameters(), out.named_parameters()):
            q.copy_(round_to_format(p.detach().to(torch.float64), dtype))
    return out


def _check_numbers(x: Any, name: str = "x") -> None:
    """``TypeError`` unless ``x`` is real numbers: not ``None``, strings, bools or complex."""
    if isinstance(x, torch.Tensor):
        bad = x.dtype == torch.bool or x.is_complex()
    else:
        arr = np.asarray(x, dtype=object) if isinstance(x, (list, tuple)) else np.asarray(x)
        bad = arr.dtype.kind not in "iufO" or (arr.dtype.kind == "O" and any(
            v is None or isinstance(v, (str, bytes, bool, np.bool_, complex)) for v in arr.flat))
    if bad:
        raise TypeError(f"{name} must be numbers (a tensor, array, list or scalar), got "
                        f"{x!r}"[:200])


def _as_float64_array(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64).numpy().reshape(-1)
    return np.asarray(x, dtype=np.float64).reshape(-1)


def ulp(x: Any, dtype: Any) -> np.ndarray | float:
    """The spacing of ``dtype``'s floats at ``x``: ``2^(max(e, emin) - p + 1)`` with
    ``e = floor(log2 |x|)`` (at a power of two, the spacing above it; at 0 the smallest
    subnormal; NaN at NaN, inf at +-inf).  ``x`` a number (returns a float) or an
    array/tensor (returns float64 array); ``TypeError`` for bools and non-numbers.
    Exact: powers of two."""
    fmt = float_format(dtype)
    _check_numbers(x)
    scalar = np.ndim(x) == 0 and not isinstance(x, torch.Tensor)
    if isinstance(x, Fraction):
        return float(_quantum(x, fmt))
    a = _as_float64_array(x)
    _, ex = np.frexp(np.abs(a))
    e = np.maximum(ex.astype(np.int64) - 1, fmt.emin)
    out = np.ldexp(1.0, (e - fmt.precision + 1).astype(np.int64))
    out = np.where(a == 0, fmt.smallest_subnormal, out)
    out = np.where(np.isfinite(a), out, np.where(np.isnan(a), np.nan, np.inf))  # ulp(nan) = nan, ulp(+-inf) = inf
    return float(out[0]) if scalar else out


def _exact_list(values: Any, name: str = "x") -> list[Any]:
    """Values as a list of exact numbers (Fractions) or mpmath numbers (kept as they are)."""
    if isinstance(values, torch.Tensor):
        values = values.detach().to("cpu", torch.float64).reshape(-1).tolist()
    elif isinstance(values, np.ndarray):
        values = values.reshape(-1).tolist()
    elif not isinstance(values, (list, tuple)):
        values = [values]
    return [v if engine.is_mpf(v) else to_fraction(v, name) for v in values]


def _difference(a: Any, b: Any) -> float:
    """``|a - b|`` as a float, computed exactly (or in mpmath when one side is an mpf)."""
    if engine.is_mpf(a) or engine.is_mpf(b):
        def mp(v: Any) -> Any:
            return v if engine.is_mpf(v) else mpmath.mpf(v.numerator) / v.denominator

        return float(abs(mp(a) - mp(b)))
    return float(abs(a - b))


def ulp_error(computed: Any, ref: Any, dtype: Any) -> np.ndarray:
    """``|computed - ref| / ulp(ref)`` elementwise, in units of ``dtype``'s last place at the
    reference value; the difference is formed exactly (Fractions) or in mpmath.  Non-finite
    values raise ``ValueError`` naming ``computed`` or ``ref``."""
    c, r = _exact_list(computed, "computed"), _exact_list(ref, "ref")
    if len(c) != len(r):
        raise ValueError(f"computed and ref must have the same length, got {len(c)} and {len(r)}")
    fmt = float_format(dtype)
    out = []
    for a, b in zip(c, r):
        q = float(_quantum(b if isinstance(b, Fraction) else Fraction(float(b)), fmt))
        out.append(_difference(a, b) / q)
    return np.asarray(out, dtype=np.float64)


def absolute_error(computed: Any, ref: Any) -> np.ndarray:
    """``|computed - ref|`` elementwise, the difference formed exactly (Fractions) or in mpmath;
    ``inf`` where ``computed`` is not finite."""
    c, r = _as_list(computed), _exact_list(ref, "ref")
    if len(c) != len(r):
        raise ValueError(f"computed and ref must have the same length, got {len(c)} and {len(r)}")
    out = []
    for a, b in zip(c, r):
        if isinstance(a, float) and not math.isfinite(a):
            out.append(math.inf)
        else:
            out.append(_difference(_exact_list([a], "computed")[0], b))
    return np.asarray(out, dtype=np.float64)


def relative_error(computed: Any, ref: Any) -> np.ndarray:
    """``|computed - ref| / |ref|`` elementwise (exact difference); ``0`` where both are 0 and
    ``inf`` where only the reference is.  Non-finite values raise ``ValueError``."""
    c, r = _exact_list(computed, "computed"), _exact_list(ref, "ref")
    if len(c) != len(r):
        raise ValueError(f"computed and ref must have the same length, got {len(c)} and {len(r)}")
    out = []
    for a, b in zip(c, r):
        d = _difference(a, b)
        mag = abs(float(b))
        out.append(d / mag if mag > 0 else (0.0 if d == 0 else math.inf))
    return np.asarray(out, dtype=np.float64)


# =========================================================================== representability
def representable(values: Sequence[Any], dtype: torch.dtype) -> np.ndarray:
    """Whether each exact number is a finite number of ``dtype``.

    ``values``: a float64 array (taken exactly; vectorised) or a sequence of ``Fraction``,
    ints or floats (each converted exactly).
    """
    dtype = check_dtype(dtype)
    if isinstance(values, np.ndarray) and values.dtype == np.float64:
        f = values
        exact64 = np.isfinite(f)
    else:
        ts = [to_fraction(v, "values[i]") for v in values]
        f = np.array([float(t) for t in ts], dtype=np.float64)
        exact64 = np.array([math.isfinite(x) and Fraction(x) == t for x, t in zip(f.tolist(), ts)],
                           dtype=bool)
    r = torch.from_numpy(f).to(dtype).to(torch.float64).numpy()
    return exact64 & (r == f)


def _next_above(t: Fraction, dtype: torch.dtype) -> Fraction:
    """The smallest number of ``dtype`` strictly above ``t`` (may be +inf)."""
    r = torch.tensor(float(t), dtype=torch.float64).to(dtype)
    inf = torch.tensor(math.inf, dtype=dtype)
    down = torch.tensor(-math.inf, dtype=dtype)
    while r.item() != math.inf and Fraction(r.item()) <= t:
        r = torch.nextafter(r, inf)
    while True:
        prev = torch.nextafter(r, down)
        if prev.item() == -math.inf or not Fraction(prev.item()) > t:
            break
        r = prev
    return Fraction(r.item()) if math.isfinite(r.item()) else Fraction(10**400)


def resolved_pieces(edges: Sequence[Any], dtype: torch.dtype) -> np.ndarray:
    """For consecutive ``edges`` (exact numbers), whether the open piece between two of them
    contains a number of ``dtype``: only then can an input of that format land inside it.

    ``edges``: ``[lo, breakpoints..., hi]`` as Fractions or float64 values (taken exactly).
    Float64 input is handled vectorised; Fractions one by one.
    """
    dtype = check_dtype(dtype)
    if isinstance(edges, np.ndarray) and edges.dtype == np.float64:
        e = torch.from_numpy(edges)
        r = e.to(dtype)
        up = torch.where(r.to(torch.float64) > e, r,
                         torch.nextafter(r, torch.full_like(r, math.inf)))
        return (up.to(torch.float64)[:-1] < e[1:]).numpy()
    ts = [to_fraction(v, "edges[i]") for v in edges]
    return np.array([_next_above(a, dtype) < b for a, b in zip(ts, ts[1:])], dtype=bool)


# =========================================================================== networks
def _layers(net: Any) -> list[nn.Module]:
    """The layers of a Linear/ReLU ``nn.Sequential`` with scalar input and output."""
    return linear_relu_layers(net, scalar_io=True)


def _check_objective(objective: Any, targets: Any) -> str:
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if objective == "mse" and targets is None:
        raise ValueError("objective 'mse' needs targets")
    return objective


def _param_names(net: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(n, tuple(p.shape)) for n, p in net.named_parameters()]


@dataclass
class Evaluation:
    """A network evaluated in floating point (:func:`evaluate`).

    ``inputs``/``targets``: the values actually used (rounded to ``dtype``, as float64);
    ``values``: outputs, ``loss``: the objective, ``grad``: its gradient w.r.t. all parameters
    (flat, ``named_parameters`` order), all converted exactly to float64.
    """

    dtype: torch.dtype
    inputs: np.ndarray
    targets: np.ndarray | None
    values: np.ndarray
    loss: float
    grad: np.ndarray
    objective: str
    names: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)


def evaluate(net: nn.Sequential, x: Any, dtype: Any, *, objective: str = "mse",
             targets: Any = None) -> Evaluation:
    """Evaluate ``net`` in ``dtype`` with torch: outputs at ``x``, the objective and its
    parameter gradient (backprop in ``dtype``; ``relu'(0) = 0``, PyTorch's convention).

    The parameters are rounded to ``dtype`` by :func:`to_format`, ``x`` and ``targets`` by
    :func:`round_to_format` (``Fraction`` inputs are first rounded to float64 by Python, which is
    correct rounding).  Objectives: ``"mse"``, ``mean_i (N(x_i) - y_i)^2``, and
    ``"mean_output"``, ``mean_i N(x_i)`` (whose gradient is the backward pass alone).
    """
    _layers(net)
    dtype = check_dtype(dtype)
    objective = _check_objective(objective, targets)
    model = to_format(net, dtype)
    xs = _round_values(x, dtype).reshape(-1, 1)
    ys = None
    if targets is not None:
        ys = _round_values(targets, dtype).reshape(-1, 1)
        if ys.shape != xs.shape:
            raise ValueError(f"targets must have one value per input, got {ys.shape[0]} for "
                             f"{xs.shape[0]} inputs")
    params = list(model.parameters())
    out = model(xs)
    loss = ((out - ys) ** 2).mean() if objective == "mse" else out.mean()
    grads = torch.autograd.grad(loss, params)
    flat = torch.cat([g.detach().reshape(-1).to(torch.float64) for g in grads]).numpy()
    return Evaluation(
        dtype=dtype, inputs=xs.detach().to(torch.float64).numpy().reshape(-1),
        targets=None if ys is None else ys.to(torch.float64).numpy().reshape(-1),
        values=out.detach().to(torch.float64).numpy().reshape(-1),
        loss=float(loss.detach()), grad=flat, objective=objective, names=_param_names(model))


def _round_values(x: Any, dtype: torch.dtype) -> torch.Tensor:
    """``x`` (tensor, array, list of floats or Fractions, or a number) rounded once to ``dtype``."""
    return round_to_format(_as_list(x), dtype)


def _as_list(x: Any) -> list[Any]:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64).reshape(-1).tolist()
    if isinstance(x, np.ndarray):
        return x.reshape(-1).tolist()
    if isinstance(x, (list, tuple)):
        return list(x)
    return [x]


@dataclass
class Reference:
    """A network evaluated exactly or in mpmath (:func:`reference`).

    ``values`` (outputs), ``grad`` (flat parameter gradient of the objective) and ``loss``
    are ``Fraction`` (``arithmetic="exact"``) or ``mpmath.mpf``.  ``kink_points[i]`` is true
    when some pre-activation at input ``i`` is exactly 0 (a ReLU kink, where ``relu'(0)``
    decides the backward pass); ``kinks`` counts such (point, neuron) pairs.
    """

    values: list[Any]
    loss: Any
    grad: list[Any]
    objective: str
    arithmetic: str
    dps: int | None
    relu_prime_at_zero: Fraction
    kink_points: np.ndarray
    kinks: int
    names: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)

    def values_float(self) -> np.ndarray:
        return np.array([float(v) for v in self.values])

    def grad_float(self) -> np.ndarray:
        return np.array([float(v) for v in self.grad])


def _check_at_zero(value: Any) -> Fraction:
    q = to_fraction(value)
    if not 0 <= q <= 1:
        raise ValueError(f"relu_prime_at_zero must lie in [0, 1], got {value!r}")
    return q


def _check_dps(dps: Any) -> int:
    return check_count(dps, "dps (decimal digits of the mpmath reference)", 20, 100_000)


def reference(net: nn.Sequential, x: Any, *, objective: str = "mse", targets: Any = None,
              arithmetic: str = "exact", dps: int = 50,
              relu_prime_at_zero: Any = 0) -> Reference:
    """Outputs, objective and parameter gradient of ``net`` with its weights **as stored**,
    at the inputs ``x`` **as given** (no rounding), in exact arithmetic or in mpmath.

    ``arithmetic="exact"``: rational arithmetic.  When all inputs and targets are dyadic
    (every float is) the computation runs on Python integers with one power-of-two scale per
    array, which is exact and fast; otherwise on ``Fraction``.  ``arithmetic="mpmath"``:
    mpmath numbers at ``dps`` decimal digits (20 to 100,000; the weights convert exactly).
    ``relu_prime_at_zero``: the value used for ``relu'(0)`` in the backward pass (PyTorch
    uses 0).  ``objective`` and ``targets`` as in :func:`evaluate`.
    """
    layers = _layers(net)
    objective = _check_objective(objective, targets)
    at_zero = _check_at_zero(relu_prime_at_zero)
    xs = _exact_list(_as_list(x))
    ys = _exact_list(_as_list(targets)) if targets is not None else None
    if ys is not None and len(ys) != len(xs):
        raise ValueError(f"targets must have one value per input, got {len(ys)} for {len(xs)} inputs")
    if not xs:
        raise ValueError("x must contain at least one input")
    exact_inputs = [v for v in xs + (ys or []) if isinstance(v, Fraction)]
    if any(engine.is_mpf(v) for v in xs + (ys or [])) and arithmetic == "exact":
        raise TypeError("x and targets must be exact numbers for arithmetic='exact' "
                        "(got mpmath numbers)")
    if arithmetic not in ARITHMETICS:
        raise ValueError(f"arithmetic must be one of {ARITHMETICS}, got {arithmetic!r}")
    dps = _check_dps(dps)
    backend = engine.choose_backend(arithmetic, exact_inputs, at_zero)
    if arithmetic == "mpmath":
        with mpmath.workdps(dps):
            out = engine.objective_and_gradient(layers, xs, ys, objective, backend, at_zero)
    else:
        dps = None
        out = engine.objective_and_gradient(layers, xs, ys, objective, backend, at_zero)
    zeros = out.pop("zeros")
    kink_points = (np.any(np.concatenate(zeros, axis=1), axis=1) if zeros
                   else np.zeros(len(xs), dtype=bool))
    return Reference(**out, objective=objective, arithmetic=arithmetic, dps=dps,
                     relu_prime_at_zero=at_zero, kink_points=np.asarray(kink_points, bool),
                     kinks=int(sum(int(np.sum(z)) for z in zeros)), names=_param_names(net))


def preactivation_slopes(net: nn.Sequential, x: Any, *, relu_prime_at_zero: Any = 0) -> list[np.ndarray]:
    """``max_i |d z_j / dx (x_i)|`` for every neuron ``j`` of every hidden layer, exactly.

    ``z`` are the pre-activations ``W h + b`` of the hidden (ReLU) layers; their derivatives
    with respect to the scalar input are propagated forward in exact arithmetic (at a kink the
    one-sided choice is ``relu_prime_at_zero``).  Returns one float64 array per hidden layer.
    Karner et al.'s assumption (B) asks for a uniform bound on these numbers.
    """
    at_zero = _check_at_zero(relu_prime_at_zero)
    xs = _exact_list(_as_list(x))
    if not xs:
        raise ValueError("x must contain at least one input")
    return [t.max(axis=0) for t in engine.tangents(_layers(net), xs, at_zero)]


# --------------------------------------------------------------------------- comparisons
@dataclass
class ErrorReport:
    """Errors of a floating-point evaluation against a reference (:func:`compare`).

    Forward: ``forward_abs``, ``forward_rel`` and ``forward_ulps`` are the maxima over the
    inputs of ``|N_fl - N_ref|``, of that over ``|N_ref|`` and of that in ulps of the format
    at ``N_ref``; ``forward_mean_abs`` the mean.  Gradient: ``grad_abs = ||g_fl - g_ref||_2``,
    ``grad_rel = grad_abs / ||g_ref||_2`` (``inf`` if the reference is 0 and the computed
    gradient is not), ``grad_max_abs`` the largest entry of the difference; ``grad_norm`` and
    ``grad_ref_norm`` the two norms; ``loss``/``loss_ref`` the objectives; ``kink_fraction``
    the share of inputs at which the reference met a pre-activation exactly 0.
    """

    dtype: torch.dtype
    forward_abs: float
    forward_mean_abs: float
    forward_rel: float
    forward_ulps: float
    grad_abs: float
    grad_rel: float
    grad_max_abs: float
    grad_norm: float
    grad_ref_norm: float
    loss: float
    loss_ref: float
    kink_fraction: float

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["format"] = format_name(self.dtype)
        del d["dtype"]
        return d


def compare(net: nn.Sequential, x: Any, dtype: Any, *, objective: str = "mse",
            targets: Any = None, ref: Reference | None = None, arithmetic: str = "exact",
            dps: int = 50, relu_prime_at_zero: Any = 0) -> ErrorReport:
    """Evaluate ``net`` in ``dtype`` (:func:`evaluate`) and compare with the reference at the
    *unrounded* ``x`` and ``targets`` (:func:`reference`, or ``ref`` if given).

    So the errors include the rounding of the inputs, targets and weights as well as the
    arithmetic; pass inputs already rounded to ``dtype`` to see the arithmetic alone.
    """
    dtype = check_dtype(dtype)
    ev = evaluate(net, x, dtype, objective=objective, targets=targets)
    if ref is None:
        ref = reference(net, x, objective=objective, targets=targets, arithmetic=arithmetic,
                        dps=dps, relu_prime_at_zero=relu_prime_at_zero)
    if len(ref.values) != ev.values.size or len(ref.grad) != ev.grad.size:
        raise ValueError("ref does not match this network and these inputs")
    fwd_diff = np.array([_float_minus(c, r) for c, r in zip(ev.values, ref.values)])
    ref_mag = np.array([abs(float(r)) for r in ref.values])
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(ref_mag > 0, fwd_diff / np.where(ref_mag > 0, ref_mag, 1.0),
                       np.where(fwd_diff == 0, 0.0, np.inf))
    fmt = float_format(dtype)
    ulps = np.array([d / float(_quantum(r if isinstance(r, Fraction) else engine.mp_to_fraction(r), fmt))
                     for d, r in zip(fwd_diff, ref.values)])
    g_diff = np.array([_float_minus(c, r) for c, r in zip(ev.grad, ref.grad)])
    g_ref = np.array([float(r) for r in ref.grad])
    g_abs = float(np.linalg.norm(g_diff))
    g_ref_norm = float(np.linalg.norm(g_ref))
    g_rel = g_abs / g_ref_norm if g_ref_norm > 0 else (0.0 if g_abs == 0 else math.inf)
    return ErrorReport(
        dtype=dtype, forward_abs=float(fwd_diff.max()), forward_mean_abs=float(fwd_diff.mean()),
        forward_rel=float(rel.max()), forward_ulps=float(ulps.max()), grad_abs=g_abs,
        grad_rel=g_rel, grad_max_abs=float(g_diff.max()),
        grad_norm=float(np.linalg.norm(ev.grad)), grad_ref_norm=g_ref_norm, loss=ev.loss,
        loss_ref=float(ref.loss), kink_fraction=float(np.mean(ref.kink_points)))


def _float_minus(c: float, r: Any) -> float:
    """``|c - r|`` for a computed float ``c`` (``inf`` if ``c`` is not finite) and an exact or
    mpmath reference ``r``; the difference is formed exactly."""
    c = float(c)
    if not math.isfinite(c):
        return math.inf
    exact = r if isinstance(r, Fraction) else engine.mp_to_fraction(r)
    return float(abs(Fraction(c) - exact))


def errors_by_depth(build: Callable[[int], nn.Sequential], depths: Iterable[int], x: Any,
                    dtypes: Iterable[Any] = SUPPORTED_DTYPES, *, objective: str = "mse",
                    targets: Callable[[int], Any] | None = None, arithmetic: str = "exact",
                    dps: int = 50, relu_prime_at_zero: Any = 0,
                    progress_desc: str | None = None) -> list[dict[str, Any]]:
    """Forward and gradient errors of ``build(depth)`` in each format, per depth.

    ``build(depth)`` returns the network (its stored weights define the reference);
    ``targets(depth)`` the exact targets for ``"mse"``.  One :func:`reference` per depth (at
    the unrounded inputs) is shared by the formats.  Returns a list of rows
    ``{"depth", "format", **ErrorReport.as_dict()}``.
    """
    dtypes = [check_dtype(d) for d in dtypes]
    depths = list(depths)
    rows = []
    for depth in progress(depths, desc=progress_desc or "depths"):
        net = build(depth)
        ys = targets(depth) if targets is not None else None
        ref = reference(net, x, objective=objective, targets=ys, arithmetic=arithmetic, dps=dps,
                        relu_prime_at_zero=relu_prime_at_zero)
        for dtype in dtypes:
            rep = compare(net, x, dtype, objective=objective, targets=ys, ref=ref)
            rows.append({"depth": depth, **rep.as_dict()})
    return rows


# =========================================================================== constructions
def tent_lyapunov(apex: float) -> float:
    """Lyapunov exponent of the tent map with kink at ``a`` (invariant measure: Lebesgue):
    ``a log(1/a) + (1 - a) log(1/(1 - a))`` (natural log); ``log 2`` for ``a = 1/2``.
    ``apex``: a real in (0, 1) (Python, NumPy, 0-d torch or Fraction)."""
    a = check_real(apex, "apex", gt=0, lt=1)
    return -a * math.log(a) - (1 - a) * math.log(1 - a)


# =========================================================================== sawtooth orbits
def random_reals(n: int, *, seed: int, bits: int = 96) -> list[Fraction]:
    """``n`` numbers ``k / 2^bits`` with ``k`` uniform in ``[0, 2^bits)`` (Python's ``random``
    seeded with ``seed``), as exact Fractions: stand-ins for real inputs in ``[0, 1)`` that are
    finer than every format, float64 included, so that rounding them is never trivial.
    Guards: ``n <= 10**7``, ``bits <= 65536``."""
    n = check_count(n, "n", maximum=10**7)
    bits = check_count(bits, "bits", maximum=1 << 16)
    rng = random.Random(check_seed(seed))
    return [Fraction(rng.getrandbits(bits), 1 << bits) for _ in range(n)]



def kink_depth(dtype: Any) -> int:
    """``q`` with ``2^-q`` the smallest positive subnormal of ``dtype`` (24, 133, 149, 1074).

    Every number of the format in ``[0, 1]`` is a multiple of ``2^-q``; the hat map sends
    ``k/2^m`` to a multiple of ``2^-(m-1)``, so every float orbit of ``g`` reaches
    ``{0, 1/2, 1}`` (a kink of the sawtooth network) within ``q - 1`` steps and is 0 from step
    ``q + 1`` on: the float sawtooth of depth ``L > q`` is identically 0 on the format's inputs.
    """
    f = float_format(dtype)
    return f.precision - 1 - f.emin


@dataclass
class SawtoothOrbits:
    """Forward errors of the sawtooth along its layers (:func:`sawtooth_orbits`).

    ``errors[L-1, i] = |g_L(fl(x_i)) - g_L(x_i)|`` with ``g_L(fl(x_i))`` as computed by the
    hat map in the format (exact: it equals the exact value at the rounded input) and
    ``g_L(x_i)`` exact; ``amplified[L-1, i] = 2^L |fl(x_i) - x_i|`` (the Lipschitz bound);
    ``first_kink[i]`` the first layer ``l`` whose input ``g_{l-1}(fl(x_i))`` is ``0, 1/2`` or
    ``1`` (a pre-activation of layer ``l`` is exactly 0), or ``max_depth + 1`` if none;
    ``float_exact`` whether every float value equalled the exact value at the rounded input.
    """

    dtype: torch.dtype
    errors: np.ndarray
    amplified: np.ndarray
    first_kink: np.ndarray
    float_exact: bool

    def kink_share(self) -> np.ndarray:
        """Share of inputs that met a kink in layers ``1..L``, for ``L = 1..max_depth``."""
        depths = np.arange(1, self.errors.shape[0] + 1)
        return (self.first_kink[None, :] <= depths[:, None]).mean(axis=1)


def sawtooth_orbits(x: Sequence[Any], max_depth: int, dtype: Any) -> SawtoothOrbits:
    """Iterate the hat map on ``fl(x)`` in ``dtype`` and on the exact ``x`` for
    ``L = 1..max_depth`` (Telgarsky's ``g_L``, the sawtooth network's function on [0, 1]).

    ``x``: exact numbers in ``[0, 1]`` with power-of-two denominators (floats, or Fractions
    such as random 96-bit dyadics standing in for real inputs).  The float orbit uses
    :func:`lib.sawtooth.hat` on a tensor of ``dtype`` (the same operations as one layer of
    ``sawtooth_net``); the exact one integer arithmetic.  Errors are formed exactly.
    Guard: ``max_depth <=`` :data:`lib.sawtooth.MAX_DEPTH`.
    """
    max_depth = check_count(max_depth, "max_depth", maximum=MAX_DEPTH)
    dtype = check_dtype(dtype)
    xs = [to_fraction(v) for v in _as_list(x)]
    if not xs:
        raise ValueError("x must contain at least one input")
    if any(not 0 <= v <= 1 for v in xs):
        raise ValueError("x must lie in [0, 1]")
    try:
        exact, k = dyadic_integers(xs)
    except ValueError:
        raise ValueError("x must be dyadic rationals (power-of-two denominators)") from None
    den = 1 << k
    rounded = _round_values(xs, dtype)
    xr = [Fraction(v) for v in rounded.to(torch.float64).tolist()]
    # the rounded orbit, exactly: integers over the rounded inputs' common denominator
    exact_r, kr = dyadic_integers(xr)
    dr = 1 << kr
    n = len(xs)
    dist = np.array([float(abs(a - b)) for a, b in zip(xr, xs)])
    errors = np.empty((max_depth, n))
    amplified = np.empty((max_depth, n))
    first = np.full(n, max_depth + 1, dtype=np.int64)
    y = rounded.clone()
    all_exact = True
    for depth in range(1, max_depth + 1):
        at_kink = np.array([2 * v in (0, dr) or v == dr for v in exact_r])
        first = np.where(at_kink & (first > depth), depth, first)
        y = hat(y)
        exact = [hat_numerator(v, den) for v in exact]
        exact_r = [hat_numerator(v, dr) for v in exact_r]
        vals = y.to(torch.float64).tolist()
        all_exact = all_exact and all(Fraction(v) == Fraction(e, dr) for v, e in zip(vals, exact_r))
        errors[depth - 1] = [float(abs(Fraction(v) - Fraction(e, den))) for v, e in zip(vals, exact)]
        amplified[depth - 1] = dist * 2.0**depth
    return SawtoothOrbits(dtype=dtype, errors=errors, amplified=amplified, first_kink=first,
                          float_exact=bool(all_exact))


# =========================================================================== crossings
def total_variation(values: Sequence[Any]) -> Fraction:
    """Total variation ``sum |h(t_{k+1}) - h(t_k)|`` of the continuous piecewise-affine function
    with the given values at consecutive knots (its breakpoints and the interval's ends)."""
    vs = [to_fraction(v, f"values[{i}]") for i, v in enumerate(values)]
    if len(vs) < 2:
        raise ValueError(f"values must hold at least 2 points, got {len(vs)}")
    return sum((abs(b - a) for a, b in zip(vs, vs[1:])), Fraction(0))


def expected_crossings(values: Sequence[Any], center: Any, width: Any) -> Fraction:
    """``E #{x : h(x) = b}`` for ``b ~ U[center - width/2, center + width/2]``, exactly.

    ``h`` is the continuous piecewise-affine function with ``values`` at consecutive knots
    (breakpoints and the interval's ends).  Each affine piece with values ``a, c`` (``a != c``)
    is crossed once by every level strictly between ``a`` and ``c``, so it contributes
    ``|[min(a,c), max(a,c)] cap [lo, hi]| / width`` (levels hit at a knot have probability 0).
    By the Banach indicatrix formula the result is at most ``total_variation(values) / width``.
    """
    vs = [to_fraction(v, f"values[{i}]") for i, v in enumerate(values)]
    if len(vs) < 2:
        raise ValueError(f"values must hold at least 2 points, got {len(vs)}")
    w = to_fraction(width, "width")
    if w <= 0:
        raise ValueError(f"width must be positive, got {width!r}")
    mid = to_fraction(center, "center")
    lo, hi = mid - w / 2, mid + w / 2
    total = Fraction(0)
    for a, c in zip(vs, vs[1:]):
        low, high = min(a, c), max(a, c)
        total += max(Fraction(0), min(high, hi) - max(low, lo))
    return total / w


def collapse_level(levels: Sequence[float], fractions: Sequence[float],
                   threshold: float = 0.5) -> float:
    """The first level at which ``fractions`` falls below ``threshold``, interpolated linearly in
    ``log(level)`` between the two grid points around the crossing; ``inf`` if it never does.

    ``levels``: increasing positive finite numbers (e.g. relative perturbation sizes);
    ``fractions``: the measured quantity at each (e.g. visible pieces / 2^L), NaN refused.
    """
    threshold = check_real(threshold, "threshold")
    _check_numbers(levels, "levels")
    _check_numbers(fractions, "fractions")
    lv = np.asarray(levels, dtype=float)
    fr = np.asarray(fractions, dtype=float)
    if lv.ndim != 1 or lv.shape != fr.shape or lv.size < 2:
        raise ValueError("levels and fractions must be 1-D of the same length >= 2")
    if not (np.all(np.isfinite(lv)) and np.all(lv > 0) and np.all(np.diff(lv) > 0)):
        raise ValueError(f"levels must be finite, positive and increasing, got {lv.tolist()}"[:200])
    if np.any(np.isnan(fr)):
        raise ValueError(f"fractions must not be NaN, got {fr.tolist()}"[:200])
    below = np.flatnonzero(fr < threshold)
    if below.size == 0:
        return math.inf
    i = int(below[0])
    if i == 0:
        return float(lv[0])
    a, b = math.log(lv[i - 1]), math.log(lv[i])
    fa, fb = fr[i - 1], fr[i]
    t = (fa - threshold) / (fa - fb)
    return float(math.exp(a + t * (b - a)))
