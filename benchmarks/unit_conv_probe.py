"""Would one convolution over equal-size "units" beat separate high-res and low-res calls?

At feature stride s a high-res block is h = B/s pixels and a low-res block h/2. Cut every
high-res block into its four h/2 quarters ("units") and both resolutions become tiles of
the same size, so one cuDNN call can run them all: ``[4*Nh + Nl, C, h/2 + 2p, h/2 + 2p]``.
The MACs are unchanged (no padding: only interior outputs are computed); the halo is
larger for the high-res part.

For every convolution of SwiftNet-RN18 at 2048x1024, 40% high-res (51 of 128 blocks), times
(CUDA graph of ``--reps`` calls, fp16, channels_last, cudnn.benchmark):
- ``dense``: the static network's convolution on the full map;
- ``split``: the executor today, the high-res and the low-res call;
- ``units``: one call on the units;
each the faster of conv + bias + ReLU fused by cuDNN (``cudnn_convolution_relu``, or
``cudnn_convolution_add_relu`` with a residual) and the unfused ops, as the executor picks.

    python benchmarks/unit_conv_probe.py [--json out.json]
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F

from conv_layout_probe import BLOCK, H, HR, LR, W, graph_ms
from probe_json import write_probe_json


def best_ms(shape, cin, cout, k, stride, pad, residual, reps):
    def t(*s):
        return torch.randn(s, device="cuda", dtype=torch.half).contiguous(memory_format=torch.channels_last)
    x, w = t(*shape), t(cout, cin, k, k)
    b = torch.randn(cout, device="cuda", dtype=torch.half)
    out = F.conv2d(x, w, b, stride, pad)
    z = t(*out.shape) if residual else None

    def unfused():
        y = F.conv2d(x, w, b, stride, pad)
        if z is not None:
            y = y + z
        return y.relu_()

    def fused():
        if z is None:
            return torch.cudnn_convolution_relu(x, w, b, (stride,) * 2, (pad,) * 2, (1, 1), 1)
        return torch.cudnn_convolution_add_relu(x, w, z, 1.0, b, (stride,) * 2, (pad,) * 2, (1, 1), 1)

    times = [graph_ms(unfused, reps)]
    try:
        times.append(graph_ms(fused, reps))
    except RuntimeError:
        pass
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.backends.cudnn.benchmark = True
    # (name, cin, cout, k, stride, hr block side at the conv's input, dense (h, w), residual, count in RN18)
    layers = [
        ("stem 7x7/2", 4, 64, 7, 2, BLOCK, (H, W), False, 1),
        ("layer1 3x3", 64, 64, 3, 1, 32, (H // 4, W // 4), False, 2),
        ("layer1 3x3 +res", 64, 64, 3, 1, 32, (H // 4, W // 4), True, 2),
        ("layer2 3x3/2", 64, 128, 3, 2, 32, (H // 4, W // 4), False, 1),
        ("layer2 3x3", 128, 128, 3, 1, 16, (H // 8, W // 8), False, 1),
        ("layer2 3x3 +res", 128, 128, 3, 1, 16, (H // 8, W // 8), True, 2),
        ("layer3 3x3/2", 128, 256, 3, 2, 16, (H // 8, W // 8), False, 1),
        ("layer3 3x3", 256, 256, 3, 1, 8, (H // 16, W // 16), False, 1),
        ("layer3 3x3 +res", 256, 256, 3, 1, 8, (H // 16, W // 16), True, 2),
        ("layer4 3x3/2", 256, 512, 3, 2, 8, (H // 16, W // 16), False, 1),
        ("layer4 3x3", 512, 512, 3, 1, 4, (H // 32, W // 32), False, 1),
        ("layer4 3x3 +res", 512, 512, 3, 1, 4, (H // 32, W // 32), True, 2),
        ("decoder blend s16", 128, 128, 3, 1, 8, (H // 16, W // 16), False, 1),
        ("decoder blend s8", 128, 128, 3, 1, 16, (H // 8, W // 8), False, 1),
        ("decoder blend s4", 128, 128, 3, 1, 32, (H // 4, W // 4), False, 1),
        ("layer2 downsample 1x1/2", 64, 128, 1, 2, 32, (H // 4, W // 4), False, 1),
        ("layer3 downsample 1x1/2", 128, 256, 1, 2, 16, (H // 8, W // 8), False, 1),
        ("layer4 downsample 1x1/2", 256, 512, 1, 2, 8, (H // 16, W // 16), False, 1),
        ("bottleneck s4 1x1", 64, 128, 1, 1, 32, (H // 4, W // 4), False, 1),
        ("bottleneck s8 1x1", 128, 128, 1, 1, 16, (H // 8, W // 8), False, 1),
        ("bottleneck s16 1x1", 256, 128, 1, 1, 8, (H // 16, W // 16), False, 1),
    ]
    rows = []
    tot = {"dense": 0.0, "split": 0.0, "units": 0.0}
    print(f"{torch.cuda.get_device_name()}  torch {torch.__version__}  hr {HR} lr {LR} blocks")
    for name, cin, cout, k, stride, side, (dh, dw), res, count in layers:
        p = k // 2
        dense = best_ms((1, cin, dh, dw), cin, cout, k, stride, p, res, args.reps)
        hr = best_ms((HR, cin, side + 2 * p, side + 2 * p), cin, cout, k, stride, 0, res, args.reps)
        lr = best_ms((LR, cin, side // 2 + 2 * p, side // 2 + 2 * p), cin, cout, k, stride, 0, res, args.reps)
        units = best_ms((4 * HR + LR, cin, side // 2 + 2 * p, side // 2 + 2 * p), cin, cout, k, stride, 0, res,
                        args.reps)
        row = {"layer": name, "count": count, "dense_ms": dense, "split_hr_ms": hr, "split_lr_ms": lr,
               "split_ms": hr + lr, "units_ms": units}
        rows.append(row)
        tot["dense"] += count * dense
        tot["split"] += count * (hr + lr)
        tot["units"] += count * units
        print(f"{name:20s} x{count}  dense {dense * 1e3:6.1f}  split {(hr + lr) * 1e3:6.1f} (hr {hr * 1e3:5.1f}"
              f" lr {lr * 1e3:5.1f})  units {units * 1e3:6.1f} us")
    print("totals (ms): " + "  ".join(f"{k} {v:.3f}" for k, v in tot.items()))
    write_probe_json(args.json, rows=rows, totals_ms=tot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
