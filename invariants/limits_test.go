package invariants

import (
	"context"
	"strings"
	"testing"
	"time"
)

// auditWithLimit audits a fixture with a known daily debit limit (0: none).
func (f *fixture) auditWithLimit(t *testing.T, limit int64) *Result {
	t.Helper()
	runDir, exportDir, err := f.writeIn(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	result, err := Audit(context.Background(), Config{RunDir: runDir, Ledger: ExportSource{Dir: exportDir}, DailyDebitLimitMinor: limit})
	if err != nil {
		t.Fatal(err)
	}
	return result
}

// acceptAllOn gives every transaction an accepted_at on one UTC day.
func (f *fixture) acceptAllOn(day time.Time) {
	for i := range f.transactions {
		at := day.Add(time.Duration(i) * time.Minute)
		f.transactions[i].AcceptedAt = &at
	}
}

// rejectAs turns a rejected row and its journal entry into a rejection for
// reason; gateway removes its stream position (a refusal of the gateway).
func (f *fixture) rejectAs(entry int, reason string, gateway bool) {
	row := f.row(entry)
	if f.transactions[row].Status != StatusRejected {
		panic("rejectAs needs a row the model rejected")
	}
	f.transactions[row].Reason = reason
	if gateway {
		f.transactions[row].Partition, f.transactions[row].AppliedOrder = nil, nil
	}
	f.journal[entry].Reason = reason
}

func limitsStatus(t *testing.T, result *Result) *InvariantResult {
	t.Helper()
	invariant := result.invariant(LimitsRespected)
	for _, other := range result.violated() {
		if other != LimitsRespected {
			t.Fatalf("%s violated too:\n%s", other, result.summary())
		}
	}
	return invariant
}

var limitDay = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

func TestLimitsRespectedDayOverTheLimit(t *testing.T) {
	m := newModel(2)
	m.operate(KindDeposit, 0, 1, 1000, plain)
	m.operate(KindWithdrawal, 1, 0, 300, plain)
	m.operate(KindTransfer, 1, 2, 300, plain)
	m.operate(KindWithdrawal, 1, 0, 300, plain)
	m.operate(KindWithdrawal, 2, 0, 200, plain) // another user's debits
	m.acceptAllOn(limitDay)

	over := m.auditWithLimit(t, 800)
	invariant := limitsStatus(t, over)
	if invariant.Status != StatusViolated || invariant.ViolationCount != 1 {
		t.Fatalf("limit 800: %s with %d violation(s), want one violation\n%s", invariant.Status, invariant.ViolationCount, over.summary())
	}
	summary := invariant.Violations[0].Summary
	for _, want := range []string{"user 101", "2026-03-01", "sum to 900", "limit 800", "3 debit(s)"} {
		if !strings.Contains(summary, want) {
			t.Errorf("explanation %q lacks %q", summary, want)
		}
	}
	if rows := len(invariant.Violations[0].Rows); rows != 3 {
		t.Errorf("the explanation quotes %d rows, want the 3 debits", rows)
	}

	at := m.auditWithLimit(t, 900)
	if invariant := limitsStatus(t, at); invariant.Status != StatusPassed || invariant.Checked[unitUserDaysNearLimit] != 1 {
		t.Fatalf("limit 900: %s, checked %v, want passed with one day near the limit\n%s", invariant.Status, invariant.Checked, at.summary())
	}

	// The same debits spread over two days are within the limit.
	second := limitDay.AddDate(0, 0, 1)
	m.transactions[len(m.transactions)-2].AcceptedAt = &second
	if invariant := limitsStatus(t, m.auditWithLimit(t, 800)); invariant.Status != StatusPassed {
		t.Fatalf("over two days: %s, want passed", invariant.Status)
	}
}

func TestLimitsRespectedNotExercised(t *testing.T) {
	m := newModel(1)
	m.operate(KindDeposit, 0, 1, 1000, plain)
	m.operate(KindWithdrawal, 1, 0, 10, plain)
	m.acceptAllOn(limitDay)
	for _, test := range []struct {
		name  string
		limit int64
		note  string
	}{
		{"no limit known", 0, "not known"},
		{"no debit near the limit", 1_000_000, "half the daily limit"},
	} {
		t.Run(test.name, func(t *testing.T) {
			invariant := limitsStatus(t, m.auditWithLimit(t, test.limit))
			if invariant.Status != StatusNotExercised || !strings.Contains(invariant.Note, test.note) {
				t.Fatalf("%s (%q), want not exercised saying %q", invariant.Status, invariant.Note, test.note)
			}
		})
	}
}

func TestLimitsRespectedDailyRejections(t *testing.T) {
	for _, gateway := range []bool{false, true} {
		name := "worker"
		if gateway {
			name = "gateway"
		}
		t.Run(name, func(t *testing.T) {
			m := newModel(1)
			m.operate(KindDeposit, 0, 1, 1000, plain)
			m.operate(KindWithdrawal, 1, 0, 600, plain)
			refused := m.operate(KindWithdrawal, 1, 0, 500, plain) // the model rejects it: 400 left
			m.rejectAs(refused, ReasonDailyLimitExceeded, gateway)
			m.acceptAllOn(limitDay)

			// 600 settled before it: 600 + 500 passes a limit of 1000.
			if invariant := limitsStatus(t, m.auditWithLimit(t, 1000)); invariant.Status != StatusPassed || invariant.Checked[unitDailyRejections] != 1 {
				t.Fatalf("limit 1000: %s, checked %v, want passed with the rejection judged", invariant.Status, invariant.Checked)
			}
			// Not of 2000.
			result := m.auditWithLimit(t, 2000)
			invariant := limitsStatus(t, result)
			if invariant.Status != StatusViolated || !strings.Contains(invariant.Violations[0].Summary, "sum to 600: 600 + 500 is within the limit 2000") {
				t.Fatalf("limit 2000: %s, want the rejection reported unjustified\n%s", invariant.Status, result.summary())
			}
		})
	}
}

func TestLimitsRespectedSoftRefusals(t *testing.T) {
	build := func(staleCache bool) *model {
		m := newModel(1)
		m.operate(KindDeposit, 0, 1, 100, plain)
		refused := m.operate(KindWithdrawal, 1, 0, 500, plain) // the model rejects it: 100 held
		topUp := m.operate(KindDeposit, 0, 1, 900, plain)
		m.rejectAs(refused, ReasonInsufficientFunds, true)
		if staleCache {
			// The refusal was sent after the client learned the top-up
			// settled: the account held 1000 all along the request, and
			// only a stale cache could say 100.
			m.journal[refused].Invoke = m.journal[topUp].Complete + 10
			m.journal[refused].Complete = m.journal[refused].Invoke + 5
		}
		return m
	}
	justified := build(false).auditWithLimit(t, 0)
	if invariant := limitsStatus(t, justified); invariant.Status != StatusPassed || invariant.Checked[unitSoftRefusals] != 1 {
		t.Fatalf("a refusal while 100 was held: %s, checked %v, want passed\n%s", invariant.Status, invariant.Checked, justified.summary())
	}
	stale := build(true).auditWithLimit(t, 0)
	invariant := limitsStatus(t, stale)
	if invariant.Status != StatusViolated {
		t.Fatalf("a refusal on a stale cache: %s, want violated\n%s", invariant.Status, stale.summary())
	}
	summary := invariant.Violations[0].Summary
	for _, want := range []string{"soft refusal", "lowest balance that could have held during it was 1000", "account 1"} {
		if !strings.Contains(summary, want) {
			t.Errorf("explanation %q lacks %q", summary, want)
		}
	}
}
