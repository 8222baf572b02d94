"""Several processes (torchrun, gloo on the CPU): sliced populations, sharded sep, the gradient part
under DistributedDataParallel, the run directory, resuming at another world size, a dying rank.

Equivalence is bitwise: a single process with ``slices=S`` draws the same slices, evaluates them on
the same shapes and adds the per-slice sums in the same (slice) order as S ranks do; with
``batch_parts=2`` it sums each batch's gradient as two ranks under DistributedDataParallel do
(g0/2 + g1/2: a sum of two is the same in either order, and halving is exact). Against one process
that takes each batch whole the gradient differs by float32 rounding only (checked to 1e-5 below).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from evoprop import distributed as dist
from evoprop.config import TrainConfig
from evoprop.errors import ConfigError
from evoprop.es import make_strategy
from evoprop.es.slices import Shard, slice_bounds, slice_seed

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(PYTHONPATH=SRC + os.pathsep + env.get("PYTHONPATH", ""), OMP_NUM_THREADS="1", **extra)
    return env


def _torchrun(args: list[str], cwd: Path, timeout: float = 120, **env) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(_free_port()), *args]
    return subprocess.run(cmd, cwd=cwd, env=_env(**env), capture_output=True, text=True, timeout=timeout)


def _ellipsoid(X: torch.Tensor) -> torch.Tensor:
    return (X.double() ** 2 * torch.arange(1, X.shape[1] + 1, dtype=torch.float64)).sum(1)


def _sep_run(slices: int, generations: int = 20, shard: Shard | None = None) -> dict:
    es = make_strategy("sep", torch.linspace(-1, 1, 12), 0.5, 10, seed=3, slices=slices)
    if shard is not None:
        es.shard(shard)
    for _ in range(generations):
        X = es.ask()
        f = _ellipsoid(X)
        if shard is not None:
            f = dist.all_gather_losses(f)
        es.tell(X, f)
    return es.state_dict()


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], torch.Tensor):
            assert torch.equal(a[k], b[k]), k
        else:
            assert a[k] == b[k], k


# -- one process ----------------------------------------------------------------------------

def test_one_slice_is_the_unsliced_strategy():
    """slices=1 (the default) draws from the strategy's generator exactly as before."""
    a = make_strategy("sep", torch.zeros(6), 0.3, 8, seed=5)
    b = make_strategy("sep", torch.zeros(6), 0.3, 8, seed=5, slices=1)
    for _ in range(3):
        Xa, Xb = a.ask(), b.ask()
        assert torch.equal(Xa, Xb)
        a.tell(Xa, _ellipsoid(Xa))
        b.tell(Xb, _ellipsoid(Xb))
    assert "slices" not in a.state_dict()


def test_slices_are_keyed_by_seed_generation_and_slice():
    """Slice k's rows come from the stream of (seed, generation, k), whoever draws them."""
    es = make_strategy("sep", torch.zeros(5), 1.0, 7, seed=11, slices=3)
    X = es.ask()
    for k, (a, b) in enumerate(slice_bounds(7, 3)):
        g = torch.Generator().manual_seed(slice_seed(11, 0, k))
        assert torch.equal(X[a:b], torch.empty(b - a, 5).normal_(generator=g)), k
    es.tell(X, _ellipsoid(X))
    assert not torch.equal(es.ask(), X)  # a new generation: new streams


def test_sharded_strategy_holds_its_rows_only():
    """A shard's ask returns its slices' rows, equal to those rows of the single process's population."""
    full = make_strategy("sep", torch.zeros(4), 1.0, 9, seed=2, slices=3)
    part = make_strategy("sep", torch.zeros(4), 1.0, 9, seed=2, slices=3)
    part.shard(Shard(1, 3, 3, gather=lambda t: t, broadcast=lambda t, src: t))
    assert part.local_popsize == 3
    assert torch.equal(part.ask(), full.ask()[3:6])


