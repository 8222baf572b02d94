"""A run's method in a few words, the same in the line a run ends with and in a report's rows."""

from __future__ import annotations


def method_label(settings: dict, *, es_details: bool = False) -> str:
    """'gradient sgd lr 0.01', 'hybrid sep P=1000 + sgd lr 0.01', 'es paper P=5000'.

    ``settings``: a run's config (``TrainConfig.to_dict()``) or its summary.json. ``es_details``: also
    what sets the ES apart beyond strategy and P, when it is not the default: a bfloat16 forward pass,
    a combination rule other than the paper's, an ES loss other than NLL, an L2 term in the ES fitness
    ('hybrid sep P=1000 bfloat16 elitist es-loss f1 L2 0.001 + sgd lr 0.01'); a report shows these in a column
    of their own instead.
    """
    method = settings.get("method", "?")
    parts = [method]
    if method != "gradient":
        parts.append(f"{settings.get('strategy')} P={settings.get('popsize')}")
        if es_details:
            if settings.get("es_precision") == "bfloat16":  # float32, exact, goes without saying
                parts.append("bfloat16")
            if settings.get("combine") not in (None, "paper"):  # the paper's rule goes without saying
                parts.append(settings["combine"])
            if settings.get("es_loss") not in (None, "nll"):  # as does its cross-entropy
                parts.append(f"es-loss {settings['es_loss']}")
            if settings.get("es_weight_decay"):  # as does a fitness without an L2 term
                parts.append(f"L2 {settings['es_weight_decay']:g}")
    if method != "es":
        lr = settings.get("lr")
        parts.append(("+ " if method == "hybrid" else "") + f"{settings.get('optimizer')}"
                     + (f" lr {lr:g}" if isinstance(lr, (int, float)) else ""))
    return " ".join(parts)
