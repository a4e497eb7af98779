"""Reference block ops (split, BlockPad, combine) checked against the rules themselves.

The BlockPad oracle below applies DESIGN.md section 3 pixel by pixel with plain loops, a
construction independent of the reference's dense-map implementation.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from segblocks_core import BlockLayout, BlockTensor
from segblocks_core import ops


def naive_block_pad(blocks: BlockTensor, p: int, mode: str, value: float):
    """BlockPad by the rules, one halo pixel at a time."""
    layout = blocks.layout
    n_img, gh, gw = layout.grid_shape
    grid = layout.grid
    slot = layout.block_map
    h = blocks.block_side

    def pixel(n, r, c, res_side, y, x):
        """Value seen by a block of side ``res_side`` at its-resolution dense coords (y, x)."""
        height, width = gh * res_side, gw * res_side
        if not (0 <= y < height and 0 <= x < width):
            if mode == "constant":
                return torch.full((blocks.channels,), value, dtype=blocks.dtype)
            y, x = min(max(y, 0), height - 1), min(max(x, 0), width - 1)
        rr, cc, yy, xx = y // res_side, x // res_side, y % res_side, x % res_side
        k = int(slot[n, rr, cc])
        if bool(grid[n, rr, cc]):
            src = blocks.highres[k]
            if res_side == h:                       # same resolution: copy
                return src[:, yy, xx]
            return src[:, 2 * yy:2 * yy + 2, 2 * xx:2 * xx + 2].mean((1, 2))  # lr <- hr: 2x2 mean
        src = blocks.lowres[-1 - k]
        if res_side == h // 2:                      # same resolution: copy
            return src[:, yy, xx]
        return src[:, yy // 2, xx // 2]             # hr <- lr: nearest

    outs = {True: [], False: []}
    for n in range(n_img):
        for r in range(gh):
            for c in range(gw):
                is_hr = bool(grid[n, r, c])
                side = h if is_hr else h // 2
                out = torch.empty(blocks.channels, side + 2 * p, side + 2 * p, dtype=blocks.dtype)
                for i in range(-p, side + p):
                    for j in range(-p, side + p):
                        out[:, i + p, j + p] = pixel(n, r, c, side, r * side + i, c * side + j)
                outs[is_hr].append(out)
    c = blocks.channels
    stack = lambda xs, s: torch.stack(xs) if xs else torch.empty(0, c, s, s, dtype=blocks.dtype)
    return stack(outs[True], h + 2 * p), stack(outs[False], h // 2 + 2 * p)


# Grids covering every border kind: image edges, same-res neighbours, hr<-lr, lr<-hr, and
# corners whose diagonal neighbour differs in resolution from both side neighbours. The
# two images differ, so mixing images of a batch would show.
MIXED = torch.tensor([[[1, 0, 1], [0, 1, 1]],
                      [[0, 0, 1], [1, 0, 0]]], dtype=torch.bool)
GRIDS = {
    "mixed": MIXED,
    "all_hr": torch.ones(2, 2, 3, dtype=torch.bool),
    "all_lr": torch.zeros(2, 2, 3, dtype=torch.bool),
    "checker": (torch.arange(12).view(2, 2, 3) % 2 == 0),
}


def make_blocks(grid, side, channels=2, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    n, gh, gw = grid.shape
    x = torch.randn(n, channels, gh * side, gw * side, generator=g, dtype=dtype)
    return x, ops.split(x, grid, side)


@pytest.mark.parametrize("grid_name", list(GRIDS))
@pytest.mark.parametrize("side,p", [(4, 1), (4, 3), (8, 3), (2, 1), (2, 3)])
@pytest.mark.parametrize("mode,value", [("constant", 0.0), ("constant", -math.inf), ("replicate", 0.0)])
def test_block_pad_follows_rules_pixel_by_pixel(grid_name, side, p, mode, value):
    _, blocks = make_blocks(GRIDS[grid_name], side)
    with ops.use_backend("reference"):
        hr, lr = ops.block_pad(blocks, p, mode, value)
    exp_hr, exp_lr = naive_block_pad(blocks, p, mode, value)
    assert hr.shape == (blocks.layout.num_highres, 2, side + 2 * p, side + 2 * p)
    assert lr.shape == (blocks.layout.num_lowres, 2, side // 2 + 2 * p, side // 2 + 2 * p)
    torch.testing.assert_close(hr, exp_hr, rtol=0, atol=1e-12)
    torch.testing.assert_close(lr, exp_lr, rtol=0, atol=1e-12)


def test_block_pad_all_hr_equals_zero_padded_dense_windows():
    x, blocks = make_blocks(GRIDS["all_hr"], 4)
    hr, _ = ops.block_pad(blocks, 2)
    padded = F.pad(x, (2, 2, 2, 2))
    # block (n=1, r=1, c=2) is the last one
    torch.testing.assert_close(hr[-1], padded[1, :, 4:12, 8:16])
    torch.testing.assert_close(hr[0], padded[0, :, 0:8, 0:8])


@pytest.mark.parametrize("grid_name", list(GRIDS))
@pytest.mark.parametrize("side,p", [(4, 1), (4, 3), (8, 3), (2, 3)])
def test_split_padded_lowres_tiles_are_windows_of_the_half_resolution_image(grid_name, side, p):
    """Every value a low-res block's BlockPad-ed tile holds (interior, halo over low- and
    high-res neighbours, even p px deep across several cells, zero border) is a pixel of the
    map's 2x2-mean half-resolution image: the tile is that image's zero-padded window at the
    block's cell. So a zero-padded convolution of the half-resolution image gives the low-res
    blocks' outputs (the premise of benchmarks/halfres_stem_probe.py for the stem)."""
    grid = GRIDS[grid_name]
    x, blocks = make_blocks(grid, side)
    with ops.use_backend("reference"):
        (_, lr_tiles), pad = ops.split_padded(x, blocks.layout, side, p).padded
    assert pad == p
    half = F.pad(F.avg_pool2d(x, 2), (p, p, p, p))
    s = side // 2
    lr_cells = [(n, r, c) for n in range(grid.shape[0]) for r in range(grid.shape[1]) for c in range(grid.shape[2])
                if not grid[n, r, c]]
    assert lr_tiles.shape[0] == len(lr_cells)
    for k, (n, r, c) in enumerate(lr_cells):
        torch.testing.assert_close(lr_tiles[k], half[n, :, r * s:(r + 1) * s + 2 * p, c * s:(c + 1) * s + 2 * p],
                                   rtol=0, atol=1e-12)


