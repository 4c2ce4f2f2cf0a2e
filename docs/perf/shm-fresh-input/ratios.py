"""Per size: medians over runs of each subject's time out of place (avg_us)
and in place (ip_avg_us), and the ratios butterfly/shm and shm/mpi paired
within each run, median [min-max]."""
import csv, glob, os, statistics as st
here = os.path.dirname(os.path.abspath(__file__))
runs = []
for f in sorted(glob.glob(os.path.join(here, "run*.csv"))):
    t = {}
    for row in csv.DictReader(open(f)):
        t[(int(row["bytes"]), row["algo"])] = (float(row["avg_us"]), float(row["ip_avg_us"]))
    runs.append(t)
sizes = sorted({b for t in runs for b, _ in t})
def m(v):
    return f"{st.median(v):5.2f} [{min(v):.2f}-{max(v):.2f}]"
print(f"2 ranks on 2 cores, f32 sum, {len(runs)} runs; µs medians; ratios paired within each run")
print(f"{'bytes':>8} | {'out of place: shm':>17} {'butterfly':>9} {'mpi':>6} {'butterfly/shm':>19} {'shm/mpi':>19} |"
      f" {'in place: shm':>13} {'butterfly':>9} {'mpi':>6} {'butterfly/shm':>19} {'shm/mpi':>19}")
for b in sizes:
    cols = []
    for i in (0, 1):
        s = [t[(b, "shm")][i] for t in runs]
        f = [t[(b, "butterfly")][i] for t in runs]
        v = [t[(b, "mpi")][i] for t in runs]
        cols.append(f"{st.median(s):>9.2f} {st.median(f):>9.2f} {st.median(v):>6.2f} "
                    f"{m([y / x for x, y in zip(s, f)]):>19} {m([x / y for x, y in zip(s, v)]):>19}")
    print(f"{b:>8} | {cols[0]:>50} | {cols[1]}")
