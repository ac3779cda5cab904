package crash_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/crash"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

// recorder is a registry whose Exit records the crashes instead of ending
// the test binary, with its log captured.
type recorder struct {
	*crash.Registry
	exits atomic.Int64
	codes chan int
	log   *bytes.Buffer
}

func newRecorder(t *testing.T, process ledger.Process, seed uint64) *recorder {
	t.Helper()
	r := &recorder{codes: make(chan int, 1_000_000), log: &bytes.Buffer{}}
	var logMutex sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&logMutex, r.log}, nil))
	registry, err := crash.NewRegistry(crash.Options{Process: process, Seed: seed, Logger: logger, Exit: func(code int) {
		r.exits.Add(1)
		r.codes <- code
	}})
	if err != nil {
		t.Fatal(err)
	}
	r.Registry = registry
	return r
}

type lockedWriter struct {
	mutex  *sync.Mutex
	writer io.Writer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mutex.Lock()
	defer w.mutex.Unlock()
	return w.writer.Write(p)
}

func TestCrashPointNames(t *testing.T) {
	want := map[crash.Point]struct {
		name    string
		process ledger.Process
	}{
		crash.AfterCommitBeforeCache: {"worker.after-commit-before-cache", ledger.ProcessWorker},
		crash.AfterAckBeforeResponse: {"gateway.after-ack-before-response", ledger.ProcessGateway},
		crash.MidBatch:               {"worker.mid-batch", ledger.ProcessWorker},
		crash.MidSaga:                {"worker.mid-saga", ledger.ProcessWorker},
	}
	if len(crash.Points()) != len(want) {
		t.Fatalf("points %v, want %d", crash.Points(), len(want))
	}
	for _, point := range crash.Points() {
		if point.String() != want[point].name || point.Process() != want[point].process {
			t.Errorf("point %d is %s in %s, want %s in %s", point, point, point.Process(), want[point].name, want[point].process)
		}
		parsed, err := crash.ParsePoint(point.String(), "")
		if err != nil || parsed != point {
			t.Errorf("ParsePoint(%s) = %v, %v", point, parsed, err)
		}
	}
	if crash.ExitStatus != 87 {
		t.Errorf("exit status %d, want 87", crash.ExitStatus)
	}
}

func TestCrashParseArming(t *testing.T) {
	cases := []struct {
		name    string
		text    string
		process ledger.Process
		want    crash.Arming
		err     string
	}{
		{"full name fires on the next hit", "worker.mid-batch", "", crash.Arming{Point: crash.MidBatch, After: 1}, ""},
		{"short name in its process", "after-commit-before-cache", ledger.ProcessWorker, crash.Arming{Point: crash.AfterCommitBeforeCache, After: 1}, ""},
		{"count", "gateway.after-ack-before-response:5", "", crash.Arming{Point: crash.AfterAckBeforeResponse, After: 5}, ""},
		{"probability", "mid-batch@0.25", ledger.ProcessWorker, crash.Arming{Point: crash.MidBatch, Probability: 0.25}, ""},
		{"short name of another process", "after-ack-before-response", ledger.ProcessWorker, crash.Arming{}, "unknown crash point"},
		{"unknown", "worker.everywhere", "", crash.Arming{}, `unknown crash point "worker.everywhere" (known: worker.after-commit-before-cache`},
		{"zero count", "worker.mid-batch:0", "", crash.Arming{}, "not a positive integer"},
		{"word count", "worker.mid-batch:many", "", crash.Arming{}, "not a positive integer"},
		{"probability above one", "worker.mid-batch@1.5", "", crash.Arming{}, "not in (0, 1]"},
		{"zero probability", "worker.mid-batch@0", "", crash.Arming{}, "not in (0, 1]"},
		{"NaN probability", "worker.mid-batch@NaN", "", crash.Arming{}, "not in (0, 1]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := crash.ParseArming(c.text, c.process)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one saying %q", err, c.err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, c.want)
			}
			if again, err := crash.ParseArming(got.String(), ""); err != nil || again != got {
				t.Errorf("String() %q parses to %+v, %v", got.String(), again, err)
			}
		})
	}
}

