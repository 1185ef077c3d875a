"""Private checks of :mod:`lib.flows` (kept apart so that module stays within the library's
900-line limit)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


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
