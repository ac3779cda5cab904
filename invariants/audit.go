package invariants

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// The scopes of no-phantoms; see Config.Scope.
const (
	ScopeRun    = "run"
	ScopeLedger = "ledger"
)

// Config configures an audit.
type Config struct {
	// RunDir is the run directory: journal.jsonl (and any journal*.jsonl),
	// optionally cache-staleness.jsonl. Required.
	RunDir string
	// Ledger is the system's ledger. Required.
	Ledger Source
	// Cache reads cached balances for cache-coherence. Nil skips that
	// invariant (status "skipped", with CacheNote as the reason).
	Cache     CacheReader
	CacheNote string
	// Drain reports how much work the pipeline still has; the audit waits
	// for it to reach zero before reading the ledger. Nil: nothing to wait
	// for (an export is a finished ledger).
	Drain DrainProbe
	// Stalls, when the pipeline did not drain, names the components that
	// stopped making progress and why (the liveness invariant); nil: the
	// lagging partitions are reported without an owner.
	Stalls StallProbe
	// DrainTimeout bounds the wait. Default 60s: a healthy pipeline drains
	// a gate run's backlog in seconds; a stuck one must not hang CI.
	DrainTimeout time.Duration
	// DrainPoll is the pause between drain probes. Default 250ms.
	DrainPoll time.Duration
	// Scope says which ledger transactions must map to the journal for
	// no-phantoms. ScopeRun (the default) checks the transactions of the
	// users the journal mentions, so a run can be audited on a ledger that
	// earlier runs also wrote to; the others are counted and reported as out
	// of scope. ScopeLedger checks every transaction (a fresh ledger).
	Scope string
	// MaxViolations is how many violations each invariant lists (all are
	// counted). Default 20: enough to see a pattern, small enough to read.
	MaxViolations int
	// Require lists the coverage classes (ClassDuplicates, ClassKeyReuse,
	// ClassInsufficientFunds...) the run must have exercised, each with who
	// required it; ClassMoneyOperations is always required. A class that
	// did not happen makes the verdict weak. Default none: nothing but money
	// operations is required. RequireNote says where they came from (the
	// run's scenario), for the report.
	Require     []Requirement
	RequireNote string
	// MaxBalanceMinor is the largest balance the system lets an account
	// hold, to judge balance_limit rejections; 0 (the default) means not
	// known, and those rejections are not decidable. The reference system's
	// is ledger.MaxBalanceMinor.
	MaxBalanceMinor int64
	// MaxAmountMinor is the largest amount the system accepts in one
	// operation, to judge invalid_amount rejections of positive amounts; 0
	// (the default) means not known. The reference system's is
	// ledger.MaxAmountMinor.
	MaxAmountMinor int64
	// NoSettlement, when not empty, says why the system has no settlement
	// pipeline to judge (a local stack started with up --settlement=false):
	// settlement-exactly-once is skipped with it as the note.
	NoSettlement string
	// DailyDebitLimitMinor is the daily debit limit the system enforced
	// (per user, per UTC day), for limits-respected; 0 (the default) means
	// not known: the days' debits are not checked. The reference system's
	// is its gateways' and workers' --daily-debit-limit (docs/limits.md).
	DailyDebitLimitMinor int64
	// Sagas reads the sagas of a sharded ledger (every shard's saga log,
	// destination decisions and saga postings) for saga-atomicity. Nil (the
	// default, one shard): that invariant is not exercised.
	Sagas SagaSource
	// Progress receives progress lines (drain, phases). Nil discards them.
	Progress io.Writer
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (c *Config) applyDefaults() error {
	if c.RunDir == "" {
		return errors.New("audit: RunDir is required")
	}
	if c.Ledger == nil {
		return errors.New("audit: Ledger is required")
	}
	switch c.Scope {
	case "":
		c.Scope = ScopeRun
	case ScopeRun, ScopeLedger:
	default:
		return fmt.Errorf("audit: scope %q (want %q or %q)", c.Scope, ScopeRun, ScopeLedger)
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 60 * time.Second
	}
	if c.DrainPoll <= 0 {
		c.DrainPoll = 250 * time.Millisecond
	}
	if c.MaxViolations <= 0 {
		c.MaxViolations = 20
	}
	for _, requirement := range c.Require {
		if _, known := classDescription(requirement.Class); !known {
			return fmt.Errorf("audit: unknown coverage class %q (known: %s)", requirement.Class, strings.Join(ClassNames(), ", "))
		}
	}
	if c.MaxBalanceMinor < 0 || c.MaxAmountMinor < 0 || c.DailyDebitLimitMinor < 0 {
		return errors.New("audit: MaxBalanceMinor, MaxAmountMinor and DailyDebitLimitMinor must not be negative")
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// ErrCannotAudit wraps every error that kept the audit from reaching a
// verdict (no journal, ledger unreachable, malformed export...).
var ErrCannotAudit = errors.New("could not audit")

// accountState is what the audit accumulates per ledger account.
type accountState struct {
	userID     int64
	balance    int64
	listed     bool
	external   bool
	postingSum int64
	postings   int64
	// replay is the balance replayed in posting order; negative marks the
	// account as already reported overdrawn (once per dip).
	replay    int64
	overdrawn bool
}

// txRow is the compact form of one ledger transaction (88 bytes; its id
// lives in the auditor's arena).
type txRow struct {
	// idHash is the first half of the 128-bit hash of the id, compared
	// with the journal's tx.
	idHash   uint64
	idStart  uint32
	key      int32
	idLength uint16
	reason   uint16
	kind     opKind
	status   status
	hasOrder bool
	// postings counts the row's postings, saturating at 255.
	postings    uint8
	partition   int32
	user        int64
	source      int64
	destination int64
	amount      int64
	order       int64
	postingSum  int64
	// debitPosting is the id of the posting debiting the source account.
	debitPosting int64
}

type auditor struct {
	config Config
	// lastLag is the lag per partition the last drain probe saw; stalled
	// counts acknowledged operations not in the ledger of a pipeline that
	// stalled: liveness reports them, durability does not judge them lost.
	lastLag map[int32]int64
	stalled int64
	hash    *hasher
	history *history
	journal *journalReader
	result  *Result

	accounts    map[int64]*accountState
	rows        []txRow
	rowIndex    map[[2]uint64]int32
	arena       []byte
	phantomRows []int32
	// phantomKeys holds the idempotency keys of phantom rows (the only
	// rows whose key cannot be read back from the journal).
	phantomKeys map[int32]string
	// outOfScope counts transactions left out of no-phantoms by ScopeRun.
	outOfScope int64
	extraRows  []int32

	invariants map[string]*InvariantResult

	deadLetters *deadLetterState
	// settlements is settlement-exactly-once's state (settlement.go).
	settlements settlementState
	// sagas is what saga-atomicity read from a sharded ledger (saga.go).
	sagas sagaAudit

	// rejections is justified-rejection's state (rejections.go); coverage
	// the coverage being built and duplicates its duplicate counts
	// (coverage.go).
	rejections rejectionState
	// limits is limits-respected's state (limits.go).
	limits     limitState
	coverage   *Coverage
	duplicates DuplicateCoverage

	settledDeposits, settledWithdrawals int64
	lastPostingID                       int64
	postingsSeen                        int64
}

// Audit runs the whole audit: drain, read the journal and the ledger, check
// every invariant. An error wrapping ErrCannotAudit means no verdict could
// be reached; otherwise the Result's Verdict says passed, violated, or
// incomplete (not drained, or part of the input unreadable).
func Audit(ctx context.Context, config Config) (*Result, error) {
	if err := config.applyDefaults(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCannotAudit, err)
	}
	started := config.Now()
	a := &auditor{
		config:      config,
		hash:        newHasher(),
		accounts:    map[int64]*accountState{},
		rowIndex:    map[[2]uint64]int32{},
		phantomKeys: map[int32]string{},
		invariants:  map[string]*InvariantResult{},
		deadLetters: newDeadLetterState(),
		settlements: settlementState{counts: map[int32]settlementCounts{}},
		coverage: &Coverage{Rejections: RejectionCoverage{Ledger: map[string]int64{}, BeforeLedger: map[string]int64{},
			NotDecidable: map[string]int64{}, NotJudged: map[string]int64{}}},
		result: &Result{
			Version: 1, RunDir: config.RunDir, StartedAt: started.UTC(), Ledger: config.Ledger.Describe(),
			LedgerCounts: map[string]int64{}, TimingsMs: map[string]int64{}, Warnings: []string{},
		},
	}
	for _, entry := range Catalogue {
		a.invariants[entry.Name] = &InvariantResult{Name: entry.Name, Description: entry.Description,
			Status: StatusPassed, Checked: map[string]int64{}, Violations: []Violation{}}
	}
	phase := func(name string, since time.Time) { a.result.TimingsMs[name] = config.Now().Sub(since).Milliseconds() }

	files, err := journalFiles(config.RunDir)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCannotAudit, err)
	}
	for _, file := range files {
		a.result.Journals = append(a.result.Journals, filepath.Base(file))
	}

	// Drain first: reading the ledger while commands are still queued
	// would report them lost.
	begin := config.Now()
	a.drain(ctx)
	*a.invariants[Liveness] = a.checkLiveness(ctx, a.lastLag)
	phase("drain", begin)

	begin = config.Now()
	fmt.Fprintf(config.Progress, "audit: reading %d journal file(s)\n", len(files))
	a.history, err = readHistory(files, a.hash)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCannotAudit, err)
	}
	a.journal = newJournalReader(files)
	defer a.journal.close()
	a.result.JournalLines = a.history.lines
	a.result.InvalidJournalLines = a.history.invalidLines
	a.result.Operations = a.history.counts
	if a.history.invalidLines > 0 {
		a.warn("%d journal line(s) could not be used (operations missing from the history may show up as phantoms): %v",
			a.history.invalidLines, a.history.invalidSamples)
	}
	phase("journal", begin)

	begin = config.Now()
	fmt.Fprintf(config.Progress, "audit: reading the ledger (%s), %d operations journaled\n", config.Ledger.Describe(), len(a.history.operations))
	a.readSagas(ctx)
	if err := config.Ledger.Scan(ctx, Visitor{Account: a.visitAccount, Transaction: a.visitTransaction, Posting: a.visitPosting,
		DeadLetters: a.visitDeadLetters, DeadLetter: a.visitDeadLetter,
		Settlements: a.visitSettlements, Settlement: a.visitSettlement}); err != nil {
		return nil, fmt.Errorf("%w: read ledger %s: %w", ErrCannotAudit, config.Ledger.Describe(), err)
	}
	a.finishProbes()
	a.result.LedgerCounts["accounts"] = int64(len(a.accounts))
	a.result.LedgerCounts["transactions"] = int64(len(a.rows))
	a.result.LedgerCounts["postings"] = a.postingsSeen
	phase("ledger", begin)

	begin = config.Now()
	a.checkRows()
	a.checkAccounts(a.collectLostUpdateEvidence(ctx))
	a.checkKeys()
	a.checkOperations()
	a.checkPerAccountOrder()
	a.checkRejections()
	a.checkLimits()
	a.checkSagas()
	a.finishDeadLetters()
	a.checkSettlements()
	phase("checks", begin)

	begin = config.Now()
	a.checkCache(ctx)
	a.result.Staleness = readStaleness(filepath.Join(config.RunDir, StalenessFile))
	phase("cache", begin)

	a.finish()
	phase("total", started)
	return a.result, nil
}

