package ledger

import (
	"errors"
	"fmt"
	"strings"
)

// DeadLetterReason says why a record of the commands topic was set aside in
// the dead_letters table instead of being applied. A dead letter is written
// in the same Postgres transaction that moves its partition's offset past
// it, so a record that can never be applied neither blocks its partition nor
// vanishes. Reasons are short and stable: operators and the audit count and
// match them. Only ApplyErrorReason adds a detail (a SQLSTATE).
//
// A record that decodes and names a valid transaction whose body breaks a
// rule the ledger can still store (an amount above MaxAmountMinor, a deposit
// from a user account, a transfer to the same account, an unknown account...)
// is not a dead letter: it is stored as a rejected transaction with its
// Code, so its client sees the outcome.
type DeadLetterReason string

// The dead-letter reasons. docs/dead-letters.md lists them with examples.
const (
	// DeadLetterUndecodable: the record is not one JSON object of a
	// command's shape (malformed JSON, invalid UTF-8, trailing data, a member
	// of the wrong type, a number out of range).
	DeadLetterUndecodable DeadLetterReason = "undecodable"
	// DeadLetterUnknownField: the object has a member a command does not.
	DeadLetterUnknownField DeadLetterReason = "unknown_field"
	// DeadLetterDuplicateField: the object names a member twice; readers
	// that keep the first and the last copy would apply different commands.
	DeadLetterDuplicateField DeadLetterReason = "duplicate_field"
	// DeadLetterInvalidTransactionID: transaction_id is missing or not a
	// canonical UUID (lowercase hexadecimal, hyphenated).
	DeadLetterInvalidTransactionID DeadLetterReason = "invalid_transaction_id"
	// DeadLetterInvalidUser: user_id is missing or not positive.
	DeadLetterInvalidUser DeadLetterReason = "invalid_user"
	// DeadLetterInvalidIdempotencyKey: idempotency_key is not 1 to
	// MaxIdempotencyKeyBytes printable ASCII characters (the gateway's rule).
	DeadLetterInvalidIdempotencyKey DeadLetterReason = "invalid_idempotency_key"
	// DeadLetterUnknownKind: kind is not deposit, withdrawal or transfer;
	// the ledger has no way to store such a transaction.
	DeadLetterUnknownKind DeadLetterReason = "unknown_kind"
	// DeadLetterNonPositiveAmount: amount is zero or negative; the ledger
	// stores no transaction of such an amount, not even a rejected one.
	DeadLetterNonPositiveAmount DeadLetterReason = "nonpositive_amount"
	// DeadLetterInvalidFingerprint: the fingerprint holds a NUL character,
	// which a Postgres text column cannot store.
	DeadLetterInvalidFingerprint DeadLetterReason = "invalid_fingerprint"
	// DeadLetterTransactionIDMismatch: transaction_id is not
	// TransactionIDFor(user_id, idempotency_key). Stored, it would take the
	// key from the request the client will send under its derived id.
	DeadLetterTransactionIDMismatch DeadLetterReason = "transaction_id_mismatch"
	// DeadLetterKeyCollision: the (user_id, idempotency_key) already names
	// another transaction (stored, or earlier in the same batch). The record
	// is a duplicate of that transaction and has no effect; it is set aside
	// with its own transaction id so operators and the audit see it.
	DeadLetterKeyCollision DeadLetterReason = "key_collision"
	// DeadLetterApplyError: Postgres refused the record with a data or
	// constraint error (SQLSTATE classes 22 and 23) that the checks above did
	// not foresee; the stored reason is "apply_error: <SQLSTATE>"
	// (ApplyErrorReason).
	DeadLetterApplyError DeadLetterReason = "apply_error"
)

// deadLetterReasons are the reasons, in the order documentation lists them.
var deadLetterReasons = []DeadLetterReason{
	DeadLetterUndecodable, DeadLetterUnknownField, DeadLetterDuplicateField, DeadLetterInvalidTransactionID,
	DeadLetterInvalidUser, DeadLetterInvalidIdempotencyKey, DeadLetterUnknownKind, DeadLetterNonPositiveAmount,
	DeadLetterInvalidFingerprint, DeadLetterTransactionIDMismatch, DeadLetterKeyCollision, DeadLetterApplyError,
}

