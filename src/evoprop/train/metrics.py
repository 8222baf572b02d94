"""Classification metrics computed on tensors: loss, accuracy, macro-averaged F1."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def confusion_matrix(targets: torch.Tensor, predictions: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(num_classes, num_classes) counts; row = true class, column = predicted class."""
    index = targets.long() * num_classes + predictions.long()
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def macro_f1(targets: torch.Tensor, predictions: torch.Tensor, num_classes: int) -> float:
    """Unweighted mean of per-class F1 over the classes present in targets or predictions.

    Matches scikit-learn's ``f1_score(average="macro")``: a class never predicted
    (or with no true example) has F1 0, and classes absent from both are skipped.
    """
    cm = confusion_matrix(targets, predictions, num_classes).double()
    tp = cm.diagonal()
    support = cm.sum(dim=1)  # true examples per class
    predicted = cm.sum(dim=0)
    denom = support + predicted  # 2TP + FP + FN
    f1 = torch.where(denom > 0, 2 * tp / denom.clamp(min=1), torch.zeros_like(tp))
    present = denom > 0
    return float(f1[present].mean()) if present.any() else 0.0


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int, batch_size: int = 8192) -> dict:
    """Mean NLL-of-softmax loss, accuracy and macro-F1 of ``model`` on (x, y), in eval mode."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=y.device)
    preds = []
    for start in range(0, len(y), batch_size):
        logits = model(x[start : start + batch_size])
        loss_sum += F.cross_entropy(logits, y[start : start + batch_size], reduction="sum").double()
        preds.append(logits.argmax(dim=1))
    model.train(was_training)
    pred = torch.cat(preds)
    return {
        "loss": float(loss_sum) / len(y),
        "accuracy": float((pred == y).double().mean()),
        "f1": macro_f1(y, pred, num_classes),
    }
