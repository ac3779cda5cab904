package ledger

import "time"

// DebitDay is the UTC day a debit counts against for the daily debit limit:
// the day of the command's AcceptedAt (the gateway's clock when it accepted
// the request), which the ledger stores with the transaction
// (transactions.accepted_at), so the worker and the auditor both recompute
// it from the same value.
func DebitDay(acceptedAt time.Time) time.Time {
	year, month, day := acceptedAt.UTC().Date()
	return time.Date(year, month, day, 0, 0, 0, 0, time.UTC)
}

// CountsAgainstDailyLimit reports whether a command of kind debits a user
// account, so counts against its user's daily debit limit: withdrawals and
// transfers (out of the user's account). Deposits do not.
func CountsAgainstDailyLimit(kind Kind) bool {
	return kind == KindWithdrawal || kind == KindTransfer
}

// DefaultDailyDebitLimitMinor is the daily debit limit the local stack
// (`ledgerproof up`, and the stacks `run` and `mutation` start) gives its
// gateways and workers when not told otherwise: 100,000 minor units
// (1,000.00 in a two-decimal currency) per user per UTC day. The stack is a
// test rig, and the limit is low enough that the busiest accounts of the
// gate's load reach it within its minute, so the gate visits that branch
// (docs/limits.md). A gateway or worker started on its own has no limit
// unless given one.
const DefaultDailyDebitLimitMinor int64 = 100_000
