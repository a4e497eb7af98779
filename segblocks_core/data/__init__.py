"""Training and evaluation data: procedural street scenes and Cityscapes-layout datasets.

:mod:`.scenes` renders deterministic synthetic driving images with Cityscapes train-id
labels (numpy only). :mod:`.cityscapes` writes them in the Cityscapes folder layout and
reads that layout back as a torch ``Dataset`` (real Cityscapes works the same way).
"""

from .scenes import Camera, Scene, render_scene, render_sequence

__all__ = ["Camera", "Scene", "render_scene", "render_sequence"]
