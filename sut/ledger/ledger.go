// Package ledger holds the reference system's domain: amounts, accounts,
// commands, outcomes and error codes. It has no dependencies beyond the
// standard library; the postgres, redis, kafka and gateway adapters depend on
// it and never on each other.
package ledger

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// MaxAmountMinor is the largest amount one operation may move, in minor units
// (1,000,000,000.00 in a two-decimal currency). It keeps every sum of a batch
// far from int64 overflow: a batch of 100,000 maximal transfers still fits.
const MaxAmountMinor int64 = 100_000_000_000

// MaxBalanceMinor is the largest balance a user account may hold, in minor
// units (10,000,000,000.00 in a two-decimal currency, ten maximal
// operations). A deposit or a transfer that would credit an account beyond it
// is rejected with CodeBalanceLimit, so a balance never overflows int64.
const MaxBalanceMinor int64 = 1_000_000_000_000

// MaxUserAccounts is the most user accounts the ledger holds (account ids
// above it are refused at signup). With every balance at most
// MaxBalanceMinor, the sum of all user balances, which is the external
// account's balance (the negated sum of its postings), stays below
// math.MaxInt64: no sum of balances can overflow either. The bound is checked
// by the compiler below.
const MaxUserAccounts int64 = 9_000_000

// The product of two typed int64 constants must itself be an int64
// constant: this line does not compile if the maximal balances of the
// maximal number of accounts could overflow.
const _ = MaxBalanceMinor * MaxUserAccounts

// Credit returns balance+amountMinor when the result is at most
// MaxBalanceMinor; ok is false otherwise (and for a negative amount), so the
// caller rejects the command with CodeBalanceLimit instead of overflowing.
func Credit(balance, amountMinor int64) (after int64, ok bool) {
	if amountMinor < 0 || amountMinor > MaxBalanceMinor || balance > MaxBalanceMinor-amountMinor {
		return balance, false
	}
	return balance + amountMinor, true
}

// Debit returns balance-amountMinor; ok is false when the result would
// overflow int64 (only a balance already driven far below zero, which the
// overdraft check prevents, comes near) or the amount is negative. Whether
// the balance covers the amount is the overdraft check's business, not
// Debit's.
func Debit(balance, amountMinor int64) (after int64, ok bool) {
	if amountMinor < 0 || balance < math.MinInt64+amountMinor {
		return balance, false
	}
	return balance - amountMinor, true
}

// ExternalAccountID is the account that stands for the world outside the
// ledger. Deposits debit it and withdrawals credit it, so every transaction's
// postings sum to zero. Its balance is never stored (it would be a hot row
// locked by every deposit); it is the negated sum of its postings.
const ExternalAccountID int64 = 0

// Kind is the kind of a money-moving command.
type Kind string

// The kinds of command the ledger applies.
const (
	KindDeposit    Kind = "deposit"
	KindWithdrawal Kind = "withdrawal"
	KindTransfer   Kind = "transfer"
)

// Valid reports whether k is one of the known kinds.
func (k Kind) Valid() bool {
	return k == KindDeposit || k == KindWithdrawal || k == KindTransfer
}

// Status is the state of a transaction as the ledger knows it. "accepted"
// means the command is durably queued but not yet applied; "settled" and
// "rejected" are final and never change.
type Status string

// The statuses of a transaction.
const (
	StatusAccepted Status = "accepted"
	StatusSettled  Status = "settled"
	StatusRejected Status = "rejected"
)

// Final reports whether s can no longer change.
func (s Status) Final() bool { return s == StatusSettled || s == StatusRejected }

// ParseAmount validates a JSON number literal as an amount in minor units.
// It rejects zero, negatives, fractions, exponents, and anything above
// MaxAmountMinor, each with an error that says which rule was broken.
func ParseAmount(literal string) (int64, error) {
	if literal == "" {
		return 0, Errorf(CodeInvalidAmount, "amount is required")
	}
	if strings.ContainsAny(literal, ".eE") {
		return 0, Errorf(CodeInvalidAmount, "amount %s is not an integer number of minor units", literal)
	}
	if strings.HasPrefix(literal, "-") {
		return 0, Errorf(CodeInvalidAmount, "amount %s is negative", literal)
	}
	value, err := strconv.ParseInt(literal, 10, 64)
	if err != nil {
		return 0, Errorf(CodeInvalidAmount, "amount %s is not a valid integer below %d", literal, MaxAmountMinor)
	}
	if err := ValidateAmount(value); err != nil {
		return 0, err
	}
	return value, nil
}

// ValidateAmount checks an amount already held as an int64.
func ValidateAmount(amountMinor int64) error {
	switch {
	case amountMinor == 0:
		return Errorf(CodeInvalidAmount, "amount must be greater than zero")
	case amountMinor < 0:
		return Errorf(CodeInvalidAmount, "amount %d is negative", amountMinor)
	case amountMinor > MaxAmountMinor:
		return Errorf(CodeInvalidAmount, "amount %d is above the maximum of %d minor units", amountMinor, MaxAmountMinor)
	}
	return nil
}

