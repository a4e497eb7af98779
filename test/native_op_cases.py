"""Parity cases for the native block ops: native kernels vs the pure-PyTorch reference.

Plain Python (no pytest) so that ``test/test_native_ops.py`` parametrises over these cases
and ``benchmarks/gpu_parity.py`` runs the very same ones on a GPU host that may lack pytest.
Every ``check_*`` function raises ``AssertionError`` (from ``torch.testing.assert_close``) on
a mismatch and returns nothing otherwise.

Tolerances: forward outputs are compared with the reference computed in the same dtype
(``assert_close``'s defaults for that dtype; both sides round each value once). Gradients
are compared with the reference's gradients computed in float64 from the same values and
rounded to the dtype: the native kernels accumulate in float (double for float64) and
round once, so they must agree with the exact result to the dtype's default tolerance.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import pytest
import torch
from torch import Tensor

from segblocks_core.engine import _norm_constants
from segblocks_core.layout import BlockLayout
from segblocks_core.ops import _reference


HAS_GPU = torch.cuda.is_available()
# the device parameter of the native-op tests: cuda skipped without a GPU
DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=pytest.mark.skipif(not HAS_GPU, reason="no CUDA GPU")),
]

CHANNELS = 5  # odd and not a power of two: exercises the channel index arithmetic
PACKED_CHANNELS = 16  # a multiple of every 16-byte pack: the packed channels_last BlockPad path
HALFPACK_CHANNELS = 4  # 8 bytes of a 16-bit type: the half-pack path (the 4-channel network input)

DTYPES = {
    "f32": torch.float32,
    "f16": torch.float16,
    "bf16": torch.bfloat16,
    "f64": torch.float64,
}
LAYOUTS = ("contiguous", "channels_last", "strided_view")
# BlockPad, max pooling and upsample2x also run "channels_last_packed": channels_last with
# PACKED_CHANNELS channels, which the CUDA kernels process in 16-byte packs of channels (the
# GPU fast path's case) and "channels_last_halfpack": HALFPACK_CHANNELS channels, 8-byte packs for 16-bit dtypes
BLOCK_PAD_LAYOUTS = LAYOUTS + ("channels_last_packed", "channels_last_halfpack")
CHANNELS_LAST_LAYOUTS = ("channels_last", "channels_last_packed", "channels_last_halfpack")
PADS = (  # (padding, mode, value)
    (1, "constant", 0.0),
    (1, "replicate", 0.0),
    (1, "constant", -math.inf),
    (3, "constant", 0.0),
    (3, "replicate", 0.0),
    (3, "constant", -math.inf),
)


@dataclass(frozen=True)
class Geometry:
    """A block layout to test: ``n`` images of ``grid_h x grid_w`` blocks of ``hr_side`` px."""

    name: str
    n: int
    grid_h: int
    grid_w: int
    hr_side: int
    kind: str  # "mixed", "all_hr" or "all_lr"
    seed: int = 0

    def grid(self, device) -> Tensor:
        shape = (self.n, self.grid_h, self.grid_w)
        if self.kind == "all_hr":
            return torch.ones(shape, dtype=torch.bool, device=device)
        if self.kind == "all_lr":
            return torch.zeros(shape, dtype=torch.bool, device=device)
        gen = torch.Generator().manual_seed(self.seed)
        grid = torch.rand(shape, generator=gen) > 0.5
        grid.view(-1)[0], grid.view(-1)[-1] = True, False  # both resolutions present
        return grid.to(device)

    def layout(self, device) -> BlockLayout:
        return BlockLayout.from_grid(self.grid(device), self.hr_side)


GEOMETRIES = (
    Geometry("mixed_batch2", 2, 3, 4, 4, "mixed", seed=1),
    Geometry("all_hr", 1, 2, 3, 4, "all_hr"),
    Geometry("all_lr_batch2", 2, 2, 2, 4, "all_lr"),
    Geometry("tiny_2px_batch2", 2, 3, 3, 2, "mixed", seed=2),  # low-res blocks of 1 px
    Geometry("single_row_2px", 1, 1, 5, 2, "mixed", seed=3),  # top and bottom border at once
    Geometry("side6", 1, 2, 3, 6, "mixed", seed=4),  # sides that are not powers of two
)
# units of 8 px (SwiftNet's last decoder upsampling at 2048x1024): the ops whose CUDA kernels
# read a window from one base where it lies inside its unit (max pooling's 3x3 s2 p1 windows
# past the first row and column, upsample2x's 2x2 output quads past the outer ring) run it too
SIDE16 = Geometry("side16", 1, 2, 3, 16, "mixed", seed=5)
WINDOW_GEOMETRIES = GEOMETRIES + (SIDE16,)
GEOMETRY_BY_NAME = {g.name: g for g in WINDOW_GEOMETRIES}


def make_tensor(shape, dtype: torch.dtype, device, layout: str, seed: int) -> Tensor:
    """Random tensor of ``shape`` in ``layout``: NCHW, channels_last, or a cropped view."""
    gen = torch.Generator().manual_seed(seed)
    if layout == "strided_view":  # a crop of a larger tensor: nothing is contiguous
        n, c, h, w = shape
        big = torch.randn((n, c + 1, h + 2, w + 3), generator=gen, dtype=torch.float64)
        return big[:, 1:, 1:h + 1, 2:w + 2].to(dtype=dtype).to(device)
    t = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)
    if layout in CHANNELS_LAST_LAYOUTS:
        t = t.contiguous(memory_format=torch.channels_last)
    return t


def channels_of(layout: str) -> int:
    return {"channels_last_packed": PACKED_CHANNELS,
            "channels_last_halfpack": HALFPACK_CHANNELS}.get(layout, CHANNELS)


def block_inputs(geometry: Geometry, dtype, device, layout: str, seed: int = 0):
    lay = geometry.layout(device)
    h = geometry.hr_side
    c = channels_of(layout)
    highres = make_tensor((lay.num_highres, c, h, h), dtype, device, layout, seed)
    lowres = make_tensor((lay.num_lowres, c, h // 2, h // 2), dtype, device, layout, seed + 1)
    return lay, highres, lowres


def dense_input(geometry: Geometry, dtype, device, layout: str, seed: int = 0):
    lay = geometry.layout(device)
    h = geometry.hr_side
    x = make_tensor((geometry.n, channels_of(layout), geometry.grid_h * h, geometry.grid_w * h), dtype,
                    device, layout, seed)
    return lay, x


def _check_layout(outputs, layout: str) -> None:
    """channels_last inputs give channels_last outputs (the GPU fast path keeps its layout)."""
    if layout not in CHANNELS_LAST_LAYOUTS:
        return
    for out in outputs:
        assert out.is_contiguous(memory_format=torch.channels_last), (
            f"output of shape {tuple(out.shape)} with strides {out.stride()} is not channels_last")


# ----------------------------------------------------------------------------------------
# forward parity
# ----------------------------------------------------------------------------------------


def check_split(device, dtype, layout: str, geometry: Geometry) -> None:
    lay, x = dense_input(geometry, dtype, device, layout)
    got = torch.ops.segblocks.split(x, lay.hr_pos, lay.lr_pos, geometry.hr_side)
    want = _reference.split(x, lay.hr_pos, lay.lr_pos, geometry.hr_side)
    torch.testing.assert_close(got, want)
    _check_layout(got, layout)


SPLIT_PADDINGS = (1, 3)  # 3: the stem's 7x7 convolution, and halos reaching past 1-px low-res blocks


def check_split_padded(device, dtype, layout: str, geometry: Geometry) -> None:
    """The padded blocks straight from the map: bitwise BlockPad (zero border) of split's
    blocks, the native ops on the same device and the reference."""
    lay, x = dense_input(geometry, dtype, device, layout)
    b = geometry.hr_side
    for padding in SPLIT_PADDINGS:
        got = torch.ops.segblocks.split_padded(x, lay.hr_pos, lay.lr_pos, lay.block_map, b, padding)
        want = _reference.split_padded(x, lay.hr_pos, lay.lr_pos, lay.block_map, b, padding)
        torch.testing.assert_close(got, want, rtol=0, atol=0)  # copies and split's 2x2 means
        blocks = torch.ops.segblocks.split(x, lay.hr_pos, lay.lr_pos, b)
        padded = torch.ops.segblocks.block_pad(*blocks, lay.hr_pos, lay.lr_pos, lay.block_map, padding, "constant",
                                               0.0)
        torch.testing.assert_close(got, padded, rtol=0, atol=0)
        _check_layout(got, layout)


def check_split_padded_frames(device, dtype, layout: str, geometry: Geometry) -> None:
    """The stem's padded blocks straight from uint8 frames: bitwise normalize_frames +
    split_padded (the reference's, and the native ops' in turn), 3 and 4 channels (the
    GPU input's zero channel), channels_last. ``layout`` is not used (the frames are uint8
    [N, H, W, 3])."""
    lay = geometry.layout(device)
    b = geometry.hr_side
    images = _frames(geometry, device)
    scale, shift = _norm_constants(torch.device(device))
    for channels, padding in ((3, 1), (4, 3)):
        args = (images, scale, shift, lay.hr_pos, lay.lr_pos, lay.block_map, b, padding, channels, dtype)
        got = torch.ops.segblocks.split_padded_frames(*args)
        torch.testing.assert_close(got, _reference.split_padded_frames(*args), rtol=0, atol=0)
        x = torch.empty((geometry.n, channels, images.shape[1], images.shape[2]), dtype=dtype, device=device,
                        memory_format=torch.channels_last)
        torch.ops.segblocks.normalize_frames_(x, images, scale, shift)
        want = torch.ops.segblocks.split_padded(x, lay.hr_pos, lay.lr_pos, lay.block_map, b, padding)
        torch.testing.assert_close(got, want, rtol=0, atol=0)
        _check_layout(got, "channels_last")


def check_combine(device, dtype, layout: str, geometry: Geometry) -> None:
    lay, highres, lowres = block_inputs(geometry, dtype, device, layout)
    args = (lay.hr_pos, lay.lr_pos, *lay.grid_shape)
    got = torch.ops.segblocks.combine(highres, lowres, *args)
    want = _reference.combine(highres, lowres, *args)
    torch.testing.assert_close(got, want)
    _check_layout([got], layout)


def check_split_units(device, dtype, layout: str, geometry: Geometry) -> None:
    """split's blocks as units in one pass: bitwise the reference's split + quarter + cat."""
    lay, x = dense_input(geometry, dtype, device, layout)
    b = geometry.hr_side
    got = torch.ops.segblocks.split_units(x, lay.hr_pos, lay.lr_pos, b)
    want = _reference.split_units(x, lay.hr_pos, lay.lr_pos, b)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    _check_layout([got], layout)


def check_combine_units(device, dtype, layout: str, geometry: Geometry) -> None:
    """combine reading the high-res blocks as units: bitwise the reference's unquarter +
    combine (copies only)."""
    lay, highres, lowres = unit_inputs(geometry, dtype, device, layout)
    args = (lay.hr_pos, lay.lr_pos, *lay.grid_shape)
    got = torch.ops.segblocks.combine_units(highres, lowres, *args)
    want = _reference.combine_units(highres, lowres, *args)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    # 1-px units are both NCHW and channels_last contiguous: the output then defaults to NCHW
    if not (highres.is_contiguous() and lowres.is_contiguous()):
        _check_layout([got], layout)


def check_block_pad(device, dtype, layout: str, geometry: Geometry, padding: int, mode: str,
                    value: float) -> None:
    lay, highres, lowres = block_inputs(geometry, dtype, device, layout)
    args = (lay.hr_pos, lay.lr_pos, lay.block_map, padding, mode, value)
    got = torch.ops.segblocks.block_pad(highres, lowres, *args)
    want = _reference.block_pad(highres, lowres, *args)
    torch.testing.assert_close(got, want)
    _check_layout(got, layout)


def unit_inputs(geometry: Geometry, dtype, device, layout: str, seed: int = 0):
    """Like :func:`block_inputs`, with the high-res blocks given as units
    ``[4*Nh, C, h/2, h/2]`` (a quartered BlockTensor's storage)."""
    lay = geometry.layout(device)
    u = geometry.hr_side // 2
    c = channels_of(layout)
    highres = make_tensor((4 * lay.num_highres, c, u, u), dtype, device, layout, seed)
    lowres = make_tensor((lay.num_lowres, c, u, u), dtype, device, layout, seed + 1)
    return lay, highres, lowres


def prologue(channels: int, dtype, device, seed: int = 9) -> tuple[Tensor, Tensor]:
    """Per-channel (scale, shift) of a BatchNorm + ReLU prologue; about half of the values
    it sees end up clamped to 0."""
    gen = torch.Generator().manual_seed(seed)
    scale = torch.rand(channels, generator=gen, dtype=torch.float64) * 2 - 0.5
    shift = torch.randn(channels, generator=gen, dtype=torch.float64) * 0.5
    return scale.to(dtype=dtype, device=device), shift.to(dtype=dtype, device=device)


def _check_block_pad_units(quartered: bool, device, dtype, layout: str, geometry: Geometry,
                           padding: int, mode: str, value: float, pre: bool = False) -> None:
    inputs = unit_inputs if quartered else block_inputs
    lay, highres, lowres = inputs(geometry, dtype, device, layout)
    args = (lay.hr_pos, lay.lr_pos, lay.block_map, padding, mode, value, quartered)
    if pre:
        args = args + prologue(highres.shape[1], dtype, device)
    got = torch.ops.segblocks.block_pad_units(highres, lowres, *args)
    want = _reference.block_pad_units(highres, lowres, *args)
    u = geometry.hr_side // 2 + 2 * padding
    assert got.shape == (4 * lay.num_highres + lay.num_lowres, highres.shape[1], u, u), got.shape
    if pre:  # relu(x * scale + shift) first: one rounding, FMA contraction may differ by an ulp
        torch.testing.assert_close(got, want)
    else:  # pure copies and 2x2 means in the reference's summation order: bitwise equal
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    # 1-px units are both NCHW and channels_last contiguous: outputs then default to NCHW
    if not (highres.is_contiguous() and lowres.is_contiguous()):
        _check_layout([got], layout)


def check_block_pad_units(device, dtype, layout: str, geometry: Geometry, padding: int, mode: str,
                          value: float) -> None:
    _check_block_pad_units(False, device, dtype, layout, geometry, padding, mode, value)


def check_block_pad_units_quartered(device, dtype, layout: str, geometry: Geometry, padding: int,
                                    mode: str, value: float) -> None:
    _check_block_pad_units(True, device, dtype, layout, geometry, padding, mode, value)


def check_block_pad_units_prologue(device, dtype, layout: str, geometry: Geometry, padding: int,
                                   mode: str, value: float) -> None:
    _check_block_pad_units(True, device, dtype, layout, geometry, padding, mode, value, pre=True)


POOLS = ((3, 2, 1), (3, 1, 1), (2, 2, 0), (5, 1, 2))  # (kernel, stride, padding); SwiftNet's stem: 3, 2, 1


def check_max_pool_units(device, dtype, layout: str, geometry: Geometry, quartered: bool = False) -> None:
    """Max pooling fused with BlockPad (-inf border) equals pooling the padded tiles."""
    inputs = unit_inputs if quartered else block_inputs
    lay, highres, lowres = inputs(geometry, dtype, device, layout)
    args = (lay.hr_pos, lay.lr_pos, lay.block_map)
    u = geometry.hr_side // 2
    for k, s, p in POOLS:
        if u + 2 * p < k:
            continue
        got = torch.ops.segblocks.max_pool_units(highres, lowres, *args, k, s, p, quartered)
        want = _reference.max_pool_units(highres, lowres, *args, k, s, p, quartered)
        torch.testing.assert_close(got, want, rtol=0, atol=0)  # a maximum of the same values
        if not (highres.is_contiguous() and lowres.is_contiguous()):
            _check_layout([got], layout)


def check_max_pool_units_quartered(device, dtype, layout: str, geometry: Geometry) -> None:
    check_max_pool_units(device, dtype, layout, geometry, quartered=True)


def check_max_pool_units_padded(device, dtype, layout: str, geometry: Geometry) -> None:
    """Max pooling writing a zero-padded convolution's tiles (``out_padding``): bitwise
    BlockPad's tiles of the op's own unpadded output, and the reference's; whole blocks and
    units in."""
    for quartered in (False, True):
        inputs = unit_inputs if quartered else block_inputs
        lay, highres, lowres = inputs(geometry, dtype, device, layout)
        args = (lay.hr_pos, lay.lr_pos, lay.block_map)
        u, nh = geometry.hr_side // 2, 4 * lay.num_highres
        for (k, s, p), q in itertools.product(POOLS, (1, 2)):
            if u + 2 * p < k or q > (u + 2 * p - k) // s + 1:
                continue
            got = torch.ops.segblocks.max_pool_units(highres, lowres, *args, k, s, p, quartered, q)
            plain = torch.ops.segblocks.max_pool_units(highres, lowres, *args, k, s, p, quartered)
            assert got.shape[-1] == plain.shape[-1] + 2 * q, (got.shape, plain.shape)
            framed = torch.ops.segblocks.block_pad_units(plain[:nh], plain[nh:], *args, q, "constant", 0.0, True)
            torch.testing.assert_close(got, framed, rtol=0, atol=0)
            want = _reference.max_pool_units(highres, lowres, *args, k, s, p, quartered, q)
            torch.testing.assert_close(got, want, rtol=0, atol=0)
            if not (highres.is_contiguous() and lowres.is_contiguous()):
                _check_layout([got], layout)


def check_max_pool_dense(device, dtype, layout: str, geometry: Geometry) -> None:
    _, x = dense_input(geometry, dtype, device, layout)
    x = x.clone()
    x[:, ::2, ::3, ::5] = float("nan")  # NaN wins, as in torch
    for k, s, p in POOLS:
        got = torch.ops.segblocks.max_pool_dense(x, k, s, p)
        torch.testing.assert_close(got, _reference.max_pool_dense(x, k, s, p), rtol=0, atol=0, equal_nan=True)
        _check_layout([got], layout)


def check_upsample2x_units(device, dtype, layout: str, geometry: Geometry, quartered: bool = False) -> None:
    """Bilinear x2 (+ skip) fused with BlockPad equals upsampling the padded tiles."""
    inputs = unit_inputs if quartered else block_inputs
    lay, highres, lowres = inputs(geometry, dtype, device, layout)
    args = (lay.hr_pos, lay.lr_pos, lay.block_map)
    h = geometry.hr_side
    skip = make_tensor((4 * lay.num_highres + lay.num_lowres, highres.shape[1], h, h), dtype, device, layout, 7)
    for sk in (None, skip):
        got = torch.ops.segblocks.upsample2x_units(highres, lowres, *args, quartered, sk)
        want = _reference.upsample2x_units(highres, lowres, *args, quartered, sk)
        # the same four taps and weights; the kernel may contract the blend into FMAs
        torch.testing.assert_close(got, want)
        if not (highres.is_contiguous() and lowres.is_contiguous()):
            _check_layout([got], layout)


def check_upsample2x_units_quartered(device, dtype, layout: str, geometry: Geometry) -> None:
    check_upsample2x_units(device, dtype, layout, geometry, quartered=True)


UPSAMPLE_PADDINGS = (1, 3)  # 1: the blend convolutions' (3x3); 3: frames reaching past 1-px tiles


def check_upsample2x_units_padded(device, dtype, layout: str, geometry: Geometry) -> None:
    """Bilinear x2 + skip + BatchNorm + ReLU epilogue writing a zero-padded convolution's
    tiles: the reference's block_pad_units of the result; the frames are bitwise what
    BlockPad writes from the op's own unpadded output (same device), the interiors bitwise
    that output."""
    lay, highres, lowres = unit_inputs(geometry, dtype, device, layout)
    args = (lay.hr_pos, lay.lr_pos, lay.block_map)
    h, c = geometry.hr_side, highres.shape[1]
    skip = make_tensor((4 * lay.num_highres + lay.num_lowres, c, h, h), dtype, device, layout, 7)
    post = prologue(c, dtype, device)
    for padding, with_post in itertools.product(UPSAMPLE_PADDINGS, (True, False)):
        scale, shift = post if with_post else (None, None)
        got = torch.ops.segblocks.upsample2x_units(highres, lowres, *args, True, skip, scale, shift, padding)
        want = _reference.upsample2x_units(highres, lowres, *args, True, skip, scale, shift, padding)
        assert got.shape == (4 * lay.num_highres + lay.num_lowres, c, h + 2 * padding, h + 2 * padding), got.shape
        torch.testing.assert_close(got, want)  # FMA contraction may differ by an ulp, as in BlockPad's prologue
        plain = torch.ops.segblocks.upsample2x_units(highres, lowres, *args, True, skip, scale, shift)
        nh = 4 * lay.num_highres
        framed = torch.ops.segblocks.block_pad_units(plain[:nh], plain[nh:], *args, padding, "constant", 0.0, True)
        torch.testing.assert_close(got, framed, rtol=0, atol=0)
        if not (highres.is_contiguous() and lowres.is_contiguous()):
            _check_layout([got], layout)


def check_upsample2x_dense(device, dtype, layout: str, geometry: Geometry) -> None:
    _, x = dense_input(geometry, dtype, device, layout)
    n, c, h, w = x.shape
    skip = make_tensor((n, c, 2 * h, 2 * w), dtype, device, layout, 8)
    for sk in (None, skip):
        got = torch.ops.segblocks.upsample2x_dense(x, sk)
        torch.testing.assert_close(got, _reference.upsample2x_dense(x, sk))
        _check_layout([got], layout)


# conv3x3_units: its CUDA kernel runs half/bfloat16 channels_last tensors with input channels
# a multiple of 16 and output channels of 64; 64 -> 128 gives four K chunks and two
# output-channel tiles. The small geometries give tiles of many units and partial last
# tiles.
# side16: units of 8 px, one per thread block of the CUDA kernel; side36: units of 18 px,
# 3 output rows per thread block at stride 1, 7 (then 2) at stride 2
CONV_UNITS_GEOMETRIES = WINDOW_GEOMETRIES + (Geometry("side36", 1, 1, 2, 36, "mixed", seed=6),)
CONV_UNITS_DTYPES = {"f16": torch.float16, "bf16": torch.bfloat16}
CONV_UNITS_EPILOGUES = {  # (bias, residual, relu, BatchNorm + ReLU prologue)
    "plain": (False, False, False, False),
    "bias_relu": (True, False, True, False),
    "bias_residual_relu": (True, True, True, False),
    "prologue_bias": (True, False, False, True),  # SwiftNet's decoder blend: BN, ReLU, conv
}


def conv_units_inputs(geometry: Geometry, dtype, device, quartered: bool, epilogue: str, cin: int = 64,
                      cout: int = 128, seed: int = 0, stride: int = 1):
    """``(layout, highres, lowres, weight, bias, residual)`` for :func:`check_conv3x3_units`;
    the weight is scaled so outputs are O(1), the residual is in units."""
    with_bias, with_residual = CONV_UNITS_EPILOGUES[epilogue][:2]
    lay = geometry.layout(device)
    h, u = geometry.hr_side, geometry.hr_side // 2
    hr_shape = (4 * lay.num_highres, cin, u, u) if quartered else (lay.num_highres, cin, h, h)
    highres = make_tensor(hr_shape, dtype, device, "channels_last", seed)
    lowres = make_tensor((lay.num_lowres, cin, u, u), dtype, device, "channels_last", seed + 1)
    weight = (make_tensor((cout, cin, 3, 3), torch.float64, device, "channels_last", seed + 2)
              / math.sqrt(9 * cin)).to(dtype)
    bias = make_tensor((1, cout, 1, 1), dtype, device, "contiguous", seed + 3).view(cout) if with_bias else None
    residual = None
    if with_residual:
        uo = (u - 1) // stride + 1
        residual = make_tensor((4 * lay.num_highres + lay.num_lowres, cout, uo, uo), dtype, device,
                               "channels_last", seed + 4)
    return lay, highres, lowres, weight, bias, residual


def conv_units_prologue(epilogue: str, channels: int, dtype, device) -> tuple:
    """``(pre_scale, pre_shift)`` of the case, or ``(None, None)``."""
    return prologue(channels, dtype, device) if CONV_UNITS_EPILOGUES[epilogue][3] else (None, None)


def check_conv3x3_units(device, dtype, geometry: Geometry, quartered: bool, epilogue: str, stride: int = 1,
                        splits: int = 0) -> None:
    """The native op against the reference (BlockPad, then a float32 convolution, rounded
    once): the kernel sums in float32 in another order, so the two may differ by one
    rounding of the dtype (assert_close's default tolerance for it)."""
    lay, highres, lowres, weight, bias, residual = conv_units_inputs(geometry, dtype, device, quartered, epilogue,
                                                                     stride=stride)
    relu = CONV_UNITS_EPILOGUES[epilogue][2]
    pre = conv_units_prologue(epilogue, highres.shape[1], dtype, device)
    args = (lay.hr_pos, lay.lr_pos, lay.block_map, weight, bias, residual, relu, quartered, stride, *pre)
    got = torch.ops.segblocks.conv3x3_units(highres, lowres, *args, splits)
    want = _reference.conv3x3_units(highres, lowres, *args)
    assert got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, want)


