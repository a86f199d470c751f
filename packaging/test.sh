#!/usr/bin/env bash
# Tests the Debian packages the way a Pi owner uses them, without a Pi:
#
#   bash packaging/test.sh
#
# builds the amd64, arm64 and armhf packages (packaging/deb.sh), checks
# their contents, control fields and lintian; runs the arm64 and armhf
# daemons under qemu-user and talks to them with their own clients; installs
# the amd64 one into a fresh Debian root (mmdebstrap), runs it there on
# loopback, upgrades it over an edited conffile, removes and purges it. Every
# daemon started here listens on 127.0.0.1 with ports from the kernel; the
# packaged pinetd.toml (which broadcasts) is only checked, never run. Needs
# root (a chroot); skips with a message without it.
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
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  umount "$root/proc" 2>/dev/null || true
  rm -rf "$work"
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
TOML

# start_daemon LOG COMMAND...: runs a daemon, waits for its four listeners;
# sets chat, json, udp and discovery to their ports.
start_daemon() {
  local log=$1
  shift
  "$@" 2> "$log" &
  pids+=($!)
  local pid=$! waited=0
  until [ "$(grep -c 'listening' "$log")" -ge 4 ]; do
    kill -0 "$pid" 2>/dev/null || { cat "$log"; return 1; }
    sleep 0.1
    waited=$((waited + 1))
    [ $waited -lt 300 ] || { cat "$log"; return 1; }
  done
  port() { grep "service=$1" "$log" | grep -o 'addr=127.0.0.1:[0-9]*' | head -1 | cut -d: -f2; }
  chat=$(port chat) json=$(port json_echo) udp=$(port udp_echo) discovery=$(port discovery)
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
# through the client subcommands of PINETD (a command, maybe under qemu-user
# or chroot): what a student runs. Every step is a condition of its
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
  timeout 30 "$@" discover --port "$discovery" --to 127.0.0.1 --timeout 2s --require 1 >/dev/null
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
# procps is in Depends (the unit's /bin/kill), and the root has no package
# lists to fetch it with.
mmdebstrap --quiet --variant=apt --include=init-system-helpers,procps bookworm "$root" >/dev/null
mount -t proc proc "$root/proc"
cp "$amd64" "$root/tmp/"
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

echo "packaging: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
