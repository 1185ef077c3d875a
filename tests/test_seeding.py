import random

import numpy as np
import pytest
import torch

from lib import seeding


@pytest.fixture(autouse=True)
def _restore_determinism():
    before = torch.are_deterministic_algorithms_enabled()
    threads = torch.get_num_threads()
    yield
    torch.use_deterministic_algorithms(before)
    torch.set_num_threads(threads)


def _draws() -> tuple[float, float, float]:
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_seed_everything_reproduces_all_generators() -> None:
    seeding.seed_everything(123)
    first = _draws()
    seeding.seed_everything(123)
    assert _draws() == first
    seeding.seed_everything(124)
    assert _draws() != first


def test_seed_everything_sets_determinism() -> None:
    seeding.seed_everything(0, deterministic=True)
    assert torch.are_deterministic_algorithms_enabled()
    seeding.seed_everything(0, deterministic=False)
    assert not torch.are_deterministic_algorithms_enabled()


def test_explicit_generators_are_independent_of_global_state() -> None:
    a = torch.randn(4, generator=seeding.torch_generator(7))
    torch.manual_seed(999)
    b = torch.randn(4, generator=seeding.torch_generator(7))
    assert torch.equal(a, b)
    assert seeding.numpy_rng(7).random() == seeding.numpy_rng(7).random()


@pytest.mark.parametrize("bad", [1.5, "3", None, True])
def test_non_integer_seed_raises_type_error(bad: object) -> None:
    with pytest.raises(TypeError, match="seed must be an int"):
        seeding.check_seed(bad)
    with pytest.raises(TypeError, match="seed"):
        seeding.numpy_rng(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [-1, 2**63])
def test_out_of_range_seed_raises_value_error(bad: int) -> None:
    with pytest.raises(ValueError, match="seed must lie in"):
        seeding.seed_everything(bad)


def test_numpy_integer_seed_is_accepted() -> None:
    assert seeding.check_seed(np.int64(5)) == 5


def test_deterministic_flag_must_be_bool() -> None:
    with pytest.raises(TypeError, match="deterministic"):
        seeding.seed_everything(0, deterministic="yes")  # type: ignore[arg-type]


def test_threads_default_to_one_under_quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BOOK_PROFILE", raising=False)
    torch.set_num_threads(2)
    seeding.seed_everything(0)
    assert torch.get_num_threads() == 1
    seeding.seed_everything(0, threads=2)
    assert torch.get_num_threads() == 2


def test_threads_left_alone_under_paper(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOOK_PROFILE", "paper")
    torch.set_num_threads(2)
    seeding.seed_everything(0)
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_bad_thread_count_raises(bad: object) -> None:
    with pytest.raises(ValueError, match="threads"):
        seeding.seed_everything(0, threads=bad)  # type: ignore[arg-type]


def test_threads_at_most_the_cores() -> None:
    import os

    with pytest.raises(ValueError, match="threads"):
        seeding.seed_everything(0, threads=10**6)
    with pytest.raises(ValueError, match="threads"):
        seeding.seed_everything(0, threads=(os.cpu_count() or 1) + 1)


def test_generators_are_the_documented_streams_and_seeds_differ() -> None:
    """Compared with numpy and torch directly: numpy_rng(s) is PCG64 default_rng(s),
    torch_generator(s) is a torch.Generator after manual_seed(s); other seeds, other streams."""
    for s in (0, 7, 2**40):
        assert np.array_equal(seeding.numpy_rng(s).standard_normal(5),
                              np.random.default_rng(s).standard_normal(5))
        ref = torch.Generator().manual_seed(s)
        assert torch.equal(torch.randn(5, generator=seeding.torch_generator(s)), torch.randn(5, generator=ref))
    assert not np.array_equal(seeding.numpy_rng(1).standard_normal(5), seeding.numpy_rng(2).standard_normal(5))
    assert not torch.equal(torch.randn(5, generator=seeding.torch_generator(1)),
                           torch.randn(5, generator=seeding.torch_generator(2)))
    seeding.seed_everything(5)
    a = (random.random(), np.random.random(), torch.rand(1).item())
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    assert a == (random.random(), np.random.random(), torch.rand(1).item())


# ------------------------------------------------------------------ issue 19: the one argument layer
def test_seeds_accept_numpy_and_0d_torch_integers_as_the_same_stream() -> None:
    """Reference: numpy's default_rng and torch's Generator seeded with the Python int."""
    for s in (np.int64(7), torch.tensor(7), np.array(7)):
        assert seeding.numpy_rng(s).random() == np.random.default_rng(7).random()
        assert torch.equal(torch.rand(3, generator=seeding.torch_generator(s)),
                           torch.rand(3, generator=torch.Generator().manual_seed(7)))


@pytest.mark.parametrize("bad", [np.True_, torch.tensor(True), torch.tensor(3.0), np.float64(2.0),
                                 torch.tensor([1, 2])])
def test_bools_and_non_integers_are_not_seeds(bad: object) -> None:
    with pytest.raises(TypeError, match="seed must be an integer"):
        seeding.check_seed(bad)


def test_threads_accept_numpy_integers_and_refuse_numpy_bools() -> None:
    seeding.seed_everything(0, threads=np.int64(1))
    assert torch.get_num_threads() == 1
    with pytest.raises(ValueError, match="threads"):
        seeding.seed_everything(0, threads=np.True_)