func TestCrashArmFiresOnTheNthHitOnce(t *testing.T) {
	r := newRecorder(t, ledger.ProcessWorker, 1)
	r.Hit(crash.MidBatch) // not armed: nothing happens
	if _, err := r.Arm(crash.Arming{Point: crash.MidBatch, After: 3}); err != nil {
		t.Fatal(err)
	}
	for hit := 1; hit <= 2; hit++ {
		r.Hit(crash.MidBatch)
		r.Hit(crash.AfterCommitBeforeCache) // another point, not armed
		if r.exits.Load() != 0 {
			t.Fatalf("fired on hit %d of 3", hit)
		}
	}
	if armed := r.Armed(); len(armed) != 1 || armed[0].Hits != 2 || armed[0].After != 3 {
		t.Fatalf("armed %+v, want mid-batch with 2 hits of 3", armed)
	}
	r.Hit(crash.MidBatch)
	if r.exits.Load() != 1 || <-r.codes != crash.ExitStatus {
		t.Fatalf("%d exits on the third hit, want 1 with status %d", r.exits.Load(), crash.ExitStatus)
	}
	for range 10 {
		r.Hit(crash.MidBatch)
	}
	if r.exits.Load() != 1 || len(r.Armed()) != 0 {
		t.Fatalf("a fired count point must be disarmed: %d exits, armed %+v", r.exits.Load(), r.Armed())
	}
	for _, want := range []string{"level=ERROR", "CRASH POINT worker.mid-batch HIT: exiting with status 87", "hit=3", "exit_status=87"} {
		if !strings.Contains(r.log.String(), want) {
			t.Errorf("log does not say %q:\n%s", want, r.log)
		}
	}
}

func TestCrashConcurrentHitsFireOnce(t *testing.T) {
	r := newRecorder(t, ledger.ProcessWorker, 1)
	if _, err := r.Arm(crash.Arming{Point: crash.AfterCommitBeforeCache, After: 500}); err != nil {
		t.Fatal(err)
	}
	var group sync.WaitGroup
	for range 16 {
		group.Add(1)
		go func() {
			defer group.Done()
			for range 100 {
				r.Hit(crash.AfterCommitBeforeCache)
			}
		}()
	}
	group.Wait()
	if r.exits.Load() != 1 {
		t.Fatalf("%d exits from 1600 concurrent hits of a point armed for the 500th, want 1", r.exits.Load())
	}
}

func TestCrashArmAgainRestartsTheCount(t *testing.T) {
	r := newRecorder(t, ledger.ProcessWorker, 1)
	if _, err := r.Arm(crash.Arming{Point: crash.MidBatch, After: 2}); err != nil {
		t.Fatal(err)
	}
	r.Hit(crash.MidBatch)
	if _, err := r.Arm(crash.Arming{Point: crash.MidBatch, After: 2}); err != nil {
		t.Fatal(err)
	}
	r.Hit(crash.MidBatch)
	if r.exits.Load() != 0 {
		t.Fatal("re-arming kept the old hit count")
	}
	r.Hit(crash.MidBatch)
	if r.exits.Load() != 1 {
		t.Fatal("did not fire on the second hit after re-arming")
	}
}

func TestCrashProbabilityIsSeeded(t *testing.T) {
	const hits = 20_000
	pattern := func(seed uint64) []bool {
		r := newRecorder(t, ledger.ProcessWorker, seed)
		if _, err := r.Arm(crash.Arming{Point: crash.MidBatch, Probability: 0.1}); err != nil {
			t.Fatal(err)
		}
		fired := make([]bool, hits)
		for i := range fired {
			before := r.exits.Load()
			r.Hit(crash.MidBatch)
			fired[i] = r.exits.Load() > before
		}
		if armed := r.Armed(); len(armed) != 1 || armed[0].Hits != hits {
			t.Fatalf("a probability point stays armed and counts its hits: %+v", armed)
		}
		return fired
	}
	first, replay, other := pattern(42), pattern(42), pattern(43)
	count := 0
	for _, fired := range first {
		if fired {
			count++
		}
	}
	if count < hits/10-300 || count > hits/10+300 {
		t.Errorf("%d of %d hits fired at probability 0.1", count, hits)
	}
	same, sameAsOther := true, true
	for i := range first {
		same = same && first[i] == replay[i]
		sameAsOther = sameAsOther && first[i] == other[i]
	}
	if !same {
		t.Error("the same seed gave another pattern of crashes")
	}
	if sameAsOther {
		t.Error("seeds 42 and 43 gave the same pattern of crashes")
	}
}

func TestCrashProbabilityOneFiresEveryHit(t *testing.T) {
	r := newRecorder(t, ledger.ProcessGateway, 7)
	if _, err := r.Arm(crash.Arming{Point: crash.AfterAckBeforeResponse, Probability: 1}); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		r.Hit(crash.AfterAckBeforeResponse)
	}
	if r.exits.Load() != 5 {
		t.Fatalf("%d exits of 5 hits at probability 1", r.exits.Load())
	}
}

