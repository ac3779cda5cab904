package invariants

import (
	"fmt"
	"sort"
	"strings"
)

// Coverage classes: what a run can be required to exercise. An audit in
// which none of the operations an invariant is about happened cannot say
// the invariant held; when the class was required (always for money
// operations, else because the run's scenario promised it, or by
// Config.Require) the verdict is weak.
const (
	// ClassMoneyOperations is the load's money operations (deposit,
	// withdrawal, transfer), setup's excluded: always required.
	ClassMoneyOperations = "money-operations"
	// ClassDuplicates is the operations sent twice with one key and body
	// (journal field dup) whose key the ledger holds: what exactly-once
	// must apply once.
	ClassDuplicates = "duplicates"
	// ClassReplays is the keys with a ledger transaction that were sent
	// again as an operation of their own (a later journal line with the
	// key, field replay_of): what exactly-once must answer from the stored
	// outcome.
	ClassReplays = "replays"
	// ClassRetries is the keys with a ledger transaction whose operation
	// was retried (attempts > 1): the first attempt may have been taken.
	ClassRetries = "retries"
	// ClassKeyReuse is the requests that reused a key with another body
	// (journal kind misuse): what key-contract must refuse.
	ClassKeyReuse = "key-reuse"
	// ClassInsufficientFunds is the run's ledger transactions the system's
	// apply rejected for insufficient funds (rows with a stream position, or
	// a system without soft checks): debits at the limit, which no-overdraft
	// and justified-rejection are about. The reference gateway's soft
	// refusals (no stream position) are ClassSoftRefusals: they never reach
	// the apply's balance check.
	ClassInsufficientFunds = "insufficient-funds"
	// ClassSoftRefusals is the run's ledger transactions a gateway's soft
	// checks refused (recorded without a stream position: docs/limits.md),
	// which limits-respected judges.
	ClassSoftRefusals = "soft-refusals"
	// ClassDailyLimit is the run's ledger transactions rejected for
	// daily_limit_exceeded (soft or by the apply), which limits-respected
	// judges.
	ClassDailyLimit = "daily-limit"
)

// ClassDescription describes one coverage class.
type ClassDescription struct {
	Name string
	// Counts says what is counted as exercising the class.
	Counts string
	// Invariants are the invariants that are not exercised without it.
	Invariants []string
}

// Classes lists every coverage class, in the order the report lists them.
var Classes = []ClassDescription{
	{ClassMoneyOperations, "money operations of the load (deposit, withdrawal, transfer; setup's signups and funding excluded)",
		[]string{Conservation, OutcomeAgreement, Durability}},
	{ClassDuplicates, "keys the harness sent twice with the same body (journal field dup) that the ledger holds a transaction for",
		[]string{ExactlyOnce}},
	{ClassReplays, "keys with a ledger transaction sent again as an operation of their own (a later journal line of the key, replay_of)",
		[]string{ExactlyOnce}},
	{ClassRetries, "keys with a ledger transaction whose operation was retried (attempts > 1)", []string{ExactlyOnce}},
	{ClassKeyReuse, "requests that reused a key with another body (journal kind misuse)", []string{KeyContract}},
	{ClassInsufficientFunds, "the run's ledger transactions rejected for insufficient_funds by the apply (with a stream position; soft refusals excluded)", []string{NoOverdraft, JustifiedRejection}},
	{ClassSoftRefusals, "the run's ledger transactions a gateway's soft checks refused (no stream position)", []string{LimitsRespected}},
	{ClassDailyLimit, "the run's ledger transactions rejected for daily_limit_exceeded (soft or by the apply)", []string{LimitsRespected}},
}

func classDescription(name string) (ClassDescription, bool) {
	for _, class := range Classes {
		if class.Name == name {
			return class, true
		}
	}
	return ClassDescription{}, false
}

// ClassNames lists the coverage classes' names.
func ClassNames() []string {
	names := make([]string, 0, len(Classes))
	for _, class := range Classes {
		names = append(names, class.Name)
	}
	return names
}

