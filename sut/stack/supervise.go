package stack

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// RestartExited restarts, until ctx ends, every gateway, worker, relay or
// settler of the stack in dir that exited on its own (recorded running or
// failed, process gone) for at least a second: a crash point or a seeded
// crash, as a process supervisor (systemd, Kubernetes) would. Components a
// fault plan killed or stopped are recorded so and left to the plan. log
// receives one line per restart or failed restart.
func RestartExited(ctx context.Context, dir string, log func(string)) {
	deadSince := map[string]time.Time{}
	ticker := time.NewTicker(250 * time.Millisecond)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		file, err := Load(dir)
		if err != nil {
			continue
		}
		for _, component := range file.Components {
			if component.Kind != KindWorker && component.Kind != KindGateway &&
				component.Kind != KindRelay && component.Kind != KindSettler {
				continue
			}
			exited := !component.Alive() && (component.State == StateRunning || component.State == StateFailed)
			if !exited {
				delete(deadSince, component.Name)
				continue
			}
			since, seen := deadSince[component.Name]
			if !seen {
				deadSince[component.Name] = time.Now()
				continue
			}
			if time.Since(since) < time.Second {
				continue
			}
			_, err := Operate(ctx, dir, component.Name, ActionStart)
			if ctx.Err() != nil {
				return
			}
			delete(deadSince, component.Name)
			if err != nil {
				message, _, _ := strings.Cut(err.Error(), "\n")
				log(fmt.Sprintf("restart of %s (exited on its own) failed: %v", component.Name, message))
			} else {
				log(fmt.Sprintf("restarted %s (exited on its own)", component.Name))
			}
		}
	}
}
