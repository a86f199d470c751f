#!/usr/bin/env bash
# What the web page costs the chat: fan-out at 1,000 subscribers
# (examples/chat_load fanout) on one daemon build, round by round in three
# settings: `[web]` disabled, enabled with no page open, and enabled with
# a page open on the room (its live stream read by curl, as a browser's
# would be). Then the daemon's idle RSS in each setting. Everything listens
# on 127.0.0.1 and stops by itself.
#
#   bash bench/web_compare.sh [ROUNDS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
seconds=${2:-5}
source bench/lib.sh
command -v curl >/dev/null || { echo "needs curl" >&2; exit 1; }
cargo build --release --quiet --bin pinetd --example chat_load

# start MODE: the chat (and the web page unless MODE is off) on 127.0.0.1:0;
# sets pinetd_pid, chat_port and web_port.
start() {
  local web=true
  [ "$1" = off ] && web=false
  cat > "$work/$1.toml" <<TOML
[chat]
listen = "127.0.0.1:0"
prefix = ""
rate_limit = 0
queue = 1024
max_clients = 15000
max_per_source = 0
[json_echo]
enabled = false
[udp_echo]
enabled = false
[announcer]
enabled = false
[discovery]
enabled = false
[web]
enabled = $web
listen = "127.0.0.1:0"
TOML
  ./target/release/pinetd --config "$work/$1.toml" 2> "$work/$1.log" &
  pinetd_pid=$!
  pids+=("$pinetd_pid")
  wait_for "$work/$1.log" "service=chat.*listening\|listening.*service=chat" "$pinetd_pid"
  [ "$web" = true ] && wait_for "$work/$1.log" "service=web.*listening\|listening.*service=web" "$pinetd_pid"
  chat_port=$(grep 'service=chat' "$work/$1.log" | grep -o 'addr=127.0.0.1:[0-9]*' | head -1 | cut -d: -f2)
  web_port=$(grep 'service=web' "$work/$1.log" | grep -o 'addr=127.0.0.1:[0-9]*' | head -1 | cut -d: -f2 || true)
}

# page: a page's live stream, read and thrown away; sets page_pid.
page() {
  curl -sN "http://127.0.0.1:$web_port/api/v1/stream" > "$work/stream" &
  page_pid=$!
  pids+=("$page_pid")
  until [ -s "$work/stream" ]; do sleep 0.05; done
}

stop() {
  [ -n "${page_pid:-}" ] && kill "$page_pid" 2>/dev/null || true
  page_pid=
  kill "$pinetd_pid"; wait "$pinetd_pid" 2>/dev/null || true
}

echo "== fanout, 1000 subscribers, ${seconds}s a run"
for round in $(seq 1 "$rounds"); do
  for mode in off idle page; do
    start "$mode"
    [ "$mode" = page ] && page
    out=$(./target/release/examples/chat_load fanout "127.0.0.1:$chat_port" \
      --clients 1000 --seconds "$seconds" --pid "$pinetd_pid" 2>&1 | tail -1)
    snapshots=""
    [ "$mode" = page ] && snapshots=" ($(grep -c '^event: snapshot' "$work/stream") snapshots sent)"
    echo "round $round web $mode: $out$snapshots"
    stop
  done
done

echo "== idle daemon RSS (all five services off but the chat, no client)"
for mode in off idle page; do
  start "$mode"
  [ "$mode" = page ] && page
  sleep 1
  echo "web $mode: $(awk '/VmRSS/ {print $2, $3}' /proc/$pinetd_pid/status)"
  stop
done
