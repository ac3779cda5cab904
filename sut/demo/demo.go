// Package demo walks a scripted flow over HTTP against a running reference
// stack and checks each answer, so `make demo` fails loudly if the system
// misbehaves (`ledgerproof demo`).
package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/client"
	"github.com/ledgerproof/ledgerproof/sut/stack"
)

// Options are the settings of `ledgerproof demo`.
type Options struct {
	// Dir is the stack directory whose first gateway the demo calls.
	Dir string
	// Gateway is the gateway's base URL; it overrides Dir.
	Gateway string
	// Wait bounds the wait for each outcome (Prefer: wait); CLI default 10s.
	Wait time.Duration
}

// Run walks the flow against the gateway of o, printing each step and
// answer on out; it returns the first unexpected answer as an error.
func Run(ctx context.Context, o Options, out io.Writer) error {
	baseURL := o.Gateway
	if baseURL == "" {
		file, err := stack.Load(o.Dir)
		if err != nil {
			return fmt.Errorf("no stack in %s (start one with 'ledgerproof up' or pass --gateway): %w", o.Dir, err)
		}
		if len(file.Endpoints.Gateways) == 0 {
			return fmt.Errorf("the stack in %s has no gateway", o.Dir)
		}
		baseURL = file.Endpoints.Gateways[0]
	}
	demo := &walk{ctx: ctx, out: out, wait: o.Wait, run: time.Now().UTC().Format("20060102T150405.000000000")}
	return demo.walk(baseURL)
}

// walk is one walk of the flow.
type walk struct {
	ctx  context.Context
	out  io.Writer
	wait time.Duration
	run  string
	step int
}

func (d *walk) say(format string, args ...any) {
	d.step++
	fmt.Fprintf(d.out, "%2d. %s\n", d.step, fmt.Sprintf(format, args...))
}

// show prints a response as the demo does: its status and body, and
// whether it is an idempotent replay.
func show(w io.Writer, response client.Response) {
	replayed := ""
	if response.Replayed {
		replayed = "  [Idempotent-Replayed: true]"
	}
	fmt.Fprintf(w, "    → %d %s%s\n", response.Status, bytes.TrimSpace(response.Body), replayed)
}

// expect checks a response's status and, when not empty, its outcome.
func (d *walk) expect(response client.Response, err error, status int, outcome string) error {
	if err != nil {
		return err
	}
	show(d.out, response)
	if response.Status != status {
		return fmt.Errorf("expected HTTP %d, got %d", status, response.Status)
	}
	if outcome != "" {
		var transaction client.Transaction
		if err := response.Decode(&transaction); err != nil {
			return err
		}
		if got := transaction.Status + "/" + transaction.Reason; got != outcome && transaction.Status != outcome {
			return fmt.Errorf("expected outcome %s, got %s", outcome, got)
		}
	}
	return nil
}

