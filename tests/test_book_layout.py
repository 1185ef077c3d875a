"""The table of contents, the configuration and the chapter files agree."""

from pathlib import Path

import yaml

from conftest import CODE_CELL, forbidden_markers, header_problem, is_myst_notebook

ROOT = Path(__file__).resolve().parents[1]


def _toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [chapter["file"] for chapter in part["chapters"]]
    return files


def test_every_toc_entry_exists() -> None:
    for entry in _toc_files():
        assert (ROOT / f"{entry}.md").is_file(), entry


def test_every_chapter_notebook_is_in_the_toc() -> None:
    listed = {f"{entry}.md" for entry in _toc_files()}
    notebooks = {p.relative_to(ROOT).as_posix() for p in (ROOT / "book").rglob("*.md")
                 if is_myst_notebook(p)}
    assert notebooks <= listed, f"chapters missing from _toc.yml: {sorted(notebooks - listed)}"


def test_every_toc_chapter_with_code_is_collected() -> None:
    """The chapters pytest runs (the collector's rule) are exactly the table of contents'
    pages that have code cells: none drops out through an unreadable header."""
    with_code = {f"{e}.md" for e in _toc_files() if CODE_CELL in (ROOT / f"{e}.md").read_text(encoding="utf-8")}
    collected = {p.relative_to(ROOT).as_posix() for p in (ROOT / "book").rglob("*.md")
                 if header_problem(p) is None and is_myst_notebook(p)}
    assert with_code, "no chapter with code cells found"
    assert collected == with_code, (sorted(collected ^ with_code),
                                    [header_problem(ROOT / f) for f in sorted(with_code)])


def test_no_chapter_skips_or_excuses_a_cell() -> None:
    found = {p.name: forbidden_markers(p) for p in (ROOT / "book").rglob("*.md")}
    assert not {k: v for k, v in found.items() if v}, found


def test_config_essentials() -> None:
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert cfg["only_build_toc_files"] is True
    assert cfg["execute"]["execute_notebooks"] == "cache"
    assert cfg["execute"]["timeout"] > 30  # explicit per-cell timeout
    assert "lib.bookbuild" in cfg["sphinx"]["extra_extensions"]
    assert "sphinx_proof" in cfg["sphinx"]["extra_extensions"]
    assert cfg["bibtex_bibfiles"] == ["book/references.bib"]
    assert (ROOT / "book" / "references.bib").is_file()


def test_requirements_pin_cpu_torch_and_install_lib() -> None:
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    assert "torch==2.13.0" in lines
    assert "-e ." in lines
    assert any(line.startswith("jupyter-book==1.") for line in lines)


def _bash_blocks(text: str) -> list[str]:
    blocks, inside = [], False
    for line in text.splitlines():
        if line.strip() == "```bash":
            inside = True
        elif line.strip() == "```":
            inside = False
        elif inside:
            blocks.append(line.strip())
    return blocks


def test_readme_has_the_two_commands_and_the_intro_repeats_them() -> None:
    readme = _bash_blocks((ROOT / "README.md").read_text())
    commands = [c for c in readme if "pip install -r requirements.txt" in c]
    assert len(commands) == 2
    assert commands[0].endswith("jupyter-book build .") and commands[1].endswith("pytest")
    assert _bash_blocks((ROOT / "book" / "intro.md").read_text()) == commands


def test_bibliography_parses_and_keys_are_unique() -> None:
    import re

    from pybtex.database import parse_file

    bib = parse_file(str(ROOT / "book" / "references.bib"))
    text = (ROOT / "book" / "references.bib").read_text()
    keys = re.findall(r"^@\w+\{([^,]+),", text, flags=re.M)
    assert len(keys) == len(set(keys)) == len(bib.entries)


def test_every_citation_key_exists() -> None:
    import re

    from pybtex.database import parse_file

    known = set(parse_file(str(ROOT / "book" / "references.bib")).entries)
    for page in (ROOT / "book").glob("*.md"):
        for group in re.findall(r"\{cite[a-z:]*\}`([^`]+)`", page.read_text()):
            for key in group.split(","):
                assert key.strip() in known, f"{page.name}: unknown citation {key.strip()}"


