"""SegBlocks executor: exactness invariants, global ops, errors, training mode."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import max_rel_diff, randomize_batchnorm
from segblocks_core import SegBlocks, UnsupportedLayerError
from segblocks_core.models import resnet18, swiftnet_rn18, swiftnet_rn50

TOL = 1e-4  # max |diff| <= TOL * max |dense| (fp32, CPU)


def all_hr(n, h, w, b=128):
    return torch.ones(n, -(-h // b), -(-w // b), dtype=torch.bool)


def eval_net(builder, seed=0):
    torch.manual_seed(seed)
    return randomize_batchnorm(builder().eval(), seed)


@pytest.mark.parametrize("builder,shape", [
    (swiftnet_rn18, (2, 3, 256, 384)),
    (swiftnet_rn50, (1, 3, 256, 256)),
    (resnet18, (2, 3, 256, 256)),
])
@torch.no_grad()
def test_all_highres_equals_dense(builder, shape):
    net = eval_net(builder)
    x = torch.randn(shape)
    dense = net(x)
    out = SegBlocks(net)(x, all_hr(shape[0], *shape[2:]))
    assert out.shape == dense.shape
    assert max_rel_diff(out, dense) <= TOL


@torch.no_grad()
def test_all_highres_exact_at_decoder_block_borders():
    """The original implementation breaks exactness at block borders in the decoder; check
    the pixels next to every block border explicitly (output and stride-4 features)."""
    net = eval_net(swiftnet_rn18)
    x = torch.randn(1, 3, 256, 384)
    grid = all_hr(1, 256, 384)
    sb = SegBlocks(net)
    features = SegBlocks(net.backbone)(x, grid)
    dense_features = net.backbone(x)
    border = torch.zeros(dense_features.shape[-2:], dtype=torch.bool)
    for k in range(0, 96, 32):           # stride-4 block side = 32
        border[max(k - 1, 0):k + 1, :] = True
        border[:, max(k - 1, 0):k + 1] = True
    diff = (features - dense_features).abs()[..., border]
    assert diff.max() <= TOL * dense_features.abs().max()
    assert max_rel_diff(sb(x, grid), net(x)) <= TOL


@torch.no_grad()
def test_input_not_multiple_of_block_size_is_padded_and_cropped():
    net = eval_net(swiftnet_rn18)
    x = torch.randn(1, 3, 270, 480)
    out = SegBlocks(net)(x, all_hr(1, 270, 480))
    padded = F.pad(x, (0, 512 - 480, 0, 384 - 270))
    dense = net(padded)[..., :270, :480]
    assert out.shape == (1, 19, 270, 480)
    assert max_rel_diff(out, dense) <= TOL


@torch.no_grad()
def test_dense_when_all_highres_runs_the_dense_network_only_for_all_highres_layouts():
    net = eval_net(swiftnet_rn18)
    x = torch.randn(1, 3, 270, 480)  # not a multiple of the block size: padded, then cropped
    sb = SegBlocks(net, dense_when_all_highres=True)
    blocks = SegBlocks(net)
    grid = all_hr(1, 270, 480)
    want = blocks(x, grid)
    want_labels = blocks.labels(x, grid)

    def no_plan(*args, **kwargs):
        raise AssertionError("the block plan ran")
    sb.labels(x, grid)  # builds the labels plans
    real = sb._plan, sb._labels_plans
    object.__setattr__(sb, "_plan", no_plan)  # from here any use of a block plan fails
    sb._labels_plans = (real[1][0], no_plan)
    out = sb(x, grid)
    assert out.shape == want.shape and max_rel_diff(out, want) <= TOL
    padded = F.pad(x, (0, 512 - 480, 0, 384 - 270))
    torch.testing.assert_close(out, net(padded)[..., :270, :480], rtol=0, atol=0)
    labels = sb.labels(x, grid)
    assert labels.shape == want_labels.shape and (labels == want_labels).float().mean() > 0.999
    # one low-res block: the blocks run
    mixed = grid.clone()
    mixed[0, 0, 0] = False
    for fn in (sb, sb.labels):
        with pytest.raises(AssertionError, match="block plan ran"):
            fn(x, mixed)
    object.__setattr__(sb, "_plan", real[0])
    sb._labels_plans = real[1]
    torch.testing.assert_close(sb(x, mixed), blocks(x, mixed), rtol=0, atol=0)


def test_dense_when_all_highres_keeps_blocks_in_training():
    net = swiftnet_rn18().train()
    sb = SegBlocks(net, dense_when_all_highres=True)
    layout = sb.make_layout(torch.zeros(1, 3, 128, 256), all_hr(1, 128, 256))
    assert not sb._runs_dense(layout)
    net.eval()
    assert sb._runs_dense(layout)


def resnet_trunk(net):
    return nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool,
                         net.layer1, net.layer2, net.layer3, net.layer4)


@torch.no_grad()
def test_all_lowres_equals_dense_on_pooled_input():
    trunk = resnet_trunk(eval_net(resnet18))
    x = torch.randn(2, 3, 256, 384)
    out = SegBlocks(trunk)(x, torch.zeros(2, 2, 3, dtype=torch.bool))
    low = trunk(F.avg_pool2d(x, 2))          # stride 32 of the half image: 4 x 6
    expected = low.repeat_interleave(2, 2).repeat_interleave(2, 3)
    assert max_rel_diff(out, expected) <= TOL


@torch.no_grad()
def test_lowres_blocks_of_swiftnet_features_equal_dense_on_pooled_input():
    """SwiftNet's decoder in blocks: with an all-low-res grid the stride-4 features are the
    dense backbone's on the half-size image, apart from the global SPP pooling, so compare
    the stage features that precede it."""
    net = eval_net(swiftnet_rn18)
    stem_to_layer3 = nn.Sequential(net.backbone.conv1, net.backbone.bn1, net.backbone.relu,
                                   net.backbone.maxpool, net.backbone.layer1,
                                   net.backbone.layer2, net.backbone.layer3)
    x = torch.randn(1, 3, 256, 256)
    out = SegBlocks(stem_to_layer3)(x, torch.zeros(1, 2, 2, dtype=torch.bool))
    expected = stem_to_layer3(F.avg_pool2d(x, 2)).repeat_interleave(2, 2).repeat_interleave(2, 3)
    assert max_rel_diff(out, expected) <= TOL


@torch.no_grad()
def test_batch_images_never_mix():
    net = eval_net(swiftnet_rn18)
    x = torch.randn(2, 3, 256, 256)
    grid = torch.tensor([[[1, 0], [0, 1]], [[0, 1], [1, 1]]], dtype=torch.bool)
    sb = SegBlocks(net)
    both = sb(x, grid)
    for i in range(2):
        single = sb(x[i:i + 1], grid[i:i + 1])
        assert max_rel_diff(both[i:i + 1], single) <= TOL


def test_dense_path_without_grid():
    net = eval_net(resnet18)
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        assert torch.equal(SegBlocks(net)(x), net(x))


class GlobalContext(nn.Module):
    """Adds the global mean: needs the whole map."""

    def forward(self, x):
        return x + x.mean((2, 3), keepdim=True)


class NetWithGlobal(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.ctx = GlobalContext()
        self.out = nn.Conv2d(8, 4, 3, stride=2, padding=1)

    def forward(self, x):
        return self.out(F.relu(self.ctx(self.conv(x))))


@torch.no_grad()
def test_user_global_module_sees_dense_map():
    net = NetWithGlobal().eval()
    x = torch.randn(1, 3, 64, 64)
    with pytest.raises(UnsupportedLayerError, match="mean"):
        SegBlocks(net, block_size=32)
    sb = SegBlocks(net, block_size=32, global_modules=(GlobalContext,))
    assert max_rel_diff(sb(x, torch.ones(1, 2, 2, dtype=torch.bool)), net(x)) <= TOL


class NetWithShuffle(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x):
        return self.shuffle(self.conv(x))


def test_unsupported_layer_is_named():
    with pytest.raises(UnsupportedLayerError, match=r"layer 'shuffle' \(PixelShuffle\)"):
        SegBlocks(NetWithShuffle(), block_size=32)


def test_block_size_must_divide_by_twice_the_total_stride():
    with pytest.raises(ValueError, match="multiple of 64"):
        SegBlocks(resnet18(), block_size=32)
    with pytest.raises(ValueError, match="even"):
        SegBlocks(resnet18(), block_size=127)
    assert SegBlocks(resnet18(), block_size=64).max_stride == 32


def test_bad_inputs_raise_clear_errors():
    sb = SegBlocks(resnet18().eval())
    x = torch.randn(1, 3, 128, 256)
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        sb(torch.randn(3, 128, 128), torch.ones(1, 1, 1, dtype=torch.bool))
    with pytest.raises(TypeError, match="floating-point"):
        sb(torch.zeros(1, 3, 128, 256, dtype=torch.uint8), torch.ones(1, 1, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="grid shape"):
        sb(x, torch.ones(1, 2, 2, dtype=torch.bool))
    with pytest.raises(TypeError, match="torch.bool"):
        sb(x, torch.ones(1, 1, 2))
    with pytest.raises(ValueError, match="channels"):
        sb(torch.randn(1, 4, 128, 256), torch.ones(1, 1, 2, dtype=torch.bool))
    with pytest.raises(TypeError, match="nn.Module"):
        SegBlocks(lambda x: x)


def test_training_mode_batchnorm_uses_joint_statistics():
    """All-high-res in training mode: batch statistics over the blocks are those of the
    dense map, so outputs, gradients and running statistics match the dense network.
    float64, because train-mode BatchNorm over SPP's tiny pooled maps amplifies fp32
    rounding of the (different) summation orders."""
    torch.manual_seed(0)
    dense_net = swiftnet_rn18().train().double()
    block_net = swiftnet_rn18().train().double()
    block_net.load_state_dict(dense_net.state_dict())
    x = torch.randn(2, 3, 128, 256, dtype=torch.float64)
    out_d = dense_net(x)
    out_b = SegBlocks(block_net)(x, all_hr(2, 128, 256))
    assert max_rel_diff(out_b.detach(), out_d.detach()) <= 1e-10
    out_d.square().mean().backward()
    out_b.square().mean().backward()
    for name in ("backbone.conv1.weight", "backbone.layer3.1.bn2.weight", "logits.conv.weight"):
        g_d = dense_net.get_parameter(name).grad
        g_b = block_net.get_parameter(name).grad
        assert max_rel_diff(g_b, g_d) <= 1e-10, name
    bn_d, bn_b = dense_net.backbone.layer2[0].bn1, block_net.backbone.layer2[0].bn1
    torch.testing.assert_close(bn_b.running_mean, bn_d.running_mean, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(bn_b.running_var, bn_d.running_var, rtol=1e-10, atol=1e-12)
    assert int(bn_b.num_batches_tracked) == int(bn_d.num_batches_tracked) == 1


def test_plan_has_no_host_reads():
    """The plan only calls block ops; nothing in it converts device values to Python."""
    code = SegBlocks(swiftnet_rn18()).plan.code
    for forbidden in (".item(", ".cpu(", ".tolist(", "nonzero"):
        assert forbidden not in code
    assert "block_conv2d" in code and "block_interpolate" in code


@pytest.mark.parametrize("units", [False, True])
@torch.no_grad()
def test_convolution_input_is_released_before_the_convolution_runs(monkeypatch, units):
    """Where a convolution is the last user of its input, the plan hands the input over
    (``executor.Handoff``) and block_conv2d lets it go once BlockPad has padded it: the
    unpadded input is no longer alive when the convolution runs, so its memory can hold
    the output (it was SegBlocks' memory peak, at the decoder's last blend). An input with a
    later user (the residual shortcut) stays alive, and the output is unchanged."""
    import weakref

    from segblocks_core import executor

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
            self.a = nn.Conv2d(8, 8, 3, padding=1)
            self.b = nn.Conv2d(8, 8, 3, padding=1)

        def forward(self, x):
            y = F.relu(self.stem(x))
            return self.b(F.relu(self.a(y))) + y  # y: a's input, used again after b

    torch.manual_seed(0)
    net = Net().eval()
    x = torch.randn(1, 3, 64, 96)
    grid = torch.tensor([[[True, False, True], [False, True, False]]])
    padded, seen = [], []

    def watch(pad):
        def wrapper(bt, *args, **kwargs):
            padded.append([weakref.ref(t) for t in (bt.highres, bt.lowres, bt._units) if t is not None])
            return pad(bt, *args, **kwargs)
        return wrapper

    conv2d = F.conv2d

    def conv_watch(*args, **kwargs):
        seen.append([all(r() is None for r in refs) for refs in padded])
        padded.clear()
        return conv2d(*args, **kwargs)

    monkeypatch.setattr(executor, "_pad_units", watch(executor._pad_units))
    monkeypatch.setattr(executor, "_pad_crop", watch(executor._pad_crop))
    sb = SegBlocks(net, block_size=32, units=units)
    want = sb(x, grid)
    padded.clear()
    monkeypatch.setattr(F, "conv2d", conv_watch)
    out = sb(x, grid)
    # stem (two calls without units: high-res, then low-res), a, b
    # one entry per block_conv2d (the first of its calls): stem (at input resolution: whole
    # blocks, a high-res and a low-res call), a, b
    assert len(seen) == (4 if units else 6), seen
    # the stem reads the BlockPad-ed blocks the input's split wrote (ops.split_padded): no
    # unpadded input exists to let go; a's input (y) is read again by the residual add
    assert seen[0] == [], seen
    assert [s[0] for s in seen if s] == [False, True], seen
    torch.testing.assert_close(out, want, rtol=0, atol=0)
    with torch.no_grad():
        monkeypatch.undo()
        reference = SegBlocks(net, block_size=32, units=units)(x, grid)
    torch.testing.assert_close(out, reference, rtol=0, atol=0)
