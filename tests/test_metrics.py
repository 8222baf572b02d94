import torch

from evoprop.train.metrics import confusion_matrix, evaluate, macro_f1
from evoprop.train.summary import summarize


def test_macro_f1_matches_a_hand_computed_case():
    y = torch.tensor([0, 0, 1, 1, 2])
    p = torch.tensor([0, 1, 1, 1, 0])
    # class 0: TP 1, FP 1, FN 1 -> 0.5; class 1: TP 2, FP 1 -> 0.8; class 2: TP 0, FN 1 -> 0
    assert abs(macro_f1(y, p, 3) - (0.5 + 0.8 + 0.0) / 3) < 1e-12


def test_macro_f1_skips_classes_absent_from_targets_and_predictions():
    y = torch.tensor([0, 1, 1])
    p = torch.tensor([0, 1, 0])
    # class 0: 2*1/(2+1+0)=2/3; class 1: 2*1/(2+0+1)=2/3; classes 2..9 absent -> not averaged
    assert abs(macro_f1(y, p, 10) - 2 / 3) < 1e-12
    assert macro_f1(y, y, 10) == 1.0


def test_confusion_matrix_rows_are_true_classes():
    cm = confusion_matrix(torch.tensor([0, 1, 1]), torch.tensor([1, 1, 0]), 2)
    assert cm.tolist() == [[0, 1], [1, 1]]


def test_evaluate_reports_loss_accuracy_f1_and_restores_mode():
    model = torch.nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
        model.bias.zero_()
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    y = torch.tensor([0, 1, 1])
    model.train()
    out = evaluate(model, x, y, 2, batch_size=2)  # batches of 2 and 1 must give the full-set numbers
    expected_loss = torch.nn.functional.cross_entropy(model(x), y).item()
    assert abs(out["loss"] - expected_loss) < 1e-6
    assert abs(out["accuracy"] - 2 / 3) < 1e-12
    assert model.training


def test_summary_paper_protocol_vs_validation_selected():
    history = [
        {"epoch": 1, "test_f1": 0.80, "test_accuracy": 0.8, "val_f1": 0.70},
        {"epoch": 2, "test_f1": 0.90, "test_accuracy": 0.9, "val_f1": 0.75},
        {"epoch": 3, "test_f1": 0.85, "test_accuracy": 0.85, "val_f1": 0.90},
        {"epoch": 4, "test_f1": 0.90, "test_accuracy": 0.9, "val_f1": 0.60},
    ]
    s = summarize(history)
    assert (s["best_test_f1"], s["best_epoch"]) == (0.90, 2)  # ties: first epoch reaching it
    assert (s["val_selected_test_f1"], s["val_selected_epoch"]) == (0.85, 3)
    assert s["epochs"] == 4 and s["final_test_f1"] == 0.90
    no_val = summarize([{k: v for k, v in h.items() if k != "val_f1"} for h in history])
    assert no_val["val_selected_test_f1"] is None
