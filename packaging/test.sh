#!/usr/bin/env bash
# Tests the Debian packages the way a Pi owner uses them, without a Pi:
#
#   bash packaging/test.sh
#
# builds the amd64, arm64 and armhf packages (packaging/deb.sh), checks
# their contents, control fields and lintian; runs the arm64 and armhf
# daemons under qemu-user and talks to them with their own clients; installs
# the amd64 one into a fresh Debian root (mmdebstrap), runs it there on
# loopback, upgrades it over an edited conffile, removes and purges it; then
# boots that root's systemd and does it all again under it: install, start,
# reload, restart on upgrade, stop, purge. Every daemon started outside that
# boot listens on 127.0.0.1 with ports from the kernel. The packaged
# pinetd.toml (which broadcasts) runs only inside the boot's own network
# namespace, whose one interface is its loopback. Needs root (a chroot,
# namespaces); skips with a message without it.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "skipped: packaging/test.sh needs root (apt, chroot)"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive

passed=0
failed=0
check() { # check NAME COMMAND...: runs COMMAND, counts and reports it
  local name=$1
  shift
  if "$@" > "$work/out" 2>&1; then
    passed=$((passed + 1))
    echo "ok: $name"
  else
    failed=$((failed + 1))
    echo "FAILED: $name"
    sed 's/^/    /' "$work/out" | tail -20
  fi
}

work=$(mktemp -d)
root=$work/root
pids=()
# The booted systemd (below): the unshare that started it, its PID here, its
# cgroup, and a cgroup2 mount when this script made one.
unshare_pid='' system_pid='' cgroup='' cgroup_mount=''
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -z "$unshare_pid" ] || stop_system
  umount "$root/proc" 2>/dev/null || true
  [ -z "$cgroup_mount" ] || umount "$cgroup_mount" 2>/dev/null || true
  # Not into a mount left behind (a cgroup hierarchy above all).
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT

command -v mmdebstrap >/dev/null && command -v qemu-aarch64 >/dev/null && command -v lintian >/dev/null || {
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends mmdebstrap qemu-user lintian >/dev/null
}

bash packaging/deb.sh amd64 arm64 armhf
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
amd64=target/debian/pinetd_${version}-1_amd64.deb
arm64=target/debian/pinetd_${version}-1_arm64.deb
armhf=target/debian/pinetd_${version}-1_armhf.deb

# A config on loopback only, every port from the kernel.
cat > "$work/loop.toml" <<'TOML'
[chat]
listen = "127.0.0.1:0"
[json_echo]
listen = "127.0.0.1:0"
[udp_echo]
listen = "127.0.0.1:0"
[discovery]
listen = "127.0.0.1:0"
[announcer]
enabled = false
[web]
listen = "127.0.0.1:0"
TOML

# start_daemon LOG COMMAND...: runs a daemon, waits for its listeners;
# sets chat, json, udp and discovery to their ports.
start_daemon() {
  local log=$1
  shift
  "$@" 2> "$log" &
  pids+=($!)
  local pid=$! waited=0
  until [ "$(grep -c 'listening' "$log")" -ge 5 ]; do
    kill -0 "$pid" 2>/dev/null || { cat "$log"; return 1; }
    sleep 0.1
    waited=$((waited + 1))
    [ $waited -lt 300 ] || { cat "$log"; return 1; }
  done
  port() { grep "service=$1" "$log" | grep -o 'addr=127.0.0.1:[0-9]*' | head -1 | cut -d: -f2; }
  chat=$(port chat) json=$(port json_echo) udp=$(port udp_echo) discovery=$(port discovery)
  web=$(port web)
  daemon_pid=$pid
}

# wait_for FILE PATTERN: until PATTERN is in FILE, at most 30 s.
wait_for() {
  local _
  for _ in $(seq 300); do
    grep -q "$2" "$1" 2>/dev/null && return
    sleep 0.1
  done
  echo "not in $1 after 30 s: $2"
  return 1
}

