"""evoprop tune: the search space, a tiny study end to end on SQLite, its best config, pruning, samplers, errors."""

from __future__ import annotations

import json

import optuna
import pytest
from optuna.artifacts import get_all_artifact_meta
from optuna.trial import FixedTrial, TrialState

from evoprop.cli.main import main
from evoprop.config import TrainConfig
from evoprop.errors import ConfigError
from evoprop.tune import load_tune_config
from evoprop.tune.space import parse_space, sample_config
from evoprop.tune.storage import open_storage
import tune_helpers
from tune_helpers import write_tune_config

one_torch_thread = tune_helpers.one_torch_thread  # autouse: every test here trains on one thread


def _study(storage: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(storage))


# the search space -------------------------------------------------------------------------

def test_the_search_space_reads_floats_ints_categoricals_and_conditions():
    base = TrainConfig(method="hybrid")
    params = parse_space({
        "lr": {"low": "1e-4", "high": 1.0, "log": True},  # YAML 1.1 reads 1e-4 as a string
        "popsize": {"low": 8, "high": 64, "step": 8},
        "sigma0": {"low": 0.01, "high": 0.1},
        "optimizer": ["sgd", "adam"],
        "optimizer_options.momentum": {"low": 0.0, "high": 0.9, "when": {"optimizer": "sgd"}},
    }, base)
    kinds = {p.key: p.kind for p in params}
    assert kinds == {"lr": "float", "popsize": "int", "sigma0": "float", "optimizer": "categorical",
                     "optimizer_options.momentum": "float"}
    assert params[0].low == 1e-4 and params[0].log

    sgd = sample_config(FixedTrial({"lr": 0.05, "popsize": 16, "sigma0": 0.02, "optimizer": "sgd",
                                    "optimizer_options.momentum": 0.5}), params, base)
    assert (sgd.lr, sgd.popsize, sgd.optimizer, sgd.optimizer_options) == (0.05, 16, "sgd", {"momentum": 0.5})
    adam = sample_config(FixedTrial({"lr": 0.05, "popsize": 16, "sigma0": 0.02, "optimizer": "adam"}), params, base)
    assert adam.optimizer == "adam" and adam.optimizer_options == {}  # momentum is only searched for sgd
    assert base.optimizer_options == {} and base.lr is None  # the base config is never modified


@pytest.mark.parametrize("space, message", [
    ({"learning_rate": {"low": 0.1, "high": 1}}, "'learning_rate' is not a training setting"),
    ({"optimizer": ["sgd", "nope"]}, "search_space.optimizer = 'nope' is not a valid setting"),
    ({"batch_size": {"low": 0, "high": 64}}, "search_space.batch_size = 0 is not a valid setting"),
    ({"lr": {"low": 0.0, "high": 1.0, "log": True}}, "a log-scale range needs low > 0"),
    ({"lr": {"low": 1.0, "high": 0.1}}, "low (1) must not exceed high (0.1)"),
    ({"lr": {"low": 0.1, "high": 1.0, "log": True, "step": 0.1}}, "step and log cannot be combined"),
    ({"batch_size": {"low": 16.5, "high": 64}}, "an int range needs integer low, high and step"),
    ({"activation": {"low": 1, "high": 2}}, "activation is not a number; give its choices"),
    ({"lr": {"lo": 0.1, "high": 1.0}}, "unknown key(s) lo"),
    ({"optimizer_options.momentum": {"low": 0.0, "high": 0.9}}, "search_space.optimizer_options.momentum = 0.0"),
])
def test_a_wrong_search_space_is_one_clear_error_before_any_trial(space, message):
    with pytest.raises(ConfigError) as err:
        parse_space(space, TrainConfig(optimizer="adam"))
    assert message in str(err.value)


def test_the_objective_is_never_a_test_split_metric(tmp_path, data_dir, capsys):
    path = write_tune_config(tmp_path / "t.yaml", data_dir, study={"metric": "test_f1"})
    with pytest.raises(ConfigError, match="must not be a test-split metric"):
        load_tune_config(path)
    assert main(["tune", "--config", str(path), "--out", str(tmp_path / "o")]) == 1
    assert "must not be a test-split metric ('test_f1')" in capsys.readouterr().err
    assert main(["tune", "--config", str(path), "--metric", "test_f1"]) == 2  # not even a choice of the option
    no_val = write_tune_config(tmp_path / "n.yaml", data_dir, train={"val_fraction": 0})
    with pytest.raises(ConfigError, match="needs a validation split"):
        load_tune_config(no_val)


def test_command_line_training_options_override_the_file_but_not_searched_settings(tmp_path, data_dir):
    path = write_tune_config(tmp_path / "t.yaml", data_dir)
    tune = load_tune_config(path, {"epochs": 7, "limit_train": 100}, {"n_trials": 4, "name": None})
    assert (tune.train.epochs, tune.train.limit_train, tune.study.n_trials, tune.study.name) == (7, 100, 4, "t")
    assert tune.storage == "sqlite:///tune/t/study.db"
    with pytest.raises(ConfigError, match="lr is searched"):
        load_tune_config(path, {"lr": 0.1})


