package e2e_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/ledgerproof/ledgerproof/sut/client"
)

// The security suite (docs/security.md): each test attacks a real stack
// over loopback the way issue 19's probe did, with bounded loops, and
// fails on a gateway without the defense it names.

// productionLimits give a test stack's gateways their default limits back
// over the test rig's (stack.TestRigGatewayArgs turns the per-address and
// per-email ones off): a zero value is the gateway's documented default.
var productionLimits = []string{
	"--signin-address-rate=0", "--signin-email-rate=0",
	"--signup-address-rate=0", "--signup-email-rate=0",
	"--connections-per-address=0", "--in-flight-per-address=0",
	"--money-rate-limit=0",
}

// clientFrom is a client of baseURL whose connections come from the
// loopback address source (127.0.0.2, ...): another client address, for
// the gateway's limits per address.
func clientFrom(baseURL, source string) *client.Client {
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}, Timeout: 5 * time.Second}
	transport := &http.Transport{DialContext: dialer.DialContext, MaxIdleConnsPerHost: 8}
	return &client.Client{BaseURL: baseURL, HTTP: &http.Client{Timeout: 30 * time.Second, Transport: transport}}
}

// credentials is a sign-up or sign-in body.
func credentials(email, password string) map[string]string {
	return map[string]string{"email": email, "password": password}
}

// uniqueSuffix keeps one test's emails apart from another run's.
func uniqueSuffix() string { return strconv.FormatInt(time.Now().UnixNano(), 36) }

// signupAndSignin creates a user from c and signs it in; it returns its
// account.
func signupAndSignin(t *testing.T, c *client.Client, email, password string) int64 {
	t.Helper()
	ctx := context.Background()
	_, account, err := c.Signup(ctx, email, password)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Signin(ctx, email, password); err != nil {
		t.Fatal(err)
	}
	return account
}

// retryAfter reads an answer's Retry-After in seconds.
func retryAfter(t *testing.T, response client.Response) time.Duration {
	t.Helper()
	seconds, err := strconv.Atoi(response.Header.Get("Retry-After"))
	if err != nil || seconds < 1 {
		t.Fatalf("%d answer without a valid Retry-After (%q): %s", response.Status, response.Header.Get("Retry-After"), response.Body)
	}
	return time.Duration(seconds) * time.Second
}

