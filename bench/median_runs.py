#!/usr/bin/env python3
"""Medians over several bench runs.

The host of this project's machines shares its vCPUs: one run of build/bench can land in a slow minute,
so bench/RESULTS.md quotes, for every measurement, the median over several runs of the whole bench (each
run's percentages are against the peak and bandwidth measured in that same run).

    for i in 1 2 3 4 5; do ./build/bench --no-naive > run$i.txt; done
    python3 bench/median_runs.py run*.txt

prints one Markdown table row per (case, impl, threads): the median and the range of ms, GFLOP/s,
pct_peak, GB/s, pct_bw and the 2-thread speedup (x1t) over the runs, and the runs' pct values in order.
"""
import statistics
import sys


def parse(path):
    """The `bench:` lines of one run: {(name, impl, threads): {key: value}}."""
    rows = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.startswith("bench: "):
                continue
            kv = dict(item.split("=", 1) for item in line.split()[1:] if "=" in item)
            rows[(kv["name"], kv["impl"], int(kv["threads"]))] = kv
    return rows


def fmt(values, digits):
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def main(paths):
    if not paths:
        sys.exit(__doc__)
    runs = [parse(p) for p in paths]
    keys = []
    for run in runs:
        keys.extend(k for k in run if k not in keys)
    print(f"Medians over {len(runs)} runs (range in brackets; per-run values in run order).\n")
    print("| case | impl | thr | ms | GFLOP/s | % peak | GB/s | % bw | x1t | per run (% peak or % bw) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for key in keys:
        found = [run[key] for run in runs if key in run]
        name, impl, threads = key

        def col(k, digits):
            vals = [float(r[k]) for r in found if k in r]
            return (fmt(vals, digits), vals) if vals else ("-", [])

        ms, _ = col("ms", 2)
        gf, _ = col("gflops", 1)
        pp, pp_vals = col("pct_peak", 1)
        gb, _ = col("gbps", 2)
        pb, pb_vals = col("pct_bw", 1)
        x1t, _ = col("speedup_vs_1t", 2)
        per_run = pb_vals if pb_vals and found[0]["op"] == "decode" else pp_vals
        if found[0]["op"] == "bw":
            per_run = [float(r["gbps"]) for r in found]
        print(f"| {name} | {impl} | {threads} | {ms} | {gf} | {pp} | {gb} | {pb} | {x1t} | "
              f"{', '.join(f'{v:.1f}' for v in per_run)} |")


if __name__ == "__main__":
    main(sys.argv[1:])
