"""Units: high-res blocks stored as their four quarters, one kernel per op for both resolutions.

``SegBlocks(net, units=True)`` must compute exactly what ``units=False`` computes (the same
BlockPad rules; only the storage and the number of launches change), and an all-high-res
grid must still give the dense network. The native ``block_pad_units`` kernel itself is
tested against the reference in ``test_native_ops.py`` (CPU, CUDA) and
``test_cuda_kernels_host.py`` (the CUDA element code on the CPU).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import max_rel_diff, randomize_batchnorm
from segblocks_core import SegBlocks, ops
from segblocks_core.executor import units_mode
from segblocks_core.fastpath import prepare_network
from segblocks_core.layout import BlockLayout, BlockTensor
from segblocks_core.models import resnet18, swiftnet_rn18, swiftnet_rn50
from segblocks_core.ops import _reference

TOL = 1e-4


def _net(builder, seed=0):
    torch.manual_seed(seed)
    return randomize_batchnorm(builder().eval(), seed)


def _mixed_grid(shape, seed=0):
    gen = torch.Generator().manual_seed(seed)
    grid = torch.rand(shape, generator=gen) > 0.5
    grid.view(-1)[0], grid.view(-1)[-1] = True, False
    return grid


# -- storage ----------------------------------------------------------------------------


def test_quarter_layout_and_round_trip():
    hr = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    units = _reference.quarter(hr)
    assert units.shape == (8, 3, 2, 2)
    # unit 4k + 2*qy + qx is the (qy, qx) quarter of block k
    for k in range(2):
        for q in range(4):
            qy, qx = divmod(q, 2)
            assert torch.equal(units[4 * k + q], hr[k, :, 2 * qy:2 * qy + 2, 2 * qx:2 * qx + 2])
    assert torch.equal(_reference.unquarter(units), hr)
    # channels_last stays channels_last (the GPU fast path's layout), same values
    cl = hr.contiguous(memory_format=torch.channels_last)
    units_cl = _reference.quarter(cl)
    assert torch.equal(units_cl, units) and units_cl.is_contiguous(memory_format=torch.channels_last)
    back = _reference.unquarter(units_cl)
    assert torch.equal(back, hr) and back.is_contiguous(memory_format=torch.channels_last)


def test_block_tensor_units_views_and_conversions():
    lay = BlockLayout.from_grid(_mixed_grid((1, 2, 3)), 8)
    hr, lr = torch.randn(lay.num_highres, 5, 8, 8), torch.randn(lay.num_lowres, 5, 4, 4)
    bt = BlockTensor(hr, lr, lay)
    q = bt.to_quartered()
    assert q.quartered and q.block_side == 8 and q.dense_shape() == bt.dense_shape()
    assert q.units.shape == (4 * lay.num_highres + lay.num_lowres, 5, 4, 4)
    # both halves are views of the units tensor
    assert q.highres.data_ptr() == q.units.data_ptr()
    assert q.lowres.data_ptr() == q.units[4 * lay.num_highres:].data_ptr()
    back = q.to_standard()
    assert not back.quartered and torch.equal(back.highres, hr) and torch.equal(back.lowres, lr)
    assert torch.equal(ops.combine(q), ops.combine(bt))


def test_map_runs_once_over_units():
    lay = BlockLayout.from_grid(_mixed_grid((1, 2, 2)), 8)
    bt = BlockTensor(torch.randn(lay.num_highres, 3, 8, 8), torch.randn(lay.num_lowres, 3, 4, 4), lay)
    calls = []

    def fn(t):
        calls.append(t.shape[0])
        return t * 2
    out = bt.to_quartered().map(fn)
    assert calls == [4 * lay.num_highres + lay.num_lowres]
    assert torch.equal(ops.combine(out), 2 * ops.combine(bt))


def test_block_pad_units_are_windows_of_padded_blocks():
    lay = BlockLayout.from_grid(_mixed_grid((2, 2, 3), seed=3), 8)
    bt = BlockTensor(torch.randn(lay.num_highres, 4, 8, 8), torch.randn(lay.num_lowres, 4, 4, 4), lay)
    for p in (1, 3):
        hr_pad, lr_pad = ops.block_pad(bt, p)
        for blocks in (bt, bt.to_quartered()):
            units = ops.block_pad_units(blocks, p)
            for k in range(lay.num_highres):
                for q in range(4):
                    qy, qx = divmod(q, 2)
                    assert torch.equal(units[4 * k + q], hr_pad[k, :, 4 * qy:4 * qy + 4 + 2 * p,
                                                                 4 * qx:4 * qx + 4 + 2 * p])
            assert torch.equal(units[4 * lay.num_highres:], lr_pad)


def test_block_pad_units_rejects_bad_input():
    lay = BlockLayout.from_grid(_mixed_grid((1, 2, 2)), 8)
    bt = BlockTensor(torch.randn(lay.num_highres, 3, 8, 8), torch.randn(lay.num_lowres, 3, 4, 4), lay)
    with pytest.raises(ValueError, match="padding"):
        ops.block_pad_units(bt, -1)
    with pytest.raises(ValueError, match="mode"):
        ops.block_pad_units(bt, 1, "reflect")
    with pytest.raises(TypeError, match="BlockTensor"):
        ops.block_pad_units(bt.highres, 1)
    # quartered storage whose tile size does not match the low-res blocks
    wrong = BlockTensor(torch.randn(4 * lay.num_highres, 3, 3, 3), bt.lowres, lay, quartered=True)
    with pytest.raises(RuntimeError, match="units"):
        ops.block_pad_units_tensor(wrong.highres, wrong.lowres, lay.hr_pos, lay.lr_pos, lay.block_map,
                                   1, "constant", 0.0, True)


# -- whole networks ---------------------------------------------------------------------


@pytest.mark.parametrize("builder,shape", [
    (swiftnet_rn18, (2, 3, 256, 384)),
    (swiftnet_rn50, (1, 3, 256, 256)),
    (resnet18, (2, 3, 256, 256)),
])
@torch.no_grad()
def test_units_equal_split_execution(builder, shape):
    net = _net(builder)
    x = torch.randn(shape)
    grid = _mixed_grid((shape[0], shape[2] // 128, shape[3] // 128), seed=1)
    split = SegBlocks(net)(x, grid)
    units = SegBlocks(net, units=True)(x, grid)
    assert max_rel_diff(units, split) <= TOL
    all_hr = torch.ones_like(grid)
    assert max_rel_diff(SegBlocks(net, units=True)(x, all_hr), net(x)) <= TOL


@pytest.mark.parametrize("builder", [swiftnet_rn18, swiftnet_rn50])
@torch.no_grad()
def test_units_min_side_keeps_whole_blocks_in_the_deep_layers(monkeypatch, builder):
    """units_min_side(16): layer3 and layer4 (high-res blocks of 8 and 4 px at block size
    128) run on whole blocks, everything above on units: the same values, and BlockPad of
    whole blocks runs exactly where the units' BlockPad no longer does."""
    net = _net(builder)
    x = torch.randn(1, 3, 256, 384)
    grid = _mixed_grid((1, 2, 3), seed=3)
    calls = {"units": [], "blocks": []}
    real_units, real_blocks = ops.block_pad_units, ops.block_pad
    monkeypatch.setattr(ops, "block_pad_units",
                        lambda bt, *a, **k: calls["units"].append(bt.block_side) or real_units(bt, *a, **k))
    monkeypatch.setattr(ops, "block_pad", lambda bt, *a, **k: calls["blocks"].append(bt.block_side) or real_blocks(bt, *a, **k))
    everywhere = SegBlocks(net, units=True)(x, grid)
    units_sides, block_sides = calls["units"][:], calls["blocks"][:]
    for c in calls.values():
        c.clear()
    from segblocks_core.executor import units_min_side
    with units_min_side(16):
        deep_blocks = SegBlocks(net, units=True)(x, grid)
    assert max_rel_diff(deep_blocks, everywhere) <= TOL
    assert max_rel_diff(deep_blocks, SegBlocks(net)(x, grid)) <= TOL
    # units BlockPad below 16 px is gone, whole blocks are padded there instead; above, the
    # units' BlockPad passes are the same
    assert {s for s in units_sides if s < 16} == {4, 8} and min(calls["units"]) >= 16
    assert {s for s in block_sides if s < 16} == set() and {s for s in calls["blocks"] if s < 16} == {4, 8}
    assert sorted(calls["units"]) == sorted(s for s in units_sides if s >= 16)
    with pytest.raises(ValueError, match="units_min_side"):
        with units_min_side(-1):
            pass


