package capacity

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/stack"
)

// takeProfiles fetches CPU profiles of gateway-0 and worker-0 (if any),
// starting at at (inside the step's hold), and Postgres's statement
// statistics over the same time. The load generator writes its own profile
// of the step's whole schedule (load.cpu.pprof: runCapacityStep passes it
// --cpu-profile).
func takeProfiles(ctx context.Context, o Options, mode capacityMode, file *stack.File, at time.Time, stepDir string, out io.Writer) {
	timer := time.NewTimer(time.Until(at))
	select {
	case <-ctx.Done():
		timer.Stop()
		return
	case <-timer.C:
	}
	// Profiles are served on a gateway's internal listener.
	targets := map[string]string{"gateway-0": file.Endpoints.GatewayInternal[0]}
	if len(file.Endpoints.WorkerMetrics) > 0 {
		targets["worker-0"] = strings.TrimSuffix(file.Endpoints.WorkerMetrics[0], "/metrics")
	}
	statements, statementsError := startStatements(ctx, file.Endpoints.PostgresURL)
	if statementsError != nil {
		fmt.Fprintf(out, "%s: no Postgres statement statistics: %v\n", mode.Name, statementsError)
	}
	done := make(chan struct{}, len(targets))
	for name, base := range targets {
		go func() {
			defer func() { done <- struct{}{} }()
			url := fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", strings.TrimSuffix(base, "/"), o.ProfileSeconds)
			client := http.Client{Timeout: time.Duration(o.ProfileSeconds+30) * time.Second}
			response, err := client.Get(url)
			if err != nil {
				fmt.Fprintf(out, "%s: profile %s: %v\n", mode.Name, name, err)
				return
			}
			defer response.Body.Close()
			path := filepath.Join(stepDir, name+".cpu.pprof")
			target, err := os.Create(path)
			if err != nil {
				return
			}
			defer target.Close()
			if _, err := io.Copy(target, response.Body); err != nil || response.StatusCode != http.StatusOK {
				fmt.Fprintf(out, "%s: profile %s: status %d %v\n", mode.Name, name, response.StatusCode, err)
				return
			}
			fmt.Fprintf(out, "%s: profile of %s in %s\n", mode.Name, name, path)
		}()
	}
	for range targets {
		<-done
	}
	if statementsError == nil {
		path := filepath.Join(stepDir, "postgres-statements.txt")
		if err := statements.write(ctx, path); err != nil {
			fmt.Fprintf(out, "%s: Postgres statement statistics: %v\n", mode.Name, err)
		} else {
			fmt.Fprintf(out, "%s: Postgres statement statistics in %s\n", mode.Name, path)
		}
	}
}
