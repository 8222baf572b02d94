"""Training: the gradient, hybrid (Algorithm 2) and ES-only trainers, metrics and summaries."""

from evoprop.train.es_only import EsTrainer
from evoprop.train.hybrid import HybridTrainer
from evoprop.train.layer_search import LayerSearch
from evoprop.train.metrics import confusion_matrix, evaluate, macro_f1
from evoprop.train.summary import summarize
from evoprop.train.trainer import Trainer

__all__ = ["EsTrainer", "HybridTrainer", "LayerSearch", "Trainer", "confusion_matrix", "evaluate", "macro_f1",
           "summarize"]
