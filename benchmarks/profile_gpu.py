"""Where does the GPU time go? Kernel-level profile of one frame, SegBlocks vs static.

Profiles eager execution (torch.profiler, CUPTI) of the same prepared network, dense and in
blocks at fixed high-res fractions, and the CUDA-graph replay latency of each, and prints
per-op and per-kernel-category GPU time plus the kernel count. The difference between the
graph replay latency and the summed kernel time is the gap time between kernels.

    python benchmarks/profile_gpu.py [--model swiftnet_rn18] [--fractions 1.0,0.4] [--json out.json]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from benchmarks.bench_gpu import _FixedLayoutGraph, fixed_grid, randomize_bn, time_fn  # noqa: E402
from segblocks_core import SegBlocks  # noqa: E402
from segblocks_core.engine import normalize  # noqa: E402
from segblocks_core.fastpath import prepare_network  # noqa: E402
from segblocks_core.layout import BlockLayout  # noqa: E402
from segblocks_core.models import build_model  # noqa: E402

CATEGORIES = [
    ("segblocks", ("segblocks", "block_pad", "split_", "combine_")),
    ("conv", ("conv", "xmma", "cutlass", "sm90", "sm80", "implicit", "cudnn", "gemm", "wgrad", "dgrad")),
    ("upsample", ("upsample",)),
    ("argmax/reduce", ("reduce", "argmax", "arg")),
    ("pool", ("pool",)),
    ("cat", ("cat", "Cat")),
    ("copy", ("copy", "Copy", "memcpy", "Memcpy", "memset")),
    ("elementwise", ("elementwise", "vectorized", "unrolled")),
]


def category(name: str) -> str:
    for cat, keys in CATEGORIES:
        if any(k in name for k in keys):
            return cat
    return "other"


def profile(fn, label):
    from torch.profiler import ProfilerActivity, profile as prof
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    with prof(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU], record_shapes=True) as p:
        fn()
        torch.cuda.synchronize()
    kernels = [e for e in p.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    by_cat = collections.Counter()
    by_name = collections.Counter()
    count_cat = collections.Counter()
    for e in kernels:
        t = e.time_range.elapsed_us()
        by_cat[category(e.name)] += t
        count_cat[category(e.name)] += 1
        by_name[e.name[:90]] += t
    total = sum(by_cat.values())
    ops = []
    for a in p.key_averages(group_by_input_shape=True):
        t = getattr(a, "self_device_time_total", None)
        if t is None:
            t = a.self_cuda_time_total
        if t > 0:
            ops.append((a.key, str(a.input_shapes)[:160], a.count, t))
    ops.sort(key=lambda r: -r[3])
    print(f"\n== {label}: {len(kernels)} kernels, {total / 1000:.3f} ms summed kernel time")
    for cat, t in by_cat.most_common():
        print(f"   {cat:14s} {t / 1000:7.3f} ms  {count_cat[cat]:4d} kernels")
    print("   top ops (self device time):")
    for key, shapes, cnt, t in ops[:25]:
        print(f"   {t / 1000:7.3f} ms x{cnt:3d} {key:32s} {shapes}")
    return dict(label=label, kernels=len(kernels), kernel_ms=total / 1000,
                by_category={k: v / 1000 for k, v in by_cat.items()},
                count_by_category=dict(count_cat),
                top_kernels=[(n, t / 1000) for n, t in by_name.most_common(40)],
                top_ops=[(k, s, c, t / 1000) for k, s, c, t in ops[:60]])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="swiftnet_rn18")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--fractions", default="1.0,0.4,0.2")
    ap.add_argument("--height", type=int, default=1024)
    ap.add_argument("--width", type=int, default=2048)
    ap.add_argument("--json", default=None)
    ap.add_argument("--no-units", dest="units", action="store_false",
                    help="SegBlocks(units=False): separate high-res and low-res calls")
    args = ap.parse_args()
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")
    torch.manual_seed(0)
    net = randomize_bn(build_model(args.model, 19).eval())
    fast = prepare_network(net, torch.float16, dev)
    sb = SegBlocks(fast, units=args.units)
    frames = torch.randint(0, 256, (args.batch, args.height, args.width, 3), dtype=torch.uint8, device=dev)
    results = []
    with torch.inference_mode():
        xh = normalize(frames, torch.float16, sb.in_channels)

        def dense():
            return sb.labels(normalize(frames, torch.float16, sb.in_channels))
        r = profile(dense, "static fp16 NHWC folded")
        g = torch.cuda.CUDAGraph()
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            dense()
        torch.cuda.current_stream().wait_stream(s)
        with torch.cuda.graph(g):
            dense()
        r["graph_ms"] = time_fn(g.replay, 50)
        print(f"   graph replay {r['graph_ms']:.3f} ms")
        results.append(r)
        n, gh, gw = sb.grid_shape(xh.shape)
        for frac in [float(f) for f in args.fractions.split(",")]:
            grid, _ = fixed_grid(n, gh, gw, frac)
            layout = BlockLayout.from_grid(grid.to(dev), 128)

            def blocks():
                x = normalize(frames, torch.float16, sb.in_channels)
                return sb.labels(x, layout=layout)
            r = profile(blocks, f"segblocks {frac:.0%}")
            fixed = _FixedLayoutGraph(sb, frames, layout)
            r["graph_ms"] = time_fn(fixed.replay, 50)
            del fixed
            serial = _FixedLayoutGraph(sb, frames, layout, concurrent=False)
            r["graph_ms_one_stream"] = time_fn(serial.replay, 50)
            del serial
            print(f"   graph replay {r['graph_ms']:.3f} ms (low-res convs on a second stream), "
                  f"{r['graph_ms_one_stream']:.3f} ms (one stream)")
            results.append(r)
    out = dict(gpu=torch.cuda.get_device_name(), torch=torch.__version__, model=args.model,
               batch=args.batch, results=results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
