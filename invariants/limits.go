package invariants

import (
	"fmt"
	"math"
	"sort"
	"time"
)

// ReasonDailyLimitExceeded is the reason of a debit that would take the
// user's settled debits of its UTC day above the daily debit limit
// (docs/limits.md), judged by limits-respected rather than
// justified-rejection. limits-respected also judges the insufficient_funds
// rejections without a stream position, which justified-rejection cannot
// place in their account's order (it counts them not decidable): the
// reference gateway's soft balance check stores its refusals so, and a
// system that applies without positions (the naive mode) decided its own
// inside the request.
const ReasonDailyLimitExceeded = "daily_limit_exceeded"

// limitsDescription is limits-respected's line of the catalogue.
const limitsDescription = "no user's settled debits (withdrawals and transfers out) of one UTC day (the day of the transaction's accepted_at) exceed the daily debit limit; " +
	"every insufficient_funds rejection without a stream position (the gateway's soft balance check) was justified by a balance of the account below the amount that could have held during the request; " +
	"every daily_limit_exceeded rejection was justified by the user's settled debits of that day at that point plus the amount passing the limit"

// Units of limits-respected's checked counts.
const (
	unitUserDays          = "user-days"
	unitUserDaysNearLimit = "user-days near the limit"
	unitSoftRefusals      = "soft balance refusals judged"
	unitDailyRejections   = "daily-limit rejections judged"
)

// noDay marks a debit whose day is not known (the ledger gave no
// accepted_at).
const noDay = math.MinInt32

// limitRow is a debit row of the ledger limits-respected looks at: a
// settled debit, or a debit rejected for the daily limit.
type limitRow struct {
	row int32
	day int32
}

// balancePoint is one balance an account held: the balance after a posting
// (row: the posting's transaction, -1 when not in the ledger's
// transactions), or the opening balance 0 (opening).
type balancePoint struct {
	balance int64
	posting int64
	row     int32
	opening bool
}

// limitState is limits-respected's state, filled while the ledger streams
// by.
type limitState struct {
	debits []limitRow
	// withoutDay counts settled or limit-rejected debits whose ledger row
	// has no accepted_at.
	withoutDay int64
	// softRows are the insufficient_funds rejections without a stream
	// position (the soft balance check's refusals).
	softRows []int32
	// balances holds, for each account a soft refusal names, every balance
	// it held, in posting order.
	balances map[int64][]balancePoint
	// keyTimes is, per key, when it was first sent, when the client first
	// learned it settled, and when it was first told it failed (microseconds;
	// MinInt64/MaxInt64 when never).
	keyTimes []keyTime
}

type keyTime struct {
	invoke, settled, failed int64
}

// dayNumber is the UTC day of t as days since 1970-01-01.
func dayNumber(t time.Time) int32 {
	return int32(t.UTC().Unix() / 86400)
}

func formatDay(day int32) string {
	if day == noDay {
		return "unknown day"
	}
	return time.Unix(int64(day)*86400, 0).UTC().Format(time.DateOnly)
}

// limitsTransaction notes what limits-respected needs of a transaction row,
// as it is read.
func (a *auditor) limitsTransaction(index int32, t *Transaction, row *txRow) {
	state := &a.limits
	if row.kind != opWithdrawal && row.kind != opTransfer {
		return
	}
	if t.Reason == ReasonInsufficientFunds && row.status == statusRejected && !row.hasOrder {
		state.softRows = append(state.softRows, index)
		if state.balances == nil {
			state.balances = map[int64][]balancePoint{}
		}
		if _, ok := state.balances[row.source]; !ok {
			state.balances[row.source] = []balancePoint{{opening: true, row: -1}}
		}
	}
	// A compensated saga's transfer (docs/sharding.md) is rejected, yet its
	// debit was real while the saga was in flight and counted against the
	// day until the refund: a daily-limit refusal in that window was
	// justified by it. It is kept as a debit that may have come before a
	// refusal, never as a settled debit of the day's total.
	heldBySaga := a.sagaHeld(row.status, t.ID)
	if row.status != statusSettled && !heldBySaga && !(row.status == statusRejected && t.Reason == ReasonDailyLimitExceeded) {
		return
	}
	day := int32(noDay)
	if t.AcceptedAt != nil {
		day = dayNumber(*t.AcceptedAt)
	} else {
		state.withoutDay++
	}
	state.debits = append(state.debits, limitRow{row: index, day: day})
}

