// Package ledger is the k6 extension xk6-ledger: the JS module k6/x/ledger, a client of the ledger HTTP API with
// idempotency keys, retries, duplicate and key-misuse injection, custom metrics and an operation journal. The JS
// API is index.d.ts; the journal format is JOURNAL.md.
package ledger

import "go.k6.io/k6/js/modules"

func init() {
	modules.Register("k6/x/ledger", New())
}
