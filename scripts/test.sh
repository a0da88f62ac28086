#!/usr/bin/env bash
# The whole test suite, as the README and CI run it. It brings up what the
# tests need when nothing answers: Redis (and a 3-master Redis Cluster),
# MariaDB, moto's DynamoDB server, and a Python with PyJWT (the assertion
# tests' verifier), under .test-services/, and stops whatever it started
# when it exits, however it exits. It never stops or reconfigures services
# that were already running.
#
#   scripts/test.sh                          # everything
#   scripts/test.sh --test it proxy::        # extra arguments go to `cargo test`
#   scripts/test.sh --test it store_redis::  # (the integration tests are one
#                                            # binary, `it`; filter by module)
set -euo pipefail
cd "$(dirname "$0")/.."

export SERVICES_DIR=${SERVICES_DIR:-$PWD/.test-services}
mkdir -p "$SERVICES_DIR"

# shellcheck source=scripts/lib.sh
source scripts/lib.sh
for service in scripts/services/*.sh; do
  # shellcheck source=/dev/null
  source "$service"
done

# Only what this run started (see started_service in scripts/lib.sh): the
# machine's own Redis and MariaDB, and servers an earlier run or a developer
# left running, are reused and never stopped.
# shellcheck disable=SC2317  # run by the EXIT trap
on_exit() {
  local status=$?
  set +e
  stop_started_services
  exit "$status"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step() { printf '\n== %s\n' "$*"; }

step "services"
ensure_redis
ensure_redis_cluster
ensure_mysql
ensure_moto
ensure_pyjwt
ensure_node_app
env | grep '^SESSIONGATE_TEST_' | sort

for check in scripts/checks/*.sh; do
  [ -e "$check" ] || continue
  step "check: $check"
  bash "$check"
done

step "cargo test"
log="$SERVICES_DIR/cargo-test.log"
set +e
cargo test --locked "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# Stopped before the closing line, so that it stays the last line; the EXIT
# trap covers every earlier way out.
if [ "${#STARTED_SERVICES[@]}" -gt 0 ]; then
  step "stopping the services this run started: ${STARTED_SERVICES[*]}"
  stop_started_services
fi
# One closing line over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "total: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
