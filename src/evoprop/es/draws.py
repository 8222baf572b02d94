"""Large standard-normal draws on the CPU, filled by parallel seeded streams.

PyTorch's CPU ``normal_`` runs one serial Mersenne Twister while the other cores sit idle
(BENCHMARKS.md has the timings). A CPU draw of at least ``PARALLEL_DRAW_MIN`` values is
therefore split into ``DRAW_STREAMS`` blocks, each filled by its own generator, seeded from
the strategy's, in a thread pool. The block count is fixed, so the samples do not depend on
how many threads fill them.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch

__all__ = ["DRAW_STREAMS", "PARALLEL_DRAW_MIN", "parallel_normal"]

PARALLEL_DRAW_MIN = 1 << 22
DRAW_STREAMS = 8
_draw_pool: ThreadPoolExecutor | None = None
_stream_generators: list[torch.Generator] = []


def parallel_normal(buf: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Fill the contiguous CPU tensor ``buf`` with N(0, 1) from DRAW_STREAMS seeded streams."""
    global _draw_pool
    seeds = torch.randint(0, 2**62, (DRAW_STREAMS,), generator=generator).tolist()
    if _draw_pool is None:
        _draw_pool = ThreadPoolExecutor(max_workers=max(1, min(DRAW_STREAMS, torch.get_num_threads())),
                                        thread_name_prefix="evoprop-draw")
        _stream_generators.extend(torch.Generator() for _ in range(DRAW_STREAMS))
    blocks = buf.view(-1).chunk(DRAW_STREAMS)

    def fill(i: int) -> None:  # normal_ releases the GIL: the blocks really fill in parallel
        _stream_generators[i].manual_seed(seeds[i])
        blocks[i].normal_(generator=_stream_generators[i])

    list(_draw_pool.map(fill, range(len(blocks))))
    return buf
