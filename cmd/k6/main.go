// Command k6 is k6 v1 with the xk6-ledger extension built in: the same main
// package xk6 generates for "xk6 build --with github.com/ledgerproof/ledgerproof/xk6-ledger".
package main

import (
	k6cmd "go.k6.io/k6/cmd"

	_ "github.com/ledgerproof/ledgerproof/xk6-ledger"
)

func main() {
	k6cmd.Execute()
}
