"""The CUDA kernels' per-element code, run on the CPU, against the native CPU ops.

GPU time is scarce and CI has no GPU, but it has nvcc: ``test/cuda_kernels_host.cu`` wraps
the ``__host__ __device__`` element functions of ``csrc/ops/cuda/*.cuh`` (the exact index
arithmetic of every kernel: both layouts, the 32-bit fast-division and the 64-bit paths,
half/bfloat16 conversions) in host loops, built here into a shared library and called
through ctypes. The oracle is the native CPU op, itself tested against the pure-PyTorch
reference in ``test_native_ops.py``. Launch configuration and the grid-stride loop are
left to the CUDA-parametrised tests on a GPU host.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

import native_op_cases as cases
import segblocks_core  # noqa: F401  (registers torch.ops.segblocks.*)
from segblocks_core.ops import _reference, has_native

ROOT = Path(__file__).resolve().parents[1]
NVCC = os.environ.get("NVCC", "nvcc")
DTYPE_CODES = {torch.float32: 0, torch.float64: 1, torch.float16: 2, torch.bfloat16: 3}
# the flags torch's extension build gives nvcc (half/bfloat16 only through intrinsics)
TORCH_NVCC_DEFINES = ["-D__CUDA_NO_HALF_OPERATORS__", "-D__CUDA_NO_HALF_CONVERSIONS__",
                      "-D__CUDA_NO_BFLOAT16_CONVERSIONS__", "-D__CUDA_NO_HALF2_OPERATORS__"]

pytestmark = [
    pytest.mark.skipif(shutil.which(NVCC) is None, reason=f"{NVCC} not found: cannot build the host harness"),
    pytest.mark.skipif(not has_native("cpu"), reason="native CPU ops (the oracle) are not built"),
]


@pytest.fixture(scope="module")
def lib(tmp_path_factory) -> ctypes.CDLL:
    out = tmp_path_factory.mktemp("cuda_host") / "libsegblocks_cuda_host.so"
    cmd = [NVCC, "-std=c++17", "-O1", f"-I{ROOT / 'csrc'}", *TORCH_NVCC_DEFINES,
           "-gencode", "arch=compute_90,code=sm_90", "-shared", "-Xcompiler", "-fPIC",
           str(ROOT / "test" / "cuda_kernels_host.cu"), "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, f"nvcc failed:\n{' '.join(cmd)}\n{proc.stderr}"
    return ctypes.CDLL(str(out))


def _ptr(t: torch.Tensor):
    return ctypes.c_void_p(t.data_ptr())


def _i64(values):
    return (ctypes.c_int64 * len(values))(*[int(v) for v in values])


def _grid(lay, hr_side: int, channels: int):
    n, gh, gw = lay.grid_shape
    return _i64([n, gh, gw, hr_side, channels, lay.num_highres, lay.num_lowres])


def _empty(shape, like: torch.Tensor, channels_last: bool) -> torch.Tensor:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    # NaN-filled, so an element the kernel forgets to write cannot pass
    return torch.full(shape, float("nan"), dtype=like.dtype).contiguous(memory_format=fmt)


def _is_channels_last(*tensors) -> bool:  # the rule of output_memory_format()
    return any(t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)
               for t in tensors)


def _call(fn, *args) -> None:
    assert fn(*args) == 0, "unsupported dtype code"


def host_split(lib, x, lay, b, index32, lowres_scale=0.25):
    cl = _is_channels_last(x)
    c = x.shape[1]
    hr = _empty((lay.num_highres, c, b, b), x, cl)
    lr = _empty((lay.num_lowres, c, b // 2, b // 2), x, cl)
    _call(lib.segblocks_host_dense_to_blocks, DTYPE_CODES[x.dtype], _ptr(x), _i64(x.stride()), _ptr(hr),
          _ptr(lr), _ptr(lay.hr_pos), _ptr(lay.lr_pos), _grid(lay, b, c), ctypes.c_double(lowres_scale),
          int(cl), int(index32))
    return hr, lr


def host_split_units(lib, x, lay, b, index32):
    cl = _is_channels_last(x)
    c = x.shape[1]
    units = _empty((4 * lay.num_highres + lay.num_lowres, c, b // 2, b // 2), x, cl)
    _call(lib.segblocks_host_split_units, DTYPE_CODES[x.dtype], _ptr(x), _i64(x.stride()), _ptr(units),
          _ptr(lay.hr_pos), _ptr(lay.lr_pos), _grid(lay, b, c), int(cl), int(index32))
    return units


def host_combine(lib, hr, lr, lay, index32, lowres_scale=1.0, units=False):
    """The CUDA blocks_to_dense element code; ``units``: ``hr`` is the high-res blocks' units."""
    cl = _is_channels_last(hr, lr)
    n, gh, gw = lay.grid_shape
    b, c = 2 * lr.shape[-1], hr.shape[1]
    out = _empty((n, c, gh * b, gw * b), hr, cl)
    _call(lib.segblocks_host_blocks_to_dense, DTYPE_CODES[hr.dtype], _ptr(hr), _i64(hr.stride()), _ptr(lr),
          _i64(lr.stride()), _ptr(out), _ptr(lay.hr_pos), _ptr(lay.lr_pos), _grid(lay, b, c),
          ctypes.c_double(lowres_scale), int(cl), int(index32), ctypes.c_int64(b // 2 if units else 0))
    return out


def host_block_pad(lib, hr, lr, lay, p, mode, value, index32):
    cl = _is_channels_last(hr, lr)
    b, c = hr.shape[-1], hr.shape[1]
    hr_out = _empty((lay.num_highres, c, b + 2 * p, b + 2 * p), hr, cl)
    lr_out = _empty((lay.num_lowres, c, b // 2 + 2 * p, b // 2 + 2 * p), hr, cl)
    bm = lay.block_map.contiguous()
    _call(lib.segblocks_host_block_pad, DTYPE_CODES[hr.dtype], _ptr(hr), _i64(hr.stride()), _ptr(lr),
          _i64(lr.stride()), _ptr(hr_out), _ptr(lr_out), _ptr(lay.hr_pos), _ptr(lay.lr_pos), _ptr(bm),
          _grid(lay, b, c), ctypes.c_int64(p), int(mode == "replicate"), ctypes.c_double(value), int(cl),
          int(index32), ctypes.c_int64(0), ctypes.c_int64(0), None, None)
    return hr_out, lr_out


def host_block_pad_units(lib, hr, lr, lay, p, mode, value, index32, quartered, pre=None):
    """The CUDA BlockPad element code with units out (and units in if ``quartered``;
    ``pre=(scale, shift)``: the BatchNorm + ReLU prologue)."""
    cl = _is_channels_last(hr, lr)
    u, c = lr.shape[-1], hr.shape[1]
    nh = 4 * lay.num_highres
    out = _empty((nh + lay.num_lowres, c, u + 2 * p, u + 2 * p), hr, cl)
    bm = lay.block_map.contiguous()
    _call(lib.segblocks_host_block_pad, DTYPE_CODES[hr.dtype], _ptr(hr), _i64(hr.stride()), _ptr(lr),
          _i64(lr.stride()), _ptr(out[:nh]), _ptr(out[nh:]), _ptr(lay.hr_pos), _ptr(lay.lr_pos), _ptr(bm),
          _grid(lay, 2 * u, c), ctypes.c_int64(p), int(mode == "replicate"), ctypes.c_double(value), int(cl),
          int(index32), ctypes.c_int64(u if quartered else 0), ctypes.c_int64(u),
          None if pre is None else _ptr(pre[0]), None if pre is None else _ptr(pre[1]))
    return out


def host_block_pad_backward(lib, ghr, glr, lay, p, mode, index32):
    cl = _is_channels_last(ghr, glr)
    b, c = ghr.shape[-1] - 2 * p, ghr.shape[1]
    gh = _empty((lay.num_highres, c, b, b), ghr, cl)
    gl = _empty((lay.num_lowres, c, b // 2, b // 2), ghr, cl)
    bm = lay.block_map.contiguous()
    _call(lib.segblocks_host_block_pad_backward, DTYPE_CODES[ghr.dtype], _ptr(ghr), _i64(ghr.stride()),
          _ptr(glr), _i64(glr.stride()), _ptr(gh), _ptr(gl), _ptr(lay.hr_pos), _ptr(lay.lr_pos), _ptr(bm),
          _grid(lay, b, c), ctypes.c_int64(p), int(mode == "replicate"), int(cl), int(index32))
    return gh, gl


COMMON = pytest.mark.parametrize("index32", [True, False], ids=["index32", "index64"])
DTYPES = pytest.mark.parametrize("dtype", list(cases.DTYPES.values()), ids=list(cases.DTYPES))
LAYOUTS = pytest.mark.parametrize("layout", cases.LAYOUTS)
BLOCK_PAD_LAYOUTS = pytest.mark.parametrize("layout", cases.BLOCK_PAD_LAYOUTS)
GEOMETRIES = pytest.mark.parametrize("geometry", cases.GEOMETRIES, ids=[g.name for g in cases.GEOMETRIES])
WINDOW_GEOMETRIES = pytest.mark.parametrize("geometry", cases.WINDOW_GEOMETRIES,
                                            ids=[g.name for g in cases.WINDOW_GEOMETRIES])


@COMMON
@DTYPES
@BLOCK_PAD_LAYOUTS
@GEOMETRIES
def test_split_and_backward(lib, geometry, layout, dtype, index32):
    lay, x = cases.dense_input(geometry, dtype, "cpu", layout)
    b = geometry.hr_side
    got = host_split(lib, x, lay, b, index32)
    torch.testing.assert_close(got, torch.ops.segblocks.split(x, lay.hr_pos, lay.lr_pos, b), rtol=0, atol=0)
    # split_backward = blocks_to_dense with the low-res gradient / 4
    hr, lr = (t.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else t for t in got)
    want = torch.ops.segblocks.split_backward(hr, lr, lay.hr_pos, lay.lr_pos, *lay.grid_shape)
    torch.testing.assert_close(host_combine(lib, hr, lr, lay, index32, lowres_scale=0.25), want, rtol=0, atol=0)


@COMMON
@DTYPES
@BLOCK_PAD_LAYOUTS
@GEOMETRIES
def test_combine_and_backward(lib, geometry, layout, dtype, index32):
    lay, hr, lr = cases.block_inputs(geometry, dtype, "cpu", layout)
    args = (lay.hr_pos, lay.lr_pos, *lay.grid_shape)
    dense = host_combine(lib, hr, lr, lay, index32)
    torch.testing.assert_close(dense, torch.ops.segblocks.combine(hr, lr, *args), rtol=0, atol=0)
    # combine_backward = dense_to_blocks summing each 2x2 group
    want = torch.ops.segblocks.combine_backward(dense, lay.hr_pos, lay.lr_pos, geometry.hr_side)
    torch.testing.assert_close(host_split(lib, dense, lay, geometry.hr_side, index32, lowres_scale=1.0), want,
                               rtol=0, atol=0)


@COMMON
@DTYPES
@BLOCK_PAD_LAYOUTS
@GEOMETRIES
def test_split_units_and_combine_units(lib, geometry, layout, dtype, index32):
    """split_units / combine_units (units written and read in place) against the reference's
    split + quarter + cat and unquarter + combine: copies and split's 2x2 means, bitwise."""
    lay, x = cases.dense_input(geometry, dtype, "cpu", layout)
    b = geometry.hr_side
    units = host_split_units(lib, x, lay, b, index32)
    torch.testing.assert_close(units, _reference.split_units(x, lay.hr_pos, lay.lr_pos, b), rtol=0, atol=0)
    torch.testing.assert_close(units, torch.ops.segblocks.split_units(x, lay.hr_pos, lay.lr_pos, b), rtol=0, atol=0)
    _, hr, lr = cases.unit_inputs(geometry, dtype, "cpu", layout)
    want = _reference.combine_units(hr, lr, lay.hr_pos, lay.lr_pos, *lay.grid_shape)
    torch.testing.assert_close(host_combine(lib, hr, lr, lay, index32, units=True), want, rtol=0, atol=0)


@COMMON
@DTYPES
@BLOCK_PAD_LAYOUTS
@GEOMETRIES
@pytest.mark.parametrize("pad", cases.PADS, ids=[f"p{p}-{m}-{v}" for p, m, v in cases.PADS])
def test_block_pad_and_backward(lib, geometry, layout, dtype, index32, pad):
    p, mode, value = pad
    lay, hr, lr = cases.block_inputs(geometry, dtype, "cpu", layout)
    args = (lay.hr_pos, lay.lr_pos, lay.block_map)
    got = host_block_pad(lib, hr, lr, lay, p, mode, value, index32)
    torch.testing.assert_close(got, torch.ops.segblocks.block_pad(hr, lr, *args, p, mode, value), rtol=0, atol=0)
    hp, lp = geometry.hr_side + 2 * p, geometry.hr_side // 2 + 2 * p
    c = cases.channels_of(layout)
    ghr = cases.make_tensor((lay.num_highres, c, hp, hp), dtype, "cpu", layout, 21)
    glr = cases.make_tensor((lay.num_lowres, c, lp, lp), dtype, "cpu", layout, 22)
    want = torch.ops.segblocks.block_pad_backward(ghr, glr, *args, p, mode)
    # same element order and float accumulation on both sides: bitwise equal
    torch.testing.assert_close(host_block_pad_backward(lib, ghr, glr, lay, p, mode, index32), want,
                               rtol=0, atol=0)


@COMMON
@DTYPES
@BLOCK_PAD_LAYOUTS
@WINDOW_GEOMETRIES
@pytest.mark.parametrize("quartered", [False, True], ids=["blocks_in", "units_in"])
def test_max_pool_units_and_dense(lib, geometry, layout, dtype, index32, quartered):
    """The CUDA element code of max pooling without indices: bitwise the native CPU ops."""
    inputs = cases.unit_inputs if quartered else cases.block_inputs
    lay, hr, lr = inputs(geometry, dtype, "cpu", layout)
    _, x = cases.dense_input(geometry, dtype, "cpu", layout)
    cl = _is_channels_last(hr, lr)
    u, c = lr.shape[-1], hr.shape[1]
    bm = lay.block_map.contiguous()
    for k, s, p in cases.POOLS:
        if u + 2 * p >= k:
            uo = (u + 2 * p - k) // s + 1
            got = _empty((4 * lay.num_highres + lay.num_lowres, c, uo, uo), hr, cl)
            _call(lib.segblocks_host_max_pool_units, DTYPE_CODES[dtype], _ptr(hr), _i64(hr.stride()), _ptr(lr),
                  _i64(lr.stride()), _ptr(got), _i64(got.stride()), _ptr(lay.hr_pos), _ptr(lay.lr_pos), _ptr(bm),
                  _grid(lay, 2 * u, c), ctypes.c_int64(k), ctypes.c_int64(s), ctypes.c_int64(p), int(quartered),
                  int(cl), int(index32))
            want = torch.ops.segblocks.max_pool_units(hr, lr, lay.hr_pos, lay.lr_pos, lay.block_map, k, s, p,
                                                      quartered)
            torch.testing.assert_close(got, want, rtol=0, atol=0)
            # into the interiors of padded tiles (the CUDA launcher's out_padding): the same
            # values there, the frames untouched
            q = 1
            tiles = torch.full((got.shape[0], c, uo + 2 * q, uo + 2 * q), 7.0, dtype=dtype)
            if cl:
                tiles = tiles.contiguous(memory_format=torch.channels_last)
            interior = tiles[:, :, q:q + uo, q:q + uo]
            _call(lib.segblocks_host_max_pool_units, DTYPE_CODES[dtype], _ptr(hr), _i64(hr.stride()), _ptr(lr),
                  _i64(lr.stride()), _ptr(interior), _i64(interior.stride()), _ptr(lay.hr_pos), _ptr(lay.lr_pos),
                  _ptr(bm), _grid(lay, 2 * u, c), ctypes.c_int64(k), ctypes.c_int64(s), ctypes.c_int64(p),
                  int(quartered), int(cl), int(index32))
            torch.testing.assert_close(interior, want, rtol=0, atol=0)
            interior.fill_(7.0)
            assert (tiles == 7.0).all()
        xcl = _is_channels_last(x)
        n, cx, h, w = x.shape
        dense = _empty((n, cx, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1), x, xcl)
        _call(lib.segblocks_host_max_pool_dense, DTYPE_CODES[dtype], _ptr(x), _i64(x.stride()), _ptr(dense),
              ctypes.c_int64(n), ctypes.c_int64(cx), ctypes.c_int64(h), ctypes.c_int64(w), ctypes.c_int64(k),
              ctypes.c_int64(s), ctypes.c_int64(p), int(xcl), int(index32))
        torch.testing.assert_close(dense, torch.ops.segblocks.max_pool_dense(x, k, s, p), rtol=0, atol=0)


@pytest.mark.parametrize("channels", [8, 32])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=["f32", "f16", "bf16"])
def test_scale_shift_relu(lib, dtype, channels):
    """The CUDA element code of BatchNorm + ReLU in one pass: bitwise the native CPU op
    (NaN kept, negatives to 0)."""
    g = torch.Generator().manual_seed(channels)
    x = (4 * torch.randn(3, channels, 5, 7, generator=g)).to(dtype).contiguous(memory_format=torch.channels_last)
    x[0, 1, 2, 3] = float("nan")
    scale, shift = (torch.randn(channels, generator=g).to(dtype) for _ in range(2))
    got = torch.full_like(x, float("nan"))
    _call(lib.segblocks_host_scale_shift_relu, DTYPE_CODES[dtype], _ptr(x), _ptr(got), _ptr(scale), _ptr(shift),
          ctypes.c_int64(x.numel()), ctypes.c_int64(channels))
    torch.testing.assert_close(got, torch.ops.segblocks.scale_shift_relu(x, scale, shift), rtol=0, atol=0,
                               equal_nan=True)
    assert torch.isnan(got[0, 1, 2, 3]) and (got.nan_to_num() >= 0).all()


@pytest.mark.parametrize("channels", [3, 4, 6])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=["f32", "f16", "bf16"])
def test_normalize_frames(lib, dtype, channels):
    """The CUDA element code of the input normalisation (the 8-byte pack path for 4 half or
    bfloat16 channels, the per-channel path otherwise): bitwise the native CPU op, every
    pixel value in every channel."""
    from segblocks_core.engine import _norm_constants

    g = torch.Generator().manual_seed(channels)
    images = torch.randint(0, 256, (2, 9, 31, 3), dtype=torch.uint8, generator=g)
    images[0].view(-1, 3)[:256] = torch.arange(256, dtype=torch.uint8)[:, None]  # every value
    scale, shift = _norm_constants(torch.device("cpu"))
    got = torch.full((2, channels, 9, 31), float("nan"), dtype=dtype).contiguous(memory_format=torch.channels_last)
    _call(lib.segblocks_host_normalize_frames, DTYPE_CODES[dtype], _ptr(images), _ptr(scale), _ptr(shift), _ptr(got),
          ctypes.c_int64(images.numel() // 3), ctypes.c_int64(channels))
    want = torch.empty_like(got)
    torch.ops.segblocks.normalize_frames_(want, images, scale, shift)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


@COMMON
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=["f32", "f16", "bf16"])
@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize("padding", [1, 3])
@WINDOW_GEOMETRIES
def test_split_padded_frames(lib, geometry, padding, channels, dtype, index32):
    """The stem's padded blocks straight from uint8 frames (normalised as they are read; the
    8-byte pack path for 4 half or bfloat16 channels; with 4 channels and blocks of a
    multiple of 4 px, two pixels per thread): bitwise normalize_frames + split_padded of the
    reference."""
    from segblocks_core.engine import _norm_constants

    lay = geometry.layout("cpu")
    b = geometry.hr_side
    g = torch.Generator().manual_seed(channels + padding)
    images = torch.randint(0, 256, (geometry.n, geometry.grid_h * b, geometry.grid_w * b, 3), dtype=torch.uint8,
                           generator=g)
    scale, shift = _norm_constants(torch.device("cpu"))
    hp, lp = b + 2 * padding, b // 2 + 2 * padding
    hr = _empty((lay.num_highres, channels, hp, hp), torch.empty(0, dtype=dtype), True)
    lr = _empty((lay.num_lowres, channels, lp, lp), torch.empty(0, dtype=dtype), True)
    bm = lay.block_map.contiguous()
    _call(lib.segblocks_host_split_padded_frames, DTYPE_CODES[dtype], _ptr(images), _ptr(scale), _ptr(shift),
          ctypes.c_int64(images.shape[1]), ctypes.c_int64(images.shape[2]), _ptr(hr), _ptr(lr), _ptr(lay.hr_pos),
          _ptr(lay.lr_pos), _ptr(bm), _grid(lay, b, channels), ctypes.c_int64(padding), int(index32))
    args = (images, scale, shift, lay.hr_pos, lay.lr_pos, lay.block_map, b, padding, channels, dtype)
    want = _reference.split_padded_frames(*args)
    torch.testing.assert_close((hr, lr), want, rtol=0, atol=0)
    torch.testing.assert_close(torch.ops.segblocks.split_padded_frames(*args), want, rtol=0, atol=0)


@COMMON
@DTYPES
@LAYOUTS
@GEOMETRIES
def test_cell_complexity(lib, geometry, layout, dtype, index32):
    """The CUDA element code of the policy's per-cell texture: bitwise the native CPU op."""
    x, factor = cases.complexity_input(geometry, dtype, "cpu", layout)
    n, c, h, w = x.shape
    for channels in (1, c):
        got = torch.full((n, h // factor, w // factor), float("nan"))
        _call(lib.segblocks_host_cell_complexity, DTYPE_CODES[dtype], _ptr(x), _i64(x.stride()), _ptr(got),
              ctypes.c_int64(n), ctypes.c_int64(h), ctypes.c_int64(w), ctypes.c_int64(channels),
              ctypes.c_int64(factor), ctypes.c_float(1e-4), int(index32))
        torch.testing.assert_close(got, torch.ops.segblocks.cell_complexity(x, channels, factor, 1e-4), rtol=0,
                                   atol=0)


@COMMON
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=["f32", "f16", "bf16"])
@pytest.mark.parametrize("factor", [1, 4])
def test_cell_complexity_frames(lib, factor, dtype, index32):
    """The policy's per-cell texture straight from uint8 frames (each value normalised and
    rounded to the dtype as it is read): bitwise the native CPU ops' cell_complexity of
    normalize_frames (the same element code's sums), close to the reference's (PyTorch's
    reductions sum in another order)."""
    from segblocks_core.engine import _norm_constants

    g = torch.Generator().manual_seed(factor)
    images = torch.randint(0, 256, (2, 12, 20, 3), dtype=torch.uint8, generator=g)
    images[0, :4, :4] = 7  # a flat cell: every difference is rounding, below the floor
    scale, shift = _norm_constants(torch.device("cpu"))
    got = torch.full((2, 12 // factor, 20 // factor), float("nan"))
    _call(lib.segblocks_host_cell_complexity_frames, DTYPE_CODES[dtype], _ptr(images), _ptr(scale), _ptr(shift),
          _ptr(got), ctypes.c_int64(2), ctypes.c_int64(12), ctypes.c_int64(20), ctypes.c_int64(factor),
          ctypes.c_float(1e-4), int(index32))
    x = torch.empty((2, 4, 12, 20), dtype=dtype, memory_format=torch.channels_last)
    torch.ops.segblocks.normalize_frames_(x, images, scale, shift)
    want = torch.ops.segblocks.cell_complexity(x, 3, factor, 1e-4)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    native = torch.ops.segblocks.cell_complexity_frames(images, scale, shift, dtype, factor, 1e-4)
    torch.testing.assert_close(native, want, rtol=0, atol=0)
    torch.testing.assert_close(got, _reference.cell_complexity_frames(images, scale, shift, dtype, factor, 1e-4))
    assert factor == 1 or got[0, 0, 0] == 0  # the flat cell


@COMMON
@DTYPES
@BLOCK_PAD_LAYOUTS
@GEOMETRIES
@pytest.mark.parametrize("padding", cases.SPLIT_PADDINGS)
def test_split_padded(lib, geometry, layout, dtype, index32, padding):
    """The CUDA element code of split_padded: bitwise the native CPU op (split, then BlockPad)."""
    lay, x = cases.dense_input(geometry, dtype, "cpu", layout)
    cl = _is_channels_last(x)
    b, c = geometry.hr_side, x.shape[1]
    hr = _empty((lay.num_highres, c, b + 2 * padding, b + 2 * padding), x, cl)
    lr = _empty((lay.num_lowres, c, b // 2 + 2 * padding, b // 2 + 2 * padding), x, cl)
    _call(lib.segblocks_host_split_padded, DTYPE_CODES[dtype], _ptr(x), _i64(x.stride()), _ptr(hr), _ptr(lr),
          _ptr(lay.hr_pos), _ptr(lay.lr_pos), _ptr(lay.block_map.contiguous()), _grid(lay, b, c),
          ctypes.c_int64(padding), int(cl), int(index32))
    want = torch.ops.segblocks.split_padded(x, lay.hr_pos, lay.lr_pos, lay.block_map, b, padding)
    torch.testing.assert_close((hr, lr), want, rtol=0, atol=0)


@COMMON
@DTYPES
@BLOCK_PAD_LAYOUTS
@WINDOW_GEOMETRIES
@pytest.mark.parametrize("quartered", [False, True], ids=["blocks_in", "units_in"])
@pytest.mark.parametrize("patch", [1, 2, 4], ids=["one", "pair", "quad"])  # the outputs per CUDA thread
def test_upsample2x_units_and_dense(lib, geometry, layout, dtype, index32, quartered, patch):
    """The CUDA element code of bilinear x2 (+ skip): bitwise the native CPU ops."""
    inputs = cases.unit_inputs if quartered else cases.block_inputs
    lay, hr, lr = inputs(geometry, dtype, "cpu", layout)
    cl = _is_channels_last(hr, lr)
    h, c = 2 * lr.shape[-1], hr.shape[1]
    shape = (4 * lay.num_highres + lay.num_lowres, c, h, h)
    skip = cases.make_tensor(shape, dtype, "cpu", layout, 31)
    for sk in (None, skip):
        got = _empty(shape, hr, cl)
        host_upsample2x_units(lib, hr, lr, lay, sk, got, None, quartered, index32, patch)
        want = torch.ops.segblocks.upsample2x_units(hr, lr, lay.hr_pos, lay.lr_pos, lay.block_map, quartered, sk)
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    _, x = cases.dense_input(geometry, dtype, "cpu", layout)
    xcl = _is_channels_last(x)
    n, cx, xh, xw = x.shape
    dense_skip = cases.make_tensor((n, cx, 2 * xh, 2 * xw), dtype, "cpu", layout, 32)
    for sk in (None, dense_skip):
        dense = _empty((n, cx, 2 * xh, 2 * xw), x, xcl)
        _call(lib.segblocks_host_upsample2x_dense, DTYPE_CODES[dtype], _ptr(x), _i64(x.stride()),
              None if sk is None else _ptr(sk), _i64(dense_skip.stride()), _ptr(dense), ctypes.c_int64(n),
              ctypes.c_int64(cx), ctypes.c_int64(xh), ctypes.c_int64(xw), int(xcl), int(index32))
        torch.testing.assert_close(dense, torch.ops.segblocks.upsample2x_dense(x, sk), rtol=0, atol=0)


def host_upsample2x_units(lib, hr, lr, lay, skip, out, post, quartered, index32, patch):
    """The units upsampling into ``out`` (any strides: a tensor, or the interiors of padded
    tiles), with the epilogue ``post`` = (scale, shift) or None, by the CUDA element of
    ``patch`` (UpsamplePatch: 1, 2 or 4) outputs per thread."""
    cl = _is_channels_last(hr, lr)
    h, c = 2 * lr.shape[-1], hr.shape[1]
    scale, shift = (None, None) if post is None else (_ptr(post[0]), _ptr(post[1]))
    _call(lib.segblocks_host_upsample2x_units, DTYPE_CODES[hr.dtype], _ptr(hr), _i64(hr.stride()), _ptr(lr),
          _i64(lr.stride()), None if skip is None else _ptr(skip), _i64(out.stride() if skip is None else skip.stride()),
          _ptr(out), _i64(out.stride()), scale, shift, _ptr(lay.hr_pos), _ptr(lay.lr_pos),
          _ptr(lay.block_map.contiguous()), _grid(lay, h, c), int(quartered), int(cl), int(index32),
          ctypes.c_int(patch))


@COMMON
@DTYPES
@BLOCK_PAD_LAYOUTS
@WINDOW_GEOMETRIES
@pytest.mark.parametrize("padding", cases.UPSAMPLE_PADDINGS)
@pytest.mark.parametrize("patch", [1, 2, 4], ids=["one", "pair", "quad"])  # the outputs per CUDA thread
def test_upsample2x_units_padded(lib, geometry, layout, dtype, index32, padding, patch):
    """The CUDA path of upsample2x_units with a BatchNorm + ReLU epilogue and padded output:
    the element code writes the tiles' interiors (strided), block_pad_ring their frames;
    bitwise the native CPU op."""
    lay, hr, lr = cases.unit_inputs(geometry, dtype, "cpu", layout)
    cl = _is_channels_last(hr, lr)
    h, c = 2 * lr.shape[-1], hr.shape[1]
    tiles = 4 * lay.num_highres + lay.num_lowres
    skip = cases.make_tensor((tiles, c, h, h), dtype, "cpu", layout, 31)
    post = cases.prologue(c, dtype, "cpu")
    w = h + 2 * padding
    got = _empty((tiles, c, w, w), hr, cl)
    host_upsample2x_units(lib, hr, lr, lay, skip, got[:, :, padding:padding + h, padding:padding + h], post, True,
                          index32, patch)
    _call(lib.segblocks_host_block_pad_ring, DTYPE_CODES[dtype], _ptr(got), _ptr(lay.hr_pos), _ptr(lay.lr_pos),
          _ptr(lay.block_map.contiguous()), _grid(lay, 2 * h, c), ctypes.c_int64(padding), 0, ctypes.c_double(0.0),
          int(cl), int(index32))
    want = torch.ops.segblocks.upsample2x_units(hr, lr, lay.hr_pos, lay.lr_pos, lay.block_map, True, skip, *post,
                                                padding)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


@COMMON
@DTYPES
@BLOCK_PAD_LAYOUTS
@GEOMETRIES
@pytest.mark.parametrize("pad", cases.PADS, ids=[f"p{p}-{m}-{v}" for p, m, v in cases.PADS])
def test_block_pad_ring(lib, geometry, layout, dtype, index32, pad):
    """block_pad_ring on tiles whose frames hold garbage (NaN) and whose interiors are the
    units: bitwise block_pad_units of the units, in every mode and padding."""
    p, mode, value = pad
    lay, hr, lr = cases.unit_inputs(geometry, dtype, "cpu", layout)
    cl = _is_channels_last(hr, lr)
    u, c = lr.shape[-1], hr.shape[1]
    want = torch.ops.segblocks.block_pad_units(hr, lr, lay.hr_pos, lay.lr_pos, lay.block_map, p, mode, value, True)
    got = _empty(want.shape, hr, cl)
    got[:, :, p:p + u, p:p + u] = want[:, :, p:p + u, p:p + u]
    _call(lib.segblocks_host_block_pad_ring, DTYPE_CODES[dtype], _ptr(got), _ptr(lay.hr_pos), _ptr(lay.lr_pos),
          _ptr(lay.block_map.contiguous()), _grid(lay, 2 * u, c), ctypes.c_int64(p), int(mode == "replicate"),
          ctypes.c_double(value), int(cl), int(index32))
    torch.testing.assert_close(got, want, rtol=0, atol=0)


@COMMON
@DTYPES
@LAYOUTS
@GEOMETRIES
@pytest.mark.parametrize("factor", cases.HEAD_FACTORS)
def test_upsample_argmax_units(lib, geometry, layout, dtype, index32, factor):
    """The CUDA element code of the lookup-free head: bitwise the native CPU op's labels."""
    lay, hr, lr = cases.block_inputs(geometry, dtype, "cpu", layout)
    args = (lay.hr_pos, lay.lr_pos, lay.block_map)
    units = torch.ops.segblocks.block_pad_units(hr, lr, *args, 1, "replicate", 0.0, False)
    b = geometry.hr_side
    n, gh, gw = lay.grid_shape
    got = torch.full((n, gh * b * factor, gw * b * factor), 255, dtype=torch.uint8)
    _call(lib.segblocks_host_upsample_argmax_units, DTYPE_CODES[dtype], _ptr(units), _i64(units.stride()),
          _ptr(got), _ptr(lay.hr_pos), _ptr(lay.lr_pos), _grid(lay, b, hr.shape[1]), ctypes.c_int64(factor),
          int(index32))
    assert torch.equal(got, torch.ops.segblocks.upsample_argmax_units(units, *args, factor))


@COMMON
@DTYPES
@BLOCK_PAD_LAYOUTS
@GEOMETRIES
@pytest.mark.parametrize("variant", ["blocks_in", "units_in", "units_in_pre"])
@pytest.mark.parametrize("pad", cases.PADS, ids=[f"p{p}-{m}-{v}" for p, m, v in cases.PADS])
def test_block_pad_units(lib, geometry, layout, dtype, index32, variant, pad):
    p, mode, value = pad
    quartered = variant != "blocks_in"
    inputs = cases.unit_inputs if quartered else cases.block_inputs
    lay, hr, lr = inputs(geometry, dtype, "cpu", layout)
    pre = cases.prologue(hr.shape[1], dtype, "cpu") if variant.endswith("_pre") else None
    got = host_block_pad_units(lib, hr, lr, lay, p, mode, value, index32, quartered, pre)
    want = torch.ops.segblocks.block_pad_units(hr, lr, lay.hr_pos, lay.lr_pos, lay.block_map, p, mode,
                                               value, quartered, *(pre or (None, None)))
    if pre is None:
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    else:  # the prologue's multiply-add may be contracted into an FMA on one side
        torch.testing.assert_close(got, want)


@COMMON
@DTYPES
@LAYOUTS
@GEOMETRIES
@pytest.mark.parametrize("factor", cases.HEAD_FACTORS)
def test_upsample_argmax(lib, geometry, layout, dtype, index32, factor):
    """Same element code and conversions as the native CPU kernel: bitwise equal labels."""
    lay, hr, lr = cases.block_inputs(geometry, dtype, "cpu", layout)
    b = geometry.hr_side
    n, gh, gw = lay.grid_shape
    got = torch.full((n, gh * b * factor, gw * b * factor), 255, dtype=torch.uint8)
    bm = lay.block_map.contiguous()
    _call(lib.segblocks_host_upsample_argmax, DTYPE_CODES[dtype], _ptr(hr), _i64(hr.stride()), _ptr(lr),
          _i64(lr.stride()), _ptr(got), _ptr(bm), _grid(lay, b, hr.shape[1]), ctypes.c_int64(factor),
          int(index32))
    want = torch.ops.segblocks.upsample_argmax(hr, lr, lay.hr_pos, lay.lr_pos, lay.block_map, factor)
    assert torch.equal(got, want)


@COMMON
@DTYPES
@LAYOUTS
@pytest.mark.parametrize("factor", cases.HEAD_FACTORS)
def test_upsample_argmax_dense(lib, layout, dtype, index32, factor):
    _, x = cases.dense_input(cases.GEOMETRY_BY_NAME["mixed_batch2"], dtype, "cpu", layout)
    n, c, h, w = x.shape
    got = torch.full((n, h * factor, w * factor), 255, dtype=torch.uint8)
    _call(lib.segblocks_host_upsample_argmax_dense, DTYPE_CODES[dtype], _ptr(x), _i64(x.stride()), _ptr(got),
          ctypes.c_int64(n), ctypes.c_int64(c), ctypes.c_int64(h), ctypes.c_int64(w), ctypes.c_int64(factor),
          int(index32))
    assert torch.equal(got, torch.ops.segblocks.upsample_argmax_dense(x, factor))


@COMMON
@pytest.mark.parametrize("dtype", list(cases.CONV_UNITS_DTYPES.values()), ids=list(cases.CONV_UNITS_DTYPES))
@pytest.mark.parametrize("geometry", cases.CONV_UNITS_GEOMETRIES, ids=[g.name for g in cases.CONV_UNITS_GEOMETRIES])
@pytest.mark.parametrize("quartered", [False, True], ids=["blocks_in", "units_in"])
@pytest.mark.parametrize("epilogue", list(cases.CONV_UNITS_EPILOGUES))
@pytest.mark.parametrize("stride", [1, 2])
def test_conv3x3_units(lib, geometry, dtype, index32, quartered, epilogue, stride, splits=1, cin=64):
    """The CUDA kernel's per-thread code of conv3x3_units (tiling, the halo tile's sources
    and its gather through BlockPad's rules with the optional prologue, B load, epilogue),
    every thread block and thread in turn, with a float32 loop for the tensor-core product
    that reads A rows out of the halo tile at each tap's offset: against the reference
    (BlockPad + a float32 convolution), to one rounding of the dtype."""
    lay, hr, lr, weight, bias, residual = cases.conv_units_inputs(geometry, dtype, "cpu", quartered, epilogue,
                                                                  cin=cin, stride=stride)
    relu = cases.CONV_UNITS_EPILOGUES[epilogue][2]
    u, cin, cout = lr.shape[-1], hr.shape[1], weight.shape[0]
    pre = cases.conv_units_prologue(epilogue, cin, dtype, "cpu")
    uo = (u - 1) // stride + 1
    got = _empty((4 * lay.num_highres + lay.num_lowres, cout, uo, uo), hr, True)
    w = weight.contiguous(memory_format=torch.channels_last)
    _call(lib.segblocks_host_conv3x3_units, DTYPE_CODES[dtype], _ptr(hr), _i64(hr.stride()), _ptr(lr),
          _i64(lr.stride()), _ptr(lay.hr_pos), _ptr(lay.lr_pos), _ptr(lay.block_map.contiguous()),
          _grid(lay, 2 * u, cin), _ptr(w), None if bias is None else _ptr(bias),
          None if residual is None else _ptr(residual), _ptr(got), ctypes.c_int64(cout), int(relu), int(quartered),
          ctypes.c_int64(stride), *[None if p is None else _ptr(p) for p in pre], ctypes.c_int64(splits),
          int(index32))
    want = _reference.conv3x3_units(hr, lr, lay.hr_pos, lay.lr_pos, lay.block_map, weight, bias, residual, relu,
                                    quartered, stride, *pre)
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("dtype", list(cases.CONV_UNITS_DTYPES.values()), ids=list(cases.CONV_UNITS_DTYPES))
@pytest.mark.parametrize("geometry", [g for g in cases.CONV_UNITS_GEOMETRIES if g.name in ("mixed_batch2", "side36")],
                         ids=["mixed_batch2", "side36"])
@pytest.mark.parametrize("epilogue", ["bias_residual_relu", "prologue_bias"])
@pytest.mark.parametrize("splits", [2, 5])  # 80 channels, 5 chunks: 3 + 2, and 1 + 1 + 1 + 1 + 1
def test_conv3x3_units_split_k(lib, geometry, dtype, epilogue, splits):
    """Split-K in whole chunks: each thread block sums its share of the K steps into a
    float32 workspace and a second pass adds the splits in order, then finishes (bias,
    residual, ReLU)."""
    test_conv3x3_units(lib, geometry, dtype, True, True, epilogue, 1, splits, cin=80)
