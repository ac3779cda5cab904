package capacity

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"time"
)

// autovacuumLogSettings make a capacity stack's Postgres log every
// autovacuum action (a vacuum or an analyze of one table) with the CPU it
// used, in UTC, so that the report can say which steps' holds had one: a
// pass over the growing ledger tables cost 0.6-0.9 CPU seconds at the top of
// the ladder, in 3-6 s, once a minute (docs/performance.md, "Twentieth
// pass"). Logging costs a few lines per action.
var autovacuumLogSettings = []string{"log_autovacuum_min_duration=0", "log_timezone=UTC"}

// autovacuumAction is one logged autovacuum action.
type autovacuumAction struct {
	// End is when Postgres logged it (the action's end); Elapsed its
	// length in seconds, so it ran from End - Elapsed to End.
	End        time.Time
	Elapsed    float64
	CPUSeconds float64
	// Kind is "vacuum" or "analyze"; Table the table's qualified name.
	Kind, Table string
}

// autovacuumShare is what autovacuum did during one step's hold.
type autovacuumShare struct {
	// Actions counts the actions that overlapped the hold.
	Actions int `json:"actions"`
	// CPUSeconds is their CPU, each action's in proportion to the part of
	// it that fell inside the hold.
	CPUSeconds float64 `json:"cpu_seconds"`
}

var (
	autovacuumHeader = regexp.MustCompile(`^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}) UTC \[\d+\] LOG:  automatic (vacuum|analyze) of table "([^"]+)"`)
	autovacuumUsage  = regexp.MustCompile(`^\s+system usage: CPU: user: ([0-9.]+) s, system: ([0-9.]+) s, elapsed: ([0-9.]+) s`)
)

// parseAutovacuumLog reads the autovacuum actions of a Postgres log written
// with autovacuumLogSettings. An action whose usage line is missing (the log
// ends inside it) is left out; every other line is ignored.
func parseAutovacuumLog(r io.Reader) ([]autovacuumAction, error) {
	var actions []autovacuumAction
	var open *autovacuumAction
	scanner := bufio.NewScanner(r)
	scanner.Buffer(make([]byte, 64*1024), 1024*1024)
	for scanner.Scan() {
		line := scanner.Text()
		if m := autovacuumHeader.FindStringSubmatch(line); m != nil {
			end, err := time.Parse("2006-01-02 15:04:05.000", m[1])
			if err != nil {
				return nil, fmt.Errorf("autovacuum log: %q: %w", m[1], err)
			}
			open = &autovacuumAction{End: end, Kind: m[2], Table: m[3]}
			continue
		}
		if open == nil {
			continue
		}
		if m := autovacuumUsage.FindStringSubmatch(line); m != nil {
			var figures [3]float64
			for i := range figures {
				value, err := strconv.ParseFloat(m[i+1], 64)
				if err != nil {
					return nil, fmt.Errorf("autovacuum log: %q: %w", line, err)
				}
				figures[i] = value
			}
			open.CPUSeconds, open.Elapsed = figures[0]+figures[1], figures[2]
			actions = append(actions, *open)
			open = nil
		}
	}
	if err := scanner.Err(); err != nil {
		return nil, fmt.Errorf("autovacuum log: %w", err)
	}
	return actions, nil
}

// readAutovacuumLog parses the Postgres log at path.
func readAutovacuumLog(path string) ([]autovacuumAction, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	return parseAutovacuumLog(file)
}

// autovacuumDuring is what the actions did in the window [from, to): the
// actions that overlap it, and their CPU in proportion to the overlap (an
// action logged with no elapsed time counts whole when it ended inside).
func autovacuumDuring(actions []autovacuumAction, from, to time.Time) autovacuumShare {
	var share autovacuumShare
	for _, action := range actions {
		start := action.End.Add(-time.Duration(action.Elapsed * float64(time.Second)))
		if action.Elapsed <= 0 {
			if !action.End.Before(from) && action.End.Before(to) {
				share.Actions++
				share.CPUSeconds += action.CPUSeconds
			}
			continue
		}
		end := action.End
		if to.Before(end) {
			end = to
		}
		if start.Before(from) {
			start = from
		}
		overlap := end.Sub(start).Seconds()
		if overlap <= 0 {
			continue
		}
		share.Actions++
		share.CPUSeconds += action.CPUSeconds * min(1, overlap/action.Elapsed)
	}
	return share
}

// noteAutovacuum sets each step's Autovacuum from the stack's Postgres log;
// a log that cannot be read leaves them nil and says so on out.
func noteAutovacuum(steps []*capacityStep, logPath string, out io.Writer) {
	actions, err := readAutovacuumLog(logPath)
	if err != nil {
		fmt.Fprintf(out, "autovacuum: not read from the Postgres log: %v\n", err)
		return
	}
	for _, step := range steps {
		if step.WindowSeconds <= 0 {
			continue
		}
		share := autovacuumDuring(actions, step.WindowStart, step.windowEnd())
		share.CPUSeconds = round3(share.CPUSeconds)
		step.Autovacuum = &share
	}
}

// formatAutovacuum is a step's autovacuum cell: CPU seconds (actions), or
// "–" when the log was not read.
func formatAutovacuum(share *autovacuumShare) string {
	if share == nil {
		return "–"
	}
	return fmt.Sprintf("%.2f (%d)", share.CPUSeconds, share.Actions)
}
