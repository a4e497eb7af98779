"""GPU timing shared by the fast path's measured choices and the benchmarks."""

from __future__ import annotations

import statistics
from typing import Callable

import torch

__all__ = ["cuda_median_ms"]


def cuda_median_ms(fn: Callable[[], object], reps: int = 5, warmup: int = 0) -> float:
    """Median wall time of ``fn()`` on the current CUDA stream in milliseconds, each call
    timed by its own pair of CUDA events (``warmup`` untimed calls first)."""
    for _ in range(warmup):
        fn()
    if warmup:
        torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)
