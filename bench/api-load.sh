#!/usr/bin/env bash
# Benchmark: API latency at a fixed 500 requests/s on loopback (wrk, paced by
# bench/paced.lua: 10 connections, each waiting 19 ms after every answer: ≈ 500 requests/s at sub-ms latency). The request is an owner's
# GET /v1/servers/{id}: token check (hash lookup) and a server read, both in PostgreSQL.
# Needs PostgreSQL and Podman (bash .ci/postgres.sh && bash .ci/podman.sh) and wrk.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
runuser -u postgres -- psql -qc "DROP DATABASE IF EXISTS conductor_bench" -c "CREATE DATABASE conductor_bench OWNER conductor" >/dev/null
target/release/conductor serve --config bench/controller-bench.toml 2>/tmp/conductor-bench-serve.log &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do curl -sf localhost:8090/healthz >/dev/null && break; sleep 0.2; done
admin=bench-admin-token-0123456789
owner=$(curl -sf -X POST localhost:8090/v1/owners -H "Authorization: Bearer $admin" -H 'content-type: application/json' -d '{"name":"bench"}')
token=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["token"])' "$owner")
curl -sf -X POST localhost:8090/v1/servers -H "Authorization: Bearer $token" -H 'content-type: application/json' -d '{"name":"s1","ram_mib":2048}' >/dev/null
PACE_MS=19 taskset -c 1 wrk -t2 -c10 -d30s --latency -s bench/paced.lua http://127.0.0.1:8090/v1/servers/1 -- 500 "$token"
