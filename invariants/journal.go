package invariants

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	loadhistory "github.com/ledgerproof/ledgerproof/load/history"
)

// JournalEntry is one line of the journal (load/JOURNAL.md): the one type the
// load engine writes and every reader decodes.
type JournalEntry = loadhistory.Entry

// Journal outcomes.
const (
	OutcomeOK   = "ok"
	OutcomeFail = "fail"
	OutcomeInfo = "info"
)

// KindMisuse is the journal kind of a request that reused another
// operation's key with a different body; KindSignup creates an account.
const (
	KindMisuse = "misuse"
	KindSignup = "signup"
)

// maxJournalLineBytes bounds one journal line; a longer line is reported as
// invalid rather than buffered without limit.
const maxJournalLineBytes = 1 << 20

type opKind uint8

const (
	opDeposit opKind = iota + 1
	opWithdrawal
	opTransfer
	opMisuse
)

var opKindNames = [...]string{"", KindDeposit, KindWithdrawal, KindTransfer, KindMisuse}

func (k opKind) String() string { return opKindNames[k] }

func parseOpKind(kind string) opKind {
	switch kind {
	case KindDeposit:
		return opDeposit
	case KindWithdrawal:
		return opWithdrawal
	case KindTransfer:
		return opTransfer
	case KindMisuse:
		return opMisuse
	}
	return 0
}

type outcome uint8

const (
	outcomeOK outcome = iota + 1
	outcomeFail
	outcomeInfo
)

func parseOutcome(value string) outcome {
	switch value {
	case OutcomeOK:
		return outcomeOK
	case OutcomeFail:
		return outcomeFail
	case OutcomeInfo:
		return outcomeInfo
	}
	return 0
}

// status is a ledger status as the client or the ledger saw it.
type status uint8

const (
	statusNone status = iota
	statusSettled
	statusRejected
	statusAccepted
	statusOther
)

var statusNames = [...]string{"", StatusSettled, StatusRejected, StatusAccepted, "other"}

func (s status) String() string { return statusNames[s] }

func parseStatus(value string) status {
	switch value {
	case "":
		return statusNone
	case StatusSettled:
		return statusSettled
	case StatusRejected:
		return statusRejected
	case StatusAccepted:
		return statusAccepted
	}
	return statusOther
}

// operation is the compact form of one money operation of the journal
// (deposit, withdrawal, transfer, misuse): 72 bytes, no strings. Its line is
// re-read from the file (file, offset) only to explain a violation.
type operation struct {
	key      int32
	file     uint16
	kind     opKind
	outcome  outcome
	status   status
	dup      bool
	reason   uint16
	from, to int64
	amount   int64
	invoke   int64
	complete int64
	offset   int64
	// txHash is the first half of the hash of the transaction id the
	// gateway answered, 0 when it answered none.
	txHash uint64
}

// keyState is everything the auditor knows about one (user, idempotency
// key): the journal operations that used it and the ledger rows it has.
type keyState struct {
	user int64
	// first is the first non-misuse operation with the key, -1 if only
	// misuses used it.
	first int32
	// operations counts non-misuse operations, misuses the misuses.
	operations, misuses int32
	// row is the first ledger transaction of the key, -1 when none; rows
	// counts them all (more than one is a duplicate effect).
	row  int32
	rows int32
	// resent says how the key was sent more than once with its body
	// (resentDuplicate, resentReplay, resentRetry); 0: once.
	resent uint8
}

// Ways a key was sent more than once with its body.
const (
	// resentDuplicate: the harness sent a duplicate (journal field dup).
	resentDuplicate uint8 = 1 << iota
	// resentReplay: another journal line used the key (a replay).
	resentReplay
	// resentRetry: an operation of the key was retried (attempts > 1).
	resentRetry
)

// signupRef is a journaled signup that created an account: when the
// client learned the account existed, and where its line is.
type signupRef struct {
	complete int64
	offset   int64
	file     uint16
}

// hash128 is a 128-bit hash built from two seeded 64-bit hashes: wide enough
// that collisions among millions of keys are negligible, and much cheaper
// than a cryptographic hash. The seeds are per process, so hashes never
// leave memory.
type hasher struct {
	seeds [2]maphash.Seed
	state [2]maphash.Hash
	digit [20]byte
}

func newHasher() *hasher {
	h := &hasher{seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}}
	h.state[0].SetSeed(h.seeds[0])
	h.state[1].SetSeed(h.seeds[1])
	return h
}

