#!/usr/bin/env bash
# A real Prometheus (and promtool) for the metrics tests: Debian's package. The tests start
# their own instance on a free port; nothing is left running.
set -euo pipefail
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  (apt-get install -y -qq prometheus >/dev/null 2>&1) || { apt-get update -qq && apt-get install -y -qq prometheus >/dev/null; }
fi
# The package may start its own service: the tests do not need it.
pkill -x prometheus 2>/dev/null || true
echo "prometheus $(prometheus --version 2>&1 | head -1 | awk '{print $3}')"
