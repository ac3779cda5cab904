package gateway

import (
	"encoding/json"
	"net/http"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

// statusOf maps every domain error code to its HTTP status. It is the only
// place that does; handlers return domain errors and writeError looks here.
var statusOf = map[ledger.Code]int{
	ledger.CodeInvalidRequest:         http.StatusBadRequest,
	ledger.CodeInvalidAmount:          http.StatusBadRequest,
	ledger.CodeInvalidEmail:           http.StatusBadRequest,
	ledger.CodeWeakPassword:           http.StatusBadRequest,
	ledger.CodeIdempotencyKeyMissing:  http.StatusBadRequest,
	ledger.CodeSameAccount:            http.StatusBadRequest,
	ledger.CodeInvalidCredentials:     http.StatusUnauthorized,
	ledger.CodeUnauthenticated:        http.StatusUnauthorized,
	ledger.CodeForbidden:              http.StatusForbidden,
	ledger.CodeNotFound:               http.StatusNotFound,
	ledger.CodeAccountNotFound:        http.StatusNotFound,
	ledger.CodeEmailTaken:             http.StatusConflict,
	ledger.CodeIdempotencyKeyInFlight: http.StatusConflict,
	ledger.CodeIdempotencyKeyReused:   http.StatusUnprocessableEntity,
	ledger.CodeInsufficientFunds:      http.StatusUnprocessableEntity,
	ledger.CodeBalanceLimit:           http.StatusUnprocessableEntity,
	ledger.CodeBodyTooLarge:           http.StatusRequestEntityTooLarge,
	ledger.CodeRateLimited:            http.StatusTooManyRequests,
	ledger.CodeInternal:               http.StatusInternalServerError,
	ledger.CodeUnavailable:            http.StatusServiceUnavailable,
}

// HTTPStatus returns the HTTP status of a domain error code.
func HTTPStatus(code ledger.Code) int {
	if status, ok := statusOf[code]; ok {
		return status
	}
	return http.StatusInternalServerError
}

// errorBody is the JSON body of every error response.
type errorBody struct {
	Code    ledger.Code `json:"code"`
	Message string      `json:"message"`
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func marshal(value any) []byte {
	body, err := json.Marshal(value)
	if err != nil {
		// Every value marshalled here is a plain struct of this package.
		panic("gateway: marshal response: " + err.Error())
	}
	return append(body, '\n')
}

func errorResponse(err error) (int, []byte) {
	code := ledger.ErrorCode(err)
	return HTTPStatus(code), marshal(errorBody{Code: code, Message: ledger.ErrorMessage(err)})
}
