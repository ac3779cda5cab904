package ledger

import "github.com/ledgerproof/ledgerproof/sut/jsonwire"

// AppendJSON appends the command's JSON, the value of its record on the
// commands topic: exactly the bytes json.Marshal(c) gives (the test compares
// them), without reflection, as a gateway writes one per request. It fails
// as json.Marshal does, for an AcceptedAt RFC 3339 cannot say.
func (c Command) AppendJSON(dst []byte) ([]byte, error) {
	dst = append(dst, `{"transaction_id":`...)
	dst = jsonwire.String(dst, c.TransactionID)
	dst = append(dst, `,"kind":`...)
	dst = jsonwire.String(dst, string(c.Kind))
	dst = append(dst, `,"user_id":`...)
	dst = jsonwire.Int(dst, c.UserID)
	dst = append(dst, `,"idempotency_key":`...)
	dst = jsonwire.String(dst, c.IdempotencyKey)
	dst = append(dst, `,"source_account_id":`...)
	dst = jsonwire.Int(dst, c.SourceAccountID)
	dst = append(dst, `,"destination_account_id":`...)
	dst = jsonwire.Int(dst, c.DestinationAccountID)
	dst = append(dst, `,"amount":`...)
	dst = jsonwire.Int(dst, c.AmountMinor)
	dst = append(dst, `,"fingerprint":`...)
	dst = jsonwire.String(dst, c.Fingerprint)
	dst = append(dst, `,"accepted_at":`...)
	dst, err := jsonwire.Time(dst, c.AcceptedAt)
	if err != nil {
		return dst, err
	}
	return append(dst, '}'), nil
}
