"""GPU fast path (CUDA only; skipped on CPU-only machines such as CI).

Run on the GPU host: ``python -m pytest -q test/test_gpu_fastpath.py``.

Tests of the bucket rules and those comparing two segmenters pass ``dense_above=None``: the
default ("auto") promotes buckets by replay times measured at capture, which on these small
test frames can make every bucket all-high-res, and differs between two segmenters.
"""

import numpy as np
import pytest
import torch

from conftest import randomize_batchnorm
from segblocks_core import SegBlocks
from segblocks_core.engine import normalize
from segblocks_core.layout import BlockLayout
from segblocks_core.models import swiftnet_rn18

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@cuda
def test_the_native_cuda_kernels_are_loaded():
    """Every other test here also passes on the reference ops; on a GPU host they are meant to
    run on the extension's CUDA kernels (a build whose _C fails to load must not pass unseen)."""
    from segblocks_core import ops
    assert ops.has_native("cuda"), ops.backend_message()
    assert ops.backend("cuda") == "native-cuda"


def frames(n=1, h=256, w=512, seed=0):
    """Left half textured, right half smooth: both kinds of block."""
    rng = np.random.default_rng(seed)
    img = np.empty((n, h, w, 3), np.uint8)
    img[:, :, : w // 2] = rng.integers(0, 256, (n, h, w // 2, 3))
    img[:, :, w // 2:] = np.linspace(40, 200, w // 2, dtype=np.uint8)[None, None, :, None]
    return torch.from_numpy(img)


@pytest.fixture(scope="module")
def nets():
    from segblocks_core.fastpath import prepare_network
    torch.manual_seed(0)
    net = randomize_batchnorm(swiftnet_rn18().eval()).cuda()
    return net, prepare_network(net, torch.float16, torch.device("cuda"))


def conditional_nodes():
    from segblocks_core.fastpath import conditional_graphs_supported
    return conditional_graphs_supported()


def units_case(fast, frames_seed=6, grid_seed=2):
    """``(imgs, sb, x, layout)``: two test frames on the GPU, ``fast`` on units, its fp16
    input and a seeded random layout (about half the blocks high-res)."""
    imgs = frames(2, seed=frames_seed).cuda()
    sb = SegBlocks(fast, units=True)
    x = normalize(imgs, torch.float16, sb.in_channels)
    grid = torch.rand(sb.grid_shape(x.shape), generator=torch.Generator().manual_seed(grid_seed)) > 0.5
    return imgs, sb, x, BlockLayout.from_grid(grid.cuda(), 128)


def test_bucket_capacity_rounds_up_and_promotes_above_dense_above():
    from segblocks_core.fastpath import bucket_capacity
    step, total = 8, 64
    assert [bucket_capacity(c, step, total) for c in (0, 1, 8, 9, 33, 63, 64)] == [0, 8, 8, 16, 40, 64, 64]
    # above half of the blocks: all of them (the dense network)
    assert [bucket_capacity(c, step, total, 0.5) for c in (0, 9, 25, 32, 33, 40)] == [0, 16, 32, 32, 64, 64]
    assert bucket_capacity(1, step, total, 0.0) == total and bucket_capacity(0, step, total, 0.0) == 0
    counts = torch.arange(total + 1)
    for dense_above in (None, 0.5, 0.3):
        want = [bucket_capacity(int(c), step, total, dense_above) for c in counts]
        assert bucket_capacity(counts, step, total, dense_above).tolist() == want


def test_dense_above_is_checked():
    from segblocks_core.fastpath import check_dense_above
    for ok in (None, "auto", 0.0, 0.5, 1):
        check_dense_above(ok)
    for bad in (-0.1, 1.5, "always"):
        with pytest.raises(ValueError, match="dense_above"):
            check_dense_above(bad)


def test_cudnn_autotuning_sets_and_restores_the_callers_flags():
    from segblocks_core.fastpath import cudnn_autotuning
    cudnn = torch.backends.cudnn
    saved = cudnn.benchmark, cudnn.benchmark_limit
    try:
        cudnn.benchmark, cudnn.benchmark_limit = False, 7
        with cudnn_autotuning():
            assert (cudnn.benchmark, cudnn.benchmark_limit) == (True, 0)
        assert (cudnn.benchmark, cudnn.benchmark_limit) == (False, 7)
        with pytest.raises(RuntimeError, match="inside"):
            with cudnn_autotuning(3):
                assert (cudnn.benchmark, cudnn.benchmark_limit) == (True, 3)
                raise RuntimeError("inside")
        assert (cudnn.benchmark, cudnn.benchmark_limit) == (False, 7)
    finally:
        cudnn.benchmark, cudnn.benchmark_limit = saved


def test_graphed_segmenter_rejects_a_negative_cudnn_limit():
    from segblocks_core.fastpath import GraphedSegmenter
    net = torch.nn.Conv2d(3, 3, 1)
    with pytest.raises(ValueError, match="cudnn_benchmark_limit"):
        GraphedSegmenter(net, 1, 256, 512, cudnn_benchmark_limit=-1)


@cuda
def test_graphs_are_captured_with_cudnn_autotuning(nets, monkeypatch):
    """The warm-up and the capture run in cuDNN's benchmark mode (every configuration timed)
    whatever the caller set, and the caller's flags come back after."""
    from segblocks_core.fastpath import GraphedSegmenter
    _, fast = nets
    seen = []
    capture_all = GraphedSegmenter._capture_all

    def recording(self):
        seen.append((torch.backends.cudnn.benchmark, torch.backends.cudnn.benchmark_limit))
        capture_all(self)
    monkeypatch.setattr(GraphedSegmenter, "_capture_all", recording)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark_limit", 10)
    GraphedSegmenter(fast, 1, 256, 512, tau=0.3, num_buckets=2, sync_free=False, dense_above=None)
    assert seen == [(True, 0)]
    assert (torch.backends.cudnn.benchmark, torch.backends.cudnn.benchmark_limit) == (False, 10)


@cuda
def test_auto_dense_above_promotes_only_buckets_no_faster_than_all_highres(nets):
    from segblocks_core.fastpath import GraphedSegmenter
    _, fast = nets
    seg = GraphedSegmenter(fast, 1, 256, 512, tau=0.3, num_buckets=8, sync_free=False)
    assert set(seg.bucket_ms) == set(seg.capacities)
    full = seg.bucket_ms[seg.total_blocks]
    kept = [k for k in seg.capacities if seg._bucket_capacity(k) == k < seg.total_blocks]
    promoted = [k for k in seg.capacities if seg._bucket_capacity(k) == seg.total_blocks > k]
    assert all(seg.bucket_ms[k] < full for k in kept), seg.bucket_ms
    assert all(p > k for p in promoted for k in kept)  # a threshold: the largest buckets
    if promoted:
        assert seg.bucket_ms[min(promoted)] >= full, seg.bucket_ms
    else:
        assert seg.dense_above is None


@cuda
@pytest.mark.parametrize("sync_free", [True, False])
def test_graphed_segmenter_matches_reference_path(nets, sync_free):
    from segblocks_core.fastpath import GraphedSegmenter
    if sync_free and not conditional_nodes():
        pytest.skip(f"torch {torch.__version__} exposes no conditional CUDA graph nodes")
    net, fast = nets
    imgs = frames(2).cuda()
    seg = GraphedSegmenter(fast, 2, 256, 512, tau=0.5, num_buckets=8, sync_free=sync_free)
    labels, grid = seg.run(imgs)
    torch.cuda.synchronize()
    # the executed grid contains every block above tau, padded to a bucket capacity
    x = normalize(imgs)
    policy_grid = seg.policy(x, 0.5)
    assert (grid | ~policy_grid).all()
    count, need = int(grid.sum()), int(policy_grid.sum())
    assert count in seg.capacities and count == seg._bucket_capacity(need)
    assert count - need < seg.step or count == seg.total_blocks  # rounded up, or all (dense)
    # fp32 reference ops on the same layout (fp16 tolerance: >= 99% equal class ids)
    with torch.inference_mode():
        ref = SegBlocks(net)(x, grid).argmax(1)
    assert (labels == ref).float().mean().item() >= 0.99


@cuda
def test_steady_state_has_no_host_sync(nets):
    from segblocks_core.fastpath import GraphedSegmenter
    if not conditional_nodes():
        pytest.skip(f"torch {torch.__version__} exposes no conditional CUDA graph nodes: the "
                    f"bucket is chosen after one host read of the high-res count")
    _, fast = nets
    imgs = frames(1).cuda()
    seg = GraphedSegmenter(fast, 1, 256, 512, tau=0.3, num_buckets=8, sync_free=True)
    seg.run(imgs)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for tau in (0.1, 0.3, 1.0):
            seg.set_tau(tau)
            seg.run(imgs)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()


@cuda
def test_tau_changes_without_recapture(nets):
    from segblocks_core.fastpath import GraphedSegmenter
    _, fast = nets
    imgs = frames(1).cuda()
    seg = GraphedSegmenter(fast, 1, 256, 512, tau=0.0, num_buckets=8, dense_above=None)
    fractions = []
    for tau in (0.0, 0.5, 100.0):
        seg.set_tau(tau)
        seg.run(imgs)
        fractions.append(seg.grid.float().mean().item())
    assert fractions[0] >= fractions[1] >= fractions[2] == 0.0
    assert fractions[0] >= 0.5


@cuda
def test_dense_graph_equals_dense_network(nets):
    from segblocks_core.fastpath import GraphedSegmenter
    net, fast = nets
    imgs = frames(1).cuda()
    seg = GraphedSegmenter(fast, 1, 256, 512, dense=True)
    labels, grid = seg.run(imgs)
    with torch.inference_mode():
        ref = net(normalize(imgs)).argmax(1)
    assert grid.all()
    assert (labels == ref).float().mean().item() >= 0.99


@cuda
def test_concurrent_lowres_stream_gives_identical_results(nets):
    """Low-res convolutions on a second stream: same kernels, same results, bit for bit,
    eager and captured (a missing fork/join or allocator race would show up here)."""
    from segblocks_core.executor import concurrent_lowres
    from segblocks_core.fastpath import GraphedSegmenter
    _, fast = nets
    imgs = frames(2, seed=3).cuda()
    sb = SegBlocks(fast)
    x = normalize(imgs, torch.float16, sb.in_channels)
    grid = torch.rand(sb.grid_shape(x.shape), generator=torch.Generator().manual_seed(0)) > 0.5
    layout = BlockLayout.from_grid(grid.cuda(), 128)
    with torch.inference_mode():
        serial = sb(x, layout=layout)
        with concurrent_lowres(torch.cuda.Stream()):
            for _ in range(3):  # reuse of freed blocks across the two streams
                parallel = sb(x, layout=layout)
                assert torch.equal(parallel, serial)
    one = GraphedSegmenter(fast, 2, 256, 512, tau=0.4, num_buckets=8, concurrent=False, segblocks=sb, dense_above=None)
    two = GraphedSegmenter(fast, 2, 256, 512, tau=0.4, num_buckets=8, concurrent=True, segblocks=sb, dense_above=None)
    for seed in range(3):
        imgs = frames(2, seed=seed).cuda()
        labels_one, grid_one = (t.clone() for t in one.run(imgs))
        labels_two, grid_two = two.run(imgs)
        assert torch.equal(grid_one, grid_two) and torch.equal(labels_one, labels_two)


@cuda
def test_engine_uses_graphs_on_cuda_fp16():
    """SegmentationEngine (node, bag tool) runs the graphed fast path on CUDA fp16: same
    class ids as its eager path, tau changes without recapture, one graph set per size."""
    from segblocks_core import SegmentationEngine
    fast = SegmentationEngine("swiftnet_rn18", checkpoint="random", device="cuda", precision="fp16")
    eager = SegmentationEngine("swiftnet_rn18", checkpoint="random", device="cuda", precision="fp16",
                               fast_path=False)
    eager.net.load_state_dict(fast.net.state_dict())
    assert fast.fast_path and not eager.fast_path
    imgs = frames(2, 256, 384, seed=4).numpy()          # 384 = 3 blocks; 256 = 2 blocks
    for tau in (0.0, 0.5, 1e9):
        got, want = fast.infer(imgs, tau=tau), eager.infer(imgs, tau=tau)
        # the graph's bucket may promote extra blocks: its grid contains the eager grid
        assert (got.grid | ~want.grid).all()
        if (got.grid == want.grid).all():
            assert (got.labels == want.labels).mean() >= 0.98
        assert got.labels.shape == (2, 256, 384) and got.labels.dtype == np.uint8
        assert [s.blocks_highres for s in got.stats] == got.grid.reshape(2, -1).sum(1).tolist()
    assert list(fast._graphs) == [(2, 256, 384, True)]
    dense = fast.infer(imgs[:1], adaptive=False)
    assert dense.grid.all() and len(fast._graphs) == 2
    assert (dense.labels == eager.infer(imgs[:1], adaptive=False).labels).mean() >= 0.98
    # a frame size that is not a multiple of the block size
    odd = fast.infer(frames(1, 200, 300).numpy(), tau=0.3)
    assert odd.labels.shape == (1, 200, 300)


@cuda
def test_lagged_buckets_never_sync_and_follow_the_stream(nets):
    """lagged=True: the bucket comes from the previous frame's count, read back without
    waiting, so steady-state frames perform no host synchronisation (on any torch build)."""
    from segblocks_core.fastpath import GraphedSegmenter
    net, fast = nets
    seg = GraphedSegmenter(fast, 1, 256, 512, tau=0.3, num_buckets=8, lagged=True, dense_above=None)
    textured = frames(1, seed=5).cuda()
    flat = torch.full_like(textured, 90)
    seg.run(textured)
    torch.cuda.synchronize()
    assert seg.grid.all(), "the first frame has no previous count: every block high-res"
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            seg.run(textured)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    policy_grid = seg.policy(normalize(textured), 0.3)
    need = int(policy_grid.sum())
    assert 0 < need < seg.total_blocks
    # steady state: this stream's own count plus one bucket of headroom
    assert int(seg.grid.sum()) == seg._bucket_capacity(need + seg.step)
    assert (seg.grid | ~policy_grid).all()
    with torch.inference_mode():
        ref = SegBlocks(net)(normalize(textured), seg.grid.clone()).argmax(1)
    assert (seg.labels == ref).float().mean().item() >= 0.99
    # a flat frame shrinks the next bucket; a textured frame right after it runs with that
    # small bucket: its most complex blocks high-res, the rest demoted; then it catches up
    seg.run(flat)
    torch.cuda.synchronize()
    seg.run(textured)
    torch.cuda.synchronize()
    small = seg._bucket_capacity(0 + seg.step)
    assert small < need and int(seg.grid.sum()) == small
    assert (policy_grid | ~seg.grid).all(), "only blocks above tau are kept high-res"
    seg.run(textured)
    torch.cuda.synchronize()
    assert (seg.grid | ~policy_grid).all()


@cuda
def test_fused_conv_epilogue_on_cuda(nets):
    """cuDNN's conv+bias(+residual)+ReLU against the unfused ops, and the whole fast path
    with fused epilogues (static and SegBlocks) against the fp32 reference path."""
    from segblocks_core import fused as fz
    from segblocks_core.fastpath import GraphedSegmenter, prepare_network
    net, _ = nets
    cl = torch.channels_last
    x = torch.randn(4, 64, 34, 34, device="cuda", dtype=torch.half).contiguous(memory_format=cl)
    w = (torch.randn(64, 64, 3, 3, device="cuda", dtype=torch.half) * 0.05).contiguous(memory_format=cl)
    b = torch.randn(64, device="cuda", dtype=torch.half)
    z = torch.randn(4, 64, 32, 32, device="cuda", dtype=torch.half).contiguous(memory_format=cl)
    with torch.inference_mode():
        for residual in (None, z):
            args = (x, w, b, (1, 1), (0, 0), (1, 1), 1, residual)
            got, want = fz._fused(*args).float(), fz._unfused(*args).float()
            assert ((got - want).norm() / want.norm()).item() < 2e-3
    fast = prepare_network(net, torch.float16, torch.device("cuda"), fuse_epilogue=True)
    imgs = frames(2).cuda()
    seg = GraphedSegmenter(fast, 2, 256, 512, tau=0.5, num_buckets=8, dense_above=None)
    labels, grid = seg.run(imgs)
    torch.cuda.synchronize()
    with torch.inference_mode():
        ref = SegBlocks(net)(normalize(imgs), grid.clone()).argmax(1)
        dense_ref = net(normalize(imgs)).argmax(1)
    assert (labels == ref).float().mean().item() >= 0.99
    assert fz._CHOICE, "the warm-up run should have timed every fused shape"
    dense = GraphedSegmenter(fast, 2, 256, 512, dense=True)
    dense_labels, _ = dense.run(imgs)
    torch.cuda.synchronize()
    assert (dense_labels == dense_ref).float().mean().item() >= 0.99


@cuda
def test_space_to_depth_stems_in_the_graphed_fast_path(nets, monkeypatch):
    """With the space-to-depth way switched on and forced wherever it applies (both stems:
    SegBlocks' high- and low-res tiles and the dense one), the captured fast path still
    gives the reference path's labels."""
    from segblocks_core import fused as fz
    from segblocks_core.fastpath import GraphedSegmenter
    net, fast = nets
    monkeypatch.setattr(fz, "_CHOICE", {})
    real = fz._fastest_way
    forced = []

    def prefer_space_to_depth(args):
        if fz.space_to_depth_applies(*args[:2], *args[3:7]):
            forced.append(tuple(args[0].shape))
            return "space_to_depth"
        return real(args)
    monkeypatch.setattr(fz, "_fastest_way", prefer_space_to_depth)
    imgs = frames(2).cuda()
    with fz.space_to_depth_convs():
        seg = GraphedSegmenter(fast, 2, 256, 512, tau=0.5, num_buckets=8, dense_above=None)
        labels, grid = seg.run(imgs)
        dense_labels, _ = GraphedSegmenter(fast, 2, 256, 512, dense=True).run(imgs)
    torch.cuda.synchronize()
    assert forced and any(s[2] == 256 for s in forced)  # the dense stem too
    with torch.inference_mode():
        ref = SegBlocks(net)(normalize(imgs), grid.clone()).argmax(1)
        dense_ref = net(normalize(imgs)).argmax(1)
    assert (labels == ref).float().mean().item() >= 0.99
    assert (dense_labels == dense_ref).float().mean().item() >= 0.99


@cuda
def test_units_match_split_execution_fp16(nets):
    """The fast path runs on units (one kernel per op for both resolutions): fp16 logits
    match the split execution of the same prepared network, eager and CUDA-graphed."""
    from segblocks_core.fastpath import GraphedSegmenter
    _, fast = nets
    imgs = frames(2, seed=5).cuda()
    split, units = SegBlocks(fast), SegBlocks(fast, units=True)
    x = normalize(imgs, torch.float16, split.in_channels)
    grid = torch.rand(split.grid_shape(x.shape), generator=torch.Generator().manual_seed(1)) > 0.5
    layout = BlockLayout.from_grid(grid.cuda(), 128)
    with torch.inference_mode():
        a, b = split(x, layout=layout).float(), units(x, layout=layout).float()
    assert (a - b).abs().max().item() <= 2e-2 * a.abs().max().item()
    assert (a.argmax(1) == b.argmax(1)).float().mean().item() >= 0.99
    seg_split = GraphedSegmenter(fast, 2, 256, 512, tau=0.4, num_buckets=8, segblocks=split, dense_above=None)
    seg_units = GraphedSegmenter(fast, 2, 256, 512, tau=0.4, num_buckets=8, dense_above=None)
    assert seg_units.segblocks.units
    labels_a, grid_a = (t.clone() for t in seg_split.run(imgs))
    labels_b, grid_b = seg_units.run(imgs)
    assert torch.equal(grid_a, grid_b)
    assert (labels_a == labels_b).float().mean().item() >= 0.99


@cuda
def test_units_min_side_matches_units_everywhere_fp16(nets):
    """Whole blocks in the deep layers (executor.units_min_side(16)): the fp16 logits and the
    CUDA-graphed labels match units everywhere."""
    from segblocks_core.executor import units_min_side
    from segblocks_core.fastpath import GraphedSegmenter
    _, fast = nets
    imgs, units, x, layout = units_case(fast)
    with torch.inference_mode():
        a = units(x, layout=layout).float()
        with units_min_side(16):
            b = units(x, layout=layout).float()
    assert (a - b).abs().max().item() <= 2e-2 * a.abs().max().item()
    labels_a, grid_a = (t.clone() for t in GraphedSegmenter(fast, 2, 256, 512, tau=0.4, num_buckets=8,
                                                             dense_above=None).run(imgs))
    with units_min_side(16):
        labels_b, grid_b = GraphedSegmenter(fast, 2, 256, 512, tau=0.4, num_buckets=8, dense_above=None).run(imgs)
    assert torch.equal(grid_a, grid_b)
    assert (labels_a == labels_b).float().mean().item() >= 0.99


@cuda
def test_one_pass_conv_units_match_blockpad_and_cudnn_fp16(nets):
    """``ops.conv3x3_units`` in the prepared network (every 3x3 convolution on units, the
    halo gathered in the kernel): fp16 logits match BlockPad + cuDNN eagerly, and the
    graphed segmenter with ``conv_units="always"`` / ``"auto"`` gives the same labels."""
    from segblocks_core import fused
    from segblocks_core.fastpath import GraphedSegmenter
    _, fast = nets
    imgs, seg, x, layout = units_case(fast)
    with torch.inference_mode():
        want = seg(x, layout=layout).float()
        with fused.conv_units("always"):
            got = seg(x, layout=layout).float()
    assert (got - want).abs().max().item() <= 2e-2 * want.abs().max().item()
    assert (got.argmax(1) == want.argmax(1)).float().mean().item() >= 0.99
    ref = GraphedSegmenter(fast, 2, 256, 512, tau=0.4, num_buckets=8, dense_above=None)
    labels_ref, grid_ref = (t.clone() for t in ref.run(imgs))
    for mode in ("always", "auto"):
        one = GraphedSegmenter(fast, 2, 256, 512, tau=0.4, num_buckets=8, dense_above=None, conv_units=mode)
        labels, grid_out = one.run(imgs)
        assert torch.equal(grid_out, grid_ref)
        assert (labels == labels_ref).float().mean().item() >= 0.99, mode
    with pytest.raises(ValueError, match="conv_units"):
        GraphedSegmenter(fast, 2, 256, 512, conv_units="on")


@cuda
def test_engine_warmup_captures_the_graphs_the_first_frames_use():
    """SegmentationEngine.warmup (the node's warmup_sizes) captures both modes' graphs for a
    size; frames of that size then run on them, nothing is captured again."""
    from segblocks_core.engine import SegmentationEngine
    engine = SegmentationEngine(checkpoint="random", device="cuda", precision="fp16")
    assert engine.fast_path
    assert engine.warmup(256, 512, batch=2) is True
    captured = dict(engine._graphs)
    assert set(captured) == {(2, 256, 512, True), (2, 256, 512, False)}
    imgs = frames(2)
    engine.infer(imgs, tau=0.3)
    engine.infer(imgs, adaptive=False)
    assert {k: id(v) for k, v in engine._graphs.items()} == {k: id(v) for k, v in captured.items()}
