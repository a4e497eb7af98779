"""Where does the policy path's extra time go? (GraphedSegmenter, host-bucket mode)

Times, on the same GPU and frame: the policy graph alone, the bucket graph alone, the
whole run() (policy graph, count read, bucket graph), the fixed-layout graph of the same
capacity, and the complexity computation eagerly.

    python benchmarks/profile_policy.py [--model swiftnet_rn18] [--tau 0.3]
"""
import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from benchmarks.bench_gpu import _FixedLayoutGraph, randomize_bn, street_frames, time_fn  # noqa: E402
from segblocks_core import SegBlocks  # noqa: E402
from segblocks_core.engine import normalize  # noqa: E402
from segblocks_core.fastpath import GraphedSegmenter, prepare_network  # noqa: E402
from segblocks_core.layout import BlockLayout  # noqa: E402
from segblocks_core.models import build_model  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="swiftnet_rn18")
    ap.add_argument("--tau", type=float, default=0.3)
    args = ap.parse_args()
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")
    torch.manual_seed(0)
    fast = prepare_network(randomize_bn(build_model(args.model, 19).eval()), torch.float16, dev)
    sb = SegBlocks(fast)
    frames = torch.from_numpy(np.stack(street_frames(1, 1024, 2048))).to(dev)
    seg = GraphedSegmenter(fast, 1, 1024, 2048, tau=args.tau, segblocks=sb)
    seg.run(frames)
    torch.cuda.synchronize()
    count = int(seg.count)
    k = seg._bucket_capacity(count)
    print(f"count {count}, bucket {k} of {seg.total_blocks}, {len(seg._graphs)} bucket graphs")
    t_run = time_fn(lambda: seg.run(frames), 100)
    t_policy = time_fn(seg._policy_graph.replay, 100)
    t_bucket = time_fn(seg._graphs[k].replay, 100)
    layout = BlockLayout.from_grid(seg.grid.clone(), 128)
    fixed = _FixedLayoutGraph(sb, frames, layout)
    t_fixed = time_fn(fixed.replay, 100)
    x = normalize(frames, torch.float16, sb.in_channels)
    with torch.inference_mode():
        t_complexity = time_fn(lambda: seg.policy.complexity(x), 100)
        t_normalize = time_fn(lambda: normalize(frames, torch.float16, sb.in_channels), 100)
        t_layout = time_fn(lambda: BlockLayout.from_grid(seg._grid, 128, k, seg._complexity), 100)
    lagged = GraphedSegmenter(fast, 1, 1024, 2048, tau=args.tau, segblocks=sb, lagged=True)
    t_lagged = time_fn(lambda: lagged.run(frames), 100)
    print(f"lagged run() {t_lagged:.3f} ms with {int(lagged.grid.sum())} high-res blocks "
          f"(count + one bucket of headroom)")
    print(f"run() {t_run:.3f} ms | policy graph {t_policy:.3f} | bucket graph {t_bucket:.3f} | "
          f"fixed-layout graph (same blocks) {t_fixed:.3f} | eager: complexity {t_complexity:.3f}, "
          f"normalize {t_normalize:.3f}, layout {t_layout:.3f}")


if __name__ == "__main__":
    main()
