#!/usr/bin/env python3
"""The performance table of bench/RESULTS.md and README.md, from the output of `make bench`.

    make bench BLAS=openblas                           # writes build/bench.txt as it runs
    /usr/bin/python3 bench/pytorch_bench.py >> build/bench.txt   # optional: the PyTorch column
    python3 bench/results_table.py build/bench.txt     # or: make bench-table

Reads the output of build/bench (its header lines, its `bench: key=value` lines and its warnings; other
lines are ignored), from the files given, one file per run, or from stdin. With several runs every
figure is the median over the runs, leaving out of a thread count's rows the runs whose bench printed a
warning for that thread count (as bench/median_runs.py does). Prints Markdown: the machine (the CPU as
the bench names it, the SIMD of its microbenchmarks, the FMA peak and DRAM read bandwidth it measured),
the date, the command, then one row per attention.h case and thread count:

    ms, GFLOP/s        the median time of a call and FLOPs / time (bench/README.md counts the FLOPs)
    % of peak          GFLOP/s over the FMA peak measured in the same run with the same thread count
    % of bandwidth     decode and gemv: bytes read / time over the DRAM read bandwidth of the same run
    x1t                time with 1 thread / time with this many (same case)
    OpenBLAS, PyTorch, their time / attention.h's time, same case and thread count (> 1: attention.h
    ggml               faster); OpenBLAS's projections (mha_proj) are compared with the routine
                       multi-head attention uses (mha_proj_inside); ggml's lines come from
                       bench/ggml_bench.c appended to the run (make bench-ggml)

A figure the input does not hold is "-"; a column with no figure at all is left out (and named). An attention.h line may carry vs_openblas= and vs_pytorch=, taken
as the ratios as they are (for a table rebuilt from figures quoted elsewhere, not from a run). Lines `command: ...`, `date: ...` and `machine: ...` in the
input (`make bench` writes the first two) override what the script would infer: the command from the
bench's header (OpenBLAS, --quick), the date from the file's modification time. Lines starting with
`#` are comments. Standard library only.
"""
import argparse
import datetime
import os
import re
import statistics
import sys

WARNING = re.compile(r"warning: (?:the (\d+)-thread peak moved|(\d+) threads reach only)")
HEADER = re.compile(r"^attention\.h (\S+) benchmark: (.*)$")
CPU = re.compile(r"^cpu: ([^;]*)(?:; last-level cache (\S+) MiB)?")
OPENBLAS = re.compile(r"^openblas: .*\(core ([^,)]*)")
GGML = re.compile(r"^ggml: (\S+)")
PROJ, PROJ_INSIDE = "mha_proj_d512_n2048", "mha_proj_inside_d512_n2048"


class Run:
    """One run of the bench: its `bench:` lines by (name, impl, threads), header fields and warnings."""

    def __init__(self, lines, source):
        self.rows, self.order, self.flagged, self.warnings = {}, [], set(), []
        self.meta, self.header, self.source = {}, {}, source
        for line in lines:
            line = line.rstrip("\n")
            if line.startswith("#"):
                continue
            m = WARNING.search(line)
            if m:
                self.flagged.add(int(m.group(1) or m.group(2)))
            if "warning:" in line and line.strip() not in self.warnings:
                self.warnings.append(line.strip())
            for key in ("command", "date", "machine"):
                if line.startswith(key + ": "):
                    self.meta[key] = line[len(key) + 2:].strip()
            m = HEADER.match(line)
            if m:
                self.header["version"] = m.group(1)
                self.header.update(kv.split("=", 1) for kv in m.group(2).split() if "=" in kv)
            m = CPU.match(line)
            if m:
                self.header["cpu"] = m.group(1).strip()
                if m.group(2):
                    self.header["llc"] = m.group(2)
            m = OPENBLAS.match(line)
            if m:
                self.header["openblas_core"] = m.group(1).strip()
            m = GGML.match(line)
            if m:
                self.header["ggml"] = m.group(1)
            if line.startswith("bench: "):
                kv = dict(item.split("=", 1) for item in line.split()[1:] if "=" in item)
                key = (kv["name"], kv["impl"], int(kv["threads"]))
                if key not in self.rows:
                    self.order.append(key)
                self.rows[key] = kv

    def value(self, key, field):
        row = self.rows.get(key)
        if row is None or field not in row or row[field] in ("", "-"):
            return None
        return float(row[field])


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits):
    return "-" if v is None else f"{v:.{digits}f}"


