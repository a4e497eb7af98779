"""Convolutions that write their consumer's BlockPad-ed tiles: ``ops.conv_into_`` (any
output view; CUTLASS on Hopper) and ``ops.block_pad_ring_`` (the tiles' frames from their
interiors, in place), against the reference.

CPU cases run everywhere (the native CPU kernels); ``cuda`` cases need a GPU, and the
CUTLASS ones a build with ``segblocks_core._cutlass`` (Hopper): they run on the H100 host.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

import native_op_cases as cases
from native_op_cases import DEVICES, HAS_GPU
from segblocks_core import ops
from segblocks_core.ops import _reference, use_backend

if os.environ.get("SEGBLOCKS_NO_EXTENSION") == "1":
    pytest.skip("SEGBLOCKS_NO_EXTENSION=1: reference-only build", allow_module_level=True)

CUTLASS = ops.cutlass_conv_configs()
needs_cutlass = pytest.mark.skipif(not (HAS_GPU and CUTLASS), reason="no CUTLASS kernels (Hopper build)")


@pytest.fixture(autouse=True)
def native_backend():
    with use_backend("native"):
        yield


def _units_padded(lay, channels, padding, dtype, device, channels_last, seed=0):
    """block_pad_units' tiles of random blocks, and the same tiles with their frames NaN."""
    gen = torch.Generator().manual_seed(seed)
    u = lay.block_size // 2
    hr = torch.randn(4 * lay.num_highres, channels, u, u, generator=gen).to(device, dtype)
    lr = torch.randn(lay.num_lowres, channels, u, u, generator=gen).to(device, dtype)
    want = _reference.block_pad_units(hr, lr, lay.hr_pos, lay.lr_pos, lay.block_map, padding, "constant", 0.0,
                                      quartered=True)
    got = torch.full_like(want, float("nan"))
    if channels_last:
        got = got.contiguous(memory_format=torch.channels_last)
    got[:, :, padding:padding + u, padding:padding + u] = torch.cat([hr, lr])
    return want, got


# ----------------------------------------------------------------------------------------
# block_pad_ring_
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("geometry", ["mixed_batch2", "all_hr", "all_lr_batch2", "single_row_2px", "side6"])
@pytest.mark.parametrize("padding", [1, 2])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["f32", "f16"])
def test_block_pad_ring_completes_the_tiles(device, geometry, padding, channels_last, dtype):
    lay = cases.GEOMETRY_BY_NAME[geometry].layout(device)
    if lay.block_size // 2 + 2 * padding <= 2 * padding:
        pytest.skip("no interior")
    channels = 16 if channels_last else 3
    want, got = _units_padded(lay, channels, padding, dtype, device, channels_last)
    ptr = got.data_ptr()
    out = ops.block_pad_ring_(got, lay, padding)
    assert out is got and got.data_ptr() == ptr  # in place
    assert not torch.isnan(got).any(), "a frame pixel was not written"
    torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_block_pad_ring_never_writes_interiors(device):
    """The interiors are the source: a ring op that rewrote them (e.g. from a stale copy) would
    change these values, which BlockPad of the interiors cannot reproduce."""
    lay = cases.GEOMETRY_BY_NAME["mixed_batch2"].layout(device)
    want, got = _units_padded(lay, 8, 1, torch.float32, device, True)
    interior = got[:, :, 1:-1, 1:-1].clone()
    ops.block_pad_ring_(got, lay, 1)
    assert torch.equal(got[:, :, 1:-1, 1:-1], interior)


@pytest.mark.parametrize("device", DEVICES)
def test_block_pad_ring_errors(device):
    lay = cases.GEOMETRY_BY_NAME["mixed_batch2"].layout(device)
    _, good = _units_padded(lay, 8, 1, torch.float32, device, True)
    with pytest.raises(RuntimeError, match="padding must be >= 1"):
        torch.ops.segblocks.block_pad_ring_(good, lay.hr_pos, lay.lr_pos, lay.block_map, 0)
    with pytest.raises(RuntimeError, match="contiguous"):
        torch.ops.segblocks.block_pad_ring_(good[:, ::2], lay.hr_pos, lay.lr_pos, lay.block_map, 1)
    with pytest.raises(RuntimeError, match="square tiles"):
        torch.ops.segblocks.block_pad_ring_(good[..., :-1].contiguous(), lay.hr_pos, lay.lr_pos, lay.block_map, 1)
    with pytest.raises(RuntimeError, match="positions|units|blocks"):
        torch.ops.segblocks.block_pad_ring_(good[1:].contiguous(), lay.hr_pos, lay.lr_pos, lay.block_map, 1)


