package chaos

import (
	"context"
	"fmt"
	"strings"

	"github.com/ledgerproof/ledgerproof/sut/crash"
	"github.com/ledgerproof/ledgerproof/sut/stack"
)

// stackLinks applies link faults through the local stack's fault proxy
// (`ledgerproof up --proxies`).
type stackLinks struct{ dir string }

// Links implements LinkFaulter.
func (s stackLinks) Links() []string { return append([]string(nil), stack.Links...) }

// Link implements LinkFaulter: heal removes the fault, the others replace
// whatever fault the link had.
func (s stackLinks) Link(ctx context.Context, link string, params LinkParams) error {
	if params.Fault == FaultHeal {
		return stack.HealLink(ctx, s.dir, link)
	}
	fault := stack.LinkFault{Kind: params.Fault, Latency: params.Latency, Jitter: params.Jitter, RateKBps: params.RateKilobytesPerSecond}
	if err := fault.Validate(); err != nil {
		return fmt.Errorf("link %s: %w", link, err)
	}
	return stack.Link(ctx, s.dir, link, fault)
}

// stackFailover fails the local stack's Postgres over to its standby
// (`ledgerproof up --postgres-standby`).
type stackFailover struct{ dir string }

// Failover implements Failoverer.
func (s stackFailover) Failover(ctx context.Context) error {
	_, err := stack.Failover(ctx, s.dir)
	return err
}

// localExtensions gives a stack the fault kinds its shape supports: link
// faults with a fault proxy, failover with a standby, crash points when the
// gateways or workers run with --enable-crash-points.
func localExtensions(dir string, file *stack.File) Extensions {
	var extensions Extensions
	for _, component := range file.Components {
		switch {
		case component.Kind == stack.KindProxy:
			extensions.Links = stackLinks{dir: dir}
		case component.Name == stack.StandbyComponentName:
			extensions.Failovers = stackFailover{dir: dir}
		case crashPointsEnabled(component.Argv):
			extensions.CrashPoints = &crash.Armer{Endpoint: func(process string) (string, error) {
				component, err := file.Component(process)
				if err != nil {
					return "", err
				}
				return component.Endpoint, nil
			}}
		}
	}
	return extensions
}

// crashPointsEnabled reads --enable-crash-points from a process's argv.
func crashPointsEnabled(argv []string) bool {
	for _, argument := range argv {
		switch strings.TrimLeft(argument, "-") {
		case "enable-crash-points", "enable-crash-points=true", "enable-crash-points=1":
			return true
		}
	}
	return false
}
