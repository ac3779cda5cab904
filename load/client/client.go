// Package client is Jepsen's client role for a ledger: it turns the generator's operations into HTTP requests to
// the reference API (sut/openapi.yaml), with client-generated idempotency keys, retries that reuse the key,
// bounded waits and polling for the outcome, duplicate and key-misuse injection, and it journals every logical
// operation (load/JOURNAL.md) so that the auditor can check it against the ledger.
//
// Ledger is the interface the generator uses, so another client (another API shape) can be plugged in; HTTP is
// the reference API's implementation.
package client

import (
	"context"
	"time"

	"github.com/ledgerproof/ledgerproof/load/history"
)

// Operation kinds, as in the journal.
const (
	KindSignup     = "signup"
	KindDeposit    = "deposit"
	KindWithdrawal = "withdrawal"
	KindTransfer   = "transfer"
	KindMisuse     = "misuse"
)

// Outcomes, as in Jepsen: ok settled, fail definitively rejected (never applied), info unknown.
const (
	OutcomeOK   = "ok"
	OutcomeFail = "fail"
	OutcomeInfo = "info"
)

// Ledger statuses the reference API reports.
const (
	StatusSettled  = "settled"
	StatusRejected = "rejected"
	StatusAccepted = "accepted"
)

// Duplicate modes of a money operation.
const (
	// DuplicateConcurrent sends the same request (key and body) at the same time as the original.
	DuplicateConcurrent = "concurrent"
	// DuplicateDelayed sends it again a delay after the original's answer (a replay).
	DuplicateDelayed = "delayed"
)

// Session is a signed-in user.
type Session struct {
	Token     string
	UserID    int64
	AccountID int64
	Email     string
}

// Caller says who issues an operation, for the journal: the generator's slot (1-based, 0 in setup) and
// iteration (-1 in setup).
type Caller struct {
	Slot      uint64
	Iteration int64
}

// SetupCaller is the caller of setup's operations (the journal's vu 0, iter -1).
var SetupCaller = Caller{Slot: 0, Iteration: -1}

// MoneyRequest is one money operation the generator decided on, with the harness's fault choices already drawn
// (so a seed replays them).
type MoneyRequest struct {
	Kind    string
	Session Session
	// From is the debited account (0 for a deposit); To the credited one (0 for a withdrawal).
	From, To int64
	Amount   int64
	// Key is the idempotency key; empty: a random one.
	Key string
	// Duplicate is DuplicateConcurrent, DuplicateDelayed or "".
	Duplicate string
	// Misuse sends, after the operation, the same key with another amount.
	Misuse bool
	// FirstAttemptTimeout, when positive, bounds the first HTTP attempt instead of the client's timeout: the
	// client gives up on it (an early timeout), then retries with the same key as after any timeout. The
	// system may have received the first copy, be working on it, or have answered it.
	FirstAttemptTimeout time.Duration
	// ReplayOf, with Key, makes this a replay: the op of an earlier operation that is sent again, same kind,
	// key and body, as an operation of its own (journaled with replay_of).
	ReplayOf string
	// Intent is journaled as the operation's intent (what the generator aimed the amount at); "" for none.
	Intent string
	// PollFor overrides the client's polling bound when positive (setup waits longer for its funding).
	PollFor time.Duration
	Caller  Caller
	// Intended is when the schedule meant the operation to start; latency (and the journal's invoke) count
	// from it, so a generator that fell behind cannot hide the wait (coordinated omission). Zero: now.
	Intended time.Time
}

// Result is what became of a money operation.
type Result struct {
	Op, Key, Kind string
	Outcome       string
	Status        string
	Reason        string
	TransactionID string
	Invoke        time.Time
	Complete      time.Time
	// AcceptedAt is when the system first accepted the command (200 or 202); zero if it never did. FinalAt is
	// when the outcome became final (ok or fail); zero for info.
	AcceptedAt, FinalAt time.Time
	// Statuses are the HTTP statuses of the attempts (0: no answer); DuplicateStatuses the duplicate's.
	Statuses, DuplicateStatuses []int
	// Polls counts the status requests after an accepted answer.
	Polls int
	// Misuse is the key-misuse request's result, when one was sent.
	Misuse *Result
}

