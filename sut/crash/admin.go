package crash

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

// AdminPath is where a process started with --enable-crash-points serves its
// crash points: the gateway on its HTTP listener, the worker on its metrics
// listener.
const AdminPath = "/admin/crash-points"

// ArmRequest is the body of POST /admin/crash-points. Point is a full name
// ("worker.mid-batch") or the short name of one of the process's points
// ("mid-batch"). With neither After nor Probability the point fires on its
// next hit.
type ArmRequest struct {
	Point       string  `json:"point"`
	After       int64   `json:"after,omitempty"`
	Probability float64 `json:"probability,omitempty"`
}

// ArmedPoint is an armed point as the endpoint shows it.
type ArmedPoint struct {
	Point       string  `json:"point"`
	After       int64   `json:"after,omitempty"`
	Probability float64 `json:"probability,omitempty"`
	Hits        int64   `json:"hits"`
}

// Listing is the body of GET /admin/crash-points.
type Listing struct {
	Process    string `json:"process"`
	ExitStatus int    `json:"exit_status"`
	Seed       uint64 `json:"crash_point_seed"`
	// Points are the names of the points this process has.
	Points []string     `json:"points"`
	Armed  []ArmedPoint `json:"armed"`
}

// Disarmed is the body of the answer to DELETE /admin/crash-points.
type Disarmed struct {
	Disarmed []string `json:"disarmed"`
}

func armedPoint(status Status) ArmedPoint {
	return ArmedPoint{Point: status.Point.String(), After: status.After, Probability: status.Probability, Hits: status.Hits}
}

// maxAdminBody caps a POST body; a valid one is a few dozen bytes.
const maxAdminBody = 4 << 10

// Handler serves the registry at AdminPath to loopback callers only (the
// endpoint can end the process; nothing beyond the machine may reach it,
// and a caller relayed by a proxy such as nginx is refused too):
//
//	POST   {"point":NAME,"after":N} or {"point":NAME,"probability":P}: arm (200, the armed point)
//	GET    the process's points and the armed ones (200, a Listing)
//	DELETE ?point=NAME disarms one, without it every point (200, Disarmed)
//
// Errors are {"code":…, "message":…}: 400 invalid_request, 403 forbidden
// (not loopback), 405 method_not_allowed.
func (r *Registry) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, request *http.Request) {
		if !fromLoopback(request) {
			writeError(w, http.StatusForbidden, "forbidden", "crash points answer loopback callers only")
			return
		}
		switch request.Method {
		case http.MethodGet:
			listing := Listing{Process: string(r.process), ExitStatus: ExitStatus, Seed: r.seed, Points: []string{}, Armed: []ArmedPoint{}}
			for _, point := range Points() {
				if point.Process() == r.process {
					listing.Points = append(listing.Points, point.String())
				}
			}
			for _, status := range r.Armed() {
				listing.Armed = append(listing.Armed, armedPoint(status))
			}
			writeJSON(w, http.StatusOK, listing)
		case http.MethodPost:
			var body ArmRequest
			decoder := json.NewDecoder(http.MaxBytesReader(w, request.Body, maxAdminBody))
			decoder.DisallowUnknownFields()
			if err := decoder.Decode(&body); err != nil {
				writeError(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("the body is not {\"point\":NAME,\"after\":N} or {\"point\":NAME,\"probability\":P}: %v", err))
				return
			}
			point, err := ParsePoint(body.Point, r.process)
			if err != nil {
				writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
				return
			}
			// Armed before the answer (a caller that has "armed" sees it in
			// the listing), but it cannot fire before the answer is out: a
			// busy worker commits within milliseconds, and a point firing
			// at once would end the process before it answered, leaving
			// the caller an EOF instead of "armed".
			status, answered, err := r.armAnswering(Arming{Point: point, After: body.After, Probability: body.Probability})
			defer answered()
			if err != nil {
				writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
				return
			}
			writeJSON(w, http.StatusOK, armedPoint(status))
			_ = http.NewResponseController(w).Flush()
		case http.MethodDelete:
			disarmed := Disarmed{Disarmed: []string{}}
			if name := request.URL.Query().Get("point"); name != "" {
				point, err := ParsePoint(name, r.process)
				if err != nil {
					writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
					return
				}
				if r.Disarm(point) {
					disarmed.Disarmed = append(disarmed.Disarmed, point.String())
				}
			} else {
				for _, status := range r.Armed() {
					if r.Disarm(status.Point) {
						disarmed.Disarmed = append(disarmed.Disarmed, status.Point.String())
					}
				}
			}
			writeJSON(w, http.StatusOK, disarmed)
		default:
			w.Header().Set("Allow", "GET, POST, DELETE")
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", request.Method+" is not GET, POST or DELETE")
		}
	})
}

// fromLoopback reports whether the request's peer is a loopback address.
// Forwarding headers are ignored on purpose: anyone can write them.
func fromLoopback(request *http.Request) bool {
	host, _, err := net.SplitHostPort(request.RemoteAddr)
	if err != nil {
		host = request.RemoteAddr
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func writeJSON(w http.ResponseWriter, status int, value any) {
	body, err := json.Marshal(value)
	if err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"code":"internal","message":"encode the answer"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	// A length, not chunks: a flushed answer is then complete on the wire.
	w.Header().Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}{code, message})
}

