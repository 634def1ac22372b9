#!/usr/bin/env python3
"""Medians (and spread) of the ACK-frequency runs: python3 summary.py DIR (runs.sh's output)."""
import glob
import json
import os
import re
import statistics
import sys

directory = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(__file__)
series = {}
for path in sorted(glob.glob(os.path.join(directory, "*.json"))):
    name = re.sub(r"-\d+\.json$", "", os.path.basename(path))
    series.setdefault(name, []).append(json.load(open(path)))


def spread(values, fmt="{:.2f}"):
    values = sorted(values)
    med = statistics.median(values)
    return f"{fmt.format(med)} ({fmt.format(values[0])}-{fmt.format(values[-1])})"


for name, runs in series.items():
    per = {}
    for run in runs:
        base = next(r for r in run["runs"] if r["server"] == "baseline")
        key = "server_cpu_us_per_egress_frame"
        if base["shape"]["name"].startswith("video"):
            key = "server_cpu_percent_per_100mbit_egress"
        for r in run["runs"]:
            s = per.setdefault(r["server"], {"ratio": [], "abs": [], "acks": [], "wake": [], "p99": [], "lost": [], "others": []})
            s["ratio"].append(r[key] / base[key])
            s["abs"].append(r[key])
            q = r["subscriber_quic"]
            s["acks"].append(q["acks_sent"] / max(q["frames_delivered"], 1))
            s["wake"].append(r["server_wakeups_per_egress_frame"])
            s["p99"].append(r["latency"]["p99_us"] / base["latency"]["p99_us"])
            s["lost"].append(r["frames_lost"])
            s["others"].append(r["others_cpu_percent"])
    print(f"{name} ({len(runs)} runs)")
    for server, s in per.items():
        print(f"  {server:9} ÷baseline {spread(s['ratio'])}  abs {spread(s['abs'])}  "
              f"ACKs/frame {spread(s['acks'])}  wake-ups/frame {spread(s['wake'], '{:.3f}')}  "
              f"p99÷ {spread(s['p99'])}  lost {max(s['lost'])}  others% {spread(s['others'], '{:.0f}')}")
