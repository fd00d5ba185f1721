#!/usr/bin/env bash
# Builds every fuzz target once, then runs each for a bounded time on a
# copy of its seed corpus (the tree is never written to). Exits non-zero
# on any crash, timeout or out-of-memory, after printing each failing
# input's path and base64.
#
#   fuzz/run.sh                        # every target, 60 s each
#   FUZZ_SECONDS=300 fuzz/run.sh dispatch credentials
#
# Environment: FUZZ_SECONDS (per target, default 60), FUZZ_RSS_MB (default
# 2048), FUZZ_TIMEOUT (seconds per input, default 10), CARGO_TARGET_DIR
# (default fuzz/target). Needs cargo-fuzz and a nightly toolchain (or
# RUSTC_BOOTSTRAP=1 on stable when no nightly is installed).
set -euo pipefail
cd "$(dirname "$0")"

seconds=${FUZZ_SECONDS:-60}
rss_mb=${FUZZ_RSS_MB:-2048}
timeout_s=${FUZZ_TIMEOUT:-10}
all=(hmac_verify dispatch spec_compile credentials version_negotiation)
if [ $# -gt 0 ]; then targets=("$@"); else targets=("${all[@]}"); fi

if cargo +nightly --version >/dev/null 2>&1; then
  cargo=(cargo +nightly)
else
  echo "no nightly toolchain; using RUSTC_BOOTSTRAP=1"
  export RUSTC_BOOTSTRAP=1
  cargo=(cargo)
fi
# No sanitizer: the gateway's crates forbid unsafe code, and an ASan build
# takes about 40 % longer, which CI cannot afford; panics, overflow checks and
# debug assertions are what the oracles rely on. `cargo fuzz run` alone
# adds ASan.
build_flags=(--sanitizer none --debug-assertions)

echo "== fuzz: building ${targets[*]}"
start=$(date +%s)
for t in "${targets[@]}"; do
  [ -f "fuzz_targets/$t.rs" ] || { echo "unknown fuzz target: $t" >&2; exit 2; }
done
if [ $# -gt 0 ]; then
  for t in "${targets[@]}"; do "${cargo[@]}" fuzz build "${build_flags[@]}" "$t"; done
else
  "${cargo[@]}" fuzz build "${build_flags[@]}"
fi
echo "== fuzz: built in $(( $(date +%s) - start )) s"

# The binaries are run directly: `cargo fuzz run` would create
# fuzz/artifacts/ in the tree.
host=$(rustc -vV | sed -n 's/^host: //p')
bin_dir="${CARGO_TARGET_DIR:-target}/$host/release"
work=$(mktemp -d "${TMPDIR:-/tmp}/gateway-fuzz.XXXXXX")
failed=()
for t in "${targets[@]}"; do
  mkdir -p "$work/$t/corpus" "$work/$t/artifacts"
  if [ -d "corpus/$t" ]; then cp -R "corpus/$t/." "$work/$t/corpus/"; fi
  dict=()
  if [ -f "dicts/$t.dict" ]; then dict=("-dict=dicts/$t.dict"); fi
  echo "== fuzz: $t for ${seconds} s ($(ls "$work/$t/corpus" | wc -l) seeds)"
  status=0
  "$bin_dir/$t" "$work/$t/corpus" \
    -max_total_time="$seconds" -rss_limit_mb="$rss_mb" -timeout="$timeout_s" \
    -artifact_prefix="$work/$t/artifacts/" -print_final_stats=1 ${dict[@]+"${dict[@]}"} \
    >"$work/$t/log" 2>&1 || status=$?
  # The last status line (`#N DONE cov: ... ft: ... corp: ...`) and the
  # final stats.
  grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE)' "$work/$t/log" | tail -n 1 || true
  grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$work/$t/log" | tr '\n' ' ' || true
  echo
  if [ "$status" -ne 0 ]; then
    failed+=("$t")
    echo "!! $t failed (exit $status); the end of its log:"
    tail -n 60 "$work/$t/log"
    for a in "$work/$t/artifacts"/*; do
      [ -f "$a" ] || continue
      echo "!! failing input: $a"
      echo "!! base64: $(base64 -w0 "$a")"
      echo "!! reproduce: (cd fuzz && echo '$(base64 -w0 "$a")' | base64 -d > /tmp/crash && cargo +nightly fuzz run -s none $t /tmp/crash)"
    done
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "== fuzz: FAILED: ${failed[*]} (inputs and logs kept in $work)"
  exit 1
fi
rm -rf "$work"
echo "== fuzz: ${#targets[@]} targets clean after ${seconds} s each ($(( $(date +%s) - start )) s in all)"
