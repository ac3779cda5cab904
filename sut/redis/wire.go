package redis

import (
	"encoding/json"

	"github.com/ledgerproof/ledgerproof/sut/jsonwire"
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
