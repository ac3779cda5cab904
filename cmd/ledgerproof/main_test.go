package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ledgerproof/ledgerproof/sut/stack/stacktest"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

// runCLI runs the command line args as main does, with os.Stdout and
// os.Stderr caught in files; it returns the exit code and both outputs.
// Tests calling it must not run in parallel (they swap os.Stdout).
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	dir := t.TempDir()
	outFile, err := os.Create(filepath.Join(dir, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	errFile, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	savedOut, savedErr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = outFile, errFile
	code = run(args)
	os.Stdout, os.Stderr = savedOut, savedErr
	outFile.Close()
	errFile.Close()
	outBytes, err := os.ReadFile(outFile.Name())
	if err != nil {
		t.Fatal(err)
	}
	errBytes, err := os.ReadFile(errFile.Name())
	if err != nil {
		t.Fatal(err)
	}
	return code, string(outBytes), string(errBytes)
}
