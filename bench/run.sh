#!/usr/bin/env bash
# Side-by-side benchmark of sessiongate (issue 7). One command:
#
#   bench/run.sh            # full run (~5 minutes), writes BENCHMARKS.md
#   bench/run.sh --quick    # smoke run (< 1 minute once built), same table, short durations
#
# Builds the release binary, installs nginx/wrk from apt if missing, installs
# the express peer with `npm ci`, then measures on this machine, one after the
# other, with the proxy under test pinned to CPU 0 and wrk, the nginx upstream
# and a private redis-server pinned to CPU 1:
#   upstream alone | nginx proxy_pass | express-session | sessiongate cookie |
#   sessiongate cookie behind 20 routes | sessiongate cookie with the signed
#   session assertion | sessiongate redis | sessiongate redis in
#   session.compat: express-session mode | sessiongate cookie without the
#   access log (log.access: false)
# and then counts user-space instructions per request (valgrind's callgrind)
# for nginx and sessiongate on the read workload (bench/instructions.sh).
# under three workloads: read (64 conns, established session), write (64 conns,
# every response updates the session) and conn1000 (1,000 keep-alive conns).
#
# Options: --quick, --out FILE (default BENCHMARKS.md at the repo root),
#          --keep (keep the scratch directory with configs and logs).
# Environment: BENCH_DURATION (seconds per run), BENCH_PROXY_CPU (default 0),
#          BENCH_LOAD_CPU (default 1), CARGO_TARGET_DIR,
#          BENCH_GATEWAY (development: use this binary and skip the build).
# Everything listens on 127.0.0.1 on free ports; every process started here
# is stopped on exit. Not part of CI.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="$ROOT/bench"
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
QUICK=0
KEEP=0
OUT="$ROOT/BENCHMARKS.md"
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --keep) KEEP=1 ;;
        --out) OUT="$2"; shift ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "bench: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

PROXY_CPU="${BENCH_PROXY_CPU:-0}"
LOAD_CPU="${BENCH_LOAD_CPU:-1}"
if [ "$QUICK" = 1 ]; then
    DURATION="${BENCH_DURATION:-2}"; WARMUP=1
else
    DURATION="${BENCH_DURATION:-15}"; WARMUP=3
fi
CONNS=64
BIG_CONNS=1000
SESSIONS=64         # distinct sessions in the write-spread workload
# Everything measured runs pinned and, when we may, at a raised priority so
# that other work on the machine (compilers, test suites) disturbs it less.
NICE=()
if [ "$(id -u)" = 0 ]; then NICE=(nice -n -10); fi
PIN_PROXY=("${NICE[@]}" taskset -c "$PROXY_CPU")
PIN_LOAD=("${NICE[@]}" taskset -c "$LOAD_CPU")

log() { printf '\033[1mbench\033[0m [%3ds] %s\n' "$SECONDS" "$*" >&2; }
fail() { die bench "error: $*"; }

# ---------------------------------------------------------------- tools
install_missing bench nginx:nginx-light wrk:wrk redis-server:redis-server redis-cli:redis-tools curl:curl
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
for tool in wrk redis-server redis-cli curl node npm taskset python3 cargo; do
    command -v "$tool" >/dev/null || fail "$tool is required"
done
[ "$(nproc)" -ge 2 ] || fail "needs at least 2 CPUs (proxy on CPU $PROXY_CPU, load on CPU $LOAD_CPU)"

# ---------------------------------------------------------------- build
if [ -n "${BENCH_GATEWAY:-}" ]; then
    GATEWAY="$BENCH_GATEWAY"   # development only: benchmark this binary, skip the build
else
    log "cargo build --release --locked"
    (cd "$ROOT" && cargo build --release --locked --quiet)
    GATEWAY="${CARGO_TARGET_DIR:-$ROOT/target}/release/sessiongate"
fi
[ -x "$GATEWAY" ] || fail "no binary at $GATEWAY"

