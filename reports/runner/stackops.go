package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/stack"
)

// firstLine is s up to its first newline.
func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// RecoverStack starts every component that is not running, in the stack's
// order (Postgres, Redis, broker, gateways, workers), retrying a few times;
// a Postgres primary fenced by a failover stays down (it never comes back).
func RecoverStack(ctx context.Context, dir string, log func(string)) error {
	for attempt := 1; ; attempt++ {
		file, err := stack.Load(dir)
		if err != nil {
			return err
		}
		fenced := ""
		if len(file.Failovers) > 0 {
			fenced = file.Failovers[len(file.Failovers)-1].From
		}
		var failed []error
		for _, component := range file.Components {
			if component.Alive() || component.Name == fenced {
				continue
			}
			startContext, cancel := context.WithTimeout(ctx, time.Minute)
			_, err := stack.Operate(startContext, dir, component.Name, stack.ActionStart)
			cancel()
			if err != nil {
				failed = append(failed, fmt.Errorf("%s: %s", component.Name, firstLine(err.Error())))
			} else {
				log(fmt.Sprintf("recovery: started %s", component.Name))
			}
		}
		if len(failed) == 0 {
			return nil
		}
		if attempt == 3 || ctx.Err() != nil {
			return fmt.Errorf("recovery: %w", errors.Join(failed...))
		}
		time.Sleep(2 * time.Second)
	}
}

// CopyStackFiles copies the stack file and the components' logs into dest.
func CopyStackFiles(stackDir, dest string) {
	_ = os.MkdirAll(dest, 0o755)
	copyFile := func(from, to string) {
		content, err := os.ReadFile(from)
		if err == nil {
			_ = os.WriteFile(to, content, 0o644)
		}
	}
	copyFile(filepath.Join(stackDir, stack.FileName), filepath.Join(dest, stack.FileName))
	logs, _ := filepath.Glob(filepath.Join(stackDir, "logs", "*.log"))
	for _, log := range logs {
		copyFile(log, filepath.Join(dest, filepath.Base(log)))
	}
}