def test_slices_must_share_evenly_and_state_must_match():
    with pytest.raises(ConfigError, match="multiple of 2"):
        Shard(0, 2, 3, gather=lambda t: t, broadcast=lambda t, src: t)
    with pytest.raises(ConfigError, match="slices"):
        make_strategy("sep", torch.zeros(3), 1.0, 4, seed=0, slices=5)
    sd = make_strategy("sep", torch.zeros(3), 1.0, 4, seed=0, slices=2).state_dict()
    with pytest.raises(ConfigError, match="slice"):
        make_strategy("sep", torch.zeros(3), 1.0, 4, seed=0).load_state_dict(sd)


def test_checksum_mismatch_names_the_ranks(monkeypatch):
    """check_same_state: differing bits are one clear error naming the ranks (gather faked)."""
    monkeypatch.setattr(dist, "_current", dist.Context(rank=0, world_size=3))
    monkeypatch.setattr(dist, "all_gather_parts",
                        lambda c, counts=None: torch.cat([c, c, c + 1]))
    with pytest.raises(dist.DistributedError, match=r"rank 0 and rank\(s\) 2 of 3"):
        dist.check_same_state(torch.tensor([1.0, 2.0]))


def test_batch_parts_are_contiguous_and_cover_the_batch():
    """Rank r takes rows [r n / W, (r + 1) n / W) of a global batch of n: in rank order, no row twice."""
    for n, world in [(64, 2), (7, 2), (5, 3), (1, 2), (100, 4)]:
        bounds = [dist.part(n, r, world) for r in range(world)]
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
        assert max(b - a for a, b in bounds) - min(b - a for a, b in bounds) <= 1
    assert dist.part(7, 0, 2) == (0, 3) and dist.part(7, 1, 2) == (3, 7)


def _small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))


def _fake_ddp_trainer(monkeypatch, optimizer_name: str = "sgd", model=None, world: int = 2, **kwargs):
    """A Trainer that believes it is rank 0 of ``world`` (DDP's wrapper replaced by the model itself)."""
    from evoprop.optim import make_optimizer
    from evoprop.train import Trainer

    model = model if model is not None else _small_model()
    monkeypatch.setattr(dist, "_current", dist.Context(rank=0, world_size=world))
    monkeypatch.setattr(dist, "data_parallel", lambda m: m)
    optimizer = make_optimizer(optimizer_name, model.parameters(), lr=0.1, model=model)
    return Trainer(model, optimizer, None, batch_size=4, **kwargs), model


def _grads(trainer, x, y) -> tuple[list[torch.Tensor], torch.Tensor]:
    trainer.optimizer.zero_grad(set_to_none=True)
    sums = torch.zeros(trainer.batch_parts, dtype=torch.float64)
    trainer._backward(x, y, sums)
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in trainer.model.parameters()], sums


@pytest.mark.parametrize("n", [8, 7, 1])
def test_the_ranks_gradients_average_to_the_global_batch_gradient_and_one_process_takes_the_same_bits(
        monkeypatch, n):
    """Each of 2 ranks' gradient of its part of a batch, averaged as DDP does ((g0 + g1) / 2), is the
    gradient of the mean loss over the whole batch (equal parts, 7 rows on 2 ranks, an empty part:
    1 row on 2 ranks); one process with batch_parts=2 gets it bit for bit, and the same loss sums."""
    trainer, model = _fake_ddp_trainer(monkeypatch)
    assert trainer.parallel == "ddp" and trainer.batch_parts == 2
    x, y = torch.randn(n, 1, 3, 4), torch.randint(0, 3, (n,))
    full = torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters()))
    ranks = []
    for rank in (0, 1):
        monkeypatch.setattr(dist, "_current", dist.Context(rank=rank, world_size=2))
        ranks.append(_grads(trainer, x, y))
    (g0, s0), (g1, s1) = ranks
    averaged = [(a + b) / 2 for a, b in zip(g0, g1)]
    for got, want in zip(averaged, full):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    one, _ = _fake_ddp_trainer(monkeypatch, model=model, world=1, batch_parts=2)  # one process, two parts
    assert one.parallel is None and one.batch_parts == 2
    single, sums = _grads(one, x, y)
    assert all(torch.equal(a, b) for a, b in zip(single, averaged))
    assert torch.equal(sums, s0 + s1) and (s0 * s1 == 0).all()  # each rank fills its own part
    assert float(sums.sum()) / n == pytest.approx(float(F.cross_entropy(model(x), y).detach()), rel=1e-6)


