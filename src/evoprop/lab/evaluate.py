"""Loss and accuracy of many values of a model's parameters over a whole data set, batched.

The lab's experiments (a landscape grid, a random search, a step-size sweep) all ask the
same question of P parameter vectors at once; :class:`VectorEvaluator` answers it with
:class:`~evoprop.population.PopulationEvaluator` — one vectorised pass per chunk of
vectors and batch of data — and averages over the data set's batches.
"""

from __future__ import annotations

import torch
from torch import nn

from evoprop.errors import ConfigError
from evoprop.lab.losses import Loss, accuracy, get_loss
from evoprop.population import PopulationEvaluator

DEFAULT_CHUNK = 16  # vectors per population pass: large enough for batched GEMMs, small enough for the cache


class VectorEvaluator:
    """Loss and accuracy on (x, y) of vectors holding all of ``model``'s parameters.

    A vector is ``parameters_to_vector(model.parameters())``'s layout. ``loss`` is a lab
    loss name or :class:`~evoprop.lab.losses.Loss`; ``reg`` adds reg * ||theta||^2. The
    data are visited in batches of ``batch_size`` examples and the losses averaged over all
    of them (weighted by batch length), so results do not depend on ``batch_size``.
    """

    def __init__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        loss: str | Loss = "softmax",
        reg: float = 0.0,
        batch_size: int = 1000,
        chunk: int = DEFAULT_CHUNK,
        max_memory: int | None = None,
    ):
        if len(x) == 0 or len(x) != len(y):
            raise ConfigError(f"need a non-empty data set with one label per example (got {len(x)} inputs, {len(y)} labels)")
        if batch_size < 1 or chunk < 1:
            raise ConfigError("batch_size and chunk must be positive integers")
        self.model, self.x, self.y = model, x, y
        self.loss = get_loss(loss) if isinstance(loss, str) else loss
        self.reg, self.batch_size, self.chunk = float(reg), int(batch_size), int(chunk)
        self.evaluator = PopulationEvaluator(model, params=list(model.parameters()), max_memory=max_memory)

    @property
    def dim(self) -> int:
        return self.evaluator.dim

    def center(self) -> torch.Tensor:
        """The model's current parameters as one vector."""
        return self.evaluator.get_vector()

    @torch.no_grad()
    def losses(self, vectors: torch.Tensor) -> torch.Tensor:
        """The loss of each row of ``vectors`` (P, dim): a (P,) float64 tensor."""
        return self._run(vectors, with_accuracy=False)[0]

    @torch.no_grad()
    def evaluate(self, vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, accuracy) of each row of ``vectors`` (P, dim): two (P,) float64 tensors."""
        return self._run(vectors, with_accuracy=True)

    def evaluate_combinations(
        self, center: torch.Tensor, directions: torch.Tensor, coefs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, accuracy) at center + coefs[i] @ directions for every row i of coefs (P, k).

        The vectors are built ``chunk`` at a time, so P x dim never has to fit in memory.
        """
        losses, accs = [], []
        for part in coefs.split(self.chunk):
            vectors = torch.addmm(center.unsqueeze(0), part.to(center.device, center.dtype), directions)
            loss, acc = self.evaluate(vectors)
            losses.append(loss)
            accs.append(acc)
        return torch.cat(losses), torch.cat(accs)

    def _run(self, vectors: torch.Tensor, with_accuracy: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        # The evaluator's own cross-entropy is the softmax loss, on its fastest code path.
        loss_fn = None if self.loss.name == "softmax" else self.loss.fn
        n = len(self.y)
        loss = torch.zeros(len(vectors), dtype=torch.float64, device=vectors.device)
        acc = torch.zeros_like(loss) if with_accuracy else None
        for part in range(0, len(vectors), self.chunk):
            chunk = vectors[part : part + self.chunk]
            for start in range(0, n, self.batch_size):
                xb, yb = self.x[start : start + self.batch_size], self.y[start : start + self.batch_size]
                weight = len(yb) / n
                loss[part : part + len(chunk)] += weight * self.evaluator(chunk, xb, yb, loss_fn).double()
                if acc is not None:
                    acc[part : part + len(chunk)] += weight * self.evaluator(chunk, xb, yb, accuracy).double()
        if self.reg:
            loss += self.reg * vectors.double().pow(2).sum(1)
        return loss, acc
