package ledger

import (
	"errors"
	"fmt"
)

// Code is a stable, machine-readable error code. Clients branch on codes,
// never on messages. The gateway maps each code to an HTTP status in one
// table (gateway/errors.go).
type Code string

// The error codes of the reference system.
const (
	CodeInvalidRequest         Code = "invalid_request"
	CodeInvalidAmount          Code = "invalid_amount"
	CodeInvalidEmail           Code = "invalid_email"
	CodeWeakPassword           Code = "weak_password"
	CodeEmailTaken             Code = "email_taken"
	CodeInvalidCredentials     Code = "invalid_credentials"
	CodeUnauthenticated        Code = "unauthenticated"
	CodeForbidden              Code = "forbidden"
	CodeNotFound               Code = "not_found"
	CodeAccountNotFound        Code = "account_not_found"
	CodeSameAccount            Code = "same_account"
	CodeInsufficientFunds      Code = "insufficient_funds"
	CodeBalanceLimit           Code = "balance_limit"
	CodeIdempotencyKeyMissing  Code = "idempotency_key_missing"
	CodeIdempotencyKeyReused   Code = "idempotency_key_reused"
	CodeIdempotencyKeyInFlight Code = "idempotency_key_in_flight"
	CodeRateLimited            Code = "rate_limited"
	CodeBodyTooLarge           Code = "body_too_large"
	CodeUnsupportedMediaType   Code = "unsupported_media_type"
	CodeUnavailable            Code = "unavailable"
	CodeInternal               Code = "internal"
	// CodeDailyLimitExceeded: the debit would take the user's settled
	// debits of its UTC day (the day of the command's AcceptedAt) above the
	// daily debit limit (docs/limits.md).
	CodeDailyLimitExceeded Code = "daily_limit_exceeded"
)

// Error is a domain error: a code for machines and a message for people.
type Error struct {
	Code    Code
	Message string
}

// Error implements error.
func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Errorf builds a domain error with a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode extracts the domain code of err, or CodeInternal when err is not
// a domain error (an unexpected failure the client cannot act on).
func ErrorCode(err error) Code {
	var domainError *Error
	if errors.As(err, &domainError) {
		return domainError.Code
	}
	return CodeInternal
}

// ErrorMessage extracts the human message of err. Internal errors are not
// described to clients; the gateway logs them instead.
func ErrorMessage(err error) string {
	var domainError *Error
	if errors.As(err, &domainError) {
		return domainError.Message
	}
	return "internal error"
}
