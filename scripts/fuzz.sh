#!/usr/bin/env bash
# scripts/fuzz.sh [SECONDS]: builds the libFuzzer targets (clang, ASan+UBSan)
# in build-fuzz/ and runs each for SECONDS (default $FUZZ_SECONDS or 60), two
# at a time. `make fuzz` runs it; .ci/run runs it after `make test`.
#
# Each target starts from its checked-in seeds (fuzz/corpus/NAME/) and first
# replays fuzz/regressions/NAME/* (inputs that once crashed: each crash found
# is kept there as a regression test). New inputs go to build-fuzz/corpus/NAME
# (not checked in); a crash leaves its input in build-fuzz/artifacts/NAME/ and
# makes this script exit 1.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-${FUZZ_SECONDS:-60}}
build=${FUZZ_BUILD:-$here/build-fuzz}
targets="fuzz_config fuzz_config_values fuzz_deadline_header fuzz_http_request fuzz_http_msg fuzz_addr
  fuzz_admin_api fuzz_harness_api fuzz_gate fuzz_http_proxy fuzz_tls_listener"

CC=clang cmake -S "$here" -B "$build" -DCYNIC_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DBUILD_TESTING=OFF >/dev/null
cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)" --target $targets >/dev/null

run_one() {
  local name=$1 log=$build/fuzz-$1.log
  mkdir -p "$build/corpus/$name" "$build/artifacts/$name"
  local regress=()
  if [ -d "$here/fuzz/regressions/$name" ]; then
    mapfile -t regress < <(find "$here/fuzz/regressions/$name" -type f | sort)
  fi
  if [ "${#regress[@]}" -gt 0 ] &&
     ! "$build/$name" "${regress[@]}" >"$log" 2>&1; then
    echo "fuzz: $name: a regression input crashes again (see $log)"; return 1
  fi
  if "$build/$name" -max_total_time="$secs" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
       -artifact_prefix="$build/artifacts/$name/" "$build/corpus/$name" \
       "$here/fuzz/corpus/$name" >"$log" 2>&1; then
    echo "fuzz: $name: $(grep -Eo 'Done [0-9]+ runs in [0-9]+ second' "$log" | tail -1), no crash"
  else
    echo "fuzz: $name: CRASH, input in $build/artifacts/$name/ (log $log):"
    grep -E "ERROR|SUMMARY|runtime error" "$log" | head -5
    return 1
  fi
}

status=0
pids=()
for name in $targets; do
  run_one "$name" & pids+=($!)
  if [ "${#pids[@]}" -ge 2 ]; then
    wait "${pids[0]}" || status=1
    pids=("${pids[@]:1}")
  fi
done
for p in "${pids[@]}"; do wait "$p" || status=1; done
exit $status
