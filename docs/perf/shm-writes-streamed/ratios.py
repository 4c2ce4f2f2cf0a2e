"""shm / vendor at 2 ranks by way of writing the pieces (cached = the
default, streamed, old = the build before the setting), paired within
each run; median over runs, and split by the state of the cores in that
run at that size: vendor/memcpy (the vendor's copies go through the cache,
memcpy stays in one core) is bimodal when the runs met both states; the
split is at the geometric middle of its range when max/min > 1.6, else
every run is counted as one state. python3 ratios.py FOLDER"""
import csv, glob, math, os, statistics as st, sys
d = sys.argv[1]
modes = [m for m in ['old', 'cached', 'streamed', 'auto'] if glob.glob(os.path.join(d, f'{m}-*.csv'))]
load = lambda f: {(int(r['bytes']), r['algo']): float(r['avg_us']) for r in csv.DictReader(open(f))}
runs = {m: [load(f) for f in sorted(glob.glob(os.path.join(d, f'{m}-*.csv')))] for m in modes}
sizes = sorted({s for s, a in runs['cached'][0] if a == 'shm'})
state = lambda r, s: r[(s, 'mpi')] / r[(s, 'memcpy')]
print(f"{os.path.basename(os.path.normpath(d))}: 2 ranks bound to cores, f32 sum, out of place; {len(runs['cached'])} runs of each, interleaved")
print("shm / vendor, median of the runs [n]: all runs | runs in the fast state | runs in the slow state (by vendor/memcpy)")
print(f"{'bytes':>9} " + " ".join(f"{m:>9}" for m in modes) + " | " + " ".join(f"{m:>12}" for m in modes) + " | " + " ".join(f"{m:>12}" for m in modes))
for s in sizes:
    every = [state(r, s) for m in modes for r in runs[m]]
    lo, hi = min(every), max(every)
    cut = math.sqrt(lo * hi) if hi / lo > 1.6 else float('inf')
    cols = [f"{st.median(r[(s,'shm')] / r[(s,'mpi')] for r in runs[m]):9.2f}" for m in modes]
    for fast in (True, False):
        for m in modes:
            v = [r[(s, 'shm')] / r[(s, 'mpi')] for r in runs[m] if (state(r, s) <= cut) == fast]
            cols.append(f"{st.median(v):7.2f} [{len(v)}]" if v else f"{'-':>12}")
    k = len(modes); print(f"{s:>9} " + " ".join(cols[:k]) + " | " + " ".join(f"{c:>12}" for c in cols[k:2 * k]) + " | " + " ".join(f"{c:>12}" for c in cols[2 * k:]))
