"""The hybrid trainer (Algorithm 2), the ES-only trainer and the drop-in LayerSearch, on small MNIST subsets."""

import pytest
import torch
import torch.nn.functional as F

from evoprop.cli.main import main
from evoprop.config import TrainConfig
from evoprop.errors import ConfigError
from evoprop.es import make_strategy
from evoprop.models import build_mlp
from evoprop.runs import RunDir, build_trainer, run_training, summary_line
from evoprop.train import LayerSearch
from evoprop.train.hybrid import generations_before
from evoprop.train.layer_search import choose_strategy


def config(data_dir, **overrides):
    base = dict(method="hybrid", dataset="mnist", data_dir=str(data_dir), limit_train=1000, limit_test=500,
                depth=3, width=24, optimizer="sgd", lr=0.05, batch_size=64, strategy="sep", popsize=40,
                es_batch_size=128, epochs=2, seed=3, device="cpu", es_precision="float32")  # the same on every CPU
    return TrainConfig(**{**base, **overrides})


def test_layer_search_step_writes_the_generations_best_candidate(mnist):
    torch.manual_seed(0)
    model = build_mlp((1, 28, 28), 10, depth=2, width=16)
    search = LayerSearch(model, layers=[0], strategy="sep", popsize=12, seed=0)
    x, y = mnist.train.x[:128], mnist.train.y[:128]
    stats = search.step(x, y)
    with torch.no_grad():
        assert F.cross_entropy(model(x), y).item() == pytest.approx(stats["best"], rel=1e-5)
    assert stats["best"] <= stats["median"] and stats["sigma"] > 0
    assert search.strategy.generation == 1


def test_layer_search_can_write_the_mean_and_sync_to_the_model(mnist):
    torch.manual_seed(0)
    model = build_mlp((1, 28, 28), 10, depth=1)
    search = LayerSearch(model, strategy="sep", popsize=8, write="mean")
    search.step(mnist.train.x[:64], mnist.train.y[:64])
    torch.testing.assert_close(search.evaluator.get_vector(), search.strategy.mean)
    with torch.no_grad():
        model.layers[0].weight.add_(1.0)
    search.sync_mean()
    torch.testing.assert_close(search.strategy.mean, search.evaluator.get_vector())


def test_auto_strategy_is_standard_cma_when_its_covariance_fits():
    assert choose_strategy("auto", 100, torch.device("cpu")) == "cma"
    assert choose_strategy("auto", 2_000_000, torch.device("cpu")) == "sep"  # 96 TB of covariance
    with pytest.raises(ConfigError, match="valid: auto, paper"):
        choose_strategy("nope", 10, torch.device("cpu"))


def test_generations_are_spread_evenly_over_the_epoch():
    assert [generations_before(s, 5, 1) for s in range(1, 6)] == [1, 0, 0, 0, 0]  # Algorithm 2: once, first
    assert [generations_before(s, 6, 3) for s in range(1, 7)] == [1, 0, 1, 0, 1, 0]
    assert sum(generations_before(s, 2, 5) for s in (1, 2)) == 5


def test_es_only_training_learns_a_linear_model_well_above_chance(data_dir, tmp_path):
    cfg = config(data_dir, method="es", depth=1, popsize=100, es_batch_size=256, generations_per_epoch=40,
                 limit_train=3000, epochs=1)
    summary, run = run_training(cfg, out=tmp_path / "es")
    assert summary["best_test_f1"] > 0.5  # chance is 0.1
    record = run.read_metrics()[0]
    assert record["generations"] == 40 and record["grad_seconds"] == 0.0 and record["sigma"] > 0
    assert run.read_config().strategy == "sep" and run.read_config().popsize == 100


def test_es_only_epoch_is_one_pass_over_the_training_split(data_dir):
    trainer = build_trainer(config(data_dir, method="es", depth=1, es_batch_size=250, limit_train=1000).validate())
    trainer.fit(1)
    assert trainer.search.strategy.generation == 4


