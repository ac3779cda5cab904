package runner

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/ledgerproof/ledgerproof/chaos"
	"github.com/ledgerproof/ledgerproof/invariants"
)

// ExportDrain is how a run takes a system's ledger through the user's
// export command: after the load the system may still be applying
// operations it answered 202, so one export right away would be a ledger
// in the middle of its work, every missing transaction a false alarm. The
// command is run again until two exports QuietPeriod apart are the same
// ledger (the export is drained), bounded by Timeout.
type ExportDrain struct {
	// Command writes the export into Dir (run with sh -c).
	Command, Dir string
	// QuietPeriod is how long the export must stay unchanged; Timeout
	// bounds the drain: no export starts after it, and each export may take
	// until it, or a minute when less is left (a slow exporter's last run).
	QuietPeriod, Timeout time.Duration
	// Output receives the command's output and the progress lines.
	Output io.Writer
}

// Run drains and returns a note saying how (or that it did not drain in
// time: the last export is audited, the note says so). An error is a
// command that failed: there is no export to audit.
func (d ExportDrain) Run(ctx context.Context) (note string, err error) {
	began := time.Now()
	deadline := began.Add(d.Timeout)
	output := d.Output
	if output == nil {
		output = io.Discard
	}
	// The command's text is never printed: it may hold a password.
	fmt.Fprintf(output, "ledger export: running --export-command, again every %s until two exports agree (at most %s)\n", d.QuietPeriod, d.Timeout)
	var last [sha256.Size]byte
	for runs := 1; ; runs++ {
		if err := d.export(ctx, deadline); err != nil {
			return "", err
		}
		sum, err := fingerprint(d.Dir)
		if err != nil {
			return "", fmt.Errorf("--export-command ran but %w", err)
		}
		if runs > 1 && sum == last {
			return fmt.Sprintf("export drained: unchanged over %s after %d exports in %.1fs", d.QuietPeriod, runs, time.Since(began).Seconds()), nil
		}
		last = sum
		if time.Now().Add(d.QuietPeriod).After(deadline) {
			if runs == 1 {
				return fmt.Sprintf("export NOT drained: --drain-timeout left no time for a second export to compare with (one export in %.1fs); it is audited", time.Since(began).Seconds()), nil
			}
			return fmt.Sprintf("export NOT drained: still changing after %d exports in %.1fs (--drain-timeout); the last one is audited", runs, time.Since(began).Seconds()), nil
		}
		if runs > 1 {
			fmt.Fprintf(output, "ledger export %d changed: the system is still applying; again in %s\n", runs, d.QuietPeriod)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(d.QuietPeriod):
		}
	}
}

// export runs the command once, bounded by the deadline (with at least a
// minute for a slow exporter), in a process group of its own that is killed
// whole when the bound passes.
func (d ExportDrain) export(ctx context.Context, deadline time.Time) error {
	err := chaos.Shell{Command: d.Command, Timeout: time.Until(latest(deadline, time.Now().Add(time.Minute))), Output: d.Output}.Run(ctx)
	if err != nil {
		return fmt.Errorf("--export-command: %w", err)
	}
	return nil
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// fingerprint hashes the export's files: the same ledger, the same hash.
func fingerprint(dir string) ([sha256.Size]byte, error) {
	hash := sha256.New()
	for _, name := range []string{invariants.AccountsFile, invariants.TransactionsFile, invariants.PostingsFile, invariants.DeadLettersFile} {
		file, err := os.Open(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) && name == invariants.DeadLettersFile {
			continue
		}
		if err != nil {
			return [sha256.Size]byte{}, fmt.Errorf("the export is incomplete: %w", err)
		}
		fmt.Fprintf(hash, "%s\n", name)
		size, err := io.Copy(hash, file)
		file.Close()
		if err != nil {
			return [sha256.Size]byte{}, fmt.Errorf("read the export: %w", err)
		}
		fmt.Fprintf(hash, "\n%d\n", size)
	}
	var sum [sha256.Size]byte
	copy(sum[:], hash.Sum(nil))
	return sum, nil
}
