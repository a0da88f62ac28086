# shellcheck shell=bash
# Sourced by the project's test script: provides `ensure_moto`, which makes a
# DynamoDB endpoint (moto) available for the DynamoDB store tests and exports
# SESSIONGATE_TEST_DYNAMODB_ENDPOINT.
#
#   SERVICES_DIR=.test-services source scripts/services/moto.sh
#   ensure_moto && cargo test --test it store_dynamodb
#   stop_moto   # stops the server this script started (the test script
#               # does when it exits, if this run started it)
#
# An endpoint already given in SESSIONGATE_TEST_DYNAMODB_ENDPOINT is used as
# is when it answers (a DynamoDB Local container, say). Otherwise moto is
# installed into $SERVICES_DIR/venv (once) and started on a free port on
# 127.0.0.1; its pid and port are kept in $SERVICES_DIR so a second run reuses
# the same server while it runs. The log is $SERVICES_DIR/moto.log.
#
# Sourced, so: no `set -e`, no `exit`; functions return non-zero on failure.

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

# True when something answers HTTP at URL (any status counts).
_moto_answers() {
    local url=$1
    if command -v curl >/dev/null 2>&1; then
        curl -s -o /dev/null --max-time 2 "$url"
    else
        python3 - "$url" <<'PY' >/dev/null 2>&1
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1], timeout=2)
except urllib.error.HTTPError:
    pass
PY
    fi
}

# Creates the venv and installs moto into it, unless that is already done.
_moto_install() {
    local venv=$1
    if [ ! -x "$venv/bin/python" ]; then
        say moto "creating a virtualenv in $venv"
        python3 -m venv "$venv" || return 1
    fi
    if [ -x "$venv/bin/moto_server" ] && "$venv/bin/python" -c 'import moto.server' >/dev/null 2>&1; then
        return 0
    fi
    say moto "installing moto[dynamodb,server] into $venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[dynamodb,server]' >&2
}

# Waits up to 30 s for moto (pid PID) to answer at URL.
_moto_wait() {
    local pid=$1 url=$2 log=$3 status=0
    wait_until --pid "$pid" 150 0.2 _moto_answers "$url" || status=$?
    case "$status" in
        0) return 0 ;;
        2)
            say moto "the server exited; last lines of $log:"
            tail -n 20 "$log" >&2
            ;;
        *) say moto "no answer at $url after 30 s (see $log)" ;;
    esac
    return 1
}

# Reuses the moto this script started earlier, if it still runs and answers.
_moto_reuse() {
    local dir=$1 pid port
    [ -f "$dir/moto.pid" ] && [ -f "$dir/moto.port" ] || return 1
    pid=$(cat "$dir/moto.pid")
    port=$(cat "$dir/moto.port")
    kill -0 "$pid" 2>/dev/null || return 1
    _moto_answers "http://127.0.0.1:$port/" || return 1
    export SESSIONGATE_TEST_DYNAMODB_ENDPOINT="http://127.0.0.1:$port"
}

ensure_moto() {
    if [ -n "${SESSIONGATE_TEST_DYNAMODB_ENDPOINT:-}" ] && _moto_answers "$SESSIONGATE_TEST_DYNAMODB_ENDPOINT"; then
        say moto "using $SESSIONGATE_TEST_DYNAMODB_ENDPOINT"
        return 0
    fi
    if [ -z "${SERVICES_DIR:-}" ]; then
        say moto "SERVICES_DIR is not set"
        return 1
    fi
    mkdir -p "$SERVICES_DIR" || return 1
    local dir
    dir=$(cd "$SERVICES_DIR" && pwd) || return 1
    if _moto_reuse "$dir"; then
        say moto "reusing $SESSIONGATE_TEST_DYNAMODB_ENDPOINT (pid $(cat "$dir/moto.pid"))"
        return 0
    fi
    _moto_install "$dir/venv" || { say moto "installation failed"; return 1; }
    local port pid log="$dir/moto.log"
    # Below the kernel's ephemeral ports (32768-60999), which outgoing
    # connections take.
    port=$(free_port --range 20000 29999) || return 1
    nohup "$dir/venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$dir/moto.pid"
    echo "$port" >"$dir/moto.port"
    started_service moto
    _moto_wait "$pid" "http://127.0.0.1:$port/" "$log" || return 1
    export SESSIONGATE_TEST_DYNAMODB_ENDPOINT="http://127.0.0.1:$port"
    say moto "started $SESSIONGATE_TEST_DYNAMODB_ENDPOINT (pid $pid, log $log)"
}

# Stops the moto that ensure_moto started (by its recorded pid only).
stop_moto() {
    local dir=${SERVICES_DIR:-} pid
    [ -n "$dir" ] && [ -f "$dir/moto.pid" ] || return 0
    pid=$(cat "$dir/moto.pid")
    if kill "$pid" 2>/dev/null; then
        wait_until 50 0.1 exited "$pid" || true
        say moto "stopped the server (pid $pid)"
    fi
    rm -f "$dir/moto.pid" "$dir/moto.port"
}
