"""The execution cache is keyed on the library source, the profile and package versions."""

import functools
import os
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from lib import bookbuild, config


@pytest.fixture
def fake_lib(tmp_path: Path) -> Path:
    root = tmp_path / "lib"
    shutil.copytree(bookbuild.library_root(), root,
                    ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_key_is_stable(fake_lib: Path) -> None:
    assert bookbuild.library_key(fake_lib, "quick") == bookbuild.library_key(fake_lib, "quick")
    assert len(bookbuild.library_key(fake_lib, "quick")) == 16


def test_key_changes_with_library_source(fake_lib: Path) -> None:
    before = bookbuild.library_key(fake_lib, "quick")
    module = fake_lib / "config.py"
    module.write_text(module.read_text() + "\n# an edit\n")
    assert bookbuild.library_key(fake_lib, "quick") != before


def test_key_changes_with_new_module_and_ignores_bytecode(fake_lib: Path) -> None:
    before = bookbuild.library_key(fake_lib, "quick")
    (fake_lib / "__pycache__").mkdir()
    (fake_lib / "__pycache__" / "x.py").write_text("stale = 1\n")
    assert bookbuild.library_key(fake_lib, "quick") == before
    (fake_lib / "newmod.py").write_text("x = 1\n")
    assert bookbuild.library_key(fake_lib, "quick") != before


def test_key_changes_with_profile(fake_lib: Path) -> None:
    assert bookbuild.library_key(fake_lib, "quick") != bookbuild.library_key(fake_lib, "paper")


def test_key_rejects_missing_root(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="root"):
        bookbuild.library_key(tmp_path / "nope", "quick")


A, B, C = "a" * 16, "b" * 16, "c" * 16


def test_prune_stale_removes_only_same_profile(tmp_path: Path) -> None:
    cache = tmp_path / ".jupyter_cache"
    for name in (f"quick-{A}", f"quick-{B}", f"paper-{C}", "quick-notes", "quick-aaaa"):
        (cache / name).mkdir(parents=True)
    removed = bookbuild.prune_stale(cache / f"quick-{B}")
    assert [p.name for p in removed] == [f"quick-{A}"]
    assert sorted(p.name for p in cache.iterdir()) == [f"paper-{C}", "quick-aaaa", f"quick-{B}", "quick-notes"]


def test_prune_stale_refuses_a_folder_it_did_not_make(tmp_path: Path) -> None:
    for name in ("my-thesis", "my-data", f"quick-{A}"):
        (tmp_path / name).mkdir()
    for current in (tmp_path / "my-thesis", tmp_path / f"quick-{A}", tmp_path / ".jupyter_cache" / "my-x"):
        with pytest.raises(ValueError, match="current"):
            bookbuild.prune_stale(current)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my-data", "my-thesis", f"quick-{A}"]


def test_cache_path_refuses_odd_profile_or_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="profile"):
        bookbuild.cache_path(tmp_path, "../../etc", A)
    with pytest.raises(ValueError, match="key"):
        bookbuild.cache_path(tmp_path, "quick", "../x")
    assert bookbuild.cache_path(tmp_path, "paper", A).name == f"paper-{A}"


def test_configure_points_myst_nb_at_keyed_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(config.PROFILE_ENV, raising=False)
    monkeypatch.delenv(config.PROGRESS_ENV, raising=False)
    monkeypatch.delenv(config.BUILD_ENV, raising=False)
    monkeypatch.setenv("JUPYTER_PATH", "/elsewhere")
    app = SimpleNamespace(outdir=str(tmp_path / "_build" / "html"))
    cfg = SimpleNamespace(nb_execution_cache_path="")
    bookbuild._configure(app, cfg)
    assert config.in_book_build()  # figures glued only, placed by {glue:figure}
    own = Path(sys.prefix) / "share" / "jupyter"
    assert os.environ["JUPYTER_PATH"].split(os.pathsep) == [str(own), "/elsewhere"]
    from jupyter_client.kernelspec import KernelSpecManager
    spec = KernelSpecManager().get_kernel_spec("python3")
    assert Path(spec.resource_dir).resolve().is_relative_to(Path(sys.prefix).resolve())
    expected = tmp_path / "_build" / ".jupyter_cache" / f"quick-{bookbuild.library_key()}"
    assert Path(cfg.nb_execution_cache_path) == expected.resolve()
    assert not config.progress_enabled()  # kernels started by the build show no bars


def test_configure_rejects_unknown_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.PROFILE_ENV, "huge")
    app = SimpleNamespace(outdir=str(tmp_path / "_build" / "html"))
    with pytest.raises(ValueError, match="BOOK_PROFILE"):
        bookbuild._configure(app, SimpleNamespace(nb_execution_cache_path=""))


def test_build_jobs_reads_book_jobs() -> None:
    assert bookbuild.build_jobs({"BOOK_JOBS": "3"}) == 3
    assert bookbuild.build_jobs({"BOOK_JOBS": " 1 "}) == 1
    assert bookbuild.build_jobs({}) >= 1
    for bad in ("0", "-2", "two", "1.5"):
        with pytest.raises(ValueError, match="BOOK_JOBS"):
            bookbuild.build_jobs({"BOOK_JOBS": bad})


