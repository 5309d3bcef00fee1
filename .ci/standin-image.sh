#!/usr/bin/env bash
# Builds the stand-in game server as a static binary and imports it as the local image
# localhost/conductor-standin:test (images cannot be pulled here). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-gnu
RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked -q -p conductor-standin --target "$target"
bin="target/$target/release/standin"
sum=$(sha256sum "$bin" | cut -c1-16)
if podman image exists localhost/conductor-standin:test \
   && [ "$(podman image inspect localhost/conductor-standin:test --format '{{ index .Labels "standin.sha" }}' 2>/dev/null)" = "$sum" ]; then
  exit 0
fi
dir=$(mktemp -d)
mkdir -p "$dir/data" "$dir/tmp"
cp "$bin" "$dir/standin"
tar -C "$dir" -cf "$dir.tar" .
podman import --change 'CMD ["/standin"]' --change "LABEL standin.sha=$sum" "$dir.tar" localhost/conductor-standin:test >/dev/null
rm -rf "$dir" "$dir.tar"
echo "imported localhost/conductor-standin:test ($sum)"
