package ledger

import (
	"errors"
	"fmt"
)

// SettlementsTopic is the default topic the relay publishes settlement
// events to and the settler consumes (docs/settlement.md).
const SettlementsTopic = "ledger.settlements"

// SettlementEvent says that one transaction settled: the worker writes it
// to the outbox in the transaction of the postings, the relay publishes it
// (at least once), the settler applies it once per transaction.
type SettlementEvent struct {
	// OutboxID is the event's row in the outbox; a republished event has
	// the same one.
	OutboxID             int64  `json:"outbox_id"`
	TransactionID        string `json:"transaction_id"`
	Kind                 Kind   `json:"kind"`
	SourceAccountID      int64  `json:"source_account_id"`
	DestinationAccountID int64  `json:"destination_account_id"`
	AmountMinor          int64  `json:"amount"`
}

// Validate rejects an event that could not have come from the outbox: an
// invalid transaction id, kind or amount.
func (e SettlementEvent) Validate() error {
	if !ValidTransactionID(e.TransactionID) {
		return fmt.Errorf("settlement event %d: transaction id %q is not a valid id", e.OutboxID, e.TransactionID)
	}
	switch e.Kind {
	case KindDeposit, KindWithdrawal, KindTransfer:
	default:
		return fmt.Errorf("settlement event %d: kind %q unknown", e.OutboxID, e.Kind)
	}
	if e.AmountMinor <= 0 {
		return errors.New("settlement event: amount must be positive")
	}
	return nil
}
