"""The SegBlocks ROS 2 node: camera images in, class masks and compute statistics out.

A thin adapter over :class:`segblocks_core.engine.SegmentationEngine`:

* Subscription callbacks only put the message into a one-slot "newest frame" box per
  camera (a frame still waiting there when a newer one arrives is counted as dropped), so
  the executor stays free for parameter services while the model runs.
* One worker thread takes the newest frame of every camera, decodes it
  (:mod:`segblocks_ros.image_codec`), runs all frames of the same size through one
  ``engine.infer`` call and publishes every output with the input's header.
* ``tau``, ``adaptive`` and ``overlay_alpha`` are dynamic parameters read at the start of
  each batch, so ``ros2 param set /segblocks tau 0.4`` applies from the next frame.

Topics (relative; ``<cam>/`` is prepended for every entry of ``cameras``):
``image`` or ``image/compressed`` in; ``segmentation/mask``, ``segmentation/color_mask``,
``segmentation/overlay``, ``segmentation/block_map``, ``segmentation/stats`` out, and node
health on ``/diagnostics`` about once a second.

Frame accounting, per camera: every frame that arrives ends as exactly one of processed,
dropped (overwritten by a newer frame before the worker took it) or rejected (malformed,
or inference failed). ``frames_received`` counts frames whose fate is decided, so
``frames_received == frames_processed + frames_dropped + frames_rejected`` holds in every
message; the at most two frames per camera still waiting or in inference are reported as
``frames_pending``.
"""

from __future__ import annotations

import math
import re
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
from rclpy.exceptions import ParameterException, ParameterUninitializedException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy)
from sensor_msgs.msg import CompressedImage, Image

from segblocks_core.classes import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, colorize

from .image_codec import (DEFAULT_MAX_PIXELS, ImageDecodeError, block_map_msg, decode,
                          mono8_msg, overlay, rgb8_msg)

__all__ = ["SegBlocksNode", "StartupError", "main", "NODE_NAME", "STATS_KEYS"]

NODE_NAME = "segblocks"
MODELS = ("swiftnet_rn18", "swiftnet_rn50")
PRECISIONS = ("fp32", "fp16")
TRANSPORTS = ("raw", "compressed")
RELIABILITIES = ("best_effort", "reliable")
#: Largest meaningful tau: C_b is a mean of summed |differences| of ImageNet-normalised
#: channels, which stays below ~12.5; any tau above it runs every block at low resolution.
TAU_MAX = 20.0
#: Statistics messages kept for subscribers that match late (transient local).
STATS_HISTORY_DEPTH = 5
#: Keys of the ``segmentation/stats`` status, in order.
STATS_KEYS = (
    "camera", "tau", "adaptive", "highres_fraction", "blocks_highres", "blocks_total",
    "gmacs_effective", "gmacs_executed", "gmacs_dense", "decode_ms", "preprocess_ms",
    "inference_ms", "postprocess_ms", "total_ms", "latency_ms", "batch_size", "width",
    "height", "frames_received", "frames_processed", "frames_dropped", "frames_rejected",
    "frames_pending",
)
_CAMERA_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(/[A-Za-z][A-Za-z0-9_]*)*$")
_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")
_REJECT_LOG_PERIOD_S = 5.0
_HEALTH_PERIOD_S = 1.0


def parse_dense_above(text: str):
    """The dense_above parameter: 'auto', 'off' (None) or a fraction in [0, 1]."""
    value = str(text).strip().lower()
    if value in ("auto", "off"):
        return None if value == "off" else "auto"
    try:
        fraction = float(value)
    except ValueError:
        fraction = float("nan")
    if not 0.0 <= fraction <= 1.0:
        raise StartupError(f"parameter 'dense_above' must be auto, off or a fraction in [0, 1], got {text!r}")
    return fraction


_WARMUP_SIZE = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*(?:x\s*(\d+)\s*)?$", re.IGNORECASE)
MAX_WARMUP_BATCH = 64