PEER="$BENCH/peers/express"
stamp="$(sha256sum "$PEER/package-lock.json" | cut -c1-64)"
if [ "$(cat "$PEER/node_modules/.bench-stamp" 2>/dev/null)" != "$stamp" ]; then
    log "npm ci (express peer)"
    (cd "$PEER" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    echo "$stamp" > "$PEER/node_modules/.bench-stamp"
fi

# ---------------------------------------------------------------- scratch, cleanup
WORK="$(mktemp -d /tmp/sessiongate-bench.XXXXXX)"
RESULTS="$WORK/results"
mkdir -p "$RESULTS"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        wait_until 50 0.1 exited "$pid" || true
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [ "$KEEP" = 1 ]; then log "scratch kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge 4096 ] || fail "ulimit -n is $(ulimit -n); 1,000 connections need more"

REDIS_PORT="$(free_port)" || fail "no free port"
UP_PORT="$(free_port "$REDIS_PORT")" || fail "no free port"
PROXY_PORT="$(free_port "$REDIS_PORT" "$UP_PORT")" || fail "no free port"
ADMIN_PORT="$(free_port "$REDIS_PORT" "$UP_PORT" "$PROXY_PORT")" || fail "no free port"

wait_http() { # url: wait until anything answers
    wait_until 100 0.1 curl -s -o /dev/null --max-time 1 "$1"
}

SESSION_SECRET="$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
export SESSION_SECRET

# ---------------------------------------------------------------- load side (CPU $LOAD_CPU)
log "redis-server :$REDIS_PORT, nginx upstream :$UP_PORT on CPU $LOAD_CPU; proxies on CPU $PROXY_CPU; ${DURATION}s per run"
"${PIN_LOAD[@]}" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$WORK" --logfile "$WORK/redis.log" --maxclients 10000 &
PIDS+=($!)
REDIS_PID=$!
wait_until 50 0.1 redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 || true
redis-cli -p "$REDIS_PORT" ping >/dev/null || fail "redis-server did not start ($WORK/redis.log)"

render() { # template out [extra sed]
    sed -e "s#@WORK@#$WORK#g" -e "s#@UPSTREAM_PORT@#$UP_PORT#g" -e "s#@PORT@#$3#g" "$1" > "$2"
}
render "$BENCH/nginx/upstream.conf" "$WORK/upstream.conf" "$UP_PORT"
"${PIN_LOAD[@]}" "$NGINX" -p "$WORK" -e "$WORK/upstream.error.log" -c "$WORK/upstream.conf" -g 'daemon off;' &
PIDS+=($!)
UPSTREAM_URL="http://127.0.0.1:$UP_PORT"
wait_http "$UPSTREAM_URL/" || fail "nginx upstream did not start ($WORK/upstream.error.log)"
export UPSTREAM_URL

# ---------------------------------------------------------------- measuring
proc_tree() { # pid -> pid and its children
    echo "$1"; pgrep -P "$1" 2>/dev/null || true
}
rss_kb() { # field pid... -> summed kB
    local field="$1" total=0 pid v; shift
    for pid in "$@"; do
        v="$(awk -v f="$field:" '$1 == f {print $2}' "/proc/$pid/status" 2>/dev/null || true)"
        total=$((total + ${v:-0}))
    done
    echo "$total"
}
cpu_ticks() { # pid... -> utime+stime summed
    local total=0 pid v
    for pid in "$@"; do
        v="$(awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$pid/stat" 2>/dev/null || echo 0)"
        total=$((total + v))
    done
    echo "$total"
}
redis_stats() { redis-cli -p "$REDIS_PORT" info commandstats | tr -d '\r' | grep '^cmdstat_' || true; }

# run_wrk NAME WORKLOAD CONNS PATH COOKIE PID...
# COOKIE is a Cookie header value, or @FILE: one per line, rotated per request
run_wrk() {
    local name="$1" workload="$2" conns="$3" path="$4" cookie="$5"; shift 5
    local how=(-H "Cookie: $cookie")
    case "$cookie" in @*) how=(-s "$BENCH/wrk/sessions.lua");; esac
    local pids=("$@") url="http://127.0.0.1:$PORT$path" file="$RESULTS/$name.$workload"
    local threads=1
    [ "$conns" -gt 64 ] && threads=2
    redis_stats > "$file.redis0"
    local t0; t0="$(cpu_ticks "${pids[@]}")"
    local s0; s0="$(date +%s.%N)"
    local args=()
    case "$cookie" in @*) args=(-- "${cookie#@}");; esac
    "${PIN_LOAD[@]}" wrk -t"$threads" -c"$conns" -d"${DURATION}s" --timeout 10s --latency \
        "${how[@]}" "$url" "${args[@]}" > "$file.wrk" 2>&1 || true
    local s1; s1="$(date +%s.%N)"
    local t1; t1="$(cpu_ticks "${pids[@]}")"
    redis_stats > "$file.redis1"
    {
        echo "name=$name"
        echo "workload=$workload"
        echo "conns=$conns"
        echo "wall=$(python3 -c "print($s1 - $s0)")"
        echo "cpu_ticks=$((t1 - t0))"
        echo "clk_tck=$(getconf CLK_TCK)"
        echo "vmrss_kb=$(rss_kb VmRSS "${pids[@]}")"
        echo "vmhwm_kb=$(rss_kb VmHWM "${pids[@]}")"
    } > "$file.meta"
    local rps; rps="$(awk '/^Requests\/sec/ {print $2}' "$file.wrk")"
    log "  $name $workload c=$conns: ${rps:-?} req/s"
}

