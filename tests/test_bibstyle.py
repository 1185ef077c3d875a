"""The bibliography's labels are the citations' text (lib._bibstyle), checked on a small Sphinx
project built from the book's own references.bib: every citation in the text reads exactly as
the label of the entry it links to, and works by the same authors in the same year get letters
(in the text too).  Independent of lib: the expected strings are written out by hand."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

sphinx = pytest.importorskip("sphinx.cmd.build")

ROOT = Path(__file__).resolve().parents[1]
CONF = f"""
import sys
sys.path.insert(0, {str(ROOT / 'src')!r})
from lib import _bibstyle
_bibstyle.register()
extensions = ['sphinxcontrib.bibtex']
bibtex_bibfiles = ['references.bib']
bibtex_reference_style = 'book_author_year'
bibtex_default_style = 'bookstyle'
"""
INDEX = """Test
====

A :cite:p:`welper2024flow`. B :cite:p:`welper2024approximation`. C :cite:t:`welper2024flow`.
D :cite:p:`telgarsky2016benefits`. E :cite:t:`cohen2021gradient`. F :cite:p:`elkabetz2021continuous`.
G :cite:p:`hanin2019complexity`. H :cite:p:`hanin2019deep`. I :cite:p:`karner2024limitations`.

.. bibliography::
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> str:
    src = tmp_path_factory.mktemp("bib")
    shutil.copy(ROOT / "book" / "references.bib", src / "references.bib")
    (src / "conf.py").write_text(CONF)
    (src / "index.rst").write_text(INDEX)
    out = src / "_build"
    assert sphinx.build_main(["-q", "-W", "-b", "html", str(src), str(out)]) == 0
    return (out / "index.html").read_text(encoding="utf-8")


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html))


def _labels(html: str) -> dict[str, str]:
    """Bibliography entry id -> its label text."""
    found = re.findall(r'<div class="citation" id="([^"]+)"[^>]*>\s*<span class="label">(.*?)'
                       r'</span></span>', html, re.S)
    return {i: _text(lab).strip("[] ") for i, lab in found}


def test_citations_read_like_the_labels(built: str) -> None:
    text = _text(built)
    for expected in ["A [Welper, 2024b]", "B [Welper, 2024a]", "C Welper [2024b]",
                     "D [Telgarsky, 2016]", "E Cohen et al. [2021]",
                     "F [Elkabetz and Cohen, 2021]", "G [Hanin and Rolnick, 2019a]",
                     "H [Hanin and Rolnick, 2019b]", "I [Karner et al., 2024]"]:
        assert expected in text, expected
    labels = _labels(built)
    assert sorted(labels.values()) == sorted([
        "Cohen et al., 2021", "Elkabetz and Cohen, 2021", "Hanin and Rolnick, 2019a",
        "Hanin and Rolnick, 2019b", "Karner et al., 2024", "Telgarsky, 2016",
        "Welper, 2024a", "Welper, 2024b"])
    # each parenthetical citation links to the entry whose label it shows
    for target, shown in re.findall(r'href="#([^"]+)"[^>]*>(.*?)</a>', built):
        if target in labels and "," in _text(shown):
            assert _text(shown) == labels[target]


def test_a_lone_work_of_a_year_gets_no_letter() -> None:
    from pybtex.database import parse_string

    from lib import _bibstyle

    db = parse_string("""@article{a, author={Ann Smith and Bo Jones}, title={X}, journal={J}, year={2020}}
@article{b, author={Ann Smith and Bo Jones and Cy Lee}, title={Y}, journal={J}, year={2020}}
@article{c, author={Ann Smith and Bo Jones}, title={Z}, journal={J}, year={2020}}""", "bibtex")
    labels = [e.label for e in _bibstyle.BookStyle().format_entries(db.entries.values())]
    assert labels == ["Smith and Jones, 2020a", "Smith and Jones, 2020b", "Smith et al., 2020"]
