# shellcheck shell=bash
#
# Helpers the project's scripts share. Sourced, never run:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"              # from scripts/
#   source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"           # from scripts/*/
#
#   say NAME MESSAGE...        "NAME: MESSAGE" on stderr
#   die NAME MESSAGE...        say, then exit 1 (for scripts that are run)
#   port_busy PORT             something listens on 127.0.0.1:PORT
#   free_port [--range LOW HIGH] [--plus OFFSET] [TAKEN...]
#                              prints a port nothing listens on
#   wait_until [--pid PID] TRIES PAUSE COMMAND [ARG...]
#                              runs COMMAND until it succeeds
#   exited PID                 the process PID is gone
#   started_service NAME       notes that this shell started service NAME
#   stop_started_services      calls stop_NAME for each, newest first
#
# Sourced, so: no `set -e`, no `exit` (but in `die`); functions return
# non-zero on failure. Sourcing it twice is harmless: the second time keeps
# what the first one recorded.

[ -n "${_SESSIONGATE_LIB_SH:-}" ] && return 0
_SESSIONGATE_LIB_SH=1

# Prints "NAME: MESSAGE" on stderr; stdout stays free for what a function
# returns to its caller (a port, say).
say() {
    local name=$1
    shift
    printf '%s: %s\n' "$name" "$*" >&2
}

# Prints "NAME: MESSAGE" on stderr and exits the script with status 1.
die() {
    say "$@"
    exit 1
}

# Installs from apt the package of each COMMAND that is missing, given as
# COMMAND:PACKAGE (as root, or through sudo); NAME labels the log line.
#   install_missing bench nginx:nginx-light wrk:wrk redis-cli:redis-tools
install_missing() {
    local name=$1 pair missing=() sudo=()
    shift
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null || [ -x "/usr/sbin/${pair%%:*}" ] ||
            missing+=("${pair#*:}")
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    say "$name" "installing ${missing[*]} from apt"
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Succeeds when something listens on 127.0.0.1:$1 (a bash /dev/tcp probe).
port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# free_port [--range LOW HIGH] [--plus OFFSET] [TAKEN...]
#
# Prints a random port in LOW..HIGH (default 20000..29999) on which nothing
# listens on 127.0.0.1 and that is not among TAKEN (ports the caller is about
# to use but has not bound yet). With --plus, PORT+OFFSET must be free too
# (a Redis Cluster node's bus port). Gives up after 200 tries.
free_port() {
    local low=20000 high=29999 plus="" port taken other tries
    while [ "$#" -gt 0 ]; do
        case "$1" in
            --range) low=$2 high=$3; shift 3 ;;
            --plus) plus=$2; shift 2 ;;
            *) break ;;
        esac
    done
    for tries in $(seq 1 200); do
        port=$((low + RANDOM % (high - low + 1)))
        taken=0
        for other in "$@"; do
            [ "$other" = "$port" ] && taken=1
        done
        if [ "$taken" = 0 ] && ! port_busy "$port" &&
            { [ -z "$plus" ] || ! port_busy $((port + plus)); }; then
            echo "$port"
            return 0
        fi
    done
    say lib.sh "no free port in $low-$high found after $tries tries"
    return 1
}

# Succeeds when process $1 no longer runs.
exited() {
    ! kill -0 "$1" 2>/dev/null
}

# wait_until [--pid PID] TRIES PAUSE COMMAND [ARG...]
#
# Runs COMMAND up to TRIES times, PAUSE seconds apart, until it succeeds.
# Returns 0 when it did, 1 when it never did, and 2 as soon as process PID
# (the server being waited for) has exited.
wait_until() {
    local pid="" tries pause i
    if [ "$1" = --pid ]; then
        pid=$2
        shift 2
    fi
    tries=$1 pause=$2
    shift 2
    for i in $(seq 1 "$tries"); do
        "$@" && return 0
        if [ -n "$pid" ] && exited "$pid"; then
            return 2
        fi
        [ "$i" -lt "$tries" ] && sleep "$pause"
    done
    return 1
}

# The services this shell started, in order (see started_service).
STARTED_SERVICES=()

# Notes that this shell started service NAME, stopped by `stop_NAME` (the
# scripts under scripts/services/ call it right after starting a server, so
# a start that fails half-way is cleaned up too). A service that was already
# running, and was only reused, is never noted.
started_service() {
    local name
    for name in "${STARTED_SERVICES[@]}"; do
        [ "$name" = "$1" ] && return 0
    done
    STARTED_SERVICES+=("$1")
}

# Stops every service this shell started, newest first, and forgets them;
# a failing stop does not keep the others running.
stop_started_services() {
    local i
    for ((i = ${#STARTED_SERVICES[@]} - 1; i >= 0; i--)); do
        "stop_${STARTED_SERVICES[i]}" || say lib.sh "stop_${STARTED_SERVICES[i]} failed"
    done
    STARTED_SERVICES=()
}
