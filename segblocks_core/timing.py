"""GPU timing shared by the fast path's measured choices and the benchmarks."""

from __future__ import annotations

import statistics
from typing import Callable

import torch

__all__ = ["cuda_median_ms", "cuda_graph_median_ms"]


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


def cuda_graph_median_ms(fn: Callable[[], object], reps: int = 50, trials: int = 7) -> float:
    """Milliseconds per call of ``fn()`` captured ``reps`` times into one CUDA graph: the
    median over ``trials`` replays, each timed by CUDA events (kernel time and the graph's
    launch gaps, without the host's per-call overhead). Warms up on a side stream first (a
    capture must not be the first call: cuDNN picks its algorithms then)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(reps):
            fn()
    times = []
    for _ in range(trials):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / reps)
    return statistics.median(times)
