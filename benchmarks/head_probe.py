"""Why is the fused block head slower than the dense one? Times ``ops.upsample_argmax`` on
SwiftNet's logits (19 classes, stride 4, 2048x1024, block size 128) for all-high-res,
40% and all-low-res grids, channels_last and NCHW logits, against ``upsample_argmax_dense``.

    python benchmarks/head_probe.py
"""

from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from benchmarks.bench_gpu import fixed_grid, time_fn  # noqa: E402
from segblocks_core import ops  # noqa: E402
from segblocks_core.layout import BlockLayout, BlockTensor  # noqa: E402


def main() -> int:
    dev = torch.device("cuda")
    print(f"{torch.cuda.get_device_name()}  torch {torch.__version__}")
    dense = torch.randn(1, 19, 256, 512, device=dev, dtype=torch.half)
    for fmt in (torch.channels_last, torch.contiguous_format):
        d = dense.contiguous(memory_format=fmt)
        t = time_fn(lambda: ops.upsample_argmax_dense(d, 4), 200)
        print(f"dense {str(fmt):24s} {t * 1e3:7.1f} us")
    for frac in (1.0, 0.4, 0.0):
        grid, _ = fixed_grid(1, 8, 16, frac)
        layout = BlockLayout.from_grid(grid.to(dev), 128)
        for fmt in (torch.channels_last, torch.contiguous_format):
            hr = torch.randn(layout.num_highres, 19, 32, 32, device=dev, dtype=torch.half).contiguous(memory_format=fmt)
            lr = torch.randn(layout.num_lowres, 19, 16, 16, device=dev, dtype=torch.half).contiguous(memory_format=fmt)
            bt = BlockTensor(hr, lr, layout)
            t = time_fn(lambda: ops.upsample_argmax(bt, 4), 200)
            print(f"blocks {frac:4.0%} high-res {str(fmt):24s} {t * 1e3:7.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
