package redis

import (
	"encoding/json"

	"github.com/ledgerproof/ledgerproof/sut/jsonwire"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

// marshalRecord is json.Marshal(record), byte for byte (the test compares
// them), without reflection: a gateway writes two records per request.
// StoreResponse's script reads the record with cjson, and replays send
// ResponseBody back as stored.
func marshalRecord(record IdempotencyRecord) []byte {
	dst := make([]byte, 0, 160+len(record.ResponseBody)*4/3)
	dst = append(dst, `{"fingerprint":`...)
	dst = jsonwire.String(dst, record.Fingerprint)
	dst = append(dst, `,"transaction_id":`...)
	dst = jsonwire.String(dst, record.TransactionID)
	dst = append(dst, `,"reserved_at":`...)
	dst, err := jsonwire.Time(dst, record.ReservedAt)
	if err != nil {
		// As before: json.Marshal's error was ignored and nil stored.
		value, _ := json.Marshal(record)
		return value
	}
	if record.ResponseStatus != 0 {
		dst = append(dst, `,"response_status":`...)
		dst = jsonwire.Int(dst, int64(record.ResponseStatus))
	}
	if len(record.ResponseBody) != 0 {
		dst = append(dst, `,"response_body":`...)
		dst = jsonwire.Bytes(dst, record.ResponseBody)
	}
	return append(dst, '}')
}

// marshalPending is json.Marshal(pending), byte for byte, without
// reflection.
func marshalPending(pending PendingTransaction) []byte {
	dst := make([]byte, 0, 128)
	dst = append(dst, `{"user_id":`...)
	dst = jsonwire.Int(dst, pending.UserID)
	dst = append(dst, `,"kind":`...)
	dst = jsonwire.String(dst, string(pending.Kind))
	dst = append(dst, `,"source_account_id":`...)
	dst = jsonwire.Int(dst, pending.SourceAccountID)
	dst = append(dst, `,"destination_account_id":`...)
	dst = jsonwire.Int(dst, pending.DestinationAccountID)
	dst = append(dst, `,"amount":`...)
	dst = jsonwire.Int(dst, pending.AmountMinor)
	return append(dst, '}')
}

// marshalOutcome is json.Marshal(outcome), byte for byte, without
// reflection: a worker writes one per transaction, and the batch's
// announcement is the same bytes joined into an array (marshalOutcomes).
func marshalOutcome(outcome ledger.OutcomeNotice) []byte {
	dst := make([]byte, 0, 64+len(outcome.TransactionID)+len(outcome.Fingerprint)+len(outcome.Reason))
	dst = append(dst, `{"transaction_id":`...)
	dst = jsonwire.String(dst, outcome.TransactionID)
	dst = append(dst, `,"status":`...)
	dst = jsonwire.String(dst, string(outcome.Status))
	if outcome.Reason != "" {
		dst = append(dst, `,"reason":`...)
		dst = jsonwire.String(dst, string(outcome.Reason))
	}
	dst = append(dst, `,"fingerprint":`...)
	dst = jsonwire.String(dst, outcome.Fingerprint)
	return append(dst, '}')
}

// marshalOutcomes is json.Marshal of the outcomes whose marshalOutcome
// bytes are values: the array of them.
func marshalOutcomes(values [][]byte) []byte {
	size := 2
	for _, value := range values {
		size += len(value) + 1
	}
	dst := make([]byte, 0, size)
	dst = append(dst, '[')
	for i, value := range values {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, value...)
	}
	return append(dst, ']')
}
