"""Could the stem's low-res half run as the dense stem of the frame's half-resolution image?

Every value BlockPad gives a low-res stem tile (its interior, a halo of up to 3 px, zero
outside the image) is a pixel of the frame's 2x2-mean half-resolution image, so the low-res
blocks' stem outputs are that image's dense stem (7x7, stride 2, padding 3) at the low-res
blocks' cells. This probe times, per batch (fp16, channels_last, cudnn.benchmark, CUDA
graphs; 4 input channels as the executor's stem; 2048x1024 frames, blocks of 128 px, 40%
high-res: 77 low-res cells of 128 at batch 1):

  (each with bias and ReLU as PyTorch runs them, and as the convolution alone: *_conv_us)
  tiles     the executor's way: the [Nl, 4, 70, 70] BlockPad-ed low-res tiles
  dense     the half-resolution image [N, 4, 512, 1024] with padding 3
  gather    index_select of the low-res blocks' [64, 32, 32] outputs out of the dense output
  (and, for scale, the full-resolution dense stem the static network runs)

and checks that the gathered outputs equal the tiles' (tiles cut from the same image with a
zero border), so the two ways compute the same values. The dense output is 16.8 MB at
batch 1 against 10.1 MB for the tiles' (memory: see benchmarks/PERFORMANCE.md).

    python benchmarks/halfres_stem_probe.py [--fraction 0.4] [--json out.json]
"""
import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from segblocks_core.timing import cuda_graph_median_ms  # noqa: E402

BLOCK, HEIGHT, WIDTH = 128, 1024, 2048  # full-resolution block side and frame size


def lowres_tiles(image: torch.Tensor, cells: torch.Tensor, grid_w: int, side: int, pad: int) -> torch.Tensor:
    """The BlockPad-ed tiles [K, C, side + 2 pad, side + 2 pad] of the half-resolution image's
    cells (flat index n * grid_h * grid_w + r * grid_w + c), zero outside the image."""
    padded = F.pad(image, (pad, pad, pad, pad))
    grid_h = image.shape[2] // side
    tiles = []
    for k in cells.tolist():
        n, rem = divmod(k, grid_h * grid_w)
        r, c = divmod(rem, grid_w)
        tiles.append(padded[n, :, r * side:(r + 1) * side + 2 * pad, c * side:(c + 1) * side + 2 * pad])
    return torch.stack(tiles).contiguous(memory_format=torch.channels_last)


def gather_blocks(out: torch.Tensor, cells: torch.Tensor, side: int) -> torch.Tensor:
    """The [K, C, side, side] blocks (channels_last) of the channels_last dense map ``out`` at
    the flat cell indices: one gather of the selected blocks, no copy of the whole map."""
    n, c, h, w = out.shape
    gh, gw = h // side, w // side
    pixels = out.permute(0, 2, 3, 1).view(n, gh, side, gw, side, c).permute(0, 1, 3, 2, 4, 5)  # [n, gh, gw, s, s, c]
    img, rem = cells // (gh * gw), cells % (gh * gw)
    return pixels[img, rem // gw, rem % gw].permute(0, 3, 1, 2)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fraction", type=float, default=0.4)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")
    gen = torch.Generator().manual_seed(0)
    w = (torch.randn(64, 4, 7, 7, generator=gen) / 14).half().to(dev).contiguous(memory_format=torch.channels_last)
    b = (torch.randn(64, generator=gen) * 0.1).half().to(dev)
    side = BLOCK // 2  # a low-res block's side at half resolution
    grid_h, grid_w = HEIGHT // BLOCK, WIDTH // BLOCK
    rows = []
    print(torch.cuda.get_device_name(dev), torch.__version__)
    for batch in (1, 4):
        cells_total = batch * grid_h * grid_w
        perm = torch.randperm(cells_total, generator=gen)
        cells = perm[round(cells_total * args.fraction):].sort().values.to(dev)  # the low-res cells
        half = torch.randn(batch, 4, HEIGHT // 2, WIDTH // 2, generator=gen).half().to(dev).contiguous(
            memory_format=torch.channels_last)
        full = torch.randn(batch, 4, HEIGHT, WIDTH, generator=gen).half().to(dev).contiguous(
            memory_format=torch.channels_last)
        tiles = lowres_tiles(half, cells, grid_w, side, 3)
        with torch.inference_mode():
            want = F.relu(F.conv2d(tiles, w, b, stride=2))
            dense = F.relu(F.conv2d(half, w, b, stride=2, padding=3))
            got = gather_blocks(dense, cells, side // 2)
            err = (got.float() - want.float()).abs().max().item()
            row = {
                "batch": batch, "lowres_blocks": int(cells.numel()),
                "tiles_us": cuda_graph_median_ms(lambda: F.relu(F.conv2d(tiles, w, b, stride=2))) * 1e3,
                "halfres_dense_us": cuda_graph_median_ms(
                    lambda: F.relu(F.conv2d(half, w, b, stride=2, padding=3))) * 1e3,
                # the convolutions alone (no bias, no ReLU: PyTorch adds those in passes over
                # the output, which the executor's fused epilogue does not pay)
                "tiles_conv_us": cuda_graph_median_ms(lambda: F.conv2d(tiles, w, stride=2)) * 1e3,
                "halfres_dense_conv_us": cuda_graph_median_ms(
                    lambda: F.conv2d(half, w, stride=2, padding=3)) * 1e3,
                "gather_us": cuda_graph_median_ms(lambda: gather_blocks(dense, cells, side // 2)) * 1e3,
                "fullres_dense_us": cuda_graph_median_ms(
                    lambda: F.relu(F.conv2d(full, w, b, stride=2, padding=3))) * 1e3,
                "tiles_out_mb": want.numel() * 2 / 2 ** 20,
                "halfres_out_mb": dense.numel() * 2 / 2 ** 20,
                "max_abs_diff": err,
                "max_abs": want.float().abs().max().item(),
            }
        rows.append(row)
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"gpu": torch.cuda.get_device_name(dev), "torch": torch.__version__, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
