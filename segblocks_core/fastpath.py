"""GPU fast path: one CUDA graph per input size, no host synchronisation per frame.

A frame runs as graph replays: uint8 upload buffer -> complexity policy -> block layout
-> SegBlocks plan -> class ids. SegBlocks reads the uint8 frames straight into the policy's
cells and the stem's tiles, normalising each value as it reads it, so the normalised map is
never written (:func:`segblocks_core.ops.cell_complexity_frames`,
:meth:`SegBlocks.labels_from_frames`); the dense baseline normalises first. The final
bilinear upsampling and the argmax run as one kernel
(:func:`segblocks_core.ops.upsample_argmax`; the dense baseline uses its dense twin), so
both sides skip the full-resolution logits. The number of high-res blocks is data
dependent, so the layout is built for a fixed *capacity* per bucket
(``ceil(count / step) * step`` blocks, the most complex low-res blocks promoted to fill it)
and every bucket's frame is captured as its own graph. The threshold tau lives in a device
tensor, so ``ros2 param set`` changes it without re-capturing anything.

Choosing the bucket, three ways:

* conditional graph nodes (torch builds that expose ``CUDAGraph.begin_capture_to_if_node``):
  one graph holds every bucket in an IF node and the device enables exactly one: no host
  synchronisation at all;
* exact (default where those are missing, e.g. torch 2.11): a small policy graph runs
  first and the host reads the 8-byte high-res count, one synchronisation per frame before
  the network graph is launched;
* lagged (``lagged=True``): the bucket comes from the previous frame's count, read back
  asynchronously, so no frame ever waits for the host. A frame that needs more high-res
  blocks than its bucket runs the least complex of them at low resolution; one bucket of
  headroom makes that rare on a camera stream, where consecutive frames are alike.

Network preparation for inference: BatchNorm folded into the preceding convolutions,
convolution epilogues (bias, residual add, ReLU) fused into cuDNN calls where faster
(:mod:`segblocks_core.fused`), pre-activation BatchNorm + ReLU as one precomputed
multiply-add and ReLU, the RGB input padded to 4 channels (cuDNN's first-layer kernel), fp16
weights, channels_last memory format (tensor cores).
"""

from __future__ import annotations

import contextlib
import math
from typing import Optional, Union

import torch
import torch.fx as fx
from torch import Tensor, nn

from .engine import _norm_constants, frame_labels, normalize
from .executor import SegBlocks, concurrent_lowres
from .fused import check_conv_units_mode
from .fused import conv_units as fused_conv_units
from .fused import (fold_residual_bias, fuse_batchnorm_relu, fuse_conv_epilogue, fuse_upsample_add,
                    use_fast_max_pooling, use_fast_pooling)
from .layout import BlockLayout
from .policy import ComplexityPolicy
from .timing import cuda_median_ms

__all__ = ["fold_batchnorm", "pad_input_channels", "prepare_network", "GraphedSegmenter", "bucket_capacity",
           "conditional_graphs_supported", "cudnn_autotuning", "check_cudnn_benchmark_limit"]


@contextlib.contextmanager
def cudnn_autotuning(limit: int = 0):
    """cuDNN's benchmark mode, timing up to ``limit`` engine configurations per convolution
    shape (0: every one cuDNN offers), for the duration; the caller's settings come back
    after. :class:`GraphedSegmenter` captures under it: the warm-up times the candidates, the
    capture finds them cached and the graphs keep the fastest (on the H100, RN18 at batch
    4 and 40% high-res: 2.42 ms with PyTorch's default of timing 10, 2.38 ms timing all;
    ``benchmarks/results/steps/36-*``). Without it the node ran cuDNN's heuristic picks,
    untimed, while the benchmark timed them."""
    cudnn = torch.backends.cudnn
    saved = cudnn.benchmark, cudnn.benchmark_limit
    cudnn.benchmark, cudnn.benchmark_limit = True, int(limit)
    try:
        yield
    finally:
        cudnn.benchmark, cudnn.benchmark_limit = saved


