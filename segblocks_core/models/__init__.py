"""Networks: SwiftNet-RN18/RN50 for segmentation and torchvision-style ResNets."""

from .resnet import BasicBlock, Bottleneck, ResNet, resnet18, resnet50
from .swiftnet import MODEL_BUILDERS, SwiftNet, swiftnet_rn18, swiftnet_rn50

__all__ = [
    "BasicBlock", "Bottleneck", "ResNet", "resnet18", "resnet50",
    "SwiftNet", "swiftnet_rn18", "swiftnet_rn50", "MODEL_BUILDERS", "build_model",
]


def build_model(name: str, num_classes: int = 19) -> SwiftNet:
    """Build a segmentation model by name (``swiftnet_rn18`` or ``swiftnet_rn50``)."""
    try:
        builder = MODEL_BUILDERS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODEL_BUILDERS)}") from None
    if int(num_classes) != num_classes or num_classes < 1 or num_classes > 255:
        raise ValueError(f"num_classes must be an integer in [1, 255], got {num_classes}")
    return builder(int(num_classes))
