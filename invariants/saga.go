package invariants

import (
	"context"
	"fmt"
	"sort"
)

// sagaAtomicityDescription is the catalogue's text of SagaAtomicity.
const sagaAtomicityDescription = "on a sharded ledger, after drain every cross-shard transfer (saga) is completed " +
	"(one debit in the source shard, one credit in the destination shard, decided 'credited') or fully compensated " +
	"(one debit and one refund in the source shard, no credit, the destination's decision 'cancelled'); " +
	"no debit without its credit or its refund, never both, never twice; the saga's postings across shards sum to zero; " +
	"the transfer's transactions row says settled when completed, rejected when compensated, and is absent while in flight"

// Saga states of the reference system's saga log (sut/postgres/saga.go).
const (
	sagaDebited     = "debited"
	sagaCompleted   = "completed"
	sagaCompensated = "compensated"
	sagaFailed      = "failed"
)

// Destination decisions of the reference system (table saga_credits).
const (
	sagaCredited  = "credited"
	sagaCancelled = "cancelled"
)

// SagaRecord is one row of a shard's saga log: a cross-shard transfer
// whose source account the shard holds.
type SagaRecord struct {
	ID                   string `json:"id"`
	Shard                int    `json:"shard"`
	SourceAccountID      int64  `json:"source_account_id"`
	DestinationAccountID int64  `json:"destination_account_id"`
	DestinationShard     int    `json:"destination_shard"`
	Amount               int64  `json:"amount"`
	State                string `json:"state"`
	Reason               string `json:"reason,omitempty"`
}

// SagaDecision is a destination shard's decision on a saga: credited, or
// cancelled (the fence written before the source refunds).
type SagaDecision struct {
	SagaID    string `json:"saga_id"`
	Shard     int    `json:"shard"`
	AccountID int64  `json:"account_id"`
	Amount    int64  `json:"amount"`
	Outcome   string `json:"outcome"`
}

// SagaPosting is a posting of any shard whose transaction id is a saga's
// (or a decision's) id.
type SagaPosting struct {
	ID            int64  `json:"id"`
	Shard         int    `json:"shard"`
	TransactionID string `json:"transaction_id"`
	AccountID     int64  `json:"account_id"`
	Amount        int64  `json:"amount"`
}

// SagaLedger is what saga-atomicity reads from every shard of a ledger.
type SagaLedger struct {
	// Shards is how many shards were read.
	Shards    int
	Sagas     []SagaRecord
	Decisions []SagaDecision
	Postings  []SagaPosting
	// Transfers, when not nil, holds the transactions row of each saga's
	// transfer found in the ledger, by saga id (the audit fills it from its
	// scan): a completed saga's row must say settled, a compensated saga's
	// rejected, and a saga still in flight has none. Nil: rows not checked.
	Transfers map[string]RowRef
}

// SagaSource reads the sagas of a sharded ledger after drain.
type SagaSource interface {
	ReadSagas(ctx context.Context) (*SagaLedger, error)
	// Describe names the source for the report.
	Describe() string
}

// Units of saga-atomicity's Checked.
const (
	unitSagas            = "sagas"
	unitSagasCompleted   = "sagas completed"
	unitSagasCompensated = "sagas compensated"
	unitShards           = "shards"
)

// sagaFacts gathers what the ledger holds about one saga.
type sagaFacts struct {
	records   []SagaRecord
	decisions []SagaDecision
	// debits and refunds are postings on the source account in the source
	// shard (negative, positive); credits on the destination account in
	// the destination shard; others anything else under the saga's id.
	debits, refunds, credits, others []SagaPosting
}

