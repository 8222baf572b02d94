"""Population evaluation: the losses of P candidate parameter vectors on one mini-batch, at once."""

from evoprop.population.evaluator import PopulationEvaluator, available_memory
from evoprop.population.losses import ES_LOSSES, es_loss

__all__ = ["ES_LOSSES", "PopulationEvaluator", "available_memory", "es_loss"]