@torch.no_grad()
def test_units_labels_and_prepared_network():
    """The fast path's network (folded BN, fused epilogues, 4-channel stem) on units."""
    net = _net(swiftnet_rn18)
    fast = prepare_network(net, torch.float32, torch.device("cpu"))
    x = torch.randn(1, 3, 256, 384)
    x4 = F.pad(x, (0, 0, 0, 0, 0, 1))
    grid = _mixed_grid((1, 2, 3), seed=2)
    want = SegBlocks(net)(x, grid)
    logits = SegBlocks(fast, units=True)(x4, grid)
    assert max_rel_diff(logits, want) <= 1e-3
    # the decoder's three steps upsample(x) + skip -> BatchNorm + ReLU -> zero-padded 3x3
    # blend convolution are one upsampling pass each (ops.upsample2x_units) that applies the
    # BatchNorm + ReLU and writes the convolution's padded tiles (no elementwise pass and
    # no BlockPad copy of its own)
    plan = SegBlocks(fast, units=True).plan
    calls = [n for n in plan.graph.nodes if n.op == "call_function"]
    up_add = [n for n in calls if "add" in n.kwargs]
    assert len(up_add) == 3
    assert all(n.kwargs.get("post") is not None and n.kwargs.get("padding") == 1 for n in up_add)
    assert not [n for n in calls if n.kwargs.get("pre") is not None]
    labels = SegBlocks(fast, units=True).labels(x4, grid)
    agree = (labels.long() == want.argmax(1)).float().mean().item()
    assert agree > 0.999


