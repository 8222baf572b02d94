"""The seed's strategies: random search, random local search, gradient descent; the two objectives agree."""

import numpy as np
import pytest
import torch
from torch.nn.utils import parameters_to_vector

from evoprop.errors import ConfigError
from evoprop.lab.linear import linear_classifier
from evoprop.lab.search import (LinearObjective, PopulationObjective, gradient_descent, local_search,
                                make_objective, random_search, write_vector)
from evoprop.models import build_mlp


@pytest.fixture(scope="module")
def raw(mnist_small):
    """500 MNIST examples, 0-255 pixels minus their mean image (the seed's preprocessing), float64."""
    x, y = mnist_small
    x = x[:500].double() * 255
    return x - x.mean(0, keepdim=True), y[:500]


def linear(dtype=torch.float64):
    torch.manual_seed(0)
    return linear_classifier((1, 28, 28)).to(dtype)


def test_the_linear_objective_equals_the_population_evaluator(raw):
    x, y = raw
    model = linear()
    vectors = 1e-3 * torch.randn(7, 7850, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for loss in ("svm", "softmax"):
        fast = LinearObjective(model, x, y, loss, reg=0.5, batch_size=128)(vectors)
        general = PopulationObjective(model, x, y, loss, reg=0.5, batch_size=128)(vectors)
        torch.testing.assert_close(fast, general, rtol=1e-10, atol=0)
    assert isinstance(make_objective(model, x, y), LinearObjective)
    assert isinstance(make_objective(build_mlp((1, 28, 28), 10, 2, 8).double(), x, y), PopulationObjective)


def test_random_search_keeps_the_best_of_its_tries(raw):
    x, y = raw
    objective = make_objective(linear(), x, y, "svm")
    result = random_search(objective, tries=120, scale=1e-4, seed=0)
    assert len(result.tried) == len(result.kept) == 120
    assert result.final_loss == pytest.approx(result.tried.min()) and result.final_loss < result.tried[0]
    assert np.all(np.diff(result.kept) <= 0)
    assert float(objective(result.vector.double().unsqueeze(0))[0]) == pytest.approx(result.final_loss, rel=1e-6)
    again = random_search(objective, tries=120, scale=1e-4, seed=0)
    np.testing.assert_array_equal(again.tried, result.tried)


def test_local_search_improves_on_its_start_and_never_gets_worse(raw):
    x, y = raw
    objective = make_objective(linear(), x, y, "svm")
    start = 1e-3 * torch.randn(objective.dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    result = local_search(objective, start, tries=150, step=1e-4, seed=0)
    assert result.final_loss < result.start_loss
    assert np.all(np.diff(result.kept) <= 0) and 0 < result.accepted < 150
    assert float(objective(result.vector.double().unsqueeze(0))[0]) == pytest.approx(result.final_loss, rel=1e-6)


def test_local_search_through_scores_equals_the_plain_algorithm(raw):
    """The linear shortcut S(W + step g) = S(W) + step S(g) makes the same decisions as evaluating each try."""
    x, y = raw
    model = linear()
    start = 1e-3 * torch.randn(7850, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    fast = local_search(LinearObjective(model, x, y, "softmax"), start, tries=60, step=1e-4, seed=2)
    plain = local_search(PopulationObjective(model, x, y, "softmax"), start, tries=60, step=1e-4, seed=2)
    assert fast.accepted == plain.accepted
    np.testing.assert_allclose(fast.kept, plain.kept, rtol=1e-9)
    torch.testing.assert_close(fast.vector, plain.vector)


def test_gradient_descent_lowers_the_loss_and_leaves_the_model_at_its_end(raw):
    x, y = raw
    model = linear()
    write_vector(model, 1e-3 * torch.randn(7850, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    result = gradient_descent(model, x, y, "svm", reg=0.0, lr=1e-6, steps=20, batch_size=200)
    assert len(result.kept) == 21 and result.final_loss < 0.5 * result.start_loss
    assert torch.equal(result.vector, parameters_to_vector(model.parameters()))


def test_search_works_on_a_deep_model(raw):
    x, y = raw
    model = build_mlp((1, 28, 28), 10, depth=2, width=8).double()
    objective = make_objective(model, x / 255, y, "softmax")
    start = parameters_to_vector(model.parameters()).detach().double()
    result = local_search(objective, start, tries=20, step=0.01, seed=0)
    assert result.final_loss < result.start_loss
    write_vector(model, result.vector)
    assert torch.equal(parameters_to_vector(model.parameters()).float(), result.vector)


@pytest.mark.parametrize("call, words", [
    (lambda o: random_search(o, tries=0), "tries must be a positive integer"),
    (lambda o: random_search(o, scale=-1.0), "scale must be a positive number"),
    (lambda o: local_search(o, torch.zeros(3)), "coordinates"),
])
def test_bad_settings_are_config_errors(raw, call, words):
    x, y = raw
    with pytest.raises(ConfigError, match=words):
        call(make_objective(linear(), x, y))