func (a *auditor) warn(format string, args ...any) {
	a.result.Warnings = append(a.result.Warnings, fmt.Sprintf(format, args...))
}

// report counts one violation of invariant and, while under the cap, builds
// its explanation (building costs journal reads, so it is skipped beyond).
func (a *auditor) report(invariant string, build func() Violation) {
	result := a.invariants[invariant]
	if result == nil {
		panic("invariants: unknown invariant " + invariant)
	}
	result.Status = StatusViolated
	result.ViolationCount++
	if len(result.Violations) < a.config.MaxViolations {
		violation := build()
		violation.Invariant = invariant
		result.Violations = append(result.Violations, violation)
	}
}

func (a *auditor) checked(invariant, unit string, n int64) {
	a.invariants[invariant].Checked[unit] += n
}

// --- the ledger, streamed ---

func (a *auditor) account(id int64) *accountState {
	account := a.accounts[id]
	if account == nil {
		account = &accountState{external: id == 0}
		a.accounts[id] = account
	}
	return account
}

func (a *auditor) visitAccount(row *Account) error {
	account := a.account(row.ID)
	if account.listed {
		return fmt.Errorf("account %d is listed twice", row.ID)
	}
	account.listed, account.userID, account.balance = true, row.UserID, row.Balance
	account.external = row.Kind == "external"
	return nil
}