# talk_to PINETD...: one round trip with each TCP and UDP service of the
# daemon started last (on the ports in chat, json, udp and discovery),
# through the client subcommands of PINETD (a command, maybe under qemu-user,
# chroot or nsenter): what a student runs. Every step is a condition of its
# own (set -e does not hold in a function `check` runs), each stdin ends, and
# each client has a deadline.
talk_to() {
  chat_round_trip "$@" || return 1
  [ "$(echo '{"name": "jung", "count": 3}' | timeout 30 "$@" json 127.0.0.1 "$json")" = \
    '{"name":"jung","count":3}' ] || { echo "json: no echo"; return 1; }
  [ "$(timeout 30 "$@" json 127.0.0.1 "$json" --count 2 | tail -1)" = '{"name":"jung","count":2}' ] ||
    { echo "json --count: no echo"; return 1; }
  [ "$(timeout 30 "$@" udp 127.0.0.1 "$udp" "Hello UDP Listener" 2>/dev/null)" = "Hello UDP Listener" ] ||
    { echo "udp: no echo"; return 1; }
  timeout 30 "$@" discover --port "$discovery" --to 127.0.0.1 --timeout 2s --require 1 >/dev/null || return 1
  # The web page of a daemon started here (not of one in a booted system).
  [ -z "${web:-}" ] || python3 - "$web" <<'PY' || { echo "web: no page"; return 1; }
import json, sys, urllib.request
base = f"http://127.0.0.1:{sys.argv[1]}"
assert json.load(urllib.request.urlopen(base + "/healthz", timeout=30)) == {"status": "ok"}
page = urllib.request.urlopen(base + "/", timeout=30).read().decode()
assert '<html lang="en">' in page, page[:200]
PY
}

# chat_round_trip PINETD...: b's line reaches a, two `pinetd chat` clients.
# a is in the room before b speaks, and says bye once it has b's line.
chat_round_trip() {
  local out=$work/chat.out a
  : > "$out"
  { wait_for "$out" 'hello from b' >/dev/null; echo bye; } |
    timeout 60 "$@" chat 127.0.0.1 "$chat" --name a > "$out" 2>&1 &
  a=$!
  wait_for "$out" 'you are now a' || return 1
  echo 'hello from b' | timeout 30 "$@" chat 127.0.0.1 "$chat" --name b >/dev/null 2>&1 ||
    { echo "chat: b failed"; return 1; }
  wait "$a" || { echo "chat: a failed"; cat "$out"; return 1; }
  grep -qx '\[b\] hello from b' "$out" || { echo "chat: a did not get b's line"; cat "$out"; return 1; }
}

echo "== contents and control fields"
for deb in "$amd64" "$arm64" "$armhf"; do
  arch=${deb##*_}
  arch=${arch%.deb}
  dpkg-deb -c "$deb" > "$work/contents.$arch"
  dpkg-deb -I "$deb" > "$work/info.$arch"
  dpkg-deb -e "$deb" "$work/control.$arch"
  for path in ./usr/bin/pinetd ./etc/pinetd/pinetd.toml ./usr/lib/systemd/system/pinetd.service \
    ./usr/share/man/man1/pinetd.1.gz ./usr/share/bash-completion/completions/pinetd \
    ./usr/share/zsh/vendor-completions/_pinetd ./usr/share/fish/vendor_completions.d/pinetd.fish \
    ./usr/share/doc/pinetd/copyright ./usr/share/doc/pinetd/changelog.Debian.gz; do
    check "$arch: holds $path" grep -q " $path\$" "$work/contents.$arch"
  done
  check "$arch: Architecture: $arch" grep -qx " Architecture: $arch" "$work/info.$arch"
  check "$arch: Depends on libc6 (>= 2.x)" grep -Eq '^ Depends: libc6 \(>= 2\.[0-9]+\)' "$work/info.$arch"
  check "$arch: the config is a conffile" grep -qx /etc/pinetd/pinetd.toml "$work/control.$arch/conffiles"
  check "$arch: Depends on procps (the unit's ExecReload runs /bin/kill)" \
    grep -Eq '^ Depends: .*\bprocps\b' "$work/info.$arch"
  check "$arch: maintainer scripts enable, restart and stop the unit" \
    grep -q 'deb-systemd-helper enable pinetd.service' "$work/control.$arch/postinst"
  check "$arch: lintian finds no error" lintian --fail-on error "$deb"
done
version_is() { [ "$("$@" --version)" = "pinetd $version" ]; }
# The Pi's binaries under qemu-user, each with its cross C library: the
# daemon, and its clients talking to it, as on a Pi.
for arch in arm64 armhf; do
  case $arch in
    arm64) deb=$arm64 elf='ARM aarch64' qemu=(qemu-aarch64 -L /usr/aarch64-linux-gnu) ;;
    armhf) deb=$armhf elf='ARM, EABI5' qemu=(qemu-arm -L /usr/arm-linux-gnueabihf) ;;
  esac
  echo "== $arch under qemu-user"
  mkdir -p "$work/$arch"
  dpkg-deb -x "$deb" "$work/$arch"
  binary=$work/$arch/usr/bin/pinetd
  check "$arch: the binary is a $elf ELF, stripped" \
    bash -c "file '$binary' | grep -q '$elf.*stripped' && ! file '$binary' | grep -q 'not stripped'"
  qemu+=("$binary")
  check "$arch: --version" version_is "${qemu[@]}"
  check "$arch: check on the packaged config" "${qemu[@]}" check --config "$work/$arch/etc/pinetd/pinetd.toml"
  if start_daemon "$work/$arch.log" "${qemu[@]}" --config "$work/loop.toml"; then
    check "$arch: chat, JSON echo, UDP echo and discovery answer its own clients" talk_to "${qemu[@]}"
    kill "$daemon_pid"
  else
    check "$arch: the daemon starts" false
  fi
