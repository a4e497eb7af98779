"""Programmatic dependent launch (``csrc/ops/cuda/pdl.cuh``): on Hopper the extension's
kernels and the persistent CUTLASS convolutions may start while the kernel before them ends,
each waiting for its results before touching memory. A missing wait shows as a kernel that
reads its input before it is written (or writes memory the kernel before still reads): the
chains below make every kernel depend on the one before, reuse freed memory, and must come out
bitwise equal to the same chains launched the ordinary way (``SEGBLOCKS_PDL=0``, in a
subprocess: the setting is read once per process) and with the BlockPad passes' lookups
after the wait (``SEGBLOCKS_PDL_PREFETCH=0``; by default they look up before it), eagerly and
replayed from a CUDA graph.

The GPU tests run on the H100 host; on the CPU the sources are checked for the wait and the
off state of a build without CUDA kernels.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from segblocks_core import ops  # noqa: E402
from segblocks_core.layout import BlockLayout, BlockTensor  # noqa: E402

HOPPER = torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 9 and ops.has_native("cuda")
needs_hopper = pytest.mark.skipif(not HOPPER, reason="needs the CUDA kernels on a Hopper (sm_90+) GPU")

STEPS = 12


def _programmatic_configs() -> list[int]:
    """conv_into_'s configurations launched programmatically (the persistent ping-pong and
    cooperative kernels and the halo-tile ones; not stream-K, not CUTLASS's own convolution
    kernel)."""
    return [i for i, name in enumerate(ops.cutlass_conv_configs())
            if name.endswith(("_pingpong", "_coop")) or name.startswith("halo_")]


def chains(device: str = "cuda") -> dict[str, torch.Tensor]:
    """The test's kernel chains, eager and replayed from a CUDA graph, deterministic for a
    fixed configuration (whole K loops, no atomics)."""
    gen = torch.Generator().manual_seed(0)
    # scale_shift_relu: x -> relu(t_k - x), each step a new tensor in memory the allocator
    # freed two steps before (a write racing the previous kernel's reads changes values)
    x0 = torch.rand(4, 64, 96, 128, generator=gen).to(device).contiguous(memory_format=torch.channels_last)
    scale = torch.full((64,), -1.0, device=device)
    shifts = [torch.full((64,), float(k + 1), device=device) for k in range(STEPS)]

    def relu_chain():
        x = x0
        for t in shifts:
            x = ops.scale_shift_relu(x, scale, t)
        return x

    out = {"relu_chain": relu_chain()}
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = relu_chain()
    graph.replay()
    out["relu_chain_graph"] = captured.clone()

    configs = _programmatic_configs()
    if configs:
        # conv_into_ (padding 0 on padded tiles) writes the next tiles' interiors, then
        # block_pad_ring_ their frames from those interiors, or packed units that
        # block_pad_units pads whole: each kernel reads the last one's output, as in the
        # network's layers
        grid = torch.rand(2, 4, 6, generator=gen) > 0.5
        grid.view(-1)[0], grid.view(-1)[-1] = True, False
        layout = BlockLayout.from_grid(grid.to(device), 32)
        u = 16
        tiles = 4 * layout.num_highres + layout.num_lowres
        t0 = (torch.rand(tiles, 64, u + 2, u + 2, generator=gen) - 0.5).to(device, torch.float16).contiguous(
            memory_format=torch.channels_last)
        # weights that keep the maps' magnitude about the same through the ReLUs
        weights = [((torch.rand(64, 64, 3, 3, generator=gen) - 0.5) / 4).to(device, torch.float16).contiguous(
            memory_format=torch.channels_last) for _ in range(STEPS)]
        bias = torch.full((64,), 0.05, device=device, dtype=torch.float16)

        def conv_chain(config):
            x = t0
            for k, w in enumerate(weights):
                if k % 2 == 0:  # into the interiors, then the frames
                    y = torch.empty_like(x)
                    ops.conv_into_(y[:, :, 1:-1, 1:-1], x, w, bias, None, 1, 0, config)
                    x = ops.block_pad_ring_(y, layout, 1)
                else:  # packed units, then a full BlockPad
                    y = torch.empty(tiles, 64, u, u, device=device, dtype=torch.float16).contiguous(
                        memory_format=torch.channels_last)
                    ops.conv_into_(y, x, w, bias, None, 1, 0, config)
                    x = ops.block_pad_units(BlockTensor.from_units(y, layout), 1)
            return x

        for config in configs:
            out[f"conv_chain_{config}"] = conv_chain(config)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                captured = conv_chain(config)
            graph.replay()
            out[f"conv_chain_{config}_graph"] = captured.clone()
    torch.cuda.synchronize()
    return {k: v.cpu() for k, v in out.items()}


def test_every_programmatically_launched_kernel_waits_first():
    """The contract of pdl.cuh, checked in the sources (CI has no GPU): each kernel passed to
    launch_kernel waits for the kernel before it before anything that could touch the maps.
    Before the wait a kernel may only compute its first index and, in the two-phase kernel,
    call `locate` (which reads only the layout, block_copy.cuh)."""
    import glob
    import re

    sources = {path: open(path).read() for pattern in ("csrc/**/*.cuh", "csrc/**/*.cu", "csrc/**/*.h")
               for path in glob.glob(os.path.join(ROOT, pattern), recursive=True)}
    launched = {m.group(1) for text in sources.values() for m in re.finditer(r"\blaunch_kernel\(\s*(\w+)", text)}
    launched.discard("void")  # the template's own declaration
    assert {"grid_stride_kernel", "located_grid_stride_kernel"} <= launched
    allowed = {"int64_t", "if", "locate"}
    for name in launched:
        bodies = [m.group(1) for text in sources.values()
                  for m in re.finditer(r"__global__[^;{]*?\b" + name + r"\([^)]*\)\s*\{(.*?)wait_for_prerequisite_grid\(\);",
                                       text, re.S)]
        assert bodies, f"kernel {name} (launched by launch_kernel) has no wait_for_prerequisite_grid()"
        for before in bodies:
            calls = set(re.findall(r"(\w+)\s*\(", before))
            assert calls <= allowed, f"{name} calls {sorted(calls - allowed)} before it waits"


def test_programmatic_launch_is_off_without_cuda_kernels():
    if ops.has_native("cuda"):
        pytest.skip("this build has the CUDA kernels (the GPU tests check them)")
    assert ops.programmatic_launch() is False and ops.programmatic_prefetch() is False


@needs_hopper
@pytest.mark.parametrize("env,want", [({}, "True True"), ({"SEGBLOCKS_PDL": "0"}, "False False"),
                                      ({"SEGBLOCKS_PDL_PREFETCH": "0"}, "True False"),
                                      ({"SEGBLOCKS_PDL_PREFETCH": "1"}, "True True"),
                                      ({"SEGBLOCKS_PDL": "0", "SEGBLOCKS_PDL_PREFETCH": "1"}, "False False")])
def test_the_variables_switch_programmatic_launches_and_prefetch(env, want):
    code = "from segblocks_core import ops; print(ops.programmatic_launch(), ops.programmatic_prefetch())"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SEGBLOCKS_PDL")}
    out = subprocess.run([sys.executable, "-c", code], env=dict(clean, **env), cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == want


def _chains_in_subprocess(tmp_path, **env) -> dict:
    path = tmp_path / ("-".join(f"{k}={v}" for k, v in env.items()) + ".pt")
    subprocess.run([sys.executable, __file__, str(path)], env=dict(os.environ, **env), cwd=ROOT, check=True)
    return torch.load(path)


@needs_hopper
def test_dependent_chains_equal_the_ordinary_launches(tmp_path):
    """Every chain, eager and replayed from a graph, with programmatic launches (this process)
    is bitwise equal to the same chain launched the ordinary way (a subprocess with
    SEGBLOCKS_PDL=0) and to the chain whose BlockPad passes look their sources up on the
    other side of the wait (SEGBLOCKS_PDL_PREFETCH=0 where this process has the default, 1
    where it was started with 0), and the scale_shift_relu chain equals its float64 value."""
    got = chains()
    assert set(got) == set(_chains_in_subprocess(tmp_path, SEGBLOCKS_PDL="0"))
    if ops.cutlass_conv_configs():
        assert any(k.startswith("conv_chain_") for k in got), "no programmatic CUTLASS configuration was chained"
    # the other side of the lookups from this process's (by default: before the wait)
    other = {"SEGBLOCKS_PDL_PREFETCH": "0" if ops.programmatic_prefetch() else "1"}
    for env in ({"SEGBLOCKS_PDL": "0"}, other):
        want = _chains_in_subprocess(tmp_path, **env)
        for name, value in got.items():
            assert torch.equal(value, want[name]), f"{name} differs with {env}"
    for name, value in got.items():
        assert torch.isfinite(value.float()).all(), name
        assert value.float().std() > 0.05, f"{name}: the chain's values died out (nothing left to compare)"
    for name in got:
        if name.endswith("_graph"):
            assert torch.equal(got[name], got[name[:-len("_graph")]]), f"{name}: the graph's replay differs"
    x = torch.rand(4, 64, 96, 128, generator=torch.Generator().manual_seed(0)).double()
    for k in range(STEPS):
        x = (k + 1 - x).relu()
    torch.testing.assert_close(got["relu_chain"].double(), x.contiguous(memory_format=torch.channels_last),
                               rtol=0, atol=1e-5)


if __name__ == "__main__":  # the ordinary launches' side (SEGBLOCKS_PDL=0)
    torch.save(chains(), sys.argv[1])
