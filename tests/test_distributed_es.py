"""Full-covariance and limited-memory strategies over several processes: ``cma``, ``paper`` and ``lmma``
with ``slices``, sharded over torchrun ranks (gloo on the CPU).

As for ``sep`` (tests/test_distributed.py), equivalence is bitwise: S ranks draw the same slices as one
process with ``slices=S``, sample and whiten each slice on the same shapes, and add the per-slice sums
(for ``cma``/``paper`` the mean's Σ w·y and the rank-μ product Σ w°·y yᵀ) in slice order.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from evoprop import distributed as dist
from evoprop.errors import ConfigError
from evoprop.es import make_strategy
from evoprop.es.cov import add_lower_packed, add_weighted_gram_lower, lower_size, weighted_gram_lower_into
from evoprop.es.slices import Shard, aligned
from evoprop.train import sharded
from evoprop.train.layer_search import choose_strategy

from test_distributed import _assert_same_state, _env, _metrics, _torchrun

# name -> (strategy, dimension, options): d = 14 takes cma's Cholesky factor, d = 6 its eigh one
CASES = {
    "cma": ("cma", 14, {}),
    "cma-4-slices": ("cma", 14, {"slices": 4}),  # two slices on each of the two ranks
    "cma-eigh-passive": ("cma", 6, {"active": False}),
    "paper": ("paper", 14, {"faithful": False}),
    "lmma": ("lmma", 14, {}),
}


def _rosenbrock(X: torch.Tensor) -> torch.Tensor:
    X = X.double()
    return (100.0 * (X[:, 1:] - X[:, :-1] ** 2) ** 2 + (1.0 - X[:, :-1]) ** 2).sum(1)


def _run(case: str, generations: int = 25, shard: Shard | None = None) -> dict:
    """``generations`` of ``case`` on Rosenbrock (popsize 10, slices 2 unless the case says), with a
    point injected at generation 4 and the population repaired in place at generation 7 (whitened again)."""
    name, d, options = CASES[case]
    options = {"slices": 2, **options}
    es = make_strategy(name, torch.linspace(-1, 1, d), 0.3, 10, seed=3, **options)
    if shard is not None:
        es.shard(Shard(shard.rank, shard.world, es.slices, gather=shard.gather, broadcast=shard.broadcast))
    for g in range(generations):
        if g == 4:
            es.inject(torch.full((d,), 0.5))
        X = es.ask()
        if g == 7:
            X.clamp_(-0.8, 0.8)
        # evaluated slice by slice, as evoprop.train.sharded does: the same shapes on one process or several
        start = es.slice_rows()[0][0]
        f = torch.cat([_rosenbrock(aligned(X[a - start:b - start])) for a, b in es.slice_rows()])
        if shard is not None:
            f = dist.all_gather_losses(f, es.rows_per_process())
        es.tell(X, f)
    return es.state_dict()


# -- one process ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["cma", "paper", "lmma"])
def test_slices_one_is_the_default(name):
    """slices=1 draws and updates exactly as without the option (no slice state saved)."""
    a = make_strategy(name, torch.zeros(12), 0.3, 8, seed=5)
    b = make_strategy(name, torch.zeros(12), 0.3, 8, seed=5, slices=1)
    for _ in range(5):
        Xa, Xb = a.ask(), b.ask()
        assert torch.equal(Xa, Xb)
        a.tell(Xa, _rosenbrock(Xa))
        b.tell(Xb, _rosenbrock(Xb))
    _assert_same_state(a.state_dict(), b.state_dict())
    assert "slices" not in a.state_dict()


@pytest.mark.parametrize("name", ["cma", "paper", "lmma"])
def test_slices_are_validated_and_recorded(name):
    with pytest.raises(ConfigError, match="slices"):
        make_strategy(name, torch.zeros(3), 1.0, 4, seed=0, slices=5)
    with pytest.raises(ConfigError, match="slices"):
        make_strategy(name, torch.zeros(3), 1.0, 4, seed=0, slices=0)
    sd = make_strategy(name, torch.zeros(3), 1.0, 4, seed=0, slices=2).state_dict()
    assert sd["slices"] == 2
    with pytest.raises(ConfigError, match="slice"):
        make_strategy(name, torch.zeros(3), 1.0, 4, seed=0).load_state_dict(sd)


def _sphere(X: torch.Tensor) -> torch.Tensor:
    return (X.double() ** 2).sum(1)


def _solve(name: str, f, d: int, slices: int, limit: int = 1000, **options) -> int:
    """Evaluations until ``f`` < 1e-10 from 0.5 · 1 (σ0 0.3, popsize 12, seed 1); fails past ``limit`` generations."""
    es = make_strategy(name, torch.full((d,), 0.5, dtype=torch.float64), 0.3, 12, seed=1, slices=slices, **options)
    while es.best.fitness > 1e-10 and es.generation < limit:
        X = es.ask()
        es.tell(X, f(X))
    assert es.best.fitness <= 1e-10, (name, slices, d, es.best.fitness)
    return es.evaluations


def test_sliced_cma_converges():
    """cma drawn in 2 slices (its rank-μ product summed slice by slice) is still CMA-ES: it solves the
    sphere (d = 12, Cholesky factor) and Rosenbrock (d = 6, eigh) to 1e-10 in about the evaluations
    of the unsliced search."""
    for f, d in [(_sphere, 12), (_rosenbrock, 6)]:
        one, two = _solve("cma", f, d, 1), _solve("cma", f, d, 2)
        assert two < 1.5 * one, (f.__name__, one, two)


@pytest.mark.parametrize("name", ["lmma", "paper"])
def test_sliced_lmma_and_paper_converge(name):
    _solve(name, _sphere, 10, 3, **({"faithful": False} if name == "paper" else {}))


@pytest.mark.parametrize("d", [5, 1500])
def test_packed_lower_triangle_is_the_weighted_gram(d):
    """What cma sends per slice (the rank-μ product's lower block triangle, packed) adds to C what
    the unsliced update adds; d = 1500 has two block rows, so ~3/4 of d² values instead of d²."""
    g = torch.Generator().manual_seed(0)
    Y, w = torch.randn(7, d, generator=g), torch.randn(7, generator=g)
    packed = torch.empty(lower_size(d))
    weighted_gram_lower_into(packed, Y, w)
    C1, C2 = torch.eye(d, dtype=torch.float64), torch.eye(d, dtype=torch.float64)
    add_weighted_gram_lower(C1, Y, w, 0.3)
    add_lower_packed(C2, packed, 0.3)
    assert torch.allclose(C1.tril(), C2.tril(), rtol=0, atol=1e-9)
    assert lower_size(d) == (d * d if d <= 1024 else 750 * 750 + 750 * 1500)


def test_under_torchrun_every_strategy_but_ipop_shards(monkeypatch):
    """The shardable strategies get slices = the world size; ipop (restarts change the population
    size) is refused with the list of those that shard; auto picks sep (O(S·d) per generation)."""
    monkeypatch.setattr(dist, "_current", dist.Context(rank=0, world_size=2))
    for name in ("sep", "lmma", "cma", "paper"):
        assert sharded.strategy_options(name, {}) == {"slices": 2}
    assert sharded.strategy_options("cma", {"slices": 4}) == {"slices": 4}
    with pytest.raises(ConfigError, match="'ipop' does not run over several processes.*sep, lmma, cma or paper"):
        sharded.strategy_options("ipop", {})
    assert choose_strategy("auto", 100, torch.device("cpu"), distributed=True) == "sep"


# -- two processes --------------------------------------------------------------------------

_SCRIPT = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, {tests!r})
    from evoprop import distributed as dist
    from evoprop.es.slices import Shard, aligned
    from test_distributed_es import CASES, _run
    ctx = dist.init("cpu")
    shard = Shard(ctx.rank, ctx.world_size, 2, gather=dist.all_gather_parts, broadcast=dist.broadcast_tensor)
    torch.save({{case: _run(case, shard=shard) for case in CASES}}, {out!r} + f"/states{{ctx.rank}}.pt")
""")


