"""Loss landscapes: directions, the batched grid against point-by-point evaluation, the files."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from evoprop.errors import ConfigError
from evoprop.lab import landscape as ls
from evoprop.lab.directions import filter_normalize, flatten, gaussian_direction, random_direction
from evoprop.lab.evaluate import VectorEvaluator
from evoprop.lab.losses import svm_loss
from evoprop.models import build_mlp


@pytest.fixture(scope="module")
def data(mnist_small):
    x, y = mnist_small
    return x[:300], y[:300]


def mlp(depth=3):
    torch.manual_seed(0)
    return build_mlp((1, 28, 28), 10, depth=depth, width=32)


def loss_and_accuracy_at(model, vector, x, y, loss_fn=F.cross_entropy):
    """The reference: write the vector into a copy of the model and evaluate it plainly."""
    probe = build_mlp((1, 28, 28), 10, depth=len(model.layers), width=32)
    vector_to_parameters(vector.to(torch.float32), probe.parameters())
    with torch.no_grad():
        out = probe(x)
    return float(loss_fn(out, y)), float((out.argmax(1) == y).float().mean())


def test_filter_normalised_rows_have_the_weights_norms_and_biases_stay_put():
    model = mlp()
    params = list(model.parameters())
    d = random_direction(params, "filter", "zero", torch.Generator().manual_seed(0))
    for p, v in zip(params, d):
        if p.dim() == 2:
            torch.testing.assert_close(v.norm(dim=1), p.detach().norm(dim=1))
        else:
            assert torch.count_nonzero(v) == 0
    d = random_direction(params, "filter", "weights", torch.Generator().manual_seed(0))
    assert all(torch.equal(v, p.detach()) for p, v in zip(params, d) if p.dim() == 1)


def test_filter_normalisation_handles_convolutions_and_normalisation_layers():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))
    params = list(net.parameters())
    d = filter_normalize(gaussian_direction(params, torch.Generator().manual_seed(1)), params)
    conv_w, conv_d = params[0].detach(), d[0]
    torch.testing.assert_close(conv_d.flatten(1).norm(dim=1), conv_w.flatten(1).norm(dim=1))  # one filter per channel
    assert [torch.count_nonzero(v).item() for p, v in zip(params, d) if p.dim() == 1] == [0, 0, 0, 0]


def test_gaussian_directions_are_seeded_unit_normal():
    params = list(mlp().parameters())
    a = flatten(random_direction(params, "gaussian", generator=torch.Generator().manual_seed(3)))
    b = flatten(random_direction(params, "gaussian", generator=torch.Generator().manual_seed(3)))
    assert torch.equal(a, b)
    assert abs(float(a.std()) - 1) < 0.01 and abs(float(a.mean())) < 0.01


def test_the_line_at_zero_is_the_models_loss(data):
    x, y = data
    model = mlp()
    grid = VectorEvaluator(model, x, y, "softmax", batch_size=128)
    d = random_direction(list(model.parameters()), "filter", generator=torch.Generator().manual_seed(0))
    line = ls.line(grid, d, ls.grid_axis(1.0, 5))
    with torch.no_grad():
        out = model(x)
    assert line.alphas[2] == 0.0
    assert line.loss[2] == pytest.approx(float(F.cross_entropy(out, y)), rel=1e-5)
    assert line.accuracy[2] == pytest.approx(float((out.argmax(1) == y).float().mean()))


@pytest.mark.parametrize("loss_name, loss_fn", [("softmax", F.cross_entropy), ("svm", svm_loss)])
def test_the_batched_plane_equals_point_by_point_evaluation(data, loss_name, loss_fn):
    x, y = data
    model = mlp()
    params = list(model.parameters())
    g = torch.Generator().manual_seed(0)
    d1, d2 = (random_direction(params, "filter", generator=g) for _ in range(2))
    grid = VectorEvaluator(model, x, y, loss_name, batch_size=128, chunk=4)
    axis = ls.grid_axis(0.5, 3)
    plane = ls.plane(grid, (d1, d2), axis, axis)
    center = parameters_to_vector(params).detach()
    for j, b in enumerate(axis):
        for i, a in enumerate(axis):
            point = center + a * flatten(d1) + b * flatten(d2)
            loss, acc = loss_and_accuracy_at(model, point, x, y, loss_fn)
            assert plane.loss[j, i] == pytest.approx(loss, rel=1e-5), (a, b)
            assert plane.accuracy[j, i] == pytest.approx(acc)
    assert plane.loss[1, 1] == pytest.approx(loss_and_accuracy_at(model, center, x, y, loss_fn)[0], rel=1e-5)


def test_results_do_not_depend_on_batch_or_chunk_size_and_reg_is_added(data):
    x, y = data
    model = mlp()
    center = parameters_to_vector(model.parameters()).detach()
    points = center + 0.01 * torch.randn(5, center.numel(), generator=torch.Generator().manual_seed(0))
    a = VectorEvaluator(model, x, y, batch_size=300, chunk=5).evaluate(points)
    b = VectorEvaluator(model, x, y, batch_size=77, chunk=2).evaluate(points)
    torch.testing.assert_close(a[0], b[0], rtol=1e-5, atol=0)
    torch.testing.assert_close(a[1], b[1])
    reg = VectorEvaluator(model, x, y, reg=0.1, batch_size=300).losses(points)
    torch.testing.assert_close(reg, a[0] + 0.1 * points.double().pow(2).sum(1))


def test_the_model_is_left_as_it_was(data):
    x, y = data
    model = mlp()
    before = parameters_to_vector(model.parameters()).detach().clone()
    grid = VectorEvaluator(model, x, y)
    ls.line(grid, random_direction(list(model.parameters()), generator=torch.Generator().manual_seed(0)),
            ls.grid_axis(1.0, 3))
    assert torch.equal(before, parameters_to_vector(model.parameters()))


def test_grids_are_saved_as_npz_and_csv(data, tmp_path):
    x, y = data
    model = mlp(depth=1)
    grid = VectorEvaluator(model, x, y)
    g = torch.Generator().manual_seed(0)
    d1, d2 = (random_direction(list(model.parameters()), generator=g) for _ in range(2))
    line = ls.line(grid, d1, ls.grid_axis(1.0, 3))
    plane = ls.plane(grid, (d1, d2), ls.grid_axis(1.0, 3), ls.grid_axis(2.0, 5))
    assert plane.loss.shape == (5, 3)
    ls.save_npz(tmp_path / "g.npz", ls.Landscape(line, plane, {"loss": "softmax"}))
    saved = np.load(tmp_path / "g.npz")
    np.testing.assert_array_equal(saved["plane_loss"], plane.loss)
    assert str(saved["meta_loss"]) == "softmax"
    rows = ls.save_plane_csv(tmp_path / "p.csv", plane).read_text().splitlines()
    assert rows[0] == "a,b,loss,accuracy" and len(rows) == 1 + 15
    assert float(rows[1 + 5 * 0 + 0].split(",")[2]) == pytest.approx(plane.loss[0, 0], rel=1e-6)


def test_bad_grids_and_directions_are_config_errors(data):
    x, y = data
    model = mlp(depth=1)
    with pytest.raises(ConfigError, match="at least 2"):
        ls.grid_axis(1.0, 1)
    with pytest.raises(ConfigError, match="must be positive"):
        ls.grid_axis(0.0, 5)
    with pytest.raises(ConfigError, match="unknown direction"):
        random_direction(list(model.parameters()), "sideways")
    with pytest.raises(ConfigError, match="coordinates"):
        ls.line(VectorEvaluator(model, x, y), torch.zeros(3), ls.grid_axis(1.0, 3))
