#!/usr/bin/env bash
# Benchmark: generate 10,000 servers × 365 days and replay them with the reference policy
# on one core. Prints the report's run block (wall, load, replay, events/s, peak RSS).
# Usage: bench/replay-year.sh [ACTIVITY]   (default 1 = the demo's calibrated load)
set -euo pipefail
cd "$(dirname "$0")/.."
activity="${1:-1}"
data="${TMPDIR:-/tmp}/conductor-year-a${activity}"
cargo build --release --locked -q
bin=target/release/conductor
if [ ! -f "$data/sessions.csv" ]; then
  "$bin" dataset generate --servers 10000 --days 365 --seed 1 --start 2025-01-06 --activity "$activity" --out "$data"
fi
for i in 1 2 3; do
  taskset -c 0 "$bin" sim scenarios/bench-year.toml --dataset "$data" --out "$data/report-$i.json" -q
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); k=r['kpis']; print(json.dumps(r['run']), 'events', k['events'], 'sessions', r['dataset']['sessions'])" "$data/report-$i.json"
done