func TestCrashDisarm(t *testing.T) {
	r := newRecorder(t, ledger.ProcessWorker, 1)
	for _, point := range []crash.Point{crash.MidBatch, crash.AfterCommitBeforeCache} {
		if _, err := r.Arm(crash.Arming{Point: point}); err != nil {
			t.Fatal(err)
		}
	}
	if !r.Disarm(crash.MidBatch) || r.Disarm(crash.MidBatch) {
		t.Fatal("Disarm reports armed once, then not")
	}
	r.Hit(crash.MidBatch)
	if r.exits.Load() != 0 {
		t.Fatal("a disarmed point fired")
	}
	if count := r.DisarmAll(); count != 1 {
		t.Fatalf("DisarmAll disarmed %d, want 1", count)
	}
	r.Hit(crash.AfterCommitBeforeCache)
	if r.exits.Load() != 0 || len(r.Armed()) != 0 {
		t.Fatal("a point fired after DisarmAll")
	}
}

func TestCrashArmRefusals(t *testing.T) {
	r := newRecorder(t, ledger.ProcessWorker, 1)
	cases := []struct {
		name   string
		arming crash.Arming
		want   string
	}{
		{"point of another process", crash.Arming{Point: crash.AfterAckBeforeResponse}, "lives in the gateway, and this process is a worker"},
		{"count and probability", crash.Arming{Point: crash.MidBatch, After: 2, Probability: 0.5}, "not both"},
		{"negative count", crash.Arming{Point: crash.MidBatch, After: -1}, "count -1"},
		{"probability above one", crash.Arming{Point: crash.MidBatch, Probability: 2}, "not in (0, 1]"},
		{"no such point", crash.Arming{Point: 0}, "does not exist"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := r.Arm(c.arming); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one saying %q", err, c.want)
			}
		})
	}
	if _, err := crash.NewRegistry(crash.Options{Process: "broker"}); err == nil {
		t.Error("a registry for the broker, which has no crash points, was made")
	}
}

func TestCrashInstalledHit(t *testing.T) {
	crash.Hit(crash.MidBatch) // nothing installed: nothing happens
	r := newRecorder(t, ledger.ProcessWorker, 1)
	crash.Install(r.Registry)
	t.Cleanup(func() { crash.Install(nil) })
	crash.Hit(crash.MidBatch)
	if r.exits.Load() != 0 {
		t.Fatal("fired unarmed")
	}
	if _, err := r.Arm(crash.Arming{Point: crash.MidBatch}); err != nil {
		t.Fatal(err)
	}
	crash.Hit(crash.MidBatch)
	if r.exits.Load() != 1 {
		t.Fatal("crash.Hit did not reach the installed registry")
	}
}

// BenchmarkHitDisabled is the cost of a crash point in a process started
// without --enable-crash-points; BenchmarkHitNotArmed with the switch and the
// point not armed.
func BenchmarkHitDisabled(b *testing.B) {
	crash.Install(nil)
	for b.Loop() {
		crash.Hit(crash.MidBatch)
	}
}

func BenchmarkHitNotArmed(b *testing.B) {
	registry, err := crash.NewRegistry(crash.Options{Process: ledger.ProcessWorker, Seed: 1, Exit: func(int) { b.Fatal("fired") }})
	if err != nil {
		b.Fatal(err)
	}
	crash.Install(registry)
	b.Cleanup(func() { crash.Install(nil) })
	for b.Loop() {
		crash.Hit(crash.MidBatch)
	}
}

// request sends one request to the handler from remote.
func request(t *testing.T, handler http.Handler, method, target, remote string, body string) (int, []byte) {
	t.Helper()
	var reader io.Reader
	if body != "" {
		reader = strings.NewReader(body)
	}
	r := httptest.NewRequest(method, target, reader)
	r.RemoteAddr = remote
	w := httptest.NewRecorder()
	handler.ServeHTTP(w, r)
	return w.Code, w.Body.Bytes()
}

