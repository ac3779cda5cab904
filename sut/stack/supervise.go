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
			if !exitedOnItsOwn(component) {
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
			// Checked again under the component's lock: a fault plan may
			// have killed or started it since this loop read the file.
			_, started, err := StartIfExited(ctx, dir, component.Name)
			if ctx.Err() != nil {
				return
			}
			delete(deadSince, component.Name)
			switch {
			case !started && err == nil:
				// Not exited on its own any more: the plan's to handle.
			case err != nil:
				message, _, _ := strings.Cut(err.Error(), "\n")
				log(fmt.Sprintf("restart of %s (exited on its own) failed: %v", component.Name, message))
			default:
				log(fmt.Sprintf("restarted %s (exited on its own)", component.Name))
			}
		}
	}
}
