package kafka

import (
	"strings"
	"testing"
)

func TestParseBrokerAddressMap(t *testing.T) {
	cases := []struct {
		name string
		text string
		want string // String() of the map; empty with wantError
		// wantError is a part of the expected error, empty for success.
		wantError string
	}{
		{"empty", "", "", ""},
		{"one", "127.0.0.1:19092=127.0.0.1:18291", "127.0.0.1:19092=127.0.0.1:18291", ""},
		{"several, spaces, sorted", " b:2=c:3 , a:1=c:4,", "a:1=c:4,b:2=c:3", ""},
		{"no equals", "127.0.0.1:19092", "", "want advertised-host:port=dialled-host:port"},
		{"no port", "127.0.0.1=127.0.0.1:1", "", "missing port"},
		{"twice", "a:1=b:2,a:1=c:3", "", "mapped twice"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseBrokerAddressMap(tc.text)
			if tc.wantError != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantError) {
					t.Fatalf("got %v, %v; want an error containing %q", got, err, tc.wantError)
				}
				return
			}
			if err != nil || got.String() != tc.want {
				t.Fatalf("got %q, %v; want %q", got.String(), err, tc.want)
			}
			if (len(got) == 0) != (got.dialOption() == nil) {
				t.Fatalf("dial option present %v for a map of %d entries", got.dialOption() != nil, len(got))
			}
		})
	}
}
