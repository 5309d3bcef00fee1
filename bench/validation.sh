#!/usr/bin/env bash
# The validation suite (issue 18): seven generated datasets of different shapes — routines on
# and off, 1,000–5,000 servers, 2–12 weeks, a DST change, a Christmas season, growth with a
# spike — and each design replayed on every one of them, in one table: margin, p95 total
# wait, p95 queue wait (request → placement), abandoned and restored starts.
# Usage: bench/validation.sh [scenario ...]   (default: scenarios/reference.toml scenarios/best.toml scenarios/cheapest.toml)
# Datasets are made once into $CONDUCTOR_VALIDATION (default target/validation); a design
# tuned on some of them must be judged on the others.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${CONDUCTOR_VALIDATION:-target/validation}"
if [ -z "${CONDUCTOR_BIN:-}" ]; then
  cargo build --release --locked -q
  CONDUCTOR_BIN=target/release/conductor
fi
bin="$CONDUCTOR_BIN"
mkdir -p "$dir"

# Growth of 10 % a week and a spike of 300 sign-ups on a Saturday evening.
cat >"$dir/growth-spike.toml" <<'TOML'
[[transform]]
kind = "growth"
percent_per_week = 10

[[transform]]
kind = "spike"
at = "2026-02-28T18:00:00+01:00"
within = "3h"
servers = 300
TOML

# name | generator arguments | transforms applied after (a file, optional)
suite=(
  "v1-irregular-1k-4w|--servers 1000 --days 28 --seed 101 --start 2025-10-06 --habits 0|"
  "v2-habits-2k-6w|--servers 2000 --days 42 --seed 102 --start 2025-09-01 --habits 0.6|"
  "v3-habits-5k-4w|--servers 5000 --days 28 --seed 103 --start 2026-01-12 --habits 0.4|"
  "v4-dst-1500-12w|--servers 1500 --days 84 --seed 104 --start 2025-09-15 --habits 0.3|"
  "v5-christmas-2k-6w|--servers 2000 --days 42 --seed 105 --start 2025-12-01 --habits 0.3|"
  "v6-growth-spike-2k-6w|--servers 2000 --days 42 --seed 106 --start 2026-02-02 --habits 0.5|$dir/growth-spike.toml"
  "v7-small-1k-2w|--servers 1000 --days 14 --seed 107 --start 2026-04-13 --habits 0.2|"
)

for entry in "${suite[@]}"; do
  IFS='|' read -r name args transforms <<<"$entry"
  [ -f "$dir/$name/sessions.csv" ] && continue
  if [ -z "$transforms" ]; then
    # shellcheck disable=SC2086
    "$bin" dataset generate $args --out "$dir/$name" >/dev/null
  else
    # shellcheck disable=SC2086
    "$bin" dataset generate $args --out "$dir/$name.base" >/dev/null
    "$bin" dataset transform "$dir/$name.base" --transforms "$transforms" --out "$dir/$name" >/dev/null
  fi
  echo "made $dir/$name" >&2
done

designs=("$@")
[ ${#designs[@]} -eq 0 ] && designs=(scenarios/reference.toml scenarios/best.toml scenarios/cheapest.toml)
echo "| dataset | design | margin EUR | p95 wait s | p95 queue wait s | abandoned | restored starts | starts |"
echo "|---|---|---|---|---|---|---|---|"
for entry in "${suite[@]}"; do
  IFS='|' read -r name _ _ <<<"$entry"
  for design in "${designs[@]}"; do
    report="$dir/$name.$(basename "$design" .toml).json"
    "$bin" sim "$design" --dataset "$dir/$name" --out "$report" -q
    python3 - "$name" "$(basename "$design" .toml)" "$report" <<'PY'
import json, sys
name, design, path = sys.argv[1:]
k = json.load(open(path))["kpis"]
print(f"| {name} | {design} | {float(k['margin_eur']):.2f} | {k['start_wait_p95_s']} | "
      f"{k['start_queue_wait_p95_s']} | {k['starts_abandoned']} | {k['starts_restored']} | {k['starts']} |")
PY
  done
done
