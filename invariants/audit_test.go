package invariants

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// scenario is a small history that uses every feature of the journal:
// replays, duplicates, a misuse, unknown outcomes, a gateway rejection, an
// insufficient-funds rejection, and several debits of one account.
type scenario struct {
	*model
	deposit, replayedDeposit, transfer, duplicatedWithdrawal, rejected, misusedTransfer, infoApplied, infoLost,
	gatewayRejected, lastWithdrawal int
}

func newScenario() *scenario {
	s := &scenario{model: newModel(3)}
	s.deposit = s.operate(KindDeposit, 0, 1, 100, plain)
	s.replayedDeposit = s.operate(KindDeposit, 0, 2, 50, replayed)
	s.transfer = s.operate(KindTransfer, 1, 2, 30, plain)
	s.duplicatedWithdrawal = s.operate(KindWithdrawal, 1, 0, 20, duplicated)
	s.rejected = s.operate(KindWithdrawal, 2, 0, 1000, plain)
	s.misusedTransfer = s.operate(KindTransfer, 2, 3, 10, misused)
	s.infoApplied = s.operate(KindDeposit, 0, 3, 5, infoApplied)
	s.infoLost = s.operate(KindWithdrawal, 3, 0, 1, infoLost)
	s.gatewayRejected = s.operate(KindTransfer, 1, 3, 5, gatewayRejects)
	s.lastWithdrawal = s.operate(KindWithdrawal, 1, 0, 10, plain)
	return s
}

// row returns the index of the transaction of a journal entry.
func (f *fixture) row(entry int) int {
	key, user := f.journal[entry].Key, f.journal[entry].User
	for i, transaction := range f.transactions {
		if transaction.IdempotencyKey == key && transaction.UserID == user {
			return i
		}
	}
	panic(fmt.Sprintf("entry %d has no row", entry))
}

// dropRow removes a transaction and its postings (a lost write).
func (f *fixture) dropRow(index int) {
	id := f.transactions[index].ID
	f.transactions = slices.Delete(f.transactions, index, index+1)
	f.postings = slices.DeleteFunc(f.postings, func(p Posting) bool { return p.TransactionID == id })
}

// duplicateRow stores a second transaction for the key of a row, with
// copies of its postings at the end (a second effect).
func (f *fixture) duplicateRow(index int) {
	copied := f.transactions[index]
	copied.ID += "-again"
	f.transactions = append(f.transactions, copied)
	last := f.postings[len(f.postings)-1].ID
	for _, posting := range f.postings {
		if posting.TransactionID == f.transactions[index].ID {
			last++
			posting.ID, posting.TransactionID, posting.BalanceAfter = last, copied.ID, nil
			f.postings = append(f.postings, posting)
		}
	}
}

func (f *fixture) account(id int64) *Account {
	for i := range f.accounts {
		if f.accounts[i].ID == id {
			return &f.accounts[i]
		}
	}
	panic(fmt.Sprintf("no account %d", id))
}

func TestScenarioPasses(t *testing.T) {
	s := newScenario()
	cache := fakeCache{}
	for _, account := range s.accounts[1:] {
		cache[account.ID] = account.Balance
	}
	delete(cache, 3) // an expired cache entry is not a violation
	result := s.audit(t, cache)
	if result.Verdict != VerdictPassed {
		t.Fatalf("verdict %s, violated %v\n%s", result.Verdict, result.violated(), result.summary())
	}
	for _, invariant := range result.Invariants {
		if invariant.Name == Liveness || invariant.Name == SettlementExactlyOnce {
			// An export is no live pipeline: nothing drains; and it
			// says nothing of settlements downstream.
			if invariant.Status != StatusSkipped || invariant.Note == "" {
				t.Errorf("%s of an export: %s (%q), want skipped with a reason", invariant.Name, invariant.Status, invariant.Note)
			}
			continue
		}
		if invariant.Name == SagaAtomicity {
			// One ledger, no shards: no saga.
			if invariant.Status != StatusNotExercised || invariant.Note == "" {
				t.Errorf("saga-atomicity without shards: %s (%q), want not exercised with a reason", invariant.Status, invariant.Note)
			}
			continue
		}
		if invariant.Name == LimitsRespected {
			// No daily limit is known and no soft refusal happened.
			if invariant.Status != StatusNotExercised || invariant.Note == "" {
				t.Errorf("limits-respected without a limit: %s (%q), want not exercised with a reason", invariant.Status, invariant.Note)
			}
			continue
		}
		if invariant.Status != StatusPassed {
			t.Errorf("%s: %s", invariant.Name, invariant.Status)
		}
		if len(invariant.Checked) == 0 {
			t.Errorf("%s checked nothing", invariant.Name)
		}
	}
	if got := result.invariant(CacheCoherence).Checked["accounts not cached"]; got != 1 {
		t.Errorf("accounts not cached: %d, want 1", got)
	}
	if got, want := result.InfoResolution, (InfoResolution{Operations: 2, Settled: 1, Absent: 1}); got != want {
		t.Errorf("info resolution %+v, want %+v", got, want)
	}
	if got := result.Operations[KindWithdrawal]; got[OutcomeOK] != 2 || got[OutcomeFail] != 1 || got[OutcomeInfo] != 1 {
		t.Errorf("withdrawal counts %v", got)
	}
	summary := result.summary()
	for _, want := range []string{"AUDIT PASSED", "operations seen", "withdrawal", "resolved by key: 2 operation(s): 1 settled, 0 rejected, 1 absent",
		"PASSED        per-account-order", "cache staleness during the run: not recorded"} {
		if !strings.Contains(summary, want) {
			t.Errorf("summary lacks %q:\n%s", want, summary)
		}
	}
}