def test_toc_files_lists_every_page_in_order() -> None:
    root = Path(__file__).resolve().parents[1]
    files = bookbuild.toc_files(root)
    assert files[0].name == "intro.md"
    assert {"floating-point.md", "trained-vs-constructed.md", "conclusion.md"} <= {f.name for f in files}
    assert len(files) == len(set(files))


_NB = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---
# {name}
```{{code-cell}} ipython3
x = {value}
assert x == 1, "planted failure"
```
"""


def test_prefill_executes_stale_notebooks_in_parallel_and_reports_failures(tmp_path: Path) -> None:
    from myst_nb.core.config import NbParserConfig
    from myst_parser.config.main import MdParserConfig

    good, bad = tmp_path / "good.md", tmp_path / "bad.md"
    good.write_text(_NB.format(name="good", value=1))
    bad.write_text(_NB.format(name="bad", value=2))
    nb_config = NbParserConfig(execution_mode="cache", execution_timeout=120,
                               execution_cache_path=str(tmp_path / "cache"))
    report = bookbuild.prefill_cache([good, bad], MdParserConfig(), nb_config, jobs=2)
    assert set(report["executed"]) == {str(good)} and not report["cached"]
    assert "planted failure" in report["failed"][str(bad)]
    assert "bad.md" in report["failed"][str(bad)] and "notebook cell 1" in report["failed"][str(bad)]
    again = bookbuild.prefill_cache([good], MdParserConfig(), nb_config, jobs=2)
    assert again["cached"] == [str(good)] and not again["executed"]


def test_sweep_share_splits_the_cores_between_parallel_chapters(monkeypatch: pytest.MonkeyPatch) -> None:
    import joblib

    assert bookbuild.usable_cores() == joblib.cpu_count()        # as lib.sweep counts them
    monkeypatch.setattr(bookbuild, "usable_cores", lambda: 16)
    share = functools.partial(bookbuild.sweep_share, profile="paper", environ={})
    assert share(1) == {}                                           # one chapter: sweeps decide
    assert share(4) == {"BOOK_SWEEP_JOBS": "4"}
    assert share(7) == {"BOOK_SWEEP_JOBS": "2"}                     # floor of 16 / 7
    assert share(32) == {"BOOK_SWEEP_JOBS": "1"}
    assert bookbuild.sweep_share(4, "paper", {"BOOK_SWEEP_JOBS": "3"}) == {}  # the user's choice wins
    assert bookbuild.sweep_share(4, "quick", {}) == {}             # quick sweeps stay serial
    monkeypatch.setenv(config.PROFILE_ENV, "paper")
    assert bookbuild.sweep_share(4, environ={}) == {"BOOK_SWEEP_JOBS": "4"}   # BOOK_PROFILE
    monkeypatch.delenv(config.PROFILE_ENV)
    assert bookbuild.sweep_share(4, environ={}) == {}
    for bad in (0, -1, 2.0, True, "2"):
        with pytest.raises(ValueError, match="chapters_at_once"):
            bookbuild.sweep_share(bad, "paper", {})


def test_prefill_gives_each_parallel_chapter_its_share_of_cores(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Under paper, the kernels of chapters executed in parallel see BOOK_SWEEP_JOBS =
    cores // chapters; the build's own environment is left as it was."""
    from myst_nb.core.config import NbParserConfig
    from myst_parser.config.main import MdParserConfig

    monkeypatch.delenv("BOOK_SWEEP_JOBS", raising=False)
    monkeypatch.setenv(config.PROFILE_ENV, "paper")     # nothing runs: the notebooks read a variable
    expected = str(max(bookbuild.usable_cores() // 2, 1))
    check = "int(__import__('os').environ['BOOK_SWEEP_JOBS'])"
    pages = [tmp_path / f"share{i}.md" for i in range(2)]
    for i, page in enumerate(pages):      # the second has more code: it starts first
        page.write_text(_NB.format(name=page.stem, value=f"{check} - {expected} + 1" + " + 0" * 40 * i))
    nb_config = NbParserConfig(execution_mode="cache", execution_timeout=120,
                               execution_cache_path=str(tmp_path / "cache"))
    report = bookbuild.prefill_cache(pages, MdParserConfig(), nb_config, jobs=2)
    assert list(report["executed"]) == [str(pages[1]), str(pages[0])], report["failed"]   # longest first
    assert "BOOK_SWEEP_JOBS" not in os.environ


def test_reachable_inventories_keeps_only_answering_servers(tmp_path: Path) -> None:
    import http.server
    import threading
    from functools import partial

    (tmp_path / "objects.inv").write_bytes(b"# Sphinx inventory version 2\n")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        got = bookbuild.reachable_inventories({"here": url, "gone": "http://127.0.0.1:9"}, timeout=2)
    finally:
        server.shutdown()
    assert got == {"here": (url, None)}
