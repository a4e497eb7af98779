"""Shared fixtures for the segblocks test suite."""

import gc
import os

import numpy as np
import pytest
import torch

# Keep CPU runs predictable on the 2-core CI machines.
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))


def pytest_collection_finish(session):
    """Move the collected test items (over 20,000) out of the garbage collector's reach.

    A full collection of this process's heap paused every thread for up to 0.9 s here and
    1.6 s on CI, which a test of publishing times cannot tell from a slow publisher. The
    collector still collects every object created later."""
    gc.collect()
    gc.freeze()


@pytest.fixture
def quiet_gc():
    """Freeze what the suite has allocated so far, so that no full collection of the test
    process's heap stalls a timed section (the code under test still has its garbage
    collected)."""
    gc.collect()
    gc.freeze()
    yield


def randomize_batchnorm(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every BatchNorm non-trivial statistics and affine parameters, so that tests of
    per-resolution execution cannot pass by accident with identity BatchNorms."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) * 0.6 - 0.3)
    return net


def max_rel_diff(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| / max |expected|."""
    return float((actual - expected).abs().max() / expected.abs().max())


@pytest.fixture
def seeded():
    torch.manual_seed(0)
    yield


def graded_texture(height: int = 128, width: int = 256, seed: int = 1) -> np.ndarray:
    """uint8 RGB ``[H, W, 3]`` of four block columns (64 px at width 256) of growing texture:
    flat, +-4, +-30 and full-range noise (block complexities about 0, 0.11, 0.76 and 3.2)."""
    rng = np.random.default_rng(seed)
    img = np.full((height, width, 3), 128, np.int32)
    for col, amp in enumerate((0, 4, 30, 128)):
        sl = slice(col * width // 4, (col + 1) * width // 4)
        img[:, sl] += rng.integers(-amp, amp + 1, (height, width // 4, 3))
    return np.clip(img, 0, 255).astype(np.uint8)