func TestCacheCoherenceSkippedWithoutCache(t *testing.T) {
	result := newScenario().audit(t, nil)
	if result.Verdict != VerdictPassed || result.invariant(CacheCoherence).Status != StatusSkipped {
		t.Fatalf("verdict %s, cache-coherence %s", result.Verdict, result.invariant(CacheCoherence).Status)
	}
}

// TestEachInvariantCanFail breaks the scenario in one way per case and
// checks that the matching invariant fails and its explanation names the
// right key, account or row.
func TestEachInvariantCanFail(t *testing.T) {
	cases := []struct {
		name      string
		mutate    func(s *scenario) (cache CacheReader)
		invariant string
		// only, when set, says no other invariant may fail.
		only    bool
		mention []string
	}{
		{"conservation: a posting that does not balance", func(s *scenario) CacheReader {
			row := s.transactions[s.row(s.transfer)]
			for i := range s.postings {
				if s.postings[i].TransactionID == row.ID && s.postings[i].Amount < 0 {
					s.postings[i].Amount--
				}
			}
			return nil
		}, Conservation, false, []string{"tx-k-7-101", "sum to -1"}},
		{"conservation: a settled transaction with one posting", func(s *scenario) CacheReader {
			row := s.transactions[s.row(s.deposit)]
			index := slices.IndexFunc(s.postings, func(p Posting) bool { return p.TransactionID == row.ID && p.AccountID == 0 })
			s.postings = slices.Delete(s.postings, index, index+1)
			return nil
		}, Conservation, false, []string{"tx-k-4-101", "1 posting(s) sum to 100"}},
		{"conservation: a posting of no transaction (no foreign key refuses it)", func(s *scenario) CacheReader {
			last := s.postings[len(s.postings)-1].ID
			s.postings = append(s.postings, Posting{ID: last + 1, TransactionID: "tx-nowhere", AccountID: 2, Amount: 5})
			return nil
		}, Conservation, false, []string{"belongs to no transaction", "tx-nowhere"}},
		{"balance-equals-postings: a posting on an account the ledger does not list", func(s *scenario) CacheReader {
			row := s.transactions[s.row(s.transfer)]
			last := s.postings[len(s.postings)-1].ID
			s.postings = append(s.postings, Posting{ID: last + 1, TransactionID: row.ID, AccountID: 99, Amount: 5},
				Posting{ID: last + 2, TransactionID: row.ID, AccountID: 99, Amount: -5})
			return nil
		}, BalanceEqualsPostings, false, []string{"account 99", "not in the accounts table"}},
		{"balance-equals-postings: a stored balance off by 7", func(s *scenario) CacheReader {
			s.account(2).Balance += 7
			return nil
		}, BalanceEqualsPostings, false, []string{"account 2", "difference 7"}},
		{"balance-equals-postings: a lost update names the operation it erased", func(s *scenario) CacheReader {
			s.account(1).Balance -= 100 // the deposit's write was overwritten
			return nil
		}, BalanceEqualsPostings, false, []string{"account 1", "difference -100", "lost update", "exactly the amount of posting(s)", "tx-k-4-101"}},
		{"no-overdraft: balance_after does not chain", func(s *scenario) CacheReader {
			row := s.transactions[s.row(s.transfer)]
			for i := range s.postings {
				if s.postings[i].TransactionID == row.ID && s.postings[i].AccountID == 2 {
					*s.postings[i].BalanceAfter += 3
				}
			}
			return nil
		}, NoOverdraft, true, []string{"account 2", "balance_after 83"}},
		{"exactly-once: a second transaction for a key", func(s *scenario) CacheReader {
			s.duplicateRow(s.row(s.deposit))
			return nil
		}, ExactlyOnce, false, []string{`k-4`, "tx-k-4-101-again", "2 ledger transactions"}},
		{"exactly-once: an acknowledged operation lost", func(s *scenario) CacheReader {
			s.dropRow(s.row(s.lastWithdrawal))
			return nil
		}, ExactlyOnce, false, []string{"k-15", "acknowledged but lost"}},
		{"no-phantoms: a transaction nobody issued", func(s *scenario) CacheReader {
			s.transactions = append(s.transactions, Transaction{ID: "tx-ghost", UserID: 102, IdempotencyKey: "ghost",
				Kind: KindWithdrawal, SourceAccountID: 2, Amount: 7, Status: StatusRejected, Reason: "insufficient_funds"})
			return nil
		}, NoPhantoms, true, []string{"ghost", "tx-ghost"}},
		{"outcome-agreement: the client was told failed, the ledger settled", func(s *scenario) CacheReader {
			s.journal[s.transfer].Outcome, s.journal[s.transfer].Status = OutcomeFail, StatusRejected
			return nil
		}, OutcomeAgreement, false, []string{"k-7", "told it failed"}},
		{"outcome-agreement: another rejection reason", func(s *scenario) CacheReader {
			s.journal[s.rejected].Reason = "forbidden"
			return nil
		}, OutcomeAgreement, true, []string{"k-9", `\"forbidden\"`, "insufficient_funds"}},
		{"outcome-agreement: the ledger holds another amount", func(s *scenario) CacheReader {
			s.transactions[s.row(s.lastWithdrawal)].Amount = 11
			return nil
		}, OutcomeAgreement, false, []string{"k-15", "withdrawal 11"}},
		{"key-contract: the misuse was told settled", func(s *scenario) CacheReader {
			misuse := s.misusedTransfer + 1
			s.journal[misuse].Outcome, s.journal[misuse].Reason = OutcomeOK, ""
			return nil
		}, KeyContract, true, []string{"k-10", "told settled"}},
		{"key-contract: a replayed key holds two rows", func(s *scenario) CacheReader {
			s.duplicateRow(s.row(s.replayedDeposit))
			return nil
		}, KeyContract, false, []string{"k-5", "2 requests shared key"}},
		{"per-account-order: two debits of account 1 applied out of order", func(s *scenario) CacheReader {
			first, last := s.row(s.transfer), s.row(s.lastWithdrawal)
			s.transactions[first].AppliedOrder, s.transactions[last].AppliedOrder = s.transactions[last].AppliedOrder, s.transactions[first].AppliedOrder
			return nil
		}, PerAccountOrder, true, []string{"account 1", "k-7", "k-15"}},
		{"durability: an accepted operation is missing", func(s *scenario) CacheReader {
			s.journal[s.infoLost].Status = StatusAccepted
			return nil
		}, Durability, true, []string{"k-13", "status accepted"}},
		{"cache-coherence: a stale cached balance", func(s *scenario) CacheReader {
			return fakeCache{1: s.account(1).Balance, 2: s.account(2).Balance - 5}
		}, CacheCoherence, true, []string{"account 2", "the cache says 65"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newScenario()
			cache := c.mutate(s)
			result := s.audit(t, cache)
			violated := result.violated()
			if result.Verdict != VerdictViolated || !slices.Contains(violated, c.invariant) {
				t.Fatalf("verdict %s, violated %v, want %s\n%s", result.Verdict, violated, c.invariant, result.summary())
			}
			if c.only && len(violated) != 1 {
				t.Errorf("violated %v, want only %s\n%s", violated, c.invariant, result.summary())
			}
			explanation := result.explanation(c.invariant)
			for _, want := range c.mention {
				if !strings.Contains(explanation, want) {
					t.Errorf("the explanation of %s does not mention %q:\n%s", c.invariant, want, result.summary())
				}
			}
		})
	}
}