done

echo "== amd64 installed into a fresh Debian root"
# systemd to boot the root below; procps is in Depends (the unit's /bin/kill),
# and the root has no package lists to fetch it with.
mmdebstrap --quiet --variant=apt --include=init-system-helpers,systemd,procps bookworm "$root" >/dev/null
mount -t proc proc "$root/proc"
cp "$amd64" "$root/tmp/"
# Kept for the boot below: cargo-deb deletes it when it makes revision 2.
cp "$amd64" "$work/"
cp "$work/loop.toml" "$root/tmp/loop.toml"
in_root() { chroot "$root" "$@"; }
check "install with apt" in_root apt-get install -y -q "/tmp/$(basename "$amd64")"
check "pinetd check on the installed config" in_root pinetd check --config /etc/pinetd/pinetd.toml
check "the unit is enabled for multi-user.target" \
  test -L "$root/etc/systemd/system/multi-user.target.wants/pinetd.service"
check "the man page is installed" test -s "$root/usr/share/man/man1/pinetd.1.gz"
if start_daemon "$work/root.log" chroot "$root" pinetd --config /tmp/loop.toml; then
  check "the installed daemon answers" talk_to chroot "$root" pinetd
  kill "$daemon_pid"
else
  check "the installed daemon starts" false
fi

echo "== upgrade keeps an edited conffile"
echo "# edited by the teacher" >> "$root/etc/pinetd/pinetd.toml"
DEB_REVISION=2 bash packaging/deb.sh amd64 >/dev/null
cp "target/debian/pinetd_${version}-2_amd64.deb" "$root/tmp/"
check "upgrade to ${version}-2" in_root apt-get install -y -q "/tmp/pinetd_${version}-2_amd64.deb"
check "the installed version is ${version}-2" \
  bash -c "chroot '$root' dpkg-query -W -f '\${Version}' pinetd | grep -qx '${version}-2'"
check "the edit survives the upgrade" grep -qx "# edited by the teacher" "$root/etc/pinetd/pinetd.toml"

echo "== remove, then purge"
check "remove" in_root apt-get remove -y -q pinetd
check "removed: the binary is gone" test ! -e "$root/usr/bin/pinetd"
check "removed: the conffile stays" test -f "$root/etc/pinetd/pinetd.toml"
check "purge" in_root dpkg --purge pinetd
check "purged: the conffile is gone" test ! -e "$root/etc/pinetd"
check "purged: the unit is no longer enabled" \
  test ! -e "$root/etc/systemd/system/multi-user.target.wants/pinetd.service"
umount "$root/proc"

