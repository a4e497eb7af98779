"""Block ops: split, BlockPad and combine.

Each op has a pure-PyTorch reference (:mod:`segblocks_core.ops._reference`) and, when the
extension ``segblocks_core._C`` is built, native CPU/CUDA kernels registered as
``torch.ops.segblocks.*``. The native kernel is used for a tensor whenever one is
registered for its device; otherwise the reference runs. :func:`backend` says which is
active, :func:`use_backend` forces one (tests compare the two).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import threading
import warnings
from typing import Iterator, Optional, Union

import torch
from torch import Tensor

from ..layout import BlockLayout, BlockTensor
from . import _reference

__all__ = [
    "split", "combine", "block_pad", "block_pad_units", "max_pool_units", "max_pool_dense",
    "upsample_argmax", "upsample_argmax_dense", "argmax_labels", "backend",
    "use_backend", "has_native", "BUILD_HINT", "split_tensor", "combine_tensor",
    "block_pad_tensor", "block_pad_units_tensor", "split_units_tensor", "combine_units_tensor",
    "upsample_argmax_tensor", "upsample_argmax_units_tensor",
    "max_pool_units_tensor", "upsample2x_units", "upsample2x_dense", "upsample2x_units_tensor",
    "check_frames", "cell_complexity", "cell_complexity_frames", "normalize_frames", "split_padded_frames",
    "scale_shift_relu",
    "conv3x3_units", "conv3x3_units_tensor",
    "conv3x3_units_supported", "block_pad_ring_", "conv_into_", "cutlass_conv_configs", "halo_index",
    "halo_means_",
]

BUILD_HINT = (
    "build the native extension with `pip install --no-build-isolation -e .` (CPU kernels; "
    "add FORCE_CUDA=1 or build on a machine with CUDA for the GPU kernels)"
)

_native_error: Optional[str] = None
if importlib.util.find_spec("segblocks_core._C") is None:
    _native_error = "the extension segblocks_core._C is not built"
else:
    try:  # the extension registers torch.ops.segblocks.* on import
        from .. import _C  # noqa: F401
        from . import _native  # noqa: F401  (fake kernels and autograd)
    except ImportError as exc:  # pragma: no cover - a broken build
        _native_error = f"segblocks_core._C failed to load: {exc}"
if _native_error is None and importlib.util.find_spec("segblocks_core._cutlass") is not None:
    # conv_into_'s CUDA kernels (Hopper, CUTLASS): on their own, so that a broken build of
    # them leaves the other native ops on and conv_into_ on the reference
    try:
        from .. import _cutlass  # noqa: F401
    except ImportError as exc:  # pragma: no cover - a broken build
        warnings.warn(f"segblocks_core._cutlass failed to load ({exc}); the CUTLASS convolutions are off",
                      RuntimeWarning)

_state = threading.local()
_VALID = ("auto", "native", "reference")


def _forced() -> str:
    return getattr(_state, "backend", "auto")


def has_native(device: Union[str, torch.device] = "cpu") -> bool:
    """True if native kernels are registered for ``device``'s type."""
    if _native_error is not None:
        return False
    key = {"cpu": "CPU", "cuda": "CUDA"}.get(torch.device(device).type)
    if key is None:
        return False
    return torch._C._dispatch_has_kernel_for_dispatch_key("segblocks::block_pad", key)


def backend(device: Union[str, torch.device, None] = None) -> str:
    """Name of the block-op backend used for tensors on ``device``.

    Returns ``"native-cpu"``, ``"native-cuda"`` or ``"reference"``. Without a device, the
    CPU backend plus whether CUDA kernels were built, e.g. ``"native-cpu (+cuda)"``.
    """
    if device is None:
        name = "native-cpu" if _use_native(torch.device("cpu")) else "reference"
        if has_native("cuda"):
            name += " (+cuda)"
        return name
    device = torch.device(device)
    return f"native-{device.type}" if _use_native(device) else "reference"


def backend_message() -> str:
    """One line for logs: which backend is active and how to get the native one."""
    name = backend()
    if name.startswith("native"):
        return f"segblocks block ops: {name} kernels (segblocks_core._C)"
    why = f" ({_native_error})" if _native_error else ""
    return f"segblocks block ops: pure-PyTorch reference{why}; {BUILD_HINT}"