# ----------------------------------------------------------------------------------------
# conv_into_
# ----------------------------------------------------------------------------------------


def _conv_case(device, dtype, n, cin, cout, side, stride, padding, residual, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, cin, side, side, generator=gen).to(device, dtype).contiguous(memory_format=torch.channels_last)
    w = (torch.randn(cout, cin, 3, 3, generator=gen) / (3 * cin ** 0.5)).to(device, dtype).contiguous(
        memory_format=torch.channels_last)
    b = (torch.randn(cout, generator=gen) * 0.1).to(device, dtype)
    so = (side + 2 * padding - 3) // stride + 1
    # output and residual as the executor holds them: interiors of padded tiles (views)
    out_tiles = torch.full((n, cout, so + 2, so + 2), float("nan"), dtype=dtype, device=device).contiguous(
        memory_format=torch.channels_last)
    res = None
    if residual:
        res_tiles = torch.randn(n, cout, so + 2, so + 2, generator=gen).to(device, dtype).contiguous(
            memory_format=torch.channels_last)
        res = res_tiles[:, :, 1:-1, 1:-1]
    ref = F.conv2d(x.double(), w.double(), b.double(), stride, padding)
    if res is not None:
        ref = ref + res.double()
    return x, w, b, res, out_tiles, ref.relu()


def _check_into(out_tiles, ref, atol):
    interior = out_tiles[:, :, 1:-1, 1:-1]
    torch.testing.assert_close(interior.double(), ref, rtol=0, atol=atol)
    ring = out_tiles.clone()
    ring[:, :, 1:-1, 1:-1] = float("nan")
    assert torch.isnan(ring).all(), "conv_into_ wrote outside its output view"


@pytest.mark.parametrize("stride,padding,residual", [(1, 0, True), (1, 1, False), (2, 0, False), (2, 1, True)])
def test_conv_into_cpu(stride, padding, residual):
    x, w, b, res, out_tiles, ref = _conv_case("cpu", torch.float32, 3, 8, 16, 10, stride, padding, residual)
    ops.conv_into_(out_tiles[:, :, 1:-1, 1:-1], x, w, b, res, stride, padding)
    _check_into(out_tiles, ref, 1e-4)


def test_conv_into_errors():
    x, w, b, res, out_tiles, _ = _conv_case("cpu", torch.float32, 2, 8, 16, 10, 1, 0, True)
    out = out_tiles[:, :, 1:-1, 1:-1]
    with pytest.raises(RuntimeError, match="out must be"):
        torch.ops.segblocks.conv_into_(out_tiles, x, w, b, res, 1, 0, 0)
    with pytest.raises(RuntimeError, match="residual must be"):
        torch.ops.segblocks.conv_into_(out, x, w, b, res[:, :, :-1], 1, 0, 0)
    with pytest.raises(RuntimeError, match="input channels"):
        torch.ops.segblocks.conv_into_(out, x[:, :4], w, b, res, 1, 0, 0)
    with pytest.raises(RuntimeError, match="bias must be"):
        torch.ops.segblocks.conv_into_(out, x, w, b[:3], res, 1, 0, 0)
    with pytest.raises(RuntimeError, match="dtype"):
        torch.ops.segblocks.conv_into_(out, x, w.double(), b, res, 1, 0, 0)


@needs_cutlass
@pytest.mark.parametrize("config", range(len(CUTLASS)), ids=lambda i: CUTLASS[i])
@pytest.mark.parametrize("stride,padding,residual", [(1, 0, True), (1, 1, False), (2, 0, False), (2, 1, True)])
@pytest.mark.parametrize("cin,cout,side,n", [(64, 64, 18, 5), (32, 128, 6, 9), (256, 512, 4, 3), (64, 128, 18, 300)],
                         ids=["c64", "c32-128", "c256-512", "many-tiles"])
