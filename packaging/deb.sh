#!/usr/bin/env bash
# Debian packages of pinetd, built on an x86_64 machine:
#
#   bash packaging/deb.sh ARCH...     # ARCH: amd64, arm64 (64-bit Pi OS), armhf (32-bit, Pi 2+)
#
# writes target/debian/pinetd_<version>-<revision>_<ARCH>.deb for each. It
# installs what it needs (Debian's packages, cargo-deb from crates.io), never
# prompts, and can run again. DEB_REVISION sets the revision (default 1).
#
# amd64 is built with the toolchain on PATH. A cross build uses Debian's
# rustc-web with the target's standard library (libstd-rust-web-dev:ARCH),
# fetched and checked by apt against Debian's signed indexes, but with a
# private apt state under target/cross/toolchain/ARCH: the system's packages,
# its default toolchain and dpkg's architectures stay as they are. It takes the
# newest version whose ARCH index can be had (see the README when an index of
# the security archive fails), and links with the GNU cross compiler.
# Depends is read off each binary: libc6 at the newest GLIBC_ symbol version
# it uses (dpkg-shlibdeps cannot look at a foreign binary), libgcc-s1 likewise;
# and procps, for the unit's /bin/kill.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
revision=${DEB_REVISION:-1}
cargo_deb_version=3.8.0

[ $# -gt 0 ] || { echo "usage: bash packaging/deb.sh ARCH... (amd64, arm64, armhf)" >&2; exit 2; }
for arch in "$@"; do
  case $arch in amd64|arm64|armhf) ;; *) echo "deb.sh: unknown ARCH $arch (amd64, arm64, armhf)" >&2; exit 2 ;; esac
done

rust_target() {
  case $1 in
    amd64) echo x86_64-unknown-linux-gnu ;;
    arm64) echo aarch64-unknown-linux-gnu ;;
    armhf) echo armv7-unknown-linux-gnueabihf ;;
  esac
}
gnu_triple() {
  case $1 in
    amd64) echo x86_64-linux-gnu ;;
    arm64) echo aarch64-linux-gnu ;;
    armhf) echo arm-linux-gnueabihf ;;
  esac
}

updated=
apt_update() {
  [ -n "$updated" ] && return
  # A mirror caught mid-sync answers with a wrong size: try again.
  for attempt in 1 2 3; do
    apt-get update -qq && { updated=1; return; }
    echo "deb.sh: apt-get update failed (attempt $attempt)" >&2
    sleep 10
  done
  return 1
}
apt_install() {
  local missing=() package
  for package in "$@"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return
  apt_update
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

apt_install dpkg-dev binutils gzip
if ! cargo deb --version 2>/dev/null | grep -q "$cargo_deb_version"; then
  cargo install --locked --quiet cargo-deb --version "$cargo_deb_version"
fi

# "libc6 (>= 2.34), libgcc-s1 (>= 4.2)": the versions BINARY's symbols need.
depends_of() {
  local binary=$1 needed glibc gcc depends=()
  needed=$(readelf -d "$binary" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
  glibc=$(readelf -V --wide "$binary" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
  gcc=$(readelf -V --wide "$binary" | grep -o 'GCC_[0-9][0-9.]*' | sed 's/GCC_//' | sort -uV | tail -1)
  depends+=("libc6 (>= ${glibc:-2.17})")
  if grep -q '^libgcc_s' <<<"$needed"; then
    depends+=("libgcc-s1 (>= $(cut -d. -f1,2 <<<"${gcc:-3.0}"))")
  fi
  local library
  for library in $needed; do
    case $library in libc.so.*|libm.so.*|libdl.so.*|libpthread.so.*|librt.so.*|ld-linux*|libgcc_s.so.*) ;;
      *) echo "deb.sh: $binary needs $library, which this script cannot map to a package" >&2; exit 1 ;;
    esac
  done
  local IFS=,
  sed 's/,/, /g' <<<"${depends[*]}"
}

# Adds DEPENDS to the control file of the package DEB.
set_depends() {
  local deb=$1 depends=$2 root
  root=$(mktemp -d)
  chmod 755 "$root"
  dpkg-deb -R "$deb" "$root"
  sed -i "/^Depends:/d; /^Architecture:/a Depends: $depends" "$root/DEBIAN/control"
  dpkg-deb --root-owner-group -Zxz -b "$root" "$deb" >/dev/null
  rm -rf "$root"
}

# cross_toolchain ARCH: unpacks rustc-web (for amd64, this machine) and the
# standard library for ARCH, at one version, into target/cross/toolchain/ARCH
# and sets toolchain_rustc to a rustc that runs it. apt downloads and verifies
# the packages with its own sources list, lists and cache there; the shared
# libraries they need (LLVM's) are installed on this machine as usual.
cross_toolchain() {
  local arch=$1 dir root version llvm minor
  dir=$(pwd)/target/cross/toolchain/$arch
  root=$dir/root
  mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial" "$dir/debs"
  cat > "$dir/sources.list" <<LIST
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security bookworm-security main
LIST
  local apt=(-o "Dir::Etc::sourcelist=$dir/sources.list" -o Dir::Etc::sourceparts=-
    -o "Dir::State::lists=$dir/lists" -o "Dir::Cache=$dir/cache" -o Dir::State::status=/dev/null
    -o APT::Architectures::=amd64 -o "APT::Architectures::=$arch" -o APT::Sandbox::User=root)
  # An index that fails to download (or to verify) is left out: apt then
  # offers the newest version the other indexes have.
  apt-get "${apt[@]}" update -qq >&2 ||
    echo "deb.sh: an index failed to download; $arch takes the newest version the others offer" >&2
  version=$(apt-cache "${apt[@]}" policy "libstd-rust-web-dev:$arch" | sed -n 's/^ *Candidate: //p')
  if [ -z "$version" ] || [ "$version" = "(none)" ]; then
    echo "deb.sh: no libstd-rust-web-dev for $arch in Debian's indexes" >&2
    exit 1
  fi
  minor=$(sed 's/^\([0-9]*\.[0-9]*\).*/\1/' <<<"$version")
  toolchain_rustc=$dir/rustc
  if [ "$(cat "$root/.version" 2>/dev/null)" = "$version" ] && "$toolchain_rustc" --version >/dev/null 2>&1; then
    return
  fi
  llvm=$(apt-cache "${apt[@]}" show "libstd-rust-web-$minor:amd64=$version" |
    sed -n 's/^Depends:.*\(libllvm[0-9][0-9]*\).*/\1/p' | head -1)
  [ -n "$llvm" ] || { echo "deb.sh: no libllvm in the Depends of libstd-rust-web-$minor $version" >&2; exit 1; }
  rm -rf "$root" "$dir/debs"
  mkdir -p "$dir/debs"
  (cd "$dir/debs" && apt-get "${apt[@]}" download -qq "rustc-web:amd64=$version" \
    "libstd-rust-web-$minor:amd64=$version" "libstd-rust-web-dev:amd64=$version" \
    "libstd-rust-web-$minor:$arch=$version" "libstd-rust-web-dev:$arch=$version" "$llvm:amd64" >&2)
  local deb depends=()
  for deb in "$dir"/debs/*.deb; do
    dpkg-deb -x "$deb" "$root"
    # What the unpacked amd64 libraries link against, less what is unpacked.
    case $deb in *_amd64.deb) ;; *) continue ;; esac
    mapfile -t -O "${#depends[@]}" depends < <(dpkg-deb -f "$deb" Depends | tr ',' '\n' |
      sed 's/|.*//; s/(.*)//; s/:any//; s/[[:space:]]//g' |
      grep -v -e '^$' -e '^libstd-rust-web' -e '^libllvm' -e '^rustc-web$' -e '^gcc$' -e '^libc-dev$' -e '^binutils')
  done
  apt_install $(printf '%s\n' "${depends[@]}" | sort -u)
  cat > "$toolchain_rustc" <<RUSTC
#!/bin/sh
LD_LIBRARY_PATH='$root/usr/lib/x86_64-linux-gnu' exec '$root/usr/bin/rustc' "\$@"
RUSTC
  chmod +x "$toolchain_rustc"
  if ! "$toolchain_rustc" --version >/dev/null; then
    ldd "$root/usr/bin/rustc" | grep 'not found' >&2 || true
    echo "deb.sh: the unpacked rustc for $arch does not run" >&2
    exit 1
  fi
  echo "$version" > "$root/.version"
}

