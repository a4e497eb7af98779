"""Can a convolution write straight into the interior of the next convolution's BlockPad-ed
tiles at cuDNN's speed? (GPU probe; CUTLASS 3 headers needed, not part of the extension.)

cuDNN refuses a strided output (``cudnn_strided_probe.py``), so every units convolution
writes packed tiles and BlockPad copies all of them into the next padded tiles. A CUTLASS 3
sm90 implicit GEMM (wgmma, TMA im2col) takes the output's strides as arguments: if it writes
the padded tiles' interiors as fast as cuDNN writes packed tiles, BlockPad only has the 1-px
ring left to fill. Timed per SwiftNet-RN18 3x3 convolution on units at 40% high-res (fp16,
channels_last, bias + residual + ReLU in the epilogue), batch 1 and 4:

  cudnn      segblocks_core.fused.conv_bias_relu (what the executor runs), cuDNN timing
             every engine configuration
  cutlass    each tile shape, packed output and residual, and (``interior``) into
             [U, Co, s+2, s+2] tiles' interiors with the residual read from such
             interiors too; the ring is checked untouched (NaN sentinel)

Errors are against an fp32 reference. Needs the CUTLASS include folders (``--cutlass``, a
CUTLASS 3.x/4.x checkout or the ``nvidia-cutlass`` wheel's ``cutlass_library/source``).

    python benchmarks/cutlass_conv_probe.py --cutlass build/cutlass --json out.json
"""
import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from segblocks_core.fastpath import cudnn_autotuning  # noqa: E402
from segblocks_core.fused import conv_bias_relu  # noqa: E402
from segblocks_core.timing import cuda_graph_median_ms  # noqa: E402

# (tile M, tile N, tile K, pipeline stages; 0: as many as shared memory holds). A fixed
# stage count leaves room for two or three thread blocks per SM, so one's epilogue overlaps
# another's main loop (the conv kernel is not persistent).
CONFIGS = ((64, 64, 64, 4), (64, 64, 64, 6), (128, 64, 64, 3), (128, 64, 64, 4), (128, 64, 32, 6),
           (128, 64, 64, 0), (256, 64, 32, 4), (64, 128, 64, 4), (128, 128, 64, 3), (128, 128, 64, 0),
           (64, 256, 64, 3), (64, 128, 64, 0))
TILES = tuple(f"{m}x{n}x{k}_s{s}" for m, n, k, s in CONFIGS)
HERE = os.path.dirname(os.path.abspath(__file__))


def write_sources(build: str) -> list:
    """One .cu per configuration (they compile in parallel) and the binding's configs.inc."""
    os.makedirs(build, exist_ok=True)
    cfg = os.path.join(HERE, "cutlass_probe", "conv_cfg.cuh")
    sources = [os.path.join(HERE, "cutlass_probe", "binding.cpp")]
    with open(os.path.join(build, "configs.inc"), "w") as inc:
        for m, n, k, s in CONFIGS:
            inc.write(f"CONFIG({m}, {n}, {k}, {s})\n")
            path = os.path.join(build, f"conv_{m}_{n}_{k}_{s}.cu")
            with open(path, "w") as f:
                f.write(f'#include "{cfg}"\n'
                        f"int conv_{m}_{n}_{k}_{s}(const void* x, const void* w, const void* b, const void* r, "
                        "void* out, int n, int h, int wd, int c, int k, int kr, int ks, int stride, "
                        "const int64_t* os, const int64_t* rs, cudaStream_t stream) {\n"
                        f"  return probe::run_conv<cute::Shape<cute::_{m}, cute::_{n}, cute::Shape<cute::_{k}>>, "
                        f"{s}>(x, w, b, r, out, n, h, wd, c, k, kr, ks, stride, os, rs, stream);\n}}\n")
            sources.append(path)
    return sources


def load_extension(cutlass_root: str):
    from torch.utils.cpp_extension import load
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "9.0a")
    build = os.path.join(HERE, "..", "build", "cutlass_probe_src")
    sources = write_sources(build)
    includes = [os.path.join(cutlass_root, "include"), os.path.join(cutlass_root, "tools", "include"),
                os.path.join(cutlass_root, "tools", "util", "include")]
    return load(name="segblocks_cutlass_probe",
                sources=sources,
                extra_include_paths=[p for p in includes if os.path.isdir(p)] + [build],
                extra_cuda_cflags=["-O3", "-DNDEBUG", "--expt-relaxed-constexpr", "-std=c++17",
                                   "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__",
                                   "-U__CUDA_NO_HALF2_OPERATORS__"],
                verbose=False)


