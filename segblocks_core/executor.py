"""SegBlocks executor: run an unmodified dense network on block tensors.

``SegBlocks(net)`` traces ``net`` once with ``torch.fx`` and builds a *plan*: a new
``fx.GraphModule`` whose values are either dense tensors or :class:`BlockTensor`s and whose
nodes call block versions of the network's operations directly. There is no per-op
dispatch (no ``__torch_function__``) and nothing in the plan reads device values back to
the host, so a plan can be captured in a CUDA graph for a fixed block layout.

How each operation runs on blocks:

* ``Conv2d`` / ``MaxPool2d`` / ``AvgPool2d``: BlockPad (zero, -inf, zero) then the op
  without padding, separately on the high-res and low-res blocks.
* ``BatchNorm2d``, activations, dropout, ``Identity``: per resolution; in training mode
  BatchNorm uses joint statistics (a low-res pixel stands for four dense pixels).
* ``+ - * /`` and ``torch.cat(dim=1)``: per resolution (dense operands of the same size
  are split with the frame's layout; per-image ``[N, C, 1, 1]`` operands are gathered).
* bilinear / nearest upsampling by an integer factor: 1-px BlockPad halo (replicating the
  image border, like the dense op's edge clamping), upsample, crop. Exact.
* global operations (adaptive pooling and modules listed as ``global_modules``) see the
  dense map (combine first); their dense outputs are split again where they meet blocks.
* shape queries on block values return the dense shape.

With ``units=True`` (:func:`units_mode`, the GPU fast path) high-res blocks below the input
resolution are stored as their four quarters, tiles of the low-res block's size, and each
of the operations above runs once over both resolutions (``ops.block_pad_units``, one
convolution / pooling / elementwise call on the tile tensor); a BatchNorm + ReLU feeding
only a padded convolution is applied inside that BlockPad.

Anything else that receives a block value raises :class:`UnsupportedLayerError` naming
the layer. Inputs whose size is not a multiple of the block size are zero-padded
bottom/right and spatial outputs cropped back.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import math
import operator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable, Iterable, Optional, Sequence

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn

from . import ops
from .fused import (CHANNEL_PACK, BatchNormReLU, ChannelPaddedConv2d, FusedConv2d, MaxPool2d,
                    adaptive_avg_pool2d, choose_padded_output, conv_bias_relu, context_value, conv_units_mode,
                    conv_config_applies, cutlass_config_indices, cutlass_conv_applies, fast_upsampling_enabled,
                    pad_classifier_enabled, padded_outputs_mode, upsample_add, upsample_tiles_enabled,
                    use_conv_units)
from .layout import BlockLayout, BlockTensor

__all__ = ["SegBlocks", "UnsupportedLayerError", "MacCount", "concurrent_lowres", "units_mode", "units_min_side"]


class UnsupportedLayerError(TypeError):
    """A layer of the network cannot run on block tensors."""


# ----------------------------------------------------------------------------------------
# runtime block operations (targets of the plan's call_function nodes)
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _FramesInput:
    """The network input of :meth:`SegBlocks.labels_from_frames`: ``stand_in`` (the plan's
    input, a tensor of the normalised map's shape whose values are never read) is
    ``normalize_frames(images, scale, shift)``."""
    stand_in: Tensor
    images: Tensor
    scale: Tensor
    shift: Tensor


_INPUT_FRAMES: contextvars.ContextVar[Optional[_FramesInput]] = contextvars.ContextVar(
    "segblocks_input_frames", default=None)
_FRAMES_SPLIT: contextvars.ContextVar[bool] = contextvars.ContextVar("segblocks_frames_split", default=True)


@contextlib.contextmanager
def frames_split(enabled: bool = True):
    """:meth:`SegBlocks.labels_from_frames` reads the frames straight into the stem's tiles
    where the plan allows (on by default); off: it normalises the frames first (the A/B)."""
    with context_value(_FRAMES_SPLIT, bool(enabled)):
        yield


def split_like(x: Tensor, layout: BlockLayout, side: int, padding: int = 0) -> BlockTensor:
    """Split a dense map whose blocks are ``side`` pixels (a dense operand meeting blocks).
    ``padding`` (the plan's hint: the only user is a zero-padded convolution on whole
    blocks, the stem): the blocks' BlockPad-ed tiles are written instead, straight from the
    map (:func:`segblocks_core.ops.split_padded`), or, if ``x`` stands in for frames
    (:meth:`SegBlocks.labels_from_frames`), straight from the frames
    (:func:`segblocks_core.ops.split_padded_frames`)."""
    units = _units_at(layout, side)
    if padding > 0 and not units:
        frames = _INPUT_FRAMES.get()
        if frames is not None and x is frames.stand_in:
            return ops.split_padded_frames(frames.images, frames.scale, frames.shift, x.shape[1], x.dtype, layout,
                                           side, padding)
        return ops.split_padded(x, layout, side, padding)
    return ops.split(x, layout, side, units=units)


def combine_blocks(bt: BlockTensor) -> Tensor:
    return ops.combine(bt)


def dense_shape(bt: BlockTensor) -> torch.Size:
    return bt.dense_shape()


def dense_size(bt: BlockTensor, *dim: int):
    shape = bt.dense_shape()
    return shape[dim[0]] if dim else shape


def _two(x) -> tuple[int, int]:
    return (x, x) if isinstance(x, int) else (int(x[0]), int(x[1]))


def _trim(t: Tensor, pad_h: int, pad_w: int) -> Tensor:
    """Tiles padded by ``max(pad_h, pad_w)`` cut to ``pad_h`` rows / ``pad_w`` columns."""
    if pad_h == pad_w:
        return t
    p = max(pad_h, pad_w)
    dh, dw = p - pad_h, p - pad_w
    return t[:, :, dh:t.shape[2] - dh, dw:t.shape[3] - dw]


def _pad_crop(bt: BlockTensor, pad_h: int, pad_w: int, mode: str = "constant",
              value: float = 0.0) -> tuple[Tensor, Tensor]:
    """BlockPad with possibly different vertical/horizontal padding."""
    hr, lr = ops.block_pad(bt, max(pad_h, pad_w), mode, value)
    return _trim(hr, pad_h, pad_w), _trim(lr, pad_h, pad_w)


_UNITS: contextvars.ContextVar[bool] = contextvars.ContextVar("segblocks_units", default=False)


@contextlib.contextmanager
def units_mode(enabled: bool = True):
    """Run block convolutions, pooling and elementwise ops on *units* (see
    :meth:`BlockTensor.from_units`): below the input resolution, every high-res block is
    processed as its four quarters, tiles of the low-res block's size, so each operation is
    one call over both resolutions instead of two. Same values (the quarters are padded
    with BlockPad's rules, the halo inside a block being the block itself); fewer, larger
    kernel launches. The stem (at input resolution) and layouts with only one resolution
    keep whole blocks."""
    with context_value(_UNITS, bool(enabled)):
        yield


_UNITS_MIN_SIDE: contextvars.ContextVar[int] = contextvars.ContextVar("segblocks_units_min_side", default=0)


@contextlib.contextmanager
def units_min_side(side: int):
    """In :func:`units_mode`, keep whole blocks where the high-res blocks are smaller than
    ``side`` px (the deep layers, whose units are 2-4 px tiles with as much halo as
    interior): there each resolution runs on its own, with less halo per tile (the A/B of
    ``benchmarks/bench_gpu.py --units-min-side``). 0 (default): units at every stride below
    the input. Read when the ops run, so a CUDA graph keeps what was active at capture."""
    if int(side) < 0:
        raise ValueError(f"units_min_side must be >= 0, got {side}")
    with context_value(_UNITS_MIN_SIDE, int(side)):
        yield


def _units_at(layout: BlockLayout, side: int) -> bool:
    """Blocks of ``side`` px (high-res) on ``layout`` run as units: below the input
    resolution (and not below :func:`units_min_side`), and only with both resolutions
    present (with one resolution there is one call anyway, and whole blocks have less halo
    than quarters)."""
    return (_UNITS.get() and _UNITS_MIN_SIDE.get() <= side < layout.block_size and layout.num_highres > 0
            and layout.num_lowres > 0)


def _use_units(bt: BlockTensor) -> bool:
    return _units_at(bt.layout, bt.block_side)


def _written_tiles(bt: BlockTensor, padding: int, mode: str = "constant", value: float = 0.0,
                   pre: Optional[BatchNormReLU] = None) -> bool:
    """``bt`` carries the tiles ``block_pad_units(bt, padding, mode, value, pre)`` (units)
    or ``block_pad(bt, padding, mode, value)`` (whole blocks) would write: its producer wrote
    them (:meth:`BlockTensor.from_padded_units` / :meth:`~BlockTensor.from_padded_blocks`,
    zero border)."""
    return (bt.padded is not None and bt.padded[1] == padding and padding > 0 and mode == "constant"
            and value == 0.0 and pre is None and len(bt.padded[0]) == (1 if bt.quartered else 2))


def _pad_units(bt: BlockTensor, pad_h: int, pad_w: int, mode: str = "constant",
               value: float = 0.0, pre: Optional[BatchNormReLU] = None) -> Tensor:
    """:func:`ops.block_pad_units` with possibly different vertical/horizontal padding;
    ``pre`` (a BatchNormReLU) is applied to the blocks in the same pass."""
    p = max(pad_h, pad_w)
    if _written_tiles(bt, p, mode, value, pre):
        units, = bt.padded[0]
    elif p == 0:
        units = bt.units if pre is None else pre(bt.units)
    else:
        units = ops.block_pad_units(bt, p, mode, value, None if pre is None else (pre.scale, pre.shift))
    return _trim(units, pad_h, pad_w)


def _same_form(ref: BlockTensor, other: BlockTensor) -> BlockTensor:
    """``other`` stored like ``ref`` (quartered or not)."""
    if ref.quartered == other.quartered:
        return other
    return other.to_quartered() if ref.quartered else other.to_standard()


_LOWRES_STREAM: contextvars.ContextVar[Optional[torch.cuda.Stream]] = contextvars.ContextVar(
    "segblocks_lowres_stream", default=None)


@contextlib.contextmanager
def concurrent_lowres(stream: Optional[torch.cuda.Stream]):
    """Run the low-res half of each convolution on ``stream``, concurrently with the high-res
    half on the current stream (CUDA; ``None`` switches it off).

    The two halves of a convolution are independent and the low-res one is a quarter of the
    work in small images that do not fill a GPU alone, so overlapping them hides the low-res
    convolutions. Each convolution forks from and joins back to the current stream, so
    captured into a CUDA graph this becomes two parallel branches per convolution.
    """
    with context_value(_LOWRES_STREAM, stream):
        yield


def _per_resolution(fn: Callable[..., Tensor], hr: tuple, lr: tuple) -> tuple[Tensor, Tensor]:
    """``(fn(*hr), fn(*lr))``, the low-res call on the :func:`concurrent_lowres` stream if
    set. The first argument of each is the block tensor; others may be tensors or None."""
    side = _LOWRES_STREAM.get()
    if side is None or not lr[0].is_cuda or lr[0].numel() == 0 or hr[0].numel() == 0:
        return fn(*hr), fn(*lr)
    main = torch.cuda.current_stream(lr[0].device)
    side.wait_stream(main)  # fork: the low-res inputs are ready
    with torch.cuda.stream(side):
        out_lr = fn(*lr)
    out_hr = fn(*hr)
    main.wait_stream(side)  # join
    # the caching allocator must not hand these blocks out again before both streams are done
    for t in lr:
        if isinstance(t, Tensor):
            t.record_stream(side)
    out_lr.record_stream(main)
    return out_hr, out_lr


def _one_pass_conv(bt: BlockTensor, conv: nn.Conv2d, residual: Optional[BlockTensor],
                   pre: Optional[BatchNormReLU]) -> bool:
    """The convolution could run as :func:`ops.conv3x3_units` (halo gathered in the kernel):
    the mode is not off, 3x3, stride 1 or 2, padding 1, no dilation or groups, and the kernel
    supports the operands (the BatchNorm + ReLU prologue ``pre`` included)."""
    return (conv_units_mode() != "off" and _two(conv.kernel_size) == (3, 3)
            and _two(conv.stride) in ((1, 1), (2, 2)) and _two(conv.padding) == (1, 1)
            and _two(conv.dilation) == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros"
            and (residual is None or residual.layout is bt.layout)
            and ops.conv3x3_units_supported(bt, conv.weight, residual,
                                            None if pre is None else (pre.scale, pre.shift)))


def _one_pass_output(bt: BlockTensor, conv: nn.Conv2d, residual: Optional[BlockTensor],
                     pre: Optional[BatchNormReLU], conv_padded: Callable[[Tensor], Tensor]) -> Optional[Tensor]:
    """The units :func:`ops.conv3x3_units` computes for this convolution where it is chosen
    (:func:`_one_pass_conv`, and in ``"auto"`` mode the per-shape comparison with BlockPad +
    ``conv_padded``), else None: BlockPad + cuDNN it is."""
    if not _one_pass_conv(bt, conv, residual, pre):
        return None
    fused = isinstance(conv, FusedConv2d)
    z = residual if fused else None
    pad_h, pad_w = _two(conv.padding)

    def one_pass() -> Tensor:
        return ops.conv3x3_units(bt, conv.weight, conv.bias, z, relu=fused, stride=_two(conv.stride)[0],
                                 pre=None if pre is None else (pre.scale, pre.shift)).units

    def two_pass() -> Tensor:
        return conv_padded(_pad_units(bt, pad_h, pad_w, pre=pre))
    key = (tuple(bt.highres.shape), tuple(bt.lowres.shape), bt.quartered, bt.highres.dtype,
           tuple(conv.weight.shape), _two(conv.stride), fused, z is not None, pre is not None)
    return one_pass() if use_conv_units(key, one_pass, two_pass) else None


class Handoff:
    """A block value handed to a convolution, which takes it out (:meth:`take`) once it has
    padded it. The plan then holds no reference to the unpadded input while the convolution
    runs: where the convolution is its last user, its memory is free for the output
    (without this, the input, its padded copy and the output were all alive at once: the
    peak of SegBlocks' memory, at the decoder's last blend)."""

    __slots__ = ("value",)

    def __init__(self, value: BlockTensor):
        self.value = value

    def take(self) -> BlockTensor:
        value, self.value = self.value, None
        if value is None:
            raise RuntimeError("a Handoff is taken once")
        return value


def handoff(bt: BlockTensor) -> Handoff:
    """Plan node before each :func:`block_conv2d` (``SegBlocksPlan``): its input in a
    :class:`Handoff`, so that the plan frees its own reference right away (fx frees a value
    after its last user)."""
    return Handoff(bt)


def _conv_into_tiles(x: Tensor, conv: nn.Conv2d, residual: Optional[BlockTensor], layout: BlockLayout,
                     padding: int, conv_padded: Callable[[Tensor], Tensor]) -> Optional[Tensor]:
    """The output of the convolution of BlockPad-ed units ``x`` as its consumer's tiles,
    BlockPad-ed by ``padding`` px: written into their interiors (:func:`ops.conv_into_`),
    then their frames (:func:`ops.block_pad_ring_`); or None where :func:`padded_outputs`
    keeps BlockPad + cuDNN (the consumer then pads the packed output as before)."""
    mode = padded_outputs_mode()
    if mode == "off" or not isinstance(conv, FusedConv2d):
        return None
    stride = _two(conv.stride)[0]
    z = None if residual is None else residual.units
    cutlass = cutlass_conv_applies(x, conv.weight, conv.bias, conv.stride, 0, conv.dilation, conv.groups, z)
    if mode == "auto" and not cutlass:
        return None
    n, k = x.shape[0], conv.weight.shape[0]
    side = (x.shape[-1] - conv.weight.shape[-1]) // stride + 1
    p = int(padding)

    def into(config: int) -> Callable[[], Tensor]:
        def run() -> Tensor:
            tiles = torch.empty((n, k, side + 2 * p, side + 2 * p), dtype=x.dtype, device=x.device,
                                memory_format=torch.channels_last)
            ops.conv_into_(tiles[:, :, p:p + side, p:p + side], x, conv.weight, conv.bias, z, stride, 0, config)
            return ops.block_pad_ring_(tiles, layout, p)
        return run

    configs = [i for i in cutlass_config_indices() if conv_config_applies(i, x, conv.weight, stride, 0)] \
        if cutlass else range(1)
    ways = {f"into:{i}": into(i) for i in configs}

    def two_pass() -> Tensor:
        return ops.block_pad_units(BlockTensor.from_units(conv_padded(x), layout), p)
    key = (tuple(x.shape), x.dtype, tuple(conv.weight.shape), stride, z is not None, p, tuple(configs))
    choice = choose_padded_output(key, ways, two_pass)
    return None if choice is None else ways[choice]()


def block_conv2d(bt: BlockTensor | Handoff, conv: nn.Conv2d, residual: Optional[BlockTensor] = None,
                 pre: Optional[BatchNormReLU] = None, padded_out: int = 0) -> BlockTensor:
    """A convolution on blocks (BlockPad, then no padding); a :class:`FusedConv2d` also
    adds its bias, the ``residual`` blocks and the ReLU in the same call. ``pre``: a
    :class:`BatchNormReLU` whose only user is this convolution, applied first (on units,
    inside BlockPad: its output is never written). ``bt`` in a :class:`Handoff` (the plan):
    the unpadded input is let go before the convolution runs. ``padded_out`` (the plan: the
    output feeds a convolution zero-padded by that many px): on units the output may be
    written as that convolution's BlockPad-ed tiles (:func:`_conv_into_tiles`)."""
    if isinstance(bt, Handoff):
        bt = bt.take()
    pad_h, pad_w = _two(conv.padding)
    layout = bt.layout
    fused = isinstance(conv, FusedConv2d)
    if _use_units(bt):
        def conv_padded(x: Tensor) -> Tensor:  # cuDNN on tiles BlockPad wrote
            if fused:
                z = None if residual is None else residual.units
                return conv_bias_relu(x, conv.weight, conv.bias, conv.stride, 0, conv.dilation, conv.groups, z)
            return F.conv2d(x, conv.weight, conv.bias, conv.stride, 0, conv.dilation, conv.groups)

        written = _written_tiles(bt, max(pad_h, pad_w), pre=pre)
        out = None if written else _one_pass_output(bt, conv, residual, pre, conv_padded)
        if out is None:
            x = _pad_units(bt, pad_h, pad_w, pre=pre)
            del bt  # the padded tiles hold all the convolution reads
            tiles = _conv_into_tiles(x, conv, residual, layout, padded_out, conv_padded) if padded_out else None
            if tiles is not None:
                return BlockTensor.from_padded_units(tiles, padded_out, layout)
            if x.dim() == 4 and not (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)):
                # unpadded, a view of padded tiles' interiors (a padded output): packed first,
                # channels_last, or cuDNN would choose the strided view's NCHW format for its output
                x = x.contiguous(memory_format=torch.channels_last)
            out = conv_padded(x)
        return BlockTensor.from_units(out, layout)
    bt = bt.to_standard()
    if _written_tiles(bt, max(pad_h, pad_w), pre=pre):
        hr, lr = (_trim(t, pad_h, pad_w) for t in bt.padded[0])
    else:
        if pre is not None:
            bt = bt.map(pre)
        hr, lr = _pad_crop(bt, pad_h, pad_w)
    del bt
    if fused:
        def run_fused(t: Tensor, z: Optional[Tensor]) -> Tensor:
            return conv_bias_relu(t, conv.weight, conv.bias, conv.stride, 0, conv.dilation, conv.groups, z)
        if residual is not None:
            residual = residual.to_standard()
        z_hr, z_lr = (None, None) if residual is None else (residual.highres, residual.lowres)
        return BlockTensor(*_per_resolution(run_fused, (hr, z_hr), (lr, z_lr)), layout)

    def run(t: Tensor) -> Tensor:
        return F.conv2d(t, conv.weight, conv.bias, conv.stride, 0, conv.dilation, conv.groups)
    return BlockTensor(*_per_resolution(run, (hr,), (lr,)), layout)


def block_batch_norm(bt: BlockTensor, bn: nn.BatchNorm2d) -> BlockTensor:
    hr, lr = bt.highres, bt.lowres
    use_batch_stats = bn.training or not bn.track_running_stats
    if not use_batch_stats:
        def norm(t):
            return F.batch_norm(t, bn.running_mean, bn.running_var, bn.weight, bn.bias,
                                False, 0.0, bn.eps)
        return bt.map(norm)
    # joint batch statistics over both resolutions; a low-res pixel stands for four dense
    # pixels, so the statistics equal those of the combined dense map
    dims = (0, 2, 3)
    count = hr.shape[0] * hr.shape[2] * hr.shape[3] + 4 * lr.shape[0] * lr.shape[2] * lr.shape[3]
    if count <= 1:
        raise ValueError("BatchNorm in training mode needs more than one value per channel")
    mean = (hr.sum(dims) + 4 * lr.sum(dims)) / count
    shape = (1, -1, 1, 1)
    var = (((hr - mean.view(shape)) ** 2).sum(dims)
           + 4 * ((lr - mean.view(shape)) ** 2).sum(dims)) / count
    if bn.training and bn.track_running_stats:
        with torch.no_grad():
            bn.num_batches_tracked.add_(1)
            momentum = (1.0 / float(bn.num_batches_tracked)) if bn.momentum is None else bn.momentum
            bn.running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
            bn.running_var.mul_(1 - momentum).add_(var.detach() * count / (count - 1), alpha=momentum)
    inv = torch.rsqrt(var + bn.eps)
    scale = inv if bn.weight is None else inv * bn.weight
    shift = -mean * scale if bn.bias is None else bn.bias - mean * scale
    return bt.map(lambda t: t * scale.view(shape) + shift.view(shape))


def block_module(bt: BlockTensor, module: nn.Module) -> BlockTensor:
    """An elementwise module (activation, dropout, identity) on both resolutions."""
    return bt.map(module)


_POOLING_TILES: contextvars.ContextVar[bool] = contextvars.ContextVar("segblocks_pooling_tiles", default=True)


@contextlib.contextmanager
def pooling_tiles(enabled: bool = True):
    """Max pooling on units writes the next convolution's BlockPad-ed tiles where the plan
    marks it (``padded_out``): the pooling into their interiors, one pass their frames,
    instead of BlockPad copying the pooled map whole for the convolution (the A/B of
    ``benchmarks/bench_gpu.py --no-pooling-tiles``). On by default: in node profiles on the
    H100 (RN18 at 40%) SegBlocks' kernels took 2.197 against 2.239 ms at batch 4 and 0.771
    against 0.776 ms at batch 1, layer 1's first convolution losing its BlockPad copy; the
    40% peak at batch 1 rises from 45.0 to 46.2 MB (memory probe: the padded tiles are
    alive with the stem's output), 0.58x of the static best's. Read when the ops run,
    so a CUDA graph keeps what was active at capture."""
    with context_value(_POOLING_TILES, bool(enabled)):
        yield


def block_max_pool2d(bt: BlockTensor, kernel_size, stride, padding, padded_out: int = 0) -> BlockTensor:
    """Max pooling on blocks (BlockPad with -inf, then pooling). ``padded_out`` (the plan:
    the output feeds a convolution zero-padded by that many px, as its input or residual
    only): on units the output is written as that convolution's BlockPad-ed tiles
    (:func:`pooling_tiles`)."""
    pad_h, pad_w = _two(padding)
    if _use_units(bt):
        (kh, kw), (sh, sw) = _two(kernel_size), _two(stride)
        if kh == kw and sh == sw and pad_h == pad_w:  # one kernel: BlockPad and pooling, no indices
            q = int(padded_out) if _POOLING_TILES.get() else 0
            out = ops.max_pool_units(bt, kh, sh, pad_h, q)
            return BlockTensor.from_padded_units(out, q, bt.layout) if q else BlockTensor.from_units(out, bt.layout)
        x = _pad_units(bt, pad_h, pad_w, "constant", float("-inf"))
        return BlockTensor.from_units(F.max_pool2d(x, kernel_size, stride), bt.layout)
    bt = bt.to_standard()
    hr, lr = _pad_crop(bt, pad_h, pad_w, "constant", float("-inf"))
    return BlockTensor(F.max_pool2d(hr, kernel_size, stride), F.max_pool2d(lr, kernel_size, stride),
                       bt.layout)


def block_avg_pool2d(bt: BlockTensor, kernel_size, stride, padding, divisor_override) -> BlockTensor:
    # count_include_pad=True: zero halo at the image border, like the dense op
    pad_h, pad_w = _two(padding)
    kw = dict(divisor_override=divisor_override)
    if _use_units(bt):
        x = _pad_units(bt, pad_h, pad_w)
        return BlockTensor.from_units(F.avg_pool2d(x, kernel_size, stride, **kw), bt.layout)
    bt = bt.to_standard()
    hr, lr = _pad_crop(bt, pad_h, pad_w)
    return BlockTensor(F.avg_pool2d(hr, kernel_size, stride, **kw),
                       F.avg_pool2d(lr, kernel_size, stride, **kw), bt.layout)


def block_interpolate(bt: BlockTensor, factor: int, mode: str, add: Optional[BlockTensor] = None,
                      post: Optional[BatchNormReLU] = None, padding: int = 0) -> BlockTensor:
    """Upsample by an integer factor, exactly as the dense op would; plus ``add`` (a
    BlockTensor at the output's stride) if given, as ``upsampled + add`` would be; then
    ``post`` (a BatchNormReLU) if given. ``padding`` (the plan's hint, with ``post``: the
    next convolution's): on units the op also writes that convolution's zero-border padded
    tiles (:meth:`BlockTensor.from_padded_units`), so BlockPad does not copy the map again."""
    if (mode == "bilinear" and factor == 2 and _use_units(bt) and fast_upsampling_enabled()
            and 2 * bt.block_side < bt.layout.block_size and (add is None or isinstance(add, BlockTensor))):
        # units in and out: one pass, halo looked up, skip added (ops.upsample2x_units)
        return ops.upsample2x_units(bt, add, None if post is None else (post.scale, post.shift),
                                    padding if upsample_tiles_enabled() else 0)
    if mode == "nearest":
        def up(t):
            return F.interpolate(t, scale_factor=factor, mode="nearest")
        out = bt.map(up)
    else:
        # bilinear, align_corners=False: output pixel j samples (j + 0.5) / f - 0.5, which
        # lies within half a pixel outside the block, so a 1-px halo is enough; replicating
        # the image border reproduces the dense op's clamping there.
        def up_crop(t):
            t = F.interpolate(t, scale_factor=factor, mode="bilinear", align_corners=False)
            return t[:, :, factor:t.shape[2] - factor, factor:t.shape[3] - factor]
        if _use_units(bt):
            out = BlockTensor.from_units(up_crop(ops.block_pad_units(bt, 1, "replicate")), bt.layout)
        else:
            hr, lr = ops.block_pad(bt, 1, "replicate")
            out = BlockTensor(up_crop(hr), up_crop(lr), bt.layout)
    out = out if add is None else block_binary("add", out, add)
    return out if post is None else block_module(out, post)


def block_upsample_argmax(bt: BlockTensor, factor: int, classes: Optional[int] = None) -> Tensor:
    """``combine(block_interpolate(bt, factor, "bilinear")).argmax(1)`` in one fused op
    (over the first ``classes`` channels, if given)."""
    return ops.upsample_argmax(bt, factor, classes)


def argmax_labels(logits: Tensor) -> Tensor:
    """Class ids (uint8) of dense logits ``[N, C, H, W]``."""
    if not isinstance(logits, Tensor) or logits.dim() != 4:
        raise ValueError("labels() needs a network whose output is one logits tensor [N, C, H, W]")
    return ops.argmax_labels(logits)


def interpolate_labels(x: Tensor, size=None, scale_factor=None, mode: str = "nearest",
                       align_corners=None, **kwargs) -> Tensor:
    """``F.interpolate(x, ...).argmax(1)`` as uint8; an integer-factor bilinear upsampling
    to ``size`` runs as the fused :func:`segblocks_core.ops.upsample_argmax_dense`."""
    if mode == "bilinear" and not align_corners and size is not None and scale_factor is None \
            and not kwargs.get("antialias", False):
        (h, w), (oh, ow) = x.shape[-2:], _two(size)
        if h and w and oh % h == 0 and ow % w == 0 and oh // h == ow // w:
            return ops.upsample_argmax_dense(x, oh // h)
    return argmax_labels(F.interpolate(x, size, scale_factor, mode, align_corners, **kwargs))


def _labels_graph(gm: fx.GraphModule, fuse: Callable[[fx.Node], Optional[tuple]]) -> fx.GraphModule:
    """Copy of ``gm`` returning class ids instead of logits. ``fuse(node)`` maps the node
    producing the logits to ``(target, args, kwargs)`` of a fused labels op, or None."""
    labels = fx.GraphModule(gm, copy.deepcopy(gm.graph), class_name=type(gm).__name__ + "Labels")
    output = next(n for n in labels.graph.nodes if n.op == "output")
    value = output.args[0]
    if not isinstance(value, fx.Node):
        raise ValueError("labels() needs a network whose output is one logits tensor [N, C, H, W]")
    with labels.graph.inserting_before(output):
        fused = fuse(value)
        if fused is not None:
            new = labels.graph.call_function(*fused)
        else:
            new = labels.graph.call_function(argmax_labels, (value,))
    output.args = (new,)
    labels.graph.eliminate_dead_code()
    _pad_classifier(labels, new)
    labels.recompile()
    from .overlap import overlap_skip_projections, skip_overlap_levels
    overlap_skip_projections(labels, skip_overlap_levels())
    return labels


def _pad_classifier(labels: fx.GraphModule, head: fx.Node) -> None:
    """Where the labels ``head`` (a fused upsampling + argmax) reads a classifier
    convolution's output directly, run that convolution with its output channels padded to
    whole packs (:class:`ChannelPaddedConv2d`; SwiftNet's 19 classes become 24), and let the
    head read the first channels of the padded logits. The dense graph calls the module
    (whose output is a view of its first channels); the block plan's ``block_conv2d`` makes
    24-channel blocks, and ``block_upsample_argmax`` takes ``classes``. Off under
    :func:`segblocks_core.fused.pad_classifier` ``(False)``."""
    logits = head.args[0] if head.args else None
    if not pad_classifier_enabled() or not isinstance(logits, fx.Node) or len(logits.users) != 1:
        return
    if head.target is interpolate_labels and logits.op == "call_module":
        conv = labels.get_submodule(logits.target)
        if _paddable_classifier(conv):
            logits.target = _add_padded_classifier(labels, logits.target, conv)
    elif (head.target is block_upsample_argmax and logits.op == "call_function"
          and logits.target is block_conv2d and len(logits.args) == 2 and not logits.kwargs
          and isinstance(logits.args[1], fx.Node) and logits.args[1].op == "get_attr"):
        ref = logits.args[1]
        conv = labels.get_submodule(ref.target)
        if _paddable_classifier(conv):
            name = _add_padded_classifier(labels, ref.target, conv)
            with labels.graph.inserting_before(logits):
                padded_ref = labels.graph.get_attr(name)
            logits.args = (logits.args[0], padded_ref)
            head.kwargs = {**head.kwargs, "classes": conv.out_channels}
            if not ref.users:
                labels.graph.erase_node(ref)


def _paddable_classifier(conv: nn.Module) -> bool:
    return (type(conv) is nn.Conv2d and conv.bias is not None and conv.groups == 1
            and conv.padding_mode == "zeros" and conv.out_channels % CHANNEL_PACK != 0)


def _add_padded_classifier(gm: fx.GraphModule, target: str, conv: nn.Conv2d) -> str:
    """Add :class:`ChannelPaddedConv2d` of ``conv`` (the submodule ``target``) to ``gm`` under
    a free name (``<target>_padded``, with ``_<k>`` appended if taken); returns the name."""
    name = base = target.replace(".", "_") + "_padded"
    k = 0
    while hasattr(gm, name):
        k += 1
        name = f"{base}_{k}"
    gm.add_submodule(name, ChannelPaddedConv2d(conv))
    return name


def _fuse_block_head(node: fx.Node) -> Optional[tuple]:
    # combine(block_interpolate(bt, f, "bilinear")) -> block_upsample_argmax(bt, f)
    if node.op == "call_function" and node.target is combine_blocks:
        src = node.args[0]
        if isinstance(src, fx.Node) and src.target is block_interpolate and src.args[2] == "bilinear":
            return block_upsample_argmax, (src.args[0], src.args[1]), {}
    return None


def _fuse_dense_head(node: fx.Node) -> Optional[tuple]:
    if node.op == "call_function" and node.target is F.interpolate:
        return interpolate_labels, node.args, node.kwargs
    return None


def block_cat(tensors: Sequence[BlockTensor], dim: int = 1) -> BlockTensor:
    first = tensors[0]
    if first.quartered:
        return BlockTensor.from_units(torch.cat([t.units for t in tensors], 1), first.layout)
    tensors = [t.to_standard() for t in tensors]
    return BlockTensor(torch.cat([t.highres for t in tensors], 1),
                       torch.cat([t.lowres for t in tensors], 1), first.layout)


def _per_block(t: Tensor, bt: BlockTensor) -> tuple[Any, Any]:
    """A dense operand as seen by the high-res and the low-res blocks."""
    if isinstance(t, Tensor) and t.dim() == 4 and t.shape[0] > 1:
        # per-image [N, C, 1, 1] values: each block takes its own image's
        per_image = bt.layout.grid_shape[1] * bt.layout.grid_shape[2]
        hr_image = bt.layout.hr_pos // per_image
        if bt.quartered:
            hr_image = hr_image.repeat_interleave(4)
        return t[hr_image], t[bt.layout.lr_pos // per_image]
    return t, t


_BINARY_OPS: dict[str, Callable] = {
    "add": operator.add, "sub": operator.sub, "mul": operator.mul, "truediv": operator.truediv,
    "iadd": operator.iadd, "isub": operator.isub, "imul": operator.imul,
    "itruediv": operator.itruediv, "maximum": torch.maximum, "minimum": torch.minimum,
}


def block_binary(op: str, a, b) -> BlockTensor:
    fn = _BINARY_OPS[op]
    if isinstance(a, BlockTensor) and isinstance(b, BlockTensor):
        b = _same_form(a, b)
        if a.quartered:
            return BlockTensor.from_units(fn(a.units, b.units), a.layout)
        return BlockTensor(fn(a.highres, b.highres), fn(a.lowres, b.lowres), a.layout)
    if isinstance(a, BlockTensor):
        b_hr, b_lr = _per_block(b, a)
        if a._units is not None and b_hr is b_lr:
            return BlockTensor.from_units(fn(a.units, b), a.layout)
        return BlockTensor(fn(a.highres, b_hr), fn(a.lowres, b_lr), a.layout, a.quartered)
    a_hr, a_lr = _per_block(a, b)
    if b._units is not None and a_hr is a_lr:
        return BlockTensor.from_units(fn(a, b.units), b.layout)
    return BlockTensor(fn(a_hr, b.highres), fn(a_lr, b.lowres), b.layout, b.quartered)


_UNARY_FUNCTIONS: dict[Callable, str] = {}
_UNARY_BY_NAME: dict[str, Callable] = {}
for _fn in (F.relu, F.relu_, torch.relu, torch.relu_, F.relu6, F.leaky_relu, F.elu, F.selu,
            F.gelu, F.silu, F.mish, F.hardswish, F.hardsigmoid, F.hardtanh, F.sigmoid,
            torch.sigmoid, torch.tanh, F.tanh, F.dropout, torch.clamp, torch.neg):
    _name = f"{getattr(_fn, '__module__', None) or 'torch'}.{_fn.__name__}"
    _UNARY_FUNCTIONS[_fn] = _name
    _UNARY_BY_NAME[_name] = _fn


def block_unary(fn_name: str, bt: BlockTensor, *args, **kwargs) -> BlockTensor:
    fn = _UNARY_BY_NAME[fn_name]
    return bt.map(lambda t: fn(t, *args, **kwargs))


def block_method(method: str, bt: BlockTensor, *args, **kwargs) -> BlockTensor:
    return bt.map(lambda t: getattr(t, method)(*args, **kwargs))


_ELEMENTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Identity,
    nn.Dropout, nn.Dropout2d, BatchNormReLU,
)
_GLOBAL_MODULES = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
_GLOBAL_FUNCTIONS = (F.adaptive_avg_pool2d, F.adaptive_max_pool2d, torch.flatten, adaptive_avg_pool2d)
_UNARY_METHODS = {"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "clamp", "clamp_",
                  "contiguous", "float", "half", "bfloat16", "neg"}
_BINARY_METHODS = {"add": "add", "add_": "iadd", "sub": "sub", "sub_": "isub", "mul": "mul",
                   "mul_": "imul", "div": "truediv", "div_": "itruediv"}
_BINARY_FUNCTIONS = {operator.add: "add", operator.iadd: "iadd", operator.sub: "sub",
                     operator.isub: "isub", operator.mul: "mul", operator.imul: "imul",
                     operator.truediv: "truediv", operator.itruediv: "itruediv",
                     torch.add: "add", torch.sub: "sub", torch.mul: "mul", torch.div: "truediv",
                     torch.maximum: "maximum", torch.minimum: "minimum"}
_MAC_MODULES = (nn.Conv2d, nn.Linear)


# ----------------------------------------------------------------------------------------
# tracing and static analysis
# ----------------------------------------------------------------------------------------


class _Tracer(fx.Tracer):
    def __init__(self, leaf_types: tuple[type, ...]):
        # the prepared networks' own functions stay calls (fused.adaptive_avg_pool2d)
        super().__init__(autowrap_functions=(adaptive_avg_pool2d, upsample_add))
        self.leaf_types = leaf_types

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, self.leaf_types) or super().is_leaf_module(m, qualname)


def _propagate(gm: fx.GraphModule, x_shape: Sequence[int]) -> dict[str, Any]:
    """Output value (fake tensors / host values) of every node for an input of x_shape."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.passes.fake_tensor_prop import FakeTensorProp

    mode = FakeTensorMode(allow_non_fake_inputs=True)
    param = next(gm.parameters(), None)
    dtype = param.dtype if param is not None else torch.float32
    device = param.device if param is not None else torch.device("cpu")
    with mode:
        x = torch.empty(tuple(x_shape), dtype=dtype, device=device)
    # eval mode: training-mode BatchNorm would count these shape-only passes as batches
    # (num_batches_tracked is incremented on the real buffer)
    training = {m: m.training for m in gm.modules()}
    gm.eval()
    try:
        FakeTensorProp(gm, mode).propagate_dont_convert_inputs(x)
    finally:
        for m, flag in training.items():
            m.training = flag
    return {n.name: n.meta.get("val") for n in gm.graph.nodes}


def _is_tensor(v) -> bool:
    return isinstance(v, Tensor)


def _node_description(gm: fx.GraphModule, node: fx.Node) -> str:
    if node.op == "call_module":
        return f"layer '{node.target}' ({type(gm.get_submodule(node.target)).__name__})"
    stack = node.meta.get("nn_module_stack") or {}
    where = f" in '{list(stack)[-1]}'" if stack else ""
    if node.op == "call_method":
        return f"tensor method .{node.target}(){where} (node {node.name})"
    name = getattr(node.target, "__name__", str(node.target))
    return f"function {name}{where} (node {node.name})"


@dataclass
class MacCount:
    """Multiply-accumulates per image (``[N]`` float64 tensors).

    Attributes:
        effective: the paper's count: each convolution/linear layer costs its dense MACs
            times the image's block mix, a low-res block costing 1/4 of a high-res one
            (halos and the padding to the block grid not counted).
        executed: what the executor launched: full blocks of the padded image, including
            blocks promoted to high-res and dense-executed global layers at padded size.
        dense: the dense network's count on the same (unpadded) input.
    """

    effective: Tensor
    executed: Tensor
    dense: Tensor

    def gmacs(self) -> dict[str, list[float]]:
        return {k: (getattr(self, k) / 1e9).tolist() for k in ("effective", "executed", "dense")}


class SegBlocks(nn.Module):
    """Run ``net`` with adaptive resolution in blocks.

    Args:
        net: a dense network taking one image batch ``[N, C, H, W]`` (in eval mode the
            all-high-res result equals ``net``'s). Parameters are shared, not copied.
        block_size: block side B in input pixels; must be a multiple of twice the
            network's total stride, so that low-res blocks stay whole pixels.
        global_modules: extra module types that need the dense map (combine before them).
        in_channels: channels of the network input (used to analyse the network); default
            ``net.input_channels`` if set (see :func:`segblocks_core.fastpath.prepare_network`),
            else 3.
        units: run below the input resolution on units (:func:`units_mode`): one kernel
            per operation for both resolutions. Same values; faster on a GPU.
        dense_when_all_highres: in eval mode, a layout without low-res blocks runs the dense
            network (on the input padded to whole blocks): with every block at high
            resolution, BlockPad reads each block's true neighbourhood, so the blocks compute
            the dense network's values; running it densely skips the block machinery (equal up
            to floating-point rounding; ``test_executor.py`` checks it). Off by default, so
            that an all-high-res grid exercises the blocks; the GPU fast path turns it on.

    Call ``segblocks(x, grid)`` with ``grid`` a bool ``[N, ceil(H/B), ceil(W/B)]`` (True =
    high-res), or ``layout=`` a prebuilt :class:`BlockLayout` (e.g. a fixed-capacity,
    sync-free one). ``grid=None`` runs the dense network.
    """

    def __init__(self, net: nn.Module, block_size: int = 128,
                 global_modules: Iterable[type] = (), in_channels: Optional[int] = None,
                 units: bool = False, dense_when_all_highres: bool = False):
        super().__init__()
        if not isinstance(net, nn.Module):
            raise TypeError(f"net must be an nn.Module, got {type(net).__name__}")
        if int(block_size) != block_size or block_size < 2 or block_size % 2:
            raise ValueError(f"block_size must be an even integer >= 2, got {block_size}")
        self.net = net
        self.block_size = int(block_size)
        if in_channels is None:
            in_channels = getattr(net, "input_channels", None) or 3
        self.in_channels = int(in_channels)
        self.units = bool(units)
        self.dense_when_all_highres = bool(dense_when_all_highres)
        self._global_types = tuple(_GLOBAL_MODULES) + tuple(global_modules)
        traced_graph = _Tracer(self._global_types + (FusedConv2d, BatchNormReLU, MaxPool2d)).trace(net)
        traced = fx.GraphModule(net, traced_graph)
        builder = _PlanBuilder(traced, self.block_size, self.in_channels, self._global_types)
        object.__setattr__(self, "_traced", traced)
        object.__setattr__(self, "_plan", builder.build())
        self.max_stride = builder.max_stride
        self._mac_nodes = builder.mac_nodes
        self._mac_cache: dict[tuple[int, ...], dict[str, float]] = {}
        self._labels_plans: Optional[tuple[fx.GraphModule, fx.GraphModule]] = None  # built on first use
        self._stem_split_reads_input = False  # set with the labels plans (_labels_graphs)

    @property
    def plan(self) -> fx.GraphModule:
        """The block execution plan (``print(sb.plan.code)`` shows it)."""
        return self._plan

    def grid_shape(self, x_shape: Sequence[int]) -> tuple[int, int, int]:
        n, _, h, w = x_shape
        b = self.block_size
        return n, -(-h // b), -(-w // b)

    def _check_input(self, x: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4:
            raise ValueError(f"x must have shape [N, C, H, W], got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"x must be a floating-point tensor (normalised image), got {x.dtype}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"x has {x.shape[1]} channels, the network expects {self.in_channels}")

    def make_layout(self, x: Tensor, grid: Tensor, num_highres: Optional[int] = None,
                    scores: Optional[Tensor] = None) -> BlockLayout:
        """Validate ``grid`` against ``x`` and build the frame's :class:`BlockLayout`."""
        expected = self.grid_shape(x.shape)
        if not isinstance(grid, Tensor):
            raise TypeError(f"grid must be a bool tensor, got {type(grid).__name__}")
        if grid.dtype != torch.bool:
            raise TypeError(f"grid must have dtype torch.bool, got {grid.dtype}")
        if tuple(grid.shape) != expected:
            raise ValueError(
                f"grid shape {tuple(grid.shape)} does not match the input: expected {expected} "
                f"for x of shape {tuple(x.shape)} and block size {self.block_size}"
            )
        if scores is not None:
            scores = scores.to(x.device)
        return BlockLayout.from_grid(grid.to(x.device), self.block_size, num_highres, scores)

    def _frame_layout(self, x: Tensor, grid: Optional[Tensor],
                      layout: Optional[BlockLayout]) -> BlockLayout:
        if layout is None:
            return self.make_layout(x, grid)
        if layout.grid_shape != self.grid_shape(x.shape) or layout.block_size != self.block_size:
            raise ValueError(
                f"layout grid {layout.grid_shape} (block size {layout.block_size}) does not match "
                f"x of shape {tuple(x.shape)} with block size {self.block_size}"
            )
        return layout

    def forward(self, x: Tensor, grid: Optional[Tensor] = None, *,
                layout: Optional[BlockLayout] = None):
        self._check_input(x)
        if grid is None and layout is None:
            return self.net(x)
        layout = self._frame_layout(x, grid, layout)
        h, w = x.shape[-2:]
        x, (hp, wp) = self._pad_to_grid(x, layout)
        if self._runs_dense(layout):
            out = self.net(x)
        else:
            with units_mode(self.units):
                out = self._plan(x, layout)
        if (hp, wp) != (h, w):
            out = _crop_outputs(out, h, w, hp, wp)
        return out

    def _pad_to_grid(self, x: Tensor, layout: BlockLayout) -> tuple[Tensor, tuple[int, int]]:
        """``x`` zero-padded bottom/right to whole blocks, and the padded size."""
        _, gh, gw = layout.grid_shape
        h, w = x.shape[-2:]
        hp, wp = gh * self.block_size, gw * self.block_size
        if (hp, wp) != (h, w):
            x = F.pad(x, (0, wp - w, 0, hp - h))
        return x, (hp, wp)

    def labels(self, x: Tensor, grid: Optional[Tensor] = None, *,
               layout: Optional[BlockLayout] = None) -> Tensor:
        """Class ids ``[N, H, W]`` (uint8) instead of logits: ``forward(...).argmax(1)``.

        If the network ends in an integer-factor bilinear upsampling of its logits (as
        SwiftNet does), upsampling and argmax run as one fused op
        (:func:`segblocks_core.ops.upsample_argmax`, or its dense twin for ``grid=None``)
        that never writes the full-resolution logits. Otherwise the logits are computed
        and reduced. Labels agree with ``forward(...).argmax(1)`` up to exact ties.
        """
        self._check_input(x)
        dense_plan, block_plan = self._labels_graphs()
        if grid is None and layout is None:
            return dense_plan(x)
        layout = self._frame_layout(x, grid, layout)
        h, w = x.shape[-2:]
        x, (hp, wp) = self._pad_to_grid(x, layout)
        if self._runs_dense(layout):
            out = dense_plan(x)
        else:
            with units_mode(self.units):
                out = block_plan(x, layout)
        return out[..., :h, :w] if (hp, wp) != (h, w) else out

    def labels_from_frames(self, images: Tensor, scale: Tensor, shift: Tensor, dtype: torch.dtype,
                           grid: Optional[Tensor] = None, *, layout: Optional[BlockLayout] = None) -> Tensor:
        """:meth:`labels` of ``ops.normalize_frames(images, scale, shift, self.in_channels,
        dtype)``, the uint8 RGB frames ``[N, H, W, 3]`` normalised.

        Where the block plan reads its input only through the stem's BlockPad-ed split (a
        network that starts with a zero-padded convolution at input resolution, as
        SwiftNet does), the frames go straight into the stem's tiles
        (:func:`segblocks_core.ops.split_padded_frames`) and the normalised map is never
        written. Otherwise (no grid or layout, a layout the dense network runs, frames that
        are not whole blocks) they are normalised first. The labels are the same either
        way: the stem's tiles are bitwise equal."""
        ops.check_frames(images)
        n, h, w, _ = images.shape
        # the plan's input: the normalised map's shape and dtype, one element of memory
        stand_in = torch.empty((), dtype=dtype, device=images.device).expand(n, self.in_channels, h, w)
        if grid is not None or layout is not None:
            layout = self._frame_layout(stand_in, grid, layout)
            _, gh, gw = layout.grid_shape
            if (_FRAMES_SPLIT.get() and (gh * self.block_size, gw * self.block_size) == (h, w)
                    and not self._runs_dense(layout) and self._input_read_by_stem_split()):
                token = _INPUT_FRAMES.set(_FramesInput(stand_in, images, scale, shift))
                try:
                    return self.labels(stand_in, layout=layout)
                finally:
                    _INPUT_FRAMES.reset(token)
        x = ops.normalize_frames(images, scale, shift, self.in_channels, dtype)
        return self.labels(x, layout=layout) if layout is not None else self.labels(x)

    def _labels_graphs(self) -> tuple[fx.GraphModule, fx.GraphModule]:
        """The dense and the block labels plans (built on first use), and with them whether
        the block plan reads its input only through the stem's split."""
        if self._labels_plans is None:
            self._labels_plans = (_labels_graph(self._traced, _fuse_dense_head),
                                  _labels_graph(self._plan, _fuse_block_head))
            x = next(n for n in self._labels_plans[1].graph.nodes if n.op == "placeholder")
            self._stem_split_reads_input = bool(x.users) and all(
                u.op == "call_function" and u.target is split_like and u.args[0] is x and len(u.args) > 3
                and u.args[2] == self.block_size and isinstance(u.args[3], int) and u.args[3] > 0 and not u.kwargs
                for u in x.users)
        return self._labels_plans

    def _input_read_by_stem_split(self) -> bool:
        """Every user of the block labels plan's input is the stem's BlockPad-ed split
        (:func:`split_like` with padding at the input resolution), which reads frames."""
        self._labels_graphs()
        return self._stem_split_reads_input

    def _runs_dense(self, layout: BlockLayout) -> bool:
        """``layout`` has no low-res block and the dense network may stand in (eval mode)."""
        return self.dense_when_all_highres and layout.num_lowres == 0 and not self.net.training

    # -- MAC counting --------------------------------------------------------------------

    def _node_macs(self, x_shape: tuple[int, ...]) -> dict[str, float]:
        """Dense MACs per image of each conv/linear node for an input of ``x_shape``."""
        key = tuple(x_shape)
        if key not in self._mac_cache:
            vals = _propagate(self._traced, (1,) + key[1:])
            macs = {}
            for name, module in self._mac_nodes.items():
                out = vals[name]
                if isinstance(module, nn.Conv2d):
                    k = module.kernel_size[0] * module.kernel_size[1]
                    macs[name] = out.numel() * k * module.in_channels // module.groups
                else:
                    macs[name] = out.numel() * module.in_features
            self._mac_cache[key] = macs
        return self._mac_cache[key]

    def count_macs(self, x_shape: Sequence[int], layout: Optional[BlockLayout] = None) -> MacCount:
        """MACs per image for an input of ``x_shape`` run with ``layout`` (None = dense).

        No host synchronisation: the per-image counts are device tensors.
        """
        n, c, h, w = x_shape
        dense_nodes = self._node_macs((1, c, h, w))
        dense_total = float(sum(dense_nodes.values()))
        device = layout.device if layout is not None else torch.device("cpu")
        dense = torch.full((n,), dense_total, dtype=torch.float64, device=device)
        if layout is None:
            return MacCount(dense.clone(), dense.clone(), dense)
        _, gh, gw = layout.grid_shape
        b = self.block_size
        padded_nodes = self._node_macs((1, c, gh * b, gw * b))
        hr = layout.grid.to(torch.float64)                                   # [N, GH, GW]
        # valid (unpadded) fraction of every block, at input resolution
        vh = (h - torch.arange(gh, device=device, dtype=torch.float64) * b).clamp(0, b) / b
        vw = (w - torch.arange(gw, device=device, dtype=torch.float64) * b).clamp(0, b) / b
        valid = vh[:, None] * vw[None, :]
        weight = hr + (1 - hr) / 4
        eff_ratio = (weight * valid).sum((1, 2)) / valid.sum()               # [N]
        exe_ratio = weight.sum((1, 2)) / (gh * gw)                          # [N]
        block_dense = sum(dense_nodes[k] for k in self._mac_nodes if self._mac_nodes_block[k])
        block_padded = sum(padded_nodes[k] for k in self._mac_nodes if self._mac_nodes_block[k])
        other_dense = dense_total - block_dense
        other_padded = sum(padded_nodes.values()) - block_padded
        effective = other_dense + block_dense * eff_ratio
        executed = other_padded + block_padded * exe_ratio
        return MacCount(effective, executed, dense)

    @property
    def _mac_nodes_block(self) -> dict[str, bool]:
        return self._plan.meta_block_nodes

    def extra_repr(self) -> str:
        return f"block_size={self.block_size}, max_stride={self.max_stride}"


def _crop_outputs(out, h: int, w: int, hp: int, wp: int):
    """Crop every spatial output of a padded input back to the input's extent."""
    if isinstance(out, Tensor):
        if out.dim() >= 3:
            oh, ow = out.shape[-2:]
            if oh and ow and hp % oh == 0 and wp % ow == 0 and hp // oh == wp // ow:
                s = hp // oh
                return out[..., : -(-h // s), : -(-w // s)]
        return out
    if isinstance(out, (list, tuple)):
        cropped = [_crop_outputs(o, h, w, hp, wp) for o in out]
        return type(out)(*cropped) if hasattr(out, "_fields") else type(out)(cropped)
    if isinstance(out, dict):
        return {k: _crop_outputs(v, h, w, hp, wp) for k, v in out.items()}
    return out


# ----------------------------------------------------------------------------------------
# plan construction
# ----------------------------------------------------------------------------------------


class _PlanBuilder:
    """Translate the traced dense graph into a block plan, node by node."""

    def __init__(self, traced: fx.GraphModule, block_size: int, in_channels: int,
                 global_types: tuple[type, ...]):
        self.src = traced
        self.b = block_size
        self.global_types = global_types
        # two input sizes: a node is grid-aligned if its size follows the input at one
        # constant stride in both
        self.samples = [(1, in_channels, 2 * block_size, 3 * block_size),
                        (1, in_channels, 4 * block_size, 5 * block_size)]
        self.vals = [_propagate(traced, s) for s in self.samples]
        self.g = fx.Graph()
        self.natural: dict[fx.Node, str] = {}
        self.block: dict[fx.Node, fx.Node] = {}
        self.dense: dict[fx.Node, fx.Node] = {}
        self.module_refs: dict[str, fx.Node] = {}
        self.x_new: Optional[fx.Node] = None
        self.layout_new: Optional[fx.Node] = None
        self.max_stride = 1
        self.mac_nodes: dict[str, nn.Module] = {}
        self.block_nodes: dict[str, bool] = {}

    # -- analysis helpers ----------------------------------------------------------------

    def val(self, node: fx.Node, i: int = 0):
        return self.vals[i][node.name]

    def stride(self, node: fx.Node) -> Optional[Fraction]:
        """Stride of a grid-aligned 4-D tensor node relative to the input, else None."""
        strides = set()
        for i, (_, _, h, w) in enumerate(self.samples):
            v = self.val(node, i)
            if not _is_tensor(v) or v.dim() != 4 or v.shape[2] == 0 or v.shape[3] == 0:
                return None
            sh, sw = Fraction(h, v.shape[2]), Fraction(w, v.shape[3])
            if sh != sw:
                return None
            strides.add(sh)
        return strides.pop() if len(strides) == 1 else None

    def side(self, node: fx.Node, what: str) -> int:
        """High-res block side at ``node``'s stride, checking low-res blocks stay whole."""
        s = self.stride(node)
        if s is None:
            raise UnsupportedLayerError(
                f"{what}: its input is not aligned with the image grid; cannot run in blocks"
            )
        hr = Fraction(self.b) / s
        if hr.denominator != 1 or hr.numerator % 2:
            raise ValueError(
                f"block_size {self.b} does not divide by twice the network's stride at {what} "
                f"(stride {s}): low-res blocks would be {hr / 2} px. Use a block size that is a "
                f"multiple of {2 * s.numerator} (e.g. {2 * s.numerator * max(1, round(self.b / (2 * s.numerator)))})"
            )
        self.max_stride = max(self.max_stride, math.ceil(s))
        return int(hr)

    def is_tensor(self, node) -> bool:
        return isinstance(node, fx.Node) and _is_tensor(self.val(node))

    # -- emitted-graph helpers -----------------------------------------------------------

    def module_ref(self, target: str) -> fx.Node:
        if target not in self.module_refs:
            self.module_refs[target] = self.g.get_attr(target)
        return self.module_refs[target]

    def as_dense(self, node: fx.Node) -> fx.Node:
        if node not in self.dense:
            self.dense[node] = self.g.call_function(combine_blocks, (self.block[node],))
        return self.dense[node]

    def as_block(self, node: fx.Node, what: str) -> fx.Node:
        if node not in self.block:
            side = self.side(node, what)
            self.block[node] = self.g.call_function(
                split_like, (self.dense[node], self.layout_new, side))
        return self.block[node]

    def host(self, node: fx.Node) -> fx.Node:
        return self.dense[node]

    def map_dense(self, arg):
        """Map an argument structure to dense/host values of the new graph."""
        return fx.node.map_arg(arg, lambda n: self.as_dense(n) if self.natural[n] == "block" else self.host(n))

    # -- translation ---------------------------------------------------------------------

    def build(self) -> fx.GraphModule:
        placeholders = [n for n in self.src.graph.nodes if n.op == "placeholder"]
        if not placeholders:
            raise ValueError("the network has no input")
        required = [n for n in placeholders[1:] if not n.args]
        if required:
            raise ValueError(
                f"SegBlocks runs networks with one image input; {[n.name for n in required]} "
                f"have no default"
            )
        self.x_src = placeholders[0]
        self.x_new = self.g.placeholder("x")
        self.layout_new = self.g.placeholder("layout")
        for node in self.src.graph.nodes:
            self.translate(node)
        self.fuse_conv_prologues()
        self.fuse_upsample_add()
        self.fuse_upsample_pad()
        self.merge_splits()
        self.split_padded()
        self.mark_padded_outputs()
        self.hand_off_conv_inputs()
        plan = fx.GraphModule(self.src, self.g, class_name="SegBlocksPlan")
        plan.graph.eliminate_dead_code()
        plan.graph.lint()
        plan.recompile()
        plan.meta_block_nodes = self.block_nodes
        return plan

    def fuse_conv_prologues(self) -> None:
        """``block_conv2d(block_module(x, BatchNormReLU))`` -> ``block_conv2d(x, pre=...)``
        where the BatchNormReLU's output feeds only the padded convolution: on units its
        scale, shift and ReLU are applied inside BlockPad, one pass over the map fewer."""
        for node in list(self.g.nodes):
            if node.op != "call_function" or node.target is not block_conv2d or "pre" in node.kwargs:
                continue
            src = node.args[0]
            if not (isinstance(src, fx.Node) and src.op == "call_function" and src.target is block_module
                    and len(src.users) == 1 and src.args[1].op == "get_attr"):
                continue
            module = self.src.get_submodule(src.args[1].target)
            conv = self.src.get_submodule(node.args[1].target)
            if not isinstance(module, BatchNormReLU) or max(_two(conv.padding)) == 0:
                continue
            node.args = (src.args[0],) + tuple(node.args[1:])
            node.kwargs = {**node.kwargs, "pre": src.args[1]}
            self.g.erase_node(src)

    def mark_padded_outputs(self) -> None:
        """``block_conv2d(x, conv)`` -> ``block_conv2d(x, conv, padded_out=p)`` where a
        convolution's output feeds a convolution zero-padded by ``p`` px as its input (without
        a BatchNorm prologue) and every other user is a convolution reading it as its
        residual or unpadded: the output may then be written as the padded tiles the first
        reads (:func:`_conv_into_tiles`), which the others see as a view of their interiors.
        The same for max pooling (``block_max_pool2d``, :func:`pooling_tiles`: ResNet's max
        pooling feeds layer 1's first block, as its input and its residual)."""
        for node in list(self.g.nodes):
            if (node.op != "call_function" or node.target not in (block_conv2d, block_max_pool2d)
                    or "padded_out" in node.kwargs):
                continue
            pads = set()
            for user in node.users:
                if user.op != "call_function" or user.target is not block_conv2d:
                    break
                if user.args[0] is node:
                    if user.kwargs.get("pre") is not None or any(a is node for a in user.args[2:]):
                        break
                    conv = self.src.get_submodule(user.args[1].target)
                    pad = _two(conv.padding)
                    if conv.padding_mode != "zeros" or pad[0] != pad[1]:
                        break
                    if pad[0] > 0:
                        pads.add(pad[0])
                elif not (len(user.args) > 2 and user.args[2] is node):
                    break
            else:
                if len(pads) == 1:
                    node.kwargs = {**node.kwargs, "padded_out": pads.pop()}

    def hand_off_conv_inputs(self) -> None:
        """``block_conv2d(x, ...)`` -> ``block_conv2d(handoff(x), ...)``: where the
        convolution is ``x``'s last user, fx frees ``x`` right after the handoff, and
        block_conv2d lets it go once padded (see :class:`Handoff`). Runs last: the fusion
        passes read the convolutions' inputs."""
        for node in list(self.g.nodes):
            if node.op != "call_function" or node.target is not block_conv2d:
                continue
            with self.g.inserting_before(node):
                box = self.g.call_function(handoff, (node.args[0],))
            node.args = (box,) + tuple(node.args[1:])

    def fuse_upsample_add(self) -> None:
        """``block_binary("add", block_interpolate(x, f, m), y)`` (either order) ->
        ``block_interpolate(x, f, m, add=y)`` where the upsampled map feeds only the add and
        ``y`` is a block value: SwiftNet's decoder ``upsample(x) + skip`` becomes one pass on
        units (:func:`segblocks_core.ops.upsample2x_units`), without the upsampled map."""
        block_values = set(self.block.values())
        order = {n: i for i, n in enumerate(self.g.nodes)}
        for node in list(self.g.nodes):
            if node.op != "call_function" or node.target is not block_binary or node.args[0] != "add":
                continue
            _, a, b = node.args
            for up, other in ((a, b), (b, a)):
                if (isinstance(up, fx.Node) and up.op == "call_function" and up.target is block_interpolate
                        and len(up.args) == 3 and not up.kwargs and len(up.users) == 1
                        and other in block_values):
                    if order[other] > order[up]:
                        other.append(up)  # `up` now reads `other`: move it after (its inputs stay before)
                        order[up] = order[other]
                    up.kwargs = {"add": other}
                    node.replace_all_uses_with(up)
                    self.g.erase_node(node)
                    break

    def fuse_upsample_pad(self) -> None:
        """``block_conv2d(block_interpolate(x, ...), conv, pre=bn)`` ->
        ``block_conv2d(block_interpolate(x, ..., post=bn, padding=p), conv)`` where the
        upsampled map feeds only that zero-padded convolution: SwiftNet's blends. On units
        the upsampling then writes the convolution's padded tiles itself (their interiors
        with the BatchNorm + ReLU applied, then the frames), in place of BlockPad's copy of
        the whole map. Runs after :meth:`fuse_conv_prologues` and :meth:`fuse_upsample_add`."""
        for node in list(self.g.nodes):
            if (node.op != "call_function" or node.target is not block_conv2d
                    or node.kwargs.get("pre") is None):
                continue
            up = node.args[0]
            if not (isinstance(up, fx.Node) and up.op == "call_function" and up.target is block_interpolate
                    and len(up.users) == 1 and "post" not in up.kwargs):
                continue
            conv = self.src.get_submodule(node.args[1].target)
            if conv.padding_mode != "zeros":
                continue
            pre = node.kwargs["pre"]
            up.prepend(pre)  # a get_attr (no inputs): defined before the upsampling now reads it
            up.kwargs = {**up.kwargs, "post": pre, "padding": max(_two(conv.padding))}
            node.kwargs = {k: v for k, v in node.kwargs.items() if k != "pre"}

    def split_padded(self) -> None:
        """``block_conv2d(split_like(x), conv)`` -> ``block_conv2d(split_like(x, padding=p),
        conv)`` where the split's only user is that zero-padded convolution (the stem): the
        split writes the BlockPad-ed blocks the convolution reads, one pass over the image
        instead of two."""
        for node in list(self.g.nodes):
            if node.op != "call_function" or node.target is not block_conv2d or node.kwargs.get("pre") is not None:
                continue
            src = node.args[0]
            if not (isinstance(src, fx.Node) and src.op == "call_function" and src.target is split_like
                    and len(src.users) == 1 and len(src.args) == 3):
                continue
            conv = self.src.get_submodule(node.args[1].target)
            if conv.padding_mode == "zeros" and max(_two(conv.padding)) > 0:
                src.args = src.args + (max(_two(conv.padding)),)

    def merge_splits(self) -> None:
        """``block_cat([..., split_like(a), split_like(b), ...])`` ->
        ``block_cat([..., split_like(torch.cat([a, b], 1)), ...])`` where consecutive parts
        are dense maps split only for this concatenation (SwiftNet's pyramid pooling levels):
        one split of their concatenation instead of one each. The same values (a split
        copies or averages each channel on its own); at batch 1 these small splits cost
        their launches."""
        def mergeable(part) -> bool:
            return (isinstance(part, fx.Node) and part.op == "call_function" and part.target is split_like
                    and len(part.users) == 1)

        for node in list(self.g.nodes):
            if node.op != "call_function" or node.target is not block_cat:
                continue
            parts, merged, dropped = list(node.args[0]), [], []
            i = 0
            while i < len(parts):
                run = [parts[i]]
                while (mergeable(parts[i]) and i + len(run) < len(parts) and mergeable(parts[i + len(run)])
                       and parts[i + len(run)].args[1:] == parts[i].args[1:]):
                    run.append(parts[i + len(run)])
                if len(run) > 1:
                    with self.g.inserting_before(node):
                        dense = self.g.call_function(torch.cat, ([p.args[0] for p in run], 1))
                        merged.append(self.g.call_function(split_like, (dense,) + tuple(run[0].args[1:])))
                    dropped.extend(run)
                else:
                    merged.append(parts[i])
                i += len(run)
            if dropped:
                node.args = (merged,) + tuple(node.args[1:])
                for part in dropped:
                    self.g.erase_node(part)

    def translate(self, node: fx.Node) -> None:
        if node.op == "placeholder":
            if node is self.x_src:
                self.dense[node] = self.x_new
                self.natural[node] = "block"
            else:
                self.dense[node] = node.args[0] if node.args else None
                self.natural[node] = "host"
            return
        if node.op == "output":
            self.g.output(self.map_dense(node.args[0]))
            return
        if node.op == "get_attr":
            self.dense[node] = self.g.get_attr(node.target)
            self.natural[node] = "dense"
            return

        if node.op == "call_module" and isinstance(self.src.get_submodule(node.target), _MAC_MODULES):
            self.mac_nodes[node.name] = self.src.get_submodule(node.target)
        inputs = [n for n in node.all_input_nodes if self.natural.get(n) == "block"]
        if not inputs:
            self.emit_dense(node)
            return
        if node.op == "call_module" and node.name in self.mac_nodes:
            self.block_nodes[node.name] = True
        self.emit_block(node)

    def emit_dense(self, node: fx.Node) -> None:
        args, kwargs = self.map_dense(node.args), self.map_dense(node.kwargs)
        new = self.g.create_node(node.op, node.target, args, kwargs, name=node.name)
        self.dense[node] = new
        self.natural[node] = "dense" if self.is_tensor(node) else "host"
        if node.name in self.mac_nodes:
            self.block_nodes[node.name] = False

    def set_block(self, node: fx.Node, new: fx.Node) -> None:
        self.block[node] = new
        self.natural[node] = "block"

    def emit_block(self, node: fx.Node) -> None:
        what = _node_description(self.src, node)
        if node.op == "call_module":
            self.emit_block_module(node, self.src.get_submodule(node.target), what)
        elif node.op == "call_function":
            self.emit_block_function(node, what)
        elif node.op == "call_method":
            self.emit_block_method(node, what)
        else:  # pragma: no cover - fx has no other node kinds
            raise UnsupportedLayerError(f"{what} cannot run on blocks")

    def unsupported(self, what: str, why: str = "") -> UnsupportedLayerError:
        return UnsupportedLayerError(
            f"SegBlocks cannot run {what} on block tensors{': ' + why if why else ''}. "
            f"Supported in blocks: Conv2d, BatchNorm2d, pooling, activations, +-*/, "
            f"torch.cat(dim=1), integer-factor bilinear/nearest upsampling; list modules that "
            f"need the whole map in SegBlocks(..., global_modules=(...))."
        )

    def check_aligned(self, node: fx.Node, src: fx.Node, factor: Fraction, what: str) -> None:
        s_in, s_out = self.stride(src), self.stride(node)
        if s_in is None or s_out is None or s_out != s_in * factor:
            raise self.unsupported(what, "its output does not stay on the block grid")

    def emit_block_module(self, node: fx.Node, module: nn.Module, what: str) -> None:
        src = node.args[0]
        if isinstance(module, self.global_types):
            self.emit_dense(node)
            return
        fused_residual = isinstance(module, FusedConv2d) and module.residual
        inputs = len(node.args) if fused_residual else len(node.all_input_nodes)
        if inputs != 1 + fused_residual or node.kwargs:
            raise self.unsupported(what, "more than one input")
        ref = self.module_ref(node.target)
        x = self.as_block(src, what)
        if isinstance(module, nn.Conv2d):
            if module.padding_mode != "zeros" or isinstance(module.padding, str) and module.padding != "same":
                raise self.unsupported(what, f"padding_mode={module.padding_mode!r} / padding={module.padding!r}")
            self.check_aligned(node, src, Fraction(module.stride[0]), what)
            if module.stride[0] != module.stride[1]:
                raise self.unsupported(what, "different vertical and horizontal strides")
            if isinstance(module.padding, str):
                raise self.unsupported(what, "padding='same' (give the padding as numbers)")
            self.side(node, what)
            args = (x, ref)
            if fused_residual:
                residual = self.block_operand(node.args[1], node, what)
                if not (isinstance(node.args[1], fx.Node) and self.natural[node.args[1]] != "host"
                        and self.val(node.args[1]).shape == self.val(node).shape):
                    raise self.unsupported(what, "the residual must have the convolution's output shape")
                args = (x, ref, residual)
            self.set_block(node, self.g.call_function(block_conv2d, args))
        elif isinstance(module, nn.BatchNorm2d):
            self.set_block(node, self.g.call_function(block_batch_norm, (x, ref)))
        elif isinstance(module, _ELEMENTWISE_MODULES):
            self.set_block(node, self.g.call_function(block_module, (x, ref)))
        elif isinstance(module, nn.MaxPool2d):
            if module.ceil_mode or module.dilation not in (1, (1, 1)) or module.return_indices:
                raise self.unsupported(what, "ceil_mode, dilation or return_indices")
            k, s, p = module.kernel_size, module.stride, module.padding
            self.check_aligned(node, src, Fraction(_two(s)[0]), what)
            self.side(node, what)
            self.set_block(node, self.g.call_function(block_max_pool2d, (x, k, s, p)))
        elif isinstance(module, nn.AvgPool2d):
            if module.ceil_mode or (not module.count_include_pad and module.padding not in (0, (0, 0))):
                raise self.unsupported(what, "ceil_mode or count_include_pad=False")
            k, s, p = module.kernel_size, module.stride, module.padding
            self.check_aligned(node, src, Fraction(_two(s)[0]), what)
            self.side(node, what)
            self.set_block(node, self.g.call_function(
                block_avg_pool2d, (x, k, s, p, module.divisor_override)))
        elif isinstance(module, nn.Upsample):
            self.emit_interpolate(node, src, x, module.mode, module.align_corners, what)
        else:
            raise self.unsupported(what)

    def emit_interpolate(self, node, src, x, mode, align_corners, what, add=None) -> None:
        s_in, s_out = self.stride(src), self.stride(node)
        if s_in is None or s_out is None:
            raise self.unsupported(what, "its output does not stay on the block grid")
        factor = s_in / s_out
        if factor.denominator != 1 or factor < 1:
            raise self.unsupported(what, f"scale factor {factor} (only integer upsampling)")
        if mode not in ("bilinear", "nearest") or (mode == "bilinear" and align_corners):
            raise self.unsupported(what, f"mode={mode!r}, align_corners={align_corners}")
        self.side(node, what)
        kwargs = {} if add is None else {"add": add}
        self.set_block(node, self.g.call_function(block_interpolate, (x, int(factor), mode), kwargs))

    def block_operand(self, operand, like: fx.Node, what: str):
        """An operand of a binary op whose other side is a block value."""
        if not isinstance(operand, fx.Node):
            return operand
        if self.natural[operand] == "block":
            if self.stride(operand) != self.stride(like):
                raise self.unsupported(what, "operands at different strides")
            return self.block[operand]
        if not self.is_tensor(operand):
            return self.host(operand)
        v, ref = self.val(operand), self.val(like)
        if v.dim() == 4 and v.shape[2:] == ref.shape[2:] and v.shape[2:] != (1, 1):
            if self.stride(operand) != self.stride(like):
                raise self.unsupported(what, "dense operand not aligned with the block grid")
            return self.as_block(operand, what)
        if v.dim() <= 4 and all(d == 1 for d in v.shape[-2:]):
            return self.dense[operand]  # broadcast (per image where it has a batch dim)
        raise self.unsupported(what, f"operand of shape {tuple(v.shape)} does not broadcast over blocks")

    def emit_binary(self, node: fx.Node, op: str, a, b, what: str) -> None:
        like = a if isinstance(a, fx.Node) and self.natural.get(a) == "block" else b
        args = (op, self.block_operand(a, like, what), self.block_operand(b, like, what))
        self.set_block(node, self.g.call_function(block_binary, args))

    def emit_block_function(self, node: fx.Node, what: str) -> None:
        fn = node.target
        if fn in _GLOBAL_FUNCTIONS:
            self.emit_dense(node)
        elif fn in _BINARY_FUNCTIONS and len(node.args) == 2 and not node.kwargs:
            self.emit_binary(node, _BINARY_FUNCTIONS[fn], node.args[0], node.args[1], what)
        elif fn in _UNARY_FUNCTIONS:
            src = node.args[0]
            if len(node.all_input_nodes) != 1:
                raise self.unsupported(what, "tensor arguments besides the input")
            args = (_UNARY_FUNCTIONS[fn], self.as_block(src, what)) + tuple(node.args[1:])
            self.set_block(node, self.g.call_function(block_unary, args, dict(node.kwargs)))
        elif fn in (torch.cat, torch.concat):
            tensors = node.args[0]
            dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
            if dim not in (1, -3):
                raise self.unsupported(what, f"concatenation along dim {dim} (only channels)")
            like = next(t for t in tensors if self.natural.get(t) == "block")
            parts = [self.block_operand(t, like, what) for t in tensors]
            self.set_block(node, self.g.call_function(block_cat, (parts,)))
        elif fn is upsample_add:  # fused.upsample_add(x, size, skip): interpolate, then add
            src, _, skip = node.args
            add = self.block_operand(skip, node, what)
            self.emit_interpolate(node, src, self.as_block(src, what), "bilinear", False, what, add=add)
        elif fn is F.interpolate:
            mode = node.kwargs.get("mode", node.args[3] if len(node.args) > 3 else "nearest")
            align = node.kwargs.get("align_corners", node.args[4] if len(node.args) > 4 else None)
            src = node.args[0] if node.args else node.kwargs["input"]
            self.emit_interpolate(node, src, self.as_block(src, what), mode, align, what)
        elif fn is getattr and node.args[1] in ("shape", "dtype", "device"):
            src = node.args[0]
            if src in self.dense:  # a dense version exists (the input image): ask it
                self.dense[node] = self.g.call_function(getattr, (self.dense[src], node.args[1]))
            elif node.args[1] == "shape":
                self.dense[node] = self.g.call_function(dense_shape, (self.block[src],))
            else:
                self.dense[node] = self.g.call_function(getattr, (self.block[src], node.args[1]))
            self.natural[node] = "host"
        else:
            raise self.unsupported(what)

    def emit_block_method(self, node: fx.Node, what: str) -> None:
        method, src = node.target, node.args[0]
        if method in ("size", "dim"):
            if method == "dim":
                self.dense[node] = 4
            elif src in self.dense:
                self.emit_dense(node)
                return
            else:
                self.dense[node] = self.g.call_function(
                    dense_size, (self.block[src],) + tuple(self.map_dense(node.args[1:])))
            self.natural[node] = "host"
        elif method in _BINARY_METHODS and len(node.args) == 2 and not node.kwargs:
            self.emit_binary(node, _BINARY_METHODS[method], node.args[0], node.args[1], what)
        elif method in _UNARY_METHODS and len(node.all_input_nodes) == 1:
            args = (method, self.as_block(src, what)) + tuple(node.args[1:])
            self.set_block(node, self.g.call_function(block_method, args, dict(node.kwargs)))
        elif method in ("flatten", "mean", "view", "reshape", "amax", "sum"):
            raise self.unsupported(what, "a whole-map reduction or reshape; make it a global "
                                   "module or pool first")
        else:
            raise self.unsupported(what)
