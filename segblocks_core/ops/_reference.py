"""Pure-PyTorch reference block ops: the oracle for every native kernel.

These run on any device and floating dtype and are differentiable through autograd. They
favour obvious correctness over speed: BlockPad builds the dense map at the block's own
resolution (low-res neighbours upsampled by nearest, high-res neighbours averaged 2x2),
pads it at the image border and cuts the padded windows out. That single construction is
exactly the rule set of DESIGN.md section 3:

* image border -> ``value`` (``mode="constant"``) or the nearest image pixel
  (``mode="replicate"``, used by bilinear upsampling to match its edge clamping);
* same-resolution neighbour -> copy; corner -> the diagonal neighbour;
* low-res block, high-res neighbour -> mean of the matching 2x2 high-res pixels;
* high-res block, low-res neighbour -> nearest low-res pixel (h // 2, w // 2);
* images of a batch never mix and rows never wrap (each image is padded on its own).

Tensor-level signatures (shared with the native ops ``torch.ops.segblocks.*``):

* ``split(x, hr_pos, lr_pos, block_size) -> (highres, lowres)``
* ``combine(highres, lowres, hr_pos, lr_pos, grid_n, grid_h, grid_w) -> x``
* ``block_pad(highres, lowres, hr_pos, lr_pos, block_map, padding, mode, value)
  -> (highres_padded, lowres_padded)``
* ``block_pad_units(highres, lowres, hr_pos, lr_pos, block_map, padding, mode, value,
  quartered, pre_scale=None, pre_shift=None) -> units_padded``

``hr_pos``/``lr_pos`` are int64 flat grid positions ``n*GH*GW + r*GW + c`` (each position
appears in exactly one of them); ``block_map`` is the int32 ``[N, GH, GW]`` slot map of
:class:`segblocks_core.layout.BlockLayout`.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

PAD_MODES = ("constant", "replicate")


def _unflatten_pos(pos: Tensor, grid_h: int, grid_w: int) -> tuple[Tensor, Tensor, Tensor]:
    per_image = grid_h * grid_w
    return pos // per_image, (pos % per_image) // grid_w, pos % grid_w


def _windows(x: Tensor, size: int, step: int) -> Tensor:
    """``[N, C, H, W]`` -> overlapping windows ``[N, C, GH, GW, size, size]`` (a view)."""
    return x.unfold(2, size, step).unfold(3, size, step)


def split(x: Tensor, hr_pos: Tensor, lr_pos: Tensor, block_size: int) -> tuple[Tensor, Tensor]:
    """Cut ``x [N, C, GH*b, GW*b]`` into high-res blocks ``[Nh, C, b, b]`` and low-res
    blocks ``[Nl, C, b/2, b/2]`` (2x2 average)."""
    b = block_size
    _, _, h, w = x.shape
    gh, gw = h // b, w // b
    win = _windows(x, b, b)
    n_idx, r_idx, c_idx = _unflatten_pos(hr_pos, gh, gw)
    highres = win[n_idx, :, r_idx, c_idx]
    n_idx, r_idx, c_idx = _unflatten_pos(lr_pos, gh, gw)
    lowres = F.avg_pool2d(win[n_idx, :, r_idx, c_idx], 2)
    return highres.contiguous(), lowres.contiguous()


def split_padded(x: Tensor, hr_pos: Tensor, lr_pos: Tensor, block_map: Tensor, block_size: int,
                 padding: int) -> tuple[Tensor, Tensor]:
    """:func:`block_pad` (``padding`` px, zero border) of :func:`split`'s blocks."""
    highres, lowres = split(x, hr_pos, lr_pos, block_size)
    return block_pad(highres, lowres, hr_pos, lr_pos, block_map, padding, "constant", 0.0)