// limitsPosting records the balance an account a soft refusal names holds
// after a posting.
func (a *auditor) limitsPosting(p *Posting, rowIndex int32, found bool, balance int64) {
	points, ok := a.limits.balances[p.AccountID]
	if !ok {
		return
	}
	point := balancePoint{balance: balance, posting: p.ID, row: -1}
	if found {
		point.row = rowIndex
	}
	a.limits.balances[p.AccountID] = append(points, point)
}

// keyTimesOf returns the journal's times of a key, built on first need.
func (a *auditor) keyTimesOf(key int32) keyTime {
	state := &a.limits
	if state.keyTimes == nil {
		state.keyTimes = make([]keyTime, len(a.history.keys))
		for i := range state.keyTimes {
			state.keyTimes[i] = keyTime{invoke: math.MaxInt64, settled: math.MaxInt64, failed: math.MaxInt64}
		}
		for index := range a.history.operations {
			op := &a.history.operations[index]
			if op.kind == opMisuse {
				continue
			}
			times := &state.keyTimes[op.key]
			times.invoke = min(times.invoke, op.invoke)
			if op.outcome == outcomeOK || op.status == statusSettled {
				times.settled = min(times.settled, op.complete)
			}
			if op.outcome == outcomeFail {
				times.failed = min(times.failed, op.complete)
			}
		}
	}
	if key < 0 {
		return keyTime{invoke: math.MinInt64, settled: math.MaxInt64, failed: math.MaxInt64}
	}
	return state.keyTimes[key]
}

// startedAfter is the earliest moment a row's effect can have happened: its
// request's first send (the ledger cannot apply what was not sent yet), or
// the beginning of time for a row the journal did not send.
func (a *auditor) startedAfter(row int32) int64 {
	if row < 0 || a.rows[row].key < 0 {
		return math.MinInt64
	}
	times := a.keyTimesOf(a.rows[row].key)
	if times.invoke == math.MaxInt64 {
		return math.MinInt64
	}
	return times.invoke
}

// settledBefore is the latest moment a row's effect can have happened: when
// its client first learned it settled, or never known.
func (a *auditor) settledBefore(row int32) int64 {
	if row < 0 || a.rows[row].key < 0 {
		return math.MaxInt64
	}
	return a.keyTimesOf(a.rows[row].key).settled
}

