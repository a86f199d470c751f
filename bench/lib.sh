# Shared by the side-by-side scripts (source it from the project root): a
# scratch folder, every server stopped on exit, and helpers that start
# pinetd, the course's Python servers and xinetd's internal echo on 127.0.0.1.

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# Waits until FILE has a line matching PATTERN, or fails if PID has exited.
wait_for() {
  until grep -q "$2" "$1" 2>/dev/null; do
    kill -0 "$3" 2>/dev/null || { echo "server exited:" >&2; cat "$1" >&2; exit 1; }
    sleep 0.05
  done
}

# start_pinetd SERVICE [NAME] < KEYS: the release build (or $PINETD) with
# only SERVICE enabled, on 127.0.0.1:0, with KEYS added to its table; sets
# pinetd_pid and pinetd_port. NAME (default pinetd) names its config and
# log in the scratch folder, so several can run.
start_pinetd() {
  local other name=${2:-pinetd}
  local bin=${PINETD:-./target/release/pinetd}
  # Every service table, as config/local.toml writes them all out, but
  # those an older binary (BEFORE= in the A/B scripts) does not know.
  for other in $(sed -n 's/^\[\([a-z_]*\)\]$/\1/p' config/local.toml | grep -vx daemon); do
    [ "$other" != "$1" ] || continue
    printf '[%s]\nenabled = false\n' "$other" > "$work/probe.toml"
    if "$bin" check --config "$work/probe.toml" >/dev/null 2>&1; then cat "$work/probe.toml"; fi
  done > "$work/$name.toml"
  printf '[%s]\nlisten = "127.0.0.1:0"\n' "$1" >> "$work/$name.toml"
  cat >> "$work/$name.toml"
  "$bin" --config "$work/$name.toml" 2> "$work/$name.log" &
  pinetd_pid=$!
  pids+=("$pinetd_pid")
  wait_for "$work/$name.log" listening "$pinetd_pid"
  pinetd_port=$(grep -o 'addr=127.0.0.1:[0-9]*' "$work/$name.log" | head -1 | cut -d: -f2)
}

# start_python SCRIPT: a course server that prints its port; sets python_pid and python_port.
start_python() {
  python3 "$1" 0 > "$work/python.port" &
  python_pid=$!
  pids+=("$python_pid")
  wait_for "$work/python.port" . "$python_pid"
  python_port=$(cat "$work/python.port")
}

# start_xinetd dgram|stream: xinetd's internal echo with no rate limits; sets
# xinetd_pid and xinetd_port. Returns 1 when xinetd is not installed.
start_xinetd() {
  command -v xinetd >/dev/null || return 1
  local protocol=udp wait=yes
  [ "$1" = stream ] && protocol=tcp wait=no
  xinetd_port=$((20000 + RANDOM % 20000))
  cat > "$work/xinetd.conf" <<CONF
service echo
{
	type		= INTERNAL UNLISTED
	id		= echo-$1
	socket_type	= $1
	protocol	= $protocol
	wait		= $wait
	user		= root
	bind		= 127.0.0.1
	port		= $xinetd_port
	cps		= 1000000 1
	instances	= UNLIMITED
	per_source	= UNLIMITED
}
CONF
  xinetd -dontfork -filelog "$work/xinetd.log" -f "$work/xinetd.conf" -pidfile "$work/xinetd.pid" &
  xinetd_pid=$!
  pids+=("$xinetd_pid")
  wait_for "$work/xinetd.log" "Started working" "$xinetd_pid"
}
