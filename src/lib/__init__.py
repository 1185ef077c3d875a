"""Helper library of the book *Floating Point and the Limits of Training*.

Chapters import everything non-trivial from here.  Submodules are imported lazily, so
``import lib`` is cheap (no torch import) and ``lib.config`` (say) loads its module on
first access.  The modules, their floors and what each owns: the README, *Architecture of lib*.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

__version__ = "0.1.0"

_SUBMODULES = frozenset(
    info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_")
)


def __getattr__(name: str) -> ModuleType:
    if name in _SUBMODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _SUBMODULES)
