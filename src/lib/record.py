"""The paper-scale record: run chapters at a profile and commit their ledger.

``python -m lib.record`` executes every chapter of the book (or the chapters named on the
command line) at ``BOOK_PROFILE=paper`` in a kernel of the current environment, reads each
chapter's ledger back (:func:`lib.claims.ledger_from_notebook`) and writes
``results/paper/claims.json`` with its provenance: for the record its commit and date, and
for each chapter the commit, date, hardware, run time and status.  Chapters not run keep
their previous entries, so the record can be filled one chapter at a time.

The chapters run with ``BOOK_CLAIMS_STRICT=0``: a verdict that differs from the one the
chapter expects is recorded (the report flags it) instead of stopping the chapter.  A
chapter that fails for another reason (an ``assert``, an error) is recorded with status
``error`` and the claims it recorded before; the command then exits with status 1.

The reproduction report of the book (:mod:`lib.report`) shows this record's verdicts beside
the build's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from lib import claims as _claims
from lib.bookbuild import sweep_share, toc_files
from lib.config import PROFILE_ENV, PROFILES, PROGRESS_ENV
from lib.report import BOOK_TITLE, PAPER_RECORD, git_commit, hardware, load_record, now

#: Chapters in reading order (the pages of ``_toc.yml`` that are notebooks).
DEFAULT_TOC = Path("_toc.yml")


def toc_chapters(root: Path | str = ".") -> list[Path]:
    """The notebook chapters listed in ``_toc.yml`` under ``root``, in reading order."""
    return [path for path in toc_files(Path(root), str(DEFAULT_TOC))
            if path.suffix == ".md" and _is_notebook(path)]


def _is_notebook(path: Path) -> bool:
    text = path.read_text(encoding="utf-8")
    end = text.find("\n---", 3)
    return text.startswith("---") and "kernelspec:" in text[3:end]


@contextmanager
def _environ(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _kernel_manager() -> Any:
    """A kernel manager that starts ipykernel in *this* Python (not a user kernelspec)."""
    import ipykernel.kernelspec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    class CurrentEnv(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> Any:
            return self.kernel_spec_class(
                resource_dir=ipykernel.kernelspec.RESOURCES,
                **ipykernel.kernelspec.get_kernel_dict(),
            )

    return KernelManager(kernel_name="python3", kernel_spec_manager=CurrentEnv())


def run_chapter(path: Path | str, profile: str, timeout: int = 7200,
                progress: bool = False) -> dict[str, Any]:
    """Execute one chapter at ``profile``; return its ledger, run time, status and error.

    With ``progress`` each executed code cell is logged (index, seconds since the start).
    """
    import jupytext
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"chapter {path} does not exist")
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    notebook = jupytext.read(path, fmt="md:myst")
    status, error = "ok", ""
    start = time.perf_counter()
    with _environ(**{PROFILE_ENV: profile, PROGRESS_ENV: "0", _claims.STRICT_ENV: "0"}):
        km = _kernel_manager()
        client = NotebookClient(
            notebook, km=km, timeout=timeout, allow_errors=False,
            resources={"metadata": {"path": str(path.parent.resolve())}},
            on_cell_executed=_progress(path.stem, start) if progress else None,
        )
        try:
            client.execute()
        except CellExecutionError as exc:
            status, error = "error", _error_tail(str(exc))
        finally:
            if km.has_kernel:
                km.shutdown_kernel(now=False)
    runtime = time.perf_counter() - start
    ledger = _claims.ledger_from_notebook(notebook)
    if ledger is None and status == "ok":
        status, error = "no ledger", "the chapter published no ledger (no ledger.table() cell)"
    return {
        "chapter": path.stem,
        "ledger": ledger,
        "runtime_s": round(runtime, 1),
        "status": status,
        "error": error,
    }


def _error_tail(text: str, lines: int = 12) -> str:
    """The last ``lines`` lines of a cell's traceback, without terminal colours (the line
    that raised and the exception, not only the exception's name)."""
    import re

    plain = re.sub(r"\x1b\[[0-9;]*m", "", text).strip().splitlines()
    return "\n".join(plain[-lines:])[-2000:]