func (a *auditor) store(value string) (start, length uint32) {
	if len(a.arena)+len(value) > 1<<32-1 {
		panic("invariants: more than 4 GiB of transaction ids")
	}
	start = uint32(len(a.arena))
	a.arena = append(a.arena, value...)
	return start, uint32(len(value))
}

func (a *auditor) visitTransaction(t *Transaction) error {
	if len(a.rows) >= 1<<31-1 {
		return errors.New("more than 2^31 transactions")
	}
	index := int32(len(a.rows))
	idHash := a.hash.id(t.ID)
	row := txRow{
		idHash: idHash[0], key: -1, kind: parseOpKind(t.Kind), status: parseStatus(t.Status),
		reason: a.history.reason(t.Reason), user: t.UserID, source: t.SourceAccountID,
		destination: t.DestinationAccountID, amount: t.Amount,
	}
	if row.kind == opMisuse {
		row.kind = 0
	}
	if t.AppliedOrder != nil {
		row.hasOrder, row.order = true, *t.AppliedOrder
		if t.Partition != nil {
			row.partition = *t.Partition
		}
	}
	if len(t.ID) > 1<<16-1 {
		return fmt.Errorf("transaction id of %d bytes (at most 65535)", len(t.ID))
	}
	var idLength uint32
	row.idStart, idLength = a.store(t.ID)
	row.idLength = uint16(idLength)
	if previous, duplicate := a.rowIndex[idHash]; duplicate {
		a.report(ExactlyOnce, func() Violation {
			return Violation{Summary: fmt.Sprintf("two ledger transactions share the id %s", t.ID),
				Rows: []RowRef{a.rowRef(previous), a.rowRefOf(&row, index)}}
		})
	} else {
		a.rowIndex[idHash] = index
	}
	if key, ok := a.history.keyIndex[a.hash.userKey(t.UserID, t.IdempotencyKey)]; ok {
		row.key = key
		state := &a.history.keys[key]
		state.rows++
		if state.row < 0 {
			state.row = index
		} else {
			a.extraRows = append(a.extraRows, index)
		}
	} else if _, mentioned := a.history.users[t.UserID]; mentioned || a.config.Scope == ScopeLedger {
		a.phantomKeys[index] = t.IdempotencyKey
		a.phantomRows = append(a.phantomRows, index)
	} else {
		a.outOfScope++
	}
	if row.status == statusSettled {
		switch row.kind {
		case opDeposit:
			a.settledDeposits += row.amount
		case opWithdrawal:
			a.settledWithdrawals += row.amount
		}
	}
	if row.kind == 0 || (row.status != statusSettled && row.status != statusRejected) {
		a.report(Conservation, func() Violation {
			return Violation{Summary: fmt.Sprintf("transaction %s has kind %q and status %q: only deposit/withdrawal/transfer, settled/rejected are valid",
				t.ID, t.Kind, t.Status), Rows: []RowRef{a.rowRefOf(&row, index)}}
		})
	}
	if row.status == statusSettled {
		a.result.LedgerCounts["settled"]++
	} else if row.status == statusRejected {
		a.result.LedgerCounts["rejected"]++
	}
	a.limitsTransaction(index, t, &row)
	a.rows = append(a.rows, row)
	return nil
}

func (a *auditor) visitPosting(p *Posting) error {
	if !a.rejections.prepared {
		// The transactions are all read: place the rejections to judge
		// before the first posting streams by.
		a.prepareProbes()
	}
	if p.ID <= a.lastPostingID && a.postingsSeen > 0 {
		return fmt.Errorf("postings are not in ascending id order (%d after %d)", p.ID, a.lastPostingID)
	}
	a.lastPostingID = p.ID
	a.postingsSeen++
	account := a.account(p.AccountID)
	account.postingSum += p.Amount
	account.postings++
	rowIndex, found := a.rowIndex[a.hash.id(p.TransactionID)]
	var row *txRow
	if found {
		row = &a.rows[rowIndex]
		if row.postings < 255 {
			row.postings++
		}
		row.postingSum += p.Amount
		switch {
		case p.AccountID == row.source && p.Amount == -row.amount && row.debitPosting == 0:
			row.debitPosting = p.ID
		case p.AccountID == row.destination && p.Amount == row.amount:
		case p.AccountID == row.source && p.Amount == row.amount && row.status == statusRejected && a.sagas.compensated[p.TransactionID]:
			// The refund of a compensated saga (docs/sharding.md), whose
			// transfer the client was told was rejected: under a settled
			// row a refund is money paid back on a transfer that happened.
		default:
			posting := *p
			a.report(Conservation, func() Violation {
				return Violation{Summary: fmt.Sprintf("posting %d moves %d on account %d, which is not a leg of transaction %s (%d from %d to %d)",
					posting.ID, posting.Amount, posting.AccountID, posting.TransactionID, row.amount, row.source, row.destination),
					Accounts: []int64{posting.AccountID}, Rows: []RowRef{postingRef(&posting, ""), a.rowRef(rowIndex)}}
			})
		}
	} else {
		posting := *p
		a.report(Conservation, func() Violation {
			return Violation{Summary: fmt.Sprintf("posting %d (%d on account %d) belongs to no transaction (%s)",
				posting.ID, posting.Amount, posting.AccountID, posting.TransactionID),
				Accounts: []int64{posting.AccountID}, Rows: []RowRef{postingRef(&posting, "")}}
		})
	}
	if account.external || p.AccountID == 0 {
		return nil
	}
	// No overdraft in applied order: replay the account's postings in id
	// order; balance_after, when recorded, must chain from the opening 0.
	before := account.replay
	account.replay += p.Amount
	a.checked(NoOverdraft, "postings", 1)
	if p.BalanceAfter != nil && *p.BalanceAfter != account.replay {
		posting, expected := *p, account.replay
		a.report(NoOverdraft, func() Violation {
			return Violation{Summary: fmt.Sprintf("account %d: posting %d records balance_after %d, but the replay gives %d (balance %d before, amount %d)",
				posting.AccountID, posting.ID, *posting.BalanceAfter, expected, before, posting.Amount),
				Accounts: []int64{posting.AccountID}, Rows: a.postingRows(&posting)}
		})
		// Resynchronise on the recorded value so one break is one report.
		account.replay = *p.BalanceAfter
	}
	negative := account.replay < 0
	if negative && !account.overdrawn {
		posting, balance := *p, account.replay
		a.report(NoOverdraft, func() Violation {
			return Violation{Summary: fmt.Sprintf("account %d goes to %d with posting %d (amount %d): an overdraft in applied order",
				posting.AccountID, balance, posting.ID, posting.Amount),
				Accounts: []int64{posting.AccountID}, Rows: a.postingRows(&posting)}
		})
	}
	account.overdrawn = negative
	// A settled debit that leaves less than its amount came near the
	// limit: the same debit again would overdraw.
	if row != nil && p.AccountID == row.source && p.Amount < 0 && row.kind != opDeposit && account.replay < -p.Amount {
		a.checked(NoOverdraft, unitNearLimit, 1)
	}
	if groups := a.rejections.groupsByAccount[p.AccountID]; groups != nil {
		a.advanceProbes(groups, p, row, account.replay)
	}
	a.limitsPosting(p, rowIndex, found, account.replay)
	return nil
}

