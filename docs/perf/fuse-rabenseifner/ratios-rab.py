"""Medians over runs and paired ratios (same run, same size) for docs/perf/fuse-rabenseifner."""
import csv, statistics as st, glob
def load(tag):
    runs = []
    for f in sorted(glob.glob(f"rab-{tag}-*.csv")):
        d = {}
        for r in csv.DictReader(open(f)):
            d[(int(r['bytes']), r['algo'].split(':')[0])] = float(r['avg_us'])
        runs.append(d)
    return runs
old, new = load('new'), load('rab')
sizes = sorted({k[0] for k in old[0]})
med = lambda runs, s, a: st.median(r[(s, a)] for r in runs)
ratio = lambda runs, s, a, b: st.median(r[(s, a)] / r[(s, b)] for r in runs)
print("4 hosts x 1 rank, 1 Gbit/s namespace links, f32 sum, out of place, medians of 3 interleaved runs (old, new alternating), -n 100 -w 10, bench --calibrate")
print("old: 32ca786 (agreement before every Rabenseifner call); new: the agreement rides in Rabenseifner's reduce-scatter up to 1 MiB")
print(f"{'bytes':>8} | {'rab old':>9} {'rab new':>9} {'nochk new':>9} {'mpi new':>9} | {'chk/nochk old':>13} {'chk/nochk new':>13} | {'rab/mpi old':>11} {'rab/mpi new':>11}")
for s in sizes:
    print(f"{s:>8} | {med(old,s,'rabenseifner'):9.1f} {med(new,s,'rabenseifner'):9.1f} {med(new,s,'rabenseifner-nocheck'):9.1f} {med(new,s,'mpi'):9.1f} | "
          f"{ratio(old,s,'rabenseifner','rabenseifner-nocheck'):13.2f} {ratio(new,s,'rabenseifner','rabenseifner-nocheck'):13.2f} | "
          f"{ratio(old,s,'rabenseifner','mpi'):11.2f} {ratio(new,s,'rabenseifner','mpi'):11.2f}")
