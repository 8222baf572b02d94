import math

import pytest
import torch

from evoprop.errors import ConfigError
from evoprop.models import INITS, build_mlp


def test_depth_counts_weight_layers_and_layers_are_addressable():
    model = build_mlp((1, 28, 28), 10, depth=10, width=200)
    assert model.depth == 10 and len(model.layers) == 10
    assert model.layers[0].weight.shape == (200, 784)
    assert model.layers[9].weight.shape == (10, 200)
    assert model(torch.zeros(5, 1, 28, 28)).shape == (5, 10)


def test_depth_one_is_softmax_regression():
    model = build_mlp((1, 32, 32), 10, depth=1)
    assert [tuple(p.shape) for p in model.parameters()] == [(10, 1024), (10,)]
    assert sum(p.numel() for p in model.parameters()) == 1024 * 10 + 10


@pytest.mark.parametrize("scheme", ["glorot", "lecun", "he"])
def test_named_inits_have_their_variance_and_zero_bias(scheme):
    torch.manual_seed(0)
    layer = build_mlp((1, 400), 10, depth=2, width=300, init=scheme).layers[0]
    fan_in, fan_out = 400, 300
    expected = {"glorot": 2 / (fan_in + fan_out), "lecun": 1 / fan_in, "he": 2 / fan_in}[scheme]
    assert layer.weight.var().item() == pytest.approx(expected, rel=0.05)
    assert torch.all(layer.bias == 0)


def test_torch_init_keeps_pytorch_default_bound():
    torch.manual_seed(0)
    layer = build_mlp((1, 400), 10, depth=1, init="torch").layers[0]
    assert layer.weight.abs().max().item() <= 1 / math.sqrt(400) + 1e-6
    assert layer.bias.abs().max().item() > 0


def test_init_is_reproducible_under_a_seed():
    torch.manual_seed(3)
    a = build_mlp((1, 28, 28), 10, depth=3, width=20)
    torch.manual_seed(3)
    b = build_mlp((1, 28, 28), 10, depth=3, width=20)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("kwargs, word", [({"depth": 0}, "depth"), ({"width": 0}, "width"),
                                          ({"activation": "nope"}, "activation"), ({"init": "nope"}, "init")])
def test_bad_model_settings_are_clear_errors(kwargs, word):
    with pytest.raises(ConfigError, match=word):
        build_mlp((1, 28, 28), 10, **kwargs)
    assert set(INITS) == {"glorot", "lecun", "he", "torch"}
