#!/usr/bin/env bash
# Builds the libFuzzer targets (Fuzz/LibFuzzer, address sanitizer, release) and runs them.
#
#   scripts/fuzz.sh [TARGET|all] [RUNS]   run TARGET (default: all) for RUNS executions each
#                                         (default 1000000), then print a summary table
#   scripts/fuzz.sh --smoke               every target for 5000 executions
#   scripts/fuzz.sh --list                the target names
#   scripts/fuzz.sh --build               build only
#
# Each run starts from the committed seed corpus (Fuzz/corpus/TARGET) and the regression inputs
# (Tests/Fixtures/fuzz/TARGET), and keeps what it discovers in .build-fuzz/corpus/TARGET, so
# the committed files never change. A crash, a leak, a timeout (an input taking over 10 s, a
# hang) or an out-of-memory (over 2 GiB) stops the target; libFuzzer saves the input in
# .build-fuzz/artifacts/TARGET/ and this script exits 1. Turn such an input into a regression:
# copy it to Tests/Fixtures/fuzz/TARGET/ (the test suite replays that folder), then fix the
# reader. Environment: FUZZ_MAX_LEN (default 16384) caps the input size; extra libFuzzer flags
# can follow after `--`, e.g. `scripts/fuzz.sh idx 100000 -- -jobs=2`.
set -euo pipefail
# A finding stops with libFuzzer's report; Swift's own crash backtracer only adds noise there.
export SWIFT_BACKTRACE=enable=no
# One oneDNN (OpenMP) thread: the inputs are tiny, and on a loaded machine OpenMP's barriers
# would cost more than the work. Results do not depend on the thread count.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRATCH="$ROOT/.build-fuzz"
PACKAGE="$ROOT/Fuzz/LibFuzzer"
# The names in Fuzz/LibFuzzer/Package.swift, in its order.
TARGETS=$(sed -n 's/^let targets = \[\(.*\)\]$/\1/p' "$PACKAGE/Package.swift" | tr -d '" ' | tr ',' ' ')

usage() { sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

build() {
    mkdir -p "$SCRATCH"
    # Swift's default linker on Linux (gold) fails on the sanitized objects; the toolchain's
    # lld links them. The toolset file points at the lld of the swift in PATH.
    local swift_bin
    swift_bin="$(dirname "$(readlink -f "$(command -v swift)")")"
    printf '{"schemaVersion": "1.0", "linker": {"path": "%s/ld.lld"}}\n' "$swift_bin" > "$SCRATCH/toolset.json"
    for t in "$@"; do
        swift build --package-path "$PACKAGE" --scratch-path "$SCRATCH" -c release \
            -Xswiftc -sanitize=fuzzer,address --toolset "$SCRATCH/toolset.json" --product "fuzz-$t"
    done
}

run_target() {
    local target=$1 runs=$2
    shift 2
    local work="$SCRATCH/corpus/$target" artifacts="$SCRATCH/artifacts/$target" log="$SCRATCH/logs/$target.log"
    mkdir -p "$work" "$artifacts" "$(dirname "$log")"
    local seeds=("$ROOT/Fuzz/corpus/$target")
    [ -d "$ROOT/Tests/Fixtures/fuzz/$target" ] && seeds+=("$ROOT/Tests/Fixtures/fuzz/$target")
    echo "fuzz-$target: $runs runs (log: ${log#"$ROOT"/})"
    # Findings of this run only: inputs saved by earlier runs stay in the folder until fixed.
    local stamp="$SCRATCH/logs/$target.started"
    : > "$stamp"
    local status=0
    "$SCRATCH/release/fuzz-$target" -runs="$runs" -timeout=10 -rss_limit_mb=2048 \
        -max_len="${FUZZ_MAX_LEN:-16384}" -print_final_stats=1 -artifact_prefix="$artifacts/" \
        "$@" "$work" "${seeds[@]}" > "$log" 2>&1 || status=$?
    local done_line executed seconds coverage found
    done_line=$(grep -E '^Done [0-9]+ runs in [0-9]+ second' "$log" | tail -1 || true)
    executed=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    seconds=$(echo "$done_line" | sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p')
    coverage=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2 || true)
    found=$(find "$artifacts" -type f -newer "$stamp" | wc -l)
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "${executed:-?}" "${seconds:-?}" "${coverage:-?}" \
        "$found" "$([ "$status" -eq 0 ] && [ -n "$done_line" ] && echo ok || echo "FAILED (exit $status)")" \
        >> "$SCRATCH/summary.tsv"
    if [ "$status" -ne 0 ] || [ -z "$done_line" ]; then
        echo "fuzz-$target failed (exit $status); the input is in ${artifacts#"$ROOT"/}/, the end of the log:" >&2
        tail -30 "$log" >&2
        return 1
    fi
}

main() {
    local what=all runs=1000000 extra=()
    case "${1:-}" in
        -h|--help) usage; exit 0 ;;
        --list) echo "$TARGETS" | tr ' ' '\n'; exit 0 ;;
        --build) build $TARGETS; exit 0 ;;
        --smoke) runs=5000; shift ;;
        "") ;;
        *) what=$1; shift; if [ $# -gt 0 ] && [ "$1" != -- ]; then runs=$1; shift; fi ;;
    esac
    if [ "${1:-}" = -- ]; then shift; extra=("$@"); fi
    local selected=$TARGETS
    if [ "$what" != all ]; then
        if ! echo " $TARGETS " | grep -q " $what "; then
            echo "fuzz.sh: unknown target '$what' (targets: $TARGETS)" >&2
            exit 64
        fi
        selected=$what
    fi
    case "$runs" in ''|*[!0-9]*) echo "fuzz.sh: RUNS must be a whole number, got '$runs'" >&2; exit 64 ;; esac

    build $selected
    : > "$SCRATCH/summary.tsv"
    local failed=0
    for t in $selected; do run_target "$t" "$runs" ${extra[@]+"${extra[@]}"} || failed=1; done
    echo
    printf 'target\texecutions\tseconds\tcoverage\tfindings\tresult\n'
    cat "$SCRATCH/summary.tsv"
    exit $failed
}

main "$@"
