package invariants

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// Rejection reasons justified-rejection judges: the reference API's codes
// (sut/ledger/errors.go). A system whose ledger uses other words has its
// rejections counted as not judged.
const (
	ReasonInsufficientFunds = "insufficient_funds"
	ReasonAccountNotFound   = "account_not_found"
	ReasonForbidden         = "forbidden"
	ReasonBalanceLimit      = "balance_limit"
	ReasonSameAccount       = "same_account"
	ReasonInvalidAmount     = "invalid_amount"
)

// How justified-rejection placed a rejection in its account's order.
//
// A rejected transaction has no postings, but it has a position in its
// stream (the Kafka partition and offset in the reference system), and so
// do the settled ones. One worker applies a stream in position order, so
// the rejection was decided after every posting of the account that came
// from a lower position of the same stream, and before every posting from
// a higher one. Postings from other streams (credits of transfers from
// accounts of other partitions) may fall on either side. The balance the
// rejection was decided against is therefore one of the balances of the
// account between the last posting of a lower position (or its opening 0)
// and the first posting of a higher position: the window. insufficient_funds
// is justified when the lowest balance of the window could not cover the
// debit; balance_limit when the highest balance of the window plus the
// credit passes the limit. Postings are streamed once, in id order; a
// window is tracked per account and stream with one minimum and maximum
// shared by every rejection not yet closed (they all opened at the same
// posting), so the cost is O(postings of the accounts with rejections).
// Without a position (an export without applied_order), with positions that
// are not unique in the stream (a system that applies without one, like the
// reference's naive mode), or with a stream applied out of position order on
// the account, the moment cannot be placed: the rejection is not decidable.

// rejectionProbe is a rejection whose justification needs one account's
// balance at the moment it was decided.
type rejectionProbe struct {
	row   int32
	group int32
	order int64
	// min and max are the window's lowest and highest balances.
	min, max int64
	// from is the account's last posting of a lower position (hasFrom
	// false: the window opens at the account's opening balance, 0), and
	// fromBalance the balance right after it; to is the first posting of a
	// higher position (hasTo false: none came).
	from, to       Posting
	fromBalance    int64
	hasFrom, hasTo bool
}

// probeGroup is the open window of one account in one stream.
type probeGroup struct {
	account   int64
	partition int32
	// probes are the group's probes by position; next is the first one
	// still open.
	probes     []int32
	next       int
	lastOrder  int64
	disordered bool
	min, max   int64
	from       Posting
	fromBal    int64
	hasFrom    bool
}

// rejectionState is justified-rejection's state.
type rejectionState struct {
	prepared        bool
	probes          []rejectionProbe
	groups          []probeGroup
	groupsByAccount map[int64][]int32
	// probesOfRow maps a rejected row to its probes: the debited account's
	// and the credited account's (-1: none).
	probesOfRow map[int32][2]int32
	// unordered holds the streams whose positions are not unique.
	unordered map[int32]bool
	// keyInvoke is each key's earliest invoke, built on first need.
	keyInvoke []int64
}

// prepareProbes creates a probe for every rejection that needs a balance,
// once every transaction is read and before the first posting.
func (a *auditor) prepareProbes() {
	state := &a.rejections
	state.prepared = true
	state.groupsByAccount = map[int64][]int32{}
	state.probesOfRow = map[int32][2]int32{}
	var candidates []int32
	streams := map[int32]bool{}
	for index := range a.rows {
		row := &a.rows[index]
		if row.status != statusRejected || row.key < 0 || !row.hasOrder || row.kind == 0 || row.kind == opMisuse {
			continue
		}
		switch a.history.reasons[row.reason] {
		case ReasonInsufficientFunds:
			if row.kind == opDeposit {
				continue // judged without a balance
			}
		case ReasonBalanceLimit:
			if a.config.MaxBalanceMinor == 0 {
				continue
			}
		default:
			continue
		}
		candidates = append(candidates, int32(index))
		streams[row.partition] = true
	}
	if len(candidates) == 0 {
		return
	}
	state.unordered = a.unorderedStreams(streams)
	groupOf := map[[2]int64]int32{}
	addProbe := func(rowIndex int32, account int64) int32 {
		row := &a.rows[rowIndex]
		key := [2]int64{account, int64(row.partition)}
		group, ok := groupOf[key]
		if !ok {
			group = int32(len(state.groups))
			state.groups = append(state.groups, probeGroup{account: account, partition: row.partition, lastOrder: math.MinInt64})
			groupOf[key] = group
			state.groupsByAccount[account] = append(state.groupsByAccount[account], group)
		}
		probe := int32(len(state.probes))
		state.probes = append(state.probes, rejectionProbe{row: rowIndex, group: group, order: row.order})
		state.groups[group].probes = append(state.groups[group].probes, probe)
		return probe
	}
	for _, rowIndex := range candidates {
		row := &a.rows[rowIndex]
		if state.unordered[row.partition] {
			continue
		}
		probes := [2]int32{-1, -1}
		if row.kind != opDeposit && row.source != 0 {
			probes[0] = addProbe(rowIndex, row.source)
		}
		if a.history.reasons[row.reason] == ReasonBalanceLimit && row.kind != opWithdrawal && row.destination != 0 {
			probes[1] = addProbe(rowIndex, row.destination)
		}
		state.probesOfRow[rowIndex] = probes
	}
	for i := range state.groups {
		group := &state.groups[i]
		sort.Slice(group.probes, func(x, y int) bool {
			return state.probes[group.probes[x]].order < state.probes[group.probes[y]].order
		})
	}
}

