package gateway

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/subtle"
	_ "embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
	"golang.org/x/text/unicode/norm"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

// PasswordHashing sets the cost of argon2id, the password KDF, and how many
// hashes run at once. Each hash holds MemoryKiB of memory and a core for its
// whole time, so an unbounded number of concurrent sign-ins is an unbounded
// amount of memory (19 MiB each by default): hashes wait for one of
// Concurrency slots, at most QueueWait, and beyond that, or with
// QueueLength requests already waiting, the request is refused with 503 and
// Retry-After.
type PasswordHashing struct {
	// MemoryKiB is argon2id's memory cost. Default 19456 (19 MiB) with 2
	// iterations, the OWASP minimum for argon2id. Load tests that sign up
	// thousands of users lower it (for example 64 KiB, 1 iteration); never
	// do that in production.
	MemoryKiB uint32
	// Iterations is argon2id's time cost. Default 2.
	Iterations uint32
	// MemoryBudgetKiB is the memory all concurrent hashes may hold
	// together. Default 131072 (128 MiB): six hashes at the default cost.
	MemoryBudgetKiB uint32
	// Concurrency is how many hashes run at once. Default: as many as the
	// cores Go uses (GOMAXPROCS), at most MemoryBudgetKiB / MemoryKiB, at
	// least 1: more would only share the cores and hold more memory.
	Concurrency int
	// QueueWait is how long a request waits for a slot before it is
	// refused with 503. Default 2s: a sign-in that waits longer is better
	// retried than queued.
	QueueWait time.Duration
	// QueueLength bounds the requests waiting for a slot. Default 64 per
	// slot.
	QueueLength int
}

func (p *PasswordHashing) applyDefaults() error {
	if p.MemoryKiB == 0 {
		p.MemoryKiB = 19456
	}
	if p.Iterations == 0 {
		p.Iterations = 2
	}
	if p.MemoryKiB < 8 || p.MemoryKiB > 4<<20 {
		return fmt.Errorf("kdf memory %d KiB must be between 8 and 4194304", p.MemoryKiB)
	}
	if p.Iterations > 100 {
		return fmt.Errorf("kdf iterations %d must be at most 100", p.Iterations)
	}
	if p.MemoryBudgetKiB == 0 {
		p.MemoryBudgetKiB = 128 << 10
	}
	if p.Concurrency == 0 {
		p.Concurrency = max(1, min(runtime.GOMAXPROCS(0), int(p.MemoryBudgetKiB/p.MemoryKiB)))
	}
	if p.Concurrency < 1 || p.Concurrency > 1024 {
		return fmt.Errorf("password hash concurrency %d must be between 1 and 1024", p.Concurrency)
	}
	if p.QueueWait == 0 {
		p.QueueWait = 2 * time.Second
	}
	if p.QueueWait < 0 {
		return fmt.Errorf("password hash queue wait %s must not be negative", p.QueueWait)
	}
	if p.QueueLength == 0 {
		p.QueueLength = 64 * p.Concurrency
	}
	if p.QueueLength < 0 {
		return fmt.Errorf("password hash queue length %d must not be negative", p.QueueLength)
	}
	return nil
}

// hashSlots bounds the hashes running at once (PasswordHashing).
type hashSlots struct {
	slots   chan struct{}
	waiting atomic.Int64
	limit   int64
	wait    time.Duration
}

func newHashSlots(p PasswordHashing) *hashSlots {
	return &hashSlots{slots: make(chan struct{}, p.Concurrency), limit: int64(p.QueueLength), wait: p.QueueWait}
}

// errHashingBusy is the refusal when no slot came in time.
var errHashingBusy = ledger.Errorf(ledger.CodeUnavailable, "every password hashing slot is busy")