def test_hybrid_improves_over_its_initial_network(data_dir):
    trainer = build_trainer(config(data_dir, optimizer="momentum", lr=0.05, epochs=3).validate())
    initial = trainer.evaluate()["test_f1"]
    summary = trainer.fit(3)
    assert summary["best_test_f1"] > initial + 0.2
    assert trainer.search.strategy.generation == 3  # one generation per epoch
    h = trainer.history[-1]
    assert h["es_seconds"] > 0 and h["grad_seconds"] > 0 and h["es_best_loss"] <= h["es_median_loss"]


def _generation_from(strategy_state, mean, search, batch):
    """The strategy after one generation on ``batch`` from ``strategy_state``, its mean first set to ``mean``."""
    ref = make_strategy(search.strategy_name, search.evaluator.get_vector(), search.sigma0, search.strategy.popsize)
    ref.load_state_dict(strategy_state)
    if mean is not None:
        ref.mean = mean
    candidates = ref.ask()
    ref.tell(candidates, search.evaluator(candidates, *batch))
    return ref


@pytest.mark.parametrize("settings", [{"sync_mean": True}, {"combine": "sync"}])
def test_sync_mean_moves_the_strategy_to_the_trained_layer(data_dir, mnist, settings):
    trainer = build_trainer(config(data_dir, epochs=1, **settings).validate())
    assert trainer.search.combine == "sync"
    trainer.fit(1)
    search = trainer.search
    trained, own_mean, state = search.evaluator.get_vector(), search.strategy.mean, search.strategy.state_dict()
    assert not torch.equal(trained, own_mean)  # SGD moved the layer away from the ES mean
    batch = mnist.train.x[:128], mnist.train.y[:128]
    trainer.generation(batch)  # syncs before asking: the new samples centre on the trained weights
    synced = _generation_from(state, trained, search, batch)
    unsynced = _generation_from(state, None, search, batch)
    assert torch.equal(search.strategy.mean, synced.mean)
    assert not torch.allclose(search.strategy.mean, unsynced.mean)


def test_paper_rule_keeps_its_own_mean_and_writes_the_best_unconditionally(mnist):
    """Algorithm 2 as before the combination rules: a plain ask/evaluate/tell loop, the best written in."""
    torch.manual_seed(0)
    model = build_mlp((1, 28, 28), 10, depth=2, width=16)
    search = LayerSearch(model, layers=[0], strategy="sep", popsize=12, seed=0, combine="paper")
    ref = make_strategy("sep", search.evaluator.get_vector(), search.sigma0, 12, seed=0)
    for g in range(4):
        x, y = mnist.train.x[g * 64:(g + 1) * 64], mnist.train.y[g * 64:(g + 1) * 64]
        with torch.no_grad():
            model.layers[0].weight.mul_(0.9)  # stands in for gradient steps: must not move the ES mean
        stats = search.step(x, y)
        candidates = ref.ask()
        losses = search.evaluator(candidates, x, y)
        ref.tell(candidates, losses)
        assert torch.equal(search.strategy.mean, ref.mean)
        assert torch.equal(search.evaluator.get_vector(), candidates[int(losses.argmin())])
        assert stats["best"] == float(losses.min()) and "accepted" not in stats


def _acceptance_losses_over_generations(mnist, combine, generations=8):
    """(loss before, loss after, stats) of the model on each generation's acceptance batch, with SGD between."""
    torch.manual_seed(0)
    model = build_mlp((1, 28, 28), 10, depth=3, width=24)
    # σ0 small enough that a sampled layer sometimes beats the trained one (with the default, never)
    search = LayerSearch(model, layers=[0], strategy="sep", popsize=30, sigma0=0.02, seed=1, combine=combine)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(5)
    x, y = mnist.train.x[:4000], mnist.train.y[:4000]
    out = []
    for _ in range(generations):
        for _ in range(5):  # gradient steps between generations
            idx = torch.randint(0, len(x), (64,), generator=gen)
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        es_idx, acc_idx = torch.randperm(len(x), generator=gen)[:64], torch.randperm(len(x), generator=gen)[:1024]
        xa, ya = x[acc_idx], y[acc_idx]
        with torch.no_grad():
            before = F.cross_entropy(model(xa), ya).item()
            stats = search.step(x[es_idx], y[es_idx], accept=(xa, ya))
            out.append((before, F.cross_entropy(model(xa), ya).item(), stats))
    return out


