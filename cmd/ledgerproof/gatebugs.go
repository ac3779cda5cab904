package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/ledgerproof/ledgerproof/invariants/mutation"
)

// gateStartedFile is where make gate-bugs writes the time it began (RFC 3339).
const gateStartedFile = "started-at"

// gateBugsOptions are the gate-bugs command's flags.
type gateBugsOptions struct {
	list bool
	dir  string
	doc  string
}

// gateBugsCommand judges the runs `make gate-bugs` made: the default gate
// (`make demo`) once per seeded bug and once clean, each run directory
// named after its system under one folder. With --list it prints the
// systems to run, one per line, for the Makefile's loop.
func gateBugsCommand() (*flag.FlagSet, func(ctx context.Context, flags *flag.FlagSet) error) {
	flags := flag.NewFlagSet("gate-bugs", flag.ContinueOnError)
	var o gateBugsOptions
	flags.BoolVar(&o.list, "list", false, "print the systems make gate-bugs runs (every seeded bug, then clean), one per line, and exit")
	flags.StringVar(&o.dir, "dir", "", "folder holding one run directory per system (<dir>/<bug>/audit.json and exit-code), as make gate-bugs writes it")
	flags.StringVar(&o.doc, "doc", "docs/ci.md", "Markdown file whose generated gate-bugs section (between its markers) receives the matrix when every system ran; empty: none")
	return flags, func(ctx context.Context, flags *flag.FlagSet) error {
		if flags.NArg() > 0 {
			return fmt.Errorf("unexpected argument %q", flags.Arg(0))
		}
		if o.list {
			fmt.Fprintln(os.Stdout, strings.Join(mutation.GateSystems(), "\n"))
			return nil
		}
		return judgeGateBugs(o, os.Stdout)
	}
}

// judgeGateBugs reads every system's run in o.dir, prints the matrix,
// writes matrix.json and matrix.md there and the doc's section, and fails
// unless every bug was caught by an expected invariant with its run exiting
// 1 and the clean run passed with 0.
func judgeGateBugs(o gateBugsOptions, out io.Writer) error {
	if o.dir == "" {
		return errors.New("--dir is required: the folder make gate-bugs wrote (or use --list)")
	}
	info, err := os.Stat(o.dir)
	if err != nil {
		return fmt.Errorf("--dir: %w", err)
	}
	if !info.IsDir() {
		return fmt.Errorf("--dir %s is not a directory", o.dir)
	}
	// make gate-bugs writes the time it began into the folder; the matrix
	// then says how long the runs took.
	started, finished := time.Now().UTC(), time.Time{}
	if content, err := os.ReadFile(filepath.Join(o.dir, gateStartedFile)); err == nil {
		if at, err := time.Parse(time.RFC3339, strings.TrimSpace(string(content))); err == nil {
			started = at.UTC()
		}
	}
	matrix := &mutation.Matrix{Version: 1, StartedAt: started, Dir: o.dir, Cases: mutation.GateCases(),
		Complete: true, Command: "ledgerproof gate-bugs --dir " + o.dir, Generator: "make gate-bugs",
		GoVersion: runtime.Version(), CPUs: runtime.NumCPU(), Commit: vcsRevision()}
	matrix.Hostname, _ = os.Hostname()
	for _, system := range mutation.GateSystems() {
		result := mutation.GateResult(o.dir, system)
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
	if err := os.WriteFile(filepath.Join(o.dir, "matrix.json"), append(content, '\n'), 0o644); err != nil {
		return err
	}
	markdown := matrix.Markdown()
	if err := os.WriteFile(filepath.Join(o.dir, "matrix.md"), []byte(markdown), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nthe default gate against every seeded bug (%s):\n\n%s\n", o.dir, matrix.Text())
	if o.doc != "" {
		doc, err := os.ReadFile(o.doc)
		if err != nil {
			return fmt.Errorf("--doc: %w", err)
		}
		updated, err := mutation.ReplaceBetween(string(doc), mutation.GateBeginMarker, mutation.GateEndMarker, markdown)
		if err != nil {
			return fmt.Errorf("--doc %s: %w", o.doc, err)
		}
		if err := os.WriteFile(o.doc, []byte(updated), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(out, "matrix written to %s and %s\n", o.doc, filepath.Join(o.dir, "matrix.json"))
	}
	if !matrix.Passed {
		return fmt.Errorf("%d of %d run(s) not as required:\n  %s", len(matrix.Failures), len(matrix.Results),
			strings.Join(matrix.Failures, "\n  "))
	}
	fmt.Fprintln(out, "gate-bugs: PASSED — the default gate caught every seeded bug by an expected invariant (each run exited 1); the clean system passed (exit 0)")
	return nil
}
