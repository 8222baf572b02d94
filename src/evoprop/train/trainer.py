"""The gradient trainer: epochs of mini-batch training, evaluation after each, exact resume.

One epoch is one pass over the training split in a random order drawn from the
trainer's own ``torch.Generator``; its state is part of ``state_dict()``, so a
resumed run shuffles exactly as an uninterrupted one. Subclasses (the hybrid
trainer) override ``train_epoch`` and extend the state; evaluation, history and
the epoch loop are shared.

Under torchrun (several processes, :mod:`evoprop.distributed`) ``batch_size`` is the global batch:
every rank draws the same order, each batch is cut into ``batch_parts`` contiguous parts (one per
rank by default; :func:`evoprop.distributed.part`) and each rank takes its own, the model runs
wrapped in ``DistributedDataParallel``, which averages the ranks' gradients in ``backward``, and each
part's loss is weighted by its share of the batch, so the step is the global batch's. One process
with the same ``batch_parts`` sums the parts' gradients itself: for 2 parts the same bits as 2 ranks
(see :meth:`Trainer._backward`). Optimizers that evaluate the batch themselves (newton, hessian-free)
or hook the model's layers (natural) are not split: every rank takes the whole batch
(``parallel == "replicated"``). After every epoch the ranks compare a checksum of the model's weights.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Callable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from evoprop import distributed as dist
from evoprop.errors import ConfigError, TrainingDiverged
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
        batch_parts: int | None = None,
        data_parallel: bool = True,
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
        # several processes: "ddp" (each rank a part of every batch), "replicated" (each the whole batch);
        # None in one process or without a gradient optimizer. data_parallel=False: replicated.
        self.parallel = self._parallel_mode(data_parallel)
        self.batch_parts = self._check_parts(batch_parts, data_parallel)
        # what the gradient steps call: the model itself, or its DistributedDataParallel wrapper
        self.net = dist.data_parallel(model) if self.parallel == "ddp" else model

    def _parallel_mode(self, data_parallel: bool) -> str | None:
        if not dist.current().distributed or self.optimizer is None:
            return None
        trainable = any(p.requires_grad for p in self.model.parameters())
        if not data_parallel or getattr(self.optimizer, "needs_batch", False) or not trainable:
            return "replicated"
        return "ddp"

    @property
    def _ranks(self) -> int:
        """How many processes share each batch: the world size under DDP, else 1."""
        return dist.current().world_size if self.parallel == "ddp" else 1

    def _check_parts(self, parts: int | None, data_parallel: bool) -> int:
        """``batch_parts`` resolved (None: one per process) and checked against the processes and batch size."""
        ranks = self._ranks
        parts = ranks if parts is None else parts
        if parts > 1 and (not data_parallel or getattr(self.optimizer, "needs_batch", False)):
            raise ConfigError(f"batch_parts {parts} averages the gradients of a batch's parts; this optimizer "
                              "evaluates the whole batch itself (newton, hessian-free) or hooks the model's "
                              "layers (natural): leave batch_parts unset")
        if parts % ranks:
            raise ConfigError(f"batch_parts {parts} is not a multiple of the {ranks} processes: each takes as "
                              "many of every batch's parts (resume with a number of processes that divides it)")
        if self.optimizer is not None and self.batch_size < parts:
            where = f"the {parts} processes" if parts == ranks else f"its {parts} parts"
            raise ConfigError(f"batch_size {self.batch_size} is smaller than {where}: under torchrun it is the "
                              f"global batch, split into batch_parts; give at least {parts}")
        return parts

    @property
    def epoch(self) -> int:
        """Number of completed epochs."""
        return len(self.history)

    def train_epoch(self, epoch: int, epochs: int) -> dict:
        """One pass of the gradient optimizer over the training split; returns {"train_loss": ...}."""
        self.net.train()
        split = self.data.train
        steps = math.ceil(len(split) / self.batch_size)
        # the loss summed per part of the batches (each rank fills its own parts), added up in part order
        loss_sums = torch.zeros(self.batch_parts, dtype=torch.float64, device=split.y.device)
        seen = 0
        bar = tqdm(total=steps, desc=f"epoch {epoch}/{epochs}", leave=False, disable=not self.progress,
                   dynamic_ncols=True, mininterval=0.5)
        with bar:
            for step, (x, y) in enumerate(split.batches(self.batch_size, generator=self.generator), start=1):
                self.before_step(step, steps)
                if getattr(self.optimizer, "needs_batch", False):
                    # second-order methods (newton, hessian-free) evaluate the batch loss themselves
                    loss = self.optimizer.step(BatchLoss(self.model, x, y))
                    loss_sums[0].add_(loss.detach(), alpha=len(y))  # one kernel: no per-step host sync
                else:
                    self.optimizer.zero_grad(set_to_none=True)
                    self._backward(x, y, loss_sums)
                    self.optimizer.step()
                seen += len(y)  # every rank draws every batch: the examples of all ranks
                if step % CHECK_EVERY == 0 or step == steps:
                    mean = self._mean_loss(loss_sums, seen)
                    if not math.isfinite(mean):
                        raise TrainingDiverged(
                            f"training loss became {mean} at epoch {epoch}, step {step}; "
                            "lower the learning rate (the last completed epoch is kept)"
                        )
                    bar.set_postfix(loss=f"{mean:.4f}", refresh=False)
                    bar.update(step - bar.n)
        return {"train_loss": mean}

    def _backward(self, x: torch.Tensor, y: torch.Tensor, loss_sums: torch.Tensor) -> None:
        """The gradient of the mean loss over the global batch (x, y) into ``.grad``; each part's loss sum
        into ``loss_sums``. One part (one process): the batch's mean cross-entropy, as always.

        The batch is cut into ``batch_parts`` = G contiguous parts (:func:`evoprop.distributed.part`);
        of W processes, each takes G / W of them, and DDP averages the W ranks' gradients. So the
        rank's loss is (W / G) * (each part's mean) summed over its parts, or, when the parts are unequal
        (a batch not divisible by G), (W / n) * (the parts' summed losses): either way the average over
        the ranks is the mean over all n examples. One process with G = 2 adds g0/2 + g1/2 in the order
        two ranks' all-reduce does (and halving is exact): the same bits."""
        n, parts, ranks = len(y), self.batch_parts, self._ranks
        rank = dist.current().rank if ranks > 1 else 0
        mine = range(rank * parts // ranks, (rank + 1) * parts // ranks)
        for k in mine:
            start, stop = dist.part(n, k, parts)
            last = k == mine[-1]
            # DDP all-reduces the gradients at the backward of the rank's last part only
            with self.net.no_sync() if ranks > 1 and not last else contextlib.nullcontext():
                logits = self.net(x[start:stop])
                if (stop - start) * parts == n:
                    part_loss = F.cross_entropy(logits, y[start:stop])
                    loss_sums[k].add_(part_loss.detach(), alpha=stop - start)
                    loss = part_loss if parts == ranks else part_loss * (ranks / parts)
                else:  # an empty part (a batch of fewer than G) adds 0
                    total = F.cross_entropy(logits, y[start:stop], reduction="sum")
                    loss_sums[k].add_(total.detach())
                    loss = total * (ranks / n)
                if ranks > 1 and last:
                    with dist.failures("the gradient all-reduce (DistributedDataParallel)"):
                        loss.backward()
                else:
                    loss.backward()

    def _mean_loss(self, loss_sums: torch.Tensor, seen: int) -> float:
        """The mean training loss so far in the epoch over all ranks' examples (the same number on every
        rank, so all stop together if it diverged): each part's sum from the rank that holds it, added in
        part order."""
        if self._ranks > 1:
            loss_sums = dist.sum_in_rank_order(loss_sums)  # the other ranks hold 0 for a rank's parts
        return float(loss_sums.sum()) / seen

    def start_epoch(self, epoch: int) -> dict:
        """Called before epoch ``epoch`` trains; the schedule (if any) sets lr and batch size here and
        returns what it logs (lr, batch_size, stage, noise C, δ)."""
        return self.schedule.start_epoch(self, epoch) if self.schedule is not None else {}

    def before_step(self, step: int, steps: int) -> None:
        """Called before gradient step ``step`` (1-based) of ``steps`` in the epoch; the hybrid
        trainer runs its evolution-strategy generations here."""

    def sync_buffers(self) -> None:
        """Under DDP: every rank takes rank 0's buffers (batch-norm statistics, which each rank updates
        on its own part of the batch; DDP broadcasts them only at the next forward), so evaluation and
        the ES see the same model everywhere. Nothing for a model without buffers (the MLP)."""
        if self.parallel == "ddp":
            dist.broadcast_buffers(self.model)

    def check_replicas(self, when: str) -> None:
        """Several processes: the ranks' model weights (and buffers) must be identical; one line if not."""
        if not dist.current().distributed:
            return
        self.sync_buffers()
        state = [t for t in self.model.state_dict().values() if t.is_floating_point()]
        dist.check_same_state(dist.state_checksum(*state), f"{when}, the model's weights")

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
            self.check_replicas(f"after epoch {epoch}")
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
