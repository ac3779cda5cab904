package client

import (
	"reflect"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/load/history"
)

func TestErrorDefinitive(t *testing.T) {
	tests := []struct {
		name   string
		status int
		code   string
		want   bool
	}{
		{name: "400 invalid amount", status: 400, code: "invalid_amount", want: true},
		{name: "401 without a code", status: 401, want: true},
		{name: "403 forbidden", status: 403, code: "forbidden", want: true},
		{name: "404 not found", status: 404, code: "not_found", want: true},
		{name: "409 email taken", status: 409, code: codeEmailTaken, want: true},
		{name: "409 key in flight", status: 409, code: codeIdempotencyKeyInFlight, want: false},
		{name: "422 key reused", status: 422, code: "idempotency_key_reused", want: true},
		{name: "429 rate limited", status: 429, code: "rate_limited", want: false},
		{name: "499 is still 4xx", status: 499, want: true},
		{name: "500", status: 500, want: false},
		{name: "503 unavailable", status: 503, code: "unavailable", want: false},
		{name: "no answer", status: 0, code: reasonInvalidResponse, want: false},
		{name: "201 with an unreadable body", status: 201, code: reasonInvalidResponse, want: false},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			err := &Error{Operation: "signup a@example.test", Status: test.status, Code: test.code, Detail: "HTTP ..."}
			if got := err.Definitive(); got != test.want {
				t.Errorf("Definitive() of status %d code %q = %v, want %v", test.status, test.code, got, test.want)
			}
			if got, want := err.Error(), "signup a@example.test: HTTP ..."; got != want {
				t.Errorf("Error() = %q, want %q", got, want)
			}
		})
	}
}

func TestResultRetries(t *testing.T) {
	tests := []struct {
		name                string
		statuses, duplicate []int
		want                int
	}{
		{name: "no attempt", want: 0},
		{name: "one attempt", statuses: []int{200}, want: 0},
		{name: "one retry", statuses: []int{503, 200}, want: 1},
		{name: "duplicate without retry", statuses: []int{200}, duplicate: []int{200}, want: 0},
		{name: "duplicate retried", statuses: []int{200}, duplicate: []int{409, 200}, want: 1},
		{name: "both retried", statuses: []int{0, 503, 200}, duplicate: []int{409, 409, 200}, want: 4},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			if got := (Result{Statuses: test.statuses, DuplicateStatuses: test.duplicate}).Retries(); got != test.want {
				t.Errorf("Retries() of %v and %v = %d, want %d", test.statuses, test.duplicate, got, test.want)
			}
		})
	}
}

func TestJournalEntry(t *testing.T) {
	invoke := time.UnixMicro(1_700_000_000_000_000)
	complete := invoke.Add(1500 * time.Microsecond)
	request := MoneyRequest{Kind: KindTransfer, From: 11, To: 12, Amount: 20, Duplicate: DuplicateConcurrent, Caller: Caller{Slot: 3, Iteration: 8}}
	result := Result{Op: "g1-5", Key: "k", Kind: KindTransfer, Outcome: OutcomeFail, Status: StatusRejected, Reason: "insufficient_funds",
		TransactionID: "t1", Invoke: invoke, Complete: complete, Statuses: []int{503, 200}, DuplicateStatuses: []int{409, 200}}
	tests := []struct {
		name     string
		result   Result
		misuseOf string
		want     history.Entry
	}{
		{name: "operation", result: result, want: history.Entry{Version: history.JournalVersion, Op: "g1-5", Kind: KindTransfer, Key: "k", User: 7,
			From: 11, To: 12, Amount: 20, VU: 3, Iter: 8, Seq: 4, Invoke: invoke.UnixMicro(), Complete: complete.UnixMicro(), Attempts: 2,
			Statuses: []int{503, 200}, Outcome: OutcomeFail, Status: StatusRejected, Reason: "insufficient_funds", Tx: "t1",
			Dup: DuplicateConcurrent, DupStatuses: []int{409, 200}}},
		{name: "misuse", result: result, misuseOf: "g1-4", want: history.Entry{Version: history.JournalVersion, Op: "g1-5", Kind: KindMisuse, Key: "k", User: 7,
			From: 11, To: 12, Amount: 20, VU: 3, Iter: 8, Seq: 4, Invoke: invoke.UnixMicro(), Complete: complete.UnixMicro(), Attempts: 2,
			Statuses: []int{503, 200}, Outcome: OutcomeFail, Status: StatusRejected, Reason: "insufficient_funds", Tx: "t1",
			Dup: DuplicateConcurrent, DupStatuses: []int{409, 200}, MisuseOf: "g1-4"}},
		{name: "no attempt: statuses are an empty array", result: Result{Op: "g1-6", Kind: KindDeposit, Outcome: OutcomeInfo, Invoke: invoke, Complete: complete},
			want: history.Entry{Version: history.JournalVersion, Op: "g1-6", Kind: KindDeposit, User: 7, From: 11, To: 12, Amount: 20, VU: 3, Iter: 8,
				Seq: 4, Invoke: invoke.UnixMicro(), Complete: complete.UnixMicro(), Statuses: []int{}, Outcome: OutcomeInfo, Dup: DuplicateConcurrent}},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			got := journalEntry(test.result, request, 7, 4, test.misuseOf)
			if !equalEntries(got, test.want) {
				t.Errorf("journalEntry\n= %+v\nwant %+v", got, test.want)
			}
			if got.Statuses == nil {
				t.Errorf("statuses nil: the journal format says it is an array")
			}
		})
	}
}

func equalEntries(a, b history.Entry) bool {
	return reflect.DeepEqual(a, b)
}