func TestNoOverdraftInAppliedOrder(t *testing.T) {
	m := newModel(2)
	m.operate(KindDeposit, 0, 1, 10, plain)
	// A system without an overdraft check settles a withdrawal of 50: its
	// balances, postings and totals all agree, only the replay shows it.
	withdrawal := m.operate(KindWithdrawal, 1, 0, 50, plain)
	row := m.row(withdrawal)
	m.transactions[row].Status, m.transactions[row].Reason = StatusSettled, ""
	m.journal[withdrawal].Outcome, m.journal[withdrawal].Status, m.journal[withdrawal].Reason = OutcomeOK, StatusSettled, ""
	m.nextPosting++
	m.postings = append(m.postings, Posting{ID: m.nextPosting, TransactionID: m.transactions[row].ID, AccountID: 1, Amount: -50, BalanceAfter: ptr(int64(-40))})
	m.nextPosting++
	m.postings = append(m.postings, Posting{ID: m.nextPosting, TransactionID: m.transactions[row].ID, AccountID: 0, Amount: 50})
	m.account(1).Balance = -40
	result := m.audit(t, nil)
	if got := result.violated(); !slices.Equal(got, []string{NoOverdraft}) {
		t.Fatalf("violated %v, want only no-overdraft\n%s", got, result.summary())
	}
	if explanation := result.explanation(NoOverdraft); !strings.Contains(explanation, "account 1 goes to -40") {
		t.Errorf("explanation: %s", explanation)
	}
}

