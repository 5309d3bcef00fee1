#!/usr/bin/env bash
# Benchmark: 100 variants of a 4-week, 3,000-server scenario on all cores (the target is
# under 60 s on 2 cores), with every run's reports, series and plots written.
# Usage: bench/sweep-100.sh
set -euo pipefail
cd "$(dirname "$0")/.."
data="${TMPDIR:-/tmp}/conductor-3k-4w"
out="${TMPDIR:-/tmp}/conductor-sweep-100"
cargo build --release --locked -q
bin=target/release/conductor
if [ ! -f "$data/sessions.csv" ]; then
  "$bin" dataset generate --servers 3000 --days 28 --seed 1 --start 2025-01-06 --out "$data"
fi
for i in 1 2 3; do
  rm -rf "$out"
  /usr/bin/time -f "wall %e s, max RSS %M KiB" "$bin" sim scenarios/bench-sweep.toml --dataset "$data" --out-dir "$out" -q
done
du -sh "$out"
