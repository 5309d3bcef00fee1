"""Wanted run intervals of a dataset (SPEC §4), for the analysis scripts in bench/.

For each server, the union of its sessions — a pay-per-use server's extended by the idle
timeout — with touching intervals merged, sorted by start. The twin's own version is
`conductor_sim::dataset::wanted_intervals`; this one stays in step with it for the scripts.
"""
import csv
import datetime as dt


def load(dataset, idle_timeout_s=300):
    """Returns (servers by id as csv rows, {server id: [[start, end], ...]} merged)."""
    servers = {r["server_id"]: r for r in csv.DictReader(open(f"{dataset}/servers.csv"))}
    sessions = {}
    for r in csv.DictReader(open(f"{dataset}/sessions.csv")):
        s = dt.datetime.fromisoformat(r["start"].replace("Z", "+00:00"))
        e = dt.datetime.fromisoformat(r["end"].replace("Z", "+00:00"))
        if servers[r["server_id"]]["pay_per_use"] == "true":
            e += dt.timedelta(seconds=idle_timeout_s)
        sessions.setdefault(r["server_id"], []).append((s, e))
    merged = {}
    for sid, iv in sessions.items():
        out = []
        for s, e in sorted(iv):
            if out and s <= out[-1][1]:
                out[-1][1] = max(out[-1][1], e)
            else:
                out.append([s, e])
        merged[sid] = out
    return servers, merged
