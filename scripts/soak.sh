#!/usr/bin/env bash
# The soak with faults (issue 18): the release binary in front of the echo
# backend, with the Redis store (a private redis-server, append-only) and
# with the cookie store, under a steady mix of reads and writes over
# thousands of sessions while faults are injected. Not part of CI.
#
#   scripts/soak.sh            # 10 minutes of load (about 12.5 minutes in all)
#   scripts/soak.sh --quick    # 1 minute of load, the same faults, closer together
#
# Options: --quick, --duration SECONDS, --rate N (requests/s per gateway;
#          default: half the capacity measured with wrk, see below),
#          --out FILE (the summary table; default soak-summary.md in the
#          scratch directory, printed either way), --keep (keep the scratch
#          directory with configs, logs and the ledger).
# Environment: SOAK_GATEWAY (use this binary and skip the build),
#          SOAK_SESSIONS (sessions per gateway, default 2000),
#          SOAK_MAX_RATE (the load generator's own ceiling, default 800/s per
#          gateway: one Python process drives both gateways), CARGO_TARGET_DIR.
#
# Faults, each recorded as a window with timestamps (faults.log):
#   redis-restart   Redis is shut down (SHUTDOWN), 3 s later started again;
#   redis-kill      Redis is killed (SIGKILL, appendfsync always), restarted;
#   redis-stall     Redis is stopped (SIGSTOP) for 3 s, past the 1 s store
#                   timeout, then continued;
#   upstream-slow   the echo backend is stopped (SIGSTOP) for 4 s, past the
#                   2 s upstream timeout: slow, then timing out;
#   upstream-refuse the echo backend is killed, 3 s later started again:
#                   connections refused meanwhile;
#   slow-clients    100 connections per gateway that read nothing, send half
#                   a request head, or nothing at all, held 20 s (15 % of
#                   the run with --quick).
# At the end every session is read back through its gateway: each
# acknowledged write must be there. Exit status 0 only when nothing was
# lost, no 5xx (or transport error) fell outside a fault window (2 s grace),
# no request hung, and RSS and open fds stayed flat.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
QUICK=0
KEEP=0
DURATION=""
RATE=""
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --keep) KEEP=1 ;;
        --duration) DURATION="$2"; shift ;;
        --rate) RATE="$2"; shift ;;
        --out) OUT="$2"; shift ;;
        -h|--help) sed -n '2,35p' "$0"; exit 0 ;;
        *) echo "soak: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done
[ -n "$DURATION" ] || { [ "$QUICK" = 1 ] && DURATION=60 || DURATION=600; }
SESSIONS="${SOAK_SESSIONS:-2000}"
MAX_RATE="${SOAK_MAX_RATE:-800}"

log() { printf '\033[1msoak\033[0m [%3ds] %s\n' "$SECONDS" "$*" >&2; }
fail() { die soak "error: $*"; }
install_missing soak wrk:wrk redis-server:redis-server redis-cli:redis-tools curl:curl
for tool in redis-server redis-cli curl wrk python3 cargo; do
    command -v "$tool" >/dev/null || fail "$tool is required"
done

# ---------------------------------------------------------------- build
if [ -n "${SOAK_GATEWAY:-}" ]; then
    GATEWAY="$SOAK_GATEWAY"
else
    # Fat LTO only changes speed, not behaviour; without it the build takes
    # a fraction of the time.
    log "cargo build --release --locked (CARGO_PROFILE_RELEASE_LTO=false)"
    (cd "$ROOT" && CARGO_PROFILE_RELEASE_LTO=false cargo build --release --locked --quiet)
    GATEWAY="${CARGO_TARGET_DIR:-$ROOT/target}/release/sessiongate"
fi
[ -x "$GATEWAY" ] || fail "no binary at $GATEWAY"

