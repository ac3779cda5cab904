// Package invariants is the auditor, the Jepsen checker of Ledgerproof: it
// reads a run's operation journal (load/JOURNAL.md) and the system's
// ledger, and checks every invariant of the catalogue (conservation, balance
// equals postings, no overdraft, exactly-once, no phantoms, outcome
// agreement, the idempotency-key contract, per-account order, durability and
// cache coherence), explaining each violation with the smallest set of
// operations and ledger rows that shows it.
//
// The ledger is read through a Source: the reference system's Postgres
// (PostgresSource), or the export format of docs/audit.md (ExportSource),
// which any other system can write. Both are streamed: the auditor keeps
// compact per-key and per-row state, never whole result sets of strings.
package invariants

import (
	"context"
	"time"
)

// Account is one row of the ledger's accounts, as the export format's
// accounts.jsonl holds it. Kind is "user" or "external"; the external
// account (the world outside the ledger) has no stored balance worth
// checking, only postings.
type Account struct {
	ID      int64  `json:"id"`
	UserID  int64  `json:"user_id"`
	Kind    string `json:"kind"`
	Balance int64  `json:"balance"`
}

// Transaction is one row of the ledger's transactions (transactions.jsonl):
// one logical request, settled or rejected. (UserID, IdempotencyKey) is how
// the auditor maps it to the journal.
type Transaction struct {
	ID                   string `json:"id"`
	UserID               int64  `json:"user_id"`
	IdempotencyKey       string `json:"idempotency_key"`
	Kind                 string `json:"kind"`
	SourceAccountID      int64  `json:"source_account_id"`
	DestinationAccountID int64  `json:"destination_account_id"`
	Amount               int64  `json:"amount"`
	Status               string `json:"status"`
	Reason               string `json:"reason"`
	// Partition names the ordered stream the transaction was applied from
	// (the reference system's Kafka partition). Optional: absent means 0.
	Partition *int32 `json:"partition,omitempty"`
	// AppliedOrder is the transaction's position in its stream (the Kafka
	// offset, or a sequence); it must increase in the order the system
	// applied the transactions debiting one account. Optional: without it,
	// per-account order falls back to the order of the debit postings.
	AppliedOrder *int64 `json:"applied_order,omitempty"`
	// AcceptedAt is when the system accepted the request; its UTC day is
	// the day the debit counts against for the daily debit limit
	// (limits-respected). Optional: without it the days are not checked.
	AcceptedAt *time.Time `json:"accepted_at,omitempty"`
}

// Posting is one row of the ledger's postings (postings.jsonl): one leg of a
// settled transaction. IDs must increase in the order postings were applied
// to each account, and a Source delivers postings in ascending ID order.
type Posting struct {
	ID            int64  `json:"id"`
	TransactionID string `json:"transaction_id"`
	AccountID     int64  `json:"account_id"`
	Amount        int64  `json:"amount"`
	// BalanceAfter is the account's balance right after this posting, when
	// the system records it (the reference system does for user accounts).
	BalanceAfter *int64 `json:"balance_after,omitempty"`
}

// DeadLetter is one record the system set aside because it could not apply
// it (the reference system's dead_letters table, migration 002; the export
// format's optional dead_letters.jsonl): undecodable bytes, a command that
// names no valid transaction, a transaction id colliding with another
// request's, a command that fails to apply for a reason retrying cannot fix.
type DeadLetter struct {
	ID        int64  `json:"id"`
	Topic     string `json:"topic,omitempty"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	// Raw is the record's value, or only its first bytes: sources bound
	// what they read (the reference ledger's first MaxDeadLetterRawBytes).
	Raw []byte `json:"raw"`
	// RawBytes is the length of the whole record; 0 means len(Raw).
	RawBytes int64 `json:"raw_bytes,omitempty"`
	// Reason is free text saying why the record could not be applied.
	Reason string `json:"reason"`
	// TransactionID is the transaction the record named, when it decoded
	// far enough to name one: the auditor matches it with the journal's tx.
	TransactionID string     `json:"transaction_id,omitempty"`
	DeadAt        *time.Time `json:"dead_at,omitempty"`
}

// MaxDeadLetterRawBytes bounds the bytes of a dead letter's record the
// sources read and the exporter writes: enough for an excerpt that shows
// what the record was, and a poison record of megabytes costs nothing.
const MaxDeadLetterRawBytes = 256

// Visitor receives a ledger, table by table. DeadLetters and DeadLetter are
// optional: a visitor without them is not told about dead letters.
type Visitor struct {
	Account     func(*Account) error
	Transaction func(*Transaction) error
	Posting     func(*Posting) error
	// DeadLetters is called once, after the postings: available says
	// whether the source knows which records the system set aside (an
	// export of another system usually does not), note says why not or
	// anything else worth reporting (a reference ledger whose schema
	// predates the dead_letters table has none, and says so).
	DeadLetters func(available bool, note string) error
	// DeadLetter is then called for every dead letter, in the order the
	// system set them aside, when available.
	DeadLetter func(*DeadLetter) error
	// Settlements is called once, after the dead letters: available says
	// whether the source knows the settlement events (the outbox) and
	// their effects downstream, note why not. Optional, like
	// DeadLetters.
	Settlements func(available bool, note string) error
	// Settlement is then called, when available, for every transaction id
	// that has a settlement event or effect.
	Settlement func(*Settlement) error
}

// Source is a ledger the auditor can read. Scan calls visitor.Account for
// every account, then visitor.Transaction for every transaction, then
// visitor.Posting for every posting in ascending ID order, then (when the
// visitor has them) visitor.DeadLetters once and visitor.DeadLetter for
// every dead letter, from one consistent snapshot. The values passed may be
// reused after the call returns. An error from a visitor function stops the
// scan and is returned.
type Source interface {
	Scan(ctx context.Context, visitor Visitor) error
	// Describe names the source for the report ("postgres …", "export DIR").
	Describe() string
}

// Transaction kinds and statuses, as the ledger stores them.
const (
	KindDeposit    = "deposit"
	KindWithdrawal = "withdrawal"
	KindTransfer   = "transfer"
	StatusSettled  = "settled"
	StatusRejected = "rejected"
	StatusAccepted = "accepted"
)