def test_conv_into_cutlass_cuda(config, stride, padding, residual, cin, cout, side, n):
    """Every configuration against the float64 convolution, written into tile interiors.
    The small cases have fewer output tiles than SMs (stream-K then splits their K loop over
    thread blocks); "many-tiles" has several per SM (the persistent kernels loop over tiles,
    the ping-pong one alternating them between its two consumer warp groups)."""
    from segblocks_core import fused
    x, w, b, res, out_tiles, ref = _conv_case("cuda", torch.float16, n, cin, cout, side, stride, padding, residual)
    if not fused.conv_config_applies(config, x, w, stride, padding):  # a halo-tile kernel: 3x3 stride 1, C % 64
        with pytest.raises(RuntimeError, match="cannot run this problem"):
            ops.conv_into_(out_tiles[:, :, 1:-1, 1:-1], x, w, b, res, stride, padding, config)
        assert torch.isnan(out_tiles).all()
        return
    ops.conv_into_(out_tiles[:, :, 1:-1, 1:-1], x, w, b, res, stride, padding, config)
    torch.cuda.synchronize()
    _check_into(out_tiles, ref, 2e-2 * max(1.0, ref.abs().max().item()))


HALO = [i for i, name in enumerate(CUTLASS) if name.startswith("halo_")]


@needs_cutlass
@pytest.mark.parametrize("config", HALO, ids=lambda i: CUTLASS[i])
@pytest.mark.parametrize("n,c,k,h,w,padding", [
    (3, 64, 64, 18, 18, 0),      # units tiles: one 16 x 16 tile an image
    (2, 64, 64, 37, 21, 1),      # a dense map whose tiles overhang its right and bottom edges
    (1, 64, 64, 64, 96, 1),      # a dense map of whole tiles
    (2, 128, 192, 20, 35, 1),    # two input chunks, three output blocks
    (1, 64, 128, 9, 40, 2),      # padding 2, a map lower than a tile
    (200, 64, 64, 18, 18, 0),    # more jobs than SMs: the persistent loop, both A slots
], ids=["tiles", "dense-overhang", "dense-whole", "chunks-blocks", "pad2", "many-tiles"])
@pytest.mark.parametrize("residual", [False, True], ids=["nores", "res"])
def test_conv_into_halo_cuda(config, n, c, k, h, w, padding, residual):
    """The halo-tile kernels against the float64 convolution: units tiles (padding 0), dense maps
    with their zero padding from the TMA's out-of-bounds fill and tiles the output clips, several
    channel chunks and output blocks; the output and residual views of padded tiles, nothing
    written outside the output view. The resident-weights kernel takes only C = K = 64."""
    from segblocks_core import fused
    gen = torch.Generator().manual_seed(n + c + k + h + w + padding)
    x = torch.randn(n, c, h, w, generator=gen).to("cuda", torch.float16).contiguous(memory_format=torch.channels_last)
    wt = (torch.randn(k, c, 3, 3, generator=gen) / (3 * c ** 0.5)).to("cuda", torch.float16).contiguous(
        memory_format=torch.channels_last)
    b = (torch.randn(k, generator=gen) * 0.1).to("cuda", torch.float16)
    p, q = h + 2 * padding - 2, w + 2 * padding - 2
    out_tiles = torch.full((n, k, p + 2, q + 2), float("nan"), dtype=torch.float16, device="cuda").contiguous(
        memory_format=torch.channels_last)
    res = None
    if residual:
        res = torch.randn(n, k, p + 2, q + 2, generator=gen).to("cuda", torch.float16).contiguous(
            memory_format=torch.channels_last)[:, :, 1:-1, 1:-1]
    ref = F.conv2d(x.double(), wt.double(), b.double(), 1, padding)
    if res is not None:
        ref = ref + res.double()
    ref = ref.relu()
    if not fused.conv_config_applies(config, x, wt, 1, padding):
        assert "_rb" in CUTLASS[config] and (c, k) != (64, 64)
        with pytest.raises(RuntimeError, match="cannot run this problem"):
            ops.conv_into_(out_tiles[:, :, 1:-1, 1:-1], x, wt, b, res, 1, padding, config)
        return
    ops.conv_into_(out_tiles[:, :, 1:-1, 1:-1], x, wt, b, res, 1, padding, config)
    torch.cuda.synchronize()
    _check_into(out_tiles, ref, 2e-2 * max(1.0, ref.abs().max().item()))


