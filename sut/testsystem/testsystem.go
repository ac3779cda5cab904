// Package testsystem is a small in-memory payment system that speaks the
// public HTTP API of sut/openapi.yaml as far as Ledgerproof's load client
// (load/client) uses it: signup, sign-in with bearer tokens, deposits,
// withdrawals and transfers guarded by idempotency keys, transaction status
// and account balance. It shares no code with the reference system (sut/…),
// so an end-to-end test can run `ledgerproof run --stack external
// --ledger-export DIR --export-command CMD` against a system nobody here
// wrote, and audit the ledger it exports in the format of docs/audit.md.
//
// With Options.Bug empty it is a correct system, whose runs must audit
// clean. A Bug makes it wrong on purpose, so a test can show that the
// auditor catches that kind of mistake:
//
//   - "lost-update": every balance change reads the balance, lets go of the
//     lock for a moment, then writes what it read plus the change; concurrent
//     operations on one account overwrite each other's balance while every
//     posting is still written, so stored balances stop equalling the sums
//     of their postings;
//   - "double-apply": money commands ignore their idempotency keys; every
//     request, a retry or a duplicate included, is a new transaction with an
//     id of its own, and a key reused with another body is applied too.
//
// The whole state is guarded by one mutex, held from a money request's
// idempotency check to its outcome (and by the applier for each apply): a
// correct system by construction, fast enough for a test's load. Money is
// in integer minor units of one currency; account 0 is the external account
// that deposits come from and withdrawals go to.
//
// Options.Shape picks the dialect the system speaks over HTTP: the
// reference API of sut/openapi.yaml (http.go), or "v2" (v2.go), a payment
// API of another shape (other routes, headers, bodies, statuses and error
// codes, amounts as decimal strings of major units). Both are thin layers
// over the same operations: one ledger, one idempotency contract, the same
// bugs and the same export; only the parsing and the encoding differ.
package testsystem

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ledgerproof/ledgerproof/invariants"
)

// Names of the bugs Options.Bug can switch on.
const (
	BugLostUpdate  = "lost-update"
	BugDoubleApply = "double-apply"
)

// Limits of the system, in minor units and counts, as sut/openapi.yaml
// documents them for the reference system.
const (
	// amountMaximumMinor is the largest amount of one operation.
	amountMaximumMinor int64 = 100_000_000_000
	// balanceMaximumMinor is the largest balance of a user account: a credit
	// beyond it is rejected with balance_limit, so no balance overflows.
	balanceMaximumMinor int64 = 1_000_000_000_000
	// pendingMaximum bounds the commands accepted and not yet applied (the
	// ApplyDelay mode); beyond it money requests answer 503 and the client
	// retries with the same key.
	pendingMaximum = 1 << 16
	// lostUpdatePause is how long the lost-update bug leaves a balance it
	// has read unguarded: long enough for a concurrent request to slip in.
	lostUpdatePause = time.Millisecond
)

// Names of the API shapes Options.Shape can pick.
const (
	ShapeReference = "reference"
	ShapeV2        = "v2"
)

// Transaction kinds and statuses, as the API and the export spell them.
const (
	kindDeposit    = "deposit"
	kindWithdrawal = "withdrawal"
	kindTransfer   = "transfer"

	statusAccepted = "accepted"
	statusSettled  = "settled"
	statusRejected = "rejected"
)

// externalAccountID is the account of the world outside the ledger.
const externalAccountID = 0

// Options configure a System. The zero value is a correct synchronous system.
type Options struct {
	// ApplyDelay, when positive, makes the system asynchronous: every money
	// command is answered 202 Accepted (status "accepted") at once and
	// applied ApplyDelay later by one background applier, in the order the
	// commands were received, so in order per account. "Prefer: wait" is
	// ignored: the system never waits. Default 0: every command is applied
	// before its answer, which is the final outcome (200, as the reference
	// answers within a "Prefer: wait").
	ApplyDelay time.Duration
	// Latency, when positive, delays every answer by a random time below
	// it, as a system behind a network and a database answers: a client's
	// early timeouts (the gate's give up after at most 50ms and retry) then
	// fire on some requests, as they would against a deployed system.
	Latency time.Duration
	// Bug, when not empty, makes the system wrong on purpose: BugLostUpdate
	// or BugDoubleApply (see the package comment). Default "": correct.
	Bug string
	// Shape is the API the handler speaks: ShapeReference (or "", the
	// default), the reference API of sut/openapi.yaml, or ShapeV2, the
	// payment API of v2.go. Either way GET /healthz and POST /admin/export
	// are the same, and so are the ledger and its export.
	Shape string
}