def test_split_definition_and_order():
    x, blocks = make_blocks(MIXED, 4)
    layout = blocks.layout
    hr_cells = [(n, r, c) for n in range(2) for r in range(2) for c in range(3) if MIXED[n, r, c]]
    lr_cells = [(n, r, c) for n in range(2) for r in range(2) for c in range(3) if not MIXED[n, r, c]]
    assert layout.hr_pos.tolist() == [n * 6 + r * 3 + c for n, r, c in hr_cells]
    for k, (n, r, c) in enumerate(hr_cells):
        torch.testing.assert_close(blocks.highres[k], x[n, :, 4 * r:4 * r + 4, 4 * c:4 * c + 4])
    for k, (n, r, c) in enumerate(lr_cells):
        torch.testing.assert_close(blocks.lowres[k],
                                   F.avg_pool2d(x[n:n + 1, :, 4 * r:4 * r + 4, 4 * c:4 * c + 4], 2)[0])


def test_combine_upsamples_lowres_nearest_and_round_trips():
    x, blocks = make_blocks(MIXED, 4)
    dense = ops.combine(blocks)
    assert dense.shape == x.shape
    hr_mask = MIXED.repeat_interleave(4, 1).repeat_interleave(4, 2)[:, None].expand_as(x)
    torch.testing.assert_close(dense[hr_mask], x[hr_mask])
    pooled_up = F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="nearest")
    torch.testing.assert_close(dense[~hr_mask], pooled_up[~hr_mask])
    again = ops.split(dense, blocks.layout)
    torch.testing.assert_close(again.highres, blocks.highres)
    torch.testing.assert_close(again.lowres, blocks.lowres)


