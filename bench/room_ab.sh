#!/usr/bin/env bash
# Fan-out at 1,000 subscribers (examples/chat_load fanout) with the room's
# history on join and its transcript on ([chat] history = 20, transcript in
# a directory of this run) against both off (history = 0, transcript = ""),
# the same release build, alternating round by round. Prints each run, then
# the medians and their ratio. Everything listens on 127.0.0.1 and stops
# by itself; the transcript's files are removed with the run's directory.
#
#   bash bench/room_ab.sh [ROUNDS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
seconds=${2:-5}
source bench/lib.sh
cargo build --release --quiet --bin pinetd --example chat_load

field() { grep -o "$1=[0-9.]*" <<<"$2" | head -1 | cut -d= -f2; }
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
declare -A runs

for round in $(seq 1 "$rounds"); do
  for mode in off on; do
    if [ "$mode" = on ]; then
      extra="history = 20
transcript = \"$work/transcript\""
    else
      extra='history = 0
transcript = ""'
    fi
    start_pinetd chat "$mode-$round" <<TOML
prefix = ""
rate_limit = 0
queue = 1024
max_clients = 15000
max_per_source = 0
$extra
TOML
    out=$(./target/release/examples/chat_load fanout "127.0.0.1:$pinetd_port" \
      --clients 1000 --seconds "$seconds" --pid "$pinetd_pid" 2>&1 | tail -1)
    echo "round $round $mode: $out"
    runs[$mode]+="$(field deliveries_per_s "$out") "
    runs[${mode}_ns]+="$(field ns_per_message "$out") "
    kill "$pinetd_pid"
    wait "$pinetd_pid" 2>/dev/null || true
  done
done
if [ -d "$work/transcript" ]; then
  echo "transcript written: $(cat "$work"/transcript/*.tsv | wc -l) lines, $(du -sh "$work/transcript" | cut -f1)"
fi
off=$(median "${runs[off]}") on=$(median "${runs[on]}")
echo "medians of $rounds rounds ($seconds s each), 1,000 subscribers, queue 1024:"
echo "  off (history 0, no transcript): $off deliveries/s, $(median "${runs[off_ns]}") CPU ns/message"
echo "  on  (history 20, transcript):   $on deliveries/s, $(median "${runs[on_ns]}") CPU ns/message"
awk -v a="$on" -v b="$off" 'BEGIN { printf "  on/off: %.3f\n", a / b }'
