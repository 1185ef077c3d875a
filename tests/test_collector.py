"""The conftest.py collector hands MyST chapters to nbval, and a failing check fails."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
NBVAL_ARGS = ("--nbval-lax", "--nbval-current-env", "--nbval-cell-timeout=120", "-p", "no:cacheprovider")


@pytest.fixture
def book_project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A throw-away project with the real conftest.py and a book/ folder."""
    pytester.makeconftest((ROOT / "conftest.py").read_text())
    (pytester.path / "book").mkdir()
    return pytester


def _add(project: pytest.Pytester, name: str, target: str) -> None:
    dest = project.path / target
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text((DATA / name).read_text())


def test_failing_chapter_is_reported_as_failure(book_project: pytest.Pytester) -> None:
    _add(book_project, "failing_chapter.md", "book/failing_chapter.md")
    result = book_project.runpytest_subprocess(*NBVAL_ARGS)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*failing_chapter.md::Cell 1*", "*the claimed value does not hold*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_passing_chapter_runs_every_cell(book_project: pytest.Pytester) -> None:
    _add(book_project, "passing_chapter.md", "book/passing_chapter.md")
    result = book_project.runpytest_subprocess(*NBVAL_ARGS)
    result.assert_outcomes(passed=2)


def test_only_notebooks_under_book_are_collected(book_project: pytest.Pytester) -> None:
    # A failing notebook outside book/ and a plain Markdown page inside it are not collected.
    _add(book_project, "failing_chapter.md", "elsewhere/failing_chapter.md")
    (book_project.path / "book" / "plain.md").write_text("# Plain page\n\nNo code.\n")
    _add(book_project, "passing_chapter.md", "book/passing_chapter.md")
    result = book_project.runpytest_subprocess(*NBVAL_ARGS, "--collect-only", "-q")
    result.stdout.fnmatch_lines(["*book/passing_chapter.md::Cell 0*"])
    assert "failing_chapter" not in result.stdout.str()
    assert "plain.md" not in result.stdout.str()


def test_collector_is_off_without_nbval_flags(book_project: pytest.Pytester) -> None:
    _add(book_project, "failing_chapter.md", "book/failing_chapter.md")
    result = book_project.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED


@pytest.mark.parametrize("damage", ["bom", "blank", "kernel_spec"])
def test_a_chapter_with_a_broken_header_fails_loudly(book_project: pytest.Pytester, damage: str) -> None:
    text = (DATA / "passing_chapter.md").read_text()
    text = {"bom": "\ufeff" + text, "blank": "\n" + text,
            "kernel_spec": text.replace("kernelspec:", "kernel_spec:")}[damage]
    (book_project.path / "book" / "broken.md").write_text(text, encoding="utf-8")
    result = book_project.runpytest_subprocess(*NBVAL_ARGS)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*chapter not runnable*broken.md*"])
