"""The hybrid trainer (Algorithm 2), the ES-only trainer and the drop-in LayerSearch, on small MNIST subsets."""

import pytest
import torch
import torch.nn.functional as F

from evoprop.cli.main import main
from evoprop.config import TrainConfig
from evoprop.errors import ConfigError
from evoprop.models import build_mlp
from evoprop.runs import RunDir, build_trainer, run_training
from evoprop.train import LayerSearch
from evoprop.train.hybrid import generations_before
from evoprop.train.layer_search import choose_strategy


def config(data_dir, **overrides):
    base = dict(method="hybrid", dataset="mnist", data_dir=str(data_dir), limit_train=1000, limit_test=500,
                depth=3, width=24, optimizer="sgd", lr=0.05, batch_size=64, strategy="sep", popsize=40,
                es_batch_size=128, epochs=2, seed=3, device="cpu")
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


def test_sync_mean_moves_the_strategy_to_the_trained_layer(data_dir):
    trainer = build_trainer(config(data_dir, sync_mean=True, epochs=1).validate())
    trainer.fit(1)
    trained = trainer.search.evaluator.get_vector()
    trainer.generation()  # syncs before asking: the new samples centre on the trained weights
    assert not torch.equal(trained, trainer.search.evaluator.get_vector())  # the best was written in


@pytest.mark.parametrize("method", ["hybrid", "es"])
def test_resume_equals_an_uninterrupted_run(data_dir, tmp_path, method):
    extra = {"generations_per_epoch": 3} if method == "es" else {"generations_per_epoch": 2}
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
