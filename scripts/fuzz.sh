#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time.
#
#   scripts/fuzz.sh [seconds-per-target] [target ...]      (default 20 s, all targets)
#
# Works on the stable toolchain: cargo-fuzz passes nightly-only flags (-Zsanitizer=...,
# -Zsanitizer-coverage... via RUSTFLAGS, cargo -Z options), which RUSTC_BOOTSTRAP=1 lets
# stable rustc and cargo accept. The targets are built without a sanitizer (-s none):
# the code under test is safe Rust, and what the targets catch are panics, failed
# invariants and overflow (debug assertions and overflow checks are on); ASan would only
# slow the build and the runs. FUZZ_SANITIZER=address brings it back.
#
# One fuzzer process at a time (no -jobs/-workers: one core), each for the given time
# (-max_total_time), starting from the seeds in fuzz/corpus/<target>/ and a scratch corpus
# under <target dir>/work/ (the committed seeds are never written to). A crash, timeout or
# OOM input is copied to fuzz/regressions/<target>/, which `cargo test` replays
# (tests/fuzz_regressions.rs, iotsafe/iotsafe/tests/fuzz_regressions.rs); the script then
# goes on with the other targets and exits 1 at the end.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top/fuzz"

secs=${1:-20}
shift || true
case "$secs" in '' | *[!0-9]*)
  echo "usage: scripts/fuzz.sh [seconds-per-target] [target ...]" >&2
  exit 2
  ;;
esac

export RUSTC_BOOTSTRAP=1
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
sanitizer=${FUZZ_SANITIZER:-none}
# Build output and the scratch corpus; CI points this at a cache outside the clone so a
# run rebuilds only the crates that changed (a cold build of the ~200 dependencies takes
# about 4 minutes on 2 cores).
target_dir=${FUZZ_TARGET_DIR:-$top/fuzz/target}
# 16 codegen units: a much faster build for a small runtime cost.
build_flags=(--sanitizer "$sanitizer" --codegen-units 16 --target-dir "$target_dir")

if ! command -v cargo-fuzz >/dev/null; then
  echo "fuzz: installing cargo-fuzz"
  timeout 900 cargo install --locked cargo-fuzz
fi

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

echo "== fuzz: building the targets (sanitizer: $sanitizer, target dir: $target_dir)"
start=$(date +%s)
cargo fuzz build "${build_flags[@]}"
echo "fuzz: build took $(($(date +%s) - start)) s"

work="$target_dir/work"
failed=()
summary=()
for t in "${targets[@]}"; do
  mkdir -p "$work/corpus/$t" "$work/artifacts/$t" "$work/logs"
  log="$work/logs/$t.log"
  echo "== fuzz: $t for ${secs} s"
  rc=0
  # -timeout: one input taking 10 s is a bug (the request path must be fast);
  # -rss_limit_mb: a parser must not balloon on a small input.
  cargo fuzz run "${build_flags[@]}" "$t" "$work/corpus/$t" "corpus/$t" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/$t/" >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "$log" | tail -1 || true)
  line=$(printf '%-16s execs %-10s (%s/s)  %s' "$t" "${execs:-?}" "${rate:-?}" "${cov:-cov: ?}")
  if [ "$rc" -ne 0 ]; then
    mkdir -p "$top/fuzz/regressions/$t"
    kept=0
    for f in "$work/artifacts/$t"/crash-* "$work/artifacts/$t"/timeout-* "$work/artifacts/$t"/oom-* \
      "$work/artifacts/$t"/leak-*; do
      [ -f "$f" ] || continue
      cp "$f" "$top/fuzz/regressions/$t/"
      kept=$((kept + 1))
    done
    echo "fuzz: $t FAILED (exit $rc); $kept input(s) kept in fuzz/regressions/$t/; log $log:"
    grep -E -A25 'panicked at|==ERROR|ERROR: libFuzzer|deadly signal' "$log" | head -60 || tail -40 "$log"
    failed+=("$t")
    line="$line  FAILED"
  fi
  echo "$line"
  summary+=("$line")
done

echo "== fuzz summary (${secs} s per target)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failing targets: ${failed[*]} (inputs in fuzz/regressions/, replayed by cargo test)" >&2
  exit 1
fi
echo "fuzz: all ${#targets[@]} targets ran clean"
