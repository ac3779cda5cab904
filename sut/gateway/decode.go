package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

// decodeBody reads a JSON body strictly: bounded size, no unknown fields,
// exactly one value. It returns the raw bytes too.
func (g *Gateway) decodeBody(w http.ResponseWriter, r *http.Request, into any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, g.config.MaxBodyBytes))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return ledger.Errorf(ledger.CodeBodyTooLarge, "the body is larger than %d bytes", g.config.MaxBodyBytes)
	}
	if err != nil {
		return ledger.Errorf(ledger.CodeInvalidRequest, "reading the body: %v", err)
	}
	decoder := json.NewDecoder(bytes.NewReader(body))
	decoder.DisallowUnknownFields()
	decoder.UseNumber()
	if err := decoder.Decode(into); err != nil {
		return ledger.Errorf(ledger.CodeInvalidRequest, "the body is not valid JSON for this request: %v", err)
	}
	if decoder.More() {
		return ledger.Errorf(ledger.CodeInvalidRequest, "the body holds more than one JSON value")
	}
	return nil
}

// number is a JSON number literal kept as text. Unlike json.Number it
// refuses a quoted string ("10"), so a client that sends amounts as strings
// gets an error rather than a silently accepted request.
type number string

// UnmarshalJSON accepts only a bare JSON number.
func (n *number) UnmarshalJSON(data []byte) error {
	if len(data) == 0 || !(data[0] == '-' || (data[0] >= '0' && data[0] <= '9')) {
		return fmt.Errorf("%s is not a JSON number", data)
	}
	*n = number(data)
	return nil
}

// accountField parses a JSON number as an account id.
func accountField(name string, value number) (int64, error) {
	if value == "" {
		return 0, ledger.Errorf(ledger.CodeInvalidRequest, "%s is required", name)
	}
	id, err := strconv.ParseInt(string(value), 10, 64)
	if err != nil || id <= 0 {
		return 0, ledger.Errorf(ledger.CodeInvalidRequest, "%s %s is not a positive integer", name, value)
	}
	return id, nil
}

func amountField(value number) (int64, error) {
	amount, err := ledger.ParseAmount(string(value))
	if err != nil {
		return 0, err
	}
	return amount, nil
}
