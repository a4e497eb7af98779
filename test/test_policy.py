"""ComplexityPolicy (Eq. 1) on the documented scale."""

import math

import pytest
import torch

from segblocks_core import ComplexityPolicy
from segblocks_core.engine import IMAGENET_STD, normalize


def stripes(n, h, w, a=-0.5, b=0.5):
    """Vertical one-pixel stripes alternating a, b in all channels (normalised units)."""
    x = torch.full((n, 3, h, w), a)
    x[..., 1::2] = b
    return x


def test_complexity_scale_matches_the_formula():
    # 4x4 average of alternating a/b is (a+b)/2, so every pixel differs by |a-b|/2 per
    # channel; summed over 3 channels and averaged over the block: 1.5 |a - b|.
    x = stripes(1, 16, 32, -0.2, 0.2)
    c = ComplexityPolicy(0.3, block_size=8).complexity(x)
    assert c.shape == (1, 2, 4)
    torch.testing.assert_close(c, torch.full((1, 2, 4), 1.5 * 0.4))


def test_tau_means_grey_levels_of_the_normalised_input():
    # uint8 stripes of 0 / 57 grey levels: C_b = sum_c 0.5 * 57 / 255 / std_c ~= 1.49,
    # i.e. tau = 1.0 is about one standard deviation (57 grey levels) of texture.
    img = torch.zeros(1, 16, 16, 3, dtype=torch.uint8)
    img[:, :, 1::2, :] = 57
    c = ComplexityPolicy(0.3, 16).complexity(normalize(img))
    expected = sum(0.5 * 57 / 255 / s for s in IMAGENET_STD)
    assert c.item() == pytest.approx(expected, rel=1e-5)


def test_flat_blocks_are_never_highres():
    x = stripes(2, 32, 32)
    x[:, :, :16, :16] = 0.7          # a flat block in every image
    x[1, :, 16:, 16:] = -1.2         # and another one in the second image
    policy = ComplexityPolicy(0.0, block_size=16)
    grid = policy(x)
    assert grid.dtype == torch.bool and grid.shape == (2, 2, 2)
    assert not grid[:, 0, 0].any() and not grid[1, 1, 1]
    assert grid[0, 1, 1] and grid[:, 0, 1].all() and grid[:, 1, 0].all()


def test_tau_inf_gives_all_lowres_and_tau_override():
    x = stripes(1, 32, 32)
    policy = ComplexityPolicy(math.inf, block_size=16)
    assert not policy(x).any()
    assert policy(x, tau=0.1).all()


def test_highres_fraction_falls_as_tau_rises():
    g = torch.Generator().manual_seed(0)
    # blocks of increasing texture amplitude
    amp = torch.linspace(0.0, 1.0, 8).repeat_interleave(16)
    x = torch.randn(1, 3, 16, 128, generator=g) * amp
    policy = ComplexityPolicy(0.0, block_size=16)
    fractions = [policy(x, tau).float().mean().item() for tau in (0.0, 0.2, 0.5, 1.0, 2.0)]
    assert fractions == sorted(fractions, reverse=True)
    assert fractions[0] > fractions[-1]


def test_partial_blocks_are_averaged_over_valid_pixels():
    x = stripes(1, 40, 40, -0.2, 0.2)
    c = ComplexityPolicy(0.0, block_size=32).complexity(x)
    assert c.shape == (1, 2, 2)
    torch.testing.assert_close(c, torch.full((1, 2, 2), 0.6))


def test_bad_inputs():
    policy = ComplexityPolicy(0.3, 16)
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        policy(torch.zeros(3, 16, 16))
    with pytest.raises(TypeError, match="floating-point"):
        policy(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match="NaN"):
        ComplexityPolicy(float("nan"))
    with pytest.raises(ValueError, match="NaN"):
        policy(torch.zeros(1, 3, 16, 16), tau=float("nan"))
    with pytest.raises(TypeError, match="number"):
        ComplexityPolicy("0.3")
    with pytest.raises(ValueError, match="multiple of 4"):
        ComplexityPolicy(0.3, block_size=10)


def test_native_cell_complexity_gives_the_reference_complexity():
    """Whole blocks take the one-pass native kernel (ops.cell_complexity); the values are the
    reference formula's (float32 sums of the same terms), flat blocks exactly 0."""
    from segblocks_core import ops
    gen = torch.Generator().manual_seed(3)
    img = (torch.rand(2, 64, 96, 3, generator=gen) * 255).to(torch.uint8)
    img[0, :32, :32] = 128  # a flat block
    for dtype in (torch.float32, torch.float16):
        x = normalize(img, dtype, 4)[:, :3]
        policy = ComplexityPolicy(0.3, block_size=32)
        with ops.use_backend("native"):
            got = policy.complexity(x)
        with ops.use_backend("reference"):
            want = policy.complexity(x)
        assert got.shape == (2, 2, 3) and got[0, 0, 0] == 0
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("size", [(256, 384), (200, 300)], ids=["whole-blocks", "partial-blocks"])
def test_complexity_from_frames_is_the_normalised_inputs(monkeypatch, size, dtype):
    """Read straight from the uint8 frames where they are whole blocks (the normalised map
    never written), normalised first otherwise: the complexity of normalize(frames) either
    way, bitwise."""
    from segblocks_core import ops
    from segblocks_core.engine import _norm_constants
    g = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (2, *size, 3), dtype=torch.uint8, generator=g)
    images[0, :128, :128] = 90  # a flat block
    policy = ComplexityPolicy(0.3, 128)
    want = policy.complexity(normalize(images, dtype, 4)[:, :3])
    normalized = []
    original = ops.normalize_frames
    monkeypatch.setattr(ops, "normalize_frames", lambda *a, **k: normalized.append(1) or original(*a, **k))
    got = policy.complexity_from_frames(images, *_norm_constants(torch.device("cpu")), dtype)
    assert torch.equal(got, want)
    assert got[0, 0, 0] == 0
    assert bool(normalized) == (size[0] % 128 != 0)
    with pytest.raises(ValueError, match="uint8 RGB frames"):
        policy.complexity_from_frames(images.float(), *_norm_constants(torch.device("cpu")), dtype)
