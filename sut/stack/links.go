package stack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/proxy"
)

// KindProxy is the fault proxy component (`ledgerproof proxy`, toxiproxy
// embedded) that `up --proxies` puts on the links between the processes.
const KindProxy = "proxy"

// DefaultProxyPort is the proxy API's port when Config.ProxyPort is 0; the
// links listen on the next ports, in the order of Links.
const DefaultProxyPort = 18290

// The links `up --proxies` routes through the fault proxy. Each is a TCP
// proxy of its own, named like this in toxiproxy's API. Gateways reach
// Postgres directly: sign-up, sign-in and the idempotency records are not a
// link the drills cut.
const (
	LinkGatewayBroker  = "gateway->broker"
	LinkWorkerBroker   = "worker->broker"
	LinkWorkerPostgres = "worker->postgres"
	LinkGatewayRedis   = "gateway->redis"
	LinkWorkerRedis    = "worker->redis"
)

// Links are the link names in port order: link i listens on the proxy
// port + 1 + i.
var Links = []string{LinkGatewayBroker, LinkWorkerBroker, LinkWorkerPostgres, LinkGatewayRedis, LinkWorkerRedis}

// Link fault kinds.
const (
	// FaultLatency delays every chunk of data by Latency ± Jitter (toxiproxy
	// "latency"), by default on the responses only (downstream), so each
	// request-response round trip takes Latency longer.
	FaultLatency = "latency"
	// FaultCut takes the link down: the proxy stops listening and closes
	// every connection through it; new connections are refused until the
	// link heals. What a client sees when a peer or a route is gone.
	FaultCut = "cut"
	// FaultBandwidth limits the link to RateKBps kilobytes per second in
	// each direction (toxiproxy "bandwidth").
	FaultBandwidth = "bandwidth"
	// FaultReset resets each connection with a TCP RST once data flows on
	// it, After that (toxiproxy "reset_peer"). Clients reconnect, and their
	// new connections are reset too until the link heals.
	FaultReset = "reset"
	// FaultTimeout is a black hole: data stops at once and is dropped, and
	// each connection is closed After that (toxiproxy "timeout"). After
	// must be positive: a connection whose bytes were dropped must not
	// carry data again once healed, or the protocol on it is out of step.
	FaultTimeout = "timeout"
)

// Fault directions, in toxiproxy's terms.
const (
	DirectionDownstream = "downstream" // server to client
	DirectionUpstream   = "upstream"   // client to server
	DirectionBoth       = "both"
)

// LinkFault is a fault to put on a link. Only the fields of its Kind are
// read; the others must be zero.
type LinkFault struct {
	// Kind is latency, cut, bandwidth, reset or timeout.
	Kind string
	// Latency and Jitter (latency): each chunk of data waits Latency ±
	// Jitter. Milliseconds are the unit; Latency at least 1ms.
	Latency, Jitter time.Duration
	// RateKBps (bandwidth) is the rate in kilobytes per second, at least 1.
	RateKBps int
	// After (reset, timeout): how long after data flows a connection is
	// reset (0: at once), or how long a black-holed connection lives before
	// it is closed (timeout; must be positive).
	After time.Duration
	// Direction is downstream, upstream or both. Default: downstream for
	// latency (once per round trip), both for bandwidth, reset and timeout.
	// A cut has no direction.
	Direction string
}

// String describes the fault for logs, e.g. "latency 200ms±20ms downstream".
func (f LinkFault) String() string {
	switch f.Kind {
	case FaultLatency:
		text := "latency " + f.Latency.String()
		if f.Jitter > 0 {
			text += "±" + f.Jitter.String()
		}
		return text + " " + f.direction()
	case FaultBandwidth:
		return "bandwidth " + strconv.Itoa(f.RateKBps) + "KB/s " + f.direction()
	case FaultReset:
		return "reset after " + f.After.String() + " " + f.direction()
	case FaultTimeout:
		return "timeout after " + f.After.String() + " " + f.direction()
	default:
		return f.Kind
	}
}

// direction is the effective direction.
func (f LinkFault) direction() string {
	if f.Direction != "" {
		return f.Direction
	}
	if f.Kind == FaultLatency {
		return DirectionDownstream
	}
	return DirectionBoth
}

