#!/usr/bin/env bash
# kill-worker.sh [N [SECONDS]] — kill worker-N of the local stack (default
# worker-0) with SIGKILL and, given SECONDS, start it again that much later.
# To kill the worker that owns a partition, use a plan step with target
# worker:partition=N (docs/chaos.md).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  echo "usage: $0 [N [SECONDS]]" >&2
  echo "  kill worker-N (default 0) with SIGKILL; with SECONDS, start it again after that long." >&2
  echo "  stack: \$LEDGERPROOF_STACK_DIR (now $stack_dir)" >&2
}
if [ "$#" -gt 2 ] || [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  usage
  exit 2
fi
worker="${1:-0}"
case "$worker" in
  '' | *[!0-9]*) usage; exit 2 ;;
esac
kill_component "worker-$worker" "${2:-}"
