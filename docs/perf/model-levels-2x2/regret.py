"""Offline regret of auto's model on 2 hosts x 2 ranks: each size's pick,
by `ringreduce cost --explain --nodes 2` from a calibration file, looked up
in the times measured for the fixed algorithms (every run.csv under the
folders given, medians), as a ratio to the fastest of them.

  python3 regret.py OLD_BIN NEW_BIN  [run folders...]
  (defaults: before/ hier-candidate/ levels/; OLD_BIN prices cal-before.json,
   NEW_BIN cal-after-1.json and cal-after-2.json)
"""
import collections, csv, glob, os, re, statistics as st, subprocess, sys

here = os.path.dirname(os.path.abspath(__file__))
old_bin, new_bin = sys.argv[1], sys.argv[2]
folders = sys.argv[3:] or ["before", "hier-candidate", "levels"]
t = collections.defaultdict(lambda: collections.defaultdict(list))
for folder in folders:
    for f in glob.glob(os.path.join(here, folder, "run*.csv")):
        for r in csv.DictReader(open(f)):
            if ":" not in r["algo"]:
                t[int(r["bytes"])][r["algo"]].append(float(r["avg_us"]))
fixed = ["butterfly", "rabenseifner", "hierarchical", "ring"]

def pick(binary, cal, n):
    out = subprocess.run([binary, "cost", "--ranks", "4", "--nodes", "2", "--bytes", str(n),
                          "--explain", "--calibration", os.path.join(here, cal)],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"auto chooses: (\w+)", out)
    return m.group(1)

variants = [("before", old_bin, "cal-before.json"), ("after-1", new_bin, "cal-after-1.json"),
            ("after-2", new_bin, "cal-after-2.json")]
print(f"{'bytes':>9} " + " ".join(f"{a[:6]:>8}" for a in fixed) + " | " +
      " | ".join(f"{v[0]:^16}" for v in variants))
worst = collections.defaultdict(float)
for n in sorted(t):
    med = {a: st.median(t[n][a]) for a in fixed}
    best = min(med.values())
    row = f"{n:>9} " + " ".join(f"{med[a]:8.0f}" for a in fixed) + " |"
    for name, b, cal in variants:
        a = pick(b, cal, n)
        r = med[a] / best
        worst[name] = max(worst[name], r)
        row += f" {a[:12]:>12} {r:4.2f} |"
    print(row)
print("worst ratio to the fastest fixed algorithm:", dict(worst))
