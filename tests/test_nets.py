"""Tests of lib.nets: the MLP builder (bit for bit the chapters' former builders), random and
perturbed ReLU nets, tent nets, the small CNN and the losses."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as hs
from torch import nn

from lib import fp, pieces
from lib import nets as N
from lib import sawtooth as st
from lib.seeding import torch_generator

DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)


def _flat(net: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().double().flatten() for p in net.parameters()])


# ------------------------------------------------------------------ the chapters' builders, verbatim
def _eos_make_net(seed, width=50, dtype=torch.float32):
    """edge-of-stability.md's make_net (tanh MLP, PyTorch's default init from `seed`)."""
    gen = torch_generator(seed)
    sizes = (64, width, width, 10)
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = torch.nn.Linear(fan_in, fan_out, dtype=dtype)
        bound = 1 / np.sqrt(fan_in)
        with torch.no_grad():
            lin.weight.uniform_(-bound, bound, generator=gen)
            lin.bias.uniform_(-bound, bound, generator=gen)
        layers += [lin, torch.nn.Tanh()] if i < len(sizes) - 2 else [lin]
    return torch.nn.Sequential(*layers)


def _flow_make_net(act=None, scale=1.0, seed=0, widths=(64, 50, 50, 10)):
    """gd-vs-flow.md's make_net (bias-free, Xavier-normal times `scale`, float64)."""
    gen = torch_generator(seed)
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
        lin = torch.nn.Linear(fan_in, fan_out, bias=False, dtype=torch.float64)
        torch.nn.init.xavier_normal_(lin.weight, generator=gen)
        with torch.no_grad():
            lin.weight.mul_(scale)
        layers.append(lin)
        if act is not None and i < len(widths) - 2:
            layers.append(act())
    return torch.nn.Sequential(*layers)


def _same(a: nn.Module, b: nn.Module) -> bool:
    return (str(a) == str(b) and all(p.dtype == q.dtype and torch.equal(p, q)
                                     for p, q in zip(a.parameters(), b.parameters())))


@pytest.mark.parametrize("seed, width, dtype", [(0, 50, torch.float32), (3, 7, torch.float64)])
def test_mlp_is_the_edge_of_stability_builder(seed, width, dtype) -> None:
    new = N.mlp((64, width, width, 10), "tanh", init="pytorch", seed=seed, dtype=dtype)
    assert _same(new, _eos_make_net(seed, width, dtype))


@pytest.mark.parametrize("kwargs", [{}, {"scale": 0.1}, {"act": nn.ReLU},
                                    {"widths": (64, 50, 50, 1), "scale": 0.1, "seed": 1}])
def test_mlp_is_the_gd_vs_flow_builder(kwargs) -> None:
    widths = kwargs.get("widths", (64, 50, 50, 10))
    new = N.mlp(widths, kwargs.get("act"), init="xavier-normal", bias=False,
                scale=kwargs.get("scale", 1.0), seed=kwargs.get("seed", 0))
    assert _same(new, _flow_make_net(**kwargs))


def test_mlp_draws_no_global_random_numbers_and_checks_its_arguments() -> None:
    state = torch.random.get_rng_state()
    net = N.mlp([3, 4, 2], "relu", init="he", seed=2, dtype="float32", device="cpu")
    assert torch.equal(state, torch.random.get_rng_state())
    assert [type(m) for m in net] == [nn.Linear, nn.ReLU, nn.Linear]
    assert net[0].weight.dtype == torch.float32
    assert torch.equal(_flat(net), _flat(N.mlp([3, 4, 2], nn.ReLU, init="he", seed=2,
                                               dtype=torch.float32)))
    zero = N.mlp([2, 3], None, init="he-zero-bias")
    assert float(zero[0].bias.detach().abs().max()) == 0.0
    for kwargs, err in (({"widths": [3]}, ValueError), ({"widths": [3, 0]}, ValueError),
                        ({"init": "glorot"}, ValueError), ({"activation": "gelu"}, ValueError),
                        ({"activation": 3}, TypeError), ({"dtype": torch.int32}, TypeError),
                        ({"seed": -1}, ValueError), ({"scale": math.inf}, ValueError)):
        args = {"widths": [2, 2], **kwargs}
        with pytest.raises(err):
            N.mlp(args.pop("widths"), **args)


@settings(max_examples=20, deadline=None)
@given(hs.lists(hs.integers(1, 6), min_size=1, max_size=4), hs.integers(0, 10**6),
       hs.sampled_from(N.RELU_NET_INITS))