def conv_units_cases(device) -> Iterator[tuple[str, Callable[[], None]]]:
    """``(name, check)`` for every conv3x3_units case: dtype x geometry x blocks/units in x
    epilogue x stride (what test_native_ops parametrises, for benchmarks/gpu_parity.py)."""
    for (dname, dtype), geometry, quartered, epilogue, stride in itertools.product(
            CONV_UNITS_DTYPES.items(), CONV_UNITS_GEOMETRIES, (False, True), CONV_UNITS_EPILOGUES, (1, 2)):
        name = f"conv3x3_units-{dname}-{geometry.name}-{'units' if quartered else 'blocks'}-{epilogue}-s{stride}"
        yield name, (lambda d=dtype, g=geometry, q=quartered, e=epilogue, s=stride:
                     check_conv3x3_units(device, d, g, q, e, s))


def complexity_input(geometry: Geometry, dtype, device, layout: str) -> tuple[Tensor, int]:
    """A dense map with textured, flat and nearly flat (below the floor) cells, and the
    cell size that divides it (4, the policy's, where possible)."""
    _, x = dense_input(geometry, dtype, device, layout)
    x = x.clone()
    h, w = x.shape[-2:]
    factor = 4 if h % 4 == 0 and w % 4 == 0 else 2
    x[..., :factor, :] = 0.25                   # a flat row of cells
    x[..., -factor:, :factor] = -1.0            # nearly flat: deviations below the floor (fp32/64)
    x[..., -factor:, 0] = -1.0 + 5e-5
    return x, factor


