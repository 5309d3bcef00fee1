#!/usr/bin/env bash
# The gateway's real peers from the npm registry (minecraft-protocol, mineflayer), at the
# versions in gateway/tests/js/package-lock.json. Needs Node.js (installed here; else apt).
set -euo pipefail
cd "$(dirname "$0")/../gateway/tests/js"
command -v node >/dev/null || { apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null; }
npm ci --no-audit --no-fund --loglevel=error >/dev/null
echo "npm peers in $(pwd)/node_modules (node $(node --version))"
