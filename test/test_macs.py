"""MAC counting: the paper's numbers, block formula, all-high-res == dense."""

import pytest
import torch
from torch import nn

from segblocks_core import SegBlocks, count_macs
from segblocks_core.models import resnet18, swiftnet_rn18, swiftnet_rn50


@pytest.mark.parametrize("builder,paper,original", [
    (swiftnet_rn18, 104.1, 103.6),
    (swiftnet_rn50, 206.0, 204.6),
])
def test_dense_swiftnet_at_2048x1024_matches_the_paper(builder, paper, original):
    macs = count_macs(builder(), torch.empty(1, 3, 1024, 2048))
    gmacs = macs.dense.item() / 1e9
    assert abs(gmacs - paper) <= 0.01 * paper
    assert abs(gmacs - original) <= 0.01 * original
    assert macs.effective.item() == macs.executed.item() == macs.dense.item()


def test_resnet18_at_224_matches_the_known_count():
    # torchvision ResNet-18: 1.814 GMAC (conv + fc) at 224x224
    gmacs = count_macs(resnet18(), torch.empty(1, 3, 224, 224)).dense.item() / 1e9
    assert gmacs == pytest.approx(1.814, abs=0.002)


class TwoConvs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 16, 3, stride=2, padding=1)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def test_mixed_grid_matches_the_formula():
    grid = torch.tensor([[[1, 0, 0], [0, 1, 0]], [[0, 0, 0], [0, 0, 1]]], dtype=torch.bool)
    x = torch.empty(2, 3, 16, 24)
    macs = count_macs(TwoConvs(), x, grid, block_size=8)
    # k^2 Cin Cout (nHR s_hr^2 + nLR s_lr^2) per conv; block side 8 then 4 (stride 2)
    expected = [9 * 3 * 8 * (nh * 64 + nl * 16) + 9 * 8 * 16 * (nh * 16 + nl * 4)
                for nh, nl in ((2, 4), (1, 5))]
    assert macs.effective.tolist() == expected
    assert macs.executed.tolist() == expected
    dense = 9 * 3 * 8 * 16 * 24 + 9 * 8 * 16 * 8 * 12
    assert macs.dense.tolist() == [dense, dense]


def test_all_highres_equals_dense_and_all_lowres_is_a_quarter():
    net = swiftnet_rn18()
    sb = SegBlocks(net)
    x = torch.empty(2, 3, 512, 1024)
    dense = count_macs(sb, x)
    hr = count_macs(sb, x, torch.ones(2, 4, 8, dtype=torch.bool))
    lr = count_macs(sb, x, torch.zeros(2, 4, 8, dtype=torch.bool))
    torch.testing.assert_close(hr.effective, dense.effective, rtol=0, atol=0)
    torch.testing.assert_close(hr.executed, dense.dense, rtol=0, atol=0)
    # everything but SPP's pooled levels and fuse input (dense, global) scales by 1/4
    assert (lr.effective / dense.dense).tolist() == pytest.approx([0.25, 0.25], abs=0.002)
    assert (lr.effective < 0.26 * dense.dense).all()


def test_padded_input_counts_padding_as_executed_only():
    sb = SegBlocks(swiftnet_rn18())
    x = torch.empty(1, 3, 270, 480)
    grid = torch.ones(1, 3, 4, dtype=torch.bool)
    macs = count_macs(sb, x, grid)
    dense = count_macs(sb, x).dense
    torch.testing.assert_close(macs.effective, dense)
    padded = count_macs(sb, torch.empty(1, 3, 384, 512)).dense
    torch.testing.assert_close(macs.executed, padded)
    assert macs.executed.item() > macs.effective.item()
