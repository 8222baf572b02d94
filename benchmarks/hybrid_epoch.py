"""Seconds per epoch of the hybrid trainer vs plain SGD, at the paper's MNIST 10-layer setting.

Setting (Table 3): 10 weight layers of 200 ReLU units, SGD lr 0.01, batch 64, hybrid with a
population of 1,000 on layer 1 (d = 157,000; strategy auto -> separable CMA-ES) and ES
mini-batch 256, one generation per epoch. Both trainers run ``--epochs`` epochs on the paper
split (44,550 training images with the 10 % validation part); the median epoch is reported,
with the hybrid's ES and gradient parts. The target: a hybrid epoch costs no more than

    SGD epoch + 1.3 x (one generation's FLOPs / this machine's measured matmul rate)

The last line is

    hybrid_epoch: sgd_s=<s> hybrid_s=<s> budget_s=<s> es_s=<s> generation_floor_s=<s>

Run: python benchmarks/hybrid_epoch.py [--epochs 3] [--device auto]
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

from _machine import describe, matmul_gflops
from evoprop.config import TrainConfig
from evoprop.device import resolve_device
from evoprop.runs import build_trainer

GENERATION_FLOP = 2 * 256 * 1000 * (784 * 200 + 8 * 200 * 200 + 200 * 10)


def median_epoch(trainer, epochs: int, key: str = "train_seconds") -> float:
    trainer.fit(epochs)
    return statistics.median(h[key] for h in trainer.history)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--popsize", type=int, default=1000)
    parser.add_argument("--device", default="auto")
    default_data = os.environ.get("EVOPROP_DATA") or Path(__file__).resolve().parents[2] / "shared" / "datasets"
    parser.add_argument("--data-dir", default=str(default_data))
    args = parser.parse_args()
    device = resolve_device(args.device)

    base = dict(dataset="mnist", data_dir=args.data_dir, depth=10, width=200, optimizer="sgd", lr=0.01,
                batch_size=64, epochs=args.epochs, device=str(device))
    rate = matmul_gflops(device=device)
    floor = GENERATION_FLOP * args.popsize / 1000 / rate / 1e9
    print(describe())
    print(f"device {device}; matmul rate {rate:.1f} GFLOP/s; one generation = {GENERATION_FLOP * args.popsize / 1000 / 1e9:.0f} "
          f"GFLOP -> floor {floor:.2f} s")

    sgd = build_trainer(TrainConfig(**base).validate())
    sgd_s = median_epoch(sgd, args.epochs)
    hybrid = build_trainer(TrainConfig(method="hybrid", popsize=args.popsize, **base).validate())
    hybrid_s = median_epoch(hybrid, args.epochs)
    es_s = statistics.median(h["es_seconds"] for h in hybrid.history)
    grad_s = statistics.median(h["grad_seconds"] for h in hybrid.history)
    budget = sgd_s + 1.3 * floor
    print(f"{'trainer':<8} {'s/epoch':>8} {'ES s':>6} {'grad s':>7} {'test F1 (last)':>15}")
    print(f"{'sgd':<8} {sgd_s:>8.2f} {'':>6} {sgd_s:>7.2f} {sgd.history[-1]['test_f1']:>15.4f}")
    print(f"{'hybrid':<8} {hybrid_s:>8.2f} {es_s:>6.2f} {grad_s:>7.2f} {hybrid.history[-1]['test_f1']:>15.4f}"
          f"   (strategy {hybrid.search.strategy_name}, P={args.popsize})")
    print(f"budget: SGD epoch + 1.3 x floor = {budget:.2f} s -> hybrid {'within' if hybrid_s <= budget else 'OVER'} budget")
    print(f"hybrid_epoch: sgd_s={sgd_s:.2f} hybrid_s={hybrid_s:.2f} budget_s={budget:.2f} es_s={es_s:.2f} "
          f"generation_floor_s={floor:.2f}")


if __name__ == "__main__":
    main()
