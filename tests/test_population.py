"""Population evaluation: the P losses equal evaluating each candidate network on its own."""

import pytest
import torch
import torch.nn.functional as F

from evoprop.errors import ConfigError
from evoprop.models import build_mlp
from evoprop.population import PopulationEvaluator


@pytest.fixture(scope="module")
def batch(mnist):
    return mnist.train.x[:64], mnist.train.y[:64]


def one_by_one(evaluator, candidates, x, y, loss_fn=F.cross_entropy):
    original = evaluator.get_vector()
    losses = []
    for c in candidates:
        evaluator.set_vector(c)
        with torch.no_grad():
            losses.append(loss_fn(evaluator.model(x), y))
    evaluator.set_vector(original)
    return torch.stack(losses)


def population(evaluator, n, scale=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    return evaluator.get_vector() + scale * torch.randn(n, evaluator.dim, generator=g)


@pytest.mark.parametrize("depth, layer", [(1, 0), (4, 0), (4, 2), (4, 3)])
def test_fast_path_equals_candidates_one_by_one_and_the_general_path(batch, depth, layer):
    torch.manual_seed(0)
    model = build_mlp((1, 28, 28), 10, depth=depth, width=32)
    fast = PopulationEvaluator(model, layers=[layer])
    general = PopulationEvaluator(model, layers=[layer], path="general")
    assert fast.path == "fast" and general.path == "general"
    cands = population(fast, 9)
    expected = one_by_one(fast, cands, *batch)
    torch.testing.assert_close(fast(cands, *batch), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(general(cands, *batch), expected, rtol=1e-5, atol=1e-6)


def test_several_layers_and_any_parameter_subset_use_the_general_path(batch):
    torch.manual_seed(0)
    model = build_mlp((1, 28, 28), 10, depth=3, width=16)
    by_layers = PopulationEvaluator(model, layers=[0, 2])
    by_params = PopulationEvaluator(model, params=[model.layers[1].bias])
    assert by_layers.path == "general" and by_layers.dim == 784 * 16 + 16 + 16 * 10 + 10
    for ev in (by_layers, by_params):
        cands = population(ev, 5)
        torch.testing.assert_close(ev(cands, *batch), one_by_one(ev, cands, *batch), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("path", ["fast", "general"])
def test_chunked_equals_unchunked(batch, path):
    torch.manual_seed(0)
    model = build_mlp((1, 28, 28), 10, depth=3, width=32)
    ev = PopulationEvaluator(model, layers=[0], path=path)
    cands = population(ev, 23)
    whole = ev(cands, *batch)
    ev.max_memory = 3 * ev.bytes_per_candidate(batch[0])  # chunks of 3 (the last one of 2)
    assert ev.chunk_size(23, batch[0]) == 3
    torch.testing.assert_close(ev(cands, *batch), whole, rtol=1e-6, atol=1e-6)


def test_a_population_that_cannot_fit_is_a_clear_error(batch):
    model = build_mlp((1, 28, 28), 10, depth=2, width=32)
    ev = PopulationEvaluator(model, layers=[0], max_memory=1000)
    with pytest.raises(ConfigError, match="memory budget"):
        ev(population(ev, 4), *batch)


def test_set_and_get_vector_round_trip_in_weight_then_bias_order():
    model = build_mlp((1, 4, 1), 3, depth=1)
    ev = PopulationEvaluator(model, layers=[0])
    v = torch.arange(ev.dim, dtype=torch.float32)
    ev.set_vector(v)
    assert torch.equal(model.layers[0].weight.flatten(), v[:12]) and torch.equal(model.layers[0].bias, v[12:])
    assert torch.equal(ev.get_vector(), v)


def test_bad_arguments_are_clear_errors(batch):
    model = build_mlp((1, 28, 28), 10, depth=2, width=8)
    with pytest.raises(ConfigError, match="not in 0..1"):
        PopulationEvaluator(model, layers=[5])
    with pytest.raises(ConfigError, match="exactly one"):
        PopulationEvaluator(model)
    with pytest.raises(ConfigError, match="fast path"):
        PopulationEvaluator(model, layers=[0, 1], path="fast")
    ev = PopulationEvaluator(model, layers=[0])
    with pytest.raises(ConfigError, match=r"shape \(P, 6280\)"):
        ev(torch.zeros(3, 10), *batch)
    with pytest.raises(ConfigError, match="model's own parameters"):
        PopulationEvaluator(model, params=[torch.nn.Parameter(torch.zeros(2))])


def test_evaluation_leaves_the_model_untouched_and_in_its_mode(batch):
    torch.manual_seed(0)
    model = build_mlp((1, 28, 28), 10, depth=2, width=8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    ev = PopulationEvaluator(model, layers=[0])
    ev(population(ev, 4), *batch)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("path", ["fast", "general"])
def test_any_loss_function_is_vectorised_over_candidates(batch, path):
    torch.manual_seed(0)
    model = build_mlp((1, 28, 28), 10, depth=2, width=16)
    ev = PopulationEvaluator(model, layers=[0], path=path)
    cands = population(ev, 6)

    def margin_loss(logits, targets):  # a Brier score: any differentiable loss of (outputs, targets)
        return ((logits.softmax(-1) - F.one_hot(targets, 10)) ** 2).sum(-1).mean()

    expected = one_by_one(ev, cands, *batch, loss_fn=margin_loss)
    torch.testing.assert_close(ev(cands, *batch, loss_fn=margin_loss), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("path, layer", [("fast", 0), ("fast", 2), ("general", 0)])
def test_bfloat16_evaluation_ranks_candidates_as_float32_does(batch, path, layer):
    torch.manual_seed(0)
    model = build_mlp((1, 28, 28), 10, depth=4, width=64)
    exact = PopulationEvaluator(model, layers=[layer], path=path)
    low = PopulationEvaluator(model, layers=[layer], path=path, precision="bfloat16")
    cands = population(exact, 40, scale=0.2)
    a, b = exact(cands, *batch), low(cands, *batch)
    assert b.dtype == torch.float32
    torch.testing.assert_close(b, a, rtol=2e-2, atol=2e-2)  # bfloat16 inputs: ~3 significant digits
    assert not torch.equal(a, b)  # the low-precision arithmetic was really used
    ranks = torch.stack([a.argsort().argsort(), b.argsort().argsort()]).double()
    assert torch.corrcoef(ranks)[0, 1] > 0.99
    assert int(a.argmin()) == int(b.argmin())


def test_an_unknown_precision_is_a_clear_error():
    model = build_mlp((1, 28, 28), 10, depth=2, width=8)
    with pytest.raises(ConfigError, match="unknown evaluation precision 'half'; valid: auto, float32, bfloat16"):
        PopulationEvaluator(model, layers=[0], precision="half")


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_a_narrow_searched_layer_packed_into_one_gemm_feeds_the_shared_layers_right(batch, precision):
    # width 8 <= PACK_MAX_WIDTH: the searched layer's rows come out (example, candidate) ordered
    torch.manual_seed(0)
    model = build_mlp((1, 28, 28), 10, depth=3, width=8)
    ev = PopulationEvaluator(model, layers=[0], precision=precision)
    cands = population(ev, 7, scale=0.3)
    tol = 1e-5 if precision == "float32" else 3e-2
    torch.testing.assert_close(ev(cands, *batch), one_by_one(ev, cands, *batch), rtol=tol, atol=tol)


def test_cpu_groups_small_enough_for_cache_give_the_same_losses(batch, monkeypatch):
    import evoprop.population.evaluator as evaluator_module

    torch.manual_seed(0)
    model = build_mlp((1, 28, 28), 10, depth=4, width=32)
    ev = PopulationEvaluator(model, layers=[0])
    cands = population(ev, 23)
    whole = ev(cands, *batch)
    monkeypatch.setattr(evaluator_module, "CPU_TILE_ELEMENTS", 5 * 64 * 32)  # groups of 5 candidates
    assert ev.group_size(batch[0]) == 5
    torch.testing.assert_close(ev(cands, *batch), whole, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "gelu", "elu", "leaky_relu"])
def test_every_activation_fused_or_not_equals_the_plain_network(batch, activation):
    torch.manual_seed(0)
    model = build_mlp((1, 28, 28), 10, depth=4, width=32, activation=activation)
    ev = PopulationEvaluator(model, layers=[0])
    cands = population(ev, 7)
    torch.testing.assert_close(ev(cands, *batch), one_by_one(ev, cands, *batch), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bf16_units", [False, True])
def test_auto_precision_is_bfloat16_only_where_the_cpu_has_bfloat16_units(monkeypatch, bf16_units):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: bf16_units)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    model = build_mlp((1, 28, 28), 10, depth=2, width=8)
    assert PopulationEvaluator(model, layers=[0], precision="auto").precision == ("bfloat16" if bf16_units else "float32")
    assert PopulationEvaluator(model, layers=[0]).precision == "float32"  # the evaluator alone stays exact
    # auto takes bfloat16 only for the fast path's shared layers: not for a searched last layer
    # (the fast path keeps it float32), nor on the general path (slower there)
    assert PopulationEvaluator(model, layers=[1], precision="auto").precision == "float32"
    assert PopulationEvaluator(model, layers=[0], path="general", precision="auto").precision == "float32"


@pytest.mark.parametrize("path", ["fast", "general"])
@pytest.mark.parametrize("name", ["error", "f1"])
def test_non_differentiable_es_losses_equal_the_metrics_of_each_candidate(mnist, path, name):
    """1 − accuracy and 1 − macro-F1 of all P candidates at once equal each network's own metrics."""
    from evoprop.population import es_loss
    from evoprop.train.metrics import macro_f1

    torch.manual_seed(0)
    model = build_mlp((1, 28, 28), 10, depth=3, width=16)
    evaluator = PopulationEvaluator(model, layers=[0], path=path)
    x, y = mnist.train.x[:256], mnist.train.y[:256]
    cands = population(evaluator, 12, scale=0.2)
    losses = evaluator(cands, x, y, es_loss(name))

    def reference(logits, targets):  # the reported metrics (scikit-learn's macro F1), one network at a time
        pred = logits.argmax(1)
        if name == "error":
            return torch.tensor(1.0 - (pred == targets).double().mean().item())
        return torch.tensor(1.0 - macro_f1(targets, pred, 10))

    expected = one_by_one(evaluator, cands, x, y, reference)
    torch.testing.assert_close(losses.double(), expected.double(), rtol=0, atol=1e-6)
    assert len(set(losses.tolist())) > 1  # the candidates differ: the test compares something


def test_macro_f1_loss_skips_classes_absent_from_targets_and_predictions():
    from evoprop.population.losses import one_minus_macro_f1
    from evoprop.train.metrics import macro_f1

    targets = torch.tensor([0, 0, 1, 1, 2])
    logits = torch.nn.functional.one_hot(torch.tensor([0, 1, 1, 1, 3]), 6).float()  # class 3 predicted, never true
    expected = 1.0 - macro_f1(targets, logits.argmax(1), 6)  # classes 4, 5: in neither, skipped
    assert float(one_minus_macro_f1(logits, targets)) == pytest.approx(expected)


def test_an_unknown_es_loss_is_a_clear_error():
    from evoprop.population import es_loss

    with pytest.raises(ConfigError, match="unknown es_loss 'auc'; valid: nll, error, f1"):
        es_loss("auc")
