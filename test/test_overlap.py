"""The decoder's deepest skip projections on a side stream (segblocks_core.overlap): the
pass moves exactly those chains, in both labels graphs, to right after the deepest skip's
layer output, and the labels stay the same (CPU; the CUDA tests check the streams, eager
and captured, on the GPU host)."""
import pytest
import torch

from conftest import randomize_batchnorm
from segblocks_core import SegBlocks
from segblocks_core.executor import block_interpolate
from segblocks_core.fused import upsample_add
from segblocks_core.layout import BlockLayout
from segblocks_core.models import swiftnet_rn18
from segblocks_core.overlap import run_on_side, side_join, skip_overlap, skip_overlap_levels

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def fast():
    from segblocks_core.fastpath import prepare_network
    torch.manual_seed(0)
    return prepare_network(randomize_batchnorm(swiftnet_rn18().eval()), torch.float32)


def labels_graphs(net, levels):
    with skip_overlap(levels):
        sb = SegBlocks(net, dense_when_all_highres=True)
        return sb, sb._labels_graphs()


def targets(gm, fn):
    return [n for n in gm.graph.nodes if n.op == "call_function" and n.target is fn]


@pytest.mark.parametrize("levels", [1, 2, 3])
def test_the_deepest_skip_projections_move_after_the_deepest_skip(fast, levels):
    _, graphs = labels_graphs(fast, levels)
    for gm in graphs:
        nodes = list(gm.graph.nodes)
        runs, joins = targets(gm, run_on_side), targets(gm, side_join)
        assert len(runs) == len(joins) == levels
        # the chains' inputs: layer 3's output (deepest), then layer 2's, then layer 1's
        inputs = [r.args[1] for r in runs]
        deepest = max(inputs, key=nodes.index)
        assert "layer3" in deepest.name or deepest.name == "block_conv2d_14"
        between = nodes[nodes.index(deepest) + 1:min(nodes.index(r) for r in runs) + 1]
        # right after it: the runs and their submodule references, nothing of layer 4 first
        assert all(n in runs or n.op == "get_attr" for n in between)
        for run in runs:
            chain = gm.get_submodule(run.args[0].target)
            ops = [n for n in chain.graph.nodes if n.op in ("call_module", "call_function")]
            assert len(ops) in (2, 3)  # BatchNorm + ReLU, (handoff,) 1x1 convolution
            (join,) = [j for j in joins if j.args[0] is run]
            assert set(run.users) == {join}
            readers = [u for u in join.users if u.target is not getattr]
            assert len(readers) == 1 and readers[0].target in (upsample_add, block_interpolate)
        # the graph itself keeps the other projections (a norm and a conv module each,
        # called or referenced) and none of the moved ones
        left = [n for n in nodes if n.op in ("call_module", "get_attr") and "bottleneck" in str(n.target)]
        assert len(left) == 2 * (3 - levels)


def test_off_by_default_and_levels_checked(fast):
    assert skip_overlap_levels() == 0
    _, graphs = labels_graphs(fast, 0)
    assert not any(targets(gm, run_on_side) for gm in graphs)
    with pytest.raises(ValueError, match="levels must be >= 0"):
        with skip_overlap(-1):
            pass


@pytest.mark.parametrize("highres", [0.5, 1.0])
def test_labels_are_unchanged(fast, highres):
    """Off the GPU the fork and join do nothing: the moved ops give the same labels, bit for
    bit (block plan with a mixed layout, and the dense graph for an all-high-res one)."""
    x = torch.randn(1, 4, 256, 512, generator=torch.Generator().manual_seed(1)).contiguous(
        memory_format=torch.channels_last)
    grid = torch.rand(1, 2, 4, generator=torch.Generator().manual_seed(2)) < highres
    out = []
    for levels in (0, 2):
        sb, _ = labels_graphs(fast, levels)
        with torch.inference_mode():
            out.append(sb.labels(x, grid))
    assert torch.equal(out[0], out[1])


@pytest.fixture(scope="module")
def fast_cuda():
    from segblocks_core.fastpath import prepare_network
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    torch.manual_seed(0)
    return prepare_network(randomize_batchnorm(swiftnet_rn18().eval()).cuda(), torch.float16, torch.device("cuda"))


@cuda
def test_side_stream_gives_identical_labels_eager_and_captured(fast_cuda):
    """The projections on the side stream: the same labels as in plan order, bit for bit,
    eager (three runs: freed blocks reused across the streams) and in the captured graphs of
    both sides (a missing join or an allocator race would show here)."""
    from segblocks_core.engine import normalize
    from segblocks_core.fastpath import GraphedSegmenter
    g = torch.Generator().manual_seed(3)
    imgs = torch.randint(0, 256, (2, 256, 512, 3), dtype=torch.uint8, generator=g).cuda()
    grid = (torch.rand(2, 2, 4, generator=g) < 0.5).cuda()
    results = {}
    for levels in (0, 2):
        with skip_overlap(levels):
            sb = SegBlocks(fast_cuda, dense_when_all_highres=True)
            x = normalize(imgs, torch.float16, sb.in_channels)
            layout = BlockLayout.from_grid(grid, 128)
            with torch.inference_mode():
                eager = [sb.labels(x, layout=layout) for _ in range(3)]
            seg = GraphedSegmenter(fast_cuda, 2, 256, 512, tau=0.4, num_buckets=8, segblocks=sb, dense_above=None)
            dense = GraphedSegmenter(fast_cuda, 2, 256, 512, dense=True, segblocks=sb)
            captured = [t.clone() for t in seg.run(imgs)] + [dense.run(imgs)[0].clone()]
        torch.cuda.synchronize()
        assert all(torch.equal(e, eager[0]) for e in eager)
        results[levels] = (eager[0], captured)
    assert torch.equal(results[0][0], results[2][0])
    assert all(torch.equal(a, b) for a, b in zip(results[0][1], results[2][1]))


@cuda
def test_the_callers_stream_is_current_again_when_a_chain_raises():
    """run_on_side restores the caller's stream also when the chain raises (the labels
    graph's generated code has no ``finally`` of its own)."""
    x = torch.zeros(4, device="cuda")
    before = torch.cuda.current_stream()

    def chain(value):
        assert torch.cuda.current_stream() != before  # the chain runs on the side stream
        raise RuntimeError("in the chain")
    with pytest.raises(RuntimeError, match="in the chain"):
        run_on_side(chain, x)
    assert torch.cuda.current_stream() == before