// unorderedStreams returns the streams (among those given) in which two
// transactions share a position: their positions are no order.
func (a *auditor) unorderedStreams(streams map[int32]bool) map[int32]bool {
	type position struct {
		partition int32
		order     int64
	}
	var positions []position
	for index := range a.rows {
		if row := &a.rows[index]; row.hasOrder && streams[row.partition] {
			positions = append(positions, position{row.partition, row.order})
		}
	}
	slices.SortFunc(positions, func(x, y position) int {
		if c := cmp.Compare(x.partition, y.partition); c != 0 {
			return c
		}
		return cmp.Compare(x.order, y.order)
	})
	unordered := map[int32]bool{}
	for i := 1; i < len(positions); i++ {
		if positions[i] == positions[i-1] {
			unordered[positions[i].partition] = true
		}
	}
	return unordered
}

// advanceProbes moves the windows of an account past one of its postings,
// after which the account's balance is balance.
func (a *auditor) advanceProbes(groups []int32, p *Posting, row *txRow, balance int64) {
	state := &a.rejections
	for _, index := range groups {
		group := &state.groups[index]
		if row == nil || !row.hasOrder || row.partition != group.partition {
			// Another stream's posting: it may fall before or after.
			group.min, group.max = min(group.min, balance), max(group.max, balance)
			continue
		}
		position := row.order
		if position < group.lastOrder {
			group.disordered = true
		}
		// The rejections of a lower position were decided before this
		// posting: their windows close.
		for group.next < len(group.probes) && state.probes[group.probes[group.next]].order < position {
			probe := &state.probes[group.probes[group.next]]
			probe.min, probe.max = group.min, group.max
			probe.from, probe.fromBalance, probe.hasFrom = group.from, group.fromBal, group.hasFrom
			probe.to, probe.hasTo = *p, true
			group.next++
		}
		// The rejections of a higher position were decided after it: their
		// windows open here.
		group.min, group.max = balance, balance
		group.from, group.fromBal, group.hasFrom = *p, balance, true
		group.lastOrder = position
	}
}

// finishProbes closes the windows still open after the last posting.
func (a *auditor) finishProbes() {
	if !a.rejections.prepared {
		a.prepareProbes()
	}
	state := &a.rejections
	for index := range state.groups {
		group := &state.groups[index]
		for ; group.next < len(group.probes); group.next++ {
			probe := &state.probes[group.probes[group.next]]
			probe.min, probe.max = group.min, group.max
			probe.from, probe.fromBalance, probe.hasFrom = group.from, group.fromBal, group.hasFrom
		}
	}
}

// judgement is justified-rejection's finding on one refusal.
type judgement uint8

const (
	notJudged judgement = iota
	notDecidable
	justified
	unjustified
)

// refusal is one refusal to judge: a rejected ledger row (row ≥ 0), or an
// operation refused before the ledger (row -1).
type refusal struct {
	reason                            string
	kind                              opKind
	user, source, destination, amount int64
	row                               int32
	op                                int32
	key                               int32
}