// userKey hashes (user, idempotency key).
func (h *hasher) userKey(user int64, key string) [2]uint64 {
	digits := strconv.AppendInt(h.digit[:0], user, 10)
	var out [2]uint64
	for i := range h.state {
		h.state[i].Reset()
		h.state[i].Write(digits)
		h.state[i].WriteByte(0)
		h.state[i].WriteString(key)
		out[i] = h.state[i].Sum64()
	}
	return out
}

// id hashes a transaction id.
func (h *hasher) id(id string) [2]uint64 {
	return [2]uint64{maphash.String(h.seeds[0], id), maphash.String(h.seeds[1], id)}
}

// history is the journal in compact form.
type history struct {
	files      []string
	operations []operation
	keys       []keyState
	keyIndex   map[[2]uint64]int32
	reasons    []string
	reasonCode map[string]uint16

	// counts[kind][outcome] counts every line, signups included.
	counts         map[string]map[string]int64
	lines          int64
	invalidLines   int64
	invalidSamples []string
	signups        int64
	// owners maps the accounts created by signups to their users.
	owners map[int64]int64
	// created maps the accounts created by signups to the earliest signup
	// that reported them: the account existed from its completion on.
	created map[int64]signupRef
	// users holds every user id the journal mentions: the run's scope.
	users map[int64]struct{}
	// kinds and duplicates are the coverage counted while reading
	// (coverage.go).
	kinds      map[string]*KindCoverage
	duplicates DuplicateCoverage
}

// journalFiles lists the run's journals: journal.jsonl and journal*.jsonl,
// sorted by name.
func journalFiles(runDir string) ([]string, error) {
	matches, err := filepath.Glob(filepath.Join(runDir, "journal*.jsonl"))
	if err != nil {
		return nil, fmt.Errorf("list journals: %w", err)
	}
	sort.Strings(matches)
	if len(matches) == 0 {
		return nil, fmt.Errorf("no journal in %s (expected journal.jsonl): %w", runDir, os.ErrNotExist)
	}
	if len(matches) > 1<<16-1 {
		return nil, fmt.Errorf("%d journal files in %s, at most %d are supported", len(matches), runDir, 1<<16-1)
	}
	return matches, nil
}

func (h *history) reason(value string) uint16 {
	if code, ok := h.reasonCode[value]; ok {
		return code
	}
	if len(h.reasons) >= 1<<16-1 {
		// Reasons are error codes, a short list; a flood of distinct ones
		// is folded into one rather than growing without bound.
		return h.reasonCode["(other)"]
	}
	code := uint16(len(h.reasons))
	h.reasons = append(h.reasons, value)
	h.reasonCode[value] = code
	return code
}

// readHistory streams the journal files into compact form.
func readHistory(files []string, hash *hasher) (*history, error) {
	h := &history{
		files:      files,
		keyIndex:   map[[2]uint64]int32{},
		reasons:    []string{"", "(other)"},
		reasonCode: map[string]uint16{"": 0, "(other)": 1},
		counts:     map[string]map[string]int64{},
		owners:     map[int64]int64{},
		created:    map[int64]signupRef{},
		users:      map[int64]struct{}{},
		kinds:      map[string]*KindCoverage{},
		duplicates: DuplicateCoverage{Sent: map[string]int64{}, Answers: map[string]int64{}},
	}
	for index, path := range files {
		if err := h.readFile(uint16(index), path, hash); err != nil {
			return nil, err
		}
	}
	return h, nil
}

func (h *history) invalid(path string, offset int64, problem string) {
	h.invalidLines++
	if len(h.invalidSamples) < 10 {
		h.invalidSamples = append(h.invalidSamples, fmt.Sprintf("%s at byte %d: %s", filepath.Base(path), offset, problem))
	}
}

func (h *history) readFile(index uint16, path string, hash *hasher) error {
	file, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read journal: %w", err)
	}
	defer file.Close()
	reader := bufio.NewReaderSize(file, 1<<20)
	var offset int64
	var entry JournalEntry
	for {
		line, err := reader.ReadSlice('\n')
		start := offset
		offset += int64(len(line))
		if errors.Is(err, bufio.ErrBufferFull) {
			// Skip the rest of an oversized line.
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = reader.ReadSlice('\n')
				offset += int64(len(line))
			}
			h.invalid(path, start, fmt.Sprintf("line longer than %d bytes", maxJournalLineBytes))
			if err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("read journal %s: %w", path, err)
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read journal %s: %w", path, err)
		}
		if trimmed := bytes.TrimSpace(line); len(trimmed) > 0 {
			h.lines++
			entry = JournalEntry{}
			if decodeErr := json.Unmarshal(trimmed, &entry); decodeErr != nil {
				h.invalid(path, start, decodeErr.Error())
			} else {
				h.add(&entry, index, start, hash, path)
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
	}
}

