"""Can a 3x3 convolution on units gather its halo through an index (``segblocks_core.halo``)
as fast as today's convolution on BlockPad-ed tiles plus the pass that fills their frames?
(GPU probe; CUTLASS 3 headers needed, not part of the extension.)

Today every units convolution reads tiles ``[T, C, s+2, s+2]`` whose 1-px frames a kernel
wrote (``block_pad_ring_`` after a convolution that wrote the interiors, or a full BlockPad),
through CUTLASS's TMA im2col (``ops.conv_into_``). The halo-gathering convolution
(``gather_conv_probe/gather_conv.cuh``: CUTLASS's cp.async warp-specialized wgmma mainloop
with a producer that looks each A row up in the halo index, the TMA epilogue) reads the
units' own pixels, packed, and writes packed units; of the frames only the 2x2 means of
low-res blocks beside high-res ones are values that exist nowhere else: either a small
kernel (``means_``) writes them into the source first, or the producers make them while
they load (``inline``: the source's mean rows are NaN then, so a kernel that read them
would fail the check).

Per SwiftNet-RN18 3x3 convolution on units (seeded 40% high-res layout, batch 1 and 4,
fp16, bias + residual + ReLU), times in CUDA graphs (``fused.choice_ms``):

  tma_us      the fastest ``ops.conv_into_`` configuration, into the next tiles' interiors
  ring_us     ``block_pad_ring_`` of those tiles (what the next convolution needs)
  gather_us   the fastest gather configuration, means in the source (each one's time and
              error listed too)
  means_us    the means kernel
  inline_us   the fastest gather configuration making the means itself

and the ratios (gather + means) / (tma + ring) and inline / (tma + ring). Every result is
checked against the fp32 reference (``block_pad_units`` then ``F.conv2d``); the probe fails
on a mismatch, and stops naming the kernel (``HANG: ...``) if a first call does not finish
within 30 s. ``--configs`` runs some gather configurations only; ``--no-baseline`` skips the
TMA convolutions and frame passes (then the extension need not be built).

    python benchmarks/gather_conv_probe.py --cutlass build/cutlass --json out.json
"""
import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

from bench_gpu import fixed_grid  # noqa: E402
from probe_json import write_probe_json  # noqa: E402
from segblocks_core import ops  # noqa: E402
from segblocks_core.fused import choice_ms  # noqa: E402
from segblocks_core.halo import halo_index, halo_source, pixel_rows  # noqa: E402
from segblocks_core.layout import BlockLayout, BlockTensor  # noqa: E402

# (label, unit side out, stride, C in, C out, residual): SwiftNet-RN18's 3x3 convolutions on
# units with 128-px blocks (layer1 at stride 4: 16-px units)
SHAPES = (
    ("layer1", 16, 1, 64, 64, True),
    ("layer2 down", 8, 2, 64, 128, False),
    ("layer2", 8, 1, 128, 128, True),
    ("layer3 down", 4, 2, 128, 256, False),
    ("layer3", 4, 1, 256, 256, True),
    ("layer4 down", 2, 2, 256, 512, False),
    ("layer4", 2, 1, 512, 512, True),
)
TOL = 3e-2  # max abs error against the fp32 reference, outputs of magnitude ~1
WATCHDOG_S = 30.0  # a first call still running after this long has deadlocked


def finished_in(seconds: float) -> bool:
    """Whether the work queued on the current stream finishes within ``seconds`` (a new
    kernel's barriers can deadlock it: then the probe names the kernel instead of hanging
    until the device call's limit)."""
    done = torch.cuda.Event()
    done.record()
    deadline = time.monotonic() + seconds
    while not done.query():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def load_extension(cutlass_root: str):
    from torch.utils.cpp_extension import load
    os.environ["TORCH_CUDA_ARCH_LIST"] = "9.0a"  # wgmma: sm_90a, whatever the extension's build used
    src = os.path.join(HERE, "gather_conv_probe")
    sources = [os.path.join(src, f) for f in sorted(os.listdir(src)) if f.endswith((".cu", ".cpp"))]
    includes = [os.path.join(cutlass_root, "include"), os.path.join(cutlass_root, "tools", "util", "include"), src]
    return load(name="segblocks_gather_conv_probe", sources=sources,
                extra_include_paths=[p for p in includes if os.path.isdir(p)],
                extra_cuda_cflags=["-O3", "-DNDEBUG", "--expt-relaxed-constexpr", "-std=c++17",
                                   "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__",
                                   "-U__CUDA_NO_HALF2_OPERATORS__"],
                verbose=False)