// Requirement is a class a run must exercise, and who required it.
type Requirement struct {
	Class string `json:"class"`
	// Why says who required it: "always", the scenario's setting, "--require".
	Why string `json:"why"`
	// Rate, when above 0, is the share of the class's base the scenario
	// promised (duplicates, key reuse, retries and replays: of the load's
	// money operations; insufficient funds: of its debits). The class is
	// then required only when the run's base makes at least
	// MinExpectedToRequire of them expected: a run too short to be sure to
	// draw one is not called weak at random. 0: required outright.
	Rate float64 `json:"rate,omitempty"`
}

// MinExpectedToRequire is how many operations of a promised class a run
// must expect (rate × base) for their absence to make it weak. With 10
// expected, a correct run draws none with probability e^-10 (below 1 in
// 20,000): a weak verdict is then the run's, not chance's.
const MinExpectedToRequire = 10

// Coverage is what a run exercised: its operations by kind and outcome
// class, its duplicates and what the ledger shows of them, its rejections,
// and each required class with whether it was met.
type Coverage struct {
	// Kinds holds the journal's operations by kind (deposit, withdrawal,
	// transfer, misuse).
	Kinds map[string]*KindCoverage `json:"kinds"`
	// Duplicates are the duplicate sends and what became of their keys.
	Duplicates DuplicateCoverage `json:"duplicates"`
	// Rejections are the refusals justified-rejection saw.
	Rejections RejectionCoverage `json:"rejections"`
	// Required lists every required class; one not met makes the verdict
	// weak.
	Required []RequiredClass `json:"required"`
	// Note says where the requirements came from, or why the scenario's
	// promises are not known.
	Note string `json:"note,omitempty"`
}

// KindCoverage counts one kind's journal lines by outcome class. Every line
// is in exactly one of settled, rejected, conflict, in flight and unknown;
// replayed, retried and duplicates sent count properties of lines already
// counted there.
type KindCoverage struct {
	// Operations counts the lines; Setup those of the load's setup (vu 0,
	// iter -1), included in Operations.
	Operations int64 `json:"operations"`
	Setup      int64 `json:"setup"`
	// Settled: outcome ok.
	Settled int64 `json:"settled"`
	// Rejected: outcome fail, by reason ("(none given)" without one).
	Rejected map[string]int64 `json:"rejected"`
	// Conflict: a request that reused a key with another body (kind
	// misuse) and was refused, whatever status the API answered it with.
	Conflict int64 `json:"conflict"`
	// InFlight: outcome info after the system accepted the request (status
	// accepted): the client stopped waiting for its outcome.
	InFlight int64 `json:"in_flight"`
	// Unknown: outcome info without an acceptance (timeout, 5xx, no answer).
	Unknown int64 `json:"unknown"`
	// Replayed counts lines that got a stored answer again: a line of a key
	// an earlier line used with the same body, or a line whose duplicate was
	// answered 2xx (the system replayed the original's answer).
	Replayed int64 `json:"replayed"`
	// Retried counts lines sent more than once (attempts > 1).
	Retried int64 `json:"retried"`
	// DuplicatesSent counts the lines the harness sent a duplicate of.
	DuplicatesSent int64 `json:"duplicates_sent"`
}

