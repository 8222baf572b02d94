"""Seconds per training epoch under each OpenMP thread setting, on the machine as it is and beside a busy core.

Why: PyTorch's CPU build runs its intra-op work on an OpenMP team (GNU libgomp), whose threads
spin while they wait for each other (OMP_WAIT_POLICY=ACTIVE behaviour, libgomp's default spin
count). When another process holds a core, a spinning thread burns the time slice its partner
needs, and every parallel region waits for a descheduled thread: an epoch becomes many times
slower. Each setting below is measured in its own subprocess, because libgomp reads its
environment once, when it is loaded (at ``import torch``):

- ``default``: torch's defaults (one thread per core, libgomp's spin-wait);
- ``threads1``: ``OMP_NUM_THREADS=1`` (no team at all);
- ``passive``: ``OMP_WAIT_POLICY=PASSIVE`` (the team sleeps on a futex instead of spinning);

on two networks: MNIST softmax regression (depth 1, SGD lr 0.01, batch 256) and the 10-layer MLP
(width 200, Adam lr 0.001, batch 64), paper split, 10 % validation (44,550 training images), the
settings of ``benchmarks/train_speed.py``. A child trains ``--epochs`` epochs with
``evoprop.train.Trainer`` and reports the median training seconds of the epochs after the first
(the first pays one-off allocation costs), so evaluation is not included. With ``--rounds R`` the
settings take turns R times and the median over every timed epoch is reported.

Two conditions: ``as-is`` (whatever else runs on the machine now; the load average is printed)
and ``busy-core`` (the same, plus one competing process spinning in a Python loop for the whole
measurement). Every OMP_*/GOMP_*/KMP_* variable of the calling shell is removed from the
children's environment, so ``default`` really is the default.

Run: python benchmarks/threads.py [--epochs 3] [--rounds 1] [--conditions as-is,busy-core] [--limit-train N] [--data-dir DIR]
The last line is
    threads: <condition>/<net>/<setting>=<median s per epoch> ...
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

NETS = {
    "depth1": dict(depth=1, optimizer="sgd", lr=0.01, batch_size=256),
    "depth10": dict(depth=10, optimizer="adam", lr=0.001, batch_size=64),
}
SETTINGS = {
    "default": {},
    "threads1": {"OMP_NUM_THREADS": "1"},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
}
CONDITIONS = ("as-is", "busy-core")
#: Environment variables that configure an OpenMP runtime (libgomp, Intel's libiomp, LLVM's libomp).
OPENMP_PREFIXES = ("OMP_", "GOMP_", "KMP_")


def child(net: str, epochs: int, data_dir: str, limit_train: int | None) -> None:
    """Train ``net`` for ``epochs`` epochs in this process; print one JSON line of results."""
    import torch

    from evoprop.data import load_dataset
    from evoprop.models import build_mlp
    from evoprop.optim import make_optimizer
    from evoprop.train import Trainer

    s = NETS[net]
    data = load_dataset("mnist", data_dir=data_dir, val_fraction=0.1, limit_train=limit_train, limit_test=500)
    torch.manual_seed(0)
    model = build_mlp(data.input_shape, 10, depth=s["depth"], width=200)
    trainer = Trainer(model, make_optimizer(s["optimizer"], model.parameters(), lr=s["lr"]), data,
                      batch_size=s["batch_size"])
    trainer.fit(epochs)
    seconds = [h["train_seconds"] for h in trainer.history[1:]]
    print(json.dumps({"seconds": statistics.median(seconds), "all": seconds, "threads": torch.get_num_threads()}))


def child_env(setting: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(OPENMP_PREFIXES)}
    env.update(SETTINGS[setting])
    return env


def measure(net: str, setting: str, epochs: int, data_dir: str, limit_train: int | None) -> dict:
    cmd = [sys.executable, __file__, "--child", net, "--epochs", str(epochs), "--data-dir", data_dir]
    cmd += ["--limit-train", str(limit_train)] if limit_train else []
    done = subprocess.run(cmd, env=child_env(setting), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"child {net}/{setting} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="epochs per child; the first is not timed")
    parser.add_argument("--conditions", default=",".join(CONDITIONS), help="as-is, busy-core or both")
    parser.add_argument("--nets", default=",".join(NETS))
    parser.add_argument("--rounds", type=int, default=1, help="times each net and setting is measured, in turns")
    parser.add_argument("--limit-train", type=int, default=None,
                        help="train on the first N images only (an epoch of all 44,550 takes minutes on a loaded machine)")
    parser.add_argument("--child", choices=sorted(NETS), help=argparse.SUPPRESS)
    default_data = os.environ.get("EVOPROP_DATA") or Path(__file__).resolve().parents[2] / "shared" / "datasets"
    parser.add_argument("--data-dir", default=str(default_data))
    args = parser.parse_args()
    if args.child:
        child(args.child, args.epochs, args.data_dir, args.limit_train)
        return
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first epoch is not timed)")

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _machine import describe

    print(describe(), "(this process; children get their own thread settings)")
    print(f"training images per epoch: {args.limit_train or 'all (44,550)'}; {args.epochs} epochs per child, "
          "the first not timed")
    results = {}
    for condition in args.conditions.split(","):
        if condition not in CONDITIONS:
            parser.error(f"unknown condition {condition!r}; choose from {', '.join(CONDITIONS)}")
        hog = None
        if condition == "busy-core":
            hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            print(f"\n{condition}: {load()} at the start")
            print(f"{'round':<5} {'net':<8} {'setting':<9} {'threads':>7} {'s/epoch':>9}   epochs timed")
            seen: dict[str, list[float]] = {}
            for round_ in range(1, args.rounds + 1):  # settings take turns, so a change of load hits them all
                for net in args.nets.split(","):
                    for setting in SETTINGS:
                        r = measure(net, setting, args.epochs, args.data_dir, args.limit_train)
                        seen.setdefault(f"{condition}/{net}/{setting}", []).extend(r["all"])
                        timed = ", ".join(f"{s:.3f}" for s in r["all"])
                        print(f"{round_:<5} {net:<8} {setting:<9} {r['threads']:>7} {r['seconds']:>9.3f}   {timed}",
                              flush=True)
            print("median over rounds: " + ", ".join(f"{k.split('/', 1)[1]} {statistics.median(v):.3f}"
                                                     for k, v in seen.items()))
            results.update({k: statistics.median(v) for k, v in seen.items()})
            print(f"{condition}: {load()} at the end")
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()
    print("threads: " + " ".join(f"{k}={v:.3f}" for k, v in results.items()))


if __name__ == "__main__":
    main()