// applyMisuseBody makes the ledger hold the body of the misuse made of the
// 40-unit deposit at journal entry deposit (41 to account 2) instead of the
// original's. It returns the deposit's row.
func (m *model) applyMisuseBody(deposit int) int {
	row := m.row(deposit)
	m.transactions[row].Amount = 41
	for i := range m.postings {
		m.postings[i].Amount += map[bool]int64{true: 1, false: -1}[m.postings[i].Amount > 0]
		if m.postings[i].BalanceAfter != nil {
			*m.postings[i].BalanceAfter = 41
		}
	}
	m.account(2).Balance = 41
	return row
}

func TestMisuseAppliedBreaksKeyContract(t *testing.T) {
	m := newModel(2)
	deposit := m.operate(KindDeposit, 0, 2, 40, misused)
	// The system applied the misuse's body (41) instead of the original.
	m.applyMisuseBody(deposit)
	result := m.audit(t, nil)
	violated := result.violated()
	if !slices.Contains(violated, KeyContract) {
		t.Fatalf("violated %v, want key-contract\n%s", violated, result.summary())
	}
	explanation := result.explanation(KeyContract)
	for _, want := range []string{"k-3", "new body (41 from 0 to 2)", "misuse"} {
		if !strings.Contains(explanation, want) {
			t.Errorf("explanation lacks %q: %s", want, explanation)
		}
	}
}

// TestMisuseFirstToArriveKeepsTheContract: when the original request of a
// key got no answer (it may never have reached the system, e.g. gateways
// down), a "misuse" sent after it is the key's first use: the system
// applying its body and telling it settled breaks nothing. Had the original
// been answered, the same ledger breaks the key contract.
func TestMisuseFirstToArriveKeepsTheContract(t *testing.T) {
	build := func(originalAnswered bool) *model {
		m := newModel(2)
		deposit := m.operate(KindDeposit, 0, 2, 40, misused)
		row := m.applyMisuseBody(deposit)
		if !originalAnswered {
			original := &m.journal[deposit]
			original.Outcome, original.Status, original.Reason, original.Tx = OutcomeInfo, "", "", ""
		}
		misuse := &m.journal[deposit+1]
		misuse.Outcome, misuse.Status, misuse.Reason, misuse.Tx = OutcomeOK, StatusSettled, "", m.transactions[row].ID
		return m
	}
	if violated := build(false).audit(t, nil).violated(); slices.Contains(violated, KeyContract) || slices.Contains(violated, OutcomeAgreement) {
		t.Errorf("the misuse arrived first (its original unanswered), yet violated %v\n%s", violated, build(false).audit(t, nil).summary())
	}
	if violated := build(true).audit(t, nil).violated(); !slices.Contains(violated, KeyContract) {
		t.Errorf("the original was answered settled and the misuse's body applied, yet violated %v, want key-contract", violated)
	}
}

