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
load() { ./target/release/examples/tcp_load "127.0.0.1:$1" --conns "$2" --inflight "$3" --seconds "$seconds" 2>&1 | tail -1; }
loads() {
  echo "== $1"
  load "$2" 1 1
  load "$2" 10 1
  load "$2" 10 8
}

start_pinetd <<TOML
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
loads "pinetd json_echo" "$pinetd_port"

if start_xinetd stream; then
  loads "xinetd internal TCP echo (copies bytes, parses nothing)" "$xinetd_port"
else
  echo "== xinetd: not installed (apt-get install xinetd), skipped"
fi

start_python bench/course_json_server.py
echo "== course Python JSON server (1 connection, 1 in flight)"
load "$python_port" 1 1