# The root's own systemd boots as PID 1 of new PID, mount, network, UTS, IPC
# and cgroup namespaces, chrooted into the root, like a container (this
# works where systemd-nspawn cannot boot). Its network namespace has only
# its loopback, which systemd brings up: the packaged config, which
# broadcasts, reaches nothing else. As in a container, /proc/sys and /sys
# are read-only and the clock, kernel modules and raw I/O are out of reach,
# so what it sets stays its own; it has a cgroup of its own, removed at the
# end. A chroot is refused new user namespaces, as many containers are.
boot_system() {
  local cgroup_root unit _ state=
  cgroup_root=$(findmnt -n -o TARGET -t cgroup2 | head -1)
  if [ -z "$cgroup_root" ]; then
    # Mounting it from here sets the hierarchy's options: only where none is.
    cgroup_mount=$work/cgroup
    mkdir -p "$cgroup_mount"
    mount -t cgroup2 cgroup2 "$cgroup_mount" || return 1
    cgroup_root=$cgroup_mount
  fi
  cgroup=$cgroup_root/pinetd-test-$$
  mkdir "$cgroup" || return 1
  # Not wanted, and not done in a container: gettys on the console (here
  # this machine's) and a remount of / (this machine's file system).
  for unit in getty.target console-getty.service systemd-remount-fs.service; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
  done
  : > "$work/console"
  (
    echo "$BASHPID" > "$cgroup/cgroup.procs" || exit 1
    exec unshare --pid --fork --mount --net --uts --ipc --cgroup --kill-child -- bash -c '
      set -e
      root=$1
      mount --bind "$root" "$root"
      mount -t proc proc "$root/proc"
      mount --bind "$root/proc/sys" "$root/proc/sys"
      mount -o remount,bind,ro "$root/proc/sys"
      mount -t sysfs -o ro sysfs "$root/sys"
      mount -t cgroup2 cgroup2 "$root/sys/fs/cgroup"
      # Device nodes of the root (mmdebstrap makes them), not devtmpfs.
      mount --bind "$root/dev" "$root/dev"
      mount --bind "$2" "$root/dev/console"
      exec setpriv --bounding-set -sys_module,-sys_time,-sys_rawio,-wake_alarm,-syslog \
        chroot "$root" env -i container=pinetd-test /lib/systemd/systemd --system
    ' boot "$root" "$work/console"
  ) > "$work/boot.log" 2>&1 &
  unshare_pid=$!
  for _ in $(seq 300); do
    system_pid=$(cat "/proc/$unshare_pid/task/$unshare_pid/children" 2>/dev/null || true)
    system_pid=${system_pid%% *}
    # Once it is systemd, it is chrooted: nsenter --root then takes the
    # root's directory, never this machine's.
    [ -n "$system_pid" ] && [ "$(cat "/proc/$system_pid/comm" 2>/dev/null)" = systemd ] && break
    system_pid=
    sleep 0.1
  done
  [ -n "$system_pid" ] || { cat "$work/boot.log"; return 1; }
  system=(nsenter --target "$system_pid" --all --root --wd
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive)
  for _ in $(seq 300); do
    state=$(in_system systemctl is-system-running 2>/dev/null) || true
    case $state in running | degraded) return ;; esac
    sleep 0.1
  done
  echo "systemd is ${state:-unreachable}"
  cat "$work/boot.log" "$work/console"
  return 1
}
# in_system COMMAND...: runs COMMAND in the booted root, in its namespaces.
in_system() { timeout 120 "${system[@]}" "$@"; }
# stop_system: ends the booted systemd and everything in its namespaces,
# then removes its cgroup.
stop_system() {
  kill -KILL "$unshare_pid" ${system_pid:+"$system_pid"} 2>/dev/null || true
  wait "$unshare_pid" 2>/dev/null || true
  unshare_pid='' system_pid=''
  [ -d "$cgroup" ] || return 0
  local _
  for _ in $(seq 100); do
    grep -qx 'populated 0' "$cgroup/cgroup.events" && break
    sleep 0.1
  done
  find "$cgroup" -depth -type d -exec rmdir {} + || echo "left behind: the cgroup $cgroup"
}
# unit_is PROPERTY=VALUE...: the unit's properties have these values.
unit_is() {
  local properties got want
  properties=$(printf '%s\n' "$@" | cut -d= -f1 | paste -sd,)
  got=$(in_system systemctl show pinetd --property="$properties" | sort)
  want=$(printf '%s\n' "$@" | sort)
  [ "$got" = "$want" ] || { echo "$got"; return 1; }
}
main_pid() { in_system systemctl show pinetd --property=MainPID --value; }
main_pid_is_not() { # PID: the unit has a main process, not PID
  local now
  now=$(main_pid)
  [ "$now" != 0 ] && [ "$now" != "$1" ]
}
# (Each output is read whole before grep: grep -q in a pipe can end its
# writer early, and pipefail would count that.)
user_namespaces_refused() {
  local out
  out=$(in_system unshare --user true 2>&1) && return 1
  grep -q 'Operation not permitted' <<<"$out"
}
status_says() { grep -q "$1" <<<"$(in_system systemctl show pinetd --property=StatusText --value)"; }
journal_says() { grep -qF "$1" <<<"$(in_system journalctl -u pinetd -o cat)"; }
status_answers() { # `pinetd status`, as root: exit 0, the daemon under systemd
  local out
  out=$(in_system pinetd status 2>&1) || { echo "$out"; return 1; }
  grep -q "(under systemd)" <<<"$out" || { echo "$out"; return 1; }
}
status_refuses_others() { # as nobody: exit 1, permission denied
  local out
  out=$(in_system setpriv --reuid=nobody --regid=nogroup --clear-groups pinetd status 2>&1) && return 1
  grep -q "permission denied at /run/pinetd/control.sock" <<<"$out" || { echo "$out"; return 1; }
}
runtime_dir_gone() { in_system test ! -e /run/pinetd; }
transcript_written() { # today's transcript has the lines the clients said
  local _
  for _ in $(seq 20); do
    in_system sh -c 'grep -q "	b	hello from b" "/var/lib/pinetd/chat/$(date +%F).tsv"' && return
    sleep 0.5
  done
  return 1
}
udp_replies() { # TEXT: the UDP echo answers TEXT, within 10 s
  local _
  for _ in $(seq 20); do
    [ "$(in_system pinetd udp 127.0.0.1 20001 "Hello UDP Listener" 2>/dev/null)" = "$1" ] && return
    sleep 0.5
  done
  return 1
}
nothing_left() { # of pinetd, after a purge: its config, its unit, a user
  test ! -e "$root/etc/pinetd" && unit_is LoadState=not-found &&
    ! grep -q pinetd "$root/etc/passwd" "$root/etc/group" && test ! -e "$root/var/lib/private/pinetd"
}

