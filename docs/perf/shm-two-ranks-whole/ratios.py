"""Old vs new shm at 2 ranks: medians over runs, and ratios paired by run
(old-R.csv was taken just before new-R.csv) and within each run (to memcpy,
to the vendor, to peer-copy). python3 ratios.py [folder]"""
import csv, glob, os, statistics as st, sys
here = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
load = lambda f: {(int(r['bytes']), r['algo']): float(r['avg_us']) for r in csv.DictReader(open(f))}
pairs = [(load(f), load(f.replace("old-", "new-"))) for f in sorted(glob.glob(os.path.join(here, "old-*.csv")))]
sizes = sorted({k[0] for k in pairs[0][0]})
def rng(v):
    v = sorted(v)
    return f"{st.median(v):5.2f} [{v[0]:.2f}–{v[-1]:.2f}]"
print(f"2 ranks on 2 cores, f32 sum, out of place; {len(pairs)} runs, old and new binaries in turn; µs medians,")
print("ratios median [min–max] over the runs: new/old shm paired by run; the others within one run")
print(f"{'bytes':>9} {'old shm':>9} {'new shm':>9} {'new/old':>17} {'old/vendor':>17} {'new/vendor':>17} {'new/memcpy':>17} {'new/peer-copy':>17}")
for s in sizes:
    o = [a[(s, 'shm')] for a, _ in pairs]; n = [b[(s, 'shm')] for _, b in pairs]
    print(f"{s:>9} {st.median(o):9.2f} {st.median(n):9.2f} {rng([b[(s,'shm')]/a[(s,'shm')] for a,b in pairs]):>17}"
          f" {rng([a[(s,'shm')]/a[(s,'mpi')] for a,_ in pairs]):>17} {rng([b[(s,'shm')]/b[(s,'mpi')] for _,b in pairs]):>17}"
          f" {rng([b[(s,'shm')]/b[(s,'memcpy')] for _,b in pairs]):>17} {rng([b[(s,'shm')]/b[(s,'peer-copy')] for _,b in pairs]):>17}")