// checkLimits checks limits-respected.
func (a *auditor) checkLimits() {
	invariant := a.invariants[LimitsRespected]
	limit := a.config.DailyDebitLimitMinor
	var notes []string
	exercised := false

	// (1) and (3): the days of each user.
	type userDay struct {
		user int64
		day  int32
	}
	days := map[userDay][]int32{}
	for _, debit := range a.limits.debits {
		row := &a.rows[debit.row]
		key := userDay{row.user, debit.day}
		days[key] = append(days[key], debit.row)
	}
	if limit == 0 {
		rejected := 0
		for _, debit := range a.limits.debits {
			if a.rows[debit.row].status == statusRejected && !a.heldBySaga(debit.row) {
				rejected++
			}
		}
		note := "the daily debit limit is not known (the run's config, or audit --daily-debit-limit): the days' debits were not checked"
		if rejected > 0 {
			note += fmt.Sprintf("; %d daily_limit_exceeded rejection(s) not judged", rejected)
		}
		notes = append(notes, note)
	} else {
		keys := make([]userDay, 0, len(days))
		for key := range days {
			keys = append(keys, key)
		}
		sort.Slice(keys, func(i, j int) bool {
			if keys[i].user != keys[j].user {
				return keys[i].user < keys[j].user
			}
			return keys[i].day < keys[j].day
		})
		for _, key := range keys {
			if key.day == noDay {
				continue
			}
			rows := days[key]
			var settled int64
			var settledRows []int32
			rejections := 0
			for _, index := range rows {
				switch {
				case a.rows[index].status == statusSettled:
					settled += a.rows[index].amount
					settledRows = append(settledRows, index)
				case !a.heldBySaga(index):
					rejections++
				}
			}
			a.checked(LimitsRespected, unitUserDays, 1)
			if settled >= limit/2 || rejections > 0 {
				a.checked(LimitsRespected, unitUserDaysNearLimit, 1)
				exercised = true
			}
			if settled > limit {
				user, day, total, evidence := key.user, key.day, settled, settledRows
				a.report(LimitsRespected, func() Violation {
					return a.explainDay(user, day, total, limit, evidence)
				})
			}
			for _, index := range rows {
				if a.rows[index].status == statusRejected && !a.heldBySaga(index) {
					a.judgeDailyRejection(index, rows, limit)
				}
			}
		}
		if a.limits.withoutDay > 0 {
			notes = append(notes, fmt.Sprintf("%d debit(s) without accepted_at in the ledger: their day is unknown, not checked", a.limits.withoutDay))
		}
	}

	// (2): the soft balance refusals.
	for _, index := range a.limits.softRows {
		a.judgeSoftRefusal(index)
	}
	if invariant.Checked[unitSoftRefusals] > 0 || invariant.Checked[unitDailyRejections] > 0 {
		exercised = true
	}
	switch {
	case invariant.Status == StatusViolated:
	case exercised:
		invariant.Status = StatusPassed
	default:
		invariant.Status = StatusNotExercised
		notes = append([]string{"not exercised: no soft balance refusal, no daily-limit rejection, and no user's debits of a day reached half the daily limit"}, notes...)
	}
	for _, note := range notes {
		invariant.Note = joinNotes(invariant.Note, note)
	}
}

// heldBySaga reports whether a row is the transfer of a compensated saga:
// its debit held the amount against the day while the saga was in flight.
func (a *auditor) heldBySaga(index int32) bool {
	row := &a.rows[index]
	return a.sagaHeld(row.status, a.rowID(row))
}

// sagaHeld is heldBySaga of a row's status and transaction id, for a row
// not yet stored (limitsTransaction).
func (a *auditor) sagaHeld(status status, id string) bool {
	return status == statusRejected && a.sagas.compensated[id]
}

// judgeDailyRejection judges one daily_limit_exceeded rejection against the
// user's settled debits of its day that may have come before it. A row
// with a stream position was decided by a worker in position order: the
// settled debits of lower positions of its stream came before it, those of
// other streams may have. A row without one was refused by the gateway: the
// settled debits whose request was sent before the refusal was answered may
// have come before it.
func (a *auditor) judgeDailyRejection(index int32, dayRows []int32, limit int64) {
	row := &a.rows[index]
	answered := a.keyTimesOf(row.key).failed
	var before int64
	for _, other := range dayRows {
		candidate := &a.rows[other]
		if other == index || !(candidate.status == statusSettled || a.heldBySaga(other)) {
			continue
		}
		possible := true
		switch {
		case row.hasOrder && candidate.hasOrder && candidate.partition == row.partition:
			possible = candidate.order < row.order
		case !row.hasOrder:
			possible = a.startedAfter(other) <= answered
		}
		if possible {
			before += candidate.amount
		}
	}
	a.checked(LimitsRespected, unitDailyRejections, 1)
	if before > limit-row.amount {
		return
	}
	a.report(LimitsRespected, func() Violation {
		where := "the worker"
		if !row.hasOrder {
			where = "the gateway"
		}
		v := Violation{
			Summary: fmt.Sprintf("%s rejected %s of %d by user %d (key %s) for daily_limit_exceeded, but the user's settled debits of %s that could have come before it sum to %d: %d + %d is within the limit %d",
				where, row.kind, row.amount, row.user, a.keyName(row.key), formatDay(a.dayOfRow(index)), before, before, row.amount, limit),
			Accounts: []int64{row.source}, Rows: []RowRef{a.rowRef(index)},
		}
		if row.key >= 0 {
			v.Keys = []string{a.keyString(row.key)}
			v.Operations = a.operationsOfKey(row.key, 4)
		}
		return v
	})
}

