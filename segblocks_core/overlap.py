"""The decoder's deepest skip projections on a side CUDA stream, overlapping the last
backbone layer.

SwiftNet's decoder adds, at each upsampling, a projection of a backbone layer's output
(BatchNorm + ReLU + 1x1 convolution, ``upsample.*.bottleneck``). Each depends only on its
layer's output, but the plan runs it where the decoder needs it. At batch 1 SegBlocks'
layer-4 convolutions leave SMs idle (their units give 72 output tiles of 64 x 128 for the
H100's 132 SMs, where the dense network's give 128), so the projections of the deepest
skips can run there instead: :func:`overlap_skip_projections` moves them to right after
the deepest skip's layer output, each as one call that runs it on a side stream
(:func:`run_on_side`: the side stream waits for the current one, and the caller's stream is
current again afterwards, also if the chain raised), and the current stream waits for the
side one right before the decoder reads the projection (:func:`side_join`). Inside a CUDA
graph capture the fork and join become parallel branches of the graph. Both labels graphs
get the same pass (the static best's dense one and SegBlocks' block plan), so a ratio
between them compares like with like.

Only the ``levels`` deepest skips move: a shallower skip's projection has a larger output
(SwiftNet's stride-4 one: 18 MB at batch 1 and 2048x1024), which would then stay alive
through layer 4 and the SPP. (A first try, in the seventeenth session, forked every
projection right after its own input, where layers 1-3 fill the GPU, and gained nothing.)

The pass is off by default (:func:`skip_overlap`, read when a labels graph is built:
``bench_gpu.py --overlap-skips``): on the H100 it took about 5 us off SwiftNet-RN18's 0.75 ms
at batch 1 and 40% high-res, within the spread of two runs (``benchmarks/PERFORMANCE.md``).
The values are the same either way: the same ops on the same inputs, in another order.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Optional

import torch
import torch.fx as fx
from torch import Tensor, nn

from .executor import block_conv2d, block_interpolate, block_module, handoff
from .fused import BatchNormReLU, context_value, upsample_add
from .layout import BlockTensor

_LEVELS: contextvars.ContextVar[int] = contextvars.ContextVar("segblocks_skip_overlap", default=0)
_SIDE_STREAMS: dict[torch.device, torch.cuda.Stream] = {}


@contextlib.contextmanager
def skip_overlap(levels: int = 2):
    """Labels graphs built inside run the ``levels`` deepest decoder skip projections on a
    side stream (0: off, the default)."""
    if int(levels) < 0:
        raise ValueError(f"levels must be >= 0, got {levels}")
    with context_value(_LEVELS, int(levels)):
        yield


def skip_overlap_levels() -> int:
    return _LEVELS.get()


def _tensors(value: Any) -> list[Tensor]:
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, BlockTensor):
        out = [value.highres, value.lowres]
        if value.padded is not None:
            out += list(value.padded[0])
        return out
    return []


def _cuda_device(value: Any) -> Optional[torch.device]:
    for t in _tensors(value):
        return t.device if t.is_cuda else None
    return None


def run_on_side(chain: nn.Module, value: Any) -> Any:
    """``chain(value)`` on the side stream: the fork (the side stream waits for the current
    one, ``value`` is recorded as used there), the chain, then its output recorded as used
    by the caller's stream, which is current again even if the chain raised. Off CUDA, just
    ``chain(value)``."""
    device = _cuda_device(value)
    if device is None:
        return chain(value)
    main = torch.cuda.current_stream(device)
    side = _SIDE_STREAMS.get(device)
    if side is None:
        side = _SIDE_STREAMS[device] = torch.cuda.Stream(device)
    side.wait_stream(main)
    for t in _tensors(value):
        t.record_stream(side)
    torch.cuda.set_stream(side)
    try:
        out = chain(value)
    finally:
        torch.cuda.set_stream(main)
    for t in _tensors(out):
        t.record_stream(main)
    return out


def side_join(value: Any) -> Any:
    """Join, right before the first reader: the current stream waits for the side one."""
    device = _cuda_device(value)
    if device is not None and device in _SIDE_STREAMS:
        torch.cuda.current_stream(device).wait_stream(_SIDE_STREAMS[device])
    return value


def _module(gm: fx.GraphModule, node: Any) -> Optional[nn.Module]:
    if isinstance(node, fx.Node) and node.op == "get_attr":
        return gm.get_submodule(node.target)
    return None


def _is_norm(gm: fx.GraphModule, node: fx.Node) -> bool:
    """A BatchNormReLU: called as a module (the dense graph) or through block_module."""
    if node.op == "call_module":
        return isinstance(gm.get_submodule(node.target), BatchNormReLU)
    return (node.op == "call_function" and node.target is block_module
            and isinstance(_module(gm, node.args[1]), BatchNormReLU))


def _is_pointwise_conv(gm: fx.GraphModule, node: fx.Node) -> bool:
    """A 1x1 stride-1 convolution: a module (dense) or block_conv2d without a residual."""
    if node.op == "call_module":
        conv = gm.get_submodule(node.target)
    elif node.op == "call_function" and node.target is block_conv2d and len(node.args) == 2 and not node.kwargs:
        conv = _module(gm, node.args[1])
    else:
        return False
    return (isinstance(conv, nn.Conv2d) and tuple(conv.kernel_size) == (1, 1) and tuple(conv.stride) == (1, 1)
            and conv.groups == 1)


def _is_skip_reader(node: fx.Node, value: fx.Node) -> bool:
    """The decoder's upsample + skip add reading ``value`` as its skip."""
    if node.op != "call_function":
        return False
    if node.target is upsample_add:
        return len(node.args) > 2 and node.args[2] is value
    return node.target is block_interpolate and node.kwargs.get("add") is value


