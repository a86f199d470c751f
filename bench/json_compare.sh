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
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

cargo build --release --quiet --bin pinetd --example tcp_load
load() { ./target/release/examples/tcp_load "127.0.0.1:$1" --conns "$2" --inflight "$3" --seconds "$seconds" 2>&1 | tail -1; }
loads() {
  echo "== $1"
  load "$2" 1 1
  load "$2" 10 1
  load "$2" 10 8
}

cat > "$work/pinetd.toml" <<TOML
[chat]
enabled = false
[udp_echo]
enabled = false
[announcer]
enabled = false
[discovery]
enabled = false
[json_echo]
listen = "127.0.0.1:0"
TOML
./target/release/pinetd --config "$work/pinetd.toml" 2> "$work/pinetd.log" &
pids+=($!)
until grep -q "listening" "$work/pinetd.log"; do sleep 0.05; done
loads "pinetd json_echo" "$(grep -o 'addr=127.0.0.1:[0-9]*' "$work/pinetd.log" | head -1 | cut -d: -f2)"

if command -v xinetd >/dev/null; then
  port=$((20000 + RANDOM % 20000))
  cat > "$work/xinetd.conf" <<CONF
service echo
{
	type		= INTERNAL UNLISTED
	id		= echo-stream
	socket_type	= stream
	protocol	= tcp
	wait		= no
	user		= root
	bind		= 127.0.0.1
	port		= $port
	cps		= 1000000 1
	instances	= UNLIMITED
	per_source	= UNLIMITED
}
CONF
  xinetd -dontfork -filelog "$work/xinetd.log" -f "$work/xinetd.conf" -pidfile "$work/xinetd.pid" &
  pids+=($!)
  until grep -q "Started working" "$work/xinetd.log" 2>/dev/null; do sleep 0.05; done
  loads "xinetd internal TCP echo (copies bytes, parses nothing)" "$port"
else
  echo "== xinetd: not installed (apt-get install xinetd), skipped"
fi

python3 bench/course_json_server.py 0 > "$work/python.port" &
pids+=($!)
until [ -s "$work/python.port" ]; do sleep 0.05; done
echo "== course Python JSON server (1 connection, 1 in flight)"
load "$(cat "$work/python.port")" 1 1
