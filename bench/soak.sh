#!/usr/bin/env bash
# Soak test: bash bench/soak.sh [MINUTES]   (or SOAK_MINUTES=MINUTES; default 5)
#
# With SOAK_NATS=1, a nats-server (Debian's package) is started on
# 127.0.0.1 and the chat room is bridged through it, so every line and
# notice also goes through the bridge (the same checks apply).
#
# Runs pinetd (the release build, or $PINETD) for MINUTES under mixed load,
# then stops it with SIGTERM, and exits 0 if it passed, 1 naming every
# failure otherwise. The package bench/soak/ (Python 3.11, standard library
# only; one module per kind of load) drives it; this script only finds the
# binary, makes a scratch folder and kills by PID whatever is left on exit.
#
# Network: everything stays on 127.0.0.0/8. The config is written into the
# scratch folder: every service on 127.0.0.1 port 0 (the ports are read back
# from the daemon's `listening service=... addr=...` lines), the announcer to
# 127.255.255.255 on a port the soak's own listener took, discovery allowing
# 127.0.0.0/8 only. Clients use distinct loopback source addresses:
# 127.0.0.3 the well-behaved ones, 127.0.0.2 and 127.2.x.y the UDP floods,
# 127.1.x.y the hostile TCP clients, 127.0.0.9 and .10 the runaway loops.
#
# Load, all at once for the whole run:
# - chat: 3 well-behaved clients sending 20 numbered lines/s (Korean, emoji,
#   tab) and reading everything; a "blaster" now and then says 300 lines at
#   once (3 s over rate_limit = 100) and leaves with a clean EOF; 10 hostile
#   sessions at a time join, talk (control characters, invalid UTF-8,
#   overlong lines, /nick, /who, course-style lines with no newline) and
#   leave by `bye`, close or RST, or stop reading for 20-40 s with a tiny
#   receive buffer; every 30 s, 40 connections from one address.
# - JSON echo: 2 well-behaved connections, up to 64 values in flight, values
#   concatenated or spread over whitespace and split anywhere; 6 hostile
#   sessions at a time: invalid JSON, reset mid-value, slowloris (a byte a
#   second), silent (idle_timeout = 15s), nesting 200 deep, 70 kB values,
#   course-style; every 30 s, 40 connections from one address.
# - UDP echo: a checker at 20 datagrams/s; floods of 512 datagrams/s from
#   16 new sockets (new source ports) every 0.25 s, half of them from one
#   address (over rate_limit = 200, so refused and counted).
# - discovery: a checker every 2 s; 40 probes every 3 s from new ports.
# - SIGHUP every 5 s (plus the checks below), the config alternating
#   [chat] max_line_bytes 4096/4097, [json_echo] max_message_bytes
#   65536/65537, [udp_echo] rate_limit 200/201 (a restart on its socket),
#   [announcer] interval 1s/2s, [discovery] max_delay 120ms/100ms.
# Every 5 s the daemon's RSS (VmRSS), open fds (/proc/PID/fd), established
# TCP connections to its ports (/proc/net/tcp) and the last STATUS= line
# (from a NOTIFY_SOCKET of the soak's own) are sampled; every 30 s one line
# is printed.
#
# It fails when:
# - a well-behaved client loses anything: a chat client misses, repeats,
#   reorders or gets changed any line of another well-behaved sender or of a
#   blaster that left cleanly, is told it skipped messages, or is dropped;
#   a JSON reply differs from the compact form of the value sent, or is
#   missing; a UDP echo datagram comes back changed or gets no reply in 10
#   tries 0.5 s apart (tries are counted and reported); a discovery probe
#   gets no reply in 3 tries, or a reply or announcement is not the right
#   self-description (ports, ttl, a constant instance); announcement seq
#   numbers skip or go back;
# - a reload is not confirmed by READY=1 within 10 s, or does not apply:
#   the connected chat client is cut at the old max_line_bytes, a new JSON
#   connection gets the old max_message_bytes, the discovery reply or the
#   next announcement carries the old ttl;
# - the daemon breaks its contract with a hostile client (no error object
#   before the close for invalid JSON, no cut notice, runaway loops not
#   limited to max_per_source = 32, a raw control character relayed), logs
#   an ERROR line (a failed or panicked service, a refused reload), or dies;
# - RSS or fds keep growing. The warm-up is the first fifth of the run, at
#   least 60 s; the samples after it are split into quarters:
#     RSS: the last quarter's maximum is more than 8 MiB AND more than 20 %
#     above the warm-up's maximum; or each quarter's minimum is above the
#     one before and the last is more than 4 MiB above the first.
#     fds: each quarter's minimum is above the one before, by 8 or more in
#     all; or, once the load has stopped and only the 6 long-lived clients
#     are connected, the daemon holds more than 2 fds above what it held
#     with those same clients at the start.
#   (The minimum of a quarter is the floor under the churn of connections:
#   a leak raises the floor, a burst of clients does not.)
# - SIGTERM does not make it exit 0 within shutdown_grace (3 s) + 3 s, or a
#   long-lived client is not told and closed.
#
# Output: a line every 30 s, then a summary (RSS and fds at the start, after
# the warm-up and at the end; what each well-behaved client checked; every
# hostile action counted) and PASS or FAIL with the reasons. The daemon's
# log is kept in the scratch folder only while the soak runs; set
# SOAK_KEEP=DIR to copy it (and the config) there at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=${1:-${SOAK_MINUTES:-5}}
if ! [[ $minutes =~ ^[0-9]+(\.[0-9]+)?$ ]] || [ "$(printf '%.0f' "${minutes}e3")" -le 0 ]; then
  echo "usage: bash bench/soak.sh [MINUTES]   (a positive number; default 5, or SOAK_MINUTES)" >&2
  exit 2
