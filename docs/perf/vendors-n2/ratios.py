"""Both vendors side by side: medians over each build's 5 runs, and auto/vendor as the median of paired (same run, same size) ratios."""
import csv, statistics as st, glob, os
here = os.path.dirname(os.path.abspath(__file__))
def load(sub):
    runs = []
    for f in sorted(glob.glob(os.path.join(here, sub, "run*.csv"))):
        runs.append({(int(r['bytes']), r['algo'].split(':')[0]): float(r['avg_us']) for r in csv.DictReader(open(f))})
    return runs
o, m = load("openmpi"), load("mpich")
sizes = sorted({k[0] for k in o[0]})
med = lambda runs, s, a: st.median(r[(s, a)] for r in runs)
ratio = lambda runs, s: st.median(r[(s, 'auto')] / r[(s, 'mpi')] for r in runs)
def us(x):
    return f"{x:.3g}" if x < 1000 else f"{x:.0f}"
def size(b):
    for unit, n in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if b >= n: return f"{b // n} {unit}"
    return f"{b} B"
print("2 ranks, shared memory, bound to cores, f32 sum, out of place (each run also times in place); medians of 5 runs per build (subjects rotated)")
print("| size | Open MPI 4.1.4 (µs) | auto, Open MPI build (µs) | auto / Open MPI | MPICH 4.0.2 (µs) | auto, MPICH build (µs) | auto / MPICH |")
print("|---|---:|---:|---:|---:|---:|---:|")
for s in sizes:
    print(f"| {size(s)} | {us(med(o,s,'mpi'))} | {us(med(o,s,'auto'))} | {ratio(o,s):.2f} | {us(med(m,s,'mpi'))} | {us(med(m,s,'auto'))} | {ratio(m,s):.2f} |")