// --- checks after the scan ---

func (a *auditor) checkRows() {
	for index := range a.rows {
		row := &a.rows[index]
		a.checked(Conservation, "transactions", 1)
		var problem string
		switch {
		case row.postingSum != 0:
			problem = fmt.Sprintf("its %d posting(s) sum to %d, not zero", row.postings, row.postingSum)
		case row.status == statusSettled && row.postings != 2:
			problem = fmt.Sprintf("it is settled with %d posting(s), not 2", row.postings)
		case row.status == statusRejected && row.postings != 0 && !(row.postings == 2 && a.sagas.compensated[a.rowID(row)]):
			// A compensated saga's rejected transfer has its debit and its
			// refund (saga-atomicity vouches for the pair); any other
			// rejected transaction has none.
			problem = fmt.Sprintf("it is rejected but has %d posting(s)", row.postings)
		}
		if problem != "" {
			rowIndex := int32(index)
			a.report(Conservation, func() Violation {
				return Violation{Summary: fmt.Sprintf("transaction %s (%s %d from %d to %d): %s",
					a.rowID(row), row.kind, row.amount, row.source, row.destination, problem),
					Accounts: []int64{row.source, row.destination}, Rows: []RowRef{a.rowRef(rowIndex)},
					Operations: a.operationsOfRow(row, 3)}
			})
		}
	}
	a.checked(NoPhantoms, "transactions", int64(len(a.rows))-a.outOfScope)
	if a.outOfScope > 0 {
		a.warn("no-phantoms left out %d ledger transaction(s) of users this journal never mentions (earlier runs on this ledger); --scope ledger checks them too", a.outOfScope)
	}
	for _, rowIndex := range a.phantomRows {
		row := &a.rows[rowIndex]
		a.report(NoPhantoms, func() Violation {
			key := a.phantomKeys[rowIndex]
			return Violation{Summary: fmt.Sprintf("ledger transaction %s (%s %s %d from %d to %d, user %d, key %q) matches no journaled operation",
				a.rowID(row), row.status, row.kind, row.amount, row.source, row.destination, row.user, key),
				Keys: []string{key}, Accounts: []int64{row.source, row.destination}, Rows: []RowRef{a.rowRef(rowIndex)}}
		})
	}
}

