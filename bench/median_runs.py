#!/usr/bin/env python3
"""Medians over several bench runs.

The host of this project's machines shares its vCPUs: one run of build/bench can land in a slow minute,
so bench/RESULTS.md quotes, for every measurement, the median over several runs of the whole bench (each
run's percentages are against the peak and bandwidth measured in that same run).

    for i in 1 2 3 4 5; do ./build/bench --no-naive > run$i.txt; done
    python3 bench/median_runs.py run*.txt
    python3 bench/median_runs.py --ratios run*.txt

prints one Markdown table row per (case, impl, threads): the median and the range of ms, GFLOP/s,
pct_peak, GB/s, pct_bw and the 2-thread speedup (x1t) over the runs, and the runs' pct values in order.
A run whose bench printed a warning about a thread count ("the 2-thread peak moved by ...", "2 threads
reach only ...": the host took a vCPU away while the peak was measured, so that run's percentages for
that thread count are against a wrong peak) is left out of that thread count's rows, and out of the
x1t of every row; the `runs` column counts the runs each row uses.

With --ratios it prints instead, per case and thread count, the median (and range) over the same runs
of the per-run ratio `ms of the peer / ms of attention.h` (> 1: attention.h faster), for each peer
(openblas, naive), and the projections' ratio: OpenBLAS's `mha_proj` over `mha_proj_inside`, the
packed routine that multi-head attention uses.
"""
import re
import statistics
import sys

WARNING = re.compile(r"warning: (?:the (\d+)-thread peak moved|(\d+) threads reach only)")


def parse(path):
    """The `bench:` lines of one run, {(name, impl, threads): {key: value}}, and the thread counts its
    warnings mark unreliable."""
    rows, flagged = {}, set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = WARNING.search(line)
            if m:
                flagged.add(int(m.group(1) or m.group(2)))
            if not line.startswith("bench: "):
                continue
            kv = dict(item.split("=", 1) for item in line.split()[1:] if "=" in item)
            rows[(kv["name"], kv["impl"], int(kv["threads"]))] = kv
    return rows, flagged


def fmt(values, digits):
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


PROJ, PROJ_INSIDE = "mha_proj_d512_n2048", "mha_proj_inside_d512_n2048"


def ratios(parsed):
    """Per-run speed ratios of the peers against attention.h, one Markdown row per (case, peer, threads)."""
    rows = []  # (case, peer label, threads, peer's key, attention.h's key), in the runs' order
    for run, _ in parsed:
        for name, impl, threads in run:
            if impl in ("attention.h", "machine"):
                continue
            if name == PROJ:  # OpenBLAS's projections against the packed routine multi-head attention uses
                row = (name, "openblas projections", threads, (name, impl, threads),
                       (PROJ_INSIDE, "attention.h", threads))
            else:
                row = (name, impl, threads, (name, impl, threads), (name, "attention.h", threads))
            if row not in rows:
                rows.append(row)
    print("| case | peer | thr | runs | peer ms / attention.h ms |")
    print("|---|---|---:|---:|---:|")
    for name, label, threads, peer, ours in rows:
        vals = [float(run[peer]["ms"]) / float(run[ours]["ms"])
                for run, flagged in parsed if peer in run and ours in run and threads not in flagged]
        if vals:
            print(f"| {name} | {label} | {threads} | {len(vals)} | {fmt(vals, 2)} |")


def main(paths):
    want_ratios = bool(paths) and paths[0] == "--ratios"
    if want_ratios:
        paths = paths[1:]
    if not paths:
        sys.exit(__doc__)
    parsed = [parse(p) for p in paths]
    if want_ratios:
        ratios(parsed)
        return
    keys = []
    for run, _ in parsed:
        keys.extend(k for k in run if k not in keys)
    print(f"Medians over {len(parsed)} runs, less those whose warnings mark a thread count (range in brackets; "
          "per-run values in run order).\n")
    print("| case | impl | thr | runs | ms | GFLOP/s | % peak | GB/s | % bw | x1t | per run (% peak or % bw) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for key in keys:
        name, impl, threads = key
        found = [run[key] for run, flagged in parsed if key in run and threads not in flagged]
        both = [run[key] for run, flagged in parsed if key in run and not flagged & {1, threads}]
        if not found:
            continue

        def col(k, digits, rows=found):
            vals = [float(r[k]) for r in rows if k in r]
            return (fmt(vals, digits), vals) if vals else ("-", [])

        ms, _ = col("ms", 2)
        gf, _ = col("gflops", 1)
        pp, pp_vals = col("pct_peak", 1)
        gb, _ = col("gbps", 2)
        pb, pb_vals = col("pct_bw", 1)
        x1t, _ = col("speedup_vs_1t", 2, both)
        per_run = pb_vals if pb_vals and found[0]["op"] == "decode" else pp_vals
        if found[0]["op"] == "bw":
            per_run = [float(r["gbps"]) for r in found]
        print(f"| {name} | {impl} | {threads} | {len(found)} | {ms} | {gf} | {pp} | {gb} | {pb} | {x1t} | "
              f"{', '.join(f'{v:.1f}' for v in per_run)} |")


if __name__ == "__main__":
    main(sys.argv[1:])
