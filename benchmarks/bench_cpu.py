"""CPU benchmark: SegBlocks-RN18 with 40% high-res blocks vs the dense SwiftNet-RN18.

Measures one frame of 1024x512 (batch 1) in eval mode under ``torch.no_grad()`` with
``torch.set_num_threads(2)`` (the CI / development machines), random weights, block size
128 (a 4x8 grid, 13 of 32 blocks high-res, chosen by a fixed seed). Dense and block runs
alternate so drift affects both equally; each trial compares the medians of its runs, and
the reported ratio is the median over trials (the machine's speed drifts between trials;
every trial is recorded). The block time includes building the frame's BlockLayout
(``sb(x, grid)``), not the complexity policy.

Goal (issue 3): ratio <= 0.70. Writes ``benchmarks/results/cpu-<date>.json``.

Usage::

    python benchmarks/bench_cpu.py                  # NCHW, native kernels
    python benchmarks/bench_cpu.py --channels-last  # NHWC for both networks
    python benchmarks/bench_cpu.py --profile        # where the block run spends its time
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import segblocks_core  # noqa: E402
from segblocks_core.models import swiftnet_rn18  # noqa: E402
from segblocks_core.ops import use_backend  # noqa: E402


def fixed_grid(grid_shape, fraction: float, seed: int) -> torch.Tensor:
    """Bool grid with round(fraction * cells) high-res blocks at seeded random places."""
    n, gh, gw = grid_shape
    cells = n * gh * gw
    k = round(fraction * cells)
    gen = torch.Generator().manual_seed(seed)
    grid = torch.zeros(cells, dtype=torch.bool)
    grid[torch.randperm(cells, generator=gen)[:k]] = True
    return grid.view(n, gh, gw)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--block-size", type=int, default=128)
    parser.add_argument("--fraction", type=float, default=0.4, help="fraction of high-res blocks")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7, help="runs of each network per trial")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--backend", choices=("native", "reference"), default="native")
    parser.add_argument("--profile", action="store_true", help="print a torch.profiler table of the block run")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    net = swiftnet_rn18().eval().to(memory_format=fmt)
    x = torch.randn(1, 3, args.height, args.width).contiguous(memory_format=fmt)
    sb = segblocks_core.SegBlocks(net, block_size=args.block_size)
    grid = fixed_grid(sb.grid_shape(x.shape), args.fraction, args.seed)
    macs = segblocks_core.count_macs(sb, x, grid)

    def dense():
        return net(x)

    def blocks():
        return sb(x, grid)

    trials = []  # per trial: {"dense": [ms...], "segblocks": [ms...]}
    load_before = os.getloadavg()[0]
    with torch.no_grad(), use_backend(args.backend):
        for _ in range(args.warmup):
            dense()
            blocks()
        for _ in range(args.trials):
            times = {"dense": [], "segblocks": []}
            for _ in range(args.repeats):
                for name, fn in (("dense", dense), ("segblocks", blocks)):
                    start = time.perf_counter()
                    fn()
                    times[name].append((time.perf_counter() - start) * 1e3)
            trials.append(times)
        if args.profile:
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU]) as prof:
                blocks()
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                dense()
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))
    load_after = os.getloadavg()[0]

    per_trial = [{"dense_ms_median": round(statistics.median(t["dense"]), 2),
                  "segblocks_ms_median": round(statistics.median(t["segblocks"]), 2),
                  "ratio": round(statistics.median(t["segblocks"]) / statistics.median(t["dense"]), 4),
                  "dense_ms_runs": [round(v, 2) for v in t["dense"]],
                  "segblocks_ms_runs": [round(v, 2) for v in t["segblocks"]]} for t in trials]
    ratio = statistics.median(t["ratio"] for t in per_trial)
    dense_ms = statistics.median(t["dense_ms_median"] for t in per_trial)
    block_ms = statistics.median(t["segblocks_ms_median"] for t in per_trial)
    result = {
        "benchmark": "SegBlocks-RN18 vs dense SwiftNet-RN18, CPU",
        "date": dt.date.today().isoformat(),
        "torch": torch.__version__,
        "cpu": cpu_model(),
        "threads": args.threads,
        "input": [1, 3, args.height, args.width],
        "memory_format": "channels_last" if args.channels_last else "contiguous",
        "block_size": args.block_size,
        "highres_blocks": int(grid.sum()),
        "blocks": grid.numel(),
        "backend": segblocks_core.backend("cpu") if args.backend == "native" else "reference",
        "dense_ms_median": round(dense_ms, 2),
        "segblocks_ms_median": round(block_ms, 2),
        "ratio": round(ratio, 4),
        "ratio_per_trial": [t["ratio"] for t in per_trial],
        "goal_ratio": 0.70,
        "effective_gmacs": round(macs.effective.item() / 1e9, 3),
        "executed_gmacs": round(macs.executed.item() / 1e9, 3),
        "dense_gmacs": round(macs.dense.item() / 1e9, 3),
        # other processes on the machine distort the timings: 1-minute load averages
        "loadavg_1min_before_after": [round(load_before, 2), round(load_after, 2)],
        "trials": per_trial,
        "command": "python benchmarks/bench_cpu.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    print(f"dense      {dense_ms:8.1f} ms (median of {args.trials} trials x {args.repeats} runs)")
    print(f"segblocks  {block_ms:8.1f} ms ({result['highres_blocks']}/{result['blocks']} high-res blocks, "
          f"{args.backend} ops)")
    print(f"ratio      {result['ratio']:.3f}  per trial {result['ratio_per_trial']}  (goal <= 0.70; MAC ratio effective "
          f"{result['effective_gmacs'] / result['dense_gmacs']:.3f}, executed "
          f"{result['executed_gmacs'] / result['dense_gmacs']:.3f})")
    if max(load_before, load_after) > args.threads + 0.5:
        print(f"WARNING: load average {load_before:.1f} -> {load_after:.1f} on {os.cpu_count()} CPUs: "
              f"other processes compete for the CPU, timings are unreliable")
    if not args.no_write:
        args.out.mkdir(parents=True, exist_ok=True)
        suffix = "-channels_last" if args.channels_last else ""
        path = args.out / f"cpu-{result['date']}{suffix}.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
