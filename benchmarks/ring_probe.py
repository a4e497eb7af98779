"""What does a frame pass (``ops.block_pad_ring_``) cost, and what is its floor? (fp16
channels_last, CUDA graphs of the calls, SwiftNet-RN18's 14 frame passes at 2048x1024.)

The node profiles show every frame pass at about 4.5 us at batch 1, whatever its size. Timed
per geometry (units of side u, C channels, 1-px frames, the layout's 4 Nh + Nl tiles):

  ring     block_pad_ring_ on the tiles (what the executor runs)
  copy     a plain copy of as many bytes as the frames hold (read + write: a bandwidth floor
           with one kernel launch)
  tiny     a one-element in-place add (the floor of any kernel node in a graph)
  pad      block_pad_units of the interiors (the full BlockPad pass the frame pass replaced)

    python benchmarks/ring_probe.py [--blocks 128] [--fraction 0.4] [--json out.json]
    python benchmarks/ring_probe.py --profile-once   # one eager call per geometry (ncu)
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from segblocks_core import ops  # noqa: E402
from segblocks_core.layout import BlockLayout, BlockTensor  # noqa: E402
from segblocks_core.timing import cuda_graph_median_ms  # noqa: E402
from probe_json import write_probe_json  # noqa: E402  (this folder: the script's own)

# (name, stride, channels): RN18's units frame passes (layer1-4 and the decoder's blends)
GEOMETRIES = [("layer1", 4, 64), ("layer2", 8, 128), ("layer3", 16, 256), ("layer4", 32, 512),
              ("blend16", 16, 128), ("blend8", 8, 128), ("blend4", 4, 128)]


def time_us(fn):
    return cuda_graph_median_ms(fn) * 1e3


def layout_for(batch, blocks, fraction, block_size, dev, seed=0):
    gh, gw = 8, blocks // 8
    g = torch.Generator().manual_seed(seed)
    nh = round(batch * blocks * fraction)
    grid = torch.zeros(batch * gh * gw, dtype=torch.bool)
    grid[torch.randperm(batch * gh * gw, generator=g)[:nh]] = True
    return BlockLayout.from_grid(grid.view(batch, gh, gw).to(dev), block_size)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--blocks", type=int, default=128, help="blocks per image (2048x1024, side 128)")
    ap.add_argument("--fraction", type=float, default=0.4)
    ap.add_argument("--batches", default="1,4")
    ap.add_argument("--json", default=None)
    ap.add_argument("--profile-once", action="store_true", help="one eager ring call per geometry, untimed")
    args = ap.parse_args()
    dev = torch.device("cuda")
    block_size = 128
    rows = []
    print(torch.cuda.get_device_name(dev), torch.__version__)
    tiny = torch.zeros(1, device=dev)
    with torch.inference_mode():
        for batch in (int(b) for b in args.batches.split(",")):
            layout = layout_for(batch, args.blocks, args.fraction, block_size, dev)
            n_tiles = 4 * layout.num_highres + layout.num_lowres
            for name, stride, channels in GEOMETRIES:
                u = block_size // stride // 2
                tiles = torch.randn(n_tiles, channels, u + 2, u + 2, device=dev, dtype=torch.half)
                tiles = tiles.contiguous(memory_format=torch.channels_last)
                if args.profile_once:
                    ops.block_pad_ring_(tiles, layout, 1)
                    torch.cuda.synchronize()
                    continue
                frame = n_tiles * channels * ((u + 2) ** 2 - u ** 2)
                src = torch.randn(frame, device=dev, dtype=torch.half)
                dst = torch.empty_like(src)
                units = tiles[:, :, 1:-1, 1:-1].contiguous(memory_format=torch.channels_last)
                bt = BlockTensor.from_units(units, layout)
                # the frame pass's result is the full pass's (checked, not assumed)
                expect = ops.block_pad_units(bt, 1)
                got = ops.block_pad_ring_(tiles.clone(memory_format=torch.channels_last), layout, 1)
                assert torch.equal(got, expect), f"{name} b{batch}: the frame pass differs from block_pad_units"
                row = {"batch": batch, "geometry": name, "unit_side": u, "channels": channels,
                       "tiles": n_tiles, "frame_bytes": 2 * frame,
                       "ring_us": time_us(lambda: ops.block_pad_ring_(tiles, layout, 1)),
                       "copy_us": time_us(lambda: dst.copy_(src)),
                       "tiny_us": time_us(lambda: tiny.add_(1)),
                       "pad_us": time_us(lambda: ops.block_pad_units(bt, 1))}
                rows.append(row)
                print(f"b{batch} {name:8s} u={u:2d} C={channels:3d} tiles {n_tiles:4d} frames "
                      f"{row['frame_bytes'] / 1e6:5.2f} MB: ring {row['ring_us']:5.1f} us | copy "
                      f"{row['copy_us']:5.1f} | tiny {row['tiny_us']:4.1f} | full pad {row['pad_us']:5.1f}")
    if args.json and rows:
        write_probe_json(args.json, probe="ring_probe", rows=rows)


if __name__ == "__main__":
    main()
