"""Run the book's MyST Markdown chapters with nbval.

nbval only collects ``.ipynb`` files.  The chapters are text notebooks (MyST Markdown with
a jupytext header), so this collector hands every such ``.md`` file below a ``book/``
folder to nbval after converting it in memory with jupytext.  Files without a
``kernelspec`` in their header (plain pages such as the bibliography) are not notebooks
and are skipped.  Options come from ``pyproject.toml``: ``--nbval-lax`` (outputs are not
compared; a cell that raises, e.g. a failing ``assert``, fails the test),
``--nbval-current-env`` and an explicit ``--nbval-cell-timeout``.

The kernel runs with the chapter's folder as working directory, like the book build.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, settings

pytest_plugins = ["pytester"]

# Property tests: no per-example deadline (torch's first calls are slow and timing is not
# what they check), a fixed number of examples that suits a 2-core CI machine.
settings.register_profile(
    "book", deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("book")

NOTEBOOK_DIR = "book"


def pytest_configure(config: pytest.Config) -> None:
    # Executed chapters show no progress bars (lib.config.progress reads this).
    os.environ.setdefault("BOOK_PROGRESS", "0")


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: as many workers as the book build uses (``BOOK_JOBS``, else the cores)."""
    from lib.bookbuild import build_jobs

    return build_jobs()


CODE_CELL = "```{code-cell}"
#: nbval markers and cell tags that would let a chapter's cell be skipped or fail quietly.
FORBIDDEN_MARKERS = ("NBVAL_SKIP", "NBVAL_RAISES_EXCEPTION", "NBVAL_IGNORE_OUTPUT",
                     "NBVAL_CHECK_OUTPUT", "nbval-skip", "nbval-raises-exception",
                     "raises-exception", "skip-execution")


def is_myst_notebook(path: Path) -> bool:
    """True for a ``.md`` file whose front matter declares a jupytext kernelspec."""
    if path.suffix != ".md":
        return False
    text = path.read_text(encoding="utf-8")
    if not text.startswith("---"):
        return False
    end = text.find("\n---", 3)
    front = text[3:end] if end != -1 else ""
    return "kernelspec:" in front


def header_problem(path: Path) -> str | None:
    """Why ``path`` (a page with code cells) would not run as a notebook, or ``None``.

    A chapter with ``{code-cell}`` blocks must start with ``---`` on the first line (no
    byte-order mark, no blank line) and its front matter must declare ``kernelspec:``;
    otherwise neither nbval nor the book build would execute it, silently.
    """
    text = path.read_text(encoding="utf-8")
    if CODE_CELL not in text:
        return None
    if text.startswith("\ufeff"):
        return f"{path} starts with a UTF-8 byte-order mark before its '---' header"
    if not text.startswith("---"):
        return f"{path} has code cells but does not start with a '---' front-matter header"
    if not is_myst_notebook(path):
        return f"{path} has code cells but its front matter declares no 'kernelspec:'"
    return None


def forbidden_markers(path: Path) -> list[str]:
    """The nbval skip/raises markers and tags found in ``path``."""
    text = path.read_text(encoding="utf-8")
    return [m for m in FORBIDDEN_MARKERS if m in text]


def _in_notebook_dir(path: Path, rootpath: Path) -> bool:
    try:
        parts = path.resolve().relative_to(rootpath.resolve()).parts
    except ValueError:
        return False
    return NOTEBOOK_DIR in parts[:-1]


@contextmanager
def _nbformat_reads(notebook: Any) -> Iterator[None]:
    """Make nbval's ``nbformat.read`` return ``notebook`` (converted by jupytext)."""
    import nbval.plugin

    original = nbval.plugin.nbformat

    class _Reader:
        def __getattr__(self, name: str) -> Any:
            return getattr(original, name)

        @staticmethod
        def read(*args: Any, **kwargs: Any) -> Any:
            return notebook

    nbval.plugin.nbformat = _Reader()
    try:
        yield
    finally:
        nbval.plugin.nbformat = original


def _make_collector() -> type:
    from nbval.plugin import IPyNbFile

    class MystNotebookFile(IPyNbFile):
        """An nbval notebook file read from MyST Markdown through jupytext."""

        def collect(self):  # type: ignore[override]
            import jupytext

            notebook = jupytext.read(self.path, fmt="md:myst")
            with _nbformat_reads(notebook):
                yield from super().collect()

    return MystNotebookFile


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> Any:
    opt = parent.config.option
    if not (getattr(opt, "nbval", False) or getattr(opt, "nbval_lax", False)):
        return None
    if file_path.suffix != ".md" or not _in_notebook_dir(file_path, parent.config.rootpath):
        return None
    problem = header_problem(file_path)
    if problem is not None:
        return BrokenChapter.from_parent(parent, path=file_path, problem=problem)
    if not is_myst_notebook(file_path):
        return None
    return _make_collector().from_parent(parent, path=file_path)


class BrokenChapter(pytest.File):
    """A page with code cells whose header nbval cannot read: collected as one failing item."""

    def __init__(self, *, problem: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.problem = problem

    def collect(self):  # type: ignore[override]
        yield BrokenHeader.from_parent(self, name="header", problem=self.problem)


class BrokenHeader(pytest.Item):
    def __init__(self, *, problem: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.problem = problem

    def runtest(self) -> None:
        raise pytest.fail.Exception(f"chapter not runnable: {self.problem}", pytrace=False)

    def reportinfo(self) -> tuple[Any, int, str]:
        return self.path, 0, f"header of {self.path.name}"
