package invariants

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Bounds on what the audit keeps of dead letters: a flood of poison records
// (megabytes each, millions of them, every one with its own error message)
// must cost a bounded report and a few dozen bytes per record that names a
// transaction, nothing per record that does not.
const (
	// deadLetterExcerptBytes is how much of a record an excerpt shows:
	// enough to recognise a command or a kind of garbage on one line.
	deadLetterExcerptBytes = 120
	// maxDeadLetterReasonBytes cuts a reason (a code, maybe followed by an
	// error message).
	maxDeadLetterReasonBytes = 200
	// maxDeadLetterReasons is how many distinct reasons are counted apart.
	maxDeadLetterReasons = 64
	// otherDeadLetterReasons counts the reasons beyond that.
	otherDeadLetterReasons = "(other reasons)"
)

// deadLetterRow is the compact form of a dead letter that names a
// transaction (48 bytes; its transaction id lives in the auditor's arena).
type deadLetterRow struct {
	// txHash is the first half of the 128-bit hash of the transaction id,
	// compared with the journal's tx.
	txHash    uint64
	id        int64
	offset    int64
	partition int32
	idStart   uint32
	idLength  uint16
	reason    uint16
	// first is the first dead letter of the same transaction, the one the
	// journal is matched with; journaled and lost are kept on it.
	first     int32
	journaled bool
	lost      bool
}

// deadLetterState is what the audit accumulates about dead letters.
type deadLetterState struct {
	result *DeadLetters
	count  int64
	rows   []deadLetterRow
	// index maps a transaction id's hash to its first dead letter.
	index map[uint64]int32
	// reasons interns the printable reasons; reasonCounts counts by code.
	reasons      []string
	reasonCode   map[string]uint16
	reasonCounts []int64
	// firstRows maps each entry of result.First to its row, -1 when the
	// dead letter names no transaction.
	firstRows []int32
}

func newDeadLetterState() *deadLetterState {
	return &deadLetterState{
		result:     &DeadLetters{Note: "not available: the ledger source does not report dead letters"},
		index:      map[uint64]int32{},
		reasonCode: map[string]uint16{},
	}
}

// reason returns the code of a dead letter's reason, interning it.
func (d *deadLetterState) reason(raw string) uint16 {
	text := printable([]byte(raw), maxDeadLetterReasonBytes)
	if code, ok := d.reasonCode[text]; ok {
		return code
	}
	if len(d.reasons) >= maxDeadLetterReasons {
		text = otherDeadLetterReasons
		if code, ok := d.reasonCode[text]; ok {
			return code
		}
	}
	code := uint16(len(d.reasons))
	d.reasons = append(d.reasons, text)
	d.reasonCode[text] = code
	d.reasonCounts = append(d.reasonCounts, 0)
	return code
}

func (a *auditor) visitDeadLetters(available bool, note string) error {
	result := a.deadLetters.result
	if !available && !strings.HasPrefix(note, "not available") {
		note = strings.TrimSuffix("not available: "+note, ": ")
	}
	result.Available, result.Note = available, note
	if available {
		result.Count = ptr(int64(0))
	}
	return nil
}

func (a *auditor) visitDeadLetter(letter *DeadLetter) error {
	d := a.deadLetters
	if !d.result.Available {
		return fmt.Errorf("dead letter %d delivered by a source that said it has none", letter.ID)
	}
	d.count++
	reason := d.reason(letter.Reason)
	d.reasonCounts[reason]++
	row := int32(-1)
	if letter.TransactionID == "" {
		d.result.WithoutTransaction++
	} else {
		if len(d.rows) >= 1<<31-1 {
			return fmt.Errorf("more than 2^31 dead letters naming a transaction")
		}
		row = int32(len(d.rows))
		id := letter.TransactionID
		if len(id) > 255 {
			// Longer ids still match by hash; only the quote is cut.
			id = id[:255]
		}
		start, length := a.store(id)
		hash := a.hash.id(letter.TransactionID)[0]
		first, seen := d.index[hash]
		if !seen {
			first = row
			d.index[hash] = row
		}
		d.rows = append(d.rows, deadLetterRow{txHash: hash, id: letter.ID, offset: letter.Offset, partition: letter.Partition,
			idStart: start, idLength: uint16(length), reason: reason, first: first})
	}
	if len(d.result.First) < a.config.MaxViolations {
		rawBytes := letter.RawBytes
		if rawBytes < int64(len(letter.Raw)) {
			rawBytes = int64(len(letter.Raw))
		}
		ref := DeadLetterRef{ID: letter.ID, Topic: printable([]byte(letter.Topic), maxDeadLetterReasonBytes),
			Partition: letter.Partition, Offset: letter.Offset, Reason: d.reasons[reason],
			TransactionID: printable([]byte(letter.TransactionID), 255), RawBytes: rawBytes,
			RawExcerpt: printable(letter.Raw, deadLetterExcerptBytes)}
		if letter.DeadAt != nil {
			ref.DeadAt = ptr(letter.DeadAt.UTC())
		}
		d.result.First = append(d.result.First, ref)
		d.firstRows = append(d.firstRows, row)
	}
	return nil
}

