# shellcheck shell=bash
#
# MySQL/MariaDB for sessiongate's tests. Sourced by the test script; defines
#
#   ensure_mysql   makes a MariaDB answer and exports SESSIONGATE_TEST_MYSQL_URL
#   stop_mysql     stops the private MariaDB that ensure_mysql started, if any
#                  (the test script does when it exits, if this run started it)
#
# ensure_mysql first asks 127.0.0.1:${MYSQL_PROBE_PORT:-3306} for root with no
# password. When that answers it is used as it is (only database `test` is
# created if missing): it may be the machine's shared server, so it is never
# stopped or reconfigured. Otherwise a private MariaDB is started on a free
# port with its data under $SERVICES_DIR/mysql (installing mariadb-server
# with apt-get when the binaries are missing) and reused by later runs while
# it keeps running.
#
# Environment:
#   SERVICES_DIR       where private services keep their data (required for
#                      the private server; e.g. .test-services)
#   MYSQL_PROBE_PORT   the port probed for an existing server (default 3306)
#
# Functions return non-zero with a message on stderr; they never exit the
# shell that sourced them.

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

_mysql_say() {
    say mysql.sh "$@"
}

# The client, whichever name this distribution gives it.
_mysql_client() {
    command -v mariadb || command -v mysql
}

# Finds a server binary by its MariaDB name or its older MySQL one; sbin is
# often not on a non-root PATH.
_mysql_find() {
    local name
    for name in "$@"; do
        command -v "$name" && return 0
        [ -x "/usr/sbin/$name" ] && { echo "/usr/sbin/$name"; return 0; }
        [ -x "/usr/bin/$name" ] && { echo "/usr/bin/$name"; return 0; }
    done
    return 1
}

# Runs SQL as root with no password on 127.0.0.1:$1, ignoring option files.
_mysql_sql() {
    local port=$1
    shift
    "$(_mysql_client)" --no-defaults --protocol=TCP -h127.0.0.1 -P"$port" -uroot \
        --connect-timeout=2 -e "$@"
}

_mysql_answers() {
    _mysql_sql "$1" 'SELECT 1' >/dev/null 2>&1
}

_mysql_apt_install() {
    local sudo=()
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null || {
            _mysql_say "need root or sudo to install $*"
            return 1
        }
        sudo=(sudo -n)
    fi
    _mysql_say "installing $* with apt-get"
    "${sudo[@]}" apt-get update -qq >&2 &&
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "$@" >&2
}

_mysql_export_url() {
    _mysql_sql "$1" 'CREATE DATABASE IF NOT EXISTS test' || return 1
    export SESSIONGATE_TEST_MYSQL_URL="mysql://root@127.0.0.1:$1/test"
    _mysql_say "using $SESSIONGATE_TEST_MYSQL_URL"
}

# Creates the private data directory once.
_mysql_install_datadir() {
    local dir=$1 install_db
    [ -d "$dir/data/mysql" ] && return 0
    install_db=$(_mysql_find mariadb-install-db mysql_install_db) || return 1
    mkdir -p "$dir" &&
        "$install_db" --no-defaults --user="$(id -un)" --datadir="$dir/data" \
            --auth-root-authentication-method=normal --skip-test-db \
            >"$dir/install.log" 2>&1 || {
        _mysql_say "$install_db failed; see $dir/install.log"
        return 1
    }
}

# Starts mariadbd in the background on port $2 and records its pid.
_mysql_start_private() {
    local dir=$1 port=$2 server
    server=$(_mysql_find mariadbd mysqld) || return 1
    nohup "$server" --no-defaults --user="$(id -un)" --datadir="$dir/data" \
        --port="$port" --bind-address=127.0.0.1 --skip-name-resolve \
        --socket="$dir/mysqld.sock" --pid-file="$dir/mysqld.pid" \
        --innodb-buffer-pool-size=64M --log-error="$dir/error.log" \
        >/dev/null 2>&1 &
    echo $! >"$dir/server.pid"
    echo "$port" >"$dir/port"
    disown 2>/dev/null || true
}

_mysql_wait() {
    local dir=$1 port=$2
    wait_until --pid "$(cat "$dir/server.pid")" 120 0.5 _mysql_answers "$port" && return 0
    _mysql_say "private MariaDB did not start; see $dir/error.log"
    return 1
}

ensure_mysql() {
    local probe=${MYSQL_PROBE_PORT:-3306} dir port
    if [ -z "$(_mysql_client)" ]; then
        _mysql_apt_install mariadb-client || return 1
    fi
    if _mysql_answers "$probe"; then
        _mysql_export_url "$probe"
        return
    fi
    [ -n "${SERVICES_DIR:-}" ] || {
        _mysql_say "nothing answers on 127.0.0.1:$probe and SERVICES_DIR is not set"
        return 1
    }
    dir=$(mkdir -p "$SERVICES_DIR/mysql" && cd "$SERVICES_DIR/mysql" && pwd) || return 1
    if [ -f "$dir/port" ] && _mysql_answers "$(cat "$dir/port")"; then
        _mysql_export_url "$(cat "$dir/port")"
        return
    fi
    if ! _mysql_find mariadbd mysqld >/dev/null; then
        _mysql_apt_install mariadb-server || return 1
    fi
    _mysql_install_datadir "$dir" || return 1
    port=$(free_port --range 33060 53059) || return 1
    _mysql_start_private "$dir" "$port"
    started_service mysql
    _mysql_wait "$dir" "$port" || return 1
    _mysql_export_url "$port"
}

# Stops only the server ensure_mysql started (by its recorded pid); the
# machine's own server is never touched.
stop_mysql() {
    local dir=${SERVICES_DIR:-}/mysql pid
    [ -n "${SERVICES_DIR:-}" ] && [ -f "$dir/server.pid" ] || return 0
    pid=$(cat "$dir/server.pid")
    if ! exited "$pid"; then
        kill "$pid"
        if wait_until 60 0.5 exited "$pid"; then
            _mysql_say "stopped the private MariaDB (pid $pid)"
        else
            _mysql_say "the private MariaDB (pid $pid) still runs 30 s after SIGTERM"
        fi
    fi
    rm -f "$dir/server.pid" "$dir/port"
}