// TestMisuseFirstToArriveMayBeRejected: the same first use, decided as any
// first use may be: rejected for insufficient funds, and told so. Found by
// make soak-gate: the original transfer met a killed gateway three times
// (unknown), its misuse reached the other gateway and was rejected. Told
// another reason than the ledger's, or told rejected for a settled row, it
// breaks the contract.
func TestMisuseFirstToArriveMayBeRejected(t *testing.T) {
	build := func(toldReason string, rowStatus, rowReason string) *model {
		m := newModel(2)
		deposit := m.operate(KindDeposit, 0, 2, 40, misused)
		row := m.applyMisuseBody(deposit)
		m.transactions[row].Status, m.transactions[row].Reason = rowStatus, rowReason
		original := &m.journal[deposit]
		original.Outcome, original.Status, original.Reason, original.Tx = OutcomeInfo, "", "", ""
		misuse := &m.journal[deposit+1]
		misuse.Outcome, misuse.Status, misuse.Reason, misuse.Tx = OutcomeFail, StatusRejected, toldReason, m.transactions[row].ID
		return m
	}
	cases := []struct {
		name                  string
		told, status, reason  string
		wantKeyContractBreach bool
	}{
		{"rejected, told so", "insufficient_funds", StatusRejected, "insufficient_funds", false},
		{"rejected, told another reason", "account_not_found", StatusRejected, "insufficient_funds", true},
		{"settled, told rejected", "insufficient_funds", StatusSettled, "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := build(c.told, c.status, c.reason)
			result := m.audit(t, nil)
			if got := slices.Contains(result.violated(), KeyContract); got != c.wantKeyContractBreach {
				t.Errorf("key-contract violated %v, want %v\n%s", got, c.wantKeyContractBreach, result.summary())
			}
		})
	}
}

func TestViolationsAreCappedButCounted(t *testing.T) {
	m := newModel(1)
	for i := 0; i < 30; i++ {
		m.transactions = append(m.transactions, Transaction{ID: fmt.Sprintf("ghost-%d", i), UserID: 101,
			IdempotencyKey: fmt.Sprintf("ghost-%d", i), Kind: KindDeposit, DestinationAccountID: 1, Amount: 1,
			Status: StatusRejected, Reason: "forbidden"})
	}
	result := m.audit(t, nil)
	phantoms := result.invariant(NoPhantoms)
	if phantoms.ViolationCount != 30 || len(phantoms.Violations) != 20 {
		t.Fatalf("count %d, listed %d; want 30 and 20", phantoms.ViolationCount, len(phantoms.Violations))
	}
	if !strings.Contains(result.summary(), "30 violation(s), the first 20") {
		t.Errorf("summary:\n%s", result.summary())
	}
}

func TestCannotAudit(t *testing.T) {
	s := newScenario()
	runDir, exportDir := s.write(t)
	cases := []struct {
		name   string
		config Config
	}{
		{"no journal", Config{RunDir: t.TempDir(), Ledger: ExportSource{Dir: exportDir}}},
		{"no export", Config{RunDir: runDir, Ledger: ExportSource{Dir: t.TempDir()}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := Audit(context.Background(), c.config); !errors.Is(err, ErrCannotAudit) {
				t.Fatalf("error %v, want ErrCannotAudit", err)
			}
		})
	}
	t.Run("postings out of order", func(t *testing.T) {
		s := newScenario()
		s.postings[0], s.postings[1] = s.postings[1], s.postings[0]
		runDir, exportDir := s.write(t)
		_, err := Audit(context.Background(), Config{RunDir: runDir, Ledger: ExportSource{Dir: exportDir}})
		if !errors.Is(err, ErrCannotAudit) || !strings.Contains(err.Error(), "ascending id order") {
			t.Fatalf("error %v", err)
		}
	})
}

