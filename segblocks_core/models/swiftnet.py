"""SwiftNet (Orsic et al., CVPR 2019), single scale, as in the SegBlocks paper's reference.

ResNet backbone with features at strides 4/8/16/32, spatial pyramid pooling (grid levels
8/4/2, aspect-ratio aware) on the stride-32 features, three upsampling blocks with lateral
skip connections (1x1 bottleneck, bilinear x2, add, 3x3 blend), 128 features, logits at
stride 4 upsampled bilinearly to the input size.

Module names follow the original implementation (``backbone.layer1.0.conv1``,
``backbone.spp.spp.spp_bn.norm``, ``backbone.upsample.0.blend_conv.conv``,
``logits.conv``...) so that its ``state_dict``s load without renaming. The skip features
are the stages' (activated) outputs; each lateral connection normalises them again.

The forward pass is ``torch.fx``-traceable, which :class:`segblocks_core.SegBlocks` relies
on to build its block execution plan.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.fx
import torch.nn.functional as F
from torch import Tensor, nn

from .resnet import BasicBlock, Bottleneck, ResNet

__all__ = ["SwiftNet", "swiftnet_rn18", "swiftnet_rn50", "MODEL_BUILDERS"]


def _upsample(x: Tensor, size) -> Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def spp_grid_size(height: int, width: int, level: int) -> tuple[int, int]:
    """Pooling grid of one SPP level: ``level`` rows, columns following the aspect ratio."""
    return level, max(1, round(width / height * level))


torch.fx.wrap("spp_grid_size")


class _BNReluConv(nn.Sequential):
    """BatchNorm -> ReLU -> Conv (pre-activation), SwiftNet's basic decoder unit."""

    def __init__(self, num_maps_in: int, num_maps_out: int, k: int = 3, batch_norm: bool = True,
                 bn_momentum: float = 0.1, bias: bool = False):
        super().__init__()
        if batch_norm:
            self.add_module("norm", nn.BatchNorm2d(num_maps_in, momentum=bn_momentum))
        self.add_module("relu", nn.ReLU(inplace=batch_norm))
        self.add_module("conv", nn.Conv2d(num_maps_in, num_maps_out, kernel_size=k,
                                          padding=k // 2, bias=bias))


class _Upsample(nn.Module):
    """Lateral 1x1 bottleneck on the skip, bilinear upsampling of the coarse map, add, 3x3
    blend."""

    def __init__(self, num_maps_in: int, skip_maps_in: int, num_maps_out: int, k: int = 3):
        super().__init__()
        self.bottleneck = _BNReluConv(skip_maps_in, num_maps_in, k=1)
        self.blend_conv = _BNReluConv(num_maps_in, num_maps_out, k=k)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        skip = self.bottleneck(skip)
        x = _upsample(x, skip.shape[2:4])
        return self.blend_conv(x + skip)


class SpatialPyramidPooling(nn.Module):
    def __init__(self, num_maps_in: int, num_levels: int = 3, bt_size: int = 128,
                 level_size: int = 42, out_size: int = 128, grids: Sequence[int] = (8, 4, 2),
                 bn_momentum: float = 0.01 / 2):
        super().__init__()
        self.grids = tuple(grids)[:num_levels]
        self.spp = nn.Sequential()
        self.spp.add_module("spp_bn", _BNReluConv(num_maps_in, bt_size, k=1, bn_momentum=bn_momentum))
        final_size = bt_size
        for i in range(num_levels):
            final_size += level_size
            self.spp.add_module(f"spp{i}", _BNReluConv(bt_size, level_size, k=1, bn_momentum=bn_momentum))
        self.spp.add_module("spp_fuse", _BNReluConv(final_size, out_size, k=1, bn_momentum=bn_momentum))

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[2], x.shape[3]
        x = self.spp[0](x)
        levels = [x]
        for i, level in enumerate(self.grids):
            # the only global operation of SwiftNet: pooling over the whole map
            pooled = F.adaptive_avg_pool2d(x, spp_grid_size(height, width, level))
            levels.append(_upsample(self.spp[i + 1](pooled), (height, width)))
        return self.spp[-1](torch.cat(levels, 1))


class SwiftNetBackbone(ResNet):
    """ResNet encoder + SPP + upsampling decoder; returns 128 features at stride 4."""

    def __init__(self, block, layers: list[int], num_features: int = 128, k_up: int = 3):
        super().__init__(block, layers)
        del self.avgpool, self.fc
        self.num_features = num_features
        skips = [64 * block.expansion, 128 * block.expansion, 256 * block.expansion]
        num_levels = 3
        self.spp = SpatialPyramidPooling(512 * block.expansion, num_levels, bt_size=num_features,
                                         level_size=num_features // num_levels,
                                         out_size=num_features)
        self.upsample = nn.ModuleList(
            [_Upsample(num_features, s, num_features, k=k_up) for s in reversed(skips)]
        )

    def forward(self, image: Tensor) -> Tensor:
        s4 = self.layer1(self.stem(image))
        s8 = self.layer2(s4)
        s16 = self.layer3(s8)
        x = self.spp(self.layer4(s16))
        for up, skip in zip(self.upsample, (s16, s8, s4)):
            x = up(x, skip)
        return x


class SwiftNet(nn.Module):
    """SwiftNet semantic segmentation: ``forward(image [N,3,H,W]) -> logits [N,K,H,W]``.

    ``image`` is the normalised network input (ImageNet mean/std, see
    :mod:`segblocks_core.engine`).
    """

    def __init__(self, block, layers: list[int], num_classes: int = 19, num_features: int = 128):
        super().__init__()
        self.num_classes = num_classes
        self.backbone = SwiftNetBackbone(block, layers, num_features)
        self.logits = _BNReluConv(num_features, num_classes, k=1, bias=True)

    def forward(self, image: Tensor) -> Tensor:
        logits = self.logits(self.backbone(image))
        return _upsample(logits, image.shape[2:4])


def swiftnet_rn18(num_classes: int = 19) -> SwiftNet:
    return SwiftNet(BasicBlock, [2, 2, 2, 2], num_classes)


def swiftnet_rn50(num_classes: int = 19) -> SwiftNet:
    return SwiftNet(Bottleneck, [3, 4, 6, 3], num_classes)


MODEL_BUILDERS = {"swiftnet_rn18": swiftnet_rn18, "swiftnet_rn50": swiftnet_rn50}