echo "== amd64 under the root's own systemd (its own namespaces, loopback only)"
if check "systemd boots in the root" boot_system; then
  deb1=pinetd_${version}-1_amd64.deb
  deb2=pinetd_${version}-2_amd64.deb
  # Booting emptied /tmp.
  cp "$work/$deb1" "target/debian/$deb2" "$root/tmp/"
  check "user namespaces are refused here, as in many containers" user_namespaces_refused
  check "install with apt" in_system apt-get install -y -q "/tmp/$deb1"
  check "the unit is active (running)" unit_is ActiveState=active SubState=running
  check "its STATUS line counts clients" status_says clients
  check "pinetd status answers root over /run/pinetd/control.sock" status_answers
  check "pinetd status is refused to other users" status_refuses_others
  chat=9999 json=9000 udp=20001 discovery=37021 web=
  check "the packaged config answers the installed clients" talk_to "${system[@]}" pinetd
  check "the chat's transcript is written in its StateDirectory" transcript_written
  before=$(main_pid)
  # A teacher's edit: the course server's fixed UDP reply.
  in_system sed -i '/^\[udp_echo\]/,/^\[/ s/^reply = ""/reply = "Hello UDP Client"/' /etc/pinetd/pinetd.toml
  check "systemctl reload" in_system systemctl reload pinetd
  check "reloaded: the UDP echo answers Hello UDP Client" udp_replies "Hello UDP Client"
  check "reloaded in place: the same main process" unit_is ActiveState=active SubState=running MainPID="$before"
  check "the journal says what the reload changed" journal_says 'reloaded changed=["udp_echo"]'
  check "upgrade to ${version}-2" in_system apt-get install -y -q "/tmp/$deb2"
  check "restarted on upgrade: a new main process" main_pid_is_not "$before"
  check "restarted on upgrade: active (running)" unit_is ActiveState=active SubState=running
  check "the edit survives the upgrade and applies" udp_replies "Hello UDP Client"
  check "systemctl stop" in_system systemctl stop pinetd
  check "stopped cleanly: inactive, exit status 0" unit_is ActiveState=inactive Result=success ExecMainStatus=0
  check "stopped: its runtime directory is gone" runtime_dir_gone
  check "purge with apt" in_system apt-get purge -y -q pinetd
  check "purged: no config, no unit, no user left" nothing_left
  stop_system
fi

echo "packaging: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
