"""Do SegBlocks' deep-layer convolutions at batch 1 get faster split over K on two streams?

At batch 1 a units convolution of layer2-4 fills about half the H100's SMs, and its time is
one thread block's K loop, the same as the static network's (node_profile.py). Splitting
the input channels in two halves, each convolution on its own stream (two parallel graph
branches), then ``relu(a + b + bias + residual)`` in one elementwise pass, halves each
block's K loop. Times (CUDA graph of --reps calls, fp16 channels_last, cudnn.benchmark):

  one      cudnn_convolution_add_relu(x, w, z, 1, b)        (what the executor runs)
  split    two half-K convolutions on two streams + relu(a + b + b + z) (and the two alone)
  dense    the static network's convolution of the same layer, for scale

    python benchmarks/ksplit_probe.py [--units 281] [--reps 50]
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from segblocks_core.timing import cuda_graph_median_ms  # noqa: E402


def graph_time_us(fn, reps):
    return cuda_graph_median_ms(fn, reps) * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--units", type=int, default=281)  # 51 high-res blocks x 4 + 77 low-res
    ap.add_argument("--reps", type=int, default=50)
    args = ap.parse_args()
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")
    cl = torch.channels_last
    side = torch.cuda.Stream()
    print(torch.cuda.get_device_name(dev), torch.__version__)
    # (name, channels, unit side, dense map side h x w at batch 1)
    for name, c, u, hw in (("layer2", 128, 8, (128, 256)), ("layer3", 256, 4, (64, 128)),
                           ("layer4", 512, 2, (32, 64))):
        n = args.units
        x = torch.randn(n, c, u + 2, u + 2, device=dev, dtype=torch.half).to(memory_format=cl)
        xa = x[:, : c // 2].contiguous(memory_format=cl)
        xb = x[:, c // 2:].contiguous(memory_format=cl)
        w = (torch.randn(c, c, 3, 3, device=dev, dtype=torch.half) * 0.02).to(memory_format=cl)
        wa = w[:, : c // 2].contiguous(memory_format=cl)
        wb = w[:, c // 2:].contiguous(memory_format=cl)
        b = torch.randn(c, device=dev, dtype=torch.half)
        z = torch.randn(n, c, u, u, device=dev, dtype=torch.half).to(memory_format=cl)
        dx = torch.randn(1, c, *hw, device=dev, dtype=torch.half).to(memory_format=cl)
        dz = torch.randn(1, c, *hw, device=dev, dtype=torch.half).to(memory_format=cl)
        p0, s1, d1 = (0, 0), (1, 1), (1, 1)

        def one():
            return torch.cudnn_convolution_add_relu(x, w, z, 1.0, b, s1, p0, d1, 1)

        def split(epilogue=True):
            main = torch.cuda.current_stream()
            side.wait_stream(main)
            with torch.cuda.stream(side):
                a = torch.cudnn_convolution(xa, wa, p0, s1, d1, 1, False, False, False)
            bb = torch.cudnn_convolution(xb, wb, p0, s1, d1, 1, False, False, False)
            main.wait_stream(side)
            a.record_stream(main)
            if not epilogue:
                return a
            return torch.relu_(a.add_(bb).add_(z).add_(b.view(1, -1, 1, 1)))

        def dense():
            return torch.cudnn_convolution_add_relu(dx, w, dz, 1.0, b, s1, (1, 1), d1, 1)

        with torch.inference_mode():
            err = (one().float() - split().float()).abs().max().item()
            t1, t2, td = graph_time_us(one, args.reps), graph_time_us(split, args.reps), graph_time_us(dense, args.reps)
            t3 = graph_time_us(lambda: split(False), args.reps)
        print(f"{name}: {n} units {c}ch {u}x{u}: one {t1:6.1f} us  split {t2:6.1f} us (convs only {t3:6.1f})  "
              f"dense {td:6.1f} us  "
              f"(max diff {err:.2e})")


if __name__ == "__main__":
    main()
