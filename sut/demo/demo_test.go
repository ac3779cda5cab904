package demo

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ledgerproof/ledgerproof/sut/client"
)

// TestShow: a response is shown as its status and trimmed body, with a
// mark when it is an idempotent replay.
func TestShow(t *testing.T) {
	var out bytes.Buffer
	show(&out, client.Response{Status: 201, Body: []byte(" {\"a\":1}\n")})
	show(&out, client.Response{Status: 200, Body: []byte("{}"), Replayed: true})
	want := "    → 201 {\"a\":1}\n    → 200 {}  [Idempotent-Replayed: true]\n"
	if out.String() != want {
		t.Errorf("shown %q, want %q", out.String(), want)
	}
}

// TestRunWithoutAStack: without --gateway and without a stack in --dir,
// the demo says how to start one, and calls nothing.
func TestRunWithoutAStack(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "none")
	var out bytes.Buffer
	err := Run(context.Background(), Options{Dir: dir}, &out)
	if err == nil || !strings.Contains(err.Error(), "no stack in "+dir+" (start one with 'ledgerproof up' or pass --gateway)") || out.Len() != 0 {
		t.Errorf("error %v, output %q", err, out.String())
	}
}