// checkRejections judges every rejection of the run: each rejected ledger
// transaction of a journaled key, and each operation refused without a
// ledger transaction.
func (a *auditor) checkRejections() {
	rejections := &a.coverage.Rejections
	var judged int64
	judge := func(r refusal) {
		if r.reason == ReasonDailyLimitExceeded {
			return // judged by limits-respected (limits.go)
		}
		verdict, why := a.judgeRefusal(r)
		switch verdict {
		case notJudged:
			rejections.NotJudged[boundedName(rejections.NotJudged, nonEmptyReason(r.reason))]++
		case notDecidable:
			rejections.NotDecidable[boundedName(rejections.NotDecidable, why)]++
		case justified:
			judged++
		case unjustified:
			judged++
			a.report(JustifiedRejection, func() Violation { return a.explainRefusal(r, why) })
		}
	}
	// Rejections without a stream position are a gateway's soft refusals
	// in a system that queues commands (some row has one); in one that
	// applies each request itself (the naive mode: no row has one) they are
	// the apply's.
	queued := false
	for index := range a.rows {
		if a.rows[index].hasOrder {
			queued = true
			break
		}
	}
	for index := range a.rows {
		row := &a.rows[index]
		if row.status != statusRejected || row.key < 0 || row.kind == 0 {
			continue
		}
		reason := a.history.reasons[row.reason]
		rejections.Ledger[boundedName(rejections.Ledger, nonEmptyReason(reason))]++
		if queued && !row.hasOrder && (reason == ReasonInsufficientFunds || reason == ReasonDailyLimitExceeded) {
			if rejections.Soft == nil {
				rejections.Soft = map[string]int64{}
			}
			rejections.Soft[reason]++
		}
		if reason == ReasonInsufficientFunds && row.kind != opDeposit {
			a.checked(NoOverdraft, unitRejectedForFunds, 1)
		}
		key := &a.history.keys[row.key]
		judge(refusal{reason: reason, kind: row.kind, user: row.user, source: row.source, destination: row.destination,
			amount: row.amount, row: int32(index), op: key.first, key: row.key})
	}
	for index := range a.history.operations {
		op := &a.history.operations[index]
		if op.kind == opMisuse || op.outcome != outcomeFail || a.history.keys[op.key].row >= 0 {
			continue
		}
		reason := a.history.reasons[op.reason]
		rejections.BeforeLedger[boundedName(rejections.BeforeLedger, nonEmptyReason(reason))]++
		judge(refusal{reason: reason, kind: op.kind, user: a.history.keys[op.key].user, source: op.from,
			destination: op.to, amount: op.amount, row: -1, op: int32(index), key: op.key})
	}
	rejections.Judged = judged
	if judged > 0 {
		a.checked(JustifiedRejection, unitRejectionsJudged, judged)
	}
	invariant := a.invariants[JustifiedRejection]
	var undecided int64
	for _, n := range rejections.NotDecidable {
		undecided += n
	}
	note := ""
	if undecided > 0 {
		note = fmt.Sprintf("%d rejection(s) not decidable from this ledger: %s", undecided, FormatCounts(rejections.NotDecidable))
	}
	if len(rejections.NotJudged) > 0 {
		note = joinNotes(note, "refusals that decide nothing about money, not judged: "+FormatCounts(rejections.NotJudged))
	}
	switch {
	case invariant.Status == StatusViolated, judged > 0:
	case undecided > 0:
		invariant.Status = StatusSkipped
		note = "no rejection could be judged: " + note
	default:
		invariant.Status = StatusNotExercised
		note = joinNotes("not exercised: no operation was rejected for a reason about money", note)
	}
	invariant.Note = joinNotes(invariant.Note, note)
}

func nonEmptyReason(reason string) string {
	if reason == "" {
		return reasonNoneGiven
	}
	return reason
}

// boundedName returns name, or "(other)" once counts holds
// maxCoverageReasons names and not this one.
func boundedName(counts map[string]int64, name string) string {
	if _, known := counts[name]; known || len(counts) < maxCoverageReasons {
		return name
	}
	return "(other)"
}

