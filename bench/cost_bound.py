#!/usr/bin/env python3
"""Perfect-foresight lower bound of infrastructure cost for a dataset's demand.

Per hour, the fleet needs the hour's peak wanted RAM (wanted run intervals, pay-per-use
+ 5 min); dedicated nodes are paid for the whole window, cloud VMs per hour, with no
packing loss, provisioning lead or hour-boundary waste. Prints the bound per fleet mix.
Used in BENCHMARKS.md ("Policies"). Usage: python3 bench/cost_bound.py [DATASET_DIR]
(the window length H below is the demo's 336 h; change it for other datasets).
"""
import datetime as dt, math, os
import sys
sys.path.insert(0, os.path.dirname(__file__))
import wanted
d=sys.argv[1] if len(sys.argv)>1 else 'datasets/demo'
t0=dt.datetime.fromisoformat('2025-10-05T22:00:00+00:00'); H=336
srv, per = wanted.load(d)
dem=[0]*(H*60)
for sid,merged in per.items():
    m=int(srv[sid]['ram_mib'])
    for s,e in merged:
        a=max(0,int((s-t0).total_seconds()//60)); b=min(H*60,int(math.ceil((e-t0).total_seconds()/60)))
        for i in range(a,b): dem[i]+=m
print("avg GiB", sum(dem)/len(dem)/1024, "peak", max(dem)/1024)
hourly_peak=[max(dem[h*60:(h+1)*60]) for h in range(H)]
vms={'cx23':(4096*0.85,0.006),'cpx32':(8192*0.85,0.016),'cx43':(16384*0.85,0.021)}
for nded in [0,1,2]:
    ded_usable=nded*63236; ded_cost=nded*70*H/720
    for name,(u,p) in vms.items():
        cost=ded_cost+sum(math.ceil(max(0,hp-ded_usable)/u)*p for hp in hourly_peak)
        print(nded,"AX41 +",name, round(cost,2))
