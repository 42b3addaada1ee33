#!/bin/sh
# Make sure /usr/bin/chromium exists for the page test (tests/test_serve_page.py), which drives it
# through the playwright package. Idempotent: does nothing when it is already there. Installs
# Debian's chromium package when running as root; otherwise says why it cannot (the test then skips).
set -eu
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "ensure-chromium: /usr/bin/chromium is missing and installing it needs root;" \
         "run 'sudo apt-get install chromium' (the page test is skipped until then)" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-chromium: no apt-get here; install Chromium at /usr/bin/chromium by hand" \
         "(the page test is skipped until then)" >&2
    exit 0
fi
echo "ensure-chromium: installing Debian's chromium package" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
[ -x /usr/bin/chromium ] && echo "ensure-chromium: $(/usr/bin/chromium --version)" >&2
