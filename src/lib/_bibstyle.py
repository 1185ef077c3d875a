"""Author-year labels in the bibliography, the same text as the citations in the chapters.

sphinxcontrib-bibtex's ``author_year`` reference style cites as "Telgarsky, 2016", but its
formatting styles label the bibliography ``[1]``, ``[2]``, ... and two works by the same
authors in one year are cited alike ("Welper, 2024" for two papers).  Two styles fix both:

- ``bookstyle`` (pybtex formatting style): pybtex's ``plain`` entries, sorted by first author
  and year, each labelled with its citation text: the last name of a single author, "A and B"
  for two, "A et al." for more, then ", year"; entries whose labels would clash get "a", "b",
  ... after the year (in the sorted order).
- ``book_author_year`` (sphinxcontrib-bibtex reference style): ``author_year`` with the year
  taken from that label, so the text cites "Welper, 2024a" exactly as the bibliography lists it.

:func:`register` makes both known; :mod:`lib.bookbuild` calls it when Sphinx loads it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pybtex.plugin
from pybtex.richtext import Text
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle
from pybtex.style.sorting import BaseSortingStyle
from pybtex.style.template import node
from sphinxcontrib.bibtex import plugin as bibtex_plugin
from sphinxcontrib.bibtex.style.referencing import author_year as _ay
from sphinxcontrib.bibtex.style.referencing import basic_author_year as _basic
from sphinxcontrib.bibtex.style.template import join, join2, post_text, pre_text, reference

STYLE_NAME = "bookstyle"
REFERENCE_STYLE_NAME = "book_author_year"
_SUFFIXES = "abcdefghijklmnopqrstuvwxyz"


def _plain(latex: str) -> str:
    return str(Text.from_latex(latex))


def _who(entry: Any) -> str:
    persons = entry.persons.get("author") or entry.persons.get("editor") or []
    names = [" ".join(_plain(n) for n in p.last_names) for p in persons]
    if not names:
        return _plain(entry.fields.get("title", entry.key))
    if len(names) == 1:
        return names[0]
    if len(names) == 2:
        return f"{names[0]} and {names[1]}"
    return f"{names[0]} et al."


def author_year_label(entry: Any) -> str:
    """The citation text of a pybtex ``entry`` without a disambiguating letter:
    "Last, 2016", "A and B, 2019" or "A et al., 2021" ("n.d." without a year)."""
    return f"{_who(entry)}, {entry.fields.get('year', 'n.d.')}"


class AuthorYearLabels(BaseLabelStyle):
    """Labels equal to the author-year citation text, made unique by "a", "b", ..."""

    def format_labels(self, sorted_entries: Iterable[Any]) -> Iterator[str]:
        labels = [author_year_label(e) for e in sorted_entries]
        counts, seen = Counter(labels), Counter()
        for label in labels:
            if counts[label] == 1:
                yield label
            else:
                seen[label] += 1
                yield label + _SUFFIXES[(seen[label] - 1) % len(_SUFFIXES)]


class FirstAuthorYear(BaseSortingStyle):
    """Sort by the label's author part, then year, then title (stable letters a, b, ...)."""

    def sorting_key(self, entry: Any) -> tuple[str, str, str]:
        return (_who(entry).lower(), entry.fields.get("year", ""),
                _plain(entry.fields.get("title", "")).lower())


class BookStyle(PlainStyle):
    """pybtex's ``plain`` entries with author-year labels, sorted by first author and year."""

    default_label_style = AuthorYearLabels
    default_sorting_style = FirstAuthorYear


@node
def label_year(children: Any, data: dict[str, Any]) -> Text:
    """The year of the entry's label, with its letter ("2024a"): the text after the last ", "."""
    assert not children
    return Text(data["formatted_entry"].label.rsplit(", ", 1)[-1])


@dataclass
class _Parenthetical(_basic.BasicAuthorYearParentheticalReferenceStyle):
    def inner(self, role_name: str) -> Any:
        return join2(sep1=self.pre_text_sep, sep2=self.post_text_sep)[
            pre_text,
            reference[join(sep=self.author_year_sep)[
                self.person.author_or_editor_or_title(full="s" in role_name), label_year]],
            post_text,
        ]


@dataclass
class _Textual(_basic.BasicAuthorYearTextualReferenceStyle):
    def inner(self, role_name: str) -> Any:
        return join(sep=self.text_reference_sep)[
            self.person.author_or_editor_or_title(full="s" in role_name),
            join[self.bracket.left,
                 join2(sep1=self.pre_text_sep, sep2=self.post_text_sep)[
                     pre_text, reference[label_year], post_text],
                 self.bracket.right],
        ]


@dataclass
class BookAuthorYearReferenceStyle(_ay.AuthorYearReferenceStyle):
    """sphinxcontrib-bibtex's ``author_year`` with the labels' years ("2024a")."""

    def __post_init__(self) -> None:
        super().__post_init__()
        swap = {_basic.BasicAuthorYearParentheticalReferenceStyle: _Parenthetical,
                _basic.BasicAuthorYearTextualReferenceStyle: _Textual}
        for i, style in enumerate(self.styles):
            if type(style) in swap:
                fields = {k: getattr(style, k) for k in style.__dataclass_fields__}
                self.styles[i] = swap[type(style)](**fields)
        # GroupReferenceStyle maps role names to styles in its own __post_init__.
        self.role_style.clear()
        for style in self.styles:
            self.role_style.update((name, style) for name in style.role_names())


def register() -> None:
    """Make ``bookstyle`` and ``book_author_year`` known (idempotent)."""
    try:
        pybtex.plugin.find_plugin("pybtex.style.formatting", STYLE_NAME)
    except pybtex.plugin.PluginNotFound:
        pybtex.plugin.register_plugin("pybtex.style.formatting", STYLE_NAME, BookStyle)
    bibtex_plugin.register_plugin("sphinxcontrib.bibtex.style.referencing",
                                  REFERENCE_STYLE_NAME, BookAuthorYearReferenceStyle)