def check_cell_complexity(device, dtype, layout: str, geometry: Geometry) -> None:
    x, factor = complexity_input(geometry, dtype, device, layout)
    for channels in (1, x.shape[1]):
        got = torch.ops.segblocks.cell_complexity(x, channels, factor, 1e-4)
        want = _reference.cell_complexity(x, channels, factor, 1e-4)
        assert got.dtype == torch.float32 and got.is_contiguous()
        # float32 sums of the same values (the 16-pixel mean may differ by an ulp)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        assert (got[:, 0] == 0).all(), "flat cells have no texture"


def check_cell_complexity_frames(device, dtype, layout: str, geometry: Geometry) -> None:
    """The per-cell texture straight from uint8 frames: bitwise the native cell_complexity of
    normalize_frames (same element code), close to the reference's. ``layout`` unused."""
    images = _frames(geometry, device)
    scale, shift = _norm_constants(torch.device(device))
    factor = 2 if geometry.hr_side % 4 else 4
    got = torch.ops.segblocks.cell_complexity_frames(images, scale, shift, dtype, factor, 1e-4)
    x = torch.empty((images.shape[0], 3, images.shape[1], images.shape[2]), dtype=dtype, device=device,
                    memory_format=torch.channels_last)
    torch.ops.segblocks.normalize_frames_(x, images, scale, shift)
    torch.testing.assert_close(got, torch.ops.segblocks.cell_complexity(x, 3, factor, 1e-4), rtol=0, atol=0)
    want = _reference.cell_complexity_frames(images, scale, shift, dtype, factor, 1e-4)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def assert_labels_match(got: Tensor, logits: Tensor) -> None:
    """``got`` (uint8 labels) equals ``logits.argmax(1)`` wherever the top two logits are
    further apart than rounding could move them; exact ties and near-ties may differ
    because the fused kernel blends the four bilinear taps in its own operation order."""
    want = logits.argmax(1)
    assert got.dtype == torch.uint8 and got.shape == want.shape, (got.dtype, got.shape, want.shape)
    top2 = logits.double().topk(min(2, logits.shape[1]), dim=1).values
    margin = top2[:, 0] - top2[:, -1] if logits.shape[1] > 1 else torch.full_like(top2[:, 0], math.inf)
    eps = torch.finfo(logits.dtype).eps
    decided = margin > 8 * eps * (1 + top2[:, 0].abs())
    assert decided.double().mean() > 0.5, "too many near-ties for a meaningful comparison"
    mismatch = (got.long() != want) & decided
    assert not mismatch.any(), f"{int(mismatch.sum())} of {int(decided.sum())} decided labels differ"


