"""Medians over runs and paired ratios (same run, same size): auto and the vendor against the memcpy roofline.
The runs are this folder's run*.csv, or those of the folder given: python3 ratios.py ../roofline-n2-piece512"""
import csv, statistics as st, glob, os, sys
here = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
runs = []
for f in sorted(glob.glob(os.path.join(here, "run*.csv"))):
    runs.append({(int(r['bytes']), r['algo'].split(':')[0]): float(r['avg_us']) for r in csv.DictReader(open(f))})
sizes = sorted({k[0] for k in runs[0]})
med = lambda s, a: st.median(r[(s, a)] for r in runs)
ratio = lambda s, a, b: st.median(r[(s, a)] / r[(s, b)] for r in runs)
print(f"2 ranks, shared memory, bound to cores, f32 sum, out of place, default iterations; medians of {len(runs)} runs (subject order rotated)")
print(f"{'bytes':>9} {'memcpy us':>10} {'auto us':>9} {'mpi us':>9} {'auto/memcpy':>12} {'mpi/memcpy':>11} {'auto/mpi':>9}")
for s in sizes:
    print(f"{s:>9} {med(s,'memcpy'):10.2f} {med(s,'auto'):9.2f} {med(s,'mpi'):9.2f} {ratio(s,'auto','memcpy'):12.2f} {ratio(s,'mpi','memcpy'):11.2f} {ratio(s,'auto','mpi'):9.2f}")
