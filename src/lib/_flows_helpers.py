"""Private checks of :mod:`lib.flows` (kept apart so that module stays within the library's
900-line limit)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from lib.exact import check_count
from lib.train import MAX_STEPS


def check_times(times: Any) -> np.ndarray:
    if isinstance(times, (str, bytes)) or has_bool(times):
        raise TypeError(f"times must be real numbers, got {times!r}")
    try:
        t = np.atleast_1d(np.asarray(times, dtype=np.float64))
    except (TypeError, ValueError):
        raise TypeError(f"times must be a sequence of real numbers, got {times!r}") from None
    if t.ndim != 1 or t.size == 0:
        raise ValueError(f"times must be a non-empty 1-D array, got shape {np.shape(times)}")
    if not np.all(np.isfinite(t)):
        raise ValueError("times must be finite")
    if np.any(t < 0):
        raise ValueError(f"times must be >= 0 (the flow starts at t=0), got min {t.min():g}")
    if np.any(np.diff(t) < 0):
        raise ValueError("times must be sorted in non-decreasing order")
    return t


def has_bool(values: Any) -> bool:
    """Whether ``values`` is or holds bools (``np.asarray`` would read them as 0 and 1)."""
    if isinstance(values, (bool, np.bool_)):
        return True
    if isinstance(values, (np.ndarray, torch.Tensor)):
        return values.dtype in (np.bool_, torch.bool)
    if isinstance(values, (list, tuple)):
        return any(isinstance(v, (bool, np.bool_)) for v in values)
    return False


def steps_for(t: np.ndarray, eta: float, name: str) -> np.ndarray:
    """The step indices ``t / eta`` (integers to 1e-9 relative, at most ``MAX_STEPS``)."""
    ratio = t / eta
    if ratio[-1] > MAX_STEPS:
        raise ValueError(f"times[-1] / {name} = {ratio[-1]:.4g} steps exceed the size guard "
                         f"MAX_STEPS={MAX_STEPS} (lib.train.MAX_STEPS): a step {name}={eta:g} "
                         f"is too small for the horizon t={t[-1]:g}")
    steps = np.rint(ratio).astype(np.int64)
    if np.any(np.abs(ratio - steps) > 1e-9 * np.maximum(1.0, steps)):
        bad = t[np.argmax(np.abs(ratio - steps))]
        raise ValueError(f"times must be integer multiples of {name}={eta:g}; t={bad:g} is not")
    return steps


def gd_steps(times: Any, steps: Any, eta: float) -> np.ndarray:
    """The GD iterates to record: ``times / eta`` (integers) or ``steps``."""
    if (times is None) == (steps is None):
        raise ValueError("give exactly one of times (matched flow times) or steps")
    if times is not None:
        return steps_for(check_times(times), eta, "eta")
    if isinstance(steps, (int, np.integer, bool, np.bool_)) or (
            isinstance(steps, (torch.Tensor, np.ndarray)) and steps.ndim == 0):
        steps = np.arange(check_count(steps, "steps", minimum=0, maximum=MAX_STEPS) + 1)
    if has_bool(steps):
        raise TypeError(f"steps must be integers, got {steps!r}")
    s = np.atleast_1d(np.asarray(steps))
    if s.ndim != 1 or s.size == 0 or not np.issubdtype(s.dtype, np.integer):
        raise ValueError("steps must be a non-empty 1-D array of ints")
    if np.any(s < 0) or np.any(np.diff(s) < 0):
        raise ValueError("steps must be >= 0 and sorted")
    if s[-1] > MAX_STEPS:
        raise ValueError(f"steps: {int(s[-1])} steps exceed the size guard MAX_STEPS={MAX_STEPS} "
                         "(lib.train.MAX_STEPS)")
    return s.astype(np.int64)
