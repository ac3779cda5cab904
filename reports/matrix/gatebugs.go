package matrix

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/ledgerproof/ledgerproof/invariants/mutation"
	"github.com/ledgerproof/ledgerproof/reports/runner"
)

// gateStartedFile is where make gate-bugs writes the time it began (RFC 3339).
const gateStartedFile = "started-at"

// GateBugsOptions are the settings of `ledgerproof gate-bugs` (its flags).
type GateBugsOptions struct {
	// List prints the systems make gate-bugs runs, one per line, instead
	// of judging.
	List bool
	// Dir holds one run directory per system, as make gate-bugs writes it.
	Dir string
	// Doc is the Markdown file whose generated gate-bugs section receives
	// the matrix; "": none.
	Doc string
}

// validate checks the options before anything is read or written.
func (o GateBugsOptions) validate() error {
	if o.List {
		return nil
	}
	if o.Dir == "" {
		return errors.New("--dir is required: the folder make gate-bugs wrote (or use --list)")
	}
	info, err := os.Stat(o.Dir)
	if err != nil {
		return fmt.Errorf("--dir: %w", err)
	}
	if !info.IsDir() {
		return fmt.Errorf("--dir %s is not a directory", o.Dir)
	}
	return nil
}

// GateBugs judges the runs `make gate-bugs` made: the default gate (`make
// demo`) once per seeded bug and once clean, each run directory named after
// its system under o.Dir. It prints the matrix, writes matrix.json and
// matrix.md there and the doc's section, and fails unless every bug was
// caught by an expected invariant with its run exiting 1 and the clean run
// passed with 0. With o.List it prints the systems to run, one per line,
// for the Makefile's loop.
func GateBugs(o GateBugsOptions, out io.Writer) error {
	if err := o.validate(); err != nil {
		return err
	}
	if o.List {
		fmt.Fprintln(out, strings.Join(mutation.GateSystems(), "\n"))
		return nil
	}
	// make gate-bugs writes the time it began into the folder; the matrix
	// then says how long the runs took.
	started, finished := time.Now().UTC(), time.Time{}
	if content, err := os.ReadFile(filepath.Join(o.Dir, gateStartedFile)); err == nil {
		if at, err := time.Parse(time.RFC3339, strings.TrimSpace(string(content))); err == nil {
			started = at.UTC()
		}
	}
	matrix := &mutation.Matrix{Version: 1, StartedAt: started, Dir: o.Dir, Cases: mutation.GateCases(),
		Complete: true, Command: "ledgerproof gate-bugs --dir " + o.Dir, Generator: "make gate-bugs",
		GoVersion: runtime.Version(), CPUs: runtime.NumCPU(), Commit: runner.Revision()}
	matrix.Hostname, _ = os.Hostname()
	for _, system := range mutation.GateSystems() {
		result := mutation.GateResult(o.Dir, system)
		if audit, err := os.Stat(filepath.Join(result.Dir, mutation.GateAuditFile)); err == nil && audit.ModTime().After(finished) {
			finished = audit.ModTime()
		}
		matrix.Results = append(matrix.Results, result)
	}
	matrix.Finish()
	if finished.After(started) {
		matrix.Seconds = finished.Sub(started).Truncate(time.Second).Seconds()
	}

	content, err := json.MarshalIndent(matrix, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(o.Dir, "matrix.json"), append(content, '\n'), 0o644); err != nil {
		return err
	}
	markdown := matrix.Markdown()
	if err := os.WriteFile(filepath.Join(o.Dir, "matrix.md"), []byte(markdown), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nthe default gate against every seeded bug (%s):\n\n%s\n", o.Dir, matrix.Text())
	if o.Doc != "" {
		doc, err := os.ReadFile(o.Doc)
		if err != nil {
			return fmt.Errorf("--doc: %w", err)
		}
		updated, err := mutation.ReplaceBetween(string(doc), mutation.GateBeginMarker, mutation.GateEndMarker, markdown)
		if err != nil {
			return fmt.Errorf("--doc %s: %w", o.Doc, err)
		}
		if err := os.WriteFile(o.Doc, []byte(updated), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(out, "matrix written to %s and %s\n", o.Doc, filepath.Join(o.Dir, "matrix.json"))
	}
	if !matrix.Passed {
		return fmt.Errorf("%d of %d run(s) not as required:\n  %s", len(matrix.Failures), len(matrix.Results),
			strings.Join(matrix.Failures, "\n  "))
	}
	fmt.Fprintln(out, "gate-bugs: PASSED — the default gate caught every seeded bug by an expected invariant (each run exited 1); the clean system passed (exit 0)")
	return nil
}
