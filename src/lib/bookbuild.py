"""Sphinx extension: never serve notebook outputs computed with another ``lib``.

jupyter-cache (behind ``execute_notebooks: cache``) keys a notebook on its code cells
only, so an edit to ``src/lib/`` would otherwise leave stale outputs in the book.  This
extension computes a *library key* from

* the source of every ``.py`` file of the installed ``lib`` package,
* the run profile (``BOOK_PROFILE``) and
* the Python version and the versions of the numerical packages,

and points myst-nb at the cache folder ``_build/.jupyter_cache/<profile>-<key>``.  A
changed library, profile or package version therefore starts from an empty cache (and
Sphinx re-reads every page, since the config value changed); an unchanged one reuses
the executed notebooks.  Cache folders of the same profile with another key are deleted.

It also sets ``BOOK_PROGRESS=0`` for the kernels the build starts, so executed pages carry
no progress bars, and ``BOOK_BUILD=1``, so figures are glued for their ``{glue:figure}``
only (:func:`lib.plotting.glue_figure` shows them inline everywhere else).  Enabled in ``_config.yml`` under ``sphinx.extra_extensions``.

Parallel execution
------------------
myst-nb executes the stale notebooks one after another while Sphinx reads them.  Before it
does, :func:`prefill_cache` (connected to ``builder-inited``, after myst-nb has set up its
configuration) reads every notebook of the table of contents with myst-nb's own reader, asks
the cache which of them have no executed copy (jupyter-cache's own hash of the code cells),
and executes those in a pool of worker processes, ``BOOK_JOBS`` at a time (default: the
number of cores; each kernel keeps torch on one thread), putting each executed notebook into
the cache exactly as myst-nb would.  Sphinx then finds every chapter cached.  ``BOOK_JOBS=1``
skips the pool and leaves execution to myst-nb (the serial behaviour).  A notebook whose
cell raises is not cached; the build stops with an error naming the chapter, the cell and
the traceback (``execute.raise_on_error``), after the other chapters have finished.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import os
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

from lib.config import BUILD_ENV, PROGRESS_ENV, get_profile

#: Environment variable: number of chapters executed at once (default: the number of cores).
JOBS_ENV = "BOOK_JOBS"

#: Distributions whose versions enter the key (a different numpy can change numbers).
KEYED_DISTRIBUTIONS = ("torch", "numpy", "scipy", "mpmath", "scikit-learn", "matplotlib", "pandas",
                       "myst-nb", "ipykernel")
CACHE_DIRNAME = ".jupyter_cache"


def library_root() -> Path:
    """The folder of the ``lib`` package that the build's kernels will import."""
    import lib

    return Path(lib.__file__).resolve().parent


def library_key(root: Path | None = None, profile: str | None = None) -> str:
    """Hex digest (16 characters) of the library source, the profile, package versions and
    the committed paper-scale record (``results/paper/claims.json`` next to ``src/``, whose
    verdicts the chapters' ledger tables show)."""
    root = library_root() if root is None else Path(root)
    if not root.is_dir():
        raise ValueError(f"root must be a directory, got {root}")
    profile = get_profile() if profile is None else profile
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    # the chapters' ledger tables show the committed paper-scale record's verdicts
    record = root.parent.parent / "results" / "paper" / "claims.json"
    if record.is_file():
        digest.update(b"paper-record\0" + record.read_bytes() + b"\0")
    digest.update(f"profile={profile}\0python={platform.python_version()}\0".encode())
    for dist in KEYED_DISTRIBUTIONS:
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            version = "absent"
        digest.update(f"{dist}={version}\0".encode())
    return digest.hexdigest()[:16]


def _check_profile_key(profile: str, key: str) -> None:
    from lib.config import PROFILES

    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    if not (isinstance(key, str) and len(key) == 16 and all(c in "0123456789abcdef" for c in key)):
        raise ValueError(f"key must be 16 lower-case hex digits (library_key), got {key!r}")


