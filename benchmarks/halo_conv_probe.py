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

Per SwiftNet-RN18 3x3 convolution on units (stride 1, and layer 2's first one, stride 2;
seeded 40% high-res layout, batch 1 and 4, fp16, bias + residual + ReLU), times in CUDA
graphs (``fused.choice_ms``):

  tma_us     the fastest ``ops.conv_into_`` configuration (the halo-tile ones it now holds left out)
  ring_us    ``block_pad_ring_`` of the tiles it wrote (what the next convolution needs)
  pad_us     (stride 2) ``block_pad_units`` of the input: the executor's full BlockPad there
  halo_us    the fastest halo-tile configuration for the unit side (each one's time and
             error listed too), and halo_us / tma_us
  gather_us  the fastest gathering configuration (``_g``: cp.async, ``_gb``: a bulk copy per
             pixel, ``_gt``: the interiors by TMA straight from the units, only the frames by
             cp.async): the tiles are not read but gathered from the units' own pixels through
             ``segblocks_core.halo``'s index (the means in the source), packed units out: no
             BlockPad and no frame pass
  inline_us  the same making the frames' 2x2 means itself (the source's mean rows are NaN),
             and inline_us / (tma_us + ring_us + pad_us)

Every result is checked against the fp32 reference (``F.conv2d`` of the padded tiles); the
probe fails on a mismatch and stops naming the kernel (``HANG: ...``) if a first call does
not finish within 30 s. ``--no-baseline`` skips the TMA convolutions (no extension build).

    python benchmarks/halo_conv_probe.py --cutlass build/cutlass --json out.json
"""
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

from gather_conv_probe import (TOL, WATCHDOG_S, case, finished_in, probe_cases, probe_setup,  # noqa: E402
                               reference, tma_baseline)
from probe_json import write_probe_json  # noqa: E402
from segblocks_core import ops  # noqa: E402
from segblocks_core.fused import choice_ms  # noqa: E402
from segblocks_core.halo import halo_index, halo_source  # noqa: E402
from segblocks_core.layout import BlockTensor  # noqa: E402

# (label, output unit side, stride, C in, C out, residual): SwiftNet-RN18's 3x3 convolutions on
# units with 128-px blocks; the first of a block has no residual. "layer2 down": layer 2's
# first convolution, stride 2 on layer 1's 16-px units, whose input the executor BlockPads
# whole (it is also the downsample's and the decoder skip's input)
SHAPES = (
    ("layer1", 16, 1, 64, 64, True),
    ("layer1 conv1", 16, 1, 64, 64, False),
    ("layer2 down", 8, 2, 64, 128, False),
    ("layer2", 8, 1, 128, 128, True),
    ("layer3", 4, 1, 256, 256, True),
    ("layer4", 2, 1, 512, 512, True),
)


def load_extension(cutlass_root: str):
    from torch.utils.cpp_extension import load
    os.environ["TORCH_CUDA_ARCH_LIST"] = "9.0a"  # wgmma, setmaxnreg: sm_90a
    src = os.path.join(HERE, "halo_conv_probe")
    sources = [os.path.join(src, f) for f in sorted(os.listdir(src)) if f.endswith((".cu", ".cpp"))]
    # csrc: the product's halo-tile pieces (ops/cuda/cutlass/halo_tile.cuh)
    includes = [os.path.join(cutlass_root, "include"), src, os.path.join(HERE, "..", "csrc")]
    return load(name="segblocks_halo_conv_probe", sources=sources,
                extra_include_paths=[p for p in includes if os.path.isdir(p)],
                extra_cuda_cflags=["-O3", "-DNDEBUG", "--expt-relaxed-constexpr", "-std=c++17",
                                   "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__",
                                   "-U__CUDA_NO_HALF2_OPERATORS__"],
                verbose=False)


def side_of(config: str) -> int:
    """``s16_u1_n64`` -> 16: the input units' side."""
    return int(config.split("_")[0][1:])


def stride_of(config: str) -> int:
    """``s16_st2_u2_n64_te`` -> 2, else 1."""
    return 2 if "_st2_" in config else 1


