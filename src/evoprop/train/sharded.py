"""``LayerSearch`` over several processes (torchrun): the thin layer between it and :mod:`evoprop.distributed`.

Every process holds the same model, data and strategy state. The strategy draws its population in
``slices`` (one per process by default; :mod:`evoprop.es.slices`) and each process holds only its
own: it evaluates them, the P losses are all-gathered (P floats), every process ranks all P, the
update's per-slice sums are all-gathered and added in slice order (S·2d values for ``sep``, S·d for
``lmma``, S·(2d + ~d²/2) for ``cma`` and ``paper``, whose rank-μ product is a d x d matrix: see
:mod:`evoprop.es.cma`), and the winner's row (d values) is broadcast by the process that holds it.
So every process applies the identical update and writes the identical winner into its model; a
checksum of the strategy's state and of the model's parameters is compared every
``EVOPROP_DIST_CHECK_EVERY`` generations (default 10).

A single process with the same ``slices`` evaluates its population slice by slice too, so its losses,
and therefore its whole run, equal the distributed run's bit for bit (on the CPU; see the README).
"""

from __future__ import annotations

import os
from typing import Any, Callable

import torch

from evoprop import distributed as dist
from evoprop.errors import ConfigError
from evoprop.es.slices import Shard, aligned

DEFAULT_CHECK_EVERY = 10
#: the strategies whose population is shared over processes; ``ipop`` is not: its restarts change the
#: population size and build a new inner strategy each time
SHARDABLE = ("sep", "lmma", "cma", "paper")


def world_size() -> int:
    return dist.current().world_size


def strategy_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """The strategy's options for a distributed run: ``slices`` defaults to the world size."""
    if name not in SHARDABLE:
        raise ConfigError(f"strategy '{name}' does not run over several processes yet; under torchrun use "
                          f"--strategy {', '.join(SHARDABLE[:-1])} or {SHARDABLE[-1]} (or auto)")
    return {"slices": world_size(), **options}


def shard(strategy) -> None:
    """Make ``strategy`` hold only this process's slices (collectives from evoprop.distributed)."""
    ctx = dist.current()
    strategy.shard(Shard(ctx.rank, ctx.world_size, strategy.slices, gather=dist.all_gather_parts,
                         broadcast=dist.broadcast_tensor))


def _sliced(strategy) -> bool:
    return getattr(strategy, "slices", 1) > 1


def per_row(strategy, candidates: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``fn`` of the whole population (P,), given this process's rows ``candidates`` (``fn``: rows -> one
    float32 value per row).

    Drawn in slices, the rows go to ``fn`` slice by slice (whether one process holds them all or each
    holds its own), each from aligned memory (:func:`evoprop.es.slices.aligned`), so every value is
    computed on the same shapes and alignment either way."""
    if not _sliced(strategy):
        return fn(candidates)
    rows = strategy.slice_rows()
    start = rows[0][0]
    local = torch.cat([fn(aligned(candidates[a - start:b - start])) for a, b in rows])
    return dist.all_gather_losses(local, strategy.rows_per_process()) if strategy.sharded else local


def evaluate(strategy, evaluator, candidates: torch.Tensor, inputs, targets, loss_fn) -> torch.Tensor:
    """The losses of the whole population (P,), given this process's rows ``candidates``."""
    return per_row(strategy, candidates, lambda rows: evaluator(rows, inputs, targets, loss_fn))


def row(strategy, candidates: torch.Tensor, i: int) -> torch.Tensor:
    """Row ``i`` of the whole population (a copy), on every process."""
    if hasattr(strategy, "population_row"):
        return strategy.population_row(candidates, i)
    return candidates[i].clone()


def check_every() -> int:
    raw = os.environ.get("EVOPROP_DIST_CHECK_EVERY", "")
    try:
        k = int(raw) if raw else DEFAULT_CHECK_EVERY
    except ValueError:
        raise ConfigError(f"EVOPROP_DIST_CHECK_EVERY={raw!r} must be an integer") from None
    return max(k, 1)


def checksum(strategy, model: torch.nn.Module | None = None) -> torch.Tensor:
    """A fingerprint of the strategy's state (its state_dict's tensors and numbers) and the model's weights."""
    tensors, numbers = [], []
    for key, value in sorted(strategy.state_dict().items()):
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            tensors.append(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            numbers.append(float(value))
    if model is not None:
        tensors += [p.detach() for p in model.parameters()]
    return torch.cat([dist.state_checksum(*tensors), torch.tensor(numbers, dtype=torch.float64)])


def check(strategy, model: torch.nn.Module | None = None) -> None:
    """Every ``check_every()`` generations of a distributed run: the ranks' states must be identical."""
    if not getattr(strategy, "sharded", False) or strategy.generation % check_every():
        return
    dist.check_same_state(checksum(strategy, model), f"after generation {strategy.generation}, the search's state")
