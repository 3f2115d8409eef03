#!/usr/bin/env bash
# Debian's Chromium for the browser tests (Playwright drives it through
# executable_path; `playwright install` is never used). Installs only as root
# on a Debian-like system; elsewhere the e2e tests skip themselves and say why.
set -u
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium for the browser tests"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null && \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null \
    || echo "could not install chromium: browser tests will be skipped"
else
  echo "chromium is not installed and this is not root: browser tests will be skipped"
fi
exit 0
