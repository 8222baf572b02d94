"""From per-epoch history to the two headline numbers.

The paper reports the best test F1 over all epochs and the epoch it was reached
("convergence epoch"): that selects the epoch on the test split. The honest
number selects the epoch on the validation split and reads the test F1 there.
"""

from __future__ import annotations


def summarize(history: list[dict]) -> dict:
    """Headline numbers from a list of per-epoch metric dicts (epochs numbered from 1).

    Ties go to the earliest epoch, as "convergence epoch" means first reached.
    """
    if not history:
        return {"epochs": 0, "best_test_f1": None, "best_epoch": None,
                "val_selected_test_f1": None, "val_selected_epoch": None, "best_val_f1": None}
    best = max(history, key=lambda h: (h["test_f1"], -h["epoch"]))
    out = {
        "epochs": history[-1]["epoch"],
        "best_test_f1": best["test_f1"],
        "best_epoch": best["epoch"],
        "final_test_f1": history[-1]["test_f1"],
        "final_test_accuracy": history[-1]["test_accuracy"],
        "val_selected_test_f1": None,
        "val_selected_epoch": None,
        "best_val_f1": None,
    }
    if history[0].get("val_f1") is not None:
        chosen = max(history, key=lambda h: (h["val_f1"], -h["epoch"]))
        out.update(val_selected_test_f1=chosen["test_f1"], val_selected_epoch=chosen["epoch"], best_val_f1=chosen["val_f1"])
    return out


def time_to_target(history: list[dict], target_f1: float) -> dict:
    """The first epoch whose test macro-F1 reaches ``target_f1`` and the wall seconds spent until its end.

    ``{"epochs_to_target": None, "seconds_to_target": None}`` when no epoch reaches it.
    """
    seconds = 0.0
    for h in history:
        seconds += h.get("seconds", 0.0)
        if h["test_f1"] >= target_f1:
            return {"epochs_to_target": h["epoch"], "seconds_to_target": seconds}
    return {"epochs_to_target": None, "seconds_to_target": None}
