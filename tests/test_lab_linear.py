"""The lab's losses and the linear classifier's hand-derived gradients (CS231n's optimization notes)."""

import pytest
import torch
import torch.nn.functional as F

from evoprop.lab.gradcheck import relative_error
from evoprop.lab.linear import (linear_classifier, scores, set_weights, softmax_loss_grad, svm_loss_grad,
                                weights_of)
from evoprop.lab.losses import accuracy, get_loss, softmax_loss, svm_loss
from evoprop.errors import ConfigError


@pytest.fixture(scope="module")
def small(mnist_small):
    """30 MNIST examples in float64 and a random W (10 x 785) large enough for non-trivial margins."""
    x, y = mnist_small
    g = torch.Generator().manual_seed(0)
    W = 0.01 * torch.randn(10, 785, generator=g, dtype=torch.float64)
    return x[:30].double(), y[:30], W


def numerical_gradient(f, W, coords, h=1e-5):
    """Centred differences of f at W for the flat indices ``coords``."""
    grad = torch.zeros_like(W).view(-1)
    flat = W.clone().view(-1)
    for i in coords:
        old = flat[i].item()
        flat[i] = old + h
        plus = float(f(flat.view_as(W)))
        flat[i] = old - h
        minus = float(f(flat.view_as(W)))
        flat[i] = old
        grad[i] = (plus - minus) / (2 * h)
    return grad


def naive_svm(S, y, delta=1.0):
    """CS231n's unvectorised L_i, summed over classes j != y_i, averaged over examples."""
    total = 0.0
    for i in range(len(y)):
        for j in range(S.shape[1]):
            if j != y[i]:
                total += max(0.0, float(S[i, j] - S[i, y[i]] + delta))
    return total / len(y)


def test_the_cifar10_linear_classifier_is_10_by_3073():
    model = linear_classifier((3, 32, 32), 10)
    assert weights_of(model).shape == (10, 3073)


def test_bias_trick_scores_equal_the_model_and_round_trip(small):
    x, _, W = small
    model = linear_classifier((1, 28, 28)).double()
    set_weights(model, W)
    assert torch.equal(weights_of(model), W)
    ones = torch.cat([x.flatten(1), torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
    torch.testing.assert_close(scores(W, x), ones @ W.T)
    torch.testing.assert_close(scores(W, x), model(x))


def test_losses_equal_their_textbook_definitions(small):
    x, y, W = small
    S = scores(W, x)
    assert float(svm_loss(S, y)) == pytest.approx(naive_svm(S, y), rel=1e-12)
    assert float(softmax_loss(S, y)) == pytest.approx(float(F.cross_entropy(S, y)), rel=1e-12)
    assert float(accuracy(S, y)) == pytest.approx(float((S.argmax(1) == y).double().mean()))


def test_losses_are_batched_over_leading_dimensions(small):
    x, y, W = small
    stack = torch.stack([scores(W, x), scores(2 * W, x), scores(-W, x)])
    for fn in (svm_loss, softmax_loss, accuracy):
        together = fn(stack, y)
        assert together.shape == (3,)
        for p in range(3):
            assert float(together[p]) == pytest.approx(float(fn(stack[p], y)), rel=1e-12)


@pytest.mark.parametrize("name, analytic", [("svm", svm_loss_grad), ("softmax", softmax_loss_grad)])
@pytest.mark.parametrize("reg", [0.0, 0.1])
def test_analytic_gradients_match_numerical_ones(small, name, analytic, reg):
    x, y, W = small
    loss = get_loss(name)

    def f(w):
        return loss(scores(w, x), y) + reg * (w * w).sum()

    value, dW = analytic(W, x, y, reg)
    assert float(value) == pytest.approx(float(f(W)), rel=1e-12)
    # every bias (last column) and 300 random weights
    g = torch.Generator().manual_seed(1)
    coords = torch.cat([torch.arange(784, 7850, 785), torch.randperm(7850, generator=g)[:300]]).tolist()
    num = numerical_gradient(f, W, coords)
    a, n = dW.reshape(-1)[coords], num[coords]
    # gradcheck's measure: components under 1 % of the largest are judged on that scale (there
    # the difference quotient is rounding, ~1e-11, not gradient; see evoprop.lab.gradcheck)
    rel = relative_error(a, n, floor=1e-2 * float(dW.abs().max()))
    assert float(rel.max()) < 1e-6
    assert float(a.abs().max()) > 1e-3  # the check compared real gradients, not zeros


@pytest.mark.parametrize("name, analytic", [("svm", svm_loss_grad), ("softmax", softmax_loss_grad)])
def test_analytic_gradients_equal_autograd(small, name, analytic):
    x, y, W = small
    W = W.clone().requires_grad_(True)
    value = get_loss(name)(scores(W, x), y) + 0.05 * (W * W).sum()
    value.backward()
    ana_value, dW = analytic(W.detach(), x, y, 0.05)
    torch.testing.assert_close(ana_value, value.detach())
    torch.testing.assert_close(dW, W.grad)


def test_a_deep_model_is_not_a_linear_classifier():
    from evoprop.models import build_mlp

    with pytest.raises(ConfigError, match="depth-1"):
        weights_of(build_mlp((1, 28, 28), 10, depth=2, width=8))
