"""Distributed population evaluation under torchrun: seconds and bytes per ES generation, by phase.

For each case and each world size W (default 1 and 2) this script starts itself under torchrun
(``python -m torch.distributed.run --standalone --nproc-per-node W``, gloo on the CPU, NCCL on CUDA)
and runs ES generations of the hybrid's search through the library's own path: a
``LayerSearch`` on the first weight layer of the network (the hybrid's default searched layer,
``--es-layers 0``), ``LayerSearch.step`` on a fresh random 256-image mini-batch of the training
split per generation (the hybrid's ``--es-batch-size 256``), with ``write="best"`` and the
``paper`` combination rule. Under torchrun ``LayerSearch`` shards the strategy
(``evoprop.train.sharded``: slices = W by default, each rank draws and evaluates its own; the P
losses are all-gathered, the update's per-slice sums all-gathered, the winner's row broadcast).

Cases (the paper's networks, width 200, float32 on this CPU):
  mnist10   MNIST 10-layer MLP, searched layer 784 -> 200 (d = 157,000), P = 1,000
  cifar10   CIFAR-10-gray 10-layer MLP, searched layer 1,024 -> 200 (d = 205,000), P = 800;
            CIFAR-10 here is the reconstruction from a JPEG copy in ../shared/datasets (its
            timing does not depend on the pixels)

Phases of one generation, timed with time.perf_counter on every rank (torch.cuda.synchronize
around each on CUDA), without changing library code: the benchmark process wraps, before the
search is built,
  draw         strategy.ask (the normals and the candidates of this rank's rows);
  evaluate     the PopulationEvaluator calls (this rank's rows, slice by slice);
  communicate  evoprop.distributed.all_gather_losses / all_gather_parts / broadcast_tensor,
               the module attributes the library calls (the Shard's gather and broadcast are
               these), labelled: losses (the P-loss all-gather), sums (the update's per-slice
               sums), winner (the generation's best row for the model), best (the best-ever row,
               broadcast inside tell when it improves), check (the state checksum, every
               EVOPROP_DIST_CHECK_EVERY = 10 generations). The time includes waiting for the
               slower rank, since that is what a rank spends there;
  update       strategy.tell minus the communication inside it; "of which moments" is sep's
               weighted_moments (the O(P/W * d) part of the update; the rest is O(d) and
               repeated on every rank);
  other        the rest of LayerSearch.step (ranking the P losses, writing the winner into the
               model, the state check's checksum, Python).
A phase's figure is the median over the timed generations of the mean over the ranks; the
generation's total is the median of the slowest rank's LayerSearch.step. Bytes moved per
generation per rank are counted from the tensors passed to the collectives: the size of each
all-gather's result (what every rank holds after it; ring all-gather: each rank receives
(W-1)/W of it) and of each broadcast tensor:
    4 P (losses) + 4 * S * 2 d (sums, S slices) + 4 d (winner)  [+ 4 d when the best-ever improves]
"Collectives alone" repeats the three collectives of a generation with the same sizes after a
barrier, so they show the link's cost without the wait for a slower rank.

Then a stated model of the time per generation on W GPUs (8 on one node; 4 nodes of 8), from
the W = 1 phases measured here:
    T(W) = (draw + evaluate + moments) / (k W) + (update - moments + other) / k + overhead + comm(W)
k is the assumed speed of one GPU relative to this CPU: the assumed GPU float32 rate
(--gpu-tflops) over the rate the W = 1 evaluation reached here (its FLOPs over its seconds), so
the evaluation takes its FLOPs at the GPU rate, and the same k divides the other phases (an
assumption: the draw and the update are bound by memory and the RNG, not by matmuls);
overhead (--overhead-ms) is an assumed fixed cost per generation (launches, Python).
comm(W) = one latency per collective + the bytes each GPU (and, across nodes, each node)
receives over the assumed link bandwidth (NCCL ring all-gather; a broadcast moves the row once).
A last column gives T(W) if the 2d sums were all-reduced instead of all-gathered per slice
(the library all-gathers them so that every rank adds them in slice order, bit for bit). What the
model ignores is printed with it.

Run: python benchmarks/distributed.py [--cases mnist10,cifar10] [--world-sizes 1,2] [--generations 20]
     python benchmarks/distributed.py --quick      # tiny smoke run: P = 16, 2 generations
     python benchmarks/distributed.py --report run.json --gpu-tflops 25   # re-print a --json file, other assumptions
"""

