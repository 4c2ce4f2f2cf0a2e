"""Medians of 3 runs per setting: tbf burst x timed iterations, vendor and unchecked butterfly, 4 hosts at 1 Gbit/s."""
import csv, statistics as st, glob, os
here = os.path.dirname(os.path.abspath(__file__))
def load(burst, n):
    return [{(int(r['bytes']), r['algo']): float(r['avg_us']) for r in csv.DictReader(open(f))}
            for f in sorted(glob.glob(os.path.join(here, f"b{burst}-n{n}-r*.csv")))]
sizes = [1024, 2048, 4096, 8192, 16384, 32768]
line = lambda s: 2 * s * 8 / 1e9 * 1e6  # two full-size rounds per rank at line rate, µs
print("4 hosts x 1 rank, tbf rate 1gbit, f32 sum, out of place, -w 10; median avg_us of 3 runs; 'line' = the butterfly's 2 rounds of n bytes at 1 Gbit/s")
for algo in ["mpi", "butterfly-nocheck"]:
    print(f"\n{algo}")
    print(f"{'bytes':>6} {'line':>6} | " + " ".join(f"{b+' n'+str(n):>12}" for b in ['512kb', '16kb'] for n in [20, 200, 2000]))
    for s in sizes:
        cells = []
        for b in ['512kb', '16kb']:
            for n in [20, 200, 2000]:
                runs = load(b, n)
                cells.append(f"{st.median(r[(s, algo)] for r in runs):12.1f}")
        print(f"{s:>6} {line(s):6.1f} | " + " ".join(cells))
