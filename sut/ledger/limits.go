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

// DefaultDailyDebitLimitMinor is the daily debit limit `ledgerproof up`
// gives its gateways and workers when not told otherwise: 1,000,000 minor
// units (10,000.00 in a two-decimal currency) per user per UTC day. The
// reference system's own default, for a gateway or worker started without a
// limit, is 0: no limit.
const DefaultDailyDebitLimitMinor int64 = 1_000_000
