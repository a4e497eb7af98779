"""Would layer1 be faster if its maps stayed in padded tiles? (fp16 channels_last,
cudnn.benchmark, CUDA graphs of the calls, SwiftNet-RN18's layer1 on units at 2048x1024.)

Today every layer1 convolution reads tiles [U, 64, 18, 18] that BlockPad copied from the
units [U, 64, 16, 16] of the previous one (about 9 us at batch 1, 34 us at batch 4 per
convolution). If instead each convolution ran with padding 1 on the padded tiles, its
output would have the tiles' shape: the interiors are the right values and only the 1-px
frames need BlockPad's values (a ring pass, in place). That costs the frames' outputs
(18^2 / 16^2 = 1.27x the multiply-adds) and saves the copy. Timed here:

  pad0        conv + bias + ReLU, padding 0: [U, 64, 18, 18] -> [U, 64, 16, 16] (today)
  pad0+z      the same with the residual added ([U, 64, 16, 16])
  pad1        padding 1: [U, 64, 18, 18] -> [U, 64, 18, 18] (resident tiles)
  pad1+z      the same with the residual in tiles ([U, 64, 18, 18])
  copy        writing units into the interiors of tiles (a lower bound of BlockPad's pass)
  ds          layer2's 1x1 stride-2 downsample on units, against a gather of the tiles'
              interior at stride 2 plus the 1x1 convolution on the gathered pixels

    python benchmarks/resident_probe.py [--blocks 128] [--fraction 0.4] [--json out.json]
"""
import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from segblocks_core.fused import conv_bias_relu  # noqa: E402
from segblocks_core.timing import cuda_graph_median_ms  # noqa: E402
from probe_json import write_probe_json  # noqa: E402  (this folder: the script's own)


def time_us(fn):
    return cuda_graph_median_ms(fn) * 1e3


def nhwc(*shape, dev):
    return torch.randn(*shape, device=dev, dtype=torch.half).to(memory_format=torch.channels_last)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--blocks", type=int, default=128, help="blocks per image (2048x1024, side 128)")
    ap.add_argument("--fraction", type=float, default=0.4)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")
    w = nhwc(64, 64, 3, 3, dev=dev) * 0.05
    b = torch.randn(64, device=dev, dtype=torch.half)
    wd = nhwc(128, 64, 1, 1, dev=dev) * 0.1
    rows = []
    print(torch.cuda.get_device_name(dev), torch.__version__)
    with torch.inference_mode():
        for batch in (1, 4):
            total = args.blocks * batch
            nh = round(total * args.fraction)
            units = 4 * nh + (total - nh)
            tiles = nhwc(units, 64, 18, 18, dev=dev)
            inner = nhwc(units, 64, 16, 16, dev=dev)
            z16 = nhwc(units, 64, 16, 16, dev=dev)
            z18 = nhwc(units, 64, 18, 18, dev=dev)
            dense = nhwc(batch, 64, 256, 512, dev=dev)
            zd = nhwc(batch, 64, 256, 512, dev=dev)
            # the resident convolution's interiors are the plain convolution's outputs
            r0 = conv_bias_relu(tiles, w, b, 1, 0, 1, 1, z16)
            r1 = conv_bias_relu(tiles, w, b, 1, 1, 1, 1, z18)
            err = (r1[:, :, 1:17, 1:17].float() - F.relu(F.conv2d(tiles.float(), w.float(), b.float())
                                                         + z18[:, :, 1:17, 1:17].float())).abs().max().item()
            assert (r0.float() - F.relu(F.conv2d(tiles.float(), w.float(), b.float()) + z16.float())
                    ).abs().max().item() < 0.05
            row = {
                "batch": batch, "units": units,
                "dense_us": time_us(lambda: conv_bias_relu(dense, w, b, 1, 1, 1, 1, None)),
                "dense_z_us": time_us(lambda: conv_bias_relu(dense, w, b, 1, 1, 1, 1, zd)),
                "pad0_us": time_us(lambda: conv_bias_relu(tiles, w, b, 1, 0, 1, 1, None)),
                "pad0_z_us": time_us(lambda: conv_bias_relu(tiles, w, b, 1, 0, 1, 1, z16)),
                "pad1_us": time_us(lambda: conv_bias_relu(tiles, w, b, 1, 1, 1, 1, None)),
                "pad1_z_us": time_us(lambda: conv_bias_relu(tiles, w, b, 1, 1, 1, 1, z18)),
                "copy_us": time_us(lambda: tiles[:, :, 1:17, 1:17].copy_(inner)),
                "ds_units_us": time_us(lambda: F.conv2d(inner, wd, stride=2)),
                "ds_gather_us": time_us(lambda: F.conv2d(
                    tiles[:, :, 1:17:2, 1:17:2].contiguous(memory_format=torch.channels_last), wd)),
                "pad1_interior_max_err": err,
            }
            rows.append(row)
            print(" ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
    write_probe_json(args.json, fraction=args.fraction, rows=rows)


if __name__ == "__main__":
    main()
