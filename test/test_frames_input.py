"""Frames straight into the stem's tiles: ``SegBlocks.labels_from_frames`` / ``engine.frame_labels``.

Where the block plan reads its input only through the stem's BlockPad-ed split, the uint8
frames are split and normalised in one pass (``ops.split_padded_frames``) and the normalised
map is never written; everywhere else the frames are normalised first. The labels must be
those of ``labels(normalize(frames))`` bitwise either way (CPU here; the GPU fast path's
graphs are checked in test_gpu_fastpath.py on the GPU host).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import randomize_batchnorm
from segblocks_core import SegBlocks, ops
from segblocks_core.engine import _norm_constants, frame_labels, normalize
from segblocks_core.executor import frames_split
from segblocks_core.layout import BlockLayout
from segblocks_core.models import swiftnet_rn18


def _frames(n, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, h, w, 3), dtype=torch.uint8, generator=g)


def _layout(n, gh, gw, seed=0, block=128):
    g = torch.Generator().manual_seed(seed)
    grid = torch.rand((n, gh, gw), generator=g) > 0.5
    grid.view(-1)[0], grid.view(-1)[-1] = True, False
    return BlockLayout.from_grid(grid, block)


@pytest.fixture
def calls(monkeypatch):
    """Which of the two input paths ran: split_padded_frames, normalize_frames."""
    seen = []
    for name in ("split_padded_frames", "normalize_frames"):
        original = getattr(ops, name)
        monkeypatch.setattr(ops, name, lambda *a, _f=original, _n=name, **k: seen.append(_n) or _f(*a, **k))
    return seen


def _swiftnet(units):
    torch.manual_seed(0)
    return SegBlocks(randomize_batchnorm(swiftnet_rn18().eval(), 0), units=units)


@pytest.mark.parametrize("units", [True, False])
@torch.no_grad()
def test_frames_go_straight_into_the_stem_tiles(calls, units):
    sb = _swiftnet(units)
    images = _frames(2, 256, 384)
    layout = _layout(2, 2, 3, seed=1)
    got = frame_labels(sb, images, torch.float32, layout=layout)
    assert calls == ["split_padded_frames"]  # the normalised map is never written
    want = sb.labels(normalize(images, torch.float32, sb.in_channels), layout=layout)
    assert torch.equal(got, want)
    calls.clear()
    with frames_split(False):  # the A/B switch: normalise first
        assert torch.equal(frame_labels(sb, images, torch.float32, layout=layout), want)
    assert calls == ["normalize_frames"]


@torch.no_grad()
def test_frames_are_normalised_first_where_the_split_cannot_read_them(calls):
    sb = _swiftnet(True)
    dense = SegBlocks(sb.net, units=True, dense_when_all_highres=True)
    scale, shift = _norm_constants(torch.device("cpu"))
    cases = [  # (segblocks, frames, layout)
        (sb, _frames(1, 256, 256, seed=2), None),  # no layout: the dense network
        # frames that are not whole blocks: padded to the grid, which needs the dense map
        (sb, _frames(1, 200, 300, seed=3), _layout(1, 2, 3, seed=4)),
        # an all-high-res layout the dense network stands in for
        (dense, _frames(1, 256, 256, seed=5), BlockLayout.from_grid(torch.ones(1, 2, 2, dtype=torch.bool), 128)),
    ]
    for net, images, layout in cases:
        x = normalize(images, torch.float32, net.in_channels)
        want = net.labels(x) if layout is None else net.labels(x, layout=layout)
        calls.clear()
        got = net.labels_from_frames(images, scale, shift, torch.float32, layout=layout)
        assert calls == ["normalize_frames"]
        assert torch.equal(got, want) and got.shape == images.shape[:3]


class InputTwice(nn.Module):
    """The input feeds the stem and, pooled, the output: the plan reads it beyond the split."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.pool = nn.AvgPool2d(2)
        self.out = nn.Conv2d(8 + 3, 4, 3, padding=1)

    def forward(self, x):
        y = F.relu(self.stem(x))
        return F.interpolate(self.out(torch.cat([y, self.pool(x)], 1)), scale_factor=2.0,
                             mode="bilinear", align_corners=False)


@torch.no_grad()
def test_an_input_read_beyond_the_stem_is_normalised(calls):
    torch.manual_seed(0)
    sb = SegBlocks(InputTwice().eval(), block_size=32)
    assert not sb._input_read_by_stem_split()
    images = _frames(1, 64, 96, seed=6)
    layout = _layout(1, 2, 3, seed=7, block=32)
    scale, shift = _norm_constants(torch.device("cpu"))
    want = sb.labels(normalize(images, torch.float32, 3), layout=layout)
    calls.clear()
    assert torch.equal(sb.labels_from_frames(images, scale, shift, torch.float32, layout=layout), want)
    assert calls == ["normalize_frames"]
    assert _swiftnet(True)._input_read_by_stem_split()