// DuplicateCoverage is what the journal and the ledger say of the
// duplicates. Whether a duplicate reached a worker is not in the ledger
// (the worker drops it and writes nothing): the ledger only shows that its
// key has one transaction. The report adds the workers' own count from
// their metrics when the run scraped them.
type DuplicateCoverage struct {
	// Sent counts the journaled duplicate sends by mode (concurrent,
	// delayed).
	Sent map[string]int64 `json:"sent"`
	// Answers counts the duplicates' last HTTP answers: replayed (2xx, the
	// stored answer), conflict (409: the key was in flight), refused (another
	// 4xx), unknown (5xx or no answer), not recorded.
	Answers map[string]int64 `json:"answers"`
	// Keys counts the duplicated keys: AppliedOnce those the ledger holds
	// exactly one transaction for, AppliedMoreThanOnce those with more (an
	// exactly-once violation each), WithoutTransaction those with none.
	Keys                int64 `json:"keys"`
	AppliedOnce         int64 `json:"applied_once"`
	AppliedMoreThanOnce int64 `json:"applied_more_than_once"`
	WithoutTransaction  int64 `json:"without_transaction"`
	// KeysSentMoreThanOnce counts the keys with a ledger transaction that
	// were sent more than once in any way (duplicate, replayed journal line,
	// retry): what exactly-once had to apply once. ReplayedKeys and
	// RetriedKeys count those of them replayed as an operation of their own,
	// and those retried.
	KeysSentMoreThanOnce int64 `json:"keys_sent_more_than_once"`
	ReplayedKeys         int64 `json:"replayed_keys"`
	RetriedKeys          int64 `json:"retried_keys"`
}

// RejectionCoverage counts the refusals of the run.
type RejectionCoverage struct {
	// Ledger counts the run's ledger transactions rejected, by reason.
	Ledger map[string]int64 `json:"ledger"`
	// Soft counts, of Ledger, the rejections stored without a stream
	// position (a gateway's soft checks: docs/limits.md), by reason.
	Soft map[string]int64 `json:"soft,omitempty"`
	// BeforeLedger counts the operations refused without a ledger
	// transaction (outcome fail, the key has none: refused by the gateway),
	// by reason.
	BeforeLedger map[string]int64 `json:"before_ledger"`
	// Judged counts the refusals justified-rejection decided (justified or
	// not); NotDecidable those it could not, by why; NotJudged those whose
	// reason is no decision about money (rate_limited, key in flight,
	// invalid_request...), by reason.
	Judged       int64            `json:"judged"`
	NotDecidable map[string]int64 `json:"not_decidable"`
	NotJudged    map[string]int64 `json:"not_judged"`
}

// RequiredClass is one required class and what the run did of it.
type RequiredClass struct {
	Class string `json:"class"`
	Why   string `json:"why"`
	// Expected is rate × base for a class the scenario promised as a rate
	// (absent: required outright). Waived says why a promised class was
	// not required after all (too few expected); it is then met.
	Expected *float64 `json:"expected,omitempty"`
	Waived   string   `json:"waived,omitempty"`
	// Observed counts what exercised it (ClassDescription.Counts).
	Observed int64 `json:"observed"`
	Met      bool  `json:"met"`
	// Invariants are those left not exercised without it.
	Invariants []string `json:"invariants"`
}

// Missing lists the required classes that were not met, as sentences.
func (c *Coverage) Missing() []string {
	if c == nil {
		return nil
	}
	var missing []string
	for _, class := range c.Required {
		if !class.Met {
			missing = append(missing, fmt.Sprintf("%s required (%s) but none happened, so %s not exercised",
				class.Class, class.Why, strings.Join(class.Invariants, ", ")))
		}
	}
	return missing
}

// Units of Checked that say an invariant was exercised.
const (
	unitNearLimit        = "debits near the limit"
	unitRejectedForFunds = "debits rejected for insufficient funds"
	unitKeysSentTwice    = "keys sent more than once"
	unitDebitsCompared   = "debits compared"
	unitRejectionsJudged = "rejections"
)

// Names in the coverage's counts.
const (
	reasonNoneGiven         = "(none given)"
	duplicateNotRecorded    = "not recorded"
	duplicateAnswerReplay   = "replayed"
	duplicateAnswerConflict = "conflict"
)

