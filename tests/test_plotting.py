import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from lib import plotting  # noqa: E402


def test_subplots_applies_the_book_style() -> None:
    fig, ax = plotting.subplots()
    try:
        assert tuple(fig.get_size_inches()) == pytest.approx((plotting.WIDTH, plotting.HEIGHT))
        assert not ax.spines["top"].get_visible()
        first_color = ax.plot([0, 1], [0, 1])[0].get_color()
        assert first_color.lower() == plotting.COLORS[0].lower()
    finally:
        plt.close(fig)


def test_subplots_grid_and_sizes() -> None:
    fig, axes = plotting.subplots(2, 3, width=9.0)
    try:
        assert axes.shape == (2, 3)
        assert fig.get_size_inches()[0] == pytest.approx(9.0)
    finally:
        plt.close(fig)


@pytest.mark.parametrize("kwargs, name", [({"nrows": 0}, "nrows"), ({"ncols": 1.5}, "ncols"),
                                          ({"width": -1.0}, "width"), ({"height": 0}, "height")])
def test_subplots_rejects_bad_sizes(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        plotting.subplots(**kwargs)


def test_precision_colors_are_distinct_and_accept_dtypes() -> None:
    colors = {plotting.precision_color(d) for d in
              (torch.float16, torch.bfloat16, torch.float32, torch.float64)}
    assert len(colors) == 4
    assert plotting.precision_color("float32") == plotting.precision_color(torch.float32)
    with pytest.raises(ValueError, match="dtype"):
        plotting.precision_color(torch.int32)


def test_reference_line_draws_dashed_line() -> None:
    fig, ax = plotting.subplots()
    try:
        plotting.reference_line(ax, 2.0, label="2/eta")
        plotting.reference_line(ax, 1.0, axis="x")
        lines = ax.get_lines()
        assert len(lines) == 2 and lines[0].get_linestyle() == "--"
        assert list(lines[0].get_ydata()) == [2.0, 2.0]
        with pytest.raises(ValueError, match="axis"):
            plotting.reference_line(ax, 1.0, axis="z")
    finally:
        plt.close(fig)


def test_glue_figure_validates_and_closes() -> None:
    fig, _ = plotting.subplots()
    with pytest.raises(TypeError, match="fig"):
        plotting.glue_figure("name", object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name"):
        plotting.glue_figure("", fig)
    plotting.glue_figure("fig-test", fig)  # outside a kernel glue only records
    assert not plt.fignum_exists(fig.number)


def test_glue_text_glues_formatted_values_and_refuses_floats(monkeypatch) -> None:
    import myst_nb

    from lib import plotting

    glued = {}
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True: glued.update(
        {name: (value, display)}))
    plotting.glue_text({"a-b": "1.5e-3", "n": 12})
    assert glued == {"a-b": ("1.5e-3", False), "n": ("12", False)}
    import numpy as np
    import pytest

    for bad in (1.5, np.float64(1.5), True):
        with pytest.raises(TypeError, match="values"):
            plotting.glue_text({"x": bad})
    with pytest.raises(TypeError, match="mapping"):
        plotting.glue_text([("x", "1")])
    with pytest.raises(ValueError, match="names"):
        plotting.glue_text({"": "1"})
