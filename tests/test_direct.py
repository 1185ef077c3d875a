"""Direct tests of public helpers that had none, each against something independent.

* ``hessian.FlatLoss.as_vector`` and ``hessian.hvp_operator_from_loss``: a loss written here
  (no ``lib``), its dense Hessian by ``torch.autograd.functional.hessian`` and central finite
  differences of its gradient;
* ``sawtooth.uniform_knots``: the definition with ``Fraction``;
* ``sawtooth.PLFit.l2_error``, ``sawtooth.ShallowBounds.lower`` / ``upper``: adaptive
  quadrature (``scipy.integrate.quad``) of ``(p - g_k)^2`` with ``g_k`` iterated here in
  floats, and the closed form of the lower bound;
* ``bookbuild.cache_path``: the path spelled out literally;
* ``plotting.use_book_style``: literal rcParams values;
* ``flows.objective_loss``: the output itself and its autograd gradient against a closed form.

Not tested here because nothing in ``book/``, ``src/`` or ``tests/`` uses them (candidates for
removal): ``fp.Reference.values_float`` / ``grad_float`` and ``hessian.FlatLoss.hvp``.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib as mpl  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from scipy.integrate import quad  # noqa: E402
from torch import nn  # noqa: E402

from lib import bookbuild, flows, hessian, plotting  # noqa: E402
from lib import sawtooth as S  # noqa: E402


# ----------------------------------------------------------------------------- hessian
def _net_problem(seed: int = 0):
    """A 2-4-1 softplus net (17 parameters) with the mean squared error on 10 points, float64
    (written out, not ``nn.MSELoss``: see :func:`test_func_jvp_with_nn_mseloss`)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(10, 2, generator=g, dtype=torch.float64)
    y = torch.randn(10, 1, generator=g, dtype=torch.float64)
    model = nn.Sequential(nn.Linear(2, 4), nn.Softplus(), nn.Linear(4, 1)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    return model, _mse, x, y


def _mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((out - y) ** 2).mean()


def _own_loss(theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The same loss written here: theta = [W1 (4x2), b1 (4), W2 (1x4), b2 (1)]."""
    w1, b1 = theta[:8].reshape(4, 2), theta[8:12]
    w2, b2 = theta[12:16].reshape(1, 4), theta[16]
    out = torch.nn.functional.softplus(x @ w1.T + b1) @ w2.T + b2
    return ((out - y) ** 2).mean()


def _own_grad(theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    leaf = theta.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(_own_loss(leaf, x, y), leaf)
    return g


def test_as_vector_none_array_and_bad_shape() -> None:
    model, mse, x, y = _net_problem()
    flat = hessian.FlatLoss(model, mse, x, y)
    own = torch.cat([model[0].weight.detach().reshape(-1), model[0].bias.detach(),
                     model[2].weight.detach().reshape(-1), model[2].bias.detach()])
    torch.testing.assert_close(flat.as_vector(None), own, rtol=0, atol=0)
    arr = np.linspace(-1, 1, 17, dtype=np.float32)
    v = flat.as_vector(arr)
    assert v.dtype == torch.float64 and v.shape == (17,)
    np.testing.assert_array_equal(v.numpy(), arr.astype(np.float64))
    assert flat.loss(arr) == pytest.approx(float(_own_loss(v, x, y)), rel=1e-15)
    for bad in (np.zeros(16), np.zeros((17, 1)), np.zeros((1, 17))):
        with pytest.raises(ValueError, match="theta"):
            flat.as_vector(bad)


@pytest.mark.parametrize("method", hessian.HVP_METHODS)
def test_hvp_operator_from_loss_matches_the_dense_hessian(method: str) -> None:
    """``op(v)`` equals ``H v`` of the dense Hessian of the loss written here, at theta0
    (``theta=None``) and at another point; ``op.grad`` equals the gradient; the product also
    matches central differences of the gradient."""
    model, mse, x, y = _net_problem(1)
    flat = hessian.FlatLoss(model, mse, x, y)
    gen = torch.Generator().manual_seed(5)
    other = torch.randn(17, generator=gen, dtype=torch.float64)
    for theta in (None, other):
        at = flat.theta0 if theta is None else other
        dense = torch.autograd.functional.hessian(lambda th: _own_loss(th, x, y), at)
        op = hessian.hvp_operator_from_loss(flat, theta, method=method)
        torch.testing.assert_close(op.grad, _own_grad(at, x, y), rtol=1e-12, atol=1e-14)
        for _ in range(3):
            v = torch.randn(17, generator=gen, dtype=torch.float64)
            hv = op(v)
            torch.testing.assert_close(hv, dense @ v, rtol=1e-10, atol=1e-12)
            h = 1e-5
            fd = (_own_grad(at + h * v, x, y) - _own_grad(at - h * v, x, y)) / (2 * h)
            torch.testing.assert_close(hv, fd, rtol=1e-5, atol=1e-7)
        assert op.n_calls == 3
        # a float32 vector is accepted and the product is in the loss's dtype
        assert op(v.float()).dtype == torch.float64
    assert flat.n_hvp == 8


@pytest.mark.xfail(strict=True, raises=RuntimeError,
                   reason="torch 2.13: forward-over-reverse through F.mse_loss raises 'ZeroTensors "
                          "are immutable'; lib.hessian's func_jvp inherits it (reported)")
def test_func_jvp_with_nn_mseloss() -> None:
    """``method="func_jvp"`` with ``nn.MSELoss`` should give the dense Hessian's product."""
    model, _, x, y = _net_problem(2)
    flat = hessian.FlatLoss(model, nn.MSELoss(), x, y)
    v = torch.ones(17, dtype=torch.float64)
    dense = torch.autograd.functional.hessian(lambda th: _own_loss(th, x, y), flat.theta0)
    torch.testing.assert_close(hessian.hvp_operator_from_loss(flat, None, "func_jvp")(v),
                               dense @ v, rtol=1e-10, atol=1e-12)


def test_hvp_operator_from_loss_rejects_a_bad_method_and_vector() -> None:
    model, mse, x, y = _net_problem()
    flat = hessian.FlatLoss(model, mse, x, y)
    with pytest.raises(ValueError, match="method"):
        hessian.hvp_operator_from_loss(flat, None, method="finite_differences")
    op = hessian.hvp_operator_from_loss(flat)
    with pytest.raises(ValueError, match="v must"):
        op(torch.zeros(16, dtype=torch.float64))
    with pytest.raises(ValueError, match="theta"):
        hessian.hvp_operator_from_loss(flat, np.zeros(3))


# ----------------------------------------------------------------------------- sawtooth
def test_uniform_knots_definition_and_guards() -> None:
    for p in (1, 2, 3, 7, 64):
        knots = S.uniform_knots(p)
        assert knots == [Fraction(i, p) for i in range(p + 1)]
        assert all(isinstance(k, Fraction) for k in knots)
    assert S.uniform_knots(np.int64(4)) == [0, Fraction(1, 4), Fraction(1, 2), Fraction(3, 4), 1]
    for bad in (0, -2):
        with pytest.raises(ValueError, match="pieces"):
            S.uniform_knots(bad)
    for bad in (1.0, True, "3", None):
        with pytest.raises((ValueError, TypeError), match="pieces"):
            S.uniform_knots(bad)


def _g_float(x: float, depth: int) -> float:
    """``g_depth``: the hat map ``2 min(x, 1 - x)`` iterated in floats (exact on dyadics)."""
    for _ in range(depth):
        x = 2.0 * min(x, 1.0 - x)
    return x


def _l2_by_quadrature(depth: int, knots, values) -> float:
    """``||p - g_depth||_{L2[0,1]}`` by scipy.integrate.quad on every cell between the merged
    breakpoints of p and g_depth (the integrand is a polynomial there)."""
    kn = [float(t) for t in knots]
    va = [float(v) for v in values]
    breaks = sorted(set(kn) | {i / 2**depth for i in range(2**depth + 1)})
    total = 0.0
    for a, b in zip(breaks, breaks[1:]):
        val, _ = quad(lambda t: (np.interp(t, kn, va) - _g_float(t, depth)) ** 2, a, b,
                      epsabs=1e-15, epsrel=1e-13)
        total += val
    return math.sqrt(total)


def test_pl_fit_l2_error_closed_form_and_quadrature() -> None:
    # the best affine fit of the tent g_1 on [0, 1] is the constant 1/2: error sqrt(1/12)
    fit = S.best_pl_fit(1, [0, 1])
    assert fit.l2_error == pytest.approx(math.sqrt(1 / 12), rel=1e-15)
    assert float(fit(Fraction(1, 3))) == pytest.approx(0.5, abs=1e-15)
    for depth, knots in ((2, [0, Fraction(1, 3), 1]), (3, S.uniform_knots(3)),
                         (4, [0, Fraction(1, 7), Fraction(2, 5), Fraction(9, 10), 1])):
        fit = S.best_pl_fit(depth, knots)
        assert 0.01 < fit.l2_error < 0.3
        assert fit.l2_error == pytest.approx(_l2_by_quadrature(depth, fit.knots, fit.values),
                                             rel=1e-9)


@pytest.mark.parametrize("depth, width, lower_sq", [(3, 1, Fraction(1, 16)), (3, 2, Fraction(1, 24)),
                                                    (4, 3, Fraction(5, 96)), (4, 8, Fraction(0))])
def test_shallow_bounds_lower_upper(depth: int, width: int, lower_sq: Fraction) -> None:
    """``lower``: the closed form ``sqrt((1/12) max(0, 1 - W / 2^(k-1)))`` worked out by hand
    per case; ``upper``: the L2 error of ``upper_fit`` by quadrature; and no continuous PL
    function with ``W + 1`` pieces found here (random breakpoints, its values fitted by least
    squares on a fine grid) beats ``lower``."""
    b = S.shallow_fit_bounds(depth, width)
    assert b.lower == pytest.approx(math.sqrt(lower_sq), rel=1e-15, abs=0)
    assert b.upper == pytest.approx(_l2_by_quadrature(depth, b.upper_fit.knots, b.upper_fit.values),
                                    rel=1e-9, abs=1e-12)
    assert b.upper_fit.pieces == min(width, 2**depth)
    assert b.lower <= b.upper
    grid = np.linspace(0, 1, 2**12 + 1)
    g = np.array([_g_float(t, depth) for t in grid])
    rng = np.random.default_rng(depth * 100 + width)
    for _ in range(30):
        knots = np.concatenate([[0.0], np.sort(rng.uniform(0, 1, width)), [1.0]])  # W+1 pieces
        basis = np.stack([np.interp(grid, knots, e) for e in np.eye(len(knots))], axis=1)
        coef = np.linalg.lstsq(basis, g, rcond=None)[0]
        r = basis @ coef - g
        l2 = math.sqrt(np.trapezoid(r * r, grid))
        assert l2 >= b.lower - 1e-3


# ----------------------------------------------------------------------------- bookbuild
def test_cache_path_spelled_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = "0123456789abcdef"
    assert bookbuild.cache_path(tmp_path, "paper", key) == tmp_path / ".jupyter_cache" / f"paper-{key}"
    assert bookbuild.cache_path(str(tmp_path), "quick", key) == tmp_path / ".jupyter_cache" / f"quick-{key}"
    # defaults: the profile from BOOK_PROFILE, the key 16 hex digits that depend on the profile
    monkeypatch.setenv("BOOK_PROFILE", "paper")
    paper = bookbuild.cache_path(tmp_path)
    monkeypatch.setenv("BOOK_PROFILE", "quick")
    quick = bookbuild.cache_path(tmp_path)
    for path, profile in ((paper, "paper"), (quick, "quick")):
        assert path.parent == tmp_path / ".jupyter_cache"
        assert re.fullmatch(profile + r"-[0-9a-f]{16}", path.name), path.name
    assert paper.name[-16:] != quick.name[-16:]
    assert bookbuild.cache_path(tmp_path, "paper") == paper  # same key when asked again
    for bad_key in ("0123456789ABCDEF", "0123456789abcde", 123):
        with pytest.raises(ValueError, match="key"):
            bookbuild.cache_path(tmp_path, "quick", bad_key)
    with pytest.raises(ValueError, match="profile"):
        bookbuild.cache_path(tmp_path, "Paper", key)


# ----------------------------------------------------------------------------- plotting
def test_use_book_style_sets_the_rcparams(monkeypatch: pytest.MonkeyPatch) -> None:
    with mpl.rc_context():
        mpl.rcdefaults()
        plotting.use_book_style()
        rc = mpl.rcParams
        assert list(rc["figure.figsize"]) == [6.4, 3.4]
        assert rc["savefig.dpi"] == 150 and rc["savefig.bbox"] == "tight"
        assert rc["axes.spines.top"] is False and rc["axes.spines.right"] is False
        assert rc["axes.grid"] is True and rc["figure.constrained_layout.use"] is True
        assert rc["mathtext.fontset"] == "cm" and rc["legend.frameon"] is False
        assert rc["axes.prop_cycle"].by_key()["color"][:3] == ["#0072B2", "#D55E00", "#009E73"]
        before = dict(rc)
        plotting.use_book_style()  # idempotent
        assert dict(mpl.rcParams) == before
        # under IPython it also asks for retina figures
        calls = []
        import IPython
        import matplotlib_inline.backend_inline as inline

        monkeypatch.setattr(IPython, "get_ipython", lambda: object())
        monkeypatch.setattr(inline, "set_matplotlib_formats", lambda *a, **k: calls.append(a))
        plotting.use_book_style()
        assert calls == [("retina",)]


# ----------------------------------------------------------------------------- flows
def test_objective_loss_is_the_output_and_passes_its_gradient() -> None:
    out = flows.objective_loss(torch.tensor([[2.5]], dtype=torch.float64), torch.zeros(3))
    assert out.shape == () and out.item() == 2.5
    assert flows.objective_loss(torch.tensor(2.5), torch.ones(1)).item() == 2.5  # targets ignored
    # through as_problem: f(theta) = theta_0^3 - 2 theta_0 theta_1, gradient by hand
    model, loss_fn, inputs, targets = flows.as_problem(lambda th: th[0] ** 3 - 2 * th[0] * th[1],
                                                       [1.5, -0.5])
    assert loss_fn is flows.objective_loss
    loss = loss_fn(model(inputs), targets)
    assert loss.item() == pytest.approx(1.5**3 - 2 * 1.5 * -0.5, rel=1e-15)
    (grad,) = torch.autograd.grad(loss, [model.theta])
    np.testing.assert_allclose(grad.numpy(), [3 * 1.5**2 + 1.0, -3.0], rtol=1e-15)


def test_flat_loss_hvp_is_the_dense_hessian_times_v() -> None:
    """``FlatLoss.hvp(theta, v)`` equals the dense Hessian (autograd on the loss written here)
    times ``v``, at the model's parameters and at another point."""
    model, mse, x, y = _net_problem(2)
    flat = hessian.FlatLoss(model, mse, x, y)
    gen = torch.Generator().manual_seed(7)
    v = torch.randn(17, generator=gen, dtype=torch.float64)
    other = torch.randn(17, generator=gen, dtype=torch.float64)
    for theta in (None, other):
        at = flat.theta0 if theta is None else other
        dense = torch.autograd.functional.hessian(lambda th: _own_loss(th, x, y), at)
        torch.testing.assert_close(flat.hvp(theta, v), dense @ v, rtol=1e-10, atol=1e-12)


def test_reference_values_and_grad_as_floats() -> None:
    """``Reference.values_float``/``grad_float`` are the exact Fractions rounded once to float64
    (``float(Fraction)`` rounds correctly), on a 1-3-1 net with dyadic weights, checked against
    values and a gradient computed here by hand in Fractions."""
    from fractions import Fraction

    from lib import fp

    net = nn.Sequential(nn.Linear(1, 1), nn.ReLU(), nn.Linear(1, 1)).double()
    with torch.no_grad():
        net[0].weight.fill_(0.75)
        net[0].bias.fill_(-0.25)
        net[2].weight.fill_(1.5)
        net[2].bias.fill_(0.125)
    xs = [Fraction(1, 3), Fraction(1, 7)]   # rounded to float64 by the reference
    xf = [Fraction(float(x)) for x in xs]
    ys = [Fraction(0), Fraction(1)]
    ref = fp.reference(net, [float(x) for x in xs], objective="mse",
                       targets=[float(t) for t in ys], arithmetic="exact")
    w1, b1, w2, b2 = Fraction(3, 4), Fraction(-1, 4), Fraction(3, 2), Fraction(1, 8)
    pre = [w1 * x + b1 for x in xf]
    h = [max(p, Fraction(0)) for p in pre]
    out = [w2 * a + b2 for a in h]
    assert ref.values == out
    np.testing.assert_array_equal(ref.values_float(), np.array([float(o) for o in out]))
    assert ref.values_float().dtype == np.float64
    grad = np.array([float(g) for g in ref.grad])
    np.testing.assert_array_equal(ref.grad_float(), grad)
    assert len(ref.grad_float()) == 4
