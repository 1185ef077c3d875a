"""The book's one figure style.

Every figure is made with :func:`subplots` (which applies the style), annotated with the
helpers here, and placed in the text with :func:`glue_figure` plus a ``{glue:figure}``
directive that carries the caption and a ``:name:`` for ``{numref}``::

    fig, ax = plotting.subplots()
    ax.plot(x, y, label="f")
    plotting.glue_figure("fig-f", fig)

Colours: the Okabe-Ito palette (readable with colour-vision deficiencies); the four
floating-point formats always get the same colour (:data:`PRECISION_COLORS`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib as mpl
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from lib.config import in_book_build

#: Okabe-Ito colours, in the order series are drawn.
COLORS: tuple[str, ...] = (
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#E69F00",  # orange
    "#56B4E9",  # sky blue
    "#F0E442",  # yellow
    "#000000",  # black
)

#: Colour of each floating-point format, the same in every chapter.
PRECISION_COLORS: dict[str, str] = {
    "float16": COLORS[1],
    "bfloat16": COLORS[3],
    "float32": COLORS[0],
    "float64": COLORS[2],
    "exact": COLORS[7],
}

#: Colour of reference lines (bounds, 2/eta, theoretical rates).
REFERENCE_COLOR = "#555555"

WIDTH = 6.4  # inches; the book's text width at 100 % zoom
HEIGHT = 3.4

STYLE: dict[str, Any] = {
    "figure.figsize": (WIDTH, HEIGHT),
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "legend.fontsize": 8.5,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "axes.prop_cycle": mpl.cycler(color=list(COLORS)),
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "lines.linewidth": 1.5,
    "lines.markersize": 4,
    "legend.frameon": False,
    "figure.constrained_layout.use": True,
    "mathtext.fontset": "cm",
}


def use_book_style() -> None:
    """Apply the book's rcParams (idempotent); in IPython also render figures as retina PNG."""
    mpl.rcParams.update(STYLE)
    try:
        from IPython import get_ipython

        if get_ipython() is not None:
            from matplotlib_inline.backend_inline import set_matplotlib_formats

            set_matplotlib_formats("retina")
    except ImportError:  # plain Python without IPython: nothing to configure
        pass


def subplots(
    nrows: int = 1,
    ncols: int = 1,
    *,
    width: float | None = None,
    height: float | None = None,
    **kwargs: Any,
) -> tuple[Figure, Any]:
    """``plt.subplots`` in the book's style.

    ``width`` defaults to the text width; ``height`` to the standard height per row
    (scaled down for several rows).  Other keyword arguments go to ``plt.subplots``.
    """
    for name, value in (("nrows", nrows), ("ncols", ncols)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    for name, value in (("width", width), ("height", height)):
        if value is not None and not value > 0:
            raise ValueError(f"{name} must be positive, got {value!r}")
    use_book_style()
    if width is None:
        width = WIDTH
    if height is None:
        height = HEIGHT if nrows == 1 else 0.75 * HEIGHT * nrows
    return plt.subplots(nrows, ncols, figsize=(width, height), **kwargs)


def precision_color(dtype: Any) -> str:
    """Colour of a floating-point format given as a torch/numpy dtype or a name."""
    name = str(dtype).replace("torch.", "").replace("numpy.", "")
    if name not in PRECISION_COLORS:
        raise ValueError(
            f"dtype {dtype!r} has no book colour; known: {', '.join(PRECISION_COLORS)}"
        )
    return PRECISION_COLORS[name]


def reference_line(
    ax: Axes,
    value: float,
    label: str | None = None,
    *,
    axis: str = "y",
    **kwargs: Any,
) -> None:
    """A dashed reference line (a bound, ``2/eta``, a rate) at ``value`` on ``axis``."""
    if axis not in {"x", "y"}:
        raise ValueError(f"axis must be 'x' or 'y', got {axis!r}")
    style = {"color": REFERENCE_COLOR, "linestyle": "--", "linewidth": 1.0, "label": label}
    style.update(kwargs)
    (ax.axhline if axis == "y" else ax.axvline)(value, **style)


def glue_figure(name: str, fig: Figure) -> None:
    """Glue ``fig`` under ``name`` for a ``{glue:figure}`` directive, then close it.

    In the book build (:func:`lib.config.in_book_build`) the figure is glued without being
    displayed, so the HTML shows it once, where its ``{glue:figure}`` stands.  Anywhere else
    (a chapter run in JupyterLab, on Binder, by nbclient) it is also displayed inline, as an
    ``image/png`` output of the cell.  Closing keeps it from being displayed a second time at
    the end of the cell.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    from myst_nb import glue

    glue(name, fig, display=not in_book_build())
    plt.close(fig)


def glue_text(values: Mapping[str, Any]) -> None:
    """Glue a group of numbers formatted for the text, ``{name: "1.2e-3", ...}``, each for
    a ``{glue:text}`` role (one call instead of one ``glue(..., display=False)`` per number).

    Values must already be formatted: strings, or Python ints (written as they are); a
    float or a NumPy scalar raises ``TypeError`` (format it, e.g. ``f"{x:.3g}"``, so the
    page shows the digits the text means, with NumPy 2 as with NumPy 1).
    """
    if not isinstance(values, Mapping):
        raise TypeError(f"values must be a mapping of names to strings, got {type(values).__name__}")
    from myst_nb import glue

    for name, value in values.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"names must be non-empty strings, got {name!r}")
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise TypeError(
                f"values[{name!r}] must be a formatted string or an int, got {type(value).__name__}"
            )
        glue(name, value if isinstance(value, str) else str(value), display=False)
