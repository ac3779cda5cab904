package stack

import (
	"path/filepath"
	"strconv"
)

// The settlement pipeline's component kinds (docs/settlement.md): one
// relay of the outbox and one settler (the settlement consumer), each a
// component of that name.
const (
	KindRelay   = "relay"
	KindSettler = "settler"
)

// DefaultSettlementPort is Config.SettlementPort's default: the relay's
// metrics port; the settler's is the next one.
const DefaultSettlementPort = 18270

// settlementPort is SettlementPort, defaulted.
func (c Config) settlementPort() int {
	if c.SettlementPort == 0 {
		return DefaultSettlementPort
	}
	return c.SettlementPort
}

// settlementComponents are the relay and the settler of the stack, when
// Settlement is on. They reach Postgres and the broker directly, never
// through the fault proxy, and get the seeded-bug flags like every
// process of the stack.
func settlementComponents(config Config, dir, postgresURL, brokerAddress string) []*Component {
	if !config.Settlement {
		return nil
	}
	var components []*Component
	for i, kind := range []string{KindRelay, KindSettler} {
		address := "127.0.0.1:" + strconv.Itoa(config.settlementPort()+i)
		argv := []string{config.Binary, kind,
			"--postgres-url", postgresURL,
			"--brokers", brokerAddress,
			"--name", kind,
			"--metrics-listen", address,
		}
		argv = append(argv, seededBugArgs(config)...)
		extra := config.RelayArgs
		if kind == KindSettler {
			extra = config.SettlerArgs
		}
		components = append(components, &Component{
			Name:       kind,
			Kind:       kind,
			Endpoint:   "http://" + address + "/metrics",
			Argv:       append(argv, extra...),
			Env:        config.Env,
			WorkDir:    dir,
			LogFile:    filepath.Join(dir, "logs", kind+".log"),
			Ready:      Probe{Kind: ProbeHTTP, Target: "http://" + address + "/readyz"},
			StopSignal: "SIGTERM",
		})
	}
	return components
}
