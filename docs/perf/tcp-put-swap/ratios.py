"""Medians over runs per (size, subject) of default and noput, and noput/default
paired by run. python3 ratios.py TAG"""
import csv, glob, statistics as st, sys
tag = sys.argv[1]
t = {}
for f in glob.glob(f"{tag}-*-*.csv"):
    _, flags, run = f[:-4].rsplit("-", 2)
    for row in csv.reader(open(f)):
        if not row or row[0] == "bytes":
            continue
        t[(flags, int(run), int(row[0]), row[3])] = float(row[4])
runs = sorted({k[1] for k in t})
sizes = sorted({k[2] for k in t})
algos = sorted({k[3] for k in t})
link = 125e6  # 1 Gbit/s in bytes per second
print(f"{tag}: µs medians over {len(runs)} runs; noput/default paired by run, median [min-max]")
print(f"{'bytes':>9} {'subject':>12} {'default':>10} {'noput':>10} {'noput/default':>20}")
for s in sizes:
    for a in algos:
        d = [t.get(("default", r, s, a)) for r in runs]
        n = [t.get(("noput", r, s, a)) for r in runs]
        if None in d or None in n:
            continue
        q = [y / x for x, y in zip(d, n)]
        print(f"{s:>9} {a:>12} {st.median(d):>10.0f} {st.median(n):>10.0f} "
              f"{st.median(q):>8.2f} [{min(q):.2f}-{max(q):.2f}]")
