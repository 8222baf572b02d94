"""Every registered gradient optimizer on MNIST 10-layer: steps, epochs and seconds to a test macro-F1 of 0.97.

Setting: the paper's MNIST MLP (10 weight layers, 200 ReLU units, Glorot-uniform init), paper
split with a 10 % validation part (44,550 training images, 5,500 test), batch 64, each
optimizer at its registry default learning rate unless ``--lr NAME=X`` says otherwise (the
rates are printed) and at batch 64 unless ``--batch-size NAME=B`` does (the second-order
methods take few large steps: hessian-free is meant for batch 2000). ``--depth 1`` measures
softmax regression instead, the only model here whose Hessian newton can hold (d = 7,850). Each optimizer trains until the test macro-F1 after an epoch reaches
``--target`` or ``--max-epochs`` have run ("not reached"); the epoch that first reached the
lower ``--early-target`` is reported too (it tells apart the optimizers that get good quickly and
then plateau). Seconds are training seconds (the
epochs' gradient steps, without evaluation), summed up to the epoch that reached the target;
s/epoch is the median training epoch. With ``--repeats`` > 1 each optimizer runs that many
seeds and medians are printed. The machine may be shared: the load average is printed
beside each row, and timings are only comparable between rows taken under similar load.

The last line is

    optimizers: <name>_epochs_early=<n or nan> <name>_epochs=<n or nan> <name>_steps=<n or nan> <name>_s=<seconds or nan>
                <name>_s_per_epoch=<s> ... early_target=0.96 target=0.97 load_end=<load>

Run: python benchmarks/optimizers.py [--max-epochs 15] [--repeats 1] [--only adam,natural] [--lr sgd=0.05]
     python benchmarks/optimizers.py --only hessian-free --batch-size hessian-free=2000 --max-epochs 5
     python benchmarks/optimizers.py --depth 1 --only newton --batch-size newton=4096 --target 0.9 --max-epochs 2
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
from pathlib import Path

from _machine import describe, matmul_gflops
from evoprop.config import TrainConfig
from evoprop.optim import OPTIMIZERS, parse_option_value
from evoprop.runs import build_trainer


def time_to_target(name: str, lr: float, batch: int, seed: int, args) -> dict:
    """Train ``name`` until the target test F1 or the epoch cap; what it took."""
    config = TrainConfig(dataset="mnist", data_dir=args.data_dir, depth=args.depth, width=200, init="glorot",
                         optimizer=name, lr=lr, batch_size=batch, epochs=args.max_epochs, seed=seed, device="cpu")
    trainer = build_trainer(config.validate())
    reached = early = None
    while trainer.epoch < args.max_epochs:
        trainer.fit(trainer.epoch + 1)
        f1 = trainer.history[-1]["test_f1"]
        if early is None and f1 >= args.early_target:
            early = trainer.epoch
        if f1 >= args.target:
            reached = trainer.epoch
            break
    history = trainer.history
    return {
        "early_epochs": early,
        "epochs": reached,
        "steps": reached * math.ceil(len(trainer.data.train) / batch) if reached else None,
        "seconds": sum(h["train_seconds"] for h in history) if reached else None,
        "s_per_epoch": statistics.median(h["train_seconds"] for h in history),
        "best_f1": max(h["test_f1"] for h in history),
        "epochs_run": len(history),
        "load": os.getloadavg()[0],
    }


def median_or_none(values: list) -> float | None:
    """Median over the repeats that reached the target; None unless at least half did."""
    hits = [v for v in values if v is not None]
    return statistics.median(hits) if len(hits) * 2 >= len(values) and hits else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=0.97, help="test macro-F1 to reach")
    parser.add_argument("--early-target", type=float, default=0.96, help="a lower test macro-F1, also reported")
    parser.add_argument("--max-epochs", type=int, default=15, help="epochs after which a run counts as not reached")
    parser.add_argument("--repeats", type=int, default=1, help="seeds per optimizer (medians are reported)")
    parser.add_argument("--only", help="comma-separated optimizer names [default: every registered one]")
    parser.add_argument("--lr", action="append", default=[], metavar="NAME=X",
                        help="learning rate of one optimizer instead of its registry default (repeatable)")
    parser.add_argument("--batch-size", action="append", default=[], metavar="NAME=B",
                        help="mini-batch size of one optimizer instead of 64 (repeatable)")
    parser.add_argument("--depth", type=int, default=10, help="weight layers of the MLP (1: softmax regression)")
    default_data = os.environ.get("EVOPROP_DATA") or Path(__file__).resolve().parents[2] / "shared" / "datasets"
    parser.add_argument("--data-dir", default=str(default_data))
    args = parser.parse_args()

    names = args.only.split(",") if args.only else list(OPTIMIZERS)
    unknown = [n for n in names if n not in OPTIMIZERS]
    if unknown:
        parser.error(f"unknown optimizer(s) {', '.join(unknown)}; registered: {', '.join(OPTIMIZERS)}")
    rates = {n: OPTIMIZERS[n].defaults.get("lr") for n in names}
    for item in args.lr:
        key, _, value = item.partition("=")
        if key not in rates:
            parser.error(f"--lr {item}: {key} is not among the optimizers run")
        rates[key] = float(parse_option_value(value))
    batches = {n: 64 for n in names}
    for item in args.batch_size:
        key, _, value = item.partition("=")
        if key not in batches or not value.isdigit() or int(value) < 1:
            parser.error(f"--batch-size {item}: expected NAME=B with NAME among the optimizers run and B >= 1")
        batches[key] = int(value)

    print(describe())
    print(f"matmul rate {matmul_gflops():.1f} GFLOP/s; load average at start {os.getloadavg()[0]:.2f} "
          f"({os.cpu_count()} cores)")
    model = "softmax regression" if args.depth == 1 else f"{args.depth} x 200 ReLU"
    print(f"MNIST {model}, Glorot, paper split (val 10 %); target test macro-F1 {args.target}, "
          f"cap {args.max_epochs} epochs, {args.repeats} seed(s)")
    print(f"{'optimizer':<12} {'lr':>7} {'batch':>6} {'steps to ' + str(args.target):>14} {'epochs to ' + str(args.early_target):>16} "
          f"{'epochs to ' + str(args.target) + (' (seeds)' if args.repeats > 1 else ''):>16} {'s to ' + str(args.target):>10} {'s/epoch':>8} "
          f"{'best F1':>8} {'load':>5}  options")
    results = {}
    for name in names:
        runs = [time_to_target(name, rates[name], batches[name], seed, args) for seed in range(args.repeats)]
        early = median_or_none([r["early_epochs"] for r in runs])
        epochs = median_or_none([r["epochs"] for r in runs])
        steps = median_or_none([r["steps"] for r in runs])
        seconds = median_or_none([r["seconds"] for r in runs])
        per_epoch = statistics.median(r["s_per_epoch"] for r in runs)
        best = statistics.median(r["best_f1"] for r in runs)
        results[name] = (early, epochs, seconds, per_epoch, steps)
        options = ", ".join(f"{k}={v}" for k, v in OPTIMIZERS[name].defaults.items() if k != "lr")
        early_text = f"{early:g}" if early is not None else f"not in {args.max_epochs}"
        reached = f"{epochs:g}" if epochs is not None else f"not in {args.max_epochs}"
        if args.repeats > 1:  # the spread: an optimizer that plateaus near the target varies a lot
            reached += " (" + ",".join(str(r["epochs"] or "-") for r in runs) + ")"
        spent = f"{seconds:.1f}" if seconds is not None else "-"
        steps_text = f"{steps:g}" if steps is not None else "-"
        print(f"{name:<12} {rates[name]:>7g} {batches[name]:>6} {steps_text:>14} {early_text:>16} {reached:>16} {spent:>10} {per_epoch:>8.2f} {best:>8.4f} "
              f"{statistics.median(r['load'] for r in runs):>5.1f}  {options}", flush=True)

    def fmt(v, spec):
        return "nan" if v is None else format(v, spec)

    print("optimizers: " + " ".join(
        f"{n}_epochs_early={fmt(a, 'g')} {n}_epochs={fmt(e, 'g')} {n}_steps={fmt(st, 'g')} {n}_s={fmt(s, '.1f')} "
        f"{n}_s_per_epoch={p:.2f}"
        for n, (a, e, s, p, st) in results.items())
        + f" early_target={args.early_target} target={args.target} load_end={os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
