package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

// requestState is what the gateway knows of a request beyond net/http's
// view: its id, its client, and its body once read.
type requestState struct {
	// requestID names the request in the logs and in its answer.
	requestID string
	// client is the client's address: the peer, or behind a trusted proxy
	// the address it forwarded. clientKey is what per-address limits count
	// by: the address, an IPv6 address by its /64.
	client    netip.Addr
	clientKey string
	// body is the request body, read by instrument before the handler.
	body []byte
}

type requestStateKey struct{}

// stateOf returns the request's state. A request that did not pass
// protect has an empty one (a handler called directly in a test).
func stateOf(r *http.Request) *requestState {
	if state, ok := r.Context().Value(requestStateKey{}).(*requestState); ok {
		return state
	}
	return &requestState{}
}

// requestBodyOf returns the body instrument read for a route that takes one.
func requestBodyOf(r *http.Request) []byte { return stateOf(r).body }

// protect gives every request an id and a client address, and every answer
// the headers that keep it out of caches and content sniffing:
// Cache-Control: no-store (answers hold tokens and balances),
// X-Content-Type-Options: nosniff, and X-Request-Id.
func (g *Gateway) protect(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		peer := peerAddress(r.RemoteAddr)
		state := &requestState{client: peer}
		trusted := g.trustedProxy(peer)
		if trusted {
			state.client = g.forwardedClient(peer, r.Header.Values("X-Forwarded-For"))
		}
		state.clientKey = addressKey(state.client)
		if id := r.Header.Get("X-Request-Id"); trusted && validRequestID(id) {
			state.requestID = id
		} else {
			state.requestID = newRequestID()
		}
		header := w.Header()
		header.Set("Cache-Control", "no-store")
		header.Set("X-Content-Type-Options", "nosniff")
		header.Set("X-Request-Id", state.requestID)
		r = r.WithContext(context.WithValue(r.Context(), requestStateKey{}, state))
		if len(r.TransferEncoding) > 0 {
			// Content-Length and Transfer-Encoding together are the
			// request-smuggling shape: net/http drops the Content-Length
			// and reads the body chunked, where a proxy in front may have
			// read it by its length. No route takes a chunked body, so
			// every Transfer-Encoding is refused and the connection closed.
			g.metrics.refusals.WithLabelValues("transfer_encoding").Inc()
			header.Set("Connection", "close")
			g.writeError(w, r, "none", ledger.Errorf(ledger.CodeInvalidRequest,
				"a request must not have a Transfer-Encoding; send a body with a Content-Length"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// newRequestID returns 16 random hex characters.
func newRequestID() string {
	var random [8]byte
	_, _ = rand.Read(random[:])
	return hex.EncodeToString(random[:])
}

// validRequestID accepts a proxy's request id: 1 to 64 letters, digits,
// '-', '_' or '.', so it is safe in logs and in the answer.
func validRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// peerAddress is the address of a request's peer (http.Request.RemoteAddr);
// the zero Addr when it cannot be parsed (a test's handler call).
func peerAddress(remote string) netip.Addr {
	addrPort, err := netip.ParseAddrPort(remote)
	if err != nil {
		return netip.Addr{}
	}
	return addrPort.Addr().Unmap()
}

// trustedProxy reports whether address is one of Config.TrustedProxies.
func (g *Gateway) trustedProxy(address netip.Addr) bool {
	for _, prefix := range g.config.TrustedProxies {
		if prefix.Contains(address) {
			return true
		}
	}
	return false
}

// forwardedClient is the client a trusted proxy forwarded: the last
// X-Forwarded-For entry that is not itself a trusted proxy (entries before
// it were written by the client and prove nothing). Without a usable
// entry, the proxy itself.
func (g *Gateway) forwardedClient(peer netip.Addr, headers []string) netip.Addr {
	entries := strings.Split(strings.Join(headers, ","), ",")
	for i := len(entries) - 1; i >= 0; i-- {
		address, err := netip.ParseAddr(strings.TrimSpace(entries[i]))
		if err != nil {
			return peer
		}
		address = address.Unmap()
		if !g.trustedProxy(address) {
			return address
		}
	}
	return peer
}

// addressKey is what per-address limits count by: an IPv4 address, or an
// IPv6 address's /64 (a single client commonly holds a whole /64).
func addressKey(address netip.Addr) string {
	if !address.IsValid() {
		return "unknown"
	}
	if address.Is6() {
		prefix, _ := address.Prefix(64)
		return prefix.String()
	}
	return address.String()
}

// addressKeyOf is addressKey of a connection's remote address.
func addressKeyOf(remote net.Addr) (netip.Addr, string) {
	if tcp, ok := remote.(*net.TCPAddr); ok {
		address, _ := netip.AddrFromSlice(tcp.IP)
		address = address.Unmap()
		return address, addressKey(address)
	}
	address := peerAddress(remote.String())
	return address, addressKey(address)
}

// readRequestBody reads a body the gateway will interpret: its
// Content-Type must be application/json (charset utf-8 at most), it must
// arrive within BodyReadTimeout and hold at most MaxBodyBytes (protect
// refused a Transfer-Encoding already).
func (g *Gateway) readRequestBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if contentTypes := r.Header.Values("Content-Type"); len(contentTypes) != 1 || !jsonMediaType(contentTypes[0]) {
		g.metrics.refusals.WithLabelValues("media_type").Inc()
		return nil, ledger.Errorf(ledger.CodeUnsupportedMediaType, "the body must be sent with one Content-Type: application/json header")
	}
	controller := http.NewResponseController(w)
	deadlineSet := controller.SetReadDeadline(g.clock().Add(g.config.BodyReadTimeout)) == nil
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, g.config.MaxBodyBytes))
	if deadlineSet {
		// The handler may run long (a bounded wait): net/http's own read of
		// the connection meanwhile must not time out and cancel it.
		_ = controller.SetReadDeadline(time.Time{})
	}
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return nil, ledger.Errorf(ledger.CodeBodyTooLarge, "the body is larger than %d bytes", g.config.MaxBodyBytes)
	case errors.Is(err, os.ErrDeadlineExceeded):
		g.metrics.refusals.WithLabelValues("body_timeout").Inc()
		return nil, ledger.Errorf(ledger.CodeInvalidRequest, "the body did not arrive within %s", g.config.BodyReadTimeout)
	case err != nil:
		// The connection failed mid-body; its error says nothing the client
		// needs (and may name internals), so it is not echoed.
		return nil, ledger.Errorf(ledger.CodeInvalidRequest, "the body could not be read to its end")
	}
	return body, nil
}

// jsonMediaType accepts application/json, with at most a charset parameter
// of utf-8 (case-insensitive, as media types are).
func jsonMediaType(contentType string) bool {
	mediaType, parameters, err := mime.ParseMediaType(contentType)
	if err != nil || mediaType != "application/json" {
		return false
	}
	for name, value := range parameters {
		if name != "charset" || !strings.EqualFold(value, "utf-8") {
			return false
		}
	}
	return true
}
