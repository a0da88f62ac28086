# shellcheck shell=bash
#
# Redis for the test suite. Sourced (not run) by the project's test script,
# which sets SERVICES_DIR to a scratch directory (e.g. .test-services/).
#
#   ensure_redis          a Redis to test against; exports
#                         SESSIONGATE_TEST_REDIS_URL
#   ensure_redis_cluster  a 3-master Redis Cluster on local ports; exports
#                         SESSIONGATE_TEST_REDIS_CLUSTER (comma-separated seeds)
#   stop_redis            stops the Redis that ensure_redis started, if any
#   stop_redis_cluster    stops the cluster that ensure_redis_cluster started
#
# Servers started here are daemonized and keep nothing on disk (--save ""
# --appendonly no); their ports are kept under $SERVICES_DIR, so while they
# run a later call reuses them (the test script stops what it started when it
# exits). A Redis already serving 127.0.0.1:6379 is used as it is: it may be
# shared, so it is never stopped, flushed or reconfigured (tests use their own
# key prefixes).

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

# Prints a message on stderr.
_redis_say() {
    say redis.sh "$@"
}

# Installs redis-server and redis-cli when missing.
_redis_install() {
    if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
        return 0
    fi
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        sudo="sudo"
    fi
    _redis_say "redis-server not found: installing it with apt-get"
    $sudo apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null ||
        { _redis_say "could not install redis-server"; return 1; }
}

