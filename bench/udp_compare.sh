#!/usr/bin/env bash
# UDP echo side by side, in one run, with one load tool (examples/udp_load):
# pinetd, the course's Python listener and xinetd's internal echo (if
# installed), each with 10 senders keeping 8 datagrams in flight: first
# senders that send each datagram on its own, then senders that send each
# window as one UDP GSO message (as QUIC clients do; the servers receive the
# same datagrams). Everything listens on 127.0.0.1 and stops by itself.
#
#   bash bench/udp_compare.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
source bench/lib.sh

cargo build --release --quiet --bin pinetd --example udp_load
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# load PORT PID [--gso]: the load tool's line, plus the server's CPU time per round-trip.
load() {
  local before after out answered
  before=$(ticks "$2")
  out=$(./target/release/examples/udp_load "127.0.0.1:$1" --senders 10 --inflight 8 --seconds "$seconds" ${3:-} 2>&1 | tail -1)
  after=$(ticks "$2")
  answered=$(sed -n 's/.* answered=\([0-9]*\).*/\1/p' <<<"$out")
  awk -v o="$out" -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$answered" \
    'BEGIN { printf "%s server_cpu_s=%.2f server_us_per_rtt=%.2f\n", o, t / hz, n ? 1e6 * t / hz / n : 0 }'
}

# pinetd: only UDP echo, no rate limit (every sender is 127.0.0.1), port 0.
start_pinetd udp_echo <<TOML
rate_limit = 0
TOML
start_python bench/course_udp_listener.py

echo "== pinetd udp_echo"; pinetd_out=$(load "$pinetd_port" "$pinetd_pid"); echo "$pinetd_out"
echo "== course Python listener"; python_out=$(load "$python_port" "$python_pid"); echo "$python_out"
echo "== pinetd udp_echo, GSO senders"; pinetd_gso=$(load "$pinetd_port" "$pinetd_pid" --gso); echo "$pinetd_gso"
echo "== course Python listener, GSO senders"; python_gso=$(load "$python_port" "$python_pid" --gso); echo "$python_gso"

if start_xinetd dgram; then
  echo "== xinetd internal echo"; load "$xinetd_port" "$xinetd_pid"
else
  echo "== xinetd: not installed (apt-get install xinetd), skipped"
fi

field() { sed -n "s/.* $1=\\([0-9.]*\\).*/\\1/p" <<<"$2"; }
# ratio LABEL PINETD_LINE PYTHON_LINE
ratio() {
  awk -v l="$1" -v a="$(field rtt_per_s "$2")" -v b="$(field rtt_per_s "$3")" \
    -v c="$(field server_us_per_rtt "$2")" -v d="$(field server_us_per_rtt "$3")" \
    'BEGIN { printf "%s: round-trips/s pinetd / Python = %.2f; server CPU per round-trip Python / pinetd = %.2f\n", l, a / b, d / c }'
}
ratio "one datagram per send" "$pinetd_out" "$python_out"
ratio "GSO senders" "$pinetd_gso" "$python_gso"
