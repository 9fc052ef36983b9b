#!/usr/bin/env bash
# Sets up everything the tests need on a fresh Debian machine, then runs them
# all: Debian's Chromium for the browser tests, Debian's firefox-esr, WebKitGTK
# (webkit2gtk-driver, libwebkit2gtk-4.1-0's MiniBrowser) and Xvfb for
# tests/test_other_browsers.py, node and npm for puppeteer-core (installed by
# `npm ci` into tests/browsers/node_modules, no browser downloaded), Debian's
# redis-server for the cluster tests (they start their own), and a fresh virtual environment
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

# Firefox and WebKit for tests/test_other_browsers.py, without their
# recommended packages (GStreamer's plugins, desktop portals, spell-checking
# dictionaries, none of which the tests use).
others=()
[ -x /usr/bin/firefox-esr ] || others+=(firefox-esr)
[ -x /usr/bin/WebKitWebDriver ] || others+=(webkit2gtk-driver)
compgen -G '/usr/lib/*/webkit2gtk-4.1/MiniBrowser' >/dev/null || others+=(libwebkit2gtk-4.1-0)
[ -x /usr/bin/Xvfb ] || others+=(xvfb)
command -v node >/dev/null || others+=(nodejs)
command -v npm >/dev/null || others+=(npm)
if [ ${#others[@]} -gt 0 ]; then
    echo "Installing Debian packages: ${others[*]}"
    [ ${#missing[@]} -gt 0 ] || $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${others[@]}" >/dev/null
fi

# puppeteer-core, as pinned by tests/browsers/package-lock.json; it drives
# Debian's firefox-esr, so it downloads no browser of its own.
(cd tests/browsers && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)

rm -rf .venv-test
python3 -m venv .venv-test
.venv-test/bin/pip install -q --upgrade pip
.venv-test/bin/pip install -q '.[bench]' -r tests/requirements.txt

# Run from the checkout, but import the installed package: pytest puts tests/
# on sys.path, not the checkout's root.
exec .venv-test/bin/pytest "$@"