def cache_path(build_dir: Path, profile: str | None = None, key: str | None = None) -> Path:
    """``<build_dir>/.jupyter_cache/<profile>-<key>``; ``profile`` must be a known run profile
    and ``key`` a :func:`library_key` (16 hex digits), else ``ValueError``."""
    profile = get_profile() if profile is None else profile
    key = library_key(profile=profile) if key is None else key
    _check_profile_key(profile, key)
    return Path(build_dir) / CACHE_DIRNAME / f"{profile}-{key}"


def _is_cache_folder(path: Path) -> bool:
    profile, _, key = path.name.partition("-")
    try:
        _check_profile_key(profile, key)
    except ValueError:
        return False
    return path.parent.name == CACHE_DIRNAME


def prune_stale(current: Path) -> list[Path]:
    """Delete the sibling cache folders of ``current`` made by this module for the same
    profile with another key; return them.  Only folders inside a ``.jupyter_cache`` folder
    named ``<profile>-<16 hex digits>`` are ever touched: a ``current`` that is not such a
    folder raises ``ValueError``, and any other sibling is left alone."""
    current = Path(current)
    if not _is_cache_folder(current):
        raise ValueError(f"current must be a cache folder {CACHE_DIRNAME}/<profile>-<key>, got {current}")
    parent, profile = current.parent, current.name.split("-", 1)[0]
    removed = []
    if parent.is_dir():
        for other in parent.iterdir():
            if (other.is_dir() and not other.is_symlink() and other != current
                    and _is_cache_folder(other) and other.name.startswith(f"{profile}-")):
                shutil.rmtree(other)
                removed.append(other)
    return removed


def build_jobs(environ: Any = None) -> int:
    """Worker count for executing chapters: ``BOOK_JOBS`` if set (an integer >= 1), else the
    number of cores (:func:`usable_cores`, counted as lib.sweep counts them).  A malformed value
    raises ``ValueError`` naming ``BOOK_JOBS``."""
    raw = (os.environ if environ is None else environ).get(JOBS_ENV, "").strip()
    if not raw:
        return usable_cores()
    try:
        jobs = int(raw)
    except ValueError:
        jobs = 0
    if jobs < 1:
        raise ValueError(f"{JOBS_ENV}={raw!r} must be a whole number >= 1")
    return jobs


#: lib.sweep's worker count variable, named here so the build need not import torch.
SWEEP_JOBS_ENV = "BOOK_SWEEP_JOBS"


def usable_cores() -> int:
    """The cores this process may use, as ``lib.sweep`` counts them (``joblib.cpu_count()``:
    the CPU affinity and a container's CPU quota)."""
    import joblib

    return max(joblib.cpu_count(), 1)


