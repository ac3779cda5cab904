package mutation

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"
)

// Operator applies a fault action (kill, start, stop) to one component of
// the stack under test.
type Operator func(ctx context.Context, component, action string) error

// Execute applies steps at their times after start, in time order; the
// components of one step are operated on at once (a start waits for
// readiness). It returns a line per action done ("t+6.0s kill worker-0: ok")
// and the errors of the actions that failed; it stops early, without error,
// when ctx ends. log, if not nil, receives each line as it happens.
func Execute(ctx context.Context, start time.Time, steps []Step, operate Operator, log func(string)) ([]string, error) {
	ordered := append([]Step(nil), steps...)
	sort.SliceStable(ordered, func(i, j int) bool { return ordered[i].At < ordered[j].At })
	var (
		mutex  sync.Mutex
		events []string
		errs   []error
	)
	for _, step := range ordered {
		timer := time.NewTimer(time.Until(start.Add(step.At)))
		select {
		case <-ctx.Done():
			timer.Stop()
			return events, errors.Join(errs...)
		case <-timer.C:
		}
		var wait sync.WaitGroup
		for _, component := range step.Components {
			wait.Add(1)
			go func() {
				defer wait.Done()
				began := time.Now()
				err := operate(ctx, component, step.Action)
				line := fmt.Sprintf("t+%.1fs %s %s: ", began.Sub(start).Seconds(), step.Action, component)
				if err != nil {
					line += "FAILED: " + err.Error()
				} else {
					line += fmt.Sprintf("ok (%.1fs)", time.Since(began).Seconds())
				}
				mutex.Lock()
				events = append(events, line)
				if err != nil && ctx.Err() == nil {
					errs = append(errs, fmt.Errorf("%s %s at %s: %w", step.Action, component, step.At, err))
				}
				mutex.Unlock()
				if log != nil {
					log(line)
				}
			}()
		}
		wait.Wait()
	}
	return events, errors.Join(errs...)
}
