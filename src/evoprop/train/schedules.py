"""Learning-rate and batch-size schedules, among them implicit graduated optimization (Sato & Iiduka 2023).

Sato & Iiduka (2023) show that SGD's mini-batch noise smooths the loss by a degree

    δ = η · C / √b        (η learning rate, b batch size, C the stochastic gradient's noise, see
                           :mod:`evoprop.train.gradient_noise`)

and that shrinking δ stage by stage is graduated optimization done implicitly. A stage is
``stage_epochs`` epochs; stage s (0-based) of each schedule uses, with γ the factor per stage:

============  ====================  =====================  =======================
schedule      learning rate         batch size             δ per stage
============  ====================  =====================  =======================
constant      η₀                    b₀                     δ₀
lr-decay      η₀ γˢ                 b₀                     δ₀ γˢ
batch-growth  η₀                    b₀ / γ²ˢ               δ₀ γˢ
hybrid        η₀ γ^(s/2)            b₀ / γˢ                δ₀ γˢ
step          η₀ γ^(milestones ≤ e−1)  b₀                  (the usual step decay, γ 0.1)
cosine        cosine from η₀ to min_lr over the run, per epoch   b₀
============  ====================  =====================  =======================

``hybrid`` splits δ's reduction evenly between the two knobs (in log terms): √γ from the
learning rate and √γ from the batch size (b grows by 1/γ, so √b by 1/√γ). With the paper's
γ = 1/√2 that is lr × 0.84 and batch × 1.41 per stage. Batch sizes are rounded to the
nearest integer from the closed form (so rounding never compounds) and capped by
``max_batch_size``; learning rates are floored at ``min_lr``. A cap that binds stops δ from
shrinking by the full γ: the logged δ is always the one actually used (from the rounded,
capped values). ``C`` is measured again at the start of every stage, so δ's logged decrease
also shows how the noise itself changes as training proceeds.

Everything here is a pure function of the epoch number: a resumed run recomputes the learning
rate and batch size of its next epoch from the epoch alone, and reads the current stage's C
back from its history, so resuming needs no scheduler state. That is also why the learning
rate is set here rather than by a ``torch.optim.lr_scheduler``: those count their own steps
(state to save and keep in step with the trainer), and none of them changes the batch size.
The learning rate is set per parameter group relative to the group's ``initial_lr`` (the key
torch's schedulers use), so groups with their own learning rates keep their ratios.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from evoprop.errors import ConfigError
from evoprop.optim.registry import get_spec
from evoprop.train.gradient_noise import gradient_noise

SCHEDULES = ("constant", "lr-decay", "batch-growth", "hybrid", "step", "cosine")
#: The four schedules of Sato & Iiduka (2023): δ constant, or cut by γ per stage through η, b or both.
GRADUATED = ("constant", "lr-decay", "batch-growth", "hybrid")
#: γ per stage unless given: the paper's δ cut by 1/√2, and the usual step decay's ÷10.
DEFAULT_GAMMA = {"lr-decay": 1 / math.sqrt(2), "batch-growth": 1 / math.sqrt(2), "hybrid": 1 / math.sqrt(2),
                 "step": 0.1}
#: Stages in a run unless ``stage_epochs`` is given (the paper: 200 epochs in stages of 40).
DEFAULT_STAGES = 5
#: Examples on which C is estimated at the start of each stage unless ``noise_sample`` says otherwise.
DEFAULT_NOISE_SAMPLE = 1024


@dataclass(frozen=True)
class Schedule:
    """Learning rate and batch size of every epoch (1-based) of a run of ``epochs`` epochs."""

    name: str
    lr: float
    batch_size: int
    epochs: int
    stage_epochs: int
    gamma: float | None = None
    max_batch_size: int | None = None
    min_lr: float = 0.0
    milestones: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        check_schedule(self.name, lr=self.lr, batch_size=self.batch_size, epochs=self.epochs,
                       stage_epochs=self.stage_epochs, gamma=self.gamma, max_batch_size=self.max_batch_size,
                       min_lr=self.min_lr, milestones=list(self.milestones) or None)
        object.__setattr__(self, "milestones", tuple(self.milestones))

    def stage(self, epoch: int) -> int:
        """0-based stage of ``epoch`` (1-based)."""
        return (epoch - 1) // self.stage_epochs

    def is_stage_start(self, epoch: int) -> bool:
        return (epoch - 1) % self.stage_epochs == 0

    def lr_at(self, epoch: int) -> float:
        s = self.stage(epoch)
        if self.name == "lr-decay":
            lr = self.lr * self.gamma**s
        elif self.name == "hybrid":
            lr = self.lr * self.gamma ** (s / 2)
        elif self.name == "step":
            lr = self.lr * self.gamma ** sum(1 for m in self.milestones if m <= epoch - 1)
        elif self.name == "cosine":
            # torch's CosineAnnealingLR(T_max=epochs, eta_min=min_lr) stepped once per epoch, in closed form
            t = (epoch - 1) / self.epochs
            return self.min_lr + (self.lr - self.min_lr) * (1 + math.cos(math.pi * t)) / 2
        else:  # constant, batch-growth
            lr = self.lr
        return max(lr, self.min_lr)

    def batch_size_at(self, epoch: int) -> int:
        s = self.stage(epoch)
        if self.name == "batch-growth":
            b = round(self.batch_size / self.gamma ** (2 * s))
        elif self.name == "hybrid":
            b = round(self.batch_size / self.gamma**s)
        else:
            b = self.batch_size
        return min(b, self.max_batch_size) if self.max_batch_size is not None else b

    def delta(self, epoch: int, noise_c: float) -> float:
        """δ = η C / √b at ``epoch``, for a measured noise ``noise_c``."""
        return smoothing_degree(self.lr_at(epoch), noise_c, self.batch_size_at(epoch))

    def stages(self) -> list[tuple[int, int, int]]:
        """(stage number from 1, first epoch, last epoch) of every stage of the run."""
        starts = range(1, self.epochs + 1, self.stage_epochs)
        return [(i + 1, a, min(a + self.stage_epochs - 1, self.epochs)) for i, a in enumerate(starts)]


def smoothing_degree(lr: float, noise_c: float, batch_size: int) -> float:
    """δ = η · C / √b: the degree to which SGD's noise smooths the loss (Sato & Iiduka 2023)."""
    return lr * noise_c / math.sqrt(batch_size)


