#!/usr/bin/env bash
# An S3-compatible server for the archive tests: the crate `s3s-fs` (an S3 API on a
# directory; 0.14.1, the last that builds with this toolchain), installed into
# target/tools by cargo (≈ 2.5 min on 2 cores, once per machine), started on 127.0.0.1:9014
# with a bucket `conductor-test`. Prints the endpoint for CONDUCTOR_TEST_S3; the credentials
# are CONDUCTOR_S3_ACCESS_KEY=conductor, CONDUCTOR_S3_SECRET_KEY=conductor-secret.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/tools/bin/s3s-fs
if [ ! -x "$bin" ]; then
  cargo install -q s3s-fs@0.14.1 --locked --features binary --root target/tools >&2
fi
port=9014
root=target/s3-data
if ! (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
  mkdir -p "$root/conductor-test"
  nohup "$bin" --host 127.0.0.1 --port $port --access-key conductor --secret-key conductor-secret "$root" \
    > target/s3s-fs.log 2>&1 &
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
fi
mkdir -p "$root/conductor-test"
echo "http://127.0.0.1:$port"
