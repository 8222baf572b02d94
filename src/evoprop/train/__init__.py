"""Training: the epoch loop, metrics, and the paper's / honest headline numbers."""

from evoprop.train.metrics import confusion_matrix, evaluate, macro_f1
from evoprop.train.summary import summarize
from evoprop.train.trainer import Trainer

__all__ = ["Trainer", "confusion_matrix", "evaluate", "macro_f1", "summarize"]