// Validate rejects a fault the proxy cannot apply as described.
func (f LinkFault) Validate() error {
	var problems []string
	unused := func(field string, zero bool) {
		if !zero {
			problems = append(problems, field+" is not a parameter of "+f.Kind)
		}
	}
	switch f.Kind {
	case FaultLatency:
		if f.Latency < time.Millisecond {
			problems = append(problems, "latency must be at least 1ms")
		}
		if f.Jitter < 0 {
			problems = append(problems, "jitter must not be negative")
		}
		unused("rate", f.RateKBps == 0)
		unused("after", f.After == 0)
	case FaultCut:
		unused("latency", f.Latency == 0)
		unused("jitter", f.Jitter == 0)
		unused("rate", f.RateKBps == 0)
		unused("after", f.After == 0)
		unused("direction", f.Direction == "")
	case FaultBandwidth:
		if f.RateKBps < 1 {
			problems = append(problems, "rate must be at least 1 KB/s")
		}
		unused("latency", f.Latency == 0)
		unused("jitter", f.Jitter == 0)
		unused("after", f.After == 0)
	case FaultReset, FaultTimeout:
		if f.After < 0 || (f.Kind == FaultTimeout && f.After < time.Millisecond) {
			problems = append(problems, fmt.Sprintf("after %s out of range (reset: 0 or more; timeout: at least 1ms)", f.After))
		}
		unused("latency", f.Latency == 0)
		unused("jitter", f.Jitter == 0)
		unused("rate", f.RateKBps == 0)
	default:
		problems = append(problems, fmt.Sprintf("unknown kind %q (want %s, %s, %s, %s or %s)", f.Kind, FaultLatency, FaultCut, FaultBandwidth, FaultReset, FaultTimeout))
	}
	switch f.Direction {
	case "", DirectionDownstream, DirectionUpstream, DirectionBoth:
	default:
		problems = append(problems, fmt.Sprintf("direction %q (want downstream, upstream or both)", f.Direction))
	}
	if len(problems) > 0 {
		return fmt.Errorf("link fault: %s", strings.Join(problems, "; "))
	}
	return nil
}

// toxics are the toxiproxy toxics that make the fault (none for a cut).
func (f LinkFault) toxics() []proxy.Toxic {
	var toxicType string
	attributes := map[string]int64{}
	switch f.Kind {
	case FaultLatency:
		toxicType = "latency"
		attributes["latency"] = f.Latency.Milliseconds()
		attributes["jitter"] = f.Jitter.Milliseconds()
	case FaultBandwidth:
		toxicType = "bandwidth"
		attributes["rate"] = int64(f.RateKBps)
	case FaultReset:
		toxicType = "reset_peer"
		attributes["timeout"] = f.After.Milliseconds()
	case FaultTimeout:
		toxicType = "timeout"
		attributes["timeout"] = f.After.Milliseconds()
	default:
		return nil
	}
	streams := []string{f.direction()}
	if streams[0] == DirectionBoth {
		streams = []string{DirectionUpstream, DirectionDownstream}
	}
	var toxics []proxy.Toxic
	for _, stream := range streams {
		toxics = append(toxics, proxy.Toxic{Name: "ledgerproof-" + f.Kind + "-" + stream, Type: toxicType,
			Stream: stream, Toxicity: 1, Attributes: attributes})
	}
	return toxics
}

// Link puts fault on the link (one of Links) of the stack in dir, replacing
// any fault the link had: a link carries at most one fault at a time. The
// stack must have been started with proxies (Config.Proxies, `up
// --proxies`), and its proxy must be running.
func Link(ctx context.Context, dir, link string, fault LinkFault) error {
	if err := fault.Validate(); err != nil {
		return err
	}
	ctx, cancel := withLinkDeadline(ctx)
	defer cancel()
	client, err := linkClient(ctx, dir, link)
	if err != nil {
		return err
	}
	if err := heal(ctx, client, link); err != nil {
		return err
	}
	if fault.Kind == FaultCut {
		if err := client.SetEnabled(ctx, link, false); err != nil {
			return fmt.Errorf("link %s: cut: %w", link, err)
		}
		return nil
	}
	for _, toxic := range fault.toxics() {
		if err := client.AddToxic(ctx, link, toxic); err != nil {
			return fmt.Errorf("link %s: %s: %w", link, fault, err)
		}
	}
	return nil
}

