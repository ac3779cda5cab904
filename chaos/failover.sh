#!/usr/bin/env bash
# failover.sh — kill the local stack's Postgres primary and promote its
# synchronous standby (a stack started with ledgerproof up --postgres-standby).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [ "$#" -gt 0 ]; then
  echo "usage: $0" >&2
  echo "  fail Postgres over to its standby; stack: \$LEDGERPROOF_STACK_DIR (now $stack_dir)" >&2
  exit 2
fi
ledgerproof chaos --stack "$stack_dir" --plan - <<PLAN
name: failover
description: fail Postgres over to the standby (chaos/failover.sh)
duration: 1s
steps:
  - {at: 0s, action: failover, target: postgres}
PLAN