// TestSecurityClientLimits: sign-in throttling and lock, the limits per
// address, common passwords, look-alike emails, one meaning per request,
// the headers of every answer, the internal listener and generic errors,
// and 8,300 stalled bodies from one address, on one stack with the
// gateway's default limits (a 2s lock, so the test waits little).
func TestSecurityClientLimits(t *testing.T) {
	args := append(slices.Clone(productionLimits), "--signin-lock=2s", "--signin-lock-max=8s", "--body-read-timeout=30s")
	s := startStackWith(t, 1, 1, args, nil)
	gateway := s.file.Endpoints.Gateways[0]
	ctx := context.Background()
	suffix := uniqueSuffix()

	t.Run("100 wrong passwords on one email", func(t *testing.T) {
		c := clientFrom(gateway, "127.0.0.11")
		email := "victim-" + suffix + "@example.com"
		signupAndSignin(t, c, email, "the right passphrase")
		unauthorized, limited, firstLimited := 0, 0, -1
		for i := range 100 {
			response, err := c.Do(ctx, http.MethodPost, "/v1/sessions", credentials(email, fmt.Sprintf("wrong guess %d", i)), "", 0)
			if err != nil {
				t.Fatal(err)
			}
			switch response.Status {
			case http.StatusUnauthorized:
				unauthorized++
			case http.StatusTooManyRequests:
				if response.ErrorCode() != "rate_limited" {
					t.Fatalf("429 with code %q", response.ErrorCode())
				}
				retryAfter(t, response)
				if firstLimited < 0 {
					firstLimited = i
				}
				limited++
			default:
				t.Fatalf("guess %d: %d %s", i, response.Status, response.Body)
			}
		}
		t.Logf("MEASURED: 100 wrong passwords on one email: %d answered 401, %d answered 429, the first 429 at guess %d", unauthorized, limited, firstLimited+1)
		if unauthorized > 10 || firstLimited < 0 || firstLimited > 10 {
			t.Fatalf("%d of 100 wrong passwords answered 401 (the first 429 at guess %d); want at most 10 before 429s", unauthorized, firstLimited+1)
		}
		// The right password works once the lock has ended.
		started := time.Now()
		for attempt := 0; ; attempt++ {
			response, err := c.Do(ctx, http.MethodPost, "/v1/sessions", credentials(email, "the right passphrase"), "", 0)
			if err != nil {
				t.Fatal(err)
			}
			if response.Status == http.StatusCreated {
				t.Logf("MEASURED: the right password was accepted %.1fs after the guesses (lock 2s, growing)", time.Since(started).Seconds())
				break
			}
			if response.Status != http.StatusTooManyRequests || attempt == 10 {
				t.Fatalf("the right password after the lock: %d %s", response.Status, response.Body)
			}
			time.Sleep(retryAfter(t, response))
		}
	})

	t.Run("100 wrong passwords spread over 20 emails from one address", func(t *testing.T) {
		c := clientFrom(gateway, "127.0.0.12")
		unauthorized := 0
		for i := range 100 {
			email := fmt.Sprintf("spread-%d-%s@example.com", i%20, suffix)
			response, err := c.Do(ctx, http.MethodPost, "/v1/sessions", credentials(email, "wrong guess"), "", 0)
			if err != nil {
				t.Fatal(err)
			}
			if response.Status == http.StatusUnauthorized {
				unauthorized++
			} else if response.Status != http.StatusTooManyRequests {
				t.Fatalf("guess %d: %d %s", i, response.Status, response.Body)
			}
		}
		t.Logf("MEASURED: 100 wrong passwords over 20 emails from one address: %d answered 401", unauthorized)
		if unauthorized > 30 {
			t.Fatalf("%d of 100 guesses from one address answered 401; the address's burst is 20", unauthorized)
		}
	})

	t.Run("signups from one address", func(t *testing.T) {
		c := clientFrom(gateway, "127.0.0.13")
		created, limited := 0, 0
		for i := range 15 {
			response, err := c.Do(ctx, http.MethodPost, "/v1/users", credentials(fmt.Sprintf("many-%d-%s@example.com", i, suffix), "a long passphrase"), "", 0)
			if err != nil {
				t.Fatal(err)
			}
			switch response.Status {
			case http.StatusCreated:
				created++
			case http.StatusTooManyRequests:
				retryAfter(t, response)
				limited++
			default:
				t.Fatalf("signup %d: %d %s", i, response.Status, response.Body)
			}
		}
		if created > 11 || limited < 4 {
			t.Fatalf("15 signups from one address: %d created, %d limited; the burst is 10", created, limited)
		}
	})

	t.Run("common passwords", func(t *testing.T) {
		c := clientFrom(gateway, "127.0.0.14")
		for i, password := range []string{"password", "12345678", "Password1", "qwertyuiop"} {
			response, err := c.Do(ctx, http.MethodPost, "/v1/users", credentials(fmt.Sprintf("common-%d-%s@example.com", i, suffix), password), "", 0)
			if err != nil {
				t.Fatal(err)
			}
			if response.Status != http.StatusBadRequest || response.ErrorCode() != "weak_password" {
				t.Errorf("password %q: %d %s, want 400 weak_password", password, response.Status, response.Body)
			}
		}
	})

	t.Run("look-alike emails", func(t *testing.T) {
		type attempt struct{ name, email, code string }
		fiona := "fiona.jose-" + suffix + "@example.com"
		jose := "jos\u00e9-" + suffix + "@example.com"
		groups := []struct {
			original   string
			lookAlikes []attempt
		}{
			{fiona, []attempt{
				{"capitals", strings.ToUpper(fiona), "email_taken"},
				{"Cyrillic letters", strings.NewReplacer("o", "\u043e", "e", "\u0435").Replace(fiona), "email_taken"},
				{"fullwidth letters", "\uff46\uff49\uff4f\uff4e\uff41" + strings.TrimPrefix(fiona, "fiona"), "email_taken"},
				{"a ligature", "\ufb01" + strings.TrimPrefix(fiona, "fi"), "email_taken"},
			}},
			{jose, []attempt{
				{"a decomposed accent", "jose\u0301-" + suffix + "@example.com", "email_taken"},
				{"a Cyrillic letter in the domain", "jos\u00e9-" + suffix + "@ex\u0430mple.com", "email_taken"},
				{"a fullwidth at sign", "jos\u00e9-" + suffix + "\uff20example.com", "email_taken"},
				{"a zero-width space", "jos\u00e9\u200b-" + suffix + "@example.com", "invalid_email"},
				{"a right-to-left mark", "jos\u00e9\u200f-" + suffix + "@example.com", "invalid_email"},
			}},
		}
		source := 20
		for _, group := range groups {
			source++
			c := clientFrom(gateway, fmt.Sprintf("127.0.0.%d", source))
			if _, _, err := c.Signup(ctx, group.original, "a long passphrase"); err != nil {
				t.Fatalf("the original %+q: %v", group.original, err)
			}
			for _, lookAlike := range group.lookAlikes {
				response, err := c.Do(ctx, http.MethodPost, "/v1/users", credentials(lookAlike.email, "another long passphrase"), "", 0)
				if err != nil {
					t.Fatal(err)
				}
				want := http.StatusConflict
				if lookAlike.code == "invalid_email" {
					want = http.StatusBadRequest
				}
				if response.Status != want || response.ErrorCode() != lookAlike.code {
					t.Errorf("%s (%+q): %d %s, want %d %s", lookAlike.name, lookAlike.email, response.Status, response.Body, want, lookAlike.code)
				}
			}
		}
		var twins int
		if err := s.db.QueryRow(ctx, `SELECT count(*) FROM users WHERE email LIKE 'fiona%' || $1 || '%' OR email LIKE 'jos%' || $1 || '%'`, suffix).Scan(&twins); err != nil {
			t.Fatal(err)
		}
		if twins != 2 {
			t.Fatalf("%d accounts for two addresses and their look-alikes, want 2", twins)
		}
	})

	owner := clientFrom(gateway, "127.0.0.2")
	ownerAccount := signupAndSignin(t, owner, "owner-"+suffix+"@example.com", "a long passphrase")

	t.Run("one meaning per request", func(t *testing.T) {
		deposit := func(members string) []byte {
			return []byte(fmt.Sprintf(`{"account_id":%d,%s}`, ownerAccount, members))
		}
		cases := []struct {
			name        string
			body        []byte
			contentType string
			status      int
			code        string
		}{
			{"duplicate amount", deposit(`"amount":1,"amount":100000`), "application/json", 400, "invalid_request"},
			{"case-folded amount", deposit(`"Amount":1`), "application/json", 400, "invalid_request"},
			{"stray closing brace", append(deposit(`"amount":1`), '}'), "application/json", 400, "invalid_request"},
			{"no Content-Type", deposit(`"amount":1`), "", 415, "unsupported_media_type"},
			{"text/plain", deposit(`"amount":1`), "text/plain", 415, "unsupported_media_type"},
			{"form", deposit(`"amount":1`), "application/x-www-form-urlencoded", 415, "unsupported_media_type"},
		}
		for i, c := range cases {
			request, err := http.NewRequest(http.MethodPost, gateway+"/v1/deposits", strings.NewReader(string(c.body)))
			if err != nil {
				t.Fatal(err)
			}
			if c.contentType != "" {
				request.Header.Set("Content-Type", c.contentType)
			}
			request.Header.Set("Authorization", "Bearer "+owner.Token)
			request.Header.Set("Idempotency-Key", fmt.Sprintf("meaning-%d", i))
			response, err := owner.HTTP.Do(request)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(response.Body)
			response.Body.Close()
			checkErrorBody(t, response.StatusCode, response.Header.Get("Content-Type"), []byte(strings.TrimSpace(string(body))), c.status, c.code)
			if !strings.Contains(string(body), `"message":"`) || strings.Contains(string(body), `"message":""`) {
				t.Errorf("%s: no reason in %s", c.name, body)
			}
		}
		// Content-Length and Transfer-Encoding together: refused, and the
		// connection is closed rather than kept for a request the proxy in
		// front may read differently.
		raw := "POST /v1/deposits HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer " + owner.Token +
			"\r\nIdempotency-Key: smuggled\r\nContent-Type: application/json\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n" +
			fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(deposit(`"amount":1`)), deposit(`"amount":1`))
		status, closed := sendRawFrom(t, gateway, "127.0.0.2", raw)
		if status != http.StatusBadRequest || !closed {
			t.Fatalf("Content-Length with Transfer-Encoding: %d, connection closed %v; want 400 and closed", status, closed)
		}
		var applied int
		if err := s.db.QueryRow(ctx, `SELECT count(*) FROM transactions WHERE idempotency_key LIKE 'meaning-%' OR idempotency_key = 'smuggled'`).Scan(&applied); err != nil {
			t.Fatal(err)
		}
		if applied != 0 {
			t.Fatalf("%d refused requests reached the ledger", applied)
		}
	})

	t.Run("headers and the internal listener", func(t *testing.T) {
		answers := map[string]func() (client.Response, error){
			"balance": func() (client.Response, error) {
				return owner.Do(ctx, http.MethodGet, fmt.Sprintf("/v1/accounts/%d", ownerAccount), nil, "", 0)
			},
			"unknown route": func() (client.Response, error) { return owner.Do(ctx, http.MethodGet, "/v1/nothing", nil, "", 0) },
			"bad token": func() (client.Response, error) {
				return client.New(gateway).Do(ctx, http.MethodGet, "/v1/accounts/1", nil, "", 0)
			},
			"public /metrics": func() (client.Response, error) { return owner.Do(ctx, http.MethodGet, "/metrics", nil, "", 0) },
			"public /readyz":  func() (client.Response, error) { return owner.Do(ctx, http.MethodGet, "/readyz", nil, "", 0) },
		}
		for name, call := range answers {
			response, err := call()
			if err != nil {
				t.Fatal(err)
			}
			if response.Header.Get("Cache-Control") != "no-store" || response.Header.Get("X-Content-Type-Options") != "nosniff" || response.Header.Get("X-Request-Id") == "" {
				t.Errorf("%s: %d without the headers of every answer: %v", name, response.Status, response.Header)
			}
			if strings.HasPrefix(name, "public /") && response.Status != http.StatusNotFound {
				t.Errorf("%s: %d, want 404 (served on the internal listener only)", name, response.Status)
			}
		}
		for _, path := range []string{"/metrics", "/readyz"} {
			body := scrape(t, s.file.Endpoints.GatewayInternal[0]+path)
			if body == "" {
				t.Errorf("internal %s is empty", path)
			}
		}
	})

	t.Run("8,300 stalled bodies from one address", func(t *testing.T) {
		const stalled = 8300
		address, err := url.Parse(gateway)
		if err != nil {
			t.Fatal(err)
		}
		held, refused := stallBodies(t, address.Host, stalled)
		defer func() {
			for _, connection := range held {
				connection.Close()
			}
		}()
		// Another client, at another address, is served at once, while the
		// gateway works through the stalled connections (a gateway without
		// the caps needs a moment to accept them all): for 3 seconds, a
		// balance and a deposit every 100 ms, each answered within 1s.
		other := clientFrom(gateway, "127.0.0.2")
		other.Token = owner.Token
		var slowest time.Duration
		probes := 0
		for started := time.Now(); time.Since(started) < 3*time.Second; probes++ {
			call := func() (client.Response, error) {
				return other.Do(ctx, http.MethodGet, fmt.Sprintf("/v1/accounts/%d", ownerAccount), nil, "", 0)
			}
			if probes%2 == 1 {
				call = func() (client.Response, error) {
					return other.Deposit(ctx, fmt.Sprintf("while-stalled-%d-%s", probes, suffix), ownerAccount, 1, 0)
				}
			}
			began := time.Now()
			response, err := call()
			elapsed := time.Since(began)
			if err != nil {
				t.Fatal(err)
			}
			slowest = max(slowest, elapsed)
			if response.Status != http.StatusOK && response.Status != http.StatusAccepted || benchTargets() && elapsed > time.Second {
				t.Fatalf("another client's request %d: %d in %s: %s; want success within 1s", probes+1, response.Status, elapsed, response.Body)
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("MEASURED: with %d stalled bodies sent from 127.0.0.1, %d requests from 127.0.0.2 (balances and deposits) over 3s all succeeded, the slowest in %.1f ms",
			stalled, probes, float64(slowest.Microseconds())/1000)
		open := stillOpen(held)
		t.Logf("MEASURED: of %d stalled connections from 127.0.0.1, %d were refused or reset at once, %d are held open by the gateway", stalled, refused+len(held)-open, open)
		if open > 300 {
			t.Fatalf("the gateway holds %d connections of one address; its cap is 256", open)
		}
	})

	t.Run("errors tell nothing of the inside", func(t *testing.T) {
		s.operate("stop", "postgres")
		t.Cleanup(func() { s.operate("start", "postgres") })
		c := clientFrom(gateway, "127.0.0.3")
		response, err := c.Do(ctx, http.MethodPost, "/v1/sessions", credentials("someone-"+suffix+"@example.com", "a long passphrase"), "", 0)
		if err != nil {
			t.Fatal(err)
		}
		body := string(response.Body)
		if response.Status != http.StatusServiceUnavailable || !strings.Contains(body, `"request_id":"`+response.Header.Get("X-Request-Id")+`"`) {
			t.Fatalf("sign-in with Postgres down: %d %s, want 503 with the request id", response.Status, body)
		}
		retryAfter(t, response)
		for _, leak := range []string{"127.0.0.1", "postgres", "dial", "connect", "tcp", strconv.Itoa(portOf(t, s.file.Endpoints.PostgresURL))} {
			if strings.Contains(strings.ToLower(body), leak) {
				t.Errorf("the answer names %q: %s", leak, body)
			}
		}
	})
}

// portOf is the port of a URL.
func portOf(t *testing.T, raw string) int {
	t.Helper()
	parsed, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(parsed.Port())
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// stallBodies opens count connections to address from 127.0.0.1, each
// sending a sign-in's headers and the first byte of its body, then nothing:
// the connections the gateway kept, and how many it refused at once.
func stallBodies(t *testing.T, address string, count int) (held []net.Conn, refused int) {
	t.Helper()
	const header = "POST /v1/sessions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\nContent-Length: 64\r\n\r\n{"
	var mutex sync.Mutex
	var refusedCount atomic.Int64
	indexes := make(chan int)
	var wait sync.WaitGroup
	for range 128 {
		wait.Add(1)
		go func() {
			defer wait.Done()
			for range indexes {
				connection, err := net.DialTimeout("tcp", address, 3*time.Second)
				if err != nil {
					refusedCount.Add(1)
					continue
				}
				_ = connection.SetWriteDeadline(time.Now().Add(3 * time.Second))
				if _, err := io.WriteString(connection, header); err != nil {
					connection.Close()
					refusedCount.Add(1)
					continue
				}
				mutex.Lock()
				held = append(held, connection)
				mutex.Unlock()
			}
		}()
	}
	for i := range count {
		indexes <- i
	}
	close(indexes)
	wait.Wait()
	return held, int(refusedCount.Load())
}

// stillOpen counts the connections the server has neither closed nor
// answered: a read waits for a moment and times out.
func stillOpen(connections []net.Conn) int {
	var open atomic.Int64
	var wait sync.WaitGroup
	limit := make(chan struct{}, 256)
	for _, connection := range connections {
		wait.Add(1)
		limit <- struct{}{}
		go func() {
			defer wait.Done()
			defer func() { <-limit }()
			_ = connection.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			var buffer [1]byte
			_, err := connection.Read(buffer[:])
			var netError net.Error
			if errors.As(err, &netError) && netError.Timeout() {
				open.Add(1)
			}
		}()
	}
	wait.Wait()
	return int(open.Load())
}

// sendRawFrom writes one raw request from source and returns the answer's
// status and whether the server closed the connection after it.
func sendRawFrom(t *testing.T, baseURL, source, raw string) (status int, closed bool) {
	t.Helper()
	address, err := url.Parse(baseURL)
	if err != nil {
		t.Fatal(err)
	}
	dialer := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}, Timeout: 5 * time.Second}
	connection, err := dialer.Dial("tcp", address.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer connection.Close()
	_ = connection.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(connection, raw); err != nil {
		t.Fatal(err)
	}
	reader := bufio.NewReader(connection)
	response, err := http.ReadResponse(reader, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, response.Body)
	response.Body.Close()
	_ = connection.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err = reader.ReadByte()
	return response.StatusCode, errors.Is(err, io.EOF) || (err != nil && !isTimeout(err))
}

func isTimeout(err error) bool {
	var netError net.Error
	return errors.As(err, &netError) && netError.Timeout()
}

// TestSecuritySigninCost: with the production password hashing (argon2id,
// 19 MiB, 2 iterations), sign-in costs the same for an existing and an
// unknown email (medians of 30 interleaved attempts within 1.5x), and 64
// concurrent sign-in clients keep the gateway's memory under 512 MiB.
func TestSecuritySigninCost(t *testing.T) {
	s := startStackWith(t, 1, 1, []string{"--kdf-memory-kib=19456", "--kdf-iterations=2"}, nil)
	gateway := s.file.Endpoints.Gateways[0]
	ctx := context.Background()
	suffix := uniqueSuffix()
	c := client.New(gateway)

	t.Run("existing and unknown emails", func(t *testing.T) {
		const attempts = 30
		existing := make([]string, attempts)
		for i := range existing {
			existing[i] = fmt.Sprintf("timed-%d-%s@example.com", i, suffix)
			if _, _, err := c.Signup(ctx, existing[i], "a long passphrase"); err != nil {
				t.Fatal(err)
			}
		}
		signin := func(email string) time.Duration {
			started := time.Now()
			response, err := c.Do(ctx, http.MethodPost, "/v1/sessions", credentials(email, "a wrong passphrase"), "", 0)
			elapsed := time.Since(started)
			if err != nil {
				t.Fatal(err)
			}
			if response.Status != http.StatusUnauthorized {
				t.Fatalf("sign-in of %s: %d %s", email, response.Status, response.Body)
			}
			return elapsed
		}
		var known, unknown []time.Duration
		for i := range attempts {
			other := fmt.Sprintf("nobody-%d-%s@example.com", i, suffix)
			// Alternate which goes first, so a drift of the machine's load
			// weighs on both alike.
			if i%2 == 0 {
				known = append(known, signin(existing[i]))
				unknown = append(unknown, signin(other))
			} else {
				unknown = append(unknown, signin(other))
				known = append(known, signin(existing[i]))
			}
		}
		knownMedian, unknownMedian := median(known), median(unknown)
		ratio := float64(max(knownMedian, unknownMedian)) / float64(min(knownMedian, unknownMedian))
		t.Logf("MEASURED: sign-in with a wrong password, medians of %d interleaved: existing email %.1f ms, unknown email %.1f ms, ratio %.2f",
			attempts, float64(knownMedian.Microseconds())/1000, float64(unknownMedian.Microseconds())/1000, ratio)
		if benchTargets() && ratio > 1.5 {
			t.Fatalf("the sign-in of an existing email and of an unknown one differ by %.2fx; want within 1.5x", ratio)
		}
	})

	t.Run("64 concurrent sign-in clients", func(t *testing.T) {
		component, err := s.file.Component("gateway-0")
		if err != nil {
			t.Fatal(err)
		}
		// Existing emails, wrong passwords: each sign-in hashes with the
		// account's own cost (an unknown email's decoy used to be cheap).
		// Fewer wrong passwords per email than the lock allows.
		const clients, rounds = 64, 4
		emails := make([]string, clients)
		for i := range emails {
			emails[i] = fmt.Sprintf("flood-%d-%s@example.com", i, suffix)
			if _, _, err := c.Signup(ctx, emails[i], "a long passphrase"); err != nil {
				t.Fatal(err)
			}
		}
		statuses := map[int]int{}
		var mutex sync.Mutex
		var wait sync.WaitGroup
		peak := atomic.Int64{}
		stop := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			ticker := time.NewTicker(50 * time.Millisecond)
			defer ticker.Stop()
			for {
				if rss := memoryKiB(t, component.PID, "VmRSS"); rss > peak.Load() {
					peak.Store(rss)
				}
				select {
				case <-stop:
					return
				case <-ticker.C:
				}
			}
		}()
		started := time.Now()
		for i := range clients {
			wait.Add(1)
			go func() {
				defer wait.Done()
				c := client.New(gateway)
				for round := range rounds {
					response, err := c.Do(ctx, http.MethodPost, "/v1/sessions", credentials(emails[i], fmt.Sprintf("wrong passphrase %d", round)), "", 0)
					status := 0
					if err == nil {
						status = response.Status
					}
					mutex.Lock()
					statuses[status]++
					mutex.Unlock()
				}
			}()
		}
		wait.Wait()
		close(stop)
		<-sampled
		highWater := memoryKiB(t, component.PID, "VmHWM")
		t.Logf("MEASURED: %d concurrent sign-in clients, %d sign-ins each in %.1fs: answers %v; gateway RSS peak sampled %d MiB, high-water mark %d MiB",
			clients, rounds, time.Since(started).Seconds(), statuses, peak.Load()>>10, highWater>>10)
		if benchTargets() && highWater > 512<<10 {
			t.Fatalf("the gateway's memory reached %d MiB; want under 512 MiB", highWater>>10)
		}
		if statuses[http.StatusUnauthorized] == 0 {
			t.Fatalf("no sign-in was answered 401: %v", statuses)
		}
		for status := range statuses {
			if status != http.StatusUnauthorized && status != http.StatusServiceUnavailable {
				t.Fatalf("answers %v: only 401, and 503 when every hashing slot stayed busy, are expected", statuses)
			}
		}
	})
}