def test_elitist_never_raises_the_acceptance_batch_loss(mnist):
    runs = _acceptance_losses_over_generations(mnist, "elitist")
    for before, after, stats in runs:
        assert after <= before
        assert stats["accept_incumbent_loss"] == before
        assert after == (stats["accept_challenger_loss"] if stats["accepted"] else before)
    assert 0 < sum(s["accepted"] for *_, s in runs) < len(runs)  # both outcomes occur
    # the same search writing its best unconditionally (sync) does make the layer worse at times
    assert any(after > before for before, after, _ in _acceptance_losses_over_generations(mnist, "sync"))


def test_elitist_and_inject_evaluate_the_trained_layer_with_the_population(mnist):
    torch.manual_seed(0)
    model = build_mlp((1, 28, 28), 10, depth=2, width=16)
    x, y = mnist.train.x[:128], mnist.train.y[:128]
    for combine in ("elitist", "inject"):
        search = LayerSearch(model, layers=[0], strategy="sep", popsize=12, seed=0, combine=combine)
        search.step(x, y)
        with torch.no_grad():
            model.layers[0].weight.mul_(0.9)  # stands in for gradient steps
        trained, own_mean = search.evaluator.get_vector(), search.strategy.mean
        state = search.strategy.state_dict()
        stats = search.step(x, y)
        expected = search.evaluator(trained.unsqueeze(0), x, y)[0]
        assert stats["incumbent"] == pytest.approx(float(expected), rel=1e-6)
        # the search was centred on the trained layer (elitist) or kept its own mean (inject)
        ref = make_strategy("sep", trained, search.sigma0, 12)
        ref.load_state_dict(state)
        ref.mean = trained if combine == "elitist" else own_mean
        ref.inject(trained)
        candidates = ref.ask()
        assert torch.equal(candidates[0], trained)
        ref.tell(candidates, search.evaluator(candidates, x, y))
        assert torch.allclose(search.strategy.mean, ref.mean, rtol=0, atol=1e-6)


def test_disjoint_leaves_the_searched_layer_to_the_es(data_dir):
    trainer = build_trainer(config(data_dir, combine="disjoint").validate())
    searched = {id(p) for p in trainer.search.evaluator.params}
    trained = [p for g in trainer.optimizer.param_groups for p in g["params"]]
    assert trained and not searched & {id(p) for p in trained}
    assert len(trained) + len(searched) == len(list(trainer.model.parameters()))
    trainer.generation()
    written = trainer.search.evaluator.get_vector()
    rest = [p.detach().clone() for p in trained]
    trainer.generations_per_epoch = 0  # one epoch of gradient steps alone
    trainer.train_epoch(1, 1)
    assert torch.equal(trainer.search.evaluator.get_vector(), written)
    assert all(not torch.equal(a, p) for a, p in zip(rest, trained))


def test_elitist_epochs_record_their_acceptance(data_dir, tmp_path):
    summary, run = run_training(config(data_dir, combine="elitist", generations_per_epoch=3, accept_batch_size=256,
                                       epochs=1), out=tmp_path / "r")
    record = run.read_metrics()[0]
    assert record["generations"] == 3 and 0 <= record["accepted"] <= 3
    assert record["accepted_fraction"] == record["accepted"] / 3
    assert record["accept_incumbent_loss"] > 0 and record["accept_challenger_loss"] > 0
    assert run.read_config().combine == "elitist"
    assert "sep P=40 elitist + sgd" in summary_line(summary, run)


@pytest.mark.parametrize("method, combine", [("hybrid", "paper"), ("es", "paper"), ("hybrid", "sync"),
                                             ("hybrid", "elitist"), ("hybrid", "inject"), ("hybrid", "disjoint")])
