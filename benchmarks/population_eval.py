"""Population evaluation at the paper's settings: time per generation, GFLOP/s, share of the matmul rate.

Cases (ES mini-batch 256, real images; the searched layer is layer 1, as in the paper):
  mnist1   MNIST one-layer network (784 -> 10),              P = 5,000, d = 7,850
  mnist10  MNIST 10-layer network (784 -> 200 x 9 -> 10),     P = 1,000, d = 157,000
  cifar10  CIFAR-10-gray 10-layer network (1024 -> 200 ...),  P = 800,   d = 205,000
For each: the median seconds of one generation's evaluation (all P candidates), its FLOPs
(2 * B * P * the multiply-adds of the searched layer and every layer after it), the achieved
GFLOP/s and that as a fraction of this machine's matmul rate measured in the same run, and the
speedup over evaluating the candidate networks one by one (a plain loop: write the candidate
into the model, forward the mini-batch; timed on a subset and scaled to P). Each case is also
timed with ``precision="bfloat16"`` (its "of matmul" is still against the float32 rate, and
the bfloat16 matmul rate is printed beside it). The last line (float32) is

    population_eval: mnist10_P1000_gemm_efficiency=<fraction> speedup_vs_loop=<x>

Run: python benchmarks/population_eval.py [--repeats 5] [--cases mnist1,mnist10,cifar10] [--device auto]
CIFAR-10 here is the JPEG-decoded reconstruction in ../shared/datasets (timing does not depend on pixels).
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F

from _machine import describe, matmul_gflops, timed
from evoprop.data import load_dataset
from evoprop.device import resolve_device
from evoprop.models import build_mlp
from evoprop.population import PopulationEvaluator

CASES = {
    "mnist1": dict(dataset="mnist", depth=1, popsize=5000),
    "mnist10": dict(dataset="mnist", depth=10, popsize=1000),
    "cifar10": dict(dataset="cifar10-gray", depth=10, popsize=800),
}
BATCH = 256
LOOP_SAMPLE = 50  # candidates timed one by one, scaled to P


def flops(model, popsize: int, batch: int) -> float:
    """2 * B * P * (multiply-adds of every layer from the searched first layer on)."""
    return 2.0 * batch * popsize * sum(layer.in_features * layer.out_features for layer in model.layers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--device", default="auto")
    default_data = os.environ.get("EVOPROP_DATA") or Path(__file__).resolve().parents[2] / "shared" / "datasets"
    parser.add_argument("--data-dir", default=str(default_data))
    args = parser.parse_args()
    device = resolve_device(args.device)

    rate = matmul_gflops(device=device)
    bf16_rate = matmul_gflops(device=device, dtype=torch.bfloat16)
    print(describe())
    print(f"device {device}; measured matmul rate (4096^3, median of 5): float32 {rate:.1f} GFLOP/s, "
          f"bfloat16 {bf16_rate:.1f} GFLOP/s")
    print(f"{'case':<14} {'P':>5} {'d':>8} {'s/gen':>7} {'GFLOP':>7} {'GFLOP/s':>8} {'of matmul':>9} "
          f"{'loop s/gen':>10} {'speedup':>8}")
    results = {}
    for name in args.cases.split(","):
        case = CASES[name]
        data = load_dataset(case["dataset"], data_dir=args.data_dir, val_fraction=0, limit_test=1, device=device)
        x, y = data.train.x[:BATCH], data.train.y[:BATCH]
        torch.manual_seed(0)
        model = build_mlp(data.input_shape, 10, depth=case["depth"], width=200).to(device)
        evaluator = PopulationEvaluator(model, layers=[0])
        popsize = case["popsize"]
        gen = torch.Generator(device=device).manual_seed(0)
        candidates = evaluator.get_vector() + 0.01 * torch.randn(popsize, evaluator.dim, generator=gen, device=device)
        seconds = statistics.median(timed(lambda: evaluator(candidates, x, y), args.repeats, device))
        low = PopulationEvaluator(model, layers=[0], precision="bfloat16")
        low_seconds = statistics.median(timed(lambda: low(candidates, x, y), args.repeats, device))
        low.release_buffers()

        def one_by_one():
            with torch.no_grad():
                for c in candidates[:LOOP_SAMPLE]:
                    evaluator.set_vector(c)
                    F.cross_entropy(model(x), y)

        loop = statistics.median(timed(one_by_one, max(1, args.repeats // 2), device)) * popsize / LOOP_SAMPLE
        gflop = flops(model, popsize, BATCH) / 1e9
        results[name] = (gflop / seconds / rate, loop / seconds)
        for label, s in ((name, seconds), (name + " bf16", low_seconds)):
            print(f"{label:<14} {popsize:>5} {evaluator.dim:>8} {s:>7.3f} {gflop:>7.1f} {gflop / s:>8.1f} "
                  f"{gflop / s / rate:>8.0%} {loop:>10.2f} {loop / s:>7.1f}x")
    eff, speedup = results.get("mnist10", (float("nan"), float("nan")))
    print(f"population_eval: mnist10_P1000_gemm_efficiency={eff:.2f} speedup_vs_loop={speedup:.1f}")


if __name__ == "__main__":
    main()
