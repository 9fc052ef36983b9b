#!/usr/bin/env bash
# Sets up everything the tests need on a fresh Debian machine, then runs them
# all: Debian's Chromium for the browser tests, Debian's redis-server for the
# cluster tests (they start their own), and a fresh virtual environment
# (.venv-test) with chatthing installed from this checkout by `pip install .[bench]`
# (the bench extra: matplotlib, for `chatthing bench --plot`).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
missing=()
command -v chromium >/dev/null || missing+=(chromium)
[ -x /usr/bin/redis-server ] || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ]; then
    echo "Installing Debian packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

rm -rf .venv-test
python3 -m venv .venv-test
.venv-test/bin/pip install -q --upgrade pip
.venv-test/bin/pip install -q '.[bench]' -r tests/requirements.txt

# Run from the checkout, but import the installed package: pytest puts tests/
# on sys.path, not the checkout's root.
exec .venv-test/bin/pytest "$@"