def parse_warmup_sizes(entries, max_pixels: int) -> list[tuple[int, int, int]]:
    """The warmup_sizes parameter: ``"WIDTHxHEIGHT"`` or ``"WIDTHxHEIGHTxBATCH"`` entries
    (batch 1 by default; empty entries are skipped) -> ``[(width, height, batch)]``."""
    sizes = []
    for entry in entries:
        if not str(entry).strip():
            continue
        match = _WARMUP_SIZE.match(str(entry))
        if match is None:
            raise StartupError(f"parameter 'warmup_sizes': {entry!r} is not WIDTHxHEIGHT or "
                               f"WIDTHxHEIGHTxBATCH (e.g. 2048x1024 or 2048x1024x2)")
        width, height = int(match.group(1)), int(match.group(2))
        batch = int(match.group(3) or 1)
        if width < 1 or height < 1 or not 1 <= batch <= MAX_WARMUP_BATCH:
            raise StartupError(f"parameter 'warmup_sizes': {entry!r} needs a width and height >= 1 "
                               f"and a batch in 1 .. {MAX_WARMUP_BATCH}")
        if width * height > max_pixels:
            raise StartupError(f"parameter 'warmup_sizes': {entry!r} has more pixels than "
                               f"max_image_pixels ({max_pixels}); such frames would be rejected")
        if (width, height, batch) not in sizes:
            sizes.append((width, height, batch))
    return sizes


class StartupError(RuntimeError):
    """The node cannot start (bad parameter, checkpoint or device); the message says why
    and what to change."""


@dataclass
class _Frame:
    msg: Any
    arrival: float  # time.monotonic() when the callback got it


@dataclass
class _Camera:
    """One input camera: topics, newest-frame slot and frame counters."""

    name: str                      # "" for the single, unprefixed camera
    prefix: str                    # "" or "<name>/"
    pending: Optional[_Frame] = None
    arrived: int = 0
    received: int = 0
    processed: int = 0
    dropped: int = 0
    rejected: int = 0
    last_arrival: float = -math.inf
    pubs: dict = field(default_factory=dict)
    sub: Any = None

    def counters(self) -> dict:
        return {"frames_received": self.received, "frames_processed": self.processed,
                "frames_dropped": self.dropped, "frames_rejected": self.rejected,
                "frames_pending": self.arrived - self.received}


def _descriptor(description: str, read_only: bool = False, constraints: str = "",
                float_range: Optional[tuple] = None, int_range: Optional[tuple] = None
                ) -> ParameterDescriptor:
    d = ParameterDescriptor(description=description, read_only=read_only,
                            additional_constraints=constraints)
    if float_range is not None:
        d.floating_point_range = [FloatingPointRange(
            from_value=float(float_range[0]), to_value=float(float_range[1]), step=0.0)]
    if int_range is not None:
        d.integer_range = [IntegerRange(from_value=int_range[0], to_value=int_range[1],
                                        step=int_range[2] if len(int_range) > 2 else 1)]
    return d