@pytest.mark.slow
def test_two_ranks_reach_the_single_process_state_bitwise(tmp_path):
    """25 generations of cma (Cholesky and eigh factors, active and not, 2 and 4 slices), paper and lmma
    over 2 gloo ranks, with an injected point and a repaired population: both ranks, and one process
    with the same slices, hold the identical state (mean, C and its factor, paths, σ, best), bit for bit."""
    script = tmp_path / "es_ranks.py"
    script.write_text(_SCRIPT.format(tests=str(Path(__file__).parent), out=str(tmp_path)))
    done = _torchrun([str(script)], tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"states{r}.pt", weights_only=False) for r in (0, 1))
    for case in CASES:
        single = _run(case)
        _assert_same_state(r0[case], r1[case])
        _assert_same_state(r0[case], single)
        assert r0[case]["generation"] == 25 and r0[case]["slices"] == CASES[case][2].get("slices", 2)
        assert r0[case]["best_f"] < _rosenbrock(torch.linspace(-1, 1, CASES[case][1]).unsqueeze(0)).item()


# the searched layer is the last of a 2-layer MLP (16 x 10 + 10 = 170 weights), so cma's d x d is small
_TRAIN = ["--method", "es", "--depth", "2", "--width", "16", "--es-layers", "1", "--popsize", "12", "--epochs", "1",
          "--generations-per-epoch", "12", "--limit-train", "1000", "--limit-test", "500", "--device", "cpu",
          "--no-progress"]


@pytest.mark.slow
def test_torchrun_train_with_cma_matches_one_process(tmp_path):
    """`torchrun --nproc-per-node 2 -m evoprop train --strategy cma` completes (the ranks' states, C
    included, checked equal every 3 generations) and its metrics equal a single process's with
    --es-opt slices=2, bit for bit (on the CPU). lmma and paper take the same path (the test above)."""
    args = [*_TRAIN, "--strategy", "cma"]
    done = _torchrun(["-m", "evoprop", "train", *args, "--out", "two"], tmp_path, EVOPROP_DIST_CHECK_EVERY="3")
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["world_size"] == 2
    one = subprocess.run([sys.executable, "-m", "evoprop", "train", *args, "--es-opt", "slices=2", "--out", "one"],
                         cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120)
    assert one.returncode == 0, one.stderr[-2000:]
    assert _metrics(tmp_path / "two") == _metrics(tmp_path / "one")