// memoryKiB reads a memory field (VmRSS, VmHWM) of a process, in KiB.
func memoryKiB(t *testing.T, pid int, field string) int64 {
	t.Helper()
	content, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(content), "\n") {
		if value, ok := strings.CutPrefix(line, field+":"); ok {
			kib, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(value), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kib
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

func median(values []time.Duration) time.Duration {
	sorted := slices.Clone(values)
	slices.Sort(sorted)
	return sorted[len(sorted)/2]
}

// TestSecuritySessions: a token signed out, or older than its user's
// revocation time, is refused by every gateway within 5s, also after Redis
// lost every session; and losing Redis does not end a valid session on a
// gateway that never saw it.
func TestSecuritySessions(t *testing.T) {
	s := startStack(t, 2, 1)
	ctx := context.Background()
	suffix := uniqueSuffix()
	gateways := s.file.Endpoints.Gateways
	email, password := "sessions-"+suffix+"@example.com", "a long passphrase"
	first := client.New(gateways[0])
	account := signupAndSignin(t, first, email, password)
	redis := goredis.NewClient(&goredis.Options{Addr: s.file.Endpoints.RedisAddr})
	t.Cleanup(func() { redis.Close() })

	// status is the answer of a gateway to a token.
	status := func(gateway int, token string) int {
		c := client.New(gateways[gateway])
		c.Token = token
		response, err := c.Do(ctx, http.MethodGet, fmt.Sprintf("/v1/accounts/%d", account), nil, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		return response.Status
	}
	// refusedWithin polls every gateway until it refuses token, and fails
	// if one still accepts it after 5s.
	refusedWithin := func(what, token string) {
		t.Helper()
		started := time.Now()
		for gateway := range gateways {
			for status(gateway, token) != http.StatusUnauthorized {
				if time.Since(started) > 5*time.Second {
					t.Fatalf("%s: gateway %d still accepts the token after 5s", what, gateway)
				}
				time.Sleep(20 * time.Millisecond)
			}
			t.Logf("MEASURED: %s: gateway %d refuses the token %.2fs after", what, gateway, time.Since(started).Seconds())
		}
	}
	newToken := func() string {
		c := client.New(gateways[0])
		if err := c.Signin(ctx, email, password); err != nil {
			t.Fatal(err)
		}
		return c.Token
	}
	flush := func() {
		if err := redis.FlushAll(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}

	// A token both gateways have seen, signed out on one.
	token := first.Token
	for gateway := range gateways {
		if got := status(gateway, token); got != http.StatusOK {
			t.Fatalf("gateway %d: %d before the sign-out", gateway, got)
		}
	}
	if err := first.Signout(ctx); err != nil {
		t.Fatal(err)
	}
	refusedWithin("signed out on gateway 0", token)

	// Redis loses every session: a token only gateway 0 saw still works
	// on gateway 1, and on gateway 0.
	token = newToken()
	if got := status(0, token); got != http.StatusOK {
		t.Fatalf("a fresh token: %d", got)
	}
	flush()
	for gateway := range gateways {
		if got := status(gateway, token); got != http.StatusOK {
			t.Fatalf("after Redis lost every session, gateway %d answers %d to a valid token", gateway, got)
		}
	}
	// An operator's revocation time, written in the database after the
	// flush, ends it everywhere.
	if _, err := s.db.Exec(ctx, `UPDATE users SET sessions_valid_after = now() WHERE email = $1`, email); err != nil {
		t.Fatal(err)
	}
	refusedWithin("older than the user's valid-after, after a Redis flush", token)

	// Signed out after a flush, on the gateway that did not issue it.
	token = newToken()
	if got := status(1, token); got != http.StatusOK {
		t.Fatalf("a fresh token on gateway 1: %d", got)
	}
	flush()
	signingOut := client.New(gateways[1])
	signingOut.Token = token
	if err := signingOut.Signout(ctx); err != nil {
		t.Fatal(err)
	}
	refusedWithin("signed out on gateway 1 after a Redis flush", token)
	// A flush after the sign-out revives nothing.
	flush()
	for gateway := range gateways {
		if got := status(gateway, token); got != http.StatusUnauthorized {
			t.Fatalf("after another flush, gateway %d answers %d to a signed-out token", gateway, got)
		}
	}
}

// benchTargets reports whether the security tests also hold their speed and
// memory targets (a request from another client answered within 1 s under
// the slow-body flood, sign-in timings within 1.5x, the gateway under 512
// MiB with 64 sign-in clients): `make bench-security` sets
// LEDGERPROOF_SECURITY_BENCH=1. In `make test` they are measured and logged
// (MEASURED: lines), never asserted: a busy machine would cross an
// absolute bound for reasons that are not the gateway's.
func benchTargets() bool { return os.Getenv("LEDGERPROOF_SECURITY_BENCH") == "1" }
