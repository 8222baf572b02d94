"""A population drawn in slices, so that several processes can each hold only their own rows.

With ``slices=S`` (an option of ``sep``, ``lmma``, ``cma`` and ``paper``; default 1: one draw from
the strategy's generator, as always) the P rows of a generation are S contiguous slices, rows
[k·P//S, (k+1)·P//S) for slice k, and slice k is drawn from its own generator seeded from
(seed, generation, k) (:func:`slice_seed`). A slice's values therefore do not depend on who draws
it: one process drawing all S slices and W processes drawing S/W each draw the same population.

The update's weighted sums are computed per slice (over the slice's own rows) and added in slice
order, so the sum's rounding is the same however the slices are spread over processes: a
:class:`Shard` (set with ``Strategy.shard``) says which slices this process holds and how the
per-slice sums of all of them are gathered (an all-gather, never of P·d values: S·2d for ``sep``,
S·d for ``lmma``, S·(2d + ~d²/2) for ``cma`` and ``paper``, whose rank-μ product is d x d).
Whatever a strategy computes from a slice's rows (its samples y = A z, the whitened steps of
repaired or injected rows, the per-slice sums) it computes on that slice alone, from aligned
memory (:func:`aligned`), so that each row meets the same shapes, layouts and alignment on one
process as on several (matrix products round differently otherwise). The collectives are plain
callables (:mod:`evoprop.distributed` provides them): nothing here imports torch.distributed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from evoprop.errors import ConfigError

__all__ = ["Shard", "aligned", "slice_bounds", "slice_seed"]

_MASK = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def slice_seed(seed: int, generation: int, k: int) -> int:
    """The seed of slice ``k``'s generator in ``generation`` (0-based): splitmix64 mixing of the three,
    so that neighbouring seeds, generations and slices give unrelated streams. Fits torch's 63 bits."""
    h = _splitmix64(seed & _MASK)
    h = _splitmix64(h ^ (generation & _MASK))
    h = _splitmix64(h ^ (k & _MASK))
    return h >> 1


def slice_bounds(popsize: int, slices: int) -> list[tuple[int, int]]:
    """The [start, stop) rows of each of the ``slices`` slices of a population of ``popsize``."""
    return [(k * popsize // slices, (k + 1) * popsize // slices) for k in range(slices)]


#: the start address (bytes) at which a slice's rows are used in place, as allocations start (PyTorch's CPU
#: allocator aligns to 64 bytes)
ALIGNMENT = 64


def aligned(rows: torch.Tensor) -> torch.Tensor:
    """``rows`` itself if contiguous and starting on a 64-byte boundary, else a copy in fresh memory.

    A matrix product's rounding may depend on where its operands start in memory (MKL's does: the
    same 5 x 14 rows times the same matrix differ in the last bit when they start 24 bytes past a
    64-byte boundary). A slice at an offset inside one process's population is therefore copied
    before a product reads it, so that it is read from aligned memory just as the other process,
    whose rows start its own tensor, reads it.
    """
    if rows.is_contiguous() and rows.data_ptr() % ALIGNMENT == 0:
        return rows
    return rows.clone(memory_format=torch.contiguous_format)


def check_slices(slices: object, popsize: int) -> int:
    if isinstance(slices, bool) or not isinstance(slices, int) or not 1 <= slices <= popsize:
        raise ConfigError(f"slices must be an integer in [1, popsize={popsize}], got {slices!r}")
    return int(slices)


@dataclass(frozen=True)
class Shard:
    """The slices one process of ``world`` holds (rank r: slices [r·S/W, (r+1)·S/W)) and its collectives.

    ``gather(parts)``: this rank's (S/W, ...) per-slice tensor -> every rank's, (S, ...) in slice
    order. ``broadcast(tensor, src)``: ``tensor`` as rank ``src`` holds it.
    """

    rank: int
    world: int
    slices: int
    gather: Callable[[torch.Tensor], torch.Tensor]
    broadcast: Callable[[torch.Tensor, int], torch.Tensor]

    def __post_init__(self) -> None:
        if self.world < 1 or not 0 <= self.rank < self.world:
            raise ConfigError(f"rank {self.rank} is not one of {self.world} processes")
        if self.slices % self.world:
            raise ConfigError(f"the population is drawn in {self.slices} slices, which {self.world} processes "
                              f"cannot share evenly: set the strategy option slices to a multiple of {self.world} "
                              f"(e.g. --es-opt slices={self.world})")

    @property
    def owned(self) -> range:
        per = self.slices // self.world
        return range(self.rank * per, (self.rank + 1) * per)

    def owner_of_slice(self, k: int) -> int:
        return k // (self.slices // self.world)
