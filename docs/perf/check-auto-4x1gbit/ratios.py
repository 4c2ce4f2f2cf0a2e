"""Checked ÷ unchecked `auto` and auto ÷ vendor, paired within each run
(medians and ranges over the runs here)."""
import collections, csv, glob, os, statistics as st
here = os.path.dirname(os.path.abspath(__file__))
t = collections.defaultdict(lambda: collections.defaultdict(list))
for f in sorted(glob.glob(os.path.join(here, "run*.csv"))):
    for r in csv.DictReader(open(f)):
        t[int(r["bytes"])][r["algo"].split(":")[0]].append(float(r["avg_us"]))
print(f"{'bytes':>9} {'auto us':>10} {'nocheck us':>11}  checked/unchecked [range]  auto/vendor")
for n in sorted(t):
    x = t[n]
    c = [a / b for a, b in zip(x["auto"], x["auto-nocheck"])]
    v = [a / b for a, b in zip(x["auto"], x["mpi"])]
    print(f"{n:>9} {st.median(x['auto']):10.1f} {st.median(x['auto-nocheck']):11.1f}  "
          f"{st.median(c):6.3f} [{min(c):.2f}-{max(c):.2f}]        {st.median(v):.2f}")
