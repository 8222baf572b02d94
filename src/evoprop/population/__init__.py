"""Population evaluation: the losses of P candidate parameter vectors on one mini-batch, at once."""

from evoprop.population.evaluator import PopulationEvaluator, available_memory

__all__ = ["PopulationEvaluator", "available_memory"]
