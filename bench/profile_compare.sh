#!/usr/bin/env bash
# The release profile against a build of the same source without LTO (16
# codegen units), alternately, twice each: chat fan-out (1000 subscribers)
# and JSON echo (10 connections x 8 in flight), on 127.0.0.1.
#
#   bash bench/profile_compare.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
source bench/lib.sh

cargo build --release --quiet --bin pinetd --example chat_load --example tcp_load
CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
  cargo build --release --quiet --bin pinetd --target-dir target/no-lto
ls -l target/release/pinetd target/no-lto/release/pinetd | awk '{ print "unstripped", $5, $9 }'

run() {
  PINETD=$1 start_pinetd chat <<<$'prefix = ""\nrate_limit = 0\nqueue = 4096\nmax_clients = 15000\nmax_per_source = 0'
  echo "-- $2: fanout"
  ./target/release/examples/chat_load fanout "127.0.0.1:$pinetd_port" --proto line --pid "$pinetd_pid" --clients 1000 --seconds "$seconds" 2>&1 | tail -1
  kill "$pinetd_pid"
  PINETD=$1 start_pinetd json_echo <<<'max_per_source = 0'
  echo "-- $2: json 10x8"
  ./target/release/examples/tcp_load "127.0.0.1:$pinetd_port" --conns 10 --inflight 8 --seconds "$seconds" 2>&1 | tail -1
  kill "$pinetd_pid"
}
for _ in 1 2; do
  run target/no-lto/release/pinetd "no LTO, 16 codegen units"
  run target/release/pinetd "fat LTO, 1 codegen unit"
done