from __future__ import annotations

import os
import sys

# OpenMP's wait policy must be set before torch loads (evoprop/cli/threads.py: spinning threads on a
# shared machine): PASSIVE unless the user configured OpenMP; the torchrun children inherit it
if "torch" not in sys.modules and not any(k.startswith(("OMP_", "GOMP_", "KMP_")) for k in os.environ):
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import describe, matmul_gflops  # noqa: E402

CASES = {
    "mnist10": dict(dataset="mnist", depth=10, popsize=1000, label="MNIST 10-layer"),
    "cifar10": dict(dataset="cifar10-gray", depth=10, popsize=800,
                    label="CIFAR-10-gray 10-layer (reconstruction from a JPEG copy)"),
}
WIDTH = 200
PHASES = ("draw", "evaluate", "communicate", "update", "moments", "other", "total")
COMM_OPS = ("losses", "sums", "winner", "best", "check")

# The scaling model's scenarios: (name, ranks, GPUs per node, per-GPU intra-node GB/s (one direction),
# per-node inter-node GB/s (None: one node), per-collective latency in µs). Bandwidths and latencies
# come from the options; these are the defaults' meaning.
def scenarios(args) -> list[tuple[str, int, int, float, float | None, float]]:
    return [
        ("1 GPU", 1, 1, args.nvlink_gbps, None, 0.0),
        ("1 node x 8 GPUs, NVSwitch", 8, 8, args.nvlink_gbps, None, args.nvlink_latency_us),
        ("4 nodes x 8 GPUs, 1 x 200 Gb/s IB per node", 32, 8, args.nvlink_gbps, args.ib_gbps, args.ib_latency_us),
        ("4 nodes x 8 GPUs, 8 x 400 Gb/s IB per node", 32, 8, args.nvlink_gbps, args.ib_fast_gbps, args.ib_latency_us),
        ("4 nodes x 1 GPU, 1 x 200 Gb/s IB per node", 4, 1, args.nvlink_gbps, args.ib_gbps, args.ib_latency_us),
    ]


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Seconds and bytes per ES generation of the hybrid's search under torchrun (gloo on the CPU), "
                    "split into draw / evaluate / communicate / update, for world sizes 1 and 2; then a stated "
                    "model of the time per generation on 8 GPUs of one node and on 4 nodes.",
        epilog="Phases, the bytes formula and the model's assumptions are explained in the module docstring "
               "(benchmarks/distributed.py) and in BENCHMARKS.md, 'Distributed population evaluation'.")
    p.add_argument("--cases", default=",".join(CASES),
                   help="comma-separated cases: " + ", ".join(f"{k} ({v['label']}, P = {v['popsize']:,})"
                                                              for k, v in CASES.items()) + " (default: both)")
    p.add_argument("--world-sizes", default="1,2",
                   help="comma-separated numbers of processes, each one torchrun --nproc-per-node W (default 1,2)")
    p.add_argument("--strategy", default="sep",
                   help="the ES strategy (default sep, the one that shards over processes today; others refuse W > 1)")
    p.add_argument("--popsize", type=int, default=None,
                   help="population size for every case (default: each case's own, 1,000 / 800)")
    p.add_argument("--slices", type=int, default=None,
                   help="the strategy's slices option (default: not set, so 1 at W = 1 and W under torchrun, "
                        "as a plain run and `torchrun -m evoprop train` would)")
    p.add_argument("--generations", type=int, default=20, help="timed generations per run (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed generations before them (default 3)")
    p.add_argument("--rounds", type=int, default=1,
                   help="run every (case, W) this many times, taking turns, and pool the generations (default 1)")
    p.add_argument("--es-batch-size", type=int, default=256,
                   help="images per generation's evaluation, a fresh random mini-batch each time (default 256, "
                        "the hybrid's --es-batch-size)")
    p.add_argument("--alone-repeats", type=int, default=10,
                   help="repetitions of the 'collectives alone' timing after the generations (default 10)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads per rank (default: this machine's cores // W, at least 1; also sets "
                        "OMP_NUM_THREADS for the ranks)")
    p.add_argument("--precision", default="auto",
                   help="the evaluator's precision: auto (float32 on a CPU without native bfloat16), float32 "
                        "or bfloat16 (default auto)")
    p.add_argument("--device", default="cpu",
                   help="cpu (gloo) or cuda (NCCL, one GPU per rank) (default cpu)")
    default_data = os.environ.get("EVOPROP_DATA") or str(HERE.parents[1] / "shared" / "datasets")
    p.add_argument("--data-dir", default=default_data,
                   help="folder holding mnist/ and cifar10/ (default $EVOPROP_DATA, else ../shared/datasets)")
    p.add_argument("--limit-train", type=int, default=None,
                   help="keep the first N training images (the ES batches are drawn from them; default all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the network, the strategy and the batches (default 0)")
    p.add_argument("--quick", action="store_true",
                   help="tiny smoke run: P = 16, 1 warm-up and 2 timed generations, 2,000 training images, "
                        "3 collective repeats")
    p.add_argument("--json", default=None, help="also write the measurements to this JSON file")
    p.add_argument("--report", default=None, metavar="JSON",
                   help="measure nothing: print the tables and the model from a file written by --json (e.g. with "
                        "other model assumptions)")
    p.add_argument("--model-json", default=None, help="write the model's rows to this JSON file")
    model = p.add_argument_group("the scaling model (assumptions, not measurements)")
    model.add_argument("--gpu-tflops", type=float, default=50.0,
                       help="assumed float32 rate one GPU reaches on these layers, TFLOP/s (default 50: about 3/4 of "
                            "an H100/H200's 67 TFLOP/s float32 peak without tensor cores; torch does not use TF32 for "
                            "float32 matmuls by default). k = this / the CPU's measured rate")
    model.add_argument("--nvlink-gbps", type=float, default=400.0,
                       help="assumed NVLink/NVSwitch bandwidth per GPU, one direction, GB/s (default 400: NVLink 4 "
                            "is 450 GB/s per direction)")
    model.add_argument("--nvlink-latency-us", type=float, default=10.0,
                       help="assumed latency of one small NCCL collective within a node, µs (default 10)")
    model.add_argument("--ib-gbps", type=float, default=25.0,
                       help="assumed network bandwidth per node, one direction, GB/s (default 25: one 200 Gb/s "
                            "HDR InfiniBand NIC)")
    model.add_argument("--ib-fast-gbps", type=float, default=400.0,
                       help="the same for a DGX-class node with 8 x 400 Gb/s NICs, GB/s (default 400)")
    model.add_argument("--ib-latency-us", type=float, default=25.0,
                       help="assumed latency of one small NCCL collective across nodes, µs (default 25; the "
                            "wire's own is 1-2 µs, NCCL's ring/tree steps add to it)")
    model.add_argument("--overhead-ms", type=float, default=1.0,
                       help="assumed fixed cost of a generation on a GPU that neither W nor k shrinks: kernel "
                            "launches (a few hundred at a few µs), Python, the losses' trip to the host, ms (default 1)")
    internal = p.add_argument_group("internal (set by the script for its torchrun children)")
    internal.add_argument("--worker", action="store_true", help="run as one rank of a torchrun job")
    internal.add_argument("--case", default=None, help="the case this rank runs")
    internal.add_argument("--out-dir", default=None, help="where each rank writes its figures (rank-R.json)")
    args = p.parse_args(argv)
    if args.quick:
        args.popsize, args.generations, args.warmup = args.popsize or 16, 2, 1
        args.limit_train = args.limit_train or 2000
        args.alone_repeats = 3
    return args


