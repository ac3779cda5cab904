package invariants

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// splitIntoShards writes the fixture's ledger as n shard exports, the way
// a sharded reference ledger holds it: each account in shard id mod n (the
// external account in every shard), each transaction in the shard of the
// account it debits (a deposit's: the credited account's), each posting in
// its account's shard (the external account's: its transaction's).
func splitIntoShards(t *testing.T, f *fixture, n int, dropPosting int64) (runDir string, shards []Source) {
	t.Helper()
	root := t.TempDir()
	runDir, _, err := f.writeIn(root)
	if err != nil {
		t.Fatal(err)
	}
	of := func(account int64) int { return int(account % int64(n)) }
	accounts, transactions, postings := make([][]Account, n), make([][]Transaction, n), make([][]Posting, n)
	shardOf := map[string]int{}
	for _, account := range f.accounts {
		if account.Kind == "external" {
			for i := range accounts {
				accounts[i] = append(accounts[i], account)
			}
			continue
		}
		accounts[of(account.ID)] = append(accounts[of(account.ID)], account)
	}
	for _, transaction := range f.transactions {
		home := of(transaction.SourceAccountID)
		if transaction.Kind == KindDeposit {
			home = of(transaction.DestinationAccountID)
		}
		shardOf[transaction.ID] = home
		transactions[home] = append(transactions[home], transaction)
	}
	for _, posting := range f.postings {
		if posting.ID == dropPosting {
			continue
		}
		home := shardOf[posting.TransactionID]
		if posting.AccountID != 0 {
			home = of(posting.AccountID)
		}
		postings[home] = append(postings[home], posting)
	}
	for i := 0; i < n; i++ {
		dir := filepath.Join(root, fmt.Sprintf("shard-%d", i))
		writeLines(t, filepath.Join(dir, AccountsFile), accounts[i])
		writeLines(t, filepath.Join(dir, TransactionsFile), transactions[i])
		writeLines(t, filepath.Join(dir, PostingsFile), postings[i])
		shards = append(shards, ExportSource{Dir: dir})
	}
	return runDir, shards
}

// TestShardedSourceAuditsTheUnion: a ledger split across shards audits as
// the single ledger it was (every invariant's verdict and counts alike),
// and a credit missing from one shard breaks conservation across shards.
func TestShardedSourceAuditsTheUnion(t *testing.T) {
	ctx := context.Background()
	s := newScenario()
	whole := s.audit(t, nil)
	crossShard := 0
	for _, transaction := range s.transactions {
		if transaction.Kind == KindTransfer && transaction.Status == StatusSettled && transaction.SourceAccountID%2 != transaction.DestinationAccountID%2 {
			crossShard++
		}
	}
	if crossShard == 0 {
		t.Fatal("the scenario has no settled transfer between the two shards: the test would prove nothing")
	}
	runDir, shards := splitIntoShards(t, &s.fixture, 2, -1)
	split, err := Audit(ctx, Config{RunDir: runDir, Ledger: ShardedSource{Shards: shards}})
	if err != nil {
		t.Fatal(err)
	}
	if split.Verdict != whole.Verdict {
		t.Fatalf("split verdict %s, whole %s\n%s", split.Verdict, whole.Verdict, split.summary())
	}
	for _, name := range []string{"accounts", "transactions", "postings"} {
		if split.LedgerCounts[name] != whole.LedgerCounts[name] {
			t.Errorf("%s: %d read from the shards, %d from the whole", name, split.LedgerCounts[name], whole.LedgerCounts[name])
		}
	}
	for i, invariant := range whole.Invariants {
		if got := split.Invariants[i]; got.Status != invariant.Status || got.ViolationCount != invariant.ViolationCount {
			t.Errorf("%s: %s with %d violation(s) split, %s with %d whole", invariant.Name, got.Status, got.ViolationCount,
				invariant.Status, invariant.ViolationCount)
		}
	}

	// A cross-shard transfer's credit lost in its destination shard.
	var credit int64 = -1
	for _, transaction := range s.transactions {
		if transaction.Kind != KindTransfer || transaction.Status != StatusSettled || transaction.SourceAccountID%2 == transaction.DestinationAccountID%2 {
			continue
		}
		for _, posting := range s.postings {
			if posting.TransactionID == transaction.ID && posting.Amount > 0 {
				credit = posting.ID
			}
		}
		break
	}
	runDir, shards = splitIntoShards(t, &s.fixture, 2, credit)
	broken, err := Audit(ctx, Config{RunDir: runDir, Ledger: ShardedSource{Shards: shards}})
	if err != nil {
		t.Fatal(err)
	}
	if broken.invariant(Conservation).Status != StatusViolated {
		t.Errorf("a lost cross-shard credit: conservation %s, want violated", broken.invariant(Conservation).Status)
	}
}

