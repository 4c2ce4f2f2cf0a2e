#!/usr/bin/env python3
"""Medians over rounds: naive before and after, out of place and in place,
with the butterfly of the same jobs; new / old paired within each round."""
import csv, glob, os, statistics as st
from collections import defaultdict

here = os.path.dirname(os.path.abspath(__file__))
t = defaultdict(list)  # (which, bytes, algo, col) -> times
for path in glob.glob(os.path.join(here, "round*-*.csv")):
    rnd, which = os.path.basename(path)[:-4].split("-")
    for row in csv.DictReader(open(path)):
        for col in ("avg_us", "ip_avg_us"):
            t[(which, int(row["bytes"]), row["algo"], col, rnd)] = float(row[col])
sizes = sorted({k[1] for k in t})
rounds = sorted({k[4] for k in t})
def med(which, b, algo, col):
    return st.median(t[(which, b, algo, col, r)] for r in rounds)
def ratio(b, col):
    return st.median(t[("new", b, "naive", col, r)] / t[("old", b, "naive", col, r)] for r in rounds)
print(f"# naive at 2 ranks, medians of {len(rounds)} interleaved rounds (µs); new / old paired per round")
print("| size | out of place: old | new | new / old | butterfly | in place: old | new | new / old | butterfly |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for b in sizes:
    cells = []
    for col in ("avg_us", "ip_avg_us"):
        cells += [f"{med('old', b, 'naive', col):.2f}", f"{med('new', b, 'naive', col):.2f}",
                  f"{ratio(b, col):.2f}", f"{med('new', b, 'butterfly', col):.2f}"]
    name = f"{b >> 20} MiB" if b >= 1 << 20 else f"{b >> 10} KiB"
    print(f"| {name} | " + " | ".join(cells) + " |")
