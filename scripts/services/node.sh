# shellcheck shell=bash
# Sourced by the project's test script: provides `ensure_node_app`, which
# installs the Node test app under tests/node (express-session and its
# stores, iron-session: the real packages tests/it/node_compat.rs runs
# against) with `npm ci`, from the committed package-lock.json.
#
#   source scripts/services/node.sh
#   ensure_node_app && cargo test --test it node_compat::
#
# Idempotent: nothing is done when node_modules already matches the lock
# file (npm keeps a copy of it as node_modules/.package-lock.json). Needs
# Node 20 or newer and npm, and the npm registry reachable for the first
# install. Nothing runs in the background, so there is nothing to stop.
#
# Sourced, so: no `set -e`, no `exit`; functions return non-zero on failure.

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

ensure_node_app() {
    local dir
    dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../tests/node" && pwd)" || return 1
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        say node.sh "node and npm are needed for the Node compatibility tests (Node 20 or newer)"
        return 1
    fi
    local major
    major=$(node -p 'process.versions.node.split(".")[0]')
    if [ "$major" -lt 20 ]; then
        say node.sh "Node $major is too old for tests/node: 20 or newer is needed"
        return 1
    fi
    # npm ci rewrites node_modules/.package-lock.json from package-lock.json;
    # the two differ only in the root entry, so compare the packages.
    if [ -f "$dir/node_modules/.package-lock.json" ] &&
        node -e '
          const [a, b] = process.argv.slice(1).map((f) => require(f).packages);
          const strip = (p) => Object.fromEntries(Object.entries(p).filter(([k]) => k !== ""));
          process.exit(JSON.stringify(strip(a)) === JSON.stringify(strip(b)) ? 0 : 1);
        ' "$dir/package-lock.json" "$dir/node_modules/.package-lock.json"; then
        say node.sh "tests/node is installed"
        return 0
    fi
    say node.sh "npm ci in tests/node"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) || {
        say node.sh "npm ci failed in tests/node"
        return 1
    }
}
