package invariants

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestEmptyJournalIsWeak: an audit of a journal without a money operation
// (only the signups) proves nothing: its verdict is weak, never passed, and
// every invariant that had nothing to check says not exercised.
func TestEmptyJournalIsWeak(t *testing.T) {
	result := newModel(3).audit(t, nil)
	if result.Verdict != VerdictWeak {
		t.Fatalf("verdict %s, want %s\n%s", result.Verdict, VerdictWeak, result.summary())
	}
	for _, invariant := range result.Invariants {
		if invariant.Status == StatusPassed {
			t.Errorf("%s passed on an empty journal (checked %v)", invariant.Name, invariant.Checked)
		}
	}
	required := result.Coverage.Required
	if len(required) != 1 || required[0].Class != ClassMoneyOperations || required[0].Met {
		t.Fatalf("required %+v, want money-operations not met", required)
	}
	summary := result.summary()
	for _, want := range []string{"AUDIT WEAK", "weak:    money-operations required", "NOT EXERCISED conservation"} {
		if !strings.Contains(summary, want) {
			t.Errorf("summary lacks %q:\n%s", want, summary)
		}
	}
}

// TestSetupOnlyIsWeak: the setup's funding deposits are not the load's
// money operations.
func TestSetupOnlyIsWeak(t *testing.T) {
	m := newModel(2)
	index := m.operate(KindDeposit, 0, 1, 100, plain)
	m.journal[index].VU, m.journal[index].Iter = 0, -1
	result := m.audit(t, nil)
	if result.Verdict != VerdictWeak {
		t.Fatalf("verdict %s, want weak\n%s", result.Verdict, result.summary())
	}
	if kind := result.Coverage.Kinds[KindDeposit]; kind == nil || kind.Setup != 1 || kind.Operations != 1 {
		t.Fatalf("deposit coverage %+v, want 1 operation of setup", kind)
	}
}

// TestNoKeyReuseLeavesKeyContractNotExercised: a run without a key reused
// with another body says key-contract was not exercised (never passed); the
// verdict stays passed unless key reuse was required.
func TestNoKeyReuseLeavesKeyContractNotExercised(t *testing.T) {
	build := func() *model {
		m := newModel(2)
		m.operate(KindDeposit, 0, 1, 100, plain)
		m.operate(KindWithdrawal, 1, 0, 30, duplicated)
		return m
	}
	result := build().audit(t, nil)
	keyContract := result.invariant(KeyContract)
	if keyContract.Status != StatusNotExercised || !strings.Contains(keyContract.Note, "no key was reused with another body") {
		t.Fatalf("key-contract %s (%s), want not-exercised", keyContract.Status, keyContract.Note)
	}
	if result.Verdict != VerdictPassed {
		t.Fatalf("verdict %s, want passed: key reuse was not required\n%s", result.Verdict, result.summary())
	}
	if exactlyOnce := result.invariant(ExactlyOnce); exactlyOnce.Status != StatusPassed {
		t.Fatalf("exactly-once %s (%s): the duplicated key exercised it", exactlyOnce.Status, exactlyOnce.Note)
	}

	required, err := build().auditRequiring(t, Requirement{Class: ClassKeyReuse, Why: "scenario: client.misuse.rate 0.01"})
	if err != nil {
		t.Fatal(err)
	}
	if required.Verdict != VerdictWeak {
		t.Fatalf("verdict %s, want weak: key reuse was required and never happened\n%s", required.Verdict, required.summary())
	}
	if missing := required.Coverage.Missing(); len(missing) != 1 || !strings.Contains(missing[0], "key-reuse required (scenario: client.misuse.rate 0.01)") ||
		!strings.Contains(missing[0], KeyContract) {
		t.Fatalf("missing %v", missing)
	}
}

func (m *model) auditRequiring(t *testing.T, requirements ...Requirement) (*Result, error) {
	t.Helper()
	runDir, exportDir := m.write(t)
	return Audit(context.Background(), Config{RunDir: runDir, Ledger: ExportSource{Dir: exportDir}, Require: requirements})
}

// TestRequiredClasses: each class required and present passes, required and
// absent is weak; a violation wins over weak; an unknown class cannot be
// audited.
func TestRequiredClasses(t *testing.T) {
	full := func() *model {
		m := newModel(3)
		m.operate(KindDeposit, 0, 1, 100, plain)
		m.operate(KindDeposit, 0, 2, 50, replayed)
		m.operate(KindWithdrawal, 1, 0, 20, duplicated)
		m.operate(KindWithdrawal, 2, 0, 1000, plain)
		m.operate(KindTransfer, 2, 3, 10, misused)
		retried := m.operate(KindTransfer, 1, 3, 5, plain)
		m.journal[retried].Attempts, m.journal[retried].Statuses = 2, []int{0, 200}
		// A gateway's soft refusal: rejected for insufficient funds, stored
		// without a stream position.
		m.operate(KindWithdrawal, 3, 0, 100_000, plain)
		soft := &m.transactions[len(m.transactions)-1]
		soft.Partition, soft.AppliedOrder = nil, nil
		// A daily-limit rejection by the apply.
		limited := m.operate(KindWithdrawal, 3, 0, 200_000, plain)
		m.transactions[len(m.transactions)-1].Reason, m.journal[limited].Reason = ReasonDailyLimitExceeded, ReasonDailyLimitExceeded
		return m
	}
	bare := func() *model {
		m := newModel(3)
		m.operate(KindDeposit, 0, 1, 100, plain)
		m.operate(KindWithdrawal, 1, 0, 20, plain)
		return m
	}
	for _, class := range ClassNames() {
		t.Run(class, func(t *testing.T) {
			requirement := Requirement{Class: class, Why: "test"}
			met, err := full().auditRequiring(t, requirement)
			if err != nil {
				t.Fatal(err)
			}
			if met.Verdict != VerdictPassed {
				t.Fatalf("with %s: verdict %s, want passed\n%s", class, met.Verdict, met.summary())
			}
			if class == ClassMoneyOperations {
				return
			}
			missing, err := bare().auditRequiring(t, requirement)
			if err != nil {
				t.Fatal(err)
			}
			if missing.Verdict != VerdictWeak {
				t.Fatalf("without %s: verdict %s, want weak\n%s", class, missing.Verdict, missing.summary())
			}
		})
	}
	t.Run("a violation wins over weak", func(t *testing.T) {
		m := bare()
		m.account(1).Balance++
		result, err := m.auditRequiring(t, Requirement{Class: ClassDuplicates, Why: "test"})
		if err != nil {
			t.Fatal(err)
		}
		if result.Verdict != VerdictViolated {
			t.Fatalf("verdict %s, want violated", result.Verdict)
		}
	})
	t.Run("unknown class", func(t *testing.T) {
		if _, err := bare().auditRequiring(t, Requirement{Class: "nonsense"}); !errors.Is(err, ErrCannotAudit) {
			t.Fatalf("error %v, want ErrCannotAudit", err)
		}
	})
}