fi

pinetd=${PINETD:-./target/release/pinetd}
if [ ! -x "$pinetd" ]; then
  if [ -n "${PINETD:-}" ]; then
    echo "soak: PINETD=$PINETD is not an executable" >&2
    exit 2
  fi
  echo "soak: $pinetd is missing; building it (cargo build --release --locked)" >&2
  cargo build --release --locked
fi

work=$(mktemp -d)
driver=
nats_pid=
cleanup() {
  local pid
  [ -n "$nats_pid" ] && kill "$nats_pid" 2>/dev/null || true
  [ -n "$driver" ] && kill "$driver" 2>/dev/null || true
  if [ -s "$work/daemon.pid" ]; then
    pid=$(cat "$work/daemon.pid")
    # Only if it is still our pinetd (the PID may have been reused).
    if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF "$work/pinetd.toml"; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  if [ -n "${SOAK_KEEP:-}" ]; then
    mkdir -p "$SOAK_KEEP"
    cp "$work"/pinetd.log "$work"/pinetd.toml "$SOAK_KEEP"/ 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bridge=()
if [ "${SOAK_NATS:-0}" = 1 ]; then
  nats=$(command -v nats-server || ls /usr/sbin/nats-server 2>/dev/null || true)
  [ -n "$nats" ] || { echo "soak: SOAK_NATS=1 needs nats-server (apt-get install nats-server)" >&2; exit 2; }
  "$nats" -a 127.0.0.1 -p -1 > "$work/nats.log" 2>&1 &
  nats_pid=$!
  until grep -q "Listening for client connections" "$work/nats.log"; do
    kill -0 "$nats_pid" 2>/dev/null || { cat "$work/nats.log" >&2; exit 1; }
    sleep 0.05
  done
  bridge=(--bridge-url "nats://$(grep -o 'client connections on [0-9.:]*' "$work/nats.log" | awk '{print $4}')")
fi

# The driver bounds itself (the run + 4 minutes); timeout is the backstop.
limit=$(awk -v m="$minutes" 'BEGIN { printf "%d", m * 60 + 300 }')
PYTHONPATH="bench${PYTHONPATH:+:$PYTHONPATH}" timeout -k 10 "$limit" \
  python3 -B -u -m soak --minutes "$minutes" --pinetd "$pinetd" --work "$work" "${bridge[@]}" &
driver=$!
status=0
wait "$driver" || status=$?
driver=
exit "$status"
