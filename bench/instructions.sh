# Sourced by bench/run.sh: user-space instructions per request, counted by
# valgrind's callgrind. Throughput on a shared two-core machine moves by
# ~10% from run to run; an instruction count of the same binary under the
# same requests does not (it is the same whatever else the machine runs),
# so it is the figure that decides whether a change made the proxy cheaper.
# One caveat: valgrind does not emulate the CPU's SHA extensions, so SHA-256
# (sessiongate's public session id) runs its portable code under callgrind:
# about 7,000 instructions per request that SHA-NI hardware does in a few
# hundred.
#
# count_instructions NAME PATH COOKIE STARTED_URL -- COMMAND...
#   starts COMMAND under callgrind with instrumentation off, waits until
#   STARTED_URL answers, warms up, switches instrumentation on, sends
#   requests to PATH on $PORT with COOKIE for $INSTR_SECONDS seconds (16
#   keep-alive connections), dumps the counters, and writes
#   $RESULTS/NAME.instr with the total instructions and requests. COMMAND
#   must be the program itself (valgrind does not follow an `env` exec):
#   pass its environment by exporting it.
INSTR_SECONDS="${BENCH_INSTR_SECONDS:-20}"
[ "$QUICK" = 1 ] && INSTR_SECONDS="${BENCH_INSTR_SECONDS:-5}"

count_instructions() {
    local name="$1" path="$2" cookie="$3" started="$4"; shift 5
    local out="$WORK/callgrind.$name" pid total requests
    command -v valgrind >/dev/null || { log "  valgrind missing: no instruction count for $name"; return 0; }
    "${PIN_PROXY[@]}" valgrind --tool=callgrind --instr-atstart=no \
        --callgrind-out-file="$out.%p" "$@" 2> "$WORK/callgrind-$name.log" &
    pid=$!; PIDS+=("$pid")
    wait_until 300 0.1 curl -s -o /dev/null --max-time 2 "$started" \
        || fail "$name did not start under valgrind ($WORK/callgrind-$name.log)"
    "${PIN_LOAD[@]}" wrk -t1 -c16 -d2s -H "Cookie: $cookie" "http://127.0.0.1:$PORT$path" >/dev/null 2>&1 || true
    callgrind_control --instr=on "$pid" >/dev/null 2>&1
    "${PIN_LOAD[@]}" wrk -t1 -c16 -d"${INSTR_SECONDS}s" --timeout 10s -H "Cookie: $cookie" \
        "http://127.0.0.1:$PORT$path" > "$RESULTS/$name.instr.wrk" 2>&1 || true
    callgrind_control --dump "$pid" >/dev/null 2>&1 || true
    callgrind_control --instr=off "$pid" >/dev/null 2>&1 || true
    stop_pid "$pid"
    # The dump made above is the first numbered one; its totals line is
    # the instructions executed while instrumentation was on.
    total="$(awk '/^totals:/ {print $2; exit}' "$out.$pid.1" 2>/dev/null || true)"
    requests="$(awk '/requests in/ {print $1; exit}' "$RESULTS/$name.instr.wrk" 2>/dev/null || true)"
    {
        echo "name=$name"
        echo "instructions=${total:-0}"
        echo "requests=${requests:-0}"
    } > "$RESULTS/$name.instr"
    if [ -n "$total" ] && [ "${requests:-0}" -gt 0 ]; then
        log "  $name: $((total / requests)) instructions per request ($requests requests)"
    else
        log "  $name: no instruction count ($WORK/callgrind-$name.log)"
    fi
}
