"""lib.stability's sweeps through lib.sweep: identical results serial, on two loky processes,
and against the plain loop they replaced (written out here with the entry points the loop
called: train.gd and its hooks, train.lastbit_family, hessian.eigenvalues,
sun_full_loss_grad_fft).  Exact equality throughout (NaN where the loop leaves NaN); only
wall-clock ``seconds`` are not compared.  One loky pool serves the whole file."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from lib import hessian, nets, stability, sweep, train


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (sweep.JOBS_ENV, sweep.BACKEND_ENV, "BOOK_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BOOK_PROGRESS", "0")


def _same(a: Any, b: Any, path: str = "") -> None:
    """Exact equality of nested results (dicts, tuples, arrays, tensors, GD runs, hooks)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            if key != "seconds" and key != "check_seconds":
                _same(a[key], b[key], f"{path}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{path}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    elif isinstance(a, train.GDRun):
        _same(a.history, b.history, f"{path}.history")
        _same(list(a.model.parameters()), list(b.model.parameters()), f"{path}.model")
    elif isinstance(a, train.ParameterHook):
        assert a.steps == b.steps, path
        _same(a.array(), b.array(), path)
    elif isinstance(a, (np.ndarray, np.generic)) or isinstance(b, (np.ndarray, np.generic)):
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), path
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), path
    else:
        assert a == b, path


def _serial_and_loky(monkeypatch: pytest.MonkeyPatch, fn: Any) -> tuple[Any, Any]:
    assert sweep.plan() == ("serial", 1)
    serial = fn()
    monkeypatch.setenv(sweep.JOBS_ENV, "2")
    assert sweep.plan() == ("loky", 2)
    loky = fn()
    monkeypatch.delenv(sweep.JOBS_ENV)
    return serial, loky


def _problem(n: int = 40):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 5, generator=g)
    labels = torch.randint(0, 3, (n,), generator=g)
    return x, torch.nn.functional.one_hot(labels, 3).float(), labels


def _net(seed: int) -> torch.nn.Module:
    return nets.mlp((5, 8, 3), "tanh", seed=seed, dtype=torch.float32)


def test_sharpness_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    x, y, labels = _problem()
    net, loss = _net(0), nets.square_loss
    etas = (0.1, 0.5, 0.9)
    kw = dict(steps=30, every=5, tol=1e-4, test_inputs=x, test_labels=labels, check_eta=0.5,
              check_steps=15, theta_every=5)
    serial, loky = _serial_and_loky(
        monkeypatch, lambda: stability.sharpness_runs(net, loss, x, y, etas, **kw))
    _same(serial, loky)
    eos, extra = serial
    for eta in etas:                         # the plain loop: each step size with fresh hooks
        sharp = train.sharpness_hook(loss, x, y, every=5, tol=1e-4)
        hooks: dict[str, Any] = {"sharpness": sharp}
        if eta == 0.5:
            theta = train.parameter_hook(5)
            hooks["theta"] = lambda m, k: theta(m, k) if k <= 15 else 0.0
            hooks["cold"] = cold = train.sharpness_hook(loss, x, y, every=5, tol=1e-4,
                                                        warm_start=False)
            hooks["check"] = check = train.sharpness_hook(loss, x, y, every=5, k=3, tol=1e-6,
                                                          warm_start=False)
        run = train.gd(net, loss, x, y, lr=eta, steps=30, hooks=hooks)
        _same(eos[eta]["run"], run)
        _same(eos[eta]["sharp"], sharp.result())
        assert eos[eta]["test_acc"] == train.accuracy(run.model, x, labels)
    _same(extra["theta_hook"], theta)
    _same((extra["cold"], extra["check"]), (cold.result(), check.result()))
    assert len({eos[eta]["loss"][-1] for eta in etas}) == 3   # the tasks are not one run
    assert all(eos[eta]["seconds"] > extra["check_seconds"] * (eta == 0.5) for eta in etas)


def test_lastbit_accuracies(monkeypatch: pytest.MonkeyPatch) -> None:
    x, y, labels = _problem()
    loss = nets.square_loss
    serial, loky = _serial_and_loky(monkeypatch, lambda: (
        stability.lastbit_accuracy(_net, loss, x, y, eta_edge=0.9, eta_below=0.1, ks=(1, 3),
                                   n_seeds=2, steps=8, test_inputs=x, test_labels=labels),
        stability.lastbit_accuracy_avg(_net, loss, x, y, eta=0.9, ks=(1, 3, 5), seeds=(4, 2),
                                       steps=20, last=10, every=5, test_inputs=x,
                                       test_labels=labels, record_from=5)))
    _same(serial, loky)
    acc, avg = serial
    for seed in range(2):                    # the plain loops
        for eta in (0.9, 0.1):
            ks = (1, 3) if (eta == 0.9 or seed == 0) else (1,)
            fam = train.lastbit_family(_net(seed), loss, x, y, lr=eta, steps=8, ks=ks,
                                       record_every=8, test_inputs=x, test_labels=labels)
            _same(acc[eta][seed, : len(ks)], fam.test_accuracy)
    assert acc[0.1][1, 1] == 0
    hook = lambda m, k: train.accuracy(m, x, labels) if k >= 5 else math.nan  # noqa: E731
    for i, seed in enumerate((4, 2)):
        for j, k in enumerate((1, 3, 5)):
            run = train.gd(_net(seed), loss, x, y, lr=0.9, steps=20, lastbit_k=k,
                           record_every=5, hooks={"acc": hook})
            values = np.asarray(run.history["acc"], dtype=float)[1:]     # steps 5, 10, ...
            _same(avg["history"][i, j], values)
            assert avg["mean"][i, j] == values[-3:].mean() and avg["final"][i, j] == values[-1]
    _same(avg["record_steps"], np.array([5, 10, 15, 20]))