def main() -> int:
    args, ext, configs, wanted, tma_configs = probe_setup("halo", load_extension)
    cl = torch.channels_last
    results, failures = [], 0
    with torch.inference_mode():
        for batch, layout, tiles, (label, side, stride, cin, cout, residual) in probe_cases(args, SHAPES):
            x, w, b, res = case(layout, side, stride, cin, cout, residual)
            si = side * stride  # the input units' side
            padded = ops.block_pad_units(BlockTensor.from_units(x, layout), 1).contiguous(memory_format=cl)
            want = reference(padded, w, b, res, stride)
            gmac = tiles * side * side * cout * 9 * cin / 1e9
            row = {"batch": batch, "shape": label, "tiles": tiles, "side": side, "stride": stride, "c_in": cin,
                   "c_out": cout, "residual": residual, "gmac": gmac}
            # both write the next tiles' interiors, as the executor's convolutions do
            nxt = torch.zeros(tiles, cout, side + 2, side + 2, dtype=torch.float16,
                              device="cuda").contiguous(memory_format=cl)
            inner = nxt[:, :, 1:-1, 1:-1]

            tma, best_tma = tma_baseline(tma_configs, inner, padded, w, b, res, stride, want)
            row["tma_best"] = best_tma
            row["tma_us"] = tma[best_tma]["us"] if best_tma else None
            if not args.no_baseline:  # what the next convolution needs before it can read them
                row["ring_us"] = choice_ms(lambda: ops.block_pad_ring_(nxt, layout, 1)) * 1e3
                if stride == 2:  # the executor's full BlockPad of the input
                    units_in = BlockTensor.from_units(x, layout)
                    row["pad_us"] = choice_ms(lambda: ops.block_pad_units(units_in, 1)) * 1e3

            # the gathered forms read the units themselves (packed rows; the means in the
            # source, or made by the kernel from a source whose mean rows are NaN) and write
            # packed units: no BlockPad, no frame pass
            halo = halo_index(layout, si)
            source = halo_source(x, halo).contiguous()
            poisoned = source.clone()
            poisoned[halo.unit_rows:halo.zero_row] = float("nan")
            units_out = torch.empty(tiles, cout, side, side, dtype=torch.float16,
                                    device="cuda").contiguous(memory_format=cl)

            def measure(key, names, call, target):
                ways = {}
                for name in names:
                    i = configs.index(name)
                    try:
                        target.fill_(float("nan"))
                        call(i)
                    except RuntimeError as exc:
                        ways[name] = {"error": str(exc).splitlines()[0][:200]}
                        continue
                    if not finished_in(WATCHDOG_S):
                        print(f"HANG: {key} {name} on b{batch} {label} (not done after {WATCHDOG_S} s)", flush=True)
                        write_probe_json(args.json, fraction=args.fraction, halo_configs=configs, rows=results,
                                         failures=failures + 1, hang=f"{key} {name} b{batch} {label}")
                        os._exit(3)
                    err = (target.float() - want).abs().max().item()
                    ways[name] = {"us": choice_ms(lambda i=i: call(i)) * 1e3, "max_abs_err": err}
                    if not err <= TOL:
                        print(f"  MISMATCH {key} {name}: max abs err {err}", flush=True)
                ok = {k: v for k, v in ways.items() if "us" in v and v["max_abs_err"] <= TOL}
                best = min(ok, key=lambda k: ok[k]["us"]) if ok else None
                row[key] = ways
                row[f"{key}_best"] = best
                row[f"{key}_us"] = ok[best]["us"] if best else None
                return sum(1 for v in ways.values() if "us" in v and not v["max_abs_err"] <= TOL)

            mine = [n for n in configs if side_of(n) == si and stride_of(n) == stride and (not wanted or n in wanted)]
            tiled = [n for n in mine if not n.endswith(("_g", "_gb", "_gt"))]
            gathered = [n for n in mine if n.endswith(("_g", "_gb", "_gt"))]
            # _gb: bulk copies, means in the source only
            inline_means = [n for n in mine if n.endswith(("_g", "_gt"))]
            failures += measure("halo", tiled, lambda i: ext.conv(padded, w, b, res, inner, i, stride), inner)
            failures += measure("gather", gathered, lambda i: ext.gather_conv(
                source, halo.index, None, halo.unit_rows, halo.zero_row, w, b, res, units_out, i, stride), units_out)
            failures += measure("inline", inline_means, lambda i: ext.gather_conv(
                poisoned, halo.index, halo.mean_rows, halo.unit_rows, halo.zero_row, w, b, res, units_out, i,
                stride), units_out)
            best = row["halo_best"]
            if row["halo_us"] and row["tma_us"]:
                row["ratio"] = row["halo_us"] / row["tma_us"]
            if row["inline_us"] and row.get("ring_us"):  # against the passes the gathered form saves
                row["ratio_inline"] = row["inline_us"] / (row["tma_us"] + row["ring_us"] + row.get("pad_us", 0.0))
            nan = float("nan")
            tflops = (lambda us: 2 * gmac / us * 1e3 if us else nan)
            print(f"b{batch} {label:12s} T={tiles:5d} tma {row['tma_us'] or nan:6.1f} us "
                  f"({tflops(row['tma_us']):5.0f} TF/s, {best_tma}) + ring {row.get('ring_us') or nan:4.1f}"
                  + (f" + pad {row['pad_us']:4.1f}" if "pad_us" in row else "") + " | "
                  f"halo {row['halo_us'] or nan:6.1f} us ({tflops(row['halo_us']):5.0f} TF/s, {best}) | "
                  f"gathered {row['gather_us'] or nan:6.1f} inline means {row['inline_us'] or nan:6.1f} | ratios "
                  f"halo/tma {row.get('ratio', nan):.2f} inline/(tma+ring) {row.get('ratio_inline', nan):.2f}",
                  flush=True)
            for key in ("halo", "gather", "inline"):
                print(f"    {key}: " + " ".join(f"{k}={v['us']:.1f}/{v['max_abs_err']:.3f}" if "us" in v
                                               else f"{k}=x({v['error'][-40:]})" for k, v in row[key].items()),
                      flush=True)
            results.append(row)
    write_probe_json(args.json, fraction=args.fraction, halo_configs=configs, tma_configs=list(tma_configs),
                     rows=results, failures=failures)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