def fmt_ms(v):
    if v is None:
        return "-"
    return f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 100 else f"{v:.1f}"


def trusted(runs, threads, key=None):
    """The runs (holding key) without a warning for this thread count; all of them if every one has."""
    runs = [run for run in runs if key is None or key in run.rows]
    good = [run for run in runs if threads not in run.flagged]
    return good or runs


def machine_figure(runs, op, threads):
    """The FMA peak (GFLOP/s) or the DRAM read bandwidth (GB/s) a thread count measured: the peak at the
    start of the run, the bandwidth right before the decoding case (the %bw figure) or else at the start."""
    vals = []
    for run in trusted(runs, threads):
        found = None
        for (name, impl, t), row in run.rows.items():
            if impl != "machine" or t != threads or row.get("op") != op or name.endswith("_end"):
                continue
            if found is None or name.endswith("_at_decode"):
                found = row
        if found is not None:
            vals.append(float(found["gflops" if op == "peak" else "gbps"]))
    return median(vals)


def describe(runs, args):
    """The lines above the table: machine, date, command."""
    first = runs[0]
    meta = {k: v for run in runs for k, v in run.meta.items()}
    head = first.header
    threads = sorted({t for run in runs for (_, impl, t) in run.rows if impl == "attention.h"})
    if args.machine or "machine" in meta:
        machine = args.machine or meta["machine"]
    else:
        machine = head.get("cpu", "unknown CPU")
        if head.get("processors"):
            machine += f", {head['processors']} processors"
    simd = head.get("simd") or next((row.get("simd") for run in runs for row in run.rows.values()
                                     if row.get("simd")), None)
    figures = []
    for t in threads:
        peak, bw = machine_figure(runs, "peak", t), machine_figure(runs, "bw", t)
        part = f"{t} thread{'s' if t > 1 else ''}: FMA peak {fmt(peak, 1)} GFLOP/s"
        if bw is not None:
            part += f", DRAM read {fmt(bw, 1)} GB/s"
        figures.append(part)
    dates = sorted({run.meta["date"] for run in runs if "date" in run.meta})
    if args.date or dates:
        date = args.date or (dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}")
    elif first.source is None:
        date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    else:
        stamps = [datetime.datetime.fromtimestamp(os.path.getmtime(r.source), datetime.timezone.utc)
                  for r in runs]
        lo, hi = min(stamps).strftime("%Y-%m-%d"), max(stamps).strftime("%Y-%m-%d")
        date = lo if lo == hi else f"{lo} to {hi}"
    if args.command or "command" in meta:
        command = args.command or meta["command"]
    else:
        command = "make bench"
        if head.get("openblas") == "yes":
            command += " BLAS=openblas"
        if head.get("quick") == "1":
            command += " BENCH_ARGS=--quick"
    lines = [f"- Machine: {machine}" + (f"; {simd} kernels and microbenchmarks" if simd else "") + "; " +
             "; ".join(figures) + " (the bench's own measurements)",
             f"- Date: {date}; attention.h {head.get('version', '?')}",
             f"- Command: `{command}`" + (f", {len(runs)} runs (medians)" if len(runs) > 1 else "")]
    if head.get("openblas_core"):
        lines.append(f"- OpenBLAS core: {head['openblas_core']}")
    pytorch = sorted({impl for run in runs for (_, impl, _) in run.rows if impl.startswith("pytorch")})
    if pytorch:
        lines.append(f"- PyTorch: {', '.join(pytorch)} (`bench/pytorch_bench.py`: matmul, softmax, matmul)")
    ggml = sorted({run.header["ggml"] for run in runs if "ggml" in run.header})
    if ggml:
        lines.append(f"- ggml: commit {', '.join(ggml)} (`bench/ggml_bench.c`: `ggml_flash_attn_ext`, CPU backend)")
    return lines


