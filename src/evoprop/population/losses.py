"""What an evolution strategy may minimise on its mini-batch, for every candidate at once.

The gradient optimizer needs a differentiable loss; an ES only ranks candidates, so it can
minimise what is reported instead (an ES "is not bound by differentiability"):

* ``nll``   — the mean cross-entropy (negative log-likelihood of the softmax), the default;
* ``error`` — 1 − accuracy: the fraction of the mini-batch misclassified;
* ``f1``    — 1 − macro-F1, F1 averaged over the classes present in the batch's targets or
  predictions (scikit-learn's ``f1_score(average="macro")``, as :func:`evoprop.train.metrics.macro_f1`).

Each is written for one candidate's (B, C) logits and (B,) targets, without data-dependent
shapes, so :class:`~evoprop.population.PopulationEvaluator` runs it under ``vmap`` over all P
candidates at once (no Python loop over candidates); ``nll`` takes the evaluator's own batched
cross-entropy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from evoprop.enums import ES_LOSS_NAMES
from evoprop.errors import ConfigError
from evoprop.population.evaluator import LossFn


def classification_error(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1 − accuracy of (B, C) logits against (B,) class indices."""
    return 1.0 - (logits.argmax(dim=-1) == targets).to(logits.dtype).mean()


def one_minus_macro_f1(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1 − macro-F1: per class F1 = 2 TP / (2 TP + FP + FN), averaged over the classes that occur
    in the targets or the predictions (a class predicted but never true, or true but never
    predicted, counts with F1 0; classes in neither are skipped)."""
    classes = torch.arange(logits.shape[-1], device=logits.device)
    predicted = (logits.argmax(dim=-1).unsqueeze(-1) == classes).to(logits.dtype)  # (B, C) one-hot
    true = (targets.unsqueeze(-1) == classes).to(logits.dtype)
    tp = (predicted * true).sum(dim=0)
    denom = predicted.sum(dim=0) + true.sum(dim=0)  # 2 TP + FP + FN
    present = (denom > 0).to(logits.dtype)
    f1 = 2.0 * tp / denom.clamp(min=1.0)
    return 1.0 - (f1 * present).sum() / present.sum().clamp(min=1.0)


ES_LOSSES: dict[str, LossFn] = dict(zip(ES_LOSS_NAMES, (F.cross_entropy, classification_error, one_minus_macro_f1),
                                         strict=True))


def es_loss(name: str) -> LossFn:
    """The loss function called ``name`` (one of :data:`ES_LOSSES`)."""
    if name not in ES_LOSSES:
        raise ConfigError(f"unknown es_loss '{name}'; valid: {', '.join(ES_LOSSES)}")
    return ES_LOSSES[name]
