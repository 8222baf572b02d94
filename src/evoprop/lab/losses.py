"""The two classifier losses of the lab, on class scores: multiclass SVM (hinge) and softmax.

Both take scores of shape (..., N, C) and labels (N,) and return the mean over the N
examples, one value per leading index: a (P, N, C) stack of P candidates' scores gives P
losses at once, with no ``vmap`` needed (``vmap`` works too, e.g. inside
:class:`~evoprop.population.PopulationEvaluator`).

The SVM's hinge is written with ``clamp_min``, so :mod:`evoprop.lab.gradcheck` sees its
kinks (where a numerical gradient is wrong even when the analytic one is right).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from evoprop.errors import ConfigError
from evoprop.lab.settings import lab_setting

SVM_DELTA = 1.0  # the margin Δ of the multiclass SVM; CS231n fixes it at 1 (λ sets the scale)


def _correct(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(..., N, 1): the score of each example's true class."""
    index = y.view(*([1] * (scores.dim() - 2)), -1, 1).expand(*scores.shape[:-1], 1)
    return scores.gather(-1, index)


def svm_loss(scores: torch.Tensor, y: torch.Tensor, delta: float = SVM_DELTA) -> torch.Tensor:
    """Mean over examples of sum_{j != y} max(0, s_j - s_y + delta)."""
    margins = (scores - _correct(scores, y) + delta).clamp_min(0)
    # The j = y term is max(0, delta) = delta for every example: subtracting it (rather than
    # masking it out with a scatter) keeps the function batched and vmap-friendly; its
    # gradient is zero since s_y - s_y cancels.
    return margins.sum(-1).mean(-1) - delta


def softmax_loss(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean over examples of -log softmax(s)_y (cross-entropy), computed stably with logsumexp."""
    return (torch.logsumexp(scores, dim=-1) - _correct(scores, y).squeeze(-1)).mean(-1)


def accuracy(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Share of examples whose highest score is the true class, per leading index."""
    return (scores.argmax(-1) == y).to(scores.dtype).mean(-1)


@dataclass(frozen=True)
class Loss:
    """A named loss on scores: (..., N, C) scores and (N,) labels -> (...) mean losses."""

    name: str
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    description: str

    def __call__(self, scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.fn(scores, y)


LOSSES: dict[str, Loss] = {
    "softmax": Loss("softmax", softmax_loss, "softmax cross-entropy (the NLL evoprop trains with)"),
    "svm": Loss("svm", svm_loss, f"multiclass SVM hinge loss, margin delta = {SVM_DELTA:g}"),
}


@dataclass
class LossSettings:
    """The loss a lab experiment measures (the ``--loss``/``--reg`` options); its settings extend this."""

    loss: str = "softmax"  # a name in LOSSES (the option: cli/lab_options.loss_option, each command its default)
    reg: float = lab_setting(0.0, "L2 regularisation strength: adds reg * (sum of squared parameters).",
                             metavar="X", check="non-negative")


def get_loss(name: str) -> Loss:
    if name not in LOSSES:
        raise ConfigError(f"unknown loss '{name}'; valid: {', '.join(LOSSES)}")
    return LOSSES[name]


def l2_penalty(params, reg: float) -> torch.Tensor:
    """reg * sum of squares of every parameter (CS231n's R(W) = sum W^2, biases included with the bias trick)."""
    return reg * sum((p * p).sum() for p in params)


def backward_full_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, loss: Loss, reg: float = 0.0,
                       batch_size: int = 10_000) -> float:
    """The mean ``loss`` over all of (x, y) (plus the L2 term), its gradient accumulated into ``.grad``.

    Batches of ``batch_size`` bound the memory only: each batch's part is weighted by its share
    of the examples, so the gradient is the full-batch one.
    """
    n, total = len(y), 0.0
    for start in range(0, n, batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        part = loss(model(xb), yb) * (len(yb) / n)
        part.backward()
        total += float(part.detach())
    if reg:
        penalty = l2_penalty(list(model.parameters()), reg)
        penalty.backward()
        total += float(penalty.detach())
    return total
