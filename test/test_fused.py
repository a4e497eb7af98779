"""Convolution epilogue fusion (segblocks_core.fused): the rewrite keeps the function.

On the CPU the fused modules run the unfused ops, so every comparison here is exact; the
cuDNN calls are checked on the GPU host (test_gpu_fastpath.py).
"""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

from conftest import randomize_batchnorm
from segblocks_core import SegBlocks
from segblocks_core.fastpath import fold_batchnorm, prepare_network
from segblocks_core import fused
from segblocks_core.fused import FusedConv2d, conv_bias_relu, fuse_conv_epilogue
from segblocks_core.models import swiftnet_rn18


def _fused_modules(gm):
    return [m for m in gm.modules() if isinstance(m, FusedConv2d)]


@pytest.fixture(scope="module")
def folded():
    torch.manual_seed(0)
    return fold_batchnorm(randomize_batchnorm(swiftnet_rn18().eval()))


def test_swiftnet_encoder_convs_are_fused_and_the_function_kept(folded):
    fused = fuse_conv_epilogue(copy.deepcopy(folded))
    modules = _fused_modules(fused)
    # the stem, conv1 of every basic block (8) and conv2 + residual of every basic block (8)
    assert len([m for m in modules if m.residual]) == 8
    assert len(modules) >= 17
    x = torch.randn(1, 3, 128, 256)
    with torch.no_grad():
        assert torch.equal(fused(x), folded(x))


def test_segblocks_runs_fused_networks_exactly(folded):
    fused = fuse_conv_epilogue(copy.deepcopy(folded))
    plain, blocks = SegBlocks(folded), SegBlocks(fused)
    x = torch.randn(2, 3, 256, 384)
    grid = torch.rand(plain.grid_shape(x.shape), generator=torch.Generator().manual_seed(1)) > 0.5
    with torch.no_grad():
        assert torch.equal(blocks(x, grid), plain(x, grid))
        torch.testing.assert_close(blocks(x, torch.ones_like(grid)), fused(x), rtol=1e-4, atol=1e-5)
    # fused convolutions still count as convolutions
    assert torch.equal(blocks.count_macs(x.shape).dense, plain.count_macs(x.shape).dense)
    layout = blocks.make_layout(x, grid)
    assert torch.equal(blocks.count_macs(x.shape, layout).effective,
                       plain.count_macs(x.shape, layout).effective)


