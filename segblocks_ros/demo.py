"""``make demo``: the SegBlocks node and a synthetic camera in real ROS 2, tau changed live.

    python -m segblocks_ros.demo --out demo_output

What it does, all through ROS 2 topics and services (the node runs in this process but
talks to the camera and to the monitor only over DDS, as it would on a robot):

1. renders a drive through a procedural street scene
   (:func:`segblocks_core.data.scenes.render_scene`): 1024x2048 at 30 Hz with a GPU,
   512x1024 at 10 Hz on a CPU (the model is slower than the camera on a CPU: the node
   processes the newest frame and counts the others as dropped);
2. starts the ``segblocks`` node and a camera node publishing ``image``;
3. for every tau (default 0.1, 0.3, 0.6) calls the node's ``set_parameters`` service (what
   ``ros2 param set /segblocks_demo/segblocks tau 0.3`` does), prints one table row per
   processed frame (tau, share of high-resolution blocks, GMACs effective vs dense,
   latency), then a dense-network phase (``adaptive: false``) for comparison;
4. writes, per phase, the input image, the block map (low-resolution blocks darkened),
   the colour mask and the overlay of the last frame as PNGs, and ``summary.json``.

Without a trained checkpoint the node runs with random weights (it says so loudly): the
masks are noise then, but the block maps, GMACs and latencies are real.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import numpy as np

__all__ = ["main"]

NAMESPACE = "/segblocks_demo"


def _parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m segblocks_ros.demo", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="demo_output", help="folder for the PNGs and summary.json")
    p.add_argument("--taus", default="0.1,0.3,0.6", help="comma-separated tau values, in order")
    p.add_argument("--frames-per-tau", type=int, default=None,
                   help="processed frames per phase (default: 8 on CPU, 30 on GPU)")
    p.add_argument("--no-dense", action="store_true", help="skip the adaptive:=false phase")
    p.add_argument("--height", type=int, default=None, help="image height (CPU 512, GPU 1024)")
    p.add_argument("--width", type=int, default=None, help="image width (CPU 1024, GPU 2048)")
    p.add_argument("--fps", type=float, default=None, help="camera rate (CPU 10, GPU 30)")
    p.add_argument("--block-size", type=int, default=128, help="SegBlocks block size")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--precision", default=None, help="fp32 | fp16 (default: fp16 on GPU)")
    p.add_argument("--checkpoint", default="",
                   help="checkpoint (.pt); empty = the shipped one, else random weights")
    p.add_argument("--seed", type=int, default=7, help="scene seed")
    p.add_argument("--scene-frames", type=int, default=20,
                   help="distinct frames rendered up front and played in a loop")
    p.add_argument("--timeout", type=float, default=300.0,
                   help="give up when a phase makes no progress for this many seconds")
    args = p.parse_args(argv)
    try:
        args.taus = [float(t) for t in args.taus.split(",") if t.strip()]
    except ValueError:
        p.error(f"--taus must be comma-separated numbers, got {args.taus!r}")
    if not args.taus:
        p.error("--taus is empty")
    return args


def _stamp_key(stamp) -> tuple:
    return (stamp.sec, stamp.nanosec)


def _block_map_picture(rgb: np.ndarray, block_map: np.ndarray, block_size: int) -> np.ndarray:
    """Input image with low-resolution blocks darkened and the block grid drawn."""
    h, w = rgb.shape[:2]
    hr = np.repeat(np.repeat(block_map > 127, block_size, 0), block_size, 1)[:h, :w]
    out = np.where(hr[..., None], rgb, (rgb * 0.35).astype(np.uint8)).astype(np.uint8)
    out[::block_size, :] = (255, 255, 255)
    out[:, ::block_size] = (255, 255, 255)
    return out


def main(argv=None) -> int:
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    # a self-contained demo: keep its DDS traffic on this machine unless told otherwise
    if "ROS_AUTOMATIC_DISCOVERY_RANGE" not in os.environ and "ROS_LOCALHOST_ONLY" not in os.environ:
        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"

    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from PIL import Image as PILImage
    from rcl_interfaces.msg import Parameter as ParameterMsg
    from rcl_interfaces.srv import SetParameters
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from segblocks_core.data.scenes import render_scene
    from segblocks_core.engine import resolve_device

    from .image_codec import decode_image
    from .node import SegBlocksNode, StartupError

    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    gpu = device.type == "cuda"
    height = args.height or (1024 if gpu else 512)
    width = args.width or (2048 if gpu else 1024)
    fps = args.fps or (30.0 if gpu else 10.0)
    per_phase = args.frames_per_tau or (30 if gpu else 8)
    precision = args.precision or ("fp16" if gpu else "fp32")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    print(f"SegBlocks demo: {height}x{width} street scenes at {fps:g} Hz on {device} "
          f"({precision}), block size {args.block_size}, tau {args.taus}"
          f"{'' if args.no_dense else ' then the dense network'}; output in {out_dir}/", flush=True)
    t0 = time.monotonic()
    frames = []
    live = sys.stdout.isatty()
    for i in range(args.scene_frames):
        frames.append(render_scene(args.seed, height, width, t=1.5 * i).image)
        if live:
            print(f"\rrendering street scenes {i + 1}/{args.scene_frames}", end="", flush=True)
    print(f"{chr(13) if live else ''}rendered {args.scene_frames} street scenes in "
          f"{time.monotonic() - t0:.1f} s", flush=True)

    rclpy.init()
    reliable = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=20,
                          reliability=ReliabilityPolicy.RELIABLE)
    try:
        node = SegBlocksNode(namespace=NAMESPACE, parameter_overrides=[
            Parameter("device", value=args.device), Parameter("precision", value=precision),
            Parameter("block_size", value=args.block_size),
            Parameter("checkpoint", value=args.checkpoint), Parameter("tau", value=args.taus[0])])
    except StartupError as exc:
        print(f"demo: the node did not start: {exc}", file=sys.stderr)
        rclpy.shutdown()
        return 1
    node_name = node.get_fully_qualified_name()

    # -- the synthetic camera ----------------------------------------------------------------
    camera = Node("demo_camera", namespace=NAMESPACE)
    image_pub = camera.create_publisher(Image, "image", reliable)
    sent: dict = {}            # stamp -> (frame number, RGB image)
    sent_lock = threading.Lock()
    counter = {"n": 0}

    def publish_frame():
        n = counter["n"]
        counter["n"] += 1
        rgb = frames[n % len(frames)]
        msg = Image(height=height, width=width, encoding="rgb8", step=width * 3, data=rgb.tobytes())
        msg.header.frame_id = "demo_camera_optical"
        msg.header.stamp = camera.get_clock().now().to_msg()
        with sent_lock:
            sent[_stamp_key(msg.header.stamp)] = (n, rgb)
            for key in [k for k, (m, _) in sent.items() if m < n - 60 * fps]:
                del sent[key]
        image_pub.publish(msg)

    camera.create_timer(1.0 / fps, publish_frame)

    # -- the monitor: stats, block maps, colour masks, parameter client -----------------------
    monitor = Node("demo_monitor", namespace=NAMESPACE)
    stats_queue: queue.Queue = queue.Queue()
    images: dict = {"block_map": {}, "color_mask": {}, "overlay": {}}

    def keep(kind):
        def callback(msg):
            store = images[kind]
            store[_stamp_key(msg.header.stamp)] = msg
            while len(store) > 20:
                store.pop(next(iter(store)))
        return callback

    monitor.create_subscription(DiagnosticArray, "segmentation/stats", stats_queue.put, reliable)
    for kind in images:
        monitor.create_subscription(Image, f"segmentation/{kind}", keep(kind), reliable)
    set_client = monitor.create_client(SetParameters, f"{node_name}/set_parameters")

    executor = MultiThreadedExecutor(num_threads=4)
    for n in (node, camera, monitor):
        executor.add_node(n)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()

    def set_parameters(**values) -> Optional[str]:
        """Call the node's set_parameters service; return an error string or None."""
        request = SetParameters.Request(parameters=[
            ParameterMsg(name=k, value=Parameter(k, value=v).get_parameter_value())
            for k, v in values.items()])
        if not set_client.wait_for_service(timeout_sec=10.0):
            return "set_parameters service not available"
        done = threading.Event()
        future = set_client.call_async(request)
        future.add_done_callback(lambda _: done.set())
        if not done.wait(10.0):
            return "set_parameters did not answer"
        bad = [r.reason for r in future.result().results if not r.successful]
        return "; ".join(bad) or None

    def values_of(msg) -> dict:
        return {kv.key: kv.value for kv in msg.status[0].values}

    phases = [{"tau": tau, "adaptive": True} for tau in args.taus]
    if not args.no_dense:
        phases.append({"tau": args.taus[-1], "adaptive": False})
    total = per_phase * len(phases)
    summary = {"device": str(device), "precision": precision, "height": height, "width": width,
               "block_size": args.block_size, "camera_fps": fps,
               "checkpoint": node.engine.checkpoint or "random weights", "phases": []}
    exit_code = 0
    try:
        print("warming up (the first frame builds the execution plan) ...", flush=True)
        try:
            stats_queue.get(timeout=args.timeout)
        except queue.Empty:
            raise RuntimeError(f"no stats from the node within {args.timeout:.0f} s") from None
        header = (f"{'progress':>9}  {'tau':>5}  {'mode':>8}  {'high-res':>8}  "
                  f"{'GMAC eff / dense':>18}  {'latency':>8}  {'model':>8}  {'dropped':>7}")
        print(header)
        print("-" * len(header), flush=True)
        done = 0
        for phase in phases:
            error = set_parameters(**phase)
            if error:
                raise RuntimeError(f"set_parameters {phase} was rejected: {error}")
            first_frame = counter["n"]  # frames published from now on use the new values
            rows = []
            last_msg = None
            while len(rows) < per_phase:
                try:
                    msg = stats_queue.get(timeout=args.timeout)
                except queue.Empty:
                    raise RuntimeError(f"no stats from the node for {args.timeout:.0f} s") from None
                with sent_lock:
                    entry = sent.get(_stamp_key(msg.header.stamp))
                if entry is None or entry[0] < first_frame:
                    continue  # published before this phase's parameters were set
                v = values_of(msg)
                rows.append(v)
                last_msg = msg
                done += 1
                eff, dense = float(v["gmacs_effective"]), float(v["gmacs_dense"])
                progress = f"[{done}/{total}]"
                print(f"{progress:>9}  {float(v['tau']):>5.2f}  "
                      f"{'adaptive' if v['adaptive'] == 'true' else 'dense':>8}  "
                      f"{100 * float(v['highres_fraction']):>7.1f}%  "
                      f"{eff:>6.1f} / {dense:>5.1f} ({100 * eff / dense:>3.0f}%)  "
                      f"{float(v['latency_ms']):>5.0f} ms  {float(v['total_ms']):>5.0f} ms  "
                      f"{v['frames_dropped']:>7}", flush=True)
            summary["phases"].append(_phase_summary(phase, rows))
            _save_pictures(out_dir, phase, last_msg, sent, sent_lock, images, args.block_size,
                           decode_image, PILImage)
        _print_summary(summary["phases"])
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        pngs = sorted(p.name for p in out_dir.glob("*.png"))
        print(f"wrote {len(pngs)} PNGs and summary.json to {out_dir}/", flush=True)
    except RuntimeError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        exit_code = 1
    except KeyboardInterrupt:
        exit_code = 130
    finally:
        executor.shutdown()
        for n in (camera, monitor, node):
            n.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return exit_code