@needs_cutlass
def test_conv_into_cutlass_rejects_what_it_cannot_run():
    x, w, b, res, out_tiles, _ = _conv_case("cuda", torch.float16, 2, 64, 64, 10, 1, 0, True)
    out = out_tiles[:, :, 1:-1, 1:-1]
    with pytest.raises(RuntimeError, match="float16 only"):
        torch.ops.segblocks.conv_into_(out.float(), x.float(), w.float(), b.float(), res.float(), 1, 0, 0)
    with pytest.raises(RuntimeError, match="config must be"):
        torch.ops.segblocks.conv_into_(out, x, w, b, res, 1, 0, len(CUTLASS))
    with pytest.raises(RuntimeError, match="channel stride 1"):
        torch.ops.segblocks.conv_into_(out.contiguous(), x, w, b, res, 1, 0, 0)
    with pytest.raises(RuntimeError, match="channels_last"):
        torch.ops.segblocks.conv_into_(out, x.contiguous(), w, b, res, 1, 0, 0)


# ----------------------------------------------------------------------------------------
# the executor: convolutions that write their consumer's tiles
# ----------------------------------------------------------------------------------------


def _prepared(builder, seed=0):
    from conftest import randomize_batchnorm
    from segblocks_core.fastpath import prepare_network
    torch.manual_seed(seed)
    return prepare_network(randomize_batchnorm(builder().eval(), seed), torch.float32, torch.device("cpu"))


@pytest.mark.parametrize("model,marked", [("swiftnet_rn18", 12), ("swiftnet_rn50", 16), ("resnet18", 15)])
def test_convolutions_write_their_consumers_tiles(monkeypatch, model, marked):
    """The plan marks every units convolution whose output feeds a zero-padded convolution
    (and otherwise only residuals and unpadded convolutions): in SwiftNet-RN18 the first three
    3x3 convolutions of each stage (the last one's output also feeds the decoder's skip, with
    a BatchNorm prologue), in -RN50 every bottleneck's 1x1 reduction (it feeds the 3x3).
    Written as the consumer's tiles (``padded_outputs("always")``: the reference ops on the
    CPU), the network's output is bitwise the one of BlockPad + convolution, with that many
    BlockPad passes fewer and as many frame passes instead."""
    from segblocks_core import SegBlocks, fused, models
    from segblocks_core.executor import block_conv2d
    fast = _prepared(getattr(models, model))
    x4 = F.pad(torch.randn(1, 3, 256, 384), (0, 0, 0, 0, 0, 1))
    gen = torch.Generator().manual_seed(2)
    grid = torch.rand(1, 2, 3, generator=gen) > 0.5
    grid.view(-1)[0], grid.view(-1)[-1] = True, False
    sb = SegBlocks(fast, units=True)
    convs = [n for n in sb.plan.graph.nodes if n.op == "call_function" and n.target is block_conv2d]
    assert sum(n.kwargs.get("padded_out", 0) == 1 for n in convs) == marked
    assert all(n.kwargs.get("padded_out", 1) == 1 for n in convs)

    counts = {"pad": 0, "ring": 0, "into": 0}
    real_pad, real_ring, real_into = ops.block_pad_units, ops.block_pad_ring_, ops.conv_into_

    def count(name, fn):
        def wrapped(*a, **k):
            counts[name] += 1
            return fn(*a, **k)
        return wrapped
    monkeypatch.setattr(ops, "block_pad_units", count("pad", real_pad))
    monkeypatch.setattr(ops, "block_pad_ring_", count("ring", real_ring))
    monkeypatch.setattr(ops, "conv_into_", count("into", real_into))
    with fused.padded_outputs("off"):
        want = sb(x4, grid)
    pads_before = counts["pad"]
    assert counts["ring"] == counts["into"] == 0
    counts.update(pad=0)
    with fused.padded_outputs("always"):
        got = sb(x4, grid)
    assert torch.equal(got, want)
    assert counts["into"] == counts["ring"] == marked
    assert pads_before - counts["pad"] == marked
    # "auto" on the CPU: no CUTLASS kernels, so BlockPad + convolution as before
    counts.update(pad=0, ring=0, into=0)
    assert torch.equal(sb(x4, grid), want)
    assert counts["ring"] == counts["into"] == 0 and counts["pad"] == pads_before


