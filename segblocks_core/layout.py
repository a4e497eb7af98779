"""Block layouts and block tensors.

A *grid* is a bool tensor ``[N, GH, GW]``: one entry per ``B x B`` image block, True for
high resolution. A :class:`BlockLayout` turns a grid into the index tensors every block op
needs. It is stride-agnostic: at feature stride ``s`` a high-res block is ``B/s`` pixels
and a low-res block ``B/(2s)``, the layout is the same.

Building a layout from an exact grid must know how many blocks are high-res, which on a
GPU is one device-to-host read per frame. :meth:`BlockLayout.from_grid` with
``num_highres`` given (a capacity, e.g. a bucket) selects that many blocks on the device
without any host synchronisation: all blocks of the grid first, then the most complex
low-res blocks (promotion) if the capacity is larger than the grid's count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor


@dataclass(frozen=True, eq=False)
class BlockLayout:
    """Where every block of a batch lives.

    Attributes:
        grid_shape: ``(N, GH, GW)`` as host ints.
        block_size: block side ``B`` at input resolution (stride 1).
        hr_pos (Tensor[Nh] int64): flat grid positions ``n*GH*GW + r*GW + c`` of the
            high-res blocks, ascending (row-major over (n, row, col)).
        lr_pos (Tensor[Nl] int64): the same for the low-res blocks.
        block_map (Tensor[N, GH, GW] int32): for each grid cell its slot: ``k >= 0`` is
            high-res block ``k``, ``-1 - k`` is low-res block ``k``.
    """

    grid_shape: tuple[int, int, int]
    block_size: int
    hr_pos: Tensor
    lr_pos: Tensor
    block_map: Tensor

    @property
    def num_highres(self) -> int:
        return self.hr_pos.shape[0]

    @property
    def num_lowres(self) -> int:
        return self.lr_pos.shape[0]

    @property
    def num_blocks(self) -> int:
        n, gh, gw = self.grid_shape
        return n * gh * gw

    @property
    def device(self) -> torch.device:
        return self.block_map.device

    @property
    def grid(self) -> Tensor:
        """Bool ``[N, GH, GW]``: the high-res blocks actually executed (after promotion)."""
        return self.block_map >= 0

    def highres_per_image(self) -> Tensor:
        """Int64 ``[N]``: number of high-res blocks of each image (device tensor, no sync)."""
        return self.grid.flatten(1).sum(1)

    def gather_index(self) -> Tensor:
        """Int64 ``[N*GH*GW]``: row of each grid cell in ``cat([highres, lowres])``."""
        flat = self.block_map.reshape(-1).long()
        return torch.where(flat >= 0, flat, self.num_highres - 1 - flat)

    @staticmethod
    def from_grid(
        grid: Tensor,
        block_size: int,
        num_highres: Optional[int] = None,
        scores: Optional[Tensor] = None,
    ) -> "BlockLayout":
        """Build a layout from a bool grid.

        Args:
            grid (Tensor[N, GH, GW] bool): True = high resolution.
            block_size: block side B at input resolution.
            num_highres: if None the layout follows ``grid`` exactly (on CUDA this reads the
                number of high-res blocks back to the host: one sync). If given, exactly
                this many blocks are high-res, chosen on the device without a sync: the
                grid's blocks first, then the low-res blocks with the highest ``scores``.
            scores (Tensor[N, GH, GW], optional): block complexity used to rank blocks for
                promotion (or demotion, if ``num_highres`` is below the grid's count).
        """
        if not isinstance(grid, Tensor) or grid.dim() != 3:
            raise ValueError(
                f"grid must be a bool tensor [N, GH, GW], got "
                f"{tuple(grid.shape) if isinstance(grid, Tensor) else type(grid).__name__}"
            )
        if grid.dtype != torch.bool:
            raise TypeError(f"grid must have dtype torch.bool, got {grid.dtype}")
        n, gh, gw = grid.shape
        total = n * gh * gw
        flat = grid.reshape(-1)
        if num_highres is None:
            hr_pos = torch.nonzero(flat).squeeze(1)
            lr_pos = torch.nonzero(~flat).squeeze(1)
        else:
            k = int(num_highres)
            if not 0 <= k <= total:
                raise ValueError(f"num_highres must be in [0, {total}], got {k}")
            key = flat.to(torch.float32)
            if scores is not None:
                if scores.shape != grid.shape:
                    raise ValueError(
                        f"scores shape {tuple(scores.shape)} != grid shape {tuple(grid.shape)}"
                    )
                s = scores.reshape(-1).to(torch.float32)
                s = torch.nan_to_num(s, nan=0.0, posinf=1e30, neginf=0.0).clamp_min(0)
                # grid membership dominates, complexity breaks ties within each class
                key = key * (s.max() + 1.0) + s
            selected = torch.zeros(total, dtype=torch.bool, device=grid.device)
            if k > 0:
                # index_fill_ with a scalar: no host->device copy (CUDA-graph capturable)
                selected.index_fill_(0, torch.topk(key, k, sorted=False).indices, True)
            # stable sort of the 0/1 mask: low-res positions first, then high-res, each
            # in ascending order
            order = torch.argsort(selected.to(torch.uint8), stable=True)
            lr_pos, hr_pos = order[: total - k], order[total - k :]
        block_map = torch.empty(total, dtype=torch.int32, device=grid.device)
        block_map[hr_pos] = torch.arange(hr_pos.shape[0], dtype=torch.int32, device=grid.device)
        block_map[lr_pos] = -1 - torch.arange(lr_pos.shape[0], dtype=torch.int32, device=grid.device)
        return BlockLayout((n, gh, gw), int(block_size), hr_pos, lr_pos, block_map.view(n, gh, gw))


class BlockTensor:
    """A feature map stored as blocks: high-res blocks at full and low-res at half resolution.

    Attributes:
        highres (Tensor[Nh, C, h, h]): high-res blocks in ``layout.hr_pos`` order; if
            ``quartered``, their quarters ("units") ``[4*Nh, C, h/2, h/2]``: unit
            ``4k + 2*qy + qx`` holds rows ``qy*h/2 ...``, columns ``qx*h/2 ...`` of block k.
        lowres (Tensor[Nl, C, h/2, h/2]): low-res blocks in ``layout.lr_pos`` order.
        layout (BlockLayout): block positions, shared by all feature maps of a frame.
        quartered (bool): high-res blocks stored as units. Then both resolutions are tiles
            of one size and, when they are the two halves of one tensor (``units``),
            elementwise ops and convolutions run once over both.
    """

    __slots__ = ("highres", "lowres", "layout", "quartered", "_units", "_padded")

    def __init__(self, highres: Tensor, lowres: Tensor, layout: BlockLayout,
                 quartered: bool = False):
        self.highres = highres
        self.lowres = lowres
        self.layout = layout
        self.quartered = bool(quartered)
        self._units: Optional[Tensor] = None
        self._padded: Optional[tuple[tuple[Tensor, ...], int]] = None  # see padded

    @classmethod
    def from_units(cls, units: Tensor, layout: BlockLayout) -> "BlockTensor":
        """A quartered BlockTensor whose two halves are views of ``units``
        ``[4*Nh + Nl, C, u, u]`` (high-res units first)."""
        nh = 4 * layout.num_highres
        bt = cls(units[:nh], units[nh:], layout, quartered=True)
        bt._units = units
        return bt

    @classmethod
    def from_padded_units(cls, padded: Tensor, padding: int, layout: BlockLayout) -> "BlockTensor":
        """A quartered BlockTensor whose units are the interiors of ``padded``
        ``[4*Nh + Nl, C, u+2p, u+2p]``: tiles BlockPad-ed by ``padding`` px with a zero image
        border (``ops.block_pad_units(bt, padding, "constant", 0.0)`` of the result), which
        a zero-padded convolution reads as they are (:attr:`padded`)."""
        p = int(padding)
        u = padded.shape[-1] - 2 * p
        if p < 1 or u < 1 or padded.dim() != 4 or padded.shape[-2] != padded.shape[-1]:
            raise ValueError(f"padded tiles [T, C, u+2p, u+2p] with p >= 1 expected, got "
                             f"{tuple(padded.shape)} and padding {padding}")
        bt = cls.from_units(padded[:, :, p:p + u, p:p + u], layout)
        bt._padded = ((padded,), p)
        return bt

    @classmethod
    def from_padded_blocks(cls, highres: Tensor, lowres: Tensor, padding: int,
                           layout: BlockLayout) -> "BlockTensor":
        """A BlockTensor (whole high-res blocks) whose blocks are the interiors of
        ``highres [Nh, C, h+2p, h+2p]`` and ``lowres [Nl, C, h/2+2p, h/2+2p]``: blocks
        BlockPad-ed by ``padding`` px with a zero image border (``ops.block_pad(bt, padding)``
        of the result), which a zero-padded convolution reads as they are (:attr:`padded`)."""
        p = int(padding)
        h = highres.shape[-1] - 2 * p
        if p < 1 or h < 2 or lowres.shape[-1] != h // 2 + 2 * p:
            raise ValueError(f"padded blocks [Nh, C, h+2p, h+2p] and [Nl, C, h/2+2p, h/2+2p] with p >= 1 "
                             f"expected, got {tuple(highres.shape)}, {tuple(lowres.shape)} and padding {padding}")
        bt = cls(highres[:, :, p:p + h, p:p + h], lowres[:, :, p:p + h // 2, p:p + h // 2], layout)
        bt._padded = ((highres, lowres), p)
        return bt

    @property
    def padded(self) -> Optional[tuple[tuple[Tensor, ...], int]]:
        """``(tiles, p)`` when the blocks are the interiors of tiles BlockPad-ed by ``p`` px
        with a zero image border: ``tiles`` is ``(units,)`` (:meth:`from_padded_units`) or
        ``(highres, lowres)`` (:meth:`from_padded_blocks`); else None."""
        return self._padded

    @property
    def units(self) -> Tensor:
        """``[4*Nh + Nl, C, u, u]``: the high-res units then the low-res blocks (the tensor
        both halves view, or a new one)."""
        if self._units is not None:
            return self._units
        from .ops._reference import quarter
        hr = self.highres if self.quartered else quarter(self.highres)
        return torch.cat([hr, self.lowres])

    def to_standard(self) -> "BlockTensor":
        """The same blocks with whole high-res blocks ``[Nh, C, h, h]`` (a copy if quartered)."""
        if not self.quartered:
            return self
        from .ops._reference import unquarter
        return BlockTensor(unquarter(self.highres), self.lowres, self.layout)

    def to_quartered(self) -> "BlockTensor":
        """The same blocks with the high-res ones as units, both halves in one tensor."""
        if self.quartered and self._units is not None:
            return self
        return BlockTensor.from_units(self.units, self.layout)

    @property
    def block_side(self) -> int:
        """Side of a high-res block at this feature stride."""
        return 2 * self.lowres.shape[-1] if self.quartered else self.highres.shape[-1]

    @property
    def stride(self) -> int:
        return self.layout.block_size // self.block_side

    @property
    def channels(self) -> int:
        return self.highres.shape[1]

    @property
    def dtype(self) -> torch.dtype:
        return self.highres.dtype

    @property
    def device(self) -> torch.device:
        return self.highres.device

    def dense_shape(self) -> torch.Size:
        """Shape of the equivalent dense map ``[N, C, GH*h, GW*h]`` (host ints, no sync)."""
        n, gh, gw = self.layout.grid_shape
        h = self.block_side
        return torch.Size((n, self.channels, gh * h, gw * h))

    def map(self, fn) -> "BlockTensor":
        """Apply ``fn`` to both resolutions (elementwise / per-pixel operations); once, to
        ``units``, when the halves share one tensor."""
        if self._units is not None:
            return BlockTensor.from_units(fn(self._units), self.layout)
        return BlockTensor(fn(self.highres), fn(self.lowres), self.layout, self.quartered)

    def __repr__(self) -> str:
        return (
            f"BlockTensor(highres={tuple(self.highres.shape)}, lowres={tuple(self.lowres.shape)}, "
            f"grid={self.layout.grid_shape}, stride={self.stride}, dtype={self.dtype}"
            f"{', quartered' if self.quartered else ''})"
        )