// validate rejects unknown bugs and shapes, and contradictions.
func (o Options) validate() error {
	if o.ApplyDelay < 0 || o.Latency < 0 {
		return fmt.Errorf("testsystem: negative apply delay %s or latency %s", o.ApplyDelay, o.Latency)
	}
	switch o.Shape {
	case "", ShapeReference, ShapeV2:
	default:
		return fmt.Errorf("testsystem: unknown API shape %q (want %q or %q)", o.Shape, ShapeReference, ShapeV2)
	}
	switch o.Bug {
	case "", BugDoubleApply:
	case BugLostUpdate:
		// One applier applies the delayed commands one after the other, so
		// no two updates could ever race: the bug would be switched on and
		// silently do nothing.
		if o.ApplyDelay > 0 {
			return errors.New("testsystem: the lost-update bug needs concurrent applies; it cannot be combined with an apply delay")
		}
	default:
		return fmt.Errorf("testsystem: unknown bug %q (want %q or %q)", o.Bug, BugLostUpdate, BugDoubleApply)
	}
	return nil
}

// user is a signed-up user with its one account.
type user struct {
	id, accountID int64
	email         string
	// passwordSalt and passwordDigest hold the password as SHA-256 of salt
	// and password: a test system needs no costly key derivation.
	passwordSalt, passwordDigest []byte
}

// account is a user account, or the external account (userID 0).
type account struct {
	id, userID, balance int64
}

// command is what a money request asks for; two requests with one key are
// the same request when their commands are equal (the kind and the parsed
// accounts and amount, not the body's bytes).
type command struct {
	kind                string
	source, destination int64
	amountMinor         int64
}

// transaction is one logical money request and its fate.
type transaction struct {
	id             string
	userID         int64
	idempotencyKey string
	command        command
	// status is accepted until the transaction is decided, then settled or
	// rejected (with reason) for good.
	status, reason string
	// appliedOrder numbers the decided transactions in the order they were
	// decided (the export's applied_order); 0 while accepted.
	appliedOrder int64
}

// posting is one leg of a settled transaction.
type posting struct {
	id            int64
	transactionID string
	accountID     int64
	amountMinor   int64
	// balanceAfter is the account's balance right after the posting,
	// recorded for user accounts only (nil for the external one).
	balanceAfter *int64
}

// idempotencyKey scopes a client's key to its user.
type idempotencyKey struct {
	userID int64
	key    string
}

// idempotencyRecord is the first answer to a key, replayed to every request
// that repeats its command: its HTTP status (200 or 202) and the
// transaction as it was then, which each API shape encodes its own way.
// answer is nil while that first request is still being applied (possible
// only with the lost-update bug, which lets go of the lock in the middle of
// an apply).
type idempotencyRecord struct {
	command command
	status  int
	answer  *transaction
}

// System is the in-memory payment system. Its methods and its handler are
// safe for concurrent use.
type System struct {
	options Options
	now     func() time.Time

	// mutex guards everything below it.
	mutex        sync.Mutex
	users        map[int64]*user
	usersByEmail map[string]*user
	// sessions maps a bearer token to its user and expiry.
	sessions map[string]session
	// accounts holds every account, the external one included, in id order.
	accounts []*account
	// transactions holds every transaction by id; decided holds the
	// decided ones in the order they were decided.
	transactions map[string]*transaction
	decided      []*transaction
	postings     []posting
	keys         map[idempotencyKey]*idempotencyRecord
	// pending counts the accepted commands the applier has not applied yet.
	pending int
	closed  bool

	// queue carries accepted commands to the applier, in the order they were
	// accepted, each with the time it is due.
	queue       chan delayedCommand
	stop        chan struct{}
	applierDone chan struct{}
	closeOnce   sync.Once
	// requests numbers requests for their X-Request-Id.
	requests atomic.Int64
}

// session is a signed-in user's bearer token.
type session struct {
	userID  int64
	expires time.Time
}

// delayedCommand is an accepted transaction waiting for the applier.
type delayedCommand struct {
	transaction *transaction
	due         time.Time
}