def test_blend_convolutions_read_the_tiles_the_upsampling_wrote(monkeypatch):
    """With the upsampling writing the blends' padded tiles, the plan runs three BlockPad
    passes fewer on units, and its output is the one of the plan that pads them with
    BlockPad (the BatchNorm + ReLU inside BlockPad): the same values."""
    from segblocks_core.executor import _PlanBuilder
    fast = prepare_network(_net(swiftnet_rn18), torch.float32, torch.device("cpu"))
    x = F.pad(torch.randn(1, 3, 256, 384), (0, 0, 0, 0, 0, 1))
    grid = _mixed_grid((1, 2, 3), seed=2)
    pads = []
    real = ops.block_pad_units
    monkeypatch.setattr(ops, "block_pad_units", lambda *a, **k: pads.append(a[1]) or real(*a, **k))
    fused = SegBlocks(fast, units=True)(x, grid)
    fused_pads = len(pads)
    pads.clear()
    monkeypatch.setattr(_PlanBuilder, "fuse_upsample_pad", lambda self: None)
    padded = SegBlocks(fast, units=True)(x, grid)
    assert len(pads) - fused_pads == 3
    assert max_rel_diff(fused, padded) <= 1e-5


@pytest.mark.parametrize("units", [True, False])
def test_stem_reads_the_tiles_the_split_wrote(monkeypatch, units):
    """The input's split writes the stem convolution's BlockPad-ed blocks (7x7, padding 3)
    itself: one BlockPad pass fewer, bitwise the same output as split + BlockPad."""
    from segblocks_core.executor import _PlanBuilder, split_like
    net = _net(swiftnet_rn18)
    x = torch.randn(1, 3, 256, 384)
    grid = _mixed_grid((1, 2, 3), seed=2)
    sb = SegBlocks(net, units=units)
    stem_split = [n for n in sb.plan.graph.nodes if n.op == "call_function" and n.target is split_like][0]
    assert stem_split.args[1:] == (stem_split.args[1], 128, 3)
    pads = []
    real = ops.block_pad
    monkeypatch.setattr(ops, "block_pad", lambda *a, **k: pads.append(a[1]) or real(*a, **k))
    fused = sb(x, grid)
    assert 3 not in pads
    monkeypatch.setattr(_PlanBuilder, "split_padded", lambda self: None)
    assert torch.equal(fused, SegBlocks(net, units=units)(x, grid))
    assert pads.count(3) == 1