func TestShardedSourceRefusesNoShardAndReportsAShardsError(t *testing.T) {
	ctx := context.Background()
	if err := (ShardedSource{}).Scan(ctx, Visitor{}); err == nil {
		t.Error("no shard accepted")
	}
	_, shards := splitIntoShards(t, &newScenario().fixture, 2, -1)
	shards[1] = ExportSource{Dir: filepath.Join(t.TempDir(), "missing")}
	err := ShardedSource{Shards: shards}.Scan(ctx, Visitor{Account: func(*Account) error { return nil },
		Transaction: func(*Transaction) error { return nil }, Posting: func(*Posting) error { return nil }})
	if err == nil {
		t.Error("a shard that cannot be read was not reported")
	}
}

// compensate adds to the model a transfer of amount from account from to
// an account that does not exist, run as a saga and compensated: the
// client was told rejected (account_not_found), the source was debited and
// refunded under the transfer's id. It returns the saga's rows.
func (m *model) compensate(from, missing, amount int64) *SagaLedger {
	user := m.user(from)
	key := fmt.Sprintf("k-%d", m.nextOp+1)
	entry := m.entry(KindTransfer, key, user, from, missing, amount, OutcomeFail)
	partition := int32(from % int64(m.partitions))
	offset := m.offsets[partition]
	m.offsets[partition]++
	transaction := Transaction{ID: fmt.Sprintf("tx-%s-%d", key, user), UserID: user, IdempotencyKey: key, Kind: KindTransfer,
		SourceAccountID: from, DestinationAccountID: missing, Amount: amount, Status: StatusRejected, Reason: "account_not_found",
		Partition: ptr(partition), AppliedOrder: ptr(offset)}
	sagas := &SagaLedger{Shards: 2,
		Sagas: []SagaRecord{{ID: transaction.ID, Shard: int(from % 2), SourceAccountID: from, DestinationAccountID: missing,
			DestinationShard: int(missing % 2), Amount: amount, State: sagaCompensated, Reason: "account_not_found"}},
		Decisions: []SagaDecision{{SagaID: transaction.ID, Shard: int(missing % 2), AccountID: missing, Amount: amount, Outcome: sagaCancelled}}}
	for _, amountMoved := range []int64{-amount, amount} {
		m.nextPosting++
		m.balances[from] += amountMoved
		m.postings = append(m.postings, Posting{ID: m.nextPosting, TransactionID: transaction.ID, AccountID: from, Amount: amountMoved,
			BalanceAfter: ptr(m.balances[from])})
		sagas.Postings = append(sagas.Postings, SagaPosting{ID: m.nextPosting, Shard: int(from % 2), TransactionID: transaction.ID,
			AccountID: from, Amount: amountMoved})
	}
	entry.Status, entry.Reason, entry.Tx = StatusRejected, "account_not_found", transaction.ID
	m.transactions = append(m.transactions, transaction)
	m.journal = append(m.journal, entry)
	return sagas
}

// TestShardedAuditAcceptsACompensatedSaga: a compensated saga (a rejected
// transfer whose source was debited and refunded) passes every invariant
// when saga-atomicity vouches for it, and breaks conservation when the
// audit knows no saga.
func TestShardedAuditAcceptsACompensatedSaga(t *testing.T) {
	ctx := context.Background()
	s := newScenario()
	sagas := s.compensate(1, 9, 5)
	runDir, shards := splitIntoShards(t, &s.fixture, 2, -1)
	result, err := Audit(ctx, Config{RunDir: runDir, Ledger: ShardedSource{Shards: shards}, Sagas: sagaLedgerSource{ledger: sagas}})
	if err != nil {
		t.Fatal(err)
	}
	if result.Verdict != VerdictPassed || result.invariant(SagaAtomicity).Status != StatusPassed {
		t.Fatalf("verdict %s, saga-atomicity %s\n%s", result.Verdict, result.invariant(SagaAtomicity).Status, result.summary())
	}
	blind, err := Audit(ctx, Config{RunDir: runDir, Ledger: ShardedSource{Shards: shards}})
	if err != nil {
		t.Fatal(err)
	}
	if blind.invariant(Conservation).Status != StatusViolated {
		t.Errorf("without the sagas, a rejected transfer with postings: conservation %s, want violated", blind.invariant(Conservation).Status)
	}
}