@pytest.mark.parametrize("model,marked", [("swiftnet_rn18", 1), ("resnet18", 1), ("swiftnet_rn50", 0)])
def test_max_pooling_writes_layer1s_first_tiles(monkeypatch, model, marked):
    """The plan marks the max pooling where its output feeds layer 1's first 3x3 convolution
    (input) and second (residual), as in SwiftNet-RN18 and ResNet-18; RN50's layer 1 starts
    with 1x1 convolutions (nothing to pad). Under ``pooling_tiles`` (on by default) the pooling
    writes the convolution's BlockPad-ed tiles (on the CPU: the native op's BlockPad of its
    output) and the convolution reads them: one BlockPad pass fewer, the output bitwise the
    same as with ``pooling_tiles(False)``."""
    from segblocks_core import SegBlocks, models
    from segblocks_core.executor import block_max_pool2d, pooling_tiles
    fast = _prepared(getattr(models, model))
    x4 = F.pad(torch.randn(1, 3, 256, 384), (0, 0, 0, 0, 0, 1))
    grid = torch.tensor([[[True, False, True], [False, True, False]]])
    sb = SegBlocks(fast, units=True)
    pools = [n for n in sb.plan.graph.nodes if n.op == "call_function" and n.target is block_max_pool2d]
    assert len(pools) == 1 and pools[0].kwargs.get("padded_out", 0) == marked

    pads, pooled = [], []
    real_pad, real_pool = ops.block_pad_units, ops.max_pool_units

    def pad(*a, **k):
        pads.append(a[1])
        return real_pad(*a, **k)

    def pool(blocks, kernel, stride, padding, out_padding=0):
        pooled.append(out_padding)
        return real_pool(blocks, kernel, stride, padding, out_padding)
    monkeypatch.setattr(ops, "block_pad_units", pad)
    monkeypatch.setattr(ops, "max_pool_units", pool)
    with pooling_tiles(False):
        want = sb(x4, grid)
    pads_before = len(pads)
    assert pooled == [0]
    pads.clear(), pooled.clear()
    got = sb(x4, grid)  # on by default
    assert torch.equal(got, want)
    assert pooled == [marked]
    assert pads_before - len(pads) == marked


def test_max_pool_units_out_padding_is_checked():
    lay, hr, lr = cases.block_inputs(cases.GEOMETRY_BY_NAME["mixed_batch2"], torch.float32, "cpu", "contiguous")
    args = (hr, lr, lay.hr_pos, lay.lr_pos, lay.block_map, 3, 2, 1, False)
    uo = (hr.shape[-1] // 2 + 2 - 3) // 2 + 1
    for bad in (-1, uo + 1):
        with pytest.raises(RuntimeError, match="out_padding must be in"):
            torch.ops.segblocks.max_pool_units(*args, bad)
    assert torch.ops.segblocks.max_pool_units(*args, uo).shape[-1] == 3 * uo


def test_padded_outputs_mode_is_checked():
    from segblocks_core import fused
    with pytest.raises(ValueError, match="padded_outputs mode"):
        with fused.padded_outputs("sometimes"):
            pass


def test_padded_output_choice_keeps_the_faster_agreeing_way(monkeypatch):
    """``padded_outputs("auto")``: per shape, the fastest way that agrees with BlockPad +
    cuDNN, or None (BlockPad + cuDNN) where that is faster; decided once per shape, never
    inside a capture; a disagreeing way warns and is not used. Timing and capture state are
    stubbed (CPU)."""
    from segblocks_core import fused
    monkeypatch.setattr(fused, "_PADDED_CHOICE", {})
    capturing = [False]
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: capturing[0])
    want = torch.ones(2, 8, 4, 4, dtype=torch.float16)
    times = {}
    monkeypatch.setattr(fused, "choice_ms", lambda fn: times[fn])

    def way(value, ms):
        def run():
            return value
        times[run] = ms
        return run
    two_pass = way(want, 1.0)
    good_slow, good_fast, wrong = way(want.clone(), 0.9), way(want.clone(), 0.5), way(want * 2, 0.1)
    ways = {"a": good_slow, "b": good_fast, "c": wrong}
    capturing[0] = True
    assert fused.choose_padded_output(("k",), ways, two_pass) is None and not fused._PADDED_CHOICE
    capturing[0] = False
    with pytest.warns(RuntimeWarning, match="c disagrees"):
        assert fused.choose_padded_output(("k",), ways, two_pass) == "b"
    times[good_fast] = 5.0  # cached: not timed again
    assert fused.choose_padded_output(("k",), ways, two_pass) == "b"
    times[good_slow] = 2.0
    assert fused.choose_padded_output(("k2",), {"a": good_slow, "b": good_fast}, two_pass) is None
    with fused.padded_outputs("always"):
        assert fused.choose_padded_output(("k3",), ways, two_pass) == "a"
    with fused.padded_outputs("off"):
        assert fused.choose_padded_output(("k",), ways, two_pass) is None

    def cannot_run():
        raise RuntimeError("conv_into_: CUTLASS configuration halo_s16_n64 cannot run this problem (step 1)")
    times[cannot_run], times[good_fast] = 0.01, 0.5
    with pytest.warns(RuntimeWarning, match="d disagrees .*cannot run this problem"):
        assert fused.choose_padded_output(("k4",), {"d": cannot_run, "b": good_fast}, two_pass) == "b"