def test_resume_equals_an_uninterrupted_run(data_dir, tmp_path, method, combine):
    extra = {"generations_per_epoch": 3} if method == "es" else {"generations_per_epoch": 2}
    extra["combine"] = combine
    run_training(config(data_dir, method=method, epochs=3, **extra), out=tmp_path / "whole")
    run_training(config(data_dir, method=method, epochs=1, **extra), out=tmp_path / "part")
    run_training(resume=tmp_path / "part", epochs=3)
    whole, part = RunDir(tmp_path / "whole").load_checkpoint(), RunDir(tmp_path / "part").load_checkpoint()
    for k, v in whole["trainer"]["model"].items():
        assert torch.equal(v, part["trainer"]["model"][k]), k
    assert whole["trainer"]["search"]["strategy"]["generation"] == part["trainer"]["search"]["strategy"]["generation"]
    strip = lambda hs: [{k: v for k, v in h.items() if "seconds" not in k} for h in hs]  # noqa: E731
    assert strip(RunDir(tmp_path / "whole").read_metrics()) == strip(RunDir(tmp_path / "part").read_metrics())


@pytest.mark.parametrize(
    "args, words",
    [
        (["--popsize", "-5"], "popsize must be an integer >= 2"),
        (["--popsize", "1"], "popsize must be an integer >= 2"),
        (["--sigma0", "0"], "sigma0 must be a number in (0, 1000]"),
        (["--strategy", "nes"], "unknown strategy 'nes'; valid: auto, paper"),
        (["--es-layers", "4", "--depth", "2"], "es_layers [4] do not exist"),
        (["--es-layers", "a,b"], "--es-layers expects layer indices"),
        (["--max-memory", "lots"], "max_memory must be a size"),
        (["--es-write", "worst"], "unknown es_write"),
        (["--method", "genetic"], "unknown method 'genetic'; valid: gradient, hybrid, es"),
        (["--combine", "average"], "unknown combine 'average'; valid: paper, sync, elitist, inject, disjoint"),
        (["--combine", "inject", "--sync-mean"], "cannot be used with combine 'inject'"),
        (["--accept-batch-size", "0"], "accept_batch_size must be a positive integer"),
        (["--es-loss", "auc"], "unknown es_loss 'auc'; valid: nll, error, f1"),
    ],
)
def test_bad_es_settings_are_one_line_errors(capsys, args, words):
    status = main(["train", "--method", "hybrid", *args])
    err = capsys.readouterr().err
    assert status != 0 and len(err.strip().splitlines()) == 1 and words in err, err


def test_a_population_that_cannot_fit_the_memory_budget_is_a_one_line_error(capsys, data_dir, tmp_path):
    status = main(["train", "--method", "hybrid", "--data-dir", str(data_dir), "--limit-train", "200",
                   "--max-memory", "1K", "--out", str(tmp_path / "r"), "--no-progress"])
    err = capsys.readouterr().err
    assert status != 0 and "memory budget" in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("es_loss", ["error", "f1"])
def test_the_es_can_minimise_a_non_differentiable_loss_beside_cross_entropy(data_dir, tmp_path, es_loss):
    summary, run = run_training(config(data_dir, combine="elitist", es_loss=es_loss, es_batch_size=128,
                                       accept_batch_size=200, epochs=1), out=tmp_path / es_loss)
    record = run.read_metrics()[0]
    for key in ("es_best_loss", "es_median_loss", "accept_incumbent_loss", "accept_challenger_loss"):
        assert 0 <= record[key] <= 1, (key, record[key])  # error / 1 - F1, not a cross-entropy
    assert record["es_best_loss"] <= record["es_median_loss"]
    if es_loss == "error":  # a count of misclassified images out of the ES batch's 128
        assert record["es_best_loss"] * 128 == pytest.approx(round(record["es_best_loss"] * 128), abs=1e-4)
    trainer = build_trainer(run.read_config())
    assert trainer.search.loss == es_loss
    assert record["train_loss"] > 1  # the gradient part reports cross-entropy (about ln 10 at the start)
    assert f"sep P=40 elitist es-loss {es_loss} + sgd" in summary_line(summary, run)


