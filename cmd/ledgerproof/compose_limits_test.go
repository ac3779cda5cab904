package main

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/ledgerproof/ledgerproof/reports/runner"
)

// TestComposeDailyDebitLimit: every gateway and worker of docker-compose.yml
// gets the same daily debit limit, the one the audit of a compose run judges
// limits-respected by (runner.ComposeDailyDebitLimit).
func TestComposeDailyDebitLimit(t *testing.T) {
	text, err := os.ReadFile(filepath.Join(repositoryRoot, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var file composeFile
	if err := yaml.Unmarshal(text, &file); err != nil {
		t.Fatal(err)
	}
	want := strconv.FormatInt(runner.ComposeDailyDebitLimit, 10)
	checked := 0
	for name, service := range file.Services {
		if len(service.Command) == 0 {
			continue
		}
		command := service.Command[0]
		if command == "ledgerproof" && len(service.Command) > 1 {
			command = service.Command[1]
		}
		if command != "gateway" && command != "worker" {
			continue
		}
		checked++
		value := service.Environment["LEDGERPROOF_DAILY_DEBIT_LIMIT"]
		if value == nil || *value != want {
			t.Errorf("%s: LEDGERPROOF_DAILY_DEBIT_LIMIT %v, want %s (runner.ComposeDailyDebitLimit)", name, value, want)
		}
		for _, argument := range service.Command {
			if argument == "--daily-debit-limit" || argument == "-daily-debit-limit" || len(argument) > 19 && argument[:19] == "--daily-debit-limit" {
				t.Errorf("%s sets the daily debit limit on its command line: keep it in the shared environment", name)
			}
		}
	}
	if checked < 4 {
		t.Fatalf("found %d gateways and workers in docker-compose.yml, want at least 4", checked)
	}
}