// acquire takes a slot, waiting at most the queue wait; release gives it
// back. It fails with errHashingBusy (503) when the wait ends or too many
// requests wait already, and with the context's error when it ends.
func (h *hashSlots) acquire(ctx context.Context) (release func(), err error) {
	release = func() { <-h.slots }
	select {
	case h.slots <- struct{}{}:
		return release, nil
	default:
	}
	if h.waiting.Add(1) > h.limit {
		h.waiting.Add(-1)
		return nil, errHashingBusy
	}
	defer h.waiting.Add(-1)
	timer := time.NewTimer(h.wait)
	defer timer.Stop()
	select {
	case h.slots <- struct{}{}:
		return release, nil
	case <-timer.C:
		return nil, errHashingBusy
	case <-ctx.Done():
		return nil, ledger.Errorf(ledger.CodeUnavailable, "the request ended while waiting to hash a password: %v", ctx.Err())
	}
}

// decoyHash is a hash of a random password with the configured cost, made
// at start: a sign-in for an unknown email verifies the password against it,
// so it costs what a wrong password for a known email costs.
func (p PasswordHashing) decoyHash() (string, error) {
	var random [32]byte
	if _, err := rand.Read(random[:]); err != nil {
		return "", fmt.Errorf("decoy password: %w", err)
	}
	return p.hash(hex.EncodeToString(random[:]))
}

//go:embed common-passwords.txt
var commonPasswordList string

// commonPasswords is the set of refused passwords, NFKC and case folded.
var commonPasswords = func() map[string]bool {
	set := map[string]bool{}
	scanner := bufio.NewScanner(strings.NewReader(commonPasswordList))
	for scanner.Scan() {
		line := strings.TrimSpace(scanner.Text())
		if line != "" && !strings.HasPrefix(line, "#") {
			set[passwordComparable(line)] = true
		}
	}
	return set
}()

// passwordComparable is a password as compared with the list: NFKC and
// case folded, so "PASSWORD1" and a fullwidth "password1" are refused too.
func passwordComparable(password string) string {
	return norm.NFKC.String(caseFold(norm.NFKC.String(password)))
}

// checkPassword refuses a password a guesser tries first: too short or
// long, on the list of common passwords, one character repeated, or the
// email itself or its part before the @. Its errors are weak_password.
func checkPassword(password string, email normalisedEmail) error {
	length := utf8.RuneCountInString(password)
	if length < passwordMinimum || length > passwordMaximum {
		return ledger.Errorf(ledger.CodeWeakPassword, "the password must have %d to %d characters", passwordMinimum, passwordMaximum)
	}
	comparable := passwordComparable(password)
	local, _, _ := strings.Cut(email.address, "@")
	first, _ := utf8.DecodeRuneInString(comparable)
	switch {
	case commonPasswords[comparable]:
		return ledger.Errorf(ledger.CodeWeakPassword, "the password is one of the most common passwords; choose another")
	case strings.Trim(comparable, string(first)) == "":
		return ledger.Errorf(ledger.CodeWeakPassword, "the password is one character repeated; choose another")
	case comparable == email.address || comparable == local:
		return ledger.Errorf(ledger.CodeWeakPassword, "the password is the email; choose another")
	}
	return nil
}

const argonKeyBytes = 32

// hash returns a PHC-format argon2id string: parameters, salt and key, so a
// change of cost leaves old hashes verifiable.
func (p PasswordHashing) hash(password string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, p.Iterations, p.MemoryKiB, 1, argonKeyBytes)
	encoding := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=1$%s$%s", argon2.Version, p.MemoryKiB, p.Iterations,
		encoding.EncodeToString(salt), encoding.EncodeToString(key)), nil
}

// verify checks password against a PHC-format argon2id string in constant
// time.
func verifyPassword(password, encoded string) (bool, error) {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, errors.New("password hash is not argon2id")
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false, fmt.Errorf("password hash version %q", parts[2])
	}
	var memory, iterations uint32
	var parallelism uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &memory, &iterations, &parallelism); err != nil {
		return false, fmt.Errorf("password hash parameters %q: %w", parts[3], err)
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil {
		return false, fmt.Errorf("password hash salt: %w", err)
	}
	want, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil {
		return false, fmt.Errorf("password hash key: %w", err)
	}
	got := argon2.IDKey([]byte(password), salt, iterations, memory, parallelism, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}