def table(runs, only_threads=None):
    keys = []
    for run in runs:
        keys.extend(k for k in run.order if k[1] == "attention.h" and k not in keys
                    and (only_threads is None or k[2] in only_threads))
    names = list(dict.fromkeys(k[0] for k in keys))
    keys.sort(key=lambda k: (names.index(k[0]), k[2]))
    head = ["case", "threads", "ms", "GFLOP/s", "% of peak", "% of bandwidth", "x1t", "OpenBLAS / attention.h",
            "PyTorch / attention.h", "ggml / attention.h"]
    rows = []
    for key in keys:
        name, _, threads = key
        good = trusted(runs, threads, key)
        if not good:
            continue
        warned = all(threads in run.flagged for run in good)
        both = [run for run in good if 1 not in run.flagged] or good

        def col(field, rows=good, k=key):
            return median([run.value(k, field) for run in rows])

        def ratio(peer_impl, ours=key):
            given = col("vs_" + peer_impl)
            if given is not None:
                return given
            peer_name = PROJ if name == PROJ_INSIDE and peer_impl == "openblas" else name
            vals = []
            for run in good:
                peers = [k for k in run.rows if k[0] == peer_name and k[2] == threads
                         and (k[1] == peer_impl or (peer_impl == "pytorch" and k[1].startswith("pytorch")))]
                for peer in peers:
                    peer_ms, our_ms = run.value(peer, "ms"), run.value(ours, "ms")
                    if peer_ms is not None and our_ms:
                        vals.append(peer_ms / our_ms)
                    elif peer_name == name:
                        vals.append(run.value(peer, "attn_speedup"))
            return median(vals)

        gflops, pct_peak = col("gflops"), col("pct_peak")
        rows.append([name, f"{threads}{'*' if warned else ''}", fmt_ms(col("ms")), fmt(gflops, 1) if gflops else "-",
                     fmt(pct_peak, 1) if pct_peak else "-", fmt(col("pct_bw"), 1),
                     fmt(col("speedup_vs_1t", both), 2), fmt(ratio("openblas"), 2), fmt(ratio("pytorch"), 2),
                     fmt(ratio("ggml"), 2)])
    keep = [i for i in range(len(head)) if i < 2 or any(row[i] != "-" for row in rows)]
    out = ["| " + " | ".join(head[i] for i in keep) + " |",
           "|---|" + "---:|" * (len(keep) - 1)]
    out += ["| " + " | ".join(row[i] for i in keep) + " |" for row in rows]
    missing = [head[i] for i in range(len(head)) if i not in keep]
    if missing:
        out += ["", "Not in this input (no figure for any row): " + ", ".join(missing) + "."]
    return out


def main():
    parser = argparse.ArgumentParser(description="The performance table from `make bench` output.")
    parser.add_argument("files", nargs="*", help="one file per run (default: stdin)")
    parser.add_argument("--date", help="the date to print (default: a date: line, or the file's mtime)")
    parser.add_argument("--command", help="the command to print (default: a command: line, or inferred)")
    parser.add_argument("--machine", help="the machine to print (default: the bench's cpu: line)")
    parser.add_argument("--threads", help="only the rows of these thread counts, e.g. 2 or 1,2 (README.md: 2)")
    args = parser.parse_args()
    if args.files and args.files != ["-"]:
        runs = []
        for path in args.files:
            with open(path, encoding="utf-8") as f:
                runs.append(Run(f, path))
    else:
        runs = [Run(sys.stdin, None)]
    if not any(run.rows for run in runs):
        sys.exit("results_table.py: no 'bench:' lines in the input (did the bench finish?)")
    print("\n".join(describe(runs, args)))
    print()
    only = {int(t) for t in args.threads.split(",")} if args.threads else None
    print("\n".join(table(runs, only)))
    notes = [w for run in runs for w in run.warnings]
    if notes:
        print()
        print("The bench warned (the figures of a thread count it names are not reliable; with several runs, those"
              " with such a warning are left out of that thread count's rows; * marks a row from warned runs only):")
        for w in dict.fromkeys(notes):
            print(f"- {w}")


if __name__ == "__main__":
    main()
