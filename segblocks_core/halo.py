"""Halo indices: BlockPad-ed units as an index over their own pixels, not a copy.

:func:`segblocks_core.ops.block_pad_units` writes every unit's padded tile (its pixels and a
1-px frame taken from the neighbours by BlockPad's rules), and a convolution reads the
tiles. Almost every frame pixel is a copy of some unit pixel: a neighbour's (same
resolution), the nearest low-res pixel (a high-res unit beside a low-res block), or zero
(the image border). Only a low-res block beside a high-res one needs new values, the means
of 2x2 high-res pixels. So the padded tiles can be described without writing them:

* ``source``: the units' pixels as rows ``[T*s*s, C]`` (channels_last units, as they are),
  then one row per 2x2 mean a frame needs, then one zero row;
* ``index``: for every pixel of every padded tile, its row of ``source``.

``source[index]`` is then exactly ``block_pad_units(blocks, 1)`` (zero image border). A
convolution that gathers its operand rows through ``index`` (the GPU's halo-gathering
convolution) reads the padded tiles without anyone writing them; only the mean rows are
computed, a few per cent of the frame. The index depends on the layout and the unit side
only, so one index serves every 3x3 convolution that reads units of that side (stride 1 or
2: the index is over the input's tiles).

This module is the reference: plain PyTorch on any device, the oracle for native builders.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .layout import BlockLayout
from .ops._reference import _unflatten_pos, _windows


@dataclass(frozen=True, eq=False)
class HaloIndex:
    """Where each pixel of the 1-px padded tiles of :func:`block_pad_units` comes from.

    Attributes:
        side: the unit side ``s`` (pixels).
        index (Tensor[T, s+2, s+2] int32): row of the source for each padded-tile pixel,
            ``T = 4*Nh + Nl`` tiles in :func:`block_pad_units` order.
        mean_rows (Tensor[B, 4] int32): for each mean row ``b`` (source row
            ``unit_rows + b``), the four unit rows it averages (a fixed index's unused mean
            rows: the zero row, four times).
        unit_rows: ``T*s*s``, the rows of the units (source rows ``0 .. unit_rows-1``:
            tile ``t``, pixel ``(y, x)`` is row ``t*s*s + y*s + x``).
    """

    side: int
    index: Tensor
    mean_rows: Tensor
    unit_rows: int

    @property
    def num_means(self) -> int:
        return self.mean_rows.shape[0]

    @property
    def zero_row(self) -> int:
        """The source row that holds zeros (the image border)."""
        return self.unit_rows + self.num_means

    @property
    def rows(self) -> int:
        """Rows of the source: the units', the means', the zero row."""
        return self.zero_row + 1


def _unit_rows(first_tile: Tensor, side: int) -> Tensor:
    """Rows ``[K, s, s]`` of tiles ``first_tile [K]`` (int64)."""
    pix = torch.arange(side * side, device=first_tile.device).view(side, side)
    return first_tile.view(-1, 1, 1) * (side * side) + pix


def _place(dense: Tensor, pos: Tensor, blocks: Tensor, grid_h: int, grid_w: int) -> None:
    """Write ``blocks [K, b, b]`` into ``dense [N, GH*b, GW*b]`` at flat grid positions ``pos``."""
    b = blocks.shape[-1]
    n_idx, r_idx, c_idx = _unflatten_pos(pos, grid_h, grid_w)
    dense.view(dense.shape[0], grid_h, b, grid_w, b)[n_idx, r_idx, :, c_idx, :] = blocks


def _frame_windows(dense: Tensor, side: int, border: int) -> Tensor:
    """``[N, H, W]`` padded by 1 with ``border`` -> the ``(side+2)`` windows every ``side`` px,
    ``[N, H/side, W/side, side+2, side+2]`` (a view)."""
    padded = torch.nn.functional.pad(dense, (1, 1, 1, 1), value=border)
    return _windows(padded.unsqueeze(1), side + 2, side).squeeze(1)


def _frame(tiles: Tensor) -> Tensor:
    """The frame pixels ``[K, 4s + 4]`` of tiles ``[K, s+2, s+2]``, in ring order: top row,
    bottom row, left column, right column."""
    return torch.cat([tiles[:, 0], tiles[:, -1], tiles[:, 1:-1, 0], tiles[:, 1:-1, -1]], 1)


def _ring_slots(side: int, device) -> Tensor:
    """``[s+2, s+2]`` int64: each frame pixel's place in :func:`_frame`'s order, -1 inside."""
    w = side + 2
    slots = torch.full((w * w,), -1, dtype=torch.int64, device=device)
    slots[_frame(torch.arange(w * w, device=device).view(1, w, w))[0]] = torch.arange(4 * side + 4, device=device)
    return slots.view(w, w)


def halo_index(layout: BlockLayout, side: int, fixed: bool = False) -> HaloIndex:
    """The :class:`HaloIndex` of units of side ``side`` (high-res blocks ``2*side`` px) for
    ``layout``: ``gather_padded(halo_source(units, h), h)`` equals
    ``block_pad_units(BlockTensor.from_units(units, layout), 1)``.

    ``fixed``: one mean row for every frame pixel of every low-res block (``Nl * (4s + 4)``;
    those that are not a 2x2 mean average the zero row four times), so every shape depends
    on the block counts only and nothing is read back to the host: the form a CUDA graph can
    rebuild each frame. Otherwise only the means some frame needs, each once (fewer rows to
    compute; finding them synchronises with the device)."""
    if not isinstance(layout, BlockLayout):
        raise TypeError(f"layout must be a BlockLayout, got {type(layout).__name__}")
    side = int(side)
    if side < 1:
        raise ValueError(f"side must be >= 1, got {side}")
    n_img, gh, gw = layout.grid_shape
    nh, nl = layout.num_highres, layout.num_lowres
    dev = layout.device
    unit_rows = (4 * nh + nl) * side * side
    hr_pos, lr_pos = layout.hr_pos.to(dev), layout.lr_pos.to(dev)
    big = 2 * side
    zero = -(2 ** 62)  # the image border; becomes the zero row at the end

    # Dense map at high-res resolution, each pixel its source row: a high-res block's pixels
    # are its units' rows, a low-res block's are its pixels' rows repeated 2x2 (nearest).
    # (no repeat_interleave or tensors from Python lists here: on CUDA they synchronise, and
    # the fixed index must not)
    hr_units = _unit_rows(torch.arange(4 * nh, device=dev), side)                # [4Nh, s, s]
    hr_blocks = hr_units.view(nh, 2, 2, side, side).permute(0, 1, 3, 2, 4).reshape(nh, big, big)
    lr_tiles = _unit_rows(4 * nh + torch.arange(nl, device=dev), side)            # [Nl, s, s]
    lr_up = lr_tiles[:, :, None, :, None].expand(nl, side, 2, side, 2).reshape(nl, big, big)
    dense_hr = torch.empty((n_img, gh * big, gw * big), dtype=torch.int64, device=dev)
    _place(dense_hr, hr_pos, hr_blocks, gh, gw)
    _place(dense_hr, lr_pos, lr_up, gh, gw)

    # Dense map at low-res resolution: a low-res block's own rows; where a high-res block
    # is, -1 - (its 2x2 quad's position), a mean to be made only if some frame needs it.
    dense_lr = -1 - torch.arange(n_img * gh * side * gw * side, device=dev).view(n_img, gh * side, gw * side)
    _place(dense_lr, lr_pos, lr_tiles, gh, gw)

    win_hr = _frame_windows(dense_hr, side, zero)                       # [N, 2GH, 2GW, s+2, s+2]
    n_idx, r_idx, c_idx = _unflatten_pos(hr_pos, gh, gw)
    quad = torch.arange(4, device=dev)                                  # units in a block: 2x2, x fastest

    def per_unit(v: Tensor) -> Tensor:
        return v[:, None].expand(-1, 4).reshape(-1)
    hr_index = win_hr[per_unit(n_idx), per_unit(2 * r_idx) + (quad // 2).repeat(nh),
                      per_unit(2 * c_idx) + (quad % 2).repeat(nh)]
    win_lr = _frame_windows(dense_lr, side, zero)                       # [N, GH, GW, s+2, s+2]
    n_idx, r_idx, c_idx = _unflatten_pos(lr_pos, gh, gw)
    lr_index = win_lr[n_idx, r_idx, c_idx]
    index = torch.cat([hr_index.reshape(-1, side + 2, side + 2), lr_index.reshape(-1, side + 2, side + 2)])

    def quad_rows(code: Tensor) -> Tensor:
        """The four unit rows ``[..., 4]`` of the 2x2 quads coded ``-1 - position``."""
        qn, qy_, qx_ = _unflatten_pos(-1 - code, gh * side, gw * side)  # (n, y, x) at low-res resolution
        return torch.stack([dense_hr[qn, 2 * qy_ + dy, 2 * qx_ + dx] for dy in (0, 1) for dx in (0, 1)], -1)

    is_mean = (index < 0) & (index != zero)
    if fixed:
        # mean row of frame pixel r of low-res block l: unit_rows + l * (4s + 4) + r
        per_tile = 4 * side + 4
        ring = _ring_slots(side, dev)
        slot = torch.cat([torch.zeros((4 * nh, side + 2, side + 2), dtype=torch.int64, device=dev),
                          torch.arange(nl, device=dev).view(-1, 1, 1) * per_tile + ring.clamp(min=0)])
        zero_row = unit_rows + nl * per_tile
        lr_codes, lr_means = _frame(index[4 * nh:]), _frame(is_mean[4 * nh:])
        rows = quad_rows(torch.where(lr_means, lr_codes, torch.full_like(lr_codes, -1)))
        mean_rows = torch.where(lr_means.unsqueeze(-1), rows, torch.full_like(rows, zero_row)).view(-1, 4)
        index = torch.where(is_mean, unit_rows + slot, index)
        index = torch.where(index == zero, torch.full_like(index, zero_row), index)
        return HaloIndex(side, index.to(torch.int32), mean_rows.to(torch.int32), unit_rows)

    # The means the frames need: one source row per quad position, in ascending order.
    quads = torch.unique(index[is_mean])
    mean_rows = quad_rows(quads)
    if is_mean.any():
        index[is_mean] = unit_rows + torch.searchsorted(quads, index[is_mean])
    index[index == zero] = unit_rows + quads.shape[0]
    return HaloIndex(side, index.to(torch.int32), mean_rows.to(torch.int32).view(-1, 4), unit_rows)


def _check_units(units: Tensor, halo: HaloIndex) -> None:
    if units.dim() != 4 or units.shape[-1] != halo.side or units.shape[-2] != halo.side \
            or units.shape[0] * halo.side * halo.side != halo.unit_rows:
        raise ValueError(f"units [T, C, {halo.side}, {halo.side}] with T*s*s = {halo.unit_rows} expected, "
                         f"got {tuple(units.shape)}")


def pixel_rows(units: Tensor) -> Tensor:
    """``[T, C, s, s]`` -> its pixels as rows ``[T*s*s, C]`` (tile-major, then row, column;
    a view of channels_last units)."""
    return units.permute(0, 2, 3, 1).reshape(-1, units.shape[1])


def halo_source(units: Tensor, halo: HaloIndex) -> Tensor:
    """The source rows ``[halo.rows, C]`` of ``units [T, C, s, s]``: the units' pixels
    (tile-major, then row, column), the 2x2 means (:func:`halo_means_`), a zero row."""
    _check_units(units, halo)
    rows = pixel_rows(units)
    source = rows.new_empty((halo.rows, rows.shape[1]))
    source[:halo.unit_rows] = rows
    return halo_means_(source, halo)


def halo_means_(source: Tensor, halo: HaloIndex) -> Tensor:
    """Rows ``unit_rows ..`` of ``source [halo.rows, C]`` from its unit rows, in place: the 2x2
    means (their float sum times 0.25, rounded to the dtype once, as BlockPad rounds them;
    zeros for a fixed index's unused mean rows) and the zero row. Returns ``source``."""
    if source.dim() != 2 or source.shape[0] != halo.rows:
        raise ValueError(f"source [{halo.rows}, C] expected, got {tuple(source.shape)}")
    rows = source[:halo.unit_rows]
    acc = torch.float64 if source.dtype == torch.float64 else torch.float32
    zero = rows.new_zeros((1, rows.shape[1]))
    # a fixed index's unused mean rows average the zero row
    quads = halo.mean_rows.long().clamp(max=halo.unit_rows)
    source[halo.unit_rows:halo.zero_row] = torch.cat([rows, zero])[quads].to(acc).mean(1).to(source.dtype)
    source[halo.zero_row] = 0
    return source


def gather_padded(source: Tensor, halo: HaloIndex) -> Tensor:
    """``source[index]`` as padded tiles ``[T, C, s+2, s+2]`` (channels_last)."""
    if source.dim() != 2 or source.shape[0] != halo.rows:
        raise ValueError(f"source [{halo.rows}, C] expected, got {tuple(source.shape)}")
    t = halo.index.shape[0]
    w = halo.side + 2
    return source[halo.index.long().view(-1)].view(t, w, w, -1).permute(0, 3, 1, 2)