def test_optimizers_that_need_the_whole_batch_are_replicated(monkeypatch):
    """newton evaluates the batch itself, natural (K-FAC) hooks the layers: every rank takes the whole batch."""
    from evoprop.optim.registry import get_spec
    from evoprop.train import Trainer

    trainer, model = _fake_ddp_trainer(monkeypatch, "newton")
    assert trainer.parallel == "replicated" and trainer.net is model and trainer.batch_parts == 1
    assert get_spec("natural").needs_model and not get_spec("sgd").needs_model  # build_run: data_parallel=False
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    assert Trainer(model, opt, None, batch_size=4, data_parallel=False).parallel == "replicated"
    with pytest.raises(ConfigError, match="batch_parts 2 averages the gradients"):
        Trainer(model, opt, None, batch_size=4, batch_parts=2, data_parallel=False)


def test_batch_parts_must_suit_the_processes_and_the_batch(monkeypatch):
    """Under torchrun batch_parts is a multiple of the processes, and the batch has a row for every part."""
    from evoprop.train import Trainer

    trainer, model = _fake_ddp_trainer(monkeypatch, batch_parts=4)
    assert trainer.batch_parts == 4
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ConfigError, match="batch_parts 3 is not a multiple of the 2 processes"):
        Trainer(model, opt, None, batch_size=4, batch_parts=3)
    with pytest.raises(ConfigError, match="batch_size 1 is smaller than the 2 processes"):
        Trainer(model, opt, None, batch_size=1)
    with pytest.raises(ConfigError, match="batch_size 2 is smaller than its 4 parts"):
        Trainer(model, opt, None, batch_size=2, batch_parts=4)


def test_the_ranks_compare_the_model_weights_after_every_epoch(monkeypatch):
    """After an epoch's gradient steps the ranks' weights are compared (gather faked: rank 1 differs), so a
    divergence stops the run with one line even when no ES generation checks in between."""
    from types import SimpleNamespace

    from evoprop.data.splits import Split

    trainer, model = _fake_ddp_trainer(monkeypatch, data_parallel=False)  # replicated: no other exchange
    split = Split(torch.randn(8, 1, 3, 4), torch.randint(0, 3, (8,)))
    trainer.data = SimpleNamespace(train=split, test=split, val=None, num_classes=3)
    gathered = []
    monkeypatch.setattr(dist, "all_gather_parts", lambda c, counts=None: gathered.append(c) or torch.cat([c, c + 1]))
    with pytest.raises(dist.DistributedError, match=r"after epoch 1, the model's weights differs between rank 0 and "
                                                     r"rank\(s\) 1 of 2"):
        trainer.fit(1)
    weights = [t for t in model.state_dict().values()]
    assert torch.equal(gathered[0], dist.state_checksum(*weights).reshape(1, -1))


def test_config_yaml_records_the_world_size_and_still_loads(tmp_path):
    """config.yaml records world_size after the settings; it loads as a TrainConfig (--config, --resume),
    a rewrite without a world size keeps it, and a run directory from before it loads too."""
    from evoprop.runs.rundir import RunDir

    config = TrainConfig(depth=2, epochs=3)
    run = RunDir.create(tmp_path / "run", config, world_size=2)
    assert yaml.safe_load((run.path / "config.yaml").read_text())["world_size"] == 2
    assert run.read_records() == {"world_size": 2}
    assert run.read_config() == config == TrainConfig.from_file(run.path / "config.yaml")
    run.write_config(TrainConfig(depth=2, epochs=4))  # e.g. evoprop's plans, changing the device
    assert run.read_records() == {"world_size": 2} and run.read_config().epochs == 4
    run.write_config(config, world_size=1)  # a resume in one process
    assert run.read_records() == {"world_size": 1}
    old = RunDir.create(tmp_path / "old", config)  # as before world_size was recorded
    assert "world_size" not in (old.path / "config.yaml").read_text()
    assert old.read_records() == {} and old.read_config() == config


