package gateway

import (
	"encoding/json"
	"log/slog"
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
	ledger.CodeDailyLimitExceeded:     http.StatusUnprocessableEntity,
	ledger.CodeBodyTooLarge:           http.StatusRequestEntityTooLarge,
	ledger.CodeUnsupportedMediaType:   http.StatusUnsupportedMediaType,
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

// errorBody is the JSON body of every error response. RequestID names the
// request in the gateway's logs (and in the X-Request-Id header).
type errorBody struct {
	Code      ledger.Code `json:"code"`
	Message   string      `json:"message"`
	RequestID string      `json:"request_id"`
}

// serverErrorMessages are the only messages of 5xx answers: what failed
// inside (an address, a connection string, a driver's words) is logged with
// the request id, never told to the client.
var serverErrorMessages = map[ledger.Code]string{
	ledger.CodeUnavailable: "the service is unavailable for a moment; retry later",
	ledger.CodeInternal:    "internal error",
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	if status == http.StatusNoContent {
		w.WriteHeader(status)
		return
	}
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

// errorResponse is the status and body of an error: the domain code's one
// status, and for a 5xx a generic message whatever err says.
func errorResponse(err error, requestID string) (int, []byte) {
	code := ledger.ErrorCode(err)
	status := HTTPStatus(code)
	message := ledger.ErrorMessage(err)
	if status >= http.StatusInternalServerError {
		message = serverErrorMessages[code]
		if message == "" {
			message = serverErrorMessages[ledger.CodeInternal]
		}
	}
	return status, marshal(errorBody{Code: code, Message: message, RequestID: requestID})
}

// writeError answers err with the error body, logs what a 5xx hides (at
// most detailLogs' rate), and returns the status. Every 503 carries a
// Retry-After (1 second unless the handler set another).
func (g *Gateway) writeError(w http.ResponseWriter, r *http.Request, route string, err error) int {
	requestID := stateOf(r).requestID
	status, body := errorResponse(err, requestID)
	if status >= http.StatusInternalServerError {
		level := slog.LevelWarn
		if ledger.ErrorCode(err) == ledger.CodeInternal {
			level = slog.LevelError
		}
		if level == slog.LevelError || g.detailLogs.Allow() {
			g.logger.Log(r.Context(), level, "request failed", "route", route, "request_id", requestID, "status", status, "error", err.Error())
		}
	}
	if status == http.StatusServiceUnavailable && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, body)
	return status
}
