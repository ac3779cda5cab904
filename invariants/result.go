package invariants

import (
	"encoding/json"
	"fmt"
	"os"
	"time"
)

// The invariants of the catalogue (../shared/design/ARCHITECTURE.md), in the
// order the report lists them.
const (
	Conservation          = "conservation"
	BalanceEqualsPostings = "balance-equals-postings"
	NoOverdraft           = "no-overdraft"
	JustifiedRejection    = "justified-rejection"
	ExactlyOnce           = "exactly-once"
	NoPhantoms            = "no-phantoms"
	OutcomeAgreement      = "outcome-agreement"
	KeyContract           = "key-contract"
	PerAccountOrder       = "per-account-order"
	Durability            = "durability"
	CacheCoherence        = "cache-coherence"
	LimitsRespected       = "limits-respected"
	SettlementExactlyOnce = "settlement-exactly-once"
	SagaAtomicity         = "saga-atomicity"
)

// Catalogue lists every invariant with what it checks.
var Catalogue = []struct{ Name, Description string }{
	{Conservation, "Σ user balances = Σ settled deposits − Σ settled withdrawals; every transaction's postings sum to zero; settled transactions have exactly two postings, rejected ones none"},
	{BalanceEqualsPostings, "each stored balance = opening (0) + Σ its postings"},
	{NoOverdraft, "replaying each user account's postings in applied order, balance_after chains and never goes below zero"},
	{JustifiedRejection, "every rejection is explained by the ledger at the moment it was decided: insufficient_funds only if the account's balance at that point of its order could not cover the debit, account_not_found only for an account that did not exist, forbidden only for an account that is not the user's, balance_limit, same_account, invalid_amount as far as decidable"},
	{ExactlyOnce, "every key has at most one effect; ok operations exactly one settled row; fail operations none; info operations at most one (resolved and reported)"},
	{NoPhantoms, "every ledger transaction maps to a journaled operation by (user, idempotency key)"},
	{OutcomeAgreement, "what the client was told (outcome, status, reason, transaction id) matches the ledger's row; replays of a key agree"},
	{KeyContract, "a key reused with a different body is never applied; several requests sharing one key map to one row"},
	{PerAccountOrder, "debits of one account that the client issued one after the other were applied in that order"},
	{Durability, "every operation acknowledged to the client (ok, or accepted) is present in the ledger after recovery; a command answered with a transaction id and then set aside as a dead letter is lost"},
	{CacheCoherence, "after drain, every cached balance (Redis balance:<id>) equals the ledger's balance"},
	{Liveness, livenessDescription},
	{LimitsRespected, limitsDescription},
	{SettlementExactlyOnce, "every settled transaction has exactly one settlement event in the outbox and exactly one effect downstream (the settlement consumer's row); a rejected or unknown transaction has neither"},
	{SagaAtomicity, sagaAtomicityDescription},
}

// Invariant statuses. Skipped means the invariant cannot be checked here
// (no cache to read, a ledger that does not say what it needs); not
// exercised means it could have been checked but the run never produced
// what it is about (no key reused with another body, no debit near the
// limit...): it neither passed nor failed. A violation is reported whatever
// else is true.
const (
	StatusPassed       = "passed"
	StatusViolated     = "violated"
	StatusSkipped      = "skipped"
	StatusNotExercised = "not-exercised"
)

// Verdicts of a whole audit. Weak: no violation, but the run did not
// exercise what it was required to (no money operation at all, or a class
// of outcome its scenario promised, such as duplicates, never happened), so
// passing would claim more than was tested.
const (
	VerdictPassed     = "passed"
	VerdictViolated   = "violated"
	VerdictIncomplete = "incomplete"
	VerdictWeak       = "weak"
)

// OperationRef is a journal line quoted in an explanation.
type OperationRef struct {
	// Journal is the journal file's name, Offset the line's byte offset.
	Journal string `json:"journal"`
	Offset  int64  `json:"offset"`
	// Entry is the line, verbatim.
	Entry json.RawMessage `json:"entry"`
}

// RowRef is a ledger row quoted in an explanation; only the fields that
// matter for the table are set.
type RowRef struct {
	Table          string `json:"table"`
	ID             string `json:"id"`
	UserID         *int64 `json:"user_id,omitempty"`
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	Kind           string `json:"kind,omitempty"`
	Source         *int64 `json:"source_account_id,omitempty"`
	Destination    *int64 `json:"destination_account_id,omitempty"`
	Amount         *int64 `json:"amount,omitempty"`
	Status         string `json:"status,omitempty"`
	Reason         string `json:"reason,omitempty"`
	Partition      *int32 `json:"partition,omitempty"`
	AppliedOrder   *int64 `json:"applied_order,omitempty"`
	TransactionID  string `json:"transaction_id,omitempty"`
	AccountID      *int64 `json:"account_id,omitempty"`
	Balance        *int64 `json:"balance,omitempty"`
	BalanceAfter   *int64 `json:"balance_after,omitempty"`
	Cached         *int64 `json:"cached,omitempty"`
	// Offset is a dead letter's position in its partition (table
	// dead_letters); Partition then names the partition.
	Offset *int64 `json:"offset,omitempty"`
	Note   string `json:"note,omitempty"`
}

// Violation is one counterexample: which invariant, what is wrong in one
// sentence, and the operations and rows that show it.
type Violation struct {
	Invariant  string         `json:"invariant"`
	Summary    string         `json:"summary"`
	Keys       []string       `json:"keys,omitempty"`
	Accounts   []int64        `json:"accounts,omitempty"`
	Operations []OperationRef `json:"operations,omitempty"`
	Rows       []RowRef       `json:"rows,omitempty"`
}