def _progress(name: str, start: float) -> Any:
    """An nbclient hook printing each executed code cell with the time since ``start``."""
    def hook(cell: Any, cell_index: int, **_: Any) -> None:
        if cell.get("cell_type") == "code":
            print(f"[lib.record] {name}: cell {cell_index} done at "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
    return hook


def _in_place(claims: Sequence[dict[str, Any]], new: Sequence[dict[str, Any]], done: set[str]) -> list[dict[str, Any]]:
    """``claims`` with the chapters in ``done`` replaced by the claims of ``new``, each chapter
    where it was (chapters new to the record at the end), so a re-run changes only its lines."""
    order = list(dict.fromkeys(c["chapter"] for c in claims))
    order += [ch for ch in dict.fromkeys(c["chapter"] for c in new) if ch not in order]
    by_chapter: dict[str, list[dict[str, Any]]] = {}
    for c in [c for c in claims if c["chapter"] not in done] + list(new):
        by_chapter.setdefault(c["chapter"], []).append(c)
    return [c for ch in order for c in by_chapter.get(ch, [])]


def merge(
    record: dict[str, Any] | None,
    runs: Sequence[dict[str, Any]],
    *,
    profile: str,
    commit: str,
    created: str,
    machine: str,
) -> dict[str, Any]:
    """The record with the chapters of ``runs`` replaced (claims and provenance), each where
    it was in the record."""
    if record is None:
        record = {"book": BOOK_TITLE, "profile": profile, "claims": [], "chapters": {}}
    if record.get("profile", profile) != profile:
        raise ValueError(f"the record is of profile {record['profile']!r}, not {profile!r}")
    done = {run["chapter"] for run in runs}
    chapters = dict(record.get("chapters", {}))
    new = []
    for run in runs:
        ledger = run["ledger"] or {"claims": []}
        new.extend(ledger["claims"])
        chapters[run["chapter"]] = {
            "commit": commit, "date": created, "hardware": machine,
            "runtime_s": run["runtime_s"], "status": run["status"], "error": run["error"],
            "claims": len(ledger["claims"]),
        }
    all_claims = _in_place(record.get("claims", []), new, done)
    _claims.check_unique(all_claims)
    return {
        "book": BOOK_TITLE,
        "profile": profile,
        "commit": commit,
        "created": created,
        "chapters": chapters,
        "claims": all_claims,
    }



def merge_records(record: dict[str, Any] | None, parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``record`` with the chapters of each of ``parts`` (records of some chapters, e.g. run
    one per process by ``--jobs``) replaced: their claims and their provenance as recorded."""
    if not parts:
        raise ValueError("parts must hold at least one record")
    profiles = {part.get("profile") for part in parts} | ({record["profile"]} if record else set())
    if len(profiles) != 1:
        raise ValueError(f"the records are of different profiles: {sorted(map(str, profiles))}")
    out = dict(record) if record else {"book": BOOK_TITLE, "profile": parts[0]["profile"],
                                       "claims": [], "chapters": {}}
    for part in parts:
        done = set(part.get("chapters", {}))
        out["claims"] = _in_place(out.get("claims", []),
                                  [c for c in part["claims"] if c["chapter"] in done], done)
        out["chapters"] = {**out.get("chapters", {}), **part["chapters"]}   # in place, new at the end
    newest = max(parts, key=lambda part: part.get("created", ""))
    if newest.get("created", "") >= out.get("created", ""):
        out["commit"], out["created"] = newest["commit"], newest["created"]
    _claims.check_unique(out["claims"])
    return out


def _write(out: Path, record: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1, allow_nan=False) + "\n", encoding="utf-8")


def _run_in_processes(chapters: Sequence[Path], args: Any, jobs: int, tmp: Path) -> list[int]:
    """Each chapter by ``python -m lib.record CHAPTER --out tmp/NAME.json`` in its own process,
    ``jobs`` at a time, each with one OpenMP/torch thread and its share of the cores for its
    sweeps (``bookbuild.sweep_share``); return their exit statuses."""
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           **sweep_share(max(min(jobs, len(chapters)), 1), args.profile)}

    def one(chapter: Path) -> int:
        cmd = [sys.executable, "-m", "lib.record", str(chapter), "--profile", args.profile,
               "--timeout", str(args.timeout), "--out", str(tmp / f"{chapter.stem}.json")]
        return subprocess.run(cmd, env=env, check=False).returncode

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(one, chapters))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lib.record", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("chapters", nargs="*", help="chapter files (default: every chapter)")
    parser.add_argument("--profile", default="paper", choices=PROFILES)
    parser.add_argument("--out", default=None, help=f"default: results/<profile>/claims.json")
    parser.add_argument("--timeout", type=int, default=7200, help="seconds per cell")
    parser.add_argument("--jobs", type=int, default=1,
                        help="chapters run at once, each in its own process with one thread")
    parser.add_argument("--merge", nargs="+", metavar="RECORD", default=None,
                        help="merge these records of some chapters into --out; run nothing")
    args = parser.parse_args(argv)
    root = Path.cwd()
    out = Path(args.out) if args.out else PAPER_RECORD.parent.parent / args.profile / "claims.json"
    if args.merge:
        merged = merge_records(load_record(out), [load_record(p) or {} for p in args.merge])
        _write(out, merged)
        print(f"[lib.record] merged {len(args.merge)} records into {out}: "
              f"{len(merged['claims'])} claims")
        return 0
    chapters = [Path(c) for c in args.chapters] or toc_chapters(root)
    if not chapters:
        parser.error("no chapters to run (run from the repository's root)")
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    if args.jobs > 1 and len(chapters) > 1:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            codes = _run_in_processes(chapters, args, args.jobs, Path(tmp))
            parts = [load_record(Path(tmp) / f"{c.stem}.json") for c in chapters]
            merged = merge_records(load_record(out), [p for p in parts if p])
        _write(out, merged)
        print(f"[lib.record] wrote {out}: {len(merged['claims'])} claims")
        return 0 if all(code == 0 for code in codes) else 1
    commit, machine = git_commit(root), hardware()
    runs = []
    for chapter in chapters:
        print(f"[lib.record] {chapter} at profile {args.profile} ...", flush=True)
        run = run_chapter(chapter, args.profile, timeout=args.timeout, progress=True)
        n = len(run["ledger"]["claims"]) if run["ledger"] else 0
        print(f"[lib.record] {chapter}: {run['status']}, {n} claims, {run['runtime_s']:.0f} s"
              + (f": {run['error']}" if run["error"] else ""), flush=True)
        runs.append(run)
    record = merge(load_record(out), runs, profile=args.profile, commit=commit, created=now(),
                   machine=machine)
    _write(out, record)
    differing = [c["id"] for c in record["claims"] if c.get("expected") not in (None, c["verdict"])]
    print(f"[lib.record] wrote {out}: {len(record['claims'])} claims"
          + (f"; verdicts that differ from the expected ones: {', '.join(differing)}"
             if differing else ""))
    # a page with code but no claims (the notation page) is recorded, not a failure
    return 0 if all(r["status"] in ("ok", "no ledger") for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