func TestCrashHandler(t *testing.T) {
	r := newRecorder(t, ledger.ProcessWorker, 99)
	handler := r.Handler()
	const loopback = "127.0.0.1:40000"

	status, body := request(t, handler, "GET", crash.AdminPath, loopback, "")
	var listing crash.Listing
	if err := json.Unmarshal(body, &listing); status != 200 || err != nil {
		t.Fatalf("GET: %d %s", status, body)
	}
	if listing.Process != "worker" || listing.ExitStatus != 87 || listing.Seed != 99 || len(listing.Armed) != 0 ||
		strings.Join(listing.Points, ",") != "worker.after-commit-before-cache,worker.mid-batch,worker.mid-saga" {
		t.Fatalf("GET: %s", body)
	}

	cases := []struct {
		name   string
		method string
		remote string
		body   string
		status int
		want   string
	}{
		{"arm by short name", "POST", loopback, `{"point":"after-commit-before-cache","after":4}`, 200, `{"point":"worker.after-commit-before-cache","after":4,"hits":0}`},
		{"arm with a probability", "POST", "[::1]:5000", `{"point":"worker.mid-batch","probability":0.5}`, 200, `{"point":"worker.mid-batch","probability":0.5,"hits":0}`},
		{"not loopback", "POST", "10.1.2.3:5000", `{"point":"worker.mid-batch"}`, 403, `"code":"forbidden"`},
		{"point of the gateway", "POST", loopback, `{"point":"gateway.after-ack-before-response"}`, 400, "lives in the gateway"},
		{"unknown point", "POST", loopback, `{"point":"nowhere"}`, 400, "unknown crash point"},
		{"unknown field", "POST", loopback, `{"point":"worker.mid-batch","when":"now"}`, 400, "invalid_request"},
		{"both count and probability", "POST", loopback, `{"point":"worker.mid-batch","after":2,"probability":0.5}`, 400, "not both"},
		{"not JSON", "POST", loopback, `mid-batch`, 400, "invalid_request"},
		{"other method", "PUT", loopback, ``, 405, "method_not_allowed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, body := request(t, handler, c.method, crash.AdminPath, c.remote, c.body)
			if status != c.status || !strings.Contains(string(body), c.want) {
				t.Fatalf("%d %s, want %d with %s", status, body, c.status, c.want)
			}
		})
	}

	status, body = request(t, handler, "GET", crash.AdminPath, loopback, "")
	if err := json.Unmarshal(body, &listing); status != 200 || err != nil || len(listing.Armed) != 2 {
		t.Fatalf("GET after arming: %d %s", status, body)
	}
	status, body = request(t, handler, "DELETE", crash.AdminPath+"?point=mid-batch", loopback, "")
	if status != 200 || strings.TrimSpace(string(body)) != `{"disarmed":["worker.mid-batch"]}` {
		t.Fatalf("DELETE one: %d %s", status, body)
	}
	status, body = request(t, handler, "DELETE", crash.AdminPath, loopback, "")
	if status != 200 || strings.TrimSpace(string(body)) != `{"disarmed":["worker.after-commit-before-cache"]}` {
		t.Fatalf("DELETE all: %d %s", status, body)
	}
	if len(r.Armed()) != 0 {
		t.Fatalf("still armed: %+v", r.Armed())
	}
}

func TestCrashClient(t *testing.T) {
	r := newRecorder(t, ledger.ProcessGateway, 5)
	server := httptest.NewServer(r.Handler())
	t.Cleanup(server.Close)
	client, err := crash.NewClient(server.URL)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	armed, err := client.Arm(ctx, crash.ArmRequest{Point: "gateway.after-ack-before-response", After: 2})
	if err != nil || armed.Point != "gateway.after-ack-before-response" || armed.After != 2 {
		t.Fatalf("arm: %+v, %v", armed, err)
	}
	r.Hit(crash.AfterAckBeforeResponse)
	listing, err := client.List(ctx)
	if err != nil || len(listing.Armed) != 1 || listing.Armed[0].Hits != 1 {
		t.Fatalf("list: %+v, %v", listing, err)
	}
	if _, err := client.Arm(ctx, crash.ArmRequest{Point: "worker.mid-batch"}); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("arming a worker point on a gateway: %v", err)
	}
	disarmed, err := client.Disarm(ctx, "")
	if err != nil || len(disarmed) != 1 {
		t.Fatalf("disarm: %v, %v", disarmed, err)
	}

	// A process without the switch answers 404 on the path.
	disabled := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(disabled.Close)
	client, _ = crash.NewClient(disabled.URL)
	if _, err := client.List(ctx); !errors.Is(err, crash.ErrNotEnabled) {
		t.Fatalf("a 404 is %v, want ErrNotEnabled", err)
	}
}

