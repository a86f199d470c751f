#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 30) from its committed seed
# corpus, with AddressSanitizer; fails on the first crash, leak, hang (10 s
# per input) or broken invariant, leaving the input in fuzz/artifacts/TARGET/.
#
#   bash fuzz/run.sh [SECONDS] [TARGET...]
#
# cargo-fuzz needs a nightly compiler: RUSTC_BOOTSTRAP=1 lets the installed
# stable one take the -Z flags. New inputs the fuzzer finds go to a scratch
# folder, not to fuzz/corpus; copy the ones worth keeping there.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(chat_lines json_stream config datagrams)
command -v cargo-fuzz >/dev/null || {
  echo "fuzz/run.sh: cargo-fuzz is missing: cargo install --locked cargo-fuzz" >&2
  exit 1
}
export RUSTC_BOOTSTRAP=1
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cargo fuzz build >/dev/null 2>"$scratch/build.log" || {
  cat "$scratch/build.log" >&2
  exit 1
}
# One target per core at once: each fuzzer is a single process.
fuzz_one() { # fuzz_one TARGET: runs it, then prints its line or its failure
  local target=$1 runs cov
  mkdir -p "$scratch/$target"
  if ! cargo fuzz run "$target" "$scratch/$target" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$scratch/$target.log" 2>&1; then
    tail -n 60 "$scratch/$target.log" >&2
    echo "fuzz/run.sh: $target failed; its input is in fuzz/artifacts/$target/" >&2
    return 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$scratch/$target.log")
  cov=$(grep -o 'cov: [0-9]*' "$scratch/$target.log" | tail -n 1)
  echo "fuzz $target: ${runs:-?} inputs in ${seconds}s, $cov, no failure"
}
jobs=$(nproc 2>/dev/null || echo 1)
running=() failed=0
for target in "${targets[@]}"; do
  fuzz_one "$target" &
  running+=("$!")
  if [ ${#running[@]} -ge "$jobs" ]; then
    wait "${running[0]}" || failed=1
    running=("${running[@]:1}")
  fi
done
for pid in "${running[@]}"; do
  wait "$pid" || failed=1
done
exit "$failed"
