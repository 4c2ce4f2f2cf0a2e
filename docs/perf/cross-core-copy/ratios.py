"""Run by run (xcopy-R.txt, then bench-R.csv a few seconds later): the
cross-core fetch that xcopy.c timed and the shm all-reduce and memcpy that
bench timed, at a few sizes. The runs met the cores in different states
(docs/results.md), so no medians are taken across them.
python3 ratios.py [folder]"""
import csv, glob, os, sys
here = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
print("µs per call or copy, rank 0's (xcopy) / the ranks' mean (bench); fetch: copy the 64 KiB or 1 MiB the other core just wrote")
for f in sorted(glob.glob(os.path.join(here, "xcopy-*.txt"))):
    x = {int(l.split()[0]): [float(v) for v in l.split()[1:]] for l in open(f) if l.split()[0].isdigit()}
    b = {(int(r['bytes']), r['algo'].split(':')[0]): float(r['avg_us'])
         for r in csv.DictReader(open(f.replace("xcopy-", "bench-").replace(".txt", ".csv")))}
    cells = [f"{s >> 10:>5} KiB: fetch {x[s][2]:7.1f}  shm {b[(s, 'shm')]:7.1f}  memcpy {b[(s, 'memcpy')]:6.1f}"
             for s in (65536, 1 << 20)]
    print(f"run {os.path.basename(f)[6:-4]}:  " + "  |  ".join(cells))
