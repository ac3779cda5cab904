#!/usr/bin/env bash
# kill-redis.sh [SECONDS] — kill the local stack's redis (SIGKILL) and, given
# SECONDS, start it again that much later.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  echo "usage: $0 [SECONDS]" >&2
  echo "  kill redis (SIGKILL); with SECONDS, start it again after that long." >&2
  echo "  stack: \$LEDGERPROOF_STACK_DIR (now $stack_dir)" >&2
}
if [ "$#" -gt 1 ] || [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  usage
  exit 2
fi
kill_component redis "${1:-}"