# -- one rank ---------------------------------------------------------------------------------------

class Clock:
    """Seconds per named region of one generation (regions nest: the stack says where a collective runs)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.stack: list[str] = []
        self.label: str | None = None
        self.reset()

    def reset(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.bytes: dict[str, int] = defaultdict(int)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def region(self, name: str):
        self.sync()
        start = time.perf_counter()
        self.stack.append(name)
        try:
            yield
        finally:
            self.sync()
            self.stack.pop()
            self.seconds[name] += time.perf_counter() - start


def instrument(clock: Clock):
    """Wrap the collectives and sep's weighted sums (module attributes the library looks up at call
    time) with timers and byte counters; returns the original collectives."""
    from evoprop import distributed as dist
    import evoprop.es.sep as sep

    orig = {"parts": dist.all_gather_parts, "losses": dist.all_gather_losses,
            "broadcast": dist.broadcast_tensor, "moments": sep.weighted_moments}

    def all_gather_parts(local, counts=None):
        if not dist.current().distributed:
            return orig["parts"](local, counts)
        label = clock.label or ("sums" if "update" in clock.stack else "check")
        world = dist.current().world_size
        rows = max(counts) if counts else local.shape[0]
        clock.bytes[label] += world * rows * math.prod(local.shape[1:]) * local.element_size()
        with clock.region("comm:" + label):
            return orig["parts"](local, counts)

    def all_gather_losses(local, counts=None):
        clock.label = "losses"
        try:
            return orig["losses"](local, counts)
        finally:
            clock.label = None

    def broadcast_tensor(t, src):
        if not dist.current().distributed:
            return orig["broadcast"](t, src)
        label = "best" if "update" in clock.stack else "winner"
        clock.bytes[label] += t.numel() * t.element_size()
        with clock.region("comm:" + label):
            return orig["broadcast"](t, src)

    def weighted_moments(*a, **k):
        with clock.region("moments"):
            return orig["moments"](*a, **k)

    dist.all_gather_parts, dist.all_gather_losses = all_gather_parts, all_gather_losses
    dist.broadcast_tensor, sep.weighted_moments = broadcast_tensor, weighted_moments
    return orig


class TimedEvaluator:
    """The search's PopulationEvaluator with its calls timed (everything else passes through)."""

    def __init__(self, inner, clock: Clock):
        self.__dict__["_inner"], self.__dict__["_clock"] = inner, clock

    def __call__(self, *a, **k):
        with self._clock.region("evaluate"):
            return self._inner(*a, **k)

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def __setattr__(self, name, value):
        setattr(self._inner, name, value)