// complete returns the rows of a completed saga for the settled transfer
// of a journal entry: the source debited in its shard, the destination
// credited (decided 'credited') in its.
func (f *fixture) complete(entry int) *SagaLedger {
	transaction := f.transactions[f.row(entry)]
	from, to := transaction.SourceAccountID, transaction.DestinationAccountID
	sagas := &SagaLedger{Shards: 2,
		Sagas: []SagaRecord{{ID: transaction.ID, Shard: int(from % 2), SourceAccountID: from, DestinationAccountID: to,
			DestinationShard: int(to % 2), Amount: transaction.Amount, State: sagaCompleted}},
		Decisions: []SagaDecision{{SagaID: transaction.ID, Shard: int(to % 2), AccountID: to, Amount: transaction.Amount, Outcome: sagaCredited}}}
	for _, posting := range f.postings {
		if posting.TransactionID == transaction.ID {
			sagas.Postings = append(sagas.Postings, SagaPosting{ID: posting.ID, Shard: int(posting.AccountID % 2),
				TransactionID: transaction.ID, AccountID: posting.AccountID, Amount: posting.Amount})
		}
	}
	return sagas
}

// TestShardedAuditChecksTheSagasTransferRows: a saga's transfer row is the
// client's outcome, so it must agree with how the saga ended. A
// compensated saga (debit and refund) whose row (and client) says settled
// is money paid back on a transfer that happened; a completed saga whose
// row says rejected moved money the client was told did not move. Both
// are reported by saga-atomicity with the row, the first by conservation
// too (the refund is no leg of a settled transfer); the right shapes pass.
func TestShardedAuditChecksTheSagasTransferRows(t *testing.T) {
	ctx := context.Background()
	audit := func(t *testing.T, s *scenario, sagas *SagaLedger) *Result {
		t.Helper()
		runDir, shards := splitIntoShards(t, &s.fixture, 2, -1)
		result, err := Audit(ctx, Config{RunDir: runDir, Ledger: ShardedSource{Shards: shards}, Sagas: sagaLedgerSource{ledger: sagas}})
		if err != nil {
			t.Fatal(err)
		}
		return result
	}
	merge := func(parts ...*SagaLedger) *SagaLedger {
		all := &SagaLedger{Shards: 2}
		for _, part := range parts {
			all.Sagas = append(all.Sagas, part.Sagas...)
			all.Decisions = append(all.Decisions, part.Decisions...)
			all.Postings = append(all.Postings, part.Postings...)
		}
		return all
	}
	wantRowInViolation := func(t *testing.T, result *Result, status, text string) {
		t.Helper()
		invariant := result.invariant(SagaAtomicity)
		if invariant.Status != StatusViolated || len(invariant.Violations) == 0 {
			t.Fatalf("saga-atomicity %s, want violated\n%s", invariant.Status, result.summary())
		}
		violation := invariant.Violations[0]
		if !strings.Contains(violation.Summary, text) {
			t.Errorf("violation %q does not say %q", violation.Summary, text)
		}
		for _, row := range violation.Rows {
			if row.Table == "transactions" && row.Status == status {
				return
			}
		}
		t.Errorf("violation %q does not quote the transfer's %s row: %+v", violation.Summary, status, violation.Rows)
	}

	t.Run("right shapes pass", func(t *testing.T) {
		s := newScenario()
		sagas := merge(s.complete(s.transfer), s.compensate(1, 9, 5))
		result := audit(t, s, sagas)
		invariant := result.invariant(SagaAtomicity)
		if result.Verdict != VerdictPassed || invariant.Status != StatusPassed || invariant.Checked[unitSagasCompleted] != 1 || invariant.Checked[unitSagasCompensated] != 1 {
			t.Fatalf("verdict %s, saga-atomicity %s %v\n%s", result.Verdict, invariant.Status, invariant.Checked, result.summary())
		}
	})
	t.Run("compensated saga with a settled row", func(t *testing.T) {
		s := newScenario()
		sagas := s.compensate(1, 9, 5)
		last := len(s.transactions) - 1
		s.transactions[last].Status, s.transactions[last].Reason = StatusSettled, ""
		entry := &s.journal[len(s.journal)-1]
		entry.Outcome, entry.Status, entry.Reason = OutcomeOK, StatusSettled, ""
		result := audit(t, s, sagas)
		wantRowInViolation(t, result, StatusSettled, "row says settled (want rejected)")
		if result.invariant(Conservation).Status != StatusViolated {
			t.Errorf("conservation %s: a refund under a settled transfer was accepted", result.invariant(Conservation).Status)
		}
	})
	t.Run("completed saga with a rejected row", func(t *testing.T) {
		s := newScenario()
		sagas := s.complete(s.transfer)
		row := s.row(s.transfer)
		s.transactions[row].Status, s.transactions[row].Reason = StatusRejected, "account_not_found"
		entry := &s.journal[s.transfer]
		entry.Outcome, entry.Status, entry.Reason, entry.Tx = OutcomeFail, StatusRejected, "account_not_found", s.transactions[row].ID
		result := audit(t, s, sagas)
		wantRowInViolation(t, result, StatusRejected, "row says rejected (want settled)")
	})
	t.Run("a saga in flight with a row, a completed saga without one", func(t *testing.T) {
		ledger := buildSaga("s", sagaShape{state: sagaDebited, debits: 1})
		ledger.Transfers = map[string]RowRef{"s": {Table: "transactions", ID: "s", Status: StatusSettled}}
		if result := CheckSagas(ledger, 5); result.Status != StatusViolated || !strings.Contains(result.Violations[0].Summary, "row says settled when the ledger was read") {
			t.Errorf("in flight with a row: %s %+v", result.Status, result.Violations)
		}
		ledger = buildSaga("s", sagaShape{state: sagaCompleted, decisions: []string{sagaCredited}, debits: 1, credits: 1})
		ledger.Transfers = map[string]RowRef{}
		if result := CheckSagas(ledger, 5); result.Status != StatusViolated || !strings.Contains(result.Violations[0].Summary, "no transactions row") {
			t.Errorf("completed without a row: %s %+v", result.Status, result.Violations)
		}
	})
}

