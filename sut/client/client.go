// Package client is a small Go client of the reference system's HTTP API,
// used by the demo and the end-to-end tests. It returns every response's
// status and exact body so callers can compare replays byte for byte.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// Client calls one gateway.
type Client struct {
	BaseURL string
	Token   string
	HTTP    *http.Client
}

// New returns a client of the gateway at baseURL with a 30s request timeout.
func New(baseURL string) *Client {
	return &Client{BaseURL: baseURL, HTTP: &http.Client{Timeout: 30 * time.Second}}
}

// Response is a raw response.
type Response struct {
	Status   int
	Body     []byte
	Replayed bool
	Header   http.Header
}

// Decode decodes the body into value.
func (r Response) Decode(value any) error {
	if err := json.Unmarshal(r.Body, value); err != nil {
		return fmt.Errorf("decode %d response %q: %w", r.Status, r.Body, err)
	}
	return nil
}

// Error is the JSON error body.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// ErrorCode returns the error code of an error response, or "".
func (r Response) ErrorCode() string {
	var e Error
	_ = json.Unmarshal(r.Body, &e)
	return e.Code
}

// Transaction is the transaction resource.
type Transaction struct {
	TransactionID        string `json:"transaction_id"`
	Kind                 string `json:"kind"`
	Status               string `json:"status"`
	Amount               int64  `json:"amount"`
	SourceAccountID      int64  `json:"source_account_id"`
	DestinationAccountID int64  `json:"destination_account_id"`
	Reason               string `json:"reason,omitempty"`
}

// Do sends one request. key sets Idempotency-Key when not empty; wait sets
// "Prefer: wait=N" when positive.
func (c *Client) Do(ctx context.Context, method, path string, body any, key string, wait time.Duration) (Response, error) {
	var reader io.Reader
	if body != nil {
		raw, ok := body.([]byte)
		if !ok {
			var err error
			if raw, err = json.Marshal(body); err != nil {
				return Response{}, err
			}
		}
		reader = bytes.NewReader(raw)
	}
	request, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, reader)
	if err != nil {
		return Response{}, err
	}
	if body != nil {
		request.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		request.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if key != "" {
		request.Header.Set("Idempotency-Key", key)
	}
	if wait > 0 {
		request.Header.Set("Prefer", "wait="+strconv.FormatFloat(wait.Seconds(), 'f', -1, 64))
	}
	response, err := c.HTTP.Do(request)
	if err != nil {
		return Response{}, err
	}
	defer response.Body.Close()
	data, err := io.ReadAll(io.LimitReader(response.Body, 1<<20))
	if err != nil {
		return Response{}, err
	}
	return Response{Status: response.StatusCode, Body: data, Replayed: response.Header.Get("Idempotent-Replayed") == "true",
		Header: response.Header}, nil
}

// Signup creates a user; it returns the user's account id.
func (c *Client) Signup(ctx context.Context, email, password string) (userID, accountID int64, err error) {
	response, err := c.Do(ctx, http.MethodPost, "/v1/users", map[string]string{"email": email, "password": password}, "", 0)
	if err != nil {
		return 0, 0, err
	}
	if response.Status != http.StatusCreated {
		return 0, 0, fmt.Errorf("signup: %d %s", response.Status, response.Body)
	}
	var user struct {
		UserID    int64 `json:"user_id"`
		AccountID int64 `json:"account_id"`
	}
	err = response.Decode(&user)
	return user.UserID, user.AccountID, err
}

// Signin signs in and keeps the token for later calls.
func (c *Client) Signin(ctx context.Context, email, password string) error {
	response, err := c.Do(ctx, http.MethodPost, "/v1/sessions", map[string]string{"email": email, "password": password}, "", 0)
	if err != nil {
		return err
	}
	if response.Status != http.StatusCreated {
		return fmt.Errorf("signin: %d %s", response.Status, response.Body)
	}
	var session struct {
		Token string `json:"token"`
	}
	if err := response.Decode(&session); err != nil {
		return err
	}
	c.Token = session.Token
	return nil
}

// Signout ends every session of the signed-in user (DELETE /v1/sessions):
// the token, and every other token of the user, is refused from then on by
// every gateway (within a second or so on the others). It forgets the token.
func (c *Client) Signout(ctx context.Context) error {
	response, err := c.Do(ctx, http.MethodDelete, "/v1/sessions", nil, "", 0)
	if err != nil {
		return err
	}
	if response.Status != http.StatusNoContent {
		return fmt.Errorf("signout: %d %s", response.Status, response.Body)
	}
	c.Token = ""
	return nil
}

// Deposit moves amount from outside into accountID.
func (c *Client) Deposit(ctx context.Context, key string, accountID, amount int64, wait time.Duration) (Response, error) {
	return c.Do(ctx, http.MethodPost, "/v1/deposits", map[string]int64{"account_id": accountID, "amount": amount}, key, wait)
}

// Withdraw moves amount out of accountID.
func (c *Client) Withdraw(ctx context.Context, key string, accountID, amount int64, wait time.Duration) (Response, error) {
	return c.Do(ctx, http.MethodPost, "/v1/withdrawals", map[string]int64{"account_id": accountID, "amount": amount}, key, wait)
}

// Transfer moves amount between accounts.
func (c *Client) Transfer(ctx context.Context, key string, from, to, amount int64, wait time.Duration) (Response, error) {
	return c.Do(ctx, http.MethodPost, "/v1/transfers", map[string]int64{"from_account_id": from, "to_account_id": to, "amount": amount}, key, wait)
}

// Transaction reads a transaction.
func (c *Client) Transaction(ctx context.Context, id string) (Response, error) {
	return c.Do(ctx, http.MethodGet, "/v1/transactions/"+id, nil, "", 0)
}

// Balance reads an account's balance.
func (c *Client) Balance(ctx context.Context, accountID int64) (int64, error) {
	response, err := c.Do(ctx, http.MethodGet, "/v1/accounts/"+strconv.FormatInt(accountID, 10), nil, "", 0)
	if err != nil {
		return 0, err
	}
	if response.Status != http.StatusOK {
		return 0, fmt.Errorf("balance: %d %s", response.Status, response.Body)
	}
	var account struct {
		Balance int64 `json:"balance"`
	}
	err = response.Decode(&account)
	return account.Balance, err
}
