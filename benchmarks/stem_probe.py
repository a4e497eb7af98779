"""How fast can the stem's low-res half run? (7x7 stride-2 convolution, 4 -> 64 channels,
fp16 channels_last, cudnn.benchmark.) Times, per batch of low-res blocks of side 64:

  tiles    [N, 4, 70, 70] padding 0 (what the executor runs: BlockPad'ed whole blocks)
  canvas   the same tiles side by side, one image [1, 4, 70, 70 N]: output columns
           35 t + j (j < 32) are tile t's, 3 per tile are dropped (a strided view)
  tall     the tiles stacked, one image [1, 4, 70 N, 70]: the tiles' own memory (no copy),
           output rows 35 t + j (j < 32) are tile t's
  units    [N, 4, 70, 70] as above next to the high-res half as quarters
and the high-res half [Nh, 4, 134, 134] for scale.

Space-to-depth (``s2d``): a 7x7 stride-2 convolution of a [N, 4, H, W] map is a 4x4 stride-1
convolution of its 2x2 space-to-depth [N, 16, H/2, W/2] (channel 8 dy + 4 dx + c) with the
kernel zero-padded to 8x8 and rearranged the same way: 1.3x the multiply-adds, as a plain
implicit GEMM with K = 256. Timed for the low-res tiles, the high-res tiles and the dense
padded image (the kernel that writes the stem's input could write either layout).

    python benchmarks/stem_probe.py [--blocks 128] [--fraction 0.4]
"""
import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from segblocks_core.timing import cuda_graph_median_ms  # noqa: E402


def time_us(fn):
    return cuda_graph_median_ms(fn) * 1e3


def space_to_depth(x):
    """[N, C, H, W] (H, W even) -> [N, 4 C, H/2, W/2], channel 2 C dy + C dx + c, channels_last."""
    n, c, h, w = x.shape
    y = x.reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 3, 5, 1, 2, 4).reshape(n, 4 * c, h // 2, w // 2)
    return y.contiguous(memory_format=torch.channels_last)


def s2d_weight(w):
    """[O, C, 7, 7] -> [O, 4 C, 4, 4]: the stride-1 kernel of :func:`space_to_depth`'s map."""
    o, c = w.shape[:2]
    w8 = F.pad(w, (0, 1, 0, 1))
    w8 = w8.reshape(o, c, 4, 2, 4, 2).permute(0, 3, 5, 1, 2, 4).reshape(o, 4 * c, 4, 4)
    return w8.contiguous(memory_format=torch.channels_last)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--blocks", type=int, default=128)
    ap.add_argument("--fraction", type=float, default=0.4)
    args = ap.parse_args()
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")
    w = torch.randn(64, 4, 7, 7, device=dev, dtype=torch.half).to(memory_format=torch.channels_last)
    print(torch.cuda.get_device_name(dev), torch.__version__)
    for batch in (1, 4):
        total = args.blocks * batch
        nh = round(total * args.fraction)
        nl = total - nh
        hr = torch.randn(nh, 4, 134, 134, device=dev, dtype=torch.half).to(memory_format=torch.channels_last)
        lr = torch.randn(nl, 4, 70, 70, device=dev, dtype=torch.half).to(memory_format=torch.channels_last)
        units = torch.randn(4 * nh + nl, 4, 70, 70, device=dev, dtype=torch.half).to(
            memory_format=torch.channels_last)
        canvas = lr.permute(0, 2, 3, 1).permute(1, 0, 2, 3).reshape(70, nl * 70, 4).permute(2, 0, 1)[None]
        canvas = canvas.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            ref = F.conv2d(lr, w, stride=2)
            got = F.conv2d(canvas, w, stride=2)
            n_out = got.shape[3]
            assert got.is_contiguous(memory_format=torch.channels_last)
            view = got.as_strided((nl, 64, 32, 32), (35 * 64, 1, n_out * 64, 64))
            err = (view.float() - ref.float()).abs().max().item()
            t_hr = time_us(lambda: F.conv2d(hr, w, stride=2))
            t_lr = time_us(lambda: F.conv2d(lr, w, stride=2))
            t_canvas = time_us(lambda: F.conv2d(canvas, w, stride=2))
            t_units = time_us(lambda: F.conv2d(units, w, stride=2))
            tall_lr = lr.permute(0, 2, 3, 1).reshape(1, nl * 70, 70, 4).permute(0, 3, 1, 2)
            tall_hr = hr.permute(0, 2, 3, 1).reshape(1, nh * 134, 134, 4).permute(0, 3, 1, 2)
            assert tall_lr.data_ptr() == lr.data_ptr() and tall_lr.is_contiguous(memory_format=torch.channels_last)
            got_tall = F.conv2d(tall_lr, w, stride=2)
            rows = got_tall.shape[2]
            tall_view = got_tall.as_strided((nl, 64, 32, 32), (35 * 32 * 64, 1, 32 * 64, 64))
            err_tall = (tall_view.float() - ref.float()).abs().max().item()
            t_tall_lr = time_us(lambda: F.conv2d(tall_lr, w, stride=2))
            t_tall_hr = time_us(lambda: F.conv2d(tall_hr, w, stride=2))
            dense = torch.randn(batch, 4, 1024, 2048, device=dev, dtype=torch.half).to(
                memory_format=torch.channels_last)
            t_dense = time_us(lambda: F.conv2d(dense, w, stride=2, padding=3))
            w2 = s2d_weight(w)
            s2d = {}
            for name, x, ref_x, pad in (("low-res", lr, lr, 0), ("high-res", hr, hr, 0),
                                        ("dense", F.pad(dense, (3, 3, 3, 3)), dense, 3)):
                xs = space_to_depth(x)
                want = F.conv2d(ref_x, w, stride=2, padding=pad).float()
                got = F.conv2d(xs, w2).float()
                err_s = ((got - want).abs().max() / want.abs().max()).item()
                s2d[name] = (time_us(lambda: F.conv2d(xs, w2)), err_s)
        print(f"b{batch}: dense {t_dense:7.1f} us | high-res {nh} tiles {t_hr:7.1f} | low-res {nl} tiles "
              f"{t_lr:7.1f}, canvas {t_canvas:7.1f} (out width {n_out}, err {err:.1e}) | "
              f"units {4 * nh + nl} {t_units:7.1f} | tall: low-res {t_tall_lr:7.1f} (rows {rows}, err "
              f"{err_tall:.1e}), high-res {t_tall_hr:7.1f}")
        print(f"b{batch}: space-to-depth: " + " | ".join(f"{k} {t:7.1f} us (rel err {e:.1e})"
                                                         for k, (t, e) in s2d.items()))


if __name__ == "__main__":
    main()