// HealLink removes the fault of the link: its toxics go and, if it was cut,
// it listens again. Healing a healthy link does nothing.
func HealLink(ctx context.Context, dir, link string) error {
	ctx, cancel := withLinkDeadline(ctx)
	defer cancel()
	client, err := linkClient(ctx, dir, link)
	if err != nil {
		return err
	}
	return heal(ctx, client, link)
}

// LinkStates returns every link of the stack in dir as the proxy sees it:
// listen and upstream addresses, whether it is up (not cut) and its toxics.
func LinkStates(ctx context.Context, dir string) ([]proxy.LinkState, error) {
	api, err := proxyAPI(dir)
	if err != nil {
		return nil, err
	}
	ctx, cancel := withLinkDeadline(ctx)
	defer cancel()
	return proxy.NewClient(api).Links(ctx)
}

// heal removes the link's toxics and enables it.
func heal(ctx context.Context, client *proxy.Client, link string) error {
	if err := client.RemoveToxics(ctx, link); err != nil {
		return fmt.Errorf("link %s: heal: %w", link, err)
	}
	state, err := client.Link(ctx, link)
	if err != nil {
		return fmt.Errorf("link %s: heal: %w", link, err)
	}
	if !state.Enabled {
		if err := client.SetEnabled(ctx, link, true); err != nil {
			return fmt.Errorf("link %s: heal: %w", link, err)
		}
	}
	return nil
}

// linkDeadline bounds a fault operation when the caller's context has no
// deadline.
const linkDeadline = 15 * time.Second

func withLinkDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, linkDeadline)
}

// linkClient checks the link's name and returns a client of the stack's
// proxy API.
func linkClient(_ context.Context, dir, link string) (*proxy.Client, error) {
	if !slices.Contains(Links, link) {
		return nil, fmt.Errorf("unknown link %q (links: %s)", link, strings.Join(Links, ", "))
	}
	api, err := proxyAPI(dir)
	if err != nil {
		return nil, err
	}
	return proxy.NewClient(api), nil
}

// proxyAPI is the API URL of the running proxy component of the stack.
func proxyAPI(dir string) (string, error) {
	file, err := Load(dir)
	if err != nil {
		return "", err
	}
	for _, component := range file.Components {
		if component.Kind != KindProxy {
			continue
		}
		if !component.Alive() {
			return "", fmt.Errorf("the fault proxy of stack %s is not running (%s); start it with 'ledgerproof stack --dir %s --action start --component %s'",
				dir, component.Status(), dir, component.Name)
		}
		return component.Endpoint, nil
	}
	return "", fmt.Errorf("stack %s has no fault proxy: start it with 'ledgerproof up --proxies'", dir)
}

// proxyPort is the API port, defaulted.
func (c Config) proxyPort() int {
	if c.ProxyPort == 0 {
		return DefaultProxyPort
	}
	return c.ProxyPort
}

// claimProxyPorts claims the API port and one port per link.
func (c Config) claimProxyPorts(claim func(port int, owner string)) {
	if !c.Proxies {
		return
	}
	claim(c.proxyPort(), KindProxy+" API")
	for i, link := range Links {
		claim(c.proxyPort()+1+i, KindProxy+" "+link)
	}
}

// proxyLinks are the proxies of the stack: each link's listen address and
// its upstream, the service's own address.
func proxyLinks(config Config) []proxy.Link {
	upstreams := map[string]string{
		LinkGatewayBroker:  "127.0.0.1:" + strconv.Itoa(config.BrokerPort),
		LinkWorkerBroker:   "127.0.0.1:" + strconv.Itoa(config.BrokerPort),
		LinkWorkerPostgres: "127.0.0.1:" + strconv.Itoa(config.PostgresPort),
		LinkGatewayRedis:   "127.0.0.1:" + strconv.Itoa(config.RedisPort),
		LinkWorkerRedis:    "127.0.0.1:" + strconv.Itoa(config.RedisPort),
	}
	links := make([]proxy.Link, len(Links))
	for i, name := range Links {
		links[i] = proxy.Link{Name: name, Listen: "127.0.0.1:" + strconv.Itoa(config.proxyPort()+1+i), Upstream: upstreams[name], Enabled: true}
	}
	return links
}

