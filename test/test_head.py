"""The fused segmentation head: class ids straight from the logits' upsampling.

``SegBlocks.labels`` (and the engine, the node, the bag tool and the GPU fast path through
it) must give ``forward(...).argmax(1)``: the fused ops are checked against the reference
op by op in ``native_op_cases`` (test_native_ops.py, CPU and CUDA); here against the whole
network, with both backends.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import native_op_cases as cases
from conftest import randomize_batchnorm
from segblocks_core import SegBlocks, ops
from segblocks_core.layout import BlockLayout
from segblocks_core.models import swiftnet_rn18

BACKENDS = ["reference"] + (["native"] if ops.has_native("cpu") else [])


@pytest.fixture(scope="module")
def net64():
    torch.manual_seed(0)
    return randomize_batchnorm(swiftnet_rn18(num_classes=7).eval()).double()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("size", [(256, 384), (200, 300)], ids=["aligned", "padded"])
def test_labels_equal_argmax_of_logits(net64, backend, size):
    sb = SegBlocks(net64)
    x = torch.randn(2, 3, *size, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    grid = torch.rand(sb.grid_shape(x.shape), generator=torch.Generator().manual_seed(2)) > 0.5
    grid.view(-1)[0], grid.view(-1)[-1] = True, False
    with torch.no_grad(), ops.use_backend(backend):
        logits = sb(x, grid)
        labels = sb.labels(x, grid)
        dense_logits = net64(x)
        dense_labels = sb.labels(x)
    cases.assert_labels_match(labels, logits)
    cases.assert_labels_match(dense_labels, dense_logits)
    assert labels.shape == (2, *size) and dense_labels.shape == (2, *size)


def test_swiftnet_labels_use_the_fused_ops(net64, monkeypatch):
    """SwiftNet ends in a bilinear x4 upsampling: labels() must not build full-res logits."""
    calls = []
    for name in ("upsample_argmax", "upsample_argmax_dense"):
        original = getattr(ops, name)
        monkeypatch.setattr(ops, name, lambda *a, _f=original, _n=name: calls.append(_n) or _f(*a))
    sb = SegBlocks(net64)
    x = torch.randn(1, 3, 128, 256, dtype=torch.float64)
    with torch.no_grad():
        sb.labels(x, torch.tensor([[[True, False]]]))
        sb.labels(x)
    assert calls == ["upsample_argmax", "upsample_argmax_dense"]


class _NoUpsampling(nn.Module):
    """Logits at input resolution, no final upsampling: labels() falls back to argmax."""

    def __init__(self, classes=5):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, classes, 3, padding=1, stride=2)

    def forward(self, x):
        y = self.conv2(F.relu(self.conv1(x)))
        return F.interpolate(y, scale_factor=2, mode="nearest")


def test_labels_without_bilinear_head_fall_back_to_argmax():
    torch.manual_seed(0)
    net = _NoUpsampling().double().eval()
    sb = SegBlocks(net, block_size=8)
    x = torch.randn(1, 3, 16, 24, dtype=torch.float64)
    grid = torch.tensor([[[True, False, True], [False, True, False]]])
    with torch.no_grad():
        assert torch.equal(sb.labels(x, grid).long(), sb(x, grid).argmax(1))
        assert torch.equal(sb.labels(x).long(), net(x).argmax(1))


def test_labels_reject_more_classes_than_uint8_holds():
    net = swiftnet_rn18(num_classes=300).eval()
    sb = SegBlocks(net)
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad(), pytest.raises(ValueError, match="1 to 256 channels"):
        sb.labels(x, torch.ones(1, 1, 1, dtype=torch.bool))
    with torch.no_grad(), pytest.raises(ValueError, match="1 to 256 channels"):
        sb.labels(x)


@pytest.mark.parametrize("backend", BACKENDS)
def test_upsample_argmax_api_checks_arguments(backend):
    lay = BlockLayout.from_grid(torch.tensor([[[True, False]]]), 4)
    bt = ops.split(torch.randn(1, 3, 4, 8), lay)
    with ops.use_backend(backend):
        with pytest.raises(ValueError, match="factor must be an integer >= 1"):
            ops.upsample_argmax(bt, 0)
        with pytest.raises(ValueError, match="factor must be an integer >= 1"):
            ops.upsample_argmax_dense(torch.randn(1, 3, 4, 4), 1.5)
        with pytest.raises(TypeError, match="blocks must be a BlockTensor"):
            ops.upsample_argmax(torch.randn(1, 3, 4, 8), 2)
        with pytest.raises(ValueError, match=r"logits must have shape \[N, C, H, W\]"):
            ops.upsample_argmax_dense(torch.randn(3, 4, 4), 2)
        labels = ops.upsample_argmax(bt, 3)
    assert labels.dtype == torch.uint8 and labels.shape == (1, 12, 24)


@pytest.mark.skipif(not ops.has_native("cpu") or not hasattr(torch.ops.segblocks, "upsample_argmax"),
                    reason="native CPU ops not built")
def test_native_head_rejects_bad_inputs_naming_the_argument():
    lay = BlockLayout.from_grid(torch.tensor([[[True, False]]]), 4)
    hr, lr = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 2, 2)
    args = (lay.hr_pos, lay.lr_pos, lay.block_map)
    with pytest.raises(RuntimeError, match="upsample_argmax: factor must be >= 1, got 0"):
        torch.ops.segblocks.upsample_argmax(hr, lr, *args, 0)
    with pytest.raises(RuntimeError, match="upsample_argmax: lowres blocks must be half the side"):
        torch.ops.segblocks.upsample_argmax(hr, torch.randn(1, 3, 4, 4), *args, 2)
    with pytest.raises(RuntimeError, match="upsample_argmax_dense: labels are uint8"):
        torch.ops.segblocks.upsample_argmax_dense(torch.randn(1, 257, 2, 2), 2)
    with pytest.raises(RuntimeError, match="upsample_argmax_dense: logits must be a 4-D tensor"):
        torch.ops.segblocks.upsample_argmax_dense(torch.randn(3, 2, 2), 2)


# -- the classifier's output channels padded to whole packs -----------------------------

def test_channel_padded_conv_computes_the_same_channels_from_zero_padded_weights():
    from segblocks_core.fused import ChannelPaddedConv2d
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 19, 1).double()
    padded = ChannelPaddedConv2d(conv)
    assert (padded.classes, padded.out_channels) == (19, 24)
    assert padded.weight.shape == (24, 16, 1, 1) and padded.bias.shape == (24,)
    assert torch.equal(padded.weight[:19], conv.weight) and not padded.weight[19:].any()
    assert torch.equal(padded.bias[:19], conv.bias) and not padded.bias[19:].any()
    x = torch.randn(2, 16, 5, 7, dtype=torch.float64)
    y = padded(x)
    assert y.shape == (2, 19, 5, 7)
    torch.testing.assert_close(y, conv(x), rtol=0, atol=1e-12)
    assert padded.weight is padded.weight  # cached while the parameters do not change
    with pytest.raises(ValueError, match="plain nn.Conv2d with a bias"):
        ChannelPaddedConv2d(nn.Conv2d(16, 19, 1, bias=False))
    with pytest.raises(ValueError, match="groups=1"):
        ChannelPaddedConv2d(nn.Conv2d(16, 18, 1, groups=2))


def test_channel_padded_conv_follows_changes_of_the_wrapped_parameters():
    """In place (version), new data and a dtype change: never the stale padded copy."""
    from segblocks_core.fused import ChannelPaddedConv2d
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 5, 1)
    padded = ChannelPaddedConv2d(conv)
    x = torch.randn(1, 8, 3, 3)
    padded(x)
    with torch.no_grad():
        conv.weight.mul_(-2.0)
        conv.bias.add_(1.0)
    torch.testing.assert_close(padded(x), conv(x))
    conv.weight.data = torch.randn(5, 8, 1, 1)
    torch.testing.assert_close(padded(x), conv(x))
    conv.double()
    assert padded.weight.dtype == torch.float64
    torch.testing.assert_close(padded(x.double()), conv(x.double()))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("units", [False, True], ids=["blocks", "units"])
def test_upsample_argmax_reads_the_first_classes_of_padded_logits(backend, units):
    lay = BlockLayout.from_grid(torch.tensor([[[True, False, True], [False, False, True]]]), 8)
    logits = torch.randn(1, 8, 16, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    # the padding channels are the largest: a head that read them would pick them
    logits[:, 5:] = 100.0
    bt = ops.split(logits, lay)
    want = ops.split(logits[:, :5].contiguous(), lay)
    if units:
        bt, want = bt.to_quartered(), want.to_quartered()
        assert bt.quartered
    with ops.use_backend(backend):
        got = ops.upsample_argmax(bt, 2, classes=5)
        assert torch.equal(got, ops.upsample_argmax(want, 2))
        assert int(got.max()) < 5
        assert torch.equal(ops.upsample_argmax(bt, 2), ops.upsample_argmax(bt, 2, classes=8))
        for bad in (0, 9, 2.5, True):
            with pytest.raises(ValueError, match=r"classes must be an integer in \[1, 8\]"):
                ops.upsample_argmax(bt, 2, classes=bad)


@pytest.mark.parametrize("classes, padded", [(7, True), (19, True), (16, False)])
def test_labels_plans_pad_the_classifier_to_whole_packs(classes, padded):
    """SwiftNet's 1x1 classifier runs with its output channels padded to a multiple of 8 in
    both labels plans (its logits() graph is untouched), and the labels stay those of the
    logits; the padded copy follows later changes of the network's weights."""
    from segblocks_core.fused import ChannelPaddedConv2d
    torch.manual_seed(0)
    net = randomize_batchnorm(swiftnet_rn18(num_classes=classes).eval()).double()
    sb = SegBlocks(net)
    x = torch.randn(1, 3, 128, 256, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    grid = torch.tensor([[[True, False]]])
    with torch.no_grad():
        cases.assert_labels_match(sb.labels(x, grid), sb(x, grid))
        cases.assert_labels_match(sb.labels(x), net(x))
        for plan in sb._labels_plans:
            wrappers = [m for m in plan.modules() if isinstance(m, ChannelPaddedConv2d)]
            assert len(wrappers) == (1 if padded else 0)
            if padded:
                assert wrappers[0].conv is net.logits.conv and wrappers[0].out_channels % 8 == 0
        assert not any(isinstance(m, ChannelPaddedConv2d) for m in net.modules())
        net.logits.conv.bias[0] += 1e3  # class 0 everywhere, from now on
        assert not sb.labels(x, grid).any() and not sb.labels(x).any()


def test_pad_classifier_off_keeps_the_classifier_as_defined():
    from segblocks_core.fused import ChannelPaddedConv2d, pad_classifier, pad_classifier_enabled
    torch.manual_seed(0)
    net = swiftnet_rn18(num_classes=7).eval().double()
    sb = SegBlocks(net)
    x = torch.randn(1, 3, 128, 256, dtype=torch.float64)
    grid = torch.tensor([[[True, False]]])
    with torch.no_grad(), pad_classifier(False):
        assert not pad_classifier_enabled()
        cases.assert_labels_match(sb.labels(x, grid), sb(x, grid))
        cases.assert_labels_match(sb.labels(x), net(x))
    assert pad_classifier_enabled()
    assert not any(isinstance(m, ChannelPaddedConv2d) for plan in sb._labels_plans for m in plan.modules())
