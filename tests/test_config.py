import pytest
import torch

from lib import config


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(config.PROFILE_ENV, raising=False)
    monkeypatch.delenv(config.PROGRESS_ENV, raising=False)


def test_default_profile_is_quick() -> None:
    assert config.get_profile() == "quick"
    assert not config.is_paper()


@pytest.mark.parametrize("raw, expected", [("paper", "paper"), (" PAPER ", "paper"),
                                           ("quick", "quick"), ("", "quick")])
def test_profile_from_environment(monkeypatch: pytest.MonkeyPatch, raw: str, expected: str) -> None:
    monkeypatch.setenv(config.PROFILE_ENV, raw)
    assert config.get_profile() == expected


def test_unknown_profile_raises_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.PROFILE_ENV, "fast")
    with pytest.raises(ValueError, match=r"BOOK_PROFILE='fast'.*quick, paper"):
        config.get_profile()
    with pytest.raises(ValueError, match="BOOK_PROFILE"):
        config.pick(quick=1, paper=2)


def test_pick_follows_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    assert config.pick(quick=10, paper=1000) == 10
    monkeypatch.setenv(config.PROFILE_ENV, "paper")
    assert config.pick(quick=10, paper=1000) == 1000


def test_pick_requires_both_keywords() -> None:
    with pytest.raises(TypeError):
        config.pick(quick=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        config.pick(1, 2)  # type: ignore[misc]


def test_quick_profile_runs_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    assert config.default_device() == torch.device("cpu")
    monkeypatch.setenv(config.PROFILE_ENV, "paper")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert config.default_device().type == expected


@pytest.mark.parametrize("value, enabled", [(None, True), ("1", True), ("0", False),
                                            ("off", False), ("False", False)])
def test_progress_switch(monkeypatch: pytest.MonkeyPatch, value: str | None, enabled: bool) -> None:
    if value is not None:
        monkeypatch.setenv(config.PROGRESS_ENV, value)
    assert config.progress_enabled() is enabled
    bar = config.progress(range(3))
    assert bar.disable is (not enabled)
    assert list(bar) == [0, 1, 2]


def test_describe_names_profile_and_device() -> None:
    assert config.describe() == "profile=quick, device=cpu"


def test_disabled_progress_writes_nothing_to_stderr(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv(config.PROGRESS_ENV, "0")
    for _ in config.progress(range(5), desc="quiet"):
        pass
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_pick_full_only_under_paper_with_the_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    """``full=`` is used only with BOOK_PROFILE=paper and BOOK_PAPER_FULL=1; without ``full=``
    the switch changes nothing."""
    monkeypatch.setenv(config.PROFILE_ENV, "quick")
    monkeypatch.setenv(config.FULL_ENV, "1")
    assert config.pick(quick=1, paper=2, full=3) == 1
    assert not config.full_scale()
    monkeypatch.setenv(config.PROFILE_ENV, "paper")
    assert config.pick(quick=1, paper=2, full=3) == 3
    assert config.pick(quick=1, paper=2) == 2
    assert "BOOK_PAPER_FULL" in config.describe()
    monkeypatch.setenv(config.FULL_ENV, "0")
    assert config.pick(quick=1, paper=2, full=3) == 2
    monkeypatch.delenv(config.FULL_ENV)
    assert config.pick(quick=1, paper=2, full=3) == 2 and config.full_scale() is False