def _only_user(node: fx.Node) -> Optional[fx.Node]:
    users = list(node.users)
    return users[0] if len(users) == 1 else None


def _skip_chains(gm: fx.GraphModule) -> list[tuple[fx.Node, list[fx.Node], fx.Node]]:
    """``(input, chain, projection)`` per decoder skip: a BatchNormReLU of ``input``, then
    (in the block plan) its handoff, then a 1x1 convolution read by the decoder's upsample +
    add (and otherwise only by shape reads), each link the previous one's only user."""
    chains = []
    for norm in gm.graph.nodes:
        if not _is_norm(gm, norm) or not isinstance(norm.args[0], fx.Node):
            continue
        chain, node = [norm], _only_user(norm)
        if node is not None and node.op == "call_function" and node.target is handoff:
            chain.append(node)
            node = _only_user(node)
        if node is None or not _is_pointwise_conv(gm, node) or node.args[0] is not chain[-1]:
            continue
        chain.append(node)
        readers = [u for u in node.users if not (u.op == "call_function" and u.target is getattr)]
        if len(readers) == 1 and _is_skip_reader(readers[0], node):
            chains.append((norm.args[0], chain, node))
    return chains


def _chain_module(gm: fx.GraphModule, value: fx.Node, chain: list[fx.Node]) -> fx.GraphModule:
    """The chain as a graph of its own, ``value`` its input, sharing ``gm``'s modules."""
    graph = fx.Graph()
    env = {value: graph.placeholder("x")}
    for node in chain:
        for arg in node.args:
            if isinstance(arg, fx.Node) and arg not in env:
                env[arg] = graph.node_copy(arg)  # a module reference (get_attr)
        env[node] = graph.node_copy(node, lambda n: env[n])
    graph.output(env[chain[-1]])
    return fx.GraphModule(gm, graph, class_name="SkipProjection")


def overlap_skip_projections(gm: fx.GraphModule, levels: int) -> int:
    """Replace the ``levels`` deepest skip projections of ``gm`` (in place) by one
    :func:`run_on_side` call each (the chain a submodule ``side_chain_<k>``), placed right
    after the deepest one's input, with a :func:`side_join` before its first reader.
    Returns how many moved."""
    if levels <= 0:
        return 0
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    chains = sorted(_skip_chains(gm), key=lambda c: order[c[0]])[-levels:]
    if not chains:
        return 0
    anchor = chains[-1][0]  # the deepest skip's layer output
    for k, (value, chain, projection) in enumerate(reversed(chains)):
        if any(arg not in (value, *chain) and arg.op != "get_attr"
               for node in chain for arg in node.all_input_nodes):
            raise AssertionError(f"skip chain {[n.name for n in chain]} reads more than its input")
        name = f"side_chain_{k}"
        gm.add_submodule(name, _chain_module(gm, value, chain))
        first_reader = min(projection.users, key=lambda u: order[u])
        with gm.graph.inserting_after(anchor):
            ref = gm.graph.get_attr(name)
        with gm.graph.inserting_after(ref):
            run = gm.graph.call_function(run_on_side, (ref, value))
        with gm.graph.inserting_before(first_reader):
            join = gm.graph.call_function(side_join, (run,))
        projection.replace_all_uses_with(join)
        for node in reversed(chain):
            refs = [a for a in node.args if isinstance(a, fx.Node) and a.op == "get_attr"]
            gm.graph.erase_node(node)
            for a in refs:
                if not a.users:
                    gm.graph.erase_node(a)
    gm.graph.lint()
    gm.recompile()
    return len(chains)
