"""Medians over runs and paired ratios (same run, same size) for docs/perf/fuse-max."""
import csv, sys, statistics as st, collections, glob
def load(tag):
    runs = []
    for f in sorted(glob.glob(f"cal-{tag}-*.csv")):
        d = {}
        for r in csv.DictReader(open(f)):
            a = r['algo'].split(':')[0]
            d[(int(r['bytes']), a)] = float(r['avg_us'])
        runs.append(d)
    return runs
old, new = load('old'), load('new')
sizes = sorted({k[0] for k in old[0]})
def med(runs, s, a): return st.median(r[(s, a)] for r in runs)
def ratio(runs, s, a, b): return st.median(r[(s, a)] / r[(s, b)] for r in runs)
print("4 hosts x 1 rank, 1 Gbit/s namespace links, f32 sum, out of place, medians of 3 interleaved runs (old, new alternating), -n 100 -w 10, auto calibrated in each job (bench --calibrate)")
print("old: FUSE_MAX 4048 B (main 7c406e9); new: FUSE_MAX 64512 B")
print(f"{'bytes':>8} | {'bfly old':>9} {'bfly new':>9} {'nochk':>9} | {'chk/nochk old':>13} {'chk/nochk new':>13} | {'auto old':>9} {'auto new':>9} {'mpi':>9} | {'auto/mpi old':>12} {'auto/mpi new':>12}")
for s in sizes:
    print(f"{s:>8} | {med(old,s,'butterfly'):9.1f} {med(new,s,'butterfly'):9.1f} {med(new,s,'butterfly-nocheck'):9.1f} | "
          f"{ratio(old,s,'butterfly','butterfly-nocheck'):13.2f} {ratio(new,s,'butterfly','butterfly-nocheck'):13.2f} | "
          f"{med(old,s,'auto'):9.1f} {med(new,s,'auto'):9.1f} {med(new,s,'mpi'):9.1f} | "
          f"{ratio(old,s,'auto','mpi'):12.2f} {ratio(new,s,'auto','mpi'):12.2f}")