// InvariantResult is the verdict on one invariant.
type InvariantResult struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Status      string `json:"status"`
	// Checked counts what was checked, by unit (keys, rows, accounts...).
	Checked map[string]int64 `json:"checked"`
	// ViolationCount counts every violation; Violations lists at most the
	// configured number of them.
	ViolationCount int64       `json:"violation_count"`
	Violations     []Violation `json:"violations"`
	Note           string      `json:"note,omitempty"`
}

// InfoResolution says what became of the operations whose outcome the
// client did not know, resolved by key against the ledger.
type InfoResolution struct {
	Operations int64 `json:"operations"`
	Settled    int64 `json:"settled"`
	Rejected   int64 `json:"rejected"`
	Absent     int64 `json:"absent"`
}

// Staleness summarises cache-staleness.jsonl, when the run recorded it.
type Staleness struct {
	Recorded     bool   `json:"recorded"`
	Samples      int64  `json:"samples"`
	StaleSamples int64  `json:"stale_samples"`
	LagMaxMs     int64  `json:"lag_max_ms"`
	LagP99Ms     int64  `json:"lag_p99_ms"`
	Note         string `json:"note,omitempty"`
}

// Result is the audit's output, written as audit.json.
type Result struct {
	Version   int       `json:"version"`
	RunDir    string    `json:"run_dir"`
	Verdict   string    `json:"verdict"`
	StartedAt time.Time `json:"started_at"`
	Ledger    string    `json:"ledger"`
	Journals  []string  `json:"journals"`
	// Drained is false when the pipeline still had work when the audit
	// read the ledger: the verdict is then incomplete at best.
	Drained             bool   `json:"drained"`
	DrainNote           string `json:"drain_note,omitempty"`
	JournalLines        int64  `json:"journal_lines"`
	InvalidJournalLines int64  `json:"invalid_journal_lines"`
	// Operations counts journal lines by kind, then outcome.
	Operations     map[string]map[string]int64 `json:"operations"`
	InfoResolution InfoResolution              `json:"info_resolution"`
	LedgerCounts   map[string]int64            `json:"ledger_counts"`
	Invariants     []InvariantResult           `json:"invariants"`
	Staleness      Staleness                   `json:"cache_staleness"`
	// DeadLetters reports the records the system set aside; nil in an
	// audit.json written before dead letters were audited.
	DeadLetters *DeadLetters `json:"dead_letters,omitempty"`
	// Coverage says what the run exercised (outcome classes per kind,
	// duplicates) and whether the required classes were met; nil in an
	// audit.json written before coverage was audited.
	Coverage *Coverage `json:"coverage,omitempty"`
	Warnings []string  `json:"warnings"`
	// TimingsMs are the durations of the audit's phases in milliseconds.
	TimingsMs map[string]int64 `json:"timings_ms"`
}

// DeadLetters reports the records the system set aside because it could not
// apply them (its dead-letter table). One whose transaction a client was
// told was accepted, and that the ledger does not hold, is also a
// durability violation; the others (garbage nobody journaled, or a copy of
// a command the ledger did apply) are reported here, not violations.
type DeadLetters struct {
	// Available is false when the ledger does not say which records it set
	// aside (an export without dead_letters.jsonl, as other systems write
	// it): Count is then null, never 0, and Note says so.
	Available bool   `json:"available"`
	Note      string `json:"note,omitempty"`
	Count     *int64 `json:"count"`
	// WithoutTransaction counts the dead letters that named no transaction
	// (undecodable bytes, a command too broken to name one).
	WithoutTransaction int64 `json:"without_transaction,omitempty"`
	// Journaled counts those whose transaction id the gateway answered to a
	// journaled operation: a client was told about them.
	Journaled int64 `json:"journaled,omitempty"`
	// Lost counts the journaled ones whose operation's key has no ledger
	// transaction: each is a durability violation.
	Lost int64 `json:"lost,omitempty"`
	// ByReason counts them by reason (made printable and cut to
	// maxDeadLetterReasonBytes; beyond maxDeadLetterReasons distinct
	// reasons, the others count under "(other reasons)").
	ByReason map[string]int64 `json:"by_reason,omitempty"`
	// First lists the first ones (Config.MaxViolations) in the order the
	// system set them aside.
	First []DeadLetterRef `json:"first,omitempty"`
}

// DeadLetterRef is one dead letter as the audit quotes it.
type DeadLetterRef struct {
	ID            int64      `json:"id"`
	Topic         string     `json:"topic,omitempty"`
	Partition     int32      `json:"partition"`
	Offset        int64      `json:"offset"`
	Reason        string     `json:"reason"`
	TransactionID string     `json:"transaction_id,omitempty"`
	DeadAt        *time.Time `json:"dead_at,omitempty"`
	// RawBytes is the record's length. RawExcerpt shows its first bytes as
	// text that is safe to print: valid UTF-8 without control characters,
	// every other byte escaped (\x00, \n, \u202e), a backslash doubled, cut
	// after deadLetterExcerptBytes bytes of the record with "…".
	RawBytes   int64  `json:"raw_bytes"`
	RawExcerpt string `json:"raw_excerpt"`
	// Journaled and Lost are DeadLetters' counts, for this record.
	Journaled bool `json:"journaled,omitempty"`
	Lost      bool `json:"lost,omitempty"`
}

// ReadResult reads an audit result written by WriteFiles (audit.json).
func ReadResult(path string) (*Result, error) {
	content, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var result Result
	if err := json.Unmarshal(content, &result); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &result, nil
}
