"""Is the one-pass convolution on units (``ops.conv3x3_units``: the halo gathered through
BlockPad's rules while the GEMM tiles load) faster than BlockPad + cuDNN?

For every 3x3 convolution shape of SwiftNet-RN18 below the input resolution, at
2048x1024 with a seeded 40% high-res layout of 128-px blocks (batch 1 and 4), times in a
CUDA graph of ``--reps`` calls (fp16, channels_last, cudnn.benchmark):

- ``dense``: cuDNN on the full map (the static network's convolution, fused epilogue);
- ``two_pass``: ``ops.block_pad_units`` + cuDNN on the padded tiles (the executor today);
- ``one_pass``: ``ops.conv3x3_units`` (split-K chosen for the GPU);
- ``one_pass_no_split``: the same kernel without split-K;

and checks ``one_pass`` against the reference (``max_abs_err``, ``ok``). Writes JSON.

    python benchmarks/conv_units_probe.py [--json out.json] [--reps 20]   (from the repository root)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # segblocks_core from the checkout

import torch  # noqa: E402

from conv_layout_probe import BLOCK, H, W, graph_ms  # noqa: E402
from segblocks_core import ops  # noqa: E402
from segblocks_core.fused import conv_bias_relu  # noqa: E402
from segblocks_core.layout import BlockLayout, BlockTensor  # noqa: E402
from segblocks_core.ops import _reference  # noqa: E402
from probe_json import write_probe_json  # noqa: E402  (this folder: the script's own)

# (name, in channels, out channels, stride, block side at the input's stride, residual,
#  BatchNorm + ReLU prologue, count in RN18)
LAYERS = [
    ("layer1 3x3", 64, 64, 1, BLOCK // 4, False, False, 2),
    ("layer1 3x3 +res", 64, 64, 1, BLOCK // 4, True, False, 2),
    ("layer2 3x3/2", 64, 128, 2, BLOCK // 4, False, False, 1),
    ("layer2 3x3", 128, 128, 1, BLOCK // 8, False, False, 1),
    ("layer2 3x3 +res", 128, 128, 1, BLOCK // 8, True, False, 2),
    ("layer3 3x3/2", 128, 256, 2, BLOCK // 8, False, False, 1),
    ("layer3 3x3", 256, 256, 1, BLOCK // 16, False, False, 1),
    ("layer3 3x3 +res", 256, 256, 1, BLOCK // 16, True, False, 2),
    ("layer4 3x3/2", 256, 512, 2, BLOCK // 16, False, False, 1),
    ("layer4 3x3", 512, 512, 1, BLOCK // 32, False, False, 1),
    ("layer4 3x3 +res", 512, 512, 1, BLOCK // 32, True, False, 2),
    ("decoder blend s16", 128, 128, 1, BLOCK // 16, False, True, 1),
    ("decoder blend s8", 128, 128, 1, BLOCK // 8, False, True, 1),
    ("decoder blend s4", 128, 128, 1, BLOCK // 4, False, True, 1),
]


def cl(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last)


def probe(batch: int, fraction: float, reps: int) -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    gh, gw = H // BLOCK, W // BLOCK
    scores = torch.rand(batch * gh * gw, generator=gen)
    grid = torch.zeros(batch * gh * gw, dtype=torch.bool)
    grid[scores.argsort(descending=True)[:round(fraction * grid.numel())]] = True
    grid = grid.view(batch, gh, gw).cuda()
    rows = []
    for name, cin, cout, stride, side, res, with_pre, count in LAYERS:
        lay = BlockLayout.from_grid(grid, side)
        u = side // 2
        dev = dict(device="cuda", dtype=torch.half)
        units = cl(torch.randn(4 * lay.num_highres + lay.num_lowres, cin, u, u, **dev))
        bt = BlockTensor.from_units(units, lay)
        w = cl(torch.randn(cout, cin, 3, 3, **dev) / (3 * cin ** 0.5))
        b = torch.randn(cout, **dev) * 0.1
        uo = u // stride
        z = BlockTensor.from_units(cl(torch.randn(units.shape[0], cout, uo, uo, **dev)), lay) if res else None
        dense_x = cl(torch.randn(batch, cin, H * side // BLOCK, W * side // BLOCK, **dev))
        pre = (torch.rand(cin, **dev) + 0.5, torch.randn(cin, **dev) * 0.1) if with_pre else None
        dense_z = None
        if res:
            dense_z = cl(torch.randn(batch, cout, H * side // BLOCK // stride, W * side // BLOCK // stride, **dev))

        def two_pass():
            x = ops.block_pad_units(bt, 1, pre=pre)
            return conv_bias_relu(x, w, b, stride, 0, 1, 1, None if z is None else z.units)

        def one_pass():
            return ops.conv3x3_units(bt, w, b, z, relu=True, stride=stride, pre=pre).units

        def one_pass_no_split():
            return torch.ops.segblocks.conv3x3_units(bt.highres, bt.lowres, lay.hr_pos, lay.lr_pos, lay.block_map, w,
                                                     b, None if z is None else z.units, True, True, stride,
                                                     *(pre if pre is not None else (None, None)), 1)

        def dense():  # the static network's prologue is a separate elementwise pass
            x = dense_x if pre is None else torch.addcmul(pre[1].view(-1, 1, 1), dense_x,
                                                          pre[0].view(-1, 1, 1)).relu_()
            return conv_bias_relu(x, w, b, stride, 1, 1, 1, dense_z)

        assert ops.conv3x3_units_supported(bt, w, z), name
        got = one_pass()
        want = _reference.conv3x3_units(bt.highres, bt.lowres, lay.hr_pos, lay.lr_pos, lay.block_map, w, b,
                                        None if z is None else z.units, True, True, stride,
                                        *(pre if pre is not None else (None, None)))
        err = (got.float() - want.float()).abs().max().item()
        row = {"layer": name, "batch": batch, "highres_fraction": fraction, "count": count,
               "units": units.shape[0], "dense_ms": graph_ms(dense, reps), "two_pass_ms": graph_ms(two_pass, reps),
               "one_pass_ms": graph_ms(one_pass, reps), "one_pass_no_split_ms": graph_ms(one_pass_no_split, reps),
               "max_abs_err": err,
               "ok": bool(torch.allclose(got, want, rtol=1e-3, atol=2e-3))}
        rows.append(row)
        print(f"b{batch} {name:16s} x{count}  dense {row['dense_ms'] * 1e3:6.1f}  two-pass "
              f"{row['two_pass_ms'] * 1e3:6.1f}  one-pass {row['one_pass_ms'] * 1e3:6.1f} (no split "
              f"{row['one_pass_no_split_ms'] * 1e3:6.1f}) us  err {err:.2e}")
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--fraction", type=float, default=0.4)
    ap.add_argument("--batches", default="1,4")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.backends.cudnn.benchmark = True
    print(f"{torch.cuda.get_device_name()}  torch {torch.__version__}")
    rows = [r for b in args.batches.split(",") for r in probe(int(b), args.fraction, args.reps)]
    totals = {}
    for r in rows:
        t = totals.setdefault(f"batch{r['batch']}", {"dense": 0.0, "two_pass": 0.0, "one_pass": 0.0})
        for k in t:
            t[k] += r["count"] * r[f"{k}_ms"]
    print("totals (ms, x count): " + json.dumps(totals))
    write_probe_json(args.json, rows=rows, totals_ms=totals)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
