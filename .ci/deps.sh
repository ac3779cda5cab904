#!/usr/bin/env bash
# Installs the system packages the stack and the tests need, only when they
# are missing, so it is safe (and quick) to run again: redis-server, kcat (an
# independent Kafka client the tests check our broker with), shellcheck (the
# chaos wrappers are checked with it), the PostgreSQL 15 server binaries, and
# chromium with a font (the report's test opens index.html in headless Chromium).
set -euo pipefail

postgres_bin="${LEDGERPROOF_POSTGRES_BIN_DIR:-/usr/lib/postgresql/15/bin}"
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
[ -x "$postgres_bin/initdb" ] || missing+=(postgresql-15)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)

if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

echo "installing missing packages: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
else
  echo "error: need root or sudo to install ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null; then
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq "${missing[@]}"
fi
# The Debian package starts a system redis-server on 6379; the stack and the
# tests start their own on other ports and never use it.