def test_restrained_and_fft_check(monkeypatch: pytest.MonkeyPatch) -> None:
    img, label = stability.checkerboard(8), torch.ones(1, dtype=torch.float64)
    w0 = 0.01 * torch.randn(16, generator=torch.Generator().manual_seed(7),
                            dtype=torch.float64).numpy()
    c = img[0, 0, :4, :4].reshape(-1).numpy()
    c_hat = c / np.linalg.norm(c)
    big = stability.checkerboard(16)[0, 0].numpy()
    sgn = np.sign(torch.nn.functional.unfold(stability.checkerboard(16), 4)[0].T.numpy() @ c)
    n_plus, n_minus = int((sgn > 0).sum()), int((sgn < 0).sum())
    etas, lrs = (0.7, 0.95), (0.05, 0.3, 1e8)      # 1e8 overflows: the run stops early
    serial, loky = _serial_and_loky(monkeypatch, lambda: (
        stability.restrained_runs(w0, etas, 2.0, 60, 10, img, label, c_hat),
        stability.sun_toy_fft_check(100 * w0, lrs, 2.0, 40, big, c, n_plus, n_minus)))
    _same(serial, loky)
    restrained, fft = serial
    for eta in etas:                         # the plain loops
        keep = train.parameter_hook()
        train.gd(nets.SunCNN(w0, 4), nets.logistic, img, label, lr=eta, steps=60,
                 weight_decay=2.0, hooks={"w": keep})
        _same(restrained[eta]["seen"], keep.array() @ c_hat)
    fast = stability.sun_toy_runs(100 * w0, lrs, 2.0, 40, c, n_plus, n_minus)
    rel, seen = np.full((41, 3), np.nan), np.full((41, 3), np.nan)
    with np.errstate(over="ignore", invalid="ignore"):
        for j, lr in enumerate(lrs):
            w = 100 * w0.copy()
            for k in range(41):
                if not np.all(np.isfinite(w)):
                    break
                loss, g = stability.sun_full_loss_grad_fft(w, big, 2.0)
                seen[k, j] = w @ c_hat
                rel[k, j] = max(abs(loss / fast["loss"][k, j] - 1),
                                abs(seen[k, j] - fast["seen"][k, j])
                                / max(abs(fast["seen"][k, j]), 1e-300))
                w = w - lr * g
    _same((fft["rel"], fft["seen"]), (rel, seen))
    assert np.isnan(fft["seen"][-1, 2]) and not np.isnan(fft["seen"][-1, 0])


def test_flow_departure_projections(monkeypatch: pytest.MonkeyPatch) -> None:
    x, y, _ = _problem()
    x64, y64, loss = x.double(), y.double(), nets.square_loss
    model = _net(0).double()
    keep = train.parameter_hook(2)
    train.gd(model, loss, x64, y64, lr=0.9, steps=12, hooks={"t": keep})
    th = keep.array()
    fl = th * (1 + 1e-3 * np.cos(np.arange(th.shape[1])))      # a stand-in for the flow
    steps = np.asarray(keep.steps)
    dist = np.linalg.norm(th - fl, axis=1)
    c_norm = 1 + 0.1 * np.arange(len(steps))
    thetas = {"gd": th[1:], "gap": (th - fl)[1:]}
    serial, loky = _serial_and_loky(monkeypatch, lambda: stability.flow_departure(
        steps, dist, c_norm, 0.9, 6, thetas=thetas, model=model, loss_fn=loss, inputs=x64,
        targets=y64, tol=1e-6, top=4, proj_from=4))
    _same(serial, loky)
    for i, row in enumerate(th[1:]):         # the plain loop, skipping records before step 4
        if steps[1:][i] < 4:
            assert np.isnan(serial["proj"][i]).all() and serial["converged"][i]
            continue
        v, info = hessian.eigenvalues(model, loss, x64, y64, k=4, tol=1e-6, seed=i,
                                      theta=torch.from_numpy(row), return_info=True,
                                      require_convergence=False)
        gap = thetas["gap"][i]
        parts = (info.vectors.numpy().T @ gap) / max(np.linalg.norm(gap), 1e-300)
        _same(serial["proj"][i], np.sqrt(np.cumsum(parts**2)))
        _same(serial["values"][i], v.numpy())
        assert serial["converged"][i] == info.converged
    assert np.isnan(serial["proj"][0]).all() and not np.isnan(serial["proj"][-1]).any()