# ---------------------------------------------------------------- scratch, cleanup
WORK="$(mktemp -d /tmp/sessiongate-soak.XXXXXX)"
# Every process this script starts writes its pid to $WORK/pids/NAME, also
# the ones the fault injector restarts, so that cleanup finds them all.
mkdir -p "$WORK/pids"
BACKGROUND=()
cleanup() {
    local status=$? file pid
    set +e
    for pid in "${BACKGROUND[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for file in "$WORK"/pids/*; do
        [ -e "$file" ] || continue
        pid="$(cat "$file")"
        kill -CONT "$pid" 2>/dev/null   # a stalled process cannot handle TERM
        kill -TERM "$pid" 2>/dev/null
    done
    for file in "$WORK"/pids/*; do
        [ -e "$file" ] || continue
        pid="$(cat "$file")"
        wait_until 50 0.1 exited "$pid" || kill -KILL "$pid" 2>/dev/null
    done
    if [ "$KEEP" = 1 ]; then log "scratch kept in $WORK"; else rm -rf "$WORK"; fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

REDIS_PORT="$(free_port)" || fail "no free port"
UP_PORT="$(free_port "$REDIS_PORT")" || fail "no free port"
REDIS_GW="$(free_port "$REDIS_PORT" "$UP_PORT")" || fail "no free port"
COOKIE_GW="$(free_port "$REDIS_PORT" "$UP_PORT" "$REDIS_GW")" || fail "no free port"
REDIS_ADMIN="$(free_port "$REDIS_PORT" "$UP_PORT" "$REDIS_GW" "$COOKIE_GW")" || fail "no free port"
COOKIE_ADMIN="$(free_port "$REDIS_PORT" "$UP_PORT" "$REDIS_GW" "$COOKIE_GW" "$REDIS_ADMIN")" || fail "no free port"

SESSION_SECRET="$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
export SESSION_SECRET

# ---------------------------------------------------------------- services
start_redis() {
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' \
        --appendonly yes --appendfsync always --dir "$WORK" --logfile "$WORK/redis.log" \
        --maxclients 10000 &
    echo $! > "$WORK/pids/redis"
    disown  # killed on purpose: no "Killed" notice from bash
    wait_until 100 0.1 redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 ||
        fail "redis-server did not start ($WORK/redis.log)"
}
start_echo() {
    "$GATEWAY" echo --listen "127.0.0.1:$UP_PORT" >> "$WORK/echo.log" 2>&1 &
    echo $! > "$WORK/pids/echo"
    disown
    wait_until 100 0.1 curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$UP_PORT/" ||
        fail "the echo backend did not start ($WORK/echo.log)"
}
start_gateway() { # name port admin-port store-yaml
    cat > "$WORK/$1.yaml" <<EOF
listen: 127.0.0.1:$2
admin:
  listen: 127.0.0.1:$3
upstream:
  url: http://127.0.0.1:$UP_PORT
  timeout: 2s
  connect_timeout: 1s
limits:
  header_read_timeout: 5s
log:
  level: warn
$4
EOF
    "$GATEWAY" run --config "$WORK/$1.yaml" >> "$WORK/gateway-$1.log" 2>&1 &
    echo $! > "$WORK/pids/gateway-$1"
    disown
    wait_until 100 0.1 curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$3/readyz" ||
        fail "the $1 gateway did not start ($WORK/gateway-$1.log)"
}

log "redis-server :$REDIS_PORT (append-only), echo :$UP_PORT, gateways: redis :$REDIS_GW, cookie :$COOKIE_GW"
start_redis
start_echo
start_gateway redis "$REDIS_GW" "$REDIS_ADMIN" "store:
  type: redis
  url: redis://127.0.0.1:$REDIS_PORT
  timeout: 1s"
start_gateway cookie "$COOKIE_GW" "$COOKIE_ADMIN" "store:
  type: cookie"

# ---------------------------------------------------------------- resources
# One line per gateway: phase (idle before the load, load once a second,
# settled after it), name, time, VmRSS kB, open fds.
sample() { # phase
    local name pid rss fds
    for name in redis cookie; do
        pid="$(cat "$WORK/pids/gateway-$name")"
        rss="$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)"
        fds="$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)"
        echo "$1 $name $(date +%s.%N) $rss $fds" >> "$WORK/resources.log"
    done
}

# The baseline: both gateways started, nothing connected yet.
sample idle

# ---------------------------------------------------------------- capacity
if [ -z "$RATE" ]; then
    cookie="$(curl -s -D - -o /dev/null "http://127.0.0.1:$REDIS_GW/?update=%7B%22a%22%3A1%7D" |
        tr -d '\r' | awk -F'[ ;]' 'tolower($1) == "set-cookie:" { print $2; exit }')"
    [ -n "$cookie" ] || fail "no session cookie from the redis gateway"
    capacity="$(wrk -t1 -c32 -d5s -H "Cookie: $cookie" "http://127.0.0.1:$REDIS_GW/" |
        awk '/^Requests\/sec/ { printf "%d", $2 }')"
    RATE=$((capacity / 2))
    log "capacity (wrk, 5 s, reads on the redis gateway): $capacity req/s; half: $RATE"
    if [ "$RATE" -gt "$MAX_RATE" ]; then
        log "the load generator's ceiling is $MAX_RATE req/s per gateway: using that"
        RATE="$MAX_RATE"
    fi
fi
log "load: $RATE req/s per gateway, $SESSIONS sessions each, ${DURATION}s"

# ---------------------------------------------------------------- faults
FAULTS="$WORK/faults.log"
: > "$FAULTS"
window() { # name start: record a fault window that ends now
    echo "$1 $2 $(date +%s.%N)" >> "$FAULTS"
}
at() { # fraction of the run: sleep until then
    local target
    target="$(python3 -c "print($T0 + $DURATION * $1)")"
    sleep "$(python3 -c "import time; print(max(0, $target - time.time()))")"
}
inject_faults() {
    local start pid
    at 0.10; log "fault: redis-restart"
    start="$(date +%s.%N)"
    redis-cli -p "$REDIS_PORT" shutdown >/dev/null 2>&1 || true
    wait_until 100 0.1 exited "$(cat "$WORK/pids/redis")" || true
    sleep 3; start_redis; window redis-restart "$start"

    at 0.22; log "fault: redis-stall"
    start="$(date +%s.%N)"
    pid="$(cat "$WORK/pids/redis")"
    kill -STOP "$pid"; sleep 3; kill -CONT "$pid"; window redis-stall "$start"

    at 0.34; log "fault: upstream-slow"
    start="$(date +%s.%N)"
    pid="$(cat "$WORK/pids/echo")"
    kill -STOP "$pid"; sleep 4; kill -CONT "$pid"; window upstream-slow "$start"

    at 0.46; log "fault: upstream-refuse"
    start="$(date +%s.%N)"
    pid="$(cat "$WORK/pids/echo")"
    kill -KILL "$pid"; wait_until 50 0.1 exited "$pid" || true
    sleep 3; start_echo; window upstream-refuse "$start"

    # 0.58: the load generator's slow-client burst (recorded by it).

    at 0.76; log "fault: redis-kill"
    start="$(date +%s.%N)"
    pid="$(cat "$WORK/pids/redis")"
    kill -KILL "$pid"; wait_until 50 0.1 exited "$pid" || true
    sleep 2; start_redis; window redis-kill "$start"
}

# ---------------------------------------------------------------- run
T0="$(date +%s.%N)"
inject_faults &
BACKGROUND+=($!)
(while sleep 1; do sample load; done) &
SAMPLER=$!
BACKGROUND+=("$SAMPLER")
burst_at="$(python3 -c "print($DURATION * 0.58)")"
python3 "$ROOT/scripts/soak/client.py" load \
    --gateway "redis=http://127.0.0.1:$REDIS_GW" --gateway "cookie=http://127.0.0.1:$COOKIE_GW" \
    --rate "$RATE" --duration "$DURATION" --sessions "$SESSIONS" \
    --ledger "$WORK/ledger.json" --faults "$FAULTS" --slow-burst-at "$burst_at"
kill "$SAMPLER" 2>/dev/null || true
wait "${BACKGROUND[0]}" 2>/dev/null || true

log "reading every session back"
python3 "$ROOT/scripts/soak/client.py" verify --ledger "$WORK/ledger.json"
for name in redis cookie; do
    exited "$(cat "$WORK/pids/gateway-$name")" && fail "the $name gateway died ($WORK/gateway-$name.log)"
done
# The upstream pool closes a connection 60 s after its last use (checked
# every 15 s): past that, a gateway that leaks nothing is back to its
# baseline's open files.
log "waiting 80 s for idle connections to close, then the last sample"
sleep 80
sample settled

OUT="${OUT:-$WORK/soak-summary.md}"
status=0
python3 "$ROOT/scripts/soak/client.py" report --ledger "$WORK/ledger.json" --faults "$FAULTS" \
    --resources "$WORK/resources.log" --out "$OUT" || status=$?
{
    echo
    echo "Run: $(date -u '+%Y-%m-%d %H:%M UTC'), ${DURATION}s of load at $RATE req/s per gateway, $SESSIONS sessions per gateway, $(nproc) CPUs, $("$GATEWAY" --version 2>/dev/null || echo sessiongate)."
} | tee -a "$OUT"
exit "$status"
