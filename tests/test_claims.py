"""Tests of lib.claims: verdicts are computed, never typed."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from lib import claims
from lib.claims import Interval, Ledger, Predicate, VerdictMismatch


def record(ledger, claim_id="saw-x", value=1.0, criterion=None, expect="holds", **kw):
    return ledger.record(
        claim_id,
        claim="a claim",
        source=kw.pop("source", "ours"),
        measured={"q": value},
        criterion=criterion or Interval("q", 0.5, 1.5),
        expect=expect,
        **kw,
    )


def test_inside_holds_outside_fails():
    ledger = Ledger("sawtooth")
    assert record(ledger, "saw-a", 1.0).verdict == "holds"
    assert record(ledger, "saw-b", 2.0, expect="fails").verdict == "fails"


def test_value_outside_bounds_flips_the_verdict_and_raises():
    ledger = Ledger("sawtooth")
    with pytest.raises(VerdictMismatch) as info:
        record(ledger, "saw-a", 1.6)
    text = str(info.value)
    assert "saw-a" in text and "1.6" in text and "0.5" in text and "1.5" in text
    assert "'fails'" in text and "'holds'" in text
    assert "saw-a" not in ledger.claims  # nothing recorded


def test_wrong_expected_verdict_raises():
    ledger = Ledger("sawtooth")
    with pytest.raises(VerdictMismatch, match="expected 'fails'"):
        record(ledger, "saw-a", 1.0, expect="fails")
    with pytest.raises(AssertionError):  # a mismatch reads as a failed check
        record(ledger, "saw-b", 1.0, expect="vacuous",
               criterion=Interval("q", 1, None, vacuous_above=100))


def test_lists_need_every_value_inside_and_nan_is_outside():
    ledger = Ledger("pieces")
    ledger.record("pieces-a", claim="c", source="ours", measured={"q": [1, 2, 3]},
                  criterion=Interval("q", 1, 3), expect="holds")
    ledger.record("pieces-b", claim="c", source="ours", measured={"q": [1, 2, 4]},
                  criterion=Interval("q", 1, 3), expect="fails")
    ledger.record("pieces-c", claim="c", source="ours", measured={"q": math.nan},
                  criterion=Interval("q", None, 3), expect="fails")


def test_vacuous_bound_records_orders():
    ledger = Ledger("floating-point")
    c = ledger.record("fp-bound", claim="bound", source=["karner2024limitations"],
                      measured={"bound / count": 3.0e5},
                      criterion=Interval("bound / count", 1, None, vacuous_above=100),
                      expect="vacuous")
    assert c.verdict == "vacuous"
    assert c.as_json()["vacuous_orders"] == pytest.approx(5.48, abs=0.01)
    # a bound that is violated fails; a tight one holds
    record(ledger, "fp-b", 0.5, criterion=Interval("q", 1, None, vacuous_above=100),
           expect="fails")
    record(ledger, "fp-c", 3.0, criterion=Interval("q", 1, None, vacuous_above=100))


def test_loose_windows_are_marked():
    assert Interval("q", 1, 4).loose is False
    assert Interval("q", 1, 4.01).loose is True
    assert Interval("q", 1 / 16, 16).loose is True
    assert Interval("q", -8, -1).loose is True
    assert Interval("q", 0, 1e-12).loose is False  # a tolerance
    assert Interval("q", None, 3).loose is False and Interval("q", None, 3).one_sided
    ledger = Ledger("sawtooth")
    assert record(ledger, "saw-a", 1.0, criterion=Interval("q", 0.25, 4)).loose
    assert record(ledger, "saw-b", 1.0,
                  criterion=Predicate("q positive", lambda m: m["q"] > 0, loose=True)).loose


def test_predicate_verdicts():
    ledger = Ledger("sawtooth")
    p = Predicate("q is 1", lambda m: m["q"] == 1)
    assert record(ledger, "saw-a", 1, criterion=p).verdict == "holds"
    assert record(ledger, "saw-b", 2, criterion=p, expect="fails").verdict == "fails"
    np_pred = Predicate("numpy bool", lambda m: np.bool_(m["q"] > 0))
    assert record(ledger, "saw-c", 2, criterion=np_pred).verdict == "holds"


def test_not_testable():
    ledger = Ledger("sawtooth")
    c = ledger.not_testable("saw-t", claim="Telgarsky's theorem", source=["telgarsky2016benefits"],
                            why="constants not given")
    assert c.verdict == "not testable"
    j = c.as_json()
    assert j["criterion"]["text"] == "constants not given" and j["criterion"]["lower"] is None
    with pytest.raises(ValueError, match="why"):
        ledger.not_testable("saw-u", claim="c", source="ours", why=" ")


def test_bad_input_is_refused_with_named_arguments():
    ledger = Ledger("sawtooth")
    with pytest.raises(ValueError, match="claim_id"):
        record(ledger, "fp-a")
    with pytest.raises(ValueError, match="claim_id"):
        record(ledger, "saw-A")
    record(ledger, "saw-a")
    with pytest.raises(ValueError, match="twice"):
        record(ledger, "saw-a")
    with pytest.raises(ValueError, match="expect"):
        record(ledger, "saw-b", expect="not testable")
    with pytest.raises(ValueError, match="expect"):
        record(ledger, "saw-b", expect="true")
    with pytest.raises(ValueError, match="vacuous_above"):
        record(ledger, "saw-b", expect="vacuous")
    with pytest.raises(ValueError, match="papers.md"):
        record(ledger, "saw-b", source=["papers.md"])
    with pytest.raises(ValueError, match="quantity"):
        ledger.record("saw-b", claim="c", source="ours", measured={"other": 1},
                      criterion=Interval("q", 0, 1), expect="holds")
    with pytest.raises(TypeError, match="measured"):
        ledger.record("saw-b", claim="c", source="ours", measured={"q": "1"},
                      criterion=Interval("q", 0, 1), expect="holds")
    with pytest.raises(TypeError, match="criterion"):
        ledger.record("saw-b", claim="c", source="ours", measured={"q": 1},
                      criterion=(0, 1), expect="holds")
    with pytest.raises(ValueError, match="lower"):
        Interval("q", 2, 1)
    with pytest.raises(ValueError, match="lower or upper"):
        Interval("q")
    with pytest.raises(TypeError, match="upper"):
        Interval("q", 0, "1")
    with pytest.raises(ValueError, match="chapter"):
        Ledger("no-such-chapter")
    with pytest.raises(ValueError, match="empty"):
        Ledger("sawtooth").table(publish=False)


def test_numpy_and_torch_values_become_json_numbers():
    ledger = Ledger("sawtooth")
    ledger.record("saw-a", claim="c", source=["telgarsky2016benefits"],
                  measured={"n": np.int64(4), "x": torch.tensor(0.5, dtype=torch.float64),
                            "xs": np.array([1.0, 2.0]), "inf": math.inf},
                  criterion=Interval("x", 0, 1), expect="holds", refs=["lem-a"])
    data = json.loads(json.dumps(ledger.as_json(), allow_nan=False))
    assert data[0]["measured"] == {"n": 4, "x": 0.5, "xs": [1.0, 2.0], "inf": "inf"}
    assert data[0]["source"] == ["telgarsky2016benefits"] and data[0]["refs"] == ["lem-a"]
    assert set(data[0]) >= {"id", "chapter", "claim", "source", "measured", "criterion",
                            "verdict", "loose"}
    assert set(data[0]["criterion"]) >= {"text", "quantity", "lower", "upper"}


def test_table_renders_every_claim_with_citations():
    ledger = Ledger("sawtooth")
    record(ledger, "saw-a", 1.0, source=["telgarsky2016benefits", "yarotsky2017error"],
           refs=["lem-sawtooth-pieces"])
    record(ledger, "saw-b", 2.0, expect="fails", note="one seed")
    ledger.not_testable("saw-c", claim="x | y", source="ours", why="no constants")
    text = ledger.markdown()
    lines = text.strip().splitlines()
    assert len(lines) == 2 + 3
    assert "{cite:p}`telgarsky2016benefits,yarotsky2017error`" in lines[2]
    assert "{prf:ref}`lem-sawtooth-pieces`" in lines[2]
    assert "`saw-a`" in lines[2] and "**holds**" in lines[2]
    assert "| ours |" in lines[3] and "**fails**" in lines[3] and "one seed" in lines[3]
    assert "x \\| y" in lines[4] and "**not testable**" in lines[4]
    assert all(line.count(" | ") == 4 for line in lines[2:])


def test_ledger_round_trips_through_glue_and_notebooks():
    ledger = Ledger("sawtooth")
    record(ledger, "saw-a")
    table = ledger.table(publish=False)
    bundle = {"text/plain": repr(claims._LedgerJSON(table.as_json()))}
    glue_data = {claims.GLUE_KEY: {"data": bundle}}
    assert claims.ledger_from_glue(glue_data)["claims"] == ledger.as_json()
    notebook = {"cells": [{"cell_type": "code", "outputs": [{
        "output_type": "display_data",
        "metadata": {"scrapbook": {"name": claims.GLUE_KEY, "mime_prefix": "x/"}},
        "data": {"application/papermill.record/text/plain": json.dumps(table.as_json())},
    }]}]}
    assert claims.ledger_from_notebook(notebook)["chapter"] == "sawtooth"
    assert claims.ledger_from_notebook({"cells": []}) is None
    assert "holds 1" in repr(table)
    assert "| claim |" in table._repr_markdown_()


def test_check_unique_across_chapters():
    a = {"id": "saw-a", "chapter": "sawtooth"}
    claims.check_unique([a, {"id": "saw-b", "chapter": "sawtooth"}])
    with pytest.raises(ValueError, match="saw-a"):
        claims.check_unique([a, {"id": "saw-a", "chapter": "pieces"}])


@given(
    lo=st.floats(-1e6, 1e6), width=st.floats(0, 1e6), value=st.floats(-3e6, 3e6),
)
def test_interval_verdict_is_membership(lo, width, value):
    """Law: an interval criterion holds exactly when the value lies in [lower, upper]."""
    hi = lo + width
    verdict, _ = Interval("q", lo, hi).evaluate({"q": value})
    assert (verdict == "holds") == (lo <= value <= hi)


@given(values=st.lists(st.floats(-10, 10), min_size=1, max_size=20))
def test_list_verdict_is_all_members(values):
    verdict, detail = Interval("q", -1, 1).evaluate({"q": values})
    assert (verdict == "holds") == all(-1 <= v <= 1 for v in values)
    assert detail["outside"] == [v for v in values if not -1 <= v <= 1]


def test_format_value():
    assert claims.format_value(3) == "3"
    assert claims.format_value(0.123456) == "0.123"
    assert claims.format_value(1.5e-8) == "1.50e-8"
    assert claims.format_value(list(range(10))) == "0 to 9 (10 values)"
    assert claims.format_value([1, 2]) == "1, 2"
    assert claims.format_value(2016.4) == "2016"
    assert claims.format_value(99999.0) == "99999"
    assert claims.format_value(123456.0) == "1.23e5"


def test_cells_keep_latex_norms_and_escape_pipes():
    assert claims._cell(r"$\|f\| \le 1$ | x") == r"$\Vert f\Vert  \le 1$ \| x"


def test_non_strict_mode_records_the_differing_verdict(monkeypatch):
    monkeypatch.setenv(claims.STRICT_ENV, "0")
    ledger = Ledger("sawtooth")
    c = record(ledger, "saw-a", 2.0)  # expected holds, computed fails: recorded, no raise
    assert c.verdict == "fails" and c.as_json()["expected"] == "holds"
    monkeypatch.setenv(claims.STRICT_ENV, "1")
    with pytest.raises(VerdictMismatch):
        record(ledger, "saw-b", 2.0)


def test_consistency_checks_are_marked():
    ledger = Ledger("sawtooth")
    c = record(ledger, "saw-a", 1.0, consistency=True)
    assert c.as_json()["consistency"] is True
    assert "(consistency check)" in ledger.markdown()
    assert record(ledger, "saw-b", 1.0).as_json()["consistency"] is False
    with pytest.raises(TypeError, match="consistency"):
        record(ledger, "saw-c", 1.0, consistency="yes")


def test_table_shows_the_paper_verdict_and_flags_a_difference(tmp_path, monkeypatch):
    """With a paper record of the chapter, the table gains a column: the same verdict, a
    differing one in bold with the paper run's measured values, or 'not run'; a record without
    the chapter, or none, leaves the five columns.  The record is found from the working
    directory upwards (chapters run in book/)."""
    ledger = Ledger("sawtooth")
    record(ledger, "saw-a", 1.0)
    record(ledger, "saw-b", 1.0)
    record(ledger, "saw-c", 1.0)
    paper = {"profile": "paper", "chapters": {"sawtooth": {}},
             "claims": [dict(ledger.as_json()[0]),
                        dict(ledger.as_json()[1], verdict="fails", measured={"q": 7.25})]}
    text = ledger.table(publish=False, paper=paper)._repr_markdown_()
    lines = text.strip().splitlines()
    assert lines[0].endswith("| verdict | at paper scale |")
    assert lines[2].endswith("| holds |")
    assert "**fails** (differs; measured there: q = 7.25)" in lines[3]
    assert lines[4].endswith("| not run at paper scale |")
    assert all(line.count(" | ") == 5 for line in lines[2:5])
    assert "Verdicts that differ at paper scale" in text
    assert "- `saw-b` holds here (q = 1) and fails at paper scale (q = 7.25)." in text
    assert "`saw-a` holds here" not in text
    other = dict(paper, chapters={"pieces": {}})
    assert "at paper scale" not in ledger.table(publish=False, paper=other)._repr_markdown_()
    assert "at paper scale" not in ledger.table(publish=False, paper=None)._repr_markdown_()
    # "auto": results/paper/claims.json above the working directory
    (tmp_path / "results" / "paper").mkdir(parents=True)
    (tmp_path / "results" / "paper" / "claims.json").write_text(json.dumps(paper))
    (tmp_path / "book").mkdir()
    monkeypatch.chdir(tmp_path / "book")
    assert "**fails** (differs" in ledger.table(publish=False)._repr_markdown_()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TypeError, match="paper"):
        ledger.table(publish=False, paper={"no": "claims"})
