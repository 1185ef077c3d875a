"""Run profiles, devices and progress bars shared by every chapter.

The profile is read from the environment variable ``BOOK_PROFILE`` each time it is asked
for (so tests can change it):

``quick`` (default)
    book-scale sizes: the whole book executes on a 2-core CPU in minutes; used by CI,
    ``pytest`` and Binder.
``paper``
    the sources' scale: longer runs and bigger models, on a GPU when one is present.

Chapters choose their sizes with :func:`pick`, e.g. ``n_steps = pick(quick=2_000,
paper=20_000)``, so both profiles are visible side by side in the chapter's code.

Progress bars (:func:`progress`) are shown in interactive sessions and switched off
when ``BOOK_PROGRESS=0``; the book build and the test suite set that variable.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, TypeVar

PROFILE_ENV = "BOOK_PROFILE"
PROGRESS_ENV = "BOOK_PROGRESS"
#: Set to ``1`` by the book build (``lib.bookbuild``) for the kernels it starts.
BUILD_ENV = "BOOK_BUILD"
#: ``1`` runs, under the ``paper`` profile, the sizes a chapter marks ``full=`` in
#: :func:`pick`: the source's size where the paper profile had to stop short of it to finish a
#: chapter within an hour on a CPU (the chapter says which, in its set-up cell).
FULL_ENV = "BOOK_PAPER_FULL"
PROFILES: tuple[str, ...] = ("quick", "paper")
DEFAULT_PROFILE = "quick"

T = TypeVar("T")


def get_profile() -> str:
    """Return the active run profile, ``"quick"`` (default) or ``"paper"``.

    Reads ``BOOK_PROFILE`` (case-insensitive, surrounding blanks ignored; unset or empty
    means ``quick``).  An unknown value raises ``ValueError`` naming the variable.
    """
    raw = os.environ.get(PROFILE_ENV, "")
    name = raw.strip().lower() or DEFAULT_PROFILE
    if name not in PROFILES:
        raise ValueError(
            f"{PROFILE_ENV}={raw!r} is not a known run profile; "
            f"choose one of {', '.join(PROFILES)}"
        )
    return name


def is_paper() -> bool:
    """True when the ``paper`` profile is active."""
    return get_profile() == "paper"


_UNSET: Any = object()


def full_scale() -> bool:
    """True under the ``paper`` profile with ``BOOK_PAPER_FULL=1`` (the sources' full sizes)."""
    return is_paper() and os.environ.get(FULL_ENV, "").strip() == "1"


def pick(*, quick: T, paper: T, full: T = _UNSET) -> T:
    """Return the value for the active profile: ``pick(quick=500, paper=5000)``.

    ``full``: the source's size where ``paper`` is smaller so that the chapter finishes within
    an hour on a CPU; used instead of ``paper`` when ``BOOK_PAPER_FULL=1`` (:func:`full_scale`).
    """
    if full is not _UNSET and full_scale():
        return full
    return paper if is_paper() else quick


def default_device() -> Any:
    """The torch device chapters compute on: CUDA under ``paper`` when available, else CPU.

    The ``quick`` profile always uses the CPU, so its numbers do not depend on the machine's
    accelerator.
    """
    import torch  # here, not at the top: the book's Sphinx extension imports this module

    if is_paper() and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def in_book_build() -> bool:
    """True inside a kernel started by the book build (``BOOK_BUILD=1``): figures are then
    glued for ``{glue:figure}`` only; anywhere else (JupyterLab, Binder, nbclient, nbval)
    they are also shown inline."""
    return os.environ.get(BUILD_ENV, "").strip() == "1"


def progress_enabled() -> bool:
    """Whether long loops show a progress bar (``BOOK_PROGRESS`` unset or not ``0``)."""
    value = os.environ.get(PROGRESS_ENV, "1").strip().lower()
    return value not in {"0", "false", "no", "off"}


def progress(iterable: Iterable[T] | None = None, **kwargs: Any) -> Any:
    """A tqdm progress bar that is disabled when :func:`progress_enabled` is false.

    Keyword arguments are passed to tqdm (``total``, ``desc``, ...).  Use it for every loop
    that can run longer than a few seconds.  Enabled, it is ``tqdm.auto`` (a widget in
    Jupyter when ipywidgets is installed); disabled, the plain ``tqdm.std`` class is used, so
    nothing (not even tqdm.auto's "IProgress not found" warning) reaches stderr.
    """
    kwargs.setdefault("leave", False)
    if "disable" not in kwargs and not progress_enabled():
        kwargs["disable"] = True
    if kwargs.get("disable"):
        from tqdm.std import tqdm
    else:
        from tqdm.auto import tqdm
    return tqdm(iterable, **kwargs)


def describe() -> str:
    """One line for a chapter's set-up cell: the profile and the device."""
    full = ", full sizes (BOOK_PAPER_FULL=1)" if full_scale() else ""
    return f"profile={get_profile()}{full}, device={default_device()}"
