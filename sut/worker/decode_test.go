package worker

import (
	stdjson "encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-json-experiment/json"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

// validRecord is the value the gateway queues for a deposit.
func validRecord() string {
	id := ledger.TransactionIDFor(7, "key-1")
	return `{"transaction_id":"` + id + `","kind":"deposit","user_id":7,"idempotency_key":"key-1","source_account_id":0,` +
		`"destination_account_id":12,"amount":500,"fingerprint":"abc","accepted_at":"2025-01-02T03:04:05.123456789Z"}`
}

func TestDecodeCommand(t *testing.T) {
	id := ledger.TransactionIDFor(7, "key-1")
	valid := validRecord()
	cases := []struct {
		name   string
		raw    string
		reason ledger.DeadLetterReason
		// named is the transaction id the result must hold.
		named string
	}{
		{"valid", valid, "", id},
		{"valid with spaces around", " \n" + valid + "\n ", "", id},
		{"storable but invalid: rejected, not set aside", strings.Replace(valid, `"amount":500`, `"amount":100000000001`, 1), "", id},
		{"not JSON", "this is not json", ledger.DeadLetterUndecodable, ""},
		{"empty", "", ledger.DeadLetterUndecodable, ""},
		{"null", "null", ledger.DeadLetterUndecodable, ""},
		{"an array", "[" + valid + "]", ledger.DeadLetterUndecodable, ""},
		{"truncated", valid[:len(valid)-1], ledger.DeadLetterUndecodable, id},
		{"two values", valid + valid, ledger.DeadLetterUndecodable, id},
		{"invalid UTF-8", strings.Replace(valid, `"abc"`, "\"a\xffc\"", 1), ledger.DeadLetterUndecodable, id},
		{"amount as a string", strings.Replace(valid, `"amount":500`, `"amount":"500"`, 1), ledger.DeadLetterUndecodable, id},
		{"fractional amount", strings.Replace(valid, `"amount":500`, `"amount":1.5`, 1), ledger.DeadLetterUndecodable, id},
		{"exponent amount", strings.Replace(valid, `"amount":500`, `"amount":5e2`, 1), ledger.DeadLetterUndecodable, id},
		{"amount beyond int64", strings.Replace(valid, `"amount":500`, `"amount":99999999999999999999`, 1), ledger.DeadLetterUndecodable, id},
		{"unknown field", strings.Replace(valid, `"amount":500`, `"amount":500,"currency":"EUR"`, 1), ledger.DeadLetterUnknownField, id},
		{"name in another case", strings.Replace(valid, `"amount":500`, `"Amount":500`, 1), ledger.DeadLetterUnknownField, id},
		{"duplicate field", strings.Replace(valid, `"amount":500`, `"amount":500,"amount":5000000`, 1), ledger.DeadLetterDuplicateField, id},
		{"duplicate transaction id names none", strings.Replace(valid, `"amount":500`, `"amount":500,"transaction_id":"`+ledger.TransactionIDFor(7, "x")+`"`, 1), ledger.DeadLetterDuplicateField, ""},
		{"missing transaction id", strings.Replace(valid, `"transaction_id":"`+id+`",`, "", 1), ledger.DeadLetterInvalidTransactionID, ""},
		{"uppercase transaction id", strings.Replace(valid, id, strings.ToUpper(id), 1), ledger.DeadLetterInvalidTransactionID, ""},
		{"no user", strings.Replace(valid, `"user_id":7`, `"user_id":0`, 1), ledger.DeadLetterInvalidUser, id},
		{"empty key", strings.Replace(valid, `"idempotency_key":"key-1"`, `"idempotency_key":""`, 1), ledger.DeadLetterInvalidIdempotencyKey, id},
		{"unknown kind", strings.Replace(valid, `"kind":"deposit"`, `"kind":"refund"`, 1), ledger.DeadLetterUnknownKind, id},
		{"zero amount", strings.Replace(valid, `"amount":500`, `"amount":0`, 1), ledger.DeadLetterNonPositiveAmount, id},
		{"negative amount", strings.Replace(valid, `"amount":500`, `"amount":-500`, 1), ledger.DeadLetterNonPositiveAmount, id},
		{"NUL in the fingerprint", strings.Replace(valid, `"abc"`, `"a\u0000c"`, 1), ledger.DeadLetterInvalidFingerprint, id},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			command, reason, err := DecodeCommand([]byte(c.raw))
			if reason != c.reason {
				t.Fatalf("reason %q (%v), want %q", reason, err, c.reason)
			}
			if (err != nil) != (reason != "") {
				t.Fatalf("error %v with reason %q", err, reason)
			}
			if command.TransactionID != c.named {
				t.Fatalf("transaction id %q, want %q", command.TransactionID, c.named)
			}
		})
	}
	command, _, _ := DecodeCommand([]byte(valid))
	want := ledger.Command{TransactionID: id, Kind: ledger.KindDeposit, UserID: 7, IdempotencyKey: "key-1", SourceAccountID: 0,
		DestinationAccountID: 12, AmountMinor: 500, Fingerprint: "abc", AcceptedAt: time.Date(2025, 1, 2, 3, 4, 5, 123456789, time.UTC)}
	if !sameCommand(command, want) {
		t.Fatalf("decoded %+v, want %+v", command, want)
	}
}