def missing_native_warning(device: Union[str, torch.device]) -> Optional[str]:
    """A warning for logs where ``device`` is a CUDA device without the extension's CUDA
    kernels (not built with CUDA, or an extension that fails to load there): the block ops
    then run on the pure-PyTorch reference, several times slower than the static network.
    None where there is nothing to warn about (the CPU, or CUDA kernels loaded)."""
    device = torch.device(device)
    if device.type != "cuda" or has_native(device):
        return None
    why = _native_error or "segblocks_core._C was built without CUDA kernels"
    return (f"segblocks block ops on {device} run on the pure-PyTorch reference ({why}), several "
            f"times slower than the static network; {BUILD_HINT}")


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Force ``"native"``, ``"reference"`` or ``"auto"`` inside the block (this thread)."""
    if name not in _VALID:
        raise ValueError(f"backend must be one of {_VALID}, got {name!r}")
    if name == "native" and _native_error is not None:
        raise RuntimeError(f"native block ops are not available: {_native_error}; {BUILD_HINT}")
    previous = _forced()
    _state.backend = name
    try:
        yield
    finally:
        _state.backend = previous


def _use_native(device: torch.device, op: str = "block_pad") -> bool:
    forced = _forced()
    if forced == "reference":
        return False
    available = has_native(device) and _has_kernel(op, device)
    if forced == "native" and not available:
        raise RuntimeError(f"no native {op} kernel for device {device}; {BUILD_HINT}")
    return available


def _has_kernel(op: str, device: torch.device) -> bool:
    """The op exists in the loaded extension and has a kernel for ``device`` (an extension
    built before an op was added lacks it; the reference then runs)."""
    if not hasattr(torch.ops.segblocks, op):
        return False
    key = {"cpu": "CPU", "cuda": "CUDA"}[device.type]
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"segblocks::{op}", key)


# ----------------------------------------------------------------------------------------
# tensor-level ops (the signatures of torch.ops.segblocks.*)
# ----------------------------------------------------------------------------------------


def split_tensor(x: Tensor, hr_pos: Tensor, lr_pos: Tensor, block_size: int) -> tuple[Tensor, Tensor]:
    if _use_native(x.device):
        return torch.ops.segblocks.split(x, hr_pos, lr_pos, block_size)
    return _reference.split(x, hr_pos, lr_pos, block_size)


def combine_tensor(highres: Tensor, lowres: Tensor, hr_pos: Tensor, lr_pos: Tensor,
                   grid_n: int, grid_h: int, grid_w: int) -> Tensor:
    if _use_native(highres.device):
        return torch.ops.segblocks.combine(highres, lowres, hr_pos, lr_pos, grid_n, grid_h, grid_w)
    return _reference.combine(highres, lowres, hr_pos, lr_pos, grid_n, grid_h, grid_w)


def split_units_tensor(x: Tensor, hr_pos: Tensor, lr_pos: Tensor, block_size: int) -> Tensor:
    # the native op has no derivative: under autograd the (differentiable) reference runs
    if _no_grad(x) and _use_native(x.device, "split_units"):
        return torch.ops.segblocks.split_units(x, hr_pos, lr_pos, block_size)
    return _reference.split_units(x, hr_pos, lr_pos, block_size)


def combine_units_tensor(highres: Tensor, lowres: Tensor, hr_pos: Tensor, lr_pos: Tensor,
                         grid_n: int, grid_h: int, grid_w: int) -> Tensor:
    if _no_grad(highres, lowres) and _use_native(highres.device, "combine_units"):
        return torch.ops.segblocks.combine_units(highres, lowres, hr_pos, lr_pos, grid_n, grid_h, grid_w)
    return _reference.combine_units(highres, lowres, hr_pos, lr_pos, grid_n, grid_h, grid_w)


def block_pad_tensor(highres: Tensor, lowres: Tensor, hr_pos: Tensor, lr_pos: Tensor,
                     block_map: Tensor, padding: int, mode: str = "constant",
                     value: float = 0.0) -> tuple[Tensor, Tensor]:
    if _use_native(highres.device):
        return torch.ops.segblocks.block_pad(highres, lowres, hr_pos, lr_pos, block_map,
                                             padding, mode, value)
    return _reference.block_pad(highres, lowres, hr_pos, lr_pos, block_map, padding, mode, value)


def _no_grad(*tensors: Optional[Tensor]) -> bool:
    """No autograd through these tensors: the native ops (no derivatives) may run."""
    return not (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors))


def block_pad_units_tensor(highres: Tensor, lowres: Tensor, hr_pos: Tensor, lr_pos: Tensor,
                           block_map: Tensor, padding: int, mode: str = "constant",
                           value: float = 0.0, quartered: bool = False,
                           pre_scale: Optional[Tensor] = None,
                           pre_shift: Optional[Tensor] = None) -> Tensor:
    # the native op has no derivative: under autograd the (differentiable) reference runs
    if _no_grad(highres, lowres, pre_scale, pre_shift) and _use_native(highres.device, "block_pad_units"):
        return torch.ops.segblocks.block_pad_units(highres, lowres, hr_pos, lr_pos, block_map,
                                                   padding, mode, value, quartered, pre_scale, pre_shift)
    return _reference.block_pad_units(highres, lowres, hr_pos, lr_pos, block_map, padding, mode,
                                      value, quartered, pre_scale, pre_shift)


def upsample_argmax_tensor(highres: Tensor, lowres: Tensor, hr_pos: Tensor, lr_pos: Tensor,
                           block_map: Tensor, factor: int) -> Tensor:
    if _use_native(highres.device, "upsample_argmax"):
        return torch.ops.segblocks.upsample_argmax(highres, lowres, hr_pos, lr_pos, block_map, factor)
    return _reference.upsample_argmax(highres, lowres, hr_pos, lr_pos, block_map, factor)


def max_pool_units_tensor(highres: Tensor, lowres: Tensor, hr_pos: Tensor, lr_pos: Tensor,
                          block_map: Tensor, kernel: int, stride: int, padding: int,
                          quartered: bool = False, out_padding: int = 0) -> Tensor:
    if _no_grad(highres, lowres) and _use_native(highres.device, "max_pool_units"):
        return torch.ops.segblocks.max_pool_units(highres, lowres, hr_pos, lr_pos, block_map, kernel,
                                                  stride, padding, quartered, out_padding)
    return _reference.max_pool_units(highres, lowres, hr_pos, lr_pos, block_map, kernel, stride,
                                     padding, quartered, out_padding)


def max_pool_units(blocks: BlockTensor, kernel: int, stride: int, padding: int, out_padding: int = 0) -> Tensor:
    """Max pooling of :func:`block_pad_units` tiles with a -inf border, without writing
    them: ``F.max_pool2d(block_pad_units(blocks, padding, "constant", -inf), kernel,
    stride)`` as ``Tensor[4*Nh + Nl, C, uo, uo]``. No indices are written.

    ``out_padding`` > 0: the output as the BlockPad-ed tiles of a zero-padded convolution,
    ``block_pad_units`` of it by ``out_padding`` px (zero image border), ``[.., uo + 2q,
    uo + 2q]``: on CUDA the pooling writes their interiors and one pass their frames
    (``block_pad_ring_``), instead of BlockPad copying the pooled map whole."""
    _check_blocks(blocks)
    layout = blocks.layout
    return max_pool_units_tensor(blocks.highres, blocks.lowres, layout.hr_pos, layout.lr_pos,
                                 layout.block_map, int(kernel), int(stride), int(padding),
                                 blocks.quartered, int(out_padding))


def max_pool_dense(x: Tensor, kernel: int, stride: int, padding: int) -> Tensor:
    """``F.max_pool2d(x, kernel, stride, padding)`` without the int64 indices PyTorch's CUDA
    kernel always writes (the native kernel where available, on a tensor without grad)."""
    _check_feature_map(x)
    if _no_grad(x) and _use_native(x.device, "max_pool_dense"):
        return torch.ops.segblocks.max_pool_dense(x, int(kernel), int(stride), int(padding))
    return _reference.max_pool_dense(x, kernel, stride, padding)


def upsample2x_units_tensor(highres: Tensor, lowres: Tensor, hr_pos: Tensor, lr_pos: Tensor,
                            block_map: Tensor, quartered: bool = False, skip: Optional[Tensor] = None,
                            post_scale: Optional[Tensor] = None, post_shift: Optional[Tensor] = None,
                            padding: int = 0) -> Tensor:
    if (_no_grad(highres, lowres, skip, post_scale, post_shift)
            and _use_native(highres.device, "upsample2x_units")):
        return torch.ops.segblocks.upsample2x_units(highres, lowres, hr_pos, lr_pos, block_map, quartered, skip,
                                                    post_scale, post_shift, padding)
    return _reference.upsample2x_units(highres, lowres, hr_pos, lr_pos, block_map, quartered, skip,
                                       post_scale, post_shift, padding)


def upsample2x_units(blocks: BlockTensor, skip: Optional[BlockTensor] = None,
                     post: Optional[tuple[Tensor, Tensor]] = None, padding: int = 0) -> BlockTensor:
    """Bilinear x2 upsampling (``align_corners=False``) of a BlockTensor, plus ``skip``:
    SwiftNet's decoder step ``interpolate(x, scale_factor=2) + skip`` in one pass.

    The result is in units (quartered, one stride finer): the same values as upsampling
    each unit's :func:`block_pad_units` tile (1 px, replicate) and cropping, but the tiles
    are never written and no halo output is computed. ``skip`` (a BlockTensor on the same
    layout at the output's block side) is added to the rounded upsampled values.

    ``post=(scale, shift)`` (``[C]`` each): the result is ``relu(x * scale + shift)`` (an eval
    BatchNorm + ReLU, the same values as :func:`block_pad_units`' ``pre``). ``padding > 0``:
    the op also writes the padded tiles of a zero-padded convolution,
    ``block_pad_units(result, padding)``, without a separate pass over the map: the
    upsampling writes their interiors and only the frames are filled afterwards. The
    result's units are then the interiors (a view), and ``result.padded`` holds the tiles
    (:meth:`BlockTensor.from_padded_units`).
    """
    _check_blocks(blocks)
    padding = int(padding)
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    layout = blocks.layout
    scale, shift = (None, None) if post is None else (post[0].reshape(-1), post[1].reshape(-1))
    out = upsample2x_units_tensor(blocks.highres, blocks.lowres, layout.hr_pos, layout.lr_pos,
                                  layout.block_map, blocks.quartered, _operand_units(skip, blocks, "skip"),
                                  scale, shift, padding)
    if padding == 0:
        return BlockTensor.from_units(out, layout)
    return BlockTensor.from_padded_units(out, padding, layout)


def upsample2x_dense(x: Tensor, skip: Optional[Tensor] = None) -> Tensor:
    """``F.interpolate(x, scale_factor=2, mode="bilinear") + skip`` in one pass (the native
    kernel where available, on tensors without grad)."""
    _check_feature_map(x)
    if _no_grad(x, skip) and _use_native(x.device, "upsample2x_dense"):
        return torch.ops.segblocks.upsample2x_dense(x, skip)
    return _reference.upsample2x_dense(x, skip)


def cell_complexity(x: Tensor, channels: int, factor: int, floor: float) -> Tensor:
    """Per-cell texture of the complexity policy (:class:`segblocks_core.policy.ComplexityPolicy`),
    float32 ``[N, H/factor, W/factor]``: the sum over the first ``channels`` channels and the
    cell's pixels of ``|x - cell mean|`` (values ``<= floor`` count as 0). One pass over ``x``
    with the native kernel (no gradient)."""
    _check_feature_map(x)
    if _no_grad(x) and _use_native(x.device, "cell_complexity"):
        return torch.ops.segblocks.cell_complexity(x, int(channels), int(factor), float(floor))
    return _reference.cell_complexity(x, int(channels), int(factor), float(floor))


def cell_complexity_frames(images: Tensor, scale: Tensor, shift: Tensor, dtype: torch.dtype, factor: int,
                           floor: float) -> Tensor:
    """:func:`cell_complexity` of ``normalize_frames(images, scale, shift, 3, dtype)`` (all
    three channels) from the uint8 frames ``[N, H, W, 3]``, each value normalised as it is
    read: the normalised map is never written (native kernel; the values are those of the
    two ops in turn)."""
    check_frames(images, dtype=dtype)
    factor = int(factor)
    if factor < 1 or images.shape[1] % factor or images.shape[2] % factor:
        raise ValueError(f"frames of shape {tuple(images.shape)} do not divide into cells of {factor} x {factor}")
    images = images.contiguous()
    if _use_native(images.device, "cell_complexity_frames"):
        return torch.ops.segblocks.cell_complexity_frames(images, scale, shift, dtype, factor, float(floor))
    return _reference.cell_complexity_frames(images, scale, shift, dtype, factor, float(floor))


def scale_shift_relu(x: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
    """``relu(x * scale + shift)`` per channel: an eval BatchNorm and its ReLU
    (:class:`segblocks_core.fused.BatchNormReLU`). One pass with the native kernel where ``x``
    is a channels_last float32/float16/bfloat16 map in 16-byte channel packs (the fast
    path's maps) and no gradient is needed; PyTorch's ``addcmul`` + ``relu_`` otherwise."""
    if (type(x) is Tensor and x.dim() == 4 and x.dtype in (torch.float32, torch.float16, torch.bfloat16)
            and x.is_contiguous(memory_format=torch.channels_last) and x.shape[1] % (16 // x.element_size()) == 0
            and _packed16(x)
            and all(type(t) is Tensor and t.dtype == x.dtype and t.device == x.device and t.numel() == x.shape[1]
                    and t.is_contiguous() and t.data_ptr() % 16 == 0 for t in (scale, shift))
            and _no_grad(x, scale, shift) and _use_native(x.device, "scale_shift_relu")):
        return torch.ops.segblocks.scale_shift_relu(x, scale.reshape(-1), shift.reshape(-1))
    return _reference.scale_shift_relu(x, scale, shift)


def normalize_frames(images: Tensor, scale: Tensor, shift: Tensor, channels: int = 3,
                     dtype: torch.dtype = torch.float32, out: Optional[Tensor] = None) -> Tensor:
    """uint8 RGB frames ``[N, H, W, 3]`` -> the network input ``[N, channels, H, W]``
    (channels_last, ``dtype``): ``x * scale + shift`` per channel (float32 ``[3]`` each) as
    one fused multiply-add rounded to float32, then to ``dtype``; channels past the third
    are 0. One pass with the native kernel (float32, float16, bfloat16); ``out``: a
    channels_last tensor to write into (returned)."""
    check_frames(images, channels=channels)
    n, h, w, _ = images.shape
    if out is None:
        out = torch.empty((n, channels, h, w), dtype=dtype, device=images.device,
                          memory_format=torch.channels_last)
    elif (tuple(out.shape) != (n, channels, h, w) or out.dtype != dtype or out.device != images.device
          or not out.is_contiguous(memory_format=torch.channels_last)):
        raise ValueError(f"out must be a channels_last {dtype} tensor of shape {(n, channels, h, w)} on "
                         f"{images.device}, got {out.dtype} {tuple(out.shape)} with strides {out.stride()}")
    images = images.contiguous()
    if dtype in (torch.float32, torch.float16, torch.bfloat16) and _use_native(images.device, "normalize_frames_"):
        torch.ops.segblocks.normalize_frames_(out, images, scale, shift)
    else:
        _reference.normalize_frames_(out, images, scale, shift)
    return out


def split_padded_frames(images: Tensor, scale: Tensor, shift: Tensor, channels: int, dtype: torch.dtype,
                        layout: BlockLayout, block_size: Optional[int] = None, padding: int = 1) -> BlockTensor:
    """:func:`split_padded` of ``normalize_frames(images, scale, shift, channels, dtype)``
    without the normalised map: the padded blocks (channels_last) straight from the uint8
    frames, each value normalised as it is read (one pass with the native kernel; the
    values are those of the two ops in turn)."""
    check_frames(images, channels=channels, dtype=dtype)
    n, h, w, _ = images.shape
    b, padding = _padded_split_args(layout, block_size, padding, (n, h, w),
                                    f"a batch of frames of shape {tuple(images.shape)}")
    images = images.contiguous()
    args = (images, scale, shift, layout.hr_pos, layout.lr_pos, layout.block_map, b, padding, channels, dtype)
    if _use_native(images.device, "split_padded_frames"):
        hr, lr = torch.ops.segblocks.split_padded_frames(*args)
    else:
        hr, lr = _reference.split_padded_frames(*args)
    return BlockTensor.from_padded_blocks(hr, lr, padding, layout)


def conv3x3_units_tensor(highres: Tensor, lowres: Tensor, hr_pos: Tensor, lr_pos: Tensor, block_map: Tensor,
                         weight: Tensor, bias: Optional[Tensor] = None, residual: Optional[Tensor] = None,
                         relu: bool = False, quartered: bool = False, stride: int = 1,
                         pre_scale: Optional[Tensor] = None, pre_shift: Optional[Tensor] = None) -> Tensor:
    if (_no_grad(highres, lowres, weight, bias, residual, pre_scale, pre_shift)
            and _use_native(highres.device, "conv3x3_units")):
        return torch.ops.segblocks.conv3x3_units(highres, lowres, hr_pos, lr_pos, block_map, weight, bias,
                                                 residual, relu, quartered, stride, pre_scale, pre_shift)
    return _reference.conv3x3_units(highres, lowres, hr_pos, lr_pos, block_map, weight, bias, residual, relu,
                                    quartered, stride, pre_scale, pre_shift)


#: The CUDA kernel's tile: input channels come in chunks of 16, output channels in tiles of 64.
CONV_UNITS_CIN_STEP, CONV_UNITS_COUT_STEP = 16, 64
#: ... and its 64 output pixels hold at least one whole row of a unit: units of at most 64 px.
CONV_UNITS_MAX_SIDE = 64


@functools.lru_cache(maxsize=None)
def _compute_capability(index: int) -> tuple[int, int]:
    return torch.cuda.get_device_capability(index)


def _packed16(t: Optional[Tensor]) -> bool:
    """channels_last with 16-byte channel packs (what the kernel loads), or absent/empty."""
    if t is None or t.numel() == 0:
        return True
    pack = 16 // t.element_size()
    # a size-1 dimension is never stepped along: its (ambiguous) stride does not count
    n, c, h, w = (s if d > 1 else (1 if i == 1 else 0) for i, (s, d) in enumerate(zip(t.stride(), t.shape)))
    return c == 1 and n % pack == 0 and h % pack == 0 and w % pack == 0 and t.data_ptr() % 16 == 0


def conv3x3_units_supported(blocks: BlockTensor, weight: Tensor, residual: Optional[BlockTensor] = None,
                            pre: Optional[tuple[Tensor, Tensor]] = None) -> bool:
    """True if :func:`conv3x3_units` runs the native CUDA kernel on these operands:
    CUDA (compute capability 8.0+), half or bfloat16, no autograd, blocks (and residual)
    channels_last in 16-byte channel packs, a ``[Co, Ci, 3, 3]`` weight with ``Ci`` a
    multiple of 16 and ``Co`` of 64, units of at most 64 px, a prologue ``pre`` of
    contiguous 16-byte aligned ``[Ci]`` vectors. Host-side checks only (no device sync)."""
    hr, lr = blocks.highres, blocks.lowres
    if pre is not None and not all(p.dtype == hr.dtype and p.shape == (hr.shape[1],) and p.is_contiguous()
                                   and p.data_ptr() % 16 == 0 and not p.requires_grad for p in pre):
        return False
    return (type(hr) is Tensor and hr.is_cuda and hr.dtype in (torch.float16, torch.bfloat16)
            and tuple(weight.shape[1:]) == (hr.shape[1], 3, 3) and weight.dtype == hr.dtype
            and hr.shape[1] % CONV_UNITS_CIN_STEP == 0 and weight.shape[0] % CONV_UNITS_COUT_STEP == 0
            and lr.shape[-1] <= CONV_UNITS_MAX_SIDE
            and _no_grad(hr, lr, weight, None if residual is None else residual.units)
            and _use_native(hr.device, "conv3x3_units")
            and _compute_capability(hr.device.index if hr.device.index is not None else torch.cuda.current_device())[0] >= 8
            and _packed16(hr) and _packed16(lr) and (residual is None or _packed16(residual.units)))


def conv3x3_units(blocks: BlockTensor, weight: Tensor, bias: Optional[Tensor] = None,
                  residual: Optional[BlockTensor] = None, relu: bool = False, stride: int = 1,
                  pre: Optional[tuple[Tensor, Tensor]] = None) -> BlockTensor:
    """A 3x3 convolution (padding 1, ``stride`` 1 or 2) of a BlockTensor with BlockPad's
    zero halo, ``+ bias + residual``, then ReLU if ``relu``; the result in units (quartered).
    ``pre=(scale, shift)``: every value read is ``relu(x * scale + shift)`` first (an eval
    BatchNorm + ReLU, as in :func:`block_pad_units`).

    Equals ``F.conv2d(block_pad_units(blocks, 1), weight, bias, stride) (+ residual.units)`` with
    the sum in float32 and one rounding. On CUDA (:func:`conv3x3_units_supported`) one
    kernel gathers each tile's halo through BlockPad's rules while it loads the GEMM
    operands, so the padded tiles are never written; elsewhere the reference runs.
    """
    _check_blocks(blocks)
    layout = blocks.layout
    z = _operand_units(residual, blocks, "residual")
    out = conv3x3_units_tensor(blocks.highres, blocks.lowres, layout.hr_pos, layout.lr_pos, layout.block_map,
                               weight, bias, z, bool(relu), blocks.quartered, int(stride),
                               *(pre if pre is not None else (None, None)))
    return BlockTensor.from_units(out, layout)


def upsample_argmax_units_tensor(units_padded: Tensor, hr_pos: Tensor, lr_pos: Tensor,
                                 block_map: Tensor, factor: int) -> Tensor:
    if _use_native(units_padded.device, "upsample_argmax_units"):
        return torch.ops.segblocks.upsample_argmax_units(units_padded, hr_pos, lr_pos, block_map, factor)
    return _reference.upsample_argmax_units(units_padded, hr_pos, lr_pos, block_map, factor)


# ----------------------------------------------------------------------------------------
# user-level ops on BlockTensor
# ----------------------------------------------------------------------------------------


def check_frames(images, *, channels: Optional[int] = None, dtype: Optional[torch.dtype] = None) -> None:
    """Raise ``ValueError`` unless ``images`` are uint8 RGB frames ``[N, H, W, 3]`` and, where
    given, ``channels`` (of the normalised map) is at least 3 and ``dtype`` (of the values
    read from the frames) is one of the fused ops' float32, float16, bfloat16."""
    if not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.dim() != 4 or images.shape[-1] != 3:
        what = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be uint8 RGB frames [N, H, W, 3], got {what}")
    if channels is not None and channels < 3:
        raise ValueError(f"channels must be >= 3 (RGB plus optional zero channels), got {channels}")
    if dtype is not None and dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"dtype must be float32, float16 or bfloat16, got {dtype}")


def _check_feature_map(x: Tensor, name: str = "x") -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name} must have shape [N, C, H, W], got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")


def _check_blocks(blocks) -> None:
    if not isinstance(blocks, BlockTensor):
        raise TypeError(f"blocks must be a BlockTensor, got {type(blocks).__name__}")


def _operand_units(other: Optional[BlockTensor], blocks: BlockTensor, name: str) -> Optional[Tensor]:
    """The units of a second BlockTensor operand (a skip, a residual), which must share
    ``blocks``' layout; None stays None."""
    if other is None:
        return None
    if not isinstance(other, BlockTensor) or other.layout is not blocks.layout:
        raise ValueError(f"{name} must be a BlockTensor on the same layout as blocks")
    return other.units


def split(x: Tensor, grid: Union[Tensor, BlockLayout], block_size: Optional[int] = None,
          units: bool = False) -> BlockTensor:
    """Split a dense map into blocks.

    Args:
        x (Tensor[N, C, H, W]): floating-point feature map; H and W multiples of the block
            side.
        grid (Tensor[N, H/b, W/b] bool or BlockLayout): True = high resolution.
        block_size: block side ``b`` in pixels of ``x``. For a layout it defaults to the
            layout's block size (stride 1).
        units: return the blocks quartered (:meth:`BlockTensor.to_quartered` of the
            result), written as units in one pass.

    Returns:
        BlockTensor with ``.highres [Nh, C, b, b]`` and ``.lowres [Nl, C, b/2, b/2]``
        (2x2 average), blocks in row-major grid order over (n, row, col); with ``units``
        ``.highres`` holds the units ``[4*Nh, C, b/2, b/2]`` and ``.units`` both halves.
    """
    _check_feature_map(x)
    if isinstance(grid, BlockLayout):
        layout = grid
        b = layout.block_size if block_size is None else int(block_size)
    else:
        if block_size is None:
            raise TypeError("split(x, grid, block_size): block_size is required with a grid")
        b = int(block_size)
        layout = None
    if b < 2 or b % 2:
        raise ValueError(f"block_size must be an even number >= 2, got {b}")
    n, _, h, w = x.shape
    if h % b or w % b:
        raise ValueError(
            f"x spatial size {h}x{w} is not a multiple of the block size {b}; pad it first "
            f"(SegBlocks pads bottom/right automatically)"
        )
    if layout is None:
        if not isinstance(grid, Tensor):
            raise TypeError(f"grid must be a bool tensor or BlockLayout, got {type(grid).__name__}")
        if tuple(grid.shape) != (n, h // b, w // b):
            raise ValueError(
                f"grid shape {tuple(grid.shape)} does not match x: expected {(n, h // b, w // b)} "
                f"for x of shape {tuple(x.shape)} and block size {b}"
            )
        layout = BlockLayout.from_grid(grid.to(x.device), b)
    elif layout.grid_shape != (n, h // b, w // b):
        raise ValueError(
            f"layout grid {layout.grid_shape} does not match x of shape {tuple(x.shape)} "
            f"with block side {b}"
        )
    if units:
        return BlockTensor.from_units(split_units_tensor(x, layout.hr_pos, layout.lr_pos, b), layout)
    highres, lowres = split_tensor(x, layout.hr_pos, layout.lr_pos, b)
    return BlockTensor(highres, lowres, layout)


def _padded_split_args(layout: BlockLayout, block_size: Optional[int], padding: int, size: tuple[int, int, int],
                       what: str) -> tuple[int, int]:
    """The block side and padding of a padded split of a map of ``size`` (N, H, W) on
    ``layout``, checked."""
    if not isinstance(layout, BlockLayout):
        raise TypeError(f"layout must be a BlockLayout, got {type(layout).__name__}")
    padding = int(padding)
    if padding < 1:
        raise ValueError(f"padding must be >= 1, got {padding}")
    b = layout.block_size if block_size is None else int(block_size)
    n, h, w = size
    if b < 2 or b % 2 or h % b or w % b or layout.grid_shape != (n, h // b, w // b):
        raise ValueError(f"{what} does not split into the layout's grid {layout.grid_shape} with block side {b}")
    return b, padding


def split_padded(x: Tensor, layout: BlockLayout, block_size: Optional[int] = None,
                 padding: int = 1) -> BlockTensor:
    """:func:`split` into tiles BlockPad-ed by ``padding`` px with a zero image border, the
    input of a zero-padded convolution: ``block_pad(split(x, layout), padding)``, written in
    one pass over ``x`` (the native kernel on a tensor without grad). The result's blocks
    are the tiles' interiors and ``result.padded`` holds the tiles
    (:meth:`BlockTensor.from_padded_blocks`)."""
    _check_feature_map(x)
    n, _, h, w = x.shape
    b, padding = _padded_split_args(layout, block_size, padding, (n, h, w), f"x of shape {tuple(x.shape)}")
    args = (x, layout.hr_pos, layout.lr_pos, layout.block_map, b, padding)
    if _no_grad(x) and _use_native(x.device, "split_padded"):
        hr, lr = torch.ops.segblocks.split_padded(*args)
    else:
        hr, lr = _reference.split_padded(*args)
    return BlockTensor.from_padded_blocks(hr, lr, padding, layout)


def combine(blocks: BlockTensor) -> Tensor:
    """Blocks back to a dense map ``[N, C, GH*h, GW*h]``: high-res copied, low-res
    upsampled x2 (nearest). Quartered blocks are read as units, in place."""
    layout = blocks.layout
    if blocks.quartered:
        return combine_units_tensor(blocks.highres, blocks.lowres, layout.hr_pos, layout.lr_pos,
                                    *layout.grid_shape)
    return combine_tensor(blocks.highres, blocks.lowres, layout.hr_pos, layout.lr_pos,
                          *layout.grid_shape)


def _check_pad_args(blocks: BlockTensor, padding: int, mode: str) -> int:
    _check_blocks(blocks)
    padding = int(padding)
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    if mode not in _reference.PAD_MODES:
        raise ValueError(f"mode must be one of {_reference.PAD_MODES}, got {mode!r}")
    return padding


def block_pad(blocks: BlockTensor, padding: int, mode: str = "constant",
              value: float = 0.0) -> tuple[Tensor, Tensor]:
    """BlockPad (DESIGN.md section 3): pad each block with pixels of its neighbours.

    Args:
        blocks: the block tensor.
        padding: pixels on every side, ``>= 0``. Up to the low-res block side the halo
            comes from direct neighbours only; beyond it (e.g. p=3 around a 2-px block)
            the same rules reach the next blocks, exactly as zero padding of the dense map
            would.
        mode: ``"constant"`` (image border = ``value``; 0 for convolutions, -inf for max
            pooling) or ``"replicate"`` (image border = nearest image pixel).
        value: the constant for ``mode="constant"``.

    Returns:
        ``(highres [Nh, C, h+2p, h+2p], lowres [Nl, C, h/2+2p, h/2+2p])``.
    """
    padding = _check_pad_args(blocks, padding, mode)
    blocks = blocks.to_standard()
    if padding == 0:
        return blocks.highres, blocks.lowres
    layout = blocks.layout
    return block_pad_tensor(blocks.highres, blocks.lowres, layout.hr_pos, layout.lr_pos,
                            layout.block_map, padding, mode, float(value))


def block_pad_units(blocks: BlockTensor, padding: int, mode: str = "constant",
                    value: float = 0.0, pre: Optional[tuple[Tensor, Tensor]] = None) -> Tensor:
    """BlockPad into tiles of one size, for one convolution over both resolutions.

    Each high-res block is cut into its four quarters ("units", the low-res block side
    ``h/2``), and every unit and every low-res block is padded on its own with the rules
    of :func:`block_pad` (a unit's halo inside its own block is the block itself).

    ``pre=(scale, shift)`` (``[C]`` each): pad ``relu(blocks * scale + shift)`` instead,
    without writing it (an eval BatchNorm + ReLU before a convolution, in the same pass).

    Returns:
        ``Tensor[4*Nh + Nl, C, h/2+2p, h/2+2p]``: unit ``4k + 2*qy + qx`` of high-res block
        ``k`` (quarter rows ``qy``, columns ``qx``), then the low-res blocks. The output of
        a convolution over it is a quartered BlockTensor (:meth:`BlockTensor.from_units`).
    """
    padding = _check_pad_args(blocks, padding, mode)
    layout = blocks.layout
    scale, shift = (None, None) if pre is None else (pre[0].reshape(-1), pre[1].reshape(-1))
    return block_pad_units_tensor(blocks.highres, blocks.lowres, layout.hr_pos, layout.lr_pos,
                                  layout.block_map, padding, mode, float(value), blocks.quartered,
                                  scale, shift)


def _check_classes(channels: int) -> None:
    if not 1 <= channels <= 256:
        raise ValueError(f"labels are uint8, so the logits need 1 to 256 channels, got {channels}")


def _check_head(channels: int, factor) -> int:
    if int(factor) != factor or factor < 1:
        raise ValueError(f"factor must be an integer >= 1, got {factor}")
    _check_classes(channels)
    return int(factor)


def argmax_labels(logits: Tensor) -> Tensor:
    """Class ids ``[N, H, W]`` (uint8) of logits ``[N, C, H, W]`` already at full size."""
    _check_feature_map(logits, "logits")
    _check_classes(logits.shape[1])
    return logits.argmax(1).to(torch.uint8)


def upsample_argmax(blocks: BlockTensor, factor: int, classes: Optional[int] = None) -> Tensor:
    """Class labels of block logits upsampled by ``factor``, in one pass.

    Equals ``combine(block_interpolate(blocks, factor, "bilinear")).argmax(1)`` (the last
    layers of a segmentation network run in blocks, then the class decision) but never
    writes the upsampled logits: the labels come straight from the block logits.

    Args:
        blocks: logits as a BlockTensor (``highres [Nh, C, h, h]``, C <= 256).
        factor: integer upsampling factor (bilinear, ``align_corners=False``).
        classes: decide among the first ``classes`` channels only (``1 <= classes <= C``;
            default: all). For logits padded to whole 16-byte packs
            (:class:`segblocks_core.fused.ChannelPaddedConv2d`): the padding runs on all C
            channels, in packs, and the argmax reads the first ``classes``.

    Returns:
        ``Tensor[N, GH*h*factor, GW*h*factor]`` of dtype uint8.
    """
    _check_blocks(blocks)
    channels = blocks.highres.shape[1]
    if classes is None:
        classes = channels
    elif isinstance(classes, bool) or int(classes) != classes or not 1 <= classes <= channels:
        raise ValueError(f"classes must be an integer in [1, {channels}] (the logits' channels), got {classes!r}")
    classes = int(classes)
    factor = _check_head(classes, factor)
    layout = blocks.layout
    if blocks.quartered:  # tiles of one size: pad them, then the lookup-free head
        units = block_pad_units(blocks, 1, "replicate")[:, :classes]
        return upsample_argmax_units_tensor(units, layout.hr_pos, layout.lr_pos, layout.block_map, factor)
    return upsample_argmax_tensor(blocks.highres[:, :classes], blocks.lowres[:, :classes], layout.hr_pos,
                                  layout.lr_pos, layout.block_map, factor)


def upsample_argmax_dense(logits: Tensor, factor: int) -> Tensor:
    """Class labels ``[N, h*f, w*f]`` (uint8) of ``F.interpolate(logits, size=(h*f, w*f),
    mode="bilinear").argmax(1)``, without writing the upsampled logits."""
    _check_feature_map(logits, "logits")
    factor = _check_head(logits.shape[1], factor)
    if _use_native(logits.device, "upsample_argmax_dense"):
        return torch.ops.segblocks.upsample_argmax_dense(logits, factor)
    return _reference.upsample_argmax_dense(logits, factor)


# ----------------------------------------------------------------------------------------
# convolutions into padded tiles
# ----------------------------------------------------------------------------------------


def block_pad_ring_(padded: Tensor, layout: BlockLayout, padding: int) -> Tensor:
    """Fill the ``padding``-px frames of ``padded`` ``[4*Nh + Nl, C, u+2p, u+2p]``, tiles of
    :func:`block_pad_units` (zero image border) whose interiors a producer has written, from
    those interiors by BlockPad's rules, in place: afterwards ``padded`` equals
    ``block_pad_units`` of its interiors. Only the frames are written. Returns ``padded``."""
    if not isinstance(layout, BlockLayout):
        raise TypeError(f"layout must be a BlockLayout, got {type(layout).__name__}")
    padding = int(padding)
    args = (padded, layout.hr_pos, layout.lr_pos, layout.block_map, padding)
    if _no_grad(padded) and _use_native(padded.device, "block_pad_ring_"):
        torch.ops.segblocks.block_pad_ring_(*args)
    else:
        if padded.dim() != 4 or padded.shape[-1] != padded.shape[-2] or padding < 1 \
                or padded.shape[-1] <= 2 * padding or padded.shape[0] != 4 * layout.num_highres + layout.num_lowres:
            raise ValueError(f"padded must be [4*Nh + Nl, C, u+2p, u+2p] tiles of the layout with padding >= 1, "
                             f"got {tuple(padded.shape)} and padding {padding}")
        _reference.block_pad_ring_(*args)
    return padded


def halo_index(layout: BlockLayout, side: int):
    """The :class:`segblocks_core.halo.HaloIndex` of ``layout``'s units of side ``side``, in
    its fixed form (``halo.halo_index(layout, side, fixed=True)``, the reference: every shape
    from the block counts, no host synchronisation): one native kernel on the layout's
    device where built, else the reference's PyTorch ops."""
    from ..halo import HaloIndex, halo_index as reference
    if not isinstance(layout, BlockLayout):
        raise TypeError(f"layout must be a BlockLayout, got {type(layout).__name__}")
    side = int(side)
    if side < 1:
        raise ValueError(f"side must be >= 1, got {side}")
    if not _use_native(layout.device, "halo_index"):
        return reference(layout, side, fixed=True)
    index, mean_rows = torch.ops.segblocks.halo_index(layout.hr_pos, layout.lr_pos, layout.block_map, side)
    return HaloIndex(side, index, mean_rows, (4 * layout.num_highres + layout.num_lowres) * side * side)


def halo_means_(source: Tensor, halo) -> Tensor:
    """Fill the mean rows and the zero row of ``source [halo.rows, C]`` (a
    :class:`segblocks_core.halo.HaloIndex`'s source, its unit rows written) in place, as
    ``halo.halo_means_`` (the reference) does: one native kernel where built. Returns
    ``source``."""
    from ..halo import halo_means_ as reference
    if _no_grad(source) and _use_native(source.device, "halo_means_") and source.is_contiguous() \
            and source.dim() == 2 and source.shape[0] == halo.rows and halo.mean_rows.device == source.device:
        torch.ops.segblocks.halo_means_(source, halo.mean_rows, halo.unit_rows)
        return source
    return reference(source, halo)


def programmatic_launch() -> bool:
    """Whether the extension's CUDA kernels (and the persistent CUTLASS convolutions) are
    launched programmatically on the current CUDA device: each may start while the kernel
    before it ends, its blocks waiting for that one's results (compute capability 9.0+;
    ``csrc/ops/cuda/pdl.cuh``). ``SEGBLOCKS_PDL=0`` in the environment turns it off. False
    without the CUDA kernels or a GPU."""
    if _native_error is not None or not has_native("cuda"):
        return False
    from .. import _C
    return bool(_C.programmatic_launch())


def programmatic_prefetch() -> bool:
    """Whether, with :func:`programmatic_launch`, the BlockPad passes (full and frames) look
    up where each element reads from before they wait for the kernel before them, so that the
    lookups overlap its end. On by default; ``SEGBLOCKS_PDL_PREFETCH=0`` in the environment turns
    it off (the one-phase passes: each element looks up after the wait)."""
    if not programmatic_launch():
        return False
    from .. import _C
    return bool(_C.programmatic_prefetch())


@functools.lru_cache(maxsize=None)
def cutlass_conv_configs() -> tuple[str, ...]:
    """The CUDA kernel configurations of :func:`conv_into_` (``config`` indexes them; tile
    ``MxNxK`` and pipeline stages): the CUTLASS convolutions of ``segblocks_core._cutlass``,
    built for Hopper (sm_90a) where CUTLASS was found at build time. Empty without them."""
    try:
        from .. import _cutlass as kernels
    except ImportError:
        return ()
    return tuple(kernels.configs())


def conv_into_(out: Tensor, x: Tensor, weight: Tensor, bias: Tensor, residual: Optional[Tensor] = None,
               stride: int = 1, padding: int = 0, config: int = 0) -> Tensor:
    """``relu(conv2d(x, weight, bias, stride, padding) + residual)`` written into ``out``
    ``[N, K, P, Q]``, which may be any view with channel stride 1: e.g. the interiors of the
    next convolution's BlockPad-ed tiles (then :func:`block_pad_ring_` completes them), which
    cuDNN cannot write. ``residual`` likewise. On CUDA the CUTLASS kernel ``config``
    (:func:`cutlass_conv_configs`; float16, channels_last, channels multiples of 8); on the CPU
    (and without the kernels) the reference. Returns ``out``."""
    args = (out, x, weight, bias, residual, int(stride), int(padding), int(config))
    if _no_grad(x, weight, bias, residual) and _use_native(x.device, "conv_into_"):
        torch.ops.segblocks.conv_into_(*args)
    else:
        _reference.conv_into_(*args)
    return out