def shapes(batch: int, fraction: float, blocks: int = 128):
    """(name, units, side_in, c_in, c_out, stride) of SwiftNet-RN18's 3x3 convolutions on
    units (layer1-4; one stride-1 representative per layer and each stride-2 first conv)."""
    nh = round(blocks * batch * fraction)
    units = 4 * nh + (blocks * batch - nh)
    out = []
    for name, side, c in (("layer1", 16, 64), ("layer2", 8, 128), ("layer3", 4, 256), ("layer4", 2, 512)):
        if name != "layer1":
            out.append((f"{name}.0.conv1 (stride 2)", units, 2 * side, c // 2, c, 2))
        out.append((f"{name} conv (stride 1)", units, side, c, c, 1))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cutlass", default="build/cutlass")
    ap.add_argument("--fraction", type=float, default=0.4)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    ext = load_extension(args.cutlass)
    dev = torch.device("cuda")
    cl = torch.channels_last
    print(torch.cuda.get_device_name(dev), torch.__version__)
    rows = []
    torch.manual_seed(0)
    with torch.inference_mode(), cudnn_autotuning(0):
        for batch in (1, 4):
            for name, units, side, cin, cout, stride in shapes(batch, args.fraction):
                so = side // stride
                x = torch.randn(units, cin, side + 2, side + 2, device=dev, dtype=torch.half).to(memory_format=cl)
                w = (torch.randn(cout, cin, 3, 3, device=dev, dtype=torch.half) / (3 * cin ** 0.5)).to(
                    memory_format=cl)
                b = torch.randn(cout, device=dev, dtype=torch.half) * 0.1
                res_tiles = None if stride == 2 else torch.randn(units, cout, so + 2, so + 2, device=dev,
                                                                 dtype=torch.half).to(memory_format=cl)
                # the residual as the executor would hold it: the interior of padded tiles (a view)
                res_view = None if res_tiles is None else res_tiles[:, :, 1:-1, 1:-1]
                res = None if res_view is None else res_view.contiguous(memory_format=cl)
                ref = F.conv2d(x.float(), w.float(), b.float(), stride)
                if res is not None:
                    ref = ref + res.float()
                ref = ref.relu()
                scale = ref.abs().max().item()
                got = conv_bias_relu(x, w, b, stride, 0, 1, 1, res)
                row = {"batch": batch, "conv": name, "units": units, "side_out": so, "c_in": cin, "c_out": cout,
                       "stride": stride,
                       "cudnn_us": cuda_graph_median_ms(lambda: conv_bias_relu(x, w, b, stride, 0, 1, 1, res)) * 1e3,
                       "cudnn_err": (got.float() - ref).abs().max().item() / scale}
                packed = torch.empty(units, cout, so, so, device=dev, dtype=torch.half).to(memory_format=cl)
                padded = torch.full((units, cout, so + 2, so + 2), float("nan"), device=dev, dtype=torch.half).to(
                    memory_format=cl)
                interior = padded[:, :, 1:-1, 1:-1]
                for tile in TILES:
                    try:
                        ext.conv(x, w, b, res, packed, stride, tile)
                        ext.conv(x, w, b, res_view, interior, stride, tile)
                    except RuntimeError as e:
                        row[f"cutlass_{tile}"] = str(e).splitlines()[0]
                        continue
                    ring = padded.clone()
                    ring[:, :, 1:-1, 1:-1] = 0
                    row[f"cutlass_{tile}_err"] = max((packed.float() - ref).abs().max().item(),
                                                     (interior.float() - ref).abs().max().item()) / scale
                    row[f"cutlass_{tile}_ring_untouched"] = bool(torch.isnan(ring).sum().item()
                                                                  == ring.numel() - interior.numel())
                    row[f"cutlass_{tile}_us"] = cuda_graph_median_ms(
                        lambda: ext.conv(x, w, b, res, packed, stride, tile)) * 1e3
                    row[f"cutlass_{tile}_interior_us"] = cuda_graph_median_ms(
                        lambda: ext.conv(x, w, b, res_view, interior, stride, tile)) * 1e3
                best = min((row[k], k) for k in row if k.endswith("_interior_us"))
                row["best_interior"] = best[1]
                rows.append(row)
                print(f"b{batch} {name:24s} U={units:5d} cudnn {row['cudnn_us']:6.1f} us | best interior "
                      f"{best[0]:6.1f} us ({best[1]}) | " + " ".join(
                          f"{t}: {row.get(f'cutlass_{t}_us', float('nan')):.1f}/"
                          f"{row.get(f'cutlass_{t}_interior_us', float('nan')):.1f}" for t in TILES), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"gpu": torch.cuda.get_device_name(dev), "torch": torch.__version__,
                       "fraction": args.fraction, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
