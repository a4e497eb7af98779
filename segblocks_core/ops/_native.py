"""Fake kernels and autograd for the native ops ``torch.ops.segblocks.*``.

Imported by :mod:`segblocks_core.ops` right after the extension ``segblocks_core._C``
(which defines the op schemas and registers the CPU/CUDA kernels). As in PyTorch's
``extension-cpp``, the Python side adds what the C++ side should not hand-roll:

* **fake kernels** (``torch.library.register_fake``): output shapes, dtypes and strides
  without running the kernel, for ``torch.compile``, ``torch.export`` and FakeTensor
  propagation;
* **autograd** (``torch.library.register_autograd``): each forward op's backward is its
  native backward partner, and each backward op's backward is the forward op again (they
  are adjoint linear maps), so double backward works too:

  ============  ===================  ===============================================
  op            backward op          adjoint of the backward op
  ============  ===================  ===============================================
  split         split_backward       split
  combine       combine_backward     combine
  block_pad     block_pad_backward   block_pad with value 0 (the linear part)
  ============  ===================  ===============================================

Output memory format rule (same as ``output_memory_format`` in ``csrc/ops/block_checks.h``):
channels_last if any feature input is unambiguously channels_last, NCHW otherwise.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

__all__: list[str] = []

_PAD_MODES = ("constant", "replicate")


def _memory_format(*tensors: Tensor) -> torch.memory_format:
    for t in tensors:
        if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
            return torch.channels_last
    return torch.contiguous_format


def _empty(shape, like: Tensor, memory_format: torch.memory_format) -> Tensor:
    return torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=memory_format)


def _check_blocks(op: str, hr_name: str, highres: Tensor, lr_name: str, lowres: Tensor,
                  hr_pos: Tensor, lr_pos: Tensor, padding: int = 0) -> int:
    """Shape checks the C++ kernels also make; returns the high-res block side."""
    torch._check(highres.dim() == 4 and lowres.dim() == 4,
                 lambda: f"{op}: {hr_name} and {lr_name} must be 4-D [N, C, H, W]")
    torch._check(highres.dtype == lowres.dtype,
                 lambda: f"{op}: {lr_name} has dtype {lowres.dtype} but {hr_name} has {highres.dtype}")
    side = highres.shape[-1] - 2 * padding
    torch._check(side >= 2 and side % 2 == 0,
                 lambda: f"{op}: {hr_name} block side must be even and >= 2, got {tuple(highres.shape)}")
    torch._check(lowres.shape[-1] - 2 * padding == side // 2,
                 lambda: f"{op}: {lr_name} blocks must be half the side of {hr_name} blocks")
    torch._check(highres.shape[1] == lowres.shape[1],
                 lambda: f"{op}: {lr_name} has {lowres.shape[1]} channels but {hr_name} has {highres.shape[1]}")
    torch._check(highres.shape[0] == hr_pos.shape[0],
                 lambda: f"{op}: {hr_name} has {highres.shape[0]} blocks but hr_pos has {hr_pos.shape[0]}")
    torch._check(lowres.shape[0] == lr_pos.shape[0],
                 lambda: f"{op}: {lr_name} has {lowres.shape[0]} blocks but lr_pos has {lr_pos.shape[0]}")
    return side


# ----------------------------------------------------------------------------------------
# fake kernels
# ----------------------------------------------------------------------------------------


@torch.library.register_fake("segblocks::split")
def _split_fake(x: Tensor, hr_pos: Tensor, lr_pos: Tensor, block_size: int):
    torch._check(x.dim() == 4, lambda: f"split: x must be 4-D, got {tuple(x.shape)}")
    b = block_size
    torch._check(b >= 2 and b % 2 == 0, lambda: f"split: block_size must be an even number >= 2, got {b}")
    fmt = _memory_format(x)
    c = x.shape[1]
    return (_empty((hr_pos.shape[0], c, b, b), x, fmt),
            _empty((lr_pos.shape[0], c, b // 2, b // 2), x, fmt))


def _split_padded_fake(x: Tensor, hr_pos: Tensor, lr_pos: Tensor, block_map: Tensor, block_size: int,
                       padding: int):
    torch._check(padding >= 0, lambda: f"split_padded: padding must be >= 0, got {padding}")
    fmt = _memory_format(x)
    c, hp, lp = x.shape[1], block_size + 2 * padding, block_size // 2 + 2 * padding
    return (_empty((hr_pos.shape[0], c, hp, hp), x, fmt), _empty((lr_pos.shape[0], c, lp, lp), x, fmt))


if hasattr(torch.ops.segblocks, "split_padded"):  # an extension built before the op lacks it
    torch.library.register_fake("segblocks::split_padded")(_split_padded_fake)


@torch.library.register_fake("segblocks::split_backward")
def _split_backward_fake(grad_highres: Tensor, grad_lowres: Tensor, hr_pos: Tensor, lr_pos: Tensor,
                         grid_n: int, grid_h: int, grid_w: int):
    side = _check_blocks("split_backward", "grad_highres", grad_highres, "grad_lowres", grad_lowres,
                         hr_pos, lr_pos)
    fmt = _memory_format(grad_highres, grad_lowres)
    return _empty((grid_n, grad_highres.shape[1], grid_h * side, grid_w * side), grad_highres, fmt)


@torch.library.register_fake("segblocks::combine")
def _combine_fake(highres: Tensor, lowres: Tensor, hr_pos: Tensor, lr_pos: Tensor,
                  grid_n: int, grid_h: int, grid_w: int):
    side = _check_blocks("combine", "highres", highres, "lowres", lowres, hr_pos, lr_pos)
    fmt = _memory_format(highres, lowres)
    return _empty((grid_n, highres.shape[1], grid_h * side, grid_w * side), highres, fmt)


def _split_units_fake(x: Tensor, hr_pos: Tensor, lr_pos: Tensor, block_size: int):
    torch._check(x.dim() == 4, lambda: f"split_units: x must be 4-D, got {tuple(x.shape)}")
    b = block_size
    torch._check(b >= 2 and b % 2 == 0, lambda: f"split_units: block_size must be an even number >= 2, got {b}")
    return _empty((4 * hr_pos.shape[0] + lr_pos.shape[0], x.shape[1], b // 2, b // 2), x, _memory_format(x))


def _combine_units_fake(highres: Tensor, lowres: Tensor, hr_pos: Tensor, lr_pos: Tensor,
                        grid_n: int, grid_h: int, grid_w: int):
    torch._check(highres.dim() == 4 and lowres.dim() == 4 and highres.shape[0] == 4 * hr_pos.shape[0],
                 lambda: f"combine_units: highres must be the units [4*Nh, C, u, u] of hr_pos' blocks, got "
                         f"{tuple(highres.shape)} for {hr_pos.shape[0]} positions")
    side = 2 * lowres.shape[3]
    return _empty((grid_n, highres.shape[1], grid_h * side, grid_w * side), highres,
                  _memory_format(highres, lowres))


if hasattr(torch.ops.segblocks, "split_units"):  # an extension built before the ops lacks them
    torch.library.register_fake("segblocks::split_units")(_split_units_fake)
    torch.library.register_fake("segblocks::combine_units")(_combine_units_fake)


@torch.library.register_fake("segblocks::combine_backward")
def _combine_backward_fake(grad: Tensor, hr_pos: Tensor, lr_pos: Tensor, block_size: int):
    torch._check(grad.dim() == 4, lambda: f"combine_backward: grad must be 4-D, got {tuple(grad.shape)}")
    b = block_size
    fmt = _memory_format(grad)
    c = grad.shape[1]
    return (_empty((hr_pos.shape[0], c, b, b), grad, fmt),
            _empty((lr_pos.shape[0], c, b // 2, b // 2), grad, fmt))


@torch.library.register_fake("segblocks::block_pad")
def _block_pad_fake(highres: Tensor, lowres: Tensor, hr_pos: Tensor, lr_pos: Tensor,
                    block_map: Tensor, padding: int, mode: str, value: float):
    torch._check(padding >= 0, lambda: f"block_pad: padding must be >= 0, got {padding}")
    torch._check(mode in _PAD_MODES, lambda: f"block_pad: mode must be one of {_PAD_MODES}, got {mode!r}")
    side = _check_blocks("block_pad", "highres", highres, "lowres", lowres, hr_pos, lr_pos)
    fmt = _memory_format(highres, lowres)
    c, hp, lp = highres.shape[1], side + 2 * padding, side // 2 + 2 * padding
    return (_empty((hr_pos.shape[0], c, hp, hp), highres, fmt),
            _empty((lr_pos.shape[0], c, lp, lp), highres, fmt))


@torch.library.register_fake("segblocks::block_pad_units")
def _block_pad_units_fake(highres: Tensor, lowres: Tensor, hr_pos: Tensor, lr_pos: Tensor,
                          block_map: Tensor, padding: int, mode: str, value: float, quartered: bool,
                          pre_scale: Optional[Tensor] = None, pre_shift: Optional[Tensor] = None):
    torch._check(padding >= 0, lambda: f"block_pad_units: padding must be >= 0, got {padding}")
    torch._check(mode in _PAD_MODES,
                 lambda: f"block_pad_units: mode must be one of {_PAD_MODES}, got {mode!r}")
    u = lowres.shape[-1]
    fmt = _memory_format(highres, lowres)
    up = u + 2 * padding
    return _empty((4 * hr_pos.shape[0] + lr_pos.shape[0], highres.shape[1], up, up), highres, fmt)


@torch.library.register_fake("segblocks::upsample_argmax_units")
def _upsample_argmax_units_fake(units_padded: Tensor, hr_pos: Tensor, lr_pos: Tensor, block_map: Tensor,
                                factor: int):
    torch._check(factor >= 1, lambda: f"upsample_argmax_units: factor must be >= 1, got {factor}")
    bf = 2 * (units_padded.shape[-1] - 2) * factor
    n, gh, gw = block_map.shape
    return units_padded.new_empty((n, gh * bf, gw * bf), dtype=torch.uint8)


@torch.library.register_fake("segblocks::max_pool_units")
def _max_pool_units_fake(highres: Tensor, lowres: Tensor, hr_pos: Tensor, lr_pos: Tensor, block_map: Tensor,
                         kernel: int, stride: int, padding: int, quartered: bool, out_padding: int = 0):
    u = lowres.shape[-1]
    side = (u + 2 * padding - kernel) // stride + 1 + 2 * out_padding
    return _empty((4 * hr_pos.shape[0] + lr_pos.shape[0], highres.shape[1], side, side), highres,
                  _memory_format(highres, lowres))


@torch.library.register_fake("segblocks::max_pool_dense")
def _max_pool_dense_fake(x: Tensor, kernel: int, stride: int, padding: int):
    ho = (x.shape[2] + 2 * padding - kernel) // stride + 1
    wo = (x.shape[3] + 2 * padding - kernel) // stride + 1
    return _empty((x.shape[0], x.shape[1], ho, wo), x, _memory_format(x))


def _upsample2x_units_fake(highres: Tensor, lowres: Tensor, hr_pos: Tensor, lr_pos: Tensor, block_map: Tensor,
                           quartered: bool, skip: Optional[Tensor] = None, post_scale: Optional[Tensor] = None,
                           post_shift: Optional[Tensor] = None, padding: int = 0):
    torch._check(padding >= 0, lambda: f"upsample2x_units: padding must be >= 0, got {padding}")
    h = 2 * lowres.shape[-1] + 2 * padding
    return _empty((4 * hr_pos.shape[0] + lr_pos.shape[0], highres.shape[1], h, h), highres,
                  _memory_format(highres, lowres))


def _upsample2x_dense_fake(x: Tensor, skip: Optional[Tensor] = None):
    return _empty((x.shape[0], x.shape[1], 2 * x.shape[2], 2 * x.shape[3]), x, _memory_format(x))


if hasattr(torch.ops.segblocks, "upsample2x_units"):  # an extension built before the op lacks it
    torch.library.register_fake("segblocks::upsample2x_units")(_upsample2x_units_fake)
    torch.library.register_fake("segblocks::upsample2x_dense")(_upsample2x_dense_fake)


def _cell_complexity_fake(x: Tensor, channels: int, factor: int, floor: float):
    return x.new_empty((x.shape[0], x.shape[2] // factor, x.shape[3] // factor), dtype=torch.float32)


if hasattr(torch.ops.segblocks, "cell_complexity"):  # an extension built before the op lacks it
    torch.library.register_fake("segblocks::cell_complexity")(_cell_complexity_fake)


def _scale_shift_relu_fake(x: Tensor, scale: Tensor, shift: Tensor):
    return _empty(tuple(x.shape), x, torch.channels_last)


if hasattr(torch.ops.segblocks, "scale_shift_relu"):  # an extension built before the op lacks it
    torch.library.register_fake("segblocks::scale_shift_relu")(_scale_shift_relu_fake)


def _normalize_frames_fake(out: Tensor, images: Tensor, scale: Tensor, shift: Tensor) -> None:
    return None


if hasattr(torch.ops.segblocks, "normalize_frames_"):  # an extension built before the op lacks it
    torch.library.register_fake("segblocks::normalize_frames_")(_normalize_frames_fake)


def _split_padded_frames_fake(images: Tensor, scale: Tensor, shift: Tensor, hr_pos: Tensor, lr_pos: Tensor,
                              block_map: Tensor, block_size: int, padding: int, channels: int, dtype: torch.dtype):
    torch._check(images.dim() == 4 and images.shape[-1] == 3,
                 lambda: f"split_padded_frames: images must be [N, H, W, 3], got {tuple(images.shape)}")
    hp, lp = block_size + 2 * padding, block_size // 2 + 2 * padding

    def tiles(n, side):
        return torch.empty((n, channels, side, side), dtype=dtype, device=images.device,
                           memory_format=torch.channels_last)
    return tiles(hr_pos.shape[0], hp), tiles(lr_pos.shape[0], lp)


if hasattr(torch.ops.segblocks, "split_padded_frames"):  # an extension built before the op lacks it
    torch.library.register_fake("segblocks::split_padded_frames")(_split_padded_frames_fake)


def _cell_complexity_frames_fake(images: Tensor, scale: Tensor, shift: Tensor, dtype: torch.dtype, factor: int,
                                 floor: float):
    torch._check(images.dim() == 4 and images.shape[-1] == 3,
                 lambda: f"cell_complexity_frames: images must be [N, H, W, 3], got {tuple(images.shape)}")
    return images.new_empty((images.shape[0], images.shape[1] // factor, images.shape[2] // factor),
                            dtype=torch.float32)


if hasattr(torch.ops.segblocks, "cell_complexity_frames"):  # an extension built before the op lacks it
    torch.library.register_fake("segblocks::cell_complexity_frames")(_cell_complexity_frames_fake)


def _conv3x3_units_fake(highres: Tensor, lowres: Tensor, hr_pos: Tensor, lr_pos: Tensor, block_map: Tensor,
                        weight: Tensor, bias: Optional[Tensor] = None, residual: Optional[Tensor] = None,
                        relu: bool = False, quartered: bool = False, stride: int = 1,
                        pre_scale: Optional[Tensor] = None, pre_shift: Optional[Tensor] = None, splits: int = 0):
    torch._check(stride in (1, 2), lambda: f"conv3x3_units: stride must be 1 or 2, got {stride}")
    uo = (lowres.shape[-1] - 1) // stride + 1
    return _empty((4 * hr_pos.shape[0] + lr_pos.shape[0], weight.shape[0], uo, uo), highres,
                  torch.channels_last)


if hasattr(torch.ops.segblocks, "conv3x3_units"):  # an extension built before the op lacks it
    torch.library.register_fake("segblocks::conv3x3_units")(_conv3x3_units_fake)


@torch.library.register_fake("segblocks::block_pad_backward")
def _block_pad_backward_fake(grad_highres_padded: Tensor, grad_lowres_padded: Tensor,
                             hr_pos: Tensor, lr_pos: Tensor, block_map: Tensor, padding: int,
                             mode: str):
    torch._check(padding >= 0, lambda: f"block_pad_backward: padding must be >= 0, got {padding}")
    torch._check(mode in _PAD_MODES,
                 lambda: f"block_pad_backward: mode must be one of {_PAD_MODES}, got {mode!r}")
    side = _check_blocks("block_pad_backward", "grad_highres_padded", grad_highres_padded,
                         "grad_lowres_padded", grad_lowres_padded, hr_pos, lr_pos, padding)
    fmt = _memory_format(grad_highres_padded, grad_lowres_padded)
    c = grad_highres_padded.shape[1]
    return (_empty((hr_pos.shape[0], c, side, side), grad_highres_padded, fmt),
            _empty((lr_pos.shape[0], c, side // 2, side // 2), grad_highres_padded, fmt))


def _upsample_argmax_fake(highres: Tensor, lowres: Tensor, hr_pos: Tensor, lr_pos: Tensor,
                          block_map: Tensor, factor: int):
    torch._check(factor >= 1, lambda: f"upsample_argmax: factor must be >= 1, got {factor}")
    side = _check_blocks("upsample_argmax", "highres", highres, "lowres", lowres, hr_pos, lr_pos)
    n, gh, gw = block_map.shape
    return torch.empty((n, gh * side * factor, gw * side * factor), dtype=torch.uint8,
                       device=highres.device)


def _upsample_argmax_dense_fake(logits: Tensor, factor: int):
    torch._check(logits.dim() == 4, lambda: f"upsample_argmax_dense: logits must be 4-D, got {tuple(logits.shape)}")
    torch._check(factor >= 1, lambda: f"upsample_argmax_dense: factor must be >= 1, got {factor}")
    n, _, h, w = logits.shape
    return torch.empty((n, h * factor, w * factor), dtype=torch.uint8, device=logits.device)


# the fused head ops are newer than the block ops: an extension built before them lacks
# their schemas, and segblocks_core.ops then uses the reference head (has_native_head)
if hasattr(torch.ops.segblocks, "upsample_argmax"):
    torch.library.register_fake("segblocks::upsample_argmax")(_upsample_argmax_fake)
    torch.library.register_fake("segblocks::upsample_argmax_dense")(_upsample_argmax_dense_fake)


# ----------------------------------------------------------------------------------------
# autograd: forward ops
# ----------------------------------------------------------------------------------------


def _split_setup(ctx, inputs, output) -> None:
    x, hr_pos, lr_pos, block_size = inputs
    ctx.save_for_backward(hr_pos, lr_pos)
    ctx.grid = (x.shape[0], x.shape[2] // block_size, x.shape[3] // block_size)
    ctx.block_size = block_size


def _split_backward(ctx, grad_highres: Tensor, grad_lowres: Tensor):
    hr_pos, lr_pos = ctx.saved_tensors
    grad_x = torch.ops.segblocks.split_backward(grad_highres, grad_lowres, hr_pos, lr_pos, *ctx.grid)
    return grad_x, None, None, None


def _combine_setup(ctx, inputs, output) -> None:
    highres, lowres, hr_pos, lr_pos, grid_n, grid_h, grid_w = inputs
    ctx.save_for_backward(hr_pos, lr_pos)
    ctx.block_size = highres.shape[-1]


def _combine_backward(ctx, grad: Tensor):
    hr_pos, lr_pos = ctx.saved_tensors
    grad_hr, grad_lr = torch.ops.segblocks.combine_backward(grad, hr_pos, lr_pos, ctx.block_size)
    return grad_hr, grad_lr, None, None, None, None, None


def _block_pad_setup(ctx, inputs, output) -> None:
    highres, lowres, hr_pos, lr_pos, block_map, padding, mode, value = inputs
    ctx.save_for_backward(hr_pos, lr_pos, block_map)
    ctx.padding, ctx.mode = padding, mode


def _block_pad_backward(ctx, grad_hr_padded: Tensor, grad_lr_padded: Tensor):
    hr_pos, lr_pos, block_map = ctx.saved_tensors
    grad_hr, grad_lr = torch.ops.segblocks.block_pad_backward(
        grad_hr_padded, grad_lr_padded, hr_pos, lr_pos, block_map, ctx.padding, ctx.mode)
    return grad_hr, grad_lr, None, None, None, None, None, None


# ----------------------------------------------------------------------------------------
# autograd: backward ops (double backward). Each backward op is a linear map whose adjoint is
# its forward op, so its vector-Jacobian product is the forward op applied to the incoming
# gradient.
# ----------------------------------------------------------------------------------------


def _split_backward_setup(ctx, inputs, output) -> None:
    grad_highres, grad_lowres, hr_pos, lr_pos, grid_n, grid_h, grid_w = inputs
    ctx.save_for_backward(hr_pos, lr_pos)
    ctx.block_size = grad_highres.shape[-1]


def _split_backward_backward(ctx, grad_grad_x: Tensor):
    hr_pos, lr_pos = ctx.saved_tensors
    gg_hr, gg_lr = torch.ops.segblocks.split(grad_grad_x, hr_pos, lr_pos, ctx.block_size)
    return gg_hr, gg_lr, None, None, None, None, None


def _combine_backward_setup(ctx, inputs, output) -> None:
    grad, hr_pos, lr_pos, block_size = inputs
    ctx.save_for_backward(hr_pos, lr_pos)
    ctx.grid = (grad.shape[0], grad.shape[2] // block_size, grad.shape[3] // block_size)


def _combine_backward_backward(ctx, gg_hr: Tensor, gg_lr: Tensor):
    hr_pos, lr_pos = ctx.saved_tensors
    return torch.ops.segblocks.combine(gg_hr, gg_lr, hr_pos, lr_pos, *ctx.grid), None, None, None


def _block_pad_backward_setup(ctx, inputs, output) -> None:
    grad_hr_padded, grad_lr_padded, hr_pos, lr_pos, block_map, padding, mode = inputs
    ctx.save_for_backward(hr_pos, lr_pos, block_map)
    ctx.padding, ctx.mode = padding, mode


def _block_pad_backward_backward(ctx, gg_hr: Tensor, gg_lr: Tensor):
    hr_pos, lr_pos, block_map = ctx.saved_tensors
    # the adjoint of the linear part of block_pad: the constant border contributes nothing
    out_hr, out_lr = torch.ops.segblocks.block_pad(gg_hr, gg_lr, hr_pos, lr_pos, block_map,
                                                   ctx.padding, ctx.mode, 0.0)
    return out_hr, out_lr, None, None, None, None, None


torch.library.register_autograd("segblocks::split", _split_backward, setup_context=_split_setup)
torch.library.register_autograd("segblocks::combine", _combine_backward, setup_context=_combine_setup)
torch.library.register_autograd("segblocks::block_pad", _block_pad_backward,
                                setup_context=_block_pad_setup)
torch.library.register_autograd("segblocks::split_backward", _split_backward_backward,
                                setup_context=_split_backward_setup)
torch.library.register_autograd("segblocks::combine_backward", _combine_backward_backward,
                                setup_context=_combine_backward_setup)
torch.library.register_autograd("segblocks::block_pad_backward", _block_pad_backward_backward,
                                setup_context=_block_pad_backward_setup)


def _block_pad_ring_fake(padded: Tensor, hr_pos: Tensor, lr_pos: Tensor, block_map: Tensor, padding: int) -> None:
    return None  # in place


def _conv_into_fake(out: Tensor, x: Tensor, weight: Tensor, bias: Tensor, residual: Optional[Tensor], stride: int,
                    padding: int, config: int) -> None:
    return None  # in place


if hasattr(torch.ops.segblocks, "block_pad_ring_"):  # an extension built before the op lacks it
    torch.library.register_fake("segblocks::block_pad_ring_")(_block_pad_ring_fake)
if hasattr(torch.ops.segblocks, "conv_into_"):
    torch.library.register_fake("segblocks::conv_into_")(_conv_into_fake)


def _halo_index_fake(hr_pos: Tensor, lr_pos: Tensor, block_map: Tensor, side: int) -> tuple[Tensor, Tensor]:
    tiles = 4 * hr_pos.shape[0] + lr_pos.shape[0]
    return (hr_pos.new_empty((tiles, side + 2, side + 2), dtype=torch.int32),
            hr_pos.new_empty((lr_pos.shape[0] * (4 * side + 4), 4), dtype=torch.int32))


if hasattr(torch.ops.segblocks, "halo_index"):
    torch.library.register_fake("segblocks::halo_index")(_halo_index_fake)


def _halo_means_fake(source: Tensor, mean_rows: Tensor, unit_rows: int) -> None:
    return None  # in place


if hasattr(torch.ops.segblocks, "halo_means_"):
    torch.library.register_fake("segblocks::halo_means_")(_halo_means_fake)
