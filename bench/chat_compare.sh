#!/usr/bin/env bash
# Chat fan-out side by side, in one run, with one load tool
# (examples/chat_load): pinetd's chat hub and Redis pub/sub (redis-server from
# Debian's packages, if installed). Everything listens on 127.0.0.1 and stops
# by itself.
#
#   bash bench/chat_compare.sh [SECONDS]
#
# - fanout: 1000 subscribers, one sender, 64-byte messages; deliveries/s and
#   the hub's CPU time per delivery;
# - latency: 100 subscribers, 1000 messages/s; p50/p99 from send to receipt,
#   first with the processes where the scheduler puts them, then (with
#   taskset and 2+ CPUs) with the hubs on CPU 0 and the load tool on CPU 1:
#   on a 2-CPU machine the scheduler now and then runs the load tool on the
#   hub's CPU, and those messages take twice as long to fan out, for either
#   hub; pinned, only the hub's own work is measured, as with clients on
#   other machines;
# - idle: RSS per connected idle client, 10,000 clients;
# - stopped: 99 readers and one client that never reads (pinetd).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
source bench/lib.sh

cargo build --release --quiet --bin pinetd --example chat_load
load() { ./target/release/examples/chat_load "$@" 2>&1 | tail -1; }

hub_keys='
prefix = ""            # 64 bytes a message on the wire, as for Redis'"'"'s payload
rate_limit = 0         # one sender publishes as fast as it can
queue = 4096
max_clients = 15000    # 10,000 idle clients, under the open-files budget
max_per_source = 0     # every load-tool client comes from 127.0.0.1
'
start_pinetd chat <<< "$hub_keys"
pinetd="127.0.0.1:$pinetd_port"

if command -v redis-server >/dev/null; then
  port=$((20000 + RANDOM % 20000))
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --maxclients 20000 --logfile "$work/redis.log" &
  redis_pid=$!
  pids+=($redis_pid)
  wait_for "$work/redis.log" "Ready to accept" "$redis_pid"
  redis="127.0.0.1:$port"
fi

both() {
  echo "-- pinetd";  load "$1" "$pinetd" --proto line --pid "$pinetd_pid" "${@:2}"
  if [ -n "${redis:-}" ]; then echo "-- redis"; load "$1" "$redis" --proto redis --pid "$redis_pid" "${@:2}"; fi
}
# Idle first, on fresh hubs: memory a load freed stays in the allocator.
echo "== idle, 10000 clients";           both idle --clients 10000
# A fresh hub again: right after 10,000 clients leave (their notices are
# spaced by the room's size, 1 s), the fan-out stalled at its first window
# (sent=256) with every build since the load tool's window was added.
kill "$pinetd_pid"; wait "$pinetd_pid" 2>/dev/null || true
start_pinetd chat fanout <<< "$hub_keys"
pinetd="127.0.0.1:$pinetd_port"
echo "== fanout, 1000 subscribers";      both fanout --clients 1000 --seconds "$seconds"
echo "== latency, 100 subscribers, 1000 msg/s"; both latency --clients 100 --rate 1000 --seconds "$seconds"
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  for pid in "$pinetd_pid" ${redis_pid:+"$redis_pid"}; do taskset -a -p -c 0 "$pid" >/dev/null; done
  load() { taskset -c 1 ./target/release/examples/chat_load "$@" 2>&1 | tail -1; }
  echo "== latency, 100 subscribers, 1000 msg/s; hubs on CPU 0, load tool on CPU 1"
  both latency --clients 100 --rate 1000 --seconds "$seconds"
  for pid in "$pinetd_pid" ${redis_pid:+"$redis_pid"}; do taskset -a -p -c "0-$(($(nproc) - 1))" "$pid" >/dev/null; done
  load() { ./target/release/examples/chat_load "$@" 2>&1 | tail -1; }
fi
echo "== stopped reader among 100 (pinetd): without, then with"
load fanout "$pinetd" --proto line --pid "$pinetd_pid" --clients 99 --seconds "$seconds"
load fanout "$pinetd" --proto line --pid "$pinetd_pid" --clients 99 --stopped 1 --seconds "$seconds"
[ -n "${redis:-}" ] || echo "== redis-server: not installed (apt-get install redis-server), skipped"
