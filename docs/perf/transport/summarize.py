#!/usr/bin/env python3
"""Summarise sealroom-load JSON files: one line per run, then medians (min-max) per label.

Usage: summarize.py LABEL=GLOB [LABEL=GLOB ...]
"""
import glob
import json
import statistics
import sys


def row(path):
    d = json.load(open(path))
    relay = next(r for r in d["runs"] if r["server"] == "relay")
    base = next((r for r in d["runs"] if r["server"] != "relay"), None)
    rat = d.get("ratios") or {}
    return {
        "load": float(d["load_average_at_start"].split()[0]),
        "others": relay["others_cpu_percent"],
        "us_frame": relay["server_cpu_us_per_egress_frame"],
        "base_us_frame": base["server_cpu_us_per_egress_frame"] if base else float("nan"),
        "pct_100m": relay["server_cpu_percent_per_100mbit_egress"],
        "r_cpu": rat.get("cpu_per_egress_frame", float("nan")),
        "r_p99": rat.get("latency_p99", float("nan")),
        "p99_ms": relay["latency"]["p99_us"] / 1000,
        "base_p99_ms": base["latency"]["p99_us"] / 1000 if base else float("nan"),
        "handover_p99": relay["relay_handover"]["p99_at_most_us"],
        "lost": relay["frames_lost"] + (base["frames_lost"] if base else 0),
    }


def main():
    keys = ["load", "others", "us_frame", "base_us_frame", "r_cpu", "p99_ms", "base_p99_ms",
            "r_p99", "handover_p99", "lost"]
    for arg in sys.argv[1:]:
        label, pattern = arg.split("=", 1)
        rows = [row(p) for p in sorted(glob.glob(pattern))]
        print(f"## {label} ({len(rows)} runs)")
        print("  " + " ".join(f"{k:>12}" for k in keys))
        for r in rows:
            print("  " + " ".join(f"{r[k]:12.2f}" for k in keys))
        if rows:
            med = " ".join(
                f"{statistics.median(r[k] for r in rows):6.2f} ({min(r[k] for r in rows):.2f}-{max(r[k] for r in rows):.2f})"
                for k in ["r_cpu", "r_p99", "us_frame", "handover_p99", "load"])
            print("  median (min-max) r_cpu, r_p99, us/frame, handover p99, load: " + med)


main()