def check_schedule(name: str, *, lr: float | None, batch_size: int, epochs: int, stage_epochs: int | None,
                   gamma: float | None, max_batch_size: int | None, min_lr: float,
                   milestones: list[int] | None) -> None:
    """Raise ConfigError (one line, saying the fix) for a schedule setting that cannot work."""
    if name not in SCHEDULES:
        raise ConfigError(f"unknown schedule '{name}'; valid: {', '.join(SCHEDULES)}")
    if stage_epochs is not None and (isinstance(stage_epochs, bool) or not isinstance(stage_epochs, int)
                                     or stage_epochs < 1):
        raise ConfigError(f"stage_epochs must be a positive integer, got {stage_epochs!r}")
    if gamma is not None:
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0 < gamma < 1:
            raise ConfigError(f"gamma must be a factor in (0, 1) that δ (or, for step, the lr) is multiplied by "
                              f"per stage, got {gamma!r}")
        if name in ("constant", "cosine"):
            raise ConfigError(f"gamma has no effect with schedule {name}; use lr-decay, batch-growth, hybrid or step")
    if max_batch_size is not None:
        if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int) or max_batch_size < 1:
            raise ConfigError(f"max_batch_size must be a positive integer, got {max_batch_size!r}")
        if max_batch_size < batch_size:
            raise ConfigError(f"max_batch_size {max_batch_size} is below the starting batch_size {batch_size}; "
                              "raise it or lower batch_size")
    if isinstance(min_lr, bool) or not isinstance(min_lr, (int, float)) or not 0 <= min_lr < math.inf:
        raise ConfigError(f"min_lr must be a number >= 0, got {min_lr!r}")
    if lr is not None and min_lr >= lr and name not in ("constant", "batch-growth"):
        raise ConfigError(f"min_lr {min_lr:g} must be below the starting lr {lr:g}, or schedule {name} cannot lower it")
    if milestones is not None:
        if name != "step":
            raise ConfigError(f"milestones are for schedule step only (schedule is {name}); use stage_epochs instead")
        if (not isinstance(milestones, (list, tuple)) or not milestones
                or not all(isinstance(m, int) and not isinstance(m, bool) and m >= 1 for m in milestones)
                or list(milestones) != sorted(set(milestones))):
            raise ConfigError(f"milestones must be increasing epoch numbers >= 1, e.g. [10, 15], got {milestones!r}")
        if milestones[-1] >= epochs:
            raise ConfigError(f"milestone {milestones[-1]} is not before the last epoch ({epochs}); "
                              "the lr would never change there")


def check_schedule_config(config) -> None:
    """The schedule group of a TrainConfig (called by ``TrainConfig.validate``), with the lr the run will
    start from (the optimizer's default when none is given: the optimizer group is checked before)."""
    if config.noise_sample == 1:
        raise ConfigError("noise_sample must be 0 (off) or at least 2: a spread needs two gradients")
    if config.schedule is None:
        for name in ("stage_epochs", "gamma", "max_batch_size", "milestones"):
            if getattr(config, name) is not None:
                raise ConfigError(f"{name} needs a schedule; add e.g. --schedule lr-decay "
                                  f"(choices: {', '.join(SCHEDULES)})")
        return
    if config.method == "es":
        raise ConfigError("method es has no learning rate or batch size to schedule; use --method gradient or hybrid "
                          "with --schedule")
    lr = config.lr if config.lr is not None else get_spec(config.optimizer).defaults.get("lr")
    check_schedule(config.schedule, lr=lr, batch_size=config.batch_size, epochs=config.epochs,
                   stage_epochs=config.stage_epochs, gamma=config.gamma, max_batch_size=config.max_batch_size,
                   min_lr=config.min_lr, milestones=config.milestones)
    # noise_sample's range is TrainConfig's (checked with or without a schedule)


