"""CUDA parity of the native block ops, for the GPU host (H100).

Runs on CUDA every parity case of ``test/native_op_cases.py`` (the suite CI runs on the
CPU: op x dtype x layout x geometry x padding/mode/value, forward and backward against the
pure-PyTorch reference), plus opcheck, float64 gradcheck, torch.compile (inductor), CUDA
graph capture, backward bitwise determinism and the engine's all-high-res == dense
invariant (fp32, and fp16 with the documented tolerance). It needs no pytest; if pytest is
installed it also runs ``pytest test/test_native_ops.py -k cuda`` and records the summary.
Optionally (``--timing``) it times the kernels at a realistic feature-map size.

Writes ``<out>/parity-<gpu-slug>-<date>.json`` with the GPU name, torch and CUDA versions,
the number of cases and failures and the failed cases, copies it to
``benchmarks/results/`` and prints both paths. Exit status 1 if anything failed.

Build first, on the GPU host, from the repository root::

    FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=9.0 python3 setup.py build_ext --inplace
    python3 benchmarks/gpu_parity.py --out "$OUT" --timing
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "test"))

import torch  # noqa: E402

import native_op_cases as cases  # noqa: E402
import segblocks_core  # noqa: E402
from segblocks_core.ops import has_native, programmatic_launch, programmatic_prefetch, use_backend  # noqa: E402
from probe_json import launch_prefix  # noqa: E402


def gpu_slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


class Recorder:
    """Runs named checks, counting cases and keeping the failures."""

    def __init__(self) -> None:
        self.cases = 0
        self.failed: list[dict] = []
        self.details: dict[str, object] = {}

    def run(self, name: str, check: Callable[[], object]) -> object:
        self.cases += 1
        try:
            return check()
        except Exception as exc:  # noqa: BLE001 - every failure is recorded, none stops the run
            self.failed.append({"case": name, "error": f"{type(exc).__name__}: {str(exc)[:600]}",
                                "where": traceback.format_exc(limit=-2)[-800:]})
            return None


PATCH_ENV = "SEGBLOCKS_UPSAMPLE_UNITS_PATCH"  # upsample2x_units' outputs per CUDA thread (upsample2x_launch.cpp)
PATCHES = ("one", "pair", "quad")


def with_patch(patch: str, check: Callable[[], object]) -> Callable[[], object]:
    """``check`` run with upsample2x_units' CUDA kernel forced to ``patch`` outputs per thread."""
    def run():
        saved = os.environ.get(PATCH_ENV)
        os.environ[PATCH_ENV] = patch
        try:
            return check()
        finally:
            if saved is None:
                del os.environ[PATCH_ENV]
            else:
                os.environ[PATCH_ENV] = saved
    return run


def upsample2x_units_large(device: str, hr_side: int, padding: int, post: bool) -> None:
    """upsample2x_units at a decoder's size (128 channels, fp16, channels_last; units of
    hr_side / 2 px): enough work for the size rule to pick one output per thread (units of
    2 px) or quads (4 and 8 px); against the reference."""
    geometry = cases.Geometry("large", 2, 8, 16, hr_side, "mixed", seed=7)
    lay = geometry.layout(device)
    u, c, dt_ = hr_side // 2, 128, torch.float16
    hr = cases.make_tensor((4 * lay.num_highres, c, u, u), dt_, device, "channels_last", 1)
    lr = cases.make_tensor((lay.num_lowres, c, u, u), dt_, device, "channels_last", 2)
    skip = cases.make_tensor((hr.shape[0] + lr.shape[0], c, hr_side, hr_side), dt_, device, "channels_last", 3)
    scale, shift = cases.prologue(c, dt_, device) if post else (None, None)
    args = (lay.hr_pos, lay.lr_pos, lay.block_map, True, skip, scale, shift, padding)
    got = torch.ops.segblocks.upsample2x_units(hr, lr, *args)
    torch.testing.assert_close(got, cases._reference.upsample2x_units(hr, lr, *args))


