package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

// Every request body the gateway reads is strict JSON (sut/openapi.yaml,
// "Strict JSON"; docs/request-rules.md). A body one parser reads one way and
// another parser reads another way is refused, so a signer, a proxy or an
// auditor that reads the body never sees another request than the ledger
// applies:
//
//   - exactly one JSON object, nothing but whitespace after it;
//   - valid UTF-8, escapes included (no lone surrogates);
//   - no member name twice, at any depth (the first-wins and last-wins
//     readers would disagree);
//   - member names match the documented names exactly: case-sensitive, no
//     unknown member;
//   - each member has its documented JSON type; null is no field's value.
//
// The syntax of the whole body is checked before any member is interpreted,
// so a body that is both, say, duplicated and mistyped is answered as a
// syntax error (invalid_request), whatever the order of its members.
//
// The decoder is github.com/go-json-experiment/json, the proposal that
// became encoding/json/v2 (in Go 1.26 still behind GOEXPERIMENT=jsonv2): it
// refuses duplicate names and invalid UTF-8 by default and matches names
// case-sensitively, where encoding/json keeps the last duplicate and folds
// case. Moving to encoding/json/v2 once it needs no experiment is a change
// of import path.

// decodeStrict decodes body into into, a pointer to a request struct of this
// package whose fields are jsonNumber, amountLiteral or jsonString, under
// the strict rules above. Its errors are *ledger.Error: invalid_request, or
// invalid_amount for an amount member of the wrong type. Their messages are
// printable ASCII: they quote member names with strconv.QuoteToASCII and
// never echo a value, nor the decoder's own words.
func decodeStrict(body []byte, into any) error {
	if !utf8.Valid(body) {
		return ledger.Errorf(ledger.CodeInvalidRequest, "the body is not valid UTF-8")
	}
	decoder := jsontext.NewDecoder(bytes.NewReader(body))
	value, err := decoder.ReadValue()
	if err != nil {
		return syntaxError(err)
	}
	if value.Kind() != '{' {
		return ledger.Errorf(ledger.CodeInvalidRequest, "the body must be a JSON object")
	}
	// value is only valid until the next read, so it is not kept: the body
	// is decoded below, now known to be one object and whitespace.
	if _, err := decoder.ReadToken(); err != io.EOF {
		return ledger.Errorf(ledger.CodeInvalidRequest, "the body has data after its JSON object (at byte %d)", decoder.InputOffset())
	}
	err = json.Unmarshal(body, into, json.RejectUnknownMembers(true), json.MatchCaseInsensitiveNames(false))
	if err == nil {
		return nil
	}
	var semantic *json.SemanticError
	if !errors.As(err, &semantic) {
		// The value passed the syntax checks above, so only the meaning
		// can be wrong.
		panic(fmt.Sprintf("gateway: decoding a valid JSON object failed without a semantic error: %T", err))
	}
	member := quoteForMessage(semantic.JSONPointer.LastToken())
	var wrongType *wrongTypeError
	switch {
	case errors.Is(err, json.ErrUnknownName):
		return ledger.Errorf(ledger.CodeInvalidRequest, "the body has an unknown member %s (member names are case-sensitive)", member)
	case errors.As(err, &wrongType):
		return ledger.Errorf(wrongType.code, "%s must be %s", member, wrongType.want)
	}
	return ledger.Errorf(ledger.CodeInvalidRequest, "the body is not valid for this request at member %s", member)
}

// syntaxError describes why a body is not one valid JSON value.
func syntaxError(err error) error {
	var syntactic *jsontext.SyntacticError
	switch {
	case err == io.EOF:
		return ledger.Errorf(ledger.CodeInvalidRequest, "the body is empty; a JSON object is required")
	case errors.Is(err, jsontext.ErrDuplicateName) && errors.As(err, &syntactic):
		return ledger.Errorf(ledger.CodeInvalidRequest, "the body has the member %s more than once", quoteForMessage(syntactic.JSONPointer.LastToken()))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return ledger.Errorf(ledger.CodeInvalidRequest, "the body ends inside its JSON value")
	case errors.As(err, &syntactic):
		return ledger.Errorf(ledger.CodeInvalidRequest, "the body is not valid JSON (at byte %d)", syntactic.ByteOffset)
	}
	return ledger.Errorf(ledger.CodeInvalidRequest, "the body is not valid JSON")
}

