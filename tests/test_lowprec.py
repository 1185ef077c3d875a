"""Tests of lib.lowprec: GD computed in a format and in mixed precision."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from lib import fp, lowprec, nets, pieces
from lib import sawtooth as saw


def _data(depth: int, n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    xr = fp.random_reals(n, seed=3)
    x = fp.round_to_format(xr, torch.float64)
    y = fp.round_to_format([saw.sawtooth_exact(v, depth) for v in xr], torch.float64)
    return x, y


def test_modes_and_their_dtypes() -> None:
    assert lowprec.mode_dtypes("float16") == (torch.float16, torch.float16)
    assert lowprec.mode_dtypes("mixed-bfloat16") == (torch.float32, torch.bfloat16)
    assert lowprec.mode_dtypes("float64") == (torch.float64, torch.float64)
    with pytest.raises(ValueError, match="mode"):
        lowprec.mode_dtypes("float8")


@pytest.mark.parametrize("mode", lowprec.MODES)
def test_exact_start_at_format_data_does_not_move(mode: str) -> None:
    # targets g_L of the inputs *as rounded to the format*: loss 0, gradient 0, nothing moves
    _, low = lowprec.mode_dtypes(mode)
    x = fp.round_to_format(fp.random_reals(32, seed=1), low).to(torch.float64)
    y = saw.sawtooth(x, 5)
    run = lowprec.train_in_format(saw.sawtooth_net(5), x, y, mode, lr=1e-3, steps=3, depth=5)
    h = run.history
    assert h["step"].tolist() == [0, 1, 2, 3]
    assert h["loss"].tolist() == [0.0] * 4 and h["drift"].tolist() == [0.0] * 4
    assert h["pieces"].tolist() == [32] * 4 and h["visible"].tolist() == [32] * 4
    assert not run.dead and run.steps_done == 3


def test_one_float16_step_equals_the_float64_step_rounded_as_specified() -> None:
    L = 9                                               # beyond float16's L_f: the loss is not 0
    x, y = _data(L)
    net = nets.perturbed_net(saw.sawtooth_net(L), 1e-2, seed=0, dtype=torch.float16)
    lr = 2.0**-20                                       # below float16's range: must not flush
    run = lowprec.train_in_format(net, x, y, "float16", lr=lr, steps=1, depth=L)
    # reference: the float16 gradient (forward/backward in float16), the step in float64 arithmetic
    ref = fp.to_format(net, torch.float16)
    loss = nets.mse(ref(fp.round_to_format(x, torch.float16).reshape(-1, 1)),
                    fp.round_to_format(y, torch.float16).reshape(-1, 1))
    grads = torch.autograd.grad(loss, list(ref.parameters()))
    moved = 0
    for p, g, q in zip(ref.parameters(), grads, run.model.parameters()):
        # fl_32(eta g) is exact here (eta a power of two); fl_d(fl_32(p - u)) = fl_d(p - u) unless
        # p - u needs more than 24 bits, which the double rounding test below would catch
        want = fp.round_to_format(p.detach().double() - lr * g.double(), torch.float16)
        assert torch.equal(q.detach(), want)
        moved += int((q != p).sum())
    assert moved > 0 and q.dtype == torch.float16


def test_mixed_precision_keeps_a_float32_master() -> None:
    L = 9
    x, y = _data(L)
    run = lowprec.train_in_format(saw.sawtooth_net(L), x, y, "mixed-float16", lr=2.0**-20, steps=2,
                                  depth=L)
    assert all(p.dtype == torch.float32 for p in run.model.parameters())
    # the master holds values float16 cannot: updates below float16's resolution accumulate
    off = [p for p in run.model.parameters() if not torch.equal(p, p.to(torch.float16).float())]
    assert off and run.history["drift"][-1] > 0
    pure = lowprec.train_in_format(saw.sawtooth_net(L), x, y, "float16", lr=2.0**-20, steps=2, depth=L)
    assert all(p.dtype == torch.float16 for p in pure.model.parameters())


def test_pieces_are_counted_on_the_stored_network() -> None:
    L = 6
    x, y = _data(L)
    net = nets.perturbed_net(saw.sawtooth_net(L), 1e-3, seed=2)
    run = lowprec.train_in_format(net, x, y, "bfloat16", lr=1e-4, steps=2, depth=L, record_every=2)
    assert run.history["pieces"][-1] == pieces.count_pieces(run.model)
    assert run.history["visible"][-1] == pieces.count_visible(run.model, L)
    assert run.history["pieces"][0] == pieces.count_pieces(fp.to_format(net, torch.bfloat16))


def test_square_errors_of_yarotsky_are_exact() -> None:
    for m in (1, 3, 5):
        e = lowprec.square_errors(saw.yarotsky_square_net(m))
        assert e["sup"] == 2.0 ** (-2 * m - 2)
    x = fp.round_to_format(fp.random_reals(16, seed=0), torch.float64)
    run = lowprec.train_in_format(saw.yarotsky_square_net(3), x, x**2, "float32", lr=1e-2, steps=2,
                                  depth=3, record_every=1, square=True)
    assert len(run.history["sup"]) == 3 and run.history["sup"][0] == 2.0**-8
    assert run.history["l2"][0] == pytest.approx(lowprec.square_errors(saw.yarotsky_square_net(3))["l2"])


def test_a_dead_network_is_reported_not_an_error() -> None:
    net = saw.sawtooth_net(2)
    with torch.no_grad():       # every first-layer neuron off on [0, 1]: only the output bias trains
        net[0].bias.fill_(-10.0)
    x, y = _data(2)
    run = lowprec.train_in_format(net, x, y, "float32", lr=1e-9, steps=1, depth=2)
    assert run.dead and run.history["pieces"].tolist() == [1, 1]
    assert lowprec.is_dead(saw.sawtooth_net(2)) is False


def test_divergence_is_reported() -> None:
    x, y = _data(3)
    run = lowprec.train_in_format(saw.yarotsky_square_net(3), x, x**2 + 1, "float16", lr=1e4,
                                  steps=50, depth=3)
    assert run.diverged_at is not None
    assert run.steps_done == run.diverged_at and not math.isfinite(run.history["loss"][-1])


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"mode": "int8"}, ValueError, "mode"), ({"mode": None}, ValueError, "mode"),
    ({"lr": 0.0}, ValueError, "lr"), ({"lr": -1.0}, ValueError, "lr"),
    ({"depth": 0}, ValueError, "depth"), ({"steps": -1}, ValueError, "steps"),
    ({"record_every": 0}, ValueError, "record_every"),
    ({"net": nn.Sequential(nn.Linear(1, 2), nn.Tanh(), nn.Linear(2, 1))}, TypeError, "net"),
    ({"net": nn.Linear(1, 1)}, TypeError, "net"),
    ({"net": nn.Sequential(nn.Linear(2, 1))}, ValueError, "scalar input"),
    ({"x": np.zeros(3)}, TypeError, "x"),
    ({"y": torch.zeros(3, dtype=torch.float32)}, TypeError, "y"),
    ({"y": torch.zeros(5, dtype=torch.float64)}, ValueError, "same"),
])
def test_bad_input_names_the_argument(kwargs: dict, exc: type, match: str) -> None:
    args = {"net": saw.sawtooth_net(2), "x": torch.zeros(3, dtype=torch.float64),
            "y": torch.zeros(3, dtype=torch.float64), "mode": "float16", "lr": 1e-3, "steps": 1,
            "depth": 2, "record_every": 1}
    args.update(kwargs)
    net, x, y, mode = args.pop("net"), args.pop("x"), args.pop("y"), args.pop("mode")
    with pytest.raises(exc, match=match):
        lowprec.train_in_format(net, x, y, mode, **args)


def test_format_data_rounds_like_train_in_format() -> None:
    x, y = _data(6)
    xr, yr = lowprec.format_data(x, y, "mixed-bfloat16")
    assert xr.dtype == torch.float64 and xr.shape == (32, 1)
    assert torch.equal(xr, fp.round_to_format(x, torch.bfloat16).to(torch.float64).reshape(-1, 1))
    assert torch.equal(yr, fp.round_to_format(y, torch.bfloat16).to(torch.float64).reshape(-1, 1))
    assert torch.equal(lowprec.format_data(x, y, "float64")[0], x.reshape(-1, 1))
    with pytest.raises(ValueError, match="mode"):
        lowprec.format_data(x, y, "float8")
    with pytest.raises(TypeError, match="x"):
        lowprec.format_data(x.float(), y, "float16")


def test_data_floor_is_zero_in_float64_and_grows_with_depth() -> None:
    xr = fp.random_reals(256, seed=8)
    x = fp.round_to_format(xr, torch.float64)
    floors = []
    for L in (4, 10, 14):
        y = fp.round_to_format([saw.sawtooth_exact(v, L) for v in xr], torch.float64)
        assert lowprec.data_floor(saw.sawtooth_net(L), x, y, "float64") < 1e-20
        floors.append(lowprec.data_floor(saw.sawtooth_net(L), x, y, "float16"))
    assert floors[0] < 1e-5 < floors[1] < floors[2]      # the rounded input loses g_L with depth
    assert floors[2] > 1 / 24                             # beyond p: worse than half the constant's loss
    with pytest.raises(ValueError, match="mode"):
        lowprec.data_floor(saw.sawtooth_net(4), x, y, "int8")


def test_crossings_recorded_match_fpstudy() -> None:
    from lib import fpstudy
    L = 5
    x, y = _data(L)
    start = nets.perturbed_net(saw.sawtooth_net(L), 0.05, seed=1)
    run = lowprec.train_in_format(start, x, y, "float64", lr=1e-3, steps=2, depth=L)
    assert run.history["crossings"][0] == fpstudy.half_crossings(start)
    assert run.history["crossings"][-1] == fpstudy.half_crossings(run.model)
    exact = lowprec.train_in_format(saw.sawtooth_net(L), x, y, "float64", lr=1e-3, steps=0, depth=L)
    assert exact.history["crossings"][0] == 2**L
