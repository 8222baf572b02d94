"""Seconds per epoch of the hybrid trainer vs plain SGD, at the paper's MNIST 10-layer setting.

Setting (Table 3): 10 weight layers of 200 ReLU units, SGD lr 0.01, batch 64, hybrid with a
population of 1,000 on layer 1 (d = 157,000; strategy auto -> separable CMA-ES) and ES
mini-batch 256, one generation per epoch. SGD and the hybrid (with float32 evaluation and with
``es_precision="bfloat16"``) run ``--epochs`` epochs on the paper split (44,550 training images
with the 10 % validation part), taking turns epoch by epoch because the host's speed drifts;
the median epoch is reported, with the hybrid's ES and gradient parts, and the median over
rounds of (hybrid epoch - SGD epoch of the same round). Then one generation is taken apart:
the normal draw, the population built from it, the evaluation, the update (medians of 5).
The target: a hybrid epoch costs no more than

    SGD epoch + 1.3 x (one generation's FLOPs / this machine's measured float32 matmul rate)

The last line is (hybrid_s, es_s: the default hybrid, whose evaluation precision is "auto":
bfloat16 where the hardware multiplies it natively, else float32; float32_*: the exact one)

    hybrid_epoch: sgd_s=<s> hybrid_s=<s> budget_s=<s> es_s=<s> generation_floor_s=<s> precision=<p> float32_hybrid_s=<s> float32_es_s=<s>

The combination rules (``--combine``, default precision) take their turns in the same rounds:
each rule's epoch against SGD's of the same round, and for ``elitist`` and ``inject`` what their
extra work costs as a fraction of one generation (medians of 5; target < 10 %): the acceptance
test (drawing a 1,024-image batch, two forward passes of the model on it, writing the layer) and
the injection (queueing the trained layer, copying it into the population's first row, clipping
its step in tell). Then one line per rule

    hybrid_rule: combine=<rule> epoch_s=<s> sgd_s=<s> extra_s=<s> accept_fraction=<f> inject_fraction=<f>

Run: python benchmarks/hybrid_epoch.py [--epochs 10] [--device auto] [--rules paper,sync,elitist,inject,disjoint]
(~4 min on 2 quiet CPU cores without the rules, ~9 min with them)
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch
from _machine import describe, matmul_gflops
from evoprop.config import TrainConfig
from evoprop.device import resolve_device
from evoprop.population.evaluator import native_bfloat16
from evoprop.runs import build_trainer
from evoprop.enums import COMBINE_RULES

GENERATION_FLOP = 2 * 256 * 1000 * (784 * 200 + 8 * 200 * 200 + 200 * 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5, help="rounds: each trains one epoch of every trainer")
    parser.add_argument("--popsize", type=int, default=1000)
    parser.add_argument("--device", default="auto")
    default_data = os.environ.get("EVOPROP_DATA") or Path(__file__).resolve().parents[2] / "shared" / "datasets"
    parser.add_argument("--data-dir", default=str(default_data))
    parser.add_argument("--rules", default=",".join(COMBINE_RULES),
                        help="combination rules to time beside the paper's (comma-separated; '' for none)")
    parser.add_argument("--precisions", default="float32,bfloat16",
                        help="evaluation precisions of the paper's hybrid to time (float32 is always timed; "
                             "bfloat16 without native units, e.g. on AVX2-only CPUs, is several times slower: leave it out there)")
    args = parser.parse_args()
    rules = [r for r in args.rules.split(",") if r]
    device = resolve_device(args.device)

    base = dict(dataset="mnist", data_dir=args.data_dir, depth=10, width=200, optimizer="sgd", lr=0.01,
                batch_size=64, epochs=args.epochs, device=str(device))
    flop = GENERATION_FLOP * args.popsize / 1000
    print(describe())
    default = "bfloat16" if native_bfloat16(device) else "float32"  # what --es-precision auto picks here
    trainers = {"sgd": build_trainer(TrainConfig(**base).validate())}
    precisions = list(dict.fromkeys(["float32", default] + [p for p in args.precisions.split(",") if p]))
    for precision in precisions:
        trainers["hybrid " + precision] = build_trainer(TrainConfig(
            method="hybrid", popsize=args.popsize, es_precision=precision, **base).validate())
    for rule in rules:
        if rule != "paper":  # the paper's rule is the default hybrid above
            trainers["rule " + rule] = build_trainer(TrainConfig(
                method="hybrid", popsize=args.popsize, combine=rule, **base).validate())
    # The host's speed drifts by tens of percent within a minute, so the trainers take turns
    # epoch by epoch (and the matmul rate is re-measured each round): medians over rounds
    # then compare like with like.
    rates = []
    for epoch in range(1, args.epochs + 1):
        rates.append(matmul_gflops(device=device))
        for trainer in trainers.values():
            trainer.fit(epoch)
    rate = statistics.median(rates)
    floor = flop / rate / 1e9
    sgd_s = median_of(trainers["sgd"], "train_seconds")
    budget = sgd_s + 1.3 * floor
    print(f"device {device}; matmul rate {rate:.1f} GFLOP/s (median of {len(rates)}, {min(rates):.0f}-{max(rates):.0f}); "
          f"one generation = {flop / 1e9:.0f} GFLOP -> floor {floor:.2f} s; {args.epochs} interleaved epochs each")
    print(f"{'trainer':<16} {'s/epoch':>8} {'ES s':>6} {'ES/floor':>8} {'grad s':>7} {'test F1 (last)':>15}")
    results = {}
    for name, trainer in trainers.items():
        epoch_s = median_of(trainer, "train_seconds")
        f1 = trainer.history[-1]["test_f1"]
        if name == "sgd":
            print(f"{name:<16} {epoch_s:>8.2f} {'':>6} {'':>8} {epoch_s:>7.2f} {f1:>15.4f}")
            continue
        if name.startswith("rule "):
            continue  # below
        es_s, grad_s = median_of(trainer, "es_seconds"), median_of(trainer, "grad_seconds")
        results[name] = (epoch_s, es_s)
        print(f"{name:<16} {epoch_s:>8.2f} {es_s:>6.2f} {es_s / floor:>8.2f} {grad_s:>7.2f} {f1:>15.4f}   "
              f"(strategy {trainer.search.strategy_name}, P={args.popsize}{', the default here' if name.endswith(default) else ''}) "
              f"-> {'within' if epoch_s <= budget else 'OVER'} budget; ES part "
              f"{'within' if es_s <= 1.3 * floor else 'over'} 1.3 x floor")
    print(f"budget: SGD epoch + 1.3 x floor = {budget:.2f} s (ES part allowed {1.3 * floor:.2f} s)")
    # A hybrid's gradient part is an SGD epoch: any difference between them is the host's noise,
    # so the extra cost of the hybrid is best seen round by round, against the SGD epoch beside it.
    sgd_epochs = [h["train_seconds"] for h in trainers["sgd"].history]
    for name in results:
        extra = statistics.median(h["train_seconds"] - s for h, s in zip(trainers[name].history, sgd_epochs))
        print(f"{name}: median over rounds of (hybrid epoch - SGD epoch of the same round) = {extra:.2f} s "
              f"= {extra / floor:.2f} x floor (allowed 1.3)")
    for name in results:
        parts = generation_parts(trainers[name])
        print(f"one generation, {name.split()[1]}: " + "  ".join(f"{k} {v:.3f} s" for k, v in parts.items()))
    (hybrid_s, es_s), (f32_s, f32_es_s) = results["hybrid " + default], results["hybrid float32"]
    print(f"hybrid_epoch: sgd_s={sgd_s:.2f} hybrid_s={hybrid_s:.2f} budget_s={budget:.2f} es_s={es_s:.2f} "
          f"generation_floor_s={floor:.2f} precision={default} float32_hybrid_s={f32_s:.2f} float32_es_s={f32_es_s:.2f}")
    if rules:
        print_rules(rules, trainers, default, sgd_epochs)


def print_rules(rules: list[str], trainers: dict, default: str, sgd_epochs: list[float]) -> None:
    """Each rule's epoch against SGD's (paired by round) and the share of a generation its extra work takes."""
    print(f"{'combine':<9} {'s/epoch':>8} {'ES s':>6} {'grad s':>7} {'extra vs SGD':>13} {'accept':>14} "
          f"{'inject':>14} {'accepted':>9} {'test F1':>8}")
    lines = []
    for rule in rules:
        trainer = trainers["hybrid " + default] if rule == "paper" else trainers["rule " + rule]
        hist = trainer.history
        epoch_s = median_of(trainer, "train_seconds")
        extra = statistics.median(h["train_seconds"] - s for h, s in zip(hist, sgd_epochs))
        costs = rule_costs(trainer) if trainer.search.elitist else {}
        acc, inj = (costs["accept"] / costs["generation"], costs["inject"] / costs["generation"]) if costs else (0.0, 0.0)
        generations = len(hist) * trainer.generations_per_epoch
        accepted = f"{sum(h['accepted'] for h in hist)}/{generations}" if "accepted" in hist[-1] else "-"
        cost = (lambda key, frac: f"{costs[key]:.3f} s {100 * frac:4.1f}%" if key in costs else "-")
        print(f"{rule:<9} {epoch_s:>8.2f} {median_of(trainer, 'es_seconds'):>6.2f} {median_of(trainer, 'grad_seconds'):>7.2f} "
              f"{extra:>11.2f} s {cost('accept', acc):>14} {cost('inject', inj):>14} {accepted:>9} "
              f"{hist[-1]['test_f1']:>8.4f}")
        lines.append(f"hybrid_rule: combine={rule} epoch_s={epoch_s:.2f} sgd_s={statistics.median(sgd_epochs):.2f} "
                     f"extra_s={extra:.2f} accept_fraction={acc:.4f} inject_fraction={inj:.4f}")
    print("\n".join(lines))


@torch.no_grad()
def rule_costs(trainer, repeats: int = 5) -> dict[str, float]:
    """Median seconds of one whole generation of an elitist/inject trainer and of its two extra parts,
    each timed on its own as LayerSearch.step runs it. The model and the trainer's streams are left
    as they were (the parts run on copies of the state)."""
    search, strategy = trainer.search, trainer.search.strategy
    saved = {"model": {k: v.clone() for k, v in trainer.model.state_dict().items()},
             "search": search.state_dict(), "es": trainer.es_generator.get_state(),
             "accept": trainer.accept_generator.get_state(), "stats": list(trainer._epoch_stats)}
    parts: dict[str, list[float]] = {"generation": [], "accept": [], "inject": []}
    layer = search.evaluator.get_vector()
    for _ in range(repeats):
        start = time.perf_counter()
        trainer.generation()
        parts["generation"].append(time.perf_counter() - start)
        # the acceptance test: its mini-batch, the two losses, the layer written back
        start = time.perf_counter()
        xa, ya = trainer._draw(trainer.accept_generator, trainer.accept_batch_size)
        search._model_loss(layer, xa, ya, torch.nn.functional.cross_entropy)
        search._model_loss(layer, xa, ya, torch.nn.functional.cross_entropy)
        search.evaluator.set_vector(layer)
        parts["accept"].append(time.perf_counter() - start)
        # the injection: queue it, copy it into row 0 (as ask does), clip its step (as tell does)
        candidates = strategy.ask(out=search._population_buffer())
        start = time.perf_counter()
        strategy.inject(layer)
        candidates[:1] = strategy._injections.pop(0).to(candidates.dtype).unsqueeze(0)
        strategy._clip_injected(strategy._pending["z"], strategy._pending["y"], candidates, 1)
        parts["inject"].append(time.perf_counter() - start)
        strategy._pending = None
    trainer.model.load_state_dict(saved["model"])
    search.load_state_dict(saved["search"])
    trainer.es_generator.set_state(saved["es"])
    trainer.accept_generator.set_state(saved["accept"])
    trainer._epoch_stats = saved["stats"]
    return {k: statistics.median(v) for k, v in parts.items()}


def median_of(trainer, key: str) -> float:
    return statistics.median(h[key] for h in trainer.history)


def generation_parts(trainer, repeats: int = 5) -> dict[str, float]:
    """Median seconds of each part of one generation (as LayerSearch.step runs them)."""
    search, strategy = trainer.search, trainer.search.strategy
    train = trainer.data.train
    x, y = train.x[: trainer.es_batch_size], train.y[: trainer.es_batch_size]
    parts: dict[str, list[float]] = {"draw": [], "population": [], "evaluate": [], "update": []}
    buffer = search._population_buffer()
    for _ in range(repeats):
        start = time.perf_counter()
        strategy._standard_normal()  # the draw alone (ask() below draws again: that is the one used)
        parts["draw"].append(time.perf_counter() - start)
        start = time.perf_counter()
        candidates = strategy.ask(out=buffer)
        parts["population"].append(time.perf_counter() - start - parts["draw"][-1])
        start = time.perf_counter()
        losses = search.evaluator(candidates, x, y)
        parts["evaluate"].append(time.perf_counter() - start)
        start = time.perf_counter()
        strategy.tell(candidates, losses)
        parts["update"].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in parts.items()}

if __name__ == "__main__":
    main()
