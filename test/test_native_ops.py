"""Native block ops (``torch.ops.segblocks.*``) against the pure-PyTorch reference.

Parametrised over device: ``cpu`` runs everywhere (CI builds the CPU extension),
``cuda`` is skipped without a GPU; ``pytest -k cuda`` selects the GPU half (what
``benchmarks/gpu_parity.py`` runs on the H100 host). The parity case matrix (op x dtype x
layout x geometry x padding/mode/value) lives in ``native_op_cases.py``, shared with that
script.

If the extension is missing these tests fail (``use_backend("native")`` says how to build
it) instead of skipping, so a broken build cannot pass CI; ``SEGBLOCKS_NO_EXTENSION=1``
(a deliberate reference-only build) skips them.
"""

from __future__ import annotations

import os

import pytest
import torch

import native_op_cases as cases
from native_op_cases import DEVICES, HAS_GPU
import segblocks_core
from segblocks_core import ops
from segblocks_core.layout import BlockLayout
from segblocks_core.ops import _reference, has_native, use_backend

if os.environ.get("SEGBLOCKS_NO_EXTENSION") == "1":
    pytest.skip("SEGBLOCKS_NO_EXTENSION=1: reference-only build", allow_module_level=True)



@pytest.fixture(autouse=True)
def native_backend(request):
    """Every test runs with the native backend forced (fails if the extension is missing)."""
    with use_backend("native"):
        yield


def _layout(geometry_name: str, device) -> BlockLayout:
    return cases.GEOMETRY_BY_NAME[geometry_name].layout(device)


# ----------------------------------------------------------------------------------------
# build / backend
# ----------------------------------------------------------------------------------------


def test_backend_is_native_cpu():
    assert segblocks_core.backend("cpu") == "native-cpu"
    assert segblocks_core.backend().startswith("native-cpu")
    assert "native-cpu kernels" in segblocks_core.backend_message()


@pytest.mark.skipif(not HAS_GPU, reason="no CUDA GPU")
def test_backend_is_native_cuda():
    assert has_native("cuda"), "CUDA kernels not built: reinstall with FORCE_CUDA=1"
    assert segblocks_core.backend("cuda") == "native-cuda"