// judgeRefusal decides whether the ledger explains a refusal; why says
// what was found (a violation's reason, or why it cannot be decided).
func (a *auditor) judgeRefusal(r refusal) (judgement, string) {
	switch r.reason {
	case ReasonInsufficientFunds:
		if r.kind == opDeposit {
			return unjustified, "a deposit debits no user account, so it cannot lack funds"
		}
		if r.row < 0 {
			return notDecidable, "insufficient_funds refused before the ledger: its moment in the account's order is unknown"
		}
		probe, why := a.probeOf(r.row, 0)
		if probe == nil {
			return notDecidable, why
		}
		if probe.min < r.amount {
			return justified, ""
		}
		return unjustified, a.windowText(probe, "lowest")
	case ReasonBalanceLimit:
		limit := a.config.MaxBalanceMinor
		switch {
		case limit == 0:
			return notDecidable, "balance_limit: the system's balance limit is not known"
		case r.row < 0:
			return notDecidable, "balance_limit refused before the ledger: its moment in the account's order is unknown"
		}
		debit, debitWhy := a.probeOf(r.row, 0)
		credit, creditWhy := a.probeOf(r.row, 1)
		if debit == nil && r.kind != opDeposit {
			return notDecidable, debitWhy
		}
		if credit == nil && r.kind != opWithdrawal {
			return notDecidable, creditWhy
		}
		if credit != nil && credit.max > limit-r.amount {
			return justified, ""
		}
		if debit != nil && debit.min < math.MinInt64+r.amount {
			return justified, ""
		}
		if credit == nil {
			return unjustified, fmt.Sprintf("a withdrawal credits no user account, and account %d's balance stayed at least %d (no debit of %d could overflow)",
				r.source, debit.min, r.amount)
		}
		return unjustified, fmt.Sprintf("the limit is %d; ", limit) + a.windowText(credit, "highest")
	case ReasonAccountNotFound:
		return a.judgeAccountsExisted(r)
	case ReasonForbidden:
		own := r.source
		if r.kind == opDeposit {
			own = r.destination
		}
		if account := a.accounts[own]; account != nil && account.listed && !account.external && account.userID == r.user {
			return unjustified, fmt.Sprintf("account %d belongs to user %d, who sent the request", own, r.user)
		}
		return justified, ""
	case ReasonSameAccount:
		if r.source == r.destination {
			return justified, ""
		}
		return unjustified, fmt.Sprintf("the request moves money from account %d to account %d, two different accounts", r.source, r.destination)
	case ReasonInvalidAmount:
		switch maximum := a.config.MaxAmountMinor; {
		case r.amount <= 0, maximum > 0 && r.amount > maximum:
			return justified, ""
		case maximum == 0:
			return notDecidable, "invalid_amount: the system's largest amount is not known"
		default:
			return unjustified, fmt.Sprintf("the amount %d is between 1 and the largest amount, %d", r.amount, maximum)
		}
	}
	return notJudged, ""
}

// probeOf returns a rejected row's probe (side 0 the debited account's, 1
// the credited account's), or nil and why its moment cannot be placed.
func (a *auditor) probeOf(rowIndex int32, side int) (*rejectionProbe, string) {
	row := &a.rows[rowIndex]
	state := &a.rejections
	probes, ok := state.probesOfRow[rowIndex]
	switch {
	case !row.hasOrder:
		return nil, "the ledger gives no position (applied_order) for the rejection"
	case state.unordered[row.partition]:
		return nil, fmt.Sprintf("positions of stream %d are not unique (no applied order)", row.partition)
	case !ok || probes[side] < 0:
		return nil, "the rejection names no user account to place it by"
	}
	probe := &state.probes[probes[side]]
	if group := &state.groups[probe.group]; group.disordered {
		return nil, fmt.Sprintf("stream %d was applied out of position order on account %d", group.partition, group.account)
	}
	return probe, ""
}

// windowText describes a probe's window for an explanation.
func (a *auditor) windowText(probe *rejectionProbe, bound string) string {
	group := &a.rejections.groups[probe.group]
	opens := "the account's opening (balance 0)"
	if probe.hasFrom {
		opens = fmt.Sprintf("posting %d (balance %d after it), the account's last posting from a lower position", probe.from.ID, probe.fromBalance)
	}
	closes := "the end of its postings"
	if probe.hasTo {
		closes = fmt.Sprintf("posting %d, its first from a higher position", probe.to.ID)
	}
	value := probe.min
	if bound == "highest" {
		value = probe.max
	}
	return fmt.Sprintf("it was decided at stream %d, position %d, which falls in account %d's postings between %s, and %s: the %s balance there is %d (range %d to %d)",
		group.partition, probe.order, group.account, opens, closes, bound, value, probe.min, probe.max)
}