def timed_method(obj, name: str, clock: Clock, region: str) -> None:
    fn = getattr(obj, name)

    def wrapper(*a, **k):
        with clock.region(region):
            return fn(*a, **k)

    setattr(obj, name, wrapper)  # an instance attribute: found before the class's method


def worker(args) -> None:
    from evoprop import distributed as dist
    from evoprop.data import load_dataset
    from evoprop.models import build_mlp
    from evoprop.train.layer_search import LayerSearch

    device = torch.device(args.device)
    ctx = dist.init(device)
    if device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
    if args.threads:
        torch.set_num_threads(args.threads)
    case = CASES[args.case]
    popsize = args.popsize or case["popsize"]
    data = load_dataset(case["dataset"], data_dir=args.data_dir, val_fraction=0, limit_test=1,
                        limit_train=args.limit_train, device=device)
    torch.manual_seed(args.seed)
    model = build_mlp(data.input_shape, data.num_classes, depth=case["depth"], width=WIDTH).to(device)

    clock = Clock(device)
    orig = instrument(clock)  # before the search is built: its Shard takes the collectives then
    options = {"slices": args.slices} if args.slices else {}
    search = LayerSearch(model, layers=[0], strategy=args.strategy, popsize=popsize, seed=args.seed,
                         precision=args.precision, **options)
    strategy = search.strategy
    search.evaluator = TimedEvaluator(search.evaluator, clock)
    timed_method(strategy, "ask", clock, "draw")
    timed_method(strategy, "tell", clock, "update")

    batches = torch.Generator().manual_seed(args.seed + 1)  # the same batches on every rank
    n_train = len(data.train)
    generations = []
    for g in range(args.warmup + args.generations):
        idx = torch.randperm(n_train, generator=batches)[:args.es_batch_size].to(data.train.y.device)
        x, y = data.train.x[idx], data.train.y[idx]
        clock.reset()
        with clock.region("total"):
            search.step(x, y)
        if g < args.warmup:
            continue
        s = dict(clock.seconds)
        comm = {op: s.get("comm:" + op, 0.0) for op in COMM_OPS}
        in_update = comm["sums"] + comm["best"]
        row = {"draw": s.get("draw", 0.0), "evaluate": s.get("evaluate", 0.0),
               "communicate": sum(comm.values()), "update": s.get("update", 0.0) - in_update,
               "moments": s.get("moments", 0.0), "total": s["total"]}
        row["other"] = row["total"] - row["draw"] - row["evaluate"] - row["communicate"] - row["update"]
        row.update({"comm:" + op: v for op, v in comm.items()})
        row.update({"bytes:" + op: clock.bytes.get(op, 0) for op in COMM_OPS})
        generations.append(row)

    # the same three collectives alone, after a barrier, with a generation's sizes
    alone = {}
    if ctx.distributed:
        local_p = strategy.rows_per_process()
        parts = torch.zeros((len(strategy.slice_rows()), 2, strategy.dim), device=device)
        losses = torch.zeros(local_p[ctx.rank], device=device)
        row_t = torch.zeros(strategy.dim, device=device)
        calls = {"losses": lambda: orig["losses"](losses, local_p), "sums": lambda: orig["parts"](parts),
                 "winner": lambda: orig["broadcast"](row_t, 0)}
        for op, fn in calls.items():
            times = []
            for _ in range(args.alone_repeats + 1):
                dist.barrier()
                clock.sync()
                start = time.perf_counter()
                fn()
                clock.sync()
                times.append(time.perf_counter() - start)
            alone[op] = statistics.median(times[1:])

    out = {"rank": ctx.rank, "world": ctx.world_size, "case": args.case, "popsize": popsize,
           "dim": strategy.dim, "slices": strategy.slices, "local_popsize": strategy.local_popsize,
           "threads": torch.get_num_threads(), "strategy": search.strategy_name,
           "precision": getattr(search.evaluator, "precision", args.precision),
           "note": data.source_note, "generations": generations, "alone": alone,
           "eval_gflop": 2.0 * args.es_batch_size * popsize
           * sum(layer.in_features * layer.out_features for layer in model.layers) / 1e9}
    Path(args.out_dir, f"rank-{ctx.rank}.json").write_text(json.dumps(out))
    dist.shutdown()