def _phase_summary(phase: dict, rows: list) -> dict:
    def mean(key):
        return float(np.mean([float(r[key]) for r in rows]))

    return {"tau": phase["tau"], "adaptive": phase["adaptive"], "frames": len(rows),
            "highres_fraction": mean("highres_fraction"), "gmacs_effective": mean("gmacs_effective"),
            "gmacs_dense": mean("gmacs_dense"), "model_ms": mean("total_ms"),
            "latency_ms": mean("latency_ms")}


def _print_summary(phases: list) -> None:
    print("\nsummary (means over each phase)")
    print(f"{'tau':>6}  {'mode':>8}  {'high-res':>8}  {'GMAC eff':>8}  {'of dense':>8}  "
          f"{'model ms':>8}  {'latency ms':>10}")
    for p in phases:
        print(f"{p['tau']:>6.2f}  {'adaptive' if p['adaptive'] else 'dense':>8}  "
              f"{100 * p['highres_fraction']:>7.1f}%  {p['gmacs_effective']:>8.2f}  "
              f"{100 * p['gmacs_effective'] / p['gmacs_dense']:>7.0f}%  {p['model_ms']:>8.0f}  "
              f"{p['latency_ms']:>10.0f}")


def _save_pictures(out_dir: Path, phase: dict, stats_msg, sent: dict, sent_lock, images: dict,
                   block_size: int, decode_image, PILImage) -> None:
    """PNGs of the phase's last frame: input, block map, colour mask, overlay."""
    key = _stamp_key(stats_msg.header.stamp)
    tag = f"tau{phase['tau']:.2f}" if phase["adaptive"] else "dense"
    with sent_lock:
        _, rgb = sent[key]
    PILImage.fromarray(rgb).save(out_dir / f"input_{tag}.png")
    # the image topics may trail the stats message by a moment
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and not all(key in images[k] for k in images):
        time.sleep(0.02)
    if key in images["block_map"]:
        m = images["block_map"][key]
        grid = np.frombuffer(m.data, np.uint8).reshape(m.height, m.width)
        PILImage.fromarray(_block_map_picture(rgb, grid, block_size)).save(out_dir / f"block_map_{tag}.png")
    for kind in ("color_mask", "overlay"):
        if key in images[kind]:
            PILImage.fromarray(np.ascontiguousarray(decode_image(images[kind][key]))).save(
                out_dir / f"{kind}_{tag}.png")


if __name__ == "__main__":
    sys.exit(main())