def test_labels_from_frames_rejects_bad_frames():
    sb = _swiftnet(True)
    scale, shift = _norm_constants(torch.device("cpu"))
    for bad in (torch.zeros(1, 128, 128, 3), torch.zeros(1, 3, 128, 128, dtype=torch.uint8),
                torch.zeros(128, 128, 3, dtype=torch.uint8)):
        with pytest.raises(ValueError, match="uint8 RGB frames"):
            sb.labels_from_frames(bad, scale, shift, torch.float32, layout=_layout(1, 1, 1))
    with pytest.raises(ValueError, match="layout grid"):
        sb.labels_from_frames(_frames(1, 128, 256), scale, shift, torch.float32, layout=_layout(1, 2, 2))


@torch.no_grad()
def test_graphed_segmenter_bodies_read_the_frames(calls):
    """The bodies GraphedSegmenter captures (CUDA only: here run eagerly on the CPU, without
    the capture): the policy and the network read the uint8 frames, never a normalised map,
    and give what normalising first gives."""
    from segblocks_core.fastpath import GraphedSegmenter
    from segblocks_core.policy import ComplexityPolicy
    sb = SegBlocks(_swiftnet(True).net, units=True, dense_when_all_highres=True)
    seg = GraphedSegmenter.__new__(GraphedSegmenter)  # the bodies only: no CUDA graphs on a CPU
    seg.device, seg.dtype, seg.block_size, seg.segblocks = torch.device("cpu"), torch.float32, 128, sb
    seg.policy, seg._lowres_stream = ComplexityPolicy(0.0, 128), None
    seg.images = _frames(2, 256, 384, seed=8)
    seg.images[:, :128] = 60  # flat blocks: both resolutions
    seg.tau = torch.tensor(0.3)
    seg.labels = torch.zeros(2, 256, 384, dtype=torch.uint8)
    seg.grid = torch.zeros(2, 2, 3, dtype=torch.bool)
    seg.count = torch.zeros((), dtype=torch.int64)
    complexity, grid = seg._policy()
    seg._body(complexity, grid, 8)
    assert calls == ["split_padded_frames"]
    x = normalize(seg.images, torch.float32, sb.in_channels)
    want_complexity = seg.policy.complexity(x[:, :3])
    assert torch.equal(complexity, want_complexity) and int(seg.count) == int((want_complexity > 0.3).sum())
    layout = BlockLayout.from_grid(want_complexity > 0.3, 128, 8, want_complexity)
    assert 0 < layout.num_lowres and torch.equal(seg.grid, layout.grid)
    assert torch.equal(seg.labels, sb.labels(x, layout=layout))


def test_new_ops_reject_bad_input():
    """The native ops behind the frames and units paths check their arguments."""
    sb_ops = torch.ops.segblocks
    layout = _layout(1, 2, 3, block=4)
    scale, shift = _norm_constants(torch.device("cpu"))
    images = _frames(1, 8, 12)
    pos = (layout.hr_pos, layout.lr_pos)
    x = torch.randn(1, 4, 8, 12)
    cases = [
        (lambda: sb_ops.split_units(x, *pos, 3), "block_size must be an even number"),
        (lambda: sb_ops.split_units(x[:, :, :6], *pos, 4), "not a multiple of block_size"),
        (lambda: sb_ops.combine_units(torch.randn(4 * layout.num_highres + 1, 4, 2, 2),
                                      torch.randn(layout.num_lowres, 4, 2, 2), *pos, 1, 2, 3), "4 units each"),
        (lambda: sb_ops.combine_units(torch.randn(4 * layout.num_highres, 4, 2, 2),
                                      torch.randn(layout.num_lowres, 4, 1, 1), *pos, 1, 2, 3), "equal size"),
        (lambda: sb_ops.combine_units(torch.randn(4 * layout.num_highres, 4, 2, 2),
                                      torch.randn(layout.num_lowres, 4, 2, 2), *pos, 1, 3, 3), "cells"),
        (lambda: sb_ops.split_padded_frames(images.float(), scale, shift, *pos, layout.block_map, 4, 1, 4,
                                            torch.float32), "must be uint8"),
        (lambda: sb_ops.split_padded_frames(images, scale, shift, *pos, layout.block_map, 4, 1, 2, torch.float32),
         "channels must be >= 3"),
        (lambda: sb_ops.split_padded_frames(images, scale, shift, *pos, layout.block_map, 4, 1, 4, torch.float64),
         "dtype must be float32, float16 or bfloat16"),
        (lambda: sb_ops.split_padded_frames(images, scale, shift, *pos, layout.block_map, 8, 1, 4, torch.float32),
         "not a multiple of block_size|cells"),
        (lambda: sb_ops.cell_complexity_frames(images, scale, shift, torch.float32, 5, 1e-4), "cells of 5 x 5"),
        (lambda: sb_ops.cell_complexity_frames(images, scale[:2], shift, torch.float32, 4, 1e-4), "3 values"),
    ]
    for call, message in cases:
        with pytest.raises(RuntimeError, match=message):
            call()
    with pytest.raises(ValueError, match="uint8 RGB frames"):
        ops.cell_complexity_frames(images[0], scale, shift, torch.float32, 4, 1e-4)
    with pytest.raises(ValueError, match=r"frames of shape \(1, 8, 12, 3\) does not split into the layout's grid"):
        ops.split_padded_frames(images, scale, shift, 4, torch.float32, _layout(1, 1, 3, block=4))
