"""Gradient checks: a correct gradient passes, a wrong one is flagged, kinks are recognised."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from evoprop.errors import ConfigError
from evoprop.lab.gradcheck import autograd_gradients, check_gradients, relative_error
from evoprop.lab.kinks import KinkRecorder, same_side
from evoprop.lab.linear import linear_classifier, svm_loss_grad, weights_of
from evoprop.lab.losses import get_loss
from evoprop.models import build_mlp


@pytest.fixture(scope="module")
def batch(mnist_small):
    x, y = mnist_small
    return x[:16], y[:16]


def deep_model(activation="relu"):
    torch.manual_seed(0)
    return build_mlp((1, 28, 28), 10, depth=4, width=24, activation=activation)


@pytest.mark.parametrize("loss", ["softmax", "svm"])
def test_autograd_of_a_relu_network_passes(batch, loss):
    x, y = batch
    result = check_gradients(deep_model(), x, y, loss, reg=0.01, coords=8)
    assert result.passed, [(t.name, t.max_rel_centred) for t in result.tensors]
    assert [t.name for t in result.tensors] == [n for n, _ in deep_model().named_parameters()]
    assert all(t.checked + t.kinks == 8 for t in result.tensors if t.name.endswith("weight"))
    assert result.max_error < 1e-5
    # forward differences are O(h): measurably worse than centred ones
    assert max(t.max_rel_forward for t in result.tensors) > result.max_error


def test_a_deliberately_wrong_gradient_is_flagged(batch):
    x, y = batch
    loss = get_loss("softmax")

    def off_by_one_percent_in_layer_2(model, xs, ys):
        grads = autograd_gradients(model, xs, ys, loss, 0.0)
        grads["layers.2.weight"] = grads["layers.2.weight"] * 1.01
        return grads

    result = check_gradients(deep_model(), x, y, "softmax", coords=8, gradient=off_by_one_percent_in_layer_2)
    assert not result.passed
    failed = [t.name for t in result.tensors if not result.tensor_passed(t)]
    assert failed == ["layers.2.weight"]
    assert result.max_error == pytest.approx(0.01 / 1.01, rel=1e-3)


def test_a_buggy_analytic_svm_gradient_is_flagged_and_the_right_one_passes(batch):
    """The classic bug: forgetting that the true class's row gets -x_i once per violated margin."""
    x, y = batch
    model = linear_classifier((1, 28, 28))
    with torch.no_grad():
        model.layers[0].weight.normal_(0, 0.01)

    def analytic(buggy):
        def gradient(m, xs, ys):
            _, dW = svm_loss_grad(weights_of(m), xs, ys)
            if buggy:
                rows = torch.arange(len(ys))
                s = xs.flatten(1) @ m.layers[0].weight.T + m.layers[0].bias
                violated = (s - s[rows, ys].unsqueeze(1) + 1 > 0).sum(1) - 1
                for i in range(len(ys)):  # add back the -count * x_i term: as if it had been left out
                    dW[ys[i], :-1] += violated[i] * xs[i].flatten() / len(ys)
                    dW[ys[i], -1] += violated[i] / len(ys)
            return {"layers.0.weight": dW[:, :-1], "layers.0.bias": dW[:, -1]}

        return gradient

    good = check_gradients(model, x, y, "svm", coords=30, gradient=analytic(False))
    bad = check_gradients(model, x, y, "svm", coords=30, gradient=analytic(True))
    assert good.passed and good.max_error < 1e-6
    assert not bad.passed and bad.max_error > 1e-2


def test_float32_cannot_check_what_float64_can(batch):
    x, y = batch
    f64 = check_gradients(deep_model(), x, y, coords=8)
    f32 = check_gradients(deep_model(), x, y, coords=8, dtype=torch.float32)
    assert f64.passed and not f32.passed
    assert f32.max_error > 100 * f64.max_error


