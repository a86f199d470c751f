#!/usr/bin/env bash
# The announcer's `to = ["255.255.255.255:37020"]`, measured three ways on a
# Pi that is on two LANs (network namespaces, built and removed here):
#
#   limited   one socket per interface bound to (its address, 0), sendto
#             255.255.255.255 (what the announcer does now)
#   directed  one socket bound to 0.0.0.0, sendto each interface's directed
#             broadcast, 10.81.0.255 and 10.82.0.255 (the alternative)
#   old       one socket bound to 0.0.0.0, sendto 255.255.255.255 (before)
#
# Topology: namespace "pi" with eth0 10.81.0.1/24 on LAN A (default route via
# 10.81.0.254 onlink) and wlan0 10.82.0.1/24 on LAN B; each LAN a bridge in
# its own switch namespace with four receivers, each its own namespace:
#   .2/24  matching mask               socket on 0.0.0.0:37020
#   .3/16  wider mask (misconfigured)  socket on 0.0.0.0:37020
#   .4/25  narrower mask, holds .1     socket on 0.0.0.0:37020
#   .5/24  matching mask               socket on its own 10.8x.0.5:37020
# Prints, per receiver and way, datagrams heard / sent to its LAN, the source
# and destination addresses seen; then the cost of 10,000 sendto calls each
# way (median of 5). Every packet stays inside the namespaces made here;
# nothing runs in, or sends from, the root namespace. Needs root, iproute2
# and python3; stops by itself (everything is under `timeout`).
#
#   sudo bash bench/broadcast_compare.sh [N]        # N datagrams per LAN, 100
set -euo pipefail
n=${1:-100}
port=37020
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)" >&2; exit 1; }
command -v ip >/dev/null || { echo "needs ip (iproute2)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "needs python3" >&2; exit 1; }

p="bc$$"
namespaces=()
pids=()
work=$(mktemp -d)
cleanup() {
  local pid ns
  trap '' INT TERM
  # Every background job, also one forked just before a signal (its $! not yet in pids).
  pids+=($(jobs -p))
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

newns() { namespaces+=("$1"); ip netns add "$1"; ip -n "$1" link set lo up; }
# attach NS IFACE SWITCH PORT CIDR: a veth made directly inside NS and SWITCH
# (never in the root namespace), its switch end on the bridge.
attach() {
  ip link add "$2" netns "$1" type veth peer name "$4" netns "$3"
  ip -n "$3" link set "$4" master br0 up
  ip -n "$1" addr add "$5" brd + dev "$2"
  ip -n "$1" link set "$2" up
}

# --- topology -----------------------------------------------------------
pi="$p-pi"
newns "$pi"
lans=(A B)
pi_if=(eth0 wlan0)
receivers=()   # "ns lan cidr bind"
for k in 0 1; do
  net="10.$((81 + k)).0"
  sw="$p-sw$k"
  newns "$sw"
  ip -n "$sw" link add br0 type bridge
  ip -n "$sw" link set br0 up
  attach "$pi" "${pi_if[$k]}" "$sw" pi "$net.1/24"
  for spec in "2/24 0.0.0.0" "3/16 0.0.0.0" "4/25 0.0.0.0" "5/24 $net.5"; do
    read -r host bind <<<"$spec"
    ns="$p-${lans[$k]}${host%/*}"
    newns "$ns"
    attach "$ns" eth0 "$sw" "r${host%/*}" "$net.$host"
    receivers+=("$ns ${lans[$k]} $net.$host $bind")
  done
done
ip -n "$pi" route add default via 10.81.0.254 dev eth0 onlink
# IPv6 DAD and the like send nothing that matters here; wait for links.
sleep 1

# --- receiver and sender ------------------------------------------------
cat > "$work/recv.py" <<'PY'
# recv.py BIND PORT TAG READY STOP OUT: counts datagrams starting with TAG
# until STOP exists (or 12 s), recording sources and destinations (IP_PKTINFO).
import os, socket, sys, time
bind, port, tag, ready, stop, out = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode(), *sys.argv[4:]
IP_PKTINFO = 8
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
s.bind((bind, port))
s.settimeout(0.1)
open(ready, "w").close()
count, sources, dests = 0, {}, {}
deadline = time.monotonic() + 12
while time.monotonic() < deadline:
    try:
        data, anc, _, addr = s.recvmsg(2048, 64)
    except socket.timeout:
        if os.path.exists(stop):
            break
        continue
    if not data.startswith(tag):
        continue
    count += 1
    sources[addr[0]] = sources.get(addr[0], 0) + 1
    for level, kind, value in anc:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO:
            dst = socket.inet_ntoa(value[8:12])  # in_pktinfo.ipi_addr: the header's destination
            dests[dst] = dests.get(dst, 0) + 1
fmt = lambda d: ",".join(sorted(d)) or "-"
with open(out, "w") as f:
    f.write(f"{count} {fmt(sources)} {fmt(dests)}\n")
PY

cat > "$work/send.py" <<'PY'
# send.py WAY N PORT TAG ADDR/BRD...: N rounds of one announcement per
# interface (limited, directed) or one per round (old), 1 ms apart.
# send.py time WAY CALLS REPS PORT ADDR/BRD...: median sendto calls per second.
import socket, statistics, sys, time
def sockets(way, ifaces):
    def sock(addr):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        s.bind((addr, 0))
        return s
    if way == "limited":   # one socket per interface, bound to its address
        return [(sock(a), "255.255.255.255") for a, _ in ifaces]
    s = sock("0.0.0.0")
    if way == "directed":  # one unbound socket, each interface's broadcast
        return [(s, b) for _, b in ifaces]
    return [(s, "255.255.255.255")]  # old: one unbound socket
if sys.argv[1] == "time":
    way, calls, reps, port = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    pairs = sockets(way, [x.split("/") for x in sys.argv[6:]])
    targets = [(s, (d, port)) for s, d in pairs]
    rounds = calls // len(targets)
    payload = b"T" * 200
    rates = []
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(rounds):
            for s, d in targets:
                s.sendto(payload, d)
        rates.append(rounds * len(targets) / (time.perf_counter() - t))
    print(f"{statistics.median(rates):.0f} {min(rates):.0f} {max(rates):.0f} {rounds * len(targets)}")
else:
    way, n, port, tag = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].encode()
    pairs = sockets(way, [x.split("/") for x in sys.argv[5:]])
    calls = 0
    for i in range(n):
        for s, d in pairs:
            s.sendto(tag + b" %d" % i, (d, port))
            calls += 1
        time.sleep(0.001)
    print(calls)
PY

ifaces=(10.81.0.1/10.81.0.255 10.82.0.1/10.82.0.255)
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# run WAY: fresh receivers, N rounds from the pi, one result line per receiver.
run() {
  local way=$1 tag="pinetd-bench-$1-$$" r ns lan cidr bind i
  local dir="$work/$way"
  mkdir -p "$dir"
  local started=()
  for r in "${receivers[@]}"; do
    read -r ns lan cidr bind <<<"$r"
    # ip execs timeout (same pid, so $! is it): a kill reaches timeout, which passes it on.
    ip netns exec "$ns" timeout 15 python3 "$work/recv.py" "$bind" "$port" "$tag" \
      "$dir/$ns.ready" "$dir/stop" "$dir/$ns.out" &
    pids+=("$!"); started+=("$!")
  done
  for i in $(seq 100); do   # up to 5 s for every receiver to bind
    local all=1
    for r in "${receivers[@]}"; do read -r ns _ <<<"$r"; [ -e "$dir/$ns.ready" ] || all=0; done
    [ $all = 1 ] && break
    sleep 0.05
  done
  [ $all = 1 ] || { echo "receivers did not start" >&2; exit 1; }
  sent_calls=$(in_ns "$pi" timeout 30 python3 "$work/send.py" "$way" "$n" "$port" "$tag" "${ifaces[@]}")
  sleep 0.5
  touch "$dir/stop"
  for i in "${started[@]}"; do wait "$i" || true; done
  for r in "${receivers[@]}"; do
    read -r ns lan cidr bind <<<"$r"
    local heard src dst
    read -r heard src dst < "$dir/$ns.out" || { heard=?; src=?; dst=?; }
    printf '%-4s %-14s %-12s %-9s %9s   %-22s %s\n' "$lan" "$cidr" "$bind" "$way" "$heard/$n" "$src" "$dst"
  done
  echo "     (pi: $sent_calls sendto calls for $n rounds)"
}

echo "Pi: eth0 10.81.0.1/24 (LAN A, default route), wlan0 10.82.0.1/24 (LAN B); $n rounds per way"
echo
printf '%-4s %-14s %-12s %-9s %9s   %-22s %s\n' LAN receiver "socket on" way heard/sent "source seen" "destination seen"
for way in limited directed old; do run "$way"; done

echo
echo "Cost: 10,000 sendto calls of 200 bytes from the pi (python3), median of 5 (min-max)"
for way in limited directed old; do
  read -r med lo hi calls < <(in_ns "$pi" timeout 60 python3 "$work/send.py" time "$way" 10000 5 "$port" "${ifaces[@]}")
  awk -v w="$way" -v m="$med" -v lo="$lo" -v hi="$hi" -v c="$calls" \
    'BEGIN { printf "%-9s %8d sendto/s  (%.2f us/call; %d-%d)  %d calls\n", w, m, 1e6 / m, lo, hi, c }'
done
