#!/usr/bin/env bash
# Fan-out at 1,000 subscribers (examples/chat_load fanout, 5 s), this
# release build against another pinetd binary, alternating round by round,
# at queue 1024 and 65536; each line is one run. Everything listens on
# 127.0.0.1 and stops by itself.
#
#   BEFORE=/path/to/older/pinetd bash bench/fanout_ab.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
: "${BEFORE:?BEFORE=path of the pinetd binary to compare with}"
rounds=${1:-5}
source bench/lib.sh
cargo build --release --quiet --bin pinetd --example chat_load
for round in $(seq 1 "$rounds"); do
  for build in before after; do
    for queue in 1024 65536; do
      if [ "$build" = before ]; then PINETD=$BEFORE; else PINETD=./target/release/pinetd; fi
      export PINETD
      start_pinetd chat "q$queue-$build" <<TOML
prefix = ""
rate_limit = 0
queue = $queue
max_clients = 15000
max_per_source = 0
TOML
      out=$(./target/release/examples/chat_load fanout "127.0.0.1:$pinetd_port" \
        --clients 1000 --seconds 5 --pid "$pinetd_pid" 2>&1 | tail -1)
      echo "round $round $build queue $queue: $out"
      kill "$pinetd_pid"
      wait "$pinetd_pid" 2>/dev/null || true
    done
  done
done
