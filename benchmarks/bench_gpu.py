"""GPU benchmark: SegBlocks vs the strongest static SwiftNet on the same GPU, same run.

Every configuration runs the same job: a uint8 frame already in GPU memory -> class ids.
"static best" = dense SwiftNet, BatchNorm folded, fp16, channels_last, one CUDA graph
replay per frame. SegBlocks rows use the same prepared network in blocks
(segblocks_core.fastpath.GraphedSegmenter): fixed high-res fractions use a fixed seeded
grid (capacity = that many blocks), policy rows run the complexity policy on generated
street scenes inside the graph. Latency = median over >= 50 timed replays (CUDA events)
after warm-up; memory = peak allocated during one eager pass of the same configuration.

    python benchmarks/bench_gpu.py --out benchmarks/results  [--quick]

Writes gpu-<gpu>-<date>.json (schema in issue 6) and prints a table with ratios.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from segblocks_core import SegBlocks, count_macs  # noqa: E402
from segblocks_core.engine import frame_labels, normalize  # noqa: E402
from segblocks_core.executor import concurrent_lowres, frames_split, pooling_tiles, units_min_side  # noqa: E402
from segblocks_core.overlap import skip_overlap  # noqa: E402
from segblocks_core.fastpath import GraphedSegmenter, prepare_network  # noqa: E402
from segblocks_core import fused, ops  # noqa: E402
from segblocks_core.fused import (CONV_UNITS_MODES, PADDED_OUTPUT_MODES, conv_units, cutlass_convs,  # noqa: E402
                                  fast_upsampling, pad_classifier, padded_outputs, space_to_depth_convs,
                                  upsample_tiles)
from segblocks_core.timing import cuda_median_ms  # noqa: E402
from probe_json import launch_prefix  # noqa: E402
from segblocks_core.layout import BlockLayout  # noqa: E402
from segblocks_core.models import build_model  # noqa: E402


def randomize_bn(net, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
    return net


def autotune_cudnn(limit: int = 0) -> None:
    """cuDNN's benchmark mode for the rest of the process, timing ``limit`` engine
    configurations per shape (0: all): what the fast path captures its graphs under
    (:func:`segblocks_core.fastpath.cudnn_autotuning`), for the rows and probes that build
    their graphs themselves."""
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.benchmark_limit = limit


def time_fn(fn, iters, warmup=10):
    """Median CUDA-event time of ``fn()`` in ms over ``iters`` calls after ``warmup``."""
    return cuda_median_ms(fn, iters, warmup)


def peak_mb(fn):
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def street_frames(n, h, w, seed=0):
    try:
        from segblocks_core.data.scenes import render_scene
        return np.stack([render_scene(seed + i, h, w).image for i in range(n)])
    except ImportError:  # data module not available: smooth random fields with texture
        rng = np.random.default_rng(seed)
        base = rng.integers(0, 256, (n, h // 64, w // 64, 3)).repeat(64, 1).repeat(64, 2)
        noise = rng.normal(0, 25, (n, h, w, 3)) * (rng.random((n, h // 128, w // 128, 1)) > 0.5).repeat(128, 1).repeat(128, 2)
        return np.clip(base + noise, 0, 255).astype(np.uint8)


def fixed_grid(n, gh, gw, fraction, seed=0):
    g = torch.Generator().manual_seed(seed)
    total = n * gh * gw
    k = int(round(fraction * total))
    grid = torch.zeros(total, dtype=torch.bool)
    grid[torch.randperm(total, generator=g)[:k]] = True
    return grid.view(n, gh, gw), k


def add_setup_args(ap: argparse.ArgumentParser) -> None:
    """The arguments of :func:`fixed_layout_setup` (the probes' common options)."""
    ap.add_argument("--model", default="swiftnet_rn18")
    ap.add_argument("--fraction", type=float, default=0.4)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--height", type=int, default=1024)
    ap.add_argument("--width", type=int, default=2048)
    ap.add_argument("--json", default=None)


def prepared_segblocks(model: str, batch: int, height: int, width: int):
    """The seeded fp16 network ``model`` (random weights and BatchNorm statistics) prepared
    for the GPU as SegBlocks on units with the dense shortcut, and ``batch`` generated street
    frames (uint8 ``[N, H, W, 3]`` on the GPU). Returns ``(sb, frames)``."""
    dev = torch.device("cuda")
    torch.manual_seed(0)
    net = randomize_bn(build_model(model, 19).eval())
    fast = prepare_network(net, torch.float16, dev)
    sb = SegBlocks(fast, units=True, dense_when_all_highres=True)
    return sb, torch.from_numpy(street_frames(batch, height, width)).to(dev)


def fixed_layout_setup(args, with_frames=False):
    """For the probes: the prepared fp16 network of ``args.model`` as SegBlocks on units
    (dense shortcut on), generated street frames on the GPU, normalised as its input, and a
    seeded layout of ``args.fraction`` high-res blocks, as this benchmark's fixed-fraction
    rows use them. Returns ``(sb, x, layout)``, and the uint8 frames too with
    ``with_frames``."""
    autotune_cudnn()
    dev = torch.device("cuda")
    sb, frames = prepared_segblocks(args.model, args.batch, args.height, args.width)
    n, gh, gw = sb.grid_shape((args.batch, 3, args.height, args.width))
    grid, _ = fixed_grid(n, gh, gw, args.fraction)
    with torch.inference_mode():
        x = normalize(frames, torch.float16, sb.in_channels)
    layout = BlockLayout.from_grid(grid.to(dev), sb.block_size)
    return (sb, x, layout, frames) if with_frames else (sb, x, layout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--height", type=int, default=1024)
    ap.add_argument("--width", type=int, default=2048)
    ap.add_argument("--models", default="swiftnet_rn18,swiftnet_rn50")
    ap.add_argument("--batches", default="1,4")
    ap.add_argument("--taus", default="0.2,0.3,0.5")
    ap.add_argument("--quick", action="store_true", help="fewer configurations (smoke test)")
    ap.add_argument("--input-channels", type=int, default=4,
                    help="pad the RGB input to this many channels (prepare_network); 3 = unpadded")
    ap.add_argument("--no-fuse-epilogue", dest="fuse_epilogue", action="store_false",
                    help="prepare the network without fused conv epilogues (static and SegBlocks "
                         "alike); writes unfused-epilogue-gpu-<gpu>-<date>.json")
    ap.add_argument("--no-units", dest="units", action="store_false",
                    help="SegBlocks with separate high-res and low-res calls per operation instead "
                         "of units (SegBlocks(units=False)); writes split-gpu-<gpu>-<date>.json")
    ap.add_argument("--no-fast-max-pool", dest="fast_max_pool", action="store_false",
                    help="PyTorch's max pooling (with int64 indices) on both sides instead of the "
                         "native one; writes torch-maxpool-gpu-<gpu>-<date>.json")
    ap.add_argument("--no-fast-upsample", dest="fast_upsample", action="store_false",
                    help="PyTorch's bilinear upsampling and a separate skip add in the decoder on "
                         "both sides instead of the native one-pass kernels; writes "
                         "torch-upsample-gpu-<gpu>-<date>.json")
    ap.add_argument("--no-upsample-tiles", dest="upsample_tiles", action="store_false",
                    help="SegBlocks' decoder upsampling writes its output and BlockPad pads it for the "
                         "blend convolution, instead of the upsampling writing the padded tiles itself; "
                         "writes blockpad-blends-gpu-<gpu>-<date>.json")
    ap.add_argument("--space-to-depth", action="store_true",
                    help="let the stride-2 stems (both sides) also run on their input's space-to-depth where "
                         "that is faster, timed per shape at warm-up (fused.space_to_depth_convs); writes "
                         "s2d-gpu-<gpu>-<date>.json")
    ap.add_argument("--units-min-side", type=int, default=0,
                    help="keep whole blocks where high-res blocks are smaller than this many px (the deep "
                         "layers; executor.units_min_side); > 0 writes units-min-side-<n>-gpu-<gpu>-<date>.json")
    ap.add_argument("--conv-units", choices=CONV_UNITS_MODES, default="off",
                    help="3x3 convolutions on units as one kernel that gathers the halo "
                         "(ops.conv3x3_units): off (BlockPad + cuDNN), auto (timed per shape) or "
                         "always; other than off writes conv-units-<mode>-gpu-<gpu>-<date>.json")
    ap.add_argument("--cudnn-benchmark-limit", type=int, default=0,
                    help="how many cuDNN engine configurations the benchmark mode times per convolution "
                         "shape, both sides (torch.backends.cudnn.benchmark_limit; default 0 = all, as "
                         "the fast path captures its graphs; torch's own default is 10); other than 0 "
                         "writes cudnn-limit-<n>-gpu-<gpu>-<date>.json")
    ap.add_argument("--no-pad-classifier", dest="pad_classifier", action="store_false",
                    help="both sides run the 19-class classifier as defined instead of padded to 24 output "
                         "channels (fused.pad_classifier); writes unpadded-classifier-gpu-<gpu>-<date>.json")
    ap.add_argument("--no-cutlass", dest="cutlass", action="store_false",
                    help="both sides use cuDNN alone, not also the CUTLASS convolutions where built and faster "
                         "(fused.cutlass_convs); writes no-cutlass-gpu-<gpu>-<date>.json")
    ap.add_argument("--no-persistent-cutlass", dest="persistent_cutlass", action="store_false",
                    help="time only CUTLASS's own convolution kernel (one thread block per tile), not also the "
                         "persistent configurations (ping-pong, stream-K); writes "
                         "no-persistent-cutlass-gpu-<gpu>-<date>.json")
    ap.add_argument("--no-cluster-cutlass", dest="cluster_cutlass", action="store_false",
                    help="leave out the CUTLASS configurations in thread-block clusters (the weight or im2col "
                         "tiles multicast within a cluster); writes no-cluster-cutlass-gpu-<gpu>-<date>.json")
    ap.add_argument("--no-halo-conv", dest="halo_conv", action="store_false",
                    help="leave out the halo-tile convolutions (conv_into_'s halo_* configurations: 3x3 stride 1, "
                         "channels multiples of 64); writes no-halo-conv-gpu-<gpu>-<date>.json")
    ap.add_argument("--no-frames-split", dest="frames_split", action="store_false",
                    help="SegBlocks normalises the frames into a dense map and splits that, instead of "
                         "reading the frames straight into the stem's tiles (executor.frames_split); writes "
                         "no-frames-split-gpu-<gpu>-<date>.json")
    ap.add_argument("--no-pooling-tiles", dest="pooling_tiles", action="store_false",
                    help="SegBlocks' max pooling writes packed units that BlockPad copies for layer 1's first "
                         "convolution, instead of that convolution's padded tiles (interiors, then frames; "
                         "executor.pooling_tiles); writes no-pooling-tiles-gpu-<gpu>-<date>.json")
    ap.add_argument("--overlap-skips", type=int, default=0, metavar="LEVELS",
                    help="both sides run the decoder's LEVELS deepest skip projections on a side stream, "
                         "overlapping the last backbone layer (segblocks_core.overlap; 0: off, the default); "
                         "other than 0 writes overlap-skips-<LEVELS>-gpu-<gpu>-<date>.json")
    ap.add_argument("--padded-outputs", choices=PADDED_OUTPUT_MODES, default="auto",
                    help="SegBlocks' convolutions write their consumers' BlockPad-ed tiles (CUTLASS into the "
                         "interiors, then the frames; fused.padded_outputs): auto (timed per shape, where the "
                         "CUTLASS kernels are built), always or off; other than auto writes "
                         "padded-outputs-<mode>-gpu-<gpu>-<date>.json")
    args = ap.parse_args()
    # read at capture: the graphs keep them
    with fast_upsampling(args.fast_upsample), conv_units(args.conv_units), upsample_tiles(args.upsample_tiles), \
            space_to_depth_convs(args.space_to_depth), units_min_side(args.units_min_side), \
            pad_classifier(args.pad_classifier), \
            cutlass_convs(args.cutlass, args.persistent_cutlass, args.cluster_cutlass, args.halo_conv), \
            padded_outputs(args.padded_outputs), frames_split(args.frames_split), pooling_tiles(args.pooling_tiles), \
            skip_overlap(args.overlap_skips):
        run(args)


def first_layer_ways() -> dict[str, str]:
    """``"input shape, weight shape" -> way`` of every stride-2 convolution with at most 4 input
    channels timed in this process (the stems: unfused, fused or space_to_depth)."""
    return {f"{list(key[0])} {list(key[3])}": way for key, way in fused._CHOICE.items()
            if key[4] == (2, 2) and key[3][1] <= 4}


def conv_ways() -> dict[str, int]:
    """How many convolution shapes timed in this process run each way (fused._CHOICE:
    unfused, fused cuDNN, space_to_depth, cutlass:<config>)."""
    counts: dict[str, int] = {}
    for way in fused._CHOICE.values():
        counts[way] = counts.get(way, 0) + 1
    return counts


def run(args) -> None:
    dev = torch.device("cuda")
    autotune_cudnn(args.cudnn_benchmark_limit)
    h, w = args.height, args.width
    gpu = torch.cuda.get_device_name(dev)
    rows = []
    fractions = [1.0, 0.6, 0.4, 0.2]
    taus = [float(t) for t in args.taus.split(",") if t]
    frames_np = street_frames(4, h, w)
    for model in args.models.split(","):
        torch.manual_seed(0)
        net = randomize_bn(build_model(model, 19).eval())
        net32 = net.to(dev)
        fast = prepare_network(net, torch.float16, dev, fuse_epilogue=args.fuse_epilogue,
                               input_channels=args.input_channels, fast_max_pool=args.fast_max_pool)
        # reads the input padded to sb.in_channels; an all-high-res layout runs the dense network
        sb = SegBlocks(fast, units=args.units, dense_when_all_highres=True)
        sb_blocks = SegBlocks(fast, units=args.units)  # all-high-res in blocks: the machinery's overhead
        sb_macs = SegBlocks(net32)           # MACs of the network as defined (3 input channels)
        cin = sb.in_channels
        for batch in [int(b) for b in args.batches.split(",")]:
            if args.quick and (batch > 1 and model != "swiftnet_rn18"):
                continue
            frames = torch.from_numpy(frames_np[np.arange(batch) % 4]).to(dev)
            x32 = normalize(frames)

            def row(mode, config, dtype, latency, mem, gmacs, frac=None, tau=None):
                rows.append(dict(model=model, mode=mode, config=config, batch=batch, dtype=dtype,
                                 highres_fraction=frac, tau=tau, latency_ms=latency,
                                 peak_mem_mb=mem, gmacs=gmacs))
                print(f"{model:14s} b{batch} {mode:9s} {config:28s} {latency:8.3f} ms "
                      f"{mem:9.1f} MB {gmacs:7.1f} GMAC", flush=True)

            dense_gmacs = count_macs(sb_macs, x32[:1]).dense.item() / 1e9
            with torch.inference_mode():
                lat = time_fn(lambda: net32(x32).argmax(1), args.iters)
                mem = peak_mb(lambda: net32(x32).argmax(1))
            row("static", "fp32 eager NCHW", "float32", lat, mem, dense_gmacs)
            with torch.inference_mode():
                xh = normalize(frames, torch.float16, cin)
            # the previous static best: logits upsampled to full resolution, then argmax
            unfused = _GraphOf(lambda: fast(normalize(frames, torch.float16, cin)).argmax(1).to(torch.uint8))
            lat = time_fn(unfused.replay, args.iters)
            del unfused
            with torch.inference_mode():
                mem = peak_mb(lambda: fast(xh).argmax(1).to(torch.uint8))
            row("static", STATIC_UNFUSED, "float16", lat, mem, dense_gmacs)
            # the static best: the same with the fused upsample+argmax head
            seg = GraphedSegmenter(fast, batch, h, w, dense=True, segblocks=sb,
                                   cudnn_benchmark_limit=args.cudnn_benchmark_limit)
            lat = time_fn(lambda: seg.run(frames), args.iters)
            with torch.inference_mode():
                mem = peak_mb(lambda: sb.labels(xh))
            row("static", STATIC_BEST, "float16", lat, mem, dense_gmacs)
            del seg
            n, gh, gw = sb.grid_shape((batch, 3, h, w))

            def fixed_row(segblocks, frac, config):
                """A fixed layout of ``frac`` high-res blocks, the frame captured for it."""
                grid, _ = fixed_grid(n, gh, gw, frac)
                layout = BlockLayout.from_grid(grid.to(dev), 128)
                seg_fixed = _FixedLayoutGraph(segblocks, frames, layout)
                lat = time_fn(seg_fixed.replay, args.iters)
                with torch.inference_mode():
                    mem = peak_mb(lambda: segblocks.labels(xh, layout=layout))
                del seg_fixed
                eff = sb_macs.count_macs(x32.shape, layout).effective.mean().item() / 1e9
                row("segblocks", config, "float16", lat, mem, eff, frac=frac)

            for frac in fractions:
                fixed_row(sb, frac, f"fixed {frac:.0%} high-res")
            fixed_row(sb_blocks, 1.0, "fixed 100% high-res, in blocks")
            for tau in taus:
                seg = GraphedSegmenter(fast, batch, h, w, tau=tau, segblocks=sb,
                                       cudnn_benchmark_limit=args.cudnn_benchmark_limit)
                how = "sync-free" if seg.sync_free else "host bucket"
                if seg.dense_above is not None:
                    how += f", dense above {seg.dense_above:.0%}"
                lat = time_fn(lambda: seg.run(frames), args.iters)
                hr = seg.grid.float().mean().item()
                layout = BlockLayout.from_grid(seg.grid.clone(), 128)
                eff = sb_macs.count_macs(x32.shape, layout).effective.mean().item() / 1e9
                with torch.inference_mode():
                    mem = peak_mb(lambda: sb.labels(xh, layout=layout))
                row("segblocks", f"policy tau={tau} ({how})", "float16", lat, mem, eff, frac=hr, tau=tau)
                del seg
            torch.cuda.empty_cache()

    result = {"gpu": gpu, "torch": torch.__version__, "cuda": torch.version.cuda,
              "height": h, "width": w, "fuse_epilogue": args.fuse_epilogue,
              "input_channels": args.input_channels, "units": args.units,
              "fast_max_pool": args.fast_max_pool, "fast_upsample": args.fast_upsample,
              "conv_units": args.conv_units, "upsample_tiles": args.upsample_tiles,
              "space_to_depth": args.space_to_depth, "units_min_side": args.units_min_side,
              "cudnn_benchmark_limit": torch.backends.cudnn.benchmark_limit,
              "pad_classifier": args.pad_classifier, "pooling_tiles": args.pooling_tiles,
              "overlap_skips": args.overlap_skips,
              # kernels launched while the one before ends (SEGBLOCKS_PDL=0: off)
              "programmatic_launch": ops.programmatic_launch(),
              # BlockPad's lookups before that wait (SEGBLOCKS_PDL_PREFETCH=0: after it)
              "programmatic_prefetch": ops.programmatic_prefetch(),
              # every built configuration (conv_ways' "cutlass:<i>" index it) and those timed
              "cutlass_configs": list(ops.cutlass_conv_configs()),
              "cutlass_config_indices": list(fused.cutlass_config_indices()),
              "padded_outputs": args.padded_outputs,
              # how each convolution shape runs, both sides (timed at warm-up, fused._CHOICE)
              "conv_ways": conv_ways(),
              # which configuration writes each padded output, or BlockPad + cuDNN (None)
              "padded_output_ways": {str(list(k)): v for k, v in fused._PADDED_CHOICE.items()},
              # how cuDNN runs each stride-2 first-layer shape (timed at warm-up, fused._CHOICE)
              "first_layer_ways": first_layer_ways(), "rows": rows}
    slug = re.sub(r"[^a-z0-9]+", "-", gpu.lower()).strip("-")
    date = datetime.date.today().isoformat()
    os.makedirs(args.out, exist_ok=True)
    prefix = ("" if args.units else "split-") + ("" if args.fast_max_pool else "torch-maxpool-") + \
        ("" if args.fast_upsample else "torch-upsample-") + \
        ("" if args.upsample_tiles else "blockpad-blends-") + ("s2d-" if args.space_to_depth else "") + \
        (f"units-min-side-{args.units_min_side}-" if args.units_min_side else "") + \
        ("" if args.conv_units == "off" else f"conv-units-{args.conv_units}-") + \
        ("" if args.cudnn_benchmark_limit == 0 else f"cudnn-limit-{args.cudnn_benchmark_limit}-") + \
        ("" if args.pad_classifier else "unpadded-classifier-") + \
        ("" if args.cutlass else "no-cutlass-") + \
        ("" if args.persistent_cutlass or not args.cutlass else "no-persistent-cutlass-") + \
        ("" if args.cluster_cutlass or not args.cutlass else "no-cluster-cutlass-") + \
        ("" if args.halo_conv or not args.cutlass else "no-halo-conv-") + \
        ("" if args.padded_outputs == "auto" else f"padded-outputs-{args.padded_outputs}-") + \
        ("" if args.frames_split else "no-frames-split-") + \
        ("" if args.pooling_tiles else "no-pooling-tiles-") + \
        (f"overlap-skips-{args.overlap_skips}-" if args.overlap_skips else "") + \
        launch_prefix() + \
        ("" if args.fuse_epilogue else "unfused-epilogue-") + \
        ("" if args.input_channels == 4 else f"input{args.input_channels}-")
    path = os.path.join(args.out, f"{prefix}gpu-{slug}-{date}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    print_ratios(rows)
    print("wrote", path)


STATIC_BEST = "fp16 NHWC BN-folded graph, fused head"
STATIC_UNFUSED = "fp16 NHWC BN-folded graph, argmax head"


class _GraphOf:
    """CUDA graph of ``fn()`` (warmed up on a side stream first)."""

    def __init__(self, fn):
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.inference_mode(), torch.cuda.stream(stream):
            for _ in range(2):
                fn()
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(self.graph):
            self.out = fn()

    def replay(self):
        self.graph.replay()


class _FixedLayoutGraph(_GraphOf):
    """CUDA graph of one frame with a fixed layout (fixed-fraction rows): the same job as
    the other rows (uint8 frame -> normalise -> network in blocks -> class ids).
    ``frames_split``: the frames go straight into the stem's tiles (``frame_labels``; the
    normalised map is not written); off: normalise, then the network."""

    def __init__(self, sb, frames, layout, concurrent=True, frames_split=True):
        lowres_stream = torch.cuda.Stream() if concurrent else None

        def frame():
            with concurrent_lowres(lowres_stream):
                if frames_split:
                    return frame_labels(sb, frames, torch.float16, layout=layout)
                return sb.labels(normalize(frames, torch.float16, sb.in_channels), layout=layout)
        super().__init__(frame)


def print_ratios(rows):
    def find(model, batch, config):
        for r in rows:
            if r["model"] == model and r["batch"] == batch and r["config"] == config:
                return r
        return None

    print(f"\nratios vs static best ({STATIC_BEST}), same GPU, same run:")
    for model in sorted({r["model"] for r in rows}):
        for batch in sorted({r["batch"] for r in rows}):
            base = find(model, batch, STATIC_BEST)
            if base is None:
                continue
            for r in rows:
                if r["model"] == model and r["batch"] == batch and r is not base and r["dtype"] == "float16":
                    print(f"  {model} b{batch} {r['config']:28s} latency {r['latency_ms'] / base['latency_ms']:.2f}x"
                          f"  memory {r['peak_mem_mb'] / base['peak_mem_mb']:.2f}x"
                          f"  GMAC {r['gmacs'] / base['gmacs']:.2f}x")


if __name__ == "__main__":
    main()