# login NAME [nocheck]: gets a session cookie through the proxy and checks
# that the upstream sees it; prints the Cookie header value
login() {
    local name="$1" headers="$WORK/$1.login.headers" cookie
    curl -s -o /dev/null -D "$headers" --max-time 5 "http://127.0.0.1:$PORT/login" || fail "$name: /login failed"
    cookie="$(tr -d '\r' < "$headers" | awk 'tolower($1) == "set-cookie:" { split($2, kv, ";"); if (kv[1] !~ /=$/) printf "%s%s", sep, kv[1]; sep = "; " }')"
    [ -n "$cookie" ] || fail "$name: /login set no cookie: $(tr -d '\r' < "$headers" | head -20)"
    if [ "${2:-}" = nocheck ]; then echo "$cookie"; return; fi
    local seen
    seen="$(curl -s -o /dev/null -D - --max-time 5 -H "Cookie: $cookie" "http://127.0.0.1:$PORT/whoami" \
        | tr -d '\r' | awk 'tolower($1) == "x-seen-session-data:" {print $2}')"
    case "$seen" in *'"user":"ada"'*) ;; *) fail "$name: the upstream saw session '$seen' after login";; esac
    echo "$cookie"
}

# bench_target NAME COOKIE COOKIEFILE PID...: the workloads against $PORT
bench_target() {
    local name="$1" cookie="$2" cookies="$3"; shift 3
    local pids=("$@")
    "${PIN_LOAD[@]}" wrk -t1 -c"$CONNS" -d"${WARMUP}s" -H "Cookie: $cookie" "http://127.0.0.1:$PORT/" >/dev/null 2>&1 || true
    run_wrk "$name" read "$CONNS" / "$cookie" "${pids[@]}"
    # quick mode: the upstream alone only as the read baseline
    if [ "$QUICK" = 1 ] && [ "$name" = upstream ]; then return; fi
    # a session logged in just now, so the whole run is inside touch_interval
    if [ "$name" != upstream ] && [ "$name" != nginx ]; then cookie="$(login "$name")"; fi
    run_wrk "$name" conn1000 "$BIG_CONNS" / "$cookie" "${pids[@]}"
    run_wrk "$name" write "$CONNS" /write "$cookie" "${pids[@]}"
    run_wrk "$name" write-spread "$CONNS" /write "@$cookies" "${pids[@]}"
}

stop_pid() {
    kill -TERM "$1" 2>/dev/null || true
    wait_until 100 0.1 exited "$1" && return 0
    kill -KILL "$1" 2>/dev/null || true
}

# A cookie like the gateway's for the rows that do no session work.
DUMMY_COOKIE="sid=$(python3 -c 'import secrets; print(secrets.token_urlsafe(96))')"
python3 -c 'import secrets, sys
for _ in range(int(sys.argv[1])): print("sid=" + secrets.token_urlsafe(96))' "$SESSIONS" > "$WORK/dummy.cookies"

# login_many NAME: $SESSIONS fresh sessions through the proxy, one cookie a line
login_many() {
    local file="$WORK/$1.cookies"
    : > "$file"
    login "$1" >> "$file"
    for _ in $(seq 2 "$SESSIONS"); do login "$1" nocheck >> "$file"; done
    echo "$file"
}

# 1. the upstream alone (it lives on the load CPU, as in every other row)
log "upstream alone"
PORT="$UP_PORT"
bench_target upstream "$DUMMY_COOKIE" "$WORK/dummy.cookies" $(proc_tree "${PIDS[1]}")

# 2. nginx proxy_pass
log "nginx proxy_pass"
render "$BENCH/nginx/proxy.conf" "$WORK/proxy.conf" "$PROXY_PORT"
"${PIN_PROXY[@]}" "$NGINX" -p "$WORK" -e "$WORK/proxy.error.log" -c "$WORK/proxy.conf" -g 'daemon off;' &
pid=$!; PIDS+=("$pid")
PORT="$PROXY_PORT"
wait_http "http://127.0.0.1:$PORT/" || fail "nginx proxy did not start ($WORK/proxy.error.log)"
bench_target nginx "$DUMMY_COOKIE" "$WORK/dummy.cookies" $(proc_tree "$pid")
stop_pid "$pid"

# 3. express-session + connect-redis + http-proxy-middleware
log "express-session"
PORT="$PROXY_PORT" REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0" STORE_PREFIX="bench:express:" \
    "${PIN_PROXY[@]}" node "$PEER/server.js" 2> "$WORK/express.log" &
pid=$!; PIDS+=("$pid")
PORT="$PROXY_PORT"
wait_http "http://127.0.0.1:$PORT/" || fail "express peer did not start ($(cat "$WORK/express.log"))"
cookies="$(login_many express)"
cookie="$(login express)"
bench_target express "$cookie" "$cookies" "$pid"
stop_pid "$pid"

