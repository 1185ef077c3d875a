"""A chapter run as a notebook outside the book build (JupyterLab, Binder, nbclient) shows every
figure inline: one ``image/png`` output per ``{glue:figure}`` of the chapter.  Inside the build
(``BOOK_BUILD=1``) the figures are glued only, so the HTML places each once."""

from __future__ import annotations

import re
from pathlib import Path

import jupytext
import pytest
from nbclient import NotebookClient

BOOK = Path(__file__).resolve().parents[1] / "book"


def _run(chapter: str, build: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    path = BOOK / chapter
    notebook = jupytext.read(path, fmt="md:myst")
    monkeypatch.setenv("BOOK_BUILD", "1" if build else "0")   # the kernel inherits the environment
    monkeypatch.setenv("BOOK_PROGRESS", "0")
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(BOOK)}}).execute()
    images = sum("image/png" in out.get("data", {}) for cell in notebook.cells
                 if cell.cell_type == "code" for out in cell.get("outputs", []))
    figures = len(re.findall(r"^```\{glue:figure\}", path.read_text(encoding="utf-8"), re.M))
    return images, figures


@pytest.mark.slow
def test_sawtooth_chapter_shows_every_figure_inline_outside_the_build(monkeypatch: pytest.MonkeyPatch) -> None:
    images, figures = _run("sawtooth.md", build=False, monkeypatch=monkeypatch)
    assert figures >= 3
    assert images == figures


def test_glue_figure_displays_only_outside_the_build(monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.pyplot as plt

    from lib import plotting

    shown: list[bool] = []
    monkeypatch.setattr("myst_nb.glue", lambda name, obj, display=True: shown.append(display))
    for flag, expected in (("1", False), ("0", True), ("", True)):
        monkeypatch.setenv("BOOK_BUILD", flag)
        fig, _ = plt.subplots()
        plotting.glue_figure("fig-x", fig)
        assert shown[-1] is expected