def test_fastest_way_times_only_agreeing_cutlass_configurations(monkeypatch):
    """``conv_bias_relu``'s timed choice with the CUTLASS kernels built: each configuration is
    a way only if it runs and agrees with the unfused result (one that cannot run this
    problem or gives other values is never timed), the fastest way wins, and
    ``cutlass_convs(False)`` leaves cuDNN alone. Stand-ins for the kernels and the timer (CPU)."""
    from segblocks_core import fused
    want = torch.ones(1, 8, 4, 4, dtype=torch.float16)
    speed = {"unfused": 3.0, "fused": 2.0, "cutlass:0": 1.0, "cutlass:1": 0.5, "cutlass:2": 0.1}
    timed = []

    def cutlass(config, *args):
        timed.append(f"cutlass:{config}")
        if config == 2:
            raise RuntimeError("CUTLASS configuration cannot run this problem")
        return want if config == 0 else want * 3  # config 1 computes something else

    def named(name, value):
        def run(*args):
            timed.append(name)
            return value
        return run
    monkeypatch.setattr(fused, "_unfused", named("unfused", want))
    monkeypatch.setattr(fused, "_WAYS", {"fused": named("fused", want)})
    monkeypatch.setattr(fused, "_cutlass_conv", cutlass)
    monkeypatch.setattr(ops, "cutlass_conv_configs", lambda: ("a", "b", "c"))
    monkeypatch.setattr(fused, "choice_ms", lambda fn: (fn(), speed[timed[-1]])[1])
    args = (torch.empty(1, 8, 6, 6, dtype=torch.float16), torch.empty(8, 8, 3, 3, dtype=torch.float16),
            torch.empty(8, dtype=torch.float16), (1, 1), (0, 0), (1, 1), 1, None)
    monkeypatch.setattr(fused, "cutlass_conv_applies", lambda *a: fused._CUTLASS.get())
    assert fused._fastest_way(args) == "cutlass:0"
    assert [t for t in timed if t == "cutlass:1"] == ["cutlass:1"]  # the agreement check only
    timed.clear()
    with fused.cutlass_convs(False):
        assert fused._fastest_way(args) == "fused"
    assert not [t for t in timed if t.startswith("cutlass")]


