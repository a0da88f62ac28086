# shellcheck shell=bash
# Sourced by the project's test script: provides `ensure_pyjwt`, which makes
# a Python with PyJWT and cryptography available to the assertion tests (a
# standard JWT library verifies what the gateway signs) and exports
# SESSIONGATE_TEST_PYTHON.
#
#   SERVICES_DIR=.test-services source scripts/services/jwt.sh
#   ensure_pyjwt && cargo test --test it assertion::
#
# A Python already given in SESSIONGATE_TEST_PYTHON is used as is when it
# imports jwt and cryptography. Otherwise PyJWT is installed (once) into
# $SERVICES_DIR/jwt-venv, from PyPI. Nothing runs in the background, so
# there is nothing to stop.
#
# Sourced, so: no `set -e`, no `exit`; functions return non-zero on failure.

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

# True when PYTHON can verify an EdDSA JWT against a JWK.
_pyjwt_works() {
    "$1" -c 'import jwt, cryptography; jwt.PyJWK({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"})' >/dev/null 2>&1
}

ensure_pyjwt() {
    if [ -n "${SESSIONGATE_TEST_PYTHON:-}" ] && _pyjwt_works "$SESSIONGATE_TEST_PYTHON"; then
        say pyjwt "using $SESSIONGATE_TEST_PYTHON"
        return 0
    fi
    if [ -z "${SERVICES_DIR:-}" ]; then
        say pyjwt "SERVICES_DIR is not set"
        return 1
    fi
    mkdir -p "$SERVICES_DIR" || return 1
    local venv
    venv="$(cd "$SERVICES_DIR" && pwd)/jwt-venv" || return 1
    if ! _pyjwt_works "$venv/bin/python"; then
        if [ ! -x "$venv/bin/python" ]; then
            say pyjwt "creating a virtualenv in $venv"
            python3 -m venv "$venv" || return 1
        fi
        say pyjwt "installing PyJWT[crypto] into $venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check 'PyJWT[crypto]>=2.8' >&2 || {
            say pyjwt "installation failed"
            return 1
        }
        _pyjwt_works "$venv/bin/python" || {
            say pyjwt "$venv/bin/python cannot verify EdDSA tokens after the installation"
            return 1
        }
    fi
    export SESSIONGATE_TEST_PYTHON="$venv/bin/python"
    say pyjwt "using $SESSIONGATE_TEST_PYTHON"
}
