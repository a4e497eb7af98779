"""BlockLayout: exact grids and fixed-capacity (sync-free) layouts."""

import pytest
import torch

from segblocks_core import BlockLayout


def test_exact_layout_positions_and_slots():
    grid = torch.tensor([[[1, 0, 1], [0, 0, 1]]], dtype=torch.bool)
    layout = BlockLayout.from_grid(grid, 16)
    assert layout.hr_pos.tolist() == [0, 2, 5]
    assert layout.lr_pos.tolist() == [1, 3, 4]
    assert layout.block_map.tolist() == [[[0, -1, 1], [-2, -3, 2]]]
    assert torch.equal(layout.grid, grid)
    assert layout.num_highres == 3 and layout.num_lowres == 3 and layout.num_blocks == 6
    assert layout.highres_per_image().tolist() == [3]


def test_capacity_promotes_the_most_complex_lowres_blocks():
    grid = torch.tensor([[[1, 0, 0], [0, 0, 1]]], dtype=torch.bool)
    scores = torch.tensor([[[0.9, 0.1, 0.5], [0.4, 0.2, 0.8]]])
    layout = BlockLayout.from_grid(grid, 16, num_highres=4, scores=scores)
    # the grid's blocks 0 and 5, then the two most complex low-res: 2 (0.5) and 3 (0.4)
    assert layout.hr_pos.tolist() == [0, 2, 3, 5]
    assert layout.lr_pos.tolist() == [1, 4]
    assert layout.grid.sum().item() == 4


def test_capacity_below_count_keeps_the_most_complex_grid_blocks():
    grid = torch.tensor([[[1, 1, 1, 0]]], dtype=torch.bool)
    scores = torch.tensor([[[0.3, 0.9, 0.6, 2.0]]])
    layout = BlockLayout.from_grid(grid, 16, num_highres=2, scores=scores)
    assert layout.hr_pos.tolist() == [1, 2]


def test_capacity_equal_to_count_matches_exact_layout():
    g = torch.Generator().manual_seed(3)
    grid = torch.rand(2, 3, 4, generator=g) > 0.5
    exact = BlockLayout.from_grid(grid, 16)
    fixed = BlockLayout.from_grid(grid, 16, num_highres=int(grid.sum()), scores=torch.rand(2, 3, 4))
    assert torch.equal(exact.hr_pos, fixed.hr_pos) and torch.equal(exact.lr_pos, fixed.lr_pos)
    assert torch.equal(exact.block_map, fixed.block_map)


def test_layout_errors():
    with pytest.raises(ValueError, match=r"\[N, GH, GW\]"):
        BlockLayout.from_grid(torch.ones(2, 2, dtype=torch.bool), 16)
    with pytest.raises(TypeError, match="torch.bool"):
        BlockLayout.from_grid(torch.ones(1, 2, 2), 16)
    with pytest.raises(ValueError, match="num_highres"):
        BlockLayout.from_grid(torch.ones(1, 2, 2, dtype=torch.bool), 16, num_highres=5)
