"""Probe: are cuDNN's fused conv+bias+ReLU(+residual) ops faster than conv, add, ReLU?

Times, for SwiftNet-RN18 conv shapes (dense 1024x2048 and 128-px block stacks), fp16
channels_last on CUDA:
  unfused  relu(conv(x, w) + b)            vs  torch.cudnn_convolution_relu
  unfused  relu(conv(x, w) + b + z)        vs  torch.cudnn_convolution_add_relu
and checks that the fused results match.

    python benchmarks/fusion_probe.py
"""
import sys
import os

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from benchmarks.bench_gpu import time_fn  # noqa: E402

SHAPES = [  # (N, C_in, H, W, C_out, k, stride, pad)
    (1, 64, 256, 512, 64, 3, 1, 1),
    (1, 128, 128, 256, 128, 3, 1, 1),
    (1, 256, 64, 128, 256, 3, 1, 1),
    (1, 512, 32, 64, 512, 3, 1, 1),
    (51, 64, 34, 34, 64, 3, 1, 0),
    (77, 64, 18, 18, 64, 3, 1, 0),
    (51, 128, 18, 18, 128, 3, 1, 0),
    (51, 256, 10, 10, 256, 3, 1, 0),
    (51, 512, 6, 6, 512, 3, 1, 0),
]


def main():
    torch.backends.cudnn.benchmark = True
    dev = "cuda"
    cl = torch.channels_last
    print(f"{'shape':42s} {'conv+b+relu':>11s} {'fused':>8s} {'conv+b+z+relu':>13s} {'fused':>8s} {'conv only':>9s}")
    for n, ci, h, w, co, k, s, p in SHAPES:
        x = torch.randn(n, ci, h, w, device=dev, dtype=torch.half).contiguous(memory_format=cl)
        wt = (torch.randn(co, ci, k, k, device=dev, dtype=torch.half) * 0.05).contiguous(memory_format=cl)
        b = torch.randn(co, device=dev, dtype=torch.half)
        with torch.inference_mode():
            z = torch.randn_like(F.conv2d(x, wt, None, s, p)).contiguous(memory_format=cl)
            ref1 = F.relu(F.conv2d(x, wt, b, s, p))
            got1 = torch.cudnn_convolution_relu(x, wt, b, (s, s), (p, p), (1, 1), 1)
            ref2 = F.relu(F.conv2d(x, wt, b, s, p) + z)
            got2 = torch.cudnn_convolution_add_relu(x, wt, z, 1.0, b, (s, s), (p, p), (1, 1), 1)
            e1 = ((got1.float() - ref1.float()).norm() / ref1.float().norm()).item()
            e2 = ((got2.float() - ref2.float()).norm() / ref2.float().norm()).item()
            t_conv = time_fn(lambda: F.conv2d(x, wt, None, s, p), 50)
            t1 = time_fn(lambda: F.relu(F.conv2d(x, wt, b, s, p)), 50)
            t1f = time_fn(lambda: torch.cudnn_convolution_relu(x, wt, b, (s, s), (p, p), (1, 1), 1), 50)
            t2 = time_fn(lambda: F.relu(F.conv2d(x, wt, b, s, p) + z), 50)
            t2f = time_fn(lambda: torch.cudnn_convolution_add_relu(x, wt, z, 1.0, b, (s, s), (p, p), (1, 1), 1), 50)
        print(f"{str((n, ci, h, w, co, k, s, p)):42s} {t1 * 1e3:9.1f}us {t1f * 1e3:6.1f}us {t2 * 1e3:11.1f}us "
              f"{t2f * 1e3:6.1f}us {t_conv * 1e3:7.1f}us  err {e1:.1e} {e2:.1e}  fused-out-cl {got1.is_contiguous(memory_format=cl)}")


if __name__ == "__main__":
    main()