# -- the launcher -----------------------------------------------------------------------------------

def launch(args, case: str, world: int, cores: int, tmp: Path, rnd: int = 0) -> list[dict]:
    out_dir = tmp / f"{case}-w{world}-r{rnd}"
    out_dir.mkdir()
    threads = args.threads or max(1, cores // world)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={world}",
           str(Path(__file__).resolve()), "--worker", "--case", case, "--out-dir", str(out_dir),
           "--threads", str(threads), "--strategy", args.strategy, "--generations", str(args.generations),
           "--warmup", str(args.warmup), "--es-batch-size", str(args.es_batch_size), "--precision", args.precision,
           "--device", args.device, "--data-dir", args.data_dir, "--seed", str(args.seed),
           "--alone-repeats", str(args.alone_repeats)]
    for opt, value in (("--popsize", args.popsize), ("--slices", args.slices), ("--limit-train", args.limit_train)):
        if value:
            cmd += [opt, str(value)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    src = HERE.parent / "src"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"distributed.py: torchrun W={world} {case} failed (exit {done.returncode}):\n"
                         f"{done.stderr[-4000:]}")
    return [json.loads((out_dir / f"rank-{r}.json").read_text()) for r in range(world)]


def summarise(ranks: list[dict]) -> dict:
    """Per phase: median over the generations of the mean over ranks; total: of the slowest rank."""
    n = len(ranks[0]["generations"])
    keys = [k for k in ranks[0]["generations"][0]]
    out = {}
    for k in keys:
        per_gen = [[r["generations"][g][k] for r in ranks] for g in range(n)]
        agg = max if k == "total" else (lambda v: sum(v) / len(v))
        out[k] = statistics.median(agg(v) for v in per_gen)
    for op in COMM_OPS:  # bytes: the mean per generation (best and check do not happen every generation)
        out["bytes:" + op] = statistics.mean(ranks[0]["generations"][g]["bytes:" + op] for g in range(n))
        out["comm_mean:" + op] = statistics.mean(
            sum(r["generations"][g]["comm:" + op] for r in ranks) / len(ranks) for g in range(n))
    out["alone"] = {op: max(r["alone"][op] for r in ranks) for op in ranks[0]["alone"]}
    return out


def fmt_bytes(b: float) -> str:
    for unit, scale in (("MB", 1e6), ("kB", 1e3)):
        if b >= scale:
            return f"{b / scale:.3g} {unit}"
    return f"{b:.0f} B"


