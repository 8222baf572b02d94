"""The step-size experiment of the CS231n optimization notes: the loss after one gradient step, for step sizes
1e-10 ... 1e-1.

The gradient says which way is down, not how far to go: a tiny step barely changes the
loss, a moderate one lowers it, and a large one overshoots and raises it. One gradient of
the training loss is computed at the model's weights; the points theta - eta g for all
step sizes eta form one population, evaluated at once.

:func:`run_stepsize` is the whole experiment of ``evoprop stepsize``, with its start, in a
:class:`StepSizeRun` that prints and writes itself.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parameters_to_vector

from evoprop.errors import ConfigError
from evoprop.lab.evaluate import VectorEvaluator
from evoprop.lab.losses import Loss, LossSettings, backward_full_loss, get_loss
from evoprop.lab.plots import finish_loss_figure, new_figure, wants_log
from evoprop.lab.problem import LabRun, Problem
from evoprop.lab.settings import batch_setting, lab_setting
from evoprop.lab.search import write_vector
from evoprop.paths import make_folder

DEFAULT_STEP_SIZES = tuple(10.0**k for k in range(-10, 0))  # 1e-10, 1e-9, ..., 1e-1, as in the CS231n notes


@dataclass
class StepSizeSweep:
    """The loss before the step and after one step of each size."""

    loss_before: float
    gradient_norm: float
    step_sizes: np.ndarray
    loss_after: np.ndarray
    accuracy_after: np.ndarray

    @property
    def best_step(self) -> float:
        return float(self.step_sizes[int(np.nanargmin(self.loss_after))])


def full_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: Loss, reg: float = 0.0,
                  batch_size: int = 10_000) -> tuple[float, torch.Tensor]:
    """(loss, gradient as one vector) of the mean loss over all of (x, y), accumulated over batches."""
    params = list(model.parameters())
    for p in params:
        p.grad = None
    total = backward_full_loss(model, x, y, loss, reg, batch_size)
    grad = parameters_to_vector([p.grad if p.grad is not None else torch.zeros_like(p) for p in params]).detach()
    for p in params:
        p.grad = None
    return total, grad


def step_size_sweep(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str | Loss = "svm", reg: float = 0.0,
                    step_sizes: Sequence[float] = DEFAULT_STEP_SIZES, batch_size: int = 10_000,
                    max_memory: int | None = None) -> StepSizeSweep:
    """The training loss at theta - eta * grad L(theta) for every eta in ``step_sizes``."""
    if not step_sizes or any(not (s > 0 and np.isfinite(s)) for s in step_sizes):
        raise ConfigError(f"step sizes must be positive numbers, got {list(step_sizes)}")
    loss_fn = get_loss(loss) if isinstance(loss, str) else loss
    was_training = model.training
    model.eval()
    try:
        before, grad = full_gradient(model, x, y, loss_fn, reg, batch_size)
    finally:
        model.train(was_training)
    evaluator = VectorEvaluator(model, x, y, loss_fn, reg, batch_size=batch_size, max_memory=max_memory)
    steps = torch.tensor(list(step_sizes), dtype=torch.float64)
    after, acc = evaluator.evaluate_combinations(evaluator.center(), -grad.unsqueeze(0), steps.unsqueeze(1))
    return StepSizeSweep(before, float(grad.double().norm()), steps.numpy(), after.cpu().numpy(), acc.cpu().numpy())


def save_csv(path: str | Path, sweep: StepSizeSweep) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["step_size", "loss_after", "change", "accuracy_after"])
        for s, after, acc in zip(sweep.step_sizes, sweep.loss_after, sweep.accuracy_after):
            writer.writerow([f"{s:g}", f"{after:.8g}", f"{after - sweep.loss_before:+.6g}", f"{acc:.6g}"])
    return Path(path)


def table(sweep: StepSizeSweep) -> str:
    """A Markdown table: step size, loss after one step, its change, and the accuracy there."""
    lines = [f"loss before the step: {sweep.loss_before:.6g} (gradient norm {sweep.gradient_norm:.4g})", "",
             "| step size | loss after one step | change | accuracy |", "|---:|---:|---:|---:|"]
    for s, after, acc in zip(sweep.step_sizes, sweep.loss_after, sweep.accuracy_after):
        lines.append(f"| {s:g} | {after:.6g} | {after - sweep.loss_before:+.4g} | {acc:.4f} |")
    return "\n".join(lines)


# -- the experiment ---------------------------------------------------------------------
@dataclass
class StepSizeSettings(LossSettings):
    """What :func:`run_stepsize` does (the options of ``evoprop stepsize``)."""

    loss: str = "svm"
    step_sizes: tuple[float, ...] = DEFAULT_STEP_SIZES  # the command parses its --step-sizes X,Y,...
    start_scale: float = lab_setting(
        1e-3, "A fresh model starts from W ~ X * N(0, 1) (CS231n's random W); 0 keeps its --init weights. "
              "Ignored with --run.", check="non-negative")
    examples: int = lab_setting(
        0, "Training examples the loss and gradient are taken over (0: the whole training split).",
        check="non-negative")
    seed: int = lab_setting(0, "Seed of the random start.", flag="--start-seed", check="seed")
    batch_size: int = batch_setting(10_000)


@dataclass
class StepSizeRun(LabRun):
    """A sweep with what it started from."""

    start: str  # the weights the step was taken from
    loss: str
    examples: int
    sweep: StepSizeSweep = field(repr=False)

    def summary(self) -> str:
        """What ``evoprop stepsize`` prints: the start, the table and the best step size."""
        return (f"{self.description}\none gradient step from {self.start}; {self.loss} loss on {self.examples} "
                f"training examples\n\n{table(self.sweep)}\n\nlowest loss after one step: step size "
                f"{self.sweep.best_step:g}")

    def write(self, out: str | Path) -> list[Path]:
        """stepsize.csv, stepsize.png and stepsize.md (the table)."""

        out = make_folder(out)
        files = [save_csv(out / "stepsize.csv", self.sweep),
                 stepsize_figure(self.sweep, out / "stepsize.png",
                                 title=f"{self.loss} loss after one gradient step\n{self.label}")]
        (out / "stepsize.md").write_text(f"{self.description}; start: {self.start}\n\n{table(self.sweep)}\n")
        return files + [out / "stepsize.md"]


def run_stepsize(problem: Problem, settings: StepSizeSettings) -> StepSizeRun:
    """One gradient step of each size from ``problem``'s weights: a saved run's, or a fresh model's random start.

    A fresh model's weights are replaced by W ~ start_scale * N(0, 1) when ``start_scale`` is not 0.
    """
    s = settings
    x, y = problem.tensors("train", s.examples)
    start = "its saved weights"
    if not problem.from_run and s.start_scale:
        dim = parameters_to_vector(problem.model.parameters()).numel()
        write_vector(problem.model, s.start_scale * torch.randn(dim, generator=torch.Generator().manual_seed(s.seed)))
        start = f"W ~ {s.start_scale:g} * N(0, 1)"
    elif not problem.from_run:
        start = "its initial weights"
    sweep = step_size_sweep(problem.model, x, y, s.loss, s.reg, s.step_sizes, s.batch_size)
    return StepSizeRun(problem.description, problem.short_name, start, s.loss, len(y), sweep)


def stepsize_figure(sweep: StepSizeSweep, path: str | Path, title: str = "") -> Path:
    """Loss after one gradient step against the step size (log x), with the loss before as a line."""
    fig = new_figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    ax.plot(sweep.step_sizes, sweep.loss_after, marker="o", color="C0", label="after one step")
    ax.axhline(sweep.loss_before, color="0.5", linestyle="--", label="before the step")
    ax.set_xscale("log")
    return finish_loss_figure(fig, ax, path, log=wants_log(np.append(sweep.loss_after, sweep.loss_before)),
                              xlabel="step size", title=title or "loss after one gradient step")