// deadLetterOf returns the first dead letter of the transaction the
// gateway answered to an operation, -1 when none.
func (a *auditor) deadLetterOf(op *operation) int32 {
	if op.txHash == 0 || len(a.deadLetters.index) == 0 {
		return -1
	}
	if row, ok := a.deadLetters.index[op.txHash]; ok {
		return row
	}
	return -1
}

// finishDeadLetters completes the dead letters' report once the checks
// have matched them with the journal.
func (a *auditor) finishDeadLetters() {
	d := a.deadLetters
	result := d.result
	a.result.DeadLetters = result
	if !result.Available {
		return
	}
	result.Count = ptr(d.count)
	a.checked(Durability, "dead letters", d.count)
	for index := range d.rows {
		first := &d.rows[d.rows[index].first]
		if first.journaled {
			result.Journaled++
		}
		if first.lost {
			result.Lost++
		}
	}
	for i, row := range d.firstRows {
		if row >= 0 {
			first := &d.rows[d.rows[row].first]
			result.First[i].Journaled, result.First[i].Lost = first.journaled, first.lost
		}
	}
	if d.count > 0 {
		result.ByReason = map[string]int64{}
		for code, n := range d.reasonCounts {
			result.ByReason[d.reasons[code]] += n
		}
	}
}

// deadLetterRef quotes a dead letter in an explanation.
func (a *auditor) deadLetterRef(index int32) RowRef {
	row := &a.deadLetters.rows[index]
	return RowRef{Table: "dead_letters", ID: fmt.Sprint(row.id), Partition: ptr(row.partition), Offset: ptr(row.offset),
		Reason: a.deadLetters.reasons[row.reason], TransactionID: a.deadLetterTransaction(row)}
}

func (a *auditor) deadLetterTransaction(row *deadLetterRow) string {
	return printable(a.arena[row.idStart:row.idStart+uint32(row.idLength)], 255)
}

// printable renders bytes as text that is safe to print in a terminal, a
// JSON file or a web page: valid UTF-8, printable characters as they are,
// every other byte or character escaped as Go does (\x00, \x0a, \u202e), a
// backslash doubled. At most limit bytes of input are shown (never half a
// character), followed by "…" when there were more.
func printable(raw []byte, limit int) string {
	cut := len(raw) > limit
	if cut {
		raw = raw[:limit]
		// Drop a character the limit split in two.
		for back := 1; back <= utf8.UTFMax && back <= len(raw); back++ {
			if utf8.RuneStart(raw[len(raw)-back]) {
				if !utf8.FullRune(raw[len(raw)-back:]) {
					raw = raw[:len(raw)-back]
				}
				break
			}
		}
	}
	var text strings.Builder
	for len(raw) > 0 {
		r, size := utf8.DecodeRune(raw)
		switch {
		case r == utf8.RuneError && size <= 1:
			fmt.Fprintf(&text, `\x%02x`, raw[0])
		case r == '\\':
			text.WriteString(`\\`)
		case unicode.IsPrint(r):
			text.WriteRune(r)
		case r < utf8.RuneSelf:
			fmt.Fprintf(&text, `\x%02x`, r)
		case r <= 0xffff:
			fmt.Fprintf(&text, `\u%04x`, r)
		default:
			fmt.Fprintf(&text, `\U%08x`, r)
		}
		raw = raw[size:]
	}
	if cut {
		text.WriteString("…")
	}
	return text.String()
}
