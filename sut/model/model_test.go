package model_test

import (
	"fmt"
	"testing"
)

// externalAccountID is the account that stands for the world outside the
// ledger: the source of deposits and the destination of withdrawals.
const externalAccountID int64 = 0

// Operation kinds, statuses and reasons as the API spells them.
const (
	kindDeposit    = "deposit"
	kindWithdrawal = "withdrawal"
	kindTransfer   = "transfer"

	statusSettled  = "settled"
	statusRejected = "rejected"

	reasonInsufficientFunds = "insufficient_funds"
)

// operation is one money request, independent of how it is sent.
type operation struct {
	Kind                 string
	SourceAccountID      int64
	DestinationAccountID int64
	AmountMinor          int64
}

// outcome is what the ledger decided for an operation.
type outcome struct {
	Status string
	Reason string
}

// ledgerModel is the pure model of the ledger: balances of user accounts and
// the net money that entered from outside. Operations are applied one at a
// time in the order they were sent, as the state machine waits for each.
type ledgerModel struct {
	balances map[int64]int64
	// netExternalMinor is settled deposits minus settled withdrawals: the sum
	// of all balances must always equal it (conservation).
	netExternalMinor int64
	// ignoreOverdraft makes the model deliberately wrong: withdrawals and
	// transfers always settle. Only the must-fail test sets it.
	ignoreOverdraft bool
}

func newLedgerModel(ignoreOverdraft bool) *ledgerModel {
	return &ledgerModel{balances: map[int64]int64{}, ignoreOverdraft: ignoreOverdraft}
}

// open adds a user account with balance 0.
func (m *ledgerModel) open(accountID int64) {
	if _, exists := m.balances[accountID]; exists || accountID == externalAccountID {
		panic(fmt.Sprintf("model: account %d opened twice", accountID))
	}
	m.balances[accountID] = 0
}

// apply decides an operation's outcome and applies its effect.
func (m *ledgerModel) apply(op operation) outcome {
	if op.AmountMinor <= 0 {
		panic(fmt.Sprintf("model: amount %d is not positive", op.AmountMinor))
	}
	for _, account := range []int64{op.SourceAccountID, op.DestinationAccountID} {
		if _, known := m.balances[account]; !known && account != externalAccountID {
			panic(fmt.Sprintf("model: account %d is unknown", account))
		}
	}
	if op.Kind != kindDeposit && m.balances[op.SourceAccountID] < op.AmountMinor && !m.ignoreOverdraft {
		return outcome{Status: statusRejected, Reason: reasonInsufficientFunds}
	}
	switch op.Kind {
	case kindDeposit:
		m.balances[op.DestinationAccountID] += op.AmountMinor
		m.netExternalMinor += op.AmountMinor
	case kindWithdrawal:
		m.balances[op.SourceAccountID] -= op.AmountMinor
		m.netExternalMinor -= op.AmountMinor
	case kindTransfer:
		m.balances[op.SourceAccountID] -= op.AmountMinor
		m.balances[op.DestinationAccountID] += op.AmountMinor
	default:
		panic(fmt.Sprintf("model: unknown kind %q", op.Kind))
	}
	return outcome{Status: statusSettled}
}

// total is the sum of all balances.
func (m *ledgerModel) total() int64 {
	var total int64
	for _, balance := range m.balances {
		total += balance
	}
	return total
}

// TestLedgerModel pins the model's own rules, so a wrong model cannot make
// the state machine test pass or fail for the wrong reason.
func TestLedgerModel(t *testing.T) {
	const alice, bob = 1, 2
	tests := []struct {
		name            string
		ignoreOverdraft bool
		operations      []operation
		want            []outcome
		wantBalances    map[int64]int64
		wantNet         int64
	}{
		{
			name: "deposit then withdraw within the balance",
			operations: []operation{
				{kindDeposit, externalAccountID, alice, 100},
				{kindWithdrawal, alice, externalAccountID, 100},
			},
			want:         []outcome{{Status: statusSettled}, {Status: statusSettled}},
			wantBalances: map[int64]int64{alice: 0, bob: 0},
		},
		{
			name: "overdrafts are rejected and change nothing",
			operations: []operation{
				{kindDeposit, externalAccountID, alice, 50},
				{kindWithdrawal, alice, externalAccountID, 51},
				{kindTransfer, alice, bob, 51},
				{kindTransfer, bob, alice, 1},
			},
			want: []outcome{{Status: statusSettled}, {statusRejected, reasonInsufficientFunds},
				{statusRejected, reasonInsufficientFunds}, {statusRejected, reasonInsufficientFunds}},
			wantBalances: map[int64]int64{alice: 50, bob: 0},
			wantNet:      50,
		},
		{
			name: "transfers move money without changing the total",
			operations: []operation{
				{kindDeposit, externalAccountID, alice, 30},
				{kindTransfer, alice, bob, 30},
				{kindTransfer, bob, alice, 10},
			},
			want:         []outcome{{Status: statusSettled}, {Status: statusSettled}, {Status: statusSettled}},
			wantBalances: map[int64]int64{alice: 10, bob: 20},
			wantNet:      30,
		},
		{
			name:            "the broken model lets an overdraft settle",
			ignoreOverdraft: true,
			operations:      []operation{{kindWithdrawal, alice, externalAccountID, 5}},
			want:            []outcome{{Status: statusSettled}},
			wantBalances:    map[int64]int64{alice: -5, bob: 0},
			wantNet:         -5,
		},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			m := newLedgerModel(test.ignoreOverdraft)
			m.open(alice)
			m.open(bob)
			for i, op := range test.operations {
				if got := m.apply(op); got != test.want[i] {
					t.Errorf("operation %d %+v: got %+v, want %+v", i, op, got, test.want[i])
				}
			}
			for account, want := range test.wantBalances {
				if got := m.balances[account]; got != want {
					t.Errorf("balance of %d: got %d, want %d", account, got, want)
				}
			}
			if m.netExternalMinor != test.wantNet || m.total() != test.wantNet {
				t.Errorf("net external %d, total %d, want both %d", m.netExternalMinor, m.total(), test.wantNet)
			}
		})
	}
}
