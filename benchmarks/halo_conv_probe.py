"""Is today's units convolution bound by reading every input pixel nine times? (GPU probe;
CUTLASS 3 headers needed, not part of the extension.)

``ops.conv_into_`` (CUTLASS's implicit GEMM with TMA im2col) loads one box of input pixels
per filter tap, so each pixel crosses L2 -> shared memory nine times; at SwiftNet's shallow
layers that traffic, not the tensor cores, seems to bound it. The halo-tile convolution
(``halo_conv_probe/halo_conv.cuh``) loads whole padded tiles once per 64-channel chunk (one
TMA box of U units) and feeds every tap's shifted window to the tensor cores from registers
(ldmatrix rows at shifted addresses, wgmma with A in registers, weights by TMA). Same input
(the BlockPad-ed tiles ``[T, C, s+2, s+2]``) and same output (the next tiles' interiors) as
``conv_into_``, so it would replace it one for one.

Per SwiftNet-RN18 stride-1 3x3 convolution on units (seeded 40% high-res layout, batch 1 and
4, fp16, bias + residual + ReLU), times in CUDA graphs (``fused.choice_ms``):

  tma_us    the fastest ``ops.conv_into_`` configuration
  halo_us   the fastest halo-tile configuration for the unit side (each one's time and
            error listed too), and halo_us / tma_us

Every result is checked against the fp32 reference (``F.conv2d`` of the padded tiles); the
probe fails on a mismatch and stops naming the kernel (``HANG: ...``) if a first call does
not finish within 30 s. ``--no-baseline`` skips the TMA convolutions (no extension build).

    python benchmarks/halo_conv_probe.py --cutlass build/cutlass --json out.json
"""
import argparse
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

from bench_gpu import fixed_grid  # noqa: E402
from gather_conv_probe import TOL, WATCHDOG_S, case, finished_in, reference  # noqa: E402
from probe_json import write_probe_json  # noqa: E402
from segblocks_core import ops  # noqa: E402
from segblocks_core.fused import choice_ms  # noqa: E402
from segblocks_core.layout import BlockLayout, BlockTensor  # noqa: E402

# (label, unit side, C in, C out, residual): SwiftNet-RN18's stride-1 3x3 convolutions on
# units with 128-px blocks; the first of a block has no residual
SHAPES = (
    ("layer1", 16, 64, 64, True),
    ("layer1 conv1", 16, 64, 64, False),
    ("layer2", 8, 128, 128, True),
    ("layer3", 4, 256, 256, True),
    ("layer4", 2, 512, 512, True),
)


def load_extension(cutlass_root: str):
    from torch.utils.cpp_extension import load
    os.environ["TORCH_CUDA_ARCH_LIST"] = "9.0a"  # wgmma, setmaxnreg: sm_90a
    src = os.path.join(HERE, "halo_conv_probe")
    sources = [os.path.join(src, f) for f in sorted(os.listdir(src)) if f.endswith((".cu", ".cpp"))]
    includes = [os.path.join(cutlass_root, "include"), src]
    return load(name="segblocks_halo_conv_probe", sources=sources,
                extra_include_paths=[p for p in includes if os.path.isdir(p)],
                extra_cuda_cflags=["-O3", "-DNDEBUG", "--expt-relaxed-constexpr", "-std=c++17",
                                   "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__",
                                   "-U__CUDA_NO_HALF2_OPERATORS__"],
                verbose=False)


