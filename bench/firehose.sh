#!/usr/bin/env bash
# The chat hub under a firehose (issue 19): one sender with rate_limit = 0
# writes LINES numbered 64-byte lines as fast as the hub reads them, CLIENTS
# subscribers read as fast as they can, and each checks it got every line
# once and in order; then the same with one more subscriber that never
# reads (it may be skipped; the others may not); then the fan-out at 1,000
# subscribers (examples/chat_load fanout, SECONDS long). Each at queue 64,
# 1024 and 65536, each on a fresh hub. Everything is on 127.0.0.1 and stops
# by itself.
#
#   bash bench/firehose.sh [LINES] [CLIENTS] [SECONDS]
#
# PINETD=path runs another build of the daemon (a "before" binary, say).
set -euo pipefail
cd "$(dirname "$0")/.."
lines=${1:-100000}
clients=${2:-100}
seconds=${3:-5}
source bench/lib.sh

cargo build --release --quiet --bin pinetd --example chat_load
hub() {
  start_pinetd chat "q$1" <<TOML
prefix = ""
rate_limit = 0
queue = $1
max_clients = 15000
max_per_source = 0
TOML
}
load() { ./target/release/examples/chat_load "$@" --pid "$pinetd_pid" 2>&1 | tail -1; }
stop() { kill "$pinetd_pid"; wait "$pinetd_pid" 2>/dev/null || true; }
for queue in 64 1024 65536; do
  for stopped in 0 1; do
    echo "== queue $queue: firehose, $clients readers, $stopped stopped"
    hub "$queue"
    load firehose "127.0.0.1:$pinetd_port" --clients "$clients" --stopped "$stopped" --lines "$lines"
    stop
  done
  echo "== queue $queue: fan-out, 1000 subscribers"
  hub "$queue"
  load fanout "127.0.0.1:$pinetd_port" --clients 1000 --seconds "$seconds"
  stop
done