// DeadLetterReasons returns every reason (ApplyErrorReason's detail aside).
func DeadLetterReasons() []DeadLetterReason {
	return append([]DeadLetterReason(nil), deadLetterReasons...)
}

// Known reports whether r is one of the reasons, or an apply error with its
// SQLSTATE.
func (r DeadLetterReason) Known() bool {
	if state, ok := strings.CutPrefix(string(r), string(DeadLetterApplyError)+": "); ok {
		return validSQLState(state)
	}
	for _, reason := range deadLetterReasons {
		if r == reason && r != DeadLetterApplyError {
			return true
		}
	}
	return false
}

// ApplyErrorReason is the reason of a record Postgres refused with sqlState.
func ApplyErrorReason(sqlState string) DeadLetterReason {
	return DeadLetterApplyError + DeadLetterReason(": "+sqlState)
}

// validSQLState reports whether state is five digits or uppercase letters.
func validSQLState(state string) bool {
	if len(state) != 5 {
		return false
	}
	for i := 0; i < len(state); i++ {
		if c := state[i]; (c < '0' || c > '9') && (c < 'A' || c > 'Z') {
			return false
		}
	}
	return true
}

// MaxIdempotencyKeyBytes is the longest idempotency key, in bytes; the
// gateway refuses longer ones (gateway.IdempotencyKeyMaximum) and a worker
// sets aside a command that carries one.
const MaxIdempotencyKeyBytes = 255

// ValidIdempotencyKey reports whether key is 1 to MaxIdempotencyKeyBytes
// printable ASCII characters without spaces (bytes 0x21 to 0x7E).
func ValidIdempotencyKey(key string) bool {
	if key == "" || len(key) > MaxIdempotencyKeyBytes {
		return false
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x21 || key[i] > 0x7e {
			return false
		}
	}
	return true
}

// ValidTransactionID reports whether id is a UUID in canonical form
// (lowercase hexadecimal, hyphenated, as TransactionIDFor and Postgres write
// it), so that the id a stored row comes back with is the id the command
// carried.
func ValidTransactionID(id string) bool {
	if len(id) != 36 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return false
			}
		}
	}
	return true
}

// ErrNotStorable wraps the error CheckStorable returns.
var ErrNotStorable = errors.New("the command cannot be stored as a transaction")

// CheckStorable says whether the ledger can store c as a transaction, settled
// or rejected: it names a valid transaction (a canonical id, a user, a key)
// and every field fits the transactions table. When it cannot, it returns the
// dead-letter reason and an error saying more (for logs; it wraps
// ErrNotStorable). It does not check that the id is derived from the user and
// key (DerivedTransactionID) nor anything Validate checks that a rejected
// transaction can record.
func (c Command) CheckStorable() (DeadLetterReason, error) {
	problem := func(reason DeadLetterReason, format string, args ...any) (DeadLetterReason, error) {
		return reason, fmt.Errorf("%w: %s", ErrNotStorable, fmt.Sprintf(format, args...))
	}
	switch {
	case !ValidTransactionID(c.TransactionID):
		return problem(DeadLetterInvalidTransactionID, "transaction id %q is not a canonical UUID", c.TransactionID)
	case c.UserID <= 0:
		return problem(DeadLetterInvalidUser, "user %d is not positive", c.UserID)
	case !ValidIdempotencyKey(c.IdempotencyKey):
		return problem(DeadLetterInvalidIdempotencyKey, "idempotency key %q is not 1 to %d printable ASCII characters", c.IdempotencyKey, MaxIdempotencyKeyBytes)
	case !c.Kind.Valid():
		return problem(DeadLetterUnknownKind, "kind %q is none of deposit, withdrawal, transfer", c.Kind)
	case c.AmountMinor <= 0:
		return problem(DeadLetterNonPositiveAmount, "amount %d is not positive", c.AmountMinor)
	case strings.IndexByte(c.Fingerprint, 0) >= 0:
		return problem(DeadLetterInvalidFingerprint, "the fingerprint holds a NUL character")
	}
	return "", nil
}

// DerivedTransactionID reports whether c's transaction id is the one
// TransactionIDFor derives from its user and idempotency key.
func (c Command) DerivedTransactionID() bool {
	return c.TransactionID == TransactionIDFor(c.UserID, c.IdempotencyKey)
}