def test_split_padded_op():
    lay = BlockLayout.from_grid(_mixed_grid((2, 2, 3), seed=4), 8)
    x = torch.randn(2, 3, 16, 24)
    bt = ops.split_padded(x, lay, padding=2)
    (hr, lr), p = bt.padded
    assert p == 2 and hr.shape == (lay.num_highres, 3, 12, 12) and lr.shape == (lay.num_lowres, 3, 8, 8)
    plain = ops.split(x, lay)
    assert torch.equal(bt.highres, plain.highres) and torch.equal(bt.lowres, plain.lowres)
    want_hr, want_lr = ops.block_pad(plain, 2)
    assert torch.equal(hr, want_hr) and torch.equal(lr, want_lr)
    with pytest.raises(ValueError, match="padding must be >= 1"):
        ops.split_padded(x, lay, padding=0)
    with pytest.raises(ValueError, match="does not split"):
        ops.split_padded(x[:, :, :8], lay)
    with pytest.raises(TypeError, match="BlockLayout"):
        ops.split_padded(x, lay.block_map)


@pytest.mark.parametrize("units", [True, False])
def test_pyramid_levels_are_split_once(monkeypatch, units):
    """SwiftNet's three pooled pyramid levels (dense maps) join the blocks through one split
    of their concatenation, not one split each; the output is bitwise that of the plan
    that splits them one by one."""
    from segblocks_core.executor import _PlanBuilder, block_cat, split_like
    net = _net(swiftnet_rn18)
    x = torch.randn(1, 3, 256, 384)
    grid = _mixed_grid((1, 2, 3), seed=2)
    sb = SegBlocks(net, units=units)
    cats = [n for n in sb.plan.graph.nodes if n.op == "call_function" and n.target is block_cat]
    assert len(cats) == 1
    parts = cats[0].args[0]
    assert len(parts) == 2 and parts[1].target is split_like
    assert parts[1].args[0].target is torch.cat and len(parts[1].args[0].args[0]) == 3
    merged = sb(x, grid)
    monkeypatch.setattr(_PlanBuilder, "merge_splits", lambda self: None)
    one_by_one = SegBlocks(net, units=units)
    assert len([n for n in one_by_one.plan.graph.nodes if n.op == "call_function" and n.target is split_like]) == 4
    assert torch.equal(merged, one_by_one(x, grid))


@torch.no_grad()
def test_units_join_and_leave_dense_maps_without_quarter_copies(monkeypatch):
    """In units mode the dense maps that meet the blocks (the pyramid levels) are split
    straight into units, and the blocks that leave for the pyramid's pooling are combined
    from their units in place: no quarter / unquarter copy runs (split_units and
    combine_units), and the output is the plain split execution's."""
    from segblocks_core.ops import _reference
    net = _net(swiftnet_rn18)
    x = torch.randn(1, 3, 256, 384)
    grid = _mixed_grid((1, 2, 3), seed=2)
    want = SegBlocks(net)(x, grid)
    sb = SegBlocks(net, units=True)
    copies = []
    for name in ("quarter", "unquarter"):
        original = getattr(_reference, name)
        monkeypatch.setattr(_reference, name, lambda t, _f=original, _n=name: copies.append(_n) or _f(t))
    got = sb(x, grid)
    assert copies == []
    assert max_rel_diff(got, want) <= TOL


class SqueezeExcite(nn.Module):
    """Per-image channel weights ([N, C, 1, 1], a global op) multiplying block features."""

    def __init__(self, c):
        super().__init__()
        self.fc = nn.Conv2d(c, c, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc(F.adaptive_avg_pool2d(x, 1)))


