#!/usr/bin/env bash
# Installs (if missing) and starts Podman's Docker-compatible API on a socket, and builds the
# stand-in game server image the Docker driver tests run. Prints the endpoint. Idempotent;
# run as root. Facts behind the settings: ../shared/ENVIRONMENT.md (no systemd, no registry).
set -euo pipefail
cd "$(dirname "$0")/.."
sock=/run/podman/podman.sock
if ! command -v podman >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1; then
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc >/dev/null
fi
mkdir -p /etc/containers /run/podman
cat > /etc/containers/containers.conf <<'CONF'
[containers]
default_ulimits = []
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
CONF
cat > /etc/containers/storage.conf <<'CONF'
[storage]
driver = "vfs"
runroot = "/run/containers/storage"
graphroot = "/var/lib/containers/storage"
CONF
if ! curl -s --unix-socket "$sock" http://d/_ping 2>/dev/null | grep -q OK; then
  rm -f "$sock"
  # From /: the service and the conmon processes it spawns inherit its working directory,
  # and a checkout that is later deleted (a CI clone) made every container start fail with
  # "write child: broken pipe".
  (cd / && exec setsid nohup podman system service --time=0 "unix://$sock") >/tmp/podman-service.log 2>&1 < /dev/null &
  for _ in $(seq 1 50); do
    curl -s --unix-socket "$sock" http://d/_ping 2>/dev/null | grep -q OK && break
    sleep 0.2
  done
fi
curl -s --unix-socket "$sock" http://d/_ping | grep -q OK || { echo "podman API did not come up" >&2; cat /tmp/podman-service.log >&2; exit 1; }
bash .ci/standin-image.sh >&2
echo "unix://$sock"