def schedule_defaults(config) -> dict[str, Any]:
    """The values a schedule's unset settings resolve to, to be recorded so a resumed run keeps them.

    stage_epochs: epochs // 5 (five stages, as the paper's 200 epochs in stages of 40), at least 1;
    gamma: 1/√2 (step: 0.1); milestones (step): half and three quarters of the epochs.
    """
    if config.schedule is None:
        return {}
    resolved: dict[str, Any] = {}
    if config.stage_epochs is None:
        resolved["stage_epochs"] = max(1, config.epochs // DEFAULT_STAGES)
    if config.gamma is None and config.schedule in DEFAULT_GAMMA:
        resolved["gamma"] = DEFAULT_GAMMA[config.schedule]
    if config.schedule == "step" and config.milestones is None:
        resolved["milestones"] = sorted({m for m in (config.epochs // 2, 3 * config.epochs // 4) if 1 <= m < config.epochs})
        if not resolved["milestones"]:
            raise ConfigError(f"a step schedule over {config.epochs} epoch(s) has no epoch to step at; "
                              "give more epochs or --milestones")
    return resolved


def schedule_from_config(config) -> Schedule | None:
    """The Schedule of a resolved TrainConfig, or None when it has no schedule."""
    if config.schedule is None:
        return None
    return Schedule(config.schedule, lr=config.lr, batch_size=config.batch_size, epochs=config.epochs,
                    stage_epochs=config.stage_epochs, gamma=config.gamma, max_batch_size=config.max_batch_size,
                    min_lr=config.min_lr, milestones=tuple(config.milestones or ()))


class TrainingSchedule:
    """Applies a :class:`Schedule` to a trainer before each epoch and measures C at each stage start.

    ``noise_sample`` training examples (a fresh sample per stage, drawn from a generator seeded
    with ``seed`` and the stage, so the trainer's own random streams are untouched) give C; 0
    turns the estimate off (no δ logged). ``noise_per``: "example", "batch" or "auto" (per
    mini-batch for models with batch normalisation, per example otherwise; see
    :func:`evoprop.train.gradient_noise.gradient_noise`).
    """

    def __init__(self, schedule: Schedule, *, noise_sample: int = DEFAULT_NOISE_SAMPLE, seed: int = 0,
                 noise_per: str = "auto"):
        self.schedule = schedule
        self.noise_sample = noise_sample
        self.seed = seed
        self.noise_per = noise_per

    def start_epoch(self, trainer, epoch: int) -> dict[str, Any]:
        """Set the trainer's batch size and learning rate for ``epoch``; return the epoch's schedule figures."""
        train = trainer.data.train
        lr = self.schedule.lr_at(epoch)
        # a batch larger than the training split is the whole split: record the size actually used
        batch_size = min(self.schedule.batch_size_at(epoch), len(train))
        trainer.batch_size = batch_size
        if trainer.optimizer is not None:
            for group in trainer.optimizer.param_groups:
                if "lr" in group:
                    base = group.setdefault("initial_lr", group["lr"])
                    group["lr"] = base * lr / self.schedule.lr
        record: dict[str, Any] = {"stage": self.schedule.stage(epoch) + 1, "lr": lr, "batch_size": batch_size}
        if not self.noise_sample:
            return record
        if self.schedule.is_stage_start(epoch) or not trainer.history or "noise_c" not in trainer.history[-1]:
            start = time.perf_counter()
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + record["stage"])
            idx = torch.randperm(len(train), generator=generator)[: self.noise_sample].to(train.y.device)
            noise = gradient_noise(trainer.model, train.x[idx], train.y[idx], per=self.noise_per)
            record.update(noise_c=noise.c, grad_norm=noise.grad_norm, noise_seconds=time.perf_counter() - start)
        else:  # later epochs of a stage (also after a resume) use the C measured at the stage's start
            last = trainer.history[-1]
            record.update(noise_c=last["noise_c"], grad_norm=last.get("grad_norm"))
        record["delta"] = smoothing_degree(lr, record["noise_c"], batch_size)
        return record


def stage_records(history: list[dict]) -> list[dict]:
    """One entry per stage of a scheduled run's history: its first epoch, lr, batch size, C and δ there."""
    stages: dict[int, dict] = {}
    for h in history:
        if "stage" in h and h["stage"] not in stages:
            stages[h["stage"]] = {"stage": h["stage"], "first_epoch": h["epoch"], "lr": h["lr"],
                                  "batch_size": h["batch_size"], "noise_c": h.get("noise_c"),
                                  "delta": h.get("delta")}
    return list(stages.values())
