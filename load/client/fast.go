package client

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/valyala/fasthttp"
)

// newFastClient is EngineFast's client, configured as the standard engine's
// transport is: at most MaxConnections per base URL (a request waits up to
// Timeout for one), idle connections closed after IdleConnTimeout, no proxy,
// no redirects followed, no compression asked for, and never a request sent
// again by the client library on its own (a money request's retries are this
// package's, with the same key, and journaled).
func newFastClient(options Options) *fasthttp.Client {
	dialer := &net.Dialer{Timeout: options.Timeout, KeepAlive: 30 * time.Second}
	return &fasthttp.Client{
		NoDefaultUserAgentHeader: true,
		MaxConnsPerHost:          options.MaxConnections,
		MaxConnWaitTimeout:       options.Timeout,
		MaxIdleConnDuration:      options.IdleConnTimeout,
		// Most recently used first, as net/http's pool: a connection a
		// burst opened beyond the steady need then idles and closes after
		// MaxIdleConnDuration. fasthttp's default, FIFO, hands the idle
		// connections out in turn, so each carries a request often enough
		// to stay open, and every burst's connections stay.
		ConnPoolStrategy:          fasthttp.LIFO,
		MaxIdemponentCallAttempts: 1,
		RetryIfErr:                func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
		ReadTimeout:               options.Timeout,
		WriteTimeout:              options.Timeout,
		MaxResponseBodySize:       maxResponseBytes,
		DisablePathNormalizing:    true,
		DialTimeout: func(address string, timeout time.Duration) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(context.Background(), min(timeout, options.Timeout))
			defer cancel()
			return dialer.DialContext(ctx, "tcp", address)
		},
	}
}

// sendFast is send on EngineFast: the request is written and its answer
// read on the calling goroutine, with no goroutine of the client library in
// between (net/http's transport hands every request to a writing and a
// reading goroutine of the connection). It ends at the context's deadline or
// after Timeout, whichever comes first; a context cancelled before the
// request is sent sends nothing.
func (c *HTTP) sendFast(ctx context.Context, spec request, base string) exchange {
	start := c.options.Clock()
	if err := ctx.Err(); err != nil {
		return c.unanswered(spec, start, err.Error(), errors.Is(err, context.DeadlineExceeded))
	}
	deadline := time.Now().Add(c.options.Timeout)
	if due, ok := ctx.Deadline(); ok && due.Before(deadline) {
		deadline = due
	}
	request, response := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(request)
	defer fasthttp.ReleaseResponse(response)
	request.SetRequestURI(base + spec.path)
	request.Header.SetMethod(spec.method)
	c.eachHeader(spec, request.Header.Set)
	if spec.body != nil {
		request.SetBodyRaw(spec.body)
	}
	if err := c.fast.DoDeadline(request, response, deadline); err != nil {
		var netError net.Error
		timedOut := errors.Is(err, fasthttp.ErrTimeout) || errors.Is(err, fasthttp.ErrDialTimeout) ||
			(errors.As(err, &netError) && netError.Timeout()) || !time.Now().Before(deadline)
		return c.unanswered(spec, start, err.Error(), timedOut)
	}
	answered := exchange{status: response.StatusCode(), body: append([]byte(nil), response.Body()...), at: c.options.Clock()}
	return c.answered(spec, start, answered, string(response.Header.Peek("Retry-After")))
}

// unanswered is an exchange that got no answer (a connection error, a
// timeout), as the observer is told of it.
func (c *HTTP) unanswered(spec request, start time.Time, errorText string, timedOut bool) exchange {
	answered := exchange{errorText: errorText, timedOut: timedOut, at: c.options.Clock()}
	c.options.Observer.HTTP(spec.route, 0, answered.at.Sub(start), true, answered.at)
	return answered
}
