#!/usr/bin/env python3
"""Medians over rounds of hierarchical's time per piece size, and the paired
ratios hierarchical / Rabenseifner and hierarchical / vendor (same job)."""
import csv, glob, os, re, statistics as st, sys
from collections import defaultdict

# The runs' directory: the first argument, else this one.
here = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
t = defaultdict(list)      # (piece, bytes, algo) -> times
ratio = defaultdict(list)  # (piece, bytes, ref) -> hierarchical / ref, paired
for path in sorted(glob.glob(os.path.join(here, "round*-*.csv"))):
    piece = re.match(r"round\d+-(.+)\.csv", os.path.basename(path)).group(1)
    rows = {}
    for row in csv.DictReader(open(path)):
        rows[(int(row["bytes"]), row["algo"])] = float(row["avg_us"])
        t[(piece, int(row["bytes"]), row["algo"])].append(float(row["avg_us"]))
    for (b, a), v in rows.items():
        if a == "hierarchical":
            for ref in ("rabenseifner", "mpi"):
                if (b, ref) in rows:
                    ratio[(piece, b, ref)].append(v / rows[(b, ref)])

def order(p):
    return int(p[:-1]) * (1 << (10 if p[-1] == "K" else 20))

pieces = sorted({k[0] for k in t}, key=order)
sizes = sorted({k[1] for k in t})
rounds = len(t[(pieces[0], sizes[0], "hierarchical")])
print(f"# hierarchical by its piece across hosts, 2 hosts x 2 ranks, medians of {rounds} rounds (ms);")
print("# in brackets: hierarchical / Rabenseifner and / the vendor, ratios paired within each job, median")
print("| size | " + " | ".join(f"piece {p}" for p in pieces) + " | Rabenseifner (all jobs) | vendor (all jobs) |")
print("|---|" + "---:|" * (len(pieces) + 2))
for b in sizes:
    cells = []
    for p in pieces:
        h = st.median(t[(p, b, "hierarchical")]) / 1e3
        rr = st.median(ratio[(p, b, "rabenseifner")])
        rm = st.median(ratio[(p, b, "mpi")])
        cells.append(f"{h:.1f} ({rr:.2f} / {rm:.2f})")
    rab = st.median([x for p in pieces for x in t[(p, b, "rabenseifner")]]) / 1e3
    mpi = st.median([x for p in pieces for x in t[(p, b, "mpi")]]) / 1e3
    print(f"| {b >> 20} MiB | " + " | ".join(cells) + f" | {rab:.1f} | {mpi:.1f} |")
