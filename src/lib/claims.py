"""The claims ledger: each claim of a chapter recorded once, its verdict computed.

A chapter makes one :class:`Ledger` and records every claim it makes, right where the
claim's numbers are computed::

    from lib.claims import Interval, Ledger

    ledger = Ledger("sawtooth")
    ledger.record(
        "saw-pieces",
        claim="$g_s$ has $2^s$ affine pieces",
        source=["telgarsky2016benefits"],
        measured={"pieces / 2^s": ratios},            # a number or a list of numbers
        criterion=Interval("pieces / 2^s", 1, 1),
        expect="holds",
    )

The verdict is **computed** from the measured values and the criterion, never typed: a
verdict that differs from ``expect`` raises :class:`VerdictMismatch` (an ``AssertionError``
naming the claim, the value and the bounds), so a changed result fails the book build and
nbval.  The verdicts are

``holds``
    the criterion is met;
``fails``
    the criterion (the source's claim, as worded) is not met at our scale, as measured;
``vacuous``
    the criterion is met, but with a slack of at least ``vacuous_above`` (a bound many
    orders of magnitude above what it bounds); the number of orders is recorded;
``not testable``
    recorded with :meth:`Ledger.not_testable` and the reason why.

Criteria are explicit and shown to the reader: an :class:`Interval` on a named measured
quantity (every value of a list must lie in it) or a :class:`Predicate` with its wording.
A two-sided interval wider than a factor of :data:`LOOSE_FACTOR` is marked ``loose``
automatically, and so is a predicate its author declares loose; the reproduction report
lists them.  At the end of the chapter :meth:`Ledger.table` renders the "What we
verified" table and publishes the ledger (glued under :data:`GLUE_KEY`), from which the
book build writes ``claims.json`` and the reproduction report (:mod:`lib.report`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from numbers import Integral, Real
from pathlib import Path
from typing import Any

VERDICTS: tuple[str, ...] = ("holds", "fails", "vacuous", "not testable")

#: A two-sided interval whose ends differ by more than this factor is a loose check.
LOOSE_FACTOR = 4.0

#: The claim-id prefix of each chapter (``<prefix>-<name>``).
CHAPTER_PREFIXES: dict[str, str] = {
    "sawtooth": "saw",
    "pieces": "pieces",
    "floating-point": "fp",
    "gd-vs-flow": "gdgf",
    "edge-of-stability": "eos",
    "trained-vs-constructed": "tvc",
    "conclusion": "concl",
}

#: The glue key under which a chapter publishes its ledger (its text/plain is the JSON).
GLUE_KEY = "claims-ledger"
TEXT_MIME = "text/plain"

_ID_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-")

#: ``BOOK_CLAIMS_STRICT=0`` records a verdict that differs from the expected one instead of
#: raising (the paper-scale record, :mod:`lib.record`, runs that way so that one changed
#: verdict does not hide the others).  The book build and the tests are always strict.
STRICT_ENV = "BOOK_CLAIMS_STRICT"


def strict() -> bool:
    """Whether a verdict that differs from the expected one raises (the default)."""
    return os.environ.get(STRICT_ENV, "1").strip().lower() not in {"0", "false", "no", "off"}


class VerdictMismatch(AssertionError):
    """A claim's computed verdict is not the one its author expects."""


# --------------------------------------------------------------------------------------
# criteria


def _bound(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (Real, Fraction)):
        raise TypeError(f"{name} must be a real number or None, got {type(value).__name__}")
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"{name} must not be NaN")
    return value


def _fmt_number(value: float) -> str:
    if isinstance(value, Integral) or (float(value).is_integer() and abs(value) < 1e15):
        return str(int(value))
    return f"{value:.3g}"