def _separable_batch(mnist):
    """64 real MNIST 0s and 1s pooled to 4 x 4 pixels: a batch a linear layer separates (its NLL has infimum 0)."""
    keep = mnist.train.y[:512] < 2
    return F.avg_pool2d(mnist.train.x[:512][keep], 7)[:64], mnist.train.y[:512][keep][:64]


def _regularised_minimiser(x, y, weight_decay):
    """argmin of NLL + (λ/2)‖θ‖² over a linear layer (convex), by L-BFGS: the point an ES of that fitness must find."""
    torch.manual_seed(0)
    model = build_mlp(tuple(x.shape[1:]), 2, depth=1)
    params = list(model.parameters())
    opt = torch.optim.LBFGS(params, max_iter=500, tolerance_grad=1e-10, tolerance_change=1e-12,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y) + 0.5 * weight_decay * sum((p ** 2).sum() for p in params)
        loss.backward()
        return loss

    opt.step(closure)
    objective = closure().item()
    return torch.cat([p.detach().reshape(-1) for p in params]), objective


def test_an_l2_term_gives_a_separable_batch_a_finite_optimum_and_the_es_finds_it(mnist):
    """Without it the ES chases the scale of the logits (σ and ‖θ‖ grow: Table 1's sep row); with
    weight_decay λ it converges to the minimiser of NLL + (λ/2)‖θ‖², and reports that sum as the fitness."""
    x, y = _separable_batch(mnist)
    ends = {}
    for weight_decay in (0.0, 0.1):
        torch.manual_seed(0)
        model = build_mlp(tuple(x.shape[1:]), 2, depth=1)
        search = LayerSearch(model, strategy="cma", popsize=16, seed=0, write="mean", weight_decay=weight_decay)
        sigma0 = search.sigma0
        for _ in range(400):
            stats = search.step(x, y)
        ends[weight_decay] = search.strategy.mean, stats, sigma0
    mean, stats, sigma0 = ends[0.0]
    assert mean.norm() > 100 and stats["sigma"] > 10 * sigma0 and stats["best"] < 1e-6
    target, objective = _regularised_minimiser(x, y, 0.1)
    mean, stats, _ = ends[0.1]
    assert (mean - target).norm() < 0.01 * target.norm()
    assert stats["best"] == pytest.approx(objective, rel=1e-4)


def test_the_l2_term_is_in_every_fitness_the_search_compares(mnist):
    """The written best's reported fitness is its NLL plus (λ/2)‖θ‖², and so are both sides of elitist's test."""
    x, y = mnist.train.x[:128], mnist.train.y[:128]
    xa, ya = mnist.train.x[128:640], mnist.train.y[128:640]
    for combine in ("paper", "elitist"):
        torch.manual_seed(0)
        model = build_mlp((1, 28, 28), 10, depth=2, width=16)
        search = LayerSearch(model, layers=[0], strategy="sep", popsize=12, seed=0, combine=combine,
                             weight_decay=0.01)
        incumbent = search.evaluator.get_vector()
        stats = search.step(x, y, accept=(xa, ya))
        written = search.evaluator.get_vector()
        penalty = 0.005 * float(written.square().sum())
        with torch.no_grad():
            if combine == "paper":
                assert stats["best"] == pytest.approx(F.cross_entropy(model(x), y).item() + penalty, rel=1e-5)
            else:
                search.evaluator.set_vector(incumbent)
                expected = F.cross_entropy(model(xa), ya).item() + 0.005 * float(incumbent.square().sum())
                assert stats["accept_incumbent_loss"] == pytest.approx(expected, rel=1e-6)
                assert stats["incumbent"] == pytest.approx(
                    float(search.evaluator(incumbent.unsqueeze(0), x, y)[0]) + 0.005 * float(incumbent.square().sum()),
                    rel=1e-5)
    with pytest.raises(ConfigError, match="weight_decay"):
        LayerSearch(build_mlp((1, 28, 28), 10, depth=1), strategy="sep", popsize=4, weight_decay=-1.0)
