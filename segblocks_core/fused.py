"""Convolutions with their epilogue fused: ``relu(conv2d(x) + bias [+ residual])``.

PyTorch runs a convolution's bias as a separate elementwise kernel after cuDNN, and the
ReLU (and a ResNet block's residual add) as more of them: three to four passes over the
activation that cuDNN can do in the convolution's own epilogue
(``torch.cudnn_convolution_relu`` / ``torch.cudnn_convolution_add_relu``).
:func:`fuse_conv_epilogue` rewrites ``conv -> relu`` and ``conv -> add -> relu`` of a traced
inference network into :class:`FusedConv2d` modules (the static network and SegBlocks both
run them). Whether the fused cuDNN call is faster depends on the shape (measured on the
H100: much faster for SegBlocks' block stacks, slower for some dense maps), so the first
call of every shape times both ways on the GPU and keeps the faster; on the CPU, under
autograd, in fake-tensor propagation and for shapes first seen during CUDA-graph capture
the unfused ops run. Both ways compute the same function. A stride-2 first layer (the
stem) can have a third way, timed with the other two under :func:`space_to_depth_convs`:
the fused call on its input's space-to-depth (:func:`space_to_depth`), a stride-1
convolution that cuDNN runs as a plain implicit GEMM.

Also here: :class:`BatchNormReLU` (eval-mode BatchNorm + ReLU as ``addcmul`` + ``relu_``,
:func:`fuse_batchnorm_relu`) and :func:`adaptive_avg_pool2d` (adaptive pooling as plain
average pooling where the sizes divide, :func:`use_fast_pooling`).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import operator
import re
import warnings
import weakref
from typing import Iterator, Optional

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn

from .timing import cuda_graph_median_ms

__all__ = ["FusedConv2d", "conv_bias_relu", "space_to_depth_convs", "space_to_depth", "space_to_depth_weight",
           "fuse_conv_epilogue", "fold_residual_bias", "BatchNormReLU",
           "fuse_batchnorm_relu", "adaptive_avg_pool2d", "use_fast_pooling", "MaxPool2d",
           "use_fast_max_pooling", "conv_units", "conv_units_mode", "check_conv_units_mode", "CONV_UNITS_MODES",
           "ChannelPaddedConv2d", "CHANNEL_PACK", "pad_classifier", "pad_classifier_enabled",
           "cutlass_convs", "cutlass_conv_applies", "cutlass_config_indices", "conv_config_applies", "padded_outputs",
           "padded_outputs_mode", "PADDED_OUTPUT_MODES", "choose_padded_output"]

# how each call shape runs ("unfused", "fused", "space_to_depth" or "cutlass:<config>"),
# decided by timing on first use
_CHOICE: dict[tuple, str] = {}


class FusedConv2d(nn.Conv2d):
    """``relu(conv2d(x) + bias + residual)`` (``residual`` only if built with one).

    Shares its weight and bias with the convolution it was made from.
    """

    def __init__(self, conv: nn.Conv2d, residual: bool):
        super().__init__(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                         conv.padding, conv.dilation, conv.groups, conv.bias is not None,
                         conv.padding_mode, device="meta")
        self.weight, self.bias = conv.weight, conv.bias
        self.residual = residual

    def forward(self, x: Tensor, residual: Optional[Tensor] = None) -> Tensor:
        return conv_bias_relu(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                              self.groups, residual)

    def extra_repr(self) -> str:
        return super().extra_repr() + (", + residual, relu" if self.residual else ", relu")


def _unfused(x, weight, bias, stride, padding, dilation, groups, residual):
    y = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    if residual is not None:
        y = y + residual
    return F.relu(y, inplace=True)


def _fused(x, weight, bias, stride, padding, dilation, groups, residual):
    if residual is None:
        return torch.cudnn_convolution_relu(x, weight, bias, stride, padding, dilation, groups)
    return torch.cudnn_convolution_add_relu(x, weight, residual, 1.0, bias, stride, padding, dilation, groups)


# -- a stride-2 first layer as a stride-1 convolution of the input's space-to-depth ------
#
# A k x k stride-2 convolution of x [N, C, H, W] is a ceil(k/2)^2 stride-1 convolution of
# x's 2x2 space-to-depth [N, 4C, H/2, W/2] (channel (2 dy + dx) C + c holds x[.., c, 2i + dy,
# 2j + dx]) with the kernel zero-padded to even size and rearranged the same way. For the
# stem (7x7, 4 input channels) that is a plain implicit GEMM with K = 256 where cuDNN
# otherwise runs a first-layer kernel, or, on SegBlocks' low-res tiles, a generic
# one (27 us of the stem's 58 at batch 1 on the H100, for 15% of its pixels:
# benchmarks/stem_probe.py times both). 1.3x the multiply-adds plus one copy of the input:
# under space_to_depth_convs(), conv_bias_relu times it against the other two ways and keeps
# the fastest.

# off by default until measured: the copy is alive at SegBlocks' memory peak (the stem)
_SPACE_TO_DEPTH: contextvars.ContextVar[bool] = contextvars.ContextVar("segblocks_space_to_depth", default=False)
# id(weight) -> (weak reference to it, its version, the rearranged kernel)
_S2D_WEIGHTS: dict[int, tuple[weakref.ref, int, Tensor]] = {}


@contextlib.contextmanager
def space_to_depth_convs(enabled: bool = True):
    """Let :func:`conv_bias_relu` try stride-2 first layers on the input's space-to-depth
    (timed against the direct convolution; the A/B of ``benchmarks/bench_gpu.py
    --space-to-depth``). Off by default: not yet measured on the GPU, and its copy of the
    input is alive at the stem, where SegBlocks' memory peaks. Read when the calls are
    first timed."""
    with context_value(_SPACE_TO_DEPTH, bool(enabled)):
        yield


def space_to_depth_applies(x: Tensor, weight: Tensor, stride, padding, dilation, groups: int) -> bool:
    """The convolution is a stride-2 first layer (at most 4 input channels, square kernel
    of 3 taps or more, no dilation or groups) whose space-to-depth form gives exactly its
    output size."""
    stride, padding, dilation = _tuple2(stride), _tuple2(padding), _tuple2(dilation)
    if (x.dim() != 4 or weight.dim() != 4 or stride != (2, 2) or dilation != (1, 1) or groups != 1
            or weight.shape[1] > 4 or weight.shape[2] != weight.shape[3] or weight.shape[2] < 3):
        return False
    k = weight.shape[2]
    for size, pad in zip(x.shape[2:], padding):
        full = size + 2 * pad
        if full < k or (full + 1) // 2 - (k + 1) // 2 + 1 != (full - k) // 2 + 1:
            return False
    return True


def space_to_depth(x: Tensor, padding=0) -> Tensor:
    """``x [N, C, H, W]`` zero-padded by ``padding`` (and to even sizes) -> its 2x2
    space-to-depth ``[N, 4C, H'/2, W'/2]``, channel ``(2 dy + dx) C + c`` = ``x[:, c, 2i + dy,
    2j + dx]``, channels_last (one copy of a channels_last input; two with padding)."""
    n, c, h, w = x.shape
    ph, pw = _tuple2(padding)
    y = x.permute(0, 2, 3, 1)  # NHWC (a view of a channels_last x)
    eh, ew = (h + 2 * ph) % 2, (w + 2 * pw) % 2
    if ph or pw or eh or ew:
        y = F.pad(y, (0, 0, pw, pw + ew, ph, ph + eh))
    h2, w2 = y.shape[1] // 2, y.shape[2] // 2
    y = y.reshape(n, h2, 2, w2, 2, c).permute(0, 1, 3, 2, 4, 5).reshape(n, h2, w2, 4 * c)
    return y.permute(0, 3, 1, 2)


def space_to_depth_weight(weight: Tensor) -> Tensor:
    """``[O, C, k, k]`` -> ``[O, 4C, ceil(k/2), ceil(k/2)]``: the stride-1 kernel of
    :func:`space_to_depth`'s map (cached per weight tensor and version)."""
    entry = _S2D_WEIGHTS.get(id(weight))
    if entry is not None and entry[0]() is weight and entry[1] == weight._version:
        return entry[2]
    o, c, k, _ = weight.shape
    k2 = (k + 1) // 2
    w8 = F.pad(weight, (0, 2 * k2 - k, 0, 2 * k2 - k))
    w2 = w8.reshape(o, c, k2, 2, k2, 2).permute(0, 3, 5, 1, 2, 4).reshape(o, 4 * c, k2, k2)
    w2 = w2.contiguous(memory_format=torch.channels_last)
    for key in [key for key, (ref, _, _) in _S2D_WEIGHTS.items() if ref() is None]:
        del _S2D_WEIGHTS[key]  # weights that are gone (an id can be reused)
    _S2D_WEIGHTS[id(weight)] = (weakref.ref(weight), weight._version, w2)
    return w2


