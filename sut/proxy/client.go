package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

// requestTimeout bounds one API call when the caller's context has no
// earlier deadline. Toxiproxy's own Go client has no deadlines, hence this
// small client.
const requestTimeout = 10 * time.Second

// Client calls toxiproxy's HTTP API (the embedded server of Run, or a
// toxiproxy-server) with a deadline on every call.
type Client struct {
	endpoint string
	http     *http.Client
}

// NewClient returns a client of the API at endpoint, e.g.
// http://127.0.0.1:18290.
func NewClient(endpoint string) *Client {
	return &Client{endpoint: strings.TrimRight(endpoint, "/"), http: &http.Client{Timeout: requestTimeout}}
}

// Toxic is one fault on a link, in toxiproxy's terms.
type Toxic struct {
	// Name is unique per link.
	Name string `json:"name"`
	// Type is a toxiproxy toxic: latency, bandwidth, reset_peer, timeout,
	// limit_data, slicer, slow_close.
	Type string `json:"type"`
	// Stream is "upstream" (client to server) or "downstream" (server to
	// client).
	Stream string `json:"stream"`
	// Toxicity is the share of connections affected, 0 to 1.
	Toxicity float32 `json:"toxicity"`
	// Attributes are the type's parameters (latency and jitter in ms, rate
	// in KB/s, timeout in ms, bytes).
	Attributes map[string]int64 `json:"attributes"`
}

// LinkState is a proxy as the API shows it.
type LinkState struct {
	Name     string  `json:"name"`
	Listen   string  `json:"listen"`
	Upstream string  `json:"upstream"`
	Enabled  bool    `json:"enabled"`
	Toxics   []Toxic `json:"toxics"`
}

// Links returns every proxy with its toxics, sorted by name.
func (c *Client) Links(ctx context.Context) ([]LinkState, error) {
	var byName map[string]LinkState
	if err := c.call(ctx, http.MethodGet, "/proxies", nil, http.StatusOK, &byName); err != nil {
		return nil, err
	}
	links := make([]LinkState, 0, len(byName))
	for _, link := range byName {
		links = append(links, link)
	}
	sort.Slice(links, func(i, j int) bool { return links[i].Name < links[j].Name })
	return links, nil
}

// Link returns one proxy with its toxics.
func (c *Client) Link(ctx context.Context, name string) (LinkState, error) {
	var link LinkState
	err := c.call(ctx, http.MethodGet, "/proxies/"+url.PathEscape(name), nil, http.StatusOK, &link)
	return link, err
}

// SetEnabled starts (true) or stops (false) a proxy. Stopping closes every
// connection through it and refuses new ones.
func (c *Client) SetEnabled(ctx context.Context, name string, enabled bool) error {
	return c.call(ctx, http.MethodPost, "/proxies/"+url.PathEscape(name), map[string]bool{"enabled": enabled}, http.StatusOK, nil)
}

// AddToxic adds a toxic to a proxy.
func (c *Client) AddToxic(ctx context.Context, name string, toxic Toxic) error {
	return c.call(ctx, http.MethodPost, "/proxies/"+url.PathEscape(name)+"/toxics", toxic, http.StatusOK, nil)
}

// RemoveToxics removes every toxic of a proxy.
func (c *Client) RemoveToxics(ctx context.Context, name string) error {
	link, err := c.Link(ctx, name)
	if err != nil {
		return err
	}
	for _, toxic := range link.Toxics {
		path := "/proxies/" + url.PathEscape(name) + "/toxics/" + url.PathEscape(toxic.Name)
		if err := c.call(ctx, http.MethodDelete, path, nil, http.StatusNoContent, nil); err != nil {
			return err
		}
	}
	return nil
}

// call sends one request and decodes the answer into result (if not nil).
func (c *Client) call(ctx context.Context, method, path string, body any, wantStatus int, result any) error {
	var reader io.Reader
	if body != nil {
		encoded, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("proxy API %s %s: %w", method, path, err)
		}
		reader = bytes.NewReader(encoded)
	}
	request, err := http.NewRequestWithContext(ctx, method, c.endpoint+path, reader)
	if err != nil {
		return fmt.Errorf("proxy API %s %s: %w", method, path, err)
	}
	if body != nil {
		request.Header.Set("Content-Type", "application/json")
	}
	response, err := c.http.Do(request)
	if err != nil {
		return fmt.Errorf("proxy API %s %s: %w", method, path, err)
	}
	defer response.Body.Close()
	content, err := io.ReadAll(io.LimitReader(response.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("proxy API %s %s: %w", method, path, err)
	}
	if response.StatusCode != wantStatus {
		return fmt.Errorf("proxy API %s %s: status %d: %s", method, path, response.StatusCode, strings.TrimSpace(string(content)))
	}
	if result != nil {
		if err := json.Unmarshal(content, result); err != nil {
			return fmt.Errorf("proxy API %s %s: %w", method, path, err)
		}
	}
	return nil
}
