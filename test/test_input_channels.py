"""RGB input padded with zero channels (prepare_network(input_channels=4)) keeps the function.

The padded network reads ``normalize(images, dtype, 4)``; its stem has zero weights for
the extra channel, so dense and SegBlocks outputs equal the unpadded network's (exactly on
the CPU: the extra products are exact zeros). The GPU tests (test_gpu_fastpath.py) run
the padded network against the fp32 reference on the H100.
"""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from conftest import randomize_batchnorm
from segblocks_core import SegBlocks
from segblocks_core.engine import IMAGENET_MEAN, IMAGENET_STD, normalize
from segblocks_core.fastpath import fold_batchnorm, pad_input_channels, prepare_network
from segblocks_core.layout import BlockLayout
from segblocks_core.models import swiftnet_rn18


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return randomize_batchnorm(swiftnet_rn18().eval())


def _images(n=1, h=128, w=256, seed=0):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8))


def test_normalize_values_layout_and_zero_channels():
    imgs = _images(2, 5, 7)
    x = normalize(imgs)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255
    expected = (imgs.permute(0, 3, 1, 2).float() - mean) / std
    torch.testing.assert_close(x, expected, rtol=1e-6, atol=1e-6)
    assert x.shape == (2, 3, 5, 7) and x.dtype == torch.float32
    x4 = normalize(imgs, torch.float16, 4)
    assert x4.shape == (2, 4, 5, 7) and x4.dtype == torch.float16
    assert x4.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(x4[:, 3], torch.zeros_like(x4[:, 3]))
    torch.testing.assert_close(x4[:, :3].float(), expected, rtol=1e-3, atol=2e-3)
    x8 = normalize(imgs, torch.float32, 8)
    assert torch.equal(x8[:, :3], x) and not x8[:, 3:].any()
    with pytest.raises(ValueError, match="channels must be >= 3"):
        normalize(imgs, torch.float32, 2)
    # into a given buffer (the fast path's static input), stale values overwritten
    buf = torch.full((2, 4, 5, 7), 7.0, dtype=torch.float16).contiguous(memory_format=torch.channels_last)
    assert normalize(imgs, torch.float16, 4, out=buf).data_ptr() == buf.data_ptr()
    assert torch.equal(buf, x4)
    for bad in (torch.empty(2, 4, 5, 7, dtype=torch.float16),  # NCHW
                torch.empty(2, 4, 5, 7).contiguous(memory_format=torch.channels_last),  # float32
                torch.empty(2, 3, 5, 7, dtype=torch.float16).contiguous(memory_format=torch.channels_last)):
        with pytest.raises(ValueError, match="out must be"):
            normalize(imgs, torch.float16, 4, out=bad)


def test_pad_input_channels_keeps_the_dense_function(net):
    folded = fold_batchnorm(net)
    padded = pad_input_channels(copy.deepcopy(folded), 4)
    assert padded.input_channels == 4
    stem = padded.get_submodule("backbone.conv1")
    assert stem.in_channels == 4 and stem.weight.shape[1] == 4
    assert not stem.weight[:, 3].any()
    imgs = _images()
    with torch.no_grad():
        ref = folded(normalize(imgs))
        out = padded(normalize(imgs, torch.float32, 4))
        # whatever the extra channel holds, it is ignored
        noisy = normalize(imgs, torch.float32, 4)
        noisy[:, 3] = torch.randn_like(noisy[:, 3])
        assert torch.equal(padded(noisy), out)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="cannot pad the input to 2 channels"):
        pad_input_channels(copy.deepcopy(folded), 2)


def test_prepared_network_in_blocks_matches_the_unpadded_one(net):
    fast = prepare_network(net, torch.float32, torch.device("cpu"))
    plain = prepare_network(net, torch.float32, torch.device("cpu"), input_channels=3)
    assert fast.input_channels == 4 and plain.input_channels == 3
    sb, sb_plain = SegBlocks(fast), SegBlocks(plain)
    assert sb.in_channels == 4 and sb_plain.in_channels == 3
    imgs = _images(1, 256, 384, seed=1)
    grid = torch.tensor([[[True, False, True], [False, True, False]]])
    layout = BlockLayout.from_grid(grid, 128)
    with torch.no_grad():
        out = sb(normalize(imgs, torch.float32, 4), layout=layout)
        ref = sb_plain(normalize(imgs), layout=layout)
        labels = sb.labels(normalize(imgs, torch.float32, 4), layout=layout)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    assert (labels == ref.argmax(1)).float().mean() > 0.999
    # the padded network rejects the 3-channel input with a clear error
    with pytest.raises(ValueError, match="x has 3 channels, the network expects 4"):
        sb(normalize(imgs), layout=layout)


def test_pad_input_channels_leaves_networks_whose_input_feeds_other_ops():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x):
            return self.conv(x) + x      # the input is used as a value, not only by the conv

    gm = torch.fx.symbolic_trace(Residual())
    weight = gm.conv.weight.clone()
    pad_input_channels(gm, 4)
    assert gm.input_channels == 3 and torch.equal(gm.conv.weight, weight)