def case(layout: BlockLayout, side, stride, cin, cout, residual, seed=0):
    gen = torch.Generator().manual_seed(seed)
    cl = torch.channels_last
    tiles = 4 * layout.num_highres + layout.num_lowres
    si = side * stride
    x = torch.randn(tiles, cin, si, si, generator=gen).half().cuda().contiguous(memory_format=cl)
    w = (torch.randn(cout, cin, 3, 3, generator=gen) / (3 * cin ** 0.5)).half().cuda().contiguous(memory_format=cl)
    b = (torch.randn(cout, generator=gen) * 0.1).half().cuda()
    res = torch.randn(tiles, cout, side, side, generator=gen).half().cuda().contiguous(memory_format=cl) \
        if residual else None
    return x, w, b, res


def reference(padded, w, b, res, stride):
    """The fp32 result on ``padded``, ``block_pad_units`` of the input units (the oracle)."""
    y = F.conv2d(padded.float(), w.float(), b.float(), stride)
    if res is not None:
        y = y + res.float()
    return y.relu()


def probe_parser(kind: str) -> argparse.ArgumentParser:
    """The command line of this probe and of ``halo_conv_probe.py`` (``kind``: what their
    configurations are)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--cutlass", default="build/cutlass")
    ap.add_argument("--fraction", type=float, default=0.4)
    ap.add_argument("--batches", default="1,4")
    ap.add_argument("--shapes", default="", help="comma-separated parts of the labels to keep")
    ap.add_argument("--configs", default="", help=f"comma-separated {kind} configurations to run (default all)")
    ap.add_argument("--no-baseline", action="store_true",
                    help="skip the TMA convolutions and frame passes (no extension build needed)")
    ap.add_argument("--json", default=None)
    return ap


def wanted_configs(ap: argparse.ArgumentParser, args, configs) -> list:
    """``--configs`` as a list (empty: all), every one of them built."""
    wanted = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = sorted(set(wanted) - set(configs))
    if unknown:
        ap.error(f"unknown configurations {unknown}; built: {configs}")
    return wanted


def probe_cases(args, shapes):
    """``(batch, layout, tiles, shape)`` for every ``--batches`` batch (a seeded layout at
    ``--fraction``, 128-px blocks) and every shape whose label has a ``--shapes`` part."""
    keep = [p.strip() for p in args.shapes.split(",") if p.strip()]
    for batch in (int(v) for v in args.batches.split(",")):
        grid, _ = fixed_grid(batch, 8, 16, args.fraction)
        layout = BlockLayout.from_grid(grid.cuda(), 128)
        tiles = 4 * layout.num_highres + layout.num_lowres
        for shape in shapes:
            if not keep or any(p in shape[0] for p in keep):
                yield batch, layout, tiles, shape


def tma_baseline(tma_configs, inner, padded, w, b, res, stride, want) -> tuple[dict, object]:
    """Today's convolution, each ``ops.conv_into_`` configuration that runs the case written
    into ``inner`` (the halo-tile ones it now holds left out: they are what the halo probe
    measures, not the baseline): ``({name: {"us", "max_abs_err"}}, fastest name or None)``."""
    tma = {}
    for i, name in enumerate(tma_configs):
        if name.startswith("halo_"):
            continue
        try:
            ops.conv_into_(inner, padded, w, b, res, stride, 0, i)
        except RuntimeError:
            continue
        err = (inner.float() - want).abs().max().item()
        tma[name] = {"us": choice_ms(lambda i=i: ops.conv_into_(inner, padded, w, b, res, stride, 0, i)) * 1e3,
                     "max_abs_err": err}
    return tma, (min(tma, key=lambda k: tma[k]["us"]) if tma else None)


def probe_setup(kind: str, load):
    """This probe's and ``halo_conv_probe.py``'s start: the command line (:func:`probe_parser`),
    the probe's kernels built (``load(cutlass_root)``), ``--configs`` checked against them,
    the device printed. Returns ``(args, ext, configs, wanted, tma_configs)``; ``tma_configs``:
    the baseline's ``ops.conv_into_`` configurations (none with ``--no-baseline``)."""
    ap = probe_parser(kind)
    args = ap.parse_args()
    ext = load(args.cutlass)
    configs = list(ext.configs())
    wanted = wanted_configs(ap, args, configs)
    tma_configs = () if args.no_baseline else ops.cutlass_conv_configs()
    print(torch.cuda.get_device_name(), torch.__version__, kind, "configs", configs, flush=True)
    return args, ext, configs, wanted, tma_configs


