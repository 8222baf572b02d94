import pytest
import torch

from evoprop.errors import ConfigError
from evoprop.optim import OPTIMIZERS, make_optimizer, parse_option_value

NAMES = ["sgd", "momentum", "nesterov", "adagrad", "adadelta", "rmsprop", "adam"]


def test_every_seed_001_optimizer_is_registered():
    assert set(NAMES) <= set(OPTIMIZERS)


@pytest.mark.parametrize("name", NAMES)
def test_every_optimizer_trains_a_small_model_to_lower_loss(name, mnist_small):
    x, y = mnist_small
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    opt = make_optimizer(name, model.parameters())
    loss_fn = torch.nn.functional.cross_entropy
    with torch.no_grad():
        before = loss_fn(model(x), y).item()
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        for idx in torch.randperm(len(y), generator=gen).split(64):
            opt.zero_grad()
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()
    with torch.no_grad():
        after = loss_fn(model(x), y).item()
    assert after < 0.7 * before, (name, before, after)


def test_defaults_follow_seed_001_and_can_be_overridden():
    p = [torch.nn.Parameter(torch.zeros(2))]
    rms = make_optimizer("rmsprop", p)
    assert rms.defaults["alpha"] == 0.9 and rms.defaults["lr"] == 0.001
    assert make_optimizer("adam", p).defaults["betas"] == (0.9, 0.999)
    assert make_optimizer("adagrad", p).defaults["eps"] == 1e-8
    mom = make_optimizer("momentum", p, lr=0.5, momentum=0.8)
    assert mom.defaults["lr"] == 0.5 and mom.defaults["momentum"] == 0.8


def test_unknown_names_and_options_are_clear_errors():
    p = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(ConfigError, match="valid: sgd, momentum"):
        make_optimizer("nosuch", p)
    with pytest.raises(ConfigError, match="no option betas"):
        make_optimizer("sgd", p, betas=(0.9, 0.9))
    with pytest.raises(ConfigError, match="learning rate"):
        make_optimizer("sgd", p, lr=-1.0)
    with pytest.raises(ConfigError, match="adam"):
        make_optimizer("adam", p, betas=(2.0, 0.9))  # torch's own range check, re-worded


def test_option_values_parse_as_yaml_scalars():
    assert parse_option_value("0.9") == 0.9
    assert parse_option_value("true") is True
    assert parse_option_value("[0.9, 0.99]") == (0.9, 0.99)
    # YAML 1.1 (PyYAML) reads an exponent without a dot as a string; people write 1e-6
    assert parse_option_value("1e-6") == 1e-6 and parse_option_value("-2E+3") == -2000.0
    assert parse_option_value("'1e-6'") == "1e-6"  # quoted stays a string