// count adds one money or misuse line of the journal to the coverage;
// replay says it is not its key's first line.
func (h *history) count(entry *JournalEntry, replay bool) {
	kind := h.kinds[entry.Kind]
	if kind == nil {
		kind = &KindCoverage{Rejected: map[string]int64{}}
		h.kinds[entry.Kind] = kind
	}
	kind.Operations++
	if entry.VU == 0 && entry.Iter == -1 {
		kind.Setup++
	}
	misuse := entry.Kind == KindMisuse
	switch {
	case entry.Outcome == OutcomeOK:
		kind.Settled++
	case entry.Outcome == OutcomeFail && misuse:
		kind.Conflict++
	case entry.Outcome == OutcomeFail:
		reason := entry.Reason
		if reason == "" {
			reason = reasonNoneGiven
		}
		if _, known := kind.Rejected[reason]; known || len(kind.Rejected) < maxCoverageReasons {
			kind.Rejected[reason]++
		} else {
			kind.Rejected["(other reasons)"]++
		}
	case entry.Status == StatusAccepted:
		kind.InFlight++
	default:
		kind.Unknown++
	}
	if entry.Attempts > 1 {
		kind.Retried++
	}
	if entry.Dup == "" {
		if replay {
			kind.Replayed++
		}
		return
	}
	kind.DuplicatesSent++
	mode := entry.Dup
	if _, known := h.duplicates.Sent[mode]; !known && len(h.duplicates.Sent) >= maxCoverageReasons {
		mode = "(other modes)"
	}
	h.duplicates.Sent[mode]++
	answer := duplicateNotRecorded
	if n := len(entry.DupStatuses); n > 0 {
		switch status := entry.DupStatuses[n-1]; {
		case status >= 200 && status < 300:
			answer = duplicateAnswerReplay
		case status == 409:
			answer = duplicateAnswerConflict
		case status >= 400 && status < 500:
			answer = "refused"
		default:
			answer = "unknown"
		}
	}
	h.duplicates.Answers[answer]++
	if replay || answer == duplicateAnswerReplay {
		kind.Replayed++
	}
}

// maxCoverageReasons bounds the distinct reasons (and duplicate modes)
// counted apart per kind: reasons are error codes, a short list.
const maxCoverageReasons = 64

// markNotExercised turns every passed invariant whose class the run never
// produced into not exercised, saying why in its note, from what the
// checks counted.
func (a *auditor) markNotExercised() {
	for _, entry := range Catalogue {
		invariant := a.invariants[entry.Name]
		if invariant.Status != StatusPassed {
			continue
		}
		checked := invariant.Checked
		var why string
		switch entry.Name {
		case Conservation, NoPhantoms:
			if checked["transactions"] == 0 {
				why = "the ledger holds no transaction to check"
			}
		case BalanceEqualsPostings:
			if a.postingsSeen == 0 {
				why = "no posting moved a balance"
			}
		case NoOverdraft:
			if checked[unitNearLimit]+checked[unitRejectedForFunds] == 0 {
				why = "no debit came near its account's limit: none was rejected for insufficient funds, none left its account with less than its amount"
			}
		case ExactlyOnce:
			if checked[unitKeysSentTwice] == 0 {
				why = fmt.Sprintf("no key with a ledger transaction was sent more than once (no duplicate, replay or retry); %d key(s) sent once were checked",
					checked["keys"])
			}
		case OutcomeAgreement:
			if checked["operations"] == 0 {
				why = "no operation had a ledger transaction to compare with"
			}
		case KeyContract:
			if checked["misuses"] == 0 {
				why = "no key was reused with another body"
				if shared := checked["shared keys"]; shared > 0 {
					why += fmt.Sprintf(" (%d key(s) shared by requests with the same body were checked)", shared)
				}
			}
		case PerAccountOrder:
			if checked[unitDebitsCompared] == 0 {
				why = "no debit of an account was invoked after another debit of it had completed"
			}
		case Durability:
			if checked["acknowledged keys"] == 0 {
				why = "no operation was acknowledged to the client"
			}
		case CacheCoherence:
			if checked["cached balances"] == 0 {
				why = "no account's balance was cached"
			}
		}
		if why != "" {
			invariant.Status = StatusNotExercised
			invariant.Note = joinNotes(invariant.Note, "not exercised: "+why)
		}
	}
}

func joinNotes(notes ...string) string {
	var kept []string
	for _, note := range notes {
		if note != "" {
			kept = append(kept, note)
		}
	}
	return strings.Join(kept, "; ")
}

