# shellcheck shell=bash
# Shared by the chaos wrappers (kill-*.sh, cut-link.sh, failover.sh); sourced,
# not run. It finds the ledgerproof binary and the stack directory.
#
#   LEDGERPROOF_STACK_DIR  the local stack's directory (default .ledgerproof/stack)
#   LEDGERPROOF_CLI        the ledgerproof binary (default: ledgerproof on PATH,
#                          else bin/ledgerproof of this repository)

stack_dir="${LEDGERPROOF_STACK_DIR:-.ledgerproof/stack}"

# ledgerproof runs the ledgerproof CLI with the given arguments.
ledgerproof() {
  local cli="${LEDGERPROOF_CLI:-}"
  if [ -z "$cli" ]; then
    if command -v ledgerproof >/dev/null 2>&1; then
      cli="$(command -v ledgerproof)"
    else
      cli="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/bin/ledgerproof"
    fi
  fi
  if [ ! -x "$cli" ]; then
    echo "error: no ledgerproof binary at $cli (run 'make', or set LEDGERPROOF_CLI)" >&2
    exit 2
  fi
  "$cli" "$@"
}

# require_seconds checks that $1 is a positive whole number of seconds.
require_seconds() {
  case "$1" in
    '' | *[!0-9]* | 0) echo "error: SECONDS must be a positive whole number, got '$1'" >&2; exit 2 ;;
  esac
}

# kill_component kills component $1 and, when $2 (seconds) is given, starts
# it again after that long.
kill_component() {
  local component="$1" seconds="${2:-}"
  if [ -n "$seconds" ]; then
    require_seconds "$seconds"
  fi
  ledgerproof stack --dir "$stack_dir" --action kill --component "$component"
  if [ -z "$seconds" ]; then
    echo "$component stays down; start it with: ledgerproof stack --dir $stack_dir --action start --component $component"
    return
  fi
  sleep "$seconds"
  ledgerproof stack --dir "$stack_dir" --action start --component "$component"
}
