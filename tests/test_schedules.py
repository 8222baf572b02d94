"""Learning-rate / batch-size schedules (Sato & Iiduka 2023): the promised δ per stage, real batch sizes, C, resume."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from evoprop.config import TrainConfig
from evoprop.errors import ConfigError
from evoprop.models import build_model
from evoprop.runs import run_training
from evoprop.train import Trainer
from evoprop.train.gradient_noise import _per_example, gradient_noise
from evoprop.train.schedules import Schedule, TrainingSchedule, smoothing_degree

GAMMA = 1 / math.sqrt(2)


def small_config(data_dir, **overrides):
    base = dict(dataset="mnist", data_dir=str(data_dir), limit_train=600, limit_test=200, depth=2, width=16,
                optimizer="sgd", lr=0.1, batch_size=32, epochs=3, seed=3, device="cpu", noise_sample=256)
    return TrainConfig(**{**base, **overrides})


# the δ sequence each schedule promises ----------------------------------------------------

@pytest.mark.parametrize("name, per_stage", [("constant", 1.0), ("lr-decay", GAMMA), ("batch-growth", GAMMA),
                                             ("hybrid", GAMMA)])
def test_each_graduated_schedule_cuts_delta_by_gamma_per_stage(name, per_stage):
    s = Schedule(name, lr=0.1, batch_size=32, epochs=10, stage_epochs=2, gamma=None if name == "constant" else GAMMA)
    c = 3.0  # δ for a given noise C
    deltas = [s.delta(epoch, c) for epoch in range(1, 11)]
    for epoch in range(1, 11):
        stage = (epoch - 1) // 2
        # hybrid rounds b0/γ^s (45.25 -> 45, 90.5 -> 91) to whole examples: δ is then within 1 % of the ideal
        assert deltas[epoch - 1] == pytest.approx(0.1 * c / math.sqrt(32) * per_stage**stage, rel=1e-2)
    assert deltas[0] == deltas[1] and deltas[2] == deltas[3]  # constant within a stage
    if name == "lr-decay":
        assert [s.batch_size_at(e) for e in (1, 9)] == [32, 32] and s.lr_at(9) == pytest.approx(0.1 / 4)
    if name == "batch-growth":
        assert [s.batch_size_at(e) for e in (1, 3, 5, 7, 9)] == [32, 64, 128, 256, 512] and s.lr_at(9) == 0.1
    if name == "hybrid":  # δ's cut split evenly: lr × √γ and b × 1/γ per stage
        assert [s.batch_size_at(e) for e in (1, 3, 5, 7, 9)] == [32, 45, 64, 91, 128]
        assert s.lr_at(5) == pytest.approx(0.1 * GAMMA)


def test_caps_stop_the_batch_growth_and_the_lr_decay():
    b = Schedule("batch-growth", lr=0.1, batch_size=32, epochs=8, stage_epochs=1, gamma=0.5, max_batch_size=1000)
    assert [b.batch_size_at(e) for e in range(1, 5)] == [32, 128, 512, 1000]
    lr = Schedule("lr-decay", lr=0.1, batch_size=32, epochs=8, stage_epochs=1, gamma=0.5, min_lr=0.02)
    assert [lr.lr_at(e) for e in range(1, 5)] == pytest.approx([0.1, 0.05, 0.025, 0.02])


def test_step_and_cosine_match_torch_schedulers_stepped_per_epoch():
    def torch_lrs(make, epochs):
        opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
        sched, lrs = make(opt), []
        for _ in range(epochs):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return lrs

    step = Schedule("step", lr=0.1, batch_size=32, epochs=12, stage_epochs=3, gamma=0.1, milestones=(6, 9))
    expected = torch_lrs(lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [6, 9], gamma=0.1), 12)
    assert [step.lr_at(e) for e in range(1, 13)] == pytest.approx(expected)
    cosine = Schedule("cosine", lr=0.1, batch_size=32, epochs=12, stage_epochs=3, min_lr=0.001)
    expected = torch_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=12, eta_min=0.001), 12)
    assert [cosine.lr_at(e) for e in range(1, 13)] == pytest.approx(expected)


# the trainer really changes the batch size and the learning rate ----------------------------

def test_the_optimizer_sees_the_scheduled_batch_sizes_and_learning_rates(mnist):
    from evoprop.data.splits import DatasetSplits, Split

    train = Split(mnist.train.x[:400], mnist.train.y[:400])
    data = DatasetSplits("mnist", "paper", train, None, Split(mnist.test.x[:100], mnist.test.y[:100]), 10,
                         (1, 28, 28), [str(i) for i in range(10)])
    torch.manual_seed(0)
    model = build_model("mlp", data.input_shape, 10, depth=2, width=16)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    schedule = Schedule("hybrid", lr=0.1, batch_size=25, epochs=3, stage_epochs=1, gamma=0.5)
    trainer = Trainer(model, optimizer, data, batch_size=25, seed=0,
                      schedule=TrainingSchedule(schedule, noise_sample=0))
    sizes, lrs = [], []
    model.register_forward_pre_hook(lambda m, args: sizes.append(len(args[0])) if m.training else None)
    optimizer.register_step_post_hook(lambda opt, args, kwargs: lrs.append(opt.param_groups[0]["lr"]))
    per_epoch = []
    trainer.fit(3, on_epoch_end=lambda tr, rec: per_epoch.append((list(sizes), list(lrs))) or (sizes.clear(),
                                                                                                lrs.clear()))
    # hybrid with γ 0.5: batch 25 -> 50 -> 100, lr 0.1 -> 0.1·√0.5 -> 0.05; 400 examples per epoch
    for (seen, rates), b, lr in zip(per_epoch, (25, 50, 100), (0.1, 0.1 * math.sqrt(0.5), 0.05)):
        assert seen == [b] * (400 // b) and sum(seen) == 400
        assert len(rates) == 400 // b and rates == pytest.approx([lr] * len(rates))
    assert [h["batch_size"] for h in trainer.history] == [25, 50, 100]


def test_a_batch_larger_than_the_training_split_is_the_whole_split(data_dir, tmp_path):
    cfg = small_config(data_dir, limit_train=300, schedule="batch-growth", gamma=0.5, stage_epochs=1, epochs=3,
                       batch_size=40, noise_sample=0)
    _, run = run_training(cfg, out=tmp_path / "r", echo=lambda line: None)
    assert [h["batch_size"] for h in run.read_metrics()] == [40, 160, 300]  # 640 > 300 examples: one full batch


# the noise C ----------------------------------------------------------------------------

def _toy():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3, 2))
    x = torch.tensor([[1.0, 0.0, 2.0], [0.5, -1.0, 0.0], [-1.0, 1.0, 1.0], [2.0, 0.5, -0.5]])
    y = torch.tensor([0, 1, 1, 0])
    return model, x, y


def _hand_computed_c(model, x, y) -> float:
    """Softmax regression: one example's gradient is (p − e_y) xᵀ for W and p − e_y for b."""
    W = model[1].weight.detach().double().numpy()
    b = model[1].bias.detach().double().numpy()
    X, Y = x.double().numpy(), y.numpy()
    grads = []
    for xi, yi in zip(X, Y):
        z = W @ xi + b
        p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        r = p - np.eye(2)[yi]
        grads.append(np.concatenate([np.outer(r, xi).ravel(), r]))
    G = np.array(grads)
    return float(np.sqrt(((G - G.mean(axis=0)) ** 2).sum(axis=1).mean()))