// Retries counts the HTTP attempts beyond the first, the duplicate's included.
func (r Result) Retries() int {
	retries := len(r.Statuses) - 1
	if len(r.DuplicateStatuses) > 0 {
		retries += len(r.DuplicateStatuses) - 1
	}
	return max(retries, 0)
}

// Transaction is the status of a transaction as the system reports it.
type Transaction struct {
	ID                   string `json:"transaction_id"`
	Kind                 string `json:"kind"`
	Status               string `json:"status"`
	Amount               int64  `json:"amount"`
	SourceAccountID      int64  `json:"source_account_id"`
	DestinationAccountID int64  `json:"destination_account_id"`
	Reason               string `json:"reason"`
}

// User is a signed-up user.
type User struct {
	UserID    int64 `json:"user_id"`
	AccountID int64 `json:"account_id"`
}

// Ledger is the client role: every operation the generator issues against a system. Implementations journal
// the logical operations (signups and money) and are safe for concurrent use.
type Ledger interface {
	// Signup creates a user with an account. It is retried only on answers that prove nothing was created;
	// after an unanswered attempt an email_taken means the first attempt created the user, which is returned
	// with zero ids (sign in to learn them).
	Signup(ctx context.Context, caller Caller, email, password string, attempts int) (User, error)
	// Signin opens a session.
	Signin(ctx context.Context, email, password string) (Session, error)
	// Money sends a deposit, withdrawal or transfer (and its duplicate and misuse) and returns its fate.
	Money(ctx context.Context, request MoneyRequest) Result
	// Transaction reads a transaction's status; found is false when the system does not know it.
	Transaction(ctx context.Context, session Session, id string) (transaction Transaction, found bool, err error)
	// Balance reads an account's balance.
	Balance(ctx context.Context, session Session, accountID int64) (int64, error)
}

// Observer receives every HTTP exchange, for the metrics. Nil methods are not allowed: use NoObserver.
type Observer interface {
	// HTTP is one request: route template (e.g. "POST /v1/transfers"), status (0: no answer), its duration,
	// and whether it failed (no answer, or a status the client did not expect).
	HTTP(route string, status int, duration time.Duration, failed bool, at time.Time)
}

// NoObserver discards exchanges.
type NoObserver struct{}

// HTTP does nothing.
func (NoObserver) HTTP(string, int, time.Duration, bool, time.Time) {}

// Error is an answer that was not the one an operation wanted.
type Error struct {
	// Operation names what was tried ("signup a@example.com").
	Operation string
	// Status is the HTTP status (0: no answer); Code the API's error code, if any.
	Status int
	Code   string
	Detail string
}

func (e *Error) Error() string { return e.Operation + ": " + e.Detail }

// Definitive reports whether the answer proves the request was refused and a retry cannot change that: a 4xx
// other than 429 and 409 in flight.
func (e *Error) Definitive() bool {
	return e.Status >= 400 && e.Status < 500 && e.Status != 429 && e.Code != codeIdempotencyKeyInFlight
}

// journalEntry turns a result into its journal line.
func journalEntry(r Result, request MoneyRequest, userID int64, sequence int64, misuseOf string) history.Entry {
	kind := r.Kind
	if misuseOf != "" {
		kind = KindMisuse
	}
	statuses := r.Statuses
	if statuses == nil {
		statuses = []int{}
	}
	return history.Entry{
		Version: history.JournalVersion, Op: r.Op, Kind: kind, Key: r.Key, User: userID,
		From: request.From, To: request.To, Amount: request.Amount, VU: request.Caller.Slot, Iter: request.Caller.Iteration,
		Seq: sequence, Invoke: r.Invoke.UnixMicro(), Complete: r.Complete.UnixMicro(), Attempts: len(r.Statuses),
		Statuses: statuses, Outcome: r.Outcome, Status: r.Status, Reason: r.Reason, Tx: r.TransactionID,
		Dup: request.Duplicate, DupStatuses: r.DuplicateStatuses, MisuseOf: misuseOf, ReplayOf: request.ReplayOf,
		Intent: request.Intent,
	}
}