def sweep_share(chapters_at_once: int, profile: str | None = None, environ: Any = None) -> dict[str, str]:
    """Environment for chapters that run ``chapters_at_once`` at a time under ``profile``
    (default: ``BOOK_PROFILE``): under ``paper``, where sweeps use all cores, each chapter's
    ``lib.sweep`` gets an equal share (``BOOK_SWEEP_JOBS`` = cores // chapters, at least 1), so
    parallel chapters and their sweeps do not oversubscribe the machine.  Empty under ``quick``
    (sweeps are serial there), when ``BOOK_SWEEP_JOBS`` is already set (the user's choice wins)
    or when one chapter runs at a time."""
    if isinstance(chapters_at_once, bool) or not isinstance(chapters_at_once, int) or chapters_at_once < 1:
        raise ValueError(f"chapters_at_once must be an int >= 1, got {chapters_at_once!r}")
    env = os.environ if environ is None else environ
    if (profile or get_profile()) != "paper" or chapters_at_once == 1 or env.get(SWEEP_JOBS_ENV, "").strip():
        return {}
    return {SWEEP_JOBS_ENV: str(max(usable_cores() // chapters_at_once, 1))}


def toc_files(root: Path, toc: str = "_toc.yml") -> list[Path]:
    """The source files of every page in ``root/toc`` (``root`` + ``file`` + its suffix)."""
    import yaml

    root = Path(root)
    data = yaml.safe_load((root / toc).read_text(encoding="utf-8"))
    names: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key in ("root", "file"):
                if isinstance(node.get(key), str):
                    names.append(node[key])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(data)
    out = []
    for name in dict.fromkeys(names):
        base = root / name
        candidates = [base] if base.suffix else [base.with_suffix(s) for s in (".md", ".ipynb")]
        out += [c for c in candidates if c.is_file()][:1]
    return out


def _execute(source: str, cwd: str, timeout: int | None, allow_errors: bool) -> dict[str, Any]:
    """Worker: execute one notebook (nbformat JSON) in ``cwd``; return it with its status."""
    import nbformat
    from jupyter_cache.executors.utils import single_nb_execution

    notebook = nbformat.reads(source, as_version=4)
    result = single_nb_execution(notebook, cwd=cwd, timeout=timeout, allow_errors=allow_errors,
                                 meta_override=True)
    failed_cell = next((i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"
                        and any(o.get("output_type") == "error" for o in cell.get("outputs", []))),
                       None)
    return {"notebook": nbformat.writes(notebook), "seconds": result.time,
            "error": None if result.err is None else type(result.err).__name__,
            "traceback": result.exc_string, "cell": failed_cell}


def code_size(notebook: Any) -> int:
    """Characters of code in ``notebook`` (its code cells' sources): the build's estimate of
    how long a chapter runs, to start the longest chapters first (a longest-first schedule)."""
    return sum(len(cell.source) for cell in notebook.cells if cell.cell_type == "code")


def prefill_cache(paths: list[Path], md_config: Any, nb_config: Any, jobs: int,
                  log: Any = None) -> dict[str, Any]:
    """Execute, ``jobs`` at a time, the notebooks among ``paths`` that the execution cache of
    ``nb_config`` lacks, and cache them as myst-nb does.  Returns ``{"cached": [...],
    "executed": {path: seconds}, "failed": {path: message}}``.  The chapters with the most code
    start first (:func:`code_size`), so the build does not wait on a long chapter started last.
    While they run, each chapter's sweeps get an equal share of the cores (:func:`sweep_share`)."""
    from jupyter_cache import get_cache
    from myst_nb.core.read import create_nb_reader

    cache = get_cache(nb_config.execution_cache_path)
    stale, report = [], {"cached": [], "executed": {}, "failed": {}}
    for path in paths:
        text = Path(path).read_text(encoding="utf-8")
        reader = create_nb_reader(str(path), md_config, nb_config, text)
        if reader is None:
            continue
        notebook = reader.read(text)
        if not notebook.cells or not any(c.cell_type == "code" for c in notebook.cells):
            continue
        try:
            cache.match_cache_notebook(notebook)
            report["cached"].append(str(path))
        except KeyError:
            stale.append((Path(path), notebook))
    if not stale:
        return report
    stale.sort(key=lambda item: -code_size(item[1]))   # longest first: a short chapter ends the build
    workers = min(jobs, len(stale))
    shared, saved = sweep_share(workers), os.environ.get(SWEEP_JOBS_ENV)
    os.environ.update(shared)      # the spawned workers and their kernels inherit it
    try:
        _run_stale(stale, cache, nb_config, workers, report, log)
    finally:
        if shared and saved is None:
            os.environ.pop(SWEEP_JOBS_ENV, None)
    return report


def _run_stale(stale: list[Any], cache: Any, nb_config: Any, workers: int, report: dict[str, Any],
               log: Any) -> None:
    """Execute the stale notebooks ``workers`` at a time and cache them (for prefill_cache)."""
    import nbformat
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from jupyter_cache.base import CacheBundleIn

    timeout, allow = nb_config.execution_timeout, nb_config.execution_allow_errors
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(_execute, nbformat.writes(nb), str(path.parent), timeout, allow): path
                   for path, nb in stale}
        for future, path in futures.items():
            out = future.result()
            if out["error"] is None:
                executed = nbformat.reads(out["notebook"], as_version=4)
                cache.cache_notebook_bundle(
                    CacheBundleIn(executed, str(path), data={"execution_seconds": out["seconds"]}),
                    check_validity=False, overwrite=True)
                report["executed"][str(path)] = out["seconds"]
                if log is not None:
                    log.info(f"[lib.bookbuild] executed {path.name} in {out['seconds']:.1f} s")
            else:
                where = "" if out["cell"] is None else f", notebook cell {out['cell']}"
                report["failed"][str(path)] = (f"executing {path} failed ({out['error']}{where}):\n"
                                               f"{out['traceback']}")


def _prefill(app: Any) -> None:
    from sphinx.errors import ExtensionError
    from sphinx.util import logging

    log = logging.getLogger(__name__)
    nb_config = getattr(app.env, "mystnb_config", None)
    jobs = build_jobs()
    if jobs <= 1 or nb_config is None or nb_config.execution_mode != "cache":
        return
    paths = toc_files(Path(app.srcdir))
    report = prefill_cache(paths, app.env.myst_config, nb_config, jobs, log)
    log.info(f"[lib.bookbuild] {len(report['executed'])} chapters executed with {jobs} workers, "
             f"{len(report['cached'])} cached")
    if report["failed"]:
        message = "\n\n".join(report["failed"].values())
        if nb_config.execution_raise_on_error:
            raise ExtensionError(message)
        log.warning(message)


#: Inventories for the API reference's links, used when reachable at build time.
INTERSPHINX = {
    "python": "https://docs.python.org/3",
    "numpy": "https://numpy.org/doc/stable",
    "scipy": "https://docs.scipy.org/doc/scipy",
    "torch": "https://docs.pytorch.org/docs/stable",
}


def reachable_inventories(targets: Any = None, timeout: float = 3.0) -> dict[str, tuple[str, None]]:
    """The entries of ``targets`` (default :data:`INTERSPHINX`) whose ``objects.inv`` answers
    within ``timeout`` seconds, as an ``intersphinx_mapping``; offline, ``{}``."""
    from urllib.request import urlopen

    out = {}
    for name, url in (INTERSPHINX if targets is None else targets).items():
        try:
            with urlopen(f"{url}/objects.inv", timeout=timeout) as response:  # noqa: S310
                if response.status == 200:
                    out[name] = (url, None)
        except (OSError, ValueError):
            continue
    return out


def _configure(app: Any, config: Any) -> None:
    from sphinx.util import logging

    log = logging.getLogger(__name__)
    build_dir = Path(app.outdir).resolve().parent
    path = cache_path(build_dir)
    for stale in prune_stale(path):
        log.info(f"[lib.bookbuild] removed stale execution cache {stale}")
    config.nb_execution_cache_path = str(path)
    os.environ[PROGRESS_ENV] = "0"
    os.environ[BUILD_ENV] = "1"
    # The kernels run in this environment: its own kernelspec directory comes first, before a
    # user's or the system's ``python3`` that may point at another Python.
    own = str(Path(sys.prefix) / "share" / "jupyter")
    paths = [p for p in os.environ.get("JUPYTER_PATH", "").split(os.pathsep) if p and p != own]
    os.environ["JUPYTER_PATH"] = os.pathsep.join([own, *paths])
    log.info(f"[lib.bookbuild] execution cache keyed on lib + profile: {path}")
    if hasattr(config, "intersphinx_mapping") and not config.intersphinx_mapping:
        config.intersphinx_mapping = reachable_inventories()
        log.info(f"[lib.bookbuild] intersphinx: {sorted(config.intersphinx_mapping) or 'offline'}")


def setup(app: Any) -> dict[str, Any]:
    # The bibliography's author-year labels and the matching citation style (lib._bibstyle).
    from lib import _bibstyle

    _bibstyle.register()
    # myst-nb reads nb_execution_cache_path at builder-inited, after config-inited.
    app.connect("config-inited", _configure)
    # After myst-nb's own builder-inited handler (priority 500) has built its configuration.
    app.connect("builder-inited", _prefill, priority=900)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
