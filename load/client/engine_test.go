package client

import (
	"fmt"
	"os"
	"testing"
)

// TestMain runs the package's tests twice: on the standard engine, then
// again on the fast one (newTestClient gives a client the engine testEngine
// names), so that both engines answer to every test of the client.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		fmt.Fprintln(os.Stderr, "load/client: the tests again, on the fast HTTP engine (fasthttp)")
		testEngine = EngineFast
		code = m.Run()
	}
	os.Exit(code)
}

func TestUnknownEngineIsRefused(t *testing.T) {
	_, err := NewHTTP(Options{BaseURLs: []string{"http://127.0.0.1:1"}, Engine: "curl"})
	if err == nil || err.Error() != `client: HTTP engine "curl" is neither "std" nor "fast"` {
		t.Fatalf("NewHTTP with engine curl: %v, want the engine refused", err)
	}
}

// TestEngineIsTheOneAsked guards TestMain's second run: a client asked for
// the fast engine must have it, and one asked for none the standard one.
func TestEngineIsTheOneAsked(t *testing.T) {
	for _, engine := range []string{"", EngineStandard, EngineFast} {
		c, err := NewHTTP(Options{BaseURLs: []string{"http://127.0.0.1:1"}, Engine: engine})
		if err != nil {
			t.Fatal(err)
		}
		if (c.fast != nil) != (engine == EngineFast) || (c.http != nil) == (engine == EngineFast) {
			t.Errorf("engine %q: fast client %v, standard client %v", engine, c.fast != nil, c.http != nil)
		}
		c.Close()
	}
}