class _Patterns(nn.Module):
    """conv -> F.relu, conv -> .relu(), conv + (a later branch) -> relu, and two that must
    stay: a conv whose output is also used elsewhere, and a conv without bias."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.c = nn.Conv2d(8, 8, 3, padding=1)
        self.down = nn.Conv2d(3, 8, 1)
        self.shared = nn.Conv2d(8, 8, 1)
        self.nobias = nn.Conv2d(8, 8, 1, bias=False)

    def forward(self, x):
        y = F.relu(self.a(x))
        y = self.b(y).relu()
        out = self.c(y)
        identity = self.down(x)          # computed after the conv it is added to
        out = torch.relu(out + identity)
        s = self.shared(out)
        return F.relu(s) + s + torch.relu(self.nobias(out))


def test_fusion_patterns():
    torch.manual_seed(0)
    net = _Patterns().eval()
    gm = fuse_conv_epilogue(fx.symbolic_trace(copy.deepcopy(net)))
    fused = {name for name, m in gm.named_modules() if isinstance(m, FusedConv2d)}
    assert fused == {"a", "b", "c"}
    assert gm.get_submodule("c").residual and not gm.get_submodule("a").residual
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(gm(x), net(x))


def test_conv_bias_relu_cpu_and_autograd():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    w = torch.randn(6, 4, 3, 3, requires_grad=True)
    b = torch.randn(6, requires_grad=True)
    z = torch.randn(2, 6, 8, 8)
    out = conv_bias_relu(x, w, b, 1, 1, 1, 1, z)
    want = F.relu(F.conv2d(x, w, b, 1, 1) + z)
    assert torch.equal(out, want)
    out.sum().backward()
    assert x.grad is not None and w.grad is not None and b.grad is not None


@pytest.mark.parametrize("k,c,size,padding", [
    (7, 4, (70, 70), 0),      # SegBlocks' low-res stem tiles (padded by split_padded)
    (7, 4, (134, 70), 0),
    (7, 3, (32, 48), 3),      # the dense stem, zero padding done by the space-to-depth copy
    (7, 4, (33, 47), 3),      # odd sizes: padded to even with zeros the zero taps read
    (3, 1, (9, 12), 1),
    (5, 2, (16, 16), 2),
])
def test_space_to_depth_conv_is_the_stride_2_convolution(k, c, size, padding):
    g = torch.Generator().manual_seed(k * 100 + c)
    x = torch.randn(2, c, *size, generator=g, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    w = torch.randn(8, c, k, k, generator=g, dtype=torch.float64)
    b = torch.randn(8, generator=g, dtype=torch.float64)
    args = (x, w, b, (2, 2), (padding, padding), (1, 1), 1)
    assert fused.space_to_depth_applies(x, w, *args[3:])
    want = F.relu(F.conv2d(x, w, b, 2, padding))
    got = fused._space_to_depth_conv(fused._unfused, *args, None)
    assert got.shape == want.shape and got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    z = torch.randn(want.shape, generator=g, dtype=torch.float64)
    torch.testing.assert_close(fused._space_to_depth_conv(fused._unfused, *args, z),
                               F.relu(F.conv2d(x, w, b, 2, padding) + z), rtol=1e-12, atol=1e-12)


def test_space_to_depth_layout_and_weight():
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    y = fused.space_to_depth(x)
    assert y.shape == (2, 12, 2, 3)
    for dy in (0, 1):
        for dx in (0, 1):
            for c in range(3):
                assert torch.equal(y[:, (2 * dy + dx) * 3 + c], x[:, c, dy::2, dx::2])
    padded = fused.space_to_depth(x, 1)  # [2, 3, 6, 8] after the zero border
    assert padded.shape == (2, 12, 3, 4) and torch.equal(padded[:, 0, 1:, 1:], x[:, 0, 1::2, 1::2])
    assert padded[:, 0, 0].abs().sum() == 0
    w = torch.randn(5, 3, 7, 7)
    w2 = fused.space_to_depth_weight(w)
    assert w2.shape == (5, 12, 4, 4)
    assert torch.equal(w2[:, (2 * 1 + 0) * 3 + 2, 1, 3], w[:, 2, 3, 6])
    # kernel row / column 7 (the zero padding): dy = 1 at kY = 3, dx = 1 at kX = 3
    assert w2[:, 6:, 3].abs().sum() == 0 and w2[:, 3:6, :, 3].abs().sum() == 0 and w2[:, 9:, :, 3].abs().sum() == 0
    assert w2[:, :6, 3].abs().sum() > 0 and w2[:, :3, :, 3].abs().sum() > 0
    assert fused.space_to_depth_weight(w) is w2  # cached
    with torch.no_grad():
        w.mul_(2)  # a new version of the weight is rearranged again
    assert torch.equal(fused.space_to_depth_weight(w), 2 * w2)


def test_space_to_depth_applies_to_stride_2_first_layers_only():
    x = torch.randn(1, 4, 70, 70)
    assert fused.space_to_depth_applies(x, torch.randn(64, 4, 7, 7), 2, 0, 1, 1)
    assert not fused.space_to_depth_applies(x, torch.randn(64, 4, 7, 7), 1, 3, 1, 1)   # stride 1
    assert not fused.space_to_depth_applies(torch.randn(1, 64, 70, 70), torch.randn(64, 64, 3, 3), 2, 1, 1, 1)
    assert not fused.space_to_depth_applies(x, torch.randn(64, 4, 7, 7), 2, 0, 2, 1)   # dilation
    assert not fused.space_to_depth_applies(x, torch.randn(64, 2, 7, 7), 2, 0, 1, 2)   # groups
    assert not fused.space_to_depth_applies(x, torch.randn(64, 4, 1, 1), 2, 0, 1, 1)   # 1x1
    # an even kernel on an odd size would give one output row more
    assert not fused.space_to_depth_applies(torch.randn(1, 4, 71, 70), torch.randn(8, 4, 4, 4), 2, 0, 1, 1)
    assert fused.space_to_depth_applies(torch.randn(1, 4, 70, 70), torch.randn(8, 4, 4, 4), 2, 0, 1, 1)
    assert not fused.space_to_depth_applies(torch.randn(1, 4, 5, 5), torch.randn(8, 4, 7, 7), 2, 0, 1, 1)


def test_fastest_way_times_only_the_ways_that_apply(monkeypatch):
    """The choice logic with stand-ins for cuDNN and the timer: each way is called once
    before it is timed, the fastest wins, the space-to-depth way is timed only when switched
    on for a stride-2 first layer and the fused call works."""
    calls = []
    speed = {"unfused": 3.0, "fused": 2.0, "space_to_depth": 1.0}
    reject = set()

    def way(name):
        def run(*args):
            calls.append(name)
            if name in reject:
                raise RuntimeError("not supported")
            return torch.ones(1)
        return run
    monkeypatch.setattr(fused, "_unfused", way("unfused"))
    monkeypatch.setattr(fused, "_WAYS", {n: way(n) for n in speed})
    monkeypatch.setattr(fused, "choice_ms", lambda fn: (fn(), speed[calls[-1]])[1])
    stem = (torch.empty(1, 4, 70, 70), torch.empty(64, 4, 7, 7), None, (2, 2), (0, 0), (1, 1), 1, None)
    inner = (torch.empty(1, 64, 18, 18), torch.empty(64, 64, 3, 3), None, (1, 1), (0, 0), (1, 1), 1, None)
    assert fused._fastest_way(stem) == "fused"  # off by default
    assert "space_to_depth" not in calls
    with fused.space_to_depth_convs():
        calls.clear()
        assert fused._fastest_way(stem) == "space_to_depth"
        assert calls == ["unfused", "fused", "space_to_depth"] * 2  # warm-up calls, then timed ones
        assert fused._fastest_way(inner) == "fused"
        reject.add("fused")
        calls.clear()
        assert fused._fastest_way(stem) == "unfused" and calls == ["unfused", "fused", "unfused"]
        reject.clear()
        speed["unfused"] = 0.5
        assert fused._fastest_way(stem) == "unfused"


def test_an_empty_problem_is_not_timed(monkeypatch):
    """An empty batch of tiles (a bucket without low- or high-res tiles) has nothing to time:
    the unfused way (convolutions) and BlockPad + cuDNN (padded outputs, units) are kept
    without a capture, which would be empty (the CUDA graph warns)."""
    def timed(fn):
        raise AssertionError("an empty problem was timed")
    monkeypatch.setattr(fused, "choice_ms", timed)
    empty = (torch.empty(0, 64, 18, 18), torch.randn(64, 64, 3, 3), torch.randn(64), (1, 1), (1, 1), (1, 1), 1, None)
    assert fused._fastest_way(empty) == "unfused"
    ways = {"kernel": lambda: torch.empty(0, 8)}
    assert fused._fastest_agreeing("padded outputs", ("k",), ways, lambda: torch.empty(0, 8)) is None
    one = (torch.randn(1, 64, 18, 18), *empty[1:])
    with pytest.raises(AssertionError, match="was timed"):
        fused._fastest_way(one)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("padding,size", [(0, (70, 70)), (3, (256, 512))])
def test_space_to_depth_way_on_cuda(monkeypatch, padding, size):
    """The fused cuDNN call on the space-to-depth input computes the stem (fp16 tolerance),
    and conv_bias_relu runs it where it was chosen; off (the default), it is never timed."""
    torch.manual_seed(0)
    dev = torch.device("cuda")
    x = torch.randn(6, 4, *size, device=dev, dtype=torch.half).contiguous(memory_format=torch.channels_last)
    w = (torch.randn(64, 4, 7, 7, device=dev, dtype=torch.half) * 0.1).contiguous(memory_format=torch.channels_last)
    b = torch.randn(64, device=dev, dtype=torch.half)
    want = F.relu(F.conv2d(x.float(), w.float(), b.float(), 2, padding))
    monkeypatch.setattr(fused, "_CHOICE", {})
    with fused.space_to_depth_convs():
        got = conv_bias_relu(x, w, b, 2, padding)
    assert list(fused._CHOICE.values())[0] in ("unfused", "fused", "space_to_depth")
    key = next(iter(fused._CHOICE))
    fused._CHOICE[key] = "space_to_depth"
    s2d = conv_bias_relu(x, w, b, 2, padding)
    for out in (got, s2d):
        assert out.shape == want.shape
        assert (out.float() - want).abs().max() <= 2e-2 * want.abs().max()
    monkeypatch.setattr(fused, "_CHOICE", {})
    conv_bias_relu(x, w, b, 2, padding)  # off by default
    with fused.space_to_depth_convs(False):
        conv_bias_relu(x, w, b, 2, padding)
    assert len(fused._CHOICE) == 1 and set(fused._CHOICE.values()) <= {"unfused", "fused"}  # one key: off


def test_prepare_network_fuses_by_default(folded):
    torch.manual_seed(0)
    net = randomize_batchnorm(swiftnet_rn18().eval())
    assert _fused_modules(prepare_network(net, torch.float32, torch.device("cpu")))
    assert not _fused_modules(prepare_network(net, torch.float32, torch.device("cpu"), fuse_epilogue=False))


def test_fast_adaptive_pooling_is_the_same_function():
    from segblocks_core.fused import adaptive_avg_pool2d
    x = torch.randn(2, 5, 32, 64).contiguous(memory_format=torch.channels_last)
    for size in [(8, 16), (4, 8), 2, (1, 1), (32, 64), (None, 16), (5, 7), (3, 64)]:
        torch.testing.assert_close(adaptive_avg_pool2d(x, size), F.adaptive_avg_pool2d(x, size),
                                   rtol=1e-5, atol=1e-6)


def test_prepare_network_pools_fast_and_segblocks_keeps_pooling_global(folded):
    from segblocks_core.fused import adaptive_avg_pool2d
    net = folded
    fast = prepare_network(net, torch.float32, torch.device("cpu"), input_channels=3)
    targets = [n.target for n in fast.graph.nodes if n.op == "call_function"]
    assert adaptive_avg_pool2d in targets and F.adaptive_avg_pool2d not in targets
    x = torch.randn(1, 3, 256, 512)
    sb = SegBlocks(fast)
    # all-high-res SegBlocks equals the dense network only if SPP pooling saw the whole map
    with torch.no_grad():
        torch.testing.assert_close(sb(x, torch.ones(1, 2, 4, dtype=torch.bool)), fast(x),
                                   rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(fast(x), net(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm_relu_module_equals_the_pair(affine):
    from segblocks_core.fused import BatchNormReLU
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(6, affine=affine).eval()
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        if affine:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.3, 0.3)
    x = torch.randn(2, 6, 5, 7).contiguous(memory_format=torch.channels_last)
    out = BatchNormReLU(bn)(x)
    torch.testing.assert_close(out, F.relu(bn(x)), rtol=1e-5, atol=1e-6)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert (out >= 0).all() and (out == 0).any()
    with pytest.raises(ValueError, match="eval-mode BatchNorm"):
        BatchNormReLU(nn.BatchNorm2d(6).train())


def test_prepare_network_fuses_preactivation_batchnorm(folded):
    from segblocks_core.fused import BatchNormReLU, fuse_batchnorm_relu
    fused = fuse_batchnorm_relu(copy.deepcopy(folded))
    # SwiftNet-RN18's decoder: SPP (1 + 3 levels + fuse), 3 x (bottleneck, blend), logits
    assert len([m for m in fused.modules() if isinstance(m, BatchNormReLU)]) == 11
    assert not [m for m in fused.modules() if isinstance(m, nn.BatchNorm2d)]
    x = torch.randn(1, 3, 256, 512)
    grid = torch.tensor([[[True, False, False, True], [False, True, True, False]]])
    with torch.no_grad():
        torch.testing.assert_close(fused(x), folded(x), rtol=1e-4, atol=1e-4)
        # in blocks the module runs on both resolutions, like the BatchNorm and ReLU it replaces
        torch.testing.assert_close(SegBlocks(fused)(x, grid), SegBlocks(folded)(x, grid), rtol=1e-4, atol=1e-4)
    prepared = prepare_network(folded, torch.float32, torch.device("cpu"))
    assert len([m for m in prepared.modules() if isinstance(m, BatchNormReLU)]) == 11


def test_fast_max_pooling_replaces_modules_and_keeps_the_function():
    from segblocks_core.fastpath import prepare_network
    from segblocks_core.fused import MaxPool2d, use_fast_max_pooling
    from segblocks_core.models import swiftnet_rn18
    torch.manual_seed(0)
    net = swiftnet_rn18().eval()
    fast = prepare_network(net, torch.float32, torch.device("cpu"))
    pools = [m for m in fast.modules() if isinstance(m, nn.MaxPool2d)]
    assert pools and all(type(m) is MaxPool2d for m in pools)
    plain = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(3, 2, 1))
    x = torch.randn(2, 3, 20, 30)
    want = plain(x)
    use_fast_max_pooling(plain)
    assert type(plain[1]) is MaxPool2d
    torch.testing.assert_close(plain(x), want, rtol=0, atol=0)


def _peak_extra_bytes(fn) -> tuple:
    """(result, bytes requested at the peak of ``fn()`` beyond what was live before), after
    one warm-up call (first calls may set up lazily allocated state). Requested bytes, not
    allocated ones: the caching allocator hands out a cached block up to 1 MiB larger than
    asked for without splitting it (seen on the H100: a cached 9 MiB block served an 8 MiB
    output), so ``max_memory_allocated`` depends on what earlier tests left in the cache."""
    stat = "requested_bytes.all."
    with torch.inference_mode():
        fn()
    torch.cuda.synchronize()
    base = torch.cuda.memory_stats()[stat + "current"]
    torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        out = fn()
    torch.cuda.synchronize()
    return out, torch.cuda.memory_stats()[stat + "peak"] - base


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fast_max_pooling_on_cuda_writes_no_indices():
    from segblocks_core.fused import MaxPool2d
    x = torch.randn(1, 64, 256, 512, device="cuda", dtype=torch.half).contiguous(memory_format=torch.channels_last)
    pool = MaxPool2d(nn.MaxPool2d(3, 2, 1))
    want, torch_extra = _peak_extra_bytes(lambda: F.max_pool2d(x, 3, 2, 1))
    got, extra = _peak_extra_bytes(lambda: pool(x))
    assert got.is_contiguous(memory_format=torch.channels_last), got.stride()
    mismatch = (got != want).sum().item()
    assert mismatch == 0, f"{mismatch} of {got.numel()} values differ from F.max_pool2d"
    # the output only (PyTorch's kernel also allocates int64 indices: 4x the fp16 output)
    out_bytes = got.numel() * got.element_size()
    assert extra <= 1.1 * out_bytes, (extra, out_bytes, torch_extra)
    assert torch_extra >= 4 * out_bytes, (extra, out_bytes, torch_extra)


class _Decoder(nn.Module):
    """Upsample + skip in both operand orders, an in-place add and an upsampling with two
    users (neither may be fused)."""

    def forward(self, x, skip):
        a = F.interpolate(x, size=skip.shape[2:], mode="bilinear", align_corners=False) + skip
        b = skip + F.interpolate(x, size=skip.shape[2:], mode="bilinear", align_corners=False)
        twice = F.interpolate(x, size=skip.shape[2:], mode="bilinear", align_corners=False)
        c = twice + skip + twice
        d = skip.clone().add_(F.interpolate(x, size=skip.shape[2:], mode="bilinear", align_corners=False))
        e = F.interpolate(x, size=skip.shape[2:], mode="bilinear", align_corners=True) + skip
        return a, b, c, d, e


def test_fuse_upsample_add_rewrites_only_out_of_place_single_use_adds():
    from segblocks_core.fused import fuse_upsample_add, upsample_add
    gm = fx.symbolic_trace(_Decoder())
    x, skip = torch.randn(2, 3, 5, 7), torch.randn(2, 3, 10, 14)
    want = gm(x, skip)
    fuse_upsample_add(gm)
    assert sum(n.target is upsample_add for n in gm.graph.nodes) == 2  # a and b
    assert sum(n.target is F.interpolate for n in gm.graph.nodes) == 3  # twice, d's, e's
    for got, ref in zip(gm(x, skip), want):
        torch.testing.assert_close(got, ref, rtol=0, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_upsample_add_on_cuda_is_one_pass():
    from segblocks_core.fused import fast_upsampling, upsample_add
    x = torch.randn(1, 128, 64, 128, device="cuda", dtype=torch.half).contiguous(memory_format=torch.channels_last)
    skip = torch.randn(1, 128, 128, 256, device="cuda", dtype=torch.half).contiguous(
        memory_format=torch.channels_last)
    want, torch_extra = _peak_extra_bytes(
        lambda: F.interpolate(x, size=(128, 256), mode="bilinear", align_corners=False) + skip)
    got, extra = _peak_extra_bytes(lambda: upsample_add(x, (128, 256), skip))
    assert got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, want)
    # the output only: no upsampled intermediate (PyTorch: the upsampled map, then the sum)
    out_bytes = got.numel() * got.element_size()
    assert extra <= 1.1 * out_bytes, (extra, out_bytes, torch_extra)
    assert torch_extra >= 2 * out_bytes, (extra, out_bytes, torch_extra)
    with torch.inference_mode(), fast_upsampling(False):
        torch.testing.assert_close(upsample_add(x, (128, 256), skip), want, rtol=0, atol=0)


def test_conv_units_auto_keeps_the_faster_way_and_never_a_wrong_one(monkeypatch):
    """``conv_units("auto")``: per shape, the one-pass kernel is used only if its output
    matches BlockPad + cuDNN and it is faster; the choice is made once per shape (outside
    capture) and a disagreement warns. Timing and capture state are stubbed (CPU)."""
    from segblocks_core import fused

    monkeypatch.setattr(fused, "_UNITS_CHOICE", {})
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)
    times = {}
    monkeypatch.setattr(fused, "choice_ms", lambda fn: times[fn])
    x = torch.randn(4, 8, 3, 3, dtype=torch.float16)
    calls = []

    def way(name, value):
        def run():
            calls.append(name)
            return value
        return run

    one, two = way("one", x), way("two", x.clone())
    times.update({one: 1.0, two: 2.0})
    with fused.conv_units("auto"):
        assert fused.use_conv_units(("a",), one, two)
        calls.clear()
        assert fused.use_conv_units(("a",), one, two) and calls == []  # decided once
        times.update({one: 3.0})
        assert not fused.use_conv_units(("b",), one, two)  # slower: not used
        wrong = way("wrong", x + 1)
        times[wrong] = 0.1
        with pytest.warns(RuntimeWarning, match="disagrees"):
            assert not fused.use_conv_units(("c",), wrong, two)
        # capture without a decision: the two-pass way, nothing recorded
        monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
        assert not fused.use_conv_units(("d",), one, two) and ("d",) not in fused._UNITS_CHOICE
    with fused.conv_units("always"):
        assert fused.use_conv_units(("c",), wrong, two)
    with fused.conv_units("off"):
        assert not fused.use_conv_units(("a",), one, two)


def test_output_disagreement_tolerates_rounding_only():
    from segblocks_core.fused import output_disagreement

    want = torch.randn(64, 32, dtype=torch.float32).half()
    ulp = (want.float() * (1 + 2 ** -10)).half()  # one rounding of half apart
    assert output_disagreement(ulp, want) is None
    assert "max abs difference" in output_disagreement(want * 1.1, want)
    assert "expected" in output_disagreement(want[:2], want)
    nan = want.clone()
    nan[0, 0] = float("nan")
    assert output_disagreement(nan, want) == "NaN in different places"
    assert output_disagreement(nan, nan.clone()) is None


class _Residuals(nn.Module):
    """relu(conv(x) + down(x)) twice: once with a downsample used only there (its bias
    moves), once with one whose output is also returned (it must keep its bias)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.down = nn.Conv2d(3, 8, 1)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.kept = nn.Conv2d(8, 8, 1)

    def forward(self, x):
        y = torch.relu(self.a(x) + self.down(x))
        k = self.kept(y)
        return torch.relu(self.b(y) + k), k


