#!/usr/bin/env bash
# cut-link.sh LINK [SECONDS] — cut a link of the local stack (through its
# fault proxies: ledgerproof up --proxies) for SECONDS (default 10), then heal
# it. LINK is gateway->broker, worker->broker, worker->postgres,
# gateway->redis or worker->redis (quote it: > is a shell redirection).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  echo "usage: $0 LINK [SECONDS]" >&2
  echo "  cut LINK for SECONDS (default 10), then heal it." >&2
  echo "  LINK: 'gateway->broker' 'worker->broker' 'worker->postgres' 'gateway->redis' 'worker->redis'" >&2
  echo "  stack: \$LEDGERPROOF_STACK_DIR (now $stack_dir)" >&2
}
if [ "$#" -lt 1 ] || [ "$#" -gt 2 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  usage
  exit 2
fi
link="$1"
seconds="${2:-10}"
case "$link" in
  'gateway->broker' | 'worker->broker' | 'worker->postgres' | 'gateway->redis' | 'worker->redis') ;;
  *) echo "error: unknown link '$link'" >&2; usage; exit 2 ;;
esac
require_seconds "$seconds"
ledgerproof chaos --stack "$stack_dir" --plan - <<PLAN
name: cut-link
description: cut $link for ${seconds}s (chaos/cut-link.sh)
duration: ${seconds}s
steps:
  - {at: 0s, action: link, target: "$link", params: {fault: cut, duration: ${seconds}s}}
PLAN