def side_of(config: str) -> int:
    """``s16_u1_n64`` -> 16."""
    return int(config.split("_")[0][1:])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cutlass", default="build/cutlass")
    ap.add_argument("--fraction", type=float, default=0.4)
    ap.add_argument("--batches", default="1,4")
    ap.add_argument("--shapes", default="", help="comma-separated parts of the labels to keep")
    ap.add_argument("--configs", default="", help="comma-separated halo configurations to run (default all)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the TMA convolutions (no extension build)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    ext = load_extension(args.cutlass)
    configs = list(ext.configs())
    wanted = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = sorted(set(wanted) - set(configs))
    if unknown:
        ap.error(f"unknown configurations {unknown}; built: {configs}")
    tma_configs = () if args.no_baseline else ops.cutlass_conv_configs()
    keep = [p.strip() for p in args.shapes.split(",") if p.strip()]
    print(torch.cuda.get_device_name(), torch.__version__, "halo configs", configs, flush=True)
    cl = torch.channels_last
    results, failures = [], 0
    with torch.inference_mode():
        for batch in (int(v) for v in args.batches.split(",")):
            grid, _ = fixed_grid(batch, 8, 16, args.fraction)
            layout = BlockLayout.from_grid(grid.cuda(), 128)
            tiles = 4 * layout.num_highres + layout.num_lowres
            for label, side, cin, cout, residual in SHAPES:
                if keep and not any(p in label for p in keep):
                    continue
                x, w, b, res = case(layout, side, 1, cin, cout, residual)
                padded = ops.block_pad_units(BlockTensor.from_units(x, layout), 1).contiguous(memory_format=cl)
                want = reference(padded, w, b, res, 1)
                gmac = tiles * side * side * cout * 9 * cin / 1e9
                row = {"batch": batch, "shape": label, "tiles": tiles, "side": side, "c_in": cin, "c_out": cout,
                       "residual": residual, "gmac": gmac}
                # both write the next tiles' interiors, as the executor's convolutions do
                nxt = torch.zeros(tiles, cout, side + 2, side + 2, dtype=torch.float16,
                                  device="cuda").contiguous(memory_format=cl)
                inner = nxt[:, :, 1:-1, 1:-1]

                tma = {}
                for i, name in enumerate(tma_configs):
                    try:
                        ops.conv_into_(inner, padded, w, b, res, 1, 0, i)
                    except RuntimeError:
                        continue
                    err = (inner.float() - want).abs().max().item()
                    tma[name] = {"us": choice_ms(lambda i=i: ops.conv_into_(inner, padded, w, b, res, 1, 0, i))
                                 * 1e3, "max_abs_err": err}
                best_tma = min(tma, key=lambda k: tma[k]["us"]) if tma else None
                row["tma_best"] = best_tma
                row["tma_us"] = tma[best_tma]["us"] if best_tma else None

                ways = {}
                for i, name in enumerate(configs):
                    if side_of(name) != side or (wanted and name not in wanted):
                        continue

                    def run(i=i):
                        ext.conv(padded, w, b, res, inner, i)
                    try:
                        inner.fill_(float("nan"))
                        run()
                    except RuntimeError as exc:
                        ways[name] = {"error": str(exc).splitlines()[0][:200]}
                        continue
                    if not finished_in(WATCHDOG_S):
                        print(f"HANG: {name} on b{batch} {label} (not done after {WATCHDOG_S} s)", flush=True)
                        write_probe_json(args.json, fraction=args.fraction, halo_configs=configs, rows=results,
                                         failures=failures + 1, hang=f"{name} b{batch} {label}")
                        os._exit(3)
                    err = (inner.float() - want).abs().max().item()
                    ways[name] = {"us": choice_ms(run) * 1e3, "max_abs_err": err}
                    if not err <= TOL:
                        failures += 1
                        print(f"  MISMATCH {name}: max abs err {err}", flush=True)
                row["halo"] = ways
                ok = {k: v for k, v in ways.items() if "us" in v and v["max_abs_err"] <= TOL}
                best = min(ok, key=lambda k: ok[k]["us"]) if ok else None
                row["halo_best"] = best
                row["halo_us"] = ok[best]["us"] if best else None
                if row["halo_us"] and row["tma_us"]:
                    row["ratio"] = row["halo_us"] / row["tma_us"]
                nan = float("nan")
                tflops = (lambda us: 2 * gmac / us * 1e3 if us else nan)
                print(f"b{batch} {label:12s} T={tiles:5d} tma {row['tma_us'] or nan:6.1f} us "
                      f"({tflops(row['tma_us']):5.0f} TF/s, {best_tma}) | halo {row['halo_us'] or nan:6.1f} us "
                      f"({tflops(row['halo_us']):5.0f} TF/s, {best}) | ratio {row.get('ratio', nan):.2f}", flush=True)
                print("    " + " ".join(f"{k}={v['us']:.1f}/{v['max_abs_err']:.3f}" if "us" in v
                                        else f"{k}=x({v['error'][-40:]})" for k, v in ways.items()), flush=True)
                results.append(row)
    write_probe_json(args.json, fraction=args.fraction, halo_configs=configs, tma_configs=list(tma_configs),
                     rows=results, failures=failures)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
