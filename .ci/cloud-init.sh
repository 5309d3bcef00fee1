#!/usr/bin/env bash
# Debian's cloud-init, unpacked under target/tools (never installed: an installed cloud-init
# would act on this machine at its next boot), for `cloud-init schema` on the VM bootstrap
# templates. Prints the command to run it (CONDUCTOR_TEST_CLOUD_INIT).
set -euo pipefail
root="$(pwd)/target/tools/cloud-init"
if [ ! -x "$root/run-schema" ]; then
  mkdir -p "$root" && cd "$root"
  (apt-get download -qq cloud-init >/dev/null 2>&1) || { apt-get update -qq && apt-get download -qq cloud-init >/dev/null; }
  dpkg-deb -x cloud-init_*.deb "$root/pkg"
  cat > "$root/run-schema" <<SH
#!/usr/bin/env bash
PYTHONPATH="$root/pkg/usr/lib/python3/dist-packages" exec /usr/bin/python3 -m cloudinit.cmd.main schema "\$@"
SH
  chmod +x "$root/run-schema"
  cd - >/dev/null
fi
# Its Python dependencies for `schema`, from Debian too.
# (the package's own python3-* dependencies).
deps=$(dpkg-deb -f "$root"/cloud-init_*.deb Depends | tr ',' '\n' | grep -o 'python3-[a-z0-9-]*' | tr '\n' ' ')
python3 -c 'import jsonschema, yaml, configobj, jinja2, requests, netifaces, jsonpatch, oauthlib, serial' 2>/dev/null ||
  (apt-get install -y -qq $deps >/dev/null 2>&1) || { apt-get update -qq && apt-get install -y -qq $deps >/dev/null; }
# It must really run: a minimal valid config passes.
printf '#cloud-config\nruncmd: [[echo, ready]]\n' > "$root/probe.yaml"
"$root/run-schema" -c "$root/probe.yaml" >/dev/null
echo "$root/run-schema"
