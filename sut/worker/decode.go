package worker

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/postgres"
)

// DecodeCommand reads the value of a record of the commands topic. A record
// that can be applied gives its command and an empty reason. Any other gives
// the dead-letter reason (ledger.DeadLetterReason), an error saying more, and
// a command that holds only the transaction id the record named, if it named
// a valid one (so the dead letter can be matched with the client's request).
//
// Records are read strictly, as the gateway reads requests: exactly one JSON
// object, valid UTF-8, member names matched case-sensitively, no unknown
// member (unknown_field), no member named twice (duplicate_field: readers
// keeping the first and the last copy would apply different commands), each
// member of its type, integers only for integers (undecodable otherwise).
// A decoded command must then name a transaction the ledger can store
// (ledger.Command.CheckStorable). One that does but breaks another rule (an
// amount above the maximum, accounts that do not fit its kind) is returned
// as applicable: the ledger stores it as a rejected transaction, so its
// client learns the outcome.
//
// The decoder is github.com/go-json-experiment/json (the proposal that
// became encoding/json/v2, still behind GOEXPERIMENT=jsonv2 in Go 1.26), as
// in the gateway: it refuses duplicate names and invalid UTF-8 by default,
// where encoding/json keeps the last duplicate and folds the case of names.
func DecodeCommand(raw []byte) (ledger.Command, ledger.DeadLetterReason, error) {
	if trimmed := bytes.TrimLeft(raw, " \t\r\n"); len(trimmed) == 0 || trimmed[0] != '{' {
		return ledger.Command{}, ledger.DeadLetterUndecodable, errors.New("the record is not a JSON object")
	}
	var command ledger.Command
	if err := json.Unmarshal(raw, &command, json.RejectUnknownMembers(true)); err != nil {
		named := ledger.Command{TransactionID: namedTransactionID(raw)}
		switch {
		case errors.Is(err, jsontext.ErrDuplicateName):
			return named, ledger.DeadLetterDuplicateField, err
		case errors.Is(err, json.ErrUnknownName):
			return named, ledger.DeadLetterUnknownField, err
		default:
			return named, ledger.DeadLetterUndecodable, err
		}
	}
	if reason, err := command.CheckStorable(); reason != "" {
		if !ledger.ValidTransactionID(command.TransactionID) {
			command = ledger.Command{}
		}
		return command, reason, err
	}
	return command, "", nil
}

// namedTransactionID is the transaction id a record that does not decode
// still names: the value of its object's one transaction_id member, when
// that is a valid id; "" otherwise (no object, no such member, two of them,
// not a string, not a canonical UUID). It reads leniently, as far as the
// syntax allows.
func namedTransactionID(raw []byte) string {
	decoder := jsontext.NewDecoder(bytes.NewReader(raw), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	if token, err := decoder.ReadToken(); err != nil || token.Kind() != '{' {
		return ""
	}
	var named string
	found := 0
	for decoder.PeekKind() == '"' {
		name, err := decoder.ReadToken()
		if err != nil {
			break
		}
		if name.String() != "transaction_id" {
			if decoder.SkipValue() != nil {
				break
			}
			continue
		}
		value, err := decoder.ReadToken()
		if err != nil {
			break
		}
		found++
		if value.Kind() == '"' {
			named = value.String()
		} else {
			named = ""
		}
	}
	if found != 1 || !ledger.ValidTransactionID(named) {
		return ""
	}
	return named
}

// decodeRecord turns a record of the topic into the ledger's record, set
// aside when it cannot be applied.
func decodeRecord(partition int32, offset int64, value []byte) postgres.Record {
	if value == nil {
		// Kept as read: an empty (or null) value, never NULL.
		value = []byte{}
	}
	command, reason, err := DecodeCommand(value)
	record := postgres.Record{Partition: partition, Offset: offset, Command: command, Raw: value, DeadLetter: reason}
	if err != nil {
		record.DeadLetterDetail = fmt.Sprint(err)
	}
	return record
}
