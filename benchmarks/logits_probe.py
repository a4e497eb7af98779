"""What does the head cost with the logits' channels padded to a multiple of 8?

SwiftNet's logits have 19 channels: 38 bytes a pixel in channels_last, so no kernel can move
them in 16-byte packs. On the H100 (node profiles, RN18 batch 1 at 40%) SegBlocks' BlockPad
of the logits takes 12.6 us (one thread per element), the 1x1 logits convolution 21 us in
an align-1 kernel plus 5 us for its bias, the static side's 21 + 7 us. Padding the
convolution's output channels with zero weights (and zero bias) to 24 or 32 makes every
tensor of the head packable; the argmax then reads the first 19 channels of the padded
tiles (a channel-sliced view: the head kernels take strides).

Times, per batch (1 and 4) at 2048x1024, 40% high-res, block size 128, fp16 channels_last,
cudnn.benchmark on (CUDA graphs, median):

  conv      1x1 128 -> C convolution with bias, on the units [U, 128, 16, 16] and on the
            dense map [N, 128, 256, 512]
  pad       ops.block_pad_units(logits, 1, "replicate") of C-channel units
  argmax    ops.upsample_argmax_units_tensor of the first 19 channels of the padded tiles;
            dense: ops.upsample_argmax_dense of the first 19 channels
and whether the labels equal the 19-channel head's.

    python benchmarks/logits_probe.py [--json FILE]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from benchmarks.bench_gpu import fixed_grid  # noqa: E402
from benchmarks.probe_json import write_probe_json  # noqa: E402
from segblocks_core import ops  # noqa: E402
from segblocks_core.layout import BlockLayout, BlockTensor  # noqa: E402
from segblocks_core.timing import cuda_graph_median_ms  # noqa: E402

CLASSES, FEATURES = 19, 128


def us(fn) -> float:
    return cuda_graph_median_ms(fn) * 1e3


def padded_conv(weight: torch.Tensor, bias: torch.Tensor, channels: int):
    """The 1x1 convolution's weight and bias with zero output channels up to ``channels``."""
    extra = channels - weight.shape[0]
    w = torch.cat([weight, weight.new_zeros((extra,) + weight.shape[1:])])
    return w.contiguous(memory_format=torch.channels_last), torch.cat([bias, bias.new_zeros(extra)])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")
    cl = torch.channels_last
    print(torch.cuda.get_device_name(dev), torch.__version__)
    g = torch.Generator(device=dev).manual_seed(0)
    weight = (torch.randn(CLASSES, FEATURES, 1, 1, device=dev, generator=g) / FEATURES ** 0.5).half()
    bias = (torch.randn(CLASSES, device=dev, generator=g) * 0.1).half()
    result = {"rows": []}
    for batch in (1, 4):
        grid, _ = fixed_grid(batch, 8, 16, 0.4)
        layout = BlockLayout.from_grid(grid.to(dev), 128)
        units_in = torch.randn(4 * layout.num_highres + layout.num_lowres, FEATURES, 16, 16, device=dev,
                               generator=g).half().contiguous(memory_format=cl)
        dense_in = torch.randn(batch, FEATURES, 256, 512, device=dev, generator=g).half().contiguous(memory_format=cl)
        ref_units = ref_dense = None
        for channels in (CLASSES, 24, 32):
            w, b = padded_conv(weight, bias, channels)
            u_logits = F.conv2d(units_in, w, b)
            d_logits = F.conv2d(dense_in, w, b)
            bt = BlockTensor.from_units(u_logits, layout)
            tiles = ops.block_pad_units(bt, 1, "replicate")
            labels_u = ops.upsample_argmax_units_tensor(tiles[:, :CLASSES], layout.hr_pos, layout.lr_pos,
                                                        layout.block_map, 4)
            labels_d = ops.upsample_argmax_dense(d_logits[:, :CLASSES], 4)
            if channels == CLASSES:
                ref_units, ref_dense = labels_u, labels_d
            row = {
                "batch": batch, "channels": channels,
                "units_conv_us": us(lambda: F.conv2d(units_in, w, b)),
                "units_pad_us": us(lambda: ops.block_pad_units(bt, 1, "replicate")),
                "units_argmax_us": us(lambda: ops.upsample_argmax_units_tensor(
                    tiles[:, :CLASSES], layout.hr_pos, layout.lr_pos, layout.block_map, 4)),
                "dense_conv_us": us(lambda: F.conv2d(dense_in, w, b)),
                "dense_argmax_us": us(lambda: ops.upsample_argmax_dense(d_logits[:, :CLASSES], 4)),
                "units_labels_equal": bool(torch.equal(labels_u, ref_units)),
                "dense_labels_equal": bool(torch.equal(labels_d, ref_dense)),
            }
            row["units_head_us"] = row["units_conv_us"] + row["units_pad_us"] + row["units_argmax_us"]
            row["dense_head_us"] = row["dense_conv_us"] + row["dense_argmax_us"]
            result["rows"].append(row)
            print(f"b{batch} C={channels:2d}: units conv {row['units_conv_us']:6.1f} pad {row['units_pad_us']:6.1f} "
                  f"argmax {row['units_argmax_us']:6.1f} = {row['units_head_us']:6.1f} us "
                  f"(equal {row['units_labels_equal']}) | dense conv {row['dense_conv_us']:6.1f} "
                  f"argmax {row['dense_argmax_us']:6.1f} = {row['dense_head_us']:6.1f} us "
                  f"(equal {row['dense_labels_equal']})", flush=True)
    write_probe_json(args.json, rows=result["rows"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
