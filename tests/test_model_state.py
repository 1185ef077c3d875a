"""Functions that evaluate a model never change it (issue 19): the policy of the dynamics floor
is to evaluate in eval mode (``lib.hessian.evaluation_mode``) and restore every module's
``training`` flag.  A model with a train-mode BatchNorm1d and Dropout (and a frozen parameter)
goes through every evaluating entry point twice: the results are identical, the state_dict is
unchanged bit for bit (running statistics and ``num_batches_tracked`` included), and the
``training`` and ``requires_grad`` flags are what they were.  One test compares the policy's
number with an independent computation (``torch.autograd.functional.hessian`` of the loss of an
eval-mode copy, eigenvalues by ``numpy.linalg.eigvalsh``)."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from lib import approx, flows, hessian, stability, train

MSE = nn.MSELoss()


def _model() -> nn.Sequential:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(1, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Dropout(0.5),
                          nn.Linear(5, 1)).double()
    with torch.no_grad():     # running statistics away from their defaults (0 and 1)
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    model[4].bias.requires_grad_(False)     # a frozen parameter stays frozen
    return model.train()


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(4)
    x = torch.linspace(-1, 1, 12, dtype=torch.float64).reshape(-1, 1)
    return x, torch.sin(3 * x) + 0.1 * torch.randn(12, 1, generator=g, dtype=torch.float64)


def _p(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _rows(model: nn.Module) -> np.ndarray:
    theta = hessian.flatten_parameters(model).numpy()
    return np.stack([theta, theta + 0.01])


CALLS = {
    "eigenvalues": lambda m, x, y: hessian.eigenvalues(m, MSE, x, y, k=2),
    "eigenvalues-both-func": lambda m, x, y: hessian.eigenvalues(m, MSE, x, y, which="both",
                                                                 method="func"),
    "hvp": lambda m, x, y: hessian.hvp(m, MSE, x, y, torch.ones(_p(m), dtype=torch.float64)),
    "dense_hessian": lambda m, x, y: hessian.dense_hessian(m, MSE, x, y),
    "loss_and_grad": lambda m, x, y: hessian.FlatLoss(m, MSE, x, y).loss_and_grad()[1],
    "eigenvalues_along": lambda m, x, y: hessian.eigenvalues_along(m, MSE, x, y,
                                                                   _rows(m)).values,
    "sharpness_along": lambda m, x, y: train.sharpness_along(m, MSE, x, y, _rows(m))["sharpness"],
    # gd trains a copy in the model's own mode (Dropout active, from torch's global generator)
    "gd+sharpness_hook": lambda m, x, y: (torch.manual_seed(0), train.gd(
        m, MSE, x, y, lr=0.05, steps=2,
        hooks={"s": train.sharpness_hook(MSE, x, y)}).history["s"])[1],
    "accuracy": lambda m, x, y: np.array([train.accuracy(m, x, torch.zeros(12, dtype=torch.long))]),
    "gradient_flow": lambda m, x, y: flows.gradient_flow(m, MSE, x, y, [0.0, 0.2], rtol=1e-8,
                                                         atol=1e-10),
    "gradient_descent": lambda m, x, y: flows.gradient_descent(m, MSE, x, y, steps=3, eta=0.05),
    "fixed_step_flow": lambda m, x, y: flows.fixed_step_flow(m, MSE, x, y, [0.1], 0.05),
    "first_order_gap": lambda m, x, y: flows.first_order_gap(m, MSE, x, y, [0.0, 0.1]).C,
    "curvature_along": lambda m, x, y: flows.curvature_along(m, MSE, x, y, _rows(m),
                                                             times=[0.0, 1.0]).lam_min,
    "top2_along": lambda m, x, y: (torch.manual_seed(0), stability.top2_along(
        m, MSE, x, y, eta=0.05, start=1, stop=2, every=1)["values"])[1],
    "ntk_gram": lambda m, x, y: approx.ntk_gram(m, x),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_evaluating_a_train_mode_batchnorm_dropout_model_leaves_it_unchanged(name: str) -> None:
    model, (x, y) = _model(), _data()
    state = copy.deepcopy(model.state_dict())
    flags = [m.training for m in model.modules()]
    grads = [p.requires_grad for p in model.parameters()]
    first = np.asarray(CALLS[name](model, x, y), dtype=np.float64)
    second = np.asarray(CALLS[name](model, x, y), dtype=np.float64)
    np.testing.assert_array_equal(first, second)   # Dropout did not make it random
    after = model.state_dict()
    assert after.keys() == state.keys()
    for key, value in state.items():                # bit for bit, buffers included
        assert after[key].dtype == value.dtype and torch.equal(after[key], value), key
    assert [m.training for m in model.modules()] == flags
    assert [p.requires_grad for p in model.parameters()] == grads


def test_the_policy_is_the_eval_mode_loss_against_autograd_functional_hessian() -> None:
    """Independent reference: the dense Hessian of the eval-mode loss by
    ``torch.autograd.functional.hessian`` on a deep copy, its eigenvalues by NumPy."""
    model, (x, y) = _model(), _data()
    ref = copy.deepcopy(model).eval()
    params = [p for p in ref.parameters() if p.requires_grad]
    shapes = [p.shape for p in params]
    theta0 = torch.cat([p.detach().reshape(-1) for p in params])

    def loss(theta: torch.Tensor) -> torch.Tensor:
        pieces, i = [], 0
        for s in shapes:
            n = int(np.prod(s))
            pieces.append(theta[i:i + n].reshape(s))
            i += n
        names = [n for n, p in ref.named_parameters() if p.requires_grad]
        return MSE(torch.func.functional_call(ref, dict(zip(names, pieces)), (x,)), y)

    dense = torch.autograd.functional.hessian(loss, theta0).numpy()
    top = np.linalg.eigvalsh(dense)[::-1][:2]
    got = hessian.eigenvalues(model, MSE, x, y, k=2).numpy()
    np.testing.assert_allclose(got, top, rtol=1e-8)
    assert model.training                           # and the model is back in train mode


def test_evaluation_mode_restores_the_flags_after_an_error() -> None:
    model = _model()
    model[3].eval()                                 # mixed flags: one submodule already in eval
    flags = [m.training for m in model.modules()]
    with pytest.raises(RuntimeError, match="boom"), hessian.evaluation_mode(model):
        assert not any(m.training for m in model.modules())
        raise RuntimeError("boom")
    assert [m.training for m in model.modules()] == flags


def test_top_eigenvalues_is_eigenvalues_top_on_a_closed_form() -> None:
    """hessian.top_eigenvalues (the name the issues use) on 0.5 * out^T A out for a bias-free
    Linear(3, 1) fed the identity (out = its weights): the Hessian is A exactly (numpy)."""
    import numpy as np
    import torch
    from torch import nn

    from lib import hessian

    a = np.array([[3.0, 1.0, 0.0], [1.0, 2.0, 0.5], [0.0, 0.5, -4.0]])
    model = nn.Linear(3, 1, bias=False).double()
    inputs = torch.eye(3, dtype=torch.float64)

    def loss_fn(out: torch.Tensor, _targets: torch.Tensor) -> torch.Tensor:
        w = out.reshape(-1)
        return 0.5 * w @ torch.as_tensor(a) @ w

    vals = hessian.top_eigenvalues(model, loss_fn, inputs, torch.zeros(3, 1, dtype=torch.float64), k=2)
    expect = np.sort(np.linalg.eigvalsh(a))[::-1][:2]
    np.testing.assert_allclose(vals.numpy(), expect, rtol=1e-9)
    both = hessian.eigenvalues(model, loss_fn, inputs, torch.zeros(3, 1, dtype=torch.float64), 2)
    assert torch.equal(vals, both)
