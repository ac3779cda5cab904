// Package proxy runs the fault proxy of the local stack: the server of
// github.com/Shopify/toxiproxy/v2 embedded as a library, with one TCP proxy
// per link (gateway->broker, worker->postgres, ...) and toxiproxy's own HTTP
// API, through which faults (toxics) are added and removed while the system
// runs.
//
// It differs from toxiproxy's own server command in three ways: the API
// listener is opened before anything else, so a busy port is an error
// instead of a fatal log line; the proxies of the configuration file must
// all start, or Run fails; and Run stops the API and every proxy (closing
// their connections) when its context ends.
package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/rs/zerolog"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
)

// Link is one TCP proxy, in toxiproxy's populate format (the JSON array the
// configuration file holds).
type Link struct {
	// Name identifies the proxy in the API (/proxies/{name}).
	Name string `json:"name"`
	// Listen is the host:port clients connect to.
	Listen string `json:"listen"`
	// Upstream is the host:port of the real service.
	Upstream string `json:"upstream"`
	// Enabled starts the proxy listening. A configuration file written by
	// the stack always enables its links; a link disabled through the API
	// comes back enabled when the proxy process restarts.
	Enabled bool `json:"enabled"`
}

// Config configures Run.
type Config struct {
	// APIListen is the loopback host:port of toxiproxy's HTTP API. Required:
	// the API controls the faults, it has no authentication, so it is never
	// exposed beyond the machine.
	APIListen string
	// Links are the proxies to start. At least one is required.
	Links []Link
	// Logger receives lifecycle events. Default: discard. Toxiproxy's own
	// log lines (JSON, one per connection and per API call) go to LogOutput.
	Logger *slog.Logger
	// LogOutput receives toxiproxy's log lines. Default io.Discard.
	LogOutput io.Writer
}

// validate rejects a configuration Run cannot serve.
func (c Config) validate() error {
	var problems []string
	if err := requireLoopback(c.APIListen); err != nil {
		problems = append(problems, "API: "+err.Error())
	}
	if len(c.Links) == 0 {
		problems = append(problems, "no links")
	}
	names := map[string]bool{}
	for i, link := range c.Links {
		if link.Name == "" {
			problems = append(problems, fmt.Sprintf("link %d has no name", i+1))
		}
		if names[link.Name] {
			problems = append(problems, fmt.Sprintf("link %q given twice", link.Name))
		}
		names[link.Name] = true
		if err := requireLoopback(link.Listen); err != nil {
			problems = append(problems, fmt.Sprintf("link %q listen: %v", link.Name, err))
		}
		if _, _, err := net.SplitHostPort(link.Upstream); err != nil {
			problems = append(problems, fmt.Sprintf("link %q upstream: %v", link.Name, err))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("proxy config: %s", strings.Join(problems, "; "))
	}
	return nil
}

// requireLoopback accepts a host:port whose host is a loopback address.
func requireLoopback(address string) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("%q is not a loopback address (the proxy has no authentication)", address)
	}
	return nil
}

// ReadLinks reads a configuration file: a JSON array of links.
func ReadLinks(path string) ([]Link, error) {
	content, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read proxy config: %w", err)
	}
	var links []Link
	if err := json.Unmarshal(content, &links); err != nil {
		return nil, fmt.Errorf("read proxy config %s: %w", path, err)
	}
	return links, nil
}

// WriteLinks writes links as a configuration file.
func WriteLinks(path string, links []Link) error {
	content, err := json.MarshalIndent(links, "", "  ")
	if err != nil {
		return fmt.Errorf("write proxy config: %w", err)
	}
	if err := os.WriteFile(path, append(content, '\n'), 0o644); err != nil {
		return fmt.Errorf("write proxy config: %w", err)
	}
	return nil
}

// shutdownTimeout bounds the graceful stop of the API server.
const shutdownTimeout = 5 * time.Second

