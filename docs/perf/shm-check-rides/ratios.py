"""Checked ÷ unchecked `auto` (shm) and auto ÷ vendor, old and new, from
the run CSVs here: medians over runs of ratios paired within a run."""
import csv, glob, statistics as st, collections, os
os.chdir(os.path.dirname(os.path.abspath(__file__)))

def load(which):
    t = collections.defaultdict(lambda: collections.defaultdict(list))
    for f in sorted(glob.glob(f"{which}-*.csv")):
        for r in csv.DictReader(open(f)):
            t[int(r["bytes"])][r["algo"].split(":")[0]].append((float(r["avg_us"]), float(r["ip_avg_us"])))
    return t

def ratio(a, b, i):
    return st.median(x[i] / y[i] for x, y in zip(a, b))

old, new = load("old"), load("new")
print("2 ranks, f32 sum, medians of paired ratios over", len(glob.glob("new-*.csv")), "runs each")
print(f"{'bytes':>9} | {'checked/unchecked':^31} | {'auto/vendor (out of place)':^26}")
print(f"{'':>9} | {'old oop':>7} {'new oop':>7} {'old ip':>7} {'new ip':>7} | {'old':>6} {'new':>6} {'new-old':>8} | checked µs old, new | unchecked µs old, new")
for n in sorted(new):
    o, w = old[n], new[n]
    print(f"{n:>9} | {ratio(o['auto'], o['auto-nocheck'], 0):7.2f} {ratio(w['auto'], w['auto-nocheck'], 0):7.2f} "
          f"{ratio(o['auto'], o['auto-nocheck'], 1):7.2f} {ratio(w['auto'], w['auto-nocheck'], 1):7.2f} | "
          f"{ratio(o['auto'], o['mpi'], 0):6.2f} {ratio(w['auto'], w['mpi'], 0):6.2f} "
          f"{ratio(w['auto'], w['mpi'], 0) - ratio(o['auto'], o['mpi'], 0):+8.2f} | {st.median(x[0] for x in o['auto']):8.3f} {st.median(x[0] for x in w['auto']):8.3f} | {st.median(x[0] for x in o['auto-nocheck']):8.3f} {st.median(x[0] for x in w['auto-nocheck']):8.3f}")
