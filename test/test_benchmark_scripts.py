"""The benchmark scripts the GPU rounds run (benchmarks/gpu_round.sh) parse their command
lines: a script that does not even compile, or whose argument parser is broken, would only
fail on the GPU host, after the build, costing a device call (CPU)."""
import py_compile
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "benchmarks").glob("*.py"))
# what gpu_round.sh runs, and what the README tells users to run
RUN_BY_ROUNDS = ["bench_gpu.py", "node_profile.py", "memory_probe.py", "gpu_parity.py", "ring_probe.py",
                 "conv_config_probe.py", "merge_bench.py", "readme_table.py", "halfres_stem_probe.py",
                 "gather_conv_probe.py", "halo_conv_probe.py"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_benchmark_script_compiles(script, tmp_path):
    py_compile.compile(str(script), cfile=str(tmp_path / "out.pyc"), doraise=True)


@pytest.mark.parametrize("name", RUN_BY_ROUNDS)
def test_benchmark_script_parses_its_arguments(name):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("usage:")


@pytest.mark.parametrize("launch,prefetch,want", [(True, True, ""), (False, False, "no-pdl-"),
                                                  (True, False, "no-prefetch-")])
def test_a_non_default_launch_names_its_result_file_apart(monkeypatch, launch, prefetch, want):
    """bench_gpu.py and gpu_parity.py prefix their result files with how the kernels were
    launched (probe_json.launch_prefix), so an A/B run never overwrites the default run's file."""
    from segblocks_core import ops
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from probe_json import launch_prefix
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    monkeypatch.setattr(ops, "programmatic_launch", lambda: launch)
    monkeypatch.setattr(ops, "programmatic_prefetch", lambda: prefetch)
    assert launch_prefix() == want
