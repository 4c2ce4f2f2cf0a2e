"""Median time per (collective, size, subject) over the runs, and ours/mpi."""
import csv, glob, os, statistics, sys
from collections import defaultdict
d = sys.argv[1]
t = defaultdict(list)
for f in sorted(glob.glob(os.path.join(d, "*-[0-9].csv"))):
    for row in csv.DictReader(open(f)):
        coll, who = row["algo"].split(":")
        t[(coll, int(row["bytes"]), who)].append(float(row["avg_us"]))
print(f"{'collective':<15}{'bytes':>10}{'ours us':>10}{'mpi us':>10}{'ours/mpi':>10}  runs")
for coll in ["reduce_scatter", "reduce", "all_gather"]:
    for b in sorted({k[1] for k in t if k[0] == coll}):
        ours, mpi = t[(coll, b, "ring")], t[(coll, b, "mpi")]
        mo, mm = statistics.median(ours), statistics.median(mpi)
        print(f"{coll:<15}{b:>10}{mo:>10.2f}{mm:>10.2f}{mo / mm:>10.2f}  {len(ours)}")
