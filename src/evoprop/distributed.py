"""Several processes, launched by ``torchrun``: the process group and the few collectives evoprop uses.

``torchrun --nproc-per-node N -m evoprop train ...`` starts N processes with RANK, WORLD_SIZE and
LOCAL_RANK in their environment; :func:`init` reads them (world size 1 when they are absent, and then
nothing is initialised) and joins the process group: gloo on the CPU, NCCL on CUDA. Every collective
has a timeout (``EVOPROP_DIST_TIMEOUT`` seconds, default 120): a rank that died or hangs makes the
others stop with an :class:`~evoprop.errors.EvopropError` naming the operation, never wait forever.

The gradient part of a run is data-parallel: :func:`data_parallel` wraps the model in PyTorch's
``DistributedDataParallel`` (which all-reduces and averages the gradients during ``backward``) and
:func:`part` says which contiguous rows of each global batch this rank takes.

This module knows nothing of strategies or runs (it imports only torch and evoprop.errors); the
evolution strategies take its collectives as plain callables (see :mod:`evoprop.es.slices`).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import pickle
from dataclasses import dataclass
from typing import Any

import torch

from evoprop.errors import EvopropError

__all__ = ["Context", "DistributedError", "all_gather_losses", "all_gather_parts", "barrier",
           "broadcast_buffers", "broadcast_object", "broadcast_tensor", "check_same_state", "context",
           "current", "data_parallel", "failures", "init", "is_main", "part", "shutdown", "state_checksum",
           "sum_in_rank_order", "timeout"]

DEFAULT_TIMEOUT_S = 120.0


class DistributedError(EvopropError):
    """A collective failed or timed out (another rank died or hangs), or the ranks' states differ."""


@dataclass(frozen=True)
class Context:
    """Where this process stands among the processes of one job (torchrun's environment)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


_current: Context | None = None
_device: torch.device = torch.device("cpu")


def context() -> Context:
    """This process's place from the environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK)."""
    def read(name: str, default: int) -> int:
        raw = os.environ.get(name)
        if raw is None or raw == "":
            return default
        try:
            return int(raw)
        except ValueError:
            raise EvopropError(f"environment variable {name}={raw!r} is not an integer "
                               "(it is set by torchrun)") from None

    world = read("WORLD_SIZE", 1)
    rank = read("RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise EvopropError(f"RANK={rank} and WORLD_SIZE={world} do not describe a process of the job")
    return Context(rank=rank, world_size=world, local_rank=read("LOCAL_RANK", rank))


def timeout() -> datetime.timedelta:
    """How long a collective may wait for the other ranks (EVOPROP_DIST_TIMEOUT seconds, default 120)."""
    raw = os.environ.get("EVOPROP_DIST_TIMEOUT", "")
    try:
        seconds = float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        raise EvopropError(f"EVOPROP_DIST_TIMEOUT={raw!r} must be a number of seconds") from None
    if not seconds > 0:
        raise EvopropError(f"EVOPROP_DIST_TIMEOUT={raw!r} must be a positive number of seconds")
    return datetime.timedelta(seconds=seconds)


def init(device: torch.device | str | None = None) -> Context:
    """Join the job's process group (once; later calls return the same context).

    World size 1 (no torchrun): nothing is initialised. ``device``: the device the run computes on;
    NCCL for CUDA (each rank on ``cuda:LOCAL_RANK``), gloo otherwise.
    """
    global _current, _device
    if _current is not None:
        return _current
    ctx = context()
    if ctx.distributed:
        import torch.distributed as dist

        dev = torch.device(device) if device is not None else torch.device("cpu")
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(ctx.local_rank)
            dev = torch.device("cuda", ctx.local_rank)
        if not dist.is_initialized():
            try:
                dist.init_process_group(backend, rank=ctx.rank, world_size=ctx.world_size, timeout=timeout())
            except (RuntimeError, ValueError) as exc:
                raise DistributedError(f"rank {ctx.rank} of {ctx.world_size} could not join the process group "
                                       f"({backend}): {_short(exc)}") from None
        _device = dev if dev.type == "cuda" else torch.device("cpu")
    _current = ctx
    return ctx


def current() -> Context:
    """The context :func:`init` set up; world size 1 when it was not called."""
    return _current if _current is not None else Context()


def is_main() -> bool:
    """Whether this process is rank 0 (the one that writes the run directory and prints)."""
    return current().main


def shutdown() -> None:
    """Leave the process group (if one was joined)."""
    global _current
    if _current is not None and _current.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
    _current = None


# -- collectives ----------------------------------------------------------------------------

def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:197] + "..."


@contextlib.contextmanager
def failures(what: str):
    """Inside: a failed exchange with the other ranks (a dead or hung peer, a timeout) becomes one
    DistributedError line naming ``what``, e.g. ``with failures("the gradient all-reduce"): loss.backward()``."""
    try:
        yield
    except (RuntimeError, ValueError, ConnectionError, OSError) as exc:
        ctx = current()
        raise DistributedError(
            f"rank {ctx.rank} of {ctx.world_size}: {what} with the other ranks failed (another rank died, hangs "
            f"or ran past EVOPROP_DIST_TIMEOUT={timeout().total_seconds():g} s): {_short(exc)}") from None


def _collective(what: str, fn, *args, **kwargs):
    """Run one collective; a failure (a dead or hung peer, a timeout) becomes one clear line."""
    with failures(what):
        return fn(*args, **kwargs)