def _space_to_depth_conv(conv, x, weight, bias, stride, padding, dilation, groups, residual):
    """``conv`` (:func:`_fused` or :func:`_unfused`) of the stride-2 first layer, run on
    :func:`space_to_depth` of ``x`` (:func:`space_to_depth_applies`)."""
    return conv(space_to_depth(x, padding), space_to_depth_weight(weight), bias, (1, 1), (0, 0), (1, 1), 1,
                residual)


# -- CUTLASS convolutions (Hopper) ---------------------------------------------------------
#
# ops.conv_into_ runs relu(conv + bias + residual) as a CUTLASS 3 implicit GEMM (wgmma, TMA)
# into any NHWC view; segblocks_core._cutlass has one kernel per tile configuration
# (ops.cutlass_conv_configs()), and the halo-tile kernels ("halo_*": 3x3 stride 1, channels
# multiples of 64; csrc/ops/cuda/cutlass/conv_halo.cuh). conv_bias_relu times each
# configuration as one more way (into a new tensor), on both sides of the benchmark alike; the
# executor's padded outputs (padded_outputs()) use them to write the next convolution's
# BlockPad-ed tiles.


_CUTLASS: contextvars.ContextVar[bool] = contextvars.ContextVar("segblocks_cutlass_convs", default=True)
_CUTLASS_PERSISTENT: contextvars.ContextVar[bool] = contextvars.ContextVar("segblocks_cutlass_persistent",
                                                                            default=True)
_CUTLASS_CLUSTERS: contextvars.ContextVar[bool] = contextvars.ContextVar("segblocks_cutlass_clusters",
                                                                          default=True)
_HALO_CONVS: contextvars.ContextVar[bool] = contextvars.ContextVar("segblocks_halo_convs", default=True)
# name endings of the persistent configurations (conv_cutlass_persistent.cuh: ping-pong,
# cooperative with the stream-K scheduler, cooperative)
PERSISTENT_CUTLASS_SCHEDULES = ("pingpong", "streamk", "coop")
# the part of a configuration's name that gives its thread-block cluster (persistent only;
# configs.h: "_c2x1" for clusters of 2 x 1)
_CLUSTER_NAME = re.compile(r"_c\d+x\d+(_|$)")
# the name prefix of the halo-tile configurations (configs.h, conv_halo.cuh)
HALO_CONFIG_PREFIX = "halo_"


@contextlib.contextmanager
def cutlass_convs(enabled: bool = True, persistent: bool = True, clusters: bool = True, halo: bool = True):
    """Let :func:`conv_bias_relu` and the padded outputs time the CUTLASS convolutions
    (default, where built) or (off) use cuDNN alone: the A/B of ``benchmarks/bench_gpu.py
    --no-cutlass``; ``persistent=False`` leaves out the persistent CUTLASS configurations
    (``--no-persistent-cutlass``), ``clusters=False`` those in thread-block clusters
    (``--no-cluster-cutlass``), ``halo=False`` the halo-tile kernels (``--no-halo-conv``).
    Read when a call shape is first timed."""
    with context_value(_CUTLASS, bool(enabled)), context_value(_CUTLASS_PERSISTENT, bool(persistent)), \
            context_value(_CUTLASS_CLUSTERS, bool(clusters)), context_value(_HALO_CONVS, bool(halo)):
        yield


