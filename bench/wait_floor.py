#!/usr/bin/env python3
"""Floor of slow starts that no fleet or scaling policy can avoid (issue 3's p95 goal).

SPEC §6/§11: a server asleep longer than the sleep window is archived, and its next start
restores the world (disk_gb × 10 s at 100 MB/s) before the boot (20 s). Such a start waits
longer than `--wait` whenever disk_gb × 10 + 20 > wait, however much capacity is ready. This
counts those requests in a dataset (wanted run intervals as SPEC §4 defines them) and checks
whether a p95 start wait ≤ `--wait` is reachable at all, even if the allowed abandonments
(`--abandoned`, default: the reference policy's 185 on the demo) all fall on them.

  python3 bench/wait_floor.py [DATASET_DIR] [--sleep-window-h 48] [--wait 30] [--abandoned 185]
"""
import argparse
import datetime as dt
import math
import os
import sys
import tomllib

sys.path.insert(0, os.path.dirname(__file__))
import wanted  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("dataset", nargs="?", default="datasets/demo")
ap.add_argument("--sleep-window-h", type=float, default=48)
ap.add_argument("--wait", type=float, default=30)
ap.add_argument("--boot-s", type=float, default=20)
ap.add_argument("--restore-mb-s", type=float, default=100)
ap.add_argument("--idle-timeout-s", type=float, default=300)
ap.add_argument("--abandoned", type=int, default=185)
a = ap.parse_args()

meta = tomllib.load(open(f"{a.dataset}/meta.toml", "rb"))
t0, t1 = dt.datetime.fromisoformat(meta["start"]), dt.datetime.fromisoformat(meta["end"])
servers, wanted_by_server = wanted.load(a.dataset, a.idle_timeout_s)

requests = archived = forced_slow = 0
for sid, merged in wanted_by_server.items():
    merged = [m for m in merged if m[1] > t0 and m[0] < t1]  # wholly outside: ignored
    slow = float(servers[sid]["disk_gb"]) * 1000 / a.restore_mb_s + a.boot_s > a.wait
    for i, (s, _) in enumerate(merged):
        requests += 1
        # Every server starts the window new; a later request finds its world archived when
        # its previous stop lies more than the sleep window back.
        if i > 0 and (s - merged[i - 1][1]).total_seconds() > a.sleep_window_h * 3600:
            archived += 1
            forced_slow += slow

starts = requests - a.abandoned
slow_left = max(0, forced_slow - a.abandoned)
allowed = starts - math.ceil(0.95 * starts)  # nearest rank: the p95 is the ⌈0.95 n⌉-th wait
print(f"{a.dataset}: {requests} requests; {archived} find their world archived "
      f"(sleep window {a.sleep_window_h:g} h), {forced_slow} of them cannot restore and boot "
      f"within {a.wait:g} s")
print(f"even with all {a.abandoned} allowed abandonments on them: {slow_left} slow of {starts} "
      f"starts ({slow_left / starts:.1%}); p95 ≤ {a.wait:g} s allows {allowed}: "
      + ("unreachable by any fleet or policy" if slow_left > allowed else "not ruled out by this count"))