// AdminURL returns the crash points endpoint of a process from the endpoint
// the stack file records for it: a gateway's base URL
// (http://127.0.0.1:18080) or a worker's metrics URL
// (http://127.0.0.1:18180/metrics).
func AdminURL(endpoint string) (string, error) {
	parsed, err := url.Parse(endpoint)
	if err != nil || parsed.Host == "" || (parsed.Scheme != "http" && parsed.Scheme != "https") {
		return "", fmt.Errorf("crash points: endpoint %q is not an http URL", endpoint)
	}
	parsed.Path, parsed.RawPath, parsed.RawQuery, parsed.Fragment = AdminPath, "", "", ""
	return parsed.String(), nil
}

// Client arms, lists and disarms the crash points of a running process
// through its admin endpoint: what a chaos plan's executor calls.
type Client struct {
	// URL is the admin endpoint (AdminURL).
	URL string
	// HTTP sends the requests; NewClient sets a 10s timeout and no
	// connection reuse.
	HTTP *http.Client
}

// NewClient returns a client of the process whose stack endpoint is given
// (see AdminURL).
func NewClient(endpoint string) (*Client, error) {
	adminURL, err := AdminURL(endpoint)
	if err != nil {
		return nil, err
	}
	return &Client{URL: adminURL, HTTP: newHTTPClient()}, nil
}

// newHTTPClient is a client that opens a connection per request: the
// processes it talks to die on purpose, and a pooled connection to one that
// was restarted on the same port would fail a POST with EOF.
func newHTTPClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
}

// Arm arms a point of the process.
func (c *Client) Arm(ctx context.Context, request ArmRequest) (ArmedPoint, error) {
	body, err := json.Marshal(request)
	if err != nil {
		return ArmedPoint{}, err
	}
	var armed ArmedPoint
	err = c.do(ctx, http.MethodPost, c.URL, body, &armed)
	return armed, err
}

// List returns the process's points and the armed ones.
func (c *Client) List(ctx context.Context) (Listing, error) {
	var listing Listing
	err := c.do(ctx, http.MethodGet, c.URL, nil, &listing)
	return listing, err
}

// Disarm disarms a point ("" disarms all) and returns the names disarmed.
func (c *Client) Disarm(ctx context.Context, point string) ([]string, error) {
	target := c.URL
	if point != "" {
		target += "?point=" + url.QueryEscape(point)
	}
	var disarmed Disarmed
	err := c.do(ctx, http.MethodDelete, target, nil, &disarmed)
	return disarmed.Disarmed, err
}

func (c *Client) do(ctx context.Context, method, target string, body []byte, into any) error {
	var reader io.Reader
	if body != nil {
		reader = bytes.NewReader(body)
	}
	request, err := http.NewRequestWithContext(ctx, method, target, reader)
	if err != nil {
		return err
	}
	if body != nil {
		request.Header.Set("Content-Type", "application/json")
	}
	httpClient := c.HTTP
	if httpClient == nil {
		httpClient = newHTTPClient()
	}
	response, err := httpClient.Do(request)
	if err != nil {
		return fmt.Errorf("crash points %s %s: %w", method, target, err)
	}
	defer response.Body.Close()
	data, err := io.ReadAll(io.LimitReader(response.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("crash points %s %s: %w", method, target, err)
	}
	switch {
	case response.StatusCode == http.StatusNotFound:
		return fmt.Errorf("crash points %s %s: %w", method, target, ErrNotEnabled)
	case response.StatusCode != http.StatusOK:
		var failure struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(data, &failure) != nil || failure.Message == "" {
			failure.Message = string(data)
		}
		return fmt.Errorf("crash points %s %s: %d: %s", method, target, response.StatusCode, failure.Message)
	}
	if err := json.Unmarshal(data, into); err != nil {
		return fmt.Errorf("crash points %s %s: decode %q: %w", method, target, data, err)
	}
	return nil
}

// Armer arms the crash points of a stack's processes by name, through their
// admin endpoints: the mechanism behind a chaos plan's crash-point step (it
// has the method set of chaos.CrashPointArmer).
type Armer struct {
	// Endpoint returns the endpoint the stack records for a process
	// (gateway-N: its base URL; worker-N: its metrics URL). Required.
	Endpoint func(process string) (string, error)
	// HTTP sends the requests; nil: a client with a 10s timeout.
	HTTP *http.Client
}

// CrashPoints lists the names of every crash point.
func (a *Armer) CrashPoints() []string {
	names := make([]string, 0, pointLimit-1)
	for _, point := range Points() {
		names = append(names, point.String())
	}
	return names
}

// ArmCrashPoint arms point in process (gateway-N or worker-N) to fire the
// next time the process gets there. point is a full name, or the short name
// of a point of the process's kind; a point of the other kind is refused
// before anything is sent.
func (a *Armer) ArmCrashPoint(ctx context.Context, process, point string) error {
	kind, _, _ := strings.Cut(process, "-")
	parsed, err := ParsePoint(point, ledger.Process(kind))
	if err != nil {
		return err
	}
	if string(parsed.Process()) != kind {
		return fmt.Errorf("crash point %s lives in a %s, and %s is not one", parsed, parsed.Process(), process)
	}
	if a.Endpoint == nil {
		return fmt.Errorf("crash points: no endpoint resolver for %s", process)
	}
	endpoint, err := a.Endpoint(process)
	if err != nil {
		return fmt.Errorf("crash point %s in %s: %w", parsed, process, err)
	}
	client, err := NewClient(endpoint)
	if err != nil {
		return err
	}
	if a.HTTP != nil {
		client.HTTP = a.HTTP
	}
	if _, err := client.Arm(ctx, ArmRequest{Point: parsed.String(), After: 1}); err != nil {
		return fmt.Errorf("arm crash point %s in %s: %w", parsed, process, err)
	}
	return nil
}