def _to_comm(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(_device).contiguous()


def all_gather_parts(local: torch.Tensor, counts: list[int] | None = None) -> torch.Tensor:
    """Concatenate every rank's ``local`` along dim 0, in rank order.

    ``counts``: how many rows each rank holds (default: all as many as this one); ranks with fewer
    rows are padded for the exchange and trimmed after, so the result has sum(counts) rows.
    """
    ctx = current()
    if not ctx.distributed:
        return local
    import torch.distributed as dist

    counts = counts or [local.shape[0]] * ctx.world_size
    if local.shape[0] != counts[ctx.rank]:
        raise DistributedError(f"rank {ctx.rank} holds {local.shape[0]} rows, the ranks agreed on {counts[ctx.rank]}")
    most = max(counts)
    padded = torch.zeros((most, *local.shape[1:]), dtype=local.dtype, device=_device)
    padded[: local.shape[0]] = _to_comm(local)
    out = [torch.empty_like(padded) for _ in range(ctx.world_size)]
    _collective("an all-gather", dist.all_gather, out, padded)
    return torch.cat([o[:n] for o, n in zip(out, counts)]).to(local.device)


def all_gather_losses(local: torch.Tensor, counts: list[int] | None = None) -> torch.Tensor:
    """The P losses of the whole population (P floats), from each rank's slice, in slice order."""
    return all_gather_parts(local.reshape(-1), counts)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum of ``t`` over the ranks (in place and returned). The order of the additions is the
    backend's: use :func:`all_gather_parts` and add in a fixed order where bitwise equality matters."""
    ctx = current()
    if not ctx.distributed:
        return t
    import torch.distributed as dist

    buf = _to_comm(t)
    _collective("an all-reduce", dist.all_reduce, buf)
    t.copy_(buf.to(t.device))
    return t


def broadcast_tensor(t: torch.Tensor, src: int) -> torch.Tensor:
    """``t`` as rank ``src`` holds it, on every rank (every rank passes a tensor of the same shape)."""
    ctx = current()
    if not ctx.distributed:
        return t
    import torch.distributed as dist

    buf = _to_comm(t.clone())
    _collective("a broadcast", dist.broadcast, buf, src)
    return buf.to(t.device)


def sum_in_rank_order(t: torch.Tensor) -> torch.Tensor:
    """The sum of ``t`` over the ranks, added in rank order: the same bits on every rank, whatever the
    backend (a new tensor; ``t`` itself in one process)."""
    if not current().distributed:
        return t
    everyone = all_gather_parts(t.reshape(1, *t.shape))
    total = everyone[0].clone()
    for r in range(1, everyone.shape[0]):
        total += everyone[r]
    return total


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """A small picklable object as rank ``src`` has it (e.g. the run directory's path)."""
    ctx = current()
    if not ctx.distributed:
        return obj
    data = pickle.dumps(obj) if ctx.rank == src else b""
    n = broadcast_tensor(torch.tensor([len(data)], dtype=torch.int64), src)
    buf = torch.zeros(int(n), dtype=torch.uint8)
    if ctx.rank == src:
        buf.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    buf = broadcast_tensor(buf, src)
    return pickle.loads(bytes(buf.tolist())) if ctx.rank != src else obj


def barrier() -> None:
    """Wait until every rank got here (with the timeout)."""
    if current().distributed:
        # an all-gather of one value rather than dist.barrier: gloo's barrier honours the timeout less
        # reliably, and NCCL's needs the device set
        all_gather_parts(torch.zeros(1))


# -- data parallelism ----------------------------------------------------------------------

def part(n: int, rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """The rows [start, stop) of a global batch of ``n`` rows that ``rank`` (default: this one) takes:
    contiguous, in rank order, sizes differing by at most one (``n % W`` of the later ranks take one more)."""
    ctx = current()
    rank = ctx.rank if rank is None else rank
    world_size = ctx.world_size if world_size is None else world_size
    return rank * n // world_size, (rank + 1) * n // world_size


def data_parallel(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` wrapped in ``DistributedDataParallel`` (this rank's device; gloo or NCCL as :func:`init`
    chose): its ``backward`` all-reduces and averages the gradients over the ranks. The wrapper shares
    ``module``'s parameters, so writes into them (the ES's winner) are what the next forward uses;
    buffers are broadcast from rank 0 at each forward (DDP's default). In one process: ``module``."""
    if not current().distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel

    device = next(module.parameters()).device
    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return _collective("setting up DistributedDataParallel", DistributedDataParallel, module, device_ids=ids)


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Give every rank ``src``'s buffers of ``module`` (e.g. batch-norm statistics), in place."""
    if not current().distributed:
        return
    with torch.no_grad():
        for b in module.buffers():
            b.copy_(broadcast_tensor(b, src))


def state_checksum(*tensors: torch.Tensor) -> torch.Tensor:
    """A cheap (O(size)) fingerprint of some state tensors: per tensor the float64 sum and a
    position-weighted sum (so swapped values change it too). Identical states give identical bits."""
    parts = []
    for t in tensors:
        v = t.detach().reshape(-1).to(torch.float64)
        w = torch.arange(1, v.numel() + 1, dtype=torch.float64, device=v.device)
        parts += [v.sum(), (v * w).sum()]
    return torch.stack(parts).cpu() if parts else torch.zeros(0, dtype=torch.float64)


def check_same_state(checksum: torch.Tensor, what: str = "the state") -> None:
    """Compare ``checksum`` across the ranks; differing bits raise a DistributedError naming the ranks."""
    ctx = current()
    if not ctx.distributed:
        return
    c = checksum.detach().reshape(1, -1).to(torch.float64).cpu()
    everyone = all_gather_parts(c)
    differ = [r for r in range(ctx.world_size) if not torch.equal(everyone[r], everyone[0])]
    if differ:
        raise DistributedError(
            f"{what} differs between rank 0 and rank(s) {', '.join(map(str, differ))} of {ctx.world_size}: every "
            "rank must apply the identical update (a nondeterministic kernel, or ranks given different "
            "settings or data?)")