func TestDecodeRecordKeepsTheRawValue(t *testing.T) {
	record := decodeRecord(3, 42, nil)
	if record.Raw == nil || len(record.Raw) != 0 || record.DeadLetter != ledger.DeadLetterUndecodable || record.DeadLetterDetail == "" {
		t.Fatalf("a record without a value: %+v", record)
	}
	record = decodeRecord(3, 43, []byte(validRecord()))
	if record.DeadLetter != "" || string(record.Raw) != validRecord() || record.Partition != 3 || record.Offset != 43 {
		t.Fatalf("a valid record: %+v", record)
	}
}

func sameCommand(a, b ledger.Command) bool {
	if !a.AcceptedAt.Equal(b.AcceptedAt) {
		return false
	}
	a.AcceptedAt, b.AcceptedAt = time.Time{}, time.Time{}
	return a == b
}

// FuzzDecodeCommand checks the decoder's contract on any bytes: it never
// panics; a record is either applicable (a command the ledger can store,
// which then validates or is rejected with a documented reason) or set aside
// with a known reason, naming only a valid transaction id; an applicable
// command comes back unchanged through the encoders of the producers.
func FuzzDecodeCommand(f *testing.F) {
	valid := validRecord()
	seeds := []string{
		valid,
		strings.Replace(valid, `"kind":"deposit"`, `"kind":"withdrawal"`, 1),
		`{"transaction_id":"` + ledger.TransactionIDFor(3, "t") + `","kind":"transfer","user_id":3,"idempotency_key":"t",` +
			`"source_account_id":4,"destination_account_id":5,"amount":100000000000,"fingerprint":"","accepted_at":"2025-06-01T12:00:00+02:00"}`,
		strings.Replace(valid, `"amount":500`, `"amount":100000000001`, 1),
		"this is not json",
		"",
		"null",
		"{}",
		"[]",
		`{"amount":1,"amount":2}`,
		strings.Replace(valid, `"amount":500`, `"amount":500,"amount":500`, 1),
		strings.Replace(valid, `"amount":500`, `"amount":500,"extra":{"nested":[1,2,3]}`, 1),
		strings.Replace(valid, `"amount":500`, `"amount":9223372036854775807`, 1),
		strings.Replace(valid, `"amount":500`, `"amount":-9223372036854775808`, 1),
		strings.Replace(valid, `"amount":500`, `"amount":99999999999999999999999`, 1),
		strings.Replace(valid, `"user_id":7`, `"user_id":1e2`, 1),
		strings.Replace(valid, `"abc"`, `"\u0000"`, 1),
		strings.Replace(valid, `"key-1"`, `"\ud800"`, 1),
		strings.Replace(valid, `"accepted_at":"2025-01-02T03:04:05.123456789Z"`, `"accepted_at":null`, 1),
		valid + "garbage",
	}
	for _, seed := range seeds {
		f.Add([]byte(seed))
	}
	rejectionCodes := []ledger.Code{ledger.CodeInvalidRequest, ledger.CodeInvalidAmount, ledger.CodeSameAccount}
	f.Fuzz(func(t *testing.T, raw []byte) {
		command, reason, err := DecodeCommand(raw)
		if reason != "" {
			if !reason.Known() || err == nil {
				t.Fatalf("set aside with reason %q (known %v) and error %v", reason, reason.Known(), err)
			}
			if command.TransactionID != "" && !ledger.ValidTransactionID(command.TransactionID) {
				t.Fatalf("a dead letter names the invalid transaction id %q", command.TransactionID)
			}
			return
		}
		if err != nil {
			t.Fatalf("applicable with error %v", err)
		}
		if storable, problem := command.CheckStorable(); storable != "" {
			t.Fatalf("applicable but not storable: %v", problem)
		}
		if err := command.Validate(); err != nil && !slices.Contains(rejectionCodes, ledger.ErrorCode(err)) {
			t.Fatalf("applicable command fails Validate with the undocumented code %s: %v", ledger.ErrorCode(err), err)
		}
		encoders := map[string]func(any) ([]byte, error){
			"go-json-experiment": func(value any) ([]byte, error) { return json.Marshal(value) },
			"encoding/json":      stdjson.Marshal,
		}
		for name, encode := range encoders {
			encoded, err := encode(command)
			if err != nil {
				t.Fatalf("%s cannot encode %+v: %v", name, command, err)
			}
			again, reason, err := DecodeCommand(encoded)
			if reason != "" || err != nil || !sameCommand(again, command) {
				t.Fatalf("%s round trip: %s decodes to %+v (%q, %v), want %+v", name, encoded, again, reason, err, command)
			}
		}
	})
}