def check_upsample_argmax(device, dtype, layout: str, geometry: Geometry, factor: int) -> None:
    lay, highres, lowres = block_inputs(geometry, dtype, device, layout)
    args = (lay.hr_pos, lay.lr_pos, lay.block_map, factor)
    got = torch.ops.segblocks.upsample_argmax(highres, lowres, *args)
    assert_labels_match(got, _reference.upsample_logits(highres, lowres, *args))


def check_upsample_argmax_units(device, dtype, layout: str, geometry: Geometry, factor: int) -> None:
    lay, highres, lowres = block_inputs(geometry, dtype, device, layout)
    args = (lay.hr_pos, lay.lr_pos, lay.block_map)
    units = _reference.block_pad_units(highres, lowres, *args, 1, "replicate")
    if layout in CHANNELS_LAST_LAYOUTS:
        units = units.contiguous(memory_format=torch.channels_last)
    got = torch.ops.segblocks.upsample_argmax_units(units, *args, factor)
    # the labels of the blocks the tiles came from (tile-local bilinear taps: equal values
    # for power-of-two factors, 1-ulp weight differences otherwise, hence near-ties)
    assert_labels_match(got, _reference.upsample_logits(highres, lowres, *args, factor))


def check_upsample_argmax_dense(device, dtype, layout: str, geometry: Geometry, factor: int) -> None:
    _, x = dense_input(geometry, dtype, device, layout)
    got = torch.ops.segblocks.upsample_argmax_dense(x, factor)
    assert_labels_match(got, _reference.upsample_logits_dense(x, factor))


