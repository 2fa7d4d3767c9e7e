#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time and fails on any
# crash, panic, failed invariant, timeout or leak.
#
#   FUZZ_SECONDS=60     seconds per target (libFuzzer -max_total_time)
#   FUZZ_TARGETS="…"    targets to run (default: all, from `cargo fuzz list`)
#   FUZZ_SANITIZER=…    address (default) or none
#
# Toolchain: the machines have only a stable Rust. cargo-fuzz needs nightly
# flags (-Zsanitizer=address, -Cpasses=sancov-module, --cfg fuzzing);
# RUSTC_BOOTSTRAP=1 lets the stable compiler accept them. AddressSanitizer
# works that way on x86_64-unknown-linux-gnu (its runtime ships with the
# stable standard library), so the default sanitizer is kept; set
# FUZZ_SANITIZER=none where it does not.
#
# The seeds in fuzz/corpus/<target>/seed-* are the starting corpus; what
# libFuzzer adds next to them is git-ignored. A crash leaves its input in
# fuzz/artifacts/<target>/ and the command to replay it in the log; full
# logs are in fuzz/target/fuzz-logs/.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
export RUSTC_BOOTSTRAP=1

FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_SANITIZER=${FUZZ_SANITIZER:-address}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
cargo fuzz --version

started=$SECONDS
echo "== cargo fuzz build (sanitizer: $FUZZ_SANITIZER)"
cargo fuzz build --sanitizer "$FUZZ_SANITIZER"
echo "   built in $((SECONDS - started)) s"

targets=${FUZZ_TARGETS:-$(cargo fuzz list)}
logs=fuzz/target/fuzz-logs
mkdir -p "$logs"
failed=()
summary=()
for target in $targets; do
    echo "== fuzz $target for ${FUZZ_SECONDS} s"
    mkdir -p "fuzz/corpus/$target"
    t0=$SECONDS
    # -timeout: one input running longer than 10 s is a hang, reported as a crash.
    if cargo fuzz run --sanitizer "$FUZZ_SANITIZER" "$target" -- \
        -max_total_time="$FUZZ_SECONDS" -timeout=10 -print_final_stats=1 \
        >"$logs/$target.log" 2>&1; then
        status=ok
    else
        status=FAILED
        failed+=("$target")
        # The panic message or sanitizer report, the input and the replay command.
        grep -E -A6 'panicked at|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)' "$logs/$target.log" | head -n 40 || true
        grep -E -A12 '^Failing input:|^Output of .std::fmt::Debug.:' "$logs/$target.log" | head -n 40 || true
        grep -E 'Test unit written|cargo fuzz (run|tmin) ' "$logs/$target.log" || true
        echo "   full log: $logs/$target.log"
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$target.log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$logs/$target.log" | tail -n 1)
    cov=$(grep -o 'cov: [0-9]*' "$logs/$target.log" | tail -n 1 || true)
    line="$target: $status, ${runs:-?} runs, ${rate:-?} exec/s, ${cov:-cov: ?}, $((SECONDS - t0)) s"
    summary+=("$line")
    echo "   $line"
done

echo "== fuzz summary"
printf '   %s\n' "${summary[@]}"
n=$(wc -w <<<"$targets")
echo "fuzz: $((n - ${#failed[@]})) passed, ${#failed[@]} failed"
if ((${#failed[@]})); then
    echo "fuzzing found failures in: ${failed[*]} (inputs in fuzz/artifacts/<target>/;" \
        "replay with: RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/<file>)" >&2
    exit 1
fi
echo "no crash in $((SECONDS - started)) s"
