"""The book's claims in one place: ``claims.json`` and the reproduction report.

Each chapter publishes its ledger (:meth:`lib.claims.Ledger.table` glues it under
:data:`lib.claims.GLUE_KEY`; myst-nb writes every page's glue data to
``_build/jupyter_execute/<page>.glue.json``).  This module reads those ledgers back and

* writes the whole ledger of the book, ``claims.json`` (:func:`book_ledger`), next to the
  HTML (``_build/html/claims.json``) and as a download of the report page;
* renders the back-matter page "Reproduction report" (:func:`report_markdown`): every
  claim grouped by source, counts per verdict, loose checks, the paper-scale verdicts from
  the committed record ``results/paper/claims.json`` side by side with this build's (see
  :mod:`lib.record`), per-chapter execution times, package versions, hardware, profile and
  the library's cache key.

As a Sphinx extension (``lib.report`` in ``_config.yml``) it makes the report page, whose
source holds the line :data:`MARKER`, be read on every build and *after* every chapter
(the chapters are executed while they are read), and replaces the marker with the report.
Reading in parallel (``-j``) is not supported for that page: the book is read serially.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata as metadata
import json
import os
import platform
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lib import claims as _claims
from lib.config import get_profile

REPORT_DOC = "book/reproduction"
MARKER = "% claims-report"
PAPER_RECORD = Path("results") / "paper" / "claims.json"
CLAIMS_DIRNAME = "claims"
BOOK_TITLE = "Floating Point and the Limits of Training"

#: Distributions whose versions the report lists.
REPORTED_DISTRIBUTIONS = (
    "torch", "numpy", "scipy", "mpmath", "scikit-learn", "matplotlib", "pandas",
    "jupyter-book", "myst-nb", "sphinx", "ipykernel",
)


# --------------------------------------------------------------------------------------
# provenance


def git_commit(root: Path | str = ".") -> str:
    """Short commit of ``root``'s repository, with ``+dirty`` for uncommitted changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True,
            text=True, check=True, timeout=20,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
            capture_output=True, text=True, check=True, timeout=20,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def hardware() -> str:
    """CPU model, core count and memory, and the GPU torch sees (if any)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} cores"
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        text += f", {pages / 2**30:.0f} GiB memory"
    except (ValueError, OSError, AttributeError):
        pass
    try:
        import torch

        if torch.cuda.is_available():
            text += f"; GPU {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return text


def package_versions(names: Sequence[str] = REPORTED_DISTRIBUTIONS) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


# --------------------------------------------------------------------------------------
# collecting ledgers


def read_glue_ledgers(glue_dir: Path | str, pages: Iterable[str]) -> list[dict[str, Any]]:
    """The ledgers of ``pages`` (doc names such as ``book/sawtooth``) found in myst-nb's
    glue files under ``glue_dir``; pages without a ledger are skipped."""
    glue_dir = Path(glue_dir)
    ledgers = []
    for page in pages:
        path = glue_dir / f"{page}.glue.json"
        if not path.is_file():
            continue
        ledger = _claims.ledger_from_glue(json.loads(path.read_text(encoding="utf-8")))
        if ledger is not None:
            ledgers.append(ledger)
    return ledgers


def book_ledger(
    ledgers: Sequence[Mapping[str, Any]],
    *,
    profile: str,
    commit: str,
    created: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """``{"book", "profile", "commit", "created", "claims": [...]}`` from chapter ledgers;
    raises ValueError when a claim id occurs twice."""
    all_claims = [c for ledger in ledgers for c in ledger["claims"]]
    _claims.check_unique(all_claims)
    out = {
        "book": BOOK_TITLE,
        "profile": profile,
        "commit": commit,
        "created": created or now(),
    }
    out.update(extra)
    out["claims"] = all_claims
    return out


def load_record(path: Path | str) -> dict[str, Any] | None:
    """A committed record (``results/paper/claims.json``), or None if there is none."""
    path = Path(path)
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or "claims" not in data:
        raise ValueError(f"{path} is not a claims record (no 'claims' list)")
    return data


# --------------------------------------------------------------------------------------
# the report


def _cell(text: Any) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(x) for x in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def compare(
    book: Mapping[str, Any], paper: Mapping[str, Any] | None
) -> dict[str, list[str]]:
    """Claim ids whose verdict differs between this build and the paper record, ids never
    run at paper scale, and ids of the record that this build no longer has."""
    ours = {c["id"]: c for c in book["claims"]}
    if paper is None:
        return {"differs": [], "never_paper": sorted(ours), "paper_only": []}
    theirs = {c["id"]: c for c in paper["claims"]}
    return {
        "differs": [i for i in ours if i in theirs and theirs[i]["verdict"] != ours[i]["verdict"]],
        "never_paper": [i for i in ours if i not in theirs],
        "paper_only": [i for i in theirs if i not in ours],
    }


def _verdict(c: Mapping[str, Any] | None) -> str:
    if c is None:
        return "—"
    text = c["verdict"]
    if c.get("expected") and c["expected"] != c["verdict"]:
        text += f" (expected {c['expected']})"
    return text


def _summary(book: Mapping[str, Any], paper: Mapping[str, Any] | None, claims_link: str) -> str:
    allc = list(book["claims"])
    counts = _claims.verdict_counts(allc)
    loose = sum(1 for c in allc if c.get("loose"))
    consistency = sum(1 for c in allc if c.get("consistency"))
    out = [
        f"This build (profile `{book.get('profile', '?')}`, commit `{book.get('commit', '?')}`, "
        f"{book.get('created', '?')}) records **{len(allc)} claims** in "
        f"{len({c['chapter'] for c in allc})} chapters: "
        + ", ".join(f"{n} {v}" for v, n in counts.items())
        + f". {loose} checks are loose (a window wider than a factor "
        f"{_claims.LOOSE_FACTOR:g}, or a weak predicate); {consistency} claims rest on a proof "
        "that the computation only checks for consistency."
        + (f" The whole ledger: {claims_link}." if claims_link else "")
        + "\n"
    ]
    if paper:
        comparison = compare(book, paper)
        out.append(
            f"The paper-scale record (`{PAPER_RECORD.as_posix()}`, commit "
            f"`{paper.get('commit', '?')}`, {paper.get('created', '?')}) holds "
            f"{len(paper['claims'])} claims; {len(comparison['differs'])} verdicts differ from "
            f"this build's, {len(comparison['never_paper'])} claims of this build have never run "
            "at paper scale.\n"
        )
    else:
        out.append(
            f"No paper-scale record (`{PAPER_RECORD.as_posix()}`) exists yet: no claim has "
            "run at paper scale.\n"
        )
    return "\n".join(out)


def _flags(c: Mapping[str, Any], paper: Mapping[str, Any] | None, differs: set[str]) -> str:
    flags = []
    if c.get("loose"):
        flags.append("loose")
    if c.get("consistency"):
        flags.append("consistency check")
    if c["id"] in differs:
        flags.append("**differs at paper scale**")
    elif paper is not None and c["id"] not in {p["id"] for p in paper["claims"]}:
        flags.append("never run at paper scale")
    return ", ".join(flags)


def _by_source(book: Mapping[str, Any], paper: Mapping[str, Any] | None) -> str:
    profile = book.get("profile", "?")
    paper_by_id = {c["id"]: c for c in paper["claims"]} if paper else {}
    differs = set(compare(book, paper)["differs"])
    out = [
        "## Claims by source\n",
        "Each claim under the first work it cites (the book's own claims under *ours*); the "
        "chapter's table has the measured values and the criterion.\n",
    ]
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for c in book["claims"]:
        groups.setdefault(c["source"][0] if c["source"] else "", []).append(c)
    for key in sorted(k for k in groups if k) + ([""] if "" in groups else []):
        title = "{cite:t}`" + key + "`" if key else "ours"
        out.append(f"**{title}** ({len(groups[key])} claims)\n")
        rows = [
            [f"`{c['id']}`", c["claim"], "{doc}`" + c["chapter"] + "`", _verdict(c),
             _verdict(paper_by_id.get(c["id"])), _flags(c, paper, differs)]
            for c in groups[key]
        ]
        out.append(_table(
            ["id", "claim", "chapter", f"verdict ({profile})", "verdict (paper)", "flags"], rows
        ))
    return "\n".join(out)


def _loose_section(book: Mapping[str, Any]) -> str:
    loose = [c for c in book["claims"] if c.get("loose")]
    if not loose:
        return "## Loose checks\n\nNone.\n"
    return "\n".join([
        "## Loose checks\n",
        "These criteria cannot separate the claim from a result a few times off; they are "
        "listed so that a weak check is visible.\n",
        _table(["id", "criterion", "measured"],
               [[f"`{c['id']}`", c["criterion"]["text"], _claims.render_measured(c["measured"])]
                for c in loose]),
    ])


def _paper_section(book: Mapping[str, Any], paper: Mapping[str, Any] | None) -> str:
    out = ["## Quick and paper scale\n"]
    if paper is None:
        return "\n".join(out + ["No paper-scale record yet.\n"])
    comparison = compare(book, paper)
    ours = {c["id"]: c for c in book["claims"]}
    theirs = {c["id"]: c for c in paper["claims"]}
    if comparison["differs"]:
        out.append(_table(
            ["id", f"verdict ({book.get('profile', '?')})", "verdict (paper)"],
            [[f"`{i}`", _verdict(ours[i]), _verdict(theirs[i])] for i in comparison["differs"]],
        ))
    else:
        out.append("No verdict differs between this build and the paper record.\n")
    if comparison["never_paper"]:
        out.append("Never run at paper scale: "
                   + ", ".join(f"`{i}`" for i in comparison["never_paper"]) + ".\n")
    if comparison["paper_only"]:
        out.append("In the paper record but no longer in the book: "
                   + ", ".join(f"`{i}`" for i in comparison["paper_only"]) + ".\n")
    chapters = paper.get("chapters", {})
    if chapters:
        out.append("The paper record's chapters:\n")
        out.append(_table(
            ["chapter", "run time (s)", "status", "commit", "date", "hardware"],
            [[name, f"{info.get('runtime_s', float('nan')):.0f}", info.get("status", "?"),
              f"`{info.get('commit', '?')}`", info.get("date", "?"), info.get("hardware", "?")]
             for name, info in chapters.items()],
        ))
    return "\n".join(out)


def _execution_section(exec_data: Mapping[str, Mapping[str, Any]] | None) -> str:
    if not exec_data:
        return "## Execution\n\nNo execution data.\n"
    rows = [
        ["{doc}`" + page.rsplit("/", 1)[-1] + "`",
         "—" if data.get("runtime") is None else f"{data['runtime']:.1f}",
         data.get("method", "?"), "yes" if data.get("succeeded") else "no"]
        for page, data in exec_data.items()
    ]
    return "\n".join([
        "## Execution\n",
        "Per chapter, as myst-nb reports it for this build (a cached chapter shows the time "
        "of the run that filled the cache):\n",
        _table(["chapter", "execution time (s)", "method", "succeeded"], rows),
    ])


def report_markdown(
    book: Mapping[str, Any],
    *,
    paper: Mapping[str, Any] | None = None,
    exec_data: Mapping[str, Mapping[str, Any]] | None = None,
    versions: Mapping[str, str] | None = None,
    machine: str = "",
    lib_key: str = "",
    claims_link: str = "",
) -> str:
    """The reproduction report as MyST Markdown (see the module docstring)."""
    env_rows = [["profile", f"`{book.get('profile', '?')}`"],
                ["commit", f"`{book.get('commit', '?')}`"]]
    if lib_key:
        env_rows.append(["`lib` cache key", f"`{lib_key}`"])
    if machine:
        env_rows.append(["hardware", machine])
    env_rows += [[name, version] for name, version in (versions or {}).items()]
    return "\n".join([
        _summary(book, paper, claims_link),
        _by_source(book, paper),
        _loose_section(book),
        _paper_section(book, paper),
        _execution_section(exec_data),
        "## Environment\n",
        _table(["what", "value"], env_rows),
    ])


# --------------------------------------------------------------------------------------
# Sphinx extension


def _chapter_pages(env: Any) -> list[str]:
    return sorted(d for d in env.found_docs if d != REPORT_DOC)


def _exec_data(env: Any, pages: Sequence[str]) -> dict[str, dict[str, Any]]:
    from myst_nb.sphinx_ import NbMetadataCollector

    out = {}
    for page in pages:
        data = NbMetadataCollector.get_exec_data(env, page)
        if data:
            out[page] = dict(data)
    return out


def _build_ledger(app: Any) -> dict[str, Any]:
    from lib import bookbuild

    glue_dir = Path(app.outdir).parent / "jupyter_execute"
    ledgers = read_glue_ledgers(glue_dir, _chapter_pages(app.env))
    return book_ledger(
        ledgers,
        profile=get_profile(),
        commit=git_commit(app.srcdir),
        lib_key=bookbuild.library_key(),
    )


def _before_read(app: Any, env: Any, docnames: list[str]) -> None:
    if REPORT_DOC in env.found_docs:
        if REPORT_DOC in docnames:
            docnames.remove(REPORT_DOC)
        docnames.append(REPORT_DOC)  # read on every build, after every chapter


def _source_read(app: Any, docname: str, source: list[str]) -> None:
    if docname != REPORT_DOC or MARKER not in source[0]:
        return
    from lib import bookbuild

    book = _build_ledger(app)
    claims_dir = Path(app.outdir).parent / CLAIMS_DIRNAME
    claims_dir.mkdir(parents=True, exist_ok=True)
    path = claims_dir / "claims.json"
    path.write_text(json.dumps(book, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    app.env.lib_report_claims = str(path)
    rel = os.path.relpath(path, app.srcdir).replace(os.sep, "/")
    text = report_markdown(
        book,
        paper=load_record(Path(app.srcdir) / PAPER_RECORD),
        exec_data=_exec_data(app.env, _chapter_pages(app.env)),
        versions=package_versions(),
        machine=hardware(),
        lib_key=bookbuild.library_key(),
        claims_link="{download}`claims.json </" + rel + ">`",
    )
    source[0] = source[0].replace(MARKER, text)


def _copy_claims(app: Any, exception: Exception | None) -> None:
    path = getattr(app.env, "lib_report_claims", None) if app.env else None
    if exception is None and path and Path(path).is_file() and app.builder.format == "html":
        shutil.copyfile(path, Path(app.outdir) / "claims.json")


def setup(app: Any) -> dict[str, Any]:
    app.connect("env-before-read-docs", _before_read)
    app.connect("source-read", _source_read)
    app.connect("build-finished", _copy_claims)
    return {"version": "0.1", "parallel_read_safe": False, "parallel_write_safe": True}
