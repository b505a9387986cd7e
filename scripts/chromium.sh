#!/usr/bin/env bash
# Headless Chromium for the browser test of report.html (tests/search.rs): installs Debian's
# `chromium` package when it is missing (as root, with apt; under a lock so parallel tests
# install once) and prints the browser's path.
#
#   scripts/chromium.sh            print the path of chromium, installing it first if needed
set -euo pipefail

find_browser() {
    command -v chromium || command -v chromium-browser || command -v google-chrome || true
}

browser=$(find_browser)
if [[ -z $browser ]]; then
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
        echo "chromium.sh: no Chromium found; install Debian's \`chromium\` package (as root:" \
            "apt-get install chromium)" >&2
        exit 1
    fi
    (
        flock 9
        if [[ -z $(find_browser) ]]; then
            echo "chromium.sh: installing Debian's chromium package" >&2
            export DEBIAN_FRONTEND=noninteractive
            apt-get update -q >&2 || true
            apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core >&2
        fi
    ) 9>/tmp/pipeline-chromium-install.lock
    browser=$(find_browser)
fi
echo "$browser"