func (d *walk) walk(baseURL string) error {
	ctx := d.ctx
	fmt.Fprintf(d.out, "Ledgerproof demo against %s (run %s)\n\n", baseURL, d.run)
	alice, bob := client.New(baseURL), client.New(baseURL)
	aliceEmail, bobEmail := "alice-"+d.run+"@example.com", "bob-"+d.run+"@example.com"
	const password = "correct horse battery"

	d.say("sign up alice and bob (each gets an account with balance 0)")
	_, aliceAccount, err := alice.Signup(ctx, aliceEmail, password)
	if err != nil {
		return err
	}
	_, bobAccount, err := bob.Signup(ctx, bobEmail, password)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "    → alice: account %d, bob: account %d\n", aliceAccount, bobAccount)

	d.say("sign in both (bearer tokens; sessions in Postgres, cached in Redis and in each gateway)")
	if err := errors.Join(alice.Signin(ctx, aliceEmail, password), bob.Signin(ctx, bobEmail, password)); err != nil {
		return err
	}
	fmt.Fprintln(d.out, "    → two tokens issued")

	d.say("alice deposits 100.00 (10000 minor units), waiting for the outcome")
	response, err := alice.Deposit(ctx, "demo-deposit", aliceAccount, 10_000, d.wait)
	if err := d.expect(response, err, http.StatusOK, "settled"); err != nil {
		return err
	}

	d.say("alice transfers 25.00 to bob, without waiting: 202 Accepted and a transaction id")
	transfer, err := alice.Transfer(ctx, "demo-transfer", aliceAccount, bobAccount, 2_500, 0)
	if err := d.expect(transfer, err, http.StatusAccepted, "accepted"); err != nil {
		return err
	}
	var accepted client.Transaction
	if err := transfer.Decode(&accepted); err != nil {
		return err
	}

	d.say("alice polls the transfer's status until it is final")
	deadline := time.Now().Add(d.wait)
	for {
		response, err = alice.Transaction(ctx, accepted.TransactionID)
		if err != nil {
			return err
		}
		var transaction client.Transaction
		if err := response.Decode(&transaction); err != nil {
			return err
		}
		if transaction.Status == "settled" || time.Now().After(deadline) {
			if err := d.expect(response, nil, http.StatusOK, "settled"); err != nil {
				return err
			}
			break
		}
		time.Sleep(50 * time.Millisecond)
	}

	d.say("alice withdraws 10.00, waiting for the outcome")
	response, err = alice.Withdraw(ctx, "demo-withdrawal", aliceAccount, 1_000, d.wait)
	if err := d.expect(response, err, http.StatusOK, "settled"); err != nil {
		return err
	}

	d.say("alice replays the transfer with the same key and body: the stored response, byte for byte")
	replay, err := alice.Transfer(ctx, "demo-transfer", aliceAccount, bobAccount, 2_500, 0)
	if err := d.expect(replay, err, transfer.Status, ""); err != nil {
		return err
	}
	if !bytes.Equal(replay.Body, transfer.Body) || !replay.Replayed {
		return errors.New("the replay is not the identical stored response")
	}

	d.say("alice reuses the key with another amount: rejected, never applied")
	response, err = alice.Transfer(ctx, "demo-transfer", aliceAccount, bobAccount, 9_999, 0)
	if err := d.expect(response, err, http.StatusUnprocessableEntity, ""); err != nil {
		return err
	}

	d.say("alice tries to withdraw 1000.00, more than she has: rejected, insufficient funds")
	response, err = alice.Withdraw(ctx, "demo-overdraft", aliceAccount, 100_000, d.wait)
	if err := d.expect(response, err, http.StatusOK, "rejected/insufficient_funds"); err != nil {
		return err
	}

	d.say("bob tries to read alice's account: not found, as an account that does not exist")
	response, err = bob.Do(ctx, http.MethodGet, fmt.Sprintf("/v1/accounts/%d", aliceAccount), nil, "", 0)
	if err := d.expect(response, err, http.StatusNotFound, ""); err != nil {
		return err
	}

	d.say("balances")
	aliceBalance, err := alice.Balance(ctx, aliceAccount)
	if err != nil {
		return err
	}
	bobBalance, err := bob.Balance(ctx, bobAccount)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "    → alice %d, bob %d (minor units)\n", aliceBalance, bobBalance)
	if aliceBalance != 6_500 || bobBalance != 2_500 {
		return fmt.Errorf("expected alice 6500 and bob 2500")
	}

	d.say("bob signs out: his token is refused from then on")
	token := bob.Token
	if err := bob.Signout(ctx); err != nil {
		return err
	}
	bob.Token = token
	response, err = bob.Do(ctx, http.MethodGet, fmt.Sprintf("/v1/accounts/%d", bobAccount), nil, "", 0)
	if err := d.expect(response, err, http.StatusUnauthorized, ""); err != nil {
		return err
	}
	fmt.Fprintln(d.out, "\ndemo passed: every answer was the expected one")
	return nil
}
