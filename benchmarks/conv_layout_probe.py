"""How fast does cuDNN run SegBlocks' block convolutions, per memory layout of the blocks?

For every convolution shape of SwiftNet-RN18's encoder at 2048x1024 with 40% high-res blocks
(51 of 128 blocks high-res, 77 low-res, block size 128), times one convolution (CUDA graph of
``--reps`` calls, fp16, channels_last, cudnn.benchmark) over

- ``dense``:  the full-resolution map, zero padding by cuDNN (what the static network runs);
- ``batch``:  the padded blocks as a batch ``[N, C, b+2p, b+2p]``, no padding (what the
              executor runs today);
- ``mosaic``: the same padded blocks side by side in one row ``[1, C, b+2p, N*(b+2p)]``, no
              padding; outputs straddling two blocks are discarded.

and, for the 7x7 stem, the 3-channel input padded to 4 and 8 channels (zero channels).

    python benchmarks/conv_layout_probe.py [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from segblocks_core.timing import cuda_graph_median_ms  # noqa: E402
from probe_json import write_probe_json  # noqa: E402  (this folder: the script's own)

HR, LR, BLOCK = 51, 77, 128
H, W = 1024, 2048


def graph_ms(fn, reps: int) -> float:
    return cuda_graph_median_ms(fn, reps, trials=15)


def conv_ms(shape, cin, cout, k, stride, pad, reps):
    x = torch.randn(shape, device="cuda", dtype=torch.half).contiguous(memory_format=torch.channels_last)
    w = torch.randn(cout, cin, k, k, device="cuda", dtype=torch.half).contiguous(memory_format=torch.channels_last)
    return graph_ms(lambda: F.conv2d(x, w, None, stride, pad), reps)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.backends.cudnn.benchmark = True
    # (name, cin, cout, k, stride, block side at the conv's input (hr), dense map (h, w))
    layers = [
        ("stem 7x7/2", 3, 64, 7, 2, BLOCK, (H, W)),
        ("layer1 3x3", 64, 64, 3, 1, 32, (H // 4, W // 4)),
        ("layer2 3x3/2", 64, 128, 3, 2, 32, (H // 4, W // 4)),
        ("layer2 3x3", 128, 128, 3, 1, 16, (H // 8, W // 8)),
        ("layer3 3x3", 256, 256, 3, 1, 8, (H // 16, W // 16)),
        ("layer4 3x3", 512, 512, 3, 1, 4, (H // 32, W // 32)),
        ("decoder blend 3x3 s4", 128, 128, 3, 1, 32, (H // 4, W // 4)),
    ]
    rows = []
    print(f"{torch.cuda.get_device_name()}  torch {torch.__version__}  hr {HR} lr {LR} blocks")
    for name, cin, cout, k, stride, side, (dh, dw) in layers:
        p = k // 2
        chans = [cin] if cin != 3 else [3, 4, 8]
        for c in chans:
            dense = conv_ms((1, c, dh, dw), c, cout, k, stride, p, args.reps)
            per = {}
            for tag, n, s in (("hr", HR, side), ("lr", LR, side // 2)):
                sp = s + 2 * p
                per[f"batch_{tag}"] = conv_ms((n, c, sp, sp), c, cout, k, stride, 0, args.reps)
                per[f"mosaic_{tag}"] = conv_ms((1, c, sp, n * sp), c, cout, k, stride, 0, args.reps)
            row = {"layer": name, "channels_in": c, "dense_ms": dense, **per,
                   "batch_ms": per["batch_hr"] + per["batch_lr"],
                   "mosaic_ms": per["mosaic_hr"] + per["mosaic_lr"]}
            rows.append(row)
            print(f"{name:22s} cin {c:3d}  dense {dense * 1e3:7.1f} us   batch {row['batch_ms'] * 1e3:7.1f} us"
                  f" (hr {per['batch_hr'] * 1e3:6.1f} lr {per['batch_lr'] * 1e3:6.1f})   mosaic"
                  f" {row['mosaic_ms'] * 1e3:7.1f} us (hr {per['mosaic_hr'] * 1e3:6.1f} lr {per['mosaic_lr'] * 1e3:6.1f})")
    write_probe_json(args.json, rows=rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