def test_cutlass_config_indices_follow_cutlass_convs(monkeypatch):
    """The timed choices try every built configuration, the non-persistent ones under
    ``cutlass_convs(persistent=False)`` (the A/B of ``--no-persistent-cutlass``), those not
    in clusters under ``cutlass_convs(clusters=False)`` (``--no-cluster-cutlass``), none under
    ``cutlass_convs(False)``; with no kernels built, none."""
    from segblocks_core import fused
    names = ("128x64x64_s4", "64x128x64_s4_pingpong", "64x64x64_s4", "128x128x64_s4_streamk",
             "256x64x64_s0_coop", "64x128x64_s0_c2x1_pingpong", "64x64x64_s0_c2x2_pingpong")
    monkeypatch.setattr(ops, "cutlass_conv_configs", lambda: names)
    assert fused.cutlass_config_indices() == (0, 1, 2, 3, 4, 5, 6)
    with fused.cutlass_convs(True, persistent=False):
        assert fused.cutlass_config_indices() == (0, 2)
    with fused.cutlass_convs(True, clusters=False):
        assert fused.cutlass_config_indices() == (0, 1, 2, 3, 4)
    with fused.cutlass_convs(False):
        assert fused.cutlass_config_indices() == ()
    monkeypatch.setattr(ops, "cutlass_conv_configs", lambda: names + ("halo_s16_n64", "halo_s16_n64_rb_pf"))
    assert fused.cutlass_config_indices() == tuple(range(9))
    with fused.cutlass_convs(True, halo=False):  # --no-halo-conv
        assert fused.cutlass_config_indices() == tuple(range(7))
    with fused.cutlass_convs(True, persistent=False, clusters=False):  # the halo kernels are neither
        assert fused.cutlass_config_indices() == (0, 2, 7, 8)
    monkeypatch.setattr(ops, "cutlass_conv_configs", lambda: ())
    assert fused.cutlass_config_indices() == ()


def test_conv_config_applies_to_what_each_kernel_runs(monkeypatch):
    """The CUTLASS configurations take any convolution :func:`fused.cutlass_conv_applies`
    admits; the halo-tile ones 3x3 stride 1 with channels multiples of 64 (any padding), the
    resident-weights one only 64 in and 64 out: the timed choices do not offer them the rest."""
    from segblocks_core import fused
    monkeypatch.setattr(ops, "cutlass_conv_configs", lambda: ("64x64x64_s0_pingpong", "halo_s16_n64",
                                                                "halo_s16_n64_rb_pf"))

    def applies(config, c, k, r=3, stride=1, padding=1):
        return fused.conv_config_applies(config, torch.empty(1, c, 20, 20), torch.empty(k, c, r, r), stride, padding)
    assert applies(0, 8, 16, r=7, stride=2)
    assert applies(1, 64, 64) and applies(1, 128, 192, padding=0) and applies(1, 256, 64, padding=(2, 2))
    assert not applies(1, 32, 64) and not applies(1, 64, 72) and not applies(1, 64, 64, stride=2)
    assert not applies(1, 64, 64, r=1) and not applies(1, 64, 64, stride=(2, 2))
    assert applies(2, 64, 64, padding=0) and not applies(2, 128, 64) and not applies(2, 64, 128)


def test_cutlass_conv_applies_only_to_what_the_kernels_run(monkeypatch):
    """The CUTLASS ways are offered only for float16 CUDA tensors, channels_last, channels
    in multiples of 8, a bias, no groups or dilation, and with :func:`cutlass_convs` on."""
    from segblocks_core import fused
    monkeypatch.setattr(ops, "cutlass_conv_configs", lambda: ("a",))  # as if built
    dev = "cuda" if HAS_GPU else "cpu"

    def case(c=8, k=8, dtype=torch.float16, fmt=torch.channels_last, device=dev):
        x = torch.empty(1, c, 6, 6, dtype=dtype, device=device).contiguous(memory_format=fmt)
        w = torch.empty(k, c, 3, 3, dtype=dtype, device=device).contiguous(memory_format=fmt)
        return x, w, torch.empty(k, dtype=dtype, device=device)
    x, w, b = case(device="cpu")
    assert not fused.cutlass_conv_applies(x, w, b, 1, 0, 1, 1, None)  # a CPU tensor
    if not HAS_GPU:
        return
    x, w, b = case()
    assert fused.cutlass_conv_applies(x, w, b, 1, 1, 1, 1, None)
    interior = torch.empty(1, 8, 4, 4, dtype=torch.float16, device=dev).contiguous(
        memory_format=torch.channels_last)[:, :, 1:-1, 1:-1]  # a residual view: channel stride 1
    assert fused.cutlass_conv_applies(x, w, b, 2, 0, 1, 1, interior)
    with fused.cutlass_convs(False):
        assert not fused.cutlass_conv_applies(x, w, b, 1, 1, 1, 1, None)
    assert not fused.cutlass_conv_applies(x, w, None, 1, 1, 1, 1, None)  # no bias
    assert not fused.cutlass_conv_applies(x, w, b, 1, 1, 2, 1, None)  # dilation
    assert not fused.cutlass_conv_applies(x, w, b, (1, 2), 1, 1, 1, None)  # unequal strides
    assert not fused.cutlass_conv_applies(*case(c=12), 1, 1, 1, 1, None)
    assert not fused.cutlass_conv_applies(*case(k=12), 1, 1, 1, 1, None)
    assert not fused.cutlass_conv_applies(*case(dtype=torch.float32), 1, 1, 1, 1, None)
    assert not fused.cutlass_conv_applies(*case(fmt=torch.contiguous_format), 1, 1, 1, 1, None)
    nchw_residual = torch.empty(1, 8, 6, 6, dtype=torch.float16, device=dev)
    assert not fused.cutlass_conv_applies(x, w, b, 1, 1, 1, 1, nchw_residual)