def test_crossing_a_kink_is_detected_and_left_out(batch):
    """With a large h, ReLU units flip between w - h and w + h: those coordinates are counted, not compared."""
    x, y = batch
    relu = check_gradients(deep_model("relu"), x, y, coords=5, h=0.05, threshold=1.0)
    smooth = check_gradients(deep_model("tanh"), x, y, coords=5, h=0.05, threshold=1.0)
    assert sum(t.kinks for t in relu.tensors) > 0
    assert sum(t.kinks for t in smooth.tensors) == 0


@pytest.mark.slow
def test_a_network_with_functional_relus_and_batch_norm(batch):
    """evoprop's ResNet calls F.relu (no module to hook); its kinks are recorded all the same."""
    from evoprop.models import build_resnet18

    x, y = batch
    torch.manual_seed(0)
    model = build_resnet18((1, 28, 28), 10, width=4)
    result = check_gradients(model, x[:2], y[:2], coords=2, h=1e-6)
    assert result.passed, [(t.name, t.max_rel_centred) for t in result.tensors if not result.tensor_passed(t)]
    assert sum(t.checked for t in result.tensors) > 60
    big_h = check_gradients(model, x[:2], y[:2], coords=2, h=1e-2, threshold=1.0)
    assert sum(t.kinks for t in big_h.tensors) > 0


def test_kinks_are_recorded_however_the_operation_is_called():
    x = torch.tensor([[-1.0, 0.5, 2.0, -0.1]])
    with KinkRecorder() as rec:
        nn.ReLU()(x)
        F.relu(x)
        x.clamp_min(0.2)
        torch.clamp(x, -0.5, 1.0)
        F.max_pool1d(x.unsqueeze(0), 2)
        torch.tanh(x)  # smooth: nothing recorded
    sides = [p.flatten().tolist() for p in rec.patterns]
    assert sides[:3] == [[False, True, True, False]] * 2 + [[False, True, True, False]]
    assert sides[3:5] == [[False, True, True, True], [False, False, True, False]]
    assert sides[5] == [1, 2]  # max-pool winners
    assert len(sides) == 6
    assert same_side(rec.patterns, [p.clone() for p in rec.patterns])


def test_the_svm_hinge_is_a_kink_too(batch):
    x, y = batch
    torch.manual_seed(0)
    model = linear_classifier((1, 28, 28))
    result = check_gradients(model, x, y, "svm", coords=20, h=0.05, threshold=1.0)
    assert sum(t.kinks for t in result.tensors) > 0


def test_every_coordinate_can_be_checked(batch):
    x, y = batch
    x = x[:, :, ::7, ::7]  # 4 x 4 MNIST thumbnails: a model small enough to check in full
    torch.manual_seed(0)
    model = build_mlp((1, 4, 4), 10, depth=2, width=6)
    result = check_gradients(model, x, y, coords=0)
    assert [t.checked + t.kinks for t in result.tensors] == [96, 6, 60, 10]
    assert result.passed


def test_relative_error_is_zero_for_two_zeros_and_floored():
    a = torch.tensor([0.0, 1.0, 1e-12], dtype=torch.float64)
    n = torch.tensor([0.0, 1.1, 2e-12], dtype=torch.float64)
    assert relative_error(a, n).tolist() == pytest.approx([0.0, 0.1 / 1.1, 0.5])
    assert relative_error(a, n, floor=1e-6)[2] == pytest.approx(1e-6)


@pytest.mark.parametrize("kwargs, words", [(dict(method="backward"), "unknown difference method"),
                                           (dict(h=0), "h must be positive"),
                                           (dict(threshold=-1), "threshold must be positive"),
                                           (dict(floor=2), "floor")])
def test_bad_settings_are_config_errors(batch, kwargs, words):
    x, y = batch
    with pytest.raises(ConfigError, match=words):
        check_gradients(deep_model(), x, y, **kwargs)


def test_the_model_checked_is_left_untouched(batch):
    x, y = batch
    model = deep_model()
    before = [p.detach().clone() for p in model.parameters()]
    check_gradients(model, x, y, coords=3)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert next(model.parameters()).dtype == torch.float32