// quoteMaximum bounds the client's text quoted in an error message, in
// bytes of the text.
const quoteMaximum = 64

// quoteForMessage quotes a client's text (a member name, a path segment) for
// an error message: ASCII only, so no control, invisible or right-to-left
// character of the client's reaches the message, and bounded.
func quoteForMessage(text string) string {
	if len(text) <= quoteMaximum {
		return strconv.QuoteToASCII(text)
	}
	cut := quoteMaximum
	for cut > 0 && !utf8.RuneStart(text[cut]) {
		cut--
	}
	return strconv.QuoteToASCII(text[:cut]) + "..."
}

// wrongTypeError is a member of the wrong JSON type; code is the member's
// one code for that.
type wrongTypeError struct {
	code ledger.Code
	want string
}

func (e *wrongTypeError) Error() string { return "a member must be " + e.want }

// numberWanted is what a number member must be.
const numberWanted = "a JSON number (an integer, without quotes)"

// readNumber reads a JSON number literal as text; any other kind, null
// included, is a wrongTypeError with code.
func readNumber(decoder *jsontext.Decoder, code ledger.Code) (string, error) {
	if decoder.PeekKind() != '0' {
		return "", &wrongTypeError{code: code, want: numberWanted}
	}
	value, err := decoder.ReadValue()
	if err != nil {
		return "", err
	}
	return string(value), nil
}

// jsonNumber is a JSON number member kept as its literal text, so that the
// parsers see exactly what the client sent. A quoted number ("10"), null or
// any other kind is refused with invalid_request.
type jsonNumber string

// UnmarshalJSONFrom accepts only a bare JSON number.
func (n *jsonNumber) UnmarshalJSONFrom(decoder *jsontext.Decoder) error {
	literal, err := readNumber(decoder, ledger.CodeInvalidRequest)
	*n = jsonNumber(literal)
	return err
}

// amountLiteral is the amount member: a jsonNumber whose every wrong type
// or shape is invalid_amount, like its wrong values (ledger.ParseAmount), so
// an amount has one code whatever is wrong with it.
type amountLiteral string

// UnmarshalJSONFrom accepts only a bare JSON number.
func (a *amountLiteral) UnmarshalJSONFrom(decoder *jsontext.Decoder) error {
	literal, err := readNumber(decoder, ledger.CodeInvalidAmount)
	*a = amountLiteral(literal)
	return err
}

// jsonString is a JSON string member; null or any other kind is refused
// with invalid_request.
type jsonString string

// UnmarshalJSONFrom accepts only a JSON string.
func (s *jsonString) UnmarshalJSONFrom(decoder *jsontext.Decoder) error {
	if decoder.PeekKind() != '"' {
		return &wrongTypeError{code: ledger.CodeInvalidRequest, want: "a JSON string"}
	}
	token, err := decoder.ReadToken()
	if err != nil {
		return err
	}
	*s = jsonString(token.String())
	return nil
}

// literalQuoteMaximum bounds a number literal quoted in an error message.
const literalQuoteMaximum = 24

// accountField parses a JSON number literal as an account id.
func accountField(name string, value jsonNumber) (int64, error) {
	if value == "" {
		return 0, ledger.Errorf(ledger.CodeInvalidRequest, "%s is required", name)
	}
	id, err := strconv.ParseInt(string(value), 10, 64)
	if err != nil || id <= 0 {
		if len(value) > literalQuoteMaximum {
			return 0, ledger.Errorf(ledger.CodeInvalidRequest, "%s is not a positive integer below 2^63", name)
		}
		return 0, ledger.Errorf(ledger.CodeInvalidRequest, "%s %s is not a positive integer", name, value)
	}
	return id, nil
}

// amountField parses the amount literal by the ledger's rules
// (ledger.ParseAmount: an integer of minor units, no fraction, no exponent,
// positive, at most ledger.MaxAmountMinor). A literal too long to be valid
// is refused without echoing it.
func amountField(value amountLiteral) (int64, error) {
	if len(value) > literalQuoteMaximum {
		return 0, ledger.Errorf(ledger.CodeInvalidAmount, "amount is not an integer of at most %d minor units", ledger.MaxAmountMinor)
	}
	return ledger.ParseAmount(string(value))
}