# 4. sessiongate: cookie store, cookie store behind 20 routes, cookie store
#    with the signed session assertion, Redis store, Redis store speaking
#    express-session's formats (all with the default access log, written to
#    a file), and the cookie store without the access log (its cost)
for store in cookie cookie-routes cookie-assertion redis redis-express cookie-noaccess; do
    log "sessiongate ($store store)"
    GW_LISTEN="127.0.0.1:$PROXY_PORT" GW_ADMIN="127.0.0.1:$ADMIN_PORT" \
        REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0" STORE_PREFIX="bench:sessiongate:" \
        "${PIN_PROXY[@]}" "$GATEWAY" --config "$BENCH/gateway-$store.yaml" 2> "$WORK/sessiongate-$store.log" &
    pid=$!; PIDS+=("$pid")
    PORT="$PROXY_PORT"
    wait_http "http://127.0.0.1:$ADMIN_PORT/healthz" || fail "sessiongate did not start: $(tail -5 "$WORK/sessiongate-$store.log")"
    cookies="$(login_many "sessiongate-$store")"
    cookie="$(login "sessiongate-$store")"
    bench_target "sessiongate-$store" "$cookie" "$cookies" "$pid"
    stop_pid "$pid"
done

# 5. user-space instructions per request (callgrind), read workload. The
# session cookie comes from the same gateway started normally first (same
# secret, same Redis), so the counted run spends nothing on logging in.
# shellcheck source=bench/instructions.sh
source "$BENCH/instructions.sh"
log "instructions per request (callgrind, ${INSTR_SECONDS}s each)"
PORT="$PROXY_PORT"
render "$BENCH/nginx/proxy.conf" "$WORK/proxy.conf" "$PROXY_PORT"
count_instructions nginx / "$DUMMY_COOKIE" "http://127.0.0.1:$PORT/" -- \
    "$NGINX" -p "$WORK" -e "$WORK/proxy.error.log" -c "$WORK/proxy.conf" -g 'daemon off; master_process off;'
export GW_LISTEN="127.0.0.1:$PROXY_PORT" GW_ADMIN="127.0.0.1:$ADMIN_PORT" \
    REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0" STORE_PREFIX="bench:sessiongate:"
for store in cookie redis; do
    "$GATEWAY" --config "$BENCH/gateway-$store.yaml" 2> "$WORK/sessiongate-$store-login.log" &
    pid=$!; PIDS+=("$pid")
    wait_http "http://127.0.0.1:$ADMIN_PORT/healthz" || fail "sessiongate did not start: $(tail -5 "$WORK/sessiongate-$store-login.log")"
    cookie="$(login "sessiongate-$store")"
    stop_pid "$pid"
    count_instructions "sessiongate-$store" / "$cookie" "http://127.0.0.1:$ADMIN_PORT/healthz" -- \
        "$GATEWAY" --config "$BENCH/gateway-$store.yaml"
done

# ---------------------------------------------------------------- report
{
    echo "mode=$([ "$QUICK" = 1 ] && echo quick || echo full)"
    echo "duration=$DURATION"
    echo "conns=$CONNS"
    echo "big_conns=$BIG_CONNS"
    echo "proxy_cpu=$PROXY_CPU"
    echo "load_cpu=$LOAD_CPU"
    echo "nproc=$(nproc)"
    echo "cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
    echo "kernel=$(uname -srm)"
    echo "os=$(. /etc/os-release 2>/dev/null; echo "${PRETTY_NAME:-unknown}")"
    echo "mem=$(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "sessiongate=$("$GATEWAY" --version 2>/dev/null) ($(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$ROOT" && git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo '+dirty'))"
    echo "rustc=$(rustc --version 2>/dev/null)"
    echo "nginx=$("$NGINX" -v 2>&1 | sed 's/^nginx version: //')"
    echo "wrk=$(wrk -v 2>&1 | head -1 | awk '{print $1, $2}')"
    echo "redis=$(redis-server --version | awk '{print $3}' | sed 's/^v=//')"
    echo "node=$(node --version)"
    echo "express=$(cd "$PEER" && node -p 'const p = n => JSON.parse(require("fs").readFileSync("node_modules/" + n + "/package.json")).version; `express ${p("express")}, express-session ${p("express-session")}, connect-redis ${p("connect-redis")}, redis ${p("redis")}, http-proxy-middleware ${p("http-proxy-middleware")}`')"
} > "$RESULTS/machine"
python3 "$BENCH/report.py" "$RESULTS" > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
mkdir -p "$BENCH/out"
rm -rf "$BENCH/out/last"
cp -r "$RESULTS" "$BENCH/out/last"
log "wrote $OUT (raw results in bench/out/last)"