// finishCoverage builds the result's coverage and reports whether every
// required class was met.
func (a *auditor) finishCoverage(duplicates DuplicateCoverage) bool {
	coverage := a.coverage
	coverage.Kinds = a.history.kinds
	coverage.Duplicates = duplicates
	coverage.Note = a.config.RequireNote
	observed := map[string]int64{
		ClassDuplicates:        duplicates.Keys - duplicates.WithoutTransaction,
		ClassReplays:           duplicates.ReplayedKeys,
		ClassRetries:           duplicates.RetriedKeys,
		ClassInsufficientFunds: coverage.Rejections.Ledger[ReasonInsufficientFunds] - coverage.Rejections.Soft[ReasonInsufficientFunds],
		ClassSoftRefusals:      sumCounts(coverage.Rejections.Soft),
		ClassDailyLimit:        coverage.Rejections.Ledger[ReasonDailyLimitExceeded],
	}
	// The bases promised rates apply to: the load's money operations, and
	// its debits.
	var money, debits int64
	for _, kind := range []string{KindDeposit, KindWithdrawal, KindTransfer} {
		if counts := coverage.Kinds[kind]; counts != nil {
			money += counts.Operations - counts.Setup
			if kind != KindDeposit {
				debits += counts.Operations - counts.Setup
			}
		}
	}
	observed[ClassMoneyOperations] = money
	if counts := coverage.Kinds[KindMisuse]; counts != nil {
		observed[ClassKeyReuse] = counts.Operations
	}
	requirements := append([]Requirement{{Class: ClassMoneyOperations,
		Why: "always: an audit of a run without money operations proves nothing"}}, a.config.Require...)
	seen := map[string]int{}
	for _, requirement := range requirements {
		index, duplicate := seen[requirement.Class]
		if !duplicate {
			description, _ := classDescription(requirement.Class)
			index = len(coverage.Required)
			seen[requirement.Class] = index
			coverage.Required = append(coverage.Required, RequiredClass{Class: requirement.Class, Why: requirement.Why,
				Observed: observed[requirement.Class], Invariants: description.Invariants})
		} else {
			coverage.Required[index].Why += "; " + requirement.Why
		}
		class := &coverage.Required[index]
		if requirement.Rate <= 0 {
			// Required outright: no rate waives it.
			class.Expected, class.Waived = nil, ""
			continue
		}
		if duplicate && class.Expected == nil {
			continue
		}
		base := money
		if requirement.Class == ClassInsufficientFunds {
			base = debits
		}
		expected := requirement.Rate * float64(base)
		if class.Expected != nil {
			expected = max(expected, *class.Expected)
		}
		class.Expected, class.Waived = &expected, ""
		if expected < MinExpectedToRequire {
			class.Waived = fmt.Sprintf("%.1f expected (rate %g of %d), fewer than %d: a run this short may draw none, so it is not required",
				expected, requirement.Rate, base, MinExpectedToRequire)
		}
	}
	met := true
	for index := range coverage.Required {
		class := &coverage.Required[index]
		class.Met = class.Observed > 0 || class.Waived != ""
		met = met && class.Met
	}
	a.result.Coverage = coverage
	return met
}

// FormatCounts renders counts by name on one line, the largest first
// ("insufficient_funds 12, forbidden 2"); "none" when empty.
func FormatCounts(counts map[string]int64) string {
	names := make([]string, 0, len(counts))
	for name, n := range counts {
		if n != 0 {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	sort.Slice(names, func(i, j int) bool {
		if counts[names[i]] != counts[names[j]] {
			return counts[names[i]] > counts[names[j]]
		}
		return names[i] < names[j]
	})
	parts := make([]string, 0, len(names))
	for _, name := range names {
		parts = append(parts, fmt.Sprintf("%s %d", name, counts[name]))
	}
	return strings.Join(parts, ", ")
}

func sumCounts(counts map[string]int64) int64 {
	var total int64
	for _, count := range counts {
		total += count
	}
	return total
}