def test_cutlass_configuration_list_matches_its_sources():
    """configs.h names each CUTLASS configuration once, in config-index order, and each has
    the one conv_<name>.cu that defines it with the matching kernel kind (persistent names
    end in _pingpong / _streamk / _coop and use ConvCutlassPersistentConfig with kind 1 / 2 / 3, the
    others ConvCutlassConfig), with tile, stages and (_c<M>x<N>, persistent only) cluster as
    named; the halo-tile ones (halo_s16_n64[_rb][_pf]) use HaloConv with resident weights
    and prefetch as named. A mismatch would only show as an undefined symbol when the Hopper
    build imports segblocks_core._cutlass, or as a kernel other than the one its name promises (CPU check)."""
    import re
    from pathlib import Path
    folder = Path(__file__).resolve().parents[1] / "csrc" / "ops" / "cuda" / "cutlass"
    names = re.findall(r"^SEGBLOCKS_CUTLASS_CONFIG\((\w+)\)", (folder / "configs.h").read_text(), re.M)
    assert names and len(set(names)) == len(names)
    sources = {p.stem[len("conv_"):]: p.read_text() for p in folder.glob("conv_*.cu")}
    assert set(sources) == set(names)
    for name in names:
        halo = re.fullmatch(r"halo_s16_n64(_rb)?(_pf)?", name)
        if halo:  # conv_halo.cuh: 16 x 16 tiles, 64 channels a job; resident weights (nine stages), prefetch
            rb, pf = (g is not None for g in halo.groups())
            stages = "9" if rb else r"\d+"
            want = f"halo::HaloConv<{stages}, {str(rb).lower()}, {str(pf).lower()}>"
            assert re.search(rf"SEGBLOCKS_DEFINE_HALO_CONV\({name}, {want}\)", sources[name]), name
            continue
        m = re.fullmatch(r"(\d+)x(\d+)x(\d+)_s(\d+)(?:_c(\d)x(\d))?(?:_(pingpong|streamk|coop))?", name)
        assert m, name
        tile, cluster, kind = m.groups()[:4], m.groups()[4:6], m.group(7)
        if kind is None:
            assert cluster == (None, None), f"{name}: clusters only for the persistent kernels"
            want = "ConvCutlassConfig<{}, {}, {}, {}>".format(*tile)
        else:
            kinds = {"pingpong": 1, "streamk": 2, "coop": 3}
            clustered = "" if cluster == (None, None) else ", {}, {}".format(*cluster)
            want = "ConvCutlassPersistentConfig<{}, {}, {}, {}, {}{}>".format(*tile, kinds[kind], clustered)
        assert f"SEGBLOCKS_DEFINE_CUTLASS_CONV({name}, {want})" in sources[name], name


def test_a_built_cutlass_module_loads():
    """Where segblocks_core._cutlass was built (the Hopper host), it imports and lists its
    configurations: a module that fails to load only warns at import and turns the CUTLASS
    convolutions off, which would leave every CUTLASS test here skipped rather than failed.
    (Without the module, CI and builds without CUTLASS, there is nothing to check.)"""
    import importlib.util
    if importlib.util.find_spec("segblocks_core._cutlass") is None:
        pytest.skip("segblocks_core._cutlass is not built (no CUTLASS headers or no CUDA)")
    import segblocks_core._cutlass as kernels  # raises on a broken build
    assert tuple(kernels.configs()) == CUTLASS and CUTLASS
