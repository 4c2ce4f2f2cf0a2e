"""Medians of the epoch, compute and exchange seconds per setting."""
import glob, os, re, statistics, sys
d = sys.argv[1]
rows = {}
for f in sorted(glob.glob(os.path.join(d, "*-[0-9].txt"))):
    setting = re.sub(r"-\d\.txt$", "", os.path.basename(f))
    for line in open(f):
        m = re.search(r"test accuracy ([\d.]+)\s+([\d.]+) s \(compute ([\d.]+) s, exchange ([\d.]+) s", line)
        if m:
            rows.setdefault(setting, []).append(tuple(float(x) for x in m.groups()))
print(f"{'setting':<12}{'epoch s':>9}{'compute s':>11}{'exchange s':>12}{'exchange %':>12}{'accuracy':>10}  runs")
base = None
for s in ["n1", "n2", "n2-buckets", "h4", "h4-buckets"]:
    r = rows.get(s, [])
    if not r:
        continue
    med = lambda i: statistics.median(x[i] for x in r)
    print(f"{s:<12}{med(1):>9.2f}{med(2):>11.2f}{med(3):>12.2f}{100 * med(3) / med(1):>11.1f}%{med(0):>10.4f}  {len(r)}")
    base = base or med(1)
n1, n2 = rows.get("n1"), rows.get("n2")
if n1 and n2:
    print(f"speed-up 2 ranks / 1 rank (medians): {statistics.median(x[1] for x in n1) / statistics.median(x[1] for x in n2):.2f}")
