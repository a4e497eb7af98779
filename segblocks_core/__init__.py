"""SegBlocks core: block-based adaptive-resolution execution of segmentation networks.

ROS-free. The ROS 2 node (:mod:`segblocks_ros`) is a thin adapter over
:class:`SegmentationEngine`, the single inference entry point.
"""

from .executor import MacCount, SegBlocks, UnsupportedLayerError
from .layout import BlockLayout, BlockTensor
from .ops import backend, backend_message
from .policy import ComplexityPolicy

__version__ = "0.1.0"

__all__ = [
    "SegBlocks", "UnsupportedLayerError", "MacCount", "BlockLayout", "BlockTensor",
    "ComplexityPolicy", "count_macs", "backend", "backend_message", "SegmentationEngine",
    "__version__",
]


def count_macs(net, x, grid=None, block_size: int = 128) -> MacCount:
    """Multiply-accumulates per image of ``net`` on ``x`` (dense if ``grid`` is None).

    Args:
        net: a dense network or a :class:`SegBlocks` wrapping one.
        x (Tensor[N, C, H, W]): the input (only its shape is used).
        grid (Tensor[N, GH, GW] bool, optional): high-res blocks.
        block_size: block side when ``net`` is not already a SegBlocks.

    Returns:
        :class:`MacCount` with per-image ``effective`` (the paper's count: low-res blocks
        cost 1/4, halos not counted), ``executed`` and ``dense`` tensors.
    """
    sb = net if isinstance(net, SegBlocks) else SegBlocks(net, block_size=block_size)
    layout = None if grid is None else sb.make_layout(x, grid)
    return sb.count_macs(tuple(x.shape), layout)


def __getattr__(name):
    # the engine pulls in numpy-facing code; import it on first use
    if name == "SegmentationEngine":
        from .engine import SegmentationEngine
        return SegmentationEngine
    raise AttributeError(f"module 'segblocks_core' has no attribute {name!r}")