// TestLimitsRespectedCountsACompensatedSagasHeldDebit: a saga's debit held
// its amount against the day while the saga was in flight (the worker
// counts it in daily_debits until the refund), so a daily-limit refusal of
// that window is justified by it, though the saga ended compensated and its
// transfer rejected. Without the saga's hold the refusal is reported.
func TestLimitsRespectedCountsACompensatedSagasHeldDebit(t *testing.T) {
	ctx := context.Background()
	s := newScenario()
	s.operate(KindDeposit, 0, 1, 1000, plain)
	sagas := s.compensate(1, 9, 500)
	refused := s.operate(KindWithdrawal, 1, 0, 1500, plain) // the model rejects it: 1000 held
	s.rejectAs(refused, ReasonDailyLimitExceeded, true)
	s.acceptAllOn(limitDay)
	runDir, shards := splitIntoShards(t, &s.fixture, 2, -1)
	// 500 held by the saga + 1500 passes a limit of 1900.
	result, err := Audit(ctx, Config{RunDir: runDir, Ledger: ShardedSource{Shards: shards}, Sagas: sagaLedgerSource{ledger: sagas},
		DailyDebitLimitMinor: 1900})
	if err != nil {
		t.Fatal(err)
	}
	if invariant := result.invariant(LimitsRespected); invariant.Status != StatusPassed || invariant.Checked[unitDailyRejections] != 1 {
		t.Fatalf("limits-respected %s, checked %v, want passed with the refusal judged\n%s", invariant.Status, invariant.Checked, result.summary())
	}
	// Not of 2100: 500 + 1500 is within it.
	result, err = Audit(ctx, Config{RunDir: runDir, Ledger: ShardedSource{Shards: shards}, Sagas: sagaLedgerSource{ledger: sagas},
		DailyDebitLimitMinor: 2100})
	if err != nil {
		t.Fatal(err)
	}
	if invariant := result.invariant(LimitsRespected); invariant.Status != StatusViolated {
		t.Fatalf("limit 2100: limits-respected %s, want violated\n%s", invariant.Status, result.summary())
	}
}
