"""Seconds per epoch of the gradient trainer, against a plain PyTorch loop doing the same work.

The two settings of the foundation issue: MNIST softmax regression (depth 1, SGD lr 0.01,
batch 256) and the 10-layer MLP (width 200, Adam lr 0.001, batch 64), paper split with a
10 % validation part (44,550 training images). Both sides train the same model from the
same initial weights on the same in-memory tensors; the plain loop only skips evoprop's
bookkeeping (loss accumulation, divergence checks, progress bar, evaluation). Each side
runs ``--repeats`` epochs; medians are printed, and the last line is

    train_speed: depth1_s_per_epoch=<evoprop> depth10_s_per_epoch=<evoprop> depth10_overhead=<evoprop / plain>

Run: python benchmarks/train_speed.py [--repeats 5] [--data-dir ../shared/datasets]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from evoprop.data import load_dataset
from evoprop.models import build_mlp
from evoprop.optim import make_optimizer
from evoprop.train import Trainer

SETTINGS = {
    "depth1": dict(depth=1, optimizer="sgd", lr=0.01, batch_size=256),
    "depth10": dict(depth=10, optimizer="adam", lr=0.001, batch_size=64),
}


def plain_epoch(model, optimizer, x, y, batch_size, generator) -> float:
    start = time.perf_counter()
    for idx in torch.randperm(len(y), generator=generator).split(batch_size):
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="epochs timed per side and setting")
    default_data = os.environ.get("EVOPROP_DATA") or Path(__file__).resolve().parents[2] / "shared" / "datasets"
    parser.add_argument("--data-dir", default=str(default_data))
    args = parser.parse_args()

    data = load_dataset("mnist", data_dir=args.data_dir, val_fraction=0.1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, train {len(data.train)} images")
    print(f"{'setting':<8} {'evoprop s/epoch':>16} {'(train only)':>13} {'plain loop s/epoch':>19} {'overhead':>9}")
    results = {}
    for name, s in SETTINGS.items():
        torch.manual_seed(0)
        model = build_mlp(data.input_shape, 10, depth=s["depth"], width=200)
        plain_model = copy.deepcopy(model)
        trainer = Trainer(model, make_optimizer(s["optimizer"], model.parameters(), lr=s["lr"]), data,
                          batch_size=s["batch_size"])
        plain_opt = make_optimizer(s["optimizer"], plain_model.parameters(), lr=s["lr"])
        gen = torch.Generator().manual_seed(0)
        trainer.fit(1)  # warm-up (allocator, first-call costs) on both sides
        plain_epoch(plain_model, plain_opt, data.train.x, data.train.y, s["batch_size"], gen)
        ours, ours_train, plain = [], [], []
        for _ in range(args.repeats):
            trainer.fit(trainer.epoch + 1)
            ours.append(trainer.history[-1]["seconds"])
            ours_train.append(trainer.history[-1]["train_seconds"])
            plain.append(plain_epoch(plain_model, plain_opt, data.train.x, data.train.y, s["batch_size"], gen))
        m_ours, m_train, m_plain = (statistics.median(v) for v in (ours, ours_train, plain))
        results[name] = (m_ours, m_train / m_plain)
        print(f"{name:<8} {m_ours:>16.3f} {m_train:>13.3f} {m_plain:>19.3f} {m_train / m_plain:>8.2f}x")
    print(f"train_speed: depth1_s_per_epoch={results['depth1'][0]:.3f} "
          f"depth10_s_per_epoch={results['depth10'][0]:.3f} depth10_overhead={results['depth10'][1]:.2f}")


if __name__ == "__main__":
    main()