// TestNotDrainedIsALivenessViolation: a pipeline that does not drain is a
// liveness violation naming the stalled component, its partitions and its
// last error, and an acknowledged operation missing from its ledger is not
// judged lost by durability (it may be queued behind the stall).
func TestNotDrainedIsALivenessViolation(t *testing.T) {
	s := newScenario()
	s.dropRow(s.row(s.lastWithdrawal))
	runDir, exportDir := s.write(t)
	var progress strings.Builder
	probes := 0
	result, err := Audit(context.Background(), Config{RunDir: runDir, Ledger: ExportSource{Dir: exportDir},
		DrainTimeout: 50 * time.Millisecond, DrainPoll: 5 * time.Millisecond, Progress: &progress,
		Drain: func(context.Context) (DrainState, error) {
			probes++
			return DrainState{Progress: "lag 8 record(s) on 2 of 16 partition(s)", Lag: map[int32]int64{3: 5, 9: 3}}, nil
		},
		Stalls: func(context.Context) ([]Stall, error) {
			return []Stall{{Component: "worker-1", State: "running", Partitions: map[int32]int64{3: 5}, StalledSeconds: 42,
				LastError: `level=WARN msg="apply batch failed; retrying" error=boom`}}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	if result.Drained || result.Verdict != VerdictViolated || probes < 2 {
		t.Fatalf("drained %v, verdict %s, probes %d", result.Drained, result.Verdict, probes)
	}
	if !strings.Contains(progress.String(), "lag 8 record(s)") || !strings.Contains(result.DrainNote, "not drained") {
		t.Errorf("progress %q, note %q", progress.String(), result.DrainNote)
	}
	liveness := result.invariant(Liveness)
	if liveness.Status != StatusViolated || len(liveness.Violations) != 2 {
		t.Fatalf("liveness %s with %d violations: %+v", liveness.Status, len(liveness.Violations), liveness.Violations)
	}
	for _, want := range []string{"worker-1 stalled", "partitions 3 (lag 5) not advancing", "for 42s", "error=boom"} {
		if !strings.Contains(liveness.Violations[0].Summary, want) {
			t.Errorf("first liveness violation %q lacks %q", liveness.Violations[0].Summary, want)
		}
	}
	if !strings.Contains(liveness.Violations[1].Summary, "partitions 9 (lag 3) still lag") {
		t.Errorf("second liveness violation %q, want the partition no component claimed", liveness.Violations[1].Summary)
	}
	if durability := result.invariant(Durability); durability.ViolationCount != 0 || durability.Status == StatusPassed {
		t.Errorf("durability %s, judged %d operation(s) lost on a stalled pipeline: %+v", durability.Status, durability.ViolationCount, durability.Violations)
	}
	if got := liveness.Checked["acknowledged operations not applied"]; got != 1 {
		t.Errorf("liveness counts %d acknowledged operations not applied, want 1 (note %q)", got, liveness.Note)
	}

	// More missing than queued: the excess is lost whatever the stall.
	result, err = Audit(context.Background(), Config{RunDir: runDir, Ledger: ExportSource{Dir: exportDir},
		DrainTimeout: 20 * time.Millisecond, DrainPoll: 5 * time.Millisecond,
		Drain: func(context.Context) (DrainState, error) {
			return DrainState{Progress: "lag 0 record(s) known", Lag: map[int32]int64{}}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	if result.invariant(Durability).Status != StatusViolated || result.invariant(Liveness).Status != StatusViolated {
		t.Errorf("nothing queued: durability %s, liveness %s", result.invariant(Durability).Status, result.invariant(Liveness).Status)
	}

	// Drained, the same ledger is a durability violation, and liveness passes.
	result, err = Audit(context.Background(), Config{RunDir: runDir, Ledger: ExportSource{Dir: exportDir},
		Drain: func(context.Context) (DrainState, error) { return DrainState{Done: true, Progress: "lag 0"}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	if result.invariant(Liveness).Status != StatusPassed || result.invariant(Durability).Status != StatusViolated {
		t.Errorf("drained: liveness %s, durability %s", result.invariant(Liveness).Status, result.invariant(Durability).Status)
	}
}

func TestQuietProbe(t *testing.T) {
	now := time.Unix(0, 0)
	value := "a"
	probe := QuietProbe(func(context.Context) (string, error) { return value, nil }, 2*time.Second, func() time.Time { return now })
	step := func(advance time.Duration) bool {
		now = now.Add(advance)
		state, err := probe(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return state.Done
	}
	if step(0) || step(time.Second) {
		t.Fatal("done before the quiet period")
	}
	value = "b"
	if step(1500 * time.Millisecond) {
		t.Fatal("done right after a change")
	}
	if step(time.Second) || !step(time.Second) {
		t.Fatal("not done 2s after the last change")
	}
}

func TestLagProbe(t *testing.T) {
	ends := map[int32]int64{0: 10, 1: 0, 2: 5}
	stored := map[int32]int64{0: 7, 2: 5}
	probe := LagProbe(func(context.Context) (map[int32]int64, map[int32]int64, error) { return ends, stored, nil })
	state, err := probe(context.Background())
	if err != nil || state.Done || state.Progress != "lag 3 record(s) on 1 of 3 partition(s)" {
		t.Fatalf("%+v %v", state, err)
	}
	stored[0] = 10
	if state, _ := probe(context.Background()); !state.Done {
		t.Fatalf("%+v", state)
	}
}

func TestStalenessSummary(t *testing.T) {
	s := newScenario()
	runDir, exportDir := s.write(t)
	var samples []stalenessSample
	for i := int64(0); i < 200; i++ {
		samples = append(samples, stalenessSample{Time: i, Account: 1, Cached: ptr(i), Ledger: ptr(i), LagMs: 0})
	}
	samples = append(samples, stalenessSample{Time: 300, Account: 2, Cached: ptr(int64(1)), Ledger: ptr(int64(2)), LagMs: 700})
	writeLines(t, runDir+"/"+StalenessFile, samples)
	result, err := Audit(context.Background(), Config{RunDir: runDir, Ledger: ExportSource{Dir: exportDir}})
	if err != nil {
		t.Fatal(err)
	}
	got := result.Staleness
	if !got.Recorded || got.Samples != 201 || got.StaleSamples != 1 || got.LagMaxMs != 700 || got.LagP99Ms != 0 {
		t.Fatalf("%+v", got)
	}
}

func TestResultFiles(t *testing.T) {
	s := newScenario()
	s.account(2).Balance++
	result := s.audit(t, nil)
	if err := result.WriteFiles(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{ResultFile, SummaryFile} {
		if _, err := readFile(result.RunDir + "/" + name); err != nil {
			t.Fatal(err)
		}
	}
	content, _ := readFile(result.RunDir + "/" + ResultFile)
	for _, want := range []string{`"verdict": "violated"`, `"name": "balance-equals-postings"`, `"status": "violated"`, `"drained": true`} {
		if !strings.Contains(content, want) {
			t.Errorf("audit.json lacks %s", want)
		}
	}
}

// TestDelayedReplayIsNotANewDebit: a duplicate of an already applied debit,
// sent after a later debit completed, maps to the original row; it must not
// count as a debit applied out of order.
func TestDelayedReplayIsNotANewDebit(t *testing.T) {
	s := newScenario()
	replay := s.journal[s.transfer]
	s.clock += 10
	replay.Op, replay.Invoke, replay.Complete, replay.Dup = "op-replay", s.clock, s.clock+5, "delayed"
	s.journal = append(s.journal, replay)
	result := s.audit(t, nil)
	if result.Verdict != VerdictPassed {
		t.Fatalf("violated %v\n%s", result.violated(), result.summary())
	}
}

// TestPhantomScope: with the run scope, a transaction of a user the journal
// never mentions (an earlier run on the same ledger) is counted and reported
// but is not a violation; with the ledger scope it is; a phantom of a user
// the journal does mention is a violation in both.
func TestPhantomScope(t *testing.T) {
	earlier := Transaction{ID: "tx-earlier", UserID: 999, IdempotencyKey: "earlier-run", Kind: KindDeposit,
		DestinationAccountID: 1, Amount: 1, Status: StatusRejected, Reason: "forbidden"}
	cases := []struct {
		scope      string
		ghostUser  int64
		violations int
	}{
		{ScopeRun, 999, 0},
		{ScopeLedger, 999, 1},
		{ScopeRun, 101, 1},
		{ScopeLedger, 101, 1},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s/user-%d", c.scope, c.ghostUser), func(t *testing.T) {
			m := newModel(1)
			ghost := earlier
			ghost.UserID = c.ghostUser
			m.transactions = append(m.transactions, ghost)
			result, err := m.auditScoped(t.TempDir(), nil, c.scope)
			if err != nil {
				t.Fatal(err)
			}
			if got := result.invariant(NoPhantoms).ViolationCount; got != int64(c.violations) {
				t.Fatalf("%d no-phantoms violations, want %d", got, c.violations)
			}
			if c.violations == 0 && !strings.Contains(strings.Join(result.Warnings, "\n"), "left out 1 ledger transaction") {
				t.Fatalf("the out-of-scope transaction is not reported: %v", result.Warnings)
			}
		})
	}
}
