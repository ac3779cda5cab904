package gateway

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// RateLimit is a token bucket: PerSecond tokens a second, at most Burst
// at once. A zero PerSecond takes the option's documented default, a zero
// Burst twice PerSecond (at least 1); a negative PerSecond turns the limit
// off.
type RateLimit struct {
	PerSecond float64
	Burst     int
}

func (l *RateLimit) applyDefaults(fallback RateLimit) {
	if l.PerSecond == 0 {
		l.PerSecond = fallback.PerSecond
		if l.Burst == 0 {
			l.Burst = fallback.Burst
		}
	}
	if l.Burst == 0 && l.PerSecond > 0 {
		l.Burst = max(1, int(math.Ceil(2*l.PerSecond)))
	}
}

func (l RateLimit) validate() error {
	if math.IsNaN(l.PerSecond) || math.IsInf(l.PerSecond, 0) {
		return fmt.Errorf("rate %g is not a number of tokens a second", l.PerSecond)
	}
	if l.PerSecond > 0 && l.Burst < 1 {
		return fmt.Errorf("burst %d must be positive", l.Burst)
	}
	return nil
}

// off reports whether the limit is turned off.
func (l RateLimit) off() bool { return l.PerSecond < 0 }

// keyedLimitersMaximum bounds each keyed limiter's map.
const keyedLimitersMaximum = 100_000

// keyedLimiter is one token bucket per key (a user, an address, an email),
// in a bounded map: when it is full, the buckets that are full again (their
// key has been quiet long enough to have forgotten nothing) are dropped;
// if that is not enough, all are, which forgives every key a burst.
type keyedLimiter[K comparable] struct {
	limit   RateLimit
	mutex   sync.Mutex
	buckets map[K]*rate.Limiter
}

func newKeyedLimiter[K comparable](limit RateLimit) *keyedLimiter[K] {
	return &keyedLimiter[K]{limit: limit, buckets: map[K]*rate.Limiter{}}
}

// allow takes a token of key's bucket at now; when there is none, it says
// how long until there is one.
func (k *keyedLimiter[K]) allow(key K, now time.Time) (allowed bool, retryAfter time.Duration) {
	if k.limit.off() {
		return true, 0
	}
	k.mutex.Lock()
	defer k.mutex.Unlock()
	bucket, ok := k.buckets[key]
	if !ok {
		if len(k.buckets) >= keyedLimitersMaximum {
			k.dropFull(now)
		}
		bucket = rate.NewLimiter(rate.Limit(k.limit.PerSecond), k.limit.Burst)
		k.buckets[key] = bucket
	}
	reservation := bucket.ReserveN(now, 1)
	if !reservation.OK() {
		return false, time.Second
	}
	if delay := reservation.DelayFrom(now); delay > 0 {
		reservation.CancelAt(now)
		return false, delay
	}
	return true, 0
}

// dropFull drops the buckets that are full, or all when none is.
func (k *keyedLimiter[K]) dropFull(now time.Time) {
	for key, bucket := range k.buckets {
		if bucket.TokensAt(now) >= float64(k.limit.Burst) {
			delete(k.buckets, key)
		}
	}
	if len(k.buckets) >= keyedLimitersMaximum {
		k.buckets = map[K]*rate.Limiter{}
	}
}

// retryAfterSeconds is a Retry-After value: whole seconds, at least 1.
func retryAfterSeconds(wait time.Duration) string {
	return fmt.Sprint(max(1, int64(math.Ceil(wait.Seconds()))))
}

// addressCounter counts what each client address holds at once (requests
// in flight, connections) against a cap; a negative cap is no cap.
type addressCounter struct {
	maximum int
	mutex   sync.Mutex
	counts  map[string]int
}

func newAddressCounter(maximum int) *addressCounter {
	return &addressCounter{maximum: maximum, counts: map[string]int{}}
}

// acquire counts one more for key, or refuses when key holds the cap.
func (a *addressCounter) acquire(key string) bool {
	if a.maximum < 0 {
		return true
	}
	a.mutex.Lock()
	defer a.mutex.Unlock()
	if a.counts[key] >= a.maximum {
		return false
	}
	a.counts[key]++
	return true
}

// release counts one less for key; keys at zero leave the map, which holds
// only addresses that hold something.
func (a *addressCounter) release(key string) {
	if a.maximum < 0 {
		return
	}
	a.mutex.Lock()
	defer a.mutex.Unlock()
	count := a.counts[key]
	if count <= 0 {
		panic("gateway: an address released more than it acquired")
	}
	if count == 1 {
		delete(a.counts, key)
		return
	}
	a.counts[key] = count - 1
}

// Listener wraps the public listener: one client address holds at most
// Config.ConnectionsPerAddress connections; a connection beyond it is
// closed at once, before a byte is read, so one client cannot hold every
// connection the process can keep. Trusted proxies are not capped (they
// carry every client's connections; cap clients at the proxy).
func (g *Gateway) Listener(inner net.Listener) net.Listener {
	if g.config.ConnectionsPerAddress < 0 {
		return inner
	}
	return &cappedListener{Listener: inner, gateway: g, open: newAddressCounter(g.config.ConnectionsPerAddress)}
}

type cappedListener struct {
	net.Listener
	gateway *Gateway
	open    *addressCounter
}

// Accept returns the next connection within its address's cap, closing
// those beyond it.
func (l *cappedListener) Accept() (net.Conn, error) {
	for {
		connection, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		address, key := addressKeyOf(connection.RemoteAddr())
		if l.gateway.trustedProxy(address) {
			return connection, nil
		}
		if !l.open.acquire(key) {
			l.gateway.metrics.refusals.WithLabelValues("connections_per_address").Inc()
			if tcp, ok := connection.(*net.TCPConn); ok {
				// A reset, not a FIN: no TIME_WAIT left here per refusal.
				_ = tcp.SetLinger(0)
			}
			_ = connection.Close()
			continue
		}
		return &countedConnection{Conn: connection, release: sync.OnceFunc(func() { l.open.release(key) })}, nil
	}
}

// countedConnection gives its address's count back when closed.
type countedConnection struct {
	net.Conn
	release func()
}

func (c *countedConnection) Close() error {
	c.release()
	return c.Conn.Close()
}

// Server returns the HTTP server of the public API with the gateway's
// limits: the request line and headers at most MaxHeaderBytes, read within
// 5 seconds; bodies are bounded by instrument (BodyReadTimeout); an answer
// may take the longest bounded wait plus the broker's acknowledgement; idle
// connections close after 2 minutes.
func (g *Gateway) Server(handler http.Handler) *http.Server {
	return &http.Server{
		Handler:           handler,
		MaxHeaderBytes:    g.config.MaxHeaderBytes,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      g.config.WaitMax + g.config.ProduceTimeout + 30*time.Second,
		IdleTimeout:       2 * time.Minute,
	}
}
