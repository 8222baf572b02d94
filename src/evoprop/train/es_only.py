"""ES-only training: the network's searched parameters are trained by the evolution strategy alone.

This is the "CMA-ES" row of the paper's Tables 1 and 2 (the whole one-layer network,
784·10 + 10 or 1024·10 + 10 parameters, searched by CMA-ES). One generation per
mini-batch; an epoch is one pass over the training split in ES mini-batches, or
``generations_per_epoch`` generations on random mini-batches when that is set.
"""

from __future__ import annotations

import math

from tqdm.auto import tqdm

from evoprop.errors import TrainingDiverged
from evoprop.train.hybrid import HybridTrainer, es_figures
from evoprop.train.layer_search import LayerSearch


class EsTrainer(HybridTrainer):
    """Train with the evolution strategy only (no gradient optimizer)."""

    def __init__(self, model, data, search: LayerSearch, *, es_batch_size: int = 256,
                 generations_per_epoch: int | None = None, seed: int = 0, eval_batch_size: int = 8192,
                 progress: bool = False):
        super().__init__(model, None, data, search, batch_size=es_batch_size, es_batch_size=es_batch_size,
                         generations_per_epoch=generations_per_epoch or 1, seed=seed,
                         eval_batch_size=eval_batch_size, progress=progress)
        self.one_pass = generations_per_epoch is None

    def train_epoch(self, epoch: int, epochs: int) -> dict:
        self._epoch_stats, self._es_seconds = [], 0.0
        split = self.data.train
        if self.one_pass:
            batches = split.batches(self.es_batch_size, generator=self.es_generator)
            total = math.ceil(len(split) / self.es_batch_size)
        else:
            batches, total = None, self.generations_per_epoch
        bar = tqdm(total=total, desc=f"epoch {epoch}/{epochs}", leave=False, disable=not self.progress,
                   dynamic_ncols=True, mininterval=0.5)
        with bar:
            for _ in range(total):
                stats = self.generation(next(batches) if batches is not None else None)
                bar.set_postfix(best=f"{stats['best']:.4f}", sigma=f"{stats['sigma']:.3g}", refresh=False)
                bar.update()
        mean_best = sum(s["best"] for s in self._epoch_stats) / len(self._epoch_stats)
        if not math.isfinite(mean_best):
            raise TrainingDiverged(f"ES losses became non-finite in epoch {epoch}; lower sigma0")
        # train_loss: the mean over the epoch's generations of the best candidate's mini-batch loss
        return {"train_loss": mean_best, **es_figures(self._epoch_stats, self.search),
                "es_seconds": self._es_seconds, "grad_seconds": 0.0}