class SegBlocksNode(Node):
    """Semantic segmentation with SegBlocks adaptive resolution.

    Args:
        **kwargs: passed to :class:`rclpy.node.Node` (``namespace``, ``context``,
            ``parameter_overrides``, ``cli_args``...).

    Raises:
        StartupError: a parameter is invalid, the checkpoint is missing or does not fit
            the model, or the device does not exist. The error is also logged as fatal.
    """

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._stop = False
        self._worker: Optional[threading.Thread] = None
        self._cameras: list[_Camera] = []
        self._reject_log: dict = {}
        self._health_window = {"arrived": 0, "processed": 0, "rejected": 0, "failed": 0,
                               "t": time.monotonic()}
        self._last_stats: dict = {}
        self._last_error = ""
        self._started = time.monotonic()
        try:
            self._setup()
        except StartupError as exc:
            self.get_logger().fatal(f"cannot start: {exc}")
            self.destroy_node()
            raise

    # -- start-up ----------------------------------------------------------------------------

    def _setup(self) -> None:
        # Registered before declaring, so values from YAML files and overrides are checked too.
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._declare_parameters()
        self._max_pixels = self._param("max_image_pixels")
        self._warmup_sizes = parse_warmup_sizes(self._param("warmup_sizes"), self._max_pixels)
        self._warming_up = bool(self._warmup_sizes)
        self._engine = self._make_engine()
        self._lut = self._make_palette()
        self._make_topics()
        self._worker = threading.Thread(target=self._worker_loop, name="segblocks_inference",
                                        daemon=True)
        self._worker.start()
        self._health_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._health_timer = self.create_timer(_HEALTH_PERIOD_S, self._publish_health)
        inputs = ", ".join(c.sub.topic_name for c in self._cameras)
        self.get_logger().info(
            f"{self._engine.model_name} on {self._engine.device} ({self._engine.precision}), "
            f"block size {self._engine.block_size}, tau {self._tau}, adaptive {self._adaptive}; "
            f"listening on {inputs} ({self._param('qos_reliability')})")

    def _declare_parameters(self) -> None:
        cityscapes_palette = [int(v) for rgb in CITYSCAPES_PALETTE for v in rgb]
        declarations = [
            ("tau", 0.3, _descriptor(
                "SegBlocks complexity threshold: a block runs at high resolution iff its "
                "complexity C_b (mean |image - 4x4-pooled image| of the ImageNet-normalised "
                "input, summed over channels) exceeds tau. 0 = every non-flat block high-res; "
                "higher = fewer high-res blocks, less compute. Finite, >= 0; applies from "
                "the next frame.", float_range=(0.0, TAU_MAX))),
            ("adaptive", True, _descriptor(
                "true: SegBlocks adaptive resolution; false: the dense network on every frame "
                "(live A/B comparison).")),
            ("overlay_alpha", 0.5, _descriptor(
                "Weight of the class colours in segmentation/overlay (0 = camera image only, "
                "1 = colour mask only).", float_range=(0.0, 1.0))),
            ("model", "swiftnet_rn18", _descriptor(
                "Segmentation network.", read_only=True, constraints=" | ".join(MODELS))),
            ("checkpoint", "", _descriptor(
                "Path of a .pt checkpoint saved by segblocks-train. Empty: the checkpoint "
                "shipped for the model if there is one, else random weights (with a loud "
                "warning); 'random': random weights (tests and speed measurements only).",
                read_only=True)),
            ("num_classes", 19, _descriptor(
                "Number of output classes (must match the checkpoint); 255 marks ignore.",
                read_only=True, int_range=(1, 255))),
            ("class_names", list(CITYSCAPES_CLASSES), _descriptor(
                "Class names, one per class id (default: Cityscapes; for other num_classes "
                "the checkpoint's names or class_<i>).", read_only=True)),
            ("palette", cityscapes_palette, _descriptor(
                "Colours of segmentation/color_mask and overlay as flat [r, g, b, r, g, b, "
                "...] per class id, 0..255 (default: Cityscapes; ids beyond the list get "
                "generated colours).", read_only=True)),
            ("device", "auto", _descriptor(
                "Inference device: auto (GPU if available, else CPU), cpu, cuda or cuda:N.",
                read_only=True, constraints="auto | cpu | cuda | cuda:N")),
            ("precision", "fp32", _descriptor(
                "Network precision; fp16 needs a CUDA device.", read_only=True,
                constraints=" | ".join(PRECISIONS))),
            ("fast_path", True, _descriptor(
                "On a CUDA device with fp16: run frames as CUDA graphs (BatchNorm folded, fused "
                "convolution epilogues; graphs captured on the first frame of each size). "
                "false: the eager executor. No effect on the CPU.", read_only=True)),
            ("dense_above", "auto", _descriptor(
                "Fast path: frames whose high-res fraction (after bucketing) exceeds this run "
                "every block at high resolution, as the dense network (faster there, and at "
                "least as accurate). auto: the crossover measured when the graphs are captured; "
                "a fraction such as 0.6; off: never.", read_only=True,
                constraints="auto | off | 0.0 .. 1.0")),
            ("cudnn_benchmark_limit", 0, _descriptor(
                "Fast path: cuDNN configurations timed per convolution shape when the graphs of "
                "a frame size are captured (the first frame of that size); 0: all of them, the "
                "fastest frames but the longest capture (H100, 2048x1024: 28 s at batch 1, 58 s "
                "at batch 4; 17 and 18 s with 10).", read_only=True, int_range=(0, 1000, 1))),
            ("warmup_sizes", [""], _descriptor(
                "Frame sizes whose CUDA graphs are captured at start-up, in the inference "
                "thread, instead of on the first frame of that size: WIDTHxHEIGHT or "
                "WIDTHxHEIGHTxBATCH (cameras whose frames arrive together), e.g. "
                "[2048x1024]. [\"\"]: none. Frames that arrive meanwhile wait (the newest "
                "per camera) or are counted as dropped. Fast path only.", read_only=True)),
            ("block_size", 128, _descriptor(
                "SegBlocks block side in input pixels (multiple of 64 for SwiftNet).",
                read_only=True, int_range=(64, 1024, 64))),
            ("input_transport", "raw", _descriptor(
                "raw: sensor_msgs/Image on 'image'; compressed: sensor_msgs/CompressedImage "
                "(jpeg/png) on 'image/compressed'.", read_only=True,
                constraints=" | ".join(TRANSPORTS))),
            ("cameras", [""], _descriptor(
                "Camera names. [\"\"]: one camera on 'image' with outputs under "
                "'segmentation/'. [front, left]: subscribe to front/image and left/image, "
                "publish under front/segmentation/ and left/segmentation/; frames that arrive "
                "together are batched through the model.", read_only=True)),
            ("batch_window_ms", 10.0, _descriptor(
                "With several cameras: how long the worker waits for the other active cameras' "
                "frames before running a batch without them.", float_range=(0.0, 1000.0))),
            ("qos_reliability", "best_effort", _descriptor(
                "Reliability of the image subscriptions (history: keep last 1). best_effort "
                "(sensor data) also receives from reliable publishers.", read_only=True,
                constraints=" | ".join(RELIABILITIES))),
            ("max_image_pixels", DEFAULT_MAX_PIXELS, _descriptor(
                "Frames with more pixels (width x height) are rejected as malformed.",
                read_only=True, int_range=(1, 2**31 - 1))),
        ]
        self._array_defaults = {name: default for name, default, _ in declarations
                                if isinstance(default, list)}
        for name, default, descriptor in declarations:
            try:
                self.declare_parameter(name, default, descriptor)
            except ParameterException as exc:
                raise StartupError(f"parameter {name!r}: {exc}; fix it in the parameter file "
                                   f"or on the command line") from None

    def _param(self, name: str):
        try:
            value = self.get_parameter(name).value
        except ParameterUninitializedException:  # rclpy >= Iron; Humble returns None
            value = None
        if name in self._array_defaults:
            if value is None:
                # an empty YAML list ([]) carries no type, so ROS leaves the parameter unset
                value = self._array_defaults[name]
                self.get_logger().warning(
                    f"parameter {name} is unset (an empty list in YAML has no type); using "
                    f"{value!r}. Write {name}: {_yaml_list(value)} to set it explicitly.")
            return list(value)
        return value

    def _make_engine(self):
        from segblocks_core.checkpoint import CheckpointError
        from segblocks_core.engine import SegmentationEngine

        names = self._param("class_names")
        num_classes = self._param("num_classes")
        if names == list(CITYSCAPES_CLASSES) or not names:
            names = None  # the default: checkpoint's names, Cityscapes, or class_<i>
        elif len(names) != num_classes:
            raise StartupError(f"class_names has {len(names)} entries but num_classes is "
                               f"{num_classes}; give one name per class")
        checkpoint = self._param("checkpoint")
        dense_above = parse_dense_above(self._param("dense_above"))
        try:
            engine = SegmentationEngine(
                model=self._param("model"), checkpoint=checkpoint, num_classes=num_classes,
                device=self._param("device"), precision=self._param("precision"),
                block_size=self._param("block_size"), class_names=names,
                fast_path=None if self._param("fast_path") else False, dense_above=dense_above,
                cudnn_benchmark_limit=self._param("cudnn_benchmark_limit"))
        except CheckpointError as exc:
            raise StartupError(f"{exc} (parameter checkpoint)") from None
        except (ValueError, TypeError) as exc:
            raise StartupError(str(exc)) from None
        if engine.checkpoint is None:
            banner = "!" * 78
            why = ("checkpoint: random was requested" if checkpoint
                   else f"no checkpoint was given and none is shipped for {engine.model_name}")
            self.get_logger().warning(
                f"\n{banner}\n  RANDOM WEIGHTS: {why}.\n  The masks are MEANINGLESS (compute "
                f"statistics are still valid).\n  Set the parameter checkpoint to a trained .pt "
                f"file (segblocks-train).\n{banner}")
        else:
            self.get_logger().info(f"checkpoint {engine.checkpoint}")
        return engine

    def _make_palette(self) -> np.ndarray:
        lut = np.array(self._engine.palette, dtype=np.uint8, copy=True)
        flat = self._param("palette")
        colours = np.asarray(flat, dtype=np.int64).reshape(-1, 3)
        n = min(len(colours), 255)
        lut[:n] = colours[:n]
        return lut

    def _make_topics(self) -> None:
        compressed = self._param("input_transport") == "compressed"
        reliability = (ReliabilityPolicy.RELIABLE if self._param("qos_reliability") == "reliable"
                       else ReliabilityPolicy.BEST_EFFORT)
        # Sensor-data QoS with depth 1: a slow consumer gets the newest frame, not a backlog.
        input_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                               reliability=reliability, durability=DurabilityPolicy.VOLATILE)
        # Reliable outputs match both reliable and best-effort subscribers (RViz, recorders).
        output_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5,
                                reliability=ReliabilityPolicy.RELIABLE,
                                durability=DurabilityPolicy.VOLATILE)
        # Statistics keep their last few messages for late subscribers (transient local):
        # a subscriber's endpoint and this publisher's match independently, so a tool that
        # subscribes and then sends a frame (segblocks-replay-bag) would otherwise lose the
        # answer to a frame processed before this side matched it. Volatile subscribers
        # (ros2 topic echo, RViz) match it as well.
        stats_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=STATS_HISTORY_DEPTH,
                               reliability=ReliabilityPolicy.RELIABLE,
                               durability=DurabilityPolicy.TRANSIENT_LOCAL)
        names = self._param("cameras") or [""]
        for name in names:
            cam = _Camera(name=name, prefix=f"{name}/" if name else "")
            out = f"{cam.prefix}segmentation/"
            cam.pubs = {
                "mask": self.create_publisher(Image, out + "mask", output_qos),
                "color_mask": self.create_publisher(Image, out + "color_mask", output_qos),
                "overlay": self.create_publisher(Image, out + "overlay", output_qos),
                "block_map": self.create_publisher(Image, out + "block_map", output_qos),
                "stats": self.create_publisher(DiagnosticArray, out + "stats", stats_qos),
            }
            msg_type, topic = ((CompressedImage, f"{cam.prefix}image/compressed") if compressed
                               else (Image, f"{cam.prefix}image"))
            cam.sub = self.create_subscription(
                msg_type, topic, lambda msg, cam=cam: self._on_image(cam, msg), input_qos)
            self._cameras.append(cam)

    # -- parameters --------------------------------------------------------------------------

    def _on_set_parameters(self, params: list) -> SetParametersResult:
        updates = {}
        for p in params:
            reason = self._check_parameter(p.name, p.value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
            if p.name in ("tau", "overlay_alpha", "batch_window_ms"):
                updates[p.name] = float(p.value)
            elif p.name == "adaptive":
                updates[p.name] = bool(p.value)
        # Only this callback can veto, so the values are applied here (rclpy on Humble has no
        # post-set callback); the worker reads them at the start of the next batch.
        for name, value in updates.items():
            setattr(self, f"_{name}", value)
        return SetParametersResult(successful=True)

    @staticmethod
    def _check_parameter(name: str, value) -> str:
        """Reason why ``value`` is not acceptable for ``name``, or ``""``."""
        if name == "tau":
            if not isinstance(value, (int, float)) or isinstance(value, bool) \
                    or not math.isfinite(value) or value < 0:
                return f"tau must be a finite number >= 0, got {value!r}"
        elif name == "overlay_alpha":
            if not math.isfinite(value) or not 0.0 <= value <= 1.0:
                return f"overlay_alpha must be in [0, 1], got {value!r}"
        elif name == "batch_window_ms":
            if not math.isfinite(value) or value < 0:
                return f"batch_window_ms must be a finite number >= 0, got {value!r}"
        elif name == "model" and value not in MODELS:
            return f"model must be one of {', '.join(MODELS)}, got {value!r}"
        elif name == "device" and not _DEVICE.match(str(value).strip().lower()):
            return f"device must be auto, cpu, cuda or cuda:N, got {value!r}"
        elif name == "precision" and value not in PRECISIONS:
            return f"precision must be one of {', '.join(PRECISIONS)}, got {value!r}"
        elif name == "input_transport" and value not in TRANSPORTS:
            return f"input_transport must be raw or compressed, got {value!r}"
        elif name == "qos_reliability" and value not in RELIABILITIES:
            return f"qos_reliability must be best_effort or reliable, got {value!r}"
        elif name == "cameras" and value is not None:
            bad = [c for c in value if c and not _CAMERA_NAME.match(c)]
            if bad:
                return (f"camera names must be \"\" (no prefix) or ROS name tokens (letters, "
                        f"digits, _; may contain /), got {bad}")
            if len(set(value)) != len(value):
                return f"camera names must be unique, got {list(value)}"
        elif name == "palette" and value is not None:
            if len(value) % 3:
                return f"palette needs r, g, b triples, got {len(value)} values"
            if any(not 0 <= v <= 255 for v in value):
                return "palette values must be in 0..255"
        elif name == "class_names" and value is not None:
            if any(not str(v).strip() for v in value):
                return "class_names must not contain empty names"
        return ""

    # -- input -------------------------------------------------------------------------------

    def _on_image(self, cam: _Camera, msg) -> None:
        now = time.monotonic()
        with self._wakeup:
            cam.arrived += 1
            cam.last_arrival = now
            self._health_window["arrived"] += 1
            if cam.pending is not None:
                # the worker never saw it: a newer frame makes it stale
                cam.dropped += 1
                cam.received += 1
            cam.pending = _Frame(msg, now)
            self._wakeup.notify()

    # -- the inference worker ----------------------------------------------------------------

    def _take_frames(self) -> Optional[list]:
        """Block until frames are waiting; return ``[(camera, frame)]`` or None on stop."""
        with self._wakeup:
            while not self._stop and not any(c.pending for c in self._cameras):
                self._wakeup.wait(0.5)
            if self._stop:
                return None
            window = self._batch_window_ms / 1e3
            if len(self._cameras) > 1 and window > 0:
                # wait briefly for the other cameras that are streaming, to batch them
                now = time.monotonic()
                deadline = now + window
                active = [c for c in self._cameras if now - c.last_arrival < 1.0]
                while not self._stop and not all(c.pending for c in active):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._wakeup.wait(remaining)
            taken = [(c, c.pending) for c in self._cameras if c.pending is not None]
            for c, _ in taken:
                c.pending = None
            return taken

    def _warm_up(self) -> None:
        """Capture the graphs of ``warmup_sizes`` (in the worker, before the first frame);
        a failure is logged and reported, and the node serves frames regardless."""
        try:
            for width, height, batch in self._warmup_sizes:
                if self._stop:
                    return
                t0 = time.monotonic()
                if not self._engine.warmup(height, width, batch):
                    self.get_logger().info("warm-up: nothing to capture without the CUDA-graph fast path "
                                           f"(device {self._engine.device}, {self._engine.precision})")
                    return
                self.get_logger().info(f"warm-up: CUDA graphs for {batch} x {width}x{height} captured in "
                                       f"{time.monotonic() - t0:.1f} s")
        except Exception as exc:  # noqa: BLE001 - e.g. out of memory: keep serving
            with self._lock:
                self._last_error = f"warm-up failed: {exc!r}"
            self.get_logger().error(f"warm-up failed, graphs will be captured on the first frame of "
                                    f"each size instead: {exc!r}")
        finally:
            self._warming_up = False

    def _worker_loop(self) -> None:
        if self._warmup_sizes:
            self._warm_up()
        while True:
            taken = self._take_frames()
            if taken is None:
                return
            try:
                self._process(taken)
            except Exception as exc:  # noqa: BLE001 - the worker must survive anything
                if self._stop:
                    return
                self.get_logger().error(f"unexpected error in the inference worker: {exc!r}",
                                        throttle_duration_sec=_REJECT_LOG_PERIOD_S)

    def _process(self, taken: list) -> None:
        tau, adaptive = self._tau, self._adaptive  # one value for the whole batch
        groups: dict = defaultdict(list)
        for cam, frame in taken:
            t0 = time.perf_counter()
            try:
                rgb = decode(frame.msg, self._max_pixels)
            except ImageDecodeError as exc:
                self._reject(cam, exc.kind, str(exc))
                continue
            groups[rgb.shape[:2]].append((cam, frame, rgb, (time.perf_counter() - t0) * 1e3))
        for group in groups.values():
            try:
                result = self._engine.infer([g[2] for g in group], tau=tau, adaptive=adaptive)
            except Exception as exc:  # noqa: BLE001 - e.g. out of memory: keep serving
                for cam, *_ in group:
                    self._reject(cam, "inference", f"inference failed: {exc!r}")
                with self._lock:
                    self._health_window["failed"] += len(group)
                    self._last_error = f"inference failed: {exc!r}"
                continue
            for i, (cam, frame, rgb, decode_ms) in enumerate(group):
                self._publish(cam, frame, rgb, result.labels[i], result.grid[i],
                              result.stats[i], decode_ms)

    def _reject(self, cam: _Camera, kind: str, message: str) -> None:
        with self._lock:
            cam.rejected += 1
            cam.received += 1
            self._health_window["rejected"] += 1
            self._last_error = message
            key = (cam.name, kind)
            last, suppressed = self._reject_log.get(key, (-math.inf, 0))
            now = time.monotonic()
            log_now = now - last >= _REJECT_LOG_PERIOD_S
            self._reject_log[key] = (now, 0) if log_now else (last, suppressed + 1)
        if log_now:
            topic = cam.sub.topic_name
            more = f" ({suppressed} more rejected since the last report)" if suppressed else ""
            self.get_logger().error(f"rejected a frame on {topic}: {message}{more}")

    def _publish(self, cam: _Camera, frame: _Frame, rgb: np.ndarray, labels: np.ndarray,
                 grid: np.ndarray, stats, decode_ms: float) -> None:
        header = frame.msg.header
        pubs = cam.pubs
        pubs["mask"].publish(mono8_msg(labels, header))
        pubs["block_map"].publish(block_map_msg(grid, header))
        want_color = pubs["color_mask"].get_subscription_count() > 0
        want_overlay = pubs["overlay"].get_subscription_count() > 0
        if want_color or want_overlay:
            color = colorize(labels, self._lut)
            if want_color:
                pubs["color_mask"].publish(rgb8_msg(color, header))
            if want_overlay:
                pubs["overlay"].publish(rgb8_msg(overlay(rgb, color, self._overlay_alpha), header))
        latency_ms = (time.monotonic() - frame.arrival) * 1e3
        with self._lock:
            cam.processed += 1
            cam.received += 1
            self._health_window["processed"] += 1
            counters = cam.counters()
        values = {
            "camera": cam.name, **stats.as_dict(), "decode_ms": decode_ms,
            "latency_ms": latency_ms, "width": labels.shape[1], "height": labels.shape[0],
            **counters,
        }
        self._last_stats = values
        status = DiagnosticStatus(
            level=DiagnosticStatus.OK,
            name=f"{self.get_fully_qualified_name()}: {cam.name or 'image'}",
            hardware_id=str(self._engine.device),
            message=(f"tau {stats.tau:.3g} high-res {100 * stats.highres_fraction:.0f}% "
                     f"{stats.gmacs_effective:.2f}/{stats.gmacs_dense:.2f} GMAC "
                     f"{stats.total_ms:.1f} ms"),
            values=[KeyValue(key=k, value=_format_value(values[k])) for k in STATS_KEYS])
        pubs["stats"].publish(DiagnosticArray(header=header, status=[status]))

    # -- health --------------------------------------------------------------------------------

    def _publish_health(self) -> None:
        now = time.monotonic()
        with self._lock:
            win = dict(self._health_window)
            self._health_window.update(arrived=0, processed=0, rejected=0, failed=0, t=now)
            per_camera = [(c, c.counters(), now - c.last_arrival) for c in self._cameras]
            last_error = self._last_error
        period = max(now - win["t"], 1e-6)
        topics = ", ".join(c.sub.topic_name for c in self._cameras)
        silent = [c for c, _, age in per_camera if age > 5.0]
        if self._worker is None or not self._worker.is_alive():
            level, message = DiagnosticStatus.ERROR, "inference worker is not running"
        elif win["failed"]:
            level, message = DiagnosticStatus.ERROR, last_error
        elif win["rejected"]:
            level, message = DiagnosticStatus.WARN, f"rejected {win['rejected']} frames: {last_error}"
        elif self._warming_up:
            level, message = DiagnosticStatus.OK, "warming up: capturing CUDA graphs (warmup_sizes)"
        elif silent and now - self._started > 5.0:
            names = ", ".join(c.sub.topic_name for c in silent)
            level, message = DiagnosticStatus.WARN, f"no frames for 5 s on {names}"
        else:
            level, message = DiagnosticStatus.OK, f"{win['processed'] / period:.1f} frames/s"
        values = {
            "input_topics": topics, "model": self._engine.model_name,
            "checkpoint": self._engine.checkpoint or "RANDOM WEIGHTS",
            "device": str(self._engine.device), "precision": self._engine.precision,
            "block_size": self._engine.block_size, "tau": self._tau, "adaptive": self._adaptive,
            "input_fps": win["arrived"] / period, "output_fps": win["processed"] / period,
        }
        for cam, counters, _ in per_camera:
            prefix = f"{cam.name}." if cam.name else ""
            values.update({prefix + k: v for k, v in counters.items()})
        last = self._last_stats
        for k in ("highres_fraction", "gmacs_effective", "gmacs_dense", "total_ms", "latency_ms"):
            if k in last:
                values[f"last_{k}"] = last[k]
        status = DiagnosticStatus(
            level=level, name=f"{self.get_fully_qualified_name()}: health", message=message,
            hardware_id=str(self._engine.device),
            values=[KeyValue(key=k, value=_format_value(v)) for k, v in values.items()])
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._health_pub.publish(msg)

    # -- test and tool access --------------------------------------------------------------------

    @property
    def engine(self):
        """The :class:`SegmentationEngine` this node runs."""
        return self._engine

    def frame_counters(self) -> dict:
        """``{camera name: counters}`` snapshot ("" is the unprefixed camera)."""
        with self._lock:
            return {c.name: c.counters() for c in self._cameras}

    def destroy_node(self) -> None:
        with self._wakeup:
            self._stop = True
            self._wakeup.notify_all()
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout=30.0)
        super().destroy_node()


def _yaml_list(values: list) -> str:
    return "[" + ", ".join(f'"{v}"' if isinstance(v, str) else str(v) for v in values) + "]"


def _format_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def main(args=None) -> None:
    """``segblocks_node`` / ``ros2 run segblocks_ros segblocks_node``."""
    rclpy.init(args=args)
    node = None
    exit_code = 0
    try:
        node = SegBlocksNode()
        rclpy.spin(node)
    except StartupError:
        exit_code = 1  # already logged as fatal, with what to do
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    if exit_code:
        sys.exit(exit_code)


if __name__ == "__main__":
    main()
