"""benchmarks/merge_bench.py: bench_gpu.py results of one code version, one model per run,
joined into the README's table (CPU)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from merge_bench import merge  # noqa: E402


def _run(model, ways, padded, **settings):
    res = {"gpu": "G", "torch": "T", "height": 64, "width": 128, "cutlass_configs": ["a", "b"]}
    res.update(settings)
    res["rows"] = [{"model": model, "mode": "static", "latency_ms": 1.0},
                   {"model": model, "mode": "segblocks", "latency_ms": 0.8}]
    res["conv_ways"] = ways
    res["padded_output_ways"] = padded
    res["first_layer_ways"] = {}
    return res


def test_merge_joins_rows_sums_ways_and_unites_choices():
    a = _run("rn18", {"fused": 3, "cutlass:1": 2}, {"k1": "into:1"})
    b = _run("rn50", {"fused": 1, "unfused": 4}, {"k2": None})
    out = merge([a, b])
    assert [r["model"] for r in out["rows"]] == ["rn18", "rn18", "rn50", "rn50"]
    assert out["conv_ways"] == {"fused": 4, "cutlass:1": 2, "unfused": 4}
    assert out["padded_output_ways"] == {"k1": "into:1", "k2": None}
    assert out["gpu"] == "G" and out["merged_from_runs"] == 2
    assert a["conv_ways"] == {"fused": 3, "cutlass:1": 2}  # inputs untouched


def test_merge_refuses_runs_of_other_settings_or_the_same_model():
    with pytest.raises(ValueError, match="torch"):
        merge([_run("rn18", {}, {}), _run("rn50", {}, {}, torch="other")])
    with pytest.raises(ValueError, match="more than one run"):
        merge([_run("rn18", {}, {}), _run("rn18", {}, {})])


def test_merge_command_line_writes_the_table(tmp_path):
    paths = []
    for model in ("rn18", "rn50"):
        p = tmp_path / f"{model}.json"
        p.write_text(json.dumps(_run(model, {"fused": 1}, {})))
        paths.append(str(p))
    out = tmp_path / "merged.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "merge_bench.py"), *paths, "--out", str(out)],
                   check=True, capture_output=True)
    merged = json.loads(out.read_text())
    assert len(merged["rows"]) == 4 and merged["conv_ways"] == {"fused": 2}


def test_readme_table_says_whether_kernels_were_launched_programmatically(tmp_path):
    """readme_table.py names the run's launch mode where the result records it (results
    before programmatic launches do not), and with programmatic launch whether the BlockPad
    passes looked up before the wait; a merge refuses runs that differ in it."""
    from readme_table import render

    rows = [{"model": "swiftnet_rn18", "mode": "static", "config": "fp16 NHWC BN-folded graph, fused head",
             "batch": 1, "dtype": "float16", "highres_fraction": None, "tau": None, "latency_ms": 1.0,
             "peak_mem_mb": 80.0, "gmacs": 103.6},
            {"model": "swiftnet_rn18", "mode": "segblocks", "config": "fixed 40% high-res", "batch": 1,
             "dtype": "float16", "highres_fraction": 0.4, "tau": None, "latency_ms": 0.8,
             "peak_mem_mb": 48.0, "gmacs": 57.0}]
    base = {"gpu": "G", "torch": "T", "cuda": "C", "height": 1024, "width": 2048, "rows": rows}
    texts = {}
    for state in (None, True, False):
        data = dict(base) if state is None else dict(base, programmatic_launch=state)
        path = tmp_path / f"gpu-{state}.json"
        path.write_text(json.dumps(data))
        texts[state] = render(str(path))
        assert "| 0.80 | 0.80x | <= 0.75x |" in texts[state]
    assert "programmatically" not in texts[None]
    assert "programmatically (`csrc/ops/cuda/pdl.cuh`): on." in texts[True]
    assert "programmatically (`csrc/ops/cuda/pdl.cuh`): off." in texts[False]
    assert not any("lookups before the wait" in text for text in texts.values())  # not recorded
    for prefetch in (True, False):
        path = tmp_path / f"gpu-prefetch-{prefetch}.json"
        path.write_text(json.dumps(dict(base, programmatic_launch=True, programmatic_prefetch=prefetch)))
        want = "on" if prefetch else "off"
        assert f"BlockPad's lookups before the wait for the kernel before: {want}." in render(str(path))
    path.write_text(json.dumps(dict(base, programmatic_launch=False, programmatic_prefetch=False)))
    assert "lookups before the wait" not in render(str(path))  # no wait without programmatic launch
    with pytest.raises(ValueError, match="programmatic_launch"):
        merge([_run("rn18", {}, {}, programmatic_launch=True), _run("rn50", {}, {}, programmatic_launch=False)])