// New returns a system with no users and the external account, and starts
// its applier when options.ApplyDelay is positive. Close stops it.
func New(options Options) (*System, error) {
	if err := options.validate(); err != nil {
		return nil, err
	}
	s := &System{
		options:      options,
		now:          time.Now,
		users:        make(map[int64]*user),
		usersByEmail: make(map[string]*user),
		sessions:     make(map[string]session),
		accounts:     []*account{{id: externalAccountID}},
		transactions: make(map[string]*transaction),
		keys:         make(map[idempotencyKey]*idempotencyRecord),
		stop:         make(chan struct{}),
		applierDone:  make(chan struct{}),
	}
	if options.ApplyDelay > 0 {
		s.queue = make(chan delayedCommand, pendingMaximum)
		go s.applyDelayed()
	} else {
		close(s.applierDone)
	}
	return s, nil
}

// Close stops the applier; commands it has not applied yet stay accepted,
// and later money requests answer 503. Close may be called more than once.
func (s *System) Close() {
	s.closeOnce.Do(func() {
		s.mutex.Lock()
		s.closed = true
		s.mutex.Unlock()
		close(s.stop)
		<-s.applierDone
	})
}

// applyDelayed is the applier of the ApplyDelay mode: it applies the queued
// commands one at a time, each when it is due. The queue is in acceptance
// order and every command waits the same delay, so due times never go back.
func (s *System) applyDelayed() {
	defer close(s.applierDone)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		var next delayedCommand
		select {
		case <-s.stop:
			return
		case next = <-s.queue:
		}
		if wait := next.due.Sub(s.now()); wait > 0 {
			timer.Reset(wait)
			select {
			case <-s.stop:
				timer.Stop()
				return
			case <-timer.C:
			}
		}
		s.mutex.Lock()
		s.apply(next.transaction)
		s.pending--
		s.mutex.Unlock()
	}
}

// transactionID derives a transaction's id from its user and key, as a
// name-based UUID (version 8, from SHA-256), so every retry of one logical
// request names the same transaction. copyNumber is 0 but for the
// double-apply bug, whose repeated requests each need an id of their own.
func transactionID(userID int64, key string, copyNumber int64) string {
	hash := sha256.New()
	var numbers [16]byte
	binary.BigEndian.PutUint64(numbers[:8], uint64(userID))
	binary.BigEndian.PutUint64(numbers[8:], uint64(copyNumber))
	hash.Write([]byte("ledgerproof testsystem transaction\x00"))
	hash.Write(numbers[:])
	hash.Write([]byte(key))
	var id [16]byte
	copy(id[:], hash.Sum(nil))
	id[6] = id[6]&0x0f | 0x80 // version 8
	id[8] = id[8]&0x3f | 0x80 // RFC 9562 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", id[0:4], id[4:6], id[6:8], id[8:10], id[10:16])
}

// account returns the account with this id, or nil. Ids are positions in
// s.accounts. The caller holds the mutex.
func (s *System) account(id int64) *account {
	if id < 0 || id >= int64(len(s.accounts)) {
		return nil
	}
	return s.accounts[id]
}

// apply decides an accepted transaction: it is rejected with a reason when
// an account is missing or not the user's, the debited account cannot cover
// the amount or the credited one would pass the balance limit; otherwise it
// settles with two postings. The caller holds the mutex.
func (s *System) apply(t *transaction) {
	if t.status != statusAccepted {
		panic("testsystem: applying transaction " + t.id + " twice")
	}
	source, destination := s.account(t.command.source), s.account(t.command.destination)
	// The caller's own account is the credited one of a deposit and the
	// debited one otherwise.
	own := source
	if t.command.kind == kindDeposit {
		own = destination
	}
	reason := ""
	switch {
	case source == nil || destination == nil:
		reason = "account_not_found"
	case own.userID != t.userID:
		reason = "forbidden"
	case source == destination:
		reason = "same_account"
	case source.id != externalAccountID && source.balance < t.command.amountMinor:
		reason = "insufficient_funds"
	case destination.id != externalAccountID && destination.balance > balanceMaximumMinor-t.command.amountMinor:
		reason = "balance_limit"
	}
	if reason == "" {
		s.post(t, source, -t.command.amountMinor)
		s.post(t, destination, t.command.amountMinor)
		t.status = statusSettled
	} else {
		t.status, t.reason = statusRejected, reason
	}
	s.decided = append(s.decided, t)
	t.appliedOrder = int64(len(s.decided))
}

