#!/usr/bin/env python3
"""auto/best per size from the run*.csv of scripts/bench.sh result directories: the
median over runs of auto's time against the fastest fixed algorithm's median.
   scripts/regret.py RESULTS_DIR...
"""
import sys,csv,glob,statistics as st,collections
if not sys.argv[1:] or sys.argv[1] in ("-h", "--help"):
    print(__doc__.strip()); sys.exit(0)
for d in sys.argv[1:]:
    print('#', d)
    t=collections.defaultdict(list); name={}
    for f in sorted(glob.glob(d+'/run*.csv')):
        for r in csv.DictReader(l for l in open(f) if not l.startswith('#')):
            a=r['algo']; key=(int(r['bytes']), 'auto' if a.startswith('auto') else a)
            t[key].append(float(r['avg_us']))
            if a.startswith('auto'): name.setdefault(int(r['bytes']),[]).append(a.split(':')[-1].split('→')[-1].strip())
    sizes=sorted({k[0] for k in t})
    for b in sizes:
        fixed={a:st.median(v) for (bb,a),v in t.items() if bb==b and a not in ('auto','mpi')}
        best=min(fixed,key=fixed.get); au=st.median(t[(b,'auto')])
        print('%8d auto %-32s %8.1f  best %-9s %8.1f  auto/best %.2f'%(b, ','.join(name[b]), au, best, fixed[best], au/fixed[best]))