def upsample_argmax_large(device: str, factor: int) -> None:
    """The fused head at a decoder's size (19 classes, fp16, channels_last; tiles of 16 px,
    the units and the dense map): many tiles and rows per factor, against the reference's
    upsampled logits."""
    geometry = cases.Geometry("large-head", 2, 4, 8, 32, "mixed", seed=8)
    lay = geometry.layout(device)
    b, c, dt_ = geometry.hr_side, 19, torch.float16
    hr = cases.make_tensor((lay.num_highres, c, b, b), dt_, device, "channels_last", 4)
    lr = cases.make_tensor((lay.num_lowres, c, b // 2, b // 2), dt_, device, "channels_last", 5)
    args = (lay.hr_pos, lay.lr_pos, lay.block_map)
    units = cases._reference.block_pad_units(hr, lr, *args, 1, "replicate").contiguous(
        memory_format=torch.channels_last)
    got = torch.ops.segblocks.upsample_argmax_units(units, *args, factor)
    cases.assert_labels_match(got, cases._reference.upsample_logits(hr, lr, *args, factor))
    x = cases.make_tensor((2, c, 4 * b, 8 * b), dt_, device, "channels_last", 6)
    got = torch.ops.segblocks.upsample_argmax_dense(x, factor)
    cases.assert_labels_match(got, cases._reference.upsample_logits_dense(x, factor))


def run_parity(rec: Recorder, device: str) -> None:
    start = time.perf_counter()
    n_before = rec.cases
    for case in cases.parity_cases():
        rec.run(f"parity/{case.id}", lambda case=case: case.run(device))
    if device == "cuda":  # conv3x3_units has a CUDA kernel only
        for name, check in cases.conv_units_cases(device):
            rec.run(f"parity/{name}", check)
        for factor in cases.HEAD_FACTORS:
            rec.run(f"parity/upsample_argmax-large-f{factor}", lambda f=factor: upsample_argmax_large(device, f))
        # every CUDA element of upsample2x_units, on every case, and at a decoder's size
        for patch in ("auto",) + PATCHES:
            for case in cases.parity_cases():
                if case.op.startswith("upsample2x_units") and patch != "auto":
                    rec.run(f"parity/patch-{patch}/{case.id}", with_patch(patch, lambda case=case: case.run(device)))
            for hr_side in (4, 8, 16):
                for padding, post in ((0, False), (1, True)):
                    rec.run(f"parity/patch-{patch}/upsample2x_units-large-side{hr_side}-p{padding}",
                            with_patch(patch, lambda h=hr_side, p=padding, q=post:
                                       upsample2x_units_large(device, h, p, q)))
    rec.details["parity_cases"] = rec.cases - n_before
    rec.details["parity_seconds"] = round(time.perf_counter() - start, 1)


def run_checks(rec: Recorder, device: str) -> None:
    cuda = device == "cuda"
    for op in cases.OPS + cases.HEAD_OPS:
        for sample in cases.OPCHECK_SAMPLES:
            rec.run(f"opcheck/{op}/{sample}", lambda op=op, s=sample: cases.opcheck_op(device, op, s))
        if op in cases.HEAD_OPS:
            continue
        modes = ("constant", "replicate") if op.startswith("block_pad") else ("constant",)
        for mode in modes:
            rec.run(f"gradcheck/{op}/{mode}", lambda op=op, m=mode: cases.gradcheck_op(device, op, m))
    backend = "inductor" if cuda else "aot_eager"
    rec.run(f"compile/{backend}", lambda: cases.compile_matches_eager(device, backend))
    if cuda:
        rec.run("cuda_graph/replay", cases.cuda_graph_replay_matches)

    def deterministic(dtype, size, hr_side, repeats=5):
        def check():
            assert cases.backward_is_bitwise_reproducible(device, dtype, repeats=repeats, size=size,
                                                          hr_side=hr_side), "backward grads differ"
        return check

    rec.run("determinism/f32-small", deterministic(torch.float32, (2, 16, 12, 16), 4))
    rec.run("determinism/f16-small", deterministic(torch.float16, (2, 16, 12, 16), 4))
    # stride-8 features of a 1024x512 frame: 128 channels, 16-px blocks
    rec.run("determinism/f32-large", deterministic(torch.float32, (2, 128, 4, 8), 16))
    rec.run("determinism/f16-large", deterministic(torch.float16, (2, 128, 4, 8), 16))

    def engine_fp32():
        err, scale = cases.engine_all_highres_error(device, torch.float32)
        rec.details["engine_fp32"] = {"max_abs_diff": err, "max_abs_dense": scale,
                                      "tolerance": "max|diff| <= 1e-4 * max|dense|"}
        assert err <= 1e-4 * scale, (err, scale)

    def engine_fp16():
        blocks_err, dense_err, scale = cases.engine_fp16_errors()
        rec.details["engine_fp16_channels_last"] = {
            "blocks_vs_fp32": blocks_err, "dense16_vs_fp32": dense_err, "max_abs_fp32": scale,
            "tolerance": "blocks_vs_fp32 <= 2 * dense16_vs_fp32 + 1e-3 * max_abs_fp32"}
        assert blocks_err <= 2 * dense_err + 1e-3 * scale, (blocks_err, dense_err, scale)

    rec.run("engine/all_highres_equals_dense/fp32", engine_fp32)
    if cuda:
        rec.run("engine/all_highres_equals_dense/fp16_channels_last", engine_fp16)


def run_pytest(out_dir: Path) -> dict:
    try:
        import pytest  # noqa: F401
    except ImportError:
        return {"ran": False, "reason": "pytest not installed on this host"}
    xml = out_dir / "pytest-cuda.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "test" / "test_native_ops.py"),
           "-k", "cuda", f"--junitxml={xml}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    summary = {"ran": True, "returncode": proc.returncode, "command": " ".join(cmd[1:]),
               "tail": proc.stdout[-1500:]}
    if xml.exists():
        import xml.etree.ElementTree as ET

        suite = ET.parse(xml).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        for key in ("tests", "failures", "errors", "skipped"):
            summary[key] = int(suite.get(key, 0))
    return summary


def _median_ms(fn: Callable[[], object], device: str, iters: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(iters):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return sorted(times)[len(times) // 2]


def time_kernels(device: str = "cuda", iters: int = 50) -> dict:
    """Median time of each op on stride-4 features of a 2048x1024 frame ([1, 64, 256, 512],
    128-px blocks = 32 px at stride 4, ~40% high-res), with a plain copy as the baseline.
    GB/s counts the bytes each op must read and write once."""
    from segblocks_core.layout import BlockLayout

    results = {}
    gen = torch.Generator().manual_seed(0)
    grid = (torch.rand(1, 8, 16, generator=gen) < 0.4).to(device)
    lay = BlockLayout.from_grid(grid, 128)
    n, gh, gw = lay.grid_shape
    s = torch.ops.segblocks
    for dtype, fmt_name in ((torch.float16, "channels_last"), (torch.float32, "contiguous")):
        fmt = torch.channels_last if fmt_name == "channels_last" else torch.contiguous_format
        x = torch.randn(1, 64, 256, 512, device=device, dtype=dtype).contiguous(memory_format=fmt)
        hr, lr = s.split(x, lay.hr_pos, lay.lr_pos, 32)
        phr, plr = s.block_pad(hr, lr, lay.hr_pos, lay.lr_pos, lay.block_map, 1, "constant", 0.0)
        blocks, padded = hr.numel() + lr.numel(), phr.numel() + plr.numel()
        calls = {
            "copy_dense (x.clone, baseline)": (lambda: x.clone(), 2 * x.numel()),
            "split": (lambda: s.split(x, lay.hr_pos, lay.lr_pos, 32), x.numel() + blocks),
            "block_pad p=1": (lambda: s.block_pad(hr, lr, lay.hr_pos, lay.lr_pos, lay.block_map, 1, "constant", 0.0),
                              blocks + padded),
            "block_pad_backward p=1": (lambda: s.block_pad_backward(phr, plr, lay.hr_pos, lay.lr_pos, lay.block_map,
                                                                    1, "constant"), blocks + padded),
            "combine": (lambda: s.combine(hr, lr, lay.hr_pos, lay.lr_pos, n, gh, gw), x.numel() + blocks),
        }
        timings = {}
        for name, (fn, elements) in calls.items():
            ms = _median_ms(fn, device, iters)
            timings[name] = {"median_us": round(ms * 1e3, 1),
                             "GB_per_s": round(elements * x.element_size() / (ms * 1e-3) / 1e9, 1)}
        results[f"{str(dtype).replace('torch.', '')}-{fmt_name}-[1,64,256,512]-hr32"] = timings
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ROOT / "benchmarks" / "results")))
    parser.add_argument("--timing", action="store_true", help="also time the kernels (about 10 s)")
    parser.add_argument("--no-pytest", action="store_true")
    parser.add_argument("--device", default="cuda",
                        help="'cpu' dry-runs the script itself on a machine without a GPU")
    args = parser.parse_args(argv)

    if args.device == "cpu":
        return run_all(args, "cpu", f"cpu ({torch.get_num_threads()} threads)")
    if not torch.cuda.is_available():
        print("gpu_parity: no CUDA GPU visible", file=sys.stderr)
        return 2
    if not has_native("cuda"):
        print("gpu_parity: the CUDA kernels are not built; run "
              "`FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=9.0 python3 setup.py build_ext --inplace` first",
              file=sys.stderr)
        return 2
    return run_all(args, "cuda", torch.cuda.get_device_name())