# Succeeds when a Redis answers PING on 127.0.0.1:$1.
_redis_answers() {
    [ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" = "PONG" ]
}

# Prints a free port in 20000-29999 whose cluster bus port (+10000) is free
# too and that is not among the arguments.
_redis_free_port() {
    free_port --range 20000 29999 --plus 10000 "$@"
}

# Waits up to 10 s for a Redis on port $1.
_redis_wait() {
    wait_until 100 0.1 _redis_answers "$1" && return 0
    _redis_say "no Redis answered on port $1"
    return 1
}

# Starts a daemonized, non-persistent redis-server on port $1 with its files
# in directory $2, where it also records the port (`port`) for the stop
# functions; further arguments go to redis-server.
_redis_start() {
    local port="$1" dir="$2"
    shift 2
    mkdir -p "$dir" || return 1
    redis-server --port "$port" --bind 127.0.0.1 --daemonize yes \
        --save "" --appendonly no --dir "$dir" \
        --logfile "$dir/redis.log" --pidfile "$dir/redis.pid" "$@" >/dev/null ||
        { _redis_say "redis-server failed to start on port $port (see $dir/redis.log)"; return 1; }
    echo "$port" >"$dir/port"
    _redis_wait "$port"
}

# Stops a Redis this script started on port $1. Never touches 6379.
_redis_stop() {
    [ "$1" = "6379" ] && return 0
    redis-cli -h 127.0.0.1 -p "$1" shutdown nosave >/dev/null 2>&1 || true
}

# Stops the Redis whose port file is $1 (written by _redis_start) and removes
# the file.
_redis_stop_recorded() {
    [ -f "$1" ] || return 0
    local port
    port="$(cat "$1")"
    _redis_stop "$port"
    rm -f "$1"
    _redis_say "stopped redis-server on 127.0.0.1:$port"
}

ensure_redis() {
    : "${SERVICES_DIR:?SERVICES_DIR must name a scratch directory}"
    _redis_install || return 1
    local dir="$SERVICES_DIR/redis" port
    if [ -n "${SESSIONGATE_TEST_REDIS_URL:-}" ] &&
        [ "$(redis-cli -u "$SESSIONGATE_TEST_REDIS_URL" ping 2>/dev/null)" = "PONG" ]; then
        export SESSIONGATE_TEST_REDIS_URL
        return 0
    fi
    if _redis_answers 6379; then
        export SESSIONGATE_TEST_REDIS_URL="redis://127.0.0.1:6379"
        return 0
    fi
    if [ -f "$dir/port" ] && _redis_answers "$(cat "$dir/port")"; then
        port="$(cat "$dir/port")"
    else
        rm -f "$dir/port"
        port="$(_redis_free_port)" || return 1
        started_service redis
        _redis_start "$port" "$dir" || return 1
        _redis_say "started redis-server on 127.0.0.1:$port"
    fi
    export SESSIONGATE_TEST_REDIS_URL="redis://127.0.0.1:$port"
}

# Stops only the private Redis that ensure_redis started (by its recorded
# port); a Redis on 6379 or named by SESSIONGATE_TEST_REDIS_URL was never
# recorded, so it is never touched.
stop_redis() {
    [ -n "${SERVICES_DIR:-}" ] || return 0
    _redis_stop_recorded "$SERVICES_DIR/redis/port"
}

# Succeeds when every port in the arguments answers and reports a healthy
# cluster.
_redis_cluster_ok() {
    local port
    [ "$#" -eq 3 ] || return 1
    for port in "$@"; do
        _redis_answers "$port" || return 1
        redis-cli -h 127.0.0.1 -p "$port" cluster info 2>/dev/null |
            grep -q '^cluster_state:ok' || return 1
    done
}

# Waits up to 30 s for a healthy cluster on the ports given.
_redis_cluster_wait() {
    wait_until 300 0.1 _redis_cluster_ok "$@" && return 0
    _redis_say "the cluster on ports $* did not reach cluster_state:ok"
    return 1
}

# Starts three empty cluster-enabled masters and joins them; prints the ports.
_redis_cluster_create() {
    local dir="$1" ports=() port i
    for i in 1 2 3; do
        port="$(_redis_free_port "${ports[@]}")" || return 1
        rm -rf "$dir/node-$i"
        _redis_start "$port" "$dir/node-$i" --cluster-enabled yes \
            --cluster-config-file "$dir/node-$i/nodes.conf" \
            --cluster-node-timeout 5000 >&2 || return 1
        ports+=("$port")
    done
    redis-cli --cluster create "127.0.0.1:${ports[0]}" "127.0.0.1:${ports[1]}" \
        "127.0.0.1:${ports[2]}" --cluster-replicas 0 --cluster-yes >"$dir/create.log" 2>&1 ||
        { _redis_say "redis-cli --cluster create failed (see $dir/create.log)"; return 1; }
    _redis_cluster_wait "${ports[@]}" || return 1
    echo "${ports[*]}"
}

ensure_redis_cluster() {
    : "${SERVICES_DIR:?SERVICES_DIR must name a scratch directory}"
    _redis_install || return 1
    local dir="$SERVICES_DIR/redis-cluster" ports=() port
    mkdir -p "$dir" || return 1
    if [ -f "$dir/ports" ]; then
        read -r -a ports <"$dir/ports"
    fi
    if ! _redis_cluster_ok "${ports[@]}"; then
        for port in "${ports[@]}"; do
            _redis_stop "$port"
        done
        rm -f "$dir/ports"
        started_service redis_cluster
        read -r -a ports <<<"$(_redis_cluster_create "$dir")"
        [ "${#ports[@]}" -eq 3 ] || return 1
        echo "${ports[*]}" >"$dir/ports"
        _redis_say "started a Redis Cluster on 127.0.0.1 ports ${ports[*]}"
    fi
    export SESSIONGATE_TEST_REDIS_CLUSTER="redis://127.0.0.1:${ports[0]},redis://127.0.0.1:${ports[1]},redis://127.0.0.1:${ports[2]}"
}

# Stops the nodes of the cluster that ensure_redis_cluster started (by the
# ports recorded in node-*/port, so a cluster whose creation failed half-way
# goes too).
stop_redis_cluster() {
    [ -n "${SERVICES_DIR:-}" ] || return 0
    local file
    for file in "$SERVICES_DIR"/redis-cluster/node-*/port; do
        _redis_stop_recorded "$file"
    done
    rm -f "$SERVICES_DIR/redis-cluster/ports"
}
