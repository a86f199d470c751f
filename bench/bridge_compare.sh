#!/usr/bin/env bash
# The chat bridge side by side with an unbridged hub, in one run, with one
# load tool (examples/chat_load): nats-server (Debian's package) and three
# release pinetd hubs on 127.0.0.1, stopped by PID on exit.
#
#   bash bench/bridge_compare.sh [SECONDS] [ROUNDS]     # 5 s, 3 rounds
#
# Hubs: "alone" (no bridge), and "a" and "b", bridged through NATS on one
# subject. Each round, alternating:
# - fanout, 100 subscribers, one sender as fast as the slowest keeps up:
#     alone   sender and subscribers on the unbridged hub;
#     local   sender and subscribers on hub a (bridged: every line also
#             goes to NATS, and b gets it);
#     across  sender on hub a, subscribers on hub b: messages/s across two
#             hubs; CPU of both hubs and of nats-server per message;
# - latency, 10 subscribers, 1000 messages/s, p50 and p99 from send to
#   receipt: alone, and across (what NATS adds on loopback).
# Prints every run's line, then the medians.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
rounds=${2:-3}
source bench/lib.sh

nats=$(command -v nats-server || ls /usr/sbin/nats-server 2>/dev/null || true)
[ -n "$nats" ] || { echo "needs nats-server (apt-get install nats-server)" >&2; exit 1; }

cargo build --release --quiet --bin pinetd --example chat_load
load() { ./target/release/examples/chat_load "$@" 2>&1 | tail -1; }

"$nats" -a 127.0.0.1 -p -1 > "$work/nats.log" 2>&1 &
nats_pid=$!
pids+=("$nats_pid")
wait_for "$work/nats.log" "Listening for client connections" "$nats_pid"
nats_url="nats://$(grep -o 'client connections on [0-9.:]*' "$work/nats.log" | awk '{print $4}')"

hub_keys() {
  cat <<TOML
prefix = ""            # 64 bytes a message on the wire
rate_limit = 0         # one sender publishes as fast as it can
queue = 4096
max_clients = 15000
max_per_source = 0     # every load-tool client comes from 127.0.0.1
bridge_url = "$1"
bridge_subject = "pinetd.bench"
bridge_rate_limit = 0  # take from the other hub as fast as it sends
TOML
}
start_pinetd chat alone < <(hub_keys "")
alone_pid=$pinetd_pid; alone="127.0.0.1:$pinetd_port"
start_pinetd chat a < <(hub_keys "$nats_url")
a_pid=$pinetd_pid; a="127.0.0.1:$pinetd_port"
start_pinetd chat b < <(hub_keys "$nats_url")
b_pid=$pinetd_pid; b="127.0.0.1:$pinetd_port"
for name in a b; do
  pid=$a_pid; [ $name = b ] && pid=$b_pid
  wait_for "$work/$name.log" "connected to NATS" "$pid"
done
echo "nats-server $("$nats" --version 2>&1 | head -1) at $nats_url (pid $nats_pid); hubs: alone $alone, a $a, b $b"

# field NAME LINE: the value of NAME=... in LINE.
field() { grep -o "$1=[0-9.]*" <<<"$2" | head -1 | cut -d= -f2; }
declare -A runs
record() { runs[$1]+="$2 "; }
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

for round in $(seq "$rounds"); do
  echo "== round $round"
  line=$(load fanout "$alone" --clients 100 --seconds "$seconds" --pid "$alone_pid")
  echo "fanout alone:  $line"
  record alone_rate "$(field deliveries_per_s "$line")"; record alone_ns "$(field ns_per_message "$line")"
  line=$(load fanout "$a" --clients 100 --seconds "$seconds" --pid "$a_pid" --pid "$b_pid" --pid "$nats_pid")
  echo "fanout local:  $line"
  record local_rate "$(field deliveries_per_s "$line")"; record local_ns "$(field ns_per_message "$line")"
  line=$(load fanout "$b" --publish-to "$a" --clients 100 --seconds "$seconds" --pid "$a_pid" --pid "$b_pid" --pid "$nats_pid")
  echo "fanout across: $line"
  record across_rate "$(field deliveries_per_s "$line")"; record across_ns "$(field ns_per_message "$line")"
  line=$(load fanout "$b" --publish-to "$a" --clients 100 --seconds "$seconds" --pid "$nats_pid")
  echo "  nats-server alone in that: $line"
  record nats_ns "$(field ns_per_message "$line")"
  line=$(load latency "$alone" --clients 10 --rate 1000 --seconds "$seconds")
  echo "latency alone:  $line"
  record alone_p50 "$(field p50_us "$line")"; record alone_p99 "$(field p99_us "$line")"
  line=$(load latency "$b" --publish-to "$a" --clients 10 --rate 1000 --seconds "$seconds")
  echo "latency across: $line"
  record across_p50 "$(field p50_us "$line")"; record across_p99 "$(field p99_us "$line")"
done

m() { median "${runs[$1]}"; }
echo
echo "medians of $rounds rounds ($seconds s each), 100 subscribers, 64-byte messages:"
printf '%-46s %14s %14s\n' "" "messages/s" "CPU ns/message"
printf '%-46s %14.0f %14.0f\n' "alone (unbridged hub)" "$(awk -v d="$(m alone_rate)" 'BEGIN{print d/100}')" "$(m alone_ns)"
printf '%-46s %14.0f %14.0f\n' "local (bridged hub; a + b + nats-server CPU)" "$(awk -v d="$(m local_rate)" 'BEGIN{print d/100}')" "$(m local_ns)"
printf '%-46s %14.0f %14.0f\n' "across a -> b (a + b + nats-server CPU)" "$(awk -v d="$(m across_rate)" 'BEGIN{print d/100}')" "$(m across_ns)"
printf '%-46s %14s %14.0f\n' "  of which nats-server" "" "$(m nats_ns)"
echo "latency, 10 subscribers at 1000 msg/s: alone p50 $(m alone_p50) us, p99 $(m alone_p99) us; across p50 $(m across_p50) us, p99 $(m across_p99) us"
