#!/usr/bin/env python3
"""Turns Google Benchmark JSON output into a chart (SVG or PNG) with matplotlib.

    build/bench/bench/bench_attention --benchmark_out=attn.json --benchmark_out_format=json
    python3 tools/plot_bench.py attn.json -o attn.svg [--filter REGEX] [--baseline REGEX] [--title TEXT]

One horizontal bar per benchmark (real time, in ms). With repetitions, the median aggregate is used
(else the runs of a name are averaged); the time axis turns logarithmic when the times span more
than two orders of magnitude. --filter keeps the benchmarks whose name matches; --baseline
names one benchmark (the first match) and labels every bar with its time relative to it, which is how
the project reports speed on a noisy machine: a ratio to a baseline measured in the same run. Several
JSON files may be given; their benchmarks are drawn in one chart, names prefixed by the file's stem
when more than one file is given.

Needs matplotlib (Debian: apt-get install python3-matplotlib); no other package.
"""

import argparse
import json
import os
import re
import sys

UNIT_MS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}


def load(path, prefix):
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    runs, medians = {}, {}
    for b in data.get("benchmarks", []):
        name = b.get("run_name") or b["name"]
        if b.get("error_occurred"):
            continue
        t = float(b["real_time"]) * UNIT_MS.get(b.get("time_unit", "ns"), 1e-6)
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") == "median":
                medians[name] = t
        else:
            runs.setdefault(name, []).append(t)
    out = {}
    for name, ts in runs.items():
        out[prefix + name] = medians.get(name, sum(ts) / len(ts))
    for name, t in medians.items():
        out.setdefault(prefix + name, t)
    return data.get("context", {}), out


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", nargs="+", help="Google Benchmark --benchmark_out JSON file(s)")
    ap.add_argument("-o", "--out", default="bench.svg", help="output image (.svg or .png)")
    ap.add_argument("--filter", default=None, help="keep benchmarks whose name matches this regex")
    ap.add_argument("--baseline", default=None, help="regex of the baseline benchmark for the ratio labels")
    ap.add_argument("--title", default=None)
    args = ap.parse_args(argv)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot_bench.py: matplotlib is missing (apt-get install python3-matplotlib)", file=sys.stderr)
        return 2

    times, context = {}, {}
    for path in args.json:
        prefix = os.path.splitext(os.path.basename(path))[0] + ": " if len(args.json) > 1 else ""
        try:
            context, t = load(path, prefix)
        except (OSError, ValueError, KeyError) as e:
            print(f"plot_bench.py: cannot read {path}: {e}", file=sys.stderr)
            return 2
        times.update(t)
    if args.filter:
        rx = re.compile(args.filter)
        times = {k: v for k, v in times.items() if rx.search(k)}
    if not times:
        print("plot_bench.py: no benchmark to plot", file=sys.stderr)
        return 1
    names = list(times)
    base = None
    if args.baseline:
        rx = re.compile(args.baseline)
        base = next((n for n in names if rx.search(n)), None)
        if base is None:
            print(f"plot_bench.py: no benchmark matches --baseline {args.baseline!r}", file=sys.stderr)
            return 1

    fig, ax = plt.subplots(figsize=(10, 0.35 * len(names) + 1.5))
    ys = range(len(names))
    vals = [times[n] for n in names]
    ax.barh(list(ys), vals, color=["#d62728" if n == base else "#1f77b4" for n in names])
    ax.set_yticks(list(ys))
    ax.set_yticklabels(names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("real time per iteration (ms)")
    for y, n in zip(ys, names):
        label = f"{times[n]:.3g} ms"
        if base:
            label += f"  ({times[n] / times[base]:.2f}x of baseline)"
        ax.text(times[n], y, " " + label, va="center", fontsize=7)
    title = args.title or ", ".join(os.path.basename(p) for p in args.json)
    host = context.get("host_name", "")
    date = context.get("date", "")
    cpus = context.get("num_cpus", "")
    ax.set_title(f"{title}\n{host} {cpus} CPUs, {date}", fontsize=10)
    if max(vals) / max(min(vals), 1e-12) > 100:  # several orders of magnitude: log axis
        ax.set_xscale("log")
        ax.set_xlim(min(vals) / 2, max(vals) * 30)
    else:
        ax.set_xlim(0, max(vals) * 1.45)
    fig.tight_layout()
    fig.savefig(args.out)
    print(f"wrote {args.out} ({len(names)} benchmarks)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