func (h *history) add(entry *JournalEntry, file uint16, offset int64, hash *hasher, path string) {
	byOutcome := h.counts[entry.Kind]
	if byOutcome == nil {
		byOutcome = map[string]int64{}
		h.counts[entry.Kind] = byOutcome
	}
	byOutcome[entry.Outcome]++
	h.users[entry.User] = struct{}{}
	if entry.Kind == KindSignup {
		h.signups++
		if entry.Outcome == OutcomeOK && entry.To != 0 {
			h.owners[entry.To] = entry.User
			if earlier, ok := h.created[entry.To]; !ok || entry.Complete < earlier.complete {
				h.created[entry.To] = signupRef{complete: entry.Complete, offset: offset, file: file}
			}
		}
		return
	}
	kind := parseOpKind(entry.Kind)
	result := parseOutcome(entry.Outcome)
	switch {
	case kind == 0:
		h.invalid(path, offset, fmt.Sprintf("unknown kind %q", entry.Kind))
		return
	case result == 0:
		h.invalid(path, offset, fmt.Sprintf("unknown outcome %q", entry.Outcome))
		return
	case entry.Key == "":
		h.invalid(path, offset, fmt.Sprintf("%s operation %q has no idempotency key", entry.Kind, entry.Op))
		return
	}
	if len(h.operations) >= 1<<31-1 {
		panic("invariants: more than 2^31 operations in one journal")
	}
	userKey := hash.userKey(entry.User, entry.Key)
	keyIndex, ok := h.keyIndex[userKey]
	if !ok {
		keyIndex = int32(len(h.keys))
		h.keys = append(h.keys, keyState{user: entry.User, first: -1, row: -1})
		h.keyIndex[userKey] = keyIndex
	}
	key := &h.keys[keyIndex]
	operationIndex := int32(len(h.operations))
	replay := false
	if kind == opMisuse {
		key.misuses++
	} else {
		key.operations++
		if key.first < 0 {
			key.first = operationIndex
		}
		replay = key.operations > 1 || entry.ReplayOf != ""
		if replay {
			key.resent |= resentReplay
		}
		if entry.Dup != "" {
			key.resent |= resentDuplicate
		}
		if entry.Attempts > 1 {
			key.resent |= resentRetry
		}
	}
	h.count(entry, replay)
	var txHash uint64
	if entry.Tx != "" {
		txHash = hash.id(entry.Tx)[0]
	}
	h.operations = append(h.operations, operation{
		key: keyIndex, file: file, kind: kind, outcome: result, status: parseStatus(entry.Status),
		dup: entry.Dup != "", reason: h.reason(entry.Reason), from: entry.From, to: entry.To, amount: entry.Amount,
		invoke: entry.Invoke, complete: entry.Complete, offset: offset, txHash: txHash,
	})
}

// acknowledged reports whether the client was told the system had the
// operation: settled (ok), or accepted/settled/rejected by the ledger.
func (o *operation) acknowledged() bool {
	return o.outcome == outcomeOK || o.status == statusAccepted || o.status == statusSettled
}

// journalReader re-reads single lines for explanations.
type journalReader struct {
	files  []string
	opened map[uint16]*os.File
}

func newJournalReader(files []string) *journalReader {
	return &journalReader{files: files, opened: map[uint16]*os.File{}}
}

func (r *journalReader) close() {
	for _, file := range r.opened {
		file.Close()
	}
}

// line returns the journal line at (file, offset), without its newline.
func (r *journalReader) line(file uint16, offset int64) (json.RawMessage, error) {
	handle, ok := r.opened[file]
	if !ok {
		var err error
		handle, err = os.Open(r.files[file])
		if err != nil {
			return nil, err
		}
		r.opened[file] = handle
	}
	buffer := make([]byte, 4096)
	var line []byte
	for len(line) < maxJournalLineBytes {
		n, err := handle.ReadAt(buffer, offset+int64(len(line)))
		if end := bytes.IndexByte(buffer[:n], '\n'); end >= 0 {
			line = append(line, buffer[:end]...)
			break
		}
		line = append(line, buffer[:n]...)
		if err != nil {
			break
		}
	}
	line = bytes.TrimSpace(line)
	if !json.Valid(line) {
		return nil, fmt.Errorf("journal %s at byte %d is no longer valid JSON", r.files[file], offset)
	}
	return json.RawMessage(line), nil
}