def test_residual_bias_moves_into_the_fused_convolution():
    from segblocks_core.fused import fold_residual_bias
    torch.manual_seed(0)
    net = _Residuals().eval()
    fused = fuse_conv_epilogue(fx.symbolic_trace(copy.deepcopy(net)))
    moved = fold_residual_bias(copy.deepcopy(fused))
    assert moved.get_submodule("down").bias is None
    assert torch.equal(moved.get_submodule("a").bias, net.a.bias + net.down.bias)
    assert torch.equal(moved.get_submodule("down").weight, net.down.weight)
    # the residual with another user is no plain residual convolution: untouched
    assert torch.equal(moved.get_submodule("kept").bias, net.kept.bias)
    assert torch.equal(moved.get_submodule("b").bias, net.b.bias)
    # the network it came from keeps its bias (nothing changed in place)
    assert fused.get_submodule("down").bias is not None
    assert torch.equal(fused.get_submodule("a").bias, net.a.bias)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        for got, want in zip(moved(x), net(x)):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_prepared_swiftnet_has_no_downsample_bias_and_keeps_the_function(folded):
    prepared = prepare_network(folded, torch.float32, torch.device("cpu"), input_channels=3)
    downs = [m for name, m in prepared.named_modules() if name.endswith("downsample.0")]
    assert len(downs) == 3 and all(m.bias is None for m in downs)
    assert all(m.bias is not None for name, m in folded.named_modules() if name.endswith("downsample.0"))
    x = torch.randn(1, 3, 256, 512)
    grid = torch.tensor([[[True, False, False, True], [False, True, True, False]]])
    with torch.no_grad():
        torch.testing.assert_close(prepared(x), folded(x), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(SegBlocks(prepared)(x, grid), SegBlocks(folded)(x, grid), rtol=1e-4, atol=1e-4)


class _Reused(nn.Module):
    """A convolution module called twice, once before a ReLU (or as a residual) and once
    on its own: replacing the module would change the other call too."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(4, 4, 3, padding=1)
        self.down = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        return torch.relu(self.a(x)), self.a(x), torch.relu(self.a(x) + self.down(x)), self.down(x)


def test_fusion_passes_leave_a_module_called_twice_alone():
    from segblocks_core.fused import fold_residual_bias
    torch.manual_seed(0)
    net = _Reused().eval()
    gm = fold_residual_bias(fuse_conv_epilogue(fx.symbolic_trace(copy.deepcopy(net))))
    assert not _fused_modules(gm)
    assert gm.get_submodule("down").bias is not None
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        for got, want in zip(gm(x), net(x)):
            assert torch.equal(got, want)
