"""Time per generation of evolution strategies on the paper's MNIST 1-layer task (d = 7,850).

Every (library, variant, population) runs in its own subprocess with a wall-clock
cap and an address-space cap, so a peer that crashes, runs out of memory or is
too slow is reported as such instead of taking the benchmark down. A generation
is ask + fitness evaluation (softmax regression, cross-entropy on a fixed
256-image mini-batch) + tell; one untimed warm-up generation comes first, and
the timed generations are averaged (they include the lazily refreshed
factorizations at the libraries' own cadence).

    python benchmarks/es_speed.py            # populations 100, 1,000, 5,000; all variants and peers
    python benchmarks/es_speed.py --quick    # population 1,000: evoprop cma/sep, pycma, EvoTorch separable
    python benchmarks/es_speed.py --factors 100,300,1000   # cma's two factorizations, eigh vs Cholesky

``--factors`` times evoprop ``cma`` with ``method="eigh"`` against ``method="cholesky"`` at each
listed d (P = 100, float32, an axis-parallel ellipsoid, coefficients 1 to 1e3), in one process: after a warm-up past the
first factorization, blocks of generations alternate between the two methods, and the
medians over the blocks are reported with the machine load (``uptime``) before and after.
This is the measurement behind ``EIGH_MAX_DIM`` in ``evoprop/es/cov.py``.

Peers (``pip install -e .[bench]``): pycma (``cma``), ``cmaes`` (CMA, SepCMA),
EvoTorch (CMAES full and separable). The last line is
``es_speed: full_P1000_speedup=<best full peer s / evoprop cma s> sep_P1000_speedup=<...>``.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

SIGMA0 = 0.01
FULL = {"evoprop:cma", "evoprop:paper", "pycma:full", "cmaes:CMA", "evotorch:full"}
SEP = {"evoprop:sep", "pycma:sep", "cmaes:SepCMA", "evotorch:sep"}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ---------------------------------------------------------------------------
# worker: one (library, variant, popsize) in this process
# ---------------------------------------------------------------------------


def _make_runner(lib: str, variant: str, P: int, d: int, fit):
    """Return (step, eval_included_separately) where step() runs one generation and returns eval seconds."""
    import numpy as np
    import torch

    if lib == "evoprop":
        from evoprop.es import make_strategy

        es = make_strategy(variant, torch.zeros(d), SIGMA0, P, seed=0)
        state_mb = sum(v.numel() * v.element_size() for v in es.state_dict().values()
                       if isinstance(v, torch.Tensor)) / 2**20
        print(json.dumps({"event": "state", "state_mb": state_mb}), flush=True)

        def step():
            X = es.ask()
            t = time.perf_counter()
            f = fit(X)
            te = time.perf_counter() - t
            es.tell(X, f)
            return te

        # evoprop samples with the identity (no d x d product) until its first lazy
        # factorization; warm up past it so the timed generations are steady state
        return step, 1 + math.ceil(getattr(es, "_gap", 0.0))
    if lib == "pycma":
        import cma

        opts = {"popsize": P, "seed": 1, "verbose": -9, "CMA_diagonal": variant == "sep"}
        es = cma.CMAEvolutionStrategy(np.zeros(d), SIGMA0, opts)

        def step():
            X = es.ask()
            t = time.perf_counter()
            f = fit(torch.from_numpy(np.asarray(X, dtype=np.float32))).double().numpy()
            te = time.perf_counter() - t
            es.tell(X, f.tolist())
            return te

        return step, 1
    if lib == "cmaes":
        import cmaes

        cls = cmaes.CMA if variant == "CMA" else cmaes.SepCMA
        es = cls(mean=np.zeros(d), sigma=SIGMA0, population_size=P, seed=0)

        def step():
            X = np.stack([es.ask() for _ in range(P)])
            t = time.perf_counter()
            f = fit(torch.from_numpy(X.astype(np.float32))).double().numpy()
            te = time.perf_counter() - t
            es.tell(list(zip(X, f.tolist())))
            return te

        return step, 1
    if lib == "evotorch":
        from evotorch import Problem
        from evotorch.algorithms import CMAES

        spent = [0.0]

        def f_timed(X):
            t = time.perf_counter()
            v = fit(X)
            spent[0] += time.perf_counter() - t
            return v

        problem = Problem("min", f_timed, solution_length=d, initial_bounds=(-SIGMA0, SIGMA0),
                          vectorized=True, dtype=torch.float32, seed=0)
        searcher = CMAES(problem, stdev_init=SIGMA0, popsize=P, separable=variant == "sep",
                         center_init=torch.zeros(d))

        def step():
            spent[0] = 0.0
            searcher.step()
            return spent[0]

        return step, 1
    raise SystemExit(f"unknown library {lib}")


class WideLayerFitness:
    """Layer 1 of the paper's 10-layer CIFAR-gray net (1,024 -> 200, d = 204,800) on a 256-input batch.

    Timing stand-in only: inputs are fixed Gaussian noise and the fitness is the
    mean squared ReLU activation, so the cost is the real layer-1 product of P candidates.
    """

    def __init__(self) -> None:
        import torch

        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(256, 1024, generator=g)

    def __call__(self, X):
        import torch

        P = X.shape[0]
        h = torch.relu(torch.einsum("ni,pij->pnj", self.x, X.reshape(P, 1024, 200)))
        return (h * h).mean(dim=(1, 2))


def worker(lib: str, variant: str, P: int, gens: int, budget_s: float) -> None:
    import torch

    from _mnist_task import DIM as MNIST_DIM, MnistFitness

    if variant == "lmma-wide":
        fit, dim, variant = WideLayerFitness(), 204_800, "lmma"
    else:
        fit, dim = MnistFitness(), MNIST_DIM
    base_mb = _rss_mb()
    print(json.dumps({"event": "start", "base_mb": base_mb}), flush=True)
    t0 = time.perf_counter()
    step, warmup = _make_runner(lib, variant, P, dim, fit)
    print(json.dumps({"event": "built", "s": time.perf_counter() - t0, "rss_mb": _rss_mb()}), flush=True)
    times, evals = [], []
    start = time.perf_counter()
    for g in range(gens + warmup):  # the first `warmup` generations are not timed
        t = time.perf_counter()
        te = step()
        dt = time.perf_counter() - t
        print(json.dumps({"event": "gen", "g": g, "s": dt, "eval_s": te, "rss_mb": _rss_mb()}), flush=True)
        if g >= warmup:
            times.append(dt)
            evals.append(te)
        if g >= warmup and time.perf_counter() - start > budget_s:
            break
    print(json.dumps({"event": "done", "times": times, "evals": evals, "peak_mb": _rss_mb(), "base_mb": base_mb,
                      "torch_threads": torch.get_num_threads()}), flush=True)


# ---------------------------------------------------------------------------
# parent
# ---------------------------------------------------------------------------


def run_case(lib: str, variant: str, P: int, gens: int, cap_s: float, mem_gb: float) -> dict:
    budget = cap_s * 0.6
    cmd = [sys.executable, __file__, "--worker", lib, variant, str(P), str(gens), str(budget)]
    limit = int(mem_gb * 2**30)

    def limits():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    t = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=cap_s, preexec_fn=limits)
        out, err, rc, timed_out = proc.stdout, proc.stderr, proc.returncode, False
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        rc, timed_out = None, True
    wall = time.perf_counter() - t
    events = []
    for line in out.splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    res = {"lib": lib, "variant": variant, "P": P, "wall": wall}
    done = [e for e in events if e["event"] == "done"]
    if done and done[0]["times"]:
        e = done[0]
        res.update(status="ok", s=sum(e["times"]) / len(e["times"]), eval_s=sum(e["evals"]) / len(e["evals"]),
                   n=len(e["times"]), peak_mb=e["peak_mb"], base_mb=e["base_mb"], gen_s=e["times"])
        st = [x for x in events if x["event"] == "state"]
        if st:
            res["state_mb"] = st[-1]["state_mb"]
        return res
    gens = [e for e in events if e["event"] == "gen"]
    last = gens[-1] if gens else None
    if timed_out:
        what = f"over the {cap_s:.0f} s cap"
        if last is None:
            what += " before finishing generation 0" if any(e["event"] == "built" for e in events) else \
                " while building the strategy"
        else:
            what += f" after {len(gens)} generation(s), last {last['s']:.1f} s"
        res.update(status="timeout", why=what)
    else:
        tail = (err.strip().splitlines() or ["?"])[-1][:150]
        if "MemoryError" in err or "memory" in err.lower() or "alloc" in err.lower() or rc in (-9, 137):
            res.update(status="memory", why=f"out of memory (cap {mem_gb:g} GiB): {tail}")
        else:
            res.update(status="error", why=f"exit {rc}: {tail}")
    if gens and gens[-1]["g"] > 0:
        res["partial_s"] = gens[-1]["s"]
    return res


def gemm_rates() -> dict:
    import torch

    out = {}
    for dt in (torch.float32, torch.float64):
        a = torch.randn(1000, 7850, dtype=dt)
        b = torch.randn(7850, 7850, dtype=dt)
        a @ b
        t = time.perf_counter()
        reps = 2
        for _ in range(reps):
            a @ b
        el = (time.perf_counter() - t) / reps
        out[str(dt).split(".")[1]] = 2 * 1000 * 7850**2 / el / 1e9
    return out


def machine() -> str:
    from _machine import describe  # the line every benchmark prints

    return describe()


def factor_comparison(dims: list[int], P: int = 100, blocks: int = 7, block_gens: int = 8) -> None:
    """Seconds per generation of ``cma`` with either factorization, interleaved blocks, medians."""
    import os
    import statistics

    import torch

    from evoprop.es import make_strategy

    def load() -> str:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())

    print(f"# es_speed --factors on {machine()}; P = {P}, {blocks} blocks of {block_gens} generations per method")
    print(f"# load average (1, 5, 15 min) before: {load()}")
    rows = []
    for d in dims:
        c = 1e3 ** (torch.arange(d, dtype=torch.float32) / (d - 1))  # an ellipsoid: C has to learn something

        def fit(X):
            return (c * X**2).sum(1)

        es = {m: make_strategy("cma", torch.full((d,), 1.0), 0.3, P, seed=0, method=m) for m in ("eigh", "cholesky")}
        for e in es.values():  # warm up past the first factorization (identity until then)
            for _ in range(2 + math.ceil(e._gap)):
                X = e.ask()
                e.tell(X, fit(X))
        times: dict[str, list[float]] = {m: [] for m in es}
        for b in range(blocks):
            for m in (("eigh", "cholesky") if b % 2 == 0 else ("cholesky", "eigh")):
                e = es[m]
                t = time.perf_counter()
                for _ in range(block_gens):
                    X = e.ask()
                    e.tell(X, fit(X))
                times[m].append((time.perf_counter() - t) / block_gens)
        # the factorization alone, on the learned C of the eigh run
        C = es["eigh"]._C.to(torch.float64)
        fact = {}
        for m, fn in (("eigh", torch.linalg.eigh), ("cholesky", torch.linalg.cholesky_ex)):
            ts = []
            for _ in range(5):
                t = time.perf_counter()
                fn(C)
                ts.append(time.perf_counter() - t)
            fact[m] = statistics.median(ts)
        med = {m: statistics.median(v) for m, v in times.items()}
        rows.append((d, es["eigh"]._gap, med, fact, times))
        print(f"  d={d:5d}: eigh {med['eigh'] * 1e3:8.2f} ms/gen, cholesky {med['cholesky'] * 1e3:8.2f} ms/gen "
              f"({med['eigh'] / med['cholesky']:.2f}x); factorization alone eigh {fact['eigh'] * 1e3:.2f} ms, "
              f"cholesky {fact['cholesky'] * 1e3:.2f} ms", flush=True)
    print(f"# load average after: {load()}")
    print()
    print("| d | refresh every (gens) | eigh ms / gen | cholesky ms / gen | eigh / cholesky | eigh alone (ms) "
          "| Cholesky alone (ms) |")
    print("|---|---|---|---|---|---|---|")
    for d, gap, med, fact, _ in rows:
        print(f"| {d} | {gap:.2f} | {med['eigh'] * 1e3:.2f} | {med['cholesky'] * 1e3:.2f} | "
              f"{med['eigh'] / med['cholesky']:.2f} | {fact['eigh'] * 1e3:.2f} | {fact['cholesky'] * 1e3:.2f} |")
    print("es_speed factors: " + " ".join(f"d{d}_eigh_over_cholesky={med['eigh'] / med['cholesky']:.2f}"
                                         for d, _, med, _, _ in rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="population 1,000 only, 2 generations, 4 runs")
    ap.add_argument("--pops", default="100,1000,5000")
    ap.add_argument("--cap", type=float, default=300.0, help="wall-clock cap per run, seconds")
    ap.add_argument("--mem-gb", type=float, default=20.0, help="address-space cap per run, GiB")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--only", default="", help="comma-separated lib:variant to run, e.g. evoprop:cma,pycma:full")
    ap.add_argument("--factors", default="", metavar="D[,D...]",
                    help="instead: time cma's eigh against its Cholesky factor at these dimensions (P = 100)")
    args = ap.parse_args()
    if args.factors:
        factor_comparison([int(x) for x in args.factors.split(",")])
        return

    d = 7850
    print(f"# es_speed on {machine()}")
    rates = gemm_rates()
    print(f"# GEMM (1000x7850)@(7850x7850): float32 {rates['float32']:.1f} GFLOP/s, float64 {rates['float64']:.1f} GFLOP/s")
    if args.quick:
        pops = [1000]
        # pairs compared with each other run back to back (the machine may be shared)
        cases = [("evoprop", "sep"), ("evotorch", "sep"), ("evoprop", "cma"), ("pycma", "full")]
        gens_of = lambda lib, var, P: 2  # noqa: E731
    else:
        pops = [int(p) for p in args.pops.split(",")]
        cases = [("evoprop", "cma"), ("evoprop", "paper"), ("evoprop", "sep"), ("evoprop", "lmma"),
                 ("pycma", "full"), ("cmaes", "CMA"), ("evotorch", "full"),
                 ("pycma", "sep"), ("cmaes", "SepCMA"), ("evotorch", "sep")]

        def gens_of(lib, var, P):
            if f"{lib}:{var}" in FULL:
                return 16 if P <= 100 else 4  # covers the lazy eigen/Cholesky cadence (~15 gens at P=100)
            return 5

    runs = [(P, lib, var) for P in pops for lib, var in cases]
    if not args.quick:  # the low-rank variant at the paper's widest layer 1
        runs.append((800, "evoprop", "lmma-wide"))
    if args.only:
        keep = set(args.only.split(","))
        runs = [r for r in runs if f"{r[1]}:{r[2]}" in keep]
    results = []
    for P, lib, var in runs:
        if True:
            r = run_case(lib, var, P, 3 if var == "lmma-wide" else gens_of(lib, var, P), args.cap, args.mem_gb)
            results.append(r)
            if r["status"] == "ok":
                st = f", state {r['state_mb']:.0f} MB" if "state_mb" in r else ""
                print(f"  {lib:8s} {var:7s} P={P:5d}: {r['s']:8.3f} s/gen (eval {r['eval_s']:.3f} s, "
                      f"{r['n']} gens, peak RSS {r['peak_mb']:.0f} MB{st})", flush=True)
            else:
                print(f"  {lib:8s} {var:7s} P={P:5d}: {r['status']}: {r['why']}", flush=True)

    # table
    print()
    print("| library | variant | P | s / generation | of which fitness eval | matmul floor (s) | peak RSS (MB) "
          "| state (MB) | note |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        floor = ""
        if r["lib"] == "evoprop" and r["variant"] == "cma":
            # the floor: sampling 2Pd² + rank-μ 2μd² (μ = P/2) flops at the float32 GEMM rate
            floor = f"{(2 * r['P'] + r['P']) * d * d / (rates['float32'] * 1e9):.2f}"
        state = f"{r['state_mb']:.0f}" if "state_mb" in r else ""
        if r["status"] == "ok":
            gens = ", ".join(f"{x:.2f}" for x in r["gen_s"])
            print(f"| {r['lib']} | {r['variant']} | {r['P']} | {r['s']:.3f} | {r['eval_s']:.3f} | {floor} | "
                  f"{r['peak_mb']:.0f} | {state} | timed gens: {gens} s |")
        else:
            part = f" (a generation took {r['partial_s']:.1f} s)" if "partial_s" in r else ""
            print(f"| {r['lib']} | {r['variant']} | {r['P']} | {r['status']} | | {floor} | | | {r['why']}{part} |")
    print("# matmul floor: (2Pd² sampling + 2(P/2)d² rank-μ) flops at the measured float32 GEMM rate; "
          "evoprop cma skips the zero half of its triangular factor but also does the active (negative-weight) "
          "rank-μ over all P samples, and adds the lazily refreshed Cholesky (d³/3 flops every ~1-15 generations)")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "gemm": rates, "results": results}, indent=1))

    def speedup(ours: str, peers: set, P: int) -> str:
        mine = [r for r in results if f"{r['lib']}:{r['variant']}" == ours and r["P"] == P and r["status"] == "ok"]
        theirs = [r["s"] for r in results if f"{r['lib']}:{r['variant']}" in peers and r["P"] == P
                  and r["status"] == "ok"]
        if not mine or not theirs:
            return "nan"
        return f"{min(theirs) / mine[0]['s']:.2f}"

    full = speedup("evoprop:cma", FULL - {"evoprop:cma", "evoprop:paper"}, 1000)
    sep = speedup("evoprop:sep", SEP - {"evoprop:sep"}, 1000)
    print(f"es_speed: full_P1000_speedup={full} sep_P1000_speedup={sep}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _, _, lib, variant, P, gens, budget = sys.argv
        worker(lib, variant, int(P), int(gens), float(budget))
    else:
        main()