def _assemble(blocks_hr: Tensor, blocks_lr: Tensor, hr_pos: Tensor, lr_pos: Tensor,
              grid_n: int, grid_h: int, grid_w: int) -> Tensor:
    """Place same-sized blocks ``[Nh, C, s, s]`` and ``[Nl, C, s, s]`` into a dense map."""
    blocks = torch.cat([blocks_hr, blocks_lr])
    total = grid_n * grid_h * grid_w
    order = torch.empty(total, dtype=torch.long, device=blocks.device)
    order[hr_pos] = torch.arange(hr_pos.shape[0], device=blocks.device)
    order[lr_pos] = hr_pos.shape[0] + torch.arange(lr_pos.shape[0], device=blocks.device)
    c, s = blocks.shape[1], blocks.shape[-1]
    full = blocks[order].view(grid_n, grid_h, grid_w, c, s, s)
    return full.permute(0, 3, 1, 4, 2, 5).reshape(grid_n, c, grid_h * s, grid_w * s)


def _upsample2(x: Tensor) -> Tensor:
    return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


def combine(highres: Tensor, lowres: Tensor, hr_pos: Tensor, lr_pos: Tensor,
            grid_n: int, grid_h: int, grid_w: int) -> Tensor:
    """Dense map at high-res resolution: high-res blocks copied, low-res upsampled x2
    (nearest)."""
    return _assemble(highres, _upsample2(lowres), hr_pos, lr_pos, grid_n, grid_h, grid_w)


def combine_lowres(highres: Tensor, lowres: Tensor, hr_pos: Tensor, lr_pos: Tensor,
                   grid_n: int, grid_h: int, grid_w: int) -> Tensor:
    """Dense map at low-res resolution: high-res blocks 2x2-averaged, low-res copied."""
    return _assemble(F.avg_pool2d(highres, 2), lowres, hr_pos, lr_pos, grid_n, grid_h, grid_w)


def _pad_dense(x: Tensor, padding: int, mode: str, value: float) -> Tensor:
    if mode == "constant":
        return F.pad(x, (padding,) * 4, mode="constant", value=value)
    return F.pad(x, (padding,) * 4, mode="replicate")


def _cut_windows(dense: Tensor, pos: Tensor, side: int, padding: int, mode: str,
                 value: float, grid_h: int, grid_w: int) -> Tensor:
    padded = _pad_dense(dense, padding, mode, value)
    win = _windows(padded, side + 2 * padding, side)
    n_idx, r_idx, c_idx = _unflatten_pos(pos, grid_h, grid_w)
    return win[n_idx, :, r_idx, c_idx].contiguous()