# The builds run at once, each in its own target directory (target/cross/ARCH
# for a cross build): the last step of each, fat LTO into one codegen unit,
# uses one core. The native build is always made: the man pages and
# completions come from its clap definitions.
builds=()
build() { # build ARCH: starts its release build in the background
  local arch=$1 target triple linker_var
  target=$(rust_target "$arch")
  triple=$(gnu_triple "$arch")
  if [ "$arch" = amd64 ]; then
    cargo build --release --locked --quiet --bin pinetd &
  else
    linker_var=CARGO_TARGET_$(tr 'a-z-' 'A-Z_' <<<"$target")_LINKER
    env CARGO_TARGET_DIR="target/cross/$arch" RUSTC="${cross_rustc[$arch]}" RUSTDOC=false \
      "$linker_var=$triple-gcc" \
      cargo build --release --locked --quiet --target "$target" --bin pinetd &
  fi
  builds+=("$arch:$!")
}
declare -A cross_rustc=()
for arch in "$@"; do
  [ "$arch" = amd64 ] && continue
  triple=$(gnu_triple "$arch")
  apt_install "gcc-$triple" "binutils-$triple" "libc6-dev-$arch-cross"
  cross_toolchain "$arch"
  cross_rustc[$arch]=$toolchain_rustc
  echo "deb.sh: $arch with $("$toolchain_rustc" --version)" >&2
done
build amd64
for arch in "$@"; do
  [ "$arch" = amd64 ] || build "$arch"
done
failed=
for started in "${builds[@]}"; do
  wait "${started#*:}" || { echo "deb.sh: the ${started%%:*} build failed" >&2; failed=1; }
done
[ -z "$failed" ] || exit 1

# The man pages (pinetd.1 and pinetd-NAME.1 for each subcommand; Cargo.toml
# packages every target/assets/*.1.gz) and the completions.
rm -rf target/assets
target/release/pinetd generate-assets --out-dir target/assets
gzip -9n target/assets/*.1

for arch in "$@"; do
  target=$(rust_target "$arch")
  if [ "$arch" = amd64 ]; then
    target_dir=target
    binary=target/release/pinetd
    deb_args=()
  else
    target_dir=target/cross/$arch
    binary=$target_dir/$target/release/pinetd
    deb_args=(--target "$target")
  fi
  # procps: the unit's ExecReload runs /bin/kill, which minimal Debian
  # systems (containers, debootstrap --variant=minbase) lack.
  depends="$(depends_of "$binary"), procps"
  deb=$(CARGO_TARGET_DIR=$target_dir cargo deb --no-build --locked --quiet --strip \
    --deb-revision "$revision" "${deb_args[@]}" --output target/debian/)
  set_depends "$deb" "$depends"
  echo "$deb: Depends: $depends"
done
