"""lib.approx's width sweep through lib.sweep: the same numbers, bit for bit, as the plain loop.

:func:`lib.approx.breakpoint_width_sweep` runs its widths as tasks of :func:`lib.sweep.run`.
The references are independent of that path: the old loop written out here (one width after
the other in this process, with :func:`lib.approx.train_breakpoint_nets` and
:func:`lib.approx.ntk_gram`), and errors pinned from the code before the change (``float.hex``,
so equality is exact).  Compared with ``==``/``torch.equal``/``np.array_equal``: serial (the
``quick`` default) and loky worker processes (``BOOK_SWEEP_JOBS=2``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lib import approx, data, sweep

WIDTHS = [8, 16, 24]
MEMBERS, STEPS, HORIZONS = 2, 24, [12, 24]
#: Values of ``breakpoint_width_sweep`` (the plain loop) before the change, as float.hex.
PINNED = {
    (8, "err"): [["0x1.28c05a8b21a73p-3", "0x1.c3cd50c55c8c1p-3"], ["0x1.d26917943b592p-4", "0x1.b457d4501bff6p-3"]],
    (24, "err"): [["0x1.17e8f64308c15p-3", "0x1.07eabe654f913p-3"], ["0x1.c418da9dd87e8p-4", "0x1.a8f8ed75bb241p-4"]],
    (24, "drift"): ["0x1.9657d39d4b73ap-3", "0x1.65f7ca9f04967p-3"],
    (24, "top1"): ["0x1.98b60dd03ea14p-1", "0x1.83d0c67b3df22p-1"],
}


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (sweep.JOBS_ENV, sweep.BACKEND_ENV, "BOOK_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BOOK_PROGRESS", "0")


def _rule() -> data.Quadrature:
    return data.quadrature(16, order=2, interval=(-1.0, 1.0))


def _plain_loop() -> dict[int, dict]:
    """The loop of ``breakpoint_width_sweep`` before it went through lib.sweep, one thread."""
    rule, threads = _rule(), torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = {}
        for m in WIDTHS:
            r = approx.train_breakpoint_nets(data.gaussian_bump, m, MEMBERS, STEPS, HORIZONS)
            move = (r["net"].breakpoints - r["net0"].breakpoints).abs()
            r["move_max"] = move.max(dim=1).values.numpy()
            r["move_rms"] = move.pow(2).mean(dim=1).sqrt().numpy()
            k0 = [approx.ntk_gram(r["net0"].member(s), rule.nodes, rule.weights) for s in range(MEMBERS)]
            k1 = [approx.ntk_gram(r["net"].member(s), rule.nodes, rule.weights) for s in range(MEMBERS)]
            r["drift"] = np.array([float(torch.linalg.norm(b - a) / torch.linalg.norm(a)) for a, b in zip(k0, k1)])
            r["top0"] = np.array([float(torch.linalg.eigvalsh(a)[-1]) for a in k0])
            r["top1"] = np.array([float(torch.linalg.eigvalsh(b)[-1]) for b in k1])
            res[m] = r
        return res
    finally:
        torch.set_num_threads(threads)


def _assert_identical(got: dict[int, dict], ref: dict[int, dict]) -> None:
    assert list(got) == list(ref) == WIDTHS
    for m in WIDTHS:
        a, b = got[m], ref[m]
        assert set(a) == set(b)
        for key in ("lam0", "eta", "err", "move_max", "move_rms", "drift", "top0", "top1"):
            assert np.array_equal(a[key], b[key]), (m, key)
        for key in ("sharp", "sharp0"):
            assert a[key] == b[key], (m, key)
        assert a["diverged"] == b["diverged"]
        assert torch.equal(a["net"].breakpoints, b["net"].breakpoints)
        assert torch.equal(a["net0"].breakpoints, b["net0"].breakpoints)
        assert torch.equal(a["net"].signs, b["net"].signs)
        assert torch.equal(a["quad"].nodes, b["quad"].nodes)


@pytest.fixture(scope="module")
def plain() -> dict[int, dict]:
    return _plain_loop()


def test_plain_loop_matches_the_values_pinned_before_the_change(plain: dict[int, dict]) -> None:
    for (m, key), pinned in PINNED.items():
        assert np.array_equal(plain[m][key], np.vectorize(float.fromhex, otypes=[float])(np.array(pinned))), (m, key)


def test_width_sweep_serial_equals_the_plain_loop(plain: dict[int, dict], monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real_run = sweep.run

    def spy(fn, tasks, **kw):
        tasks = list(tasks)
        calls.append((tasks, kw.get("desc")))
        return real_run(fn, tasks, **kw)

    monkeypatch.setattr(sweep, "run", spy)
    assert sweep.plan() == ("serial", 1)
    rule = _rule()
    got = approx.breakpoint_width_sweep(data.gaussian_bump, WIDTHS, MEMBERS, STEPS, HORIZONS, rule.nodes, rule.weights)
    assert calls == [(WIDTHS, "widths")]                       # one task per width, through lib.sweep
    _assert_identical(got, plain)


def test_width_sweep_on_two_loky_workers_equals_the_plain_loop(plain: dict[int, dict],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(sweep.JOBS_ENV, "2")
    assert sweep.plan() == ("loky", 2)
    rule = _rule()
    got = approx.breakpoint_width_sweep(data.gaussian_bump, WIDTHS, MEMBERS, STEPS, HORIZONS, rule.nodes, rule.weights)
    _assert_identical(got, plain)
    assert got[8]["net"].theta.requires_grad                    # the trained nets come back as modules
