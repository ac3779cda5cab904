package daemon

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestProfiling: Config.Profiling puts Go's profiles on the internal
// handler, to loopback peers only, and leaves every other route alone.
func TestProfiling(t *testing.T) {
	api := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) })
	tests := []struct {
		name    string
		enabled bool
		path    string
		remote  string
		want    int
	}{
		{"disabled: the route is the API's", false, "/debug/pprof/", "127.0.0.1:5000", http.StatusTeapot},
		{"enabled, loopback v4", true, "/debug/pprof/", "127.0.0.1:5000", http.StatusOK},
		{"enabled, loopback v6", true, "/debug/pprof/cmdline", "[::1]:5000", http.StatusOK},
		{"enabled, remote peer refused", true, "/debug/pprof/", "10.1.2.3:5000", http.StatusForbidden},
		{"enabled, other routes untouched", true, "/v1/deposits", "10.1.2.3:5000", http.StatusTeapot},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			request := httptest.NewRequest(http.MethodGet, test.path, nil)
			request.RemoteAddr = test.remote
			recorder := httptest.NewRecorder()
			Config{Profiling: test.enabled}.InternalHandler(api, nil).ServeHTTP(recorder, request)
			if recorder.Code != test.want {
				t.Fatalf("status %d, want %d", recorder.Code, test.want)
			}
		})
	}
}