def test_random_relu_net_is_the_float64_mlp_stored_in_a_format(widths, seed, init) -> None:
    net = N.random_relu_net(widths, init, seed=seed, dtype=torch.float16)
    ref = N.mlp([1, *widths, 1], "relu", init=init, seed=seed).to(torch.float16)
    assert _same(net, ref)


@pytest.mark.parametrize("init", N.RELU_NET_INITS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_random_relu_net(init: str, dtype) -> None:
    net = N.random_relu_net([4, 3], init, seed=5, dtype=dtype)
    again = N.random_relu_net([4, 3], init, seed=5, dtype=dtype)
    other = N.random_relu_net([4, 3], init, seed=6, dtype=dtype)
    assert pieces.relu_widths(net) == [4, 3]
    assert all(p.dtype == dtype for p in net.parameters())
    flat = lambda n: torch.cat([p.detach().double().flatten() for p in n.parameters()])  # noqa: E731
    assert torch.equal(flat(net), flat(again)) and not torch.equal(flat(net), flat(other))
    first = net[0]
    if init == "pytorch":
        assert first.weight.abs().max() <= 1.0       # U(-1/sqrt(fan_in), ...) with fan_in = 1
    if init == "he-zero-bias":
        assert all(float(layer.bias.detach().abs().max()) == 0 for layer in net if isinstance(layer, nn.Linear))
    for bad in (dict(widths=[], init=init), dict(widths=[0], init=init),
                dict(widths=[2], init="xavier"), dict(widths=[2], init=init, seed=-1)):
        with pytest.raises(ValueError):
            N.random_relu_net(**bad)


def test_perturbed_net() -> None:
    base = st.yarotsky_square_net(3)
    same = N.perturbed_net(base, 0.0, seed=1)
    for a, b in zip(base.parameters(), same.parameters()):
        assert torch.equal(a, b)
    moved = N.perturbed_net(base, 1e-3, seed=1)
    for a, b in zip(base.parameters(), moved.parameters()):
        a, b = a.detach(), b.detach()
        assert torch.equal(a == 0, b == 0)                              # zeros stay zero
        assert torch.all((b - a).abs() <= 1e-3 * a.abs() * (1 + 1e-12))
    assert N.perturbed_net(base, 1e-3, seed=1, dtype=torch.float32)[0].weight.dtype == torch.float32
    with pytest.raises(ValueError):
        N.perturbed_net(base, -1.0)
    with pytest.raises(TypeError):
        N.perturbed_net(nn.Sequential(nn.Tanh()), 0.1)


def test_tent_net() -> None:
    xs = [Fraction(k, 97) for k in range(98)]
    half = N.tent_net(5, 0.5)
    assert st.net_exact(half, xs) == [st.sawtooth_exact(x, 5) for x in xs]
    assert math.isclose(fp.tent_lyapunov(0.5), math.log(2))
    assert fp.tent_lyapunov(0.3) < math.log(2)
    a = 0.3
    t = N.tent_net(1, a)
    for x in (0.1, 0.3, 0.5, 0.9, 1.2, -0.1):
        expected = x / a if 0 <= x <= a else ((1 - x) / (1 - a) if a < x <= 1 else 0.0)
        assert math.isclose(float(st.net_exact(t, x)), expected, rel_tol=1e-14, abs_tol=1e-15)
    t16 = N.tent_net(3, a, torch.float16)
    assert all(p.dtype == torch.float16 for p in t16.parameters())
    state = torch.random.get_rng_state()
    N.tent_net(4, a)
    assert torch.equal(state, torch.random.get_rng_state())  # no random numbers drawn
    for bad in (0.0, 1.0, 1.5, True, "0.3"):
        with pytest.raises(ValueError, match="apex"):
            N.tent_net(2, bad)
    with pytest.raises((TypeError, ValueError), match="depth"):
        N.tent_net(0, 0.3)


# ------------------------------------------------------------------ the small CNN and the losses
def test_sun_cnn_is_conv_swish_average() -> None:
    gen = torch_generator(7)
    w = torch.randn(16, generator=gen, dtype=torch.float64)
    img = torch.randn(2, 1, 6, 6, generator=gen, dtype=torch.float64)
    model = N.SunCNN(w, kernel=4, beta=0.5)
    z = F.conv2d(img, w.reshape(1, 1, 4, 4))
    torch.testing.assert_close(model(img), (z * torch.sigmoid(0.5 * z)).mean(dim=(1, 2, 3)),
                               rtol=0, atol=0)
    assert model.conv.bias is None and model.conv.weight.dtype == torch.float64


def test_losses() -> None:
    out = torch.tensor([[1.0, 2.0], [0.0, -1.0]], dtype=torch.float64)
    y = torch.tensor([[0.0, 2.0], [1.0, 1.0]], dtype=torch.float64)
    assert float(N.mse(out, y)) == (1 + 0 + 1 + 4) / 4
    assert float(N.square_loss(out, y)) == 0.5 * ((1 + 0) + (1 + 4)) / 2
    logits, labels = torch.tensor([0.0, 2.0]), torch.tensor([1.0, 0.0])
    expected = (math.log(2) + math.log1p(math.exp(2.0))) / 2
    assert math.isclose(float(N.logistic(logits, labels)), expected, rel_tol=1e-6)


# ------------------------------------------------------------------ issue 19: the one argument layer
def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_numeric_arguments_accept_numpy_torch_and_fraction_scalars() -> None:
    """Reference: the same call with the Python number."""
    assert _same_weights(N.mlp([2, 3, 1], scale=np.float32(0.5), seed=np.int64(2)),
                         N.mlp([2, 3, 1], scale=0.5, seed=2))
    assert _same_weights(N.mlp([torch.tensor(2), np.int64(3), 1], scale=torch.tensor(0.5)),
                         N.mlp([2, 3, 1], scale=0.5))
    assert _same_weights(N.tent_net(np.int64(3), Fraction(3, 10)), N.tent_net(3, 0.3))
    assert _same_weights(N.tent_net(torch.tensor(3), torch.tensor(0.25, dtype=torch.float64)),
                         N.tent_net(3, 0.25))
    net = st.sawtooth_net(2)
    assert _same_weights(N.perturbed_net(net, torch.tensor(0.01, dtype=torch.float64), seed=1),
                         N.perturbed_net(net, 0.01, seed=1))


@pytest.mark.parametrize("call, match", [
    (lambda: N.mlp([2, 1], scale=True), "scale"),
    (lambda: N.mlp([2, 1], scale=math.nan), "scale"),
    (lambda: N.mlp([2, 1], scale=-1.0), "scale"),
    (lambda: N.mlp([2, 1], bias="no"), "bias"),
    (lambda: N.mlp([2, True, 1]), r"widths\[1\]"),
    (lambda: N.mlp([10**5, 10**5, 10**5]), "size guard"),
    (lambda: N.perturbed_net(st.sawtooth_net(1), True), "rel"),
    (lambda: N.perturbed_net(st.sawtooth_net(1), math.inf), "rel"),
    (lambda: N.perturbed_net(st.sawtooth_net(1), 0.1, dtype="half"), "dtype"),
    (lambda: N.tent_net(3, True), "apex"),
    (lambda: N.tent_net(3, "0.3"), "apex"),
    (lambda: N.tent_net(True, 0.3), "depth"),
    (lambda: N.SunCNN(torch.zeros(16), kernel=True), "kernel"),
    (lambda: N.SunCNN(torch.zeros(16), beta=True), "beta"),
    (lambda: N.SunCNN(torch.zeros(15)), "weight must hold kernel\\*\\*2 = 16"),
    (lambda: N.SunCNN("abcd"), "weight"),
    (lambda: N.SunCNN(torch.zeros(16, dtype=torch.bool)), "weight"),
])
def test_bad_numeric_arguments_are_refused_naming_them(call, match) -> None:
    with pytest.raises((TypeError, ValueError), match=match):
        call()


def test_losses_refuse_a_silent_broadcast_and_keep_nan() -> None:
    """(n, 1) outputs against (n,) targets would average n^2 differences; the reference for the
    accepted cases is the formula written out."""
    out, y = torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([1.0, 2.0, 4.0])
    for loss in (N.mse, N.square_loss):
        with pytest.raises(ValueError, match="does not match out"):
            loss(out, y)
    assert N.mse(out, y.reshape(-1, 1)).item() == pytest.approx(1 / 3)
    assert N.mse(out, torch.tensor(1.0)).item() == pytest.approx((0 + 1 + 4) / 3)
    assert math.isnan(N.mse(torch.tensor([[math.nan], [1.0]]), torch.zeros(2, 1)).item())
    assert math.isnan(N.square_loss(torch.tensor([[math.nan], [1.0]]), torch.zeros(2, 1)).item())
    with pytest.raises(TypeError, match="tensors"):
        N.mse(out, [1.0, 2.0, 3.0])


# --------------------------------------------------------------------------- guards (issue 19)
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_sun_cnn_refuses_a_non_finite_weight(bad) -> None:
    with pytest.raises(ValueError, match="weight must be finite"):
        N.SunCNN(np.array([bad, 1.0, 1.0, 1.0]), kernel=2)
