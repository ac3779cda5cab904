package gateway

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// PasswordHashing sets the cost of argon2id, the password KDF.
type PasswordHashing struct {
	// MemoryKiB is argon2id's memory cost. Default 19456 (19 MiB) with 2
	// iterations, the OWASP minimum for argon2id. Load tests that sign up
	// thousands of users lower it (for example 64 KiB, 1 iteration); never
	// do that in production.
	MemoryKiB uint32
	// Iterations is argon2id's time cost. Default 2.
	Iterations uint32
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
