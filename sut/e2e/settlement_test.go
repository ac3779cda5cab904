package e2e_test

import (
	"context"
	"testing"
	"time"
)

// TestSettlementSurvivesRelayAndSettlerKills kills the relay and the
// settler with SIGKILL under load and starts them again: once the pipeline
// is drained, every settled transaction has exactly one outbox event and
// exactly one settlement_history row, and no rejected transaction has
// either (docs/settlement.md).
func TestSettlementSurvivesRelayAndSettlerKills(t *testing.T) {
	s := startStack(t, 1, 1)
	users := s.fundedUsers(10, 10_000)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var l load
	done := make(chan struct{})
	go func() {
		defer close(done)
		runTransfers(ctx, s, users, 8, 100, &l)
	}()
	for round, component := range []string{"relay", "settler", "relay", "settler"} {
		s.waitTransfersApplied(150 * (round + 1))
		s.operate("kill", component)
		s.operate("start", component)
	}
	<-done
	s.waitApplied(l.ids(), 60*time.Second)
	deadline := time.Now().Add(60 * time.Second)
	for {
		var settled, effects, unpublished int
		s.count(`SELECT count(*) FROM transactions WHERE status = 'settled'`, &settled)
		s.count(`SELECT count(*) FROM settlement_history`, &effects)
		s.count(`SELECT count(*) FROM settlement_outbox WHERE published_at IS NULL`, &unpublished)
		if unpublished == 0 && effects >= settled {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not settled downstream within a minute: %d settled, %d effects, %d events unpublished", settled, effects, unpublished)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var wrong int
	s.count(`SELECT count(*) FROM transactions t
		WHERE (t.status = 'settled') <> ((SELECT count(*) FROM settlement_outbox o WHERE o.transaction_id = t.id) = 1
			AND (SELECT count(*) FROM settlement_history h WHERE h.transaction_id = t.id) = 1)
		OR (t.status = 'rejected' AND EXISTS (SELECT 1 FROM settlement_history h WHERE h.transaction_id = t.id))`, &wrong)
	var strays int
	s.count(`SELECT count(*) FROM settlement_history h WHERE NOT EXISTS (SELECT 1 FROM transactions t WHERE t.id = h.transaction_id AND t.status = 'settled')`, &strays)
	if wrong != 0 || strays != 0 {
		t.Fatalf("%d transactions without exactly one event and one effect (or a rejected one with an effect), %d effects of no settled transaction", wrong, strays)
	}
	s.checkLedger()
	t.Logf("%d transfers acknowledged; relay and settler killed twice each", len(l.ids()))
}

// count scans one number.
func (s *testStack) count(query string, into *int) {
	s.t.Helper()
	if err := s.db.QueryRow(context.Background(), query).Scan(into); err != nil {
		s.t.Fatalf("%s: %v", query, err)
	}
}
