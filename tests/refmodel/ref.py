#!/usr/bin/env python3
"""Independent reference model of the SPEC §11 "reference reactive policy".

Usage: python3 ref.py DATASET_DIR [--seed N] [--order sessions|servers]
                      [--dedicated N] [--max-vms N] [--trace] [--extra]

Standard library only.  All money is exact (fractions.Fraction / decimal) and
rounded half-even to 6 dp; all time is integer milliseconds since the epoch.
See CHOICES.md next to this file for every reading of the SPEC taken here.
"""
import argparse
import csv
import heapq
import json
import os
import sys
import tomllib
from datetime import datetime, timezone
from decimal import Decimal
from fractions import Fraction

# ---------------------------------------------------------------- config ----
MS = 1000
HOUR = 3600 * MS
MONTH_H = 720

CFG = dict(
    dedicated_nodes=2,
    ded_ram_mib=65536,
    ded_reserve_mib=2300,
    ded_monthly_eur=Decimal("70"),
    vm_ram_mib=8192,
    vm_reserve_pct=Fraction(15, 100),
    vm_hourly_eur=Decimal("0.016"),
    vm_monthly_cap_eur=Decimal("11.99"),
    # SPEC §5: without dedicated nodes the control plane needs a VM of its own, the
    # catalogue's smallest (cx23), for the whole horizon.
    cp_hourly_eur=Decimal("0.006"),
    cp_monthly_cap_eur=Decimal("3.99"),
    max_vms=20,
    boot_ms=20 * MS,
    restore_ms_per_gb=10 * MS,          # disk_gb x 10 s  (100 MB/s)
    provision_ms=120 * MS,
    idle_timeout_ms=5 * 60 * MS,
    give_up_ms=10 * 60 * MS,
    sleep_window_ms=48 * HOUR,
    interval_ms=120 * MS,
    up=Fraction(85, 100),
    down=Fraction(30, 100),
    low_for_ms=30 * 60 * MS,
    cooldown_ms=300 * MS,
    active_eur_per_gib_h=Fraction(2, 100),
    sleep_eur_per_gb_month=Fraction(10, 100),
    archive_eur_per_1000gb_month=Fraction(3),
    promo_eur=Decimal("5"),
)

# event ranks at one instant (SPEC §11 rule 8)
R_STOP, R_BOOT, R_READY, R_ABANDON, R_ARCHIVE, R_TICK, R_REQUEST = range(7)


SCAN_BATCH = False  # diagnostic: one scan after all same-instant stops


class InputError(Exception):
    pass


def parse_ts(s, where):
    s = s.strip()
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise InputError(f"{where}: bad RFC 3339 timestamp {s!r}")
    if dt.tzinfo is None:
        raise InputError(f"{where}: timestamp without offset {s!r}")
    # exact integer ms (microseconds truncated toward -inf to whole ms)
    delta = dt - datetime(1970, 1, 1, tzinfo=timezone.utc)
    us = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    return us // 1000


def round6(x):
    """Fraction -> Decimal, round half even to 6 dp."""
    n = round(Fraction(x) * 10**6)  # Fraction.__round__ is half-even
    return Decimal(n).scaleb(-6).quantize(Decimal("0.000001"))


