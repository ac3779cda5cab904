package generator

import (
	"context"
	"fmt"

	"github.com/ledgerproof/ledgerproof/load/client"
)

// unknownTransaction is a well-formed transaction id that no system issued: asking for it must find nothing.
const unknownTransaction = "00000000-0000-8000-8000-000000000000"

// walkIteration is one iteration of the smoke walk: every operation of the API once, each answer checked (the
// checks metric), every money operation journaled and recorded like the mixed workload's.
func (e *engine) walkIteration(ctx context.Context, n int64, slot uint64) {
	caller := client.Caller{Slot: slot, Iteration: n - 1}
	check := func(name string, ok bool) { e.recorder.Check(name, ok) }
	money := func(request client.MoneyRequest) client.Result {
		request.Caller = caller
		result := e.ledger.Money(ctx, request)
		e.record(result, "", false)
		return result
	}
	settled := func(label string, r client.Result) {
		check(label+": outcome ok, status settled", r.Outcome == client.OutcomeOK && r.Status == client.StatusSettled)
		check(label+": transaction id and key", r.TransactionID != "" && r.Key != "")
		check(label+": attempts and statuses agree", len(r.Statuses) >= 1)
		check(label+": accept and settle latencies", !r.AcceptedAt.IsZero() && !r.FinalAt.IsZero() && !r.FinalAt.Before(r.Invoke))
	}
	balance := func(session client.Session, expected int64, label string) {
		got, err := e.ledger.Balance(ctx, session, session.AccountID)
		check(fmt.Sprintf("%s: balance is %d", label, expected), err == nil && got == expected)
	}

	email := fmt.Sprintf("%s-walk-%d-%d-%d@ledgerproof.test", e.scenario.Setup.EmailPrefix, e.started.UnixMilli(), e.config.Segment, n)
	password := "smoke-password-1"
	user, err := e.ledger.Signup(ctx, caller, email, password, 1)
	check("signup: user and account ids", err == nil && user.UserID > 0 && user.AccountID > 0)
	if err != nil {
		return
	}
	session, err := e.ledger.Signin(ctx, email, password)
	check("signin: token for the signed-up user", err == nil && session.Token != "" && session.UserID == user.UserID && session.AccountID == user.AccountID)
	if err != nil {
		return
	}
	_, wrongErr := e.ledger.Signin(ctx, email, "wrong-password-1")
	check("signin: wrong password refused", wrongErr != nil)
	balance(session, 0, "new account")

	deposit := money(client.MoneyRequest{Kind: client.KindDeposit, Session: session, To: session.AccountID, Amount: 10000})
	settled("deposit", deposit)
	check("deposit: kind", deposit.Kind == client.KindDeposit)
	balance(session, 10000, "after deposit")

	withdrawal := money(client.MoneyRequest{Kind: client.KindWithdrawal, Session: session, From: session.AccountID, Amount: 2500})
	settled("withdrawal", withdrawal)
	balance(session, 7500, "after withdrawal")

	counterparty := e.accounts[int(n)%len(e.accounts)].Session
	before, beforeErr := e.ledger.Balance(ctx, counterparty, counterparty.AccountID)
	transfer := money(client.MoneyRequest{Kind: client.KindTransfer, Session: session, From: session.AccountID, To: counterparty.AccountID, Amount: 1500})
	settled("transfer", transfer)
	balance(session, 6000, "after transfer")
	after, afterErr := e.ledger.Balance(ctx, counterparty, counterparty.AccountID)
	// Other walkers may credit the same counterparty meanwhile, never debit it: at least the transfer arrived.
	check("transfer: counterparty credited", beforeErr == nil && afterErr == nil && after >= before+1500)

	transaction, found, err := e.ledger.Transaction(ctx, session, transfer.TransactionID)
	check("transaction: found, settled transfer", err == nil && found && transaction.Status == client.StatusSettled && transaction.Kind == client.KindTransfer)
	check("transaction: amount and accounts", err == nil && found && transaction.Amount == 1500 &&
		transaction.SourceAccountID == session.AccountID && transaction.DestinationAccountID == counterparty.AccountID)
	check("transaction: same id", err == nil && found && transaction.ID == transfer.TransactionID)
	_, found, err = e.ledger.Transaction(ctx, session, unknownTransaction)
	check("transaction: unknown id is not found", err == nil && !found)

	replay := money(client.MoneyRequest{Kind: client.KindDeposit, Session: session, To: session.AccountID, Amount: 10000, Key: deposit.Key})
	check("replay: same key answered ok", replay.Outcome == client.OutcomeOK && replay.Status == client.StatusSettled)
	check("replay: same key, same transaction", replay.Key == deposit.Key && replay.TransactionID == deposit.TransactionID)
	balance(session, 6000, "after replay (no second effect)")

	overdraft := money(client.MoneyRequest{Kind: client.KindWithdrawal, Session: session, From: session.AccountID, Amount: 6001})
	check("overdraft: outcome fail", overdraft.Outcome == client.OutcomeFail)
	check("overdraft: reason insufficient_funds", overdraft.Reason == "insufficient_funds")
	check("overdraft: status rejected", overdraft.Status == client.StatusRejected)
	if overdraft.TransactionID != "" {
		rejected, found, err := e.ledger.Transaction(ctx, session, overdraft.TransactionID)
		check("overdraft: transaction rejected", err == nil && found && rejected.Status == client.StatusRejected && rejected.Reason == "insufficient_funds")
	}
	balance(session, 6000, "after overdraft (unchanged)")

	// Two operations of one user at once: both settle, the balance has both.
	results := make(chan client.Result, 2)
	for range 2 {
		go func() {
			results <- money(client.MoneyRequest{Kind: client.KindDeposit, Session: session, To: session.AccountID, Amount: 250})
		}()
	}
	for range 2 {
		settled("concurrent deposit", <-results)
	}
	balance(session, 6500, "after two concurrent deposits")
}