func (a *auditor) checkAccounts(evidence map[int64]*lostUpdateEvidence) {
	ids := make([]int64, 0, len(a.accounts))
	for id := range a.accounts {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	var userBalances, externalPostings int64
	for _, id := range ids {
		account := a.accounts[id]
		if account.external {
			externalPostings += account.postingSum
			continue
		}
		a.checked(BalanceEqualsPostings, "accounts", 1)
		if !account.listed {
			a.report(BalanceEqualsPostings, func() Violation {
				return Violation{Summary: fmt.Sprintf("account %d has %d posting(s) summing to %d but is not in the accounts table",
					id, account.postings, account.postingSum), Accounts: []int64{id}}
			})
			continue
		}
		userBalances += account.balance
		if account.balance != account.postingSum {
			a.report(BalanceEqualsPostings, func() Violation { return a.balanceViolation(id, account, evidence[id]) })
		}
	}
	expected := a.settledDeposits - a.settledWithdrawals
	a.checked(Conservation, "accounts", int64(len(ids)))
	if userBalances != expected {
		a.report(Conservation, func() Violation {
			return Violation{Summary: fmt.Sprintf("user balances sum to %d, but settled deposits (%d) minus settled withdrawals (%d) is %d: %d was created or destroyed",
				userBalances, a.settledDeposits, a.settledWithdrawals, expected, userBalances-expected)}
		})
	}
	if externalPostings != -expected {
		a.report(Conservation, func() Violation {
			return Violation{Summary: fmt.Sprintf("the external account's postings sum to %d, but settled deposits minus withdrawals is %d (it should be its negation)",
				externalPostings, expected)}
		})
	}
}

// key flags, gathered from a key's operations.
type keyFlags struct {
	ok, fail, info, acknowledged, dup bool
	firstOK, firstFail, firstAck      int32
	// deadLetter is the dead letter of the first transaction id the
	// gateway answered for the key that the system set aside (-1: none),
	// deadLetterOp the operation it was answered to.
	deadLetter, deadLetterOp int32
}

func (a *auditor) gatherFlags() []keyFlags {
	flags := make([]keyFlags, len(a.history.keys))
	for i := range flags {
		flags[i].firstOK, flags[i].firstFail, flags[i].firstAck, flags[i].deadLetter = -1, -1, -1, -1
	}
	for index := range a.history.operations {
		op := &a.history.operations[index]
		deadLetter := a.deadLetterOf(op)
		if deadLetter >= 0 {
			a.deadLetters.rows[deadLetter].journaled = true
		}
		if op.kind == opMisuse {
			continue
		}
		f := &flags[op.key]
		if deadLetter >= 0 && f.deadLetter < 0 {
			f.deadLetter, f.deadLetterOp = deadLetter, int32(index)
		}
		f.dup = f.dup || op.dup
		switch op.outcome {
		case outcomeOK:
			f.ok = true
			if f.firstOK < 0 {
				f.firstOK = int32(index)
			}
		case outcomeFail:
			f.fail = true
			if f.firstFail < 0 {
				f.firstFail = int32(index)
			}
		case outcomeInfo:
			f.info = true
		}
		if op.acknowledged() {
			f.acknowledged = true
			if f.firstAck < 0 {
				f.firstAck = int32(index)
			}
		}
	}
	return flags
}

func (a *auditor) checkKeys() {
	flags := a.gatherFlags()
	// Rows beyond the first of each key, grouped by key, for explanations.
	extra := map[int32][]int32{}
	for _, rowIndex := range a.extraRows {
		key := a.rows[rowIndex].key
		if len(extra[key]) < 4 {
			extra[key] = append(extra[key], rowIndex)
		}
	}
	for keyIndex := range a.history.keys {
		key := &a.history.keys[keyIndex]
		f := &flags[keyIndex]
		index := int32(keyIndex)
		if key.operations == 0 {
			continue // only misuses: checkOperations handles them
		}
		a.checked(ExactlyOnce, "keys", 1)
		var row *txRow
		if key.row >= 0 {
			row = &a.rows[key.row]
		}
		if key.rows > 1 {
			rows := append([]int32{key.row}, extra[index]...)
			build := func() Violation {
				refs := make([]RowRef, 0, len(rows))
				for _, r := range rows {
					refs = append(refs, a.rowRef(r))
				}
				return Violation{Summary: fmt.Sprintf("key %s has %d ledger transactions: one request took effect %d times",
					a.keyName(index), key.rows, key.rows), Keys: []string{a.keyString(index)},
					Accounts: []int64{row.source, row.destination}, Operations: a.operationsOfKey(index, 4), Rows: refs}
			}
			a.report(ExactlyOnce, build)
			if key.operations+key.misuses > 1 || f.dup {
				a.report(KeyContract, func() Violation {
					v := build()
					v.Summary = fmt.Sprintf("%d requests shared key %s (duplicates or replays) but the ledger holds %d transactions for it, not one",
						key.operations+key.misuses, a.keyName(index), key.rows)
					return v
				})
			}
		}
		if key.operations > 1 || f.dup {
			a.checked(KeyContract, "shared keys", 1)
		}
		if key.resent != 0 && key.rows > 0 {
			a.checked(ExactlyOnce, unitKeysSentTwice, 1)
			a.duplicates.KeysSentMoreThanOnce++
			if key.resent&resentReplay != 0 {
				a.duplicates.ReplayedKeys++
			}
			if key.resent&resentRetry != 0 {
				a.duplicates.RetriedKeys++
			}
		}
		if f.dup {
			a.duplicates.Keys++
			switch {
			case key.rows == 0:
				a.duplicates.WithoutTransaction++
			case key.rows == 1:
				a.duplicates.AppliedOnce++
			default:
				a.duplicates.AppliedMoreThanOnce++
			}
		}
		switch {
		case f.ok && row == nil:
			a.report(ExactlyOnce, func() Violation {
				return Violation{Summary: fmt.Sprintf("operation acknowledged as settled (key %s) has no ledger transaction: acknowledged but lost",
					a.keyName(index)), Keys: []string{a.keyString(index)}, Operations: a.operationsOfKey(index, 4)}
			})
		case f.ok && row.status != statusSettled:
			a.report(ExactlyOnce, func() Violation {
				return Violation{Summary: fmt.Sprintf("operation acknowledged as settled (key %s) has no settled transaction: the ledger's is %s (%s)",
					a.keyName(index), row.status, a.history.reasons[row.reason]), Keys: []string{a.keyString(index)},
					Operations: a.operationsOfKey(index, 4), Rows: []RowRef{a.rowRef(key.row)}}
			})
		case !f.ok && f.fail && row != nil && row.status == statusSettled:
			a.report(ExactlyOnce, func() Violation {
				return Violation{Summary: fmt.Sprintf("operation that failed (key %s) took effect: the ledger settled transaction %s",
					a.keyName(index), a.rowID(row)), Keys: []string{a.keyString(index)},
					Operations: a.operationsOfKey(index, 4), Rows: []RowRef{a.rowRef(key.row)}}
			})
		}
		if f.ok && f.fail {
			a.report(OutcomeAgreement, func() Violation {
				return Violation{Summary: fmt.Sprintf("requests with key %s were told different outcomes (ok and fail): replays must get the same answer",
					a.keyName(index)), Keys: []string{a.keyString(index)}, Operations: a.operationsOfKey(index, 4)}
			})
		}
		// A transaction id is answered only with 202 accepted or a final
		// answer: a key whose answered transaction the system set aside as
		// a dead letter was acknowledged, whatever the client was told
		// after, and its command will never be applied.
		if f.acknowledged || f.deadLetter >= 0 {
			a.checked(Durability, "acknowledged keys", 1)
			if row == nil && f.deadLetter >= 0 {
				dead := f.deadLetter
				a.deadLetters.rows[dead].lost = true
				a.report(Durability, func() Violation {
					op := &a.history.operations[f.deadLetterOp]
					letter := &a.deadLetters.rows[dead]
					return Violation{Summary: fmt.Sprintf("%s of %d (key %s) was acknowledged to the client (%s, transaction %s) at %s, but the system set its command aside as a dead letter (partition %d, offset %d, reason %q) and the ledger has no transaction for it: its money effect is lost",
						op.kind, op.amount, a.keyName(index), a.describeAck(op), a.deadLetterTransaction(letter), formatMicros(op.complete),
						letter.partition, letter.offset, a.deadLetters.reasons[letter.reason]),
						Keys: []string{a.keyString(index)}, Accounts: []int64{op.from, op.to}, Operations: a.operationsOfKey(index, 4),
						Rows: []RowRef{a.deadLetterRef(dead)}}
				})
			} else if row == nil && a.invariants[Liveness].Status == StatusViolated && a.stalled < a.queued() {
				// The pipeline stalled: the command may be one of the
				// records still queued behind the stall, not lost.
				// Liveness says so, once; beyond what is queued, a missing
				// command is lost whatever else happened.
				a.stalled++
			} else if row == nil {
				a.report(Durability, func() Violation {
					op := &a.history.operations[f.firstAck]
					return Violation{Summary: fmt.Sprintf("%s of %d (key %s) was acknowledged to the client (%s) at %s but is not in the ledger",
						op.kind, op.amount, a.keyName(index), a.describeAck(op), formatMicros(op.complete)),
						Keys: []string{a.keyString(index)}, Accounts: []int64{op.from, op.to}, Operations: a.operationsOfKey(index, 4)}
				})
			}
		}
	}
}

func (a *auditor) describeAck(op *operation) string {
	switch {
	case op.outcome == outcomeOK:
		return "ok"
	case op.status == statusNone:
		return "answered a transaction id"
	}
	return "status " + op.status.String()
}

func (a *auditor) checkOperations() {
	info := &a.result.InfoResolution
	// answered: some request of the key other than a misuse got an answer
	// from the system (ok, failed, or accepted). When none did, the system
	// may never have received the key before a misuse reused it: the misuse
	// is then the key's first use, and applying its body is no breach.
	answered := make([]bool, len(a.history.keys))
	for index := range a.history.operations {
		op := &a.history.operations[index]
		if op.kind != opMisuse && (op.outcome != outcomeInfo || op.acknowledged()) {
			answered[op.key] = true
		}
	}
	for index := range a.history.operations {
		op := &a.history.operations[index]
		key := &a.history.keys[op.key]
		opIndex := int32(index)
		var row *txRow
		if key.row >= 0 {
			row = &a.rows[key.row]
		}
		if op.kind == opMisuse {
			a.checkMisuse(opIndex, op, key, row, answered[op.key])
			continue
		}
		if op.outcome == outcomeInfo {
			info.Operations++
			switch {
			case row == nil:
				info.Absent++
			case row.status == statusSettled:
				info.Settled++
			default:
				info.Rejected++
			}
		}
		if row == nil {
			continue
		}
		a.checked(OutcomeAgreement, "operations", 1)
		var problem string
		reason := a.history.reasons[op.reason]
		rowReason := a.history.reasons[row.reason]
		switch {
		case op.outcome == outcomeOK && row.status != statusSettled:
			problem = fmt.Sprintf("the client was told settled, the ledger %s it (%s)", row.status, rowReason)
		case op.outcome == outcomeFail && row.status == statusSettled:
			problem = fmt.Sprintf("the client was told it failed (%s), the ledger settled it", reason)
		case op.outcome == outcomeFail && row.status == statusRejected && reason != "" && reason != rowReason:
			problem = fmt.Sprintf("the client was told the reason %q, the ledger rejected it for %q", reason, rowReason)
		case op.status == statusSettled && row.status != statusSettled, op.status == statusRejected && row.status != statusRejected:
			problem = fmt.Sprintf("the client was last told status %s, the ledger's is %s", op.status, row.status)
		case !sameBody(op, row) && !(op.outcome == outcomeInfo && !answered[op.key] && a.misuseBodyOf(op.key, row)):
			// (An unknown request whose key's row carries a misuse's body
			// may never have reached the system: the misuse came first.)
			problem = fmt.Sprintf("the ledger's transaction is %s %d from %d to %d, the request was %s %d from %d to %d",
				row.kind, row.amount, row.source, row.destination, op.kind, op.amount, op.from, op.to)
		case op.txHash != 0 && op.txHash != row.idHash:
			problem = fmt.Sprintf("the gateway answered another transaction id than the ledger's %s", a.rowID(row))
		}
		if problem != "" {
			rowIndex := key.row
			a.report(OutcomeAgreement, func() Violation {
				return Violation{Summary: fmt.Sprintf("%s key %s: %s", op.kind, a.keyName(op.key), problem),
					Keys: []string{a.keyString(op.key)}, Accounts: []int64{op.from, op.to},
					Operations: []OperationRef{a.operationRef(opIndex)}, Rows: []RowRef{a.rowRef(rowIndex)}}
			})
		}
	}
}

// toldAsRecorded reports whether what the client was told of an operation
// agrees with the ledger's row: nothing final (unknown), settled for a
// settled row, or rejected for the row's reason.
func (a *auditor) toldAsRecorded(op *operation, row *txRow) bool {
	switch op.outcome {
	case outcomeOK:
		return row.status == statusSettled
	case outcomeFail:
		return row.status == statusRejected && a.history.reasons[op.reason] == a.history.reasons[row.reason]
	}
	return true
}

// misuseBodyOf reports whether row carries the body of a misuse of key.
func (a *auditor) misuseBodyOf(key int32, row *txRow) bool {
	for index := range a.history.operations {
		op := &a.history.operations[index]
		if op.key == key && op.kind == opMisuse && misuseBody(op, row) {
			return true
		}
	}
	return false
}

// misuseBody reports whether the row carries a misuse's body (a misuse is
// journaled with kind "misuse": its amount and accounts say what it asked).
func misuseBody(op *operation, row *txRow) bool {
	return op.amount == row.amount && op.from == row.source && op.to == row.destination
}

// sameBody reports whether the row carries the operation's request.
func sameBody(op *operation, row *txRow) bool {
	return op.kind == row.kind && op.amount == row.amount && op.from == row.source && op.to == row.destination
}

func (a *auditor) checkMisuse(opIndex int32, op *operation, key *keyState, row *txRow, answered bool) {
	a.checked(KeyContract, "misuses", 1)
	reason := a.history.reasons[op.reason]
	var problem string
	switch {
	case !answered && row != nil && misuseBody(op, row) && a.toldAsRecorded(op, row):
		// No other request of the key got an answer: the system may never
		// have received it, and this "misuse" was the key's first use.
		// Applying its body keeps the contract, and so does deciding it as
		// any first use is decided (rejected for insufficient funds, say),
		// as long as the client was told what the ledger holds.
	case op.outcome == outcomeOK:
		problem = "the request reusing the key with a different body was told settled"
	case op.outcome == outcomeFail && reason != "idempotency_key_reused":
		problem = fmt.Sprintf("the request reusing the key with a different body failed with %q, not idempotency_key_reused", reason)
	case row != nil && misuseBody(op, row) &&
		(key.first < 0 || !sameBody(&a.history.operations[key.first], row)):
		problem = fmt.Sprintf("the ledger applied the reused key's new body (%d from %d to %d) instead of the original request's",
			op.amount, op.from, op.to)
	case row != nil && key.first < 0:
		// The key's only journaled use is the misuse, yet it has a row
		// that is not the misuse's: nothing the client issued explains it.
		a.report(NoPhantoms, func() Violation {
			return Violation{Summary: fmt.Sprintf("ledger transaction %s for key %s matches no journaled operation (only a key misuse used that key)",
				a.rowID(row), a.keyName(op.key)), Keys: []string{a.keyString(op.key)},
				Operations: []OperationRef{a.operationRef(opIndex)}, Rows: []RowRef{a.rowRef(key.row)}}
		})
	}
	if problem != "" {
		a.report(KeyContract, func() Violation {
			v := Violation{Summary: fmt.Sprintf("key %s: %s", a.keyName(op.key), problem),
				Keys: []string{a.keyString(op.key)}, Accounts: []int64{op.from, op.to}, Operations: a.operationsOfKey(op.key, 4)}
			if row != nil {
				v.Rows = []RowRef{a.rowRef(key.row)}
			}
			return v
		})
	}
}

// checkPerAccountOrder checks, for every account, that a debit the client
// completed before it invoked another debit of the same account was applied
// first. A debit is a key: its invoke time is the first request's, its
// completion the first time the client learned the ledger had it (a later
// replay of an applied key is not a new debit). Per account: sweep the
// debits by invoke time, keeping the latest applied of those already
// completed; a later-invoked debit applied before it is a violation.
// O(n log n).
func (a *auditor) checkPerAccountOrder() {
	type debit struct {
		account  int64
		invoke   int64
		complete int64
		op       int32 // the first operation, quoted in explanations
		row      int32
		known    bool // the client learned the ledger had it
	}
	var debits []debit
	byKey := map[int32]int{}
	for index := range a.history.operations {
		op := &a.history.operations[index]
		if op.kind != opWithdrawal && op.kind != opTransfer {
			continue
		}
		row := a.history.keys[op.key].row
		if row < 0 || (a.rows[row].status == statusRejected && !a.rows[row].hasOrder) {
			// A rejected row without a stream position (the gateway's soft
			// refusals) has no posting and no position: it orders nothing,
			// and must not make the account's positioned rows unordered.
			continue
		}
		known := op.outcome == outcomeOK || op.status == statusSettled || op.status == statusRejected || op.status == statusAccepted
		position, seen := byKey[op.key]
		if !seen {
			byKey[op.key] = len(debits)
			debits = append(debits, debit{account: op.from, invoke: op.invoke, complete: op.complete, op: int32(index), row: row, known: known})
			continue
		}
		d := &debits[position]
		if op.invoke < d.invoke {
			d.invoke, d.op = op.invoke, int32(index)
		}
		if known && (!d.known || op.complete < d.complete) {
			d.complete, d.known = op.complete, true
		}
	}
	sort.Slice(debits, func(i, j int) bool {
		if debits[i].account != debits[j].account {
			return debits[i].account < debits[j].account
		}
		return debits[i].invoke < debits[j].invoke
	})
	var completed []int // indices into debits, by complete time
	for start := 0; start < len(debits); {
		end := start
		for end < len(debits) && debits[end].account == debits[start].account {
			end++
		}
		group := debits[start:end]
		account := group[0].account
		start = end
		// Pick how to compare: stream positions when every row of the
		// account has one in the same stream, else debit posting ids.
		byStream, partition := true, int32(0)
		for i, d := range group {
			row := &a.rows[d.row]
			if !row.hasOrder {
				byStream = false
				break
			}
			if i == 0 {
				partition = row.partition
			} else if row.partition != partition {
				byStream = false
				other := d
				first := group[0]
				a.report(PerAccountOrder, func() Violation {
					return Violation{Summary: fmt.Sprintf("debits of account %d were applied from different streams (partitions %d and %d): their order is not guaranteed",
						account, a.rows[first.row].partition, a.rows[other.row].partition), Accounts: []int64{account},
						Operations: []OperationRef{a.operationRef(first.op), a.operationRef(other.op)},
						Rows:       []RowRef{a.rowRef(first.row), a.rowRef(other.row)}}
				})
				break
			}
		}
		// With stream positions, two passes: by position (every debit,
		// rejected ones included), then by debit posting (settled debits).
		// A position is where the command was queued, which is the order the
		// system was asked to apply; the postings are the order it did
		// apply: a system that applies one stream out of order (parallel
		// transactions per partition) keeps correct-looking positions, and
		// only its postings show it. Without positions, postings only.
		passes := []bool{byStream}
		if byStream {
			passes = append(passes, false)
		}
		reported := map[[2]int32]bool{}
		for pass, useStream := range passes {
			rank := func(d debit) (int64, bool) {
				row := &a.rows[d.row]
				if useStream {
					return row.order, true
				}
				return row.debitPosting, row.debitPosting > 0
			}
			completed = completed[:0]
			for i, d := range group {
				if _, ok := rank(d); ok && d.known {
					completed = append(completed, i)
				}
			}
			sort.Slice(completed, func(i, j int) bool { return group[completed[i]].complete < group[completed[j]].complete })
			next, latest := 0, -1
			var latestRank int64
			for _, later := range group {
				laterRank, ok := rank(later)
				if !ok {
					continue
				}
				for next < len(completed) && group[completed[next]].complete < later.invoke {
					candidate := group[completed[next]]
					if candidateRank, _ := rank(candidate); latest < 0 || candidateRank > latestRank {
						latest, latestRank = completed[next], candidateRank
					}
					next++
				}
				if pass == 0 {
					a.checked(PerAccountOrder, "debits", 1)
					if latest >= 0 && group[latest].row != later.row {
						a.checked(PerAccountOrder, unitDebitsCompared, 1)
					}
				}
				if latest >= 0 && latestRank > laterRank && group[latest].row != later.row &&
					!reported[[2]int32{group[latest].row, later.row}] {
					earlier, later := group[latest], later
					reported[[2]int32{earlier.row, later.row}] = true
					how := "posting order"
					switch {
					case useStream:
						how = fmt.Sprintf("partition %d, position %d before %d", partition, laterRank, latestRank)
					case byStream:
						how = fmt.Sprintf("debit posting %d before %d, although queued at partition %d, positions %d and %d",
							laterRank, latestRank, partition, a.rows[earlier.row].order, a.rows[later.row].order)
					}
					a.report(PerAccountOrder, func() Violation {
						return Violation{Summary: fmt.Sprintf("account %d: debit key %s completed at %s, before debit key %s was invoked at %s, yet the ledger applied the later one first (%s)",
							account, a.keyName(a.history.operations[earlier.op].key), formatMicros(earlier.complete),
							a.keyName(a.history.operations[later.op].key), formatMicros(later.invoke), how),
							Keys:       []string{a.keyString(a.history.operations[earlier.op].key), a.keyString(a.history.operations[later.op].key)},
							Accounts:   []int64{account},
							Operations: []OperationRef{a.operationRef(earlier.op), a.operationRef(later.op)},
							Rows:       []RowRef{a.rowRef(earlier.row), a.rowRef(later.row)}}
					})
				}
			}
		}
	}
}

func (a *auditor) finish() {
	result := a.result
	a.markNotExercised()
	duplicates := a.duplicates
	duplicates.Sent, duplicates.Answers = a.history.duplicates.Sent, a.history.duplicates.Answers
	covered := a.finishCoverage(duplicates)
	if a.stalled > 0 {
		liveness := a.invariants[Liveness]
		liveness.Checked["acknowledged operations not applied"] = a.stalled
		liveness.Note = joinNotes(liveness.Note, fmt.Sprintf("%d acknowledged operation(s) are not in the ledger: not judged lost by durability, since the pipeline stalled with %d record(s) still queued", a.stalled, a.queued()))
		if durability := a.invariants[Durability]; durability.Status == StatusPassed {
			// Not all of it could be judged: it did not pass.
			durability.Status = StatusSkipped
			durability.Note = joinNotes(durability.Note, fmt.Sprintf("%d acknowledged operation(s) not judged: the pipeline stalled before applying what it had queued (liveness)", a.stalled))
		}
	}
	violated := false
	for _, entry := range Catalogue {
		invariant := a.invariants[entry.Name]
		result.Invariants = append(result.Invariants, *invariant)
		if invariant.Status == StatusViolated {
			violated = true
		}
	}
	switch {
	case violated:
		result.Verdict = VerdictViolated
	case !result.Drained:
		result.Verdict = VerdictIncomplete
		a.warn("not drained: the pipeline still had work when the ledger was read, so the audit could not fully check it")
	case !covered:
		// Nothing failed, but what was required to happen did not: a pass
		// would claim more than the run tested.
		result.Verdict = VerdictWeak
	default:
		result.Verdict = VerdictPassed
	}
	if violated && !result.Drained {
		a.warn("not drained: some violations (lost operations in particular) may be work still queued")
	}
}

// queued is how many records the last drain probe saw still queued (0
// when it could not say).
func (a *auditor) queued() int64 {
	var total int64
	for _, lag := range a.lastLag {
		total += lag
	}
	return total
}

// --- explanations ---

func (a *auditor) rowID(row *txRow) string {
	return string(a.arena[row.idStart : row.idStart+uint32(row.idLength)])
}

// keyString is the idempotency key of a key index, read back from the
// journal (keys are not kept in memory).
func (a *auditor) keyString(key int32) string {
	state := &a.history.keys[key]
	for index := range a.history.operations {
		if a.history.operations[index].key != key {
			continue
		}
		op := &a.history.operations[index]
		line, err := a.journal.line(op.file, op.offset)
		if err != nil {
			break
		}
		var entry JournalEntry
		if json.Unmarshal(line, &entry) == nil {
			return entry.Key
		}
		break
	}
	_ = state
	return "?"
}

func (a *auditor) keyName(key int32) string {
	return fmt.Sprintf("%q (user %d)", a.keyString(key), a.history.keys[key].user)
}

func (a *auditor) operationRef(index int32) OperationRef {
	op := &a.history.operations[index]
	ref := OperationRef{Journal: filepath.Base(a.history.files[op.file]), Offset: op.offset}
	line, err := a.journal.line(op.file, op.offset)
	if err != nil {
		ref.Entry, _ = json.Marshal(map[string]string{"error": err.Error()})
	} else {
		ref.Entry = line
	}
	return ref
}

// operationsOfKey quotes up to limit operations of a key, misuses included.
func (a *auditor) operationsOfKey(key int32, limit int) []OperationRef {
	var refs []OperationRef
	for index := range a.history.operations {
		if a.history.operations[index].key == key {
			refs = append(refs, a.operationRef(int32(index)))
			if len(refs) == limit {
				break
			}
		}
	}
	return refs
}

func (a *auditor) operationsOfRow(row *txRow, limit int) []OperationRef {
	if row.key < 0 {
		return nil
	}
	return a.operationsOfKey(row.key, limit)
}

func (a *auditor) rowRef(index int32) RowRef {
	return a.rowRefOf(&a.rows[index], index)
}

func (a *auditor) rowRefOf(row *txRow, index int32) RowRef {
	ref := RowRef{Table: "transactions", ID: a.rowID(row), UserID: ptr(row.user), Kind: row.kind.String(),
		Source: ptr(row.source), Destination: ptr(row.destination), Amount: ptr(row.amount), Status: row.status.String(),
		Reason: a.history.reasons[row.reason]}
	if key, phantom := a.phantomKeys[index]; phantom {
		ref.IdempotencyKey = key
	} else if row.key >= 0 {
		ref.IdempotencyKey = a.keyString(row.key)
	}
	if row.hasOrder {
		ref.Partition, ref.AppliedOrder = ptr(row.partition), ptr(row.order)
	}
	return ref
}

func postingRef(p *Posting, note string) RowRef {
	ref := RowRef{Table: "postings", ID: fmt.Sprint(p.ID), TransactionID: p.TransactionID, AccountID: ptr(p.AccountID),
		Amount: ptr(p.Amount), Note: note}
	if p.BalanceAfter != nil {
		ref.BalanceAfter = ptr(*p.BalanceAfter)
	}
	return ref
}

// postingRows quotes a posting and its transaction.
func (a *auditor) postingRows(p *Posting) []RowRef {
	refs := []RowRef{postingRef(p, "")}
	if rowIndex, ok := a.rowIndex[a.hash.id(p.TransactionID)]; ok {
		refs = append(refs, a.rowRef(rowIndex))
	}
	return refs
}

func accountRef(id int64, account *accountState) RowRef {
	return RowRef{Table: "accounts", ID: fmt.Sprint(id), UserID: ptr(account.userID), Balance: ptr(account.balance),
		Note: fmt.Sprintf("%d posting(s) summing to %d", account.postings, account.postingSum)}
}

func ptr[T any](value T) *T { return &value }

// formatMicros renders a journal time (Unix microseconds) for people.
func formatMicros(micros int64) string {
	return time.UnixMicro(micros).UTC().Format("15:04:05.000000Z07:00")
}
