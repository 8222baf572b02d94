"""Milliseconds per training step of the natural gradient (K-FAC) under its settings, against SGD and Adam.

Setting: MNIST 10 x 200 ReLU MLP (Glorot), batch 64, random inputs of MNIST's shape (the cost
does not depend on the pixel values), one forward, backward and optimizer step per step. Each
setting runs ``--steps`` steps after 20 warm-up steps, ``--repeats`` times interleaved with the
others; the *minimum* over repeats is printed (on a shared machine the minimum is the least
disturbed estimate) with the median beside it. Settings: the defaults (factors every 10
steps, inverses every 20, factored damping), inverses every 10 / 50 / 100, factors every step,
exact damping (eigendecompositions), and the empirical Fisher (no extra pass).

The last line is

    kfac_cost: sgd_ms=<ms> adam_ms=<ms> natural_ms=<ms> natural_over_adam=<ratio> ...

Run: python benchmarks/kfac_cost.py [--steps 200] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

from _machine import describe
from evoprop.models import build_mlp
from evoprop.optim import make_optimizer

SETTINGS = {
    "sgd": ("sgd", {}),
    "adam": ("adam", {}),
    "natural": ("natural", {}),
    "natural_inv10": ("natural", {"inverse_every": 10}),
    "natural_inv50": ("natural", {"inverse_every": 50}),
    "natural_inv100": ("natural", {"inverse_every": 100}),
    "natural_factors1": ("natural", {"factor_every": 1}),
    "natural_exact": ("natural", {"damping_mode": "exact"}),
    "natural_empirical": ("natural", {"fisher": "empirical"}),
}


def ms_per_step(name: str, options: dict, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    torch.manual_seed(0)
    model = build_mlp((1, 28, 28), 10, depth=10, width=200)
    opt = make_optimizer(name, model.parameters(), model=model, **options)
    batches = len(y) // 64

    def step(i: int) -> None:
        i %= batches
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[i * 64:(i + 1) * 64]), y[i * 64:(i + 1) * 64]).backward()
        opt.step()

    for i in range(20):
        step(i)
    start = time.perf_counter()
    for i in range(20, 20 + steps):
        step(i)
    return (time.perf_counter() - start) / steps * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(64 * 100, 1, 28, 28, generator=generator)
    y = torch.randint(0, 10, (64 * 100,), generator=generator)

    print(describe())
    print(f"load average at start {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores); "
          f"{args.steps} steps x {args.repeats} repeats per setting, batch 64")
    times = {key: [] for key in SETTINGS}
    for _ in range(args.repeats):
        for key, (name, options) in SETTINGS.items():
            times[key].append(ms_per_step(name, options, x, y, args.steps))
    best = {key: min(v) for key, v in times.items()}
    print(f"{'setting':<18} {'ms/step (min)':>13} {'(median)':>9} {'x adam':>7}  options")
    for key, (name, options) in SETTINGS.items():
        print(f"{key:<18} {best[key]:>13.2f} {statistics.median(times[key]):>9.2f} "
              f"{best[key] / best['adam']:>7.2f}  {options or ''}")
    print(f"load average at end {os.getloadavg()[0]:.2f}")
    print("kfac_cost: " + " ".join(f"{k}_ms={v:.2f}" for k, v in best.items())
          + f" natural_over_adam={best['natural'] / best['adam']:.2f}")


if __name__ == "__main__":
    main()