def cutlass_config_indices() -> tuple[int, ...]:
    """The ``config`` indices of :func:`ops.conv_into_` the timed choices try, under
    :func:`cutlass_convs`: every built configuration, or none, or those left after leaving
    out the persistent, the clustered or the halo-tile ones."""
    from . import ops
    if not _CUTLASS.get():
        return ()
    names = ops.cutlass_conv_configs()
    keep_persistent, keep_clusters, keep_halo = _CUTLASS_PERSISTENT.get(), _CUTLASS_CLUSTERS.get(), _HALO_CONVS.get()
    return tuple(i for i, name in enumerate(names)
                 if (keep_persistent or not name.endswith(PERSISTENT_CUTLASS_SCHEDULES))
                 and (keep_clusters or not _CLUSTER_NAME.search(name))
                 and (keep_halo or not name.startswith(HALO_CONFIG_PREFIX)))


def cutlass_conv_applies(x: Tensor, weight: Tensor, bias: Optional[Tensor], stride, padding, dilation,
                         groups: int, residual: Optional[Tensor]) -> bool:
    """The CUTLASS kernels can run this convolution (and :func:`cutlass_convs` is on): built
    (Hopper), float16 CUDA tensors,
    ``x`` and ``weight`` channels_last contiguous, channels multiples of 8, a bias, no groups
    or dilation, square stride and padding, a residual (any view) with channel stride 1."""
    stride, padding, dilation = _tuple2(stride), _tuple2(padding), _tuple2(dilation)
    return (bool(cutlass_config_indices()) and type(x) is Tensor and x.is_cuda and x.dim() == 4
            and x.dtype == torch.float16 and weight.dtype == torch.float16 and bias is not None
            and bias.dtype == torch.float16 and bias.is_contiguous() and groups == 1 and dilation == (1, 1)
            and stride[0] == stride[1] and padding[0] == padding[1]
            and x.shape[1] % 8 == 0 and weight.shape[0] % 8 == 0
            and x.is_contiguous(memory_format=torch.channels_last)
            and weight.is_contiguous(memory_format=torch.channels_last)
            and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
            and (residual is None or (type(residual) is Tensor and residual.dtype == torch.float16
                                      and residual.stride(1) == 1)))


def conv_config_applies(config: int, x: Tensor, weight: Tensor, stride, padding) -> bool:
    """Whether :func:`ops.conv_into_`'s configuration ``config`` can run this convolution
    (given :func:`cutlass_conv_applies`): the CUTLASS ones any; the halo-tile ones 3x3 stride 1
    with channels multiples of 64, "_rb" (resident weights) only 64 in and out. The kernels
    check the same and raise; asking first saves the timed choices the exception."""
    from . import ops
    name = ops.cutlass_conv_configs()[config]
    if not name.startswith(HALO_CONFIG_PREFIX):
        return True
    c, k = x.shape[1], weight.shape[0]
    ok = (_tuple2(stride) == (1, 1) and tuple(weight.shape[2:]) == (3, 3) and c % 64 == 0 and k % 64 == 0
          and _tuple2(padding)[0] >= 0)
    return ok and ("_rb" not in name or c == k == 64)


