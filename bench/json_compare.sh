#!/usr/bin/env bash
# JSON echo side by side, in one run, with one load tool (examples/tcp_load):
# pinetd's JSON echo (which parses every value), xinetd's internal TCP echo
# (which only copies bytes; if installed) and the course's Python JSON server
# (one connection only: two objects in one read crash it). Three loads:
# 1 connection, 10 connections, 10 connections each keeping 8 objects in flight.
# Everything listens on 127.0.0.1 and stops by itself.
#
#   bash bench/json_compare.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
source bench/lib.sh

cargo build --release --quiet --bin pinetd --example tcp_load
# The server's CPU time, its own and that of children it has reaped
# (xinetd forks one per connection).
ticks() { awk '{ print $14 + $15 + $16 + $17 }' "/proc/$1/stat"; }
# load PORT PID CONNS INFLIGHT: the load tool's line, plus server CPU per round-trip.
load() {
  local before out answered
  before=$(ticks "$2")
  out=$(./target/release/examples/tcp_load "127.0.0.1:$1" --conns "$3" --inflight "$4" --seconds "$seconds" 2>&1 | tail -1)
  sleep 0.2 # xinetd reaps its children
  answered=$(sed -n 's/.* answered=\([0-9]*\).*/\1/p' <<<"$out")
  awk -v o="$out" -v t=$(($(ticks "$2") - before)) -v hz="$(getconf CLK_TCK)" -v n="$answered" \
    'BEGIN { printf "%s server_us_per_rtt=%.2f\n", o, n ? 1e6 * t / hz / n : 0 }'
}
loads() {
  echo "== $1"
  load "$2" "$3" 1 1
  load "$2" "$3" 10 1
  load "$2" "$3" 10 8
}

echo "max_per_source = 0" | start_pinetd json_echo
loads "pinetd json_echo" "$pinetd_port" "$pinetd_pid"

if start_xinetd stream; then
  loads "xinetd internal TCP echo (copies bytes, parses nothing)" "$xinetd_port" "$xinetd_pid"
else
  echo "== xinetd: not installed (apt-get install xinetd), skipped"
fi

start_python bench/course_json_server.py
echo "== course Python JSON server (1 connection, 1 in flight)"
load "$python_port" "$python_pid" 1 1