def run_all(args, device: str, gpu: str) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"gpu_parity: {gpu}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
          f"backend {segblocks_core.backend()}")

    rec = Recorder()
    start = time.perf_counter()
    with use_backend("native"):
        run_parity(rec, device)
        print(f"parity: {rec.details['parity_cases']} cases, {len(rec.failed)} failures "
              f"({rec.details['parity_seconds']} s)")
        run_checks(rec, device)
    print(f"all checks: {rec.cases} cases, {len(rec.failed)} failures")

    result = {
        "gpu": gpu,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "date": dt.date.today().isoformat(),
        "backend": segblocks_core.backend(),
        # how the kernels were launched (SEGBLOCKS_PDL, SEGBLOCKS_PDL_PREFETCH; the pytest run
        # below inherits the environment)
        "programmatic_launch": programmatic_launch(),
        "programmatic_prefetch": programmatic_prefetch(),
        "cases": rec.cases,
        "failures": len(rec.failed),
        "failed_cases": rec.failed,
        "details": rec.details,
        "seconds": round(time.perf_counter() - start, 1),
        "command": "python3 benchmarks/gpu_parity.py " + " ".join(sys.argv[1:]),
    }
    if not args.no_pytest and device == "cuda":
        try:
            result["pytest"] = run_pytest(args.out)
        except Exception as exc:  # noqa: BLE001 - the parity results are written regardless
            result["pytest"] = {"ran": False, "reason": f"{type(exc).__name__}: {exc}"}
        print(f"pytest -k cuda: {result['pytest']}" if not result["pytest"].get("ran")
              else f"pytest -k cuda: {result['pytest'].get('tests')} tests, "
                   f"{result['pytest'].get('failures')} failures, {result['pytest'].get('errors')} errors, "
                   f"{result['pytest'].get('skipped')} skipped")
    if args.timing:
        try:
            with use_backend("native"):
                result["kernel_timings"] = time_kernels(device, iters=50 if device == "cuda" else 3)
            print(json.dumps(result["kernel_timings"], indent=1))
        except Exception as exc:  # noqa: BLE001 - timing is optional
            result["kernel_timings"] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"kernel timing failed: {exc}")

    # a run with a non-default launch gets its own file (bench_gpu.py's prefixes), not the default's
    launch = launch_prefix() if device == "cuda" else ""
    name = f"{launch}parity-{gpu_slug(gpu)}-{result['date']}.json"
    path = args.out / name
    path.write_text(json.dumps(result, indent=2) + "\n")
    results_dir = ROOT / "benchmarks" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    copy = results_dir / name
    if copy.resolve() != path.resolve():
        shutil.copyfile(path, copy)
    for failure in rec.failed[:20]:
        print(f"FAILED {failure['case']}: {failure['error'][:200]}")
    print(f"wrote {path}")
    print(f"copied to {copy}")
    pytest_failed = result.get("pytest", {}).get("returncode", 0) not in (0, 5)
    return 1 if rec.failed or pytest_failed else 0


if __name__ == "__main__":
    sys.exit(main())