func TestCrashAdminURL(t *testing.T) {
	cases := map[string]string{
		"http://127.0.0.1:18080":         "http://127.0.0.1:18080/admin/crash-points",
		"http://127.0.0.1:18180/metrics": "http://127.0.0.1:18180/admin/crash-points",
	}
	for endpoint, want := range cases {
		if got, err := crash.AdminURL(endpoint); err != nil || got != want {
			t.Errorf("AdminURL(%s) = %s, %v; want %s", endpoint, got, err, want)
		}
	}
	if _, err := crash.AdminURL("127.0.0.1:18080"); err == nil {
		t.Error("a host:port without scheme was taken for a URL")
	}
}

func TestCrashArmer(t *testing.T) {
	worker := newRecorder(t, ledger.ProcessWorker, 3)
	server := httptest.NewServer(worker.Handler())
	t.Cleanup(server.Close)
	armer := &crash.Armer{Endpoint: func(process string) (string, error) {
		if process != "worker-0" {
			return "", errors.New("no such process")
		}
		return server.URL + "/metrics", nil
	}}
	if names := armer.CrashPoints(); len(names) != 4 {
		t.Fatalf("CrashPoints %v", names)
	}
	ctx := context.Background()
	if err := armer.ArmCrashPoint(ctx, "worker-0", "mid-batch"); err != nil {
		t.Fatal(err)
	}
	if armed := worker.Armed(); len(armed) != 1 || armed[0].Point != crash.MidBatch || armed[0].After != 1 {
		t.Fatalf("armed %+v, want mid-batch on its next hit", armed)
	}
	cases := []struct{ process, point, want string }{
		{"gateway-0", "worker.mid-batch", "lives in a worker, and gateway-0 is not one"},
		{"worker-0", "after-ack-before-response", "unknown crash point"},
		{"worker-1", "worker.mid-batch", "no such process"},
	}
	for _, c := range cases {
		if err := armer.ArmCrashPoint(ctx, c.process, c.point); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("arm %s in %s: %v, want an error saying %q", c.point, c.process, err, c.want)
		}
	}
}

// armingHook is a log handler that calls a function on the line that
// announces an arming: the moment a busy process may hit the point.
type armingHook struct{ onArmed func() }

func (h armingHook) Enabled(context.Context, slog.Level) bool { return true }
func (h armingHook) Handle(_ context.Context, record slog.Record) error {
	if strings.Contains(record.Message, "ARMED") {
		h.onArmed()
	}
	return nil
}
func (h armingHook) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h armingHook) WithGroup(string) slog.Handler      { return h }

// A point that fires the moment it is armed (a worker commits within
// milliseconds) ends the process; the caller must still have had its "armed"
// answer, not an EOF: the answer is sent whole before the point is armed.
// The demo's CI plan failed on exactly that EOF.
func TestCrashArmAnswersBeforeAnImmediateHit(t *testing.T) {
	var server *httptest.Server
	var registry *crash.Registry
	var exits atomic.Int64
	exited := make(chan struct{})
	// A busy worker's goroutine hits the point the moment it is armed; the
	// arming waits a moment for that hit, long enough for a point that may
	// fire at once to end the process before the answer is written.
	logger := slog.New(armingHook{onArmed: func() {
		hit := make(chan struct{})
		go func() {
			registry.Hit(crash.AfterCommitBeforeCache)
			close(hit)
		}()
		select {
		case <-hit:
		case <-time.After(100 * time.Millisecond):
		}
	}})
	registry, err := crash.NewRegistry(crash.Options{Process: ledger.ProcessWorker, Seed: 3, Logger: logger, Exit: func(int) {
		if exits.Add(1) == 1 {
			close(exited)
		}
		// The process is gone: every connection drops, whatever it had not sent.
		server.CloseClientConnections()
	}})
	if err != nil {
		t.Fatal(err)
	}
	server = httptest.NewServer(registry.Handler())
	t.Cleanup(server.Close)
	client, err := crash.NewClient(server.URL)
	if err != nil {
		t.Fatal(err)
	}
	armed, err := client.Arm(context.Background(), crash.ArmRequest{Point: "worker.after-commit-before-cache"})
	if err != nil || armed.Point != "worker.after-commit-before-cache" || armed.After != 1 {
		t.Fatalf("arm: %+v, %v (want the armed point, then the crash)", armed, err)
	}
	// The point fires only once the answer is out, so the exit may still be
	// on its way when the caller has it (CI once looked too early).
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatal("the armed point never fired")
	}
	if exits.Load() != 1 {
		t.Fatalf("%d exits, want the armed point to fire once", exits.Load())
	}
}
