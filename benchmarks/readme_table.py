"""Render the README's performance table from the newest benchmarks/results/gpu-*.json.

    python benchmarks/readme_table.py            # print the table
    python benchmarks/readme_table.py --write    # replace it in README.md (between markers)
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEGIN, END = "<!-- perf-table:begin -->", "<!-- perf-table:end -->"
# the static best: newest name first (results before the fused head used the second)
STATIC_NAMES = ("fp16 NHWC BN-folded graph, fused head", "fp16 NHWC BN-folded graph")
GOALS = {("swiftnet_rn18", 1, 0.4): 0.75, ("swiftnet_rn18", 1, 0.2): 0.60,
         ("swiftnet_rn18", 1, 1.0): 1.15, ("swiftnet_rn18", 4, 0.4): 0.65,
         ("swiftnet_rn50", 1, 0.4): 0.70}


def newest_result() -> str:
    files = sorted(glob.glob(os.path.join(ROOT, "benchmarks", "results", "gpu-*.json")),
                   key=lambda p: (re.findall(r"\d{4}-\d{2}-\d{2}", p), os.path.getmtime(p)))
    if not files:
        raise SystemExit("no benchmarks/results/gpu-*.json")
    return files[-1]


def render(path: str) -> str:
    with open(path) as f:
        data = json.load(f)
    rows = data["rows"]
    static = next(name for name in STATIC_NAMES + (None,) if name is None or any(r["config"] == name for r in rows))
    lines = [
        f"Measured on **{data['gpu']}**, torch {data['torch']} (CUDA {data['cuda']}), "
        f"{data['width']}x{data['height']}, random weights, from "
        f"`{os.path.relpath(path, ROOT)}` (`python benchmarks/bench_gpu.py`). Each row: uint8 "
        f"frame in GPU memory -> class ids, median of CUDA-event timed CUDA-graph replays; "
        f"ratios are against the static best (`{static}`) in the same run."
        + ("" if "programmatic_launch" not in data else
           f" Kernels launched programmatically (`csrc/ops/cuda/pdl.cuh`): "
           f"{'on' if data['programmatic_launch'] else 'off'}.")
        + ("" if not data.get("programmatic_launch") or "programmatic_prefetch" not in data else
           f" BlockPad's lookups before the wait for the kernel before: "
           f"{'on' if data['programmatic_prefetch'] else 'off'}."),
        "",
        "| model | batch | configuration | latency ms | vs static best | goal | peak MB | vs static | GMAC |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    base = {(r["model"], r["batch"]): r for r in rows if r["config"] == static}
    for r in rows:
        b = base.get((r["model"], r["batch"]))
        lat = f"{r['latency_ms'] / b['latency_ms']:.2f}x" if b else ""
        mem = f"{r['peak_mem_mb'] / b['peak_mem_mb']:.2f}x" if b else ""
        goal = ""
        if r["mode"] == "segblocks" and r["tau"] is None:
            g = GOALS.get((r["model"], r["batch"], r["highres_fraction"]))
            goal = f"<= {g:.2f}x" if g else ""
        lines.append(f"| {r['model']} | {r['batch']} | {r['mode']}: {r['config']} | "
                     f"{r['latency_ms']:.2f} | {lat} | {goal} | {r['peak_mem_mb']:.0f} | {mem} | "
                     f"{r['gmacs']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    table = render(newest_result())
    if not args.write:
        print(table)
        return
    readme = os.path.join(ROOT, "README.md")
    text = open(readme).read()
    if BEGIN not in text:
        raise SystemExit(f"README.md has no {BEGIN} marker")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with open(readme, "w") as f:
        f.write(f"{head}{BEGIN}\n{table}\n{END}{tail}")


if __name__ == "__main__":
    main()
