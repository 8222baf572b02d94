"""Evaluations to reach f <= 1e-8: evoprop ``cma`` vs pycma and cmaes, same λ, several seeds.

Functions: ellipsoid f(x) = Σ 10^(6 (i-1)/(d-1)) x_i² (x0 = 1, σ0 = 1) and
Rosenbrock (x0 = 0, σ0 = 0.5), at d = 10 and 40, default λ = 4 + ⌊3 ln d⌋ for
all three libraries, float64. A run that stops (library's own termination)
or exceeds the budget without reaching the target counts as a failure; the
median is over all runs, failures counting as +inf (so it is finite only if
more than half succeed). The last line is
``es_quality: max_ratio_vs_pycma=<max over cases of evoprop median / pycma median>``.

    python benchmarks/es_quality.py [--seeds 9]
    python benchmarks/es_quality.py --factors --libs evoprop   # cma with each factorization, no peers

``--factors`` runs evoprop ``cma`` twice, with ``method="eigh"`` and ``method="cholesky"``
(same seeds), and its last line is ``es_quality: cholesky_over_eigh=<min>..<max>`` over the
cases: the evaluation counts behind the choice of ``EIGH_MAX_DIM`` in ``evoprop/es/cov.py``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

TARGET = 1e-8


def ellipsoid_np(x):
    d = len(x)
    return float(np.sum(10 ** (6 * np.arange(d) / (d - 1)) * x**2))


def rosen_np(x):
    return float(np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2))


def ellipsoid_t(X):
    d = X.shape[1]
    return ((10 ** (6 * torch.arange(d, dtype=X.dtype) / (d - 1))) * X**2).sum(1)


def rosen_t(X):
    return (100 * (X[:, 1:] - X[:, :-1] ** 2) ** 2 + (1 - X[:, :-1]) ** 2).sum(1)


CASES = {"ellipsoid": (ellipsoid_np, ellipsoid_t, 1.0, 1.0), "rosenbrock": (rosen_np, rosen_t, 0.0, 0.5)}


def run_evoprop(fname, d, seed, budget, method="auto"):
    from evoprop.es import make_strategy

    _, ft, x0, s0 = CASES[fname]
    es = make_strategy("cma", torch.full((d,), x0, dtype=torch.float64), s0, seed=seed, method=method)
    while es.evaluations < budget:
        X = es.ask()
        es.tell(X, ft(X))
        if es.best.fitness <= TARGET:
            return es.evaluations
        if es.should_stop():
            return math.inf
    return math.inf


def run_pycma(fname, d, seed, budget):
    import cma

    fn, _, x0, s0 = CASES[fname]
    es = cma.CMAEvolutionStrategy(d * [x0], s0, {"seed": seed + 1, "verbose": -9, "maxfevals": budget,
                                                 "ftarget": TARGET, "tolfun": 0, "tolfunhist": 0})
    evals = 0
    while not es.stop():
        X = es.ask()
        f = [fn(np.asarray(x)) for x in X]
        es.tell(X, f)
        evals += len(X)
        if min(f) <= TARGET:
            return evals
    return math.inf


def run_cmaes(fname, d, seed, budget):
    import cmaes

    fn, _, x0, s0 = CASES[fname]
    es = cmaes.CMA(mean=np.full(d, x0), sigma=s0, seed=seed)
    evals = 0
    while evals < budget and not es.should_stop():
        sols = []
        for _ in range(es.population_size):
            x = es.ask()
            sols.append((x, fn(x)))
        es.tell(sols)
        evals += len(sols)
        if min(v for _, v in sols) <= TARGET:
            return evals
    return math.inf


RUNNERS = {"evoprop cma": run_evoprop, "pycma": run_pycma, "cmaes": run_cmaes}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=9)
    ap.add_argument("--dims", default="10,40")
    ap.add_argument("--factors", action="store_true",
                    help="run evoprop cma with method=eigh and method=cholesky instead of its default")
    ap.add_argument("--libs", default="evoprop,pycma,cmaes", help="comma-separated: evoprop, pycma, cmaes")
    args = ap.parse_args()
    dims = [int(x) for x in args.dims.split(",")]
    runners = dict(RUNNERS)
    if args.factors:
        del runners["evoprop cma"]
        runners = {f"evoprop cma {m}": (lambda m: lambda *a: run_evoprop(*a, method=m))(m)
                   for m in ("eigh", "cholesky")} | runners
    libs = set(args.libs.split(","))
    runners = {k: v for k, v in runners.items() if k.split()[0] in libs}
    print(f"# es_quality: evaluations to f <= {TARGET:g}, {args.seeds} seeds, torch {torch.__version__}")
    rows = []
    for fname in CASES:
        for d in dims:
            budget = 2000 * d * (10 if fname == "rosenbrock" else 5)
            meds = {}
            for lib, runner in runners.items():
                t = time.perf_counter()
                try:
                    evals = [runner(fname, d, s, budget) for s in range(args.seeds)]
                except ImportError:
                    print(f"  {lib}: not installed (pip install -e .[bench])")
                    continue
                ok = [e for e in evals if math.isfinite(e)]
                med = statistics.median(evals)
                meds[lib] = med
                rows.append((fname, d, lib, med, len(ok), args.seeds, min(ok) if ok else math.inf,
                             max(ok) if ok else math.inf, time.perf_counter() - t))
                print(f"  {fname:10s} d={d:3d} {lib:12s}: median {med:>8} evals, {len(ok)}/{args.seeds} reached, "
                      f"{time.perf_counter() - t:.1f} s", flush=True)
    print()
    print("| function | d | library | median evals | reached | min | max | ratio to pycma |")
    print("|---|---|---|---|---|---|---|---|")
    ratios = []
    for fname, d, lib, med, n_ok, n, lo, hi, _ in rows:
        ref = next((r[3] for r in rows if r[0] == fname and r[1] == d and r[2] == "pycma"), math.nan)
        ratio = med / ref if ref and math.isfinite(ref) else math.nan
        if lib.startswith("evoprop cma"):
            ratios.append(ratio)
        print(f"| {fname} | {d} | {lib} | {med:g} | {n_ok}/{n} | {lo:g} | {hi:g} | {ratio:.2f} |")
    if args.factors:
        factor = [next(r[3] for r in rows if r[:3] == (fname, d, "evoprop cma cholesky"))
                  / next(r[3] for r in rows if r[:3] == (fname, d, "evoprop cma eigh"))
                  for fname in CASES for d in dims]
        print()
        print("| function | d | cholesky / eigh median evals |")
        print("|---|---|---|")
        for (fname, d), q in zip([(f, d) for f in CASES for d in dims], factor):
            print(f"| {fname} | {d} | {q:.3f} |")
        print(f"es_quality: cholesky_over_eigh={min(factor):.3f}..{max(factor):.3f}")
    ratios = [r for r in ratios if math.isfinite(r)]
    if ratios:
        print(f"es_quality: max_ratio_vs_pycma={max(ratios):.2f}")


if __name__ == "__main__":
    main()