def main() -> int:
    args, ext, configs, wanted, tma_configs = probe_setup("gather", load_extension)
    cl = torch.channels_last
    results, failures = [], 0
    with torch.inference_mode():
        for batch, layout, tiles, (label, side, stride, cin, cout, residual) in probe_cases(args, SHAPES):
            x, w, b, res = case(layout, side, stride, cin, cout, residual)
            # BlockPad-ed tiles: the oracle's input and today's convolution's
            padded = ops.block_pad_units(BlockTensor.from_units(x, layout), 1)
            want = reference(padded, w, b, res, stride)
            row = {"batch": batch, "shape": label, "tiles": tiles, "side": side, "stride": stride,
                   "c_in": cin, "c_out": cout, "residual": residual}

            # today: TMA convolution into the next tiles' interiors, then their frames
            nxt = torch.zeros(tiles, cout, side + 2, side + 2, dtype=torch.float16,
                              device="cuda").contiguous(memory_format=cl)
            inner = nxt[:, :, 1:-1, 1:-1]
            tma, best_tma = tma_baseline(tma_configs, inner, padded, w, b, res, stride, want)
            row["tma"] = tma
            row["tma_us"] = tma[best_tma]["us"] if best_tma else None
            if not args.no_baseline:
                row["ring_us"] = choice_ms(lambda: ops.block_pad_ring_(nxt, layout, 1)) * 1e3

            # the gather: packed source rows (units, means, zero row), packed output rows
            halo = halo_index(layout, side * stride)
            source = halo_source(x, halo).contiguous()
            check = source.clone()
            source[halo.unit_rows:halo.zero_row] = 0
            ext.means_(source, halo.mean_rows, halo.unit_rows)
            means_err = (source.float() - check.float()).abs().max().item()
            row["means"] = halo.num_means
            row["means_max_abs_err"] = means_err
            if means_err > 1e-2:
                failures += 1
                print(f"  MEANS MISMATCH {means_err}", flush=True)
            row["means_us"] = choice_ms(lambda: ext.means_(source, halo.mean_rows, halo.unit_rows)) * 1e3
            out = torch.empty(tiles * side * side, cout, dtype=torch.float16, device="cuda")
            res_rows = pixel_rows(res) if res is not None else None
            want_rows = pixel_rows(want)
            # the same source with its mean rows poisoned: the kernels that make the means
            # themselves must not read them
            poisoned = source.clone()
            poisoned[halo.unit_rows:halo.zero_row] = float("nan")
            for key, src, means in (("gather", source, None), ("inline", poisoned, halo.mean_rows)):
                ways = {}
                for i, name in enumerate(configs):
                    if wanted and name not in wanted:
                        continue

                    def run(i=i, src=src, means=means):
                        ext.conv(src, halo.index, w, b, res_rows, out, tiles, side, stride, i, means,
                                 halo.unit_rows)
                    try:
                        out.fill_(float("nan"))
                        run()
                    except RuntimeError as exc:
                        ways[name] = {"error": str(exc).splitlines()[0][:200]}
                        continue
                    if not finished_in(WATCHDOG_S):  # a kernel that never ends: say which, stop
                        print(f"HANG: {key} {name} on b{batch} {label} (not done after {WATCHDOG_S} s)",
                              flush=True)
                        write_probe_json(args.json, fraction=args.fraction, gather_configs=configs,
                                         rows=results, failures=failures + 1,
                                         hang=f"{key} {name} b{batch} {label}")
                        os._exit(3)
                    err = (out.float() - want_rows).abs().max().item()
                    ways[name] = {"us": choice_ms(run) * 1e3, "max_abs_err": err}
                    if not err <= TOL:
                        failures += 1
                        print(f"  MISMATCH {key} {name}: max abs err {err}", flush=True)
                row[key] = ways
                ok = {k: v for k, v in ways.items() if "us" in v and v["max_abs_err"] <= TOL}
                best = min(ok, key=lambda k: ok[k]["us"]) if ok else None
                row[f"{key}_best"] = best
                row[f"{key}_us"] = ok[best]["us"] if best else None
            two_pass = row["tma_us"] + row["ring_us"] if row.get("tma_us") else None
            if two_pass and row["gather_us"]:
                row["ratio_means_kernel"] = (row["gather_us"] + row["means_us"]) / two_pass
            if two_pass and row["inline_us"]:
                row["ratio_inline_means"] = row["inline_us"] / two_pass
            nan = float("nan")
            print(f"b{batch} {label:12s} T={tiles:5d} tma {row.get('tma_us') or nan:6.1f} + ring "
                  f"{row.get('ring_us') or nan:4.1f} | gather {row['gather_us'] or nan:6.1f} "
                  f"({row['gather_best']}) + means {row['means_us']:4.1f} ({halo.num_means} rows) | inline "
                  f"{row['inline_us'] or nan:6.1f} ({row['inline_best']}) | ratios "
                  f"{row.get('ratio_means_kernel', nan):.2f} {row.get('ratio_inline_means', nan):.2f}", flush=True)
            for key in ("gather", "inline"):
                print("    " + key + " " + " ".join(
                    f"{k}={v['us']:.1f}/{v['max_abs_err']:.3f}" if "us" in v else f"{k}=x"
                    for k, v in row[key].items()), flush=True)
            results.append(row)
    write_probe_json(args.json, fraction=args.fraction, gather_configs=configs, tma_configs=list(tma_configs),
                     rows=results, failures=failures)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
