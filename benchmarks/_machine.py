"""What every benchmark prints beside its figures: the machine, and its measured matmul rate."""

from __future__ import annotations

import statistics
import time

import torch

from evoprop.device import describe_machine


def describe() -> str:
    """CPU model (or GPU name), cores, torch version and threads, Python, date."""
    m = describe_machine("auto")
    return (f"{m.get('gpu') or m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['threads']} threads), "
            f"Python {m['python']}, {time.strftime('%Y-%m-%d')}")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(m: int = 4096, k: int = 4096, n: int = 4096, *, dtype=torch.float32,
                  device: torch.device | str = "cpu", repeats: int = 5) -> float:
    """Median GFLOP/s of an (m x k) @ (k x n) product: the machine's practical matmul rate."""
    device = torch.device(device)
    a = torch.randn(m, k, dtype=dtype, device=device)
    b = torch.randn(k, n, dtype=dtype, device=device)
    a @ b  # warm-up
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        times.append(time.perf_counter() - start)
    return 2 * m * k * n / statistics.median(times) / 1e9


def timed(fn, repeats: int, device: torch.device | str = "cpu") -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn`` (after one warm-up call)."""
    device = torch.device(device)
    fn()
    out = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        out.append(time.perf_counter() - start)
    return out
