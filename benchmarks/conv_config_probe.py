"""How fast is each built CUTLASS configuration of ``ops.conv_into_`` against cuDNN, per
SwiftNet-RN18 3x3 convolution and for the 7x7 stem? (GPU probe; needs the Hopper build with
segblocks_core._cutlass.)

For the units convolutions at 40% high-res (the tiles the executor runs: [U, C, s+2, s+2]
BlockPad-ed, no padding, output [U, K, s, s]) at batch 1 and 4, and the static network's
dense layer-1 and layer-4 convolutions, times in CUDA graphs (``fused.choice_ms``, as the
fast path's choices are timed):

  cudnn        the fused cuDNN call (bias + residual + ReLU), every engine configuration timed
  <config>     ops.conv_into_ with that configuration into a packed output (the same
               epilogue); "cannot run" where its can_implement refuses the problem

Each configuration's result is checked against cuDNN's first (max abs difference).
``--shapes`` keeps the shapes whose label contains one of its comma-separated parts;
``--profile-once`` then runs cuDNN's (timed) pick and each configuration once more between
cudaProfilerStart/Stop, for Nsight Compute with ``--profile-from-start off``.

    python benchmarks/conv_config_probe.py --json out.json
    ncu --clock-control none --profile-from-start off --section SpeedOfLight ... \
        python benchmarks/conv_config_probe.py --shapes "b4 layer1 units" --profile-once
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from segblocks_core import fused, ops  # noqa: E402
from segblocks_core.fastpath import cudnn_autotuning  # noqa: E402

# (name, N, C, H=W or (H, W), K, stride, padding, residual[, kernel side, 3 if left out]): RN18
# units at 40% high-res (U = 359 tiles at batch 1, 1436 at batch 4), then the static network's
# dense convolutions
SHAPES = []
for batch, units in ((1, 359), (4, 1436)):
    SHAPES += [
        (f"b{batch} layer1 units", units, 64, 18, 64, 1, 0, True),
        (f"b{batch} layer2 units down", units, 64, 18, 128, 2, 0, False),
        (f"b{batch} layer2 units", units, 128, 10, 128, 1, 0, True),
        (f"b{batch} layer3 units", units, 256, 6, 256, 1, 0, True),
        (f"b{batch} layer4 units", units, 512, 4, 512, 1, 0, True),
    ]
SHAPES += [
    ("b1 layer1 dense", 1, 64, (256, 512), 64, 1, 1, True),
    ("b1 layer3 dense", 1, 256, (64, 128), 256, 1, 1, True),
    ("b1 layer4 dense", 1, 512, (32, 64), 512, 1, 1, True),
    ("b4 layer1 dense", 4, 64, (256, 512), 64, 1, 1, True),
]
# The stem (7x7 stride 2, 64 outputs): the BlockPad-ed tiles split_padded_frames writes at 40%
# high-res (51 high-res blocks of 128 px, 77 low-res of 64 px, padding 3, at batch 1) and the
# static network's dense padded image; with the executor's 4 input channels (cuDNN only: the
# CUTLASS kernels' TMA needs 8) and with 8 (the image's 3 channels zero-padded to 8)
for batch in (1, 4):
    for c in (4, 8):
        SHAPES += [
            (f"b{batch} stem c{c} lr tiles", 77 * batch, c, 70, 64, 2, 0, False, 7),
            (f"b{batch} stem c{c} hr tiles", 51 * batch, c, 134, 64, 2, 0, False, 7),
            (f"b{batch} stem c{c} dense", batch, c, (1024, 2048), 64, 2, 3, False, 7),
        ]


def case(n, c, side, k, stride, padding, residual, kernel=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    h, w = (side, side) if isinstance(side, int) else side
    cl = torch.channels_last
    x = torch.randn(n, c, h, w, generator=gen).half().cuda().contiguous(memory_format=cl)
    wt = (torch.randn(k, c, kernel, kernel, generator=gen) / (kernel * c ** 0.5)).half().cuda().contiguous(
        memory_format=cl)
    b = (torch.randn(k, generator=gen) * 0.1).half().cuda()
    ho, wo = (h + 2 * padding - kernel) // stride + 1, (w + 2 * padding - kernel) // stride + 1
    res = torch.randn(n, k, ho, wo, generator=gen).half().cuda().contiguous(memory_format=cl) if residual else None
    out = torch.empty(n, k, ho, wo, dtype=torch.float16, device="cuda", memory_format=cl)
    return x, wt, b, res, out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=None)
    ap.add_argument("--shapes", default="", help="comma-separated parts of the shape labels to keep")
    ap.add_argument("--profile-once", action="store_true",
                    help="after timing, run each way once between cudaProfilerStart/Stop (for ncu)")
    args = ap.parse_args()
    keep = [part.strip() for part in args.shapes.split(",") if part.strip()]
    shapes = [s for s in SHAPES if not keep or any(part in s[0] for part in keep)]
    names = ops.cutlass_conv_configs()
    if not names:
        print("no CUTLASS configurations built")
        return 1
    rows = []
    with cudnn_autotuning():
        for label, n, c, side, k, stride, padding, residual, *kernel in shapes:
            x, wt, b, res, out = case(n, c, side, k, stride, padding, residual, *kernel)
            conv_args = (x, wt, b, (stride, stride), (padding, padding), (1, 1), 1, res)
            want = fused._WAYS["fused"](*conv_args)
            row = {"shape": label, "x": list(x.shape), "weight": list(wt.shape), "stride": stride,
                   "padding": padding, "residual": residual,
                   "cudnn_us": fused.choice_ms(lambda: fused._WAYS["fused"](*conv_args)) * 1e3}
            for i, name in enumerate(names):
                try:
                    ops.conv_into_(out, x, wt, b, res, stride, padding, i)
                    err = (out.float() - want.float()).abs().max().item()
                    row[name] = {"us": fused.choice_ms(
                        lambda i=i: ops.conv_into_(out, x, wt, b, res, stride, padding, i)) * 1e3,
                        "max_abs_diff": err}
                except RuntimeError as exc:
                    row[name] = {"error": str(exc).splitlines()[0][:200]}
            best = min([(v["us"], nm) for nm, v in row.items() if isinstance(v, dict) and "us" in v] or
                       [(float("nan"), "-")])
            print(f"{label:24s} cudnn {row['cudnn_us']:7.1f} us  best {best[1]:24s} {best[0]:7.1f} us  " +
                  " ".join(f"{nm}={v['us']:.1f}" if "us" in v else f"{nm}=x"
                           for nm, v in row.items() if isinstance(v, dict)), flush=True)
            rows.append(row)
            if args.profile_once:
                torch.cuda.synchronize()
                torch.cuda.profiler.start()
                fused._WAYS["fused"](*conv_args)
                for i, name in enumerate(names):
                    if "us" in row[name]:
                        ops.conv_into_(out, x, wt, b, res, stride, padding, i)
                torch.cuda.synchronize()
                torch.cuda.profiler.stop()
    result = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "configs": list(names),
              "rows": rows}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