def test_empty_highres_or_lowres():
    for grid in (GRIDS["all_hr"], GRIDS["all_lr"]):
        x, blocks = make_blocks(grid, 4)
        hr, lr = ops.block_pad(blocks, 1)
        assert hr.shape[0] == int(grid.sum()) and lr.shape[0] == int((~grid).sum())
        assert ops.combine(blocks).shape == x.shape


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_reference_runs_in_low_precision(dtype):
    x, blocks = make_blocks(MIXED, 4, dtype=dtype)
    hr, lr = ops.block_pad(blocks, 1)
    exp_hr, exp_lr = naive_block_pad(blocks, 1, "constant", 0.0)
    torch.testing.assert_close(hr, exp_hr, rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(lr, exp_lr, rtol=1e-2, atol=1e-2)
    assert ops.combine(blocks).dtype == dtype


def test_gradcheck_split_conv_combine():
    from segblocks_core.executor import block_conv2d

    conv = torch.nn.Conv2d(2, 3, 3, padding=1).double()
    grid = torch.tensor([[[1, 0], [0, 1]]], dtype=torch.bool)
    layout = BlockLayout.from_grid(grid, 4)
    x = torch.randn(1, 2, 8, 8, dtype=torch.float64, requires_grad=True)

    def fn(inp):
        return ops.combine(block_conv2d(ops.split(inp, layout), conv))

    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-5)


def test_bad_inputs_raise_clear_errors():
    x = torch.randn(1, 2, 8, 8)
    with pytest.raises(ValueError, match="grid shape"):
        ops.split(x, torch.ones(1, 3, 3, dtype=torch.bool), 4)
    with pytest.raises(ValueError, match="multiple of the block size"):
        ops.split(torch.randn(1, 2, 9, 8), torch.ones(1, 2, 2, dtype=torch.bool), 4)
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        ops.split(torch.randn(2, 8, 8), torch.ones(1, 2, 2, dtype=torch.bool), 4)
    with pytest.raises(TypeError, match="floating-point"):
        ops.split(torch.ones(1, 2, 8, 8, dtype=torch.int64), torch.ones(1, 2, 2, dtype=torch.bool), 4)
    with pytest.raises(TypeError, match="torch.bool"):
        ops.split(x, torch.ones(1, 2, 2), 4)
    with pytest.raises(ValueError, match="even"):
        ops.split(x, torch.ones(1, 8, 8, dtype=torch.bool), 1)
    blocks = ops.split(x, torch.ones(1, 2, 2, dtype=torch.bool), 4)
    with pytest.raises(ValueError, match="padding"):
        ops.block_pad(blocks, -1)
    with pytest.raises(ValueError, match="mode"):
        ops.block_pad(blocks, 1, "reflect")


def test_backend_reports_and_forces():
    assert ops.backend("cpu") in ("native-cpu", "reference")
    with ops.use_backend("reference"):
        assert ops.backend("cpu") == "reference"
    with pytest.raises(ValueError):
        with ops.use_backend("fast"):
            pass
    assert "segblocks block ops" in ops.backend_message()


def test_missing_native_cuda_kernels_are_warned_about(monkeypatch):
    """A CUDA device whose native kernels are missing (a CPU-only build, or an extension
    that fails to load on the GPU host) gets a warning naming why; the CPU and a CUDA
    device with its kernels get none."""
    assert ops.missing_native_warning("cpu") is None
    monkeypatch.setattr(ops, "has_native", lambda device="cpu": torch.device(device).type == "cpu")
    monkeypatch.setattr(ops, "_native_error", "segblocks_core._C failed to load: undefined symbol: x")
    msg = ops.missing_native_warning("cuda:0")
    assert msg is not None and "cuda:0" in msg and "reference" in msg and "undefined symbol: x" in msg
    monkeypatch.setattr(ops, "_native_error", None)
    assert "built without CUDA kernels" in ops.missing_native_warning(torch.device("cuda"))
    monkeypatch.setattr(ops, "has_native", lambda device="cpu": True)
    assert ops.missing_native_warning("cuda") is None