// TestCoverageCounts: the scenario's operations by kind and outcome class,
// its duplicates and its rejections.
func TestCoverageCounts(t *testing.T) {
	s := newScenario()
	s.journal[s.duplicatedWithdrawal].DupStatuses = []int{200}
	result := s.audit(t, nil)
	coverage := result.Coverage
	withdrawal := coverage.Kinds[KindWithdrawal]
	if withdrawal.Operations != 4 || withdrawal.Settled != 2 || withdrawal.Rejected[ReasonInsufficientFunds] != 1 ||
		withdrawal.Unknown != 1 || withdrawal.DuplicatesSent != 1 || withdrawal.Replayed != 1 {
		t.Errorf("withdrawal %+v", withdrawal)
	}
	if deposit := coverage.Kinds[KindDeposit]; deposit.Operations != 4 || deposit.Settled != 3 || deposit.Unknown != 1 || deposit.Replayed != 1 {
		t.Errorf("deposit %+v", deposit)
	}
	if misuse := coverage.Kinds[KindMisuse]; misuse.Operations != 1 || misuse.Conflict != 1 {
		t.Errorf("misuse %+v", misuse)
	}
	if transfer := coverage.Kinds[KindTransfer]; transfer.Rejected["rate_limited"] != 1 {
		t.Errorf("transfer %+v", transfer)
	}
	duplicates := coverage.Duplicates
	if duplicates.Sent["concurrent"] != 1 || duplicates.Answers["replayed"] != 1 || duplicates.Keys != 1 || duplicates.AppliedOnce != 1 ||
		duplicates.KeysSentMoreThanOnce != 2 || duplicates.ReplayedKeys != 1 {
		t.Errorf("duplicates %+v", duplicates)
	}
	rejections := coverage.Rejections
	if rejections.Ledger[ReasonInsufficientFunds] != 1 || rejections.BeforeLedger["rate_limited"] != 1 || rejections.Judged != 1 ||
		rejections.NotJudged["rate_limited"] != 1 {
		t.Errorf("rejections %+v", rejections)
	}
	summary := result.summary()
	for _, want := range []string{"coverage (kind:", "rejected by reason: insufficient_funds 1", "duplicates: concurrent 1 sent; answered replayed 1",
		"money-operations", "met"} {
		if !strings.Contains(summary, want) {
			t.Errorf("summary lacks %q:\n%s", want, summary)
		}
	}
}

// TestPromisedRateNeedsEnoughExpected: a class promised as a rate is
// required only when the run's operations make at least
// MinExpectedToRequire of it expected, so a short run is not weak by chance.
func TestPromisedRateNeedsEnoughExpected(t *testing.T) {
	build := func(operations int) *model {
		m := newModel(2)
		for i := 0; i < operations; i++ {
			m.operate(KindDeposit, 0, 1, 10, plain)
		}
		return m
	}
	promise := Requirement{Class: ClassKeyReuse, Why: "scenario: client.misuse.rate 0.05", Rate: 0.05}
	few, err := build(40).auditRequiring(t, promise)
	if err != nil {
		t.Fatal(err)
	}
	class := few.Coverage.Required[1]
	if few.Verdict != VerdictPassed || !class.Met || class.Expected == nil || *class.Expected != 2 || !strings.Contains(class.Waived, "fewer than 10") {
		t.Fatalf("40 operations at 0.05: verdict %s, class %+v; want passed, waived with 2 expected\n%s", few.Verdict, class, few.summary())
	}
	many, err := build(200).auditRequiring(t, promise)
	if err != nil {
		t.Fatal(err)
	}
	if many.Verdict != VerdictWeak || many.Coverage.Required[1].Waived != "" {
		t.Fatalf("200 operations at 0.05: verdict %s, class %+v; want weak\n%s", many.Verdict, many.Coverage.Required[1], many.summary())
	}
	// The same class also required outright by --require: no rate waives it.
	outright, err := build(40).auditRequiring(t, promise, Requirement{Class: ClassKeyReuse, Why: "--require"})
	if err != nil {
		t.Fatal(err)
	}
	if outright.Verdict != VerdictWeak || len(outright.Coverage.Required) != 2 {
		t.Fatalf("required outright: verdict %s, required %+v", outright.Verdict, outright.Coverage.Required)
	}
}
