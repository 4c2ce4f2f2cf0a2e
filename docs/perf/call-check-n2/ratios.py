import sys, statistics, glob, collections
# medians over runs of time(us) out-of-place per (size, algo)
t = collections.defaultdict(list)
for f in sorted(glob.glob(sys.argv[1] + "/run*.txt")):
    for l in open(f):
        p = l.split()
        if len(p) > 5 and p[0].isdigit():
            t[(int(p[0]), p[3].split(":")[0])].append(float(p[4]))
sizes = sorted({s for s, _ in t})
pairs = [("butterfly", "butterfly-nocheck"), ("auto", "auto-nocheck")]
print(f"{'size':>9} " + " ".join(f"{a+'/'+b:>30}" for a, b in pairs) + "   medians (us): " + " ".join(a for a in ["butterfly","butterfly-nocheck","auto","auto-nocheck","mpi"]))
for s in sizes:
    row = []
    for a, b in pairs:
        if (s, a) in t and (s, b) in t:
            # ratio per run, then the median
            r = [x / y for x, y in zip(t[(s, a)], t[(s, b)])]
            row.append(f"{statistics.median(r):30.2f}")
        else:
            row.append(f"{'-':>30}")
    med = " ".join(f"{statistics.median(t[(s,a)]):.2f}" if (s, a) in t else "-" for a in ["butterfly","butterfly-nocheck","auto","auto-nocheck","mpi"])
    print(f"{s:>9} " + " ".join(row) + "   " + med)
