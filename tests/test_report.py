"""Tests of lib.report (claims.json, the reproduction report) and lib.record (paper record)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lib import claims, record, report
from lib.claims import Interval, Ledger

ROOT = Path(__file__).resolve().parents[1]


def _ledger(chapter: str, values: dict[str, float]) -> dict:
    ledger = Ledger(chapter)
    for name, value in values.items():
        ledger.record(name, claim=f"claim {name}", source=["telgarsky2016benefits"],
                      measured={"q": value}, criterion=Interval("q", 0, 1),
                      expect="holds" if 0 <= value <= 1 else "fails")
    return ledger.table(publish=False).as_json()


def test_read_glue_ledgers_and_book_ledger(tmp_path):
    glue_dir = tmp_path / "jupyter_execute"
    (glue_dir / "book").mkdir(parents=True)
    data = _ledger("sawtooth", {"saw-a": 0.5, "saw-b": 2.0})
    glued = {claims.GLUE_KEY: {"data": {"text/plain": json.dumps(data)}}}
    (glue_dir / "book" / "sawtooth.glue.json").write_text(json.dumps(glued))
    (glue_dir / "book" / "notation.glue.json").write_text(json.dumps({"other": {}}))
    ledgers = report.read_glue_ledgers(glue_dir, ["book/sawtooth", "book/notation", "book/x"])
    assert [lg["chapter"] for lg in ledgers] == ["sawtooth"]
    book = report.book_ledger(ledgers, profile="quick", commit="abc", created="today")
    assert set(book) == {"book", "profile", "commit", "created", "claims"}
    assert [c["id"] for c in book["claims"]] == ["saw-a", "saw-b"]
    assert [c["verdict"] for c in book["claims"]] == ["holds", "fails"]
    json.dumps(book, allow_nan=False)
    with pytest.raises(ValueError, match="saw-a"):
        report.book_ledger(ledgers + ledgers, profile="quick", commit="abc")


def test_report_groups_counts_and_compares_with_the_paper_record():
    quick = report.book_ledger(
        [_ledger("sawtooth", {"saw-a": 0.5, "saw-b": 2.0, "saw-c": 0.1}),
         _ledger("pieces", {"pieces-a": 0.3})],
        profile="quick", commit="abc", created="today",
    )
    quick["claims"][2]["loose"] = True
    paper = {"claims": [dict(quick["claims"][0], verdict="fails"), quick["claims"][1],
                        {"id": "saw-gone", "verdict": "holds"}],
             "commit": "def", "created": "yesterday",
             "chapters": {"sawtooth": {"runtime_s": 12.0, "status": "ok", "commit": "def",
                                       "date": "yesterday", "hardware": "cpu"}}}
    comparison = report.compare(quick, paper)
    assert comparison == {"differs": ["saw-a"], "never_paper": ["saw-c", "pieces-a"],
                          "paper_only": ["saw-gone"]}
    text = report.report_markdown(
        quick, paper=paper, exec_data={"book/sawtooth": {"runtime": 3.2, "method": "cache",
                                                          "succeeded": True}},
        versions={"torch": "2.13.0"}, machine="cpu", lib_key="k123",
        claims_link="LINK",
    )
    assert "**4 claims**" in text and "3 holds, 1 fails, 0 vacuous, 0 not testable" in text
    assert "1 checks are loose" in text and "LINK" in text
    assert "{cite:t}`telgarsky2016benefits`" in text
    assert "**differs at paper scale**" in text and "never run at paper scale" in text
    assert "`saw-gone`" in text and "| sawtooth | 12 | ok |" in text
    assert "| {doc}`sawtooth` | 3.2 | cache | yes |" in text
    assert "`k123`" in text and "| torch | 2.13.0 |" in text
    # every table row has as many cells as its header
    for block in text.split("\n\n"):
        rows = [r for r in block.splitlines() if r.startswith("|")]
        if rows:
            n = rows[0].count("|")
            assert all(r.replace("\\|", "").count("|") == n for r in rows), block
    no_paper = report.report_markdown(quick)
    assert "No paper-scale record" in no_paper and "No execution data" in no_paper


def _run(chapter, values, runtime_s):
    """A successful chapter run of lib.record with claims ``values`` (id -> measured q)."""
    return {"chapter": chapter, "ledger": _ledger(chapter, values), "runtime_s": runtime_s,
            "status": "ok", "error": ""}


def test_merge_replaces_only_the_chapters_run():
    old = record.merge(None, [
        _run("sawtooth", {"saw-a": 0.5}, 10.0),
        _run("pieces", {"pieces-a": 0.5}, 20.0),
    ], profile="paper", commit="c1", created="d1", machine="m")
    new = record.merge(old, [
        _run("sawtooth", {"saw-a": 0.5, "saw-b": 0.7}, 11.0),
    ], profile="paper", commit="c2", created="d2", machine="m")
    assert [c["id"] for c in new["claims"]] == ["saw-a", "saw-b", "pieces-a"]   # in place
    assert list(new["chapters"]) == ["sawtooth", "pieces"]
    assert new["chapters"]["pieces"]["commit"] == "c1"
    grown = record.merge(new, [_run("floating-point", {"fp-a": 1.0}, 5.0), _run("sawtooth", {"saw-c": 1.0}, 3.0)],
                         profile="paper", commit="c3", created="d3", machine="m")
    assert [c["id"] for c in grown["claims"]] == ["saw-c", "pieces-a", "fp-a"]   # new chapters last
    assert list(grown["chapters"]) == ["sawtooth", "pieces", "floating-point"]
    assert new["chapters"]["sawtooth"] == {"commit": "c2", "date": "d2", "hardware": "m",
                                           "runtime_s": 11.0, "status": "ok", "error": "",
                                           "claims": 2}
    with pytest.raises(ValueError, match="profile"):
        record.merge(new, [], profile="quick", commit="c", created="d", machine="m")


def test_toc_chapters_are_the_notebooks_in_reading_order():
    chapters = [p.stem for p in record.toc_chapters(ROOT)]
    assert chapters[:2] == ["notation", "sawtooth"]
    assert "reproduction" not in chapters and "bibliography" not in chapters
    assert {"floating-point", "trained-vs-constructed"} <= set(chapters)
    assert "conclusion" not in chapters  # a plain page, not a notebook


CHAPTER = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---
# A chapter

```{code-cell} ipython3
from lib import config
from lib.claims import Interval, Ledger
ledger = Ledger("sawtooth")
value = 1.0 if config.is_paper() else 0.5
_ = ledger.record("saw-a", claim="c", source="ours", measured={"q": value},
                  criterion=Interval("q", 0, 0.75), expect="holds")
ledger.table()
```
"""