def comm_model(popsize: int, dim: int, world: int, per_node: int, nv_gbps: float, node_gbps: float | None,
               latency_us: float, sums: str = "all-gather") -> tuple[float, float]:
    """(seconds, bytes each GPU receives) of one generation's three collectives, slices = world.

    ``sums="all-reduce"``: the update's 2d sums all-reduced instead of their S per-slice copies
    all-gathered (what the library does not do: the order of the additions would be the backend's,
    so the ranks' states would no longer equal a single process's bit for bit)."""
    if world == 1:
        return 0.0, 0.0
    nodes = world // per_node

    def gather(n: float) -> tuple[float, float]:
        gpu_in = (world - 1) / world * n  # ring all-gather: every GPU receives the others' parts
        t = gpu_in / (nv_gbps * 1e9)
        if node_gbps is not None:  # across nodes: each node receives the parts of the other nodes' GPUs
            t = max(t, (world - per_node) / world * n / (node_gbps * 1e9))
        return latency_us * 1e-6 + t, gpu_in

    def reduce(n: float) -> tuple[float, float]:
        gpu_in = 2 * (world - 1) / world * n  # ring all-reduce: reduce-scatter + all-gather
        t = gpu_in / (nv_gbps * 1e9)
        if node_gbps is not None:  # hierarchical: each node exchanges 2 (nodes-1)/nodes of n across
            t = max(t, 2 * (nodes - 1) / nodes * n / (node_gbps * 1e9))
        return 2 * latency_us * 1e-6 + t, gpu_in

    parts = [gather(4.0 * popsize),
             gather(4.0 * world * 2 * dim) if sums == "all-gather" else reduce(4.0 * 2 * dim)]
    link = nv_gbps if node_gbps is None else min(nv_gbps, node_gbps)
    parts.append((latency_us * 1e-6 + 4.0 * dim / (link * 1e9), 4.0 * dim))  # the winner's row, sent once
    return sum(t for t, _ in parts), sum(b for _, b in parts)


def main() -> None:
    args = parse_args()
    if args.worker:
        worker(args)
        return
    if args.report:
        results = json.loads(Path(args.report).read_text())
        print(results["machine"])
        print(f"(the measurements of {args.report}: float32 matmul rate at its start {results['matmul_gflops']:.1f} "
              f"GFLOP/s)")
        report(results, args)
        return
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    worlds = [int(w) for w in args.world_sizes.split(",")]
    bad = [c for c in cases if c not in CASES]
    if bad:
        raise SystemExit(f"distributed.py: unknown case(s) {', '.join(bad)}; valid: {', '.join(CASES)}")
    cores = os.cpu_count() or 1
    rate = matmul_gflops(device=args.device)
    load0 = os.getloadavg()
    print(describe())
    print(f"float32 matmul rate (4096^3, median of 5) {rate:.1f} GFLOP/s; load average at start "
          f"{load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}")
    print(f"strategy {args.strategy}, searched layer 0 (the hybrid's default), ES batch {args.es_batch_size}, "
          f"{args.warmup} warm-up + {args.generations} timed generations per run, {args.rounds} round(s), "
          f"device {args.device}")
    results: dict = {"machine": describe(), "matmul_gflops": rate, "load_start": load0, "cases": {},
                     "es_batch_size": args.es_batch_size}
    with tempfile.TemporaryDirectory(prefix="evoprop-dist-bench-") as tmp:
        runs: dict = defaultdict(list)  # (case, world) -> one entry per round
        for rnd in range(args.rounds):  # the runs take turns, so a change of load hits all of them
            for case in cases:
                for world in worlds:
                    # this host's speed drifts: re-measured before every run (2048^3, median of 5)
                    before = matmul_gflops(2048, 2048, 2048, device=args.device)
                    t0 = time.time()
                    ranks = launch(args, case, world, cores, Path(tmp), rnd)
                    runs[case, world].append(dict(ranks=ranks, rate=before, load=os.getloadavg(),
                                                  wall_s=time.time() - t0))
        for case in cases:
            results["cases"][case] = {}
            for world in worlds:
                rounds = runs[case, world]
                merged = [dict(rounds[0]["ranks"][r],
                               generations=[g for x in rounds for g in x["ranks"][r]["generations"]],
                               alone={op: statistics.median(x["ranks"][r]["alone"][op] for x in rounds)
                                      for op in rounds[0]["ranks"][r]["alone"]})
                          for r in range(world)]
                summary = summarise(merged)
                info = {k: merged[0][k] for k in ("popsize", "dim", "slices", "local_popsize", "threads",
                                                  "strategy", "precision", "note", "eval_gflop")}
                summary.update(info, load=[x["load"][0] for x in rounds], wall_s=sum(x["wall_s"] for x in rounds),
                               matmul_gflops=statistics.median(x["rate"] for x in rounds),
                               rates=[x["rate"] for x in rounds])
                results["cases"][case][world] = summary
    results["load_end"] = os.getloadavg()
    if args.json:  # the measurements; --report re-prints them (and the model, with other assumptions)
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    report(results, args)