def _cutlass_conv(config: int, x, weight, bias, stride, padding, dilation, groups, residual):
    from . import ops
    st, pad = _tuple2(stride)[0], _tuple2(padding)[0]
    k, r = weight.shape[0], weight.shape[2]
    size = [(d + 2 * pad - r) // st + 1 for d in x.shape[2:]]
    out = torch.empty((x.shape[0], k, *size), dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
    return ops.conv_into_(out, x, weight, bias, residual, st, pad, config)


_WAYS = {
    "unfused": _unfused,
    "fused": _fused,
    "space_to_depth": lambda *args: _space_to_depth_conv(_fused, *args),
}


def _way(name: str):
    if name.startswith("cutlass:"):
        return functools.partial(_cutlass_conv, int(name.split(":")[1]))
    return _WAYS[name]


def _fastest_way(args) -> str:
    """Time the ways to run ``args`` (outside CUDA-graph capture): unfused, the fused cuDNN
    call (unless cuDNN rejects it), for a stride-2 first layer the fused call on the
    space-to-depth input, and each CUTLASS configuration where they apply
    (:func:`cutlass_conv_applies`) and agree with the unfused result. Each way's first call
    is its warm-up."""
    want = _unfused(*args)
    if want.numel() == 0:
        return "unfused"  # nothing to time (an empty bucket's tiles): the capture would be empty
    ways = {"unfused": _unfused}
    s2d = _SPACE_TO_DEPTH.get() and space_to_depth_applies(*args[:2], *args[3:7])
    for name in ("fused", "space_to_depth") if s2d else ("fused",):
        try:
            _WAYS[name](*args)
        except RuntimeError:
            break  # cuDNN rejects the fused call (the space-to-depth way is one too)
        ways[name] = _WAYS[name]
    if cutlass_conv_applies(*args):
        for i in (i for i in cutlass_config_indices() if conv_config_applies(i, args[0], args[1], *args[3:5])):
            name = f"cutlass:{i}"
            try:
                err = output_disagreement(_way(name)(*args), want)
            except RuntimeError as exc:  # a configuration that cannot run this problem
                err = str(exc).splitlines()[0]
            if err is None:
                ways[name] = _way(name)
    times = {name: choice_ms(lambda: fn(*args)) for name, fn in ways.items()}
    return min(times, key=times.get)


def choice_ms(fn) -> float:
    """GPU milliseconds per call of ``fn`` for the fast path's timed choices: ``fn`` captured
    in a CUDA graph, as the fast path runs it. Timing host-launched calls measured the
    host's launch overhead as much as the kernels: on the H100 the padded outputs, chosen that
    way for 336 of 396 shapes, made SegBlocks slower in the graphs (RN18 batch 1 at 40%
    high-res 0.874 against 0.848 ms; ``benchmarks/results/steps/41-*``)."""
    return cuda_graph_median_ms(fn, reps=10, trials=5)


def _tuple2(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def conv_bias_relu(x: Tensor, weight: Tensor, bias: Optional[Tensor], stride=1, padding=0, dilation=1,
                   groups: int = 1, residual: Optional[Tensor] = None) -> Tensor:
    """``relu(conv2d(x, weight, bias, ...) + residual)``; one cuDNN call where that is faster
    (and a stride-2 first layer on its input's space-to-depth where that is faster still)."""
    stride, padding, dilation = _tuple2(stride), _tuple2(padding), _tuple2(dilation)
    args = (x, weight, bias, stride, padding, dilation, groups, residual)
    # plain CUDA tensors only: fake/functional tensors (tracing, torch.compile) and autograd
    # take the unfused ops (the fused cuDNN ops have no derivative)
    eligible = (type(x) is Tensor and x.is_cuda and bias is not None and torch.backends.cudnn.enabled
                and x.dtype in (torch.float16, torch.bfloat16, torch.float32)
                and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
                and (residual is None or (type(residual) is Tensor and residual.dtype == x.dtype)))
    if not eligible:
        return _unfused(*args)
    key = (tuple(x.shape), tuple(x.stride()), x.dtype, tuple(weight.shape), stride, padding, dilation,
           groups, None if residual is None else (tuple(residual.shape), tuple(residual.stride())),
           _SPACE_TO_DEPTH.get(), _CUTLASS.get(), _CUTLASS_PERSISTENT.get(), _CUTLASS_CLUSTERS.get(), _HALO_CONVS.get())
    choice = _CHOICE.get(key)
    if choice is None:
        if torch.cuda.is_current_stream_capturing():
            return _unfused(*args)  # no timing inside a capture; the warm-up run decides
        choice = _CHOICE[key] = _fastest_way(args)
    return _way(choice)(*args)


# ----------------------------------------------------------------------------------------
# the graph rewrite
# ----------------------------------------------------------------------------------------

_RELU_FUNCTIONS = (F.relu, torch.relu, torch.relu_)
_ADD_FUNCTIONS = (operator.add, operator.iadd, torch.add)


def _is_relu(node: fx.Node, gm: fx.GraphModule) -> bool:
    if node.op == "call_module":
        return type(gm.get_submodule(node.target)) is nn.ReLU
    if node.op == "call_function":
        return node.target in _RELU_FUNCTIONS
    return node.op == "call_method" and node.target in ("relu", "relu_")


def _is_add(node: fx.Node) -> bool:
    if node.kwargs or len(node.args) != 2:
        return False
    return ((node.op == "call_function" and node.target in _ADD_FUNCTIONS)
            or (node.op == "call_method" and node.target in ("add", "add_")))


def _plain_conv(node, gm: fx.GraphModule) -> Optional[nn.Conv2d]:
    """The biased nn.Conv2d ``node`` calls, if its output has one user and no other node
    calls the same module (the passes replace the module itself: a second call site would
    change with it)."""
    if not isinstance(node, fx.Node) or node.op != "call_module" or len(node.users) != 1:
        return None
    if any(n is not node and n.op == "call_module" and n.target == node.target for n in node.graph.nodes):
        return None
    conv = gm.get_submodule(node.target)
    if type(conv) is not nn.Conv2d or conv.bias is None or conv.padding_mode != "zeros" \
            or isinstance(conv.padding, str) or len(node.args) != 1 or node.kwargs:
        return None
    return conv


def _set_submodule(gm: fx.GraphModule, target: str, module: nn.Module) -> None:
    parent, _, name = target.rpartition(".")
    setattr(gm.get_submodule(parent) if parent else gm, name, module)


def fuse_conv_epilogue(gm: fx.GraphModule) -> fx.GraphModule:
    """Rewrite ``relu(conv(x))`` and ``relu(conv(x) + z)`` into :class:`FusedConv2d` (in place).

    Only convolutions with a bias (e.g. after :func:`segblocks_core.fastpath.fold_batchnorm`)
    whose output feeds nothing else are fused. Returns ``gm``.
    """
    graph = gm.graph
    for relu in list(graph.nodes):
        if not _is_relu(relu, gm) or not relu.args:
            continue
        src, residual = relu.args[0], None
        conv_node = src if _plain_conv(src, gm) is not None else None
        if conv_node is None and isinstance(src, fx.Node) and _is_add(src) and len(src.users) == 1:
            a, b = src.args
            if _plain_conv(a, gm) is not None and isinstance(b, fx.Node):
                conv_node, residual = a, b
            elif _plain_conv(b, gm) is not None and isinstance(a, fx.Node):
                conv_node, residual = b, a
        if conv_node is None:
            continue
        conv = gm.get_submodule(conv_node.target)
        fused = FusedConv2d(conv, residual=residual is not None)
        _set_submodule(gm, conv_node.target, fused)
        args = (conv_node.args[0],) if residual is None else (conv_node.args[0], residual)
        with graph.inserting_before(relu):
            new = graph.call_module(conv_node.target, args)
        relu.replace_all_uses_with(new)
        graph.erase_node(relu)
        if src is not conv_node:
            graph.erase_node(src)
        graph.erase_node(conv_node)
    graph.lint()
    gm.recompile()
    return gm


def fold_residual_bias(gm: fx.GraphModule) -> fx.GraphModule:
    """Where a :class:`FusedConv2d`'s residual is a biased convolution used only there (a
    ResNet block's downsample), move that bias into the fused convolution's:
    ``relu(conv(x) + b + (down(x) + b_down))`` becomes ``relu(conv(x) + (b + b_down) + down(x))``,
    the same function up to float rounding, without the pass in which PyTorch adds a plain
    convolution's bias (cuDNN's fused add takes the sum with its own). No tensor is changed
    in place: the fused convolution gets a new bias parameter and the downsample is replaced
    by a bias-free convolution sharing its weight, so the network whose parameters these
    modules share (:class:`FusedConv2d` shares its convolution's) keeps its biases. Run after
    :func:`fuse_conv_epilogue` (which keeps the function exactly); returns ``gm``."""
    for node in gm.graph.nodes:
        if node.op != "call_module" or len(node.args) != 2:
            continue
        fused = gm.get_submodule(node.target)
        if not isinstance(fused, FusedConv2d) or not fused.residual or fused.bias is None:
            continue
        residual = node.args[1]
        down = _plain_conv(residual, gm)
        if down is None or down.out_channels != fused.out_channels:
            continue
        with torch.no_grad():
            fused.bias = nn.Parameter(fused.bias + down.bias, requires_grad=fused.bias.requires_grad)
        plain = nn.Conv2d(down.in_channels, down.out_channels, down.kernel_size, down.stride, down.padding,
                          down.dilation, down.groups, bias=False, padding_mode=down.padding_mode, device="meta")
        plain.weight = down.weight
        _set_submodule(gm, residual.target, plain)
    return gm


# ----------------------------------------------------------------------------------------
# pooling
# ----------------------------------------------------------------------------------------

def adaptive_avg_pool2d(x: Tensor, output_size) -> Tensor:
    """``F.adaptive_avg_pool2d``, run as a plain ``avg_pool2d`` where the output size divides
    the input's (then every window is the same ``H/oh x W/ow`` box: the same function).

    PyTorch's channels_last adaptive kernel is slow on small maps (H100: 53 us for SwiftNet's
    ``[1, 128, 32, 64] -> 8 x 16`` SPP level, once per level per frame).
    """
    if isinstance(output_size, int):
        output_size = (output_size, output_size)
    h, w = x.shape[-2], x.shape[-1]
    oh = h if output_size[0] is None else int(output_size[0])
    ow = w if output_size[1] is None else int(output_size[1])
    if oh > 0 and ow > 0 and h % oh == 0 and w % ow == 0:
        return F.avg_pool2d(x, (h // oh, w // ow))
    return F.adaptive_avg_pool2d(x, output_size)


def use_fast_pooling(gm: fx.GraphModule) -> fx.GraphModule:
    """Replace ``F.adaptive_avg_pool2d`` calls of a traced network by :func:`adaptive_avg_pool2d`
    (in place; SegBlocks treats both as global operations). Returns ``gm``."""
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target is F.adaptive_avg_pool2d:
            node.target = adaptive_avg_pool2d
    gm.recompile()
    return gm


# ----------------------------------------------------------------------------------------
# convolutions on units with the halo gathered in the kernel
# ----------------------------------------------------------------------------------------

CONV_UNITS_MODES = ("off", "auto", "always")
@contextlib.contextmanager
def context_value(var: contextvars.ContextVar, value) -> Iterator[None]:
    """``var`` set to ``value`` inside the block (this thread / task), restored after."""
    token = var.set(value)
    try:
        yield
    finally:
        var.reset(token)


_CONV_UNITS: contextvars.ContextVar[str] = contextvars.ContextVar("segblocks_conv_units", default="off")
# per call shape: is the one-pass kernel faster than BlockPad + cuDNN? decided by timing
_UNITS_CHOICE: dict[tuple, bool] = {}


@contextlib.contextmanager
def conv_units(mode: str = "auto"):
    """How SegBlocks runs a 3x3 convolution on units (stride 1 or 2, padding 1, with or
    without a BatchNorm + ReLU prologue) where :func:`segblocks_core.ops.conv3x3_units_supported`
    holds:

    * ``"off"`` (the default: on the H100 the kernel is 1.5x slower than BlockPad + cuDNN
      on layer1 and 3-4x on the deep layers, ``benchmarks/PERFORMANCE.md``): BlockPad
      writes the padded tiles, then cuDNN;
    * ``"auto"``: the first call of each shape compares both ways' outputs (a disagreement
      keeps BlockPad + cuDNN, with a warning), then times them and keeps the faster (as
      :func:`conv_bias_relu` does; BlockPad + cuDNN for shapes first seen during capture);
    * ``"always"``: the one-pass kernel (:func:`segblocks_core.ops.conv3x3_units`).

    Read when the ops run, so a CUDA graph keeps what was active at capture.
    """
    check_conv_units_mode(mode)
    with context_value(_CONV_UNITS, mode):
        yield


def conv_units_mode() -> str:
    return _CONV_UNITS.get()


def check_conv_units_mode(mode) -> None:
    if mode not in CONV_UNITS_MODES:
        raise ValueError(f"conv_units mode must be one of {CONV_UNITS_MODES}, got {mode!r}")


def use_conv_units(key: tuple, one_pass, two_pass) -> bool:
    """Whether to run ``one_pass`` (the kernel) rather than ``two_pass`` (BlockPad + cuDNN)
    for a call of shape ``key``, under the current :func:`conv_units` mode."""
    mode = _CONV_UNITS.get()
    if mode != "auto":
        return mode == "always"
    choice = _UNITS_CHOICE.get(key)
    if choice is None:
        if torch.cuda.is_current_stream_capturing():
            return False  # no timing inside a capture; the warm-up run decides
        choice = _UNITS_CHOICE[key] = _fastest_agreeing(
            "conv_units", key, {"the one-pass kernel": one_pass}, two_pass) is not None
    return choice


def _fastest_agreeing(what: str, key: tuple, ways: dict, two_pass) -> Optional[str]:
    """The name of the fastest of ``ways`` whose output agrees with ``two_pass``'s (BlockPad
    + cuDNN), or None where ``two_pass`` is at least as fast or none agrees (each
    disagreement warns). Every call is timed by :func:`choice_ms`; outside capture only."""
    want = two_pass()
    if want.numel() == 0:
        return None  # nothing to time (an empty bucket's tiles): BlockPad + cuDNN
    agree = {}
    for name, fn in ways.items():
        try:
            err = output_disagreement(fn(), want)
        except RuntimeError as exc:  # a kernel configuration that cannot run this problem
            err = str(exc).splitlines()[0]
        if err is None:
            agree[name] = fn
        else:
            warnings.warn(f"{what}: {name} disagrees with BlockPad + cuDNN for {key} ({err}); running BlockPad + "
                          f"cuDNN instead", RuntimeWarning, stacklevel=3)
    times = {None: choice_ms(two_pass)}  # first: a tie keeps BlockPad + cuDNN
    times.update((name, choice_ms(fn)) for name, fn in agree.items())
    return min(times, key=times.get)


# -- padded outputs: a convolution writes its consumer's BlockPad-ed tiles ---------------

PADDED_OUTPUT_MODES = ("auto", "always", "off")
_PADDED_OUTPUTS: contextvars.ContextVar[str] = contextvars.ContextVar("segblocks_padded_outputs", default="auto")
# shape key -> the chosen way's name, or None (BlockPad + cuDNN)
_PADDED_CHOICE: dict[tuple, Optional[str]] = {}


@contextlib.contextmanager
def padded_outputs(mode: str = "auto"):
    """Where a units convolution's output feeds a zero-padded convolution (the plan marks
    it), let it write that convolution's BlockPad-ed tiles: :func:`ops.conv_into_` into
    their interiors, then :func:`ops.block_pad_ring_` for the 1-px frames, instead of packed
    units that BlockPad then copies whole. ``"auto"`` (default): on CUDA with the CUTLASS
    kernels, timed per shape against BlockPad + cuDNN at warm-up (after checking it agrees),
    the fastest kept; elsewhere off. ``"always"``: on every device where the plan marks it
    (the CPU runs the reference ops: the tests). ``"off"``: never. Read when the calls run."""
    if mode not in PADDED_OUTPUT_MODES:
        raise ValueError(f"padded_outputs mode must be one of {PADDED_OUTPUT_MODES}, got {mode!r}")
    with context_value(_PADDED_OUTPUTS, mode):
        yield


def padded_outputs_mode() -> str:
    return _PADDED_OUTPUTS.get()


def choose_padded_output(key: tuple, ways: dict, two_pass) -> Optional[str]:
    """The name of the fastest of ``ways`` (each a callable returning the padded tiles), or
    None where ``two_pass`` (BlockPad of the cuDNN output, the same tiles) is faster or no
    way agrees with it, under the current :func:`padded_outputs` mode."""
    mode = _PADDED_OUTPUTS.get()
    if mode != "auto" or not ways:
        return next(iter(ways)) if mode == "always" and ways else None
    if key in _PADDED_CHOICE:
        return _PADDED_CHOICE[key]
    if torch.cuda.is_current_stream_capturing():
        return None  # no timing inside a capture; the warm-up run decides
    choice = _PADDED_CHOICE[key] = _fastest_agreeing("padded outputs", key, ways, two_pass)
    return choice


#: Largest difference two correct ways of computing a convolution may show, relative to the
#: output's largest magnitude: each rounds a float32 sum once, in another order.
_AGREEMENT_TOL = {torch.float16: 1e-2, torch.bfloat16: 4e-2}


def output_disagreement(got: Tensor, want: Tensor) -> Optional[str]:
    """None if ``got`` matches ``want`` (shape; values within the dtype's tolerance, NaN
    where ``want`` has NaN), else what differs. Reads the values back (a sync)."""
    if got.shape != want.shape or got.dtype != want.dtype:
        return f"got {tuple(got.shape)} {got.dtype}, expected {tuple(want.shape)} {want.dtype}"
    g, w = got.float(), want.float()
    if not torch.equal(g.isnan(), w.isnan()):
        return "NaN in different places"
    finite = ~w.isnan()
    scale = float(w[finite].abs().max()) if bool(finite.any()) else 0.0
    diff = float((g - w)[finite].abs().max()) if bool(finite.any()) else 0.0
    tol = _AGREEMENT_TOL.get(want.dtype, 1e-4) * max(scale, 1.0)
    return None if diff <= tol else f"max abs difference {diff:.3g} > {tol:.3g}"



# ----------------------------------------------------------------------------------------
# decoder: bilinear upsampling + skip
# ----------------------------------------------------------------------------------------

_FAST_UPSAMPLING: contextvars.ContextVar[bool] = contextvars.ContextVar("segblocks_fast_upsampling",
                                                                      default=True)


@contextlib.contextmanager
def fast_upsampling(enabled: bool = True):
    """Switch the native bilinear x2 kernels (:func:`upsample_add` dense, and SegBlocks'
    ``block_interpolate`` on units) on or off; off runs PyTorch's ``F.interpolate`` and a
    separate add (the A/B of ``benchmarks/bench_gpu.py --no-fast-upsample``). Read when the
    ops run, so a CUDA graph keeps what was active at capture."""
    with context_value(_FAST_UPSAMPLING, bool(enabled)):
        yield


def fast_upsampling_enabled() -> bool:
    return _FAST_UPSAMPLING.get()


_UPSAMPLE_TILES: contextvars.ContextVar[bool] = contextvars.ContextVar("segblocks_upsample_tiles", default=True)


@contextlib.contextmanager
def upsample_tiles(enabled: bool = True):
    """Let SegBlocks' decoder upsampling on units write the next (blend) convolution's
    padded tiles itself (:func:`segblocks_core.ops.upsample2x_units` with ``padding``), or
    (off) write its output and let BlockPad pad it (the A/B of ``benchmarks/bench_gpu.py
    --no-upsample-tiles``). Read when the ops run, so a CUDA graph keeps what was active at
    capture."""
    with context_value(_UPSAMPLE_TILES, bool(enabled)):
        yield


def upsample_tiles_enabled() -> bool:
    return _UPSAMPLE_TILES.get()


def upsample_add(x: Tensor, size, skip: Tensor) -> Tensor:
    """``F.interpolate(x, size, mode="bilinear", align_corners=False) + skip`` (SwiftNet's
    decoder step). On CUDA, without grad, where ``size`` doubles ``x``: one pass
    (:func:`segblocks_core.ops.upsample2x_dense`), without the upsampled map; PyTorch's
    channels_last bilinear kernel took 157 us on the H100 for SwiftNet's largest step
    (``[1, 128, 128, 256]`` -> 256 x 512, fp16), about a tenth of its memory bandwidth.
    In SegBlocks the same step runs on units (:func:`segblocks_core.ops.upsample2x_units`).
    """
    from . import ops
    if (_FAST_UPSAMPLING.get() and type(x) is Tensor and type(skip) is Tensor and x.is_cuda and x.dim() == 4
            and tuple(int(v) for v in size) == (2 * x.shape[2], 2 * x.shape[3])
            and skip.shape == (x.shape[0], x.shape[1], 2 * x.shape[2], 2 * x.shape[3])
            and skip.dtype == x.dtype and skip.device == x.device
            and not (torch.is_grad_enabled() and (x.requires_grad or skip.requires_grad))):
        return ops.upsample2x_dense(x, skip)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False) + skip


def _bilinear_size(node: fx.Node):
    """The ``size`` of an ``F.interpolate(x, size, mode="bilinear", align_corners=False)``
    call node (no scale factor, no antialias), else None."""
    if node.op != "call_function" or node.target is not F.interpolate:
        return None
    names = ("input", "size", "scale_factor", "mode", "align_corners", "recompute_scale_factor", "antialias")
    kw = dict(zip(names, node.args))
    kw.update(node.kwargs)
    if (kw.get("mode") != "bilinear" or kw.get("align_corners") not in (None, False)
            or kw.get("scale_factor") is not None or kw.get("antialias") or kw.get("size") is None):
        return None
    return kw["size"]


def fuse_upsample_add(gm: fx.GraphModule) -> fx.GraphModule:
    """Replace ``F.interpolate(x, size, mode="bilinear") + y`` (either order, the upsampled
    map used only by the add) by :func:`upsample_add` (in place). Returns ``gm``."""
    for node in list(gm.graph.nodes):
        out_of_place = ((node.op == "call_function" and node.target in (operator.add, torch.add))
                        or (node.op == "call_method" and node.target == "add"))
        if not (out_of_place and _is_add(node)):
            continue
        for up, other in (node.args, reversed(node.args)):
            size = _bilinear_size(up) if isinstance(up, fx.Node) else None
            if size is None or len(up.users) != 1 or not isinstance(other, fx.Node):
                continue
            x = up.args[0] if up.args else up.kwargs["input"]
            with gm.graph.inserting_after(node):  # after both operands, before every user
                fused = gm.graph.call_function(upsample_add, (x, size, other))
            node.replace_all_uses_with(fused)
            gm.graph.erase_node(node)
            gm.graph.erase_node(up)
            break
    gm.graph.lint()
    gm.recompile()
    return gm


class MaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` without indices on CUDA (:func:`segblocks_core.ops.max_pool_dense`).

    PyTorch's CUDA max pooling always writes int64 indices beside its output (for
    SwiftNet's stem pooling at 2048x1024, 67 MB, more than the output itself); inference
    needs none. Elsewhere (CPU, autograd, fake tensors) it is ``nn.MaxPool2d``. In SegBlocks
    it is a max pooling like any other (on units: :func:`segblocks_core.ops.max_pool_units`).
    """

    def __init__(self, pool: nn.MaxPool2d):
        super().__init__(pool.kernel_size, pool.stride, pool.padding, pool.dilation,
                         pool.return_indices, pool.ceil_mode)

    def forward(self, x: Tensor) -> Tensor:
        from . import ops
        k, s, p = (_tuple2(v) for v in (self.kernel_size, self.stride, self.padding))
        if (type(x) is Tensor and x.is_cuda and x.dim() == 4 and k[0] == k[1] and s[0] == s[1]
                and p[0] == p[1] and _tuple2(self.dilation) == (1, 1) and not self.ceil_mode
                and not self.return_indices and not (torch.is_grad_enabled() and x.requires_grad)):
            return ops.max_pool_dense(x, k[0], s[0], p[0])
        return super().forward(x)


def use_fast_max_pooling(gm: nn.Module) -> nn.Module:
    """Replace every ``nn.MaxPool2d`` submodule of ``gm`` by :class:`MaxPool2d` (in place;
    same function, no indices on CUDA). Returns ``gm``."""
    for name, module in list(gm.named_modules()):
        if type(module) is nn.MaxPool2d:
            _set_submodule(gm, name, MaxPool2d(module))
    return gm


# ----------------------------------------------------------------------------------------
# a classifier's output channels padded to whole 16-byte packs
# ----------------------------------------------------------------------------------------

# channels of a 16-byte pack of a 2-byte type: channels_last maps whose channel count is a
# multiple of it can be read and written in packs
CHANNEL_PACK = 8
_PAD_CLASSIFIER: contextvars.ContextVar[bool] = contextvars.ContextVar("segblocks_pad_classifier", default=True)


@contextlib.contextmanager
def pad_classifier(enabled: bool = True):
    """Let ``SegBlocks.labels`` run the classifier with its output channels padded to whole
    packs (:class:`ChannelPaddedConv2d`; default), or (off) as defined (the A/B of
    ``benchmarks/bench_gpu.py --no-pad-classifier``). Read when a SegBlocks builds its
    labels plans (its first ``labels()`` call)."""
    with context_value(_PAD_CLASSIFIER, bool(enabled)):
        yield


def pad_classifier_enabled() -> bool:
    return _PAD_CLASSIFIER.get()


class ChannelPaddedConv2d(nn.Module):
    """``conv`` with zero output channels appended up to a multiple of :data:`CHANNEL_PACK`;
    :meth:`forward` returns its first ``classes`` channels (a view), the same values.

    For a segmentation head (SwiftNet's 19 classes): 19 channels are 38 bytes a pixel in
    channels_last, so no kernel after the classifier can move them in 16-byte packs, and
    cuDNN picks an alignment-1 kernel for the convolution itself. On the H100 (RN18 batch 1
    at 40% high-res, ``benchmarks/results/logits-probe-*``) 24 channels take the units'
    classifier from 24.0 to 13.6 us and their BlockPad from 11.8 to 5.2 us, the dense
    classifier from 35.3 to 21.0 us; the argmax reads the first 19 of 24 channels as fast
    as 19 of 19.

    Shares ``conv`` (a submodule, not a copy): :attr:`weight` and :attr:`bias` are padded
    copies of its parameters, remade whenever one of them changes (in place, by
    ``.to()``, or replaced); the copy is kept with the tensors it was made from, so a
    freed weight's address never matches a new one.
    """

    def __init__(self, conv: nn.Conv2d, multiple: int = CHANNEL_PACK):
        super().__init__()
        if type(conv) is not nn.Conv2d or conv.bias is None or conv.groups != 1 or conv.padding_mode != "zeros":
            raise ValueError("ChannelPaddedConv2d pads a plain nn.Conv2d with a bias and groups=1")
        self.conv = conv
        self.classes = conv.out_channels
        self.out_channels = -(-conv.out_channels // multiple) * multiple
        self._padded: Optional[tuple[tuple, Tensor, Tensor]] = None

    # the geometry block_conv2d and F.conv2d read, as the wrapped convolution's
    stride = property(lambda self: self.conv.stride)
    padding = property(lambda self: self.conv.padding)
    dilation = property(lambda self: self.conv.dilation)
    groups = property(lambda self: self.conv.groups)
    kernel_size = property(lambda self: self.conv.kernel_size)
    in_channels = property(lambda self: self.conv.in_channels)

    @staticmethod
    def _key(t: Tensor) -> tuple:
        try:
            version = t._version
        except RuntimeError:  # an inference tensor tracks no version
            version = None
        return t.data_ptr(), version, t.dtype, t.device, tuple(t.shape), tuple(t.stride())

    def _weights(self) -> tuple[Tensor, Tensor]:
        w, b = self.conv.weight, self.conv.bias
        key = (self._key(w), self._key(b))
        cached = self._padded
        if cached is None or cached[0][0] != key:
            extra = self.out_channels - self.classes
            with torch.no_grad():
                pw = torch.cat([w, w.new_zeros((extra,) + tuple(w.shape[1:]))])
                if w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous():
                    pw = pw.contiguous(memory_format=torch.channels_last)
                pb = torch.cat([b, b.new_zeros(extra)])
            # the sources stay referenced with the key: their addresses are not reused meanwhile
            cached = self._padded = ((key, w.detach(), b.detach()), pw, pb)
        return cached[1], cached[2]

    @property
    def weight(self) -> Tensor:
        return self._weights()[0]

    @property
    def bias(self) -> Tensor:
        return self._weights()[1]

    def forward(self, x: Tensor) -> Tensor:
        w, b = self._weights()
        return F.conv2d(x, w, b, self.stride, self.padding, self.dilation, self.groups)[:, :self.classes]

    def extra_repr(self) -> str:
        return f"{self.classes} of {self.out_channels} output channels"


# ----------------------------------------------------------------------------------------
# pre-activation BatchNorm + ReLU
# ----------------------------------------------------------------------------------------

class BatchNormReLU(nn.Module):
    """``relu(x * scale + shift)``: an eval-mode BatchNorm and the ReLU after it.

    One pass on the fast path's maps (:func:`segblocks_core.ops.scale_shift_relu`; else
    ``addcmul`` and an in-place ``relu_``) where PyTorch runs four kernels for the pair (per
    call: the inverse standard deviation, a parameter cast, the normalisation, the ReLU).
    ``scale``/``shift`` are precomputed from the running statistics in float64 and stored in
    the module's dtype.
    """

    def __init__(self, bn: nn.BatchNorm2d):
        super().__init__()
        if bn.training or not bn.track_running_stats or bn.running_var is None:
            raise ValueError("BatchNormReLU needs an eval-mode BatchNorm with running statistics")
        with torch.no_grad():
            var, mean = bn.running_var.double(), bn.running_mean.double()
            scale = torch.rsqrt(var + bn.eps)
            if bn.weight is not None:
                scale = scale * bn.weight.double()
            shift = -mean * scale
            if bn.bias is not None:
                shift = shift + bn.bias.double()
        dtype = bn.running_mean.dtype
        self.register_buffer("scale", scale.to(dtype).view(-1, 1, 1))
        self.register_buffer("shift", shift.to(dtype).view(-1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        from . import ops
        return ops.scale_shift_relu(x, self.scale, self.shift)


def fuse_batchnorm_relu(gm: fx.GraphModule) -> fx.GraphModule:
    """Rewrite eval-mode ``relu(batch_norm(x))`` into :class:`BatchNormReLU` (in place).

    Only BatchNorms whose output feeds nothing but the ReLU. Returns ``gm``.
    """
    graph = gm.graph
    for relu in list(graph.nodes):
        if not _is_relu(relu, gm) or not relu.args:
            continue
        bn_node = relu.args[0]
        if not isinstance(bn_node, fx.Node) or bn_node.op != "call_module" or len(bn_node.users) != 1 \
                or len(bn_node.args) != 1 or bn_node.kwargs:
            continue
        bn = gm.get_submodule(bn_node.target)
        if type(bn) is not nn.BatchNorm2d or bn.training or not bn.track_running_stats:
            continue
        _set_submodule(gm, bn_node.target, BatchNormReLU(bn))
        with graph.inserting_before(relu):
            new = graph.call_module(bn_node.target, (bn_node.args[0],))
        relu.replace_all_uses_with(new)
        graph.erase_node(relu)
        graph.erase_node(bn_node)
    graph.lint()
    gm.recompile()
    return gm