@pytest.mark.slow
def test_run_chapter_records_a_changed_verdict_at_paper_scale(tmp_path):
    path = tmp_path / "book" / "sawtooth.md"
    path.parent.mkdir()
    path.write_text(CHAPTER)
    quick = record.run_chapter(path, "quick", timeout=120)
    assert quick["status"] == "ok" and quick["ledger"]["claims"][0]["verdict"] == "holds"
    paper = record.run_chapter(path, "paper", timeout=120)
    # not strict: the differing verdict is recorded, the chapter runs on
    assert paper["status"] == "ok"
    assert paper["ledger"]["claims"][0]["verdict"] == "fails"
    assert paper["ledger"]["claims"][0]["expected"] == "holds"
    with pytest.raises(ValueError, match="chapter"):
        record.run_chapter(tmp_path / "missing.md", "paper")
    with pytest.raises(ValueError, match="profile"):
        record.run_chapter(path, "huge")


def test_merge_records_takes_each_parts_chapters_with_their_provenance():
    base = record.merge(None, [
        _run("sawtooth", {"saw-a": 0.5}, 10.0),
        _run("pieces", {"pieces-a": 0.5}, 20.0),
    ], profile="paper", commit="c1", created="d1", machine="m")
    part = record.merge(None, [
        _run("pieces", {"pieces-a": 0.7, "pieces-b": 0.1}, 30.0),
    ], profile="paper", commit="c2", created="d2", machine="m2")
    merged = record.merge_records(base, [part])
    assert [c["id"] for c in merged["claims"]] == ["saw-a", "pieces-a", "pieces-b"]   # in place
    assert list(merged["chapters"]) == ["sawtooth", "pieces"]
    assert merged["chapters"]["pieces"]["runtime_s"] == 30.0
    assert merged["chapters"]["pieces"]["hardware"] == "m2"
    assert merged["chapters"]["sawtooth"]["commit"] == "c1"
    assert merged["commit"] == "c2"
    quick = dict(part, profile="quick")
    with pytest.raises(ValueError, match="profiles"):
        record.merge_records(base, [quick])
    with pytest.raises(ValueError, match="parts"):
        record.merge_records(base, [])
