"""The hybrid trainer: the paper's Algorithm 2.

Each epoch: draw an ES mini-batch, run one generation of the evolution strategy on the
searched layer(s) with a large population evaluated at once, write the best candidate
into the model, then train ALL layers with the gradient optimizer for one epoch. By
default the strategy's mean evolves independently of what the gradient optimizer does to
the searched layer (as in the paper); the search's ``combine`` rule (``LayerSearch(combine=...)``)
can move the mean to the trained weights, let them compete with an acceptance test on a
second mini-batch (``elitist``, ``inject``: drawn here, ``accept_batch_size`` examples from
their own seeded stream), or leave the layer to the ES alone (``disjoint``: see
:func:`gradient_params`, the parameters to give the gradient optimizer).

``generations_per_epoch`` > 1 spreads that many generations evenly over the epoch's
gradient steps (``grad_steps_per_generation`` says the same from the other side).
"""

from __future__ import annotations

import time

import torch

from evoprop.train.layer_search import LayerSearch
from evoprop.train.trainer import Trainer


class HybridTrainer(Trainer):
    """A gradient :class:`Trainer` with evolution-strategy generations interleaved."""

    def __init__(
        self,
        model,
        optimizer,
        data,
        search: LayerSearch,
        *,
        batch_size: int,
        es_batch_size: int = 256,
        generations_per_epoch: int = 1,
        accept_batch_size: int = 1024,
        seed: int = 0,
        eval_batch_size: int = 8192,
        progress: bool = False,
        batch_parts: int | None = None,
        data_parallel: bool = True,
    ):
        super().__init__(model, optimizer, data, batch_size=batch_size, seed=seed, eval_batch_size=eval_batch_size,
                         progress=progress, batch_parts=batch_parts, data_parallel=data_parallel)
        self.search = search
        self.es_batch_size = es_batch_size
        self.generations_per_epoch = generations_per_epoch
        # ES mini-batches come from their own stream, so the gradient batches are the same
        # as a plain gradient run with the same seed.
        self.es_generator = torch.Generator().manual_seed(seed + 1)
        # acceptance batches (elitist, inject) from a third stream: independent of the ES batches,
        # and the other rules draw nothing from it, so their runs are unchanged
        self.accept_batch_size = accept_batch_size
        self.accept_generator = torch.Generator().manual_seed(seed + 2)
        self._epoch_stats: list[dict] = []
        self._es_seconds = 0.0

    def generation(self, batch: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict:
        """One ES generation on ``batch``, by default a fresh random mini-batch of the training split."""
        start = time.perf_counter()
        if batch is None:
            batch = self._draw(self.es_generator, self.es_batch_size)
        accept = self._draw(self.accept_generator, self.accept_batch_size) if self.search.elitist else None
        self.sync_buffers()  # under DDP: the ES evaluates the same model on every rank
        stats = self.search.step(*batch, accept=accept)
        self._epoch_stats.append(stats)
        self._es_seconds += time.perf_counter() - start
        return stats

    def _draw(self, generator: torch.Generator, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A random mini-batch of the training split (without replacement) from ``generator``."""
        train = self.data.train
        idx = torch.randperm(len(train), generator=generator)[:size].to(train.y.device)
        return train.x[idx], train.y[idx]

    def before_step(self, step: int, steps: int) -> None:
        for _ in range(generations_before(step, steps, self.generations_per_epoch)):
            self.generation()

    def train_epoch(self, epoch: int, epochs: int) -> dict:
        self._epoch_stats, self._es_seconds = [], 0.0
        start = time.perf_counter()
        out = super().train_epoch(epoch, epochs)
        return {**out, **es_figures(self._epoch_stats, self.search), "es_seconds": self._es_seconds,
                "grad_seconds": time.perf_counter() - start - self._es_seconds}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "search": self.search.state_dict(), "es_generator": self.es_generator.get_state(),
                "accept_generator": self.accept_generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.search.load_state_dict(state["search"])
        self.es_generator.set_state(state["es_generator"])
        if "accept_generator" in state:  # checkpoints from before the combination rules have none (and need none)
            self.accept_generator.set_state(state["accept_generator"])


def gradient_params(model: torch.nn.Module, search: LayerSearch) -> list[torch.nn.Parameter]:
    """The parameters the gradient optimizer trains: all of the model's, except the searched ones
    under ``combine="disjoint"`` (the ES alone trains those; they also stop taking gradients)."""
    if search.combine != "disjoint":
        return list(model.parameters())
    searched = {id(p) for p in search.evaluator.params}
    for p in search.evaluator.params:
        p.requires_grad_(False)
    return [p for p in model.parameters() if id(p) not in searched]


def generations_before(step: int, steps: int, generations: int) -> int:
    """How many of the epoch's ``generations`` run before gradient step ``step`` (1-based).

    Generation k (0-based) runs before step floor(k * steps / generations) + 1: evenly spread,
    and with one generation per epoch exactly once, before all gradient steps (Algorithm 2).
    Those k satisfy (step - 1) * generations <= k * steps < step * generations, so they are
    counted in O(1): ceil(step * G / S) - ceil((step - 1) * G / S).
    """
    return _ceil_div(step * generations, steps) - _ceil_div((step - 1) * generations, steps)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def es_figures(stats: list[dict], search: LayerSearch) -> dict:
    """Per-epoch ES figures: σ after the epoch, the last generation's best and median loss; with an
    acceptance test (elitist, inject) also how many of the epoch's generations wrote their challenger
    in, and the mean acceptance-batch losses of the incumbent (the model's layer) and the challenger."""
    out = {
        "sigma": float(search.strategy.sigma),
        "es_best_loss": stats[-1]["best"] if stats else None,
        "es_median_loss": stats[-1]["median"] if stats else None,
        "generations": int(search.strategy.generation),
    }
    tested = [s for s in stats if "accepted" in s]
    if tested:
        out.update({
            "accepted": sum(s["accepted"] for s in tested),
            "accepted_fraction": sum(s["accepted"] for s in tested) / len(tested),
            "accept_incumbent_loss": sum(s["accept_incumbent_loss"] for s in tested) / len(tested),
            "accept_challenger_loss": sum(s["accept_challenger_loss"] for s in tested) / len(tested),
        })
    return out
