"""Halo indices (segblocks_core.halo): BlockPad-ed units described as rows of their own pixels.

The oracle is ``ops.block_pad_units`` (1 px, zero image border): gathering the source rows
through the index must give exactly its padded tiles, on every kind of neighbour (same
resolution, a low-res block beside a high-res one and the reverse, corners, image borders,
the images of a batch apart), for every unit side the networks use, including 1 px.
"""

from __future__ import annotations

import pytest
import torch

from segblocks_core import ops
from segblocks_core.halo import HaloIndex, gather_padded, halo_index, halo_source
from segblocks_core.layout import BlockLayout, BlockTensor


def _layout(shape, seed, p=0.5, block=16, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    return BlockLayout.from_grid((torch.rand(shape, generator=gen) < p).to(device), block)


def _units(layout, side, channels=3, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    t = 4 * layout.num_highres + layout.num_lowres
    return torch.randn((t, channels, side, side), generator=gen).to(dtype)


def _oracle(units, layout):
    return ops.block_pad_units(BlockTensor.from_units(units, layout), 1)


@pytest.mark.parametrize("side", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("shape", [(1, 3, 4), (2, 2, 3), (3, 1, 5)])
def test_gathered_tiles_equal_block_pad_units(shape, seed, side):
    layout = _layout(shape, seed)
    units = _units(layout, side, seed=seed)
    halo = halo_index(layout, side)
    got = gather_padded(halo_source(units, halo), halo)
    torch.testing.assert_close(got, _oracle(units, layout), rtol=0, atol=0)


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_one_resolution_needs_no_means(p):
    layout = _layout((2, 3, 3), 0, p)
    units = _units(layout, 4)
    halo = halo_index(layout, 4)
    assert halo.num_means == 0
    assert torch.equal(gather_padded(halo_source(units, halo), halo), _oracle(units, layout))


def test_index_structure():
    # one image, high-res block left of a low-res block: [[H, L]]
    layout = BlockLayout.from_grid(torch.tensor([[[True, False]]]), 8)
    s = 2
    halo = halo_index(layout, s)
    assert isinstance(halo, HaloIndex)
    assert halo.index.shape == (5, s + 2, s + 2) and halo.index.dtype == torch.int32
    assert halo.unit_rows == 5 * s * s
    idx = halo.index
    zero = halo.zero_row
    # interiors are the tiles' own rows
    for t in range(5):
        assert idx[t, 1:-1, 1:-1].flatten().tolist() == list(range(t * s * s, (t + 1) * s * s))
    # the image border is the zero row: the top rows of the top units and of the low-res
    # block, the left columns of the left units, the bottom rows of the bottom units
    for t in (0, 1, 4):
        assert (idx[t, 0, :] == zero).all()
    for t in (0, 2):
        assert (idx[t, :, 0] == zero).all()
    for t in (2, 3, 4):
        assert (idx[t, -1, :] == zero).all()
    # unit 2's top frame: unit 0's bottom row (and the border in the corner)
    assert idx[2, 0, 1:].tolist() == [s * (s - 1), s * (s - 1) + 1, s * s + s * (s - 1)]
    # unit 1's (top right quarter) right frame: the low-res block's pixels (nearest), rows 0
    lr0 = 4 * s * s
    assert idx[1, 1:-1, -1].tolist() == [lr0, lr0]
    # unit 0's right frame: unit 1's left column
    assert idx[0, 1:-1, -1].tolist() == [s * s, s * s + s]
    # the low-res block's left frame: means of unit 1's / unit 3's right 2x2 pixels
    left = idx[4, 1:-1, 0]
    assert (left >= halo.unit_rows).all() and (left < zero).all()
    rows = halo.mean_rows[(left - halo.unit_rows).long()]
    assert sorted(rows[0].tolist()) == [s * s, s * s + 1, s * s + 2, s * s + 3]          # unit 1
    assert sorted(rows[1].tolist()) == [3 * s * s + i for i in range(4)]                  # unit 3
    assert halo.num_means == 2 and halo.rows == zero + 1


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_means_rounded_like_block_pad(dtype):
    layout = _layout((2, 3, 4), 3)
    units = _units(layout, 4, channels=8, dtype=dtype, seed=3)
    halo = halo_index(layout, 4)
    source = halo_source(units, halo)
    assert source.dtype == dtype and source.shape == (halo.rows, 8)
    assert torch.equal(source[halo.zero_row], torch.zeros(8, dtype=dtype))
    torch.testing.assert_close(gather_padded(source, halo), _oracle(units, layout), rtol=0, atol=0)


def test_channels_last_units_are_their_own_rows():
    layout = _layout((1, 2, 2), 1)
    units = _units(layout, 4, channels=6).contiguous(memory_format=torch.channels_last)
    halo = halo_index(layout, 4)
    source = halo_source(units, halo)
    flat = units.permute(0, 2, 3, 1).reshape(-1, 6)
    assert torch.equal(source[:halo.unit_rows], flat)


def test_bad_input():
    layout = _layout((1, 2, 2), 1)
    with pytest.raises(TypeError, match="BlockLayout"):
        halo_index(torch.zeros(1, 2, 2, dtype=torch.bool), 4)
    with pytest.raises(ValueError, match="side"):
        halo_index(layout, 0)
    halo = halo_index(layout, 4)
    with pytest.raises(ValueError, match="units"):
        halo_source(_units(layout, 2), halo)
    with pytest.raises(ValueError, match="source"):
        gather_padded(torch.zeros(3, 2), halo)


# -- the fixed form: shapes from the block counts alone, nothing read back to the host ------


@pytest.mark.parametrize("side", [1, 2, 4, 8])
@pytest.mark.parametrize("seed", range(4))
def test_fixed_index_gathers_the_same_tiles(seed, side):
    layout = _layout((2, 3, 4), seed)
    units = _units(layout, side, seed=seed)
    halo = halo_index(layout, side, fixed=True)
    assert halo.num_means == layout.num_lowres * (4 * side + 4)
    got = gather_padded(halo_source(units, halo), halo)
    torch.testing.assert_close(got, _oracle(units, layout), rtol=0, atol=0)
    compact = halo_index(layout, side)
    assert torch.equal(got, gather_padded(halo_source(units, compact), compact))


def test_fixed_index_shapes_depend_on_counts_only():
    a = BlockLayout.from_grid(torch.tensor([[[True, False, False], [False, True, False]]]), 8)
    b = BlockLayout.from_grid(torch.tensor([[[False, False, True], [True, False, False]]]), 8)
    ha, hb = halo_index(a, 4, fixed=True), halo_index(b, 4, fixed=True)
    assert ha.index.shape == hb.index.shape and ha.mean_rows.shape == hb.mean_rows.shape
    assert ha.rows == hb.rows == (2 * 4 + 4) * 16 + 4 * 20 + 1
    assert not torch.equal(ha.index, hb.index)


def test_fixed_index_unused_mean_rows_average_zero():
    # [[H, L]]: the low-res block's left frame (rows 1..s) reads means, the rest of its
    # frame is the image border
    layout = BlockLayout.from_grid(torch.tensor([[[True, False]]]), 8)
    s = 2
    halo = halo_index(layout, s, fixed=True)
    ring_left = [2 * (s + 2) + i for i in range(s)]          # the left column's mean slots
    used = halo.mean_rows[ring_left]
    assert (used < halo.unit_rows).all()
    others = [r for r in range(4 * s + 4) if r not in ring_left]
    assert (halo.mean_rows[others] == halo.zero_row).all()
    assert halo.index[4, 1:-1, 0].tolist() == [halo.unit_rows + r for r in ring_left]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fixed_index_builds_on_cuda_without_host_sync():
    layout = BlockLayout.from_grid((torch.rand(2, 4, 8) < 0.4).cuda(), 64)
    halo_index(layout, 8, fixed=True)  # warm-up (allocations, kernels' first launch)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        halo = halo_index(layout, 8, fixed=True)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    units = torch.randn(4 * layout.num_highres + layout.num_lowres, 8, 8, 8, device="cuda")
    torch.testing.assert_close(gather_padded(halo_source(units, halo), halo), _oracle(units, layout), rtol=0, atol=0)


# -- ops.halo_index: the native builder against the reference's fixed form ----------------

NATIVE_DEVICES = [d for d in ("cpu", "cuda") if ops.has_native(d) and (d == "cpu" or torch.cuda.is_available())]
needs_native = pytest.mark.skipif(not NATIVE_DEVICES, reason="no native extension built")


@needs_native
@pytest.mark.parametrize("device", NATIVE_DEVICES)
@pytest.mark.parametrize("side", [1, 2, 3, 4, 8, 16])
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("shape,p", [((2, 3, 4), 0.5), ((1, 4, 6), 0.3), ((3, 1, 5), 0.6), ((2, 2, 2), 0.0),
                                     ((1, 3, 3), 1.0)], ids=["mixed", "wide", "row", "all-lr", "all-hr"])
def test_native_halo_index_equals_the_reference(device, side, seed, shape, p):
    """Every entry and every mean row bitwise the reference's fixed form (which gathers
    exactly block_pad_units' tiles, above): units of every side the networks use, layouts
    with both resolutions side by side, one resolution only, several images."""
    layout = _layout(shape, seed, p, device=device)
    want = halo_index(layout, side, fixed=True)
    with ops.use_backend("native"):
        got = ops.halo_index(layout, side)
    assert got.index.device.type == device and got.index.dtype == torch.int32
    assert got.unit_rows == want.unit_rows and got.zero_row == want.zero_row
    assert torch.equal(got.index.cpu(), want.index.cpu())
    assert torch.equal(got.mean_rows.cpu(), want.mean_rows.cpu())
    units = _units(layout, side, seed=seed).to(device)
    torch.testing.assert_close(gather_padded(halo_source(units, got), got), _oracle(units, layout), rtol=0, atol=0)


@needs_native
def test_native_halo_index_empty_and_errors():
    layout = _layout((1, 2, 3), 0)
    with ops.use_backend("native"):
        with pytest.raises(TypeError, match="BlockLayout"):
            ops.halo_index(layout.block_map, 4)
        with pytest.raises(ValueError, match="side must be >= 1"):
            ops.halo_index(layout, 0)
    args = (layout.hr_pos, layout.lr_pos, layout.block_map)
    with pytest.raises(RuntimeError, match="side must be >= 1"):
        torch.ops.segblocks.halo_index(*args, 0)
    with pytest.raises(RuntimeError, match="block_map must be int32"):
        torch.ops.segblocks.halo_index(layout.hr_pos, layout.lr_pos, layout.block_map.long(), 4)
    with pytest.raises(RuntimeError, match="positions"):  # cells and positions disagree
        torch.ops.segblocks.halo_index(layout.hr_pos[:-1], layout.lr_pos, layout.block_map, 4)
    bad = layout.block_map.clone()
    bad.view(-1)[0] = -1 - bad.view(-1)[0] if bad.view(-1)[0] >= 0 else 5
    with pytest.raises(RuntimeError, match="disagrees"):  # the CPU kernel checks the values
        torch.ops.segblocks.halo_index(layout.hr_pos, layout.lr_pos, bad, 4)
    empty = BlockLayout.from_grid(torch.zeros(0, 2, 3, dtype=torch.bool), 16)
    with ops.use_backend("native"):
        halo = ops.halo_index(empty, 4)
    assert halo.index.shape == (0, 6, 6) and halo.mean_rows.shape == (0, 4) and halo.zero_row == 0


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def test_ops_halo_index_falls_back_to_the_reference(device):
    layout = _layout((2, 2, 3), 1, device=device)
    with ops.use_backend("reference"):
        got = ops.halo_index(layout, 4)
    want = halo_index(layout, 4, fixed=True)
    assert torch.equal(got.index, want.index) and torch.equal(got.mean_rows, want.mean_rows)


@pytest.mark.skipif(not (torch.cuda.is_available() and ops.has_native("cuda")), reason="needs the CUDA kernels")
def test_native_halo_index_builds_on_cuda_without_host_sync():
    """One kernel, no read-back: the node rebuilds it in every frame's CUDA graph."""
    layout = BlockLayout.from_grid((torch.rand(2, 4, 8) < 0.4).cuda(), 64)
    with ops.use_backend("native"):
        ops.halo_index(layout, 16)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            got = ops.halo_index(layout, 16)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    want = halo_index(layout, 16, fixed=True)
    assert torch.equal(got.index, want.index) and torch.equal(got.mean_rows, want.mean_rows)


# -- halo_means_: the source's mean rows and zero row, in place ---------------------------


def _source_with_garbage(units, halo):
    """The source with its unit rows written and every other row NaN (what a fresh buffer
    may hold)."""
    rows = units.permute(0, 2, 3, 1).reshape(-1, units.shape[1])
    source = torch.full((halo.rows, units.shape[1]), float("nan"), dtype=units.dtype, device=units.device)
    source[:halo.unit_rows] = rows
    return source


@needs_native
@pytest.mark.parametrize("device", NATIVE_DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=["f32", "f16", "bf16"])
@pytest.mark.parametrize("channels", [3, 8, 16])
@pytest.mark.parametrize("side", [1, 2, 4, 8])
def test_native_halo_means_equal_block_pads(device, dtype, channels, side):
    """The native mean rows and zero row, bitwise: the reference's (``halo_source``) and, through
    the index, BlockPad's own tiles (its rounding: the float sum of the quad in order, times
    0.25, rounded once). The unit rows are read, never written; rows that held NaN are all
    overwritten; 16-byte packs (8 or 16 half channels) and single channels (3) on CUDA."""
    layout = _layout((2, 3, 4), side, device=device)
    units = _units(layout, side, channels=channels, dtype=dtype, seed=side).to(device)
    with ops.use_backend("native"):
        halo = ops.halo_index(layout, side)
        source = _source_with_garbage(units, halo)
        unit_rows = source[:halo.unit_rows].clone()
        assert ops.halo_means_(source, halo) is source
    assert torch.equal(source[:halo.unit_rows], unit_rows)
    assert not source.isnan().any()
    assert torch.equal(source, halo_source(units, halo))
    assert torch.equal(gather_padded(source, halo), _oracle(units, layout))


@needs_native
def test_native_halo_means_errors():
    layout = _layout((1, 2, 3), 0)
    halo = halo_index(layout, 2, fixed=True)
    source = _source_with_garbage(_units(layout, 2, dtype=torch.float32), halo)
    means = torch.ops.segblocks.halo_means_
    with pytest.raises(RuntimeError, match="source has"):
        means(source[:-1].contiguous(), halo.mean_rows, halo.unit_rows)
    with pytest.raises(RuntimeError, match="contiguous floating-point"):
        means(source.t(), halo.mean_rows, halo.unit_rows)
    with pytest.raises(RuntimeError, match="int32"):
        means(source, halo.mean_rows.long(), halo.unit_rows)
    bad = halo.mean_rows.clone()
    bad[0, 0] = halo.unit_rows  # a mean row reading a mean row
    with pytest.raises(RuntimeError, match="neither a unit row"):
        means(source, bad, halo.unit_rows)
    with pytest.raises(ValueError, match="source"):  # the wrapper: not the index's source shape
        ops.halo_means_(source[:-1], halo)
