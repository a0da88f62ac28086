#!/usr/bin/env bash
# Builds the fuzz targets in fuzz/ (cargo-fuzz, libFuzzer) and runs them one
# after the other, then prints executions, coverage and crashes per target.
# Not part of CI. See docs/reliability.md.
#
#   scripts/fuzz.sh                    # every target, up to 30 min or 10M runs each
#   scripts/fuzz.sh 60                 # every target, 60 seconds each
#   scripts/fuzz.sh 600 sealed_open    # some targets only
#
# Options (before the seconds): --runs N (stop a target after N executions,
# default 10,000,000), --out FILE (also write the table there).
# Environment: FUZZ_JOBS_NICE (default 19: everything runs at the lowest
# priority, so that other work on the machine is not starved),
# FUZZ_TOOLCHAIN (default: the stable one; see below).
#
# Each target keeps its growing corpus under fuzz/target/corpus/<target>
# (git-ignored) and reads the seeds in fuzz/corpus/<target> (in the repo).
# A crash stops that target (libFuzzer's way) and leaves the input in
# fuzz/artifacts/<target>/; the script goes on with the next target and
# exits 1 at the end. Reproduce one with
#   fuzz/target/x86_64-unknown-linux-gnu/release/<target> fuzz/artifacts/<target>/crash-...
#
# Toolchain: cargo-fuzz's default AddressSanitizer needs a nightly rustc
# (`-Zsanitizer`). The crate forbids unsafe code, so the sanitizer would
# mostly cost speed: the targets build with `--sanitizer none`, which works
# on the stable toolchain (no nightly, no RUSTC_BOOTSTRAP). Debug
# assertions and overflow checks stay on: cargo-fuzz turns them on in its
# release build.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

# One target per parser that takes outside input; docs/reliability.md says
# what each covers.
TARGETS=(
    cookie_header   # Cookie header split, session cookie lookup with chunks
    sealed_open     # the cookie store's sealed value
    signed_id       # the server stores' signed id
    session_update  # X-Session-Update parsing + merge patch with max_bytes
    stored_record   # stored-record decoders (native codec, DynamoDB item)
    config_load     # the YAML configuration with ${VAR} substitution
    express_cookie  # express-session `s:<id>.<signature>` cookies
    iron_seal       # iron-session seals
    express_record  # express-session's stored JSON (plain and Cyclic)
)

RUNS=10000000
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
        *) break ;;
    esac
done
SECONDS_PER_TARGET="${1:-1800}"
[ $# -gt 0 ] && shift
[ $# -gt 0 ] && TARGETS=("$@")

NICE=(nice -n "${FUZZ_JOBS_NICE:-19}")
TOOLCHAIN=()
[ -n "${FUZZ_TOOLCHAIN:-}" ] && TOOLCHAIN=("+$FUZZ_TOOLCHAIN")
log() { printf '\033[1mfuzz\033[0m [%4ds] %s\n' "$SECONDS" "$*" >&2; }

if ! cargo fuzz --version >/dev/null 2>&1; then
    log "cargo-fuzz is missing: cargo install cargo-fuzz --locked"
    "${NICE[@]}" cargo install cargo-fuzz --locked
fi

cd "$ROOT/fuzz"
log "building the targets (cargo fuzz build --sanitizer none)"
"${NICE[@]}" cargo "${TOOLCHAIN[@]}" fuzz build --sanitizer none ||
    die fuzz "the fuzz targets do not build"
BIN="$ROOT/fuzz/target/x86_64-unknown-linux-gnu/release"

LOGS="$ROOT/fuzz/target/logs"
mkdir -p "$LOGS"
RUNNING=""
# shellcheck disable=SC2317  # run by the EXIT trap
on_exit() {
    if [ -n "$RUNNING" ]; then
        kill -TERM "$RUNNING" 2>/dev/null || true
        wait_until 50 0.1 exited "$RUNNING" || kill -KILL "$RUNNING" 2>/dev/null || true
    fi
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

table="| target | seconds | executions | exec/s | cov | ft | corpus | crashes |
|---|---:|---:|---:|---:|---:|---:|---:|"
failed=0
for target in "${TARGETS[@]}"; do
    [ -x "$BIN/$target" ] || { log "$target: not built"; failed=1; continue; }
    corpus="$ROOT/fuzz/target/corpus/$target"
    artifacts="$ROOT/fuzz/artifacts/$target"
    mkdir -p "$corpus" "$artifacts" "$ROOT/fuzz/corpus/$target"
    log "$target: up to ${SECONDS_PER_TARGET}s or $RUNS executions"
    started=$SECONDS
    "${NICE[@]}" "$BIN/$target" "$corpus" "$ROOT/fuzz/corpus/$target" \
        -max_total_time="$SECONDS_PER_TARGET" -runs="$RUNS" -timeout=10 -rss_limit_mb=2048 \
        -max_len=16384 -print_final_stats=1 -artifact_prefix="$artifacts/" \
        > "$LOGS/$target.log" 2>&1 &
    RUNNING=$!
    status=0
    wait "$RUNNING" || status=$?
    RUNNING=""
    elapsed=$((SECONDS - started))
    runs="$(awk '/^stat::number_of_executed_units:/ { print $2 }' "$LOGS/$target.log" | tail -1)"
    last="$(grep -E '^#[0-9]+.*cov: ' "$LOGS/$target.log" | tail -1 || true)"
    cov="$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<< "$last")"
    ft="$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<< "$last")"
    corp="$(sed -n 's/.* corp: \([0-9]*\/[0-9a-zA-Z]*\).*/\1/p' <<< "$last")"
    crashes="$(find "$artifacts" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' -o -name 'leak-*' \) | wc -l)"
    if [ "$status" != 0 ] || [ "$crashes" != 0 ]; then
        failed=1
        log "$target: exit $status, $crashes artifact(s) in $artifacts (log: $LOGS/$target.log)"
    fi
    rate=$(( ${runs:-0} / (elapsed > 0 ? elapsed : 1) ))
    table+="
| $target | $elapsed | $(printf "%'d" "${runs:-0}") | $(printf "%'d" "$rate") | ${cov:-?} | ${ft:-?} | ${corp:-?} | $crashes |"
done

echo "$table"
[ -n "$OUT" ] && echo "$table" > "$OUT"
exit "$failed"
