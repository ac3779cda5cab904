package daemon

import (
	"reflect"
	"strings"
	"testing"
)

func TestBrokerList(t *testing.T) {
	got := Config{Brokers: " 127.0.0.1:1, ,127.0.0.1:2,"}.BrokerList()
	if want := []string{"127.0.0.1:1", "127.0.0.1:2"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("brokers %q, want %q", got, want)
	}
}

func TestLoggerRefusesAnUnknownLevel(t *testing.T) {
	for _, level := range []string{"debug", "info", "warn", "error"} {
		if _, err := (Config{LogLevel: level}).Logger(); err != nil {
			t.Errorf("level %s: %v", level, err)
		}
	}
	if _, err := (Config{LogLevel: "loud"}).Logger(); err == nil || !strings.Contains(err.Error(), `--log-level "loud"`) {
		t.Fatalf("error %v, want one naming --log-level", err)
	}
}
