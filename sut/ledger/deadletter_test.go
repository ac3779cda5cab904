package ledger

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestCheckStorable(t *testing.T) {
	valid := Command{TransactionID: TransactionIDFor(7, "key-1"), Kind: KindTransfer, UserID: 7, IdempotencyKey: "key-1",
		SourceAccountID: 1, DestinationAccountID: 2, AmountMinor: 5, Fingerprint: "abc"}
	cases := []struct {
		name   string
		change func(*Command)
		reason DeadLetterReason
	}{
		{"valid", func(*Command) {}, ""},
		// A body the ledger can still store as a rejected transaction is
		// not a dead letter.
		{"amount above the maximum is stored rejected", func(c *Command) { c.AmountMinor = MaxAmountMinor + 1 }, ""},
		{"same account is stored rejected", func(c *Command) { c.DestinationAccountID = 1 }, ""},
		{"missing transaction id", func(c *Command) { c.TransactionID = "" }, DeadLetterInvalidTransactionID},
		{"uppercase transaction id", func(c *Command) { c.TransactionID = strings.ToUpper(c.TransactionID) }, DeadLetterInvalidTransactionID},
		{"transaction id without hyphens", func(c *Command) { c.TransactionID = strings.ReplaceAll(c.TransactionID, "-", "") + "xxxx" }, DeadLetterInvalidTransactionID},
		{"zero user", func(c *Command) { c.UserID = 0 }, DeadLetterInvalidUser},
		{"negative user", func(c *Command) { c.UserID = -3 }, DeadLetterInvalidUser},
		{"empty key", func(c *Command) { c.IdempotencyKey = "" }, DeadLetterInvalidIdempotencyKey},
		{"key with a space", func(c *Command) { c.IdempotencyKey = "a b" }, DeadLetterInvalidIdempotencyKey},
		{"key with a NUL", func(c *Command) { c.IdempotencyKey = "a\x00b" }, DeadLetterInvalidIdempotencyKey},
		{"key too long", func(c *Command) { c.IdempotencyKey = strings.Repeat("k", MaxIdempotencyKeyBytes+1) }, DeadLetterInvalidIdempotencyKey},
		{"longest key", func(c *Command) { c.IdempotencyKey = strings.Repeat("k", MaxIdempotencyKeyBytes) }, ""},
		{"unknown kind", func(c *Command) { c.Kind = "refund" }, DeadLetterUnknownKind},
		{"zero amount", func(c *Command) { c.AmountMinor = 0 }, DeadLetterNonPositiveAmount},
		{"negative amount", func(c *Command) { c.AmountMinor = math.MinInt64 }, DeadLetterNonPositiveAmount},
		{"NUL in the fingerprint", func(c *Command) { c.Fingerprint = "a\x00" }, DeadLetterInvalidFingerprint},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			command := valid
			c.change(&command)
			reason, err := command.CheckStorable()
			if reason != c.reason {
				t.Fatalf("reason %q (%v), want %q", reason, err, c.reason)
			}
			if (err != nil) != (reason != "") || (err != nil && !errors.Is(err, ErrNotStorable)) {
				t.Fatalf("error %v with reason %q", err, reason)
			}
			if reason != "" && !reason.Known() {
				t.Fatalf("reason %q is not a known reason", reason)
			}
		})
	}
}

func TestDeadLetterReasonKnown(t *testing.T) {
	for _, reason := range DeadLetterReasons() {
		if reason == DeadLetterApplyError {
			continue
		}
		if !reason.Known() {
			t.Errorf("%q is listed but not known", reason)
		}
	}
	cases := map[DeadLetterReason]bool{
		ApplyErrorReason("23514"): true,
		ApplyErrorReason("22P05"): true,
		DeadLetterApplyError:      false, // always with a SQLSTATE
		ApplyErrorReason("2351"):  false,
		ApplyErrorReason("23x14"): false,
		"no_such_reason":          false,
		"":                        false,
	}
	for reason, want := range cases {
		if got := reason.Known(); got != want {
			t.Errorf("%q.Known() = %v, want %v", reason, got, want)
		}
	}
}

func TestDerivedTransactionID(t *testing.T) {
	command := Command{UserID: 3, IdempotencyKey: "k", TransactionID: TransactionIDFor(3, "k")}
	if !command.DerivedTransactionID() {
		t.Fatal("a derived id is not recognised")
	}
	for _, other := range []Command{
		{UserID: 4, IdempotencyKey: "k", TransactionID: command.TransactionID},
		{UserID: 3, IdempotencyKey: "k2", TransactionID: command.TransactionID},
	} {
		if other.DerivedTransactionID() {
			t.Fatalf("%+v: an id derived from another (user, key) is taken as derived", other)
		}
	}
}

func TestCreditAndDebit(t *testing.T) {
	credits := []struct {
		name            string
		balance, amount int64
		want            int64
		ok              bool
	}{
		{"plain", 10, 5, 15, true},
		{"up to the maximum", MaxBalanceMinor - 5, 5, MaxBalanceMinor, true},
		{"one above the maximum", MaxBalanceMinor - 4, 5, MaxBalanceMinor - 4, false},
		{"from a balance above the maximum", MaxBalanceMinor + 1, 1, MaxBalanceMinor + 1, false},
		{"near int64 overflow", math.MaxInt64 - 1, MaxAmountMinor, math.MaxInt64 - 1, false},
		{"huge amount", 0, math.MaxInt64, 0, false},
		{"negative amount", 10, -1, 10, false},
	}
	for _, c := range credits {
		t.Run("credit "+c.name, func(t *testing.T) {
			got, ok := Credit(c.balance, c.amount)
			if got != c.want || ok != c.ok {
				t.Fatalf("Credit(%d, %d) = %d, %v; want %d, %v", c.balance, c.amount, got, ok, c.want, c.ok)
			}
		})
	}
	debits := []struct {
		name            string
		balance, amount int64
		want            int64
		ok              bool
	}{
		{"plain", 10, 5, 5, true},
		{"to below zero (the overdraft check's business)", 3, 5, -2, true},
		{"int64 underflow", math.MinInt64 + 4, 5, math.MinInt64 + 4, false},
		{"negative amount", 10, -1, 10, false},
	}
	for _, c := range debits {
		t.Run("debit "+c.name, func(t *testing.T) {
			got, ok := Debit(c.balance, c.amount)
			if got != c.want || ok != c.ok {
				t.Fatalf("Debit(%d, %d) = %d, %v; want %d, %v", c.balance, c.amount, got, ok, c.want, c.ok)
			}
		})
	}
	// The sum of every maximal balance fits int64 (the compiler checks it
	// too, in ledger.go).
	if MaxUserAccounts > math.MaxInt64/MaxBalanceMinor {
		t.Fatalf("%d accounts of %d overflow int64", MaxUserAccounts, MaxBalanceMinor)
	}
}