# -- two processes --------------------------------------------------------------------------

_SEP_SCRIPT = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, {tests!r})
    from evoprop import distributed as dist
    from evoprop.es.slices import Shard
    from test_distributed import _sep_run
    ctx = dist.init("cpu")
    shard = Shard(ctx.rank, ctx.world_size, 2, gather=dist.all_gather_parts, broadcast=dist.broadcast_tensor)
    torch.save(_sep_run(2, shard=shard), {out!r} + f"/state{{ctx.rank}}.pt")
""")


@pytest.mark.slow
def test_two_ranks_reach_the_single_process_state_bitwise(tmp_path):
    """20 generations of sep over 2 gloo ranks: both ranks, and one process with slices=2, hold the
    identical state (mean, paths, variances, σ, best, counters), bit for bit."""
    script = tmp_path / "sep_ranks.py"
    script.write_text(_SEP_SCRIPT.format(tests=str(Path(__file__).parent), out=str(tmp_path)))
    done = _torchrun([str(script)], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    r0, r1 = (torch.load(tmp_path / f"state{r}.pt", weights_only=False) for r in (0, 1))
    single = _sep_run(2)
    _assert_same_state(r0, r1)
    _assert_same_state(r0, single)
    assert r0["generation"] == 20 and r0["slices"] == 2


_TRAIN = ["--depth", "1", "--strategy", "sep", "--popsize", "16", "--epochs", "1", "--limit-train", "1000",
          "--limit-test", "500", "--device", "cpu", "--no-progress"]
#: A short hybrid run: 2 epochs of 10 SGD steps (batches of 100, 50 per rank) and 3 ES generations each.
_HYBRID = ["--method", "hybrid", *_TRAIN, "--depth", "3", "--width", "16", "--optimizer", "sgd", "--lr", "0.05",
           "--batch-size", "100", "--generations-per-epoch", "3", "--epochs", "2"]
#: What makes one process take the steps of two: the population in 2 slices, each batch in 2 parts.
_AS_TWO = {"es": ["--es-opt", "slices=2"], "hybrid": ["--es-opt", "slices=2", "--batch-parts", "2"]}


def _metrics(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if "seconds" not in k} for r in rows]


def _single(cwd: Path, args: list[str], out: str | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "evoprop", "train", *args, *(["--out", out] if out else [])]
    done = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def _two(cwd: Path, args: list[str], out: str | None = None) -> subprocess.CompletedProcess:
    done = _torchrun(["-m", "evoprop", "train", *args, *(["--out", out] if out else [])], cwd)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("completed:") == 1  # rank 0 prints the summary line, rank 1 nothing
    return done


def _records(run: Path) -> tuple[dict, dict]:
    """(summary.json, config.yaml) of a run."""
    return json.loads((run / "summary.json").read_text()), yaml.safe_load((run / "config.yaml").read_text())


@pytest.mark.slow
def test_torchrun_es_matches_one_process(tmp_path):
    """`torchrun --nproc-per-node 2 -m evoprop train --method es` completes, rank 0 alone writes and
    prints, and its metrics equal a single process's with --es-opt slices=2, bit for bit (on the CPU);
    with an L2 term in the fitness, whose ‖θ‖² each rank takes of its own rows."""
    args = ["--method", "es", *_TRAIN, "--es-weight-decay", "0.001"]
    done = _two(tmp_path, args, "two")
    summary, config = _records(tmp_path / "two")
    assert summary["world_size"] == 2 == config["world_size"] and summary["status"] == "completed"
    assert config["es_weight_decay"] == 0.001 == summary["es_weight_decay"] and "L2 0.001" in done.stdout
    assert summary["gradient_parallel"] is None  # no gradient part
    _single(tmp_path, [*args, *_AS_TWO["es"]], "one")
    assert _records(tmp_path / "one")[0]["world_size"] == 1
    assert _metrics(tmp_path / "two") == _metrics(tmp_path / "one")


@pytest.mark.slow
def test_torchrun_hybrid_under_ddp_matches_one_process_and_resumes_there_bitwise(tmp_path):
    """The hybrid's gradient part under DistributedDataParallel: each of 2 ranks takes half of every batch
    of --batch-size 100. Its epoch equals, bit for bit (train loss, ES figures, test and val metrics), that
    of one process with the population in 2 slices and each batch in 2 parts; config.yaml and summary.json
    record world_size and the parts. The checkpoint does not depend on the world size: resumed for a 2nd
    epoch in one process (slices and parts from config.yaml), the run ends with the very metrics and
    weights of the one-process run, and then records world_size 1."""
    _two(tmp_path, [*_HYBRID, "--epochs", "1"], "run")
    summary, config = _records(tmp_path / "run")
    assert summary["status"] == "completed" and summary["world_size"] == 2 == config["world_size"]
    assert summary["gradient_parallel"] == "ddp" and summary["batch_size"] == 100
    assert config["batch_parts"] == 2 and config["strategy_options"] == {"slices": 2}
    _single(tmp_path, [*_HYBRID, *_AS_TWO["hybrid"]], "one")
    one_summary, one_config = _records(tmp_path / "one")
    assert one_summary["world_size"] == 1 == one_config["world_size"] and one_summary["gradient_parallel"] is None
    one = _metrics(tmp_path / "one")
    assert _metrics(tmp_path / "run") == one[:1]
    done = _single(tmp_path, ["--resume", "run", "--epochs", "2", "--no-progress"])
    assert "resuming run after epoch 1 of 2" in done.stderr
    summary, config = _records(tmp_path / "run")
    assert summary["world_size"] == 1 == config["world_size"] and summary["epochs"] == 2
    assert config["batch_parts"] == 2 and config["strategy_options"] == {"slices": 2}
    assert _metrics(tmp_path / "run") == one
    resumed, single = (torch.load(tmp_path / r / "checkpoint.pt", weights_only=True)["trainer"] for r in ("run", "one"))
    assert all(torch.equal(resumed["model"][k], single["model"][k]) for k in single["model"])
    _assert_same_state(resumed["search"]["strategy"], single["search"]["strategy"])


@pytest.mark.slow
def test_a_killed_rank_ends_the_job_with_one_line_and_a_resumable_run(tmp_path):
    """SIGKILL one of two ranks of a hybrid run (started as torchrun would, without its agent) while they
    train, mostly in DDP's gradient all-reduce: the other stops with one error line well within
    EVOPROP_DIST_TIMEOUT, and the run directory resumes in one process."""
    port = str(_free_port())
    cmd = [sys.executable, "-m", "evoprop", "train", *_HYBRID, "--epochs", "100000", "--batch-size", "10",
           "--generations-per-epoch", "2", "--out", "run"]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=_env(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                                       MASTER_PORT=port, EVOPROP_DIST_TIMEOUT="20"))
             for r in (0, 1)]
    run = tmp_path / "run"
    try:
        deadline = time.monotonic() + 60
        while not (run / "checkpoint.pt").exists():
            assert time.monotonic() < deadline and procs[0].poll() is None, procs[0].stderr.read()
            time.sleep(0.1)
        killed = time.monotonic()
        procs[1].send_signal(signal.SIGKILL)
        _, err = procs[0].communicate(timeout=40)
        elapsed = time.monotonic() - killed
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert procs[0].returncode not in (0, None)
    lines = [line for line in err.splitlines() if line.strip()]  # the epoch lines, then the error
    errors = [line for line in lines if "error" in line.lower()]
    assert len(errors) == 1 and lines[-1] == errors[0] and errors[0].startswith("evoprop: error: rank 0 of 2:"), err
    assert elapsed < 25
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    done = int(summary["epochs"])
    resumed = subprocess.run([sys.executable, "-m", "evoprop", "train", "--resume", "run", "--epochs", str(done + 1)],
                             cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = json.loads((run / "summary.json").read_text())
    assert after["status"] == "completed" and after["epochs"] == done + 1 and after["world_size"] == 1
