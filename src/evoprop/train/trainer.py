"""The gradient trainer: epochs of mini-batch training, evaluation after each, exact resume.

One epoch is one pass over the training split in a random order drawn from the
trainer's own ``torch.Generator``; its state is part of ``state_dict()``, so a
resumed run shuffles exactly as an uninterrupted one. Subclasses (the hybrid
trainer) override ``train_epoch`` and extend the state; evaluation, history and
the epoch loop are shared.
"""

from __future__ import annotations

import math
import time
from typing import Callable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from evoprop.errors import TrainingDiverged
from evoprop.optim.batch import BatchLoss
from evoprop.train.metrics import evaluate
from evoprop.train.schedules import stage_records
from evoprop.train.summary import summarize

# How often (in steps) the running loss is read back from the device: each read is a
# sync, so not every step; often enough to stop a diverged run early and feed the bar.
CHECK_EVERY = 50


class Trainer:
    """Train ``model`` with ``optimizer`` on ``data`` (an ``evoprop.data.DatasetSplits``)."""

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None,
        data,
        *,
        batch_size: int,
        seed: int = 0,
        eval_batch_size: int = 8192,
        progress: bool = False,
        schedule=None,
    ):
        self.model = model
        self.optimizer = optimizer
        self.data = data
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.progress = progress
        self.generator = torch.Generator().manual_seed(seed)  # CPU: shuffling is reproducible on any device
        self.history: list[dict] = []
        # a train.schedules.TrainingSchedule: sets lr and batch size before each epoch, logs δ (Sato & Iiduka 2023)
        self.schedule = schedule

    @property
    def epoch(self) -> int:
        """Number of completed epochs."""
        return len(self.history)

    def train_epoch(self, epoch: int, epochs: int) -> dict:
        """One pass of the gradient optimizer over the training split; returns {"train_loss": ...}."""
        self.model.train()
        split = self.data.train
        steps = math.ceil(len(split) / self.batch_size)
        loss_sum = torch.zeros((), dtype=torch.float64, device=split.y.device)
        seen = 0
        bar = tqdm(total=steps, desc=f"epoch {epoch}/{epochs}", leave=False, disable=not self.progress,
                   dynamic_ncols=True, mininterval=0.5)
        with bar:
            for step, (x, y) in enumerate(split.batches(self.batch_size, generator=self.generator), start=1):
                self.before_step(step, steps)
                if getattr(self.optimizer, "needs_batch", False):
                    # second-order methods (newton, hessian-free) evaluate the batch loss themselves
                    loss = self.optimizer.step(BatchLoss(self.model, x, y))
                else:
                    self.optimizer.zero_grad(set_to_none=True)
                    loss = F.cross_entropy(self.model(x), y)
                    loss.backward()
                    self.optimizer.step()
                loss_sum.add_(loss.detach(), alpha=len(y))  # one kernel: no per-step host sync
                seen += len(y)
                if step % CHECK_EVERY == 0 or step == steps:
                    mean = float(loss_sum) / seen
                    if not math.isfinite(mean):
                        raise TrainingDiverged(
                            f"training loss became {mean} at epoch {epoch}, step {step}; "
                            "lower the learning rate (the last completed epoch is kept)"
                        )
                    bar.set_postfix(loss=f"{mean:.4f}", refresh=False)
                    bar.update(step - bar.n)
        return {"train_loss": float(loss_sum) / seen}

    def start_epoch(self, epoch: int) -> dict:
        """Called before epoch ``epoch`` trains; the schedule (if any) sets lr and batch size here and
        returns what it logs (lr, batch_size, stage, noise C, δ)."""
        return self.schedule.start_epoch(self, epoch) if self.schedule is not None else {}

    def before_step(self, step: int, steps: int) -> None:
        """Called before gradient step ``step`` (1-based) of ``steps`` in the epoch; the hybrid
        trainer runs its evolution-strategy generations here."""

    def evaluate(self) -> dict:
        """Loss, accuracy and macro-F1 on the test split, and on validation when there is one."""
        out = {}
        for prefix, split in (("test", self.data.test), ("val", self.data.val)):
            if split is None:
                continue
            metrics = evaluate(self.model, split.x, split.y, self.data.num_classes, self.eval_batch_size)
            out.update({f"{prefix}_{k}": v for k, v in metrics.items()})
        return out

    def fit(self, epochs: int, on_epoch_end: Callable[["Trainer", dict], None] | None = None) -> dict:
        """Train until ``epochs`` epochs are complete (continuing after a resume); returns the summary."""
        for epoch in range(self.epoch + 1, epochs + 1):
            start = time.perf_counter()
            record = {"epoch": epoch, **self.start_epoch(epoch), **self.train_epoch(epoch, epochs)}
            record["train_seconds"] = time.perf_counter() - start
            record.update(self.evaluate())
            record["seconds"] = time.perf_counter() - start
            self.history.append(record)
            if on_epoch_end is not None:
                on_epoch_end(self, record)
        return self.summary()

    def summary(self) -> dict:
        out = summarize(self.history)
        out["seconds"] = sum(h["seconds"] for h in self.history)
        out["seconds_per_epoch"] = out["seconds"] / len(self.history) if self.history else None
        if self.schedule is not None:
            out["stages"] = stage_records(self.history)
        return out

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            "generator": self.generator.get_state(),
            "history": list(self.history),
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        if self.optimizer is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.history = list(state["history"])
