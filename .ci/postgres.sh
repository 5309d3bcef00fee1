#!/usr/bin/env bash
# Installs (if missing) and starts PostgreSQL, and creates the `conductor` role the tests
# use. Prints the admin URL for CONDUCTOR_TEST_PG. Idempotent; run as root.
set -euo pipefail
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
cluster=$(pg_lsclusters --no-header | awk 'NR==1 {print $1" "$2}')
if [ -z "$cluster" ]; then
  version=$(ls /usr/lib/postgresql | sort -n | tail -1)
  pg_createcluster "$version" main >/dev/null
  cluster="$version main"
fi
# shellcheck disable=SC2086
pg_ctlcluster --skip-systemctl-redirect $cluster start >/dev/null 2>&1 || true
for _ in $(seq 1 30); do
  runuser -u postgres -- psql -qAtc 'SELECT 1' >/dev/null 2>&1 && break
  sleep 1
done
runuser -u postgres -- psql -qAt >/dev/null <<'SQL'
DO $$BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'conductor') THEN
    CREATE ROLE conductor LOGIN PASSWORD 'conductor' CREATEDB;
  END IF;
END$$;
SQL
port=$(runuser -u postgres -- psql -qAtc 'SHOW port')
echo "postgres://conductor:conductor@127.0.0.1:${port}/postgres"