# ----------------------------------------------------------------------------------------
# backward parity (through autograd)
# ----------------------------------------------------------------------------------------


def _grads(fn: Callable, inputs: list[Tensor], grad_outputs: list[Tensor]) -> tuple[Tensor, ...]:
    inputs = [t.detach().requires_grad_() for t in inputs]
    outputs = fn(*inputs)
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    # the reference returns fresh empty tensors (no grad_fn) for an empty resolution
    pairs = [(o, g) for o, g in zip(outputs, grad_outputs) if o.requires_grad]
    grads = torch.autograd.grad([o for o, _ in pairs], inputs, [g for _, g in pairs],
                                allow_unused=True)
    return tuple(torch.zeros_like(t) if g is None else g for t, g in zip(inputs, grads))


def _check_grads(native_fn: Callable, reference_fn: Callable, inputs: list[Tensor],
                 grad_outputs: list[Tensor]) -> None:
    got = _grads(native_fn, inputs, grad_outputs)
    exact = _grads(reference_fn, [t.double() for t in inputs], [g.double() for g in grad_outputs])
    torch.testing.assert_close(got, tuple(e.to(g.dtype) for e, g in zip(exact, got)))


def check_split_backward(device, dtype, layout: str, geometry: Geometry) -> None:
    lay, x = dense_input(geometry, dtype, device, layout)
    b = geometry.hr_side
    h = geometry.hr_side
    grad_out = [make_tensor((lay.num_highres, CHANNELS, h, h), dtype, device, layout, 11),
                make_tensor((lay.num_lowres, CHANNELS, h // 2, h // 2), dtype, device, layout, 12)]
    _check_grads(lambda t: torch.ops.segblocks.split(t, lay.hr_pos, lay.lr_pos, b),
                 lambda t: _reference.split(t, lay.hr_pos, lay.lr_pos, b), [x], grad_out)


def check_combine_backward(device, dtype, layout: str, geometry: Geometry) -> None:
    lay, highres, lowres = block_inputs(geometry, dtype, device, layout)
    args = (lay.hr_pos, lay.lr_pos, *lay.grid_shape)
    h = geometry.hr_side
    grad_out = [make_tensor((geometry.n, CHANNELS, geometry.grid_h * h, geometry.grid_w * h), dtype,
                            device, layout, 13)]
    _check_grads(lambda a, b: torch.ops.segblocks.combine(a, b, *args),
                 lambda a, b: _reference.combine(a, b, *args), [highres, lowres], grad_out)


def check_block_pad_backward(device, dtype, layout: str, geometry: Geometry, padding: int,
                             mode: str, value: float) -> None:
    lay, highres, lowres = block_inputs(geometry, dtype, device, layout)
    args = (lay.hr_pos, lay.lr_pos, lay.block_map, padding, mode, value)
    hp, lp = geometry.hr_side + 2 * padding, geometry.hr_side // 2 + 2 * padding
    c = channels_of(layout)
    grad_out = [make_tensor((lay.num_highres, c, hp, hp), dtype, device, layout, 14),
                make_tensor((lay.num_lowres, c, lp, lp), dtype, device, layout, 15)]
    _check_grads(lambda a, b: torch.ops.segblocks.block_pad(a, b, *args),
                 lambda a, b: _reference.block_pad(a, b, *args), [highres, lowres], grad_out)


# ----------------------------------------------------------------------------------------
# the case matrix
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One parity case: ``run(device)`` raises AssertionError on a mismatch."""

    op: str
    dtype: str
    layout: str
    geometry: str
    pad: Optional[tuple] = None
    factor: Optional[int] = None

    @property
    def id(self) -> str:
        parts = [self.op, self.dtype, self.layout, self.geometry]
        if self.pad is not None:
            p, mode, value = self.pad
            parts.append(f"p{p}-{mode}" + ("-neginf" if value == -math.inf else ""))
        if self.factor is not None:
            parts.append(f"x{self.factor}")
        return "-".join(parts)

    def run(self, device) -> None:
        check = _CHECKS[self.op]
        args = [device, DTYPES[self.dtype], self.layout, GEOMETRY_BY_NAME[self.geometry]]
        if self.pad is not None:
            args.extend(self.pad)
        if self.factor is not None:
            args.append(self.factor)
        check(*args)


_CHECKS = {
    "split": check_split,
    "split_padded": check_split_padded,
    "combine": check_combine,
    "split_units": check_split_units,
    "split_padded_frames": check_split_padded_frames,
    "combine_units": check_combine_units,
    "block_pad": check_block_pad,
    "block_pad_units": check_block_pad_units,
    "block_pad_units_quartered": check_block_pad_units_quartered,
    "block_pad_units_prologue": check_block_pad_units_prologue,
    "split_backward": check_split_backward,
    "combine_backward": check_combine_backward,
    "block_pad_backward": check_block_pad_backward,
    "upsample_argmax": check_upsample_argmax,
    "upsample_argmax_units": check_upsample_argmax_units,
    "max_pool_units": check_max_pool_units,
    "max_pool_units_quartered": check_max_pool_units_quartered,
    "max_pool_units_padded": check_max_pool_units_padded,
    "max_pool_dense": check_max_pool_dense,
    "upsample_argmax_dense": check_upsample_argmax_dense,
    "upsample2x_units": check_upsample2x_units,
    "upsample2x_units_quartered": check_upsample2x_units_quartered,
    "upsample2x_units_padded": check_upsample2x_units_padded,
    "upsample2x_dense": check_upsample2x_dense,
    "cell_complexity": check_cell_complexity,
    "cell_complexity_frames": check_cell_complexity_frames,
}
HEAD_FACTORS = (1, 3, 4)  # 4: SwiftNet's final upsampling; 3: a factor that is not a power of two


def parity_cases() -> Iterator[Case]:
    """Every op x dtype x layout x geometry (x padding/mode/value for BlockPad)."""
    for op in _CHECKS:
        # BlockPad, max pooling, upsample2x and split/combine (their dense -> blocks side
        # is packed on CUDA) have packed channels_last kernels
        packed = op.startswith(("block_pad", "max_pool", "upsample2x")) or op in (
            "split", "split_padded", "combine", "split_units", "combine_units")
        layouts = BLOCK_PAD_LAYOUTS if packed else LAYOUTS
        dtypes = DTYPES
        if op in ("split_padded_frames", "cell_complexity_frames"):  # uint8 frames in, normalize_frames' dtypes
            layouts, dtypes = ("contiguous",), ("f32", "f16", "bf16")
        # (split_padded_frames: side16's interiors run the CUDA kernel's two-pixel path as the
        # executor's 128-px blocks do)
        geometries = (WINDOW_GEOMETRIES if op.startswith(("max_pool_units", "upsample2x_units"))
                      or op == "split_padded_frames" else GEOMETRIES)
        for dtype, layout, geometry in itertools.product(dtypes, layouts, geometries):
            if op.startswith("block_pad"):
                for pad in PADS:
                    yield Case(op, dtype, layout, geometry.name, pad)
            elif op.startswith("upsample_argmax"):
                for factor in HEAD_FACTORS:
                    yield Case(op, dtype, layout, geometry.name, factor=factor)
            else:
                yield Case(op, dtype, layout, geometry.name)


# ----------------------------------------------------------------------------------------
# determinism and the engine invariant
# ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def no_tf32():
    """True fp32 convolutions/matmuls on CUDA: TF32 rounds conv inputs to 10 mantissa bits,
    which would turn 1-ulp differences between two float32 runs into 1e-3-sized ones."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def backward_is_bitwise_reproducible(device, dtype=torch.float32, repeats: int = 2,
                                     size: tuple = (2, 16, 12, 16), hr_side: int = 4,
                                     padding: int = 3, mode: str = "replicate") -> bool:
    """Run split -> block_pad -> combine backward ``repeats`` times; all grads bitwise equal?"""
    n, c, gh, gw = size
    gen = torch.Generator().manual_seed(7)
    grid = (torch.rand((n, gh, gw), generator=gen) > 0.6).to(device)
    lay = BlockLayout.from_grid(grid, hr_side)
    x0 = torch.randn((n, c, gh * hr_side, gw * hr_side), generator=gen).to(device, dtype)
    g0 = torch.randn((n, c, gh * hr_side, gw * hr_side), generator=gen).to(device, dtype)
    grads = []
    for _ in range(repeats):
        x = x0.clone().requires_grad_()
        hr, lr = torch.ops.segblocks.split(x, lay.hr_pos, lay.lr_pos, hr_side)
        hr, lr = torch.ops.segblocks.block_pad(hr, lr, lay.hr_pos, lay.lr_pos, lay.block_map,
                                               padding, mode, 0.0)
        hr = hr[:, :, padding:-padding, padding:-padding] * 1.5
        lr = lr[:, :, padding:-padding, padding:-padding] * 0.5
        y = torch.ops.segblocks.combine(hr, lr, lay.hr_pos, lay.lr_pos, n, gh, gw)
        (gx,) = torch.autograd.grad(y, x, g0)
        grads.append(gx)
    return all(torch.equal(grads[0], g) for g in grads[1:])


def engine_all_highres_error(device, dtype=torch.float32, size: int = 256,
                             channels_last: bool = False) -> tuple[float, float]:
    """SegBlocks(swiftnet_rn18) with an all-high-res grid vs the dense network.

    Returns ``(max |blocks - dense|, max |dense|)``, both networks in ``dtype``, eval mode,
    random weights (seeded), native backend forced, TF32 off.
    """
    import segblocks_core
    from segblocks_core.models import swiftnet_rn18
    from segblocks_core.ops import use_backend

    torch.manual_seed(0)
    net = swiftnet_rn18().eval().to(device=device, dtype=dtype)
    x = torch.randn(1, 3, size, size, device=device, dtype=dtype)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    sb = segblocks_core.SegBlocks(net, block_size=64)
    grid = torch.ones(sb.grid_shape(x.shape), dtype=torch.bool, device=device)
    with torch.no_grad(), use_backend("native"), no_tf32():
        dense = net(x).double()
        blocks = sb(x, grid).double()
    return (blocks - dense).abs().max().item(), dense.abs().max().item()


def engine_fp16_errors(size: int = 256) -> tuple[float, float, float]:
    """fp16 channels_last SegBlocks (all-high-res grid) and dense fp16, both vs dense fp32.

    Returns ``(max |blocks16 - dense32|, max |dense16 - dense32|, max |dense32|)`` on CUDA.
    TF32 is disabled so the fp32 reference is true fp32.
    """
    import segblocks_core
    from segblocks_core.models import swiftnet_rn18
    from segblocks_core.ops import use_backend

    with no_tf32():
        torch.manual_seed(0)
        net = swiftnet_rn18().eval().cuda()
        x = torch.randn(1, 3, size, size, device="cuda")
        with torch.no_grad():
            ref = net(x).double()
        net16 = net.half().to(memory_format=torch.channels_last)
        sb = segblocks_core.SegBlocks(net16, block_size=64)
        x16 = x.half().contiguous(memory_format=torch.channels_last)
        grid = torch.ones(sb.grid_shape(x16.shape), dtype=torch.bool, device="cuda")
        with torch.no_grad(), use_backend("native"):
            dense16 = net16(x16).double()
            blocks16 = sb(x16, grid).double()
    return ((blocks16 - ref).abs().max().item(), (dense16 - ref).abs().max().item(),
            ref.abs().max().item())


# ----------------------------------------------------------------------------------------
# per-op samples for opcheck / gradcheck
# ----------------------------------------------------------------------------------------

OPS = ("split", "combine", "block_pad", "split_backward", "combine_backward", "block_pad_backward")
# not differentiable (inference only): opcheck only
HEAD_OPS = ("upsample_argmax", "upsample_argmax_dense", "upsample_argmax_units", "block_pad_units",
            "max_pool_units", "max_pool_dense", "upsample2x_units", "upsample2x_dense", "cell_complexity",
            "split_units", "combine_units", "split_padded_frames", "cell_complexity_frames")
OPCHECK_SAMPLES = {
    "mixed-channels_last-f32": dict(layout="channels_last", dtype=torch.float32),
    "tiny2px-contiguous-f64": dict(geometry="tiny_2px_batch2", dtype=torch.float64, mode="constant"),
    "all_lr-f32": dict(geometry="all_lr_batch2", dtype=torch.float32, padding=1),
}


def op_samples(device, dtype=torch.float64, layout="contiguous", geometry="mixed_batch2",
               padding=3, mode="replicate", requires_grad=True) -> dict:
    """``{op name: args}`` for every native op on one geometry."""
    geo = GEOMETRY_BY_NAME[geometry]
    lay, hr, lr = block_inputs(geo, dtype, device, layout)
    _, x = dense_input(geo, dtype, device, layout)
    b = geo.hr_side
    hp, lp = b + 2 * padding, b // 2 + 2 * padding
    ghr = make_tensor((lay.num_highres, CHANNELS, hp, hp), dtype, device, layout, 5)
    glr = make_tensor((lay.num_lowres, CHANNELS, lp, lp), dtype, device, layout, 6)
    hr, lr, x, ghr, glr = (t.detach().requires_grad_(requires_grad) for t in (hr, lr, x, ghr, glr))
    pos = (lay.hr_pos, lay.lr_pos)
    return {
        "split": (x, *pos, b),
        "combine": (hr, lr, *pos, *lay.grid_shape),
        "block_pad": (hr, lr, *pos, lay.block_map, padding, mode, 0.0),
        "split_backward": (hr, lr, *pos, *lay.grid_shape),
        "combine_backward": (x, *pos, b),
        "block_pad_backward": (ghr, glr, *pos, lay.block_map, padding, mode),
        "upsample_argmax": (hr.detach(), lr.detach(), *pos, lay.block_map, 4),
        "upsample_argmax_dense": (x.detach(), 4),
        "block_pad_units": (hr.detach(), lr.detach(), *pos, lay.block_map, padding, mode, 0.0, False),
        "upsample_argmax_units": (_reference.block_pad_units(hr.detach(), lr.detach(), *pos, lay.block_map, 1,
                                                             "replicate"), *pos, lay.block_map, 4),
        "max_pool_units": (hr.detach(), lr.detach(), *pos, lay.block_map, 3, 2, 1, False, 1),  # into padded tiles
        "max_pool_dense": (x.detach(), 3, 2, 1),
        "upsample2x_units": (hr.detach(), lr.detach(), *pos, lay.block_map, False,
                             make_tensor((4 * lay.num_highres + lay.num_lowres, hr.shape[1], b, b), dtype, device,
                                         layout, 9)),
        "upsample2x_dense": (x.detach(), make_tensor((x.shape[0], x.shape[1], 2 * x.shape[2], 2 * x.shape[3]),
                                                     dtype, device, layout, 10)),
        "cell_complexity": (x.detach(), x.shape[1], 2, 1e-4),
        "split_units": (x.detach(), *pos, b),
        "combine_units": (_reference.quarter(hr.detach()), lr.detach(), *pos, *lay.grid_shape),
        "split_padded_frames": (_frames(geo, device), *_norm_constants(torch.device(device)), *pos, lay.block_map, b,
                                1, 4, torch.float16),
        "cell_complexity_frames": (_frames(geo, device), *_norm_constants(torch.device(device)), torch.float32, 2,
                                   1e-4),
    }


def _frames(geometry: Geometry, device) -> Tensor:
    gen = torch.Generator().manual_seed(geometry.seed)
    b = geometry.hr_side
    return torch.randint(0, 256, (geometry.n, geometry.grid_h * b, geometry.grid_w * b, 3), dtype=torch.uint8,
                         generator=gen).to(device)


def opcheck_op(device, op: str, sample: str) -> None:
    """torch.library.opcheck (schema, autograd registration, fake kernel, AOT dispatch)."""
    args = op_samples(device, **OPCHECK_SAMPLES[sample])[op]
    torch.library.opcheck(getattr(torch.ops.segblocks, op).default, args)


def gradcheck_op(device, op: str, mode: str = "constant") -> None:
    """float64 gradcheck and gradgradcheck of ``op`` (2-px blocks, p=3: halos reach three
    1-px low-res cells). The backward ops' own backward is the forward op (_native.py)."""
    args = op_samples(device, geometry="tiny_2px_batch2", padding=3, mode=mode)[op]
    fn = getattr(torch.ops.segblocks, op)
    n_tensors = 2 if isinstance(args[1], Tensor) and args[1].is_floating_point() else 1
    # two channels keep the numerical Jacobians small (the channel loop is covered by parity)
    diff = tuple(t[:, :2].detach().contiguous().requires_grad_() for t in args[:n_tensors])
    rest = args[n_tensors:]

    def f(*t):
        return fn(*t, *rest)

    assert torch.autograd.gradcheck(f, diff, fast_mode=False), f"gradcheck failed for {op}"
    assert torch.autograd.gradgradcheck(f, diff, fast_mode=True), f"gradgradcheck failed for {op}"


def compile_matches_eager(device, backend: str) -> None:
    """split -> block_pad -> combine under torch.compile(fullgraph=True): same values and
    gradients as eager."""
    lay = GEOMETRY_BY_NAME["mixed_batch2"].layout(device)
    n, gh, gw = lay.grid_shape

    def f(x, hr_pos, lr_pos, block_map):
        hr, lr = torch.ops.segblocks.split(x, hr_pos, lr_pos, 4)
        hr, lr = torch.ops.segblocks.block_pad(torch.relu(hr), lr, hr_pos, lr_pos, block_map, 1,
                                               "replicate", 0.0)
        hr = hr[:, :, 1:-1, 1:-1] * 2
        lr = lr[:, :, 1:-1, 1:-1] + 1
        return torch.ops.segblocks.combine(hr, lr, hr_pos, lr_pos, n, gh, gw)

    torch._dynamo.reset()
    compiled = torch.compile(f, fullgraph=True, backend=backend)
    x = torch.randn(n, 5, gh * 4, gw * 4, device=device, requires_grad=True)
    args = (lay.hr_pos, lay.lr_pos, lay.block_map)
    y = compiled(x, *args)
    (gx,) = torch.autograd.grad(y.square().sum(), x)
    y_eager = f(x, *args)
    (gx_eager,) = torch.autograd.grad(y_eager.square().sum(), x)
    torch.testing.assert_close(y, y_eager)
    torch.testing.assert_close(gx, gx_eager)


def cuda_graph_replay_matches() -> None:
    """split -> block_pad -> combine captured in a CUDA graph replays like eager (the ops
    launch on the current stream without host syncs)."""
    lay = GEOMETRY_BY_NAME["mixed_batch2"].layout("cuda")
    n, gh, gw = lay.grid_shape
    x = torch.randn(n, 8, gh * 4, gw * 4, device="cuda").contiguous(memory_format=torch.channels_last)

    def step(inp):
        hr, lr = torch.ops.segblocks.split(inp, lay.hr_pos, lay.lr_pos, 4)
        hr, lr = torch.ops.segblocks.block_pad(hr, lr, lay.hr_pos, lay.lr_pos, lay.block_map, 1,
                                               "constant", 0.0)
        return torch.ops.segblocks.combine(hr[:, :, 1:-1, 1:-1], lr[:, :, 1:-1, 1:-1], lay.hr_pos,
                                           lay.lr_pos, n, gh, gw)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        step(x)  # warm up outside the capture
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = step(x)
    x.copy_(torch.randn_like(x))
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(out, step(x), rtol=0, atol=0)
