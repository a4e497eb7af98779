"""What is alive at the peak of GPU memory? (issue 6's memory goal)

Runs one eager pass of the static best and of SegBlocks at a fixed high-res fraction
exactly as ``bench_gpu.py`` measures memory (``labels`` of the prepared fp16 network on the
normalised input, which is not counted), with the CUDA caching allocator's history on.
Replays the allocation trace to the peak of allocated bytes and lists the allocations
alive there, largest first, each with the line of the plan (or library) that made it.

    python benchmarks/memory_probe.py [--model swiftnet_rn18] [--fraction 0.4] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import linecache
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from benchmarks.bench_gpu import add_setup_args, fixed_layout_setup  # noqa: E402
from segblocks_core.executor import pooling_tiles  # noqa: E402

_SKIP = ("torch/", "contextlib", "functools", "<frozen")


def _origin(frames: list[dict]) -> str:
    """The innermost frame outside torch itself: the plan's line or our own code."""
    for f in frames:
        name = f.get("filename", "")
        if name.endswith((".cpp", ".h", ".cu", ".cuh")) or "??" in name or any(s in name for s in _SKIP):
            continue
        line = linecache.getline(name, f.get("line", 0)).strip()
        return f"{os.path.basename(name)}:{f.get('line')} {f.get('name')}: {line}"[:160]
    return "?"


def live_at_peak(fn) -> tuple[float, list[dict]]:
    """Run ``fn`` with allocation history; the peak of bytes allocated during it (MB, above
    what was allocated before) and the allocations alive at that peak."""
    torch.cuda.synchronize()
    torch.cuda.memory._record_memory_history(max_entries=200000, stacks="python")
    try:
        fn()
        torch.cuda.synchronize()
        snap = torch.cuda.memory._snapshot()
    finally:
        torch.cuda.memory._record_memory_history(enabled=None)
    trace = snap["device_traces"][torch.cuda.current_device()]
    live: dict[int, dict] = {}
    total = peak = 0
    at_peak: list[dict] = []
    for ev in trace:
        if ev["action"] == "alloc":
            live[ev["addr"]] = ev
            total += ev["size"]
            if total > peak:
                peak, at_peak = total, list(live.values())
        elif ev["action"] == "free_requested" and ev["addr"] in live:
            total -= live.pop(ev["addr"])["size"]
    rows = [{"mb": ev["size"] / 2**20, "origin": _origin(ev.get("frames", []))}
            for ev in sorted(at_peak, key=lambda e: -e["size"])]
    return peak / 2**20, rows


def main() -> None:
    ap = argparse.ArgumentParser()
    add_setup_args(ap)
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--no-pooling-tiles", dest="pooling_tiles", action="store_false",
                    help="SegBlocks' max pooling writes packed units, not layer 1's first padded tiles "
                         "(executor.pooling_tiles)")
    args = ap.parse_args()
    sb, xh, layout = fixed_layout_setup(args)
    dev = xh.device
    result = {"gpu": torch.cuda.get_device_name(dev), "torch": torch.__version__, "model": args.model,
              "batch": args.batch, "fraction": args.fraction, "pooling_tiles": args.pooling_tiles, "runs": {}}
    with torch.inference_mode(), pooling_tiles(args.pooling_tiles):
        for name, fn in (("static", lambda: sb.labels(xh)),
                         ("segblocks", lambda: sb.labels(xh, layout=layout))):
            for _ in range(2):  # warm-up: cuDNN autotuning, lazy constants
                fn()
            peak, rows = live_at_peak(fn)
            result["runs"][name] = {"peak_mb": peak, "live_at_peak": rows}
            print(f"\n{name}: peak {peak:.1f} MB above the input; alive at the peak:")
            for r in rows[:args.top]:
                print(f"  {r['mb']:8.2f} MB  {r['origin']}")
    s, b = result["runs"]["segblocks"]["peak_mb"], result["runs"]["static"]["peak_mb"]
    print(f"\nsegblocks / static: {s / b:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