// Run starts every link's proxy and the API, logs where they listen, and
// serves until ctx ends; it then stops the API and the proxies and returns
// nil. It fails if the configuration is invalid or a port is in use.
func Run(ctx context.Context, config Config) error {
	if config.Logger == nil {
		config.Logger = slog.New(slog.DiscardHandler)
	}
	if config.LogOutput == nil {
		config.LogOutput = io.Discard
	}
	if err := config.validate(); err != nil {
		return err
	}
	apiListener, err := net.Listen("tcp", config.APIListen)
	if err != nil {
		return fmt.Errorf("proxy API: listen on %s: %w", config.APIListen, err)
	}
	defer apiListener.Close()

	logger := zerolog.New(config.LogOutput).With().Timestamp().Logger().Level(zerolog.InfoLevel)
	server := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), logger)
	defer server.Collection.Clear()
	for _, link := range config.Links {
		proxy := toxiproxy.NewProxy(server, link.Name, link.Listen, link.Upstream)
		if err := server.Collection.Add(proxy, link.Enabled); err != nil {
			return fmt.Errorf("proxy %q (listen %s, upstream %s): %w", link.Name, link.Listen, link.Upstream, err)
		}
		config.Logger.Info("link proxied", "link", link.Name, "listen", link.Listen, "upstream", link.Upstream, "enabled", link.Enabled)
	}

	httpServer := &http.Server{
		Handler:           router(server),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
	}
	failed := make(chan error, 1)
	go func() { failed <- httpServer.Serve(apiListener) }()
	config.Logger.Info("proxy API listening", "address", apiListener.Addr().String(), "toxiproxy_version", toxiproxy.Version)
	select {
	case err := <-failed:
		return fmt.Errorf("proxy API: %w", err)
	case <-ctx.Done():
	}
	shutdownContext, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := httpServer.Shutdown(shutdownContext); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("proxy API: shutdown: %w", err)
	}
	config.Logger.Info("proxy stopped")
	return nil
}

// router serves toxiproxy's HTTP API, the same routes as toxiproxy's own
// server (ApiServer.Listen, v2.5.0), so its documentation, its CLI and its Go
// client work against the stack's proxy unchanged.
func router(server *toxiproxy.ApiServer) http.Handler {
	routes := mux.NewRouter()
	routes.HandleFunc("/reset", server.ResetState).Methods("POST")
	routes.HandleFunc("/proxies", server.ProxyIndex).Methods("GET")
	routes.HandleFunc("/proxies", server.ProxyCreate).Methods("POST")
	routes.HandleFunc("/populate", server.Populate).Methods("POST")
	routes.HandleFunc("/proxies/{proxy}", server.ProxyShow).Methods("GET")
	routes.HandleFunc("/proxies/{proxy}", server.ProxyUpdate).Methods("POST")
	routes.HandleFunc("/proxies/{proxy}", server.ProxyDelete).Methods("DELETE")
	routes.HandleFunc("/proxies/{proxy}/toxics", server.ToxicIndex).Methods("GET")
	routes.HandleFunc("/proxies/{proxy}/toxics", server.ToxicCreate).Methods("POST")
	routes.HandleFunc("/proxies/{proxy}/toxics/{toxic}", server.ToxicShow).Methods("GET")
	routes.HandleFunc("/proxies/{proxy}/toxics/{toxic}", server.ToxicUpdate).Methods("POST")
	routes.HandleFunc("/proxies/{proxy}/toxics/{toxic}", server.ToxicDelete).Methods("DELETE")
	routes.HandleFunc("/version", server.Version).Methods("GET")
	return http.TimeoutHandler(routes, 25*time.Second, "")
}

// RunFile runs the proxy like Run, with the links of the configuration file
// at path (ReadLinks's format) in place of config.Links. The path is
// required: it is the proxy command's --config.
func RunFile(ctx context.Context, path string, config Config) error {
	if path == "" {
		return errors.New("--config is required")
	}
	links, err := ReadLinks(path)
	if err != nil {
		return err
	}
	config.Links = links
	return Run(ctx, config)
}
