package settlement_test

import (
	"strings"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/settlement"
)

// TestConfigValidation: bad settings are refused with the setting named,
// before anything connects.
func TestConfigValidation(t *testing.T) {
	if _, err := settlement.NewRelay(nil, nil, settlement.RelayConfig{BatchSize: -1}, nil); err == nil || !strings.Contains(err.Error(), "batch size -1") {
		t.Errorf("relay batch size -1: %v", err)
	}
	if _, err := settlement.NewRelay(nil, nil, settlement.RelayConfig{IdleInterval: -1}, nil); err == nil || !strings.Contains(err.Error(), "idle interval") {
		t.Errorf("relay idle interval -1: %v", err)
	}
	if _, err := settlement.NewSettler(nil, nil, settlement.SettlerConfig{MaxRecords: 200_000}, nil, nil); err == nil || !strings.Contains(err.Error(), "max records 200000") {
		t.Errorf("settler max records 200000: %v", err)
	}
	if _, err := settlement.NewSettler(nil, nil, settlement.SettlerConfig{PollMinBytes: -1}, nil, nil); err == nil || !strings.Contains(err.Error(), "poll min bytes -1") {
		t.Errorf("settler poll min bytes -1: %v", err)
	}
	if _, err := settlement.NewSettler(nil, nil, settlement.SettlerConfig{PollMaxWait: time.Minute}, nil, nil); err == nil || !strings.Contains(err.Error(), "poll max wait 1m0s") {
		t.Errorf("settler poll max wait 1m: %v", err)
	}
	if _, err := settlement.NewSettler(nil, nil, settlement.SettlerConfig{}, nil, nil); err != nil {
		t.Errorf("settler defaults: %v", err)
	}
	if _, err := settlement.NewRelay(nil, nil, settlement.RelayConfig{}, nil); err != nil {
		t.Errorf("relay defaults: %v", err)
	}
}