@dataclass(frozen=True)
class Interval:
    """``lower <= measured[quantity] <= upper`` (an open end is ``None``).

    ``text`` is an optional wording shown before the inequality.  ``vacuous_above``: the
    claim is met but empty when every value is at least this (use it for the ratio of a
    bound to what it bounds, with ``lower=1``).
    """

    quantity: str
    lower: float | None = None
    upper: float | None = None
    text: str | None = None
    vacuous_above: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.quantity, str) or not self.quantity.strip():
            raise ValueError("quantity must be a non-empty string")
        lower = _bound(self.lower, "lower")
        upper = _bound(self.upper, "upper")
        vac = _bound(self.vacuous_above, "vacuous_above")
        if lower is None and upper is None:
            raise ValueError("an Interval needs lower or upper (or both)")
        if lower is not None and upper is not None and lower > upper:
            raise ValueError(f"lower ({lower}) must not exceed upper ({upper})")
        if vac is not None and lower is not None and vac < lower:
            raise ValueError("vacuous_above must not be below lower")
        object.__setattr__(self, "lower", lower)
        object.__setattr__(self, "upper", upper)
        object.__setattr__(self, "vacuous_above", vac)

    @property
    def one_sided(self) -> bool:
        return self.lower is None or self.upper is None

    @property
    def loose(self) -> bool:
        """Two-sided and wider than :data:`LOOSE_FACTOR` (same sign at both ends)."""
        lo, hi = self.lower, self.upper
        if lo is None or hi is None:
            return False
        if lo > 0:
            return hi / lo > LOOSE_FACTOR
        if hi < 0:
            return lo / hi > LOOSE_FACTOR
        return False

    def describe(self) -> str:
        q = self.quantity
        if self.lower is not None and self.upper is not None:
            if self.lower == self.upper:
                rule = f"{q} = {_fmt_number(self.lower)}"
            else:
                rule = f"{_fmt_number(self.lower)} ≤ {q} ≤ {_fmt_number(self.upper)}"
        elif self.lower is not None:
            rule = f"{q} ≥ {_fmt_number(self.lower)}"
        else:
            rule = f"{q} ≤ {_fmt_number(self.upper)}"
        if self.vacuous_above is not None:
            rule += f"; vacuous if ≥ {_fmt_number(self.vacuous_above)}"
        return f"{self.text}: {rule}" if self.text else rule

    def evaluate(self, measured: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        if self.quantity not in measured:
            raise ValueError(
                f"criterion quantity {self.quantity!r} is not among the measured values "
                f"{sorted(measured)}"
            )
        values = _as_list(measured[self.quantity])
        if not values:
            raise ValueError(f"measured[{self.quantity!r}] is empty")

        def inside(v: float) -> bool:
            if math.isnan(v):
                return False
            return (self.lower is None or v >= self.lower) and (
                self.upper is None or v <= self.upper
            )

        outside = [v for v in values if not inside(v)]
        detail: dict[str, Any] = {"outside": outside}
        if outside:
            return "fails", detail
        if self.vacuous_above is not None and min(values) >= self.vacuous_above:
            detail["vacuous_orders"] = math.log10(min(values)) if min(values) > 0 else None
            return "vacuous", detail
        return "holds", detail

    def as_json(self) -> dict[str, Any]:
        return {
            "text": self.describe(),
            "quantity": self.quantity,
            "lower": self.lower,
            "upper": self.upper,
            "vacuous_above": self.vacuous_above,
            "one_sided": self.one_sided,
        }


@dataclass(frozen=True)
class Predicate:
    """A stated predicate on the measured values: ``test(measured) -> bool``.

    Use it where no single interval says the claim (e.g. "the count at depth p is below
    the count at depth p - 1").  ``text`` is shown to the reader and must say what
    ``test`` checks; ``loose=True`` marks a check its author knows to be weak.
    """

    text: str
    test: Callable[[Mapping[str, Any]], Any]
    loose: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or not self.text.strip():
            raise ValueError("text must be a non-empty string")
        if not callable(self.test):
            raise TypeError("test must be callable")

    one_sided = False

    def describe(self) -> str:
        return self.text

    def evaluate(self, measured: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        return ("holds" if bool(self.test(measured)) else "fails"), {}

    def as_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "quantity": None,
            "lower": None,
            "upper": None,
            "vacuous_above": None,
            "one_sided": False,
        }


# --------------------------------------------------------------------------------------
# measured values


def _as_number(value: Any, name: str) -> float | int:
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()  # numpy / torch scalars
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, (Real, Fraction)):
        return float(value)
    raise TypeError(
        f"measured[{name!r}] must be a number or a list of numbers, got {type(value).__name__}"
    )


def _as_list(value: Any) -> list[float]:
    if isinstance(value, list):
        return [float(v) for v in value]
    return [float(value)]