// proxyConfigFile is the proxy's configuration, written by Up.
func proxyConfigFile(dir string) string {
	return filepath.Join(dir, "proxy", "links.json")
}

// writeProxyConfig writes the proxy's configuration file before the proxy
// first starts; restarts reread it.
func writeProxyConfig(config Config, dir string) error {
	if err := os.MkdirAll(filepath.Dir(proxyConfigFile(dir)), 0o755); err != nil {
		return fmt.Errorf("%s: %w", KindProxy, err)
	}
	return proxy.WriteLinks(proxyConfigFile(dir), proxyLinks(config))
}

// routeThroughProxies is a no-op without Config.Proxies. With it, it adds
// the proxy component before the first gateway or worker and points the
// gateways and workers at the links' listen addresses instead of the
// services: --brokers, --redis-addr and (workers) the primary's host:port in
// --postgres-url. Kafka clients only use --brokers to fetch metadata and then
// dial the address the broker advertises, which is the broker's own; each
// process therefore also gets --broker-address-map advertised=link, so its
// produce and fetch connections go through its own link too.
func routeThroughProxies(config Config, dir string, components []*Component) []*Component {
	if !config.Proxies {
		return components
	}
	listen := map[string]string{}
	for _, link := range proxyLinks(config) {
		listen[link.Name] = link.Listen
	}
	brokerAddress := "127.0.0.1:" + strconv.Itoa(config.BrokerPort)
	primaryAddress := "127.0.0.1:" + strconv.Itoa(config.PostgresPort)
	api := "127.0.0.1:" + strconv.Itoa(config.proxyPort())
	proxyComponent := &Component{
		Name:     KindProxy,
		Kind:     KindProxy,
		Endpoint: "http://" + api,
		Argv: []string{config.Binary, "proxy",
			"--listen-api", api,
			"--config", proxyConfigFile(dir),
		},
		Env:        config.Env,
		WorkDir:    dir,
		DataDir:    filepath.Dir(proxyConfigFile(dir)),
		LogFile:    filepath.Join(dir, "logs", KindProxy+".log"),
		Ready:      Probe{Kind: ProbeHTTP, Target: "http://" + api + "/version"},
		StopSignal: "SIGTERM",
	}
	var routed []*Component
	for _, component := range components {
		var brokerLink, redisLink string
		switch component.Kind {
		case KindGateway:
			brokerLink, redisLink = LinkGatewayBroker, LinkGatewayRedis
		case KindWorker:
			brokerLink, redisLink = LinkWorkerBroker, LinkWorkerRedis
		default:
			routed = append(routed, component)
			continue
		}
		if proxyComponent != nil {
			routed = append(routed, proxyComponent)
			proxyComponent = nil
		}
		replaceFlagValue(component, "--brokers", func(string) string { return listen[brokerLink] })
		replaceFlagValue(component, "--redis-addr", func(string) string { return listen[redisLink] })
		if component.Kind == KindWorker {
			replaceFlagValue(component, "--postgres-url", func(url string) string {
				if !strings.Contains(url, primaryAddress) {
					panic(errors.New("stack: " + component.Name + "'s Postgres URL does not name the primary " + primaryAddress))
				}
				return strings.Replace(url, primaryAddress, listen[LinkWorkerPostgres], 1)
			})
		}
		component.Argv = slices.Insert(component.Argv, 2, "--broker-address-map", brokerAddress+"="+listen[brokerLink])
		routed = append(routed, component)
	}
	if proxyComponent != nil {
		routed = append(routed, proxyComponent)
	}
	return routed
}

// replaceFlagValue rewrites the value following flag in the component's
// argv. plan always gives gateways and workers these flags; a missing one is
// a bug in plan, and a stack that silently bypassed its proxies would make
// every fault drill pass for the wrong reason.
func replaceFlagValue(component *Component, flag string, rewrite func(string) string) {
	for i := 0; i+1 < len(component.Argv); i++ {
		if component.Argv[i] == flag {
			component.Argv[i+1] = rewrite(component.Argv[i+1])
			return
		}
	}
	panic(errors.New("stack: " + component.Name + " has no " + flag + " to route through the fault proxy"))
}
