"""Block complexity policy (Eq. 1 of the SegBlocks paper).

For every ``B x B`` block::

    C_b = mean over the block of  sum over channels | I - nearest_up(avg_pool(I, 4)) |

computed on the **normalised network input** ``I = (rgb / 255 - mean) / std`` with the
ImageNet mean/std, pooling factor 4, as in the original SegBlocks code. On this scale a
difference of 1.0 is about 57 grey levels (one standard deviation), so the paper's
thresholds (tau = 0.2 ... 0.5) mean the same here. A block is processed at high
resolution iff ``C_b > tau``: perfectly flat blocks (C_b = 0) are never high-res for
tau >= 0, and tau = inf makes every block low-res.

Partial blocks at the bottom/right edge of an image whose size is not a multiple of B are
averaged over their valid pixels only.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ComplexityPolicy", "POOL_FACTOR"]

POOL_FACTOR = 4
_ROUNDING_FLOOR = 1e-4


def _check_tau(tau) -> float:
    if isinstance(tau, bool) or not isinstance(tau, (int, float)):
        raise TypeError(f"tau must be a number, got {type(tau).__name__}")
    tau = float(tau)
    if math.isnan(tau):
        raise ValueError("tau must not be NaN")
    return tau


class ComplexityPolicy:
    """Decide per block whether it runs at high resolution.

    Args:
        tau: complexity threshold; high-res iff ``C_b > tau``.
        block_size: block side B in input pixels (a multiple of the pool factor 4).
    """

    def __init__(self, tau: float = 0.3, block_size: int = 128):
        self.tau = _check_tau(tau)
        if int(block_size) != block_size or block_size < POOL_FACTOR or block_size % POOL_FACTOR:
            raise ValueError(f"block_size must be a positive multiple of {POOL_FACTOR}, got {block_size}")
        self.block_size = int(block_size)

    def complexity(self, x: Tensor) -> Tensor:
        """Block complexity ``C_b``.

        Args:
            x (Tensor[N, 3, H, W]): normalised network input (floating point).

        Returns:
            Tensor[N, ceil(H/B), ceil(W/B)] float32 on ``x``'s device (no host sync).
        """
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4:
            raise ValueError(f"x must have shape [N, C, H, W], got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"x must be a floating-point (normalised) image, got {x.dtype}")
        if x.shape[-2] == 0 or x.shape[-1] == 0:
            raise ValueError(f"x has an empty spatial size {tuple(x.shape[-2:])}")
        b, f = self.block_size, POOL_FACTOR
        h, w = x.shape[-2:]
        gh, gw = -(-h // b), -(-w // b)
        pad_h, pad_w = gh * b - h, gw * b - w
        # float rounding of the 4x4 mean leaves ~1e-7 on perfectly flat regions; a grey
        # level is ~0.017 here, so anything below _ROUNDING_FLOOR (1e-4) is rounding, not texture
        if not (pad_h or pad_w):
            # one pass over x (native kernel where built): per-cell sums, then per block
            from . import ops
            return self._per_block(ops.cell_complexity(x, x.shape[1], f, _ROUNDING_FLOOR))
        # partial blocks: replicate-pad to whole blocks, average over the valid pixels only
        x = F.pad(x.float(), (0, pad_w, 0, pad_h), mode="replicate")
        n, c = x.shape[:2]
        # 4x4 patches as dimensions 3 and 5 (a view, also of channels_last memory): the
        # patch mean broadcasts instead of being upsampled into a full-size copy
        patches = x.view(n, c, gh * b // f, f, gw * b // f, f)
        diff = (patches - patches.mean((3, 5), keepdim=True)).abs_()
        diff = F.threshold(diff, _ROUNDING_FLOOR, 0.0)
        per_pixel = diff.sum(1).view(n, 1, gh * b, gw * b)
        valid = torch.zeros((1, 1, gh * b, gw * b), dtype=per_pixel.dtype, device=per_pixel.device)
        valid[..., :h, :w] = 1
        return (F.avg_pool2d(per_pixel * valid, b) / F.avg_pool2d(valid, b)).squeeze(1)

    def complexity_from_frames(self, images: Tensor, scale: Tensor, shift: Tensor, dtype: torch.dtype) -> Tensor:
        """:meth:`complexity` of ``ops.normalize_frames(images, scale, shift, 3, dtype)``, the
        uint8 RGB frames ``[N, H, W, 3]`` normalised: where the frames are whole blocks, read
        straight from them (:func:`segblocks_core.ops.cell_complexity_frames`, the normalised
        map never written); otherwise normalised first. The same values either way."""
        from . import ops
        ops.check_frames(images)
        _, h, w, _ = images.shape
        b, f = self.block_size, POOL_FACTOR
        if h == 0 or w == 0 or h % b or w % b:
            return self.complexity(ops.normalize_frames(images, scale, shift, 3, dtype))
        return self._per_block(ops.cell_complexity_frames(images, scale, shift, dtype, f, _ROUNDING_FLOOR))

    def _per_block(self, cells: Tensor) -> Tensor:
        """Per-cell sums ``[N, H/f, W/f]`` of whole blocks -> the per-pixel mean per block."""
        b, f = self.block_size, POOL_FACTOR
        n, ch, cw = cells.shape
        return cells.view(n, ch * f // b, b // f, cw * f // b, b // f).sum((2, 4)) / (b * b)

    def __call__(self, x: Tensor, tau: Optional[float] = None) -> Tensor:
        """Bool grid ``[N, ceil(H/B), ceil(W/B)]``, True = high resolution.

        ``tau`` overrides the policy's threshold for this call.
        """
        threshold = self.tau if tau is None else _check_tau(tau)
        return self.complexity(x) > threshold

    def __repr__(self) -> str:
        return f"ComplexityPolicy(tau={self.tau}, block_size={self.block_size})"