def eval_gflop(s: dict, case: str, batch: int) -> float:
    """One generation's evaluation FLOPs: 2 * B * P * the multiply-adds of every layer (from the first, searched one)."""
    if s.get("eval_gflop"):
        return s["eval_gflop"]
    inputs = (s["dim"] - WIDTH) // WIDTH  # the searched layer: inputs * WIDTH weights + WIDTH biases
    macs = inputs * WIDTH + (CASES[case]["depth"] - 2) * WIDTH * WIDTH + WIDTH * 10
    return 2.0 * batch * s["popsize"] * macs / 1e9


def report(results: dict, args) -> None:
    """Print the measured tables and the model (from a fresh measurement or a --json file)."""
    # JSON turns the world sizes into strings
    results["cases"] = {c: {int(w): s for w, s in by.items()} for c, by in results["cases"].items()}
    load0, load1 = results["load_start"], results["load_end"]
    for case, by_world in results["cases"].items():
        first = next(iter(by_world.values()))
        print(f"\n== {CASES[case]['label']}: P = {first['popsize']}, d = {first['dim']:,}, strategy "
              f"{first['strategy']}" + (f"  [{first['note']}]" if first["note"] else ""))
        print("seconds per generation, medians (phases: mean over ranks; total: slowest rank)")
        head = f"{'phase':<22}" + "".join(f"{f'W={w}':>10}" for w in by_world)
        base = by_world.get(1)
        if base is not None:
            head += "".join(f"{f'W={w}/W=1':>10}" for w in by_world if w != 1)
        print(head)
        for ph in PHASES:
            name = "  of which moments" if ph == "moments" else ph
            line = f"{name:<22}" + "".join(f"{s[ph]:>10.4f}" for s in by_world.values())
            if base is not None:
                line += "".join(f"{s[ph] / base[ph]:>10.2f}" if base[ph] > 0 else f"{'-':>10}"
                                for w, s in by_world.items() if w != 1)
            print(line)
        for w, s in by_world.items():
            if "rates" not in s:  # a file from before --rounds: one run, the load average as getloadavg() gave it
                s["rates"], s["load"] = [s["matmul_gflops"]], [s["load"][0]]
            print(f"W={w}: slices {s['slices']}, {s['local_popsize']} rows and {s['threads']} thread(s) per rank, "
                  f"precision {s['precision']}, matmul rate (2048^3) before each run "
                  f"{' / '.join(f'{r:.1f}' for r in s['rates'])} GFLOP/s, load average after each "
                  f"{' / '.join(f'{x:.2f}' for x in s['load'])}, {s['wall_s']:.0f} s wall")
            if w == 1:
                continue
            d, p, S = s["dim"], s["popsize"], s["slices"]
            per_op = ", ".join(f"{op} {fmt_bytes(s['bytes:' + op])} in {s['comm_mean:' + op] * 1e3:.2f} ms"
                               for op in COMM_OPS if s["bytes:" + op])
            total = sum(s["bytes:" + op] for op in COMM_OPS)
            formula = 4 * p + 4 * S * 2 * d + 4 * d
            print(f"  bytes per generation per rank (mean): {fmt_bytes(total)} = {per_op}; formula 4P + 8Sd + 4d = "
                  f"{fmt_bytes(formula)}")
            alone = s["alone"]
            if alone:
                rate_txt = ""
                if alone.get("sums"):
                    got = (w - 1) / w * 8 * S * d / alone["sums"] / 1e9
                    rate_txt = f" (sums all-gather: {got:.2f} GB/s received per rank)"
                print("  collectives alone (after a barrier; median, slowest rank): " + ", ".join(
                    f"{op} {alone[op] * 1e3:.2f} ms" for op in alone) + rate_txt)

    # the model
    print("\n== A model of the time per generation on GPUs (from the W=1 phases above; assumptions, not measurements)")
    print(f"k = assumed GPU float32 rate {args.gpu_tflops:g} TFLOP/s / the rate the W=1 evaluation reached here (its FLOPs "
          "over its median seconds): the evaluation then takes FLOPs / the GPU rate, and every other measured compute "
          "phase is divided by the same k")
    print("T(W) = (draw + evaluate + moments) / (k W) + (update - moments + other) / k + overhead + comm(W); "
          "comm(W) = 3 latencies + ring all-gather bytes (4P losses, 4*2dW sums) and the 4d winner row over the link")
    print(f"links: NVSwitch {args.nvlink_gbps:g} GB/s per GPU, {args.nvlink_latency_us:g} µs per collective; "
          f"across nodes {args.ib_gbps:g} GB/s (1 x 200 Gb/s) or {args.ib_fast_gbps:g} GB/s (8 x 400 Gb/s) per node, "
          f"{args.ib_latency_us:g} µs per collective")
    model_out = {}
    for case, by_world in results["cases"].items():
        base = by_world.get(1)
        if base is None:
            print(f"{case}: no W=1 run, no model")
            continue
        flops = eval_gflop(base, case, results.get("es_batch_size", args.es_batch_size))
        achieved = flops / base["evaluate"]
        k = args.gpu_tflops * 1e3 / achieved
        scaled = (base["draw"] + base["evaluate"] + base["moments"]) / k
        fixed = (base["update"] - base["moments"] + base["other"]) / k + args.overhead_ms * 1e-3
        print(f"\n{CASES[case]['label']} (P = {base['popsize']}, d = {base['dim']:,}; evaluation {flops:.1f} GFLOP in "
              f"{base['evaluate']:.3f} s = {achieved:.1f} GFLOP/s, the matmul rate beside it {base['matmul_gflops']:.1f}; "
              f"k = {k:.0f}): one GPU would take "
              f"{(scaled + fixed) * 1e3:.2f} ms ({scaled * 1e3:.2f} ms that divides by W, {fixed * 1e3:.2f} ms that does not, "
              f"{args.overhead_ms:g} ms of it the assumed fixed overhead)")
        print(f"{'scenario':<46} {'W':>3} {'compute ms':>11} {'comm ms':>8} {'T(W) ms':>8} {'speedup':>8} "
              f"{'comm share':>10} {'MB in/GPU':>10} {'T if sums all-reduced':>22}")
        t1 = scaled + fixed
        rows = []
        for name, world, per_node, nv, node, lat in scenarios(args):
            comm, received = comm_model(base["popsize"], base["dim"], world, per_node, nv, node, lat)
            comm_r, _ = comm_model(base["popsize"], base["dim"], world, per_node, nv, node, lat, sums="all-reduce")
            compute = scaled / world + fixed
            t, t_r = compute + comm, compute + comm_r
            rows.append(dict(scenario=name, world=world, compute_s=compute, comm_s=comm, total_s=t,
                             speedup=t1 / t, received_bytes=received, total_if_allreduce_s=t_r))
            print(f"{name:<46} {world:>3} {compute * 1e3:>11.3f} {comm * 1e3:>8.3f} {t * 1e3:>8.3f} {t1 / t:>7.1f}x "
                  f"{comm / t:>9.0%} {received / 1e6:>10.2f} {f'{t_r * 1e3:.3f} ms ({t1 / t_r:.1f}x)':>22}")
        model_out[case] = {"k": k, "scaled_s": scaled, "fixed_s": fixed, "rows": rows}
    results["model"] = model_out
    if args.model_json:
        Path(args.model_json).write_text(json.dumps(model_out, indent=1))
    print("\nThe model ignores: the gradient part of the hybrid (every rank takes the same steps: no speed-up); "
          "kernel launches and Python beyond the assumed --overhead-ms; "
          "that a phase bound by memory or the RNG (draw, update) does not speed up by the matmul ratio k; "
          "that a GPU holding P/W candidates (31 of 1,000 at W = 32) runs below the rate of one holding all P; "
          "the losses' trip to the host in tell(); the occasional best-ever broadcast and the state check every "
          "10 generations; any overlap of communication with compute (the code has none); stragglers and jitter "
          "(the in-generation 'communicate' above includes waiting for the slower rank); NCCL's protocol "
          "choices for small messages and contention on the switch.")
    print(f"\nload average at start {load0[0]:.2f}, at end {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")
    last = []
    for case, by_world in results["cases"].items():
        for w, s in by_world.items():
            last.append(f"{case}_W{w}_s={s['total']:.3f}")
        if 1 in by_world and 2 in by_world:
            last.append(f"{case}_W2_over_W1={by_world[2]['total'] / by_world[1]['total']:.2f}")
    print("distributed: " + " ".join(last))


if __name__ == "__main__":
    main()