// post moves amountMinor (negative: a debit) on an account and records the
// posting. With the lost-update bug it reads the balance, lets go of the
// mutex for a moment, and writes back what it read plus the amount,
// overwriting whatever a concurrent request wrote meanwhile. The caller
// holds the mutex.
func (s *System) post(t *transaction, a *account, amountMinor int64) {
	balance := a.balance
	if s.options.Bug == BugLostUpdate {
		s.mutex.Unlock()
		time.Sleep(lostUpdatePause)
		s.mutex.Lock()
	}
	a.balance = balance + amountMinor
	p := posting{id: int64(len(s.postings)) + 1, transactionID: t.id, accountID: a.id, amountMinor: amountMinor}
	if a.id != externalAccountID {
		after := a.balance
		p.balanceAfter = &after
	}
	s.postings = append(s.postings, p)
}

// WriteExport writes the ledger as it is now into dir (created if needed),
// in the export format of docs/audit.md: accounts.jsonl, transactions.jsonl
// and postings.jsonl. Only decided transactions are written: a command
// accepted and not yet applied (the ApplyDelay mode) is left out, never
// written as settled, as an external system's export taken mid-work would
// be. It does not wait for them: a run's --export-command is run again until
// two exports agree (reports/runner ExportDrain), which is what makes such
// an export whole.
func (s *System) WriteExport(dir string) error {
	if _, err := invariants.Export(context.Background(), ledgerSnapshot{system: s}, dir); err != nil {
		return fmt.Errorf("testsystem: %w", err)
	}
	return nil
}

// Ledger is the system's ledger as an invariants.Source: each Scan reads one
// consistent snapshot of it (what WriteExport writes), for a test that keeps
// a database of its own in step with the system.
func (s *System) Ledger() invariants.Source { return ledgerSnapshot{system: s} }

// ledgerSnapshot reads the system's ledger as an invariants.Source, so that
// invariants.Export writes it in the export format.
type ledgerSnapshot struct{ system *System }

// Describe implements invariants.Source.
func (l ledgerSnapshot) Describe() string { return "testsystem" }

// Scan implements invariants.Source: it copies the ledger under the mutex,
// one consistent snapshot, then hands the rows to the visitor: every account,
// the decided transactions in the order they were decided, and the postings
// in ascending id order. The system sets no record aside, and says it keeps
// no dead letters rather than claiming an empty list.
func (l ledgerSnapshot) Scan(ctx context.Context, visitor invariants.Visitor) error {
	s := l.system
	s.mutex.Lock()
	accounts := make([]invariants.Account, len(s.accounts))
	for i, a := range s.accounts {
		kind := "user"
		if a.id == externalAccountID {
			kind = "external"
		}
		accounts[i] = invariants.Account{ID: a.id, UserID: a.userID, Kind: kind, Balance: a.balance}
	}
	transactions := make([]invariants.Transaction, len(s.decided))
	for i, t := range s.decided {
		order := t.appliedOrder
		transactions[i] = invariants.Transaction{ID: t.id, UserID: t.userID, IdempotencyKey: t.idempotencyKey,
			Kind: t.command.kind, SourceAccountID: t.command.source, DestinationAccountID: t.command.destination,
			Amount: t.command.amountMinor, Status: t.status, Reason: t.reason, AppliedOrder: &order}
	}
	postings := make([]invariants.Posting, len(s.postings))
	for i, p := range s.postings {
		postings[i] = invariants.Posting{ID: p.id, TransactionID: p.transactionID, AccountID: p.accountID,
			Amount: p.amountMinor, BalanceAfter: p.balanceAfter}
	}
	s.mutex.Unlock()

	for i := range accounts {
		if err := visitor.Account(&accounts[i]); err != nil {
			return err
		}
	}
	for i := range transactions {
		if err := visitor.Transaction(&transactions[i]); err != nil {
			return err
		}
	}
	for i := range postings {
		if err := visitor.Posting(&postings[i]); err != nil {
			return err
		}
		if i%4096 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if visitor.DeadLetters != nil {
		return visitor.DeadLetters(false, "the test system keeps no dead letters")
	}
	return nil
}