def ceil_div(a, b):
    return -((-a) // b)


# ------------------------------------------------------------------ load ----
def load(ds, order):
    with open(os.path.join(ds, "meta.toml"), "rb") as f:
        meta = tomllib.load(f)
    w0 = parse_ts(str(meta["start"]), "meta.toml:start")
    w1 = parse_ts(str(meta["end"]), "meta.toml:end")
    if w1 <= w0:
        raise InputError("meta.toml: end must be after start")

    servers = []
    by_id = {}
    path = os.path.join(ds, "servers.csv")
    with open(path, newline="") as f:
        rd = csv.DictReader(f)
        for row in rd:
            line = rd.line_num
            where = f"servers.csv:{line}"
            sid = row["server_id"].strip()
            if not sid or sid in by_id:
                raise InputError(f"{where}: empty or duplicate server_id {sid!r}")
            try:
                ram = int(row["ram_mib"])
            except ValueError:
                raise InputError(f"{where}: ram_mib not an integer")
            if ram <= 0:
                raise InputError(f"{where}: ram_mib must be > 0")
            try:
                disk = Fraction(Decimal(row["disk_gb"].strip()))
            except Exception:
                raise InputError(f"{where}: disk_gb not a number")
            if disk < 0:
                raise InputError(f"{where}: disk_gb negative")
            ppu = row["pay_per_use"].strip().lower()
            if ppu not in ("true", "false"):
                raise InputError(f"{where}: pay_per_use must be true/false")
            if row["cost_mode"].strip() not in ("off", "suggest", "auto"):
                raise InputError(f"{where}: bad cost_mode")
            created = parse_ts(row["created_at"], where + ":created_at")
            s = Server(len(servers), sid, row["owner_id"].strip(), ram, disk,
                       ppu == "true", created)
            servers.append(s)
            by_id[sid] = s

    raw = {}  # server index -> list of (start, end, line)
    path = os.path.join(ds, "sessions.csv")
    with open(path, newline="") as f:
        rd = csv.DictReader(f)
        for row in rd:
            line = rd.line_num
            where = f"sessions.csv:{line}"
            sid = row["server_id"].strip()
            if sid not in by_id:
                raise InputError(f"{where}: unknown server_id {sid!r}")
            a = parse_ts(row["start"], where + ":start")
            b = parse_ts(row["end"], where + ":end")
            if b < a:
                raise InputError(f"{where}: end before start")
            try:
                p = int(row["players"])
            except ValueError:
                raise InputError(f"{where}: players not an integer")
            if p < 0:
                raise InputError(f"{where}: players negative")
            s = by_id[sid]
            if s.ppu:
                b += CFG["idle_timeout_ms"]
            if b <= a:
                continue  # empty [a,a) interval of a non-pay-per-use server
            raw.setdefault(s.idx, []).append((a, b, line))

    # wanted run intervals: union, touching intervals merge; then clip
    intervals = []  # (r, end, key, server)
    for idx, lst in raw.items():
        lst.sort()
        merged = []
        for a, b, line in lst:
            if merged and a <= merged[-1][1]:
                if b > merged[-1][1]:
                    merged[-1][1] = b
            else:
                merged.append([a, b, line])
        s = servers[idx]
        for a, b, line in merged:
            if b <= w0 or a >= w1:
                continue  # wholly outside the window
            r = max(a, w0)
            key = line if order == "sessions" else (s.idx, a)
            intervals.append((r, b, key, s))
    return meta, w0, w1, servers, intervals


# ----------------------------------------------------------------- model ----
class Server:
    __slots__ = ("idx", "sid", "owner", "ram", "disk", "ppu", "created",
                 "rest", "node", "req", "since", "sleep_token",
                 "active_ms", "sleep_ms", "archive_ms")

    def __init__(self, idx, sid, owner, ram, disk, ppu, created):
        self.idx, self.sid, self.owner = idx, sid, owner
        self.ram, self.disk, self.ppu, self.created = ram, disk, ppu, created
        self.rest = "new"      # new | sleeping | archived | active
        self.node = None       # sleeping node or active node
        self.req = None        # current request (queued/starting/running)
        self.since = None      # start of the current billed state
        self.sleep_token = 0
        self.active_ms = 0
        self.sleep_ms = 0
        self.archive_ms = 0


class Node:
    __slots__ = ("nid", "cloud", "usable", "free", "ready", "deleted",
                 "busy", "sleepers", "created", "gone")

    def __init__(self, nid, cloud, usable, created, ready):
        self.nid, self.cloud, self.usable = nid, cloud, usable
        self.free = usable
        self.ready = ready
        self.deleted = False
        self.busy = 0          # starting + running servers
        self.sleepers = set()
        self.created = created
        self.gone = None


class Req:
    __slots__ = ("rid", "server", "r", "end", "key", "phase", "t_run", "t_place", "restores")

    def __init__(self, rid, server, r, end, key):
        self.rid, self.server, self.r, self.end, self.key = rid, server, r, end, key
        self.phase = None
        self.t_run = None
        self.t_place = None
        self.restores = False


class Sim:
    def __init__(self, w0, w1, servers, intervals, trace=False):
        self.w0, self.w1 = w0, w1
        self.servers = servers
        self.trace = trace
        self.heap = []
        self.seq = 0
        self.nodes = []        # dedicated in order, then VMs in creation order
        usable_d = CFG["ded_ram_mib"] - CFG["ded_reserve_mib"]
        for i in range(CFG["dedicated_nodes"]):
            self.nodes.append(Node(f"ded-{i+1}", False, usable_d, w0, True))
        # usable RAM of a VM: reserve = ceil(15 % of RAM) -> usable = floor(85 %)
        vm_res = ceil_div(CFG["vm_ram_mib"] * CFG["vm_reserve_pct"].numerator,
                          CFG["vm_reserve_pct"].denominator)
        self.vm_usable = CFG.get("vm_usable_override", CFG["vm_ram_mib"] - vm_res)
        self.vms = []          # every VM ever created (for billing)
        self.provisioning = None
        self.last_action = None
        self.low_since = None
        self.queue = []        # Req in arrival order
        self.waits = []
        self.queue_waits = []  # request -> placement of the same starts
        self.restored = 0      # starts that restored their world
        self.starts = 0
        self.abandoned = 0
        self.relocations = 0   # restores from sleeping on another node
        self.peak_vms = 0
        self.events = 0
        rid = 0
        for r, end, key, s in intervals:
            rid += 1
            q = Req(rid, s, r, end, key)
            self.push(r, R_REQUEST, key, ("req", q))
            if end < w1:
                self.push(end, R_STOP, key, ("stop", q))
            if r + CFG["give_up_ms"] < min(end, w1):
                self.push(r + CFG["give_up_ms"], R_ABANDON, key, ("abandon", q))
        t = w0 + CFG["interval_ms"]
        while t < w1:
            self.push(t, R_TICK, 0, ("tick",))
            t += CFG["interval_ms"]

    def push(self, t, rank, key, payload):
        self.seq += 1
        heapq.heappush(self.heap, (t, rank, key, self.seq, payload))

    def log(self, t, *a):
        if self.trace:
            ts = datetime.fromtimestamp(t / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
            print(ts, *a, file=sys.stderr)

    # --- billing state transitions ---
    def leave_rest(self, s, t):
        """Server s is being placed at t: close sleeping / archived billing."""
        if s.rest == "sleeping":
            s.sleep_ms += t - s.since
            s.node.sleepers.discard(s)
            s.sleep_token += 1
        elif s.rest == "archived":
            s.archive_ms += t - s.since

    def to_sleep(self, s, node, t):
        s.rest = "sleeping"
        s.node = node
        s.since = t
        node.sleepers.add(s)
        s.sleep_token += 1
        self.push(t + CFG["sleep_window_ms"], R_ARCHIVE, s.idx, ("archive", s, s.sleep_token))

    def to_archive(self, s, t):
        s.sleep_ms += t - s.since
        s.node.sleepers.discard(s)
        s.rest = "archived"
        s.node = None
        s.since = t
        s.sleep_token += 1

    # --- placement (rule 2) ---
    def try_place(self, q, t):
        s = q.server
        m = s.ram
        target = None
        delay = None
        if s.rest == "sleeping" and s.node.ready and not s.node.deleted and s.node.free >= m:
            target, delay = s.node, CFG["boot_ms"]
            q.restores = False
        else:
            for n in self.nodes:
                if n.ready and n.free >= m:
                    target = n
                    break
            if target is None:
                return False
            if s.rest == "new":
                delay = CFG["boot_ms"]
                q.restores = False
            else:
                q.restores = True
                restore = s.disk * CFG["restore_ms_per_gb"]
                delay = round(restore) + CFG["boot_ms"]  # half-even to whole ms
                if s.rest == "sleeping":
                    self.relocations += 1
        self.leave_rest(s, t)
        s.rest = "active"
        s.node = target
        target.free -= m
        target.busy += 1
        q.phase = "starting"
        q.t_place = t
        self.push(t + delay, R_BOOT, q.key, ("boot", q))
        self.log(t, "place", s.sid, target.nid, "delay", delay)
        return True

    def scan(self, t):
        if not self.queue:
            return
        keep = []
        for q in self.queue:
            if not self.try_place(q, t):
                keep.append(q)
        self.queue = keep

    def release(self, s, t):
        n = s.node
        n.free += s.ram
        n.busy -= 1
        self.to_sleep(s, n, t)

    # --- main loop ---
    def run(self):
        w1 = self.w1
        while self.heap:
            t, rank, key, _, p = heapq.heappop(self.heap)
            if t >= w1:
                break
            self.events += 1
            kind = p[0]
            if kind == "req":
                q = p[1]
                s = q.server
                assert s.req is None, "overlapping requests"
                s.req = q
                if not self.try_place(q, t):
                    q.phase = "queued"
                    self.queue.append(q)
                    self.log(t, "queue", s.sid)
            elif kind == "stop":
                q = p[1]
                s = q.server
                if s.req is not q:
                    continue  # already abandoned
                s.req = None
                if q.phase == "queued":
                    self.abandoned += 1
                    self.queue.remove(q)
                    self.log(t, "abandon(end, queued)", s.sid)
                else:
                    if q.phase == "starting":
                        self.abandoned += 1
                        self.log(t, "abandon(end, starting)", s.sid)
                    else:
                        s.active_ms += t - q.t_run
                        self.log(t, "stop", s.sid)
                    self.release(s, t)
                    if not SCAN_BATCH:
                        self.scan(t)
                    else:
                        self.pending_scan = True
                        nxt = self.heap[0] if self.heap else None
                        if nxt is None or nxt[0] != t or nxt[1] != R_STOP:
                            self.pending_scan = False
                            self.scan(t)
            elif kind == "boot":
                q = p[1]
                s = q.server
                if s.req is not q or q.phase != "starting":
                    continue
                q.phase = "running"
                q.t_run = t
                self.starts += 1
                self.waits.append(t - q.r)
                self.queue_waits.append(q.t_place - q.r)
                self.restored += q.restores
                self.log(t, "running", s.sid, "wait", t - q.r)
            elif kind == "ready":
                n = p[1]
                n.ready = True
                self.provisioning = None
                self.log(t, "vm ready", n.nid)
                self.scan(t)
            elif kind == "abandon":
                q = p[1]
                s = q.server
                if s.req is q and q.phase == "queued":
                    s.req = None
                    self.queue.remove(q)
                    self.abandoned += 1
                    self.log(t, "abandon(give_up)", s.sid)
            elif kind == "archive":
                s, tok = p[1], p[2]
                if s.rest == "sleeping" and s.sleep_token == tok:
                    self.to_archive(s, t)
                    self.log(t, "archive", s.sid)
            elif kind == "tick":
                self.tick(t)
        self.finish()

    def tick(self, t):
        demand = 0
        den = 0
        for n in self.nodes:
            demand += n.usable - n.free
            if n.ready:
                den += n.usable
        demand += sum(q.server.ram for q in self.queue)
        if den == 0:
            u = None if demand > 0 else Fraction(0)   # None = infinity
        else:
            u = Fraction(demand, den)
        high = u is None or u > CFG["up"]
        low = u is not None and u < CFG["down"]
        cool = self.last_action is None or t - self.last_action >= CFG["cooldown_ms"]
        cloud = [n for n in self.nodes if n.cloud]
        if high and self.provisioning is None and cool and len(cloud) < CFG["max_vms"]:
            n = Node(f"vm-{len(self.vms)+1}", True, self.vm_usable, t, False)
            self.nodes.append(n)
            self.vms.append(n)
            self.provisioning = n
            self.last_action = t
            self.push(t + CFG["provision_ms"], R_READY, 0, ("ready", n))
            self.peak_vms = max(self.peak_vms, len(cloud) + 1)
            self.log(t, "create", n.nid, "U", float(u) if u is not None else "inf")
        if low:
            if self.low_since is None:
                self.low_since = t
        else:
            self.low_since = None
        if (self.low_since is not None and t - self.low_since >= CFG["low_for_ms"]
                and (self.last_action is None or t - self.last_action >= CFG["cooldown_ms"])):
            for n in reversed(self.nodes):
                if n.cloud and n.ready and n.busy == 0:
                    for s in sorted(n.sleepers, key=lambda x: x.idx):
                        self.to_archive(s, t)
                    n.deleted = True
                    n.gone = t
                    self.nodes.remove(n)
                    self.last_action = t
                    self.low_since = None
                    self.log(t, "delete", n.nid)
                    break

    def finish(self):
        t = self.w1
        for s in self.servers:
            if s.req is not None and s.req.phase == "running":
                s.active_ms += t - s.req.t_run
            if s.rest == "sleeping":
                s.sleep_ms += t - s.since
            elif s.rest == "archived":
                s.archive_ms += t - s.since
        for n in self.vms:
            if n.gone is None:
                n.gone = t


# --------------------------------------------------------------- reports ----
def kpis(sim, servers, w0, w1, seed):
    act_rate = CFG["active_eur_per_gib_h"] / (1024 * HOUR)            # per MiB.ms
    slp_rate = CFG["sleep_eur_per_gb_month"] / (MONTH_H * HOUR)        # per GB.ms
    arc_rate = CFG["archive_eur_per_1000gb_month"] / (1000 * MONTH_H * HOUR)

    rev = Decimal(0)
    rev_exact = Fraction(0)
    act_exact = Fraction(0)
    slp_exact = Fraction(0)
    storage_exact = Fraction(0)
    for s in servers:
        a = s.active_ms * s.ram * act_rate
        b = s.sleep_ms * s.disk * slp_rate
        rev += round6(a) + round6(b)
        rev_exact += a + b
        act_exact += a
        slp_exact += b
        storage_exact += s.archive_ms * s.disk * arc_rate

    hours = Fraction(w1 - w0, HOUR)
    ded_exact = CFG["dedicated_nodes"] * Fraction(CFG["ded_monthly_eur"]) * hours / MONTH_H
    ded = round6(ded_exact)
    cloud = Decimal(0)
    vm_hours = 0
    for n in sim.vms:
        life = n.gone - n.created
        h = ceil_div(life, HOUR)
        months = ceil_div(life, MONTH_H * HOUR)
        vm_hours += h
        cloud += min(h * CFG["vm_hourly_eur"], months * CFG["vm_monthly_cap_eur"])
    if CFG["dedicated_nodes"] == 0:
        life = w1 - w0
        h = ceil_div(life, HOUR)
        months = ceil_div(life, MONTH_H * HOUR)
        cloud += min(h * CFG["cp_hourly_eur"], months * CFG["cp_monthly_cap_eur"])
    cloud = cloud.quantize(Decimal("0.000001"))
    storage = round6(storage_exact)
    infra = ded + cloud + storage

    signup = {}
    for s in servers:
        if s.owner not in signup or s.created < signup[s.owner]:
            signup[s.owner] = s.created
    promo_owners = sum(1 for v in signup.values() if w0 <= v < w1)
    promo = (promo_owners * CFG["promo_eur"]).quantize(Decimal("0.000001"))
    margin = rev - infra - promo

    waits = sorted(sim.waits)

    def pct_of(values, p):
        if not values:
            return 0.0
        k = ceil_div(p * len(values), 100)
        return values[max(k, 1) - 1] / 1000

    def pct(p):
        return pct_of(waits, p)

    out = {
        "infra_cost_eur": str(infra),
        "dedicated_cost_eur": str(ded),
        "cloud_cost_eur": str(cloud),
        "storage_cost_eur": str(storage),
        "revenue_eur": str(rev),
        "promo_credit_eur": str(promo),
        "margin_eur": str(margin),
        "starts": sim.starts,
        "starts_abandoned": sim.abandoned,
        "start_wait_p50_s": pct(50),
        "start_wait_p95_s": pct(95),
        "start_wait_p99_s": pct(99),
        "start_wait_max_s": (waits[-1] / 1000) if waits else 0.0,
        "cloud_vms_created": len(sim.vms),
        "cloud_vm_hours_billed": vm_hours,
        "peak_cloud_vms": sim.peak_vms,
        "start_queue_wait_p95_s": pct_of(sorted(sim.queue_waits), 95),
        "starts_restored": sim.restored,
        "migrations": 0,
        "seed": seed,
    }
    extra = {
        "revenue_total_rounded_once": str(round6(rev_exact)),
        "revenue_active": str(round6(act_exact)),
        "revenue_sleeping": str(round6(slp_exact)),
        "dedicated_rounded_per_node": str(CFG["dedicated_nodes"] * round6(ded_exact / CFG["dedicated_nodes"]))
        if CFG["dedicated_nodes"] else "0",
        "relocations_restore_from_other_node": sim.relocations,
        "events_processed": sim.events,
        "promo_owners": promo_owners,
        "vm_usable_mib": sim.vm_usable,
        "vms": [[n.nid, n.created, n.gone] for n in sim.vms],
    }
    return out, extra


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--order", choices=["sessions", "servers"], default="sessions",
                    help="tie order of simultaneous requests/stops: sessions.csv row "
                         "of the interval's first session, or servers.csv order")
    ap.add_argument("--dedicated", type=int, default=None)
    ap.add_argument("--max-vms", type=int, default=None)
    ap.add_argument("--trace", action="store_true")
    ap.add_argument("--scan-batch", action="store_true",
                    help="diagnostic variant: one queue scan after all stops of an instant")
    ap.add_argument("--vm-usable", type=int, default=None,
                    help="diagnostic variant: override usable MiB of a VM (default 6963)")
    ap.add_argument("--extra", action="store_true", help="also print diagnostic figures")
    a = ap.parse_args()
    if a.dedicated is not None:
        CFG["dedicated_nodes"] = a.dedicated
    global SCAN_BATCH
    SCAN_BATCH = a.scan_batch
    if a.vm_usable is not None:
        CFG["vm_usable_override"] = a.vm_usable
    if a.max_vms is not None:
        CFG["max_vms"] = a.max_vms
    try:
        meta, w0, w1, servers, intervals = load(a.dataset, a.order)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    sim = Sim(w0, w1, servers, intervals, trace=a.trace)
    sim.run()
    k, extra = kpis(sim, servers, w0, w1, a.seed)
    doc = k if not a.extra else {"kpis": k, "extra": extra}
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
