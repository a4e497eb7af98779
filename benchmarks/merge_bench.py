"""Merge bench_gpu.py results of one code version run per model (e.g. one device call each,
under the 10-minute limit) into one table: the rows concatenated, the timed choices' counts
summed and their per-shape records united. Every ratio still compares rows of one process
(each model's static best and SegBlocks rows come from the same run); the settings must
agree, else it refuses.

    python benchmarks/merge_bench.py rn18.json rn50.json --out benchmarks/results/gpu-<gpu>-<date>.json
"""
import argparse
import json
import sys

SUMMED = ("conv_ways",)
UNITED = ("padded_output_ways", "first_layer_ways")


def merge(results: list[dict]) -> dict:
    out = dict(results[0])
    out["rows"] = []
    for key in SUMMED + UNITED:
        out[key] = {}
    for res in results:
        for key, value in res.items():
            if key == "rows" or key in SUMMED + UNITED:
                continue
            if out.get(key) != value:
                raise ValueError(f"the runs differ in {key!r}: {out.get(key)!r} against {value!r}")
        models = {row["model"] for row in out["rows"]} & {row["model"] for row in res["rows"]}
        if models:
            raise ValueError(f"model(s) {sorted(models)} in more than one run")
        out["rows"] += res["rows"]
        for key in SUMMED:
            for way, count in res.get(key, {}).items():
                out[key][way] = out[key].get(way, 0) + count
        for key in UNITED:
            out[key].update(res.get(key, {}))
    out["merged_from_runs"] = len(results)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    results = []
    for path in args.runs:
        with open(path) as f:
            results.append(json.load(f))
    with open(args.out, "w") as f:
        json.dump(merge(results), f, indent=1)
    print("wrote", args.out, file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
