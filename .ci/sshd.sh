#!/usr/bin/env bash
# An OpenSSH server on 127.0.0.1:2222 for the Docker-over-SSH test: key-only login as the
# current user, fresh keys in /tmp/conductor-sshd (host key pinned in a known_hosts file).
# Installs openssh-server (and the client) when missing. Prints the endpoint the test reads
# (CONDUCTOR_TEST_SSH); the test finds the key and known_hosts next to it.
set -euo pipefail
if [ ! -x /usr/sbin/sshd ] || ! command -v ssh >/dev/null; then
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server openssh-client >&2
fi
dir=/tmp/conductor-sshd
mkdir -p "$dir" /run/sshd
chmod 700 "$dir"
[ -f "$dir/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/host_ed25519" >&2
[ -f "$dir/client_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/client_ed25519" >&2
cp "$dir/client_ed25519.pub" "$dir/authorized_keys"
echo "[127.0.0.1]:2222 $(cut -d' ' -f1,2 "$dir/host_ed25519.pub")" > "$dir/known_hosts"
cat > "$dir/sshd_config" <<CONF
Port 2222
ListenAddress 127.0.0.1
HostKey $dir/host_ed25519
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowStreamLocalForwarding yes
CONF
if [ -f "$dir/sshd.pid" ]; then kill "$(cat "$dir/sshd.pid")" 2>/dev/null || true; sleep 0.5; fi
/usr/sbin/sshd -f "$dir/sshd_config" -E "$dir/sshd.log"
for _ in $(seq 1 50); do
  (exec 3<>/dev/tcp/127.0.0.1/2222) 2>/dev/null && break
  sleep 0.1
done
echo "ssh://$(id -un)@127.0.0.1:2222/run/podman/podman.sock"
