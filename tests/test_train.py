"""The gradient trainer and its run directory, on a small real MNIST subset."""

import json

import pytest
import torch

from evoprop.config import TrainConfig
from evoprop.errors import EvopropError, TrainingDiverged
from evoprop.runs import RunDir, build_trainer, run_training


def small_config(data_dir, **overrides):
    base = dict(dataset="mnist", data_dir=str(data_dir), limit_train=1500, limit_test=500, depth=2, width=32,
                optimizer="sgd", lr=0.05, batch_size=64, epochs=2, seed=1, device="cpu")
    return TrainConfig(**{**base, **overrides})


def final_params(run: RunDir):
    return run.load_checkpoint()["trainer"]["model"]


def test_training_learns_and_writes_the_run_directory(data_dir, tmp_path):
    summary, run = run_training(small_config(data_dir, epochs=3), out=tmp_path / "run")
    assert summary["status"] == "completed" and summary["epochs"] == 3
    assert summary["best_test_f1"] > 0.7  # chance is ~0.1
    for key in ("best_test_f1", "best_epoch", "val_selected_test_f1", "epochs", "seconds", "dataset", "method"):
        assert summary[key] is not None, key
    assert json.loads((run.path / "summary.json").read_text()) == summary
    history = run.read_metrics()
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert {"train_loss", "test_loss", "test_accuracy", "test_f1", "val_f1", "seconds"} <= set(history[0])
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    # the saved config is accepted by --config and rebuilds the same settings
    assert run.read_config() == TrainConfig.from_file(run.path / "config.yaml")
    assert run.read_config().lr == 0.05


def test_training_is_deterministic_for_a_seed(data_dir, tmp_path):
    _, a = run_training(small_config(data_dir), out=tmp_path / "a")
    _, b = run_training(small_config(data_dir), out=tmp_path / "b")
    _, c = run_training(small_config(data_dir, seed=2), out=tmp_path / "c")
    pa, pb, pc = final_params(a), final_params(b), final_params(c)
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert not torch.equal(pa["layers.0.weight"], pc["layers.0.weight"])


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_resume_equals_an_uninterrupted_run(data_dir, tmp_path, optimizer):
    cfg = dict(optimizer=optimizer, lr=None, epochs=3)
    whole_summary, whole = run_training(small_config(data_dir, **cfg), out=tmp_path / "whole")
    run_training(small_config(data_dir, **{**cfg, "epochs": 1}), out=tmp_path / "part")
    part_summary, part = run_training(resume=tmp_path / "part", epochs=3)
    pw, pp = final_params(whole), final_params(part)
    assert all(torch.equal(pw[k], pp[k]) for k in pw)
    strip = lambda hs: [{k: v for k, v in h.items() if "seconds" not in k} for h in hs]  # noqa: E731
    assert strip(whole.read_metrics()) == strip(part.read_metrics())
    assert part_summary["best_test_f1"] == whole_summary["best_test_f1"]


def test_a_killed_run_loses_nothing_and_resumes_exactly(data_dir, tmp_path, monkeypatch):
    _, whole = run_training(small_config(data_dir, epochs=3), out=tmp_path / "whole")

    from evoprop.train import Trainer
    original = Trainer.train_epoch

    def killed_in_epoch_3(self, epoch, epochs):
        if epoch == 3:
            raise KeyboardInterrupt
        return original(self, epoch, epochs)

    monkeypatch.setattr(Trainer, "train_epoch", killed_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        run_training(small_config(data_dir, epochs=3), out=tmp_path / "killed")
    killed = RunDir(tmp_path / "killed")
    assert killed.read_summary()["status"] == "interrupted" and killed.read_summary()["epochs"] == 2
    # a kill between checkpoint and metrics write leaves a stray line; resume must repair it
    killed.append_metrics({"epoch": 99})
    monkeypatch.setattr(Trainer, "train_epoch", original)
    summary, _ = run_training(resume=tmp_path / "killed")
    assert summary["status"] == "completed"
    assert [h["epoch"] for h in killed.read_metrics()] == [1, 2, 3]
    pw, pk = final_params(whole), final_params(killed)
    assert all(torch.equal(pw[k], pk[k]) for k in pw)


def test_a_run_killed_before_its_first_epoch_restarts_from_its_config(data_dir, tmp_path):
    RunDir.create(tmp_path / "early", small_config(data_dir, epochs=1))  # config written, no checkpoint yet
    summary, _ = run_training(resume=tmp_path / "early")
    assert summary["epochs"] == 1


def test_divergence_stops_with_a_clear_error_and_keeps_the_last_good_epoch(data_dir, tmp_path):
    trainer = build_trainer(small_config(data_dir))
    trainer.fit(1)
    good = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.data.train.x[:] = float("nan")
    with pytest.raises(TrainingDiverged, match="epoch 2.*lower the learning rate"):
        trainer.fit(2)
    assert trainer.epoch == 1 and all(torch.isfinite(v).all() for v in good.values())


def test_a_diverging_run_is_marked_and_resumable_from_its_last_good_epoch(data_dir, tmp_path):
    with pytest.raises(TrainingDiverged):
        run_training(small_config(data_dir, lr=1e38, depth=1, epochs=2), out=tmp_path / "nan")
    summary = RunDir(tmp_path / "nan").read_summary()
    assert summary["status"] == "diverged"


def test_out_refuses_to_overwrite_a_run(data_dir, tmp_path):
    run_training(small_config(data_dir, epochs=1), out=tmp_path / "r")
    with pytest.raises(EvopropError, match="already holds a run.*--resume"):
        run_training(small_config(data_dir, epochs=1), out=tmp_path / "r")


@pytest.mark.parametrize("settings, tail", [
    (dict(method="es"), "-mnist-d1-es"),  # an ES-only run has no gradient optimizer, so none in its name
    (dict(method="hybrid", depth=3, optimizer="adam"), "-mnist-d3-hybrid-adam"),
    (dict(dataset="cifar10", model="resnet18"), "-cifar10-resnet18-gradient-sgd"),
    (dict(dataset="cifar10", model="resnet18", resnet_width=16), "-cifar10-resnet18-w16-gradient-sgd"),
])
def test_the_default_run_directory_names_what_trains(settings, tail):
    import re

    from evoprop.runs.launch import default_run_dir

    path = default_run_dir(TrainConfig(**settings))
    assert path.parent.name == "runs" and re.fullmatch(r"\d{8}-\d{6}" + re.escape(tail), path.name), path