// dayOfRow is the day limits-respected gave a row.
func (a *auditor) dayOfRow(index int32) int32 {
	for _, debit := range a.limits.debits {
		if debit.row == index {
			return debit.day
		}
	}
	return noDay
}

// judgeSoftRefusal judges one insufficient_funds rejection without a stream
// position (a soft refusal): it is
// justified when some balance of the account below the amount could have
// held while the request was in flight. A balance holds from its posting's
// commit, which came after that request was first sent, to the next
// posting's commit, which came before that one's client learned it settled;
// the refused request ran from its first send to its first rejection
// answer. Only the client's own times are compared, so no clock is trusted
// beyond the journal's.
func (a *auditor) judgeSoftRefusal(index int32) {
	row := &a.rows[index]
	if row.key < 0 {
		return // not the run's request: no window to judge it in
	}
	times := a.keyTimesOf(row.key)
	points := a.limits.balances[row.source]
	a.checked(LimitsRespected, unitSoftRefusals, 1)
	lowest, lowestAt := int64(math.MaxInt64), -1
	for i, point := range points {
		start := int64(math.MinInt64)
		if !point.opening {
			start = a.startedAfter(point.row)
		}
		end := int64(math.MaxInt64)
		if i+1 < len(points) {
			end = a.settledBefore(points[i+1].row)
		}
		if start > times.failed || end < times.invoke {
			continue // provably before or after the request
		}
		if point.balance < row.amount {
			return
		}
		if point.balance < lowest {
			lowest, lowestAt = point.balance, i
		}
	}
	a.report(LimitsRespected, func() Violation {
		why := "no balance of the account could have held during the request"
		var rows []RowRef
		rows = append(rows, a.rowRef(index))
		if lowestAt >= 0 {
			point := points[lowestAt]
			if point.opening {
				why = fmt.Sprintf("the lowest balance that could have held during it was %d (the opening balance)", lowest)
			} else {
				why = fmt.Sprintf("the lowest balance that could have held during it was %d (after posting %d)", lowest, point.posting)
				if point.row >= 0 {
					rows = append(rows, a.rowRef(point.row))
				}
			}
		}
		return Violation{
			Summary: fmt.Sprintf("the gateway refused %s of %d from account %d (key %s, sent %s, answered %s) for insufficient_funds without a stream position (a soft refusal), but %s: a stale cached balance refused a debit the ledger could afford",
				row.kind, row.amount, row.source, a.keyName(row.key), formatMicros(times.invoke), formatTimeOrNever(times.failed), why),
			Keys: []string{a.keyString(row.key)}, Accounts: []int64{row.source},
			Operations: a.operationsOfKey(row.key, 4), Rows: rows,
		}
	})
}

func formatTimeOrNever(micros int64) string {
	if micros == math.MaxInt64 {
		return "never"
	}
	return formatMicros(micros)
}

// explainDay builds the violation of a day whose settled debits exceed the
// limit: the user, the day, the sum, the limit and the debits (at most 8).
func (a *auditor) explainDay(user int64, day int32, total, limit int64, rows []int32) Violation {
	v := Violation{Summary: fmt.Sprintf("user %d's settled debits of %s sum to %d, above the daily debit limit %d (%d debit(s))",
		user, formatDay(day), total, limit, len(rows))}
	for i, index := range rows {
		if i == 8 {
			break
		}
		row := &a.rows[index]
		v.Rows = append(v.Rows, a.rowRef(index))
		if i == 0 {
			v.Accounts = []int64{row.source}
		}
		if row.key >= 0 {
			v.Keys = append(v.Keys, a.keyString(row.key))
		}
	}
	return v
}