// CheckSagas judges a sharded ledger's sagas: the result of
// saga-atomicity, listing at most maxViolations violations (all are
// counted). A ledger of one shard, or without a saga, is not exercised.
func CheckSagas(ledger *SagaLedger, maxViolations int) InvariantResult {
	result := InvariantResult{Name: SagaAtomicity, Description: sagaAtomicityDescription, Status: StatusPassed,
		Checked: map[string]int64{}, Violations: []Violation{}}
	report := func(v Violation) {
		v.Invariant = SagaAtomicity
		result.Status = StatusViolated
		result.ViolationCount++
		if len(result.Violations) < maxViolations {
			result.Violations = append(result.Violations, v)
		}
	}
	if ledger == nil {
		result.Status = StatusNotExercised
		result.Note = "one shard: no transfer crosses shards, so none runs as a saga"
		return result
	}
	result.Checked[unitShards] = int64(ledger.Shards)
	facts := map[string]*sagaFacts{}
	get := func(id string) *sagaFacts {
		if facts[id] == nil {
			facts[id] = &sagaFacts{}
		}
		return facts[id]
	}
	for _, record := range ledger.Sagas {
		get(record.ID).records = append(get(record.ID).records, record)
	}
	for _, decision := range ledger.Decisions {
		get(decision.SagaID).decisions = append(get(decision.SagaID).decisions, decision)
	}
	ids := make([]string, 0, len(facts))
	for id := range facts {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	postingsByID := map[string][]SagaPosting{}
	for _, posting := range ledger.Postings {
		postingsByID[posting.TransactionID] = append(postingsByID[posting.TransactionID], posting)
	}
	for _, id := range ids {
		f := facts[id]
		rows := sagaRows(f)
		if len(f.records) != 1 {
			// A decision with no saga behind it: a credit nobody debited.
			report(Violation{Summary: fmt.Sprintf("saga %s: the destination decided %s but %d shard(s) log the saga (want exactly one)",
				id, describeDecisions(f.decisions), len(f.records)), Rows: rows})
			continue
		}
		saga := f.records[0]
		result.Checked[unitSagas]++
		for _, posting := range postingsByID[id] {
			switch {
			case posting.Shard == saga.Shard && posting.AccountID == saga.SourceAccountID && posting.Amount == -saga.Amount:
				f.debits = append(f.debits, posting)
			case posting.Shard == saga.Shard && posting.AccountID == saga.SourceAccountID && posting.Amount == saga.Amount:
				f.refunds = append(f.refunds, posting)
			case posting.Shard == saga.DestinationShard && posting.AccountID == saga.DestinationAccountID && posting.Amount == saga.Amount:
				f.credits = append(f.credits, posting)
			default:
				f.others = append(f.others, posting)
			}
		}
		rows = sagaRows(f)
		for _, posting := range postingsByID[id] {
			rows = append(rows, RowRef{Table: "postings", ID: fmt.Sprint(posting.ID), TransactionID: id,
				AccountID: ptr(posting.AccountID), Amount: ptr(posting.Amount), Note: fmt.Sprintf("shard %d", posting.Shard)})
		}
		var sum int64
		for _, posting := range postingsByID[id] {
			sum += posting.Amount
		}
		decision := ""
		if len(f.decisions) == 1 {
			decision = f.decisions[0].Outcome
		}
		problems := []string{}
		if len(f.debits) != 1 {
			problems = append(problems, fmt.Sprintf("%d debit(s) of the source, want 1", len(f.debits)))
		}
		if len(f.others) > 0 {
			problems = append(problems, fmt.Sprintf("%d posting(s) under the saga's id that are neither its debit, its credit nor its refund", len(f.others)))
		}
		if len(f.decisions) > 1 {
			problems = append(problems, fmt.Sprintf("%d destination decisions, want 1", len(f.decisions)))
		}
		if len(f.credits) > 0 && len(f.refunds) > 0 {
			problems = append(problems, fmt.Sprintf("both credited (%d) and refunded (%d): the money was paid twice", len(f.credits), len(f.refunds)))
		}
		switch saga.State {
		case sagaCompleted:
			if len(f.credits) != 1 || len(f.refunds) != 0 || decision != sagaCredited {
				problems = append(problems, fmt.Sprintf("completed with %d credit(s), %d refund(s) and the destination's decision %q, want 1, 0 and %q",
					len(f.credits), len(f.refunds), decision, sagaCredited))
			}
			result.Checked[unitSagasCompleted]++
		case sagaCompensated:
			if len(f.refunds) != 1 || len(f.credits) != 0 || decision != sagaCancelled {
				problems = append(problems, fmt.Sprintf("compensated with %d refund(s), %d credit(s) and the destination's decision %q, want 1, 0 and %q",
					len(f.refunds), len(f.credits), decision, sagaCancelled))
			}
			result.Checked[unitSagasCompensated]++
		case sagaDebited:
			problems = append(problems, fmt.Sprintf("still in flight after drain (debited, %d credit(s), %d refund(s)): the debit has neither its credit nor its refund", len(f.credits), len(f.refunds)))
		case sagaFailed:
			problems = append(problems, fmt.Sprintf("ended failed with %d credit(s) and %d refund(s): a debit without its credit or its refund", len(f.credits), len(f.refunds)))
		default:
			problems = append(problems, fmt.Sprintf("unknown state %q", saga.State))
		}
		if ledger.Transfers != nil {
			transfer, found := ledger.Transfers[id]
			if found {
				rows = append(rows, transfer)
			}
			if problem := transferRowProblem(saga.State, transfer, found); problem != "" {
				problems = append(problems, problem)
			}
		}
		if sum != 0 {
			problems = append(problems, fmt.Sprintf("its postings across shards sum to %d, not 0 (conservation across shards)", sum))
		}
		if len(problems) > 0 {
			report(Violation{Summary: fmt.Sprintf("saga %s (%d from account %d in shard %d to account %d in shard %d, %s): %s",
				id, saga.Amount, saga.SourceAccountID, saga.Shard, saga.DestinationAccountID, saga.DestinationShard, saga.State,
				joinProblems(problems)), Accounts: []int64{saga.SourceAccountID, saga.DestinationAccountID}, Rows: rows})
		}
	}
	if result.Status == StatusPassed && result.Checked[unitSagas] == 0 {
		result.Status = StatusNotExercised
		if ledger.Shards <= 1 {
			result.Note = "one shard: no transfer crosses shards, so none runs as a saga"
		} else {
			result.Note = fmt.Sprintf("%d shards, but no transfer crossed them: no saga to check", ledger.Shards)
		}
	}
	if result.Status == StatusPassed && result.Checked[unitSagasCompensated] == 0 {
		result.Note = "no saga was compensated: only the completed path was exercised"
	}
	return result
}

// transferRowProblem says what is wrong with a saga's transfer row given
// the saga's state ("" when nothing): the row is the client's outcome, so
// completed goes with settled, compensated with rejected, and a saga in
// flight has not written it yet.
func transferRowProblem(state string, transfer RowRef, found bool) string {
	want := ""
	switch state {
	case sagaCompleted:
		want = "settled"
	case sagaCompensated:
		want = "rejected"
	case sagaDebited:
		if found {
			// The sagas are read before the ledger, each in its own
			// snapshot: a saga that ended in between is in flight here and
			// has its row there. In flight after drain is reported anyway.
			return fmt.Sprintf("in flight when the sagas were read, and its transfer's transactions row says %s when the ledger was read (it may have ended in between)", transfer.Status)
		}
		return ""
	default:
		return ""
	}
	if !found {
		return fmt.Sprintf("%s, but its transfer has no transactions row (want one that says %s)", state, want)
	}
	if transfer.Status != want {
		return fmt.Sprintf("%s, but its transfer's transactions row says %s (want %s): the client's outcome contradicts the money", state, transfer.Status, want)
	}
	return ""
}

func sagaRows(f *sagaFacts) []RowRef {
	var rows []RowRef
	for _, record := range f.records {
		rows = append(rows, RowRef{Table: "sagas", ID: record.ID, Source: ptr(record.SourceAccountID),
			Destination: ptr(record.DestinationAccountID), Amount: ptr(record.Amount), Status: record.State, Reason: record.Reason,
			Note: fmt.Sprintf("shard %d, destination shard %d", record.Shard, record.DestinationShard)})
	}
	for _, decision := range f.decisions {
		rows = append(rows, RowRef{Table: "saga_credits", ID: decision.SagaID, AccountID: ptr(decision.AccountID),
			Amount: ptr(decision.Amount), Status: decision.Outcome, Note: fmt.Sprintf("shard %d", decision.Shard)})
	}
	return rows
}

func describeDecisions(decisions []SagaDecision) string {
	if len(decisions) == 0 {
		return "nothing"
	}
	outcomes := make([]string, len(decisions))
	for i, decision := range decisions {
		outcomes[i] = fmt.Sprintf("%s in shard %d", decision.Outcome, decision.Shard)
	}
	return fmt.Sprint(outcomes)
}

func joinProblems(problems []string) string {
	text := problems[0]
	for _, problem := range problems[1:] {
		text += "; " + problem
	}
	return text
}

// sagaAudit is what the audit read from a sharded ledger's sagas.
type sagaAudit struct {
	ledger *SagaLedger
	// err is why the sagas could not be read (the invariant is skipped).
	err error
	// compensated holds the ids of the compensated sagas: their rejected
	// transfers carry the debit and the refund of the source, which
	// conservation accepts (saga-atomicity checks there is exactly one of
	// each).
	compensated map[string]bool
}

// readSagas reads the configured saga source, before the ledger: the
// ledger's scan needs to know the compensated sagas.
func (a *auditor) readSagas(ctx context.Context) {
	a.sagas.compensated = map[string]bool{}
	if a.config.Sagas == nil {
		return
	}
	a.sagas.ledger, a.sagas.err = a.config.Sagas.ReadSagas(ctx)
	if a.sagas.err != nil {
		a.sagas.ledger = nil
		return
	}
	for _, saga := range a.sagas.ledger.Sagas {
		if saga.State == sagaCompensated {
			a.sagas.compensated[saga.ID] = true
		}
	}
}

// checkSagas runs saga-atomicity on what readSagas read.
func (a *auditor) checkSagas() {
	if a.sagas.err != nil {
		invariant := a.invariants[SagaAtomicity]
		invariant.Status = StatusSkipped
		invariant.Note = fmt.Sprintf("the sagas could not be read from %s: %v", a.config.Sagas.Describe(), a.sagas.err)
		a.warn("saga-atomicity not checked: %v", a.sagas.err)
		return
	}
	ledger := a.sagas.ledger
	if ledger != nil {
		// Give saga-atomicity the transfers' rows the scan read.
		withRows := *ledger
		withRows.Transfers = map[string]RowRef{}
		for _, saga := range ledger.Sagas {
			if index, found := a.rowIndex[a.hash.id(saga.ID)]; found {
				withRows.Transfers[saga.ID] = a.rowRef(index)
			}
		}
		ledger = &withRows
	}
	*a.invariants[SagaAtomicity] = CheckSagas(ledger, a.config.MaxViolations)
}
