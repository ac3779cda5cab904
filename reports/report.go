// Package reports renders a run directory (docs/run-directory.md) into the
// report a person reads first and the files CI reads: index.html (one
// self-contained page that opens offline: verdict, invariants with their
// counterexamples, throughput and latency over time with the fault windows
// shaded, errors, consumer lag, configuration and thresholds), junit.xml (a
// test case per invariant and per threshold of the load) and summary.json. It is the
// rendering of the checker's result (invariants) and of the history
// (journal, chaos log, metrics); it reads the run directory and nothing
// else. Compare sets a run against a baseline for regression gates.
//
// Inputs are streamed: the journal and the metrics are reduced to
// per-second buckets while they are read, so a journal of millions of lines
// needs a few megabytes.
package reports

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/google/renameio/v2"
)

// Generate reads the run directory and writes index.html, junit.xml and
// summary.json into it. A missing input (no metrics, no chaos log, no
// run.json, even no audit) is shown as "not recorded", not an error; an
// error means the directory could not be read or a file not written.
func Generate(runDir string) (Summary, error) {
	a, err := analyze(runDir)
	if err != nil {
		return Summary{}, err
	}
	junit, err := a.junit()
	if err != nil {
		return Summary{}, err
	}
	var summary bytes.Buffer
	encoder := json.NewEncoder(&summary)
	encoder.SetEscapeHTML(false)
	encoder.SetIndent("", "  ")
	if err := encoder.Encode(a.summary); err != nil {
		return Summary{}, fmt.Errorf("summary.json: %w", err)
	}
	index, err := a.html()
	if err != nil {
		return Summary{}, err
	}
	for _, file := range []struct {
		name    string
		content []byte
	}{{JUnitFile, junit}, {SummaryFile, summary.Bytes()}, {IndexFile, index}} {
		if err := renameio.WriteFile(filepath.Join(runDir, file.name), file.content, 0o644); err != nil {
			return Summary{}, err
		}
	}
	return a.summary, nil
}
