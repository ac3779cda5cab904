package invariants

import (
	"fmt"
	"strings"
)

// Settlement is what a ledger holds about one transaction's settlement
// downstream (docs/settlement.md): how many events the transactional outbox
// holds for it, and how many effects the settlement consumer applied (the
// reference system's settlement_outbox and settlement_history, migration
// 006).
type Settlement struct {
	TransactionID string `json:"transaction_id"`
	// Events counts the outbox rows of the transaction.
	Events int64 `json:"events"`
	// Unpublished counts those the relay has not published yet.
	Unpublished int64 `json:"unpublished"`
	// Effects counts the consumer's rows of the transaction.
	Effects int64 `json:"effects"`
}

// settlementCounts are a ledger row's events and effects.
type settlementCounts struct {
	events, unpublished, effects int64
}

// settlementState is what the audit accumulates about settlements.
type settlementState struct {
	// available is set by the source: it knows the outbox and the effects.
	available bool
	note      string
	// counts holds the counts of the ledger rows that have any.
	counts map[int32]settlementCounts
	// unpublished counts outbox rows still unpublished.
	unpublished int64
}

func (a *auditor) visitSettlements(available bool, note string) error {
	a.settlements.available, a.settlements.note = available, note
	return nil
}

// visitSettlement keeps the counts of a transaction the ledger has, and
// reports events and effects of a transaction it does not have at once.
func (a *auditor) visitSettlement(s *Settlement) error {
	if !a.settlements.available {
		return fmt.Errorf("settlement of %s delivered by a source that said it has none", s.TransactionID)
	}
	a.settlements.unpublished += s.Unpublished
	index, found := a.rowIndex[a.hash.id(s.TransactionID)]
	if !found {
		settlement := *s
		a.report(SettlementExactlyOnce, func() Violation {
			return Violation{Summary: fmt.Sprintf("transaction %s is not in the ledger, yet has %d settlement event(s) and %d settlement effect(s)",
				settlement.TransactionID, settlement.Events, settlement.Effects), Rows: settlementRows(&settlement)}
		})
		return nil
	}
	counts := a.settlements.counts[index]
	counts.events += s.Events
	counts.unpublished += s.Unpublished
	counts.effects += s.Effects
	a.settlements.counts[index] = counts
	return nil
}

// settlementRows quotes a transaction's outbox and consumer counts.
func settlementRows(s *Settlement) []RowRef {
	return []RowRef{
		{Table: "settlement_outbox", ID: s.TransactionID, TransactionID: s.TransactionID,
			Note: fmt.Sprintf("%d event(s), %d unpublished", s.Events, s.Unpublished)},
		{Table: "settlement_history", ID: s.TransactionID, TransactionID: s.TransactionID,
			Note: fmt.Sprintf("%d effect(s)", s.Effects)},
	}
}

// checkSettlements checks settlement-exactly-once: every settled
// transaction has exactly one outbox event and exactly one effect
// downstream; a rejected one has neither. A transaction stored twice is
// exactly-once's violation and checked here once, on its first row.
func (a *auditor) checkSettlements() {
	result := a.invariants[SettlementExactlyOnce]
	state := &a.settlements
	if a.config.NoSettlement != "" {
		state.available, state.note = false, "skipped: "+a.config.NoSettlement
	}
	if !state.available {
		if result.Status != StatusViolated {
			result.Status = StatusSkipped
		}
		result.Note = state.note
		if result.Note == "" {
			result.Note = "not available: the ledger source does not report settlement events and effects"
		}
		return
	}
	var settled int64
	for index := range a.rows {
		row := &a.rows[index]
		if row.status != statusSettled && row.status != statusRejected {
			continue
		}
		id := a.rowID(row)
		if first := a.rowIndex[a.hash.id(id)]; first != int32(index) {
			continue
		}
		counts := state.counts[int32(index)]
		var problem string
		if row.status == statusSettled {
			settled++
			a.checked(SettlementExactlyOnce, "settled transactions", 1)
			switch {
			case counts.events == 0 && counts.effects == 0:
				problem = "is settled but has no settlement event in the outbox and no effect downstream: its settlement was lost"
			case counts.events != 1:
				problem = fmt.Sprintf("is settled and has %d settlement events in the outbox, want exactly 1", counts.events)
			case counts.effects == 0:
				problem = "is settled and its event is in the outbox, but it has no effect downstream"
			case counts.effects > 1:
				problem = fmt.Sprintf("is settled and was applied %d times downstream: an event delivered again had a second effect", counts.effects)
			}
		} else {
			a.checked(SettlementExactlyOnce, "rejected transactions", 1)
			if counts.events > 0 || counts.effects > 0 {
				problem = fmt.Sprintf("is rejected, yet has %d settlement event(s) and %d effect(s) downstream", counts.events, counts.effects)
			}
		}
		if problem == "" {
			continue
		}
		rowIndex := int32(index)
		settlement := Settlement{TransactionID: id, Events: counts.events, Unpublished: counts.unpublished, Effects: counts.effects}
		a.report(SettlementExactlyOnce, func() Violation {
			violation := Violation{Summary: fmt.Sprintf("transaction %s %s", id, problem),
				Rows: append([]RowRef{a.rowRef(rowIndex)}, settlementRows(&settlement)...)}
			if row.key >= 0 {
				violation.Keys = []string{a.keyName(row.key)}
			}
			return violation
		})
	}
	var notes []string
	if state.note != "" {
		notes = append(notes, state.note)
	}
	if state.unpublished > 0 {
		notes = append(notes, fmt.Sprintf("%d outbox event(s) were still unpublished when the ledger was read", state.unpublished))
	}
	result.Note = strings.Join(notes, "; ")
	if settled == 0 && result.Status != StatusViolated {
		result.Status = StatusNotExercised
		if result.Note == "" {
			result.Note = "no transaction settled: nothing to settle downstream"
		}
	}
}