def _chapter_notebooks() -> list[Path]:
    return [p for p in sorted((ROOT / "book").glob("*.md")) if is_myst_notebook(p)]


def test_what_we_verified_comes_from_the_ledger() -> None:
    """Under "## What we verified" no hand-written table row remains: the table is the
    chapter's ledger (``ledger.table()``), whose verdicts are computed."""
    with_tables = 0
    for path in _chapter_notebooks():
        text = path.read_text(encoding="utf-8")
        if "## What we verified" not in text:
            continue
        with_tables += 1
        section = text.split("## What we verified", 1)[1].split("\n## ", 1)[0]
        rows = [line for line in section.splitlines() if line.lstrip().startswith("|")]
        assert not rows, f"{path.name}: hand-written table rows under 'What we verified'"
        assert "ledger.table()" in section, f"{path.name}: no ledger.table() cell"
        assert 'Ledger("' + path.stem + '")' in text, f"{path.name}: no Ledger({path.stem!r})"
    assert with_tables >= 6


def test_no_page_cites_the_working_digest() -> None:
    for path in sorted((ROOT / "book").glob("*.md")):
        assert "papers.md" not in path.read_text(encoding="utf-8"), path.name


def test_claim_ids_are_unique_in_the_book() -> None:
    import re

    seen: dict[str, str] = {}
    pattern = re.compile(r"""ledger\.(?:record|not_testable)\(\s*["']([a-z0-9-]+)["']""")
    for path in _chapter_notebooks():
        # within one chapter the Ledger refuses a repeated id when it runs (a record in each
        # branch of an if is fine); across chapters only this test can see a clash
        for claim_id in set(pattern.findall(path.read_text(encoding="utf-8"))):
            assert claim_id not in seen, f"{claim_id} in {seen.get(claim_id)} and {path.name}"
            seen[claim_id] = path.name


def test_chapter_code_cells_stay_short() -> None:
    """The d2l shape: at most 3 code cells over 40 lines in the book, none over 60."""
    import jupytext

    long_cells = []
    for path in _chapter_notebooks():
        notebook = jupytext.read(path, fmt="md:myst")
        for i, cell in enumerate(notebook.cells):
            n = len(cell.source.splitlines())
            if cell.cell_type == "code" and n > 40:
                long_cells.append((path.name, i, n))
    assert len(long_cells) <= 3 and all(n <= 60 for *_, n in long_cells), long_cells


def test_every_figure_has_alt_text() -> None:
    """Every ``{glue:figure}`` carries ``:alt:`` text saying what it shows (not a file name)."""
    for path in sorted((ROOT / "book").glob("*.md")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if line.startswith("```{glue:figure}"):
                options = []
                for option in lines[i + 1:]:
                    if not option.startswith(":"):
                        break
                    options.append(option)
                alt = [o for o in options if o.startswith(":alt:")]
                assert alt and len(alt[0]) > 40, f"{path.name}:{i + 1}: figure without :alt:"


def test_checks_are_visible_not_removed() -> None:
    """A reader can open every check: no chapter removes a code cell; only the cell that
    renders the "What we verified" table hides its (one-line) input."""
    import re

    for entry in _toc_files():
        text = (ROOT / f"{entry}.md").read_text(encoding="utf-8")
        assert ":tags: [remove-cell]" not in text, f"{entry}: a removed cell (use hide-cell)"
        for cell in re.findall(r"```\{code-cell\} ipython3\n:tags: \[remove-input\]\n(.*?)```", text, re.S):
            assert cell.strip() == "ledger.table()", (entry, cell[:80])


def test_binder_links_open_a_stable_ref() -> None:
    """The launch buttons (``repository.branch``) and the README's badge open the same release
    ref, and not ``main``: links that follow main make mybinder.org rebuild after every push."""
    import re

    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    ref = cfg["repository"]["branch"]
    assert ref not in {"main", "master", "HEAD"}, ref
    badges = re.findall(r"mybinder\.org/v2/gh/([^/]+)/([^/]+)/([^?)\s]+)",
                        (ROOT / "README.md").read_text(encoding="utf-8"))
    assert badges, "the README has no Binder badge"
    org, repo = cfg["repository"]["url"].rstrip("/").split("/")[-2:]
    assert set(badges) == {(org, repo, ref)}, (badges, (org, repo, ref))