def block_pad(highres: Tensor, lowres: Tensor, hr_pos: Tensor, lr_pos: Tensor,
              block_map: Tensor, padding: int, mode: str = "constant",
              value: float = 0.0) -> tuple[Tensor, Tensor]:
    """BlockPad: pad every block with ``padding`` pixels taken from its neighbours.

    Returns ``highres [Nh, C, h+2p, h+2p]`` and ``lowres [Nl, C, h/2+2p, h/2+2p]``.
    """
    if mode not in PAD_MODES:
        raise ValueError(f"mode must be one of {PAD_MODES}, got {mode!r}")
    grid_n, grid_h, grid_w = block_map.shape
    h = highres.shape[-1]
    args = (hr_pos, lr_pos, grid_n, grid_h, grid_w)
    if hr_pos.shape[0] > 0:
        dense = combine(highres, lowres, *args)
        hr_out = _cut_windows(dense, hr_pos, h, padding, mode, value, grid_h, grid_w)
    else:
        hr_out = highres.new_empty((0, highres.shape[1], h + 2 * padding, h + 2 * padding))
    if lr_pos.shape[0] > 0:
        dense = combine_lowres(highres, lowres, *args)
        lr_out = _cut_windows(dense, lr_pos, h // 2, padding, mode, value, grid_h, grid_w)
    else:
        lr_out = lowres.new_empty((0, lowres.shape[1], h // 2 + 2 * padding, h // 2 + 2 * padding))
    return hr_out, lr_out


def _channels_last(t: Tensor) -> bool:  # the native ops' output memory format rule
    return t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)


def quarter(highres: Tensor) -> Tensor:
    """High-res blocks ``[Nh, C, h, h]`` as their quarters ("units") ``[4*Nh, C, h/2, h/2]``:
    unit ``4k + 2*qy + qx`` is rows ``qy*h/2 ...`` and columns ``qx*h/2 ...`` of block k.
    One copy; channels_last stays channels_last."""
    n, c, h, _ = highres.shape
    u = h // 2
    if _channels_last(highres):
        t = highres.permute(0, 2, 3, 1).reshape(n, 2, u, 2, u, c).permute(0, 1, 3, 2, 4, 5)
        return t.reshape(4 * n, u, u, c).permute(0, 3, 1, 2)
    return highres.reshape(n, c, 2, u, 2, u).permute(0, 2, 4, 1, 3, 5).reshape(4 * n, c, u, u)


def unquarter(units: Tensor) -> Tensor:
    """Inverse of :func:`quarter`: ``[4*Nh, C, u, u]`` -> ``[Nh, C, 2u, 2u]``."""
    n4, c, u, _ = units.shape
    n = n4 // 4
    if _channels_last(units):
        t = units.permute(0, 2, 3, 1).reshape(n, 2, 2, u, u, c).permute(0, 1, 3, 2, 4, 5)
        return t.reshape(n, 2 * u, 2 * u, c).permute(0, 3, 1, 2)
    return units.reshape(n, 2, 2, c, u, u).permute(0, 3, 1, 4, 2, 5).reshape(n, c, 2 * u, 2 * u)


def split_units(x: Tensor, hr_pos: Tensor, lr_pos: Tensor, block_size: int) -> Tensor:
    """:func:`split`'s blocks as units ``[4*Nh + Nl, C, b/2, b/2]``: the high-res blocks'
    quarters (:func:`quarter`), then the low-res blocks."""
    highres, lowres = split(x, hr_pos, lr_pos, block_size)
    return torch.cat([quarter(highres), lowres])


def combine_units(highres: Tensor, lowres: Tensor, hr_pos: Tensor, lr_pos: Tensor,
                  grid_n: int, grid_h: int, grid_w: int) -> Tensor:
    """:func:`combine` with ``highres`` given as units ``[4*Nh, C, u, u]``."""
    return combine(unquarter(highres), lowres, hr_pos, lr_pos, grid_n, grid_h, grid_w)


def block_pad_units(highres: Tensor, lowres: Tensor, hr_pos: Tensor, lr_pos: Tensor,
                    block_map: Tensor, padding: int, mode: str = "constant", value: float = 0.0,
                    quartered: bool = False, pre_scale: Optional[Tensor] = None,
                    pre_shift: Optional[Tensor] = None) -> Tensor:
    """BlockPad into tiles of one size: ``[4*Nh + Nl, C, h/2+2p, h/2+2p]``, each high-res
    block's four quarters padded on their own (windows of the padded block), then the padded
    low-res blocks. ``quartered``: ``highres`` is given as units (:func:`quarter`).
    ``pre_scale``/``pre_shift`` ``[C]``: the blocks are ``relu(x * scale + shift)`` first."""
    if pre_scale is not None:
        def pre(t):
            return torch.addcmul(pre_shift.view(-1, 1, 1), t, pre_scale.view(-1, 1, 1)).relu_()
        highres, lowres = pre(highres), pre(lowres)
    if quartered:
        highres = unquarter(highres)
    hr_pad, lr_pad = block_pad(highres, lowres, hr_pos, lr_pos, block_map, padding, mode, value)
    n, c = hr_pad.shape[:2]
    u = lowres.shape[-1]
    w = u + 2 * padding
    units = hr_pad.unfold(2, w, u).unfold(3, w, u)  # [Nh, C, 2, 2, w, w]
    units = units.permute(0, 2, 3, 1, 4, 5).reshape(4 * n, c, w, w)
    return torch.cat([units, lr_pad])


def max_pool_units(highres: Tensor, lowres: Tensor, hr_pos: Tensor, lr_pos: Tensor, block_map: Tensor,
                   kernel: int, stride: int, padding: int, quartered: bool = False, out_padding: int = 0) -> Tensor:
    """Max pooling of :func:`block_pad_units` tiles (-inf border): ``[4*Nh + Nl, C, uo, uo]``;
    ``out_padding``: :func:`block_pad_units` of that (zero border), ``[.., uo + 2q, uo + 2q]``."""
    units = block_pad_units(highres, lowres, hr_pos, lr_pos, block_map, padding, "constant",
                            float("-inf"), quartered)
    out = F.max_pool2d(units, kernel, stride)
    if out_padding == 0:
        return out
    nh = 4 * hr_pos.shape[0]
    return block_pad_units(out[:nh], out[nh:], hr_pos, lr_pos, block_map, out_padding, "constant", 0.0, True)


def conv3x3_units(highres: Tensor, lowres: Tensor, hr_pos: Tensor, lr_pos: Tensor, block_map: Tensor,
                  weight: Tensor, bias: Optional[Tensor] = None, residual: Optional[Tensor] = None,
                  relu: bool = False, quartered: bool = False, stride: int = 1,
                  pre_scale: Optional[Tensor] = None, pre_shift: Optional[Tensor] = None,
                  splits: int = 0) -> Tensor:
    """3x3 convolution (``stride`` 1 or 2) of :func:`block_pad_units` tiles (1 px, zero
    border): ``[4*Nh + Nl, Co, uo, uo]``, ``+ bias + residual``, then ReLU if ``relu``. The
    sum is formed in float32 (float64 for float64) and rounded to the dtype once.
    ``pre_scale``/``pre_shift``: BlockPad's prologue (:func:`block_pad_units`). ``splits``
    (the CUDA kernel's split-K) does not change the result."""
    units = block_pad_units(highres, lowres, hr_pos, lr_pos, block_map, 1, "constant", 0.0, quartered,
                            pre_scale, pre_shift)
    acc = torch.float64 if units.dtype == torch.float64 else torch.float32
    y = F.conv2d(units.to(acc), weight.to(acc), None if bias is None else bias.to(acc), stride)
    if residual is not None:
        y = y + residual.to(acc)
    if relu:
        y = y.relu()
    return y.to(units.dtype)


def max_pool_dense(x: Tensor, kernel: int, stride: int, padding: int) -> Tensor:
    return F.max_pool2d(x, kernel, stride, padding)


def _upsample_blocks(blocks: Tensor, factor: int) -> Tensor:
    """Bilinear x ``factor`` of BlockPad-ed (1 px, replicate) blocks, cropped back."""
    up = F.interpolate(blocks, scale_factor=factor, mode="bilinear", align_corners=False)
    return up[:, :, factor:up.shape[2] - factor, factor:up.shape[3] - factor]


def scale_shift_relu(x: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
    """``relu(x * scale + shift)`` per channel (``scale``/``shift``: ``C`` values), one fused
    multiply-add in float32 rounded once, as PyTorch's ``addcmul`` then ``relu_``."""
    view = (1, -1, 1, 1)
    return torch.addcmul(shift.reshape(view), x, scale.reshape(view)).relu_()


def normalize_frames_(out: Tensor, images: Tensor, scale: Tensor, shift: Tensor) -> None:
    """uint8 ``[N, H, W, 3]`` frames into ``out`` ``[N, C, H, W]``: channel ``c < 3`` is
    ``images[..., c] * scale[c] + shift[c]`` as one fused multiply-add (the exact value
    rounded to float32: computed in float64, exact for 8-bit pixels and the engine's
    constants), then rounded to ``out``'s dtype; channels from the fourth on are 0."""
    value = images.double() * scale.double() + shift.double()
    out[:, 3:].zero_()
    out[:, :3].copy_(value.float().permute(0, 3, 1, 2))


def split_padded_frames(images: Tensor, scale: Tensor, shift: Tensor, hr_pos: Tensor, lr_pos: Tensor,
                        block_map: Tensor, block_size: int, padding: int, channels: int,
                        dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """:func:`split_padded` of :func:`normalize_frames_`'s map of ``images`` (channels_last)."""
    n, h, w, _ = images.shape
    x = torch.empty((n, channels, h, w), dtype=dtype, device=images.device, memory_format=torch.channels_last)
    normalize_frames_(x, images, scale, shift)
    return split_padded(x, hr_pos, lr_pos, block_map, block_size, padding)


def cell_complexity_frames(images: Tensor, scale: Tensor, shift: Tensor, dtype: torch.dtype, factor: int,
                           floor: float) -> Tensor:
    """:func:`cell_complexity` of :func:`normalize_frames_`'s 3-channel map of ``images``."""
    n, h, w, _ = images.shape
    x = torch.empty((n, 3, h, w), dtype=dtype, device=images.device, memory_format=torch.channels_last)
    normalize_frames_(x, images, scale, shift)
    return cell_complexity(x, 3, factor, floor)


def cell_complexity(x: Tensor, channels: int, factor: int, floor: float) -> Tensor:
    """The complexity policy's per-cell texture, float32 ``[N, H/f, W/f]``: per ``f x f``
    cell, the sum over the first ``channels`` channels and its pixels of
    ``|x - cell mean|``, values ``<= floor`` counted as 0."""
    x = x[:, :channels].float()
    n, c, h, w = x.shape
    patches = x.reshape(n, c, h // factor, factor, w // factor, factor)
    diff = (patches - patches.mean((3, 5), keepdim=True)).abs_()
    return F.threshold(diff, floor, 0.0).sum((1, 3, 5))


def upsample2x_units(highres: Tensor, lowres: Tensor, hr_pos: Tensor, lr_pos: Tensor, block_map: Tensor,
                     quartered: bool = False, skip: Optional[Tensor] = None,
                     post_scale: Optional[Tensor] = None, post_shift: Optional[Tensor] = None,
                     padding: int = 0) -> Tensor:
    """Bilinear x2 of :func:`block_pad_units` tiles (1 px, replicate), cropped back:
    ``[4*Nh + Nl, C, h, h]``, the units one stride finer; plus ``skip`` if given. With
    ``post_scale``/``post_shift`` or ``padding``: :func:`block_pad_units` of that (``padding``
    px, zero border, ``relu(x * post_scale + post_shift)`` as its prologue),
    ``[4*Nh + Nl, C, h + 2p, h + 2p]``: a zero-padded convolution's input tiles."""
    units = block_pad_units(highres, lowres, hr_pos, lr_pos, block_map, 1, "replicate", 0.0, quartered)
    up = _upsample_blocks(units, 2)
    up = up if skip is None else up + skip
    if post_scale is None and padding == 0:
        return up
    nh = 4 * hr_pos.shape[0]
    return block_pad_units(up[:nh], up[nh:], hr_pos, lr_pos, block_map, padding, "constant", 0.0, True,
                           post_scale, post_shift)


def upsample2x_dense(x: Tensor, skip: Optional[Tensor] = None) -> Tensor:
    up = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    return up if skip is None else up + skip


def _labels(logits: Tensor) -> Tensor:
    if not 1 <= logits.shape[1] <= 256:
        raise ValueError(f"labels are uint8, so the logits need 1 to 256 channels, got {logits.shape[1]}")
    return logits.argmax(1).to(torch.uint8)


def upsample_logits(highres: Tensor, lowres: Tensor, hr_pos: Tensor, lr_pos: Tensor,
                    block_map: Tensor, factor: int) -> Tensor:
    """Dense logits ``[N, C, GH*h*f, GW*h*f]`` of blocks upsampled x ``factor`` (bilinear
    with a 1-px replicate BlockPad halo, as the executor's block_interpolate)."""
    grid_n, grid_h, grid_w = block_map.shape
    hr_pad, lr_pad = block_pad(highres, lowres, hr_pos, lr_pos, block_map, 1, "replicate")
    return combine(_upsample_blocks(hr_pad, factor), _upsample_blocks(lr_pad, factor), hr_pos,
                   lr_pos, grid_n, grid_h, grid_w)


def upsample_argmax(highres: Tensor, lowres: Tensor, hr_pos: Tensor, lr_pos: Tensor,
                    block_map: Tensor, factor: int) -> Tensor:
    """Class labels ``[N, GH*h*f, GW*h*f]`` (uint8) of block logits upsampled x ``factor``:
    ``argmax(combine(block_interpolate(blocks, factor, "bilinear")), dim=1)``."""
    return _labels(upsample_logits(highres, lowres, hr_pos, lr_pos, block_map, factor))


def upsample_logits_units(units_padded: Tensor, hr_pos: Tensor, lr_pos: Tensor, block_map: Tensor,
                          factor: int) -> Tensor:
    """Dense logits of :func:`block_pad_units` tiles (padding 1, replicate) upsampled x
    ``factor``: each tile upsampled and cropped on its own, the high-res units reassembled
    into blocks, then combined."""
    grid_n, grid_h, grid_w = block_map.shape
    nh = 4 * hr_pos.shape[0]
    up = _upsample_blocks(units_padded, factor)
    return combine(unquarter(up[:nh]), up[nh:], hr_pos, lr_pos, grid_n, grid_h, grid_w)


def upsample_argmax_units(units_padded: Tensor, hr_pos: Tensor, lr_pos: Tensor, block_map: Tensor,
                          factor: int) -> Tensor:
    """Class labels (uint8) of :func:`upsample_logits_units`: equal to
    :func:`upsample_argmax` of the blocks the tiles were padded from."""
    return _labels(upsample_logits_units(units_padded, hr_pos, lr_pos, block_map, factor))


def upsample_logits_dense(logits: Tensor, factor: int) -> Tensor:
    h, w = logits.shape[-2:]
    return F.interpolate(logits, size=(h * factor, w * factor), mode="bilinear", align_corners=False)


def upsample_argmax_dense(logits: Tensor, factor: int) -> Tensor:
    """Class labels ``[N, h*f, w*f]`` (uint8) of
    ``F.interpolate(logits, size=(h*f, w*f), mode="bilinear")``."""
    return _labels(upsample_logits_dense(logits, factor))


def block_pad_ring_(padded: Tensor, hr_pos: Tensor, lr_pos: Tensor, block_map: Tensor, padding: int) -> None:
    """Fill the ``padding``-px frames of ``padded`` ``[4*Nh + Nl, C, u+2p, u+2p]`` (tiles of
    :func:`block_pad_units`, quartered, zero image border) from their interiors, in place."""
    n = 4 * hr_pos.shape[0]
    u = padded.shape[-1] - 2 * padding
    interior = padded[:, :, padding:padding + u, padding:padding + u]
    padded.copy_(block_pad_units(interior[:n], interior[n:], hr_pos, lr_pos, block_map, padding, "constant", 0.0,
                                 quartered=True))


def conv_into_(out: Tensor, x: Tensor, weight: Tensor, bias: Tensor, residual: Optional[Tensor], stride: int,
               padding: int, config: int) -> None:
    """``relu(conv2d(x, weight, bias, stride, padding) + residual)`` written into ``out``
    (any view; ``config`` names a CUDA kernel configuration and does not change the values)."""
    y = F.conv2d(x, weight, bias, stride, padding)
    if residual is not None:
        y = y + residual
    out.copy_(y.relu())