def test_the_noise_estimate_matches_a_hand_computed_value_on_a_toy_problem():
    model, x, y = _toy()
    expected = _hand_computed_c(model, x, y)
    fast = gradient_noise(model, x, y, per="example")  # the per-example outer-product path (all nn.Linear)
    params = {k: p for k, p in model.named_parameters()}
    general = _per_example(model, params, x, y, torch.nn.functional.cross_entropy)  # torch.func vmap path
    one_per_batch = gradient_noise(model, x, y, per="batch", batch_size=1)  # batches of 1: the same formula
    assert fast.c == pytest.approx(expected, rel=1e-6)
    assert general.c == pytest.approx(expected, rel=1e-6)
    assert one_per_batch.c == pytest.approx(expected, rel=1e-6)
    assert fast.examples == 4 and expected > 0.1


def test_the_per_batch_estimate_agrees_with_the_per_example_one_and_changes_nothing(mnist):
    torch.manual_seed(0)
    model = build_model("mlp", mnist.input_shape, 10, depth=3, width=64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = mnist.train.x[:2048], mnist.train.y[:2048]
    exact = gradient_noise(model, x, y, per="example")
    batched = gradient_noise(model, x, y, per="batch", batch_size=16)
    assert batched.c == pytest.approx(exact.c, rel=0.2)
    assert batched.grad_norm == pytest.approx(exact.grad_norm, rel=1e-4)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_resnet_noise_is_per_batch_and_restores_the_batch_norm_statistics(mnist):
    torch.manual_seed(0)
    model = build_model("resnet18", mnist.input_shape, 10, resnet_width=4)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    noise = gradient_noise(model, mnist.train.x[:64], mnist.train.y[:64])
    assert noise.per == "batch" and noise.c > 0 and noise.examples == 64
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training
    with pytest.raises(ConfigError, match="batch normalisation"):
        gradient_noise(model, mnist.train.x[:64], mnist.train.y[:64], per="example")


# runs: δ logged, hybrid trainer, resume ---------------------------------------------------

def test_a_scheduled_run_logs_lr_batch_size_c_and_delta_per_epoch_and_stage(data_dir, tmp_path):
    cfg = small_config(data_dir, schedule="lr-decay", stage_epochs=2, epochs=3)
    summary, run = run_training(cfg, out=tmp_path / "r", echo=lambda line: None)
    history = run.read_metrics()
    assert [h["stage"] for h in history] == [1, 1, 2]
    assert [h["lr"] for h in history] == pytest.approx([0.1, 0.1, 0.1 * GAMMA])
    assert history[0]["noise_c"] == history[1]["noise_c"] != history[2]["noise_c"]  # measured per stage
    assert "noise_seconds" in history[0] and "noise_seconds" not in history[1]
    for h in history:
        assert h["delta"] == pytest.approx(smoothing_degree(h["lr"], h["noise_c"], h["batch_size"]))
    assert [s["first_epoch"] for s in summary["stages"]] == [1, 3]
    assert summary["stages"][1]["delta"] == history[2]["delta"] and summary["schedule"] == "lr-decay"
    saved = run.read_config()
    assert saved.stage_epochs == 2 and saved.gamma == pytest.approx(GAMMA)  # resolved defaults recorded


def test_defaults_resolve_to_five_stages_and_the_papers_gamma(data_dir, tmp_path):
    _, run = run_training(small_config(data_dir, schedule="batch-growth", epochs=5, limit_train=200,
                                       noise_sample=0), out=tmp_path / "r", echo=lambda line: None)
    saved = run.read_config()
    assert saved.stage_epochs == 1 and saved.gamma == pytest.approx(GAMMA)
    assert [h["batch_size"] for h in run.read_metrics()] == [32, 64, 128, 200, 200]  # 200: the whole split


def test_hybrid_runs_get_schedules_too(data_dir, tmp_path):
    cfg = small_config(data_dir, method="hybrid", strategy="sep", popsize=8, es_batch_size=64, schedule="batch-growth",
                       stage_epochs=1, epochs=2)
    _, run = run_training(cfg, out=tmp_path / "r", echo=lambda line: None)
    history = run.read_metrics()
    assert [h["batch_size"] for h in history] == [32, 64]
    assert all("sigma" in h and h["generations"] >= 1 for h in history) and all(h["delta"] > 0 for h in history)


@pytest.mark.parametrize("schedule", ["hybrid", "cosine"])
def test_resume_equals_an_uninterrupted_run_under_a_schedule(data_dir, tmp_path, schedule):
    # stages of 2 epochs: the resume after epoch 1 lands mid-stage and must reuse the stage's C
    extra = dict(stage_epochs=2) if schedule == "hybrid" else {}
    whole_summary, whole = run_training(small_config(data_dir, schedule=schedule, **extra), out=tmp_path / "whole",
                                        echo=lambda line: None)
    part_cfg = small_config(data_dir, schedule=schedule, **extra)
    trainer_stop = {"after": 1}

    # interrupt the run after its first epoch, as a kill would, then resume it
    import evoprop.runs.launch as launch

    original = launch.Trainer.fit

    def fit_one_epoch(self, epochs, on_epoch_end=None):
        return original(self, trainer_stop["after"], on_epoch_end)

    launch.Trainer.fit = fit_one_epoch
    try:
        run_training(part_cfg, out=tmp_path / "part", echo=lambda line: None)
    finally:
        launch.Trainer.fit = original
    part_summary, part = run_training(resume=tmp_path / "part", echo=lambda line: None)
    pw, pp = whole.load_checkpoint()["trainer"]["model"], part.load_checkpoint()["trainer"]["model"]
    assert all(torch.equal(pw[k], pp[k]) for k in pw)
    strip = lambda hs: [{k: v for k, v in h.items() if "seconds" not in k} for h in hs]  # noqa: E731
    assert strip(whole.read_metrics()) == strip(part.read_metrics())
    assert part_summary["stages"] == whole_summary["stages"]


# one-line errors ---------------------------------------------------------------------------

@pytest.mark.parametrize("settings, message", [
    (dict(schedule="warmup"), "unknown schedule 'warmup'"),
    (dict(schedule="lr-decay", gamma=1.5), r"gamma must be a number in \(0, 1\) \(the factor"),
    (dict(schedule="constant", gamma=0.5), "gamma has no effect with schedule constant"),
    (dict(schedule="batch-growth", max_batch_size=16), "max_batch_size 16 is below the starting batch_size 32"),
    (dict(schedule="hybrid", stage_epochs=0), "stage_epochs must be a positive integer"),
    (dict(schedule="lr-decay", milestones=[2]), "milestones are for schedule step only"),
    (dict(schedule="step", milestones=[3, 2]), "milestones must be increasing"),
    (dict(schedule="step", milestones=[3]), "is not before the last epoch"),
    (dict(schedule="lr-decay", min_lr=0.5), "min_lr 0.5 must be below the starting lr 0.1"),
    (dict(schedule="hybrid", noise_sample=1), "noise_sample must be 0"),
    (dict(gamma=0.5), "gamma needs a schedule"),
    (dict(method="es", schedule="lr-decay"), "method es has no learning rate or batch size"),
    (dict(model="resnet18", method="hybrid"), "method hybrid searches MLP layers by index"),
    (dict(model="vgg"), "unknown model 'vgg'"),
])
def test_bad_schedule_settings_are_one_line_config_errors(data_dir, settings, message):
    with pytest.raises(ConfigError, match=message) as info:
        small_config(data_dir, **settings).validate()
    assert "\n" not in str(info.value)
