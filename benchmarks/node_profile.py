"""Where does SegBlocks lose to the static network, node by node?

Runs the static best's labels plan and SegBlocks' (units, fixed seeded layout) eagerly,
each from the uint8 frames (the static side's normalisation is a node of its own; SegBlocks'
stem split reads the frames, ``--no-frames-split``: normalised first),
through an ``fx.Interpreter`` that puts every plan node in a profiler range, and reports
the GPU time of the kernels each node launched (CUPTI) per run, averaged over ``--iters`` runs. A node is
named by the module it runs (``backbone.layer1.0.conv1`` in both plans; SegBlocks' own
nodes, such as ``split_like``, by their name), so the table lines them up: static time,
SegBlocks time, and the excess over the ideal
(static time x the MAC ratio of the layout, 0.55 at 40%).

    python benchmarks/node_profile.py [--model swiftnet_rn18] [--fraction 0.4] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.fx as fx

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from benchmarks.bench_gpu import add_setup_args, fixed_layout_setup  # noqa: E402
from segblocks_core.engine import _norm_constants, normalize  # noqa: E402
from segblocks_core.executor import _INPUT_FRAMES, _FramesInput, pooling_tiles, units_mode  # noqa: E402
from probe_json import write_probe_json  # noqa: E402  (this folder: the script's own)


def _label(n: fx.Node) -> str:
    """The source module a node runs (``backbone.layer1.0.conv1``: a dense plan's
    call_module, or the module a SegBlocks block op takes as an argument), else its name."""
    if n.op == "call_module":
        return str(n.target)
    for a in n.args:
        if isinstance(a, fx.Node) and a.op == "get_attr":
            return str(a.target)
    return n.name


KERNELS: dict[str, dict[str, float]] = {}  # node -> kernel name -> ms per run (both plans)


class _Labelled(fx.Interpreter):
    """Runs a plan with each call node inside a profiler range named by :func:`_label`."""

    def run_node(self, n: fx.Node):
        if n.op not in ("call_function", "call_module", "call_method"):
            return super().run_node(n)
        with torch.profiler.record_function("node:" + _label(n)):
            return super().run_node(n)


def node_times(gm: fx.GraphModule, args: tuple, iters: int, run=None) -> dict[str, float]:
    """GPU kernel time (ms per run, CUPTI) of each call node of ``gm``, in execution order;
    nodes of one module (a convolution and its handoff) add up. ``run``: how one run goes
    (default: ``gm`` on ``args`` through :class:`_Labelled`)."""
    run = run or (lambda: _Labelled(gm).run(*args))
    for _ in range(3):
        run()
    torch.cuda.synchronize()
    acts = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=acts) as prof:
        for _ in range(iters):
            run()
        torch.cuda.synchronize()
    # kernel durations only, each added to the node range it was launched in (a range's
    # own device time spans its first to its last kernel, host gaps between them included)
    times: dict[str, float] = {}
    for ev in prof.events():
        if ev.name.startswith("node:"):  # the range's own "kernel" is its GPU-side span
            continue
        node = ev.cpu_parent
        while node is not None and not node.name.startswith("node:"):
            node = node.cpu_parent
        if node is None or not ev.kernels:
            continue
        label = node.name[5:]
        times[label] = times.get(label, 0.0) + sum(k.duration for k in ev.kernels) / 1e3 / iters
        for k in ev.kernels:
            per = KERNELS.setdefault(label, {})
            per[k.name[:120]] = per.get(k.name[:120], 0.0) + k.duration / 1e3 / iters
    order = [_label(n) for n in gm.graph.nodes if n.op in ("call_function", "call_module", "call_method")]
    return {k: times[k] for k in dict.fromkeys(order) if k in times}


def main() -> None:
    ap = argparse.ArgumentParser()
    add_setup_args(ap)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--no-frames-split", dest="frames_split", action="store_false",
                    help="SegBlocks normalises the frames and splits the map (as both sides did before "
                         "SegBlocks.labels_from_frames)")
    ap.add_argument("--no-pooling-tiles", dest="pooling_tiles", action="store_false",
                    help="SegBlocks' max pooling writes packed units that BlockPad copies, not layer 1's first "
                         "padded tiles (executor.pooling_tiles): the kernel-level A/B of bench_gpu.py "
                         "--no-pooling-tiles")
    ap.add_argument("--profile-once", action="store_true",
                    help="no timing: run each plan once, eagerly, between cudaProfilerStart/Stop (for Nsight "
                         "Compute with --profile-from-start off; gpu_round.sh ncuunits)")
    args = ap.parse_args()
    sb, xh, layout, frames = fixed_layout_setup(args, with_frames=True)
    dev = xh.device
    mac_ratio = (args.fraction + (1 - args.fraction) / 4)
    scale, shift = _norm_constants(dev)

    def normalized():  # the static side's input stage, a node of its own
        with torch.profiler.record_function("node:normalize_frames"):
            return normalize(frames, xh.dtype, sb.in_channels)

    with torch.inference_mode():
        sb.labels(xh)
        sb.labels(xh, layout=layout)  # builds both labels plans, warms cuDNN up
        dense_plan, block_plan = sb._labels_graphs()
        if not args.profile_once:
            static = node_times(dense_plan, (), args.iters, run=lambda: _Labelled(dense_plan).run(normalized()))
            static_kernels = dict(KERNELS)
            KERNELS.clear()
        if args.frames_split and sb._input_read_by_stem_split():
            # as SegBlocks.labels_from_frames runs its plan: the stem's split reads the frames
            stand_in = torch.empty((), dtype=xh.dtype, device=dev).expand(xh.shape)

            def run_blocks():
                token = _INPUT_FRAMES.set(_FramesInput(stand_in, frames, scale, shift))
                try:
                    return _Labelled(block_plan).run(stand_in, layout)
                finally:
                    _INPUT_FRAMES.reset(token)
        else:
            def run_blocks():
                return _Labelled(block_plan).run(normalized(), layout)
        if args.profile_once:  # CUPTI (torch.profiler) and Nsight Compute do not share a process well
            with units_mode(sb.units), pooling_tiles(args.pooling_tiles):
                for _ in range(2):  # warm
                    _Labelled(dense_plan).run(normalized())
                    run_blocks()
                torch.cuda.synchronize()
                torch.cuda.profiler.start()
                _Labelled(dense_plan).run(normalized())
                run_blocks()
                torch.cuda.synchronize()
                torch.cuda.profiler.stop()
            return
        with units_mode(sb.units), pooling_tiles(args.pooling_tiles):  # as SegBlocks.labels runs its plan
            blocks = node_times(block_plan, (), args.iters, run=run_blocks)
    rows = []
    for name in list(static) + [k for k in blocks if k not in static]:
        s, b = static.get(name), blocks.get(name)
        rows.append({"node": name, "static_ms": s, "segblocks_ms": b,
                     "excess_ms": (b or 0.0) - (s or 0.0) * mac_ratio})
    total_s, total_b = sum(static.values()), sum(blocks.values())
    print(f"{torch.cuda.get_device_name(dev)}  torch {torch.__version__}  {args.model} b{args.batch} "
          f"{args.fraction:.0%} high-res (MAC ratio {mac_ratio:.2f})")
    print(f"summed node time: static {total_s:.3f} ms, segblocks {total_b:.3f} ms "
          f"(ideal {total_s * mac_ratio:.3f})")
    print(f"{'node':48s} {'static':>8s} {'segblk':>8s} {'excess':>8s}  (us)")
    for r in sorted(rows, key=lambda r: -r["excess_ms"]):
        if max(r["static_ms"] or 0, r["segblocks_ms"] or 0) < 0.002:
            continue
        fmt = lambda v: f"{v * 1e3:8.1f}" if v is not None else f"{'-':>8s}"  # noqa: E731
        print(f"{r['node'][:48]:48s} {fmt(r['static_ms'])} {fmt(r['segblocks_ms'])} {fmt(r['excess_ms'])}")
    write_probe_json(args.json, model=args.model, batch=args.batch, fraction=args.fraction, mac_ratio=mac_ratio,
                     frames_split=args.frames_split, pooling_tiles=args.pooling_tiles,
                     static_total_ms=total_s, segblocks_total_ms=total_b, rows=rows,
                     segblocks_in_order=list(blocks.items()), static_in_order=list(static.items()),
                     static_kernels=static_kernels, segblocks_kernels=KERNELS)


if __name__ == "__main__":
    main()
