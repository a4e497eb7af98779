"""How long does the fast path take to capture its graphs (the node's first frame of a size)?

Builds the node's graphed segmenter (``GraphedSegmenter``: policy, every bucket, the
dense shortcut) and the dense baseline for one network, batch and image size, in a fresh
process, and reports the wall time of each construction, the steady-state frame time and
the input normalisation's time alone. cuDNN's benchmark results are cached per process,
so compare numbers of separate runs: ``--cudnn-benchmark-limit 10`` (torch's default)
against ``0`` (every configuration, the default since 2026-11-26).

    python benchmarks/capture_probe.py [--model swiftnet_rn18] [--batch 1] [--cudnn-benchmark-limit 0] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from benchmarks.bench_gpu import prepared_segblocks, time_fn  # noqa: E402
from benchmarks.probe_json import write_probe_json  # noqa: E402
from segblocks_core.engine import normalize  # noqa: E402
from segblocks_core.fastpath import GraphedSegmenter  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="swiftnet_rn18")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--height", type=int, default=1024)
    ap.add_argument("--width", type=int, default=2048)
    ap.add_argument("--tau", type=float, default=0.3)
    ap.add_argument("--cudnn-benchmark-limit", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    sb, frames = prepared_segblocks(args.model, args.batch, args.height, args.width)
    fast = sb.net
    row = {"model": args.model, "batch": args.batch, "cudnn_benchmark_limit": args.cudnn_benchmark_limit}
    for name, kwargs in (("dense", {"dense": True}), ("segblocks", {"tau": args.tau})):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        seg = GraphedSegmenter(fast, args.batch, args.height, args.width, segblocks=sb,
                               cudnn_benchmark_limit=args.cudnn_benchmark_limit, **kwargs)
        torch.cuda.synchronize()
        row[f"{name}_capture_s"] = time.perf_counter() - t0
        row[f"{name}_frame_ms"] = time_fn(lambda: seg.run(frames), 50)
        del seg
    row["normalize_us"] = time_fn(lambda: normalize(frames, torch.float16, sb.in_channels), 100) * 1e3
    print(torch.cuda.get_device_name(), torch.__version__, json.dumps(row), flush=True)
    write_probe_json(args.json, **row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
