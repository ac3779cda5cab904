package ledger

import (
	"regexp"
	"testing"
)

func TestParseAmount(t *testing.T) {
	cases := []struct {
		literal string
		want    int64
		ok      bool
	}{
		{"1", 1, true},
		{"100000000000", MaxAmountMinor, true},
		{"100000000001", 0, false},
		{"0", 0, false},
		{"-1", 0, false},
		{"-0", 0, false},
		{"1.5", 0, false},
		{"1.0", 0, false},
		{"1e3", 0, false},
		{"", 0, false},
		{"9223372036854775808", 0, false},
		{"12abc", 0, false},
	}
	for _, c := range cases {
		t.Run(c.literal, func(t *testing.T) {
			got, err := ParseAmount(c.literal)
			if (err == nil) != c.ok || got != c.want {
				t.Fatalf("ParseAmount(%q) = %d, %v; want %d, ok=%v", c.literal, got, err, c.want, c.ok)
			}
			if err != nil && ErrorCode(err) != CodeInvalidAmount {
				t.Fatalf("code %s, want invalid_amount", ErrorCode(err))
			}
		})
	}
}

func TestTransactionIDFor(t *testing.T) {
	a := TransactionIDFor(1, "key")
	if a != TransactionIDFor(1, "key") {
		t.Fatal("not deterministic")
	}
	if a == TransactionIDFor(2, "key") || a == TransactionIDFor(1, "key2") {
		t.Fatal("keys are not scoped per user")
	}
	// The separator keeps (1, "2x") and (12, "x") apart.
	if TransactionIDFor(1, "2x") == TransactionIDFor(12, "x") {
		t.Fatal("ambiguous encoding")
	}
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(a) {
		t.Fatalf("%s is not a version 8 UUID", a)
	}
}

func TestCommandValidate(t *testing.T) {
	valid := Command{TransactionID: "t", Kind: KindTransfer, UserID: 1, IdempotencyKey: "k", SourceAccountID: 1, DestinationAccountID: 2, AmountMinor: 5}
	cases := []struct {
		name   string
		change func(*Command)
		code   Code
	}{
		{"valid transfer", func(*Command) {}, ""},
		{"unknown kind", func(c *Command) { c.Kind = "refund" }, CodeInvalidRequest},
		{"no key", func(c *Command) { c.IdempotencyKey = "" }, CodeInvalidRequest},
		{"zero amount", func(c *Command) { c.AmountMinor = 0 }, CodeInvalidAmount},
		{"same account", func(c *Command) { c.DestinationAccountID = 1 }, CodeSameAccount},
		{"transfer to external", func(c *Command) { c.DestinationAccountID = ExternalAccountID }, CodeInvalidRequest},
		{"deposit from a user account", func(c *Command) { c.Kind = KindDeposit }, CodeInvalidRequest},
		{"valid deposit", func(c *Command) { c.Kind, c.SourceAccountID = KindDeposit, ExternalAccountID }, ""},
		{"valid withdrawal", func(c *Command) { c.Kind, c.DestinationAccountID = KindWithdrawal, ExternalAccountID }, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			command := valid
			c.change(&command)
			err := command.Validate()
			if c.code == "" && err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if c.code != "" && ErrorCode(err) != c.code {
				t.Fatalf("error %v, want code %s", err, c.code)
			}
		})
	}
}

func TestPartitionKey(t *testing.T) {
	deposit := Command{Kind: KindDeposit, SourceAccountID: ExternalAccountID, DestinationAccountID: 7}
	withdrawal := Command{Kind: KindWithdrawal, SourceAccountID: 7, DestinationAccountID: ExternalAccountID}
	transfer := Command{Kind: KindTransfer, SourceAccountID: 7, DestinationAccountID: 9}
	for _, c := range []Command{deposit, withdrawal, transfer} {
		if c.PartitionKey() != 7 {
			t.Errorf("%s keyed by %d, want 7 (the user's own account)", c.Kind, c.PartitionKey())
		}
	}
}