@pytest.mark.slow
def test_storage_names_are_checked(tmp_path):
    open_storage(f"sqlite:///{tmp_path / 'a.db'}")  # creates the database
    with pytest.raises(ConfigError, match="is a SQLite database; name it as a URL: sqlite:///"):
        open_storage(str(tmp_path / "a.db"))  # a path without :// is a journal file
    with pytest.raises(ConfigError, match="cannot open storage bogus://x"):
        open_storage("bogus://x")


# a study end to end -----------------------------------------------------------------------

@pytest.mark.slow
def test_a_tiny_study_on_sqlite_runs_trials_as_run_dirs_and_its_best_config_reruns_to_the_same_score(
        tmp_path, data_dir, capsys):
    config = write_tune_config(tmp_path / "tiny.yaml", data_dir, train={"epochs": 3})
    storage = f"sqlite:///{tmp_path / 's.db'}"
    out = tmp_path / "study"
    args = ["tune", "--config", str(config), "--n-trials", "3", "--storage", storage, "--epochs", "2",
            "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr()
    study = _study(storage, "tiny")
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    for trial in trials:
        run_dir = out / "trials" / f"trial-{trial.number:04d}"
        assert trial.user_attrs["run_dir"] == str(run_dir.resolve())
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["status"] == "completed" and summary["epochs"] == 2  # --epochs overrode the file's 3
        assert trial.value == summary["best_val_f1"]
        assert sorted(trial.intermediate_values) == [1, 2]
        names = sorted(a.filename for a in get_all_artifact_meta(trial, storage=study._storage))
        assert names == ["first_layer.png", "learning_curve.png"]
    assert "best: trial" in printed.out and "complete: val_f1" in printed.err

    best = out / "best.yaml"
    rerun = tmp_path / "rerun"
    assert main(["train", "--config", str(best), "--out", str(rerun)]) == 0
    assert json.loads((rerun / "summary.json").read_text())["best_val_f1"] == study.best_value

    # The same command again: the study already holds its 3 trials; a changed base setting is refused.
    assert main(args) == 0 and len(_study(storage, "tiny").get_trials()) == 3
    assert main(args[:-4] + ["--epochs", "1", "--out", str(out)]) == 1
    assert "was created with other settings (train.epochs differ)" in capsys.readouterr().err


@pytest.mark.slow
def test_pruning_stops_hopeless_trials_and_their_runs_say_so(tmp_path, data_dir):
    config = write_tune_config(
        tmp_path / "prune.yaml", data_dir, train={"epochs": 3, "optimizer": "sgd"},
        space={"lr": {"low": 1.0e-6, "high": 1.0, "log": True}},
        study={"sampler": "random", "pruner": "median", "pruner_options": {"n_startup_trials": 2}, "figures": False})
    storage = f"sqlite:///{tmp_path / 's.db'}"
    assert main(["tune", "--config", str(config), "--n-trials", "6", "--storage", storage,
                 "--out", str(tmp_path / "o")]) == 0
    trials = _study(storage, "prune").get_trials()
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned and len([t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]) == 6
    for trial in pruned:
        summary = json.loads((tmp_path / "o" / "trials" / f"trial-{trial.number:04d}" / "summary.json").read_text())
        assert summary["status"] == "pruned" and summary["epochs"] < 3  # stopped early, its epochs kept
        assert trial.user_attrs["run_status"] == "pruned" and max(trial.intermediate_values) == summary["epochs"]


@pytest.mark.slow
@pytest.mark.parametrize("sampler, pruner, space, n_trials, expected", [
    ("cmaes", "hyperband", {"lr": {"low": 1.0e-3, "high": 0.5, "log": True}}, 3, 3),
    # a grid of 4 points: asking for 6 trials runs each point once
    ("grid", "none", {"batch_size": [32, 64], "lr": {"low": 0.05, "high": 0.1, "step": 0.05}}, 6, 4),
])
def test_other_samplers_and_pruners(tmp_path, data_dir, sampler, pruner, space, n_trials, expected):
    config = write_tune_config(tmp_path / "s.yaml", data_dir, space=space,
                               study={"sampler": sampler, "pruner": pruner, "figures": False})
    storage = f"sqlite:///{tmp_path / 's.db'}"
    assert main(["tune", "--config", str(config), "--n-trials", str(n_trials), "--storage", storage,
                 "--out", str(tmp_path / "o")]) == 0
    trials = _study(storage, "s").get_trials()
    assert len(trials) == expected
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    if sampler == "grid":
        assert sorted((t.params["batch_size"], t.params["lr"]) for t in trials) == [
            (32, 0.05), (32, 0.1), (64, 0.05), (64, 0.1)]