// judgeAccountsExisted judges account_not_found: justified when an account
// the request names is not a user account of the ledger; not justified when
// every one was created by a signup of the journal that completed before
// the request was first sent; otherwise not decidable (when an account the
// journal did not create came to exist is not known).
func (a *auditor) judgeAccountsExisted(r refusal) (judgement, string) {
	var named []int64
	if r.kind != opDeposit {
		named = append(named, r.source)
	}
	if r.kind != opWithdrawal {
		named = append(named, r.destination)
	}
	invoke := a.firstInvoke(r)
	var unknown []string
	for _, id := range named {
		account := a.accounts[id]
		if account == nil || !account.listed || account.external {
			return justified, ""
		}
		created, ok := a.history.created[id]
		if !ok || created.complete > invoke {
			unknown = append(unknown, fmt.Sprint(id))
		}
	}
	if len(unknown) > 0 {
		return notDecidable, "account_not_found for an account the journal did not create before the request: when it came to exist is not known"
	}
	ids := make([]string, len(named))
	for i, id := range named {
		ids[i] = fmt.Sprint(id)
	}
	return unjustified, fmt.Sprintf("account(s) %s exist in the ledger and their signups had completed before the request was first sent (%s)",
		strings.Join(ids, " and "), formatMicros(invoke))
}

// firstInvoke is when the refused request was first sent: the earliest
// invoke of its key (a row), or its operation's (a refusal before the
// ledger).
func (a *auditor) firstInvoke(r refusal) int64 {
	if r.row < 0 {
		return a.history.operations[r.op].invoke
	}
	state := &a.rejections
	if state.keyInvoke == nil {
		state.keyInvoke = make([]int64, len(a.history.keys))
		for i := range state.keyInvoke {
			state.keyInvoke[i] = math.MaxInt64
		}
		for index := range a.history.operations {
			op := &a.history.operations[index]
			state.keyInvoke[op.key] = min(state.keyInvoke[op.key], op.invoke)
		}
	}
	return state.keyInvoke[r.key]
}

// explainRefusal builds the violation of an unjustified refusal: the
// request, the row, and the ledger rows that show it was wrong.
func (a *auditor) explainRefusal(r refusal, why string) Violation {
	where := "the ledger rejected"
	if r.row < 0 {
		where = "the system refused before the ledger"
	}
	v := Violation{
		Summary: fmt.Sprintf("%s %s of %d from %d to %d (key %s) for %s, which the ledger does not explain: %s",
			where, r.kind, r.amount, r.source, r.destination, a.keyName(r.key), r.reason, why),
		Keys: []string{a.keyString(r.key)}, Accounts: []int64{r.source, r.destination},
	}
	if r.row >= 0 {
		v.Operations = a.operationsOfKey(r.key, 4)
		v.Rows = append(v.Rows, a.rowRef(r.row))
		for side := range 2 {
			if probe, _ := a.probeOf(r.row, side); probe != nil {
				partition := a.rejections.groups[probe.group].partition
				if probe.hasFrom {
					from := probe.from
					v.Rows = append(v.Rows, postingRef(&from, fmt.Sprintf("last posting of the account from a lower position of stream %d: the window opens after it", partition)))
				}
				if probe.hasTo {
					to := probe.to
					v.Rows = append(v.Rows, postingRef(&to, fmt.Sprintf("first posting of the account from a higher position of stream %d: the window closes before it", partition)))
				}
			}
		}
	} else {
		v.Operations = []OperationRef{a.operationRef(r.op)}
	}
	for _, id := range uniqueAccounts(r.source, r.destination) {
		if account := a.accounts[id]; account != nil && account.listed && !account.external {
			v.Rows = append(v.Rows, accountRef(id, account))
		}
		if created, ok := a.history.created[id]; ok && r.reason == ReasonAccountNotFound {
			v.Operations = append(v.Operations, a.signupRef(created))
		}
	}
	return v
}

func uniqueAccounts(source, destination int64) []int64 {
	if source == destination {
		return []int64{source}
	}
	return []int64{source, destination}
}

// signupRef quotes the signup line that created an account.
func (a *auditor) signupRef(created signupRef) OperationRef {
	ref := OperationRef{Journal: filepath.Base(a.history.files[created.file]), Offset: created.offset}
	line, err := a.journal.line(created.file, created.offset)
	if err != nil {
		ref.Entry, _ = json.Marshal(map[string]string{"error": err.Error()})
	} else {
		ref.Entry = line
	}
	return ref
}