// Command is one money-moving request, as the gateway queues it and a worker
// applies it. It is the value of a record on the commands topic.
type Command struct {
	// TransactionID is derived from (UserID, IdempotencyKey), so every retry
	// of one logical request carries the same id; see TransactionIDFor.
	TransactionID string `json:"transaction_id"`
	Kind          Kind   `json:"kind"`
	UserID        int64  `json:"user_id"`
	// IdempotencyKey is the client's key, unique per user.
	IdempotencyKey string `json:"idempotency_key"`
	// SourceAccountID is the debited user account (withdrawal, transfer),
	// or ExternalAccountID for a deposit.
	SourceAccountID int64 `json:"source_account_id"`
	// DestinationAccountID is the credited user account (deposit,
	// transfer), or ExternalAccountID for a withdrawal.
	DestinationAccountID int64 `json:"destination_account_id"`
	AmountMinor          int64 `json:"amount"`
	// Fingerprint is a hash of the request body; a key reused with another
	// fingerprint must never be applied.
	Fingerprint string `json:"fingerprint"`
	// AcceptedAt is when the gateway accepted the request.
	AcceptedAt time.Time `json:"accepted_at"`
}

// PartitionKey is the account whose commands must be applied in order: the
// debited account, or for a deposit the credited one.
func (c Command) PartitionKey() int64 {
	if c.Kind == KindDeposit {
		return c.DestinationAccountID
	}
	return c.SourceAccountID
}

// Validate checks a command's internal consistency. The gateway builds
// commands that pass; a worker re-checks because the topic is an input.
func (c Command) Validate() error {
	if !c.Kind.Valid() {
		return Errorf(CodeInvalidRequest, "unknown command kind %q", c.Kind)
	}
	if c.TransactionID == "" || c.IdempotencyKey == "" || c.UserID <= 0 {
		return Errorf(CodeInvalidRequest, "command lacks transaction id, idempotency key or user")
	}
	if err := ValidateAmount(c.AmountMinor); err != nil {
		return err
	}
	switch c.Kind {
	case KindDeposit:
		if c.SourceAccountID != ExternalAccountID || c.DestinationAccountID <= 0 {
			return Errorf(CodeInvalidRequest, "a deposit moves money from the external account to a user account")
		}
	case KindWithdrawal:
		if c.DestinationAccountID != ExternalAccountID || c.SourceAccountID <= 0 {
			return Errorf(CodeInvalidRequest, "a withdrawal moves money from a user account to the external account")
		}
	case KindTransfer:
		if c.SourceAccountID <= 0 || c.DestinationAccountID <= 0 {
			return Errorf(CodeInvalidRequest, "a transfer moves money between two user accounts")
		}
		if c.SourceAccountID == c.DestinationAccountID {
			return Errorf(CodeSameAccount, "a transfer needs two different accounts")
		}
	}
	return nil
}

// TransactionIDFor derives the transaction id of a request from its user and
// idempotency key. Deriving rather than drawing it makes a retry, a replay
// through another gateway, or a re-send after a crash all name the same
// transaction, so duplicates collapse onto one row in the ledger.
func TransactionIDFor(userID int64, idempotencyKey string) string {
	sum := sha256.Sum256([]byte("ledgerproof/transaction\x00" + strconv.FormatInt(userID, 10) + "\x00" + idempotencyKey))
	b := sum[:16]
	b[6] = (b[6] & 0x0f) | 0x80 // UUID version 8: custom, name-based.
	b[8] = (b[8] & 0x3f) | 0x80 // RFC 4122 variant.
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// Fingerprint hashes the canonical form of a request so a reused key can be
// compared with its first use.
func Fingerprint(kind Kind, canonicalBody []byte) string {
	h := sha256.New()
	h.Write([]byte(kind))
	h.Write([]byte{0})
	h.Write(canonicalBody)
	return hex.EncodeToString(h.Sum(nil))
}

// Outcome is the final result of applying one command.
type Outcome struct {
	TransactionID string `json:"transaction_id"`
	Status        Status `json:"status"`
	// Reason is the error code of a rejection, empty when settled.
	Reason Code `json:"reason,omitempty"`
}

// OutcomeNotice is an outcome plus the fingerprint of the request that made
// it, so a gateway can tell its own request from a key reused with another
// body. Workers publish them after commit.
type OutcomeNotice struct {
	Outcome
	Fingerprint string `json:"fingerprint"`
}

// Transaction is a transaction as stored in the ledger.
type Transaction struct {
	ID                   string
	UserID               int64
	IdempotencyKey       string
	Kind                 Kind
	SourceAccountID      int64
	DestinationAccountID int64
	AmountMinor          int64
	Status               Status
	Reason               Code
	Fingerprint          string
	Partition            int32
	Offset               int64
	AcceptedAt           time.Time
	AppliedAt            time.Time
}

// Account is a user's account.
type Account struct {
	ID           int64
	UserID       int64
	BalanceMinor int64
}

// User is a signed-up user.
type User struct {
	ID           int64
	Email        string
	PasswordHash string
	AccountID    int64
}

// Session is what a bearer token stands for: a signed-in user and its
// account, from IssuedAt to ExpiresAt. IssuedAt is the ledger database's
// clock, the clock a user's SessionsValidAfter is set by.
type Session struct {
	UserID    int64
	AccountID int64
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// SessionsValidAfter is a user's revocation time: every session of the user
// issued at or before ValidAfter is ended (sign-out, or an operator's
// decision). ChangedAt is when it was set, by the database's clock.
type SessionsValidAfter struct {
	UserID     int64
	ValidAfter time.Time
	ChangedAt  time.Time
}

// Ended reports whether a session issued at issuedAt is ended by this
// revocation time: issued at or before it.
func (v SessionsValidAfter) Ended(issuedAt time.Time) bool { return !issuedAt.After(v.ValidAfter) }

// String renders a command for logs.
func (c Command) String() string {
	return fmt.Sprintf("%s %s %d→%d amount=%d key=%q user=%d", c.TransactionID, c.Kind, c.SourceAccountID, c.DestinationAccountID, c.AmountMinor, c.IdempotencyKey, c.UserID)
}