def _normalise_measured(measured: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(measured, Mapping):
        raise TypeError(f"measured must be a mapping of names to numbers, got {type(measured).__name__}")
    out: dict[str, Any] = {}
    for name, value in measured.items():
        if not isinstance(name, str) or not name:
            raise TypeError("measured names must be non-empty strings")
        if hasattr(value, "tolist") and getattr(value, "ndim", 0) > 0:
            value = value.tolist()
        if isinstance(value, (list, tuple)):
            flat = []
            for v in value:
                if isinstance(v, (list, tuple)):
                    raise TypeError(f"measured[{name!r}] must be a flat list of numbers")
                flat.append(_as_number(v, name))
            if not flat:
                raise ValueError(f"measured[{name!r}] is an empty list")
            out[name] = flat
        else:
            out[name] = _as_number(value, name)
    return out


def format_value(value: Any) -> str:
    """A measured number (or list) as the table shows it: 3 significant digits."""

    def one(v: float | int) -> str:
        if isinstance(v, int):
            return str(v)
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "∞" if v > 0 else "-∞"
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            mant, exp = f"{v:.2e}".split("e")
            return f"{mant}e{int(exp)}"
        if abs(v) >= 1e3:
            return f"{v:.0f}"
        return f"{v:.3g}"

    if isinstance(value, list):
        if len(value) <= 6:
            return ", ".join(one(v) for v in value)
        return f"{one(min(value))} to {one(max(value))} ({len(value)} values)"
    return one(value)


def _json_number(v: float | int) -> float | int | str:
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


# --------------------------------------------------------------------------------------
# claims and the ledger


@dataclass(frozen=True)
class Claim:
    """One recorded claim and its computed verdict (see :meth:`Ledger.record`)."""

    id: str
    chapter: str
    claim: str
    source: tuple[str, ...]
    refs: tuple[str, ...]
    measured: dict[str, Any]
    criterion: Interval | Predicate | None
    verdict: str
    expected: str
    loose: bool
    note: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    consistency: bool = False

    def as_json(self) -> dict[str, Any]:
        measured = {
            k: [_json_number(x) for x in v] if isinstance(v, list) else _json_number(v)
            for k, v in self.measured.items()
        }
        criterion = (
            self.criterion.as_json()
            if self.criterion is not None
            else {"text": self.note, "quantity": None, "lower": None, "upper": None,
                  "vacuous_above": None, "one_sided": False}
        )
        out = {
            "id": self.id,
            "chapter": self.chapter,
            "claim": self.claim,
            "source": list(self.source),
            "refs": list(self.refs),
            "measured": measured,
            "criterion": criterion,
            "verdict": self.verdict,
            "expected": self.expected,
            "loose": self.loose,
            "consistency": self.consistency,
            "note": self.note,
        }
        if self.detail.get("vacuous_orders") is not None:
            out["vacuous_orders"] = round(self.detail["vacuous_orders"], 2)
        return out


def _check_source(source: Any) -> tuple[str, ...]:
    if isinstance(source, str):
        if source.strip().lower() == "ours":
            return ()
        source = [source]
    if not isinstance(source, (list, tuple)):
        raise TypeError("source must be 'ours' or a list of bibtex keys")
    keys = []
    for key in source:
        if not isinstance(key, str) or not key or any(c.isspace() for c in key):
            raise ValueError(f"source must hold bibtex keys, got {key!r}")
        if "papers.md" in key:
            raise ValueError("source must be a citable paper or 'ours', not papers.md")
        keys.append(key)
    return tuple(keys)


def _check_refs(refs: Any) -> tuple[str, ...]:
    if isinstance(refs, str):
        refs = [refs]
    if not isinstance(refs, (list, tuple)) or not all(isinstance(r, str) and r for r in refs):
        raise TypeError("refs must be a list of labels (theorem, lemma, figure)")
    return tuple(refs)


class Ledger:
    """The claims of one chapter, in the order they are recorded.

    ``chapter`` is the chapter's file name without ``.md`` (``"floating-point"``); every
    claim id starts with the chapter's prefix from :data:`CHAPTER_PREFIXES` (or
    ``prefix``) and a hyphen, and is unique in the chapter.
    """

    def __init__(self, chapter: str, prefix: str | None = None) -> None:
        if not isinstance(chapter, str) or not chapter:
            raise ValueError("chapter must be a non-empty string")
        if prefix is None:
            if chapter not in CHAPTER_PREFIXES:
                raise ValueError(
                    f"chapter {chapter!r} has no claim prefix; pass prefix= or use one of "
                    f"{sorted(CHAPTER_PREFIXES)}"
                )
            prefix = CHAPTER_PREFIXES[chapter]
        self.chapter = chapter
        self.prefix = prefix
        self.claims: dict[str, Claim] = {}

    def __len__(self) -> int:
        return len(self.claims)

    def __iter__(self):
        return iter(self.claims.values())

    def __getitem__(self, claim_id: str) -> Claim:
        return self.claims[claim_id]

    def _check_id(self, claim_id: Any) -> str:
        if not isinstance(claim_id, str):
            raise TypeError("claim_id must be a string")
        if not claim_id.startswith(f"{self.prefix}-") or len(claim_id) <= len(self.prefix) + 1:
            raise ValueError(f"claim_id {claim_id!r} must start with {self.prefix + '-'!r}")
        if not set(claim_id) <= _ID_CHARS:
            raise ValueError(f"claim_id {claim_id!r} may hold only a-z, 0-9 and '-'")
        if claim_id in self.claims:
            raise ValueError(f"claim_id {claim_id!r} is recorded twice")
        return claim_id

    def record(
        self,
        claim_id: str,
        *,
        claim: str,
        source: str | Sequence[str],
        measured: Mapping[str, Any],
        criterion: Interval | Predicate,
        expect: str,
        refs: str | Sequence[str] = (),
        note: str = "",
        consistency: bool = False,
    ) -> Claim:
        """Record a claim, compute its verdict and check it against ``expect``.

        ``source``: ``"ours"`` or a list of bibtex keys.  ``measured``: named numbers or
        flat lists of numbers (numpy/torch scalars and arrays are converted).  ``refs``:
        labels of the theorem/lemma/figure blocks the claim rests on.  ``note``: a short
        remark shown with the verdict (scope, what the check cannot see).
        ``consistency=True`` marks a claim that rests on a proof, which the computation can
        only check for consistency (the table shows it beside the verdict).  Raises
        :class:`VerdictMismatch` when the computed verdict is not ``expect``.
        """
        if expect not in VERDICTS or expect == "not testable":
            raise ValueError(
                f"expect must be one of 'holds', 'fails', 'vacuous', got {expect!r} "
                "(use Ledger.not_testable for claims that cannot be tested)"
            )
        if not isinstance(criterion, (Interval, Predicate)):
            raise TypeError("criterion must be an Interval or a Predicate")
        if expect == "vacuous" and not (
            isinstance(criterion, Interval) and criterion.vacuous_above is not None
        ):
            raise ValueError("expect='vacuous' needs an Interval with vacuous_above")
        if not isinstance(note, str):
            raise TypeError("note must be a string")
        if not isinstance(consistency, bool):
            raise TypeError("consistency must be a bool")
        values = _normalise_measured(measured)
        verdict, detail = criterion.evaluate(values)
        entry = self._entry(
            claim_id, claim, source, refs, values, criterion=criterion, verdict=verdict,
            expected=expect, loose=criterion.loose, note=note, detail=detail,
            consistency=consistency,
        )
        if verdict != expect and strict():
            raise VerdictMismatch(_mismatch_message(entry))
        self.claims[entry.id] = entry
        return entry

    def not_testable(
        self,
        claim_id: str,
        *,
        claim: str,
        source: str | Sequence[str],
        why: str,
        measured: Mapping[str, Any] | None = None,
        refs: str | Sequence[str] = (),
    ) -> Claim:
        """Record a claim the book cannot test, with the reason (``why``)."""
        if not isinstance(why, str) or not why.strip():
            raise ValueError("why must say why the claim cannot be tested")
        entry = self._entry(
            claim_id, claim, source, refs, _normalise_measured(measured or {}),
            criterion=None, verdict="not testable", expected="not testable", loose=False,
            note=why,
        )
        self.claims[entry.id] = entry
        return entry

    def _entry(
        self, claim_id: Any, claim: Any, source: Any, refs: Any, measured: dict[str, Any],
        **fields: Any,
    ) -> Claim:
        """A :class:`Claim` of this chapter after the checks shared by every kind."""
        claim_id = self._check_id(claim_id)
        if not isinstance(claim, str) or not claim.strip():
            raise ValueError("claim must be a non-empty string")
        return Claim(
            id=claim_id, chapter=self.chapter, claim=claim, source=_check_source(source),
            refs=_check_refs(refs), measured=measured, **fields,
        )

    # ---------------------------------------------------------------- output
    def as_json(self) -> list[dict[str, Any]]:
        return [c.as_json() for c in self.claims.values()]

    def markdown(self) -> str:
        """The "What we verified" table (MyST Markdown)."""
        return claims_table(self.as_json())

    def table(self, publish: bool = True, paper: Any = "auto") -> "LedgerTable":
        """Render the table; with ``publish`` also glue the ledger for the book build.

        ``paper``: the paper-scale record (a record dict, a path, ``None`` for none, or
        ``"auto"``: ``results/paper/claims.json`` of the repository around the working
        directory).  When it holds this chapter, the table gains a column with each claim's
        verdict at paper scale, and where it differs, the paper run's measured values.
        """
        if not self.claims:
            raise ValueError("the ledger is empty: record claims before rendering the table")
        table = LedgerTable(self.chapter, self.as_json(), paper_claims(paper, self.chapter))
        if publish:
            from myst_nb import glue

            glue(GLUE_KEY, _LedgerJSON(table.as_json()), display=False)
        return table


class LedgerTable:
    """Displays as the Markdown table; its JSON form is the chapter's ledger."""

    def __init__(self, chapter: str, claims: list[dict[str, Any]],
                 paper: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.chapter = chapter
        self.claims = claims
        self.paper = paper

    def _repr_markdown_(self) -> str:
        return claims_table(self.claims, self.paper)

    def as_json(self) -> dict[str, Any]:
        return {"chapter": self.chapter, "claims": self.claims}

    def __repr__(self) -> str:
        counts = verdict_counts(self.claims)
        return f"<ledger {self.chapter}: " + ", ".join(f"{v} {n}" for v, n in counts.items()) + ">"


class _LedgerJSON:
    """Glued as text/plain whose text is the ledger's JSON (nbformat stores any non-JSON
    MIME type as a string, and glue prefixes every MIME type)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.text = json.dumps(data, allow_nan=False, sort_keys=False)

    def __repr__(self) -> str:
        return self.text


def _mismatch_message(c: Claim) -> str:
    crit = c.criterion
    parts = [f"claim {c.id!r}: computed verdict {c.verdict!r}, expected {c.expected!r}"]
    if isinstance(crit, Interval):
        parts.append(
            f"{crit.quantity} = {format_value(c.measured[crit.quantity])} against "
            f"[{crit.lower}, {crit.upper}]"
            + (f" (vacuous above {crit.vacuous_above})" if crit.vacuous_above is not None else "")
        )
        if c.detail.get("outside"):
            parts.append(f"outside: {format_value(list(c.detail['outside']))}")
    elif isinstance(crit, Predicate):
        parts.append(f"predicate: {crit.text}; measured {c.measured}")
    return "; ".join(parts)


# --------------------------------------------------------------------------------------
# rendering (MyST Markdown)


def _cell(text: str) -> str:
    """One table cell: a line, with its pipes escaped (a LaTeX norm ``\\|`` becomes
    ``\\Vert``, which survives the table parser)."""
    text = " ".join(str(text).split()).replace("\\|", "\\Vert ")
    return text.replace("|", "\\|")


def render_source(source: Sequence[str], refs: Sequence[str] = ()) -> str:
    """Citations of the bibtex keys (or "ours"), then the referenced blocks."""
    parts = ["{cite:p}`" + ",".join(source) + "`"] if source else ["ours"]
    parts += ["{prf:ref}`" + r + "`" for r in refs]
    return "; ".join(parts)


def render_verdict(entry: Mapping[str, Any]) -> str:
    verdict = entry["verdict"]
    text = f"**{verdict}**"
    if verdict == "vacuous" and entry.get("vacuous_orders") is not None:
        text += f" ({entry['vacuous_orders']:.1f} orders)"
    if entry.get("consistency"):
        text += " (consistency check)"
    if entry.get("loose"):
        text += " (loose)"
    return text


def render_measured(measured: Mapping[str, Any]) -> str:
    def value(v: Any) -> Any:
        if isinstance(v, list):
            return [float(x) if isinstance(x, str) else x for x in v]
        return float(v) if isinstance(v, str) else v

    return "; ".join(f"{k} = {format_value(value(v))}" for k, v in measured.items()) or "none"


RECORD_PATH = Path("results") / "paper" / "claims.json"


def paper_claims(paper: Any, chapter: str) -> dict[str, dict[str, Any]] | None:
    """This chapter's claims in the paper-scale record, by id (None without a record of it).

    ``paper``: a record dict, a path to one, ``None``, or ``"auto"`` (``results/paper/
    claims.json`` in the working directory or the nearest parent that has one)."""
    if paper is None:
        return None
    if isinstance(paper, str) and paper == "auto":
        here = Path.cwd().resolve()
        found = [d / RECORD_PATH for d in (here, *here.parents) if (d / RECORD_PATH).is_file()]
        if not found:
            return None
        paper = found[0]
    if isinstance(paper, (str, Path)):
        paper = json.loads(Path(paper).read_text(encoding="utf-8"))
    if not isinstance(paper, Mapping) or not isinstance(paper.get("claims"), list):
        raise TypeError("paper must be a record with a 'claims' list, a path, None or 'auto'")
    if chapter not in paper.get("chapters", {}):
        return None
    return {c["id"]: dict(c) for c in paper["claims"] if c.get("chapter") == chapter}


def _paper_cell(c: Mapping[str, Any], paper: Mapping[str, Mapping[str, Any]]) -> str:
    theirs = paper.get(c["id"])
    if theirs is None:
        return "not run at paper scale"
    if theirs["verdict"] == c["verdict"]:
        return theirs["verdict"]
    return (f"**{theirs['verdict']}** (differs; measured there: "
            f"{render_measured(theirs['measured'])})")


def claims_table(claims: Iterable[Mapping[str, Any]],
                 paper: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """Markdown table: claim (id), source, measured, criterion, verdict; with ``paper``
    (claims of the paper-scale record by id) a last column, the verdict at paper scale."""
    rows = [
        "| claim | source | measured | criterion | verdict |",
        "|---|---|---|---|---|",
    ]
    if paper is not None:
        rows = ["| claim | source | measured | criterion | verdict | at paper scale |",
                "|---|---|---|---|---|---|"]
    for c in claims:
        criterion = c["criterion"]["text"]
        note = c.get("note") or ""
        if c["verdict"] != "not testable" and note:
            criterion = f"{criterion} ({note})"
        rows.append(
            "| "
            + " | ".join(
                _cell(x)
                for x in (
                    f"{c['claim']} `{c['id']}`",
                    render_source(c["source"], c.get("refs", ())),
                    render_measured(c["measured"]),
                    criterion,
                    render_verdict(c),
                    *((_paper_cell(c, paper),) if paper is not None else ()),
                )
            )
            + " |"
        )
    return "\n".join(rows) + "\n" + (_differences(claims, paper) if paper is not None else "")


def _differences(claims: Iterable[Mapping[str, Any]],
                 paper: Mapping[str, Mapping[str, Any]]) -> str:
    """A paragraph naming each claim whose verdict differs at paper scale, with both
    measurements (a finding about the claim's scale, stated in the chapter)."""
    items = []
    for c in claims:
        theirs = paper.get(c["id"])
        if theirs is not None and theirs["verdict"] != c["verdict"]:
            items.append(f"- `{c['id']}` {c['verdict']} here ({render_measured(c['measured'])}) "
                         f"and {theirs['verdict']} at paper scale "
                         f"({render_measured(theirs['measured'])}).")
    if not items:
        return ""
    return ("\n**Verdicts that differ at paper scale.** These claims, as worded, hold at one "
            "scale and not at the other; the text above describes this build's scale:\n\n"
            + "\n".join(items) + "\n")


def verdict_counts(claims: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    counts = {v: 0 for v in VERDICTS}
    for c in claims:
        counts[c["verdict"]] += 1
    return counts


# --------------------------------------------------------------------------------------
# reading ledgers back (executed notebooks, glue files, claims.json)


def ledger_from_glue(glue_data: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ledger in myst-nb's glue data of one page (``<page>.glue.json``), or None."""
    entry = glue_data.get(GLUE_KEY)
    if entry is None:
        return None
    data = entry.get("data", entry)
    for mime, value in data.items():
        if mime.endswith(TEXT_MIME):
            text = "".join(value) if isinstance(value, list) else value
            return json.loads(text)
    raise ValueError(f"glue entry {GLUE_KEY!r} carries no {TEXT_MIME} data")


def ledger_from_notebook(notebook: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ledger glued in an executed notebook (nbformat v4 dict), or None."""
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []) or []:
            meta = output.get("metadata", {}).get("scrapbook", {})
            if meta.get("name") == GLUE_KEY:
                return ledger_from_glue({GLUE_KEY: output})
    return None


def check_unique(claims: Iterable[Mapping[str, Any]]) -> None:
    """Raise ValueError if a claim id occurs twice in the book."""
    seen: dict[str, str] = {}
    for c in claims:
        if c["id"] in seen:
            raise ValueError(
                f"claim id {c['id']!r} is recorded in {seen[c['id']]!r} and {c['chapter']!r}"
            )
        seen[c["id"]] = c["chapter"]