# ----------------------------------------------------------------------------------------
# parity with the reference: forward and backward, the whole case matrix
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(cases.parity_cases()), ids=lambda c: c.id)
@pytest.mark.parametrize("device", DEVICES)
def test_parity(device, case):
    case.run(device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("geometry", ["mixed_batch2", "all_hr", "tiny_2px_batch2"])
def test_split_combine_round_trip(device, geometry):
    lay = _layout(geometry, device)
    b = cases.GEOMETRY_BY_NAME[geometry].hr_side
    n, gh, gw = lay.grid_shape
    x = torch.randn(n, 3, gh * b, gw * b, device=device)
    hr, lr = torch.ops.segblocks.split(x, lay.hr_pos, lay.lr_pos, b)
    y = torch.ops.segblocks.combine(hr, lr, lay.hr_pos, lay.lr_pos, n, gh, gw)
    # high-res cells come back exactly, low-res cells as the nearest-upsampled 2x2 means
    expected = _reference.combine(*_reference.split(x, lay.hr_pos, lay.lr_pos, b), lay.hr_pos, lay.lr_pos, n, gh, gw)
    torch.testing.assert_close(y, expected, rtol=0, atol=0)
    hr_mask = lay.grid.repeat_interleave(b, 1).repeat_interleave(b, 2)[:, None].expand_as(x)
    assert torch.equal(y[hr_mask], x[hr_mask])


@pytest.mark.parametrize("device", DEVICES)
def test_block_pad_all_highres_equals_zero_padding_of_dense(device):
    """With every block high-res, BlockPad must cut the windows of the zero-padded dense map."""
    lay = BlockLayout.from_grid(torch.ones(2, 3, 4, dtype=torch.bool, device=device), 4)
    x = torch.randn(2, 6, 12, 16, device=device)
    hr, lr = torch.ops.segblocks.split(x, lay.hr_pos, lay.lr_pos, 4)
    padded, _ = torch.ops.segblocks.block_pad(hr, lr, lay.hr_pos, lay.lr_pos, lay.block_map, 3, "constant", 0.0)
    dense = torch.nn.functional.pad(x, (3, 3, 3, 3))
    windows = dense.unfold(2, 10, 4).unfold(3, 10, 4)  # [N, C, GH, GW, 10, 10]
    expected = windows.permute(0, 2, 3, 1, 4, 5).reshape(-1, 6, 10, 10)
    torch.testing.assert_close(padded, expected, rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_block_pad_never_mixes_images(device):
    """Image 0 all ones, image 1 all twos: no halo (p=3 reaches three 1-px low-res cells
    away) may see the other image. Row wrapping is covered by the single-row geometry of
    the parity cases."""
    grid = torch.tensor([[[True, False, True], [False, True, False]],
                         [[False, True, False], [True, False, True]]], device=device)
    lay = BlockLayout.from_grid(grid, 2)
    img = (lay.hr_pos // 6).to(torch.float32) + 1.0
    img_lr = (lay.lr_pos // 6).to(torch.float32) + 1.0
    hr = img.view(-1, 1, 1, 1).expand(-1, 2, 2, 2).contiguous()
    lr = img_lr.view(-1, 1, 1, 1).expand(-1, 2, 1, 1).contiguous()
    for mode in ("constant", "replicate"):
        out_hr, out_lr = torch.ops.segblocks.block_pad(hr, lr, lay.hr_pos, lay.lr_pos, lay.block_map, 3, mode,
                                                       float("nan"))
        for out, image in ((out_hr, img), (out_lr, img_lr)):
            values = out.nan_to_num(nan=-1.0)
            own = image.view(-1, 1, 1, 1).expand_as(values)
            assert torch.all((values == own) | (values == -1.0)), mode


# ----------------------------------------------------------------------------------------
# opcheck, gradcheck, compile
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("sample", list(cases.OPCHECK_SAMPLES))
@pytest.mark.parametrize("op", cases.OPS + cases.HEAD_OPS)
@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device, op, sample):
    cases.opcheck_op(device, op, sample)


@pytest.mark.parametrize("mode", ["constant", "replicate"])
@pytest.mark.parametrize("op", cases.OPS)
@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck_float64(device, op, mode):
    """First and second derivatives of every op on tiny float64 tensors."""
    if mode == "replicate" and not op.startswith("block_pad"):
        pytest.skip("mode only applies to block_pad")
    cases.gradcheck_op(device, op, mode)


@pytest.mark.parametrize("device", DEVICES)
def test_torch_compile_fullgraph(device):
    """split -> block_pad -> combine compiles into one graph (fake kernels + autograd).

    CPU uses the aot_eager backend: inductor's C++ code generation alone takes ~20 s on the
    2-core CI machines; aot_eager still traces the whole graph through the fake kernels and
    the registered autograd. CUDA uses inductor.
    """
    cases.compile_matches_eager(device, "inductor" if device == "cuda" else "aot_eager")


# ----------------------------------------------------------------------------------------
# determinism, empty inputs, bad inputs
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["f32", "f16"])
@pytest.mark.parametrize("device", DEVICES)
def test_backward_bitwise_reproducible(device, dtype):
    assert cases.backward_is_bitwise_reproducible(device, dtype, repeats=3)


@pytest.mark.parametrize("device", DEVICES)
def test_empty_inputs(device):
    # zero channels and an empty batch: every op returns correctly shaped empty outputs
    lay = _layout("mixed_batch2", device)
    n, gh, gw = lay.grid_shape
    x = torch.empty(n, 0, gh * 4, gw * 4, device=device)
    hr, lr = torch.ops.segblocks.split(x, lay.hr_pos, lay.lr_pos, 4)
    assert hr.shape == (lay.num_highres, 0, 4, 4) and lr.shape == (lay.num_lowres, 0, 2, 2)
    assert torch.ops.segblocks.combine(hr, lr, lay.hr_pos, lay.lr_pos, n, gh, gw).shape == x.shape
    phr, plr = torch.ops.segblocks.block_pad(hr, lr, lay.hr_pos, lay.lr_pos, lay.block_map, 2, "constant", 0.0)
    assert phr.shape == (lay.num_highres, 0, 8, 8) and plr.shape == (lay.num_lowres, 0, 6, 6)
    ghr, glr = torch.ops.segblocks.block_pad_backward(phr, plr, lay.hr_pos, lay.lr_pos, lay.block_map, 2, "constant")
    assert ghr.shape == hr.shape and glr.shape == lr.shape

    empty_grid = BlockLayout.from_grid(torch.zeros(0, 2, 3, dtype=torch.bool, device=device), 4)
    x0 = torch.empty(0, 3, 8, 12, device=device)
    hr0, lr0 = torch.ops.segblocks.split(x0, empty_grid.hr_pos, empty_grid.lr_pos, 4)
    assert hr0.shape == (0, 3, 4, 4) and lr0.shape == (0, 3, 2, 2)
    out = torch.ops.segblocks.combine(hr0, lr0, empty_grid.hr_pos, empty_grid.lr_pos, 0, 2, 3)
    assert out.shape == (0, 3, 8, 12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("geometry", ["all_hr", "all_lr_batch2"])
def test_one_resolution_empty_backward(device, geometry):
    """No low-res (or no high-res) blocks: gradients flow, the empty side gets an empty grad."""
    lay, hr, lr = cases.block_inputs(cases.GEOMETRY_BY_NAME[geometry], torch.float32, device, "contiguous")
    hr.requires_grad_()
    lr.requires_grad_()
    out = torch.ops.segblocks.block_pad(hr, lr, lay.hr_pos, lay.lr_pos, lay.block_map, 1, "constant", 0.0)
    (out[0].sum() + out[1].sum()).backward()
    assert hr.grad.shape == hr.shape and lr.grad.shape == lr.shape
    assert torch.isfinite(hr.grad).all() and torch.isfinite(lr.grad).all()


def _bad_inputs(device):
    lay = _layout("mixed_batch2", device)
    n, gh, gw = lay.grid_shape
    x = torch.randn(n, 3, gh * 4, gw * 4, device=device)
    hr = torch.randn(lay.num_highres, 3, 4, 4, device=device)
    lr = torch.randn(lay.num_lowres, 3, 2, 2, device=device)
    hp, bm = lay.hr_pos, lay.block_map
    bad_pos = hp.clone()
    bad_pos[0] = 10_000
    dup_pos = hp.clone()
    dup_pos[1] = dup_pos[0]
    bad_map = bm.clone()
    bad_map.view(-1)[0] = bm.view(-1)[1]
    s = torch.ops.segblocks
    return {
        "x-3d": (lambda: s.split(x[0], hp, lay.lr_pos, 4), r"split: x must be a 4-D tensor"),
        "x-int": (lambda: s.split(x.long(), hp, lay.lr_pos, 4), r"split: x must be a floating-point tensor"),
        "hr_pos-int32": (lambda: s.split(x, hp.int(), lay.lr_pos, 4), r"split: hr_pos must be int64"),
        "lr_pos-2d": (lambda: s.split(x, hp, lay.lr_pos[None], 4), r"split: lr_pos must be 1-D"),
        "block_size-odd": (lambda: s.split(x, hp, lay.lr_pos, 3), r"split: block_size must be an even number"),
        "x-not-multiple": (lambda: s.split(x[..., :-2], hp, lay.lr_pos, 4),
                           r"split: x spatial size 12x14 is not a multiple of block_size 4"),
        "positions-count": (lambda: s.split(x, hp[1:], lay.lr_pos, 4), r"split: the grid .* has 24 cells"),
        "hr_pos-out-of-grid": (lambda: s.split(x, bad_pos, lay.lr_pos, 4), r"split: hr_pos\[0\] = 10000 is outside"),
        "hr_pos-duplicate": (lambda: s.split(x, dup_pos, lay.lr_pos, 4), r"split: grid cell .* appears more than once"),
        "lowres-dtype": (lambda: s.combine(hr, lr.double(), hp, lay.lr_pos, n, gh, gw),
                         r"combine: lowres has dtype Double but highres has Float"),
        "lowres-channels": (lambda: s.combine(hr, lr[:, :2], hp, lay.lr_pos, n, gh, gw),
                            r"combine: lowres has 2 channels but highres has 3"),
        "lowres-side": (lambda: s.combine(hr, hr[:lay.num_lowres], hp, lay.lr_pos, n, gh, gw),
                        r"combine: lowres blocks must be half the side of highres blocks"),
        "highres-count": (lambda: s.combine(hr[1:], lr, hp, lay.lr_pos, n, gh, gw),
                          r"combine: highres has \d+ blocks but hr_pos has \d+ positions"),
        "highres-side-odd": (lambda: s.combine(hr[..., :3, :3], lr, hp, lay.lr_pos, n, gh, gw),
                             r"combine: highres block side must be even"),
        "grid-size": (lambda: s.combine(hr, lr, hp, lay.lr_pos, n, gh, gw + 1), r"combine: the grid 2x3x5 has 30 cells"),
        "mode": (lambda: s.block_pad(hr, lr, hp, lay.lr_pos, bm, 1, "reflect", 0.0),
                 r"block_pad: mode must be 'constant' or 'replicate', got 'reflect'"),
        "padding-negative": (lambda: s.block_pad(hr, lr, hp, lay.lr_pos, bm, -1, "constant", 0.0),
                             r"block_pad: padding must be >= 0, got -1"),
        "block_map-int64": (lambda: s.block_pad(hr, lr, hp, lay.lr_pos, bm.long(), 1, "constant", 0.0),
                            r"block_pad: block_map must be int32"),
        "block_map-2d": (lambda: s.block_pad(hr, lr, hp, lay.lr_pos, bm[0], 1, "constant", 0.0),
                         r"block_pad: block_map must be 3-D"),
        "block_map-shape": (lambda: s.block_pad(hr, lr, hp, lay.lr_pos, bm[:1], 1, "constant", 0.0),
                            r"block_pad: block_map of shape .* has 12 cells"),
        "grad-padded-side": (lambda: s.block_pad_backward(hr, lr, hp, lay.lr_pos, bm, 2, "constant"),
                             r"block_pad_backward: grad_highres_padded block side must be even and >= 2 after removing the padding"),
        "grad-lowres-side": (lambda: s.split_backward(hr, hr[:lay.num_lowres], hp, lay.lr_pos, n, gh, gw),
                             r"split_backward: grad_lowres blocks must be half the side of grad_highres blocks"),
        "combine_backward-grad": (lambda: s.combine_backward(x[0], hp, lay.lr_pos, 4),
                                  r"combine_backward: grad must be a 4-D tensor"),
    }, bad_map, (hr, lr, hp, lay.lr_pos)


BAD_INPUT_NAMES = list(_bad_inputs("cpu")[0])


@pytest.mark.parametrize("name", BAD_INPUT_NAMES)
@pytest.mark.parametrize("device", DEVICES)
def test_bad_inputs_raise_naming_the_argument(device, name):
    call, message = _bad_inputs(device)[0][name]
    if device == "cuda" and name in ("hr_pos-out-of-grid", "hr_pos-duplicate"):
        pytest.skip("position values are trusted on CUDA (checking them would sync the device)")
    with pytest.raises(RuntimeError, match=message):
        call()


def test_inconsistent_block_map_raises_on_cpu():
    _, bad_map, (hr, lr, hp, lp) = _bad_inputs("cpu")
    with pytest.raises(RuntimeError, match=r"block_pad: block_map value .* disagrees with hr_pos/lr_pos"):
        torch.ops.segblocks.block_pad(hr, lr, hp, lp, bad_map, 1, "constant", 0.0)


@pytest.mark.skipif(not HAS_GPU, reason="no CUDA GPU")
def test_cuda_device_mismatch_raises():
    lay = _layout("mixed_batch2", "cuda")
    x = torch.randn(2, 3, 12, 16, device="cuda")
    with pytest.raises(RuntimeError, match=r"split: hr_pos is on cpu but the feature tensors are on cuda"):
        torch.ops.segblocks.split(x, lay.hr_pos.cpu(), lay.lr_pos, 4)


# ----------------------------------------------------------------------------------------
# conv3x3_units: CUDA only (tensor cores); the host harness checks its code on the CPU
# ----------------------------------------------------------------------------------------

CUDA_ONLY = pytest.mark.skipif(not HAS_GPU, reason="no CUDA GPU")


@CUDA_ONLY
@pytest.mark.parametrize("epilogue", list(cases.CONV_UNITS_EPILOGUES))
@pytest.mark.parametrize("quartered", [False, True], ids=["blocks_in", "units_in"])
@pytest.mark.parametrize("geometry", cases.CONV_UNITS_GEOMETRIES, ids=[g.name for g in cases.CONV_UNITS_GEOMETRIES])
@pytest.mark.parametrize("dtype", list(cases.CONV_UNITS_DTYPES.values()), ids=list(cases.CONV_UNITS_DTYPES))
@pytest.mark.parametrize("stride", [1, 2])
def test_conv3x3_units_cuda(dtype, geometry, quartered, epilogue, stride):
    cases.check_conv3x3_units("cuda", dtype, geometry, quartered, epilogue, stride)


@CUDA_ONLY
@pytest.mark.parametrize("splits", [1, 3])
@pytest.mark.parametrize("geometry", ["mixed_batch2", "side16"])
def test_conv3x3_units_cuda_split_k(geometry, splits):
    """One K split, and three (a float32 workspace and a second kernel that adds them):
    the same result as the reference; the default (0) chooses for the GPU."""
    g = {g.name: g for g in cases.CONV_UNITS_GEOMETRIES}[geometry]
    for epilogue in ("bias_residual_relu", "prologue_bias"):
        cases.check_conv3x3_units("cuda", torch.float16, g, True, epilogue, 1, splits)


@CUDA_ONLY
def test_conv3x3_units_cuda_opcheck_and_graph():
    from torch.library import opcheck

    geometry = cases.GEOMETRY_BY_NAME["mixed_batch2"]
    lay, hr, lr, w, b, z = cases.conv_units_inputs(geometry, torch.float16, "cuda", True, "bias_residual_relu")
    args = (hr, lr, lay.hr_pos, lay.lr_pos, lay.block_map, w, b, z, True, True, 1)
    opcheck(torch.ops.segblocks.conv3x3_units.default, args,
            test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"))
    want = torch.ops.segblocks.conv3x3_units(*args)
    graph = torch.cuda.CUDAGraph()
    torch.cuda.synchronize()
    with torch.cuda.graph(graph):
        out = torch.ops.segblocks.conv3x3_units(*args)
    hr.mul_(-1)
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(out, _reference.conv3x3_units(*args))
    assert not torch.equal(out, want)


@CUDA_ONLY
@pytest.mark.parametrize("change,pattern", [
    (dict(dtype=torch.float32), "half and bfloat16"),
    (dict(cin=40), "multiple of 16"),
    (dict(cout=96), "multiple of 64"),
    (dict(layout="contiguous"), "channels_last with 16-byte aligned"),
    (dict(hr_side=130), "output units of at most 64 px"),
])
def test_conv3x3_units_cuda_limits_are_clear_errors(change, pattern):
    geometry = cases.GEOMETRY_BY_NAME["mixed_batch2"]
    if "hr_side" in change:  # 65-px units: a row of one is more than a thread block's 64 pixels
        geometry = cases.Geometry("side130", 1, 1, 2, change["hr_side"], "mixed")
    dtype = change.get("dtype", torch.float16)
    lay, hr, lr, w, b, _ = cases.conv_units_inputs(geometry, dtype, "cuda", True, "bias_relu",
                                                   cin=change.get("cin", 64), cout=change.get("cout", 128))
    if change.get("layout") == "contiguous":
        hr, lr = hr.contiguous(), lr.contiguous()
    bt = segblocks_core.layout.BlockTensor(hr, lr, lay, quartered=True)
    assert not ops.conv3x3_units_supported(bt, w)  # the executor keeps BlockPad + cuDNN
    with pytest.raises(RuntimeError, match=pattern):
        torch.ops.segblocks.conv3x3_units(hr, lr, lay.hr_pos, lay.lr_pos, lay.block_map, w, b, None, True, True)


def test_packed16_ignores_the_stride_of_size_one_dimensions():
    """An [N, C, 1, 1] tensor has strides [C, 1, 1, 1] in both memory formats (1-px units of
    2-px blocks): the 16-byte pack check must accept it, as it accepts any channels_last
    tensor, and still refuse channels that are not adjacent."""
    one_px = torch.zeros(3, 64, 1, 1, dtype=torch.float16)
    assert one_px.stride() == (64, 1, 1, 1)
    assert ops._packed16(one_px)
    assert ops._packed16(torch.zeros(3, 64, 1, 4, dtype=torch.float16).contiguous(memory_format=torch.channels_last))
    assert not ops._packed16(torch.zeros(3, 64, 2, 2, dtype=torch.float16))  # NCHW: channels 4 apart
    assert not ops._packed16(torch.zeros(3, 64, 1, 4, dtype=torch.float16))  # NCHW, one row
    assert not ops._packed16(torch.zeros(3, 12, 1, 1, dtype=torch.float16))  # pixels 12 elements apart


def test_conv3x3_units_api_runs_the_reference_off_cuda():
    """The op has a CUDA kernel only (tensor cores): on the CPU the BlockTensor API runs
    the reference, with the residual taken from the units and the ReLU applied, and says
    the kernel is not supported (the executor keeps BlockPad + convolution there)."""
    geometry = cases.GEOMETRY_BY_NAME["mixed_batch2"]
    lay, hr, lr, w, b, z = cases.conv_units_inputs(geometry, torch.float32, "cpu", True, "bias_residual_relu",
                                                   cin=8, cout=16)
    bt = segblocks_core.layout.BlockTensor(hr, lr, lay, quartered=True)
    with use_backend("auto"):
        out = ops.conv3x3_units(bt, w, b, segblocks_core.layout.BlockTensor.from_units(z, lay), relu=True)
        assert not ops.conv3x3_units_supported(bt, w)
    units = _reference.block_pad_units(hr, lr, lay.hr_pos, lay.lr_pos, lay.block_map, 1, "constant", 0.0, True)
    torch.testing.assert_close(out.units, torch.relu(torch.nn.functional.conv2d(units, w, b) + z))
    assert out.quartered and out.layout is lay
    with pytest.raises(ValueError, match="residual must be a BlockTensor on the same layout"):
        ops.conv3x3_units(bt, w, b, z)


# ----------------------------------------------------------------------------------------
# CUDA graphs (GPU only): the kernels launch on the current stream without host syncs
# ----------------------------------------------------------------------------------------


@pytest.mark.skipif(not HAS_GPU, reason="no CUDA GPU")
def test_cuda_graph_capture_replays():
    cases.cuda_graph_replay_matches()


# ----------------------------------------------------------------------------------------
# the user-level API and the engine with the native backend
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_block_tensor_api_native_equals_reference(device):
    torch.manual_seed(3)
    x = torch.randn(2, 4, 16, 24, device=device)
    grid = torch.rand(2, 2, 3, device=device) > 0.5
    results = {}
    for name in ("native", "reference"):
        with use_backend(name):
            bt = ops.split(x, grid, 8)
            hr, lr = ops.block_pad(bt, 2, "replicate")
            results[name] = (hr, lr, ops.combine(bt))
    torch.testing.assert_close(results["native"], results["reference"])


@pytest.mark.parametrize("device", DEVICES)
def test_engine_all_highres_equals_dense_fp32(device):
    """DESIGN.md section 3 exactness invariant with the native backend: SwiftNet-RN18 in
    blocks of 64 px (2-px blocks at stride 32) with an all-high-res grid equals the dense
    network, decoder included. TF32 is disabled so both sides compute in true fp32."""
    err, scale = cases.engine_all_highres_error(device, torch.float32)
    assert err <= 1e-4 * scale, (err, scale)


@pytest.mark.skipif(not HAS_GPU, reason="no CUDA GPU")
def test_engine_all_highres_equals_dense_fp16_cuda():
    """The same invariant in fp16 channels_last (the GPU deployment setting).

    Documented tolerance: block execution changes the convolutions' batch shapes and hence
    cuDNN's algorithms and summation order, so fp16 rounding differs from the dense run.
    The requirement is that blocks are no less accurate than dense fp16 itself: measured
    against the fp32 dense output, the block result's error must be at most twice the dense
    fp16 error plus 1e-3 of the output range.
    """
    blocks_err, dense_err, scale = cases.engine_fp16_errors()
    assert blocks_err <= 2 * dense_err + 1e-3 * scale, (blocks_err, dense_err, scale)


@pytest.mark.parametrize("device", DEVICES)
def test_engine_mixed_grid_native_equals_reference(device):
    """A mixed grid through the whole network: native and reference backends agree."""
    from segblocks_core.models import swiftnet_rn18

    torch.manual_seed(1)
    net = swiftnet_rn18().eval().to(device)
    x = torch.randn(1, 3, 192, 256, device=device)
    sb = segblocks_core.SegBlocks(net, block_size=64)
    grid = torch.rand(sb.grid_shape(x.shape), device=device) > 0.5
    with torch.no_grad(), cases.no_tf32():
        with use_backend("native"):
            got = sb(x, grid)
        with use_backend("reference"):
            want = sb(x, grid)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())


# ----------------------------------------------------------------------------------------
# normalize_frames_: uint8 frames -> the network input
# ----------------------------------------------------------------------------------------


def _frames(n=2, h=9, w=31, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, h, w, 3), dtype=torch.uint8, generator=g)
    images[0].view(-1, 3)[:256] = torch.arange(256, dtype=torch.uint8)[:, None]  # every value, every channel
    return images.to(device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channels", [3, 4, 6])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=["f32", "f16", "bf16"])
def test_normalize_frames_matches_the_reference(device, dtype, channels):
    """Bitwise the reference (x * scale + shift as one fma rounded to float32, then to the
    dtype; zeros past the third channel), channels_last, into a given ``out`` too; within one
    float32 rounding of PyTorch's addcmul (what the engine used before)."""
    from segblocks_core.engine import _norm_constants

    images = _frames(device=device)
    scale, shift = _norm_constants(torch.device(device))
    with use_backend("native"):
        got = ops.normalize_frames(images, scale, shift, channels, dtype)
    want = torch.full_like(got, float("nan"))
    _reference.normalize_frames_(want, images, scale, shift)
    assert got.shape == (2, channels, 9, 31) and got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert not got[:, 3:].any()
    addcmul = torch.addcmul(shift, images.float(), scale).to(dtype).permute(0, 3, 1, 2)
    torch.testing.assert_close(got[:, :3], addcmul, rtol=1.3e-6 if dtype == torch.float32 else None,
                               atol=1e-6 if dtype == torch.float32 else None)
    out = torch.full_like(got, float("nan"))
    with use_backend("native"):
        assert ops.normalize_frames(images, scale, shift, channels, dtype, out=out) is out
    torch.testing.assert_close(out, want, rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_normalize_frames_opcheck_and_errors(device):
    from torch.library import opcheck

    from segblocks_core.engine import _norm_constants

    images = _frames(device=device)
    scale, shift = _norm_constants(torch.device(device))
    out = torch.empty((2, 4, 9, 31), dtype=torch.float16, device=device).contiguous(memory_format=torch.channels_last)
    opcheck(torch.ops.segblocks.normalize_frames_.default, (out, images, scale, shift))
    op = torch.ops.segblocks.normalize_frames_
    bad = {
        "images-float": ((out, images.float(), scale, shift), r"images must be uint8"),
        "images-rgba": ((out, torch.zeros(2, 9, 31, 4, dtype=torch.uint8, device=device), scale, shift),
                        r"images must be uint8 RGB frames \[N, H, W, 3\]"),
        "images-strided": ((out, images.transpose(1, 2), scale, shift), r"images must be contiguous"),
        "scale-double": ((out, images, scale.double(), shift), r"scale must be a contiguous float32 tensor of 3"),
        "shift-4": ((out, images, scale, torch.zeros(4, device=device)), r"shift must be a contiguous float32"),
        "out-nchw": ((out.contiguous(), images, scale, shift), r"out must be channels_last contiguous"),
        "out-2-channels": ((out[:, :2], images, scale, shift), r"out must be \[N, C >= 3, H, W\]"),
        "out-shape": ((out[:1], images, scale, shift), r"out must be \[N, C >= 3, H, W\]"),
        "out-double": ((out.double(), images, scale, shift), r"out must be float32, float16 or bfloat16"),
    }
    for name, (args, pattern) in bad.items():
        with pytest.raises(RuntimeError, match=pattern):
            op(*args)
    with pytest.raises(ValueError, match=r"out must be a channels_last"):
        ops.normalize_frames(images, scale, shift, 4, torch.float16, out=out.contiguous())
    with pytest.raises(ValueError, match=r"images must be uint8 RGB frames"):
        ops.normalize_frames(images.float(), scale, shift)
    # float64 (no native kernel) takes the reference
    x = ops.normalize_frames(images, scale, shift, 4, torch.float64)
    assert x.dtype == torch.float64 and not x[:, 3].any()


# ----------------------------------------------------------------------------------------
# scale_shift_relu: an eval BatchNorm + ReLU in one pass
# ----------------------------------------------------------------------------------------


def _scale_shift_inputs(dtype, device, channels=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (4 * torch.randn(2, channels, 5, 7, generator=g)).to(dtype).to(device)
    x = x.contiguous(memory_format=torch.channels_last)
    x[0, 1, 2, 3] = float("nan")
    scale = torch.randn(channels, 1, 1, generator=g).to(dtype).to(device)
    shift = torch.randn(channels, 1, 1, generator=g).to(dtype).to(device)
    return x, scale, shift


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channels", [8, 32])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=["f32", "f16", "bf16"])
def test_scale_shift_relu_matches_addcmul_relu(device, dtype, channels):
    """One pass, bitwise PyTorch's addcmul + relu_ (one fma in float32, rounded once; NaN
    stays NaN), channels_last out; BatchNormReLU runs it and still equals BatchNorm + ReLU."""
    x, scale, shift = _scale_shift_inputs(dtype, device, channels)
    got = ops.scale_shift_relu(x, scale, shift)
    want = torch.addcmul(shift, x, scale).relu_()
    assert got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)
    assert torch.isnan(got[0, 1, 2, 3]) and (got.nan_to_num() >= 0).all()
    bn = torch.nn.BatchNorm2d(channels).eval()
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(-2, 2)
        bn.bias.uniform_(-1, 1)
    module = segblocks_core.fused.BatchNormReLU(bn).to(device=device, dtype=dtype)
    y = x.nan_to_num()
    torch.testing.assert_close(module(y), torch.addcmul(module.shift, y, module.scale).relu_(), rtol=0, atol=0)
    ref = torch.relu(bn.to(device)(y.float())).to(dtype)
    torch.testing.assert_close(module(y), ref, rtol=2e-2 if dtype != torch.float32 else 1e-5,
                               atol=2e-2 if dtype != torch.float32 else 1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_scale_shift_relu_falls_back_and_checks(device):
    """Maps the kernel does not take (NCHW, channels not in 16-byte packs, float64, autograd)
    get PyTorch's ops with the same values; the op itself refuses them with clear errors."""
    from torch.library import opcheck

    x, scale, shift = _scale_shift_inputs(torch.float16, device)
    opcheck(torch.ops.segblocks.scale_shift_relu.default, (x.nan_to_num(), scale.reshape(-1), shift.reshape(-1)))
    for y, s, b in ((x.contiguous(), scale, shift), (x[:, :12].contiguous(memory_format=torch.channels_last),
                                                     scale[:12], shift[:12]),
                    (x.double(), scale.double(), shift.double())):
        torch.testing.assert_close(ops.scale_shift_relu(y, s, b), torch.addcmul(b, y, s).relu_(), rtol=0, atol=0,
                                   equal_nan=True)
    xg = x.float().nan_to_num().requires_grad_()
    out = ops.scale_shift_relu(xg, scale.float(), shift.float())
    out.sum().backward()
    assert xg.grad is not None
    op = torch.ops.segblocks.scale_shift_relu
    s, b = scale.reshape(-1), shift.reshape(-1)
    bad = {
        "nchw": ((x.contiguous(), s, b), r"x must be channels_last contiguous"),
        "channels-12": ((x[:, :12].contiguous(memory_format=torch.channels_last), s[:12], b[:12]),
                        r"channels a multiple of 8"),
        "double": ((x.double(), s.double(), b.double()), r"x must be float32, float16 or bfloat16"),
        "scale-count": ((x, s[:16], b), r"scale must be 32 contiguous, 16-byte aligned values"),
        "shift-dtype": ((x, s, b.float()), r"shift must be 32 contiguous"),
    }
    for name, (args, pattern) in bad.items():
        with pytest.raises(RuntimeError, match=pattern):
            op(*args)