class NetWithSE(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.se = SqueezeExcite(8)
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.out = nn.Conv2d(16, 4, 3, padding=1)

    def forward(self, x):
        y = self.se(self.pool(F.relu(self.stem(x))))  # pooled: on units already
        return self.out(torch.cat([y, y * -0.5], 1) + 1.0)


@torch.no_grad()
def test_units_per_image_operands_pooling_and_cat():
    torch.manual_seed(0)
    net = NetWithSE().eval()
    x = torch.randn(2, 3, 64, 96)
    grid = _mixed_grid((2, 2, 3), seed=4)
    split = SegBlocks(net, block_size=32)(x, grid)
    units = SegBlocks(net, block_size=32, units=True)(x, grid)
    assert max_rel_diff(units, split) <= TOL
    # the images of the batch take their own SE weights: swapping them swaps the outputs
    swapped = SegBlocks(net, block_size=32, units=True)(x.flip(0), grid.flip(0))
    assert max_rel_diff(swapped, units.flip(0)) <= TOL


class SkipAfterUpsample(nn.Module):
    """A decoder step whose skip is computed *after* the upsampling (the fused op must still
    run after both), plus an upsampling whose output has another user (not fused)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.down = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.lateral = nn.Conv2d(8, 8, 1)
        self.out = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        a = F.relu(self.stem(x))
        b = F.relu(self.down(a))
        up = F.interpolate(b, scale_factor=2, mode="bilinear", align_corners=False)
        skip = self.lateral(a)
        y = up + skip  # fused (upsampling first)
        z = skip + F.interpolate(b, scale_factor=2, mode="bilinear", align_corners=False)  # fused (second)
        up2 = F.interpolate(b, scale_factor=2, mode="bilinear", align_corners=False)
        return self.out(y + z + up2) + up2  # up2 has two users: not fused


@torch.no_grad()
@pytest.mark.parametrize("backend", ["native", "reference"])
def test_units_upsample_add_is_fused_and_exact(backend):
    torch.manual_seed(0)
    net = SkipAfterUpsample().eval()
    x = torch.randn(2, 3, 64, 96)
    grid = _mixed_grid((2, 2, 3), seed=5)
    split = SegBlocks(net, block_size=32)(x, grid)
    sb = SegBlocks(net, block_size=32, units=True)
    fused = [n for n in sb.plan.graph.nodes if n.op == "call_function" and "add" in n.kwargs]
    assert len(fused) == 2  # `up + skip` and `skip + up(b)`; up2 has two users and stays
    with ops.use_backend(backend):
        units = sb(x, grid)
    assert max_rel_diff(units, split) <= TOL
    assert max_rel_diff(SegBlocks(net, block_size=32, units=True)(x, torch.ones_like(grid)), net(x)) <= TOL


def test_upsample2x_units_op_rejects_bad_input():
    lay = BlockLayout.from_grid(_mixed_grid((1, 2, 2)), 8)
    bt = BlockTensor(torch.randn(lay.num_highres, 3, 4, 4), torch.randn(lay.num_lowres, 3, 2, 2), lay)
    with pytest.raises(TypeError, match="BlockTensor"):
        ops.upsample2x_units(bt.highres)
    other = BlockLayout.from_grid(_mixed_grid((1, 2, 2), seed=3), 8)
    skip_elsewhere = BlockTensor(torch.randn(other.num_highres, 3, 8, 8), torch.randn(other.num_lowres, 3, 4, 4),
                                 other)
    with pytest.raises(ValueError, match="same layout"):
        ops.upsample2x_units(bt, skip_elsewhere)
    wrong_side = BlockTensor(torch.randn(lay.num_highres, 3, 4, 4), torch.randn(lay.num_lowres, 3, 2, 2), lay)
    with pytest.raises(RuntimeError, match="skip must have the output's shape"):
        ops.upsample2x_units(bt, wrong_side)
    with pytest.raises(ValueError, match="padding must be >= 0"):
        ops.upsample2x_units(bt, padding=-1)
    with pytest.raises(RuntimeError, match="post_scale must have shape"):
        ops.upsample2x_units(bt, post=(torch.ones(4), torch.zeros(4)))
    with pytest.raises(ValueError, match="padded tiles"):
        BlockTensor.from_padded_units(torch.zeros(5, 3, 6, 6), 0, lay)
    # the padded result: its units are the tiles' interiors, the tiles BlockPad's
    scale, shift = torch.rand(3) + 0.5, torch.randn(3)
    padded = ops.upsample2x_units(bt, post=(scale, shift), padding=2)
    plain = ops.upsample2x_units(bt, post=(scale, shift))
    (tiles,), p = padded.padded
    assert p == 2 and tiles.shape == (4 * lay.num_highres + lay.num_lowres, 3, 8, 8)
    assert torch.equal(padded.units, plain.units) and plain.padded is None
    assert torch.equal(tiles, ops.block_pad_units(plain, 2))
    out = ops.upsample2x_units(bt, BlockTensor(torch.zeros(lay.num_highres, 3, 8, 8),
                                               torch.zeros(lay.num_lowres, 3, 4, 4), lay))
    assert out.quartered and out.block_side == 8
    torch.testing.assert_close(out.units, ops.upsample2x_units(bt).units)


def test_units_training_gradients_match_split():
    """Under autograd the differentiable reference BlockPad runs; gradients agree."""
    grads = []
    x = torch.randn(1, 3, 128, 256, dtype=torch.float64)
    grid = torch.tensor([[[True, False]]])
    for units in (False, True):
        net = _net(resnet18).double()
        out = SegBlocks(net, units=units)(x, grid)
        out.square().mean().backward()
        grads.append(net.layer2[0].conv1.weight.grad.clone())
    torch.testing.assert_close(grads[1], grads[0])


def test_units_mode_context_only_changes_storage():
    lay = BlockLayout.from_grid(_mixed_grid((1, 2, 2)), 8)
    bt = BlockTensor(torch.randn(lay.num_highres, 3, 4, 4), torch.randn(lay.num_lowres, 3, 2, 2), lay)
    from segblocks_core.executor import block_max_pool2d
    with units_mode(True):
        a = block_max_pool2d(bt, 3, 2, 1)
    b = block_max_pool2d(bt, 3, 2, 1)
    assert a.quartered and not b.quartered
    assert torch.equal(ops.combine(a), ops.combine(b))


@torch.no_grad()
def test_one_pass_conv_units_in_the_prepared_network(monkeypatch):
    """With :func:`fused.conv_units` on, every 3x3 convolution on units runs as
    ``ops.conv3x3_units`` (the halo gathered in the kernel), with its stride, bias,
    residual, ReLU and BatchNorm prologue; the network's output does not change. The CUDA kernel
    is tested against the op's reference in test_native_ops / test_cuda_kernels_host; here
    the support check is forced true so the reference runs in its place on the CPU."""
    from segblocks_core import executor, fused

    net = _net(swiftnet_rn18)
    fast = prepare_network(net, torch.float32, torch.device("cpu"))
    x4 = F.pad(torch.randn(1, 3, 256, 384), (0, 0, 0, 0, 0, 1))
    grid = _mixed_grid((1, 2, 3), seed=2)
    want = SegBlocks(fast, units=True)(x4, grid)

    calls = []
    real = ops.conv3x3_units

    def spy(blocks, weight, bias=None, residual=None, relu=False, stride=1, pre=None):
        calls.append((stride, residual is not None, relu, pre is not None))
        return real(blocks, weight, bias, residual, relu, stride, pre)

    monkeypatch.setattr(ops, "conv3x3_units_supported", lambda *a, **k: True)
    monkeypatch.setattr(ops, "conv3x3_units", spy)
    with fused.conv_units("always"), executor.pooling_tiles(False):
        got = SegBlocks(fast, units=True)(x4, grid)
    assert max_rel_diff(got, want) <= TOL
    # the decoder's three blends read the padded tiles their upsampling wrote (there is no
    # BlockPad pass left to save), so the 16 convolutions of the backbone run in one pass
    assert len(calls) == 16 and not any(pre for *_, pre in calls)
    # with the max pooling writing layer1's first tiles (the default), that convolution
    # reads them: 15
    calls.clear()
    with fused.conv_units("always"):
        got = SegBlocks(fast, units=True)(x4, grid)
    assert max_rel_diff(got, want) <= TOL
    assert len(calls) == 15 and not any(pre for *_, pre in calls)
    # without the blends' fusion either (the plan pass off), the blends run in one pass too,
    # with their BatchNorm + ReLU as the kernel's prologue
    monkeypatch.setattr(executor._PlanBuilder, "fuse_upsample_pad", lambda self: None)
    calls.clear()
    with fused.conv_units("always"), executor.pooling_tiles(False):
        got = SegBlocks(fast, units=True)(x4, grid)
    assert max_rel_diff(got, want) <= TOL
    # SwiftNet-RN18's 3x3 convolutions below the input resolution: 4 in layer1 and 4 in each
    # of layer2-4, the first of which has stride 2; the second of every block adds the
    # residual (2 per stage); all of these with the ReLU. Then the decoder's three blends,
    # BatchNorm + ReLU before the convolution (the prologue), stride 1, no residual.
    backbone = [c for c in calls if not c[3]]
    assert len(backbone) == 16 and len(calls) == 16 + 3
    assert sorted(s for s, *_ in backbone) == [1] * 13 + [2] * 3
    assert sum(residual for _, residual, *_ in backbone) == 8
    assert all(relu for _, _, relu, _ in backbone)
    assert [(s, residual) for s, residual, _, pre in calls if pre] == [(1, False)] * 3
    with fused.conv_units("off"):
        calls.clear()
        SegBlocks(fast, units=True)(x4, grid)
    assert calls == []
    with pytest.raises(ValueError, match="conv_units mode"):
        with fused.conv_units("fast"):
            pass
    assert executor.conv_units_mode() == "off"
