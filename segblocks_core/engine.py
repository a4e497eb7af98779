"""The single inference entry point: uint8 camera images in, class ids and stats out.

The ROS node, the bag evaluation tool and the benchmarks all call
:meth:`SegmentationEngine.infer`, so what is measured offline is what runs on the robot.
"""

from __future__ import annotations

import copy
import logging
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from . import ops
from .checkpoint import RANDOM_WEIGHTS, default_checkpoint, load_checkpoint
from .classes import default_class_names, default_palette
from .executor import SegBlocks
from .layout import BlockLayout
from .models import build_model
from .policy import ComplexityPolicy, _check_tau

__all__ = ["SegmentationEngine", "InferenceResult", "FrameStats", "IMAGENET_MEAN", "IMAGENET_STD",
           "resolve_device", "normalize"]

log = logging.getLogger("segblocks_core.engine")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16}


def resolve_device(device: str) -> torch.device:
    """``auto | cpu | cuda | cuda:N`` -> a usable device, or a ValueError saying what to do."""
    if not isinstance(device, str):
        raise ValueError(f"device must be a string (auto, cpu, cuda, cuda:N), got {device!r}")
    name = device.strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {device!r} requested but no CUDA GPU is available to PyTorch "
                f"(torch {torch.__version__}, torch.cuda.is_available() is False); "
                f"set device to 'auto' or 'cpu'"
            )
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} requested but only {torch.cuda.device_count()} "
                             f"CUDA device(s) exist")
        return dev
    raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")


_NORM_CONSTANTS: dict[torch.device, tuple[Tensor, Tensor]] = {}


def _norm_constants(device: torch.device) -> tuple[Tensor, Tensor]:
    """Per-channel ``(scale, shift)`` with ``x_norm = x * scale + shift``, float32 ``[3]``.

    Cached per device: creating them from Python lists is a host->device copy, which a CUDA
    graph capture forbids.
    """
    if device not in _NORM_CONSTANTS:
        mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64) * 255
        scale = 1.0 / (torch.tensor(IMAGENET_STD, dtype=torch.float64) * 255)
        _NORM_CONSTANTS[device] = (scale.float().to(device), (-mean * scale).float().to(device))
    return _NORM_CONSTANTS[device]


def normalize(images: Tensor, dtype: torch.dtype = torch.float32, channels: int = 3,
              out: Optional[Tensor] = None) -> Tensor:
    """uint8 ``[N, H, W, 3]`` RGB -> normalised ``[N, channels, H, W]`` network input.

    One fused multiply-add per element (rounded to float32, stored as ``dtype``), written
    channels_last in one pass (:func:`segblocks_core.ops.normalize_frames`). ``channels > 3``
    appends zero channels: a network prepared with ``prepare_network(input_channels=4)``
    takes its RGB input padded to 4 channels (its stem weights for the extra channel are
    zero), which cuDNN runs much faster. ``out``: a channels_last ``[N, channels, H, W]``
    tensor of ``dtype`` to write into (returned).
    """
    scale, shift = _norm_constants(images.device)
    return ops.normalize_frames(images, scale, shift, channels, dtype, out)


def frame_labels(segblocks, images: Tensor, dtype: torch.dtype = torch.float32, *,
                 layout: Optional[BlockLayout] = None) -> Tensor:
    """Class ids ``[N, H, W]`` of uint8 RGB frames: ``segblocks.labels(normalize(images,
    dtype, segblocks.in_channels), layout=layout)``, with the frames read straight into the
    stem's tiles where the block plan allows (:meth:`SegBlocks.labels_from_frames`: the
    normalised map is then never written; the labels are the same)."""
    scale, shift = _norm_constants(images.device)
    return segblocks.labels_from_frames(images, scale, shift, dtype, layout=layout)


@dataclass
class FrameStats:
    """Per-frame statistics (timings are for the whole batch the frame was part of)."""

    tau: float
    adaptive: bool
    highres_fraction: float
    blocks_highres: int
    blocks_total: int
    gmacs_effective: float
    gmacs_executed: float
    gmacs_dense: float
    preprocess_ms: float
    inference_ms: float
    postprocess_ms: float
    total_ms: float
    batch_size: int = 1

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class InferenceResult:
    """Output of :meth:`SegmentationEngine.infer` for a batch of N frames.

    Attributes:
        labels (np.ndarray[N, H, W] uint8): class id per pixel at input resolution.
        grid (np.ndarray[N, GH, GW] bool): blocks that ran at high resolution.
        stats: one :class:`FrameStats` per frame.
    """

    labels: np.ndarray
    grid: np.ndarray
    stats: list[FrameStats] = field(default_factory=list)


