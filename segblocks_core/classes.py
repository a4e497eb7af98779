"""Cityscapes train-id classes and their official colours (the default label set)."""

from __future__ import annotations

import numpy as np

IGNORE_INDEX = 255

CITYSCAPES_CLASSES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)

CITYSCAPES_PALETTE: tuple[tuple[int, int, int], ...] = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32),
)


def default_class_names(num_classes: int) -> list[str]:
    """Cityscapes names for the first 19 ids, ``class_<i>`` beyond."""
    return [CITYSCAPES_CLASSES[i] if i < len(CITYSCAPES_CLASSES) else f"class_{i}"
            for i in range(num_classes)]


def default_palette(num_classes: int) -> np.ndarray:
    """``[256, 3]`` uint8 lookup table: Cityscapes colours, then a deterministic spread of
    colours for further ids; id 255 (ignore) is black."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    rng = np.random.default_rng(19)
    for i in range(255):
        lut[i] = CITYSCAPES_PALETTE[i] if i < len(CITYSCAPES_PALETTE) else rng.integers(0, 256, 3)
    return lut


def colorize(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Class ids ``[..., H, W]`` uint8 -> RGB ``[..., H, W, 3]`` through a ``[256, 3]`` LUT."""
    return palette[labels]
