package generator

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ledgerproof/ledgerproof/load/client"
)

// Account is a prepared account: a signed-in user with its funding settled.
type Account struct {
	Session client.Session
	// FundingMinor is the opening deposit that settled.
	FundingMinor int64
}

// SetupConfig is what setup prepares.
type SetupConfig struct {
	// Count accounts, each funded with FundingMinor, Concurrency at a time, all within Timeout.
	Count        int
	FundingMinor int64
	Concurrency  int
	Timeout      time.Duration
	Password     string
	// EmailPrefix and RunTag make the emails unique per run and per generator process; FirstIndex numbers this
	// process's accounts apart from the other processes' (a segment's accounts are disjoint from the others').
	EmailPrefix, RunTag string
	FirstIndex          int
	// RetryPause is the pause between two tries of a step that failed for a reason a retry may cure.
	// Default 200ms.
	RetryPause time.Duration
	// Progress, when set, is called after each prepared account with the number ready so far.
	Progress func(ready int)
}

// SetupError says which accounts setup could not prepare and why.
type SetupError struct {
	Ready, Count int
	// Missing maps each unprepared account's email to what is missing.
	Missing map[string]string
}

func (e *SetupError) Error() string {
	emails := make([]string, 0, len(e.Missing))
	for email := range e.Missing {
		emails = append(emails, email)
	}
	sort.Strings(emails)
	var b strings.Builder
	fmt.Fprintf(&b, "setup prepared %d of %d accounts; missing:", e.Ready, e.Count)
	for i, email := range emails {
		if i == 5 {
			fmt.Fprintf(&b, "\n  ... and %d more", len(emails)-5)
			break
		}
		fmt.Fprintf(&b, "\n  %s: %s", email, e.Missing[email])
	}
	return b.String()
}

// Prepare signs up, signs in and funds the accounts. Every step is retried, with the same email and the same
// funding idempotency key, until it is done or the timeout passes: a fault during setup (a broker restarting, a
// funding deposit answered 202 and settled later) delays the setup, it does not abort it. What could not be
// prepared in time is returned as a *SetupError naming each account and the step it is stuck at.
func Prepare(ctx context.Context, ledger client.Ledger, config SetupConfig) ([]Account, error) {
	if config.Count < 1 || config.Concurrency < 1 || config.Timeout <= 0 {
		return nil, fmt.Errorf("setup: count %d, concurrency %d, timeout %s: all must be positive", config.Count, config.Concurrency, config.Timeout)
	}
	if config.RetryPause <= 0 {
		config.RetryPause = 200 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(ctx, config.Timeout)
	defer cancel()
	accounts := make([]Account, config.Count)
	problems := make([]string, config.Count)
	emails := make([]string, config.Count)
	indexes := make(chan int)
	var ready atomic.Int64
	var wait sync.WaitGroup
	for range min(config.Concurrency, config.Count) {
		wait.Add(1)
		go func() {
			defer wait.Done()
			for index := range indexes {
				emails[index] = fmt.Sprintf("%s-%s-%d@ledgerproof.test", config.EmailPrefix, config.RunTag, config.FirstIndex+index)
				account, problem := prepareOne(ctx, ledger, config, emails[index], index)
				if problem != "" {
					problems[index] = problem
					continue
				}
				accounts[index] = account
				done := ready.Add(1)
				if config.Progress != nil {
					config.Progress(int(done))
				}
			}
		}()
	}
	for index := range config.Count {
		indexes <- index
	}
	close(indexes)
	wait.Wait()
	failure := &SetupError{Ready: int(ready.Load()), Count: config.Count, Missing: map[string]string{}}
	for index, problem := range problems {
		if problem != "" {
			failure.Missing[emails[index]] = problem
		}
	}
	if len(failure.Missing) > 0 {
		return nil, failure
	}
	return accounts, nil
}

// prepareOne prepares one account, retrying each step until it is done or ctx ends; it returns what is missing
// when it could not finish.
func prepareOne(ctx context.Context, ledger client.Ledger, config SetupConfig, email string, index int) (Account, string) {
	pause := func() bool {
		timer := time.NewTimer(config.RetryPause)
		defer timer.Stop()
		select {
		case <-timer.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
	// Sign up. An answer that proves nothing was created (no answer, 5xx, 429) is retried with the same
	// email; email_taken after such an answer means an earlier attempt created the user.
	var lastProblem string
	signedUp := false
	for !signedUp {
		_, err := ledger.Signup(ctx, client.SetupCaller, email, config.Password, 3)
		var answer *client.Error
		switch {
		case err == nil:
			signedUp = true
		case errors.As(err, &answer) && answer.Code == "email_taken" && lastProblem != "":
			// An earlier try got no answer but created the user.
			signedUp = true
		case errors.As(err, &answer) && answer.Definitive():
			return Account{}, "sign-up refused: " + err.Error()
		default:
			lastProblem = err.Error()
			if !pause() {
				return Account{}, "not signed up: " + lastProblem
			}
		}
	}
	var session client.Session
	for {
		var err error
		session, err = ledger.Signin(ctx, email, config.Password)
		if err == nil {
			break
		}
		if !pause() {
			return Account{}, "signed up, but not signed in: " + err.Error()
		}
	}
	// Fund it, with one key for every try, so that however many tries it takes the account is funded once.
	key := fmt.Sprintf("setup-%s-%d", config.RunTag, config.FirstIndex+index)
	for {
		result := ledger.Money(ctx, client.MoneyRequest{Kind: client.KindDeposit, Session: session, To: session.AccountID,
			Amount: config.FundingMinor, Key: key, PollFor: 30 * time.Second, Caller: client.SetupCaller})
		switch result.Outcome {
		case client.OutcomeOK:
			return Account{Session: session, FundingMinor: config.FundingMinor}, ""
		case client.OutcomeFail:
			return Account{}, fmt.Sprintf("funding deposit (key %s) refused: %s", key, result.Reason)
		}
		if !pause() {
			return Account{}, fmt.Sprintf("funding deposit (key %s) not settled: last answer %s %s %s, statuses %v",
				key, result.Outcome, result.Status, result.Reason, result.Statuses)
		}
	}
}