def fold_batchnorm(net: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm that directly follows a convolution into it.

    Returns an ``fx.GraphModule`` computing the same function (BatchNorms after other ops,
    e.g. SwiftNet's pre-activation decoder units, stay).
    """
    from torch.fx.experimental.optimization import fuse

    if net.training:
        raise ValueError("fold_batchnorm needs an eval-mode network (running statistics)")
    return fuse(net, inplace=False)


def pad_input_channels(gm: fx.GraphModule, channels: int) -> fx.GraphModule:
    """Make ``gm`` take its input with ``channels`` channels, the extra ones ignored (in place).

    The convolution(s) reading the input directly get zero weights for the extra channels,
    so ``gm(pad(x)) == gm(x)`` for any zero (or other) padding channels. Sets
    ``gm.input_channels``. If the input feeds anything but convolutions (other than size
    queries), ``gm`` is left unchanged with ``input_channels`` = its current count.
    """
    inputs = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(inputs) != 1:
        raise ValueError(f"pad_input_channels needs a single-input network, got {len(inputs)} inputs")
    convs, in_channels = [], set()
    for user in inputs[0].users:
        if user.op == "call_method" and user.target in ("size", "dim") or \
                user.op == "call_function" and user.target is getattr and user.args[1] == "shape":
            continue
        module = gm.get_submodule(user.target) if user.op == "call_module" else None
        if not isinstance(module, nn.Conv2d) or module.groups != 1 or user.args[0] is not inputs[0]:
            convs = []
            break
        convs.append(module)
        in_channels.add(module.in_channels)
    if not convs or len(in_channels) != 1:
        gm.input_channels = getattr(gm, "input_channels", None) or 3
        return gm
    current = in_channels.pop()
    if channels < current:
        raise ValueError(f"cannot pad the input to {channels} channels: the network reads {current}")
    for conv in {id(c): c for c in convs}.values():
        w = conv.weight
        padded = torch.zeros((w.shape[0], channels) + tuple(w.shape[2:]), dtype=w.dtype, device=w.device)
        padded[:, :current] = w.detach()
        conv.weight = nn.Parameter(padded, requires_grad=w.requires_grad)
        conv.in_channels = channels
    gm.input_channels = channels
    return gm


def prepare_network(net: nn.Module, dtype: torch.dtype = torch.float16,
                    device: Optional[torch.device] = None, fuse_epilogue: bool = True,
                    input_channels: int = 4, fast_max_pool: bool = True,
                    fast_upsample: bool = True) -> nn.Module:
    """Inference copy of ``net``: BatchNorm folded, ``dtype``, channels_last, on ``device``.

    ``fuse_epilogue``: also turn conv -> (add ->) ReLU into :class:`segblocks_core.fused.FusedConv2d`
    (one cuDNN call with bias, residual and ReLU where that is faster; on the H100 it took
    SwiftNet-RN18 from 2.05 to 1.60 ms dense and from 2.19 to 1.88 ms in SegBlocks at 40%
    high-res blocks, ``benchmarks/results/fused-epilogue-gpu-*.json``), and the decoder's
    pre-activation BatchNorm -> ReLU into :class:`segblocks_core.fused.BatchNormReLU`
    (precomputed scale and shift, two kernels instead of four). A downsample convolution's
    bias moves into the fused convolution that adds its output
    (:func:`segblocks_core.fused.fold_residual_bias`: one elementwise pass less per
    downsample, the function up to float rounding).

    ``input_channels``: the returned network reads its RGB input padded with zero channels
    to this many (:func:`pad_input_channels`; feed it ``normalize(images, dtype,
    net.input_channels)``). With 4, cuDNN runs the 7x7 stem with its first-layer kernel:
    on the H100 the stem took 148 -> 56 us on SegBlocks' blocks at 40% and 90 -> 64 us
    dense (``benchmarks/results/conv-layout-probe-*.json``). 3 keeps the plain input.

    Adaptive average pooling (SwiftNet's SPP) runs as plain average pooling where the sizes
    divide (:func:`segblocks_core.fused.adaptive_avg_pool2d`). ``fast_max_pool``: max pooling
    without PyTorch's int64 indices on CUDA (:class:`segblocks_core.fused.MaxPool2d`; in
    SegBlocks on units, fused with BlockPad). ``fast_upsample``: the decoder's bilinear
    upsampling + skip add as one call (:func:`segblocks_core.fused.upsample_add`: one native
    pass on CUDA; in SegBlocks on units, :func:`segblocks_core.ops.upsample2x_units`).
    """
    folded = fold_batchnorm(net.eval())
    if fuse_epilogue:
        folded = fuse_batchnorm_relu(fold_residual_bias(fuse_conv_epilogue(folded)))
    pad_input_channels(folded, input_channels)
    use_fast_pooling(folded)
    if fast_max_pool:
        use_fast_max_pooling(folded)
    if fast_upsample:
        fuse_upsample_add(folded)
    folded.to(device=device, dtype=dtype)
    return folded.to(memory_format=torch.channels_last)


def conditional_graphs_supported() -> bool:
    """True if this torch build can capture conditional (IF) nodes into CUDA graphs."""
    return torch.cuda.is_available() and hasattr(torch.cuda.CUDAGraph, "begin_capture_to_if_node")


@contextlib.contextmanager
def _if_node(pred: Tensor):
    graph = torch.cuda.CUDAGraph.get_currently_capturing_graph()
    graph.begin_capture_to_if_node(pred)
    try:
        yield
    finally:
        graph.end_capture_to_conditional_node()


def check_cudnn_benchmark_limit(limit) -> int:
    """``limit`` as an int: how many cuDNN configurations :func:`cudnn_autotuning` times
    (an integer >= 0; 0: every one)."""
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or int(limit) != limit or limit < 0:
        raise ValueError(f"cudnn_benchmark_limit must be an integer >= 0 (0: time every configuration), "
                         f"got {limit!r}")
    return int(limit)


def check_dense_above(dense_above) -> None:
    if dense_above is None or dense_above == "auto":
        return
    if isinstance(dense_above, str) or not 0.0 <= float(dense_above) <= 1.0:
        raise ValueError(f"dense_above must be a fraction in [0, 1], 'auto' or None, got {dense_above!r}")


def bucket_capacity(count, step: int, total: int, dense_above: Optional[float] = None):
    """High-res capacity of the bucket for ``count`` high-res blocks (host int or device
    tensor): ``count`` rounded up to a multiple of ``step`` (the most complex low-res blocks
    are promoted), at most ``total``. With ``dense_above``, a capacity above that fraction
    of ``total`` becomes ``total``: every block high-res, which the fast path runs as the
    dense network, no slower than the static one and at least as accurate as the grid."""
    k = (count + step - 1) // step * step
    limit = total if dense_above is None else dense_above * total
    if isinstance(k, Tensor):
        return torch.where(k > limit, torch.full_like(k, total), k).clamp(max=total)
    return total if k > limit else min(k, total)


class GraphedSegmenter:
    """Frame-in, labels-out CUDA graph for a fixed batch size and image size.

    Args:
        net: prepared network (see :func:`prepare_network`) on a CUDA device.
        batch, height, width: frame geometry the graph is built for.
        block_size: SegBlocks block side.
        num_buckets: capacities are multiples of ``ceil(total_blocks / num_buckets)``.
        dense: capture the dense network instead (the A/B baseline, ``adaptive=False``).
        sync_free: bucket choice inside the graph (conditional nodes). False: the bucket
            is chosen on the host after reading the count (one sync per frame). None
            (default): sync-free where the torch build supports it.
        lagged: pick each frame's bucket from the previous frame's high-res count (no host
            synchronisation; see the module docstring). The first frame runs all high-res.
        concurrent: run each convolution's low-res half on a second stream, in parallel
            with the high-res half (two branches of the graph; see
            :func:`segblocks_core.executor.concurrent_lowres`).
        dense_above: frames whose high-res fraction (after bucketing) exceeds this run every
            block at high resolution, as the dense network (:func:`bucket_capacity`; the
            SegBlocks built here has ``dense_when_all_highres=True``): past some fraction
            the block machinery is slower than the dense network, and then all-high-res is
            both faster and at least as accurate. ``"auto"`` (default): measured at capture,
            the smallest bucket whose graph replays no faster than the all-high-res one and
            every larger bucket are promoted (with conditional nodes, where buckets are not
            separate graphs: 0.5). A float in [0, 1]: that fraction. None: never.
        conv_units: how 3x3 convolutions on units run inside the graphs
            (:func:`segblocks_core.fused.conv_units`): ``"off"`` (default: BlockPad + cuDNN),
            ``"auto"`` (the one-pass kernel where it agrees and is faster, decided at the
            warm-up before capture) or ``"always"``.
        cudnn_benchmark_limit: the graphs are captured in cuDNN's benchmark mode
            (:func:`cudnn_autotuning`), timing this many engine configurations per
            convolution shape at the warm-up; 0 (default): all of them.

    Call :meth:`run` with a uint8 ``[N, H, W, 3]`` tensor (pinned host memory or device);
    it returns device tensors ``labels [N, H, W] uint8`` and ``grid [N, GH, GW] bool`` that
    are overwritten by the next call.
    """

    def __init__(self, net: nn.Module, batch: int, height: int, width: int, block_size: int = 128,
                 tau: float = 0.3, num_buckets: int = 16, dense: bool = False, sync_free: Optional[bool] = None,
                 segblocks: Optional[SegBlocks] = None, concurrent: bool = True, lagged: bool = False,
                 dense_above: Union[float, str, None] = "auto", conv_units: str = "off",
                 cudnn_benchmark_limit: int = 0):
        check_conv_units_mode(conv_units)
        self.conv_units = conv_units
        self.cudnn_benchmark_limit = check_cudnn_benchmark_limit(cudnn_benchmark_limit)
        param = next(net.parameters())
        if param.device.type != "cuda":
            raise ValueError("GraphedSegmenter needs a network on a CUDA device")
        self.device, self.dtype = param.device, param.dtype
        self.net = net
        self.dense = dense
        if sync_free is None:
            sync_free = conditional_graphs_supported() and not lagged
        self.sync_free = sync_free and not dense
        if lagged and self.sync_free:
            raise ValueError("lagged=True and sync_free=True are two different bucket choices; pick one")
        self.lagged = lagged and not dense
        if self.sync_free and not conditional_graphs_supported():
            raise RuntimeError("this torch build cannot capture conditional CUDA graph nodes; "
                               "use sync_free=False")
        check_dense_above(dense_above)
        self._auto_dense = dense_above == "auto"
        # until measured (auto): never promote; the capacities are the plain buckets
        self.dense_above: Optional[float] = None if self._auto_dense else dense_above
        self.bucket_ms: dict[int, float] = {}  # auto: median replay time of each bucket graph
        self.segblocks = segblocks or SegBlocks(net, block_size, units=True, dense_when_all_highres=True)
        self._lowres_stream = torch.cuda.Stream(self.device) if concurrent and not dense else None
        self.block_size = block_size
        self.policy = ComplexityPolicy(0.0, block_size)
        n, gh, gw = self.segblocks.grid_shape((batch, 3, height, width))
        self.total_blocks = n * gh * gw
        step = math.ceil(self.total_blocks / num_buckets)
        self.step = step
        self.capacities = sorted({self._bucket_capacity(j * step) for j in range(num_buckets + 1)})
        dev = self.device
        self.images = torch.zeros((batch, height, width, 3), dtype=torch.uint8, device=dev)
        self.tau = torch.tensor(float(tau), device=dev)
        self.labels = torch.zeros((batch, height, width), dtype=torch.uint8, device=dev)
        self.grid = torch.zeros((n, gh, gw), dtype=torch.bool, device=dev)
        self.count = torch.zeros((), dtype=torch.int64, device=dev)
        self._graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self._count_host = torch.zeros((), dtype=torch.int64).pin_memory()
        self._count_ready = torch.cuda.Event()
        self._count_pending = False             # lagged mode: a count read-back is in flight
        self._capacity = self.total_blocks      # lagged mode: the next frame's bucket
        self._capture()

    # -- graph bodies --------------------------------------------------------------------

    def _input(self) -> Tensor:
        # channels_last, padded with zero channels to what the network reads
        return normalize(self.images, self.dtype, self.segblocks.in_channels)

    def _policy(self) -> tuple[Tensor, Tensor]:
        # straight from the frames (the normalised map is not written for SegBlocks)
        scale, shift = _norm_constants(self.device)
        complexity = self.policy.complexity_from_frames(self.images, scale, shift, self.dtype)
        grid = complexity > self.tau
        self.count.copy_(grid.sum())
        return complexity, grid

    def _body(self, complexity: Tensor, grid: Tensor, capacity: int) -> None:
        layout = BlockLayout.from_grid(grid, self.block_size, capacity, complexity)
        with concurrent_lowres(self._lowres_stream):
            # the frames straight into the stem's tiles (normalised first where the plan needs it)
            self.labels.copy_(frame_labels(self.segblocks, self.images, self.dtype, layout=layout))
        self.grid.copy_(layout.grid)

    def _dense_body(self, x: Tensor) -> None:
        self.labels.copy_(self.segblocks.labels(x))
        self.grid.fill_(True)
        self.count.fill_(self.total_blocks)

    def _bucket_capacity(self, count):
        """Capacity of the bucket for ``count`` high-res blocks (host int or device tensor)."""
        return bucket_capacity(count, self.step, self.total_blocks, self.dense_above)

    # -- capture -------------------------------------------------------------------------

    @torch.inference_mode()
    def _capture(self) -> None:
        # the modes are read when the ops run: the warm-up decides, the graphs keep it
        with fused_conv_units(self.conv_units), cudnn_autotuning(self.cudnn_benchmark_limit):
            self._capture_all()

    def _capture_all(self) -> None:
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            # warm-up outside capture: cuDNN picks algorithms and allocates workspaces
            if self.dense:
                self._dense_body(self._input())
            else:
                complexity, grid = self._policy()
                for capacity in self.capacities:
                    self._body(complexity, grid, capacity)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        torch.cuda.synchronize(self.device)
        pool = torch.cuda.graph_pool_handle()
        if self.dense:
            self._graphs[-1] = self._capture_one(lambda: self._dense_body(self._input()), pool)
        elif self.sync_free:
            def frame():
                complexity, grid = self._policy()
                capacity = self._bucket_capacity(self.count)
                for k in self.capacities:
                    with _if_node(capacity == k):
                        self._body(complexity, grid, k)
            self._graphs[-1] = self._capture_one(frame, pool)
        else:
            # static buffers shared by the policy graph and every bucket graph
            self._complexity, self._grid = self._policy()

            def policy():
                complexity, grid = self._policy()
                self._complexity.copy_(complexity)
                self._grid.copy_(grid)
            self._policy_graph = self._capture_one(policy, pool)
            for k in self.capacities:
                self._graphs[k] = self._capture_one(
                    lambda k=k: self._body(self._complexity, self._grid, k), pool)
        if self._auto_dense and not self.dense:
            self.dense_above = 0.5 if self.sync_free else self._measure_dense_above()

    def _measure_dense_above(self, reps: int = 5) -> Optional[float]:
        """Replay every bucket graph ``reps`` times; return the fraction above which buckets
        are promoted to all-high-res: just below the smallest capacity whose median replay
        is no faster than the all-high-res graph's (None if there is none)."""
        for k in self.capacities:
            self.bucket_ms[k] = cuda_median_ms(self._graphs[k].replay, reps)
        full = self.bucket_ms[self.total_blocks]
        slower = [k for k in self.capacities if k < self.total_blocks and self.bucket_ms[k] >= full]
        if not slower:
            return None
        return (min(slower) - 0.5) / self.total_blocks

    def _capture_one(self, fn, pool) -> torch.cuda.CUDAGraph:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=pool):
            fn()
        return graph

    # -- per frame -----------------------------------------------------------------------

    def set_tau(self, tau: float) -> None:
        self.tau.fill_(float(tau))

    def run(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Segment one batch; returns device ``(labels, grid)`` (valid until the next call)."""
        if images.shape != self.images.shape or images.dtype != torch.uint8:
            raise ValueError(f"expected uint8 images of shape {tuple(self.images.shape)}, "
                             f"got {images.dtype} {tuple(images.shape)}")
        self.images.copy_(images, non_blocking=True)
        if -1 in self._graphs:
            self._graphs[-1].replay()
        elif self.lagged:
            self._run_lagged()
        else:
            self._policy_graph.replay()
            self._count_host.copy_(self.count, non_blocking=True)
            self._count_ready.record()
            self._count_ready.synchronize()         # the one host sync of this mode
            self._graphs[self._bucket_capacity(int(self._count_host))].replay()
        return self.labels, self.grid

    def _run_lagged(self) -> None:
        if self._count_pending and self._count_ready.query():  # a finished read-back: no wait
            self._capacity = self._bucket_capacity(int(self._count_host) + self.step)
            self._count_pending = False
        self._policy_graph.replay()
        self._graphs[self._capacity].replay()
        if not self._count_pending:
            self._count_host.copy_(self.count, non_blocking=True)
            self._count_ready.record()
            self._count_pending = True
