"""Choices that the settings (:mod:`evoprop.config`) check and the layers below implement.

Defined here, beneath both, so that :class:`~evoprop.config.TrainConfig` names them at import
without importing the training code: :mod:`evoprop.train.layer_search` combines a generation's
result by :data:`COMBINE_RULES`, :mod:`evoprop.population.losses` scores candidates by
:data:`ES_LOSS_NAMES`.
"""

from __future__ import annotations

from evoprop.errors import ConfigError

# How a generation's result is combined with the gradient-trained layer (see LayerSearch and README):
COMBINE_RULES = ("paper", "sync", "elitist", "inject", "disjoint")
SYNCED = ("sync", "elitist")  # the mean is moved to the model's layer before each generation

#: The losses an ES can score its candidates by (``TrainConfig.es_loss``), in ``ES_LOSSES``' order.
ES_LOSS_NAMES = ("nll", "error", "f1")


def resolve_combine(combine: str, sync_mean: bool = False) -> str:
    """The combination rule, with ``sync_mean=True`` as the alias of ``"sync"`` (decided here only)."""
    if combine not in COMBINE_RULES:
        raise ConfigError(f"unknown combine '{combine}'; valid: {', '.join(COMBINE_RULES)}")
    if sync_mean and combine == "paper":
        return "sync"
    if sync_mean and combine not in SYNCED:
        raise ConfigError(f"sync_mean (the alias of combine 'sync') cannot be used with combine '{combine}', "
                          "whose mean is not moved to the trained layer")
    return combine
