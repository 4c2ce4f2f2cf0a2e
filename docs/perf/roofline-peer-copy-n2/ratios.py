"""Medians over runs and paired ratios (same run, same size) of auto (shm)
against the two rooflines: memcpy (each rank copies n private bytes) and
peer-copy (each rank copies the n bytes its neighbour's core just wrote).
python3 ratios.py [folder with run*.csv]"""
import csv, glob, os, statistics as st, sys
here = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
runs = [{(int(r['bytes']), r['algo'].split(':')[0]): float(r['avg_us']) for r in csv.DictReader(open(f))}
        for f in sorted(glob.glob(os.path.join(here, "run*.csv")))]
sizes = sorted({k[0] for k in runs[0]})
med = lambda s, a: st.median(r[(s, a)] for r in runs)
def ratio(s, a, b):
    v = sorted(r[(s, a)] / r[(s, b)] for r in runs)
    return f"{st.median(v):5.2f} [{v[0]:.2f}–{v[-1]:.2f}]"
print(f"2 ranks on 2 cores, f32 sum, out of place; medians of {len(runs)} runs (subjects rotated), µs per call;")
print("ratios paired within each run: median [min–max]")
print(f"{'bytes':>9} {'memcpy':>8} {'peer-copy':>10} {'auto':>8} {'mpi':>8} {'peer-copy/memcpy':>20} {'auto/memcpy':>18} {'auto/peer-copy':>18} {'auto/mpi':>18}")
for s in sizes:
    print(f"{s:>9} {med(s,'memcpy'):8.2f} {med(s,'peer-copy'):10.2f} {med(s,'auto'):8.2f} {med(s,'mpi'):8.2f}"
          f" {ratio(s,'peer-copy','memcpy'):>20} {ratio(s,'auto','memcpy'):>18} {ratio(s,'auto','peer-copy'):>18} {ratio(s,'auto','mpi'):>18}")