ImageBatch = Union[np.ndarray, Tensor, Sequence[np.ndarray]]


class SegmentationEngine:
    """SwiftNet + SegBlocks inference on uint8 RGB images.

    Args:
        model: ``swiftnet_rn18`` or ``swiftnet_rn50``.
        checkpoint: path of a checkpoint. ``None`` or ``""`` uses the checkpoint shipped
            for ``model`` if there is one, else random weights; ``"random"`` asks for random
            weights. Random weights always come with a loud warning (tests and speed
            measurements only).
        num_classes: output classes (must match the checkpoint).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        precision: ``fp32`` or ``fp16`` (fp16 needs a GPU).
        block_size: SegBlocks block side in pixels.
        class_names: names of the classes (default: Cityscapes).
        fast_path: run frames as CUDA graphs (:mod:`segblocks_core.fastpath`: BatchNorm
            folded, channels_last, one graph set per batch size and image size, captured on
            the first frame of that size). ``None`` (default): on for CUDA with fp16.
        dense_above: fast path only: a frame whose high-res fraction exceeds this runs all
            blocks at high resolution, as the dense network (no slower than the static
            network). ``"auto"`` (default): the crossover measured when the graphs are
            captured; see :class:`segblocks_core.fastpath.GraphedSegmenter`. None: never.
        conv_units: fast path only: how 3x3 convolutions on units run
            (:func:`segblocks_core.fused.conv_units`): ``"off"`` (default, BlockPad + cuDNN),
            ``"auto"`` or ``"always"`` (the one-pass kernel ``ops.conv3x3_units``).
        cudnn_benchmark_limit: fast path only: cuDNN engine configurations timed per
            convolution shape when the graphs of a frame size are captured
            (:func:`segblocks_core.fastpath.cudnn_autotuning`); 0 (default): every one. On an
            H100 (RN18, 2048x1024, ``benchmarks/results/capture/``) capturing took 28 s at
            batch 1 and 58 s at batch 4 timing all, 17 and 18 s timing 10; frames at batch 1
            ran 0.94 against 1.02 ms.
    """

    #: image sizes whose CUDA graphs are kept (least recently used ones are dropped)
    MAX_GRAPH_SHAPES = 4

    def __init__(self, model: str = "swiftnet_rn18", checkpoint: Optional[str] = None,
                 num_classes: int = 19, device: str = "auto", precision: str = "fp32",
                 block_size: int = 128, class_names: Optional[Sequence[str]] = None,
                 fast_path: Optional[bool] = None, dense_above: Union[float, str, None] = "auto",
                 conv_units: str = "off", cudnn_benchmark_limit: int = 0):
        from .fused import check_conv_units_mode
        check_conv_units_mode(conv_units)
        self.conv_units = conv_units
        from .fastpath import check_cudnn_benchmark_limit
        self.cudnn_benchmark_limit = check_cudnn_benchmark_limit(cudnn_benchmark_limit)
        self.device = resolve_device(device)
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        if precision == "fp16" and self.device.type != "cuda":
            raise ValueError("precision fp16 needs a CUDA device; use fp32 on the CPU")
        self.model_name = model
        self.precision = precision
        self.dtype = PRECISIONS[precision]
        self.net = build_model(model, num_classes)
        self.metadata: dict = {}
        if not checkpoint:
            checkpoint = default_checkpoint(model, num_classes)
        if checkpoint and checkpoint != RANDOM_WEIGHTS:
            self.metadata = load_checkpoint(checkpoint, self.net, model, num_classes)
        else:
            checkpoint = None
            log.warning("no checkpoint: %s runs with RANDOM weights and its masks are "
                        "meaningless (fine for tests and speed measurements only); set "
                        "checkpoint to a trained .pt file", model)
        self.checkpoint = checkpoint
        self.num_classes = num_classes
        names = class_names or self.metadata.get("class_names") or default_class_names(num_classes)
        if len(names) != num_classes:
            raise ValueError(f"{len(names)} class names given for {num_classes} classes")
        self.class_names = list(names)
        self.palette = default_palette(num_classes)
        self.net.eval().to(self.device, self.dtype)
        if self.device.type == "cuda":
            self.net.to(memory_format=torch.channels_last)
        self.segblocks = SegBlocks(self.net, block_size=block_size)
        self.block_size = block_size
        self.policy = ComplexityPolicy(0.0, block_size)
        if fast_path is None:
            fast_path = self.device.type == "cuda" and self.dtype == torch.float16
        if fast_path and self.device.type != "cuda":
            raise ValueError("fast_path needs a CUDA device (it runs frames as CUDA graphs)")
        self.fast_path = bool(fast_path)
        self._graphs: OrderedDict[tuple, object] = OrderedDict()
        if self.fast_path:
            from .fastpath import prepare_network
            # fold BatchNorm in float32, then cast (folding in fp16 would round twice)
            self._fast_net = prepare_network(copy.deepcopy(self.net).float(), self.dtype, self.device)
            self._fast_segblocks = SegBlocks(self._fast_net, block_size=block_size, units=True,
                                             dense_when_all_highres=True)
        from .fastpath import check_dense_above
        check_dense_above(dense_above)
        self.dense_above = dense_above
        log.info("%s on %s (%s%s); %s", model, self.device, precision,
                 ", CUDA-graph fast path" if self.fast_path else "", ops.backend_message())
        missing = ops.missing_native_warning(self.device)
        if missing:
            log.warning("%s", missing)

    # -- input handling ------------------------------------------------------------------

    def _as_batch(self, images: ImageBatch) -> Tensor:
        if isinstance(images, (list, tuple)):
            if not images:
                raise ValueError("no images given")
            shapes = {np.shape(im) for im in images}
            if len(shapes) != 1:
                raise ValueError(f"images of one batch must have the same size, got {sorted(shapes)}")
            images = np.stack([np.asarray(im) for im in images])
        if isinstance(images, np.ndarray):
            if images.dtype != np.uint8:
                raise TypeError(f"images must be uint8, got {images.dtype}")
            images = torch.from_numpy(np.ascontiguousarray(images))
        if not isinstance(images, Tensor):
            raise TypeError(f"images must be a uint8 numpy array or tensor, got {type(images).__name__}")
        if images.dtype != torch.uint8:
            raise TypeError(f"images must be uint8, got {images.dtype}")
        if images.dim() == 3:
            images = images.unsqueeze(0)
        if images.dim() != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be RGB [H, W, 3] or [N, H, W, 3], got {tuple(images.shape)}")
        if images.shape[1] < 1 or images.shape[2] < 1 or images.shape[0] < 1:
            raise ValueError(f"empty image batch {tuple(images.shape)}")
        return images

    # -- warm-up -------------------------------------------------------------------------

    def warmup(self, height: int, width: int, batch: int = 1, adaptive: Sequence[bool] = (True, False)) -> bool:
        """Capture the fast path's CUDA graphs for ``batch`` frames of ``height`` x ``width``
        now, so the first such frame does not wait for them (with every cuDNN configuration
        timed, 28 s at 2048x1024 batch 1 and 58 s at batch 4 on an H100). ``adaptive``: the
        modes to capture, SegBlocks (True) and the dense network (False; the node's
        ``adaptive: false``). Returns True if graphs were captured, False without the fast
        path (CPU, fp32 or ``fast_path=False``: nothing to capture). Images of this size
        then reuse the graphs while they are among the :attr:`MAX_GRAPH_SHAPES` most
        recently used sizes."""
        for name, value in (("height", height), ("width", width), ("batch", batch)):
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"warm-up {name} must be a positive integer, got {value!r}")
        if isinstance(adaptive, bool):
            adaptive = (adaptive,)
        if not self.fast_path:
            return False
        with torch.inference_mode():
            for mode in adaptive:
                self._graphed(int(batch), int(height), int(width), bool(mode))
        return True

    # -- the entry point -----------------------------------------------------------------

    @torch.inference_mode()
    def infer(self, images: ImageBatch, tau: float = 0.3, adaptive: bool = True,
              num_highres: Optional[int] = None) -> InferenceResult:
        """Segment a batch of same-sized uint8 RGB images.

        Args:
            images: ``[H, W, 3]``, ``[N, H, W, 3]`` or a list of ``[H, W, 3]`` uint8 arrays.
            tau: complexity threshold for this call (blocks with C_b > tau run high-res).
            adaptive: False runs the dense network (the A/B baseline).
            num_highres: optional fixed high-res block capacity (sync-free layout; blocks
                beyond the grid's are the most complex low-res ones).

        Returns:
            :class:`InferenceResult` with class ids at input resolution.
        """
        tau = _check_tau(tau)
        if tau < 0:
            raise ValueError(f"tau must be >= 0, got {tau}")
        cuda = self.device.type == "cuda"
        t_start = time.perf_counter()
        if cuda:
            events = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
            events[0].record()
        batch = self._as_batch(images)
        n, h, w, _ = batch.shape
        graphed = self.fast_path and num_highres is None
        if graphed:
            frames = batch.to(self.device, non_blocking=True)
            segmenter = self._graphed(n, h, w, adaptive)
        else:
            x = normalize(batch.to(self.device, non_blocking=True), self.dtype)
            if cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            layout: Optional[BlockLayout] = None
            if adaptive:
                complexity = self.policy.complexity(x)
                layout = self.segblocks.make_layout(x, complexity > tau, num_highres, complexity)
        t_pre = time.perf_counter()
        if cuda:
            events[1].record()
        if graphed:
            # normalisation, policy, layout and network in CUDA graphs; the high-res
            # capacity is rounded up to the graph's bucket (most complex blocks promoted)
            segmenter.set_tau(tau)
            labels, grid = segmenter.run(frames)
        else:
            # class ids straight from the network (fused upsampling + argmax where it ends
            # in a bilinear upsampling of its logits; no full-resolution logits)
            labels = self.segblocks.labels(x, layout=layout)
        t_inf = time.perf_counter()
        if cuda:
            events[2].record()
        if graphed:
            layout = BlockLayout.from_grid(grid, self.block_size) if adaptive else None
        macs = self.segblocks.count_macs((n, 3, h, w), layout)
        if layout is not None:
            grid = layout.grid
        else:
            gh, gw = -(-h // self.block_size), -(-w // self.block_size)
            grid = torch.ones((n, gh, gw), dtype=torch.bool, device=self.device)
        labels_np = labels.cpu().numpy()
        grid_np = grid.cpu().numpy()
        eff, exe, dense = (t.cpu().numpy() / 1e9 for t in (macs.effective, macs.executed, macs.dense))
        t_end = time.perf_counter()
        if cuda:
            events[3].record()
            events[3].synchronize()
            pre, inf, post = (events[i].elapsed_time(events[i + 1]) for i in range(3))
        else:
            pre, inf, post = ((b - a) * 1e3 for a, b in ((t_start, t_pre), (t_pre, t_inf), (t_inf, t_end)))
        total = (t_end - t_start) * 1e3
        blocks_total = grid_np[0].size
        stats = []
        for i in range(n):
            hr = int(grid_np[i].sum())
            stats.append(FrameStats(
                tau=tau, adaptive=adaptive,
                highres_fraction=hr / blocks_total, blocks_highres=hr, blocks_total=blocks_total,
                gmacs_effective=float(eff[i]), gmacs_executed=float(exe[i]), gmacs_dense=float(dense[i]),
                preprocess_ms=pre, inference_ms=inf, postprocess_ms=post, total_ms=total, batch_size=n,
            ))
        return InferenceResult(labels=labels_np, grid=grid_np, stats=stats)

    def _graphed(self, n: int, h: int, w: int, adaptive: bool):
        """The CUDA-graph segmenter for this frame geometry (captured on first use)."""
        from .fastpath import GraphedSegmenter
        key = (n, h, w, adaptive)
        segmenter = self._graphs.get(key)
        if segmenter is None:
            log.info("capturing CUDA graphs for %d x %dx%d frames (%s; first frame of this size "
                     "only)", n, w, h, "SegBlocks" if adaptive else "dense")
            segmenter = GraphedSegmenter(self._fast_net, n, h, w, self.block_size,
                                         dense=not adaptive, segblocks=self._fast_segblocks,
                                         dense_above=self.dense_above, conv_units=self.conv_units,
                                         cudnn_benchmark_limit=self.cudnn_benchmark_limit)
            self._graphs[key] = segmenter
            while len(self._graphs) > self.MAX_GRAPH_SHAPES:
                self._graphs.popitem(last=False)
        else:
            self._graphs.move_to_end(key)
        return segmenter
